"""LungSeg: the upload demo with server-side inference, and the server-vs-browser comparison.

Run with ``make run`` (scripts/start.py starts this app and the static web page together) or
``streamlit run streamlit_app.py``. Uploads stay in memory; nothing is written to disk.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading

import numpy as np
import streamlit as st
from PIL import Image

from app import analysis, component, models
from lungseg import ImageError, Segmenter
from lungseg.bundle import DEFAULT_MODEL
from lungseg.imageio import encode_png
from lungseg.metrics import score
from lungseg.plots import difference_overlay, overlay

WEB_URL = os.environ.get("LUNGSEG_WEB_URL", "http://127.0.0.1:8502/")
MAX_PIXELS = int(os.environ.get("LUNGSEG_MAX_PIXELS", analysis.DEFAULT_MAX_PIXELS))
PREVIEW_SIDE = 1024    # pixels; on-screen images are downsized to this, downloads are not
IMAGE_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"]
log = logging.getLogger("lungseg.app")


# ---------------------------------------------------------------- cached computation
@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_segmenter(folder: str) -> tuple[Segmenter, threading.Lock]:
    """One model per process (shared read-only by all sessions) and a lock serialising its calls."""
    return Segmenter.load(folder), threading.Lock()


# Cached results are per file content, so they are shared only by identical uploads and returned
# as copies (no mutable state is shared between sessions). An hour or 100 X-rays, whichever first.
@st.cache_data(max_entries=100, ttl=3600, show_spinner=False)
def probability(data: bytes, name: str, folder: str, max_pixels: int) -> dict:
    """Decoded X-ray, lung probability and model time; or {"error": message} for a bad file."""
    try:
        image = analysis.decode(data, name, max_pixels)
    except ImageError as err:
        return {"error": str(err)}
    seg, lock = load_segmenter(folder)
    with lock:
        proba, ms = analysis.probability(seg, image)
    return {"image": image, "proba": proba, "model_ms": ms}


@st.cache_data(max_entries=200, ttl=3600, show_spinner=False)
def segment(data: bytes, name: str, folder: str, threshold: float, max_pixels: int) -> dict:
    """Mask and figures for one upload at one threshold (the model runs once per file and model)."""
    result = probability(data, name, folder, max_pixels)
    if "error" in result:
        return result
    seg, _ = load_segmenter(folder)
    mask, areas, post_ms = analysis.figures(seg, result["proba"], threshold)
    height, width = mask.shape
    return {"image": result["image"], "mask": mask, "width": width, "height": height,
            "inference_ms": result["model_ms"] + post_ms, **areas}


@st.cache_data(max_entries=8, ttl=3600, show_spinner=False)
def bundle_zip(key: tuple, _items: list[dict], _rows: list[dict]) -> bytes:
    """The all-results zip; ``key`` names the inputs (file digests, model, threshold, opacity)."""
    return analysis.build_zip(_items, _rows)


def preview(array, max_side: int = PREVIEW_SIDE):
    """A display copy no larger than ``max_side`` pixels (downloads keep the original size)."""
    height, width = array.shape[:2]
    if max(height, width) <= max_side:
        return array
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def safe(step, *args, name: str = "", **kwargs) -> dict:
    """Run a computation step; an unexpected failure becomes an error for this file, not a traceback."""
    try:
        return step(*args, **kwargs)
    except ImageError as err:                  # a bad input: its message is meant for the user
        return {"error": str(err)}
    except Exception:  # noqa: BLE001  (logged on the server; the user gets a short message)
        log.exception("processing %s failed", name)
        return {"error": f"{name}: this file could not be processed (unexpected error; the "
                         f"server log has details)."}


# ---------------------------------------------------------------- page
def sidebar() -> tuple[str, float, float, bool]:
    st.sidebar.header("Model")
    choices = models.available_models()
    label = st.sidebar.selectbox(
        "Model", list(choices), help=f"Deployers add models as folders (model.keras + card.json) "
        f"under the folder named by env {models.MODELS_DIR_ENV}.")
    folder = choices[label]
    card = models.card_summary(folder)
    with st.sidebar.expander("Model card", expanded=False):
        st.json(card, expanded=1)
    st.sidebar.header("Display")
    threshold = st.sidebar.slider("Threshold (lung probability)", 0.05, 0.95,
                                  float(card["threshold"]), 0.01, key=f"threshold::{folder}",
                                  help="Pixels at or above this probability count as lung. "
                                       "The model card's value is the default.")
    opacity = st.sidebar.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05)
    compare = st.sidebar.toggle("Compare with the in-browser model", value=False,
                                help="Runs the web page's TF.js model in your browser on the same "
                                     "X-ray and compares the masks.")
    return folder, threshold, opacity, compare


def intro() -> None:
    st.title("LungSeg: lung outlines on chest X-rays")
    st.markdown(
        f"Upload chest X-rays to outline the lungs. **This page sends your X-rays to this server**, "
        f"which segments them in memory and stores nothing. For fully private use, open the "
        f"[in-browser page]({WEB_URL}): it runs the same model on your own device and **uploads "
        f"nothing**. A research tool, not a medical device.")


def uploads() -> tuple[list, dict]:
    limit = st.get_option("server.maxUploadSize")
    files = st.file_uploader(
        "Chest X-rays (PNG, JPEG, TIFF, BMP; any size; grayscale, RGB, RGBA or 16-bit)",
        type=IMAGE_TYPES, accept_multiple_files=True, key="xrays")
    st.caption(f"Each file may be up to {limit} MB (the server's upload limit, "
               f"`server.maxUploadSize` in .streamlit/config.toml) and {MAX_PIXELS / 1e6:.0f} "
               f"megapixels. Files are processed in memory and dropped when you close the page.")
    with st.expander("Ground-truth masks (optional): Dice, IoU and a difference overlay"):
        truths = st.file_uploader(
            "Lung masks, matched to X-rays by file name (same name, or the name plus _mask)",
            type=IMAGE_TYPES, accept_multiple_files=True, key="truths")
    truth_files = {f.name: f for f in truths or []}
    return list(files or []), truth_files


def show_result(name: str, stem: str, result: dict, opacity: float, truth: dict | None) -> None:
    st.subheader(name)
    if "error" in result:
        st.error(result["error"])
        return
    image, mask = result["image"], result["mask"]
    has_truth = truth is not None and "error" not in truth
    cols = st.columns(4)
    cols[0].image(preview(image), caption=f"original, {result['width']}x{result['height']}",
                  width="stretch")
    cols[1].image(preview(overlay(image, mask, opacity)), caption="lung overlay", width="stretch")
    cols[2].image(preview(mask * 255), caption="mask", width="stretch")
    if has_truth:
        cols[3].image(preview(difference_overlay(image, truth["truth"], mask)), width="stretch",
                      caption=f"vs ground truth ({truth['file']}): red = lung missed, "
                              f"yellow = extra lung")
    cols = st.columns(6 if has_truth else 4)
    cols[0].metric("Lung area", f"{result['lung_fraction']:.1%}")
    cols[1].metric("Patient's right lung", f"{result['image_left_fraction']:.1%}",
                   help="The lung on the image's left, as a fraction of the image.")
    cols[2].metric("Patient's left lung", f"{result['image_right_fraction']:.1%}",
                   help="The lung on the image's right, as a fraction of the image.")
    cols[3].metric("Inference", f"{result['inference_ms']:.0f} ms")
    if has_truth:
        cols[4].metric("Dice", f"{truth['dice']:.4f}")
        cols[5].metric("IoU", f"{truth['iou']:.4f}")
    st.caption(analysis.PATIENT_SIDE_NOTE + " Areas are fractions of the whole image.")
    if truth is not None and not has_truth:
        st.error(truth["error"])
    st.download_button("Download mask (PNG, original size)", encode_png(mask),
                       file_name=f"{stem}_mask.png", mime="image/png", on_click="ignore",
                       key=f"mask::{stem}")


def comparison(entries: list[dict], threshold: float) -> None:
    st.header("Server vs browser")
    missing = component.web_missing()
    if missing:
        st.warning("The in-browser model is not built here (missing: " + ", ".join(missing)
                   + "). Build it with `make setup` (web/vendor) and the model export.")
        return
    good = [e for e in entries if "error" not in e["result"]]
    if not good:
        st.info("Upload an X-ray to compare the server and browser masks.")
        return
    name = st.selectbox("X-ray to compare", [e["name"] for e in good], key="compare_file")
    entry = next(e for e in good if e["name"] == name)
    meta = component.web_model_meta()
    st.caption(
        "Left: this server's Keras model (the committed default model, which the web page ships). "
        "Right: the web page's own code and TF.js model, running in *your* browser. "
        + (f"Web model: {meta.get('name', '?')} {meta.get('version', '')}." if meta else ""))
    card = models.card_summary(str(DEFAULT_MODEL))
    if meta and (meta.get("name"), str(meta.get("version"))) != (card["name"], str(card["version"])):
        st.warning(f"The web model ({meta.get('name')} {meta.get('version')}) was not exported "
                   f"from this server's default model ({card['name']} {card['version']}); "
                   f"re-export it (python -m export) before reading the agreement.")
    server = safe(segment, entry["data"], name, str(DEFAULT_MODEL), threshold, MAX_PIXELS, name=name)
    if "error" in server:
        st.error(server["error"])
        return
    token = f"{entry['digest']}:{threshold:.4f}"
    data, mime, what = component.browser_payload(entry["data"], server["image"])
    value = component.browser_segment(data, mime, threshold, token, key="browser_compare")
    left, right, diff, figures = st.columns(4)
    left.image(preview(server["mask"] * 255), caption=f"server (Keras): {server['inference_ms']:.0f} ms",
               width="stretch")
    if not value or value.get("token") != token:
        right.info("Waiting for the browser…")
        return
    if value.get("error"):
        right.error(f"The in-browser model failed: {value['error']}")
        return
    try:
        browser = analysis.rle_decode(value["rle"], int(value["width"]), int(value["height"]))
        agreement = score(server["mask"], browser)["iou"]
    except (KeyError, TypeError, ValueError) as err:
        right.error(f"The browser returned an unusable mask ({err}).")
        return
    right.image(preview(browser * 255), width="stretch",
                caption=f"browser (TF.js, {value.get('backend')}): {value['ms']:.0f} ms; "
                        f"input: {what}")
    diff.image(preview(difference_overlay(server["image"], server["mask"], browser)),
               width="stretch",
               caption="where they differ: red = only the server, yellow = only the browser")
    figures.metric("Agreement (IoU)", f"{agreement:.4f}",
                   help=f"{int((server['mask'] != browser).sum()):,} pixels differ.")
    figures.metric("Server (Keras)", f"{server['inference_ms']:.0f} ms")
    figures.metric(f"Browser (TF.js {value.get('backend')})", f"{value['ms']:.0f} ms",
                   help=f"Warm run; first run {value.get('first_ms', 0):.0f} ms, model load "
                        f"{(value.get('load_ms') or 0):.0f} ms.")


def main() -> None:
    st.set_page_config(page_title="LungSeg", page_icon="🫁", layout="wide")
    folder, threshold, opacity, compare = sidebar()
    intro()
    files, truth_files = uploads()
    if not files:
        st.info("Upload one or more chest X-rays to start.")
        return

    try:
        with st.spinner("Loading the model…"):
            load_segmenter(folder)
    except Exception:  # noqa: BLE001
        log.exception("loading model %s failed", folder)
        st.error(f"The model in {folder} could not be loaded; choose another model (the server "
                 f"log has details).")
        return

    names = [f.name for f in files]
    stems = analysis.unique_stems(names)
    matches = analysis.match_truths(names, list(truth_files))
    model_name = models.card_summary(folder)["name"]
    entries, items, rows = [], [], []
    with st.spinner(f"Segmenting {len(files)} X-ray(s)…"):
        for upload, stem in zip(files, stems):
            data = upload.getvalue()
            result = safe(segment, data, upload.name, folder, threshold, MAX_PIXELS, name=upload.name)
            truth = None
            if "error" not in result and upload.name in matches:
                truth_name = matches[upload.name]
                truth = safe(analysis.compare_truth, result["image"],
                             truth_files[truth_name].getvalue(), result["mask"], truth_name,
                             name=truth_name)
                truth.setdefault("file", truth_name)
            entries.append({"name": upload.name, "stem": stem, "data": data, "digest": digest(data),
                            "result": result, "truth": truth})
            row = {"file": upload.name, "model": model_name, "threshold": threshold}
            if "error" in result:
                row.update(status="error", error=result["error"])
            else:
                row.update(status="ok", **{k: result[k] for k in analysis.CSV_FIELDS if k in result})
                items.append({"stem": stem, "image": result["image"], "mask": result["mask"],
                              "opacity": opacity})
                if truth and "error" not in truth:
                    row.update(dice=truth["dice"], iou=truth["iou"])
            rows.append(row)

    ok = sum(1 for r in rows if r["status"] == "ok")
    st.header("Results")
    st.write(f"{ok} of {len(rows)} X-ray(s) segmented with **{model_name}** at threshold "
             f"{threshold:.2f}.")
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(rows, hide_index=True,
                 column_order=[c for c in analysis.CSV_FIELDS if c not in ("model", "threshold")],
                 column_config={
                     "lung_fraction": percent,
                     "image_left_fraction": st.column_config.NumberColumn(
                         "image-left (patient's right)", format="percent"),
                     "image_right_fraction": st.column_config.NumberColumn(
                         "image-right (patient's left)", format="percent"),
                     "inference_ms": st.column_config.NumberColumn(format="%.0f ms"),
                     "dice": st.column_config.NumberColumn(format="%.4f"),
                     "iou": st.column_config.NumberColumn(format="%.4f")})
    if items:
        key = (tuple((e["name"], e["digest"]) for e in entries), folder, threshold, opacity,
               tuple(sorted((n, digest(f.getvalue())) for n, f in truth_files.items())))
        st.download_button("Download all: masks, overlays and figures (zip)",
                           bundle_zip(key, items, rows), file_name="lungseg-results.zip",
                           mime="application/zip", on_click="ignore", key="zip", type="primary")
    for name, extra in ((n, t) for n, t in truth_files.items() if n not in matches.values()):
        st.warning(f"Ground-truth mask {name} matches no uploaded X-ray by file name.")
    for entry in entries:
        show_result(entry["name"], entry["stem"], entry["result"], opacity, entry["truth"])
    if compare:
        comparison(entries, threshold)


try:
    main()
except Exception:  # noqa: BLE001  (never show a traceback; the server log has it)
    log.exception("the app failed")
    st.error("Something went wrong on the server. Your files were not stored; please try again.")
