// What the page's downloads hold, as `lungseg predict --labels` writes its output folder (the app
// does the same, app/analysis.py): files named NAME.mask.png, NAME.overlay.png, NAME.labels.png
// (the whole lung's NAME.whole.mask.png, ...: rules.json `definitions` prefixes)
// (NAME the file's full name, a name already taken made unique with -2, -3, ... before its
// extension), and manifest.csv with the columns of rules.json `outputs`, written as Python's csv
// module does. The page writes no DICOM Segmentation (NAME.seg.dcm): the CLI and the app do.
import { toFixedEven } from "./rules.js";

const INTEGERS = new Set(["width", "height"]);   // every other number is a float in Python

/** The outputs of a segmented file, in the order the zip holds them (rules.json `outputs`). */
export const OUTPUT_KINDS = ["mask", "overlay", "labels"];

/** Python's os.path.splitext of a file name: [stem, ".ext"]; leading dots are not an extension. */
function splitext(name) {
  const dot = name.lastIndexOf(".");
  if (dot <= 0 || /^\.+$/.test(name.slice(0, dot))) return [name, ""];
  return [name.slice(0, dot), name.slice(dot)];
}

/** What each file's outputs are named after: its full name, or for a name already taken
 *  (case-insensitively) -2, -3, ... before its extension, in order (lungseg/batch.py). */
export function outputNames(names) {
  const taken = new Set(names.map((n) => n.toLowerCase()));
  const seen = new Set();
  return names.map((original) => {
    let name = original;
    if (seen.has(name.toLowerCase())) {
      const [stem, ext] = splitext(name);
      let k = 2;
      while (taken.has(`${stem}-${k}${ext}`.toLowerCase())) k++;
      name = `${stem}-${k}${ext}`;
      taken.add(name.toLowerCase());
    }
    seen.add(name.toLowerCase());
    return name;
  });
}

/** An output's file name: `name` + rules.json's suffix of `kind` (mask, overlay, labels) for a
 *  lung `definition`, its prefix first (rules.output_name): NAME.mask.png, NAME.whole.mask.png. */
export function outputName(rules, name, kind, definition = "visible") {
  const prefix = rules.definitions[definition].prefix;
  return name + (prefix ? `.${prefix}${rules.outputs[kind]}` : rules.outputs[kind]);
}

/** A manifest column of a lung definition (rules.column): lung_cm2, whole_lung_cm2. */
export function column(rules, name, definition = "visible") {
  const prefix = rules.definitions[definition].prefix;
  return prefix ? `${prefix}_${name}` : name;
}

/** The manifest's message of a segmented file (batch._messages): the warnings' messages of every
 *  outline ([{definition, warnings}]), each once; with more than one, those of one definition only
 *  start with its label ("Whole lung: ..."). */
export function messages(rules, outlines) {
  const said = outlines.map((o) => o.warnings.map((w) => w.message));
  const shared = new Set(said[0].filter((m) => said.every((own) => own.includes(m))));
  const out = [];
  outlines.forEach((o, i) => {
    const label = outlines.length > 1 ? `${rules.definitions[o.definition].label}: ` : "";
    for (const m of said[i]) if (!(shared.has(m) && out.includes(m))) out.push(shared.has(m) ? m : label + m);
  });
  return out.join(" ");
}

/** lungseg.plots.overlay: the RGB pixels of `rgba` (ImageData.data) with `mask` tinted in `color`,
 *  in float32 arithmetic rounded half to even, as NumPy computes it (a table of the 256 values of
 *  each channel), so both give the same PNG. */
export function overlayRgb(rgba, mask, opacity, color) {
  const f = Math.fround, keep = f(1 - opacity), table = new Uint8Array(256 * 3);
  for (let v = 0; v < 256; v++) {
    for (let c = 0; c < 3; c++) table[3 * v + c] = roundHalfEven(f(f(keep * v) + f(f(opacity) * color[c])));
  }
  const out = new Uint8Array(mask.length * 3);
  for (let i = 0; i < mask.length; i++) {
    for (let c = 0; c < 3; c++) {
      const v = rgba[4 * i + c];
      out[3 * i + c] = mask[i] ? table[3 * v + c] : v;
    }
  }
  return out;
}

function roundHalfEven(x) {
  const low = Math.floor(x);
  const diff = x - low;
  return diff > 0.5 || (diff === 0.5 && low % 2 === 1) ? low + 1 : low;
}

/** A value as the manifest writes it: floats with six decimals, integers as they are, none as "". */
function cell(value, field) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "number" && !INTEGERS.has(field) ? toFixedEven(value, 6) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** manifest.csv: a header line of rules.json's manifest_columns, then one line per row ("\n"). */
export function manifestCsv(rules, rows) {
  const columns = rules.outputs.manifest_columns;
  const lines = rows.map((row) => columns.map((f) => cell(row[f], f)).join(","));
  return [columns.join(","), ...lines].join("\n") + "\n";
}
