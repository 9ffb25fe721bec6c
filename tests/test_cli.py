"""The command line: predict safely (names, collisions, in-place, recursion, manifest, resume),
bad files beside good ones, quiet start-up; evaluate on real X-rays."""
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, mask_of, requires_data, val_images
from lungseg.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lungseg", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _xray(rng=None, size=(300, 220)) -> np.ndarray:
    """A real Val X-ray resized to ``size`` where ../shared is here, else a built grey image."""
    paths = val_images(1)
    if paths:
        return np.asarray(Image.open(paths[0]).convert("L").resize(size[::-1]))
    return (rng or np.random.default_rng(0)).integers(0, 255, size, np.uint8)


def _digests(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _manifest(out):
    with (out / "manifest.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_predict_skips_bad_files_and_still_writes_good_masks(tmp_path, segmenter):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = _xray()
    Image.fromarray(good).save(inputs / "good.png")
    Image.fromarray(good).convert("RGB").save(inputs / "photo.jpg", quality=95)
    (inputs / "notes.png").write_text("this is a text file")
    (inputs / "empty.png").write_bytes(b"")
    data = (inputs / "good.png").read_bytes()
    (inputs / "truncated.png").write_bytes(data[: len(data) // 2])

    result = run_cli("predict", str(inputs), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    for name in ("notes.png", "empty.png", "truncated.png"):
        assert f"error: {inputs / name}: " in result.stderr
    assert "2 of 5 input(s) segmented, 3 failed; wrote 2 mask(s) and 2 overlay(s)" in result.stdout
    for name in ("good.png", "photo.jpg"):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}.mask.png"))
        assert mask.shape == (300, 220) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / "out" / f"{name}.overlay.png").size == (220, 300)
    expected = segmenter.predict(inputs / "good.png") * 255
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "good.png.mask.png")), expected)
    rows = {Path(r["input"]).name: r for r in _manifest(tmp_path / "out")}
    assert [rows[n]["status"] for n in sorted(rows)] == ["error", "ok", "error", "ok", "error"]
    assert "text file" in rows["notes.png"]["message"] and rows["good.png"]["width"] == "220"
    assert float(rows["good.png"]["lung_fraction"]) > 0
    # TensorFlow's native start-up lines stay out of the terminal unless --verbose.
    assert "cuDNN" not in result.stderr and "E0000" not in result.stderr


def test_predict_all_good_exits_zero(tmp_path):
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--no-overlay"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png.mask.png", "manifest.csv"]


def test_predict_names_never_collide_and_inputs_stay_untouched(tmp_path, capsys):
    """The issue's cases: dotted names, one stem in several formats, one name in two sub-folders,
    a file named like another's overlay; a file given twice is segmented once."""
    inputs = tmp_path / "scans"
    image = Image.fromarray(_xray())
    names = ["10.1016-slash-j.crad.2020.04.002-a.png", "10.1016-slash-j.crad.2020.04.003-a.png",
             "1-s2.0-S0085-a.png", "1-s2.0-S0086-a.png", "xray.png", "xray.tiff", "xray.bmp",
             "xray.webp", "a.png", "a_overlay.png", "A.PNG", "left/x.png", "right/x.png",
             "right/deeper/x.png"]
    for name in names:
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(inputs / name, **({"lossless": True} if name.endswith(".webp") else {}))
    (inputs / ".cache").mkdir()
    image.save(inputs / ".cache" / "hidden.png")
    before = _digests(inputs)
    out = tmp_path / "masks"
    assert main(["predict", str(inputs), str(inputs / "a.png"), "--out", str(out), "-r"]) == 0
    assert _digests(inputs) == before
    masks = sorted(str(p.relative_to(out)) for p in out.rglob("*.mask.png"))
    overlays = list(out.rglob("*.overlay.png"))
    assert len(masks) == len(overlays) == len(names)            # one of each per input
    assert "left/x.png.mask.png" in masks and "right/deeper/x.png.mask.png" in masks
    assert "xray.tiff.mask.png" in masks and "a_overlay.png.mask.png" in masks
    assert ("A-2.PNG.mask.png" in masks) != ("a-2.png.mask.png" in masks)   # case-insensitive twins
    rows = _manifest(out)
    assert len(rows) == len(names) and {r["status"] for r in rows} == {"ok"}
    assert {r["mask"] for r in rows} == set(masks)
    assert f"{len(names)} of {len(names)} input(s) segmented; wrote {len(names)} mask(s)" in capsys.readouterr().out


def test_out_folder_that_is_an_input_folder_is_refused(tmp_path, capsys):
    Image.fromarray(_xray()).save(tmp_path / "x.png")
    before = _digests(tmp_path)
    assert main(["predict", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "masks"), "-r"]) == 2
    assert "input folder" in capsys.readouterr().err
    assert _digests(tmp_path) == before and not (tmp_path / "masks").exists()


