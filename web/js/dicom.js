// DICOM X-rays in the browser, the way lungseg/dicom.py reads them: the same checks and messages
// (an unreadable header, missing pixel attributes, damaged pixel data), the same display
// arithmetic (stored bits ending at High Bit -> Modality LUT or rescale -> VOI LUT table, window or
// full range -> 0..255, halves to even -> MONOCHROME1 inverted), pixel spacing and header
// warnings (the spacing's plausibility included). Files without preamble or file meta are read
// by content. Loaded by js/decode.js only when a file is a DICOM; the codecs only for their
// transfer syntax.
import dicomParser from "../vendor/dicom/dicom-parser.js";
import { inflateSync } from "../vendor/fflate.js";
import { DATASET_FIRST_GROUPS, ImageDecodeError, RAW_FIRST_GROUPS, checkSize, dicomMeta, explicitVrAt, isPart10,
  roundHalfEven, startsElement } from "./decode.js";
import { warning } from "./quality.js";
import { formatG, message, toFixedEven } from "./rules.js";

const VENDOR = new URL("../vendor/dicom/", import.meta.url);
const RADIOGRAPHY = new Set(["CR", "DX", "DR", "RG", "PX"]);
const CHEST = new Set(["CHEST", "THORAX", "LUNG", "LUNGS", "TORSO"]);
const LATERAL = new Set(["LL", "RL", "LATERAL", "LAT"]);
// Transfer syntax -> the cornerstone codec (Emscripten) that decodes it, and its decoder class.
const EMSCRIPTEN = { "1.2.840.10008.1.2.4.50": "libjpeg-turbo", "1.2.840.10008.1.2.4.80": "charls",
  "1.2.840.10008.1.2.4.81": "charls", "1.2.840.10008.1.2.4.90": "openjpeg", "1.2.840.10008.1.2.4.91": "openjpeg" };
const DECODERS = { "libjpeg-turbo": "JPEGDecoder", charls: "JpegLSDecoder", openjpeg: "J2KDecoder" };
const JPEG_LOSSLESS = new Set(["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"]);
const RLE = "1.2.840.10008.1.2.5";
const NATIVE = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"]);
const DEFLATED = "1.2.840.10008.1.2.1.99", IMPLICIT = "1.2.840.10008.1.2", EXPLICIT = "1.2.840.10008.1.2.1";
// The plain details of the "corrupt" message, worded as dicom.py's.
const HEADER_UNREADABLE = "not a readable DICOM header";
const PIXELS_UNREADABLE = "the DICOM pixel data is incomplete or cannot be decoded";
const LACKS = (names) => `the DICOM header lacks ${names}`;
// Attributes the pixel data cannot be read without (dicom.py REQUIRED).
const REQUIRED = [["x00280010", "Rows"], ["x00280011", "Columns"], ["x00280100", "Bits Allocated"], ["x00280101", "Bits Stored"]];
const modules = {};

/** An Emscripten codec of vendor/dicom/, instantiated once. */
function codec(name) {
  modules[name] = modules[name] || import(new URL(`${name}.js`, VENDOR).href)
    .then(({ default: factory }) => factory({ locateFile: () => new URL(`${name}.wasm`, VENDOR).href }));
  return modules[name];
}

/** Decode one compressed frame with a cornerstone codec -> {data (bytes), bits, samples}. */
async function decodeWithCodec(name, frame) {
  const decoder = new (await codec(name))[DECODERS[name]]();
  try {
    decoder.getEncodedBuffer(frame.length).set(frame);
    decoder.decode();
    const info = decoder.getFrameInfo();
    return { data: decoder.getDecodedBuffer().slice(), bits: info.bitsPerSample, samples: info.componentCount };
  } finally {
    decoder.delete();
  }
}

/** RLE Lossless (PS3.5 G): PackBits segments, one per byte plane, most significant byte first. */
function decodeRle(frame, n, samples, bytesPerSample) {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== samples * bytesPerSample) throw new Error(`RLE: ${segments} segments, expected ${samples * bytesPerSample}`);
  const out = new Uint8Array(n * samples * bytesPerSample);
  for (let s = 0; s < segments; s++) {
    const start = view.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? view.getUint32(8 + 4 * s, true) : frame.length;
    const sample = Math.floor(s / bytesPerSample), byte = bytesPerSample - 1 - (s % bytesPerSample);
    let p = start, i = 0;
    const put = (v) => { if (i < n) out[(i * samples + sample) * bytesPerSample + byte] = v; i++; };
    while (p < end && i < n) {
      const head = (frame[p++] << 24) >> 24;
      if (head >= 0) { for (let k = 0; k <= head; k++) put(frame[p++]); } else if (head !== -128) {
        const v = frame[p++];
        for (let k = 0; k < 1 - head; k++) put(v);
      }
    }
    if (i < n) throw new Error("RLE segment ends early");
  }
  return out;   // little endian after the byte order above
}

