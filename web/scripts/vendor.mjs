// Copy exactly the library files the page needs from node_modules into web/vendor/:
// TensorFlow.js, fflate (zip, one ESM file), fast-png (PNG) and tiff (TIFF), ESM files + iobuffer,
// the DICOM parser and codecs (loaded only when a DICOM is opened), and LungSeg's own rules
// (../lungseg/rules.json: formats, limits, overlay, messages).
// Run from web/: `npm ci && node scripts/vendor.mjs`. The page never loads anything from a CDN.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const nm = join(web, "node_modules");
const out = join(web, "vendor");

const FILES = [
  ["@tensorflow/tfjs/dist/tf.min.js", "tf.min.js"],
  ["@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js", "tf-backend-wasm.min.js"],
  ["@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm", "tfjs-backend-wasm.wasm"],
  ["@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-simd.wasm"],
  ["@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm"],
  ["@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js", "tf-backend-webgpu.min.js"],
  ["fflate/esm/browser.js", "fflate.js"],   // the package's browser ESM build, self-contained
  ["jpeg-lossless-decoder-js/release/lossless-min.js", "dicom/jpeg-lossless.js"],   // ESM
  ["@cornerstonejs/codec-charls/dist/charlswasm_decode.wasm", "dicom/charls.wasm"],
  ["@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.wasm", "dicom/openjpeg.wasm"],
  ["@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm", "dicom/libjpeg-turbo.wasm"],
];
// CommonJS/UMD builds (the DICOM parser, the Emscripten codecs) wrapped as ES modules: run with a
// local `module`, their module.exports is the default export.
const COMMONJS = [
  ["dicom-parser/dist/dicomParser.min.js", "dicom/dicom-parser.js"],
  ["@cornerstonejs/codec-charls/dist/charlswasm_decode.js", "dicom/charls.js"],
  ["@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.js", "dicom/openjpeg.js"],
  ["@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.js", "dicom/libjpeg-turbo.js"],
];
// ESM packages copied as a tree (lib/*.js) into vendor/<name>/, bare imports made relative
// (no bundler, no import map: js/decode.js imports vendor/fast-png/index.js from any page).
const TREES = { "fast-png": "fast-png/index.js", tiff: "tiff/index.js", iobuffer: "iobuffer/iobuffer.js" };
const BARE = { fflate: "fflate.js", ...TREES };

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? jsFiles(join(dir, e.name)).map((f) => join(e.name, f)) : e.name.endsWith(".js") ? [e.name] : []);
}

const withoutSourceMap = (code) => code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "dicom"), { recursive: true });
const listing = {};
const copies = [...FILES.map(([from, to]) => [join(nm, from), to]), [join(web, "..", "lungseg", "rules.json"), "rules.json"]];
for (const [from, to] of copies) {
  copyFileSync(from, join(out, to));
  listing[to] = statSync(join(out, to)).size;
}
for (const [from, to] of COMMONJS) {
  const code = `const module = { exports: {} }, exports = module.exports, require = () => null;\n` +
    `${withoutSourceMap(readFileSync(join(nm, from), "utf8"))}\nexport default module.exports;\n`;
  writeFileSync(join(out, to), code);
  listing[to] = Buffer.byteLength(code);
}
for (const pkg of Object.keys(TREES)) {
  for (const file of jsFiles(join(nm, pkg, "lib"))) {
    const to = join(pkg, file);
    let code = withoutSourceMap(readFileSync(join(nm, pkg, "lib", file), "utf8"));
    code = code.replace(/(from\s*|import\s*\(\s*)(["'])([^"'./][^"']*)\2/g, (m, head, q, spec) => {
      if (!BARE[spec]) throw new Error(`${pkg}/${file}: unexpected import of ${spec}`);
      let path = relative(dirname(to), BARE[spec]).split("\\").join("/");
      if (!path.startsWith(".")) path = `./${path}`;
      return `${head}${q}${path}${q}`;
    });
    mkdirSync(dirname(join(out, to)), { recursive: true });
    writeFileSync(join(out, to), code);
    listing[to.split("\\").join("/")] = Buffer.byteLength(code);
  }
}
const PACKAGES = ["@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@tensorflow/tfjs-backend-webgpu",
  "fast-png", "fflate", "iobuffer", "tiff", "dicom-parser", "@cornerstonejs/codec-charls",
  "@cornerstonejs/codec-openjpeg", "@cornerstonejs/codec-libjpeg-turbo-8bit", "jpeg-lossless-decoder-js"];
const versions = Object.fromEntries(PACKAGES.map(
  (p) => [p, JSON.parse(readFileSync(join(nm, p, "package.json"), "utf8")).version]));
writeFileSync(join(out, "files.json"), JSON.stringify({ versions, files: listing }, null, 2) + "\n");
const total = Object.values(listing).reduce((a, b) => a + b, 0);
console.log(`vendor/: ${Object.keys(listing).length} files, ${(total / 1e6).toFixed(2)} MB (${JSON.stringify(versions)})`);
