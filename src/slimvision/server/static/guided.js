// Edge-aware upsampling for the live camera: a port of slimvision.inference.guided (the fast
// guided filter, He & Sun 2015) as `style live --realtime` uses it. A painting made at a small
// working size comes back to a larger size as the larger frame plus the painting's residual
// (painting - small frame), upsampled with the larger frame's grey levels as the guide, so the
// frame's own edges stay sharp instead of being blurred by a plain bilinear zoom.
// Pure functions over typed arrays (no DOM), so node can run them too.

/** Index into [0, size) with the border reflected like OpenCV's BORDER_REFLECT (abc|cba). */
function reflect(index, size) {
  if (index < 0) return -index - 1;
  return index >= size ? 2 * size - index - 1 : index;
}

/** Mean over (2r+1) x (2r+1) windows of a (height, width, channels) float image, borders
 *  reflected (guided.box_filter). Separable running sums: rows first, then columns. */
export function boxFilter(data, width, height, channels, radius) {
  if (radius < 1) return Float32Array.from(data);
  const rows = new Float32Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let c = 0; c < channels; c++) slide(data, rows, y * width * channels + c, channels, width, radius);
  }
  const out = new Float32Array(data.length);
  for (let x = 0; x < width * channels; x++) slide(rows, out, x, width * channels, height, radius);
  return out;
}

/** One line of a box filter: `count` samples `stride` apart from `offset`, a running sum (in
 *  doubles, so the sliding adds no drift worth a level) over the reflected window. */
function slide(input, output, offset, stride, count, radius) {
  const scale = 1 / (2 * radius + 1);
  let sum = 0;
  for (let d = -radius; d <= radius; d++) sum += input[offset + reflect(d, count) * stride];
  for (let i = 0; i < count; i++) {
    output[offset + i * stride] = sum * scale;
    sum += input[offset + reflect(i + radius + 1, count) * stride] - input[offset + reflect(i - radius, count) * stride];
  }
}

/** Bilinear sampling positions along one axis, pixel centres aligned and clamped
 *  (OpenCV's INTER_LINEAR, guided.resize_linear). */
export function linearAxis(sizeIn, sizeOut) {
  const low = new Int32Array(sizeOut), high = new Int32Array(sizeOut), frac = new Float32Array(sizeOut);
  for (let i = 0; i < sizeOut; i++) {
    const position = Math.min(Math.max((i + 0.5) * sizeIn / sizeOut - 0.5, 0), sizeIn - 1);
    low[i] = Math.floor(position);
    high[i] = Math.min(low[i] + 1, sizeIn - 1);
    frac[i] = position - low[i];
  }
  return { low, high, frac };
}

/** BT.601 grey levels in [0, 1] of RGBA bytes (guided.grey on to_float). */
export function greyOf(rgba, pixels) {
  const out = new Float32Array(pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += 4) out[i] = (0.299 * rgba[j] + 0.587 * rgba[j + 1] + 0.114 * rgba[j + 2]) / 255;
  return out;
}

/** The fast guided filter's coefficients at the small size: residual ~ a * guide + b per
 *  window, then smoothed (guided.guided_upsample up to the resize). */
export function coefficients(guide, residual, width, height, radius, eps) {
  const pixels = width * height;
  const guideResidual = new Float32Array(pixels * 3), guideSquared = new Float32Array(pixels);
  for (let i = 0; i < pixels; i++) {
    guideSquared[i] = guide[i] * guide[i];
    for (let c = 0; c < 3; c++) guideResidual[i * 3 + c] = guide[i] * residual[i * 3 + c];
  }
  const meanGuide = boxFilter(guide, width, height, 1, radius);
  const meanResidual = boxFilter(residual, width, height, 3, radius);
  const meanProduct = boxFilter(guideResidual, width, height, 3, radius);
  const meanSquare = boxFilter(guideSquared, width, height, 1, radius);
  const a = new Float32Array(pixels * 3), b = new Float32Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const variance = meanSquare[i] - meanGuide[i] * meanGuide[i];
    for (let c = 0; c < 3; c++) {
      const k = i * 3 + c;
      a[k] = (meanProduct[k] - meanGuide[i] * meanResidual[k]) / (variance + eps);
      b[k] = meanResidual[k] - a[k] * meanGuide[i];
    }
  }
  return { a: boxFilter(a, width, height, 3, radius), b: boxFilter(b, width, height, 3, radius) };
}

/**
 * guided.upsample_residual on RGBA bytes: `frame` (the larger frame, width x height) plus the
 * residual of `painted` over `small` (both smallWidth x smallHeight), guided-upsampled; RGBA
 * bytes out, rounded like style.to_uint8. The coefficient maps are interpolated one output row
 * at a time, so no full-size float image is ever made.
 */
export function upsampleResidual(frame, width, height, small, painted, smallWidth, smallHeight, { radius = 1, eps = 1e-2 } = {}) {
  const smallPixels = smallWidth * smallHeight;
  const residual = new Float32Array(smallPixels * 3);
  for (let i = 0; i < smallPixels; i++) {
    for (let c = 0; c < 3; c++) residual[i * 3 + c] = (painted[i * 4 + c] - small[i * 4 + c]) / 255;
  }
  const { a, b } = coefficients(greyOf(small, smallPixels), residual, smallWidth, smallHeight, radius, eps);
  const across = linearAxis(smallWidth, width), down = linearAxis(smallHeight, height);
  const rowA = new Float32Array(smallWidth * 3), rowB = new Float32Array(smallWidth * 3);
  const out = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    const top = down.low[y] * smallWidth * 3, bottom = down.high[y] * smallWidth * 3, fy = down.frac[y];
    for (let k = 0; k < smallWidth * 3; k++) {
      rowA[k] = a[top + k] * (1 - fy) + a[bottom + k] * fy;
      rowB[k] = b[top + k] * (1 - fy) + b[bottom + k] * fy;
    }
    for (let x = 0; x < width; x++) {
      const left = across.low[x] * 3, right = across.high[x] * 3, fx = across.frac[x];
      const p = (y * width + x) * 4;
      const guide = (0.299 * frame[p] + 0.587 * frame[p + 1] + 0.114 * frame[p + 2]) / 255;
      for (let c = 0; c < 3; c++) {
        const ac = rowA[left + c] * (1 - fx) + rowA[right + c] * fx;
        const bc = rowB[left + c] * (1 - fx) + rowB[right + c] * fx;
        const value = frame[p + c] / 255 + ac * guide + bc;
        out[p + c] = Math.floor(Math.min(1, Math.max(0, value)) * 255 + 0.5);
      }
      out[p + 3] = 255;
    }
  }
  return out;
}
