// From the model's output to the final mask, the rule of lungseg/postprocess.py: threshold, keep
// the N largest 8-connected regions (ties: the region met first in raster order), fill holes
// (background not 4-connected to the image border becomes lung). The probability is kept at the
// model's working size (ProbabilityMap) and made at full size a row at a time, as the graph's own
// bilinear resize would make it; masks are runs (js/runs.js), never full-size label images.
import { resizeTaps } from "./resize.js";
import * as runs from "./runs.js";

const f = Math.fround;
const UNCERTAIN = [0.1, 0.9];   // quality.py: probabilities between these count as undecided
const HEADS = { Sigmoid: (v) => f(1 / (1 + Math.exp(-v))), Identity: null };

/** Ops the page can apply after the graph's last resize (the model's head), by TF op name. */
export const HEAD_OPS = Object.keys(HEADS);

/**
 * One image's lung probability, held as the model's output at its working size: `values`
 * (workHeight x workWidth float32) is what the graph resizes to the image's width x height
 * before its last ops `head` (e.g. ["Sigmoid"]). Full-size rows equal the graph's: its bilinear
 * resize (lungseg.layers.resize_taps, float32), then the head.
 */
export class ProbabilityMap {
  constructor(values, workWidth, workHeight, width, height, head = []) {
    Object.assign(this, { values, workWidth, workHeight, width, height, head });
    this.rows = resizeTaps(workHeight, height);
    this.ops = head.map((op) => HEADS[op]).filter(Boolean);
    this.buffer = new Float32Array(width);
  }

  /** Every working row resized along the columns once, as the graph's resize does first. */
  across() {
    if (!this.acrossRows) {
      const { values, workWidth, workHeight, width } = this, cols = resizeTaps(workWidth, width);
      const out = new Float32Array(workHeight * width);
      for (let r = 0; r < workHeight; r++) {
        for (let x = 0; x < width; x++) {
          const lower = values[r * workWidth + cols.lower[x]], upper = values[r * workWidth + cols.upper[x]];
          out[r * width + x] = f(lower + f(f(upper - lower) * cols.weight[x]));
        }
      }
      this.acrossRows = out;
    }
    return this.acrossRows;
  }

  /** Full-size probabilities of row y, columns [x0, x1) (a view, valid until the next call). */
  row(y, x0 = 0, x1 = this.width) {
    const across = this.across(), width = this.width, out = this.buffer;
    const upper = this.rows.lower[y] * width, lower = this.rows.upper[y] * width, w = this.rows.weight[y];
    for (let x = x0; x < x1; x++) {
      const a = across[upper + x];
      let v = f(a + f(f(across[lower + x] - a) * w));
      for (const op of this.ops) v = op(v);
      out[x - x0] = v;
    }
    return out.subarray(0, x1 - x0);
  }

  /** The working-size map, head applied, >= t: a Uint8Array 0/1 of workHeight x workWidth, the
   *  threshold rounded to float32 (inference._working_mask, what quality.pairFeatures reads). */
  thresholded(t) {
    const tf32 = f(t), { values } = this, out = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      let v = values[i];
      for (const op of this.ops) v = op(v);
      out[i] = v >= tf32 ? 1 : 0;
    }
    return out;
  }

  /** The full-size Float32Array (only when asked for: 4 bytes per pixel). */
  full() {
    const out = new Float32Array(this.width * this.height);
    for (let y = 0; y < this.height; y++) out.set(this.row(y), y * this.width);
    return out;
  }
}

/** A full-size probability map (Float32Array of width x height) with ProbabilityMap's rows. */
export class FullMap {
  constructor(values, width, height) {
    if (values.length !== width * height) throw new Error(`probability has ${values.length} values, expected ${width}x${height}`);
    Object.assign(this, { values, width, height });
  }

  row(y, x0 = 0, x1 = this.width) { return this.values.subarray(y * this.width + x0, y * this.width + x1); }
}

/** map >= t as runs, with what quality.features reads of the map on the way (one pass): the total
 *  probability, the undecided pixels (compared as doubles) and each run's sum of probabilities.
 *  The threshold is rounded to float32 first, as NumPy 2 compares a float32 array with a float. */
export function thresholdRuns(map, t) {
  const tf32 = f(t), { width, height } = map, builder = new runs.RunsBuilder(width, height);
  const sums = [];
  let total = 0, undecided = 0;
  for (let y = 0; y < height; y++) {
    const row = map.row(y);
    let start = -1, sum = 0;
    for (let x = 0; x < width; x++) {
      const p = row[x];
      total += p;
      if (p > UNCERTAIN[0] && p < UNCERTAIN[1]) undecided++;
      if (p >= tf32) {
        if (start < 0) { start = x; sum = 0; }
        sum += p;
      } else if (start >= 0) { builder.push(y, start, x); sums.push(sum); start = -1; }
    }
    if (start >= 0) { builder.push(y, start, width); sums.push(sum); }
  }
  return { raw: builder.done(), runSums: sums, total, undecided };
}

/** Sum of the map's probabilities over the pixels of `part` (runs). */
function sumOver(map, part) {
  let sum = 0;
  runs.forEachRun(part, (y, x0, x1) => { for (const p of map.row(y, x0, x1)) sum += p; });
  return sum;
}

/**
 * The full rule on a map (ProbabilityMap or FullMap): the mask as runs after the card's clean-up
 * ({keep_largest, fill_holes}), the raw thresholded runs and their regions, and the sums
 * quality.features reads ({total, inside, undecided}), as postprocess.full_size_mask computes them.
 */
export function fullSizeMask(map, t, postprocess = {}) {
  const { raw, runSums, total, undecided } = thresholdRuns(map, t);
  const rawRegions = runs.label(raw);
  const kept = runs.largest(rawRegions, postprocess.keep_largest || 0);
  let mask = kept ? runs.select(raw, rawRegions, (l) => kept[l]) : raw, inside = 0;
  runSums.forEach((sum, i) => { if (!kept || kept[rawRegions.labels[i]]) inside += sum; });
  if (postprocess.fill_holes) {
    const { filled, holes } = runs.fillHoles(mask);
    mask = filled;
    inside += sumOver(map, holes);
  }
  return { mask, raw, rawRegions, sums: { total, inside, undecided } };
}

/** The rule on a full-size Float32Array: a Uint8Array 0/1 mask of width x height. */
export function toMask(probability, width, height, t, postprocess = {}) {
  return runs.toMask(fullSizeMask(new FullMap(probability, width, height), t, postprocess).mask);
}
