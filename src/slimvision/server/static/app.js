// The slimvision page: tabs, style transfer in the browser (styletransfer.js) with a server
// fallback, and the other systems through the JSON API. Plain ES modules, no build step.

import { BrowserStyleModel } from "./styletransfer.js";

const MAX_CONTENT_SIDE = 1024; // like the server's --max-side default
const MAX_STYLES = 4;

const $ = (selector, root = document) => root.querySelector(selector);

// --------------------------------------------------------------------------- helpers
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch() that turns the API's JSON errors ({"error": {"code", "message"}}) into ApiError. */
async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the server (${error.message})`);
  }
  if (!response.ok) {
    let code = "http_error", message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) ({ code, message } = body.error);
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

function showError(element, error) {
  if (!element) return;
  if (!error) {
    element.hidden = true;
    element.textContent = "";
    return;
  }
  element.hidden = false;
  element.textContent = error instanceof ApiError && error.status ? `${error.message} (${error.status} ${error.code})` : error.message || String(error);
}

function formatBytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${(bytes / 1e3).toFixed(0)} kB`;
}

const ms = (value) => `${value.toFixed(0)} ms`;
/** "1 photo", "3 photos". */
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/** Decode an image file without colour management, EXIF orientation applied. */
async function decodeBitmap(blob, resize = null) {
  const options = { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" };
  if (resize) Object.assign(options, { resizeWidth: resize.width, resizeHeight: resize.height, resizeQuality: "high" });
  try {
    return await createImageBitmap(blob, options);
  } catch {
    throw new Error("this file is not an image the browser can decode");
  }
}

/** RGBA pixels of an image file ({data, width, height, channels: 4}); longer side capped at maxSide. */
async function readPixels(blob, maxSide = null) {
  let bitmap = await decodeBitmap(blob);
  const original = { width: bitmap.width, height: bitmap.height };
  let resized = false;
  if (maxSide && Math.max(bitmap.width, bitmap.height) > maxSide) {
    const scale = maxSide / Math.max(bitmap.width, bitmap.height);
    const size = { width: Math.max(1, Math.round(bitmap.width * scale)), height: Math.max(1, Math.round(bitmap.height * scale)) };
    bitmap.close();
    bitmap = await decodeBitmap(blob, size);
    resized = true;
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  const image = { data, width: bitmap.width, height: bitmap.height, channels: 4 };
  bitmap.close();
  return { image, original, resized };
}

function putPixels(canvas, rgba, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
}

/** Draw an image file on a canvas at its own size; returns the canvas's 2D context. */
async function drawFile(canvas, blob) {
  const bitmap = await decodeBitmap(blob);
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context;
}

/** A labelled box [x0, y0, x1, y1] in image pixels. */
function drawBox(context, box, label, colour) {
  const [x0, y0, x1, y1] = box;
  const scale = Math.max(1, Math.max(context.canvas.width, context.canvas.height) / 500);
  context.lineWidth = 2 * scale;
  context.strokeStyle = colour;
  context.strokeRect(x0, y0, x1 - x0, y1 - y0);
  if (!label) return;
  context.font = `${Math.round(14 * scale)}px sans-serif`;
  const width = context.measureText(label).width + 6 * scale, height = 18 * scale;
  const top = y0 >= height ? y0 - height : y1;
  context.fillStyle = colour;
  context.fillRect(x0, top, width, height);
  context.fillStyle = "#fff";
  context.textBaseline = "middle";
  context.fillText(label, x0 + 3 * scale, top + height / 2);
}

function canvasBlob(canvas, type = "image/png") {
  return new Promise((resolve) => canvas.toBlob(resolve, type));
}

function setBusy(form, busy) {
  for (const button of form.querySelectorAll("button")) button.disabled = busy;
  form.setAttribute("aria-busy", String(busy));
}

/** Run a form's async handler with busy state and error display. */
function handle(form, work) {
  const error = $(".error", form);
  return async (event) => {
    event?.preventDefault();
    showError(error, null);
    setBusy(form, true);
    form.dataset.state = "running";
    try {
      await work();
      form.dataset.state = "done";
    } catch (failure) {
      console.error(failure);
      showError(error, failure);
      form.dataset.state = "error";
    } finally {
      setBusy(form, false);
    }
  };
}

// --------------------------------------------------------------------------- tabs
function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    history.replaceState(null, "", `#${tab.id.replace("tab-", "")}`);
    tab.dispatchEvent(new CustomEvent("tab-shown", { bubbles: true }));
  };
  for (const tab of tabs) tab.addEventListener("click", () => select(tab));
  const initial = tabs.find((tab) => tab.id === `tab-${location.hash.slice(1)}`);
  if (initial) select(initial);
}

