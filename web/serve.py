#!/usr/bin/env python3
"""A tiny static server for the LungSeg page (standard library only).

    python web/serve.py --port 8000          # prints http://127.0.0.1:8000/ (--verbose: log requests)

It serves web/ on 127.0.0.1 with the headers that make the page cross-origin isolated
(Cross-Origin-Opener-Policy, Cross-Origin-Embedder-Policy, Cross-Origin-Resource-Policy),
so TensorFlow.js can use multi-threaded WebAssembly on machines with 4 or more cores. Any static
host works for the page; without these headers it simply runs single-threaded. No directory
listings (a folder without index.html is a 404) and nothing under node_modules/ is served.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import threading
from pathlib import Path

WEB = Path(__file__).resolve().parent
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HIDDEN = {"node_modules"}   # top-level folders of development files the page never needs


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with correct types, isolation headers, extra mounted folders, no caching."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript",
                      ".mjs": "text/javascript", ".json": "application/json",
                      ".webmanifest": "application/manifest+json"}
    isolate = True
    quiet = True
    mounts: dict[str, Path] = {}

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in self.mounts.items():
            if clean.startswith(prefix):
                rest = clean[len(prefix):]
                target = (folder / rest).resolve()
                if target == folder or folder in target.parents:
                    return str(target)
                return str(folder / "__outside__")
        return super().translate_path(path)

    def send_head(self):
        target = Path(self.translate_path(self.path))
        root = Path(self.directory).resolve()
        if root in target.parents and target.relative_to(root).parts[0] in HIDDEN:
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):
        """No listings: a folder without index.html does not exist for visitors."""
        self.send_error(404, "File not found")
        return None

    def end_headers(self):
        if self.isolate:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def make_server(root: str | Path = WEB, host: str = "127.0.0.1", port: int = 0, isolate: bool = True,
                quiet: bool = True, mounts: dict[str, str | Path] | None = None):
    """A ThreadingHTTPServer for ``root`` (port 0 = a free port); ``mounts`` maps URL prefixes
    such as "/extra/" to other folders; ``quiet=False`` logs each request to stderr. Call
    ``serve_forever`` (or use ``start``)."""
    attrs = {"isolate": isolate, "quiet": quiet,
             "mounts": {k: Path(v).resolve() for k, v in (mounts or {}).items()}}
    handler = functools.partial(type("LungSegHandler", (Handler,), attrs), directory=str(root))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def start(root: str | Path = WEB, **kwargs):
    """Serve in a background thread; returns (server, base URL ending in "/")."""
    server = make_server(root, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Serve the LungSeg web page (web/) locally.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", default=str(WEB), help="folder to serve (default: web/)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="omit COOP/COEP headers (single-threaded wasm)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = make_server(args.root, args.host, args.port, isolate=not args.no_isolation, quiet=not args.verbose)
    host, port = server.server_address[:2]
    if not (Path(args.root) / "vendor" / "tf.min.js").is_file():
        print("warning: web/vendor/ is missing; run: cd web && npm ci && node scripts/vendor.mjs")
    mode = ("cross-origin isolated: threaded wasm on machines with 4+ cores" if not args.no_isolation
            else "not cross-origin isolated: single-threaded wasm")
    print(f"LungSeg page: http://{host}:{port}/  ({mode}; Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
