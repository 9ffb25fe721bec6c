// What a mask measures, as lungseg/measure.py: lung area as fractions of the image per side, and
// in cm² when a DICOM gives the pixel spacing; the mask labelled by side. Masks are runs
// (js/runs.js).
import * as runs from "./runs.js";

/** measure.side_labels as two runs: `right` (1, the patient's right lung, image left) and `left`
 *  (2). Each 8-connected region goes to the side its centre lies on (decided in exact integers);
 *  one region (or none) is split at the image's vertical midline. */
export function sides(mask) {
  const { width, height } = mask, regions = runs.label(mask);
  const right = new runs.RunsBuilder(width, height), left = new runs.RunsBuilder(width, height);
  if (regions.areas.length - 1 >= 2) {
    const columns = new Float64Array(regions.areas.length);   // sums of x: exact below 2^53
    runs.forEachRun(mask, (y, x0, x1, i) => { columns[regions.labels[i]] += ((x0 + x1 - 1) * (x1 - x0)) / 2; });
    runs.forEachRun(mask, (y, x0, x1, i) => {
      const l = regions.labels[i];
      (2 * columns[l] < (width - 1) * regions.areas[l] ? right : left).push(y, x0, x1);
    });
  } else {
    const half = Math.floor(width / 2);
    runs.forEachRun(mask, (y, x0, x1) => {
      if (x0 < half) right.push(y, x0, Math.min(x1, half));
      if (x1 > half) left.push(y, Math.max(x0, half), x1);
    });
  }
  return { right: right.done(), left: left.done() };
}

/** measure.side_labels: a Uint8Array of width x height, 1 = the patient's right lung, 2 = left. */
export function sideLabels(mask) {
  const { right, left } = sides(mask), out = runs.toMask(right);
  runs.forEachRun(left, (y, x0, x1) => out.fill(2, y * mask.width + x0, y * mask.width + x1));
  return out;
}

/** measure.lung_areas: {lung_fraction, image_left_fraction, image_right_fraction}, and with
 *  `spacing` ([row, column] mm per pixel) lung_cm2, image_left_cm2, image_right_cm2. */
export function lungAreas(mask, spacing = null) {
  const { right } = sides(mask), total = runs.area(mask), left = runs.area(right);
  const pixels = mask.width * mask.height;
  const areas = { lung_fraction: total / pixels, image_left_fraction: left / pixels, image_right_fraction: (total - left) / pixels };
  if (spacing) {
    const cm2 = (spacing[0] * spacing[1]) / 100;
    Object.assign(areas, { lung_cm2: total * cm2, image_left_cm2: left * cm2, image_right_cm2: (total - left) * cm2 });
  }
  return areas;
}
