"""One X-ray's section of the app's results page: its warnings, images, figures and downloads, per
lung definition shown (rules.json ``definitions``), one after the other under the definition's
label when there are several."""
from __future__ import annotations

import streamlit as st

from app import results
from app.analysis import output
from lungseg.rules import DEFINITIONS
from lungseg.imageio import encode_png
from lungseg.measure import PATIENT_SIDE_NOTE
from lungseg.plots import difference_overlay, overlay

#: The area metrics: label, field prefix, help.
SIDES = [("Lung area", "lung", "Both lungs"),
         ("Patient's right lung", "image_left", "The lung on the image's left"),
         ("Patient's left lung", "image_right", "The lung on the image's right")]
MAGNIFIES = ("A projection X-ray magnifies the patient (by about 5-15% at the detector), so these "
             "cm² are approximate.")


def flagged(entry: dict) -> bool:
    """Whether an upload was segmented with warnings (a low estimated quality is one) in some
    definition shown."""
    return any(result.get("warnings") for result in entry["outlines"].values())


def area_metrics(cols, result: dict) -> None:
    """Lung areas: in cm² when the DICOM gave the pixel spacing, else as fractions of the image."""
    for col, (label, side, about) in zip(cols, SIDES):
        fraction = result[f"{side}_fraction"]
        if f"{side}_cm2" in result:
            col.metric(label, f"{result[f'{side}_cm2']:.1f} cm²", help=f"{about}: {fraction:.1%} "
                                                                       f"of the image.")
        else:
            col.metric(label, f"{fraction:.1%}", help=f"{about}, as a fraction of the image.")


def areas_note(result: dict) -> str:
    if result["spacing"]:
        row, col = result["spacing"]
        return (f" Areas in cm² from the DICOM's {result['spacing_source']} ({row:g} x {col:g} mm "
                f"per pixel). {MAGNIFIES}")
    return " Areas are fractions of the whole image" + (
        " (the DICOM gives no pixel spacing)." if result["dicom"] else ".")


def quality_metric(col, quality: float | None) -> None:
    if quality is None:
        col.metric("Estimated Dice", "—", help="No estimate for this model (its card has no "
                                               "quality estimator).")
    else:
        col.metric("Estimated Dice", f"{quality:.2f}", help="The model's estimate of how well this "
                   "mask matches a careful manual outline, at the model card's threshold.")


def downloads(entry: dict, definition: str, folder: str, opacity: float, with_seg: bool) -> None:
    """On-click downloads of one X-ray's ``definition``, named as ``lungseg predict --labels``
    names its outputs (``NAME.mask.png``, ``NAME.whole.mask.png``, ...): mask, overlay, side
    labels and, ``with_seg`` for a DICOM, its DICOM Segmentation of every definition shown (or why
    it cannot be written)."""
    name, out, result = entry["name"], entry["out"], entry["outlines"][definition]
    about = DEFINITIONS[definition]["name"]
    cols = st.columns(4)
    cols[0].download_button("Download mask (PNG)", lambda: encode_png(results.full_mask(result)),
                            file_name=output(out, "mask", definition), mime="image/png",
                            on_click="ignore", key=f"mask::{definition}::{out}",
                            help=f"Full size: 255 = {about}, 0 = the rest.")
    cols[1].download_button("Download overlay (PNG)",
                            lambda: results.overlay_png(entry["data"], name, result, opacity),
                            file_name=output(out, "overlay", definition), mime="image/png",
                            on_click="ignore", key=f"overlay::{definition}::{out}",
                            help=f"The X-ray with the {about} tinted, full size.")
    cols[2].download_button("Download labelled mask (PNG)", lambda: results.labels_png(result),
                            file_name=output(out, "labels", definition), mime="image/png",
                            on_click="ignore", key=f"labels::{definition}::{out}",
                            help="The patient's right lung is 1, the left lung 2, the rest 0 "
                                 "(it looks black in an image viewer).")
    if not (with_seg and result["dicom"]):
        return
    outlines = entry["outlines"]
    failure = results.seg_failure(entry["data"], name, outlines, folder)
    if failure:
        cols[3].error(failure)
        return
    seg = results.load_segmenter(folder)
    cols[3].download_button(
        "Download DICOM Segmentation", lambda: results.dicom_seg(entry["data"], name, outlines, seg),
        file_name=output(out, "seg"), mime="application/dicom", on_click="ignore", key=f"seg::{out}",
        help="The right and the left lung of each lung definition shown as segments. References "
             "the X-ray and copies its patient and study attributes, so a PACS files it with the "
             "X-ray.")


def outline(entry: dict, definition: str, image, opacity: float) -> None:
    """One definition's images, figures and ground-truth scores of an X-ray."""
    result, truth = entry["outlines"][definition], entry["truths"].get(definition)
    mask = result["preview"] >= 128
    has_truth = truth is not None and "error" not in truth
    about = DEFINITIONS[definition]["name"]
    cols = st.columns(4)
    cols[0].image(image, caption=f"original, {result['width']}x{result['height']}"
                                 + (" (segmented inverted)" if result["inverted"] else ""),
                  width="stretch")
    cols[1].image(overlay(image, mask, opacity), caption=f"{about} overlay", width="stretch")
    cols[2].image(result["preview"], caption=f"{about} mask", width="stretch")
    if has_truth:
        cols[3].image(difference_overlay(image, truth["preview"] >= 128, mask), width="stretch",
                      caption=f"vs ground truth ({truth['file']}): red = lung missed, "
                              f"yellow = extra lung")
    cols = st.columns(4)
    area_metrics(cols[:3], result)
    quality_metric(cols[3], result["quality"])
    cols = st.columns(4)
    cols[0].metric("Inference", f"{result['inference_ms']:.0f} ms")
    if has_truth:
        cols[1].metric("Dice", f"{truth['dice']:.4f}")
        cols[2].metric("IoU", f"{truth['iou']:.4f}")
    st.caption(PATIENT_SIDE_NOTE + areas_note(result))
    if truth is not None and not has_truth:
        st.error(truth["error"])


def show_result(entry: dict, opacity: float, folder: str) -> None:
    """An X-ray's section: the warnings every definition shares, then per definition (under its
    label and meaning when there are several) its own warnings, images, figures and downloads."""
    name, result, outlines = entry["name"], entry["result"], entry["outlines"]
    st.subheader(name)
    if "error" in result:
        st.error(result["error"])
        return
    said = [dict.fromkeys(w["message"] for w in r["warnings"]) for r in outlines.values()]
    shared = [m for m in said[0] if all(m in s for s in said)]
    for message in shared:
        st.warning(message, icon="⚠️")
    image = results.image_preview(entry["data"], name)
    for (definition, messages), last in zip(zip(outlines, said), [False] * (len(said) - 1) + [True]):
        if len(outlines) > 1:
            st.markdown(f"#### {DEFINITIONS[definition]['label']}")
            st.caption(DEFINITIONS[definition]["means"])
        for message in (m for m in messages if m not in shared):
            st.warning(message, icon="⚠️")
        outline(entry, definition, image, opacity)
        downloads(entry, definition, folder, opacity, with_seg=last)
