// LungSeg in the browser: load the exported TF.js graph model and segment X-rays.
//
//   import { loadSegmenter } from "./js/segmenter.js";
//   const seg = await loadSegmenter();      // {modelUrl = "model/", backend = "auto", worker = true}
//   const { probability, width, height, ms } = await seg.segment(imageData);
//   const mask = seg.mask(probability, width, height); // Uint8Array 0/1, the model's clean-up
//   const r = await seg.segmentFile(file);  // decode (js/decode.js) + segment + quality and warnings (js/quality.js)
//   seg.dispose();
//
// The model runs in a module worker (js/worker.js) unless worker is false, where it runs on the
// calling thread (js/engine.js); both give the same API and results. Relative modelUrl values
// are resolved against web/, so the module works from any page that imports it.
import { createEngine } from "./engine.js";
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

/** A client for js/worker.js: call(type, args, transfer) -> a promise of the worker's result. */
function workerClient() {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "lungseg-model" });
  const pending = new Map();
  let nextId = 1;
  const failAll = (error) => { for (const { reject } of pending.values()) reject(error); pending.clear(); };
  worker.addEventListener("message", ({ data: { id, result, error } }) => {
    const call = pending.get(id);
    pending.delete(id);
    if (!error) return call.resolve(result);
    const err = error.name === "ImageDecodeError" ? new ImageDecodeError(error.message, error.code) : new Error(error.message);
    call.reject(err);
  });
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    failAll(new Error(`the model worker failed: ${event.message || "it could not start"}`));
  });
  return {
    call(type, args, transfer = []) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, type, args }, transfer);
      });
    },
    terminate() { worker.terminate(); failAll(new Error("the segmenter was disposed")); },
  };
}

/**
 * Load the model and pick a backend.
 * backend: "auto" (fastest available: webgpu, webgl on a real GPU, wasm, cpu) or a name; a
 * named backend that fails falls back to the others in that order. worker: run the model in a
 * module worker (default) or on this thread. Resolves to {backend, backendLabel, notes (raw,
 * for developers), userNote (plain words or null), meta, modelUrl, loadMs, inWorker, segment,
 * segmentFile, mask, numTensors (a promise), dispose}; runsOn says where the model runs, in plain
 * words ("the CPU (WebAssembly, 4 threads)"; js/engine.js wasmThreads picks the threads).
 */
export async function loadSegmenter({ modelUrl = "model/", backend = "auto", worker = true } = {}) {
  const started = performance.now();   // loadMs: from this call to a warmed-up model, worker start included
  if (!worker || typeof Worker === "undefined") {
    const engine = await createEngine({ modelUrl, backend });
    return {
      ...engine.info, loadMs: performance.now() - started, inWorker: false, mask: engine.mask,
      segment: (source) => engine.segment(toImageData(source)),
      segmentFile: engine.segmentFile,
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
    async segment(source) {
      const t0 = performance.now();
      const image = toImageData(source);
      const out = await client.call("segment", { image });
      return { ...out, modelMs: out.ms, ms: performance.now() - t0 };
    },
    async segmentFile(file, threshold = info.meta.threshold) {
      const { rgba, ...out } = await client.call("segmentFile", { file, threshold });
      return { ...out, imageData: new ImageData(rgba, out.width, out.height) };
    },
    numTensors: () => client.call("numTensors"),
    dispose() { client.terminate(); },
  };
}