// --------------------------------------------------------------------------- style transfer
const style = {
  catalogue: null,     // /api/style/models
  samples: { content: [], styles: [] },
  content: null,       // {blob, name, key}
  loaded: new Map(),   // model name -> Promise<BrowserStyleModel>
  browserBroken: null, // the error that made the page use the server for good
};

function sampleSource(kind, name) {
  const entry = style.samples[kind].find((item) => item.name === name);
  return async () => {
    const response = await api(entry.url);
    return { blob: await response.blob(), name, key: `sample:${kind}/${name}` };
  };
}

const fileSource = (file) => ({ blob: file, name: file.name, key: `file:${file.name}:${file.size}:${file.lastModified}` });

function addStyleRow(sampleName = "") {
  const rows = $("#style-rows");
  if (rows.children.length >= MAX_STYLES) return;
  const row = document.createElement("div");
  row.className = "style-row";
  row.innerHTML = `
    <img class="thumb" alt="">
    <div>
      <input type="file" class="style-file" accept="image/*" aria-label="style image">
      <select class="style-sample" aria-label="or a sample painting"><option value="">or a sample…</option></select>
      <label class="weight">weight <output>1.00</output>
        <input type="range" class="style-weight" min="0" max="1" step="0.05" value="1"></label>
    </div>
    <button type="button" class="remove" aria-label="remove this style">×</button>`;
  const select = $(".style-sample", row);
  for (const item of style.samples.styles) select.add(new Option(item.name.replace(/\.\w+$/, "").replace(/_/g, " "), item.name));
  row.source = null;
  const setThumb = (blob) => { $(".thumb", row).src = URL.createObjectURL(blob); };
  const loadSample = async () => {
    if (!select.value) return;
    $(".style-file", row).value = "";
    row.source = await sampleSource("styles", select.value)();
    setThumb(row.source.blob);
  };
  select.addEventListener("change", loadSample);
  $(".style-file", row).addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (!file) return;
    select.value = "";
    row.source = fileSource(file);
    setThumb(file);
  });
  const weight = $(".style-weight", row);
  weight.addEventListener("input", () => { $("output", row).textContent = Number(weight.value).toFixed(2); });
  $(".remove", row).addEventListener("click", () => {
    if (rows.children.length > 1) row.remove();
    updateStyleButtons();
  });
  rows.append(row);
  updateStyleButtons();
  if (!sampleName) return Promise.resolve();
  select.value = sampleName;
  // The caller may wait for the sample: the page is not ready until its first style has loaded
  // (else a click on Stylize or Start camera meanwhile finds no style).
  return loadSample();
}

function updateStyleButtons() {
  const rows = $("#style-rows").children.length;
  $("#add-style").disabled = rows >= MAX_STYLES;
  for (const button of document.querySelectorAll("#style-rows .remove")) button.disabled = rows === 1;
}

async function setContent(source) {
  style.content = source;
  const { image, original, resized } = await readPixels(source.blob, MAX_CONTENT_SIDE);
  style.contentPixels = { image, resized, original, key: source.key };
  putPixels($("#before-canvas"), image.data, image.width, image.height);
  $("#content-note").textContent = resized
    ? `${original.width}×${original.height}, scaled down to ${image.width}×${image.height} (longest side ${MAX_CONTENT_SIDE} px) before stylizing`
    : `${image.width}×${image.height}`;
}

function modelInfo() {
  return style.catalogue.models.find((item) => item.name === $("#model").value);
}

function describeModel() {
  const info = modelInfo();
  if (!info) return;
  const bytes = info.predictor.bytes + info.transform.bytes;
  $("#model-note").textContent = `${info.kind === "fast" ? "fast (distilled)" : "teacher"}: downloads ${formatBytes(bytes)} ` +
    `(predictor ${formatBytes(info.predictor.bytes)} + transformer ${formatBytes(info.transform.bytes)}) on first use`;
}