def test_folders_are_searched_recursively_only_on_request(tmp_path, capsys):
    (tmp_path / "study" / "images").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    Image.fromarray(_xray()).save(tmp_path / "study" / "images" / "x.png")
    (tmp_path / "study" / "notes.txt").write_text("not an image, and not searched for")
    assert main(["predict", str(tmp_path / "study"), "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "study: no images found" in err and "1 in its sub-folders: add --recursive" in err
    assert main(["predict", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 1
    assert "empty: no images found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "study"), "--out", str(tmp_path / "o3"), "--recursive"]) == 0
    assert (tmp_path / "o3" / "images" / "x.png.mask.png").is_file()


def test_existing_outputs_need_a_flag_and_reruns_resume(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for k in range(3):
        Image.fromarray(_xray(size=(280 + k, 256))).save(inputs / f"x{k}.png")
    assert main(["predict", str(inputs), "--out", str(out)]) == 0
    first = _digests(out)
    capsys.readouterr()
    assert main(["predict", str(inputs), "--out", str(out)]) == 2          # nothing replaced
    assert "already exist" in capsys.readouterr().err and _digests(out) == first
    (out / "x1.png.mask.png").unlink()                                      # as if interrupted
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("x[02]*")}
    assert main(["predict", str(inputs), "--out", str(out), "--skip-existing"]) == 0
    assert "1 of 3 input(s) segmented, 2 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("x[02]*")} == stamps
    assert _digests(out).keys() == first.keys()
    rows = _manifest(out)
    assert [r["status"] for r in rows] == ["skipped", "ok", "skipped"]
    assert all(r["width"] == "256" for r in rows)                            # figures kept on resume
    assert main(["predict", str(inputs), "--out", str(out), "--overwrite"]) == 0
    assert "3 of 3 input(s) segmented" in capsys.readouterr().out


def test_an_interrupted_run_leaves_whole_files_and_a_manifest(tmp_path, segmenter):
    from lungseg.batch import plan, run

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for k in range(3):
        Image.fromarray(_xray()).save(inputs / f"x{k}.png")

    class Interrupted:                     # the real model, stopped (Ctrl-C) on the second X-ray
        calls = 0

        def analyze(self, image, **options):
            Interrupted.calls += 1
            if Interrupted.calls == 2:
                raise KeyboardInterrupt
            return segmenter.analyze(image, **options)

    with pytest.raises(KeyboardInterrupt):
        run(plan([inputs], out), out, Interrupted())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "x0.png.mask.png", "x0.png.overlay.png"]
    assert [r["status"] for r in _manifest(out)] == ["ok"]
    summary = run(plan([inputs], out, existing="skip"), out, segmenter, existing="skip")
    assert [r["status"] for r in summary.rows] == ["skipped", "ok", "ok"]


def test_help_is_quick_and_does_not_import_tensorflow():
    code = ("import sys\nfrom lungseg.cli import main\ntry:\n    main(['predict', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'tensorflow' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--recursive" in result.stdout and "--skip-existing" in result.stdout


def _val_subset(folder, per_group: int = 3):
    """A COVID-QU-Ex style folder with a few real Val X-rays of two classes."""
    for path in val_images(per_group, "Normal") + val_images(per_group, "COVID-19"):
        group = path.parent.parent.name
        for src, sub in ((path, "images"), (mask_of(path), "lung masks")):
            (folder / group / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, folder / group / sub / path.name)
    return folder


@requires_data
def test_evaluate_writes_json_markdown_and_worst_cases(tmp_path):
    data = _val_subset(tmp_path / "Val")
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["overall"]["images"] == 6 and set(report["groups"]) == {"Normal", "COVID-19"}
    assert len(report["images"]) == 6 and 0 <= report["overall"]["dice"] <= 1
    table = (tmp_path / "report" / "metrics.md").read_text()
    assert "| all | 6 |" in table and "hd95" in table
    assert Image.open(tmp_path / "report" / "worst.png").size[0] > 300


@requires_data
def test_evaluate_threshold_overrides_the_cards(tmp_path):
    data = _val_subset(tmp_path / "Val", per_group=1)
    recall = {}
    for threshold in ("0.5", "0.999"):
        out = tmp_path / threshold
        assert main(["evaluate", "--data", str(data), "--out", str(out), "--threshold", threshold]) == 0
        recall[threshold] = json.loads((out / "metrics.json").read_text())["overall"]["recall"]
    assert recall["0.999"] < recall["0.5"]
    with pytest.raises(SystemExit, match="--update-card"):
        main(["evaluate", "--data", str(data), "--threshold", "0.4", "--update-card"])
