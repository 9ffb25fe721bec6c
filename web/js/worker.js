// The module worker that runs the model (js/engine.js) off the page's main thread, so the page
// stays responsive while a batch runs; a second instance, without a model, makes the downloads
// (js/outputs.js), so a zip can be stopped by ending it. js/segmenter.js is its only client: each
// message is {id, type, args}; each answer {id, result}, {id, error: {name, message, code}} or,
// while a call runs, {id, progress}.
import { createEngine } from "./engine.js";
import { outputPngs, writeZip } from "./outputs.js";

let engine = null;

/** The buffers of a result's runs (each definition's) and working-size maps, moved rather than copied. */
const buffers = (r) => [r.mask?.data?.buffer, r.whole?.mask?.data?.buffer,
  ...Object.values(r.working || {}).map((w) => w.values.buffer)].filter(Boolean);

const handlers = {
  async load(options) {
    engine?.dispose();
    engine = await createEngine(options);
    return { result: engine.info };
  },
  async segment({ image, definition }) {
    const out = await engine.segment(image, definition);
    return { result: out, transfer: [out.probability.buffer] };
  },
  async segmentFile({ file, threshold, definition }) {
    const out = await engine.segmentFile(file, threshold, definition);
    return { result: out, transfer: [out.mask.buffer, out.whole?.mask.buffer].filter(Boolean) };
  },
  async processFile({ file, threshold, definition }) {
    const out = await engine.processFile(file, threshold, definition);
    return { result: out, transfer: buffers(out) };
  },
  async reassess(args) {
    const out = await engine.reassess(args);
    return { result: out, transfer: buffers(out) };
  },
  async cancel() { engine?.cancel(); return { result: null }; },
  async outputs(args) {
    const out = await outputPngs(args);
    return { result: out, transfer: Object.values(out).map((png) => png.buffer) };
  },
  async zip(args, progress) { return { result: await writeZip(args, progress) }; },
  async numTensors() { return { result: engine ? engine.numTensors() : 0 }; },
  async dispose() { engine?.dispose(); engine = null; return { result: null }; },
};

self.addEventListener("message", async ({ data: { id, type, args } }) => {
  try {
    const progress = (...values) => self.postMessage({ id, progress: values });
    const { result, transfer = [] } = await handlers[type](args || {}, progress);
    self.postMessage({ id, result }, transfer);
  } catch (err) {
    self.postMessage({ id, error: { name: err.name, message: err.message || String(err), code: err.code } });
  }
});
