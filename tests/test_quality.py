"""Masks you can trust: estimated quality and warnings on real X-rays, degraded ones and probes."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import DATA, mask_of, requires_data, val_images
from lungseg import checks, quality
from lungseg.metrics import score
from lungseg.perturb import PERTURBATIONS
from lungseg.postprocess import clean_mask
from probes import probes, synthetic


def test_the_default_model_carries_its_quality_estimator(segmenter):
    params = segmenter.quality_params
    assert params["features"] == list(quality.FEATURES)
    assert 0.8 < params["warn_below"] < 0.99
    assert params["fitted_on"]["held_out"]["folds"] == 2      # out of sample, from a twin


@requires_data
def test_good_masks_of_real_xrays_get_no_warning(segmenter):
    paths = val_images(4, "Normal") + val_images(4, "COVID-19") + val_images(4, "Non-COVID")
    results = segmenter.analyze_batch(paths)
    for path, result in zip(paths, results):
        dice = score(np.asarray(Image.open(mask_of(path))) > 0, result.mask)["dice"]
        assert np.array_equal(result.mask, segmenter.predict(path))
        assert 0 <= result.quality <= 1 and result.probability.shape == result.mask.shape
        if dice >= 0.97:
            assert result.warnings == [], (path.name, dice, result.warnings)
            assert result.quality >= segmenter.quality_params["warn_below"]


@requires_data
def test_a_whitened_lung_gets_a_lower_quality_a_washed_out_export_a_warning(segmenter):
    """A lung whitened as consolidation does (soft-tissue grey painted into it) spoils its mask, and
    the estimate drops; a washed-out export (the grey range squeezed) does not spoil it, as the model
    standardises exposure: same mask, same estimate, and a warning about the export. A crop that
    cuts the lungs gets cut_off and a lower estimate."""
    path = val_images(1, "Normal")[0]
    image = np.asarray(Image.open(path).convert("RGB"))
    truth = (np.asarray(Image.open(mask_of(path))) > 0).astype(np.uint8)
    lungs, _ = ndimage.label(truth)
    one_lung = ndimage.gaussian_filter((lungs == 1).astype(float), 4)[..., None]
    consolidated = (image * (1 - 0.8 * one_lung) + 200 * 0.8 * one_lung).astype(np.uint8)
    washed, _ = PERTURBATIONS["washed_out"](image, truth, np.random.default_rng(3))
    cropped = image[:, : image.shape[1] * 2 // 3]          # a third of the chest cut away
    clean, whitened, export, cut = segmenter.analyze_batch([image, consolidated, washed, cropped])
    assert clean.warnings == [] and score(truth, whitened.mask)["dice"] < score(truth, clean.mask)["dice"] - 0.01
    assert whitened.quality < clean.quality - 0.01
    assert "washed_out" in [w["code"] for w in export.warnings]
    assert score(clean.mask, export.mask)["iou"] > 0.98 and abs(export.quality - clean.quality) < 0.01
    assert "cut_off" in [w["code"] for w in cut.warnings] and cut.quality < clean.quality


@requires_data
def test_an_inverted_xray_is_found_and_segmented_as_its_negative(segmenter):
    path = val_images(1, "Normal")[0]
    image = np.asarray(Image.open(path).convert("RGB"))
    clean, negative = segmenter.analyze_batch([image, 255 - image])
    assert negative.inverted and [w["code"] for w in negative.warnings][:1] == ["inverted"]
    assert score(clean.mask, negative.mask)["iou"] > 0.95
    assert not clean.inverted and segmenter.predict(255 - image).mean() < clean.mask.mean() / 2


@requires_data
def test_a_degraded_xray_of_doubtful_quality_is_not_taken_for_a_negative(segmenter):
    """A real X-ray made doubtful by heavy JPEG compression keeps its own mask (with its warning):
    its inverse looks like small lungs of high estimated quality, but not clearly better enough."""
    path = DATA / "Val" / "COVID-19" / "images" / "covid_2262.png"
    image = np.asarray(Image.open(path).convert("RGB"))
    truth = (np.asarray(Image.open(mask_of(path))) > 0).astype(np.uint8)
    jpeg, _ = PERTURBATIONS["jpeg"](image, truth, None)
    result = segmenter.analyze(jpeg)
    assert not result.inverted and score(truth, result.mask)["dice"] > 0.9
    assert np.array_equal(result.mask, segmenter.predict(jpeg)) and result.warnings


def test_inputs_that_are_not_chest_xrays_are_warned(segmenter):
    images = probes()
    results = segmenter.analyze_batch(list(images.values()))
    unwarned = [name for name, r in zip(images, results) if not r.warnings]
    assert len(unwarned) <= 0.05 * len(images), unwarned
    codes = {name: {w["code"] for w in r.warnings} for name, r in zip(images, results)}
    assert "noise" in codes["noise_grey"] and "colour" in codes["noise_rgb"]
    assert "flat" in codes["flat_grey"] and "small_image" in codes["tiny"]
    assert all("washed_out" in c for n, c in codes.items() if n.startswith("washed-out"))


def test_image_checks_on_built_images():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (200, 1))
    stats = checks.image_stats(np.repeat(ramp[..., None], 3, axis=2))
    assert (stats["p1"], stats["p99"]) == (2, 253) and stats["colour"] == 0
    assert checks.image_warnings(stats) == []
    squeezed = checks.image_stats(np.repeat((100 + ramp // 8)[..., None], 3, axis=2))
    assert [w["code"] for w in checks.image_warnings(squeezed)] == ["low_contrast"]
    noise = synthetic()["noise_grey"]
    assert [w["code"] for w in checks.image_warnings(checks.image_stats(np.dstack([noise] * 3)))] == ["noise"]


def test_features_and_the_fit_on_built_maps():
    rng = np.random.default_rng(0)
    rows, dice = [], []
    for k in range(60):
        proba = np.zeros((64, 64), np.float32)
        proba[10:50, 8:28] = proba[10:50, 36:56] = 0.99
        blur = k / 60                       # more undecided border, lower "true" Dice
        proba[8:52, 6:30][rng.random((44, 24)) < blur] = 0.5
        raw = (proba >= 0.5).astype(np.uint8)
        feats = quality.features(proba, raw, clean_mask(raw))
        assert feats["lungs"] == 2 and 0.5 < feats["balance"] <= 1 and feats["edge"] == 0
        rows.append(feats)
        dice.append(0.99 - 0.2 * blur)
    params = quality.fit(rows, dice)
    estimates = [quality.estimate(r, params) for r in rows]
    assert np.corrcoef(estimates, dice)[0, 1] > 0.9 and all(0 < e < 1 for e in estimates)
    cut = np.zeros((64, 48), np.float32)    # a lung cut by the left side over rows 10-49 of 64
    cut[10:50, :12] = cut[10:50, 20:40] = 0.99
    raw = (cut >= 0.5).astype(np.uint8)
    feats = quality.features(cut, raw, raw)
    assert feats["edge"] == 40 / 64
    assert "cut_off" in [w["code"] for w in checks.mask_warnings(feats, 0.99, 0.9)]


def test_pair_features_and_an_estimator_that_reads_them_on_built_masks():
    """What two outputs say of each other, on built working-size masks: a visible field inside the
    whole lung leaks nothing; one that spills out does, in proportion; the log area ratio is exact;
    an estimator fitted with them lists and reads them (and a wrong pair lowers the estimate)."""
    visible = np.zeros((48, 48), bool)
    visible[10:30, 5:20] = visible[10:30, 28:43] = True          # 600 pixels
    whole_lung = np.zeros_like(visible)
    whole_lung[8:36, 4:21] = whole_lung[8:36, 27:44] = True       # 952, containing the visible field
    inside = quality.pair_features(visible, whole_lung)
    assert inside == {"visible_outside": 0.0, "whole_over_visible": pytest.approx(np.log(952 / 600))}
    spilled = quality.pair_features(np.roll(visible, 8, axis=1), whole_lung)   # columns 13-27, 36-47 + 0-2
    assert spilled["visible_outside"] == pytest.approx(20 * (6 + 7) / 600)     # 21-26; 44-47 and 0-2 outside
    assert quality.pair_features(visible, np.zeros_like(visible))["visible_outside"] == 1.0
    rng = np.random.default_rng(3)
    names = quality.FEATURES + quality.PAIR_FEATURES
    rows = [{**{n: rng.normal() for n in quality.FEATURES}, "area": 0.3,
             "visible_outside": leak, "whole_over_visible": 0.25} for leak in rng.uniform(0, 0.3, 80)]
    params = quality.fit(rows, [0.97 - r["visible_outside"] for r in rows], names=names)
    assert params["features"] == list(names)
    assert quality.estimate({**rows[0], "visible_outside": 0.0}, params) > quality.estimate(
        {**rows[0], "visible_outside": 0.3}, params) + 0.05


@requires_data
def test_calibration_writes_the_estimator_into_a_card(tmp_path):
    from lungseg.bundle import DEFAULT_MODEL
    from lungseg.calibration import fit_card_quality

    twin, model = tmp_path / "twin", tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, twin)
    shutil.copytree(DEFAULT_MODEL, model)
    card = json.loads((twin / "card.json").read_text())
    card["training"]["held_out"] = {"folds": 2, "holdout": 0, "seed": 1234}
    (twin / "card.json").write_text(json.dumps(card))
    from conftest import DATA
    fitted = fit_card_quality(twin, DATA / "Train", model, limit=6)
    assert len(fitted["rows"]) == 12 and {r["variant"] for r in fitted["rows"]} >= {"clean"}
    written = json.loads((model / "card.json").read_text())["quality"]
    assert written["fitted_on"]["rows"] == 12 and len(written["coef"]) == len(quality.FEATURES)
