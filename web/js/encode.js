// Mask, labels and overlay PNGs (fast-png) and the zip of results (fflate), from the vendored libraries.
import { zipSync } from "../vendor/fflate.js";
import { encode } from "../vendor/fast-png/index.js";

/** 8-bit grey values of width x height -> PNG bytes, as they are (e.g. side labels 0/1/2). */
export function encodeGreyPng(data, width, height) {
  return encode({ width, height, data, channels: 1, depth: 8 });
}

/** 8-bit RGB values (3 per pixel) of width x height -> PNG bytes (an overlay). */
export function encodeRgbPng(data, width, height) {
  return encode({ width, height, data, channels: 3, depth: 8 });
}

/** A 0/1 (or 0..255) mask of width x height -> PNG bytes, 8-bit grey, nonzero -> 255. */
export function encodeMaskPng(mask, width, height) {
  return encodeGreyPng(Uint8Array.from(mask, (v) => (v ? 255 : 0)), width, height);
}

/** [{name, data: Uint8Array}] -> a zip Blob (stored entries: PNGs are already compressed). */
export function makeZip(entries, date = new Date()) {
  const files = Object.fromEntries(entries.map(({ name, data }) => [name, [data, { level: 0, mtime: date }]]));
  return new Blob([zipSync(files)], { type: "application/zip" });
}
