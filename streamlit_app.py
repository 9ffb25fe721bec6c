"""LungSeg: the upload demo with server-side inference, and the server-vs-browser comparison.

Run with ``make run`` (scripts/start.py starts this app and the static web page together) or
``streamlit run streamlit_app.py``. Uploads stay in memory; nothing is written to disk.
"""
from __future__ import annotations

import logging
import os

import streamlit as st

from app import analysis, component, download, models, results
from app.results import preview
from app.xray import flagged, show_result
from lungseg import Segmenter, rules
from lungseg.bundle import DEFAULT_MODEL
from lungseg.inference import BOTH
from lungseg.plots import difference_overlay

WEB_URL = os.environ.get("LUNGSEG_WEB_URL", "http://127.0.0.1:8502/")
UPLOAD_MB = rules.MAX_FILE_BYTES // 2**20     # Streamlit counts upload limits in MiB
log = logging.getLogger("lungseg.app")
#: The results tables' columns: CSV field (or "size") -> its label (the CSV keeps the field names);
#: narrow, so that every column shows whole at 1366 px (tests/test_app_e2e.py).
SIDE_HELP = "The patient's {side} lung (on the image's {image_side}), {unit}."
TABLE = {
    "file": st.column_config.TextColumn("File"),
    "size": st.column_config.TextColumn("Size (px)", width=84),
    "lung_fraction": st.column_config.NumberColumn(
        "Lungs", format="%.1f%%", width=66, help="Both lungs, in % of the image."),
    "image_left_fraction": st.column_config.NumberColumn(
        "Right lung", format="%.1f%%", width=84,
        help=SIDE_HELP.format(side="right", image_side="left", unit="in % of the image")),
    "image_right_fraction": st.column_config.NumberColumn(
        "Left lung", format="%.1f%%", width=76,
        help=SIDE_HELP.format(side="left", image_side="right", unit="in % of the image")),
    "lung_cm2": st.column_config.TextColumn(
        "Lungs (cm²)", width=96,
        help="Both lungs in cm², from the DICOM's pixel spacing (approximate); — : no spacing."),
    "image_left_cm2": st.column_config.TextColumn(
        "Right (cm²)", width=92, help=SIDE_HELP.format(side="right", image_side="left", unit="in cm²")),
    "image_right_cm2": st.column_config.TextColumn(
        "Left (cm²)", width=84, help=SIDE_HELP.format(side="left", image_side="right", unit="in cm²")),
    "quality": st.column_config.NumberColumn(
        "Est. Dice", format="%.2f", width=76,
        help="The model's estimate of this mask's Dice, at the model card's threshold (shown when "
             "the model has an estimator)."),
    "warnings": st.column_config.TextColumn(
        "Warnings", help="What to check (at the model card's threshold); each X-ray's section "
                         "below says more."),
    "dice": st.column_config.TextColumn("Dice", width=64),
    "iou": st.column_config.TextColumn("IoU", width=64),
    "error": st.column_config.TextColumn("Why it was not segmented"),
}
AREAS = ["lung_fraction", "image_left_fraction", "image_right_fraction"]
ZIP_LABEL = "Download all: masks, overlays and figures (zip)"
ZIP_HELP = ("Laid out like `lungseg predict --definition {asked} --labels`'s output folder: "
            "{names}, NAME.seg.dcm (DICOMs) and manifest.csv; scores.csv adds the model, "
            "definition, threshold, time and Dice.")
BOTH_LABEL = "Both, one after the other"
CM2 = ["lung_cm2", "image_left_cm2", "image_right_cm2"]
OPTIONAL = {"quality", "dice", "iou"}      # shown when some row has a value


def safe(step, *args, name: str = "", **kwargs) -> dict:
    """Run a computation step; an unexpected failure becomes an error for this file, not a traceback."""
    try:
        return step(*args, **kwargs)
    except Exception:  # noqa: BLE001  (logged on the server; the user gets a short message)
        log.exception("processing an upload failed")      # no file name: it may name the patient
        return {"error": f"{name}: this file could not be processed (unexpected error; the "
                         f"server log has details)."}


# ---------------------------------------------------------------- page
def model_choice() -> str:
    """The model folder chosen in the sidebar, with its card."""
    st.sidebar.header("Model")
    choices = models.available_models()
    label = st.sidebar.selectbox(
        "Model", list(choices), help=f"Deployers add models as folders (model.keras + card.json) "
        f"under the folder named by env {models.MODELS_DIR_ENV}.")
    folder = choices[label]
    with st.sidebar.expander("Model card", expanded=False):
        st.json(models.card_summary(folder), expanded=1)
    return folder


def loaded(folder: str) -> Segmenter | None:
    """The model of ``folder``, or None if it cannot be loaded (said once files are uploaded)."""
    try:
        return results.load_segmenter(folder)
    except Exception:  # noqa: BLE001
        log.exception("loading model %s failed", folder)
        return None


