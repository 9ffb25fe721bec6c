// Decode an X-ray file into RGBA ImageData the way lungseg/imageio.py does in Python, with the
// checks, limits and messages of vendor/rules.json (lungseg/rules.json) in Python's order:
// empty, file too large, format (else text file / unknown format), too many pixels or too small
// (from the header, before decoding), corrupt. PNG (fast-png) and TIFF (tiff) are decoded
// exactly: no colour management, 16-bit grey stretched from its own min..max to 0..255, 16-bit
// colour reduced to the high byte, palettes expanded, alpha dropped. JPEG, BMP and WebP go
// through the browser's decoder, EXIF orientation applied. DICOM (recognised first and by
// content, as in Python) is read by js/dicom.js, imported on first use. Works in a page and in a worker.
import { convertIndexedToRgb, decode as decodePngFile } from "../vendor/fast-png/index.js";
import { decode as decodeTiffFile } from "../vendor/tiff/index.js";
import { loadRules, message, toFixedEven } from "./rules.js";

/** A file the page cannot use; `message` is the user message of rules.json, `code` its key. */
export class ImageDecodeError extends Error {
  constructor(message, code) { super(message); this.name = "ImageDecodeError"; this.code = code; }
}

const view = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const ascii = (b, start, end) => String.fromCharCode(...b.subarray(start, end));

/** NumPy's np.round: halves to even. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** lungseg.imageio._to_uint8 on every `stride`-th sample: stretched min..max (NaN ignored) to 0..255. */
function stretch(data, n, stride) {
  let low = Infinity, high = -Infinity;
  for (let i = 0; i < n; i++) { const v = data[i * stride]; if (v < low) low = v; if (v > high) high = v; }
  const out = new Uint8Array(n);
  if (!(high > low)) return out;
  const scale = 255 / (high - low);
  for (let i = 0; i < n; i++) out[i] = roundHalfEven((data[i * stride] - low) * scale);
  return out;
}

/** grey (Uint8Array of n) or interleaved colour samples -> RGBA ImageData, alpha 255. */
function toImageData(width, height, grey, colour = null, channels = 3, shift = 0) {
  const n = width * height, rgba = new Uint8ClampedArray(n * 4).fill(255);
  for (let i = 0; i < n; i++) {
    if (grey) rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = grey[i];
    else for (let c = 0; c < 3; c++) rgba[4 * i + c] = colour[i * channels + c] >> shift;
  }
  return new ImageData(rgba, width, height);
}

// --- DICOM, recognised by content as lungseg/dicom.py does (read by js/dicom.js) -------------

const DICM_OFFSET = 128;
export const RAW_FIRST_GROUPS = [0x0002, 0x0008];      // a data set without preamble starts so
export const DATASET_FIRST_GROUPS = [0x0004, 0x0008, 0x0800];  // after the file meta (a DICOMDIR; big endian)
const VRS = new Set(("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
  + "UL UN UR US UT UV").split(" "));
const LONG_VRS = new Set("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split(" "));

/** Whether a known VR follows the tag at `offset` (explicit VR), as pydicom guesses. */
export const explicitVrAt = (b, offset) => b.length >= offset + 6 && VRS.has(ascii(b, offset + 4, offset + 6));

/** dicom.py _starts_element: a data element of one of `groups` at `offset`, explicit VR (a known
 *  VR after the tag) or implicit VR little endian (an even or undefined length). */
export function startsElement(b, offset, groups) {
  if (b.length < offset + 8 || !groups.includes(view(b).getUint16(offset, true))) return false;
  if (explicitVrAt(b, offset)) return true;
  const length = view(b).getUint32(offset + 4, true);
  return length % 2 === 0 || length === 0xffffffff;
}

/** dicom.py _meta: [where a Part 10 file's data set starts, its Transfer Syntax UID], or
 *  [null, ""] if the group 0002 elements run past the bytes. */
export function dicomMeta(b) {
  let offset = DICM_OFFSET + 4, syntax = "";
  while (b.length >= offset + 8 && b[offset] === 2 && b[offset + 1] === 0) {
    const long = LONG_VRS.has(ascii(b, offset + 4, offset + 6)), start = offset + (long ? 12 : 8);
    if (long && b.length < start) return [null, ""];
    const end = start + (long ? view(b).getUint32(offset + 8, true) : view(b).getUint16(offset + 6, true));
    if (b[offset + 2] === 0x10 && b[offset + 3] === 0) syntax = ascii(b, start, Math.min(end, b.length)).replace(/^[\0 ]+|[\0 ]+$/g, "");
    offset = end;
  }
  return offset <= b.length ? [offset, syntax] : [null, ""];
}

/** dicom.py _part10: the "DICM" marker after the 128-byte preamble. */
export const isPart10 = (b) => b.length >= DICM_OFFSET + 4 && ascii(b, DICM_OFFSET, DICM_OFFSET + 4) === "DICM";

/** dicom.py is_dicom: a Part 10 file, or an older data set without preamble and file meta. */
export const isDicom = (b) => isPart10(b) || startsElement(b, 0, RAW_FIRST_GROUPS);

// --- PNG ---------------------------------------------------------------------------------

function pngSize(b) {
  if (b.length < 24 || ascii(b, 12, 16) !== "IHDR") return null;
  return { width: view(b).getUint32(16), height: view(b).getUint32(20) };
}

function decodePng(bytes) {
  let png;
  try {
    png = decodePngFile(bytes, { checkCrc: true });
  } catch (err) {
    const cause = err.cause || err;   // fast-png wraps inflate errors
    throw new Error(cause instanceof RangeError || /EOF/.test(cause.message) ? "the file ends early" : cause.message);
  }
  const { width, height, depth } = png, n = width * height;
  let { data, channels } = png;
  if (png.palette && channels === 1) {   // indexed: expanded to RGB(A), 8-bit
    return { imageData: toImageData(width, height, null, convertIndexedToRgb(png), png.palette[0].length), note: "" };
  }
  if (depth === 16 && channels === 1) {
    return { imageData: toImageData(width, height, stretch(data, n, 1)), note: "16-bit grey, stretched min..max to 8 bits" };
  }
  if (depth < 8) {   // packed 1/2/4-bit grey, scaled to 0..255
    const max = (1 << depth) - 1, stride = Math.ceil((width * depth) / 8), grey = new Uint8Array(n);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const bit = x * depth, s = (data[y * stride + (bit >> 3)] >> (8 - depth - (bit & 7))) & max;
        grey[y * width + x] = Math.round((s * 255) / max);
      }
    }
    return { imageData: toImageData(width, height, grey), note: "" };
  }
  const shift = depth === 16 ? 8 : 0;   // 16-bit colour or grey+alpha: the high byte
  if (channels <= 2) {
    const grey = new Uint8Array(n);
    for (let i = 0; i < n; i++) grey[i] = data[i * channels] >> shift;
    return { imageData: toImageData(width, height, grey), note: "" };
  }
  return { imageData: toImageData(width, height, null, data, channels, shift), note: "" };
}