function loadModel(info) {
  if (!style.loaded.has(info.name)) {
    const promise = BrowserStyleModel.load(info);
    promise.catch(() => style.loaded.delete(info.name));
    style.loaded.set(info.name, promise);
  }
  return style.loaded.get(info.name);
}

function showInfo(rows) {
  const list = $("#style-info");
  list.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    list.append(dt, dd);
  }
}

function status(text) {
  $("#style-status").textContent = text;
}

async function styleSources() {
  const rows = [...document.querySelectorAll("#style-rows .style-row")];
  const chosen = rows.filter((row) => row.source);
  if (!chosen.length) throw new Error("choose at least one style image");
  const weights = chosen.map((row) => Number($(".style-weight", row).value));
  if (!(weights.reduce((a, b) => a + b, 0) > 0)) throw new Error("at least one style needs a weight above 0");
  return { sources: chosen.map((row) => row.source), weights };
}

async function stylizeInBrowser(info, sources, weights, strength, preserveColor) {
  const loading = !style.loaded.has(info.name);
  if (loading) status(`downloading the ${info.kind} model (${formatBytes(info.predictor.bytes + info.transform.bytes)}) and the runtime…`);
  const model = await loadModel(info);
  status("stylizing in the browser…");
  const styles = [];
  for (const source of sources) {
    const { image } = await readPixels(source.blob);
    styles.push({ image, key: source.key });
  }
  const started = performance.now();
  const { image } = style.contentPixels;
  const result = await model.stylize(image, styles, { weights, strength, preserveColor });
  const total = performance.now() - started;
  putPixels($("#result-canvas"), result.rgba, result.width, result.height);
  const t = result.timings;
  return [
    ["ran", `in this browser, ${model.backend}`],
    ["model", `${info.name} (${info.kind})`],
    ["model download", formatBytes(info.predictor.bytes + info.transform.bytes)],
    ["model load", loading ? `${ms(model.loadMs)} (download + session creation)` : "already loaded"],
    ["predictor", `${ms(t.predictorMs)} (${count(t.predictorRuns, "run")}; style vectors are cached)`],
    ["transformer", `${ms(t.transformMs)} at ${result.width}×${result.height}`],
    ["total", ms(total)],
  ];
}

async function stylizeOnServer(info, sources, weights, strength, preserveColor, reason) {
  status("stylizing on the server…");
  const form = new FormData();
  form.append("content", style.content.blob, style.content.name);
  for (const source of sources) form.append("style", source.blob, source.name);
  if (sources.length > 1) form.append("weights", weights.join(","));
  form.append("strength", String(strength));
  form.append("preserve_color", String(preserveColor));
  form.append("model", info.name);
  const started = performance.now();
  const response = await api("/api/style/stylize", { method: "POST", body: form });
  const blob = await response.blob();
  const total = performance.now() - started;
  const { image } = await readPixels(blob);
  putPixels($("#result-canvas"), image.data, image.width, image.height);
  return [
    ["ran", `on the server${reason ? ` (${reason})` : ""}`],
    ["model", `${info.name} (${info.kind})`],
    ["server inference", `${response.headers.get("X-Inference-Ms") || "?"} ms`],
    ["round trip", ms(total)],
  ];
}

async function stylize() {
  if (!style.content) throw new Error("choose a content photo");
  const info = modelInfo();
  const { sources, weights } = await styleSources();
  const strength = Number($("#strength").value), preserveColor = $("#preserve-color").checked;
  let rows, where;
  const forced = $("#force-server").checked;
  if (!forced && !style.browserBroken) {
    try {
      rows = await stylizeInBrowser(info, sources, weights, strength, preserveColor);
      where = "browser";
    } catch (error) {
      if (error instanceof ApiError) throw error;
      console.warn("in-browser style transfer failed; asking the server", error);
      style.browserBroken = error;
    }
  }
  if (!rows) {
    const reason = forced ? "as asked" : `this browser could not run the model: ${style.browserBroken.message}`;
    rows = await stylizeOnServer(info, sources, weights, strength, preserveColor, reason);
    where = "server";
  }
  showInfo(rows);
  document.body.dataset.styleRanOn = where;
  status(where === "browser" ? "done (in this browser)" : "done (ran on the server)");
  showResult();
}

