// The LungSeg page: open X-rays, segment them in the browser and show and download the masks.
// The main thread holds only what a result takes to show and to download again: the model's
// worker decodes, segments, measures and makes the display copies (thumbnails), and keeps
// nothing; the page keeps each result's figures, its mask as runs, the model's working-size
// output (for the threshold slider) and the file the user gave (read again for the overlay
// download); a second worker makes the downloads and the zip, as a stream. Formats, limits,
// messages, the overlay and the lung definitions (the visible lung field, the whole lung: the
// choice the page offers, its outputs' names and manifest columns) come from vendor/rules.json.
import { loadSegmenter, outputWorker } from "./segmenter.js";
import { acceptAttribute, formatG, loadRules } from "./rules.js";
import { pageFormats } from "./decode.js";
import { OUTPUT_KINDS, column, manifestCsv, messages, outputName, outputNames } from "./results.js";
import { registerServiceWorker } from "./serviceworker.js";
import { describeOutput, describeValidation, formatList } from "./words.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const state = {
  rules: null, segmenter: null, results: [], queue: [], busy: false, nextId: 1, threshold: null, opacity: 0.4,
  definition: params.get("definition") || "visible",
  batch: { total: 0, done: 0 }, stopCurrent: null, outputs: null, zip: null, reassessing: 0,
};
// For tests and benchmarks: the app's state, a promise that settles when the model is ready,
// where the model runs and how many tensors it holds.
window.lungsegApp = {
  state, ready: null,
  inWorker: () => Boolean(state.segmenter?.inWorker),
  numTensors: () => state.segmenter ? state.segmenter.numTensors() : 0,
};

const ZIP_NAME = "lungseg-results.zip";   // as the app names its zip
const BOTH = "both";

/** A result's outlines: its first definition's figures (on the result itself), then the whole
 *  lung's (`whole`) when both were asked for. */
const outlinesOf = (r) => [r, ...(r.whole ? [r.whole] : [])];
const definitionsOf = (rules) => Object.keys(rules.definitions).filter((k) => k !== "_doc");

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
  $("#opacity").value = String(Math.round(rules.overlay.opacity * 100));
  setOpacity();
  showDefinitions(rules);
}

/** The choice of lung definition: one radio per definition of rules.json and "Both", each with
 *  the line saying what it outlines. */
function showDefinitions(rules) {
  const defs = definitionsOf(rules).map((d) => [d, rules.definitions[d].label, rules.definitions[d].means]);
  const names = definitionsOf(rules).map((d) => rules.definitions[d].name);
  defs.push([BOTH, "Both", `${formatList(names.map((n) => `the ${n}`), "and")}, each with its own figures and downloads`]);
  if (!defs.some(([d]) => d === state.definition)) state.definition = "visible";
  $("#definition").replaceChildren($("#definition legend"), ...defs.map(([value, label, means]) => {
    const line = document.createElement("label");
    const input = Object.assign(document.createElement("input"), { type: "radio", name: "definition", value, checked: value === state.definition });
    const meaning = Object.assign(document.createElement("span"), { className: "note", textContent: means });
    line.append(input, ` ${label}${value === "visible" ? " (default)" : ""}`, document.createElement("br"), meaning);
    return line;
  }));
}

/** Offer only the definitions the model outlines (a model with one output: no choice). */
function limitDefinitions(outputs) {
  const given = Object.keys(outputs);
  for (const input of document.querySelectorAll("#definition input")) {
    input.disabled = input.value === BOTH ? given.length < 2 : !given.includes(input.value);
  }
  $("#definition").hidden = given.length < 2;
  if (state.definition !== BOTH && !given.includes(state.definition)) state.definition = given[0];
  const checked = document.querySelector(`#definition input[value="${state.definition}"]`);
  if (checked) checked.checked = true;
}

/** The overlay opacity of the slider, for the layers shown (CSS) and the overlay downloads. */
function setOpacity() {
  state.opacity = Number($("#opacity").value) / 100;
  $("#opacity-value").textContent = `${$("#opacity").value}%`;
  $("#results").style.setProperty("--overlay-opacity", String(state.opacity));
}