/** The pixel data's samples (interleaved) as numbers (dicom.py _stored_values): for native and
 *  RLE data the Bits Stored bits ending at High Bit (signed: sign-extended); codecs' as decoded. */
async function storedValues(ds, syntax, n, samples) {
  const element = ds.elements.x7fe00010;
  const allocated = ds.uint16("x00280100"), stored = ds.uint16("x00280101");
  const high = ds.uint16("x00280102") ?? stored - 1, signed = ds.uint16("x00280103") === 1;
  const bitwise = NATIVE.has(syntax) || syntax === RLE;
  let bytes, bits = allocated, littleEndian = syntax !== "1.2.840.10008.1.2.2";
  if (NATIVE.has(syntax)) {
    const size = (n * samples * allocated) / 8;
    if (element.dataOffset + size > ds.byteArray.length || element.length < size) {
      throw new Error(`${Math.min(element.length, ds.byteArray.length - element.dataOffset)} bytes of pixel data, expected ${size}`);
    }
    bytes = ds.byteArray.subarray(element.dataOffset, element.dataOffset + size);
  } else {
    const frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, element, 0, element.fragments.length);
    littleEndian = true;
    if (syntax === RLE) {
      bytes = decodeRle(frame, n, samples, allocated / 8);
    } else if (JPEG_LOSSLESS.has(syntax)) {
      const { Decoder } = await import(new URL("jpeg-lossless.js", VENDOR).href);
      const out = new Decoder().decode(frame.buffer, frame.byteOffset, frame.length, allocated / 8);
      bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } else if (EMSCRIPTEN[syntax]) {
      const out = await decodeWithCodec(EMSCRIPTEN[syntax], frame);
      bytes = out.data;
      bits = out.bits > 8 ? 16 : 8;
    } else {
      throw new Error(`transfer syntax ${syntax} is not supported in the browser`);
    }
  }
  if (bytes.length < (n * samples * bits) / 8) throw new Error("the pixel data ends early");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read = bits === 8 ? (i) => view.getUint8(i) : bits === 16 ? (i) => view.getUint16(2 * i, littleEndian)
    : (i) => view.getUint32(4 * i, littleEndian);
  const low = bitwise ? Math.max(high + 1 - stored, 0) : 0;   // bits below the stored ones
  const shift = 32 - Math.min(stored, 32), values = new Float64Array(n * samples);
  for (let i = 0; i < values.length; i++) {
    const v = (read(i) >>> low) << shift;
    values[i] = signed ? v >> shift : v >>> shift;
  }
  return values;
}

/** dicom.py _lut_item: the first item of a LUT sequence if it holds a LUT Descriptor (3 values,
 *  1-16 bits) and LUT Data, else null (a broken table is skipped). */
function lutItem(ds, tag) {
  const item = ds.elements[tag]?.items?.[0]?.dataSet;
  if (!item || item.elements.x00283002?.length !== 6 || !item.elements.x00283006?.length) return null;
  const bits = item.uint16("x00283002", 2);
  return bits >= 1 && bits <= 16 ? item : null;
}

/** One LUT item (LUT Descriptor + LUT Data), as dicom.py's _lut: -> [output values, bits]. */
function applyLut(values, item) {
  const entries = item.uint16("x00283002", 0) || 65536, first = item.uint16("x00283002", 1);
  const bits = item.uint16("x00283002", 2), element = item.elements.x00283006;
  const data = new DataView(item.byteArray.buffer, item.byteArray.byteOffset + element.dataOffset, element.length);
  const last = Math.min(entries, element.length >> 1) - 1;
  return [values.map((v) => data.getUint16(2 * Math.min(Math.max(roundHalfEven(v) - first, 0), last), true)), bits];
}

/** dicom.py _window: DICOM PS3.3 C.11.2.1.2, the window to 0..255 (floats). */
function windowed(v, center, width, fn) {
  if (fn === "SIGMOID") return 255 / (1 + Math.exp((-4 * (v - center)) / width));
  const out = fn === "LINEAR_EXACT" ? ((v - center) / width + 0.5) * 255
    : ((v - (center - 0.5)) / Math.max(Math.max(width, 1) - 1, 1e-9) + 0.5) * 255;
  return Math.min(Math.max(out, 0), 255);
}

