// The LungSeg page: open X-rays, segment them in the browser (the model runs in a worker), show
// and download the masks. Formats, limits, messages and the overlay come from vendor/rules.json.
import { loadSegmenter } from "./segmenter.js";
import { acceptAttribute, formatG, loadRules } from "./rules.js";
import { pageFormats } from "./decode.js";
import { encodeGreyPng, encodeMaskPng, encodeRgbPng, makeZip } from "./encode.js";
import { assess } from "./quality.js";
import { lungAreas, sideLabels } from "./measure.js";
import { manifestCsv, outputName, outputNames, overlayRgb } from "./results.js";
import { registerServiceWorker } from "./serviceworker.js";
import { describeValidation, formatList } from "./words.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const state = {
  rules: null, segmenter: null, results: [], queue: [], busy: false, nextId: 1, threshold: 0.5, opacity: 0.4,
  batch: { total: 0, done: 0 },
};
// For tests and benchmarks: the app's state, a promise that settles when the model is ready,
// where the model runs and how many tensors it holds.
window.lungsegApp = {
  state, ready: null,
  inWorker: () => Boolean(state.segmenter?.inWorker),
  numTensors: () => state.segmenter ? state.segmenter.numTensors() : 0,
};

const ZIP_NAME = "lungseg-results.zip";   // as the app names its zip

