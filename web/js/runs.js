// A 0/1 mask as runs of lung pixels, row by row: what the page keeps of a full-size mask (a
// 25-megapixel mask is a few thousand runs, not 25 MB), and where regions are counted. Regions are
// labelled as scipy.ndimage.label labels them (8-connected lung, 4-connected background; labels
// numbered in raster order of each region's first pixel), from the runs, without a label image.
//
// Runs: {width, height, data: Int32Array of [y, x0, x1) triples in raster order, count}.

const GROW = 2;

/** Collects runs row by row, in raster order. */
export class RunsBuilder {
  constructor(width, height) {
    this.width = width; this.height = height;
    this.data = new Int32Array(3 * 1024); this.count = 0;
  }

  push(y, x0, x1) {
    if (3 * this.count + 3 > this.data.length) {
      const data = new Int32Array(this.data.length * GROW);
      data.set(this.data);
      this.data = data;
    }
    this.data.set([y, x0, x1], 3 * this.count++);
  }

  /** The runs of one row where `on(x)` holds, for x in [from, to). */
  scan(y, on, from = 0, to = this.width) {
    let start = -1;
    for (let x = from; x < to; x++) {
      if (on(x)) { if (start < 0) start = x; } else if (start >= 0) { this.push(y, start, x); start = -1; }
    }
    if (start >= 0) this.push(y, start, to);
  }

  done() { return { width: this.width, height: this.height, data: this.data.slice(0, 3 * this.count), count: this.count }; }
}

/** A Uint8Array 0/1 (or 0/nonzero) mask of width x height -> runs. */
export function fromMask(mask, width, height) {
  const builder = new RunsBuilder(width, height);
  for (let y = 0; y < height; y++) builder.scan(y, (x) => mask[y * width + x] !== 0);
  return builder.done();
}

/** Runs -> a full-size Uint8Array with `value` (default 1) on their pixels. */
export function toMask(runs, value = 1) {
  const out = new Uint8Array(runs.width * runs.height);
  forEachRun(runs, (y, x0, x1) => out.fill(value, y * runs.width + x0, y * runs.width + x1));
  return out;
}

export function forEachRun(runs, visit) {
  const d = runs.data;
  for (let i = 0; i < runs.count; i++) visit(d[3 * i], d[3 * i + 1], d[3 * i + 2], i);
}

/** Pixels covered. */
export function area(runs) {
  let total = 0;
  forEachRun(runs, (y, x0, x1) => { total += x1 - x0; });
  return total;
}

/** Index of the first run of each row (rows + 1 entries: row y's runs are [start[y], start[y+1])). */
function rowStarts(runs) {
  const start = new Int32Array(runs.height + 1);
  forEachRun(runs, (y) => { start[y + 1]++; });
  for (let y = 0; y < runs.height; y++) start[y + 1] += start[y];
  return start;
}

/**
 * Regions of the runs: {labels: Int32Array (1..regions, one per run), areas: number[] (index 0
 * unused)}. `diagonal`: 8-connected (lung) or 4-connected (background). Labels follow raster
 * order of each region's first pixel, as scipy.ndimage.label numbers them.
 */
export function label(runs, diagonal = true) {
  const parent = new Int32Array(runs.count).map((_, i) => i);
  const root = (i) => { while (parent[i] !== i) { parent[i] = parent[parent[i]]; i = parent[i]; } return i; };
  const d = runs.data, start = rowStarts(runs), reach = diagonal ? 1 : 0;
  for (let y = 1; y < runs.height; y++) {
    let j = start[y - 1];
    for (let i = start[y]; i < start[y + 1]; i++) {
      const x0 = d[3 * i + 1] - reach, x1 = d[3 * i + 2] + reach;   // touches [x0, x1) in the row above
      while (j < start[y] && d[3 * j + 2] <= x0) j++;
      for (let k = j; k < start[y] && d[3 * k + 1] < x1; k++) {
        const a = root(i), b = root(k);
        if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
      }
    }
  }
  const labels = new Int32Array(runs.count), areas = [0], named = new Int32Array(runs.count);
  for (let i = 0; i < runs.count; i++) {
    const r = root(i);
    if (!named[r]) { named[r] = areas.length; areas.push(0); }
    labels[i] = named[r];
    areas[labels[i]] += d[3 * i + 2] - d[3 * i + 1];
  }
  return { labels, areas };
}

