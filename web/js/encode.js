// Mask PNG (fast-png) and zip of masks (fflate), from the vendored libraries.
import { zipSync } from "../vendor/fflate.js";
import { encode } from "../vendor/fast-png/index.js";

/** A 0/1 (or 0..255) mask of width x height -> PNG bytes, 8-bit grey, nonzero -> 255. */
export function encodeMaskPng(mask, width, height) {
  const data = new Uint8Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = mask[i] ? 255 : 0;
  return encode({ width, height, data, channels: 1, depth: 8 });
}

/** [{name, data: Uint8Array}] -> a zip Blob (stored entries: PNGs are already compressed). */
export function makeZip(entries, date = new Date()) {
  const files = Object.fromEntries(entries.map(({ name, data }) => [name, [data, { level: 0, mtime: date }]]));
  return new Blob([zipSync(files)], { type: "application/zip" });
}