def definition_label(definition: str) -> str:
    return BOTH_LABEL if definition == BOTH else rules.DEFINITIONS[definition]["label"]


def definition_choice(seg: Segmenter | None, folder: str) -> tuple[str, dict[str, float]]:
    """Which lung definition(s) to outline, of those the model gives (rules.json ``definitions``,
    the visible lung field first and by default), each with what it means, and a threshold per
    definition chosen (the model card's by default): (asked, {definition: threshold})."""
    if seg is None:
        return "visible", {}
    st.sidebar.header("Lung definition")
    offered = seg.definitions + ([BOTH] if len(seg.definitions) > 1 else [])
    asked = st.sidebar.radio(
        "Lung definition", offered, format_func=definition_label, key=f"definition::{folder}",
        label_visibility="collapsed", help="What the masks, areas and downloads outline.")
    chosen = seg.chosen(asked)
    for definition in chosen:
        facts = rules.DEFINITIONS[definition]
        st.sidebar.caption(f"**{facts['label']}**: {facts['means']}.")
    st.sidebar.header("Display")
    thresholds = {}
    for definition in chosen:
        card = seg.output(definition).threshold
        thresholds[definition] = st.sidebar.select_slider(
            f"Threshold: {rules.DEFINITIONS[definition]['name']}", results.thresholds(card), value=card,
            format_func=lambda t: f"{t:.2f}", key=f"threshold::{folder}::{definition}",
            help="Pixels at or above this probability count as lung. The model card's value is "
                 "the default.")
    return asked, thresholds


def display_choice() -> tuple[float, bool]:
    opacity = st.sidebar.slider("Overlay opacity", 0.0, 1.0, rules.OVERLAY_OPACITY, 0.05)
    compare = st.sidebar.toggle("Compare with the in-browser model", value=False,
                                help="Runs the web page's TF.js model in your browser on the same "
                                     "X-ray and compares the masks.")
    return opacity, compare


def intro() -> None:
    st.title("LungSeg: lung outlines on chest X-rays")
    st.markdown(
        f"Upload chest X-rays to outline the lungs. **This page sends your X-rays to this server**, "
        f"which segments them in memory and stores nothing. For fully private use, open the "
        f"[in-browser page]({WEB_URL}): it runs the same model on your own device and **uploads "
        f"nothing**. A research tool, not a medical device.")


def limits_text() -> str:
    """The input rules (lungseg/rules.json), as the upload box states them."""
    return (f"Accepted: {rules.FORMATS} ({' '.join(rules.EXTENSIONS)}); grey, RGB, RGBA or 16-bit; "
            f"up to {rules.MAX_PIXELS / 1e6:g} megapixels and {rules.MAX_FILE_BYTES / 2**20:g} MB "
            f"per file, at least {rules.MIN_SIDE} pixels a side. Files are processed in memory "
            f"and dropped when you close the page.")


def uploads() -> tuple[list, dict]:
    # type=None: every file reaches lungseg, which refuses what it cannot read with its message.
    # max_upload_size: the box says rules.json's limit ("Limit 100MB per file"), as the server's
    # maxUploadSize (.streamlit/config.toml) does.
    files = st.file_uploader("Chest X-rays", type=None, accept_multiple_files=True, key="xrays",
                             max_upload_size=UPLOAD_MB)
    st.caption(limits_text())
    with st.expander("Ground-truth masks (optional): Dice, IoU and a difference overlay"):
        truths = st.file_uploader(
            "Lung masks, matched to X-rays by file name (same name, or the name plus _mask)",
            type=None, accept_multiple_files=True, key="truths", max_upload_size=UPLOAD_MB)
    truth_files = {f.name: f for f in truths or []}
    return list(files or []), truth_files


