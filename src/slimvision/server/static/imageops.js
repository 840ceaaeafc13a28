// Pixel work of the in-browser style transfer, written to match the Python pipeline
// (slimvision.inference.style) value for value, so the page paints what the server paints.
// Pure functions over typed arrays: no DOM, so node can run them too.
//
// Images are {data, width, height, channels}: data is a Uint8Array/Uint8ClampedArray in row
// order (RGBA from a canvas has channels = 4; only the first three are used).

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point coefficients for 8-bit images

function bilinearFilter(x) {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

// Pillow's precompute_coeffs (Resample.c) for the triangle filter: when shrinking, the
// support widens by the scale factor (antialiasing); weights in 22-bit fixed point.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * ss);
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) kk[xx * ksize + x] /= ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const fixed = new Float64Array(kk.length);
  for (let i = 0; i < kk.length; i++) {
    const v = kk[i] * (1 << PRECISION_BITS);
    fixed[i] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { ksize, bounds, k: fixed };
}

function clip8(ss) {
  if (ss >= 255 * (1 << PRECISION_BITS)) return 255;
  if (ss <= 0) return 0;
  return Math.floor(ss / (1 << PRECISION_BITS));
}

/**
 * Pillow's Image.resize(size, BILINEAR) on an 8-bit RGB image, bit for bit: a horizontal pass,
 * rounding to uint8, then a vertical pass. Returns a 3-channel image.
 */
export function resizeBilinear(image, outWidth, outHeight) {
  const { data, width, height, channels } = image;
  // Horizontal pass (Pillow skips a pass whose size does not change).
  let mid = new Uint8Array(height * outWidth * 3);
  if (outWidth === width) {
    for (let i = 0, j = 0; i < width * height; i++, j += channels) {
      mid[i * 3] = data[j]; mid[i * 3 + 1] = data[j + 1]; mid[i * 3 + 2] = data[j + 2];
    }
  } else {
    const { ksize, bounds, k } = coefficients(width, outWidth);
    const half = 1 << (PRECISION_BITS - 1);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], base = xx * ksize;
        let s0 = half, s1 = half, s2 = half;
        for (let x = 0; x < xmax; x++) {
          const w = k[base + x], p = (row + x + xmin) * channels;
          s0 += data[p] * w; s1 += data[p + 1] * w; s2 += data[p + 2] * w;
        }
        const o = (y * outWidth + xx) * 3;
        mid[o] = clip8(s0); mid[o + 1] = clip8(s1); mid[o + 2] = clip8(s2);
      }
    }
  }
  if (outHeight === height) return { data: mid, width: outWidth, height, channels: 3 };
  const out = new Uint8Array(outHeight * outWidth * 3);
  const { ksize, bounds, k } = coefficients(height, outHeight);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], base = yy * ksize;
    for (let xx = 0; xx < outWidth; xx++) {
      let s0 = half, s1 = half, s2 = half;
      for (let y = 0; y < ymax; y++) {
        const w = k[base + y], p = ((y + ymin) * outWidth + xx) * 3;
        s0 += mid[p] * w; s1 += mid[p + 1] * w; s2 += mid[p + 2] * w;
      }
      const o = (yy * outWidth + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels: 3 };
}

/** A (top, left, height, width) window of an image, as a 3-channel image. */
export function crop(image, top, left, cropHeight, cropWidth) {
  const { data, width, channels } = image;
  const out = new Uint8Array(cropHeight * cropWidth * 3);
  for (let y = 0; y < cropHeight; y++) {
    for (let x = 0; x < cropWidth; x++) {
      const p = ((top + y) * width + left + x) * channels, o = (y * cropWidth + x) * 3;
      out[o] = data[p]; out[o + 1] = data[p + 1]; out[o + 2] = data[p + 2];
    }
  }
  return { data: out, width: cropWidth, height: cropHeight, channels: 3 };
}

/**
 * The predictor's input: the centre square, resized to size x size (Pillow bilinear),
 * as float32 NHWC in [0, 1] (like style.centre_square + to_float).
 */
