// Mask clean-up, the same rule as lungseg/postprocess.py (scipy.ndimage):
// threshold, keep the N largest 8-connected regions (ties: the region met first in raster
// order), then fill holes (background not 4-connected to the image border becomes lung).

/** probability (Float32Array) >= threshold -> Uint8Array 0/1. The threshold is rounded to
 *  float32 first, as NumPy 2 compares a float32 array with a Python float. */
export function threshold(probability, t) {
  const tf32 = Math.fround(t);
  const mask = new Uint8Array(probability.length);
  for (let i = 0; i < probability.length; i++) mask[i] = probability[i] >= tf32 ? 1 : 0;
  return mask;
}

/** Label 8-connected regions of a 0/1 mask in raster order: {labels: Int32Array, areas: number[]}. */
export function label8(mask, width, height) {
  const labels = new Int32Array(mask.length);
  const areas = [0];
  const stack = new Int32Array(mask.length);
  let next = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    next += 1;
    let top = 0, area = 0;
    stack[top++] = start;
    labels[start] = next;
    while (top) {
      const p = stack[--top];
      area++;
      const x = p % width, y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (mask[q] && !labels[q]) { labels[q] = next; stack[top++] = q; }
        }
      }
    }
    areas.push(area);
  }
  return { labels, areas };
}

/** Keep the `keep` largest 8-connected regions (keep = 0: all). Returns a new mask.
 *  `labelled`: label8 of the mask, when the caller has it already. */
export function keepLargest(mask, width, height, keep, labelled = null) {
  if (!keep) return mask.slice();
  const { labels, areas } = labelled || label8(mask, width, height);
  const count = areas.length - 1;
  if (count <= keep) return mask.slice();
  const order = Array.from({ length: count }, (_, i) => i + 1)
    .sort((a, b) => (areas[b] - areas[a]) || (a - b));   // stable: ties keep raster order
  const kept = new Uint8Array(count + 1);
  for (const l of order.slice(0, keep)) kept[l] = 1;
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = kept[labels[i]];
  return out;
}

/** scipy.ndimage.binary_fill_holes: background not 4-connected to the border is filled. */
export function fillHoles(mask, width, height) {
  const outside = new Uint8Array(mask.length);
  const stack = new Int32Array(mask.length);
  let top = 0;
  const seed = (p) => { if (!mask[p] && !outside[p]) { outside[p] = 1; stack[top++] = p; } };
  for (let x = 0; x < width; x++) { seed(x); seed((height - 1) * width + x); }
  for (let y = 0; y < height; y++) { seed(y * width); seed(y * width + width - 1); }
  while (top) {
    const p = stack[--top];
    const x = p % width;
    if (x > 0) seed(p - 1);
    if (x < width - 1) seed(p + 1);
    if (p >= width) seed(p - width);
    if (p < mask.length - width) seed(p + width);
  }
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = outside[i] ? 0 : 1;
  return out;
}

/** The card's clean-up ({keep_largest, fill_holes}) of a thresholded map (`labelled`: its label8). */
export function cleanMask(raw, width, height, postprocess = {}, labelled = null) {
  let mask = raw;
  if (postprocess.keep_largest) mask = keepLargest(mask, width, height, postprocess.keep_largest, labelled);
  if (postprocess.fill_holes) mask = fillHoles(mask, width, height);
  return mask;
}

/** The full rule: threshold, then the card's clean-up ({keep_largest, fill_holes}). */
export function toMask(probability, width, height, t, postprocess = {}) {
  if (probability.length !== width * height) {
    throw new Error(`probability has ${probability.length} values, expected ${width}x${height}`);
  }
  return cleanMask(threshold(probability, t), width, height, postprocess);
}
