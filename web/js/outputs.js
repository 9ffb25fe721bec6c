// The page's downloads, made in a worker from what the page keeps of each result (the file the
// user gave and its masks as runs): NAME.mask.png, NAME.labels.png and NAME.overlay.png (and the
// whole lung's NAME.whole.mask.png, ...) at the X-ray's own size (the overlay from the file
// decoded again, as lungseg.plots.overlay makes it),
// one at a time, and the zip of all of them written as a stream into Blob parts (the browser
// keeps those outside the page's memory), so a batch of hundreds of full-size X-rays never sits
// in memory at once.
import { decodeImage } from "./decode.js";
import { ZipWriter, encodeGreyPng, encodeRgbPng } from "./encode.js";
import { sideLabels } from "./measure.js";
import { OUTPUT_KINDS, overlayRgb } from "./results.js";
import * as runs from "./runs.js";

/** The PNG bytes of each of `kinds` for one result: {mask, overlay, labels} (those asked for).
 *  `file`: the X-ray (decoded again for the overlay); `mask`: its runs; `overlay`: {opacity, color}. */
export async function outputPngs({ file, mask, kinds = OUTPUT_KINDS, overlay }) {
  const { width, height } = mask, out = {};
  if (kinds.includes("mask")) out.mask = encodeGreyPng(runs.toMask(mask, 255), width, height);
  if (kinds.includes("labels")) out.labels = encodeGreyPng(sideLabels(mask), width, height);
  if (kinds.includes("overlay")) {
    const { imageData } = await decodeImage(file);
    const rgb = overlayRgb(imageData.data, runs.toMask(mask), overlay.opacity, overlay.color);
    out.overlay = encodeRgbPng(rgb, width, height);
  }
  return out;
}

/**
 * The zip of a batch, laid out like `lungseg predict --labels`'s output folder: for each item
 * ({file, outlines: [{mask, names: {mask, overlay, labels}}]}, an outline per lung definition)
 * its three PNGs per outline, then `manifest` (text) as `manifestName`. `progress(done, total)`
 * after each item. Resolves to a Blob.
 */
export async function writeZip({ items, manifest, manifestName, overlay }, progress = () => {}) {
  const zip = new ZipWriter();
  for (const [index, { file, outlines }] of items.entries()) {
    for (const { mask, names } of outlines) {
      const pngs = await outputPngs({ file, mask, overlay });
      for (const kind of OUTPUT_KINDS) zip.add(names[kind], pngs[kind]);
    }
    progress(index + 1, items.length);
  }
  zip.add(manifestName, new TextEncoder().encode(manifest));
  return zip.finish();
}
