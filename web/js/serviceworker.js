// The page's service worker (sw.js), seen from the page: register it for offline use, and let it
// make the page cross-origin isolated where the host sends no COOP/COEP headers.
//
// A page is isolated (and TF.js may run threaded WebAssembly) only if its own response carried
// the headers, so the first visit to a plain static host is not; once sw.js controls the page,
// one reload makes it so. The reload happens at most once per tab, never in a frame (a frame is
// isolated only if its parent is), and only while `canReload()` says no work would be lost.
const RELOADED = "lungseg-isolation-reload";

/** Register sw.js; resolves once it is active (the page then works offline). Where that makes
 *  the page isolated, reloads it once (see above) and never resolves. */
export async function registerServiceWorker({ canReload = () => true } = {}) {
  if (!("serviceWorker" in navigator)) throw new Error("this browser has no service workers");
  await navigator.serviceWorker.register(new URL("../sw.js", import.meta.url));
  await navigator.serviceWorker.ready;
  if (globalThis.crossOriginIsolated || window.top !== window || sessionStorage.getItem(RELOADED)) return;
  if (!navigator.serviceWorker.controller) {
    await new Promise((resolve) => navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
  }
  if (!canReload()) return;
  sessionStorage.setItem(RELOADED, "1");
  location.reload();
  await new Promise(() => {});
}
