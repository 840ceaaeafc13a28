// Style transfer in the browser with onnxruntime-web (served by `slimvision serve` from the
// npm package, never from a CDN): the WASM build everywhere, WebGPU where the browser has an
// adapter. The pixel work lives in imageops.js and matches slimvision.inference.style.

import {
  blend, centreSquare, cropFloat, interpolate, padToMultiple, preserveColour, toFloat, toRGBA,
} from "./imageops.js";

const RUNTIME_FOLDER = new URL("/vendor/ort/", location.href).href;

let runtimePromise = null;

/** Whether the browser offers a WebGPU adapter (headless Chromium with --disable-gpu does not). */
async function hasWebGPU() {
  if (!("gpu" in navigator)) return false;
  try {
    return Boolean(await navigator.gpu.requestAdapter());
  } catch {
    return false;
  }
}

function configure(ort) {
  ort.env.wasm.wasmPaths = RUNTIME_FOLDER;
  // Cross-origin isolation (the server's COOP/COEP headers) makes SharedArrayBuffer, hence
  // WASM threads, available;
  // without it one thread. The page's URL may ask for fewer (?threads=1), e.g. for benchmarks.
  const asked = Number(new URLSearchParams(location.search).get("threads")) || 0;
  const available = self.crossOriginIsolated ? (navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.numThreads = asked > 0 ? Math.min(asked, available) : available;
  ort.env.logLevel = "error";
  return ort;
}

async function loadWasmBuild() {
  return { ort: configure(await import(`${RUNTIME_FOLDER}ort.wasm.min.mjs`)), providers: ["wasm"], backend: "wasm" };
}

/** After a WebGPU failure: the WASM build for this and every later model. */
function useWasmFromNowOn() {
  runtimePromise = loadWasmBuild();
  return runtimePromise;
}

/**
 * The runtime: onnxruntime-web's WebGPU build when there is an adapter (and `preferGpu`),
 * else its WASM build only, so a first visit never downloads the WebGPU runtime.
 */
export function loadRuntime({ preferGpu = true } = {}) {
  if (!runtimePromise) {
    runtimePromise = (async () => {
      if (preferGpu && (await hasWebGPU())) {
        try {
          const ort = configure(await import(`${RUNTIME_FOLDER}ort.webgpu.min.mjs`));
          return { ort, providers: ["webgpu", "wasm"], backend: "webgpu", fallback: useWasmFromNowOn };
        } catch (error) {
          console.warn("WebGPU build of onnxruntime-web failed to load; using WASM", error);
        }
      }
      return loadWasmBuild();
    })();
    runtimePromise.catch(() => { runtimePromise = null; });
  }
  return runtimePromise;
}

function threads(runtime) {
  return runtime.backend === "wasm" ? runtime.ort.env.wasm.numThreads : null;
}

async function fetchModel(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** One style model (predictor + transformer) as sessions in this browser. */
export class BrowserStyleModel {
  constructor(info, runtime, predictor, transform, loadMs) {
    this.info = info;
    this.runtime = runtime;
    this.predictor = predictor;
    this.transform = transform;
    this.loadMs = loadMs;
    this.vectors = new Map(); // style vectors by a key of the image, per model
  }

  /** Download both graphs (sizes from /api/style/models) and create the sessions. */
  static async load(info, { preferGpu = true } = {}) {
    const started = performance.now();
    let runtime = await loadRuntime({ preferGpu });
    const [predictorBytes, transformBytes] = await Promise.all([fetchModel(info.predictor.url), fetchModel(info.transform.url)]);
    const create = (rt, bytes) => rt.ort.InferenceSession.create(bytes, { executionProviders: rt.providers, graphOptimizationLevel: "all" });
    let predictor, transform;
    try {
      [predictor, transform] = [await create(runtime, predictorBytes), await create(runtime, transformBytes)];
    } catch (error) {
      if (!runtime.fallback) throw error;
      console.warn("WebGPU session failed; using the WASM build", error);
      runtime = await runtime.fallback();
      runtime.webgpuFailed = String(error.message || error);
      [predictor, transform] = [await create(runtime, predictorBytes), await create(runtime, transformBytes)];
    }
    return new BrowserStyleModel(info, runtime, predictor, transform, performance.now() - started);
  }

  get backend() {
    const count = threads(this.runtime);
    return count ? `${this.runtime.backend} (${count} thread${count > 1 ? "s" : ""})` : this.runtime.backend;
  }

  /** Raw style vector (Float32Array(100)) of an RGB(A) image {data, width, height, channels}. */
  async predictVector(image) {
    const ort = this.runtime.ort, size = this.info.style_size;
    const input = new ort.Tensor("float32", centreSquare(image, size), [1, size, size, 3]);
    const outputs = await this.predictor.run({ [this.predictor.inputNames[0]]: input });
    const vector = outputs[this.predictor.outputNames[0]];
    const values = Float32Array.from(vector.data);
    vector.dispose?.();
    return values;
  }

  async styleVector(image, key) {
    if (key && this.vectors.has(key)) return { vector: this.vectors.get(key), cached: true };
    const vector = await this.predictVector(image);
    if (key) this.vectors.set(key, vector);
    return { vector, cached: false };
  }

  /**
   * Stylize like StyleTransferPipeline.__call__: blend the styles' vectors, move towards the
   * content's own vector for strength < 1, pad to a multiple of 4, paint, crop, optionally
   * keep the content's colours. Returns {rgba, width, height, timings}.
   */
  async stylize(content, styles, { weights = null, strength = 1, preserveColor = false } = {}) {
    const ort = this.runtime.ort, dim = this.info.style_dim, multiple = this.info.size_multiple;
    const timings = { predictorMs: 0, transformMs: 0, predictorRuns: 0 };
    let started = performance.now();
    const vectors = [];
    for (const style of styles) {
      const { vector, cached } = await this.styleVector(style.image, style.key);
      vectors.push(vector);
      if (!cached) timings.predictorRuns += 1;
    }
    let target = blend(vectors, weights);
    if (strength < 1) {
      target = interpolate(await this.predictVector(content), target, strength);
      timings.predictorRuns += 1;
    }
    timings.predictorMs = performance.now() - started;

    const { width, height } = content;
    const pixels = toFloat(content);
    const padded = padToMultiple(pixels, height, width, multiple);
    const names = this.transform.inputNames;
    const feeds = {
      [names[0]]: new ort.Tensor("float32", padded.data, [1, padded.height, padded.width, 3]),
      [names[1]]: new ort.Tensor("float32", target, [1, 1, 1, dim]),
    };
    started = performance.now();
    const outputs = await this.transform.run(feeds);
    timings.transformMs = performance.now() - started;
    const output = outputs[this.transform.outputNames[0]];
    let stylized = cropFloat(output.data, padded.width, height, width);
    output.dispose?.();
    if (preserveColor) stylized = preserveColour(stylized, pixels);
    return { rgba: toRGBA(stylized, width, height), width, height, timings };
  }

  /** Just the transformer on a fixed input: for benchmarks (median of `runs` after a warm-up). */
  async timeTransform(width, height, runs = 5) {
    const ort = this.runtime.ort;
    const pixels = new Float32Array(width * height * 3).map((_, i) => ((i * 2654435761) % 1000) / 1000);
    const vector = new Float32Array(this.info.style_dim).fill(0.1);
    const names = this.transform.inputNames;
    const feeds = () => ({
      [names[0]]: new ort.Tensor("float32", pixels, [1, height, width, 3]),
      [names[1]]: new ort.Tensor("float32", vector, [1, 1, 1, this.info.style_dim]),
    });
    return timeRuns(this.transform, feeds, runs);
  }

  /** The predictor on one 256 px square: for benchmarks. */
  async timePredictor(runs = 5) {
    const ort = this.runtime.ort, size = this.info.style_size;
    const pixels = new Float32Array(size * size * 3).map((_, i) => ((i * 40503) % 997) / 997);
    const feeds = () => ({ [this.predictor.inputNames[0]]: new ort.Tensor("float32", pixels, [1, size, size, 3]) });
    return timeRuns(this.predictor, feeds, runs);
  }
}

async function timeRuns(session, feeds, runs) {
  await session.run(feeds()); // warm-up
  const times = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await session.run(feeds());
    times.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return times;
}
