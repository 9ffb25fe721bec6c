// The TensorFlow.js side of LungSeg, for any global scope (a page or a worker): load the vendored
// TF.js, pick a backend, load the exported graph model, run it. js/segmenter.js runs this in a
// module worker (js/worker.js) by default, so the page stays responsive.
//
// The model runs at its working size, as lungseg.Segmenter does: the X-ray is resized to the
// model's input size here (js/resize.js, equal to the graph's first resize) and the graph is cut
// before each output's last resize to the input's size, so what it returns is small whatever the
// X-ray's size; full-size masks and figures are made from that a row at a time (js/postprocess.js).
// A model may outline two definitions of the lung (metadata.json `outputs`: the visible lung
// field and the whole lung): one run gives both, each kept at its working size.
//
// Relative modelUrl values are resolved against web/ (this module's parent folder), as are the
// vendored files (web/vendor/). Nothing about the model is written here: threshold, clean-up and
// sizes come from the model's metadata.json.
import { decodeImage } from "./decode.js";
import { imageThumbnail, maskLayer, thumbSize } from "./display.js";
import { lungAreas } from "./measure.js";
import { HEAD_OPS, ProbabilityMap, toMask } from "./postprocess.js";
import { analyze, assessAll } from "./quality.js";
import { resizeInput } from "./resize.js";
import { loadRules } from "./rules.js";
import * as runs from "./runs.js";

const WEB_ROOT = new URL("../", import.meta.url);
const VENDOR = new URL("vendor/", WEB_ROOT);
const BACKENDS = ["webgpu", "webgl", "wasm", "cpu"];
const ON_GPU = new Set(["webgpu", "webgl"]);

/** A file the page stopped segmenting (js/segmenter.js cancel()). */
export class CancelledError extends Error {
  constructor() { super("cancelled"); this.name = "CancelledError"; }
}

/** Run a vendored UMD script (it sets globalThis.tf). */
async function loadVendor(name) {
  try {
    await import(new URL(name, VENDOR).href);
  } catch (err) {
    throw new Error(`could not load vendor/${name} (run: cd web && npm ci && node scripts/vendor.mjs): ${err.message || err}`);
  }
}

/** Why a backend should be skipped in "auto" mode (null: try it). */
async function autoSkipReason(name) {
  if (name === "webgpu") {
    if (!navigator.gpu) return "WebGPU is not available in this browser";
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) return "no WebGPU adapter";
      if (adapter.isFallbackAdapter || adapter.info?.isFallbackAdapter) return "WebGPU runs on a software adapter";
    } catch (err) { return "WebGPU adapter request failed"; }
    return null;
  }
  if (name === "webgl") {
    try {
      const canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(1, 1) : document.createElement("canvas");
      const gl = canvas.getContext("webgl2") || canvas.getContext("webgl");
      if (!gl) return "WebGL is not available";
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const renderer = String(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
      gl.getExtension("WEBGL_lose_context")?.loseContext();
      if (/swiftshader|llvmpipe|software|basic render/i.test(renderer)) return `WebGL is software-rendered (${renderer})`;
    } catch (err) { return "WebGL check failed"; }
    return null;
  }
  return null;
}

/**
 * Threads for TF.js's WebAssembly backend on `cores` logical cores: 1 (the plain build) where the
 * page is not cross-origin isolated or has one core; else half the cores (one per physical core
 * where each runs two threads), at least 2 and at most 8 (TF.js's pool of thread workers).
 * Measured on a 2-core machine (bench/bench_web.py): 2 threads about 300 ms per X-ray, the plain
 * build 400 ms, the threaded build on 1 thread 435 ms.
 */
export function wasmThreads(cores, isolated) {
  if (!isolated || !(cores >= 2)) return 1;
  return Math.min(8, Math.max(2, Math.floor(cores / 2)));
}

async function prepareBackend(tf, name, threads) {
  if (name === "wasm") {
    if (!tf.wasm) await loadVendor("tf-backend-wasm.min.js");
    tf.wasm.setWasmPaths(VENDOR.href);
    if (threads > 1) tf.wasm.setThreadsCount(threads);
    else tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  } else if (name === "webgpu" && !tf.findBackendFactory("webgpu")) {
    await loadVendor("tf-backend-webgpu.min.js");
  }
  // TF.js's threaded build caps its pool at half of navigator.hardwareConcurrency; while it
  // starts, this scope reports enough cores for the count chosen above (the real count is restored).
  const shown = name === "wasm" && threads > Math.floor(navigator.hardwareConcurrency / 2);
  if (shown) Object.defineProperty(navigator, "hardwareConcurrency", { value: 2 * threads, configurable: true });
  try {
    if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
    await tf.ready();
  } finally {
    if (shown) delete navigator.hardwareConcurrency;
  }
}

