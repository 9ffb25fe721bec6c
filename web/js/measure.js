// What a mask measures, as lungseg/measure.py: lung area as fractions of the image per side, and
// in cm² when a DICOM gives the pixel spacing; the mask labelled by side.
import { label8 } from "./postprocess.js";

/** measure.side_labels: 1 = the patient's right lung (image left), 2 = the left lung. Each
 *  8-connected region goes to the side its centre lies on; one region (or none) is split at
 *  the image's vertical midline. */
export function sideLabels(mask, width, height) {
  const { labels, areas } = label8(mask, width, height);
  const out = new Uint8Array(mask.length);
  if (areas.length - 1 >= 2) {
    const xs = new Float64Array(areas.length);
    for (let i = 0; i < mask.length; i++) if (labels[i]) xs[labels[i]] += i % width;
    const side = Array.from(xs, (sum, l) => (sum / areas[l] < (width - 1) / 2 ? 1 : 2));
    for (let i = 0; i < mask.length; i++) if (labels[i]) out[i] = side[labels[i]];
  } else {
    const half = Math.floor(width / 2);
    for (let i = 0; i < mask.length; i++) if (mask[i]) out[i] = i % width < half ? 1 : 2;
  }
  return out;
}

/** measure.lung_areas: {lung_fraction, image_left_fraction, image_right_fraction}, and with
 *  `spacing` ([row, column] mm per pixel) lung_cm2, image_left_cm2, image_right_cm2. */
export function lungAreas(mask, width, height, spacing = null) {
  const sides = sideLabels(mask, width, height);
  let total = 0, left = 0;
  for (let i = 0; i < sides.length; i++) { if (sides[i]) total++; if (sides[i] === 1) left++; }
  const pixels = width * height;
  const areas = { lung_fraction: total / pixels, image_left_fraction: left / pixels, image_right_fraction: (total - left) / pixels };
  if (spacing) {
    const cm2 = (spacing[0] * spacing[1]) / 100;
    Object.assign(areas, { lung_cm2: total * cm2, image_left_cm2: left * cm2, image_right_cm2: (total - left) * cm2 });
  }
  return areas;
}
