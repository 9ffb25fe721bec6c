// The TensorFlow.js side of LungSeg, for any global scope (a page or a worker): load the vendored
// TF.js, pick a backend, load the exported graph model, run it. js/segmenter.js runs this in a
// module worker (js/worker.js) by default, so the page stays responsive.
//
// Relative modelUrl values are resolved against web/ (this module's parent folder), as are the
// vendored files (web/vendor/). Nothing about the model is written here: threshold, clean-up and
// sizes come from the model's metadata.json.
import { decodeImage } from "./decode.js";
import { toMask } from "./postprocess.js";
import { analyze } from "./quality.js";
import { loadRules } from "./rules.js";

const WEB_ROOT = new URL("../", import.meta.url);
const VENDOR = new URL("vendor/", WEB_ROOT);
const BACKENDS = ["webgpu", "webgl", "wasm", "cpu"];
const ON_GPU = new Set(["webgpu", "webgl"]);

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

/**
 * Load the model and pick a backend (see js/segmenter.js for the options). Resolves to
 * {info, segment, segmentFile, mask, numTensors, dispose}; info holds backend, backendLabel,
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
  let model = null, used = null, runAsync = false;
  for (const name of order) {
    const reason = backend === "auto" ? await autoSkipReason(name) : null;
    if (reason) { notes.push(`${name} skipped: ${reason}`); continue; }
    try {
      await prepareBackend(tf, name, wasmThreads(cores, globalThis.crossOriginIsolated));
      model = model || await tf.loadGraphModel(new URL("model.json", base).href);
      const size = meta.input_size || 256;   // warm-up: compiles kernels, allocates memory
      const zeros = tf.zeros([1, size, size, 3]);
      try {
        tf.tidy(() => model.execute(zeros)).dispose();
      } catch (err) {   // a backend that cannot read the dynamic output size synchronously
        (await model.executeAsync(zeros)).dispose();
        runAsync = true;
      } finally {
        zeros.dispose();
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
  const threads = used === "wasm" ? tf.wasm.getThreadsCount() : 1;
  const where = runsOn(used, threads);
  const info = {
    backend: used, backendLabel: describeBackend(used, threads), notes, runsOn: where,
    userNote: userNote(backend, used, where), threads,
    meta, modelUrl: base.href, loadMs: performance.now() - started,
  };
  const postprocess = meta.postprocess || {};

  /** ImageData (or {data, width, height}) -> {probability: Float32Array(H*W), width, height, ms}. */
  async function segment(image) {
    const t0 = performance.now();
    const pixels = tf.tidy(() => tf.browser.fromPixels(image, 3).toFloat().expandDims(0));
    let output;
    try {
      output = runAsync ? await model.executeAsync(pixels) : tf.tidy(() => model.execute(pixels));
    } finally {
      pixels.dispose();
    }
    const [, height, width] = output.shape;
    let probability;
    try { probability = await output.data(); } finally { output.dispose(); }
    return { probability, width, height, ms: performance.now() - t0 };
  }

  /** Probability -> Uint8Array 0/1 mask: threshold, then the model's clean-up from metadata. */
  function mask(probability, width, height, threshold = meta.threshold) {
    return toMask(probability, width, height, threshold, postprocess);
  }

  return {
    info, segment, mask,
    /** A file -> {imageData, width, height, note, probability, ms (model), mask, quality, warnings,
     *  imageWarnings, inverted, features, qualityMs (checks, and the inverted run if tried), and a
     *  DICOM's spacing}: Segmenter.analyze (js/quality.js). ImageDecodeError for a bad file. */
    async segmentFile(file, threshold = meta.threshold) {
      const [decoded, rules] = await Promise.all([decodeImage(file), loadRules()]);
      const { width, height } = decoded, rgba = decoded.imageData.data;
      const out = await segment(decoded.imageData);
      const t0 = performance.now();
      const rerun = async (pixels) => (await segment(new ImageData(pixels, width, height))).probability;
      const analysis = await analyze(rules, meta, rgba, width, height, out.probability, rerun,
        { threshold, headerWarnings: decoded.warnings });
      return { ...decoded, ...analysis, ms: out.ms, qualityMs: performance.now() - t0 };
    },
    numTensors: () => tf.memory().numTensors,
    dispose() { if (model) { model.dispose(); model = null; } },
  };
}
