// LungSeg's input rules (accepted formats, limits, overlay, user messages), read from
// vendor/rules.json: a copy of lungseg/rules.json made by scripts/vendor.mjs, the file the Python
// package reads too, so the page words every message exactly as Python does.
const RULES_URL = new URL("../vendor/rules.json", import.meta.url);
let loading = null;

/** The rules, fetched once per page or worker. */
export function loadRules() {
  loading = loading || fetch(RULES_URL).then((response) => {
    if (!response.ok) throw new Error(`${RULES_URL} not found (run: cd web && npm ci && node scripts/vendor.mjs)`);
    return response.json();
  });
  loading.catch(() => { loading = null; });
  return loading;
}

/** Python's f"{x:.{digits}f}": correctly rounded, exact ties to even (JS rounds them up). */
export function toFixedEven(x, digits) {
  const exact = x.toFixed(100);   // every digit of the double, for the magnitudes used here
  const point = exact.indexOf(".");
  const tail = exact.slice(point + 1 + digits);
  if (!/^50*$/.test(tail)) return x.toFixed(digits);
  const down = exact.slice(0, digits ? point + 1 + digits : point);
  return Number(down.slice(-1)) % 2 === 0 ? down : x.toFixed(digits);
}

/** Python's f"{x:g}": 6 significant digits, no trailing zeros, exponent form outside 1e-4..1e6. */
export function formatG(x) {
  if (x === 0) return "0";
  const exponent = Math.floor(Math.log10(Math.abs(Number(x.toPrecision(6)))));
  if (exponent < -4 || exponent >= 6) {
    const [mantissa, power] = x.toExponential(5).split("e");
    const sign = power[0] === "-" ? "-" : "+";
    return `${mantissa.replace(/\.?0+$/, "")}e${sign}${power.replace(/^[+-]/, "").padStart(2, "0")}`;
  }
  return String(Number(x.toPrecision(6)));
}

/** The format names joined as Python joins them ("PNG, JPEG, TIFF, BMP, WebP"). */
export function formatNames(rules) { return rules.formats.map((f) => f.name).join(", "); }

/** The file input's accept attribute: the MIME types and extensions of `formats` (rules.json entries). */
export function acceptAttribute(formats) {
  return formats.flatMap((f) => [f.mime, ...f.extensions]).join(",");
}

/** rules.message(code, file, **fields) of lungseg/rules.py: the template with the limits filled in. */
export function message(rules, code, file, fields = {}) {
  const values = {
    file, formats: formatNames(rules), min_side: rules.min_side,
    max_megapixels: formatG(rules.max_pixels / 1e6), max_megabytes: formatG(rules.max_file_bytes / 2 ** 20), ...fields,
  };
  return rules.messages[code].replace(/\{(\w+)\}/g, (m, key) => {
    if (!(key in values)) throw new Error(`rules.json message ${code}: no value for {${key}}`);
    return String(values[key]);
  });
}
