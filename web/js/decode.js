// Decode an X-ray file into RGBA ImageData the way lungseg/imageio.py does in Python:
// PNG is decoded by fast-png (exact samples, no colour management; 16-bit grey stretched from
// its own min..max to 0..255, 16-bit colour reduced to the high byte as Pillow does, palette
// expanded, alpha dropped); JPEG and other formats go through the browser's decoder with EXIF
// orientation applied. Every failure is an ImageDecodeError with a message for the user.
import { convertIndexedToRgb, decode as decodePngFile } from "../vendor/fast-png/index.js";

/** Largest image the page accepts (pixels); bigger ones are refused before decoding. */
export const MAX_PIXELS = 25_000_000;

export class ImageDecodeError extends Error {
  constructor(message) { super(message); this.name = "ImageDecodeError"; }
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

function isPng(b) { return b.length >= 8 && PNG_SIGNATURE.every((v, i) => b[i] === v); }
function isJpeg(b) { return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff; }

function checkSize(width, height) {
  if (!width || !height) throw new ImageDecodeError("the image has no pixels (0 width or height).");
  if (width * height > MAX_PIXELS) {
    throw new ImageDecodeError(`the image is ${width}x${height} pixels, more than the ` +
      `${MAX_PIXELS.toLocaleString("en")} this page accepts; downscale it or use the Python tool.`);
  }
  if (Math.min(width, height) < 8) throw new ImageDecodeError(`the image is only ${width}x${height} pixels.`);
}

/** NumPy's np.round: halves to even. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** fast-png's decode, its errors turned into messages (reading past the end: truncated). */
function readPng(bytes) {
  // Size from IHDR (always the first chunk) before the full decode.
  if (bytes.length < 33) throw new ImageDecodeError("the PNG file is truncated.");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") {
    throw new ImageDecodeError("the PNG file is corrupt (no IHDR header).");
  }
  checkSize(view.getUint32(16), view.getUint32(20));
  try {
    return decodePngFile(bytes, { checkCrc: true });
  } catch (err) {
    const cause = err.cause || err;   // fast-png wraps inflate errors
    if (cause instanceof RangeError || /EOF/.test(cause.message)) throw new ImageDecodeError("the PNG file is truncated.");
    throw new ImageDecodeError(`the PNG file is corrupt (${cause.message}).`);
  }
}

/** PNG bytes -> {imageData, width, height, note}, pixel for pixel as lungseg.read_image. */
function decodePng(bytes) {
  const png = readPng(bytes);
  const { width, height, depth } = png;
  let { data, channels } = png;
  const rgba = new Uint8ClampedArray(width * height * 4).fill(255);   // alpha dropped
  const n = width * height;
  if (png.palette && channels === 1) {   // indexed: expanded to RGB(A), 8-bit
    try { data = convertIndexedToRgb(png); } catch (err) {
      throw new ImageDecodeError(`the PNG file is corrupt (${err.message}).`);
    }
    channels = png.palette[0].length;
  } else if (depth === 16 && channels === 1) {   // 16-bit grey: stretched min..max
    let low = 65535, high = 0;
    for (const v of data) { if (v < low) low = v; if (v > high) high = v; }
    const scale = high > low ? 255 / (high - low) : 0;
    for (let i = 0; i < n; i++) rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = roundHalfEven((data[i] - low) * scale);
    return { imageData: new ImageData(rgba, width, height), width, height, note: "16-bit grey, stretched min..max to 8 bits" };
  } else if (depth < 8) {   // packed 1/2/4-bit grey, scaled to 0..255
    const max = (1 << depth) - 1, stride = Math.ceil((width * depth) / 8);
    const unpacked = new Uint8Array(n);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const bit = x * depth, s = (data[y * stride + (bit >> 3)] >> (8 - depth - (bit & 7))) & max;
        unpacked[y * width + x] = Math.round((s * 255) / max);
      }
    }
    data = unpacked;
  }
  const shift = depth === 16 ? 8 : 0;   // 16-bit colour or grey+alpha: the high byte
  for (let i = 0; i < n; i++) {
    const p = i * channels;
    if (channels <= 2) rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = data[p] >> shift;
    else { rgba[4 * i] = data[p] >> shift; rgba[4 * i + 1] = data[p + 1] >> shift; rgba[4 * i + 2] = data[p + 2] >> shift; }
  }
  return { imageData: new ImageData(rgba, width, height), width, height, note: "" };
}

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

async function decodeWithBrowser(bytes, type) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes], { type }),
      { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" });
  } catch (err) {
    throw new ImageDecodeError("the image is corrupt or not in a format this browser can read (use PNG or JPEG).");
  }
  try {
    checkSize(bitmap.width, bitmap.height);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const imageData = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const d = imageData.data;
    for (let i = 3; i < d.length; i += 4) d[i] = 255;   // alpha dropped, as in Python
    return { imageData, width: bitmap.width, height: bitmap.height, note: "" };
  } finally {
    bitmap.close();
  }
}

/** File/Blob -> {imageData (RGBA, alpha 255), width, height, note}; throws ImageDecodeError. */
export async function decodeImage(file) {
  if (!file.size) throw new ImageDecodeError("the file is empty (0 bytes).");
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isPng(bytes)) {
    return decodePng(bytes);
  }
  if (isJpeg(bytes)) {
    const size = jpegSize(bytes);
    if (!size) throw new ImageDecodeError("the JPEG file is corrupt or truncated (no frame header).");
    checkSize(size.width, size.height);
    let end = bytes.length - 1;   // an end-of-image marker near the end (trailing data allowed)
    const stop = Math.max(1, bytes.length - 65536);
    while (end >= stop && !(bytes[end - 1] === 0xff && bytes[end] === 0xd9)) end--;
    if (end < stop) {
      throw new ImageDecodeError("the JPEG file is truncated (no end-of-image marker).");
    }
    return decodeWithBrowser(bytes, "image/jpeg");
  }
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  const looksText = /^[\x09\x0a\x0d\x20-\x7e]*$/.test(head);
  if ((file.type || "").startsWith("image/") && !looksText) return decodeWithBrowser(bytes, file.type);
  throw new ImageDecodeError(looksText ? "this is a text file, not an image (use PNG or JPEG)."
    : "not a PNG or JPEG image.");
}