export function centreSquare(image, size) {
  const side = Math.min(image.width, image.height);
  const top = Math.floor((image.height - side) / 2), left = Math.floor((image.width - side) / 2);
  let square = crop(image, top, left, side, side);
  if (side !== size) square = resizeBilinear(square, size, size);
  return toFloat(square);
}

/** uint8 -> float32 in [0, 1], 3 channels (NHWC without the batch axis). */
export function toFloat(image) {
  const { data, width, height, channels } = image;
  const out = new Float32Array(width * height * 3);
  const scale = Math.fround(1 / 255);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    out[i * 3] = Math.fround(data[j] * scale);
    out[i * 3 + 1] = Math.fround(data[j + 1] * scale);
    out[i * 3 + 2] = Math.fround(data[j + 2] * scale);
  }
  return out;
}

function reflect(index, size) {
  // numpy.pad(mode="reflect") for pads shorter than the side: the edge is not repeated.
  return index < size ? index : 2 * size - 2 - index;
}

/**
 * Float32 HWC content reflect-padded at the bottom and right to a multiple of ``multiple``
 * (style_tiling.pad_to_multiple). Returns {data, height, width}.
 */
export function padToMultiple(pixels, height, width, multiple) {
  const paddedHeight = Math.ceil(height / multiple) * multiple;
  const paddedWidth = Math.ceil(width / multiple) * multiple;
  if (paddedHeight === height && paddedWidth === width) return { data: pixels, height, width };
  const out = new Float32Array(paddedHeight * paddedWidth * 3);
  for (let y = 0; y < paddedHeight; y++) {
    const sy = reflect(y, height);
    for (let x = 0; x < paddedWidth; x++) {
      const p = (sy * width + reflect(x, width)) * 3, o = (y * paddedWidth + x) * 3;
      out[o] = pixels[p]; out[o + 1] = pixels[p + 1]; out[o + 2] = pixels[p + 2];
    }
  }
  return { data: out, height: paddedHeight, width: paddedWidth };
}

/** The top-left height x width window of a float32 HWC image ``fullWidth`` wide. */
export function cropFloat(pixels, fullWidth, height, width) {
  if (fullWidth === width && pixels.length === height * width * 3) return pixels;
  const out = new Float32Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    out.set(pixels.subarray(y * fullWidth * 3, (y * fullWidth + width) * 3), y * width * 3);
  }
  return out;
}

/** Weighted mean of style vectors, weights normalised to sum 1 (style.blend). */
export function blend(vectors, weights) {
  if (!vectors.length) throw new Error("blend needs at least one style");
  weights = weights || vectors.map(() => 1);
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0) || weights.some((w) => !(w >= 0))) {
    throw new Error(`style weights must be non-negative and not all zero, got ${weights.join(", ")}`);
  }
  if (vectors.length === 1) return vectors[0];
  const out = new Float32Array(vectors[0].length);
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    vectors.forEach((v, j) => { sum += (weights[j] / total) * v[i]; });
    out[i] = sum;
  }
  return out;
}

/** ``strength`` 0 gives the content's own vector, 1 the target's (style.interpolate). */
export function interpolate(own, target, strength) {
  const out = new Float32Array(target.length);
  for (let i = 0; i < out.length; i++) out[i] = (1 - strength) * own[i] + strength * target[i];
  return out;
}

/** Keep the stylized luminance and the content's chroma (style.preserve_colour). */
export function preserveColour(stylized, content) {
  const out = new Float32Array(stylized.length);
  for (let i = 0; i < stylized.length; i += 3) {
    const ys = 0.299 * stylized[i] + 0.587 * stylized[i + 1] + 0.114 * stylized[i + 2];
    const yc = 0.299 * content[i] + 0.587 * content[i + 1] + 0.114 * content[i + 2];
    const d = ys - yc;
    for (let c = 0; c < 3; c++) out[i + c] = Math.min(1, Math.max(0, content[i + c] + d));
  }
  return out;
}

/** Float [0, 1] HWC -> RGBA bytes for a canvas, rounding like style.to_uint8. */
export function toRGBA(pixels, width, height) {
  const out = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += 3) {
    for (let c = 0; c < 3; c++) {
      const v = Math.floor(pixels[j + c] * 255 + 0.5);
      out[i * 4 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}
