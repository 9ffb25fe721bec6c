// LungSeg in the browser: load the exported TF.js graph model and segment X-rays.
//
//   import { loadSegmenter } from "./js/segmenter.js";
//   const seg = await loadSegmenter();                // {modelUrl = "model/", backend = "auto"}
//   const { probability, width, height, ms } = await seg.segment(imageData);
//   const mask = seg.mask(probability, width, height); // Uint8Array 0/1, the model's clean-up
//   seg.dispose();
//
// Relative modelUrl values are resolved against the web/ folder this module lives in
// (new URL(..., import.meta.url)), as are the vendored TensorFlow.js files (web/vendor/), so
// the module works from any page that imports it. Nothing about the model is written here:
// threshold, clean-up and sizes come from the model's metadata.json.
import { toMask } from "./postprocess.js";

const WEB_ROOT = new URL("../", import.meta.url);
const VENDOR = new URL("vendor/", WEB_ROOT);
const BACKENDS = ["webgpu", "webgl", "wasm", "cpu"];
const scripts = new Map();

function loadScript(name) {
  const url = new URL(name, VENDOR).href;
  if (!scripts.has(url)) {
    scripts.set(url, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.async = false;
      script.onload = () => resolve();
      script.onerror = () => { scripts.delete(url); reject(new Error(`could not load ${url} (run: cd web && npm ci && node scripts/vendor.mjs)`)); };
      document.head.appendChild(script);
    }));
  }
  return scripts.get(url);
}

async function loadTf() {
  if (!globalThis.tf) await loadScript("tf.min.js");
  return globalThis.tf;
}

/** Why a backend should be skipped in "auto" mode (null: try it). */
async function autoSkipReason(tf, name) {
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
      const canvas = document.createElement("canvas");
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

async function prepareBackend(tf, name) {
  if (name === "wasm") {
    if (!tf.wasm) await loadScript("tf-backend-wasm.min.js");
    tf.wasm.setWasmPaths(VENDOR.href);
    // Threaded wasm is used when the page is cross-origin isolated (COOP/COEP headers); TF.js
    // then runs min(4, cores / 2) threads. Below 4 cores that is 1 thread, and the threaded
    // build on 1 thread is slower than the plain SIMD build (bench/bench_web.py), so use that.
    if ((navigator.hardwareConcurrency || 1) < 4) tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  } else if (name === "webgpu" && !tf.findBackendFactory("webgpu")) {
    await loadScript("tf-backend-webgpu.min.js");
  }
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
}

function describeBackend(tf, name) {
  if (name !== "wasm") return name;
  const threads = tf.wasm?.getThreadsCount ? tf.wasm.getThreadsCount() : 1;
  return threads > 1 ? `wasm, ${threads} threads` : "wasm";
}

/**
 * Load the model and pick a backend.
 * backend: "auto" (fastest available: webgpu, webgl on a real GPU, wasm, cpu) or a name; a
 * named backend that fails falls back to the others in that order, with a note.
 * Resolves to {backend, backendLabel, notes, meta, modelUrl, loadMs, segment, mask, dispose}.
 */
export async function loadSegmenter({ modelUrl = "model/", backend = "auto" } = {}) {
  const started = performance.now();
  const base = new URL(modelUrl.endsWith("/") ? modelUrl : modelUrl + "/", WEB_ROOT);
  const response = await fetch(new URL("metadata.json", base));
  if (!response.ok) throw new Error(`model metadata not found at ${new URL("metadata.json", base)} (HTTP ${response.status})`);
  const meta = await response.json();
  const tf = await loadTf();
  const order = backend === "auto" ? BACKENDS : [backend, ...BACKENDS.filter((b) => b !== backend)];
  const notes = [];
  let model = null, used = null, runAsync = false;
  for (const name of order) {
    if (backend === "auto" || name !== backend) {
      const reason = backend === "auto" ? await autoSkipReason(tf, name) : null;
      if (reason) { notes.push(`${name} skipped: ${reason}`); continue; }
    }
    try {
      await prepareBackend(tf, name);
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
  const loadMs = performance.now() - started;
  const postprocess = meta.postprocess || {};

  return {
    backend: used,
    backendLabel: describeBackend(tf, used),
    notes,
    meta,
    modelUrl: base.href,
    loadMs,
    tf,
    /** ImageData / canvas / ImageBitmap / <img> -> {probability: Float32Array(H*W), width, height, ms}. */
    async segment(source) {
      const t0 = performance.now();
      let output;
      if (runAsync) {
        const pixels = tf.tidy(() => tf.browser.fromPixels(source, 3).toFloat().expandDims(0));
        try { output = await model.executeAsync(pixels); } finally { pixels.dispose(); }
      } else {
        output = tf.tidy(() => model.execute(tf.browser.fromPixels(source, 3).toFloat().expandDims(0)));
      }
      const [, height, width] = output.shape;
      let probability;
      try { probability = await output.data(); } finally { output.dispose(); }
      return { probability, width, height, ms: performance.now() - t0 };
    },
    /** Probability -> Uint8Array 0/1 mask: threshold, then the model's clean-up from metadata. */
    mask(probability, width, height, threshold = meta.threshold) {
      return toMask(probability, width, height, threshold, postprocess);
    },
    dispose() {
      if (model) { model.dispose(); model = null; }
    },
  };
}