async function init() {
  const backend = params.get("backend") || "auto";
  const modelUrl = params.get("model") || "model/";
  try {
    applyRules(await loadRules());
    const seg = await loadSegmenter({ modelUrl, backend });
    state.segmenter = seg;
    const m = seg.meta;
    limitDefinitions(m.outputs);
    state.threshold = null;   // each definition's own (metadata outputs) until the slider moves
    $("#threshold").value = String(m.threshold);
    $("#threshold-value").textContent = Number(m.threshold).toFixed(2);
    $("#status").textContent = `${m.name} ${m.version} ready, running on ${seg.runsOn}. ` +
      `Model: ${m.dtype}, ${(m.bytes / 1e6).toFixed(1)} MB, loaded and warmed up in ${formatMs(seg.loadMs)}.`;
    if (seg.notes.length) console.info("LungSeg backend choice:", seg.notes.join("; "));
    if (seg.userNote) {
      $("#backend-note").hidden = false;
      $("#backend-note").textContent = seg.userNote;
    }
    const validation = [describeValidation(m.metrics), ...Object.values(m.outputs || {})
      .filter((o) => o.definition !== "visible")
      .map((o) => describeOutput(state.rules.definitions[o.definition].name, o.metrics))].filter(Boolean).join("; ");
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
  const items = document.createDocumentFragment();
  for (const file of files) {
    const result = { id: state.nextId++, name: file.name || `pasted-${state.nextId}.png`, file, status: "pending" };
    result.el = renderItem(result);
    items.appendChild(result.el);
    state.results.push(result);
    state.queue.push(result);
  }
  $("#results").appendChild(items);
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
  return el;
}

/** The download buttons of each outline: mask, overlay and side labels PNGs, named by definition. */
function showActions(result) {
  const rules = state.rules, both = Boolean(result.whole);
  const what = { mask: "mask", overlay: "overlay", labels: "side labels" };
  const text = { mask: "Download mask PNG", overlay: "Overlay PNG", labels: "Side labels PNG" };
  result.el.querySelector(".actions").replaceChildren(...outlinesOf(result).map((outline) => {
    const { definition } = outline, label = rules.definitions[definition].label;
    const line = document.createElement("span");
    line.className = "outline-actions";
    line.dataset.definition = definition;
    if (both || definition !== "visible") line.append(`${label}: `);
    for (const kind of OUTPUT_KINDS) {
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: text[kind] });
      button.className = `download-${kind}${kind === "mask" ? " download" : ""}`;
      button.dataset.definition = definition;
      button.setAttribute("aria-label", `Download the ${rules.definitions[definition].name} ${what[kind]} of ${result.name} as PNG`);
      button.addEventListener("click", () => downloadOne(result, kind, outline));
      line.append(button, " ");
    }
    return line;
  }));
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

/** Segment one file in the worker; cancel() may end the wait at any point (then null). */
function segmentInWorker(result) {
  return new Promise((resolve, reject) => {
    state.stopCurrent = () => resolve(null);
    state.segmenter.processFile(result.file, state.threshold, state.definition).then(resolve, reject);
  }).finally(() => { state.stopCurrent = null; });
}

async function processOne(result) {
  const el = result.el, threshold = state.threshold, definition = state.definition;
  setStatus(result, "segmenting");
  el.querySelector(".info").textContent = "segmenting…";
  let out;
  try {
    out = await segmentInWorker(result);
  } catch (err) {
    if (err.name === "CancelledError") return;   // cancel() has marked it
    result.file = null;
    setStatus(result, "error");
    const decodeError = err.name === "ImageDecodeError";
    result.message = decodeError ? err.message : `${result.name}: could not segment: ${err.message || err}`;
    showFailure(result, result.message);
    if (!decodeError) console.warn(result.name, err);
    return;
  }
  if (!out || result.status !== "segmenting") return;   // cancelled meanwhile
  Object.assign(result, { width: out.width, height: out.height, note: out.note, ms: out.ms, working: out.working,
    imageWarnings: out.imageWarnings, inverted: out.inverted, spacing: out.spacing || null,
    spacingSource: out.spacingSource || "", thumb: out.thumb, threshold, definition }, outline(out));
  result.whole = out.whole ? outline(out.whole) : null;
  el.querySelector(".pair").hidden = false;
  el.querySelector(".actions").hidden = false;
  setStatus(result, "done");
  showImages(result);
  showFigures(result);
  showActions(result);
  if (threshold !== state.threshold || definition !== state.definition) reassessAll();   // changed while it ran
}