def comparison(entries: list[dict], asked: str, thresholds: dict[str, float]) -> None:
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
    definition = st.radio("Lung definition to compare", list(thresholds), format_func=definition_label,
                          horizontal=True, key="compare_definition")
    threshold = thresholds[definition]
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
    data = entry["data"]
    server = safe(results.segment, data, name, str(DEFAULT_MODEL), threshold, definition, asked, name=name)
    if "error" in server:
        st.error(server["error"])
        return
    token = f"{results.digest(data)}:{definition}:{threshold:.4f}"
    payload, mime, what = component.browser_payload(data, lambda: results.decode(data, name))
    value = component.browser_segment(payload, mime, threshold, token, definition, key="browser_compare")
    left, right, diff, figures = st.columns(4)
    outlined = rules.DEFINITIONS[definition]["name"]
    left.image(server["preview"], caption=f"server (Keras), {outlined}: {server['inference_ms']:.0f} ms",
               width="stretch")
    if not value or value.get("token") != token:
        right.info("Waiting for the browser…")
        return
    if value.get("error"):
        right.error(f"The in-browser model failed: {value['error']}")
        return
    try:
        browser = analysis.rle_decode(value["rle"], int(value["width"]), int(value["height"]))
        server_mask = results.full_mask(server)
        agreement = analysis.overlap(server_mask, browser)["iou"]
        differ = int((server_mask != browser).sum())
    except (KeyError, TypeError, ValueError) as err:
        right.error(f"The browser returned an unusable mask ({err}).")
        return
    shown = preview(browser * 255)
    right.image(shown, width="stretch",
                caption=f"browser (TF.js, {value.get('backend')}), {outlined}: {value['ms']:.0f} ms; "
                        f"input: {what}")
    diff.image(difference_overlay(results.image_preview(data, name), server["preview"] >= 128,
                                  shown >= 128), width="stretch",
               caption="where they differ: red = only the server, yellow = only the browser")
    figures.metric("Agreement (IoU)", f"{agreement:.4f}", help=f"{differ:,} pixels differ.")
    figures.metric("Server (Keras)", f"{server['inference_ms']:.0f} ms")
    figures.metric(f"Browser (TF.js {value.get('backend')})", f"{value['ms']:.0f} ms",
                   help=f"Model load {(value.get('load_ms') or 0):.0f} ms.")


def table_columns(done: list[dict]) -> list[str]:
    """The segmented table's columns: areas in cm² when every DICOM gave the pixel spacing, else
    in % of the image (with both lungs' cm² where some did: the sections and the zip have every
    figure); estimated Dice, Dice and IoU when some row has them."""
    with_cm2 = sum("lung_cm2" in r for r in done)
    areas = CM2 if with_cm2 == len(done) else AREAS + (CM2[:1] if with_cm2 else [])
    order = ["file", "warnings", "quality", "size", *areas, "dice", "iou"]
    return [c for c in order if c not in OPTIONAL or any(r.get(c) is not None for r in done)]


def shown(row: dict) -> dict:
    """A segmented row as its table shows it: size, areas in %, cm² and scores as text."""
    return {**row, "size": f"{row['width']} × {row['height']}",
            **{k: row[k] * 100 for k in AREAS},
            **{k: f"{row[k]:.1f}" if k in row else "—" for k in CM2},   # "—": no pixel spacing
            **{k: f"{row[k]:.4f}" if k in row else "—" for k in ("dice", "iou")},
            "warnings": ", ".join(c.replace("_", " ") for c in row["warnings"].split())}


def results_table(rows: list[dict], entries: list[dict], opacity: float, folder: str, asked: str) -> None:
    """Per definition shown (under its label when there are several), segmented files with their
    figures, those with warnings first; then files not segmented, each with its reason; then the
    zip of everything, laid out like ``lungseg predict --definition ASKED --labels``'s output
    folder (a DICOM Segmentation that cannot be written is said here and left out)."""
    chosen = list(entries[0]["outlines"])
    for definition in chosen:
        segmented = [r for r in rows if r["status"] == "ok" and r["definition"] == definition]
        if not segmented:
            break
        if len(chosen) > 1:
            st.subheader(rules.DEFINITIONS[definition]["label"])
        st.dataframe(sorted(map(shown, segmented), key=lambda r: not r["warnings"]), hide_index=True,
                     width="stretch", column_config=TABLE, column_order=table_columns(segmented))
    refused = [r for r in rows if r["status"] != "ok" and r["definition"] == chosen[0]]
    if refused:
        st.dataframe(refused, hide_index=True, width="stretch", column_order=["file", "error"],
                     column_config=TABLE)
    if len(refused) == len(entries):
        return
    for entry in entries:
        if "error" not in entry["result"] and entry["result"]["dicom"]:
            failure = results.seg_failure(entry["data"], entry["name"], entry["outlines"], folder)
            if failure:
                st.error(failure + " The zip holds its mask, overlay and labels, without it.")
    scores = [{"input": r["file"], **{k: r.get(k) for k in analysis.SCORE_COLUMNS[1:]}} for r in rows]
    seg = results.load_segmenter(folder)
    names = ", ".join(analysis.output("NAME", kind, d) for d in chosen for kind in analysis.KINDS)
    about = ZIP_HELP.format(asked=asked, names=names)

    def pieces():
        return results.bundle(entries, scores, opacity, seg)
    if download.serving():      # streamed, an X-ray at a time (make run)
        st.html(download.link(download.offer(pieces), ZIP_LABEL, about.replace("`", "")))
    else:                       # held whole in memory until Streamlit drops it
        st.download_button(ZIP_LABEL, lambda: b"".join(pieces()), file_name=download.FILE_NAME,
                           mime="application/zip", on_click="ignore", key="zip", type="primary",
                           help=about)


