// Service worker: keeps the page, the vendored libraries (TensorFlow.js, fast-png, tiff,
// iobuffer, fflate, the DICOM parser and codecs), the rules (vendor/rules.json) and the model for
// offline use. Network first (so a re-exported model or a new page version is picked up at once),
// the cache when offline. Everything is precached at install, read from vendor/files.json (every
// vendored file, e.g. fast-png/png_decoder.js, vendor/dicom/*) and model/metadata.json, so the
// page works offline after one visit (DICOM included, though its modules load only when needed).
//
// It also makes the page cross-origin isolated on any static host: every same-origin response it
// hands the page gets the COOP/COEP/CORP headers web/serve.py sends, so TF.js can run threaded
// WebAssembly where the host sends no such headers (GitHub Pages, most static hosts);
// js/serviceworker.js reloads the page once when the worker first takes control.
const CACHE = "lungseg-v1";   // `make site` stamps the model and build into this name
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
};
const SHELL = ["./", "index.html", "css/style.css", "js/app.js", "js/segmenter.js", "js/engine.js", "js/worker.js",
  "js/decode.js", "js/rules.js", "js/words.js", "js/postprocess.js", "js/encode.js", "js/quality.js",
  "js/measure.js", "js/results.js", "js/dicom.js", "js/serviceworker.js", "js/resize.js", "js/runs.js",
  "js/display.js", "js/outputs.js", "model/metadata.json",
  "model/model.json", "vendor/files.json"];

async function listFiles() {
  const files = [...SHELL];
  try {
    const vendor = await (await fetch("vendor/files.json", { cache: "no-store" })).json();
    files.push(...Object.keys(vendor.files).map((f) => `vendor/${f}`));
  } catch (err) { /* the page reports a missing vendor/ itself */ }
  try {
    const meta = await (await fetch("model/metadata.json", { cache: "no-store" })).json();
    files.push(...Object.keys(meta.files || {}).map((f) => `model/${f}`));
  } catch (err) { /* idem */ }
  return [...new Set(files)];
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    for (const file of await listFiles()) {
      try { await cache.add(new Request(file, { cache: "no-store" })); } catch (err) { /* optional file */ }
    }
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

/** A same-origin response with the isolation headers added (as the host would send them). */
function isolated(response) {
  if (response.type !== "basic" && response.type !== "default") return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(ISOLATION)) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(request);
      if (response.ok && response.type === "basic") cache.put(request, response.clone());
      return isolated(response);
    } catch (err) {
      const cached = await cache.match(request, { ignoreSearch: true });
      if (cached) return isolated(cached);
      throw err;
    }
  })());
});
