// The LungSeg page: open X-rays, segment them in the browser, show and download the masks.
import { loadSegmenter } from "./segmenter.js";
import { decodeImage } from "./decode.js";
import { encodeMaskPng, makeZip } from "./encode.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const state = { segmenter: null, results: [], queue: [], busy: false, nextId: 1, threshold: 0.5, opacity: 0.5 };
// For tests and benchmarks: the app's state and a promise that settles when the model is ready.
window.lungsegApp = { state, ready: null, numTensors: () => globalThis.tf?.memory().numTensors ?? 0 };

function formatMs(ms) { return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`; }
function stem(name) { return name.replace(/\.[^.]+$/, "") || "image"; }

function metricsText(metrics) {
  const parts = [];
  const walk = (prefix, value) => {
    if (typeof value === "number") parts.push(`${prefix} ${Number.isInteger(value) ? value : value.toFixed(3)}`);
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix} ${k}` : k, v);
  };
  walk("", metrics || {});
  const data = typeof metrics?.data === "string" ? ` (${metrics.data})` : "";
  return parts.length ? parts.slice(0, 8).join(", ") + data : "";
}

async function init() {
  const backend = params.get("backend") || "auto";
  const modelUrl = params.get("model") || "model/";
  try {
    const seg = await loadSegmenter({ modelUrl, backend });
    state.segmenter = seg;
    const m = seg.meta;
    state.threshold = m.threshold;
    $("#threshold").value = String(m.threshold);
    $("#threshold-value").textContent = Number(m.threshold).toFixed(2);
    $("#status").textContent = `${m.name} ${m.version} ready. Backend: ${seg.backendLabel}. ` +
      `Model: ${m.dtype}, ${(m.bytes / 1e6).toFixed(1)} MB, loaded and warmed up in ${formatMs(seg.loadMs)}.`;
    if (seg.notes.length) {
      $("#backend-note").hidden = false;
      $("#backend-note").textContent = `Backend: ${seg.notes.join("; ")}.`;
    }
    const metrics = metricsText(m.metrics);
    $("#model-info").textContent = `Model ${m.name} ${m.version} (${m.architecture}, input ${m.input_size} px, ` +
      `threshold ${m.threshold}, keeps ${m.postprocess?.keep_largest || "all"} largest regions` +
      `${m.postprocess?.fill_holes ? ", holes filled" : ""})${metrics ? `; validation: ${metrics}` : ""}.`;
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
  for (const file of files) {
    const result = { id: state.nextId++, name: file.name || `pasted-${state.nextId}.png`, file, status: "pending" };
    result.el = renderItem(result);
    state.results.push(result);
    state.queue.push(result);
  }
  updateSummary();
  pump();
}

function renderItem(result) {
  const el = $("#result-template").content.firstElementChild.cloneNode(true);
  el.dataset.id = result.id;
  el.dataset.status = "pending";
  el.querySelector(".name").textContent = result.name;
  el.querySelector(".info").textContent = state.segmenter ? "Waiting…" : "Waiting for the model…";
  el.querySelector(".pair").hidden = true;
  const button = el.querySelector(".download");
  button.setAttribute("aria-label", `Download the mask of ${result.name} as PNG`);
  button.addEventListener("click", () => downloadOne(result));
  $("#results").appendChild(el);
  return el;
}

async function pump() {
  if (state.busy || !state.segmenter) return;
  state.busy = true;
  try {
    while (state.queue.length) {
      const result = state.queue.shift();
      await processOne(result);
      updateSummary();
    }
  } finally {
    state.busy = false;
  }
}

async function processOne(result) {
  const el = result.el;
  el.querySelector(".info").textContent = "Segmenting…";
  try {
    const decoded = await decodeImage(result.file);
    Object.assign(result, { width: decoded.width, height: decoded.height, imageData: decoded.imageData, note: decoded.note });
    const out = await state.segmenter.segment(decoded.imageData);
    result.probability = out.probability;
    result.ms = out.ms;
    result.mask = state.segmenter.mask(out.probability, out.width, out.height, state.threshold);
    result.status = "done";
    result.file = null;
    drawResult(result);
    el.querySelector(".pair").hidden = false;
    el.querySelector(".download").disabled = false;
    el.dataset.status = "done";
  } catch (err) {
    result.status = "error";
    result.file = null;
    el.classList.add("failed");
    el.dataset.status = "error";
    el.querySelector(".info").textContent = "";
    const box = el.querySelector(".error");
    box.hidden = false;
    box.textContent = `${result.name}: ${err.name === "ImageDecodeError" ? "" : "could not segment: "}${err.message || err}`;
    console.warn(result.name, err);
  }
}

function lungShare(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return mask.length ? n / mask.length : 0;
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
  const d = paint.data, mask = result.mask;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) { d[4 * i] = 255; d[4 * i + 1] = 64; d[4 * i + 2] = 160; d[4 * i + 3] = 255; }
  }
  ctx.putImageData(paint, 0, 0);
  composite(result);
  const share = lungShare(mask);
  el.querySelector(".info").textContent = `${width}×${height} px · ${formatMs(result.ms)} on ` +
    `${state.segmenter.backendLabel} · lungs ${(share * 100).toFixed(1)}% of the image` +
    `${result.note ? ` · ${result.note}` : ""}`;
  el.querySelector("canvas.overlay").setAttribute("aria-label",
    `Lung overlay of ${result.name}: ${(share * 100).toFixed(1)}% of the image marked as lung`);
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

