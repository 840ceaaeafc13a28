// The style tab's live camera mode (issue 28): camera frames -> a small working size -> the
// page's in-browser style model -> a canvas, as fast as this browser paints. One frame is painted
// at a time, and the next one is whichever frame the camera shows when that painting ends: frames
// that arrive meanwhile are skipped, never queued, so the picture never falls behind the camera.
// The painting itself is a callback (app.js passes the style tab's model and settings), so this
// module knows cameras and frames, not styles. Loaded on the first Start only.
//
// With `sharp` on (the default) the painting is shown at twice its size: the camera frame at that
// size plus the painting's residual upsampled along the frame's edges (guided.js, the CLI's
// guided filter), like `style live --realtime`; off, the browser zooms the small painting.

import { upsampleResidual } from "./guided.js";

/** How many recent frames the shown rate is the median of. */
export const RATE_WINDOW = 30;

/** Longest wait for a new camera frame before painting the current one anyway (ms): a browser
 *  that stops reporting frames (a hidden video, a throttled tab) must not stall the loop. */
const FRAME_WAIT_MS = 500;

/** Frames per second from the median interval between the last `window` painted frames: a median,
 *  so one slow frame (V8 tiering up, a garbage collection) does not swing the figure. */
export class RateMeter {
  constructor(window = RATE_WINDOW) {
    this.window = window;
    this.times = [];
  }

  tick(now = performance.now()) {
    this.times.push(now);
    if (this.times.length > this.window + 1) this.times.shift();
  }

  /** Frames per second, or null before three frames. */
  get fps() {
    if (this.times.length < 3) return null;
    const intervals = this.times.slice(1).map((time, i) => time - this.times[i]).sort((a, b) => a - b);
    const middle = intervals.length >> 1;
    const median = intervals.length % 2 ? intervals[middle] : (intervals[middle - 1] + intervals[middle]) / 2;
    return median > 0 ? 1000 / median : null;
  }

  /** How many intervals the figure is the median of. */
  get frames() {
    return Math.max(0, this.times.length - 1);
  }
}

/** A one-line message for getUserMedia's failures (DOMException names from the spec). */
export function cameraMessage(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "camera access was denied: allow the camera for this page in the browser, then press Start again";
    case "NotFoundError":
    case "OverconstrainedError":
      return "no camera found: connect one, then press Start again";
    case "NotReadableError":
    case "AbortError":
      return "the camera could not be started (is another program using it?)";
    default:
      return `the camera could not be opened: ${error?.message || error}`;
  }
}

/** The camera's stream; throws an Error with a one-line message. */
export async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    // getUserMedia exists only in secure contexts: https, or http on localhost / 127.0.0.1.
    throw new Error("this browser offers no camera to this page (cameras need https or a localhost address)");
  }
  try {
    // 1280x720 asked, not required: any camera will do, the painting is smaller anyway.
    return await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
  } catch (error) {
    throw new Error(cameraMessage(error));
  }
}

/** The working size for a frame: longest side at most `side`, never larger than the frame. */
export function workingSize(width, height, side) {
  const scale = Math.min(1, side / Math.max(width, height));
  return { width: Math.max(4, Math.round(width * scale)), height: Math.max(4, Math.round(height * scale)) };
}

/**
 * The camera loop. `paint(image)` gets RGBA pixels {data, width, height, channels: 4} at the
 * working size and resolves to {rgba, width, height} (BrowserStyleModel.stylize's answer);
 * `report(stats)` is called after every painted frame, `fail(error)` once if painting fails.
 */
export class LiveCamera {
  constructor({ video, canvas, paint, report = () => {}, fail = () => {} }) {
    Object.assign(this, { video, canvas, paint, report, fail });
    this.stream = null;
    this.running = false;
    this.sharp = true;
    this.canvases = new Map(); // OffscreenCanvas + context per frame size grabbed
  }

  /** Open the camera and start painting at most `side` px on the longer side. */
  async start(side) {
    if (this.running) return;
    this.stream = await openCamera();
    this.side = side;
    this.meter = new RateMeter();
    Object.assign(this, { painted: 0, cameraFrames: 0, presentedBase: null, paintedUpTo: -1, paintMs: [], upsampleMs: [] });
    this.video.srcObject = this.stream;
    try {
      await this.video.play();
    } catch (error) {
      this.stop();
      throw new Error(`the camera's picture cannot be shown: ${error.message}`);
    }
    this.running = true;
    this.watchEnd();
    this.watchFrames();
    // A token per start: a painting still in flight from before a Stop + Start must end its
    // loop, not run beside the new one.
    const session = (this.session = Symbol("camera session"));
    this.loop = this.run(session).catch((error) => {
      if (this.session !== session) return;
      this.stop();
      this.fail(error);
    });
  }