function describeBackend(name, threads) {
  return name === "wasm" && threads > 1 ? `wasm, ${threads} threads` : name;
}

const NAMES = { webgpu: "WebGPU", webgl: "WebGL", wasm: "WebAssembly", cpu: "plain JavaScript" };

/** Where the model runs, in plain words: "the GPU (WebGL)", "the CPU (WebAssembly, 4 threads)". */
function runsOn(used, threads) {
  return ON_GPU.has(used) ? `the GPU (${NAMES[used]})` : `the CPU (${NAMES[used]}${threads > 1 ? `, ${threads} threads` : ""})`;
}

/** What a user should know about the backend, in plain words (null: nothing worth saying). */
function userNote(requested, used, where) {
  if (requested !== "auto" && requested !== used) return `${NAMES[requested] || requested} is not available here: running on ${where}.`;
  if (requested === "auto" && !ON_GPU.has(used)) return `No GPU found: running on ${where}, which is slower.`;
  return null;
}

/** The graph's resize attributes must be TensorFlow's half-pixel bilinear resize, which
 *  js/resize.js computes. */
function checkResize(node) {
  const attr = node.attr || {};
  if (!attr.half_pixel_centers?.b || attr.align_corners?.b) {
    throw new Error(`${node.name}: only bilinear resizes with half-pixel centres can run at the working size`);
  }
}

/**
 * The lung definitions the model outlines, {definition: {index, output (the graph's output
 * tensor), threshold, quality}}, from metadata.json (python -m export maps them by the Keras
 * layer each output comes from); an export without `outputs` gives one: the visible lung field.
 */
export function modelOutputs(meta, { signature }) {
  if (meta.outputs) return meta.outputs;
  const output = Object.values(signature.outputs)[0].name;
  return { visible: { definition: "visible", index: 0, output, threshold: meta.threshold, quality: meta.quality ?? null } };
}

/**
 * Where the graph (model.json) is cut, as lungseg.inference.split_at_working_size cuts the Keras
 * model: `input`, the first resize (fed the X-ray resized by js/resize.js), and per output tensor
 * of `names` (default: the first output), `output`, what its last resize (to the input's size)
 * reads, and `head`, the ops after it (e.g. Sigmoid).
 */
export function workingSizeCut({ modelTopology: topology, signature }, names = [Object.values(signature.outputs)[0].name]) {
  const nodes = new Map(topology.node.map((n) => [n.name, n]));
  const source = (name) => nodes.get(name.replace(/^\^/, "").split(":")[0]);
  const image = topology.node.find((n) => n.op === "Placeholder");
  const first = topology.node.find((n) => n.op === "ResizeBilinear" && source(n.input[0]) === image);
  if (!first) throw new Error("the model does not start with a bilinear resize of its input");
  checkResize(first);
  const cuts = names.map((outputName) => {
    const head = [];
    let node = source(outputName);
    while (node && node.op !== "ResizeBilinear") {
      if (!HEAD_OPS.includes(node.op)) throw new Error(`the model ends with ${node.op} after its last resize, which the page cannot apply`);
      head.unshift(node.op);
      node = source(node.input[0]);
    }
    if (!node || node === first) throw new Error("the model has no resize to its input's size");
    checkResize(node);
    return { output: node.input[0], head };
  });
  return { input: first.name, outputs: cuts };
}

/** Let messages queued for this thread run (a cancel), then stop if `cancelled()` says so. */
async function checkpoint(cancelled) {
  await new Promise((resolve) => setTimeout(resolve, 0));
  if (cancelled()) throw new CancelledError();
}

/**
 * Load the model and pick a backend (see js/segmenter.js for the options). Resolves to
 * {info, segment, segmentFile, processFile, reassess, cancel, mask, numTensors, dispose}; info holds backend, backendLabel,
 * notes (raw, for developers), runsOn and userNote (plain words), meta, modelUrl and loadMs.
 * cores: the page's navigator.hardwareConcurrency (a worker passes its page's), for wasmThreads.
 */
