// Copy exactly the TensorFlow.js files the page needs from node_modules into web/vendor/.
// Run from web/: `npm ci && node scripts/vendor.mjs`. The page never loads anything from a CDN.
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const nm = join(web, "node_modules", "@tensorflow");
const out = join(web, "vendor");

const FILES = [
  ["tfjs/dist/tf.min.js", "tf.min.js"],
  ["tfjs-backend-wasm/dist/tf-backend-wasm.min.js", "tf-backend-wasm.min.js"],
  ["tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm", "tfjs-backend-wasm.wasm"],
  ["tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-simd.wasm"],
  ["tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm"],
  ["tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js", "tf-backend-webgpu.min.js"],
];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const listing = {};
for (const [from, to] of FILES) {
  copyFileSync(join(nm, from), join(out, to));
  listing[to] = statSync(join(out, to)).size;
}
const versions = Object.fromEntries(["tfjs", "tfjs-backend-wasm", "tfjs-backend-webgpu"].map(
  (p) => [`@tensorflow/${p}`, JSON.parse(readFileSync(join(nm, p, "package.json"), "utf8")).version]));
writeFileSync(join(out, "files.json"), JSON.stringify({ versions, files: listing }, null, 2) + "\n");
const total = Object.values(listing).reduce((a, b) => a + b, 0);
console.log(`vendor/: ${FILES.length} files, ${(total / 1e6).toFixed(2)} MB (${JSON.stringify(versions)})`);