function showResult() {
  const before = $("#before-canvas"), after = $("#result-canvas");
  if (before.width !== after.width || before.height !== after.height) {
    // The server scaled the content differently (it should not, under 1024 px): show the result alone.
    before.width = after.width;
    before.height = after.height;
  }
  $("#compare").hidden = false;
  $("#compare-label").hidden = false;
  updateCompare();
  canvasBlob(after).then((blob) => {
    const link = $("#download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.hidden = false;
  });
}

function updateCompare() {
  const percent = Number($("#compare-slider").value);
  $("#after-clip").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("#compare-handle").style.left = `${percent}%`;
}

async function setUpStyle() {
  const form = $("#style-form");
  const [catalogue, samples] = await Promise.all([
    api("/api/style/models").then((r) => r.json()),
    api("/api/style/samples").then((r) => r.json()),
  ]);
  style.catalogue = catalogue;
  style.samples = samples;
  const modelSelect = $("#model");
  for (const item of catalogue.models) {
    const label = `${item.kind === "fast" ? "fast" : "teacher"}: ${item.name} (${formatBytes(item.predictor.bytes + item.transform.bytes)})`;
    modelSelect.add(new Option(label, item.name, item.name === catalogue.default, item.name === catalogue.default));
  }
  modelSelect.addEventListener("change", describeModel);
  describeModel();

  const contentSelect = $("#content-sample");
  for (const item of samples.content) contentSelect.add(new Option(item.name.replace(/\.\w+$/, "").replace(/_/g, " "), item.name));
  contentSelect.addEventListener("change", handle(form, async () => {
    if (!contentSelect.value) return;
    $("#content-file").value = "";
    await setContent(await sampleSource("content", contentSelect.value)());
  }));
  $("#content-file").addEventListener("change", handle(form, async () => {
    const [file] = $("#content-file").files;
    if (!file) return;
    contentSelect.value = "";
    await setContent(fileSource(file));
  }));
  $("#add-style").addEventListener("click", () => addStyleRow());
  $("#strength").addEventListener("input", () => { $("#strength-value").textContent = Number($("#strength").value).toFixed(2); });
  $("#compare-slider").addEventListener("input", updateCompare);
  form.addEventListener("submit", handle(form, stylize));

  // Start with a sample photo and painting, so one click shows what the page does.
  const firstStyle = samples.styles.find((item) => item.name.startsWith("starry")) || samples.styles[0];
  const firstRow = addStyleRow(firstStyle ? firstStyle.name : "");
  if (samples.content.length) {
    contentSelect.value = samples.content[0].name;
    await setContent(await sampleSource("content", contentSelect.value)());
  }
  await firstRow;
  form.dataset.state = "ready";
}

// --------------------------------------------------------------------------- live camera
// The style tab's settings, painted on camera frames by livecamera.js (loaded on the first Start).
const live = {
  camera: null,           // LiveCamera
  cancelled: false,       // Stop asked (leaving the tab) while the camera was still opening
  stylePixels: new Map(), // decoded style images by source key, while they stay chosen
};

/** The chosen styles' pixels for BrowserStyleModel.stylize, decoded once per image rather than
 *  once per frame (their vectors the model caches itself). */
async function liveStyles(sources) {
  const keys = new Set(sources.map((source) => source.key));
  for (const key of [...live.stylePixels.keys()]) if (!keys.has(key)) live.stylePixels.delete(key);
  const styles = [];
  for (const source of sources) {
    if (!live.stylePixels.has(source.key)) live.stylePixels.set(source.key, (await readPixels(source.blob)).image);
    styles.push({ image: live.stylePixels.get(source.key), key: source.key });
  }
  return styles;
}

/** One camera frame through the page's own path, with the form's settings as they are now, so
 *  changing a style, the strength or the model while the camera runs changes the painting. */
async function paintLiveFrame(image) {
  const model = await loadModel(modelInfo());
  const { sources, weights } = await styleSources();
  const options = { weights, strength: Number($("#strength").value), preserveColor: $("#preserve-color").checked };
  live.backend = model.backend;
  return model.stylize(image, await liveStyles(sources), options);
}

function setLiveState(state) {
  $("#live").dataset.state = state;
  $("#live-start").disabled = state === "starting" || state === "running";
  $("#live-stop").disabled = state !== "running";
}

const liveStatus = (text) => { $("#live-status").textContent = text; };

function showLiveRate(stats) {
  const section = $("#live");
  section.dataset.frames = String(stats.painted);
  section.dataset.fps = stats.fps ? stats.fps.toFixed(2) : "";
  $("#live-rate").textContent = stats.fps
    ? `${stats.fps.toFixed(1)} frames/s (median of the last ${count(stats.window, "frame")})`
    : "measuring the rate…";
  const camera = stats.camera.fps ? `, ${stats.camera.fps.toFixed(0)} frames/s` : "";
  const skipped = stats.skipped === null ? "" : `, ${count(stats.skipped, "camera frame")} skipped`;
  const shown = stats.upsampleMs === null ? "" : ` · shown at ${stats.shown.width}×${stats.shown.height} ` +
    `along the camera's edges in ${ms(stats.upsampleMs)}`;
  $("#live-detail").textContent = `painting ${stats.work.width}×${stats.work.height} in ${ms(stats.paintMs)} ` +
    `(median)${shown} · camera ${stats.camera.width}×${stats.camera.height}${camera} · ` +
    `${count(stats.painted, "frame")} painted${skipped} · ${live.backend}`;
}

function liveFailed(error) {
  console.error(error);
  live.camera?.stop();
  setLiveState("error");
  liveStatus("");
  showError($("#live-error"), error);
}

async function loadLiveModel() {
  const info = modelInfo();
  if (!style.loaded.has(info.name)) liveStatus(`downloading the ${info.kind} model (${formatBytes(info.predictor.bytes + info.transform.bytes)}) and the runtime…`);
  try {
    return await loadModel(info);
  } catch (error) {
    // No server fallback here: a round trip per frame would not be live.
    throw new Error(`the live camera paints in this browser, which cannot run the model: ${error.message || error}`);
  }
}

async function startLive() {
  showError($("#live-error"), null);
  setLiveState("starting");
  live.cancelled = false;
  try {
    if (!style.catalogue) throw new Error("the page is still listing the style models: try again in a moment");
    await styleSources(); // no style chosen: say so before asking for the camera
    const model = await loadLiveModel();
    liveStatus("opening the camera…");
    const { LiveCamera } = await import("./livecamera.js");
    live.camera ??= new LiveCamera({
      video: $("#live-video"), canvas: $("#live-canvas"), paint: paintLiveFrame, report: showLiveRate, fail: liveFailed,
    });
    live.camera.sharp = $("#live-sharp").checked;
    await live.camera.start(Number($("#live-size").value));
    setLiveState("running");
    if (live.cancelled) return stopLive();
    liveStatus(`camera on, painting in this browser (${model.backend})`);
  } catch (error) {
    liveFailed(error);
  }
}

function stopLive() {
  if ($("#live").dataset.state === "starting") live.cancelled = true; // stopped once it has started
  if (!live.camera?.running) return;
  live.camera.stop();
  setLiveState("stopped");
  liveStatus(`stopped after ${count(live.camera.painted, "frame")}; the camera is released`);
}

function setUpLive() {
  $("#live-start").addEventListener("click", startLive);
  $("#live-stop").addEventListener("click", stopLive);
  $("#live-size").addEventListener("change", () => {
    if (live.camera) live.camera.side = Number($("#live-size").value);
  });
  $("#live-sharp").addEventListener("change", () => {
    if (live.camera) live.camera.sharp = $("#live-sharp").checked;
  });
  // Leaving the tab or the page turns the camera off.
  document.addEventListener("tab-shown", (event) => { if (event.target.id !== "tab-style") stopLive(); });
  window.addEventListener("pagehide", stopLive);
}

// --------------------------------------------------------------------------- faces
async function refreshGallery() {
  const list = $("#gallery-list");
  const { people } = await (await api("/api/faces/gallery")).json();
  list.replaceChildren();
  if (!people.length) {
    list.innerHTML = '<li class="note">nobody enrolled yet</li>';
    return;
  }
  for (const person of people) {
    const item = document.createElement("li");
    item.textContent = `${person.name} (${count(person.templates, "photo")}) `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "remove";
    remove.addEventListener("click", handle($("#enroll-form"), async () => {
      await api(`/api/faces/gallery/${encodeURIComponent(person.name)}`, { method: "DELETE", headers: authHeaders() });
      $("#enroll-result").textContent = `removed ${person.name}`;
      await refreshGallery();
    }));
    item.append(remove);
    list.append(item);
  }
}

function authHeaders() {
  const token = $("#admin-token").value.trim();
  if (!token) throw new Error("gallery changes need the server's admin token");
  return { Authorization: `Bearer ${token}` };
}

function setUpFaces() {
  const verify = $("#verify-form");
  verify.addEventListener("submit", handle(verify, async () => {
    const [a] = $("#verify-a").files, [b] = $("#verify-b").files;
    const form = new FormData();
    form.append("a", a);
    form.append("b", b);
    const result = await (await api("/api/faces/verify", { method: "POST", body: form })).json();
    const colour = result.same ? "#1a7f37" : "#cf222e";
    for (const [key, file] of [["a", a], ["b", b]]) {
      const context = await drawFile($(`#verify-canvas-${key}`), file);
      drawBox(context, result.boxes[key], key.toUpperCase(), colour);
    }
    const verdict = $("#verify-result");
    verdict.textContent = `${result.same ? "Same person" : "Different people"}: distance ${result.distance.toFixed(3)} ` +
      `${result.same ? "<" : "≥"} threshold ${result.threshold}`;
    verdict.className = `verdict ${result.same ? "yes" : "no"}`;
  }));

  const identify = $("#identify-form");
  identify.addEventListener("submit", handle(identify, async () => {
    const [file] = $("#identify-image").files;
    const form = new FormData();
    form.append("image", file);
    const result = await (await api("/api/faces/identify", { method: "POST", body: form })).json();
    const context = await drawFile($("#identify-canvas"), file);
    for (const face of result.faces) {
      const label = face.name ? `${face.name} (${face.distance.toFixed(2)})` : "unknown";
      drawBox(context, face.box, label, face.name ? "#1a7f37" : "#bf8700");
    }
    const names = result.faces.map((face) => face.name || "unknown");
    $("#identify-result").textContent = result.faces.length
      ? `${count(result.faces.length, "face")}: ${names.join(", ")}`
      : "no face found";
  }));

  const enroll = $("#enroll-form");
  enroll.addEventListener("submit", handle(enroll, async () => {
    const form = new FormData();
    form.append("name", $("#enroll-name").value.trim());
    form.append("image", $("#enroll-image").files[0]);
    const result = await (await api("/api/faces/enroll", { method: "POST", body: form, headers: authHeaders() })).json();
    $("#enroll-result").textContent = `enrolled ${result.name} (${count(result.templates, "photo")})`;
    await refreshGallery();
  }));
  $("#tab-faces").addEventListener("tab-shown", () => refreshGallery().catch((error) => showError($(".error", enroll), error)));
}

// --------------------------------------------------------------------------- GAN
function setUpGan() {
  const form = $("#gan-form");
  let shown = null;
  const sample = handle(form, async () => {
    const seed = Number($("#gan-seed").value), n = Number($("#gan-n").value);
    const started = performance.now();
    const blob = await (await api(`/api/gan/sample?seed=${seed}&n=${n}`)).blob();
    const image = $("#gan-grid");
    if (shown) URL.revokeObjectURL(shown);
    shown = URL.createObjectURL(blob);
    image.src = shown;
    image.hidden = false;
    $("#gan-status").textContent = `seed ${seed}, ${count(n, "image")} in ${ms(performance.now() - started)}`;
  });
  form.addEventListener("submit", sample);
  $("#gan-random").addEventListener("click", () => {
    $("#gan-seed").value = Math.floor(Math.random() * 2 ** 31);
    sample();
  });
}

// --------------------------------------------------------------------------- VAE
/** A 128 px grey head phantom (ellipses), for trying the denoiser without a scan. */
async function phantom() {
  const canvas = new OffscreenCanvas(128, 128);
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, 128, 128);
  const ellipse = (x, y, rx, ry, angle, grey) => {
    context.fillStyle = `rgb(${grey},${grey},${grey})`;
    context.beginPath();
    context.ellipse(x, y, rx, ry, angle, 0, 2 * Math.PI);
    context.fill();
  };
  ellipse(64, 64, 46, 58, 0, 200);
  ellipse(64, 66, 41, 52, 0, 90);
  ellipse(50, 58, 8, 20, -0.3, 30);
  ellipse(78, 58, 8, 20, 0.3, 30);
  ellipse(64, 88, 14, 8, 0, 150);
  ellipse(64, 40, 10, 6, 0, 140);
  return canvas.convertToBlob({ type: "image/png" });
}

