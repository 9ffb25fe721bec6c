// Decode an X-ray file into RGBA ImageData the way lungseg/imageio.py does in Python:
// PNG is decoded here (exact samples, no colour management; 16-bit grey stretched from its own
// min..max to 0..255, 16-bit colour reduced to the high byte as Pillow does, palette expanded,
// alpha dropped); JPEG and other formats go through the browser's decoder with EXIF
// orientation applied. Every failure is an ImageDecodeError with a message for the user.

/** Largest image the page accepts (pixels); bigger ones are refused before decoding. */
export const MAX_PIXELS = 25_000_000;

export class ImageDecodeError extends Error {
  constructor(message) { super(message); this.name = "ImageDecodeError"; }
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

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

/** PNG chunks, checking structure: throws for a truncated or corrupt file. */
function pngChunks(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = [];
  let pos = 8;
  while (true) {
    if (pos + 12 > bytes.length) throw new ImageDecodeError("the PNG file is truncated (it ends before its last chunk).");
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (pos + 12 + length > bytes.length) throw new ImageDecodeError("the PNG file is truncated.");
    chunks.push({ type, data: bytes.subarray(pos + 8, pos + 8 + length) });
    pos += 12 + length;
    if (type === "IEND") break;
  }
  if (chunks[0]?.type !== "IHDR" || chunks[0].data.length !== 13) throw new ImageDecodeError("the PNG file is corrupt (no IHDR header).");
  return chunks;
}

function pngHeader(chunks) {
  const d = chunks[0].data, v = new DataView(d.buffer, d.byteOffset, 13);
  return { width: v.getUint32(0), height: v.getUint32(4), bitDepth: d[8], colorType: d[9], interlace: d[12] };
}

async function inflate(parts) {
  try {
    const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (err) {
    throw new ImageDecodeError("the PNG image data is corrupt or truncated.");
  }
}

function unfilter(raw, width, height, bitsPerPixel) {
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  const bpp = Math.max(1, bitsPerPixel >> 3);
  if (raw.length < (stride + 1) * height) throw new ImageDecodeError("the PNG image data is truncated.");
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride, prev = row - stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[row + i - bpp] : 0;
      const b = y > 0 ? out[prev + i] : 0;
      const c = y > 0 && i >= bpp ? out[prev + i - bpp] : 0;
      let value;
      switch (filter) {
        case 0: value = src[i]; break;
        case 1: value = src[i] + a; break;
        case 2: value = src[i] + b; break;
        case 3: value = src[i] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          value = src[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new ImageDecodeError(`the PNG file is corrupt (row filter ${filter}).`);
      }
      out[row + i] = value & 0xff;
    }
  }
  return { data: out, stride };
}

/** NumPy's np.round: halves to even. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Decode a non-interlaced PNG; returns null for interlaced 8-bit files (the browser does those). */
async function decodePng(bytes) {
  const chunks = pngChunks(bytes);
  const { width, height, bitDepth, colorType, interlace } = pngHeader(chunks);
  checkSize(width, height);
  const channels = CHANNELS[colorType];
  if (!channels || ![1, 2, 4, 8, 16].includes(bitDepth)) throw new ImageDecodeError("the PNG file is corrupt (bad header).");
  if (interlace) {
    if (bitDepth === 16 && colorType === 0) {
      throw new ImageDecodeError("interlaced 16-bit PNGs are not supported in the browser; save it non-interlaced or use the Python tool.");
    }
    return null;
  }
  const idat = chunks.filter((c) => c.type === "IDAT").map((c) => c.data);
  if (!idat.length) throw new ImageDecodeError("the PNG file has no image data.");
  const { data, stride } = unfilter(await inflate(idat), width, height, channels * bitDepth);
  const rgba = new Uint8ClampedArray(width * height * 4);
  const note = bitDepth === 16 && colorType === 0 ? "16-bit grey, stretched min..max to 8 bits" : "";
  if (bitDepth === 16 && colorType === 0) {
    const values = new Uint16Array(width * height);
    let low = 65535, high = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = (data[y * stride + 2 * x] << 8) | data[y * stride + 2 * x + 1];
        values[y * width + x] = v;
        if (v < low) low = v;
        if (v > high) high = v;
      }
    }
    const scale = high > low ? 255 / (high - low) : 0;
    for (let i = 0; i < values.length; i++) {
      const g = high > low ? roundHalfEven((values[i] - low) * scale) : 0;
      rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = g;
      rgba[4 * i + 3] = 255;
    }
    return { imageData: new ImageData(rgba, width, height), width, height, note };
  }
  let palette = null;
  if (colorType === 3) {
    palette = chunks.find((c) => c.type === "PLTE")?.data;
    if (!palette) throw new ImageDecodeError("the PNG file is corrupt (palette missing).");
  }
  const step = channels * (bitDepth === 16 ? 2 : 1);   // bytes per pixel for 8/16-bit
  const maxSample = (1 << bitDepth) - 1;
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) {
      const o = 4 * (y * width + x);
      let r, g, b;
      if (bitDepth < 8) {   // grey or palette, packed samples
        const bit = x * bitDepth;
        const sample = (data[row + (bit >> 3)] >> (8 - bitDepth - (bit & 7))) & maxSample;
        if (palette) { r = palette[3 * sample]; g = palette[3 * sample + 1]; b = palette[3 * sample + 2]; }
        else r = g = b = Math.round((sample * 255) / maxSample);
      } else {
        const p = row + x * step, s = bitDepth === 16 ? 2 : 1;   // 16-bit: high byte
        if (palette) { const i = data[p]; r = palette[3 * i]; g = palette[3 * i + 1]; b = palette[3 * i + 2]; }
        else if (channels <= 2) r = g = b = data[p];
        else { r = data[p]; g = data[p + s]; b = data[p + 2 * s]; }
      }
      if (r === undefined || g === undefined || b === undefined) r = g = b = 0;
      rgba[o] = r; rgba[o + 1] = g; rgba[o + 2] = b; rgba[o + 3] = 255;
    }
  }
  return { imageData: new ImageData(rgba, width, height), width, height, note };
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
    const decoded = await decodePng(bytes);
    if (decoded) return decoded;
    return decodeWithBrowser(bytes, "image/png");
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