/** dicom.py display_pixels: stored grey values -> 8-bit grey (Uint8Array). */
function displayPixels(ds, stored) {
  let values = stored, grey;
  const modalityLut = lutItem(ds, "x00283000");
  if (modalityLut) [values] = applyLut(values, modalityLut);
  else {
    const slope = number(ds, "x00281053") || 1, intercept = number(ds, "x00281052") ?? 0;
    values = values.map((v) => v * slope + intercept);
  }
  const voiLut = lutItem(ds, "x00283010");
  if (voiLut) {
    const [looked, bits] = applyLut(values, voiLut);
    grey = looked.map((v) => v * (255 / (2 ** bits - 1)));
  } else if (number(ds, "x00281050") !== null && number(ds, "x00281051") > 0) {
    const fn = (ds.string("x00281056") || "LINEAR").toUpperCase();
    const center = number(ds, "x00281050"), width = number(ds, "x00281051");
    grey = values.map((v) => windowed(v, center, width, fn));
  } else {
    let low = Infinity, high = -Infinity;
    for (const v of values) { if (v < low) low = v; if (v > high) high = v; }
    const scale = 255 / (high - low);
    grey = high > low ? values.map((v) => (v - low) * scale) : new Float64Array(values.length);
  }
  const out = Uint8Array.from(grey, (v) => roundHalfEven(Math.min(Math.max(v, 0), 255)));
  if ((ds.string("x00280004") || "").toUpperCase() === "MONOCHROME1") for (let i = 0; i < out.length; i++) out[i] = 255 - out[i];
  return out;
}

/** dicom.py _values: a numeric string attribute's values (NaN for one that is not a number). */
function values(ds, tag) {
  const text = ds.string(tag);
  return text ? text.split("\\").map((v) => (v.trim() === "" ? NaN : Number(v))) : [];
}

/** dicom.py _number: the first value if it is a finite number, else `fallback`. */
function number(ds, tag, fallback = null) {
  const [first] = values(ds, tag);
  return Number.isFinite(first) ? first : fallback;
}

/** dicom.py _numbers: the first `count` values of a DS attribute if finite numbers > 0, else null. */
function numbers(ds, tag, count) {
  const found = values(ds, tag).slice(0, count);
  return found.length === count && found.every((v) => Number.isFinite(v) && v > 0) ? found : null;
}

/** dicom.py pixel_spacing: [[row, column] mm or null, where it came from]. */
function pixelSpacing(ds) {
  const calibrated = numbers(ds, "x00280030", 2);
  if (calibrated) return [calibrated, "Pixel Spacing"];
  const detector = numbers(ds, "x00181164", 2);
  if (detector) {
    const factor = (numbers(ds, "x00181114", 1) || [1])[0];
    return [[detector[0] / factor, detector[1] / factor],
      factor !== 1 ? "Imager Pixel Spacing / magnification factor" : "Imager Pixel Spacing (at the detector)"];
  }
  return [null, ""];
}

/** dicom.py spacing_warnings: the image under or over rules.json's chest_cm_range on a side. */
function spacingWarnings(rules, spacing, rows, columns) {
  if (!spacing) return [];
  const width = (columns * spacing[1]) / 10, height = (rows * spacing[0]) / 10;
  const [low, high] = rules.checks.chest_cm_range;
  if (low <= Math.min(width, height) && Math.max(width, height) <= high) return [];
  const shown = spacing[0] === spacing[1] ? formatG(spacing[1]) : `${formatG(spacing[1])} x ${formatG(spacing[0])}`;
  return [warning(rules, "dicom_spacing", { spacing: shown, width_cm: toFixedEven(width, 1),
    height_cm: toFixedEven(height, 1), low: formatG(low), high: formatG(high) })];
}

/** dicom.py metadata_warnings: a lateral view, not a radiograph, not the chest. */
function metadataWarnings(rules, ds) {
  const out = [], upper = (tag) => (ds.string(tag) || "").toUpperCase();
  const view = upper("x00185101"), modality = upper("x00080060"), body = upper("x00180015");
  if (LATERAL.has(view)) out.push(warning(rules, "dicom_lateral", { view }));
  if (modality && !RADIOGRAPHY.has(modality)) out.push(warning(rules, "dicom_modality", { modality }));
  if (body && !CHEST.has(body)) out.push(warning(rules, "dicom_body_part", { body_part: body }));
  return out;
}

