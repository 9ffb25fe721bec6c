// results.csv of the page's zip: the columns of the CLI's manifest.csv (lungseg/batch.py FIELDS)
// that the page fills (no overlay or DICOM-SEG files here), written as Python's csv module does.
import { toFixedEven } from "./rules.js";

const FIELDS = ["input", "status", "mask", "width", "height", "lung_fraction", "image_left_fraction",
  "image_right_fraction", "lung_cm2", "image_left_cm2", "image_right_cm2", "spacing_source", "quality",
  "warnings", "message"];

const INTEGERS = new Set(["width", "height"]);   // every other number is a float in Python

/** A value as the manifest writes it: floats with six decimals, integers as they are, none as "". */
function cell(value, field) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "number" && !INTEGERS.has(field) ? toFixedEven(value, 6) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** [{field: value}] -> CSV text: a header line, then one line per row ("\n" line ends). */
export function resultsCsv(rows) {
  const lines = rows.map((row) => FIELDS.map((f) => cell(row[f], f)).join(","));
  return [FIELDS.join(","), ...lines].join("\n") + "\n";
}