function updateSummary() {
  const ok = done().length, failed = state.results.filter((r) => r.status === "error").length;
  const waiting = state.results.length - ok - failed;
  $("#summary").textContent = state.results.length
    ? `${ok} segmented${failed ? `, ${failed} failed` : ""}${waiting ? `, ${waiting} waiting` : ""}.`
    : "No X-rays yet.";
  $("#download-all").disabled = ok === 0;
  $("#clear").disabled = state.results.length === 0 || waiting > 0;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function downloadOne(result) {
  const png = await encodeMaskPng(result.mask, result.width, result.height);
  save(new Blob([png], { type: "image/png" }), `${stem(result.name)}_mask.png`);
}

async function downloadAll() {
  const used = new Set(), entries = [];
  for (const r of done()) {
    let name = `${stem(r.name)}_mask.png`;
    for (let k = 2; used.has(name); k++) name = `${stem(r.name)}_${k}_mask.png`;
    used.add(name);
    entries.push({ name, data: await encodeMaskPng(r.mask, r.width, r.height) });
  }
  save(makeZip(entries), "lung_masks.zip");
}

let pending = 0;
function onThreshold() {
  state.threshold = Number($("#threshold").value);
  $("#threshold-value").textContent = state.threshold.toFixed(2);
  cancelAnimationFrame(pending);
  pending = requestAnimationFrame(() => {
    for (const r of done()) { r.mask = state.segmenter.mask(r.probability, r.width, r.height, state.threshold); drawResult(r); }
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
  $("#clear").addEventListener("click", () => {
    state.results = state.results.filter((r) => r.status === "pending");
    $("#results").replaceChildren(...state.results.map((r) => r.el));
    updateSummary();
  });
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || params.has("nosw")) return;
  navigator.serviceWorker.register("sw.js").then(() => navigator.serviceWorker.ready).then(() => {
    $("#offline").textContent = "Saved for offline use: this page, TensorFlow.js and the model now work without a network.";
  }).catch((err) => {
    $("#offline").textContent = `Offline use is not available here (${err.message || err}).`;
  });
}

wire();
window.lungsegApp.addFiles = addFiles;
window.lungsegApp.ready = init();
window.lungsegApp.ready.catch(() => {});
registerServiceWorker();