/**
 * One image a form works on, from a file input or a "generate" button (whichever was used last):
 * `show` draws it; returns a getter for the current image (a Blob, or null before the first).
 */
function imageSource(form, fileInput, generateButton, generate, show) {
  let current = null;
  const use = async (blob) => {
    current = blob;
    await show(blob);
  };
  fileInput.addEventListener("change", handle(form, async () => {
    const [file] = fileInput.files;
    if (file) await use(file);
  }));
  generateButton.addEventListener("click", handle(form, async () => {
    fileInput.value = "";
    await use(await generate());
  }));
  return () => current;
}

function setUpVae() {
  const form = $("#vae-form");
  const slice = imageSource(form, $("#vae-image"), $("#vae-phantom"), phantom, (blob) => drawFile($("#vae-original"), blob));
  $("#vae-noise").addEventListener("input", () => { $("#vae-noise-value").textContent = Number($("#vae-noise").value).toFixed(2); });
  form.addEventListener("submit", handle(form, async () => {
    if (!slice()) throw new Error("choose a slice (or use the generated phantom)");
    const body = new FormData();
    body.append("image", slice(), "slice.png");
    body.append("noise", $("#vae-noise").value);
    const result = await (await api("/api/vae/denoise", { method: "POST", body })).json();
    $("#vae-noisy").src = result.noisy;
    $("#vae-denoised").src = result.denoised;
  }));
}