  /** Stop painting and release the camera at once (the light goes off); a painting in flight
   *  finishes but is not shown. */
  stop() {
    this.running = false;
    this.session = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
    this.wake?.();
  }

  /** A camera that ends by itself (unplugged, taken by another program) stops the loop with a
   *  message, rather than leaving the last picture painted again and again. ("ended" does not
   *  fire for the page's own track.stop().) */
  watchEnd() {
    const stream = this.stream;
    for (const track of stream.getVideoTracks()) {
      track.addEventListener("ended", () => {
        if (this.stream !== stream) return;
        this.stop();
        this.fail(new Error("the camera stopped sending pictures (unplugged, or taken by another program)"));
      });
    }
  }

  /** Count the camera's frames as the video element presents them, so the loop paints each
   *  frame at most once and can say how many it skipped. */
  watchFrames() {
    this.framesKnown = "requestVideoFrameCallback" in this.video;
    if (!this.framesKnown) return;
    const stream = this.stream;
    const onFrame = (_now, metadata) => {
      if (this.stream !== stream) return; // stopped, or a later start owns the video
      // presentedFrames counts for the video element's life: count from this stream's first.
      this.presentedBase ??= metadata.presentedFrames - 1;
      this.cameraFrames = metadata.presentedFrames - this.presentedBase;
      this.wake?.();
      this.video.requestVideoFrameCallback(onFrame);
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  /** Resolves when the camera has a frame not painted yet (or after FRAME_WAIT_MS). */
  newFrame() {
    if (!this.framesKnown || this.cameraFrames > this.paintedUpTo) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, FRAME_WAIT_MS);
      this.wake = () => { clearTimeout(timer); this.wake = null; resolve(); };
    });
  }

  /** The video's current frame as RGBA pixels: `image` at the working size, and with `sharp`
   *  the same frame at twice that size (capped at the camera's) as `frame`, the guide. */
  grab() {
    const { videoWidth, videoHeight } = this.video;
    if (!videoWidth || !videoHeight) return null; // no picture yet
    this.paintedUpTo = this.cameraFrames;
    // Both drawn in one task, so both are the same camera frame.
    const small = workingSize(videoWidth, videoHeight, this.side);
    const image = this.draw(small.width, small.height);
    const large = workingSize(videoWidth, videoHeight, 2 * this.side);
    const frame = this.sharp && large.width > small.width ? this.draw(large.width, large.height) : null;
    return { image, frame };
  }

  /** The video drawn at width x height, read back as RGBA pixels. */
  draw(width, height) {
    const key = `${width}x${height}`;
    if (!this.canvases.has(key)) {
      if (this.canvases.size >= 4) this.canvases.clear(); // sizes changed: drop the old ones
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.imageSmoothingQuality = "medium"; // mip-mapped: no aliasing when shrinking 4x
      this.canvases.set(key, context);
    }
    const context = this.canvases.get(key);
    context.drawImage(this.video, 0, 0, width, height);
    return { data: context.getImageData(0, 0, width, height).data, width, height, channels: 4 };
  }

  async run(session) {
    const current = () => this.running && this.session === session;
    while (current()) {
      await this.newFrame();
      if (!current()) break;
      const grabbed = this.grab();
      if (!grabbed) {
        await new Promise((resolve) => setTimeout(resolve, 30));
        continue;
      }
      const { image, frame } = grabbed;
      let started = performance.now();
      const result = await this.paint(image);
      if (!current()) break; // stopped while painting: the camera is already released
      remember(this.paintMs, performance.now() - started);
      started = performance.now();
      this.show(frame ? this.sharpen(frame, image, result) : result);
      if (frame) remember(this.upsampleMs, performance.now() - started);
      this.painted += 1;
      this.meter.tick();
      this.report(this.stats(image));
    }
  }

  /** The painting at the guide frame's size, along its edges (guided.upsample_residual). */
  sharpen(frame, image, result) {
    const rgba = upsampleResidual(frame.data, frame.width, frame.height, image.data, result.rgba, image.width, image.height);
    return { rgba, width: frame.width, height: frame.height };
  }

  show({ rgba, width, height }) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  }

  stats(image) {
    const settings = this.stream?.getVideoTracks()[0]?.getSettings() ?? {};
    return {
      fps: this.meter.fps,
      window: this.meter.frames,
      paintMs: median(this.paintMs),
      upsampleMs: this.sharp ? median(this.upsampleMs) : null,
      shown: { width: this.canvas.width, height: this.canvas.height },
      painted: this.painted,
      skipped: this.framesKnown ? Math.max(0, this.cameraFrames - this.painted) : null,
      work: { width: image.width, height: image.height },
      camera: { width: this.video.videoWidth, height: this.video.videoHeight, fps: settings.frameRate ?? null },
    };
  }
}

/** Keep the last RATE_WINDOW values. */
function remember(values, value) {
  values.push(value);
  if (values.length > RATE_WINDOW) values.shift();
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}