def outlines_of(data: bytes, name: str, folder: str, asked: str, thresholds: dict[str, float]) -> dict[str, dict]:
    """An upload's result per definition chosen, at its threshold; the first's error for all."""
    outlines = {}
    for definition, threshold in thresholds.items():
        outlines[definition] = safe(results.segment, data, name, folder, threshold, definition, asked,
                                    name=name)
        if "error" in outlines[definition]:
            return dict.fromkeys(thresholds, outlines[definition])
    return outlines


def segment_all(files: list, truth_files: dict, matches: dict, folder: str, asked: str,
                thresholds: dict[str, float], model_name: str) -> tuple[list[dict], list[dict]]:
    """Each upload's results per definition (and ground-truth scores), and their table rows (one
    per upload and definition), in upload order."""
    entries, rows = [], []
    for upload, out in zip(files, analysis.output_names([f.name for f in files])):
        data = upload.getvalue()
        outlines = outlines_of(data, upload.name, folder, asked, thresholds)
        truths = {}
        for definition, result in outlines.items():
            if "error" not in result and upload.name in matches:
                truth_name = matches[upload.name]
                truths[definition] = safe(results.truth, result, data, folder,
                                          truth_files[truth_name].getvalue(), truth_name, name=truth_name)
                truths[definition].setdefault("file", truth_name)
            row = {"file": upload.name, "model": model_name, "definition": definition,
                   "threshold": thresholds[definition]}
            if "error" in result:
                row.update(status="error", error=result["error"])
            else:
                row.update(status="ok", inference_ms=result["inference_ms"],
                           warnings=" ".join(w["code"] for w in result["warnings"]),
                           **{k: result[k] for k in ("width", "height", "quality", *AREAS, *CM2) if k in result})
                truth = truths.get(definition)
                if truth and "error" not in truth:
                    row.update(dice=truth["dice"], iou=truth["iou"])
            rows.append(row)
        entries.append({"name": upload.name, "out": out, "data": data, "outlines": outlines,
                        "result": next(iter(outlines.values())), "truths": truths})
    return entries, rows


def summary(entries: list[dict], model_name: str, thresholds: dict[str, float], seg: Segmenter) -> None:
    segmented = [e for e in entries if "error" not in e["result"]]
    warned = sum(map(flagged, segmented))
    refused = len(entries) - len(segmented)
    at = ", ".join(f"{t:.2f}" + (f" ({rules.DEFINITIONS[d]['name']})" if len(thresholds) > 1 else "")
                   for d, t in thresholds.items())
    st.write(f"{len(segmented)} of {len(entries)} file(s) segmented with **{model_name}** at "
             f"threshold {at}."
             + (f" **{warned} with warnings**: listed first; check their masks by hand."
                if warned else "")
             + (f" {refused} not: the reasons are listed below." if refused else ""))
    cards = {d: seg.output(d).threshold for d in thresholds}
    if thresholds != cards:
        st.caption(f"Estimated quality and warnings are those of the model card's threshold "
                   f"({', '.join(f'{t:.2f}' for t in cards.values())}); masks and areas are at "
                   f"{at}.")


def main() -> None:
    st.set_page_config(page_title="LungSeg", page_icon="🫁", layout="wide")
    folder = model_choice()
    seg = loaded(folder)
    asked, thresholds = definition_choice(seg, folder)
    opacity, compare = display_choice()
    intro()
    files, truth_files = uploads()
    if not files:
        st.info("Upload one or more chest X-rays to start.")
        return
    if seg is None:
        st.error(f"The model in {folder} could not be loaded; choose another model (the server "
                 f"log has details).")
        return

    card = models.card_summary(folder)
    matches = analysis.match_truths([f.name for f in files], list(truth_files))
    with st.spinner(f"Segmenting {len(files)} file(s)…"):
        entries, rows = segment_all(files, truth_files, matches, folder, asked, thresholds, card["name"])
    # One container: the comparison below keeps its place in the page whatever the results hold
    # (its browser half, an iframe, stops being heard when elements before it come and go).
    with st.container():
        st.header("Results")
        summary(entries, card["name"], thresholds, seg)
        results_table(rows, entries, opacity, folder, asked)
        for name in (n for n in truth_files if n not in matches.values()):
            st.warning(f"Ground-truth mask {name} matches no uploaded X-ray by file name.")
        # Flagged X-rays first, then the others, then files not segmented (as in the tables).
        for entry in sorted(entries, key=lambda e: ("error" in e["result"], not flagged(e))):
            show_result(entry, opacity, folder)
    if compare:
        comparison(entries, asked, thresholds)


try:
    main()
except Exception:  # noqa: BLE001  (never show a traceback; the server log has it)
    log.exception("the app failed")
    st.error("Something went wrong on the server. Your files were not stored; please try again.")