/** dicom.py _header_readable: the data set (after a Part 10 file's meta; inflated if deflated)
 *  starts like one. */
function headerReadable(bytes) {
  if (!isPart10(bytes)) return startsElement(bytes, 0, RAW_FIRST_GROUPS);
  const [start, syntax] = dicomMeta(bytes);
  if (start === null) return false;
  if (syntax !== DEFLATED) return startsElement(bytes, start, DATASET_FIRST_GROUPS);
  try { return startsElement(inflateSync(bytes.subarray(start)), 0, DATASET_FIRST_GROUPS); } catch (err) { return false; }
}

const inflater = (b, at) => {
  const inflated = inflateSync(b.subarray(at)), full = new Uint8Array(at + inflated.length);
  full.set(b.subarray(0, at));
  full.set(inflated, at);
  return full;
};

/** dicomParser on any layout pydicom reads: a Part 10 file, one whose meta lacks the transfer
 *  syntax, or a bare data set (explicit VR if a VR follows the first tag, as pydicom guesses). */
function parse(bytes, options) {
  if (!isPart10(bytes) && bytes[0] === 2 && bytes[1] === 0) {   // file meta without preamble
    const full = new Uint8Array(132 + bytes.length);
    full.set([68, 73, 67, 77], 128);
    full.set(bytes, 132);
    return parse(full, options);
  }
  const [start, syntax] = isPart10(bytes) ? dicomMeta(bytes) : [0, ""];
  if (syntax) return dicomParser.parseDicom(bytes, { inflater, ...options });
  const body = bytes.subarray(start);
  return dicomParser.parseDicom(body, { TransferSyntaxUID: explicitVrAt(body, 0) ? EXPLICIT : IMPLICIT, ...options });
}

/** DICOM file bytes -> {imageData, note, warnings, spacing, spacingSource}; ImageDecodeError
 *  with dicom.py's message (corrupt, no image, multi-frame, size) for an unusable file. */
export async function decodeDicom(bytes, name, rules) {
  const fail = (code, fields) => { throw new ImageDecodeError(message(rules, code, name, fields), code); };
  if (!headerReadable(bytes)) fail("corrupt", { detail: HEADER_UNREADABLE });
  let ds;
  try {
    ds = parse(bytes, {});
  } catch (err) {
    try { parse(bytes, { untilTag: "x7fe00010" }); } catch (again) { fail("corrupt", { detail: HEADER_UNREADABLE }); }
    fail("corrupt", { detail: PIXELS_UNREADABLE });
  }
  if (!ds.elements.x7fe00010) fail("dicom_no_image");
  const frames = Math.trunc(number(ds, "x00280008") || 1);
  if (frames > 1) fail("dicom_multiframe", { frames });
  const missing = REQUIRED.filter(([tag]) => ds.uint16(tag) === undefined).map(([, label]) => label);
  if (missing.length) fail("corrupt", { detail: LACKS(missing.join(", ")) });
  const width = ds.uint16("x00280011"), height = ds.uint16("x00280010"), n = width * height;
  checkSize(rules, name, width, height);
  const samples = ds.uint16("x00280002") || 1, syntax = ds.string("x00020010");
  let values;
  try {
    values = await storedValues(ds, syntax, n, samples);
  } catch (err) {
    fail("corrupt", { detail: PIXELS_UNREADABLE });
  }
  const rgba = new Uint8ClampedArray(4 * n).fill(255);
  if (samples === 1) {
    const grey = displayPixels(ds, values);
    for (let i = 0; i < n; i++) rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = grey[i];
  } else {   // colour as dicom.py: 8-bit as is, wider scaled by 255 / max
    const planar = ds.uint16("x00280006") === 1 && NATIVE.has(syntax);
    const eight = (ds.uint16("x00280100") || 8) <= 8;
    const scale = eight ? 1 : 255 / Math.max(values.reduce((a, b) => Math.max(a, b), 0), 1);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) rgba[4 * i + c] = roundHalfEven(values[planar ? c * n + i : i * samples + c] * scale);
    }
  }
  const [spacing, spacingSource] = pixelSpacing(ds);
  const warnings = [...metadataWarnings(rules, ds), ...spacingWarnings(rules, spacing, height, width)];
  return { imageData: new ImageData(rgba, width, height), note: "DICOM", warnings, spacing, spacingSource };
}