// --------------------------------------------------------------------------- numerals
/** A page with a few numerals in the browser's serif font, for trying the reader. */
async function numeralPage() {
  const canvas = new OffscreenCanvas(640, 420);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, 640, 420);
  context.fillStyle = "#111";
  context.textBaseline = "top";
  const lines = [["XIV", 60, 50, 56], ["MCMXCIV", 260, 70, 48], ["VII", 80, 200, 64], ["MMXXV", 300, 230, 52], ["XLII", 140, 320, 44]];
  for (const [text, x, y, size] of lines) {
    context.font = `${size}px serif`;
    context.fillText(text, x, y);
  }
  return canvas.convertToBlob({ type: "image/png" });
}

function setUpNumerals() {
  const form = $("#numerals-form");
  const page = imageSource(form, $("#numerals-image"), $("#numerals-sample"), numeralPage, async (blob) => {
    await drawFile($("#numerals-canvas"), blob);
    $("#numerals-table").hidden = true;
    $("#numerals-status").textContent = "";
  });
  form.addEventListener("submit", handle(form, async () => {
    if (!page()) throw new Error("choose a page image (or use the generated page)");
    const body = new FormData();
    body.append("image", page(), "page.png");
    const started = performance.now();
    const result = await (await api("/api/numerals/read", { method: "POST", body })).json();
    const context = await drawFile($("#numerals-canvas"), page());
    const rows = $("#numerals-table tbody");
    rows.replaceChildren();
    for (const item of result.numerals) {
      const label = item.value === null ? `${item.text} (?)` : `${item.text} = ${item.value}`;
      drawBox(context, item.box, label, item.standard ? "#0969da" : "#bf8700");
      const row = rows.insertRow();
      for (const value of [item.text, item.value ?? "—", item.confidence.toFixed(2), item.standard ? "yes" : "no"]) {
        row.insertCell().textContent = value;
      }
    }
    $("#numerals-table").hidden = !result.numerals.length;
    $("#numerals-status").textContent = `${count(result.numerals.length, "numeral")} ` +
      `in ${ms(performance.now() - started)}`;
  }));
}

// --------------------------------------------------------------------------- start
setUpTabs();
setUpLive();
setUpFaces();
setUpGan();
setUpVae();
setUpNumerals();
setUpStyle().catch((error) => {
  console.error(error);
  showError($("#style-error"), error);
  $("#style-form").dataset.state = "error";
});
