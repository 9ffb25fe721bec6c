"""The in-browser half of the server-vs-browser comparison: a bidirectional Streamlit component.

The component's files are the web page's own: it is declared with ``path=web/`` so Streamlit
serves web/js/segmenter.js, web/vendor (TF.js) and web/model from
``/component/<name>/...``. Streamlit's iframe would open ``index.html`` (the static page), so
``url`` points the iframe at ``component/<name>/component.html`` instead, relative to the app's
address (this keeps a ``server.baseUrlPath`` working). The page runs the shipped web model on
the X-ray Python sends it and returns the browser's mask as run lengths plus its timings.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit.components.v1 as components

from lungseg.imageio import encode_png

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
NAME = "lungseg_browser"
FULL_NAME = f"{__name__}.{NAME}"
BACKEND_ENV = "LUNGSEG_BROWSER_BACKEND"   # auto (default), wasm, webgl, webgpu, cpu


def web_missing() -> list[str]:
    """What the in-browser comparison needs from web/ and does not find."""
    need = ["component.html", "js/segmenter.js", "model/model.json", "vendor/tf.min.js"]
    return [f"web/{p}" for p in need if not (WEB_DIR / p).is_file()]


def web_model_meta() -> dict:
    try:
        return json.loads((WEB_DIR / "model" / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}


def browser_payload(data: bytes, decode: Callable[[], np.ndarray]) -> tuple[bytes, str, str]:
    """What the browser gets: the uploaded file itself when it is a PNG or JPEG (decoded by the
    web page's own decoder, as the page would), else the server's pixels (``decode()``) as a PNG."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "image/png", "the uploaded file"
    if data[:3] == b"\xff\xd8\xff":
        return data, "image/jpeg", "the uploaded file"
    return encode_png(decode()), "image/png", "the server's decoded pixels (PNG)"


def browser_segment(data: bytes, mime: str, threshold: float, token: str, definition: str, key: str):
    """Render the component for one X-ray file, outlining ``definition`` ("visible" or "whole",
    rules.json ``definitions``); returns its last value or None.

    The value is a dict: token, width, height, rle (run lengths, see app.analysis.rle_decode),
    ms, load_ms, backend, or error.
    """
    component = components.declare_component(
        NAME, path=str(WEB_DIR), url=f"component/{FULL_NAME}/component.html")
    encoded = base64.b64encode(data).decode("ascii")
    return component(image=encoded, mime=mime, threshold=float(threshold), token=token,
                     definition=definition, backend=os.environ.get(BACKEND_ENV, "auto"), key=key, default=None)