/** The runs whose label (of `labelled`) `keep(label)` accepts. */
export function select(runs, labelled, keep) {
  const builder = new RunsBuilder(runs.width, runs.height);
  forEachRun(runs, (y, x0, x1, i) => { if (keep(labelled.labels[i])) builder.push(y, x0, x1); });
  return builder.done();
}

/** The pixels the runs leave out, as runs. */
export function complement(runs) {
  const builder = new RunsBuilder(runs.width, runs.height), start = rowStarts(runs), d = runs.data;
  for (let y = 0; y < runs.height; y++) {
    let x = 0;
    for (let i = start[y]; i < start[y + 1]; i++) {
      if (d[3 * i + 1] > x) builder.push(y, x, d[3 * i + 1]);
      x = d[3 * i + 2];
    }
    if (x < runs.width) builder.push(y, x, runs.width);
  }
  return builder.done();
}

/** Which labels of `labelled` the `keep` largest regions have (Uint8Array flags by label), or
 *  null when every region is kept (keep = 0, or no more regions than that); ties keep the region
 *  met first in raster order. */
export function largest(labelled, keep) {
  const count = labelled.areas.length - 1;
  if (!keep || count <= keep) return null;
  const order = Array.from({ length: count }, (_, i) => i + 1)
    .sort((a, b) => (labelled.areas[b] - labelled.areas[a]) || (a - b));
  const flags = new Uint8Array(count + 1);
  for (const l of order.slice(0, keep)) flags[l] = 1;
  return flags;
}

/** scipy.ndimage.binary_fill_holes: background not 4-connected to the border becomes lung.
 *  -> {filled, holes} (both runs; filled is `runs` itself when there is no hole). */
export function fillHoles(runs) {
  const background = complement(runs), regions = label(background, false);
  const outside = new Uint8Array(regions.areas.length);
  const { width, height } = runs;
  forEachRun(background, (y, x0, x1, i) => {
    if (y === 0 || y === height - 1 || x0 === 0 || x1 === width) outside[regions.labels[i]] = 1;
  });
  const holes = select(background, regions, (l) => !outside[l]);
  if (!holes.count) return { filled: runs, holes };
  return { filled: complement(select(background, regions, (l) => outside[l])), holes };
}

/** Pixels of the first row, last row, first column and last column that the runs cover. */
export function borderCounts(runs) {
  const counts = { top: 0, bottom: 0, left: 0, right: 0 };
  forEachRun(runs, (y, x0, x1) => {
    if (y === 0) counts.top += x1 - x0;
    if (y === runs.height - 1) counts.bottom += x1 - x0;
    if (x0 === 0) counts.left++;
    if (x1 === runs.width) counts.right++;
  });
  return counts;
}

/** Pixels covered by both (two runs of the same size). */
export function overlap(a, b) {
  const sa = rowStarts(a), sb = rowStarts(b), da = a.data, db = b.data;
  let total = 0;
  for (let y = 0; y < a.height; y++) {
    let j = sb[y];
    for (let i = sa[y]; i < sa[y + 1]; i++) {
      const x0 = da[3 * i + 1], x1 = da[3 * i + 2];
      while (j < sb[y + 1] && db[3 * j + 2] <= x0) j++;
      for (let k = j; k < sb[y + 1] && db[3 * k + 1] < x1; k++) total += Math.min(x1, db[3 * k + 2]) - Math.max(x0, db[3 * k + 1]);
    }
  }
  return total;
}