/** What the page keeps of one definition's analysis. */
function outline({ definition, mask, quality, warnings, areas, layer, features }) {
  return { definition, mask, quality, warnings, areas, layer, features };
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

/** Point an <img> at a Blob (the URL of the Blob it showed before is released). */
function showBlob(img, blob) {
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
}

/** The display copies (js/display.js): the X-ray's thumbnail, and beside it a copy per outline
 *  with its mask's layer over it at the overlay's opacity (CSS, so the opacity slider costs nothing). */
function showImages(result) {
  const { el, width, height, thumb, name } = result;
  const original = el.querySelector("img.original");
  original.width = thumb.width; original.height = thumb.height;
  if (!original.src) showBlob(original, thumb.image);
  original.alt = `X-ray ${name}, ${width} by ${height} pixels`;
  for (const figure of el.querySelectorAll("figure.outline")) {
    const layer = figure.querySelector("img.layer");
    if (layer.src) URL.revokeObjectURL(layer.src);
    figure.remove();
  }
  const template = $("#outline-template").content.firstElementChild;
  el.querySelector(".pair").append(...outlinesOf(result).map((o) => {
    const figure = template.cloneNode(true), rules = state.rules.definitions[o.definition];
    figure.dataset.definition = o.definition;
    for (const img of figure.querySelectorAll("img")) { img.width = thumb.width; img.height = thumb.height; }
    figure.querySelector("img.overlay-base").src = original.src;
    showBlob(figure.querySelector("img.layer"), o.layer);
    figure.querySelector(".stack").setAttribute("aria-label",
      `${rules.label} of ${name}: ${(o.areas.lung_fraction * 100).toFixed(1)}% of the image marked as lung`);
    figure.querySelector("figcaption").textContent = `${rules.label} (overlay)`;
    return figure;
  }));
}

function showFigures(result) {
  const { el, width, height } = result;
  const several = outlinesOf(result).length > 1 || result.definition !== "visible";
  const areas = outlinesOf(result).map((o) => several
    ? `${state.rules.definitions[o.definition].name} ${describeAreas(o.areas)}` : `lungs ${describeAreas(o.areas)}`);
  el.querySelector(".info").textContent = `${width}×${height} px · ${formatMs(result.ms)} on ` +
    `${state.segmenter.backendLabel} · ${areas.join(" · ")}${result.note ? ` · ${result.note}` : ""}`;
  showQuality(result);
}

/** "23.4% of the image", or for a DICOM with pixel spacing "312.5 cm² (right 160.2, left 152.3)". */
function describeAreas(areas) {
  if (!("lung_cm2" in areas)) return `${(areas.lung_fraction * 100).toFixed(1)}% of the image`;
  return `${areas.lung_cm2.toFixed(1)} cm² (right ${areas.image_left_cm2.toFixed(1)}, left ${areas.image_right_cm2.toFixed(1)})`;
}

/** The estimated Dice of each outline (when the model has an estimator for it) and each warning
 *  (the image's once; another definition's own prefixed with its label); flags the item. */
function showQuality(result) {
  const { el } = result, all = outlinesOf(result), labelled = all.length > 1;
  const line = el.querySelector(".quality");
  const scored = all.filter((o) => o.quality !== null);
  line.hidden = !scored.length;
  line.textContent = scored.map((o) => `${labelled ? `${state.rules.definitions[o.definition].label}: ` : ""}` +
    `estimated Dice ${o.quality.toFixed(2)}`).join(" · ");
  const shown = [];
  for (const [i, o] of all.entries()) {
    for (const w of o.warnings) {
      if (i > 0 && result.imageWarnings.some((own) => own.code === w.code)) continue;
      shown.push({ ...w, definition: o.definition, text: i > 0 ? `${state.rules.definitions[o.definition].label}: ${w.message}` : w.message });
    }
  }
  const list = el.querySelector(".warnings");
  list.replaceChildren(...shown.map((w) => {
    const item = document.createElement("li");
    item.dataset.code = w.code;
    item.dataset.definition = w.definition;
    item.textContent = w.text;
    return item;
  }));
  list.hidden = !shown.length;
  el.dataset.flagged = String(shown.length > 0);
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
  const flagged = done().filter((r) => outlinesOf(r).some((o) => o.warnings.length)).length;
  $("#summary").textContent = state.results.length
    ? `${ok} segmented${flagged ? `, ${flagged} with warnings` : ""}${failed ? `, ${failed} failed` : ""}` +
      `${cancelled ? `, ${cancelled} cancelled` : ""}` +
      `${waiting ? `, ${waiting} waiting` : ""}.`
    : "No X-rays yet.";
  $("#download-all").disabled = ok === 0 || Boolean(state.zip);
  $("#clear").disabled = state.results.length === 0 || waiting > 0;
}

function markCancelled(result) {
  result.file = null;
  setStatus(result, "cancelled");
  result.el.querySelector(".info").textContent = "cancelled";
}

/** Stop the batch at once: files not started and the one being segmented are cancelled (the
 *  worker drops it at its next step); results so far stay. */
function cancel() {
  for (const result of state.queue.splice(0)) markCancelled(result);
  const current = state.results.find((r) => r.status === "segmenting");
  if (current) {
    state.segmenter.cancel();
    markCancelled(current);
    state.stopCurrent?.();
  }
  state.batch.total = state.batch.done + (current ? 1 : 0);
  updateSummary();
  updateProgress(null);
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The worker that makes downloads (started on first use, again after a zip was cancelled). */
function outputs() {
  state.outputs = state.outputs || outputWorker();
  return state.outputs;
}

/** The files the zip holds (segmented and failed), each with the name its outputs get. */
function zipped() {
  const listed = state.results.filter((r) => r.status === "done" || r.status === "error");
  const names = outputNames(listed.map((r) => r.name));
  return listed.map((result, i) => ({ result, out: names[i] }));
}

const overlaySettings = () => ({ opacity: state.opacity, color: state.rules.overlay.color });

/** One output of one outline of a segmented file as PNG, made in the worker at the X-ray's own
 *  size: mask (0/255), overlay or side labels (1 = the patient's right lung, 2 = left, as
 *  `lungseg predict --labels`), named by its definition (NAME.whole.mask.png). */
async function downloadOne(result, kind, { mask, definition }) {
  const name = outputName(state.rules, zipped().find((z) => z.result === result).out, kind, definition);
  try {
    const pngs = await outputs().outputs({ file: result.file, mask, kinds: [kind], overlay: overlaySettings() });
    save(new Blob([pngs[kind]], { type: "image/png" }), name);
  } catch (err) {
    zipStatus(`${name} could not be made: ${err.message || err}`);
  }
}

function zipStatus(text, running = false) {
  $("#zip-status").textContent = text;
  $("#zip-cancel").hidden = !running;
}

/** Everything as one zip laid out like `lungseg predict --labels --definition X`'s output
 *  folder: each file's NAME.mask.png, NAME.overlay.png, NAME.labels.png (the whole lung's
 *  NAME.whole.mask.png, ...), and manifest.csv (a row per file, failed ones too; the columns of a
 *  definition not shown left empty). Written by the worker as a stream, one X-ray at a time;
 *  Cancel zip stops it. */
async function downloadAll() {
  if (state.zip) return;
  const items = [], rows = [], rules = state.rules;
  for (const { result: r, out } of zipped()) {
    if (r.status === "error") { rows.push({ input: r.name, status: "error", message: r.message }); continue; }
    const row = { input: r.name, status: "ok", width: r.width, height: r.height, spacing_source: r.spacingSource || "",
      message: messages(rules, outlinesOf(r)) };
    const outlines = outlinesOf(r).map((o) => {
      const names = Object.fromEntries(OUTPUT_KINDS.map((k) => [k, outputName(rules, out, k, o.definition)]));
      const figures = { ...names, ...o.areas, quality: o.quality, warnings: o.warnings.map((w) => w.code).join(" ") };
      for (const [key, value] of Object.entries(figures)) row[column(rules, key, o.definition)] = value;
      return { mask: o.mask, names };
    });
    items.push({ file: r.file, outlines });
    rows.push(row);
  }
  const job = state.zip = { cancelled: false };
  updateSummary();
  zipStatus(`Writing the zip: 0 of ${items.length} X-rays`, true);
  try {
    const blob = await outputs().zip({ items, manifest: manifestCsv(state.rules, rows),
      manifestName: state.rules.outputs.manifest, overlay: overlaySettings() },
    (finished, total) => zipStatus(`Writing the zip: ${finished} of ${total} X-rays`, true));
    save(blob, ZIP_NAME);
    zipStatus(`${ZIP_NAME}: ${(blob.size / 1e6).toFixed(1)} MB`);
  } catch (err) {
    zipStatus(job.cancelled ? "Zip cancelled." : `The zip could not be written: ${err.message || err}`);
  } finally {
    state.zip = null;
    updateSummary();
  }
}

/** Stop writing the zip: its worker is ended (a new one starts for the next download). */
function cancelZip() {
  if (!state.zip) return;
  state.zip.cancelled = true;
  state.outputs?.terminate();
  state.outputs = null;
}

/** Recompute masks, quality and mask warnings of every result at the slider's threshold and for
 *  the chosen definition, one at a time in the worker (the image's warnings and the inversion
 *  decision are kept); a newer change takes over. */
async function reassessAll() {
  const run = ++state.reassessing;
  for (const r of done()) {
    const { threshold, definition } = state;
    if (run !== state.reassessing) return;
    if (r.threshold === threshold && r.definition === definition) continue;
    const a = await state.segmenter.reassess({ working: r.working, width: r.width, height: r.height,
      spacing: r.spacing, threshold, definition });
    if (r.status !== "done") continue;
    const kept = (o) => ({ ...outline(o), warnings: [...r.imageWarnings, ...o.warnings] });
    Object.assign(r, kept(a), { threshold, definition, whole: a.whole ? kept(a.whole) : null });
    showImages(r);
    showFigures(r);
    showActions(r);
    updateSummary();
  }
}

let pending = 0;
/** The slider's threshold for every definition; `own`: back to each definition's own. */
function onThreshold(own = false) {
  state.threshold = own === true ? null : Number($("#threshold").value);
  $("#threshold-value").textContent = Number($("#threshold").value).toFixed(2);
  cancelAnimationFrame(pending);
  pending = requestAnimationFrame(reassessAll);
}

/** Remove finished results, releasing their display copies. */
function clear() {
  const kept = [];
  for (const r of state.results) {
    if (r.status === "pending" || r.status === "segmenting") { kept.push(r); continue; }
    for (const img of r.el.querySelectorAll("img.original, img.layer")) if (img.src) URL.revokeObjectURL(img.src);
  }
  state.results = kept;
  $("#results").replaceChildren(...kept.map((r) => r.el));
  updateSummary();
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
  $("#opacity").addEventListener("input", setOpacity);
  $("#threshold").addEventListener("input", onThreshold);
  $("#definition").addEventListener("change", (e) => { state.definition = e.target.value; reassessAll(); });
  $("#threshold-reset").addEventListener("click", () => {
    if (!state.segmenter) return;
    $("#threshold").value = String(state.segmenter.meta.threshold);
    onThreshold(true);
  });
  $("#download-all").addEventListener("click", downloadAll);
  $("#zip-cancel").addEventListener("click", cancelZip);
  $("#cancel").addEventListener("click", cancel);
  $("#clear").addEventListener("click", clear);
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
