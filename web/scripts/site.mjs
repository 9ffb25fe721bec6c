// Build the page as a self-contained folder for any static host: `make site` (or, from web/,
// `node scripts/site.mjs [--out ../dist]`, after `npm ci && node scripts/vendor.mjs`).
//
// The folder holds exactly what the page loads: index.html, sw.js, css/, js/, the model (the files
// model/metadata.json lists) and vendor/ (the files vendor/files.json lists). The service worker's
// cache is named after the model and a hash of every file, so a new build replaces what visitors
// saved for offline use; build.json records the same. No special headers are needed: sw.js makes
// the page cross-origin isolated (threaded WebAssembly) on hosts that send none.
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const flag = process.argv.indexOf("--out");
const out = resolve(flag > 0 ? process.argv[flag + 1] : join(web, "..", "dist"));

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const meta = readJson(join(web, "model", "metadata.json"));
const vendor = readJson(join(web, "vendor", "files.json"));
const folder = (name) => readdirSync(join(web, name)).map((f) => `${name}/${f}`);
const files = [
  "index.html", "sw.js", ...folder("css"), ...folder("js"),
  "model/metadata.json", ...Object.keys(meta.files).map((f) => `model/${f}`),
  "vendor/files.json", ...Object.keys(vendor.files).map((f) => `vendor/${f}`),
];

rmSync(out, { recursive: true, force: true });
const hash = createHash("sha256");
for (const file of files) {
  mkdirSync(dirname(join(out, file)), { recursive: true });
  cpSync(join(web, file), join(out, file));
  hash.update(file).update(readFileSync(join(out, file)));
}
const cache = `${meta.name}-${meta.version}-${hash.digest("hex").slice(0, 12)}`;
const sw = readFileSync(join(out, "sw.js"), "utf8");
const stamped = sw.replace(/const CACHE = "[^"]*";/, `const CACHE = "${cache}";`);
if (stamped === sw) throw new Error("sw.js: no CACHE name to stamp");
writeFileSync(join(out, "sw.js"), stamped);
const bytes = files.reduce((sum, file) => sum + statSync(join(out, file)).size, 0);
const build = { model: meta.name, version: meta.version, cache, files: files.length, bytes };
writeFileSync(join(out, "build.json"), JSON.stringify(build, null, 2) + "\n");
console.log(`${out}: ${build.files} files, ${(bytes / 1e6).toFixed(2)} MB (model ${build.model} ${build.version}, ` +
  `cache ${build.cache}); copy it to any static host`);
