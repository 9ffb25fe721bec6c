// The model graph's bilinear resize (tf.image.resize: half-pixel centres, no antialiasing) in
// float32 arithmetic, value for value as lungseg/layers.py computes it (resize_taps,
// resize_input): the page resizes a full-size X-ray to the model's input size reading only the 4
// pixels per output pixel the resize reads, and js/postprocess.js makes full-size probabilities
// from the model's working-size output a row at a time, never as a full-size tensor.
const f = Math.fround;

/** Where the resize reads along one axis: for each output index its lower and upper input
 *  index and the float32 weight of the upper one (layers.resize_taps). */
export function resizeTaps(inSize, outSize) {
  const scale = f(inSize / outSize);
  const lower = new Int32Array(outSize), upper = new Int32Array(outSize), weight = new Float32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    const position = f(f(f(i + 0.5) * scale) - 0.5), floor = Math.floor(position);
    lower[i] = Math.max(floor, 0);
    upper[i] = Math.min(Math.ceil(position), inSize - 1);
    weight[i] = position - floor;
  }
  return { lower, upper, weight };
}

/** RGBA pixels (width x height) -> the model's input: size x size x 3 float32 (HWC), the graph's
 *  first resize (layers.resize_input); `invert`: of the negative (255 - v). */
export function resizeInput(rgba, width, height, size, invert = false) {
  const rows = resizeTaps(height, size), cols = resizeTaps(width, size);
  const out = new Float32Array(size * size * 3);
  const at = invert ? (i) => 255 - rgba[i] : (i) => rgba[i];
  for (let oy = 0, o = 0; oy < size; oy++) {
    const top = rows.lower[oy] * width, bottom = rows.upper[oy] * width, wy = rows.weight[oy];
    for (let ox = 0; ox < size; ox++) {
      const left = cols.lower[ox], right = cols.upper[ox], wx = cols.weight[ox];
      for (let c = 0; c < 3; c++, o++) {
        const tl = at(4 * (top + left) + c), tr = at(4 * (top + right) + c);
        const bl = at(4 * (bottom + left) + c), br = at(4 * (bottom + right) + c);
        const upperRow = f(tl + f((tr - tl) * wx)), lowerRow = f(bl + f((br - bl) * wx));
        out[o] = f(upperRow + f(f(lowerRow - upperRow) * wy));
      }
    }
  }
  return out;
}
