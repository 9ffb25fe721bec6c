// Mask, labels and overlay PNGs (fast-png) and the zip of results (fflate's streaming Zip), from
// the vendored libraries.
import { Zip, ZipPassThrough } from "../vendor/fflate.js";
import { encode } from "../vendor/fast-png/index.js";

/** 8-bit grey values of width x height -> PNG bytes, as they are (e.g. side labels 0/1/2). */
export function encodeGreyPng(data, width, height) {
  return encode({ width, height, data, channels: 1, depth: 8 });
}

/** 8-bit RGB values (3 per pixel) of width x height -> PNG bytes (an overlay). */
export function encodeRgbPng(data, width, height) {
  return encode({ width, height, data, channels: 3, depth: 8 });
}

/** A zip written as it goes: stored entries (PNGs are already compressed), the bytes moved into
 *  Blob parts after each entry, so the zip never sits in this thread's memory whole. */
export class ZipWriter {
  constructor(date = new Date()) {
    this.date = date;
    this.chunks = [];
    this.parts = [];
    this.zip = new Zip((err, chunk) => {
      if (err) throw err;
      this.chunks.push(chunk);
    });
  }

  /** Add one file (Uint8Array) under `name`. */
  add(name, data) {
    const entry = new ZipPassThrough(name);
    entry.mtime = this.date;
    this.zip.add(entry);
    entry.push(data, true);
    this.flush();
  }

  flush() {
    if (this.chunks.length) this.parts.push(new Blob(this.chunks));
    this.chunks = [];
  }

  /** The whole zip as a Blob. */
  finish() {
    this.zip.end();
    this.flush();
    return new Blob(this.parts, { type: "application/zip" });
  }
}