function formatMs(ms) { return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`; }

function applyRules(rules) {
  state.rules = rules;
  const formats = pageFormats(rules);
  $("#files").accept = acceptAttribute(formats);
  const names = formatList(formats.map((f) => f.name), "or");
  $("#drop-formats").textContent = `Drop ${names} X-rays here`;
  $("#drop-help").textContent = `Several at once are fine; up to ${formatG(rules.max_pixels / 1e6)} megapixels and ` +
    `${formatG(rules.max_file_bytes / 2 ** 20)} MB each, at least ${rules.min_side} pixels a side. ` +
    "16-bit images are stretched to 8 bits like the Python tool.";
  state.opacity = rules.overlay.opacity;
  $("#opacity").value = String(Math.round(rules.overlay.opacity * 100));
  $("#opacity-value").textContent = `${$("#opacity").value}%`;
}

async function init() {
  const backend = params.get("backend") || "auto";
  const modelUrl = params.get("model") || "model/";
  try {
    applyRules(await loadRules());
    const seg = await loadSegmenter({ modelUrl, backend });
    state.segmenter = seg;
    const m = seg.meta;
    state.threshold = m.threshold;
    $("#threshold").value = String(m.threshold);
    $("#threshold-value").textContent = Number(m.threshold).toFixed(2);
    $("#status").textContent = `${m.name} ${m.version} ready, running on ${seg.runsOn}. ` +
      `Model: ${m.dtype}, ${(m.bytes / 1e6).toFixed(1)} MB, loaded and warmed up in ${formatMs(seg.loadMs)}.`;
    if (seg.notes.length) console.info("LungSeg backend choice:", seg.notes.join("; "));
    if (seg.userNote) {
      $("#backend-note").hidden = false;
      $("#backend-note").textContent = seg.userNote;
    }
    const validation = describeValidation(m.metrics);
    $("#model-info").textContent = `Model ${m.name} ${m.version} (input ${m.input_size} px, threshold ${m.threshold}` +
      `${m.postprocess?.keep_largest ? `, keeps the ${m.postprocess.keep_largest} largest regions` : ""}` +
      `${m.postprocess?.fill_holes ? ", holes filled" : ""})${validation ? `, ${validation}` : ""}.`;
    for (const r of state.results) if (r.status === "pending") r.el.querySelector(".info").textContent = "waiting";
    document.body.dataset.ready = "true";
    pump();
  } catch (err) {
    $("#status").textContent = `The model could not be loaded: ${err.message || err}`;
    $("#status").classList.add("error");
    document.body.dataset.ready = "error";
    throw err;
  }
}

function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  if (!state.busy && !state.queue.length) state.batch = { total: 0, done: 0 };
  for (const file of files) {
    const result = { id: state.nextId++, name: file.name || `pasted-${state.nextId}.png`, file, status: "pending" };
    result.el = renderItem(result);
    state.results.push(result);
    state.queue.push(result);
  }
  state.batch.total += files.length;
  updateSummary();
  pump();
}

function renderItem(result) {
  const el = $("#result-template").content.firstElementChild.cloneNode(true);
  el.dataset.id = result.id;
  el.dataset.status = "pending";
  el.querySelector(".name").textContent = result.name;
  el.querySelector(".info").textContent = state.segmenter ? "waiting" : "waiting for the model";
  for (const [kind, what] of [["mask", "mask"], ["overlay", "overlay"], ["labels", "side labels"]]) {
    const button = el.querySelector(`.download-${kind}`);
    button.setAttribute("aria-label", `Download the ${what} of ${result.name} as PNG`);
    button.addEventListener("click", () => downloadOne(result, kind));
  }
  $("#results").appendChild(el);
  return el;
}

async function pump() {
  if (state.busy || !state.segmenter) return;
  state.busy = true;
  try {
    while (state.queue.length) {
      const result = state.queue.shift();
      updateProgress(result);
      await processOne(result);
      state.batch.done += 1;
      updateSummary();
    }
  } finally {
    state.busy = false;
    updateProgress(null);
  }
}

function setStatus(result, status) {
  result.status = status;
  result.el.dataset.status = status;
}

async function processOne(result) {
  const el = result.el;
  setStatus(result, "segmenting");
  el.querySelector(".info").textContent = "segmenting…";
  try {
    const out = await state.segmenter.segmentFile(result.file, state.threshold);
    Object.assign(result, { width: out.width, height: out.height, imageData: out.imageData, note: out.note,
      probability: out.probability, ms: out.ms, mask: out.mask, quality: out.quality, warnings: out.warnings,
      imageWarnings: out.imageWarnings, inverted: out.inverted, spacing: out.spacing || null,
      spacingSource: out.spacingSource || "", file: null });
    drawResult(result);
    el.querySelector(".pair").hidden = false;
    el.querySelector(".actions").hidden = false;
    setStatus(result, "done");
  } catch (err) {
    result.file = null;
    setStatus(result, "error");
    const decodeError = err.name === "ImageDecodeError";
    result.message = decodeError ? err.message : `${result.name}: could not segment: ${err.message || err}`;
    showFailure(result, result.message);
    if (!decodeError) console.warn(result.name, err);
  }
}

/** One compact line: the message of rules.json, which starts with the file name (shown in bold). */
function showFailure(result, text) {
  const { el, name } = result;
  el.querySelector(".info").textContent = "";
  el.querySelector(".name").hidden = true;
  const box = el.querySelector(".error");
  box.hidden = false;
  if (text.startsWith(`${name}: `)) {
    const strong = document.createElement("strong");
    strong.textContent = name;
    box.replaceChildren(strong, text.slice(name.length));
  } else {
    box.textContent = text;
  }
}

function drawResult(result) {
  const { el, width, height } = result;
  const original = el.querySelector("canvas.original");
  if (original.width !== width || original.height !== height) {
    original.width = width; original.height = height;
    original.getContext("2d").putImageData(result.imageData, 0, 0);
    original.setAttribute("aria-label", `X-ray ${result.name}, ${width} by ${height} pixels`);
  }
  result.layer = result.layer || document.createElement("canvas");
  const layer = result.layer;
  layer.width = width; layer.height = height;
  const ctx = layer.getContext("2d");
  const paint = ctx.createImageData(width, height);
  const d = paint.data, mask = result.mask, [red, green, blue] = state.rules.overlay.color;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) { d[4 * i] = red; d[4 * i + 1] = green; d[4 * i + 2] = blue; d[4 * i + 3] = 255; }
  }
  ctx.putImageData(paint, 0, 0);
  composite(result);
  result.areas = lungAreas(mask, width, height, result.spacing);
  const share = `${(result.areas.lung_fraction * 100).toFixed(1)}% of the image`;
  el.querySelector(".info").textContent = `${width}×${height} px · ${formatMs(result.ms)} on ` +
    `${state.segmenter.backendLabel} · lungs ${describeAreas(result.areas)}${result.note ? ` · ${result.note}` : ""}`;
  el.querySelector("canvas.overlay").setAttribute("aria-label", `Lung overlay of ${result.name}: ${share} marked as lung`);
  showQuality(result);
}

/** "23.4% of the image", or for a DICOM with pixel spacing "312.5 cm² (right 160.2, left 152.3)". */
function describeAreas(areas) {
  if (!("lung_cm2" in areas)) return `${(areas.lung_fraction * 100).toFixed(1)}% of the image`;
  return `${areas.lung_cm2.toFixed(1)} cm² (right ${areas.image_left_cm2.toFixed(1)}, left ${areas.image_right_cm2.toFixed(1)})`;
}

/** The estimated Dice (when the model has an estimator) and each warning; flags the item. */
function showQuality(result) {
  const { el, quality, warnings } = result;
  const line = el.querySelector(".quality");
  line.hidden = quality === null;
  line.textContent = quality === null ? "" : `estimated Dice ${quality.toFixed(2)}`;
  const list = el.querySelector(".warnings");
  list.replaceChildren(...warnings.map((w) => {
    const item = document.createElement("li");
    item.dataset.code = w.code;
    item.textContent = w.message;
    return item;
  }));
  list.hidden = !warnings.length;
  el.dataset.flagged = String(warnings.length > 0);
}

function composite(result) {
  const overlay = result.el.querySelector("canvas.overlay");
  overlay.width = result.width; overlay.height = result.height;
  const ctx = overlay.getContext("2d");
  ctx.drawImage(result.el.querySelector("canvas.original"), 0, 0);
  ctx.globalAlpha = state.opacity;
  ctx.drawImage(result.layer, 0, 0);
  ctx.globalAlpha = 1;
}

function done() { return state.results.filter((r) => r.status === "done"); }
function count(status) { return state.results.filter((r) => r.status === status).length; }

function updateProgress(current) {
  const { total, done: finished } = state.batch;
  $("#progress").hidden = !current;
  $("#cancel").hidden = !current;
  if (!current) return;
  $("#progress-text").textContent = `Segmenting ${finished + 1} of ${total}: ${current.name}`;
  $("#progress-bar").max = total;
  $("#progress-bar").value = finished;
}

function updateSummary() {
  const ok = done().length, failed = count("error"), cancelled = count("cancelled");
  const waiting = state.results.length - ok - failed - cancelled;
  const flagged = done().filter((r) => r.warnings.length).length;
  $("#summary").textContent = state.results.length
    ? `${ok} segmented${flagged ? `, ${flagged} with warnings` : ""}${failed ? `, ${failed} failed` : ""}` +
      `${cancelled ? `, ${cancelled} cancelled` : ""}` +
      `${waiting ? `, ${waiting} waiting` : ""}.`
    : "No X-rays yet.";
  $("#download-all").disabled = ok === 0;
  $("#clear").disabled = state.results.length === 0 || waiting > 0;
}

/** Stop the batch: files not started are cancelled; the one being segmented finishes. */
function cancel() {
  for (const result of state.queue.splice(0)) {
    result.file = null;
    setStatus(result, "cancelled");
    result.el.querySelector(".info").textContent = "cancelled";
  }
  state.batch.total = state.batch.done + (state.busy ? 1 : 0);
  updateSummary();
  updateProgress(state.results.find((r) => r.status === "segmenting") || null);
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** One output of a segmented file, as PNG bytes: mask (0/255), overlay or side labels (1 = the
 *  patient's right lung, 2 = left, as `lungseg predict --labels`). */
function outputPng(result, kind) {
  const { mask, width, height } = result;
  if (kind === "mask") return encodeMaskPng(mask, width, height);
  if (kind === "labels") return encodeGreyPng(sideLabels(mask, width, height), width, height);
  return encodeRgbPng(overlayRgb(result.imageData.data, mask, state.opacity, state.rules.overlay.color), width, height);
}

/** The files the zip holds (segmented and failed), each with the name its outputs get. */
function zipped() {
  const listed = state.results.filter((r) => r.status === "done" || r.status === "error");
  const names = outputNames(listed.map((r) => r.name));
  return listed.map((result, i) => ({ result, out: names[i] }));
}

function downloadOne(result, kind) {
  const out = zipped().find((z) => z.result === result).out;
  save(new Blob([outputPng(result, kind)], { type: "image/png" }), outputName(state.rules, out, kind));
}

/** Everything as one zip laid out like `lungseg predict --labels`'s output folder: each file's
 *  NAME.mask.png, NAME.overlay.png, NAME.labels.png, and manifest.csv (a row per file, failed
 *  ones too). */
function downloadAll() {
  const entries = [], rows = [];
  for (const { result: r, out } of zipped()) {
    if (r.status === "error") { rows.push({ input: r.name, status: "error", message: r.message }); continue; }
    const names = Object.fromEntries(["mask", "overlay", "labels"].map((k) => [k, outputName(state.rules, out, k)]));
    for (const kind of ["mask", "overlay", "labels"]) entries.push({ name: names[kind], data: outputPng(r, kind) });
    rows.push({ input: r.name, status: "ok", mask: names.mask, overlay: names.overlay, labels: names.labels, width: r.width, height: r.height,
      ...r.areas, spacing_source: r.spacingSource || "", quality: r.quality,
      warnings: r.warnings.map((w) => w.code).join(" "), message: r.warnings.map((w) => w.message).join(" ") });
  }
  entries.push({ name: state.rules.outputs.manifest, data: new TextEncoder().encode(manifestCsv(state.rules, rows)) });
  save(makeZip(entries), ZIP_NAME);
}

let pending = 0;
function onThreshold() {
  state.threshold = Number($("#threshold").value);
  $("#threshold-value").textContent = state.threshold.toFixed(2);
  cancelAnimationFrame(pending);
  pending = requestAnimationFrame(() => {
    for (const r of done()) {   // the image's warnings and the inversion decision are kept
      const a = assess(state.rules, state.segmenter.meta, r.probability, r.width, r.height, state.threshold);
      Object.assign(r, { mask: a.mask, quality: a.quality, warnings: [...r.imageWarnings, ...a.warnings], threshold: state.threshold });
      drawResult(r);
    }
    updateSummary();
  });
}

function wire() {
  $("#files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("click", () => $("#files").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#files").click(); } });
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => { e.preventDefault(); if (!drop.contains(e.target)) addFiles(e.dataTransfer.files); });
  document.addEventListener("paste", (e) => { if (e.clipboardData?.files?.length) addFiles(e.clipboardData.files); });
  $("#opacity").addEventListener("input", () => {
    state.opacity = Number($("#opacity").value) / 100;
    $("#opacity-value").textContent = `${$("#opacity").value}%`;
    for (const r of done()) composite(r);
  });
  $("#threshold").addEventListener("input", onThreshold);
  $("#threshold-reset").addEventListener("click", () => {
    if (!state.segmenter) return;
    $("#threshold").value = String(state.segmenter.meta.threshold);
    onThreshold();
  });
  $("#download-all").addEventListener("click", downloadAll);
  $("#cancel").addEventListener("click", cancel);
  $("#clear").addEventListener("click", () => {
    state.results = state.results.filter((r) => r.status === "pending" || r.status === "segmenting");
    $("#results").replaceChildren(...state.results.map((r) => r.el));
    updateSummary();
  });
}

/** Offline use and, on hosts without isolation headers, threads (js/serviceworker.js): the page
 *  may reload once, only before any X-ray was added. */
function offline() {
  if (params.has("nosw")) return;
  registerServiceWorker({ canReload: () => state.results.length === 0 }).then(() => {
    $("#offline").textContent = "Saved for offline use: this page, TensorFlow.js and the model now work without a network.";
  }).catch((err) => {
    $("#offline").textContent = `Offline use is not available here (${err.message || err}).`;
  });
}

wire();
window.lungsegApp.addFiles = addFiles;
window.lungsegApp.ready = init();
window.lungsegApp.ready.catch(() => {});
offline();
