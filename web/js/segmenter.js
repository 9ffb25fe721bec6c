// LungSeg in the browser: load the exported TF.js graph model and segment X-rays.
//
//   import { loadSegmenter } from "./js/segmenter.js";
//   const seg = await loadSegmenter();      // {modelUrl = "model/", backend = "auto", worker = true}
//   const { probability, width, height, ms } = await seg.segment(imageData);  // (imageData, "whole"): the whole lung
//   const mask = seg.mask(probability, width, height); // Uint8Array 0/1, the model's clean-up
//   const r = await seg.segmentFile(file);  // decode (js/decode.js) + segment + quality and warnings (js/quality.js)
//   const b = await seg.segmentFile(file, null, "both"); // the visible lung field, the whole lung as b.whole
//   seg.meta.outputs                        // the definitions the model outlines: {visible, whole}
//   const kept = await seg.processFile(file); // the same, kept compactly: mask as runs, thumbnails
//   seg.dispose();
//
// The model runs in a module worker (js/worker.js) unless worker is false, where it runs on the
// calling thread (js/engine.js); both give the same API and results. Relative modelUrl values
// are resolved against web/, so the module works from any page that imports it.
import { CancelledError, createEngine } from "./engine.js";
import { ImageDecodeError } from "./decode.js";
import { toMask } from "./postprocess.js";

/** Anything drawable (ImageData, canvas, ImageBitmap, <img>) -> ImageData. */
function toImageData(source) {
  if (source instanceof ImageData) return source;
  const width = source.naturalWidth || source.videoWidth || source.width, height = source.naturalHeight || source.videoHeight || source.height;
  const context = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0);
  return context.getImageData(0, 0, width, height);
}

/** A client for js/worker.js: call(type, args, transfer, onProgress) -> a promise of the worker's
 *  result (onProgress(...values) for its progress messages). */
function workerClient() {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "lungseg-model" });
  const pending = new Map();
  let nextId = 1;
  const failAll = (error) => { for (const { reject } of pending.values()) reject(error); pending.clear(); };
  const errors = { ImageDecodeError: (e) => new ImageDecodeError(e.message, e.code), CancelledError: () => new CancelledError() };
  worker.addEventListener("message", ({ data: { id, result, error, progress } }) => {
    const call = pending.get(id);
    if (progress) return call.onProgress?.(...progress);
    pending.delete(id);
    if (!error) return call.resolve(result);
    call.reject(errors[error.name]?.(error) || new Error(error.message));
  });
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    failAll(new Error(`the model worker failed: ${event.message || "it could not start"}`));
  });
  return {
    call(type, args, transfer = [], onProgress = null) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, onProgress });
        worker.postMessage({ id, type, args }, transfer);
      });
    },
    terminate() { worker.terminate(); failAll(new Error("the segmenter was disposed")); },
  };
}

/**
 * A worker for the page's downloads (js/outputs.js): outputs(args) -> {mask, overlay, labels} PNG
 * bytes of one result, zip(args, onProgress) -> the zip Blob; terminate() stops what it does.
 */
export function outputWorker() {
  const client = workerClient();
  return {
    outputs: (args) => client.call("outputs", args),
    zip: (args, onProgress) => client.call("zip", args, [], onProgress),
    terminate: () => client.terminate(),
  };
}

/**
 * Load the model and pick a backend.
 * backend: "auto" (fastest available: webgpu, webgl on a real GPU, wasm, cpu) or a name; a
 * named backend that fails falls back to the others in that order. worker: run the model in a
 * module worker (default) or on this thread. Resolves to {backend, backendLabel, notes (raw,
 * for developers), userNote (plain words or null), meta, modelUrl, loadMs, inWorker, segment,
 * segmentFile, processFile, reassess, cancel, mask, numTensors (a promise), dispose} (js/engine.js
 * says what each returns); runsOn says where the model runs, in plain
 * words ("the CPU (WebAssembly, 4 threads)"; js/engine.js wasmThreads picks the threads).
 */
export async function loadSegmenter({ modelUrl = "model/", backend = "auto", worker = true } = {}) {
  const started = performance.now();   // loadMs: from this call to a warmed-up model, worker start included
  if (!worker || typeof Worker === "undefined") {
    const engine = await createEngine({ modelUrl, backend });
    return {
      ...engine.info, loadMs: performance.now() - started, inWorker: false, mask: engine.mask,
      segment: (source, definition) => engine.segment(toImageData(source), definition),
      segmentFile: engine.segmentFile, processFile: engine.processFile, reassess: engine.reassess, cancel: engine.cancel,
      numTensors: async () => engine.numTensors(),
      dispose: engine.dispose,
    };
  }
  const client = workerClient();
  let info;
  try {
    // The page's core count: the worker's own may not follow the browser's emulation or policy.
    info = await client.call("load", {
      modelUrl: new URL(modelUrl, new URL("../", import.meta.url)).href, backend, cores: navigator.hardwareConcurrency,
    });
  } catch (err) {
    client.terminate();
    throw err;
  }
  return {
    ...info, loadMs: performance.now() - started, inWorker: true,
    mask: (probability, width, height, threshold = info.meta.threshold) =>
      toMask(probability, width, height, threshold, info.meta.postprocess || {}),
    /** -> {probability, width, height, ms (round trip, as the caller waits), modelMs (in the worker)}. */
    async segment(source, definition = "visible") {
      const t0 = performance.now();
      const image = toImageData(source);
      const out = await client.call("segment", { image, definition });
      return { ...out, modelMs: out.ms, ms: performance.now() - t0 };
    },
    segmentFile: (file, threshold = null, definition = "visible") => client.call("segmentFile", { file, threshold, definition }),
    processFile: (file, threshold = null, definition = "visible") => client.call("processFile", { file, threshold, definition }),
    reassess: (args) => client.call("reassess", args),
    cancel: () => client.call("cancel"),
    numTensors: () => client.call("numTensors"),
    dispose() { client.terminate(); },
  };
}