export async function createEngine({ modelUrl = "model/", backend = "auto", cores = navigator.hardwareConcurrency } = {}) {
  const started = performance.now();
  const base = new URL(modelUrl.endsWith("/") ? modelUrl : modelUrl + "/", WEB_ROOT);
  const response = await fetch(new URL("metadata.json", base));
  if (!response.ok) throw new Error(`model metadata not found at ${new URL("metadata.json", base)} (HTTP ${response.status})`);
  const meta = await response.json();
  if (!globalThis.tf) await loadVendor("tf.min.js");
  const tf = globalThis.tf;
  const order = backend === "auto" ? BACKENDS : [backend, ...BACKENDS.filter((b) => b !== backend)];
  const notes = [];
  const size = meta.input_size || 256;
  let model = null, used = null, runAsync = false, cut = null, outputs = null;
  for (const name of order) {
    const reason = backend === "auto" ? await autoSkipReason(name) : null;
    if (reason) { notes.push(`${name} skipped: ${reason}`); continue; }
    try {
      await prepareBackend(tf, name, wasmThreads(cores, globalThis.crossOriginIsolated));
      model = model || await tf.loadGraphModel(new URL("model.json", base).href);
      if (!cut) {
        const graph = await (await fetch(new URL("model.json", base))).json();
        outputs = modelOutputs(meta, graph);
        cut = workingSizeCut(graph, Object.values(outputs).map((o) => o.output));
      }
      const zeros = { [cut.input]: tf.zeros([1, size, size, 3]) };   // warm-up: compiles kernels, allocates memory
      try {
        tf.dispose(tf.tidy(() => model.execute(zeros, cutNames(cut))));
      } catch (err) {   // a backend that cannot run the graph synchronously
        tf.dispose(await model.executeAsync(zeros, cutNames(cut)));
        runAsync = true;
      } finally {
        zeros[cut.input].dispose();
      }
      used = name;
      break;
    } catch (err) {
      notes.push(`${name} failed: ${err.message || err}`);
      if (model) { model.dispose(); model = null; }
    }
  }
  if (!used) throw new Error(`no TensorFlow.js backend could run the model (${notes.join("; ")})`);
  if (used !== order[0]) notes.push(`using ${used} instead of ${order[0]}`);
  meta.outputs = outputs;
  const definitions = Object.keys(outputs);
  const threads = used === "wasm" ? tf.wasm.getThreadsCount() : 1;
  const where = runsOn(used, threads);
  const info = {
    backend: used, backendLabel: describeBackend(used, threads), notes, runsOn: where,
    userNote: userNote(backend, used, where), threads,
    meta, modelUrl: base.href, loadMs: performance.now() - started,
  };
  const postprocess = meta.postprocess || {};
  let generation = 0;   // cancel() moves it on: a file started under an older one stops

  /** The definitions asked for: "both" is every one the model gives (Segmenter.chosen). */
  function chosen(definition = "visible") {
    if (definition === "both") return definitions;
    if (!outputs[definition]) throw new Error(`this model does not outline the ${definition} lung (it gives: ${definitions.join(", ")})`);
    return [definition];
  }

  /** RGBA pixels (width x height) -> {maps: {definition: ProbabilityMap} (the model's outputs at
   *  their working size, full-size rows on demand; one run), ms}; `invert`: of the negative. */
  async function runWorking(rgba, width, height, invert = false) {
    const t0 = performance.now();
    const input = tf.tensor4d(resizeInput(rgba, width, height, size, invert), [1, size, size, 3]);
    let out;
    try {
      const feed = { [cut.input]: input };
      out = runAsync ? await model.executeAsync(feed, cutNames(cut)) : tf.tidy(() => model.execute(feed, cutNames(cut)));
      out = [].concat(out);   // TF.js gives one tensor, not a list of one, for a single output
    } finally {
      input.dispose();
    }
    const [, workHeight, workWidth] = out[0].shape;
    let values;
    try { values = await Promise.all(out.map((t) => t.data())); } finally { tf.dispose(out); }
    const maps = Object.fromEntries(definitions.map((d, i) =>
      [d, new ProbabilityMap(values[i], workWidth, workHeight, width, height, cut.outputs[i].head)]));
    return { maps, ms: performance.now() - t0 };
  }

  /** ImageData (or {data, width, height}) -> {probability: Float32Array(H*W), width, height, ms}
   *  of `definition`'s output. */
  async function segment(image, definition = "visible") {
    chosen(definition);
    const { maps, ms } = await runWorking(image.data, image.width, image.height);
    return { probability: maps[definition].full(), width: image.width, height: image.height, ms };
  }

  /** Probability -> Uint8Array 0/1 mask: threshold, then the model's clean-up from metadata. */
  function mask(probability, width, height, threshold = meta.threshold) {
    return toMask(probability, width, height, threshold, postprocess);
  }

  /** Decode, segment and analyze a file (Segmenter.analyze) for `definition` ("visible", "whole"
   *  or "both"): the decoded image's fields, analyze()'s result, `maps` (the pass the masks came
   *  from), ms (model) and qualityMs; stops with CancelledError after cancel(). */
  async function analyzeFile(file, threshold, definition) {
    const wanted = chosen(definition);
    const started = generation, cancelled = () => generation !== started;
    const [decoded, rules] = await Promise.all([decodeImage(file), loadRules()]);
    await checkpoint(cancelled);
    const { width, height } = decoded, rgba = decoded.imageData.data;
    const out = await runWorking(rgba, width, height);
    await checkpoint(cancelled);
    const t0 = performance.now();
    let maps = out.maps;
    const inverse = async () => { maps = (await runWorking(rgba, width, height, true)).maps; return maps; };
    const analysis = await analyze(rules, meta, rgba, width, height, out.maps, inverse,
      { threshold, headerWarnings: decoded.warnings, wanted });
    if (!analysis.inverted) maps = out.maps;
    return { decoded, analysis, maps, ms: out.ms, qualityMs: performance.now() - t0 };
  }

  /** What the page keeps of a mask: runs, areas and the display layer. */
  async function maskFigures(mask, spacing, thumb, rules) {
    return { mask, areas: lungAreas(mask, spacing), layer: await maskLayer(mask, thumb, rules.overlay.color) };
  }

  /** An analysis without its maps, each outline's mask made by `keep(outline)`. */
  async function kept(analysis, keep) {
    const one = async ({ map, whole, ...outline }) => ({ ...outline, ...(await keep(outline)) });
    const first = await one(analysis);
    return analysis.whole ? { ...first, whole: await one(analysis.whole) } : first;
  }

  /** The working-size maps of every output, for another threshold or definition. */
  const workingOf = (maps) => Object.fromEntries(Object.entries(maps).map(([d, m]) =>
    [d, { values: m.values.slice(), width: m.workWidth, height: m.workHeight }]));

  return {
    info, segment, mask,
    /** A file -> {mask (Uint8Array 0/1), width, height, note, ms (model), quality, warnings,
     *  imageWarnings, inverted, features, definition, qualityMs (checks, and the inverted run if
     *  tried), a DICOM's spacing, and with definition "both" the whole lung's as `whole`}:
     *  Segmenter.analyze (js/quality.js). ImageDecodeError for a bad file. */
    async segmentFile(file, threshold = null, definition = "visible") {
      const { decoded: { imageData, ...decoded }, analysis, ms, qualityMs } = await analyzeFile(file, threshold, definition);
      const result = await kept(analysis, async (o) => ({ mask: runs.toMask(o.mask) }));
      return { ...decoded, ...result, ms, qualityMs };
    },
    /** A file -> what the page keeps (no full-size pixels): the figures of segmentFile with each
     *  mask as runs, its areas and display `layer` (a PNG Blob at thumbSize(width, height)),
     *  `working` (every output at its working size, for another threshold or definition) and
     *  `thumb` ({width, height, image}: the X-ray as a JPEG Blob). */
    async processFile(file, threshold = null, definition = "visible") {
      const { decoded: { imageData, ...decoded }, analysis, maps, ms, qualityMs } = await analyzeFile(file, threshold, definition);
      const rules = await loadRules(), thumb = thumbSize(decoded.width, decoded.height);
      const image = await imageThumbnail(imageData, thumb);
      const result = await kept(analysis, (o) => maskFigures(o.mask, decoded.spacing, thumb, rules));
      return { ...decoded, ...result, working: workingOf(maps), thumb: { ...thumb, image }, ms, qualityMs };
    },
    /** Another threshold or definition for a kept result ({working, width, height, spacing,
     *  threshold, definition}): each outline's mask (runs), quality, mask warnings, areas and
     *  layer (at thumbSize) (the image's warnings and the inversion are the caller's to keep). */
    async reassess({ working, width, height, spacing = null, threshold = null, definition = "visible" }) {
      const rules = await loadRules(), thumb = thumbSize(width, height);
      const maps = Object.fromEntries(definitions.map((d, i) => [d,
        new ProbabilityMap(working[d].values, working[d].width, working[d].height, width, height, cut.outputs[i].head)]));
      const analysis = assessAll(rules, meta, maps, chosen(definition), threshold);
      return kept(analysis, (o) => maskFigures(o.mask, spacing, thumb, rules));
    },
    /** Stop the file being segmented (it rejects with CancelledError at its next step). */
    cancel() { generation++; },
    numTensors: () => tf.memory().numTensors,
    dispose() { if (model) { model.dispose(); model = null; } },
  };
}

/** The tensors a run asks the graph for: each output's working-size map. */
function cutNames(cut) { return cut.outputs.map((o) => o.output); }