// --- TIFF (first page) ---------------------------------------------------------------------

function tiffSize(b) {
  const [ifd] = decodeTiffFile(b, { pages: [0], ignoreImageData: true });
  return { width: ifd.width, height: ifd.height };
}

function decodeTiff(bytes) {
  const [ifd] = decodeTiffFile(bytes, { pages: [0] });
  const { width, height, data, samplesPerPixel: channels, bitsPerSample: depth } = ifd, n = width * height;
  if (ifd.type === 3) {   // palette: a 16-bit colour map, reduced to 8 bits as Pillow does
    const map = ifd.get("ColorMap"), size = 1 << depth, rgb = new Uint16Array(n * 3);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = map[c * size + data[i]];
    return { imageData: toImageData(width, height, null, rgb, 3, 8), note: "" };
  }
  if (channels >= 3) return { imageData: toImageData(width, height, null, data, channels, depth === 16 ? 8 : 0), note: "" };
  if (depth === 8 || depth === 1) {
    const grey = new Uint8Array(n), scale = depth === 1 ? 255 : 1;
    for (let i = 0; i < n; i++) grey[i] = data[i * channels] * scale;
    return { imageData: toImageData(width, height, grey), note: "" };
  }
  return { imageData: toImageData(width, height, stretch(data, n, channels)), note: `${depth}-bit grey, stretched min..max to 8 bits` };
}

// --- JPEG, BMP, WebP: the browser's decoder -------------------------------------------------

/** Width and height from a JPEG's SOF marker (null if not found). */
function jpegSize(b) {
  let pos = 2;
  while (pos + 9 < b.length) {
    if (b[pos] !== 0xff) { pos++; continue; }
    const marker = b[pos + 1];
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0xff) { pos += marker === 0xff ? 1 : 2; continue; }
    const length = (b[pos + 2] << 8) | b[pos + 3];
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { height: (b[pos + 5] << 8) | b[pos + 6], width: (b[pos + 7] << 8) | b[pos + 8] };
    }
    pos += 2 + length;
  }
  return null;
}

/** A JPEG must end with an end-of-image marker (trailing data of up to 64 KiB allowed). */
function jpegComplete(b) {
  const stop = Math.max(1, b.length - 65536);
  for (let end = b.length - 1; end >= stop; end--) if (b[end - 1] === 0xff && b[end] === 0xd9) return true;
  return false;
}

function bmpHeader(b) {
  if (b.length < 30) return null;
  const v = view(b), core = v.getUint32(14, true) === 12;
  const width = core ? v.getUint16(18, true) : Math.abs(v.getInt32(18, true));
  const height = core ? v.getUint16(20, true) : Math.abs(v.getInt32(22, true));
  const bits = v.getUint16(core ? 24 : 28, true), compression = core || b.length < 34 ? 0 : v.getUint32(30, true);
  return { width, height, bits, compression, offset: v.getUint32(10, true) };
}

/** An uncompressed BMP must hold all its rows (browsers draw a cut one without complaint). */
function bmpComplete(b) {
  const h = bmpHeader(b);
  if (h.compression !== 0 && h.compression !== 3) return true;
  return b.length >= h.offset + Math.ceil((h.width * h.bits) / 32) * 4 * h.height;
}

