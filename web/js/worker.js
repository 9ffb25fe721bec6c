// The module worker that runs the model (js/engine.js) off the page's main thread, so the page
// stays responsive while a batch runs. js/segmenter.js is its only client: each message is
// {id, type, args}; each answer {id, result} or {id, error: {name, message, code}}.
import { createEngine } from "./engine.js";

let engine = null;

const handlers = {
  async load(options) {
    engine?.dispose();
    engine = await createEngine(options);
    return { result: engine.info };
  },
  async segment({ image }) {
    const out = await engine.segment(image);
    return { result: out, transfer: [out.probability.buffer] };
  },
  async segmentFile({ file, threshold }) {
    const { imageData, ...out } = await engine.segmentFile(file, threshold);
    const result = { ...out, rgba: imageData.data };   // ImageData rebuilt on the page side
    return { result, transfer: [imageData.data.buffer, out.probability.buffer, out.mask.buffer] };
  },
  async numTensors() { return { result: engine ? engine.numTensors() : 0 }; },
  async dispose() { engine?.dispose(); engine = null; return { result: null }; },
};

self.addEventListener("message", async ({ data: { id, type, args } }) => {
  try {
    const { result, transfer = [] } = await handlers[type](args || {});
    self.postMessage({ id, result }, transfer);
  } catch (err) {
    self.postMessage({ id, error: { name: err.name, message: err.message || String(err), code: err.code } });
  }
});