function webpSize(b) {
  if (b.length < 30) return null;
  const chunk = ascii(b, 12, 16), v = view(b);
  if (chunk === "VP8 ") return { width: v.getUint16(26, true) & 0x3fff, height: v.getUint16(28, true) & 0x3fff };
  if (chunk === "VP8L") {
    const bits = v.getUint32(21, true);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8X") {
    const u24 = (p) => b[p] | (b[p + 1] << 8) | (b[p + 2] << 16);
    return { width: u24(24) + 1, height: u24(27) + 1 };
  }
  return null;
}

/** A WebP must hold the bytes its RIFF header announces. */
function webpComplete(b) { return b.length >= 8 + view(b).getUint32(4, true); }

function browserDecoder(type) {
  return async (bytes) => {
    let bitmap;
    try {
      bitmap = await createImageBitmap(new Blob([bytes], { type }),
        { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" });
    } catch (err) {
      throw new Error("this browser could not decode it");
    }
    try {
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(bitmap, 0, 0);
      const imageData = context.getImageData(0, 0, bitmap.width, bitmap.height);
      const d = imageData.data;
      for (let i = 3; i < d.length; i += 4) d[i] = 255;   // alpha dropped, as in Python
      return { imageData, note: "" };
    } finally {
      bitmap.close();
    }
  };
}

// name: as in rules.json. matches: the file signature. size: {width, height} from the header.
// complete: false if the file visibly ends early. decode: bytes -> {imageData, note}.
const FORMATS = [
  { name: "DICOM", matches: isDicom },   // read by js/dicom.js
  { name: "PNG", matches: (b) => [137, 80, 78, 71, 13, 10, 26, 10].every((v, i) => b[i] === v), size: pngSize, decode: decodePng },
  { name: "JPEG", matches: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff, size: jpegSize,
    complete: jpegComplete, decode: browserDecoder("image/jpeg") },
  { name: "TIFF", matches: (b) => ["II*\0", "MM\0*"].includes(ascii(b, 0, 4)), size: tiffSize, decode: decodeTiff },
  { name: "BMP", matches: (b) => ascii(b, 0, 2) === "BM", size: bmpHeader, complete: bmpComplete, decode: browserDecoder("image/bmp") },
  { name: "WebP", matches: (b) => ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WEBP", size: webpSize,
    complete: webpComplete, decode: browserDecoder("image/webp") },
];

/** The formats of rules.json this page can decode (the file chooser offers only these). */
export function pageFormats(rules) { return rules.formats.filter((r) => FORMATS.some((f) => f.name === r.name)); }

/** lungseg.imageio._looks_like_text: the head is UTF-8 of printable characters, tabs and newlines. */
function looksLikeText(head) {
  let text;
  try { text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(head); } catch (err) { return false; }
  return /^(?:[\t\r\n ]|[^\p{C}\p{Z}])*$/u.test(text);
}

/** imageio._check_size: refuse an image outside the pixel limits (from its header). */
export function checkSize(rules, name, width, height) {
  const fail = (code, fields) => { throw new ImageDecodeError(message(rules, code, name, fields), code); };
  if (width * height > rules.max_pixels) {
    fail("too_many_pixels", { width, height, megapixels: toFixedEven((width * height) / 1e6, 1) });
  }
  if (Math.min(width, height) < rules.min_side) fail("too_small", { width, height });
}

/** File/Blob -> {imageData (RGBA, alpha 255), width, height, note, and for a DICOM its
 *  warnings, spacing and spacingSource}; throws ImageDecodeError. */
export async function decodeImage(file, name = file.name || "image") {
  const rules = await loadRules();
  const fail = (code, fields) => { throw new ImageDecodeError(message(rules, code, name, fields), code); };
  if (!file.size) fail("empty");
  if (file.size > rules.max_file_bytes) fail("file_too_large", { megabytes: toFixedEven(file.size / 2 ** 20, 0) });
  const bytes = new Uint8Array(await file.arrayBuffer());
  const format = FORMATS.find((f) => pageFormats(rules).some((r) => r.name === f.name) && f.matches(bytes));
  if (!format) fail(looksLikeText(bytes.subarray(0, 512)) ? "text_file" : "unknown_format");
  if (format.name === "DICOM") {
    const decoded = await (await import("./dicom.js")).decodeDicom(bytes, name, rules);
    return { ...decoded, width: decoded.imageData.width, height: decoded.imageData.height };
  }
  let size = null;
  try { size = format.size(bytes); } catch (err) { /* reported as a missing header */ }
  if (!size) fail("corrupt", { detail: `no ${format.name} image header` });
  checkSize(rules, name, size.width, size.height);
  if (format.complete && !format.complete(bytes)) fail("corrupt", { detail: "the file ends early" });
  let decoded;
  try {
    decoded = await format.decode(bytes);
  } catch (err) {
    fail("corrupt", { detail: err instanceof RangeError ? "the file ends early" : err.message || String(err) });
  }
  return { ...decoded, width: decoded.imageData.width, height: decoded.imageData.height };
}
