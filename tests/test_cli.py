"""The command line: predict safely (names, collisions, in-place, recursion, manifest, resume),
accounting that cannot lie (a row per input, no output of a failed input, counts equal to the
files on disk, a merged manifest, Ctrl-C), folders searched by content, quiet start-up;
evaluate on real X-rays."""
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import ROOT, SHARED, mask_of, requires_data, val_images
from dicoms import dataset, deidentified, encode, raw
from lungseg import batch, rules
from lungseg.batch import BatchError, Interrupted, Writer, plan, run, write_manifest
from lungseg.cli import main

SUMMARY = re.compile(r"(\d+) of (\d+) input\(s\) segmented(?:, (\d+) with warnings)?(?:, (\d+) kept from an "
                     r"earlier run)?(?:, (\d+) failed[^;]*)?(?:; left out: ([^;]+))?; wrote ([^;]+) into ")


def run_cli(*args, command=()):
    return subprocess.run([*command, sys.executable, "-m", "lungseg", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _xray(rng=None, size=(300, 220)) -> np.ndarray:
    """A real Val X-ray resized to ``size`` where ../shared is here, else a built grey image."""
    paths = val_images(1)
    if paths:
        return np.asarray(Image.open(paths[0]).convert("L").resize(size[::-1]))
    return (rng or np.random.default_rng(0)).integers(0, 255, size, np.uint8)


def _dicom(grey: np.ndarray) -> bytes:
    """A 12-bit DX DICOM of ``grey`` with a full header (tests/dicoms.py)."""
    return encode(dataset(grey.astype(np.uint16) * 16 + 8))


def _digests(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _manifest(out):
    with (out / "manifest.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def _on_disk(out) -> set[str]:
    """Every file in an output folder but the manifest, relative to it (temporaries included)."""
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.csv"}


def _named(rows) -> set[str]:
    return {r[c] for r in rows for c in ("mask", "overlay", "dicom_seg") if r[c]}


def _summary(stdout: str) -> dict:
    """The counts of predict's summary line."""
    found = SUMMARY.search(stdout)
    assert found, stdout
    done, total, warned, kept, failed, left, written = found.groups()
    return {"done": int(done), "total": int(total), "warned": int(warned or 0), "kept": int(kept or 0),
            "failed": int(failed or 0), "left_out": left or "",
            "written": {what: int(n) for n, what in re.findall(r"(\d+) ([A-Za-z ]+)\(s\)", written)}}


def _permissions_hold() -> list[str]:
    """A prefix that runs a command with file permissions enforced: nothing for a user; for root,
    setpriv dropping the capabilities that let root read any file."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: unreadable files cannot be made")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _scans(folder: Path) -> dict[str, str]:
    """The issue's folder: good X-rays (PNG, JPEG, an extensionless PNG, a DICOM named .dat, one a
    level down), bad ones (truncated, text named .png, empty, unreadable file and folder, a link
    loop, a broken link), files that are no images (text, a DICOMDIR as CDs carry), hidden files
    and a link back up. Returns the expected status of each row (input name -> status)."""
    good = _xray()
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(good).save(folder / "x0.png")
    Image.fromarray(_xray(size=(256, 256))).save(folder / "x1.png")
    Image.fromarray(good).convert("RGB").save(folder / "photo.jpg", quality=95)
    shutil.copy(folder / "x0.png", folder / "scan")                         # no extension
    (folder / "scan.dat").write_bytes(_dicom(good))
    shutil.copy(folder / "x1.png", folder / "sub" / "deep.png")
    data = (folder / "x0.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("this is a text file")
    (folder / "empty.png").write_bytes(b"")
    (folder / "README.txt").write_text("scans of 2026")
    shutil.copy(get_testdata_file("DICOMDIR"), folder / "DICOMDIR")
    shutil.copy(folder / "x0.png", folder / ".hidden.png")
    (folder / ".cache").mkdir()
    shutil.copy(folder / "x0.png", folder / ".cache" / "thumb.png")
    shutil.copy(folder / "x0.png", folder / "locked.png")
    (folder / "locked").mkdir()
    shutil.copy(folder / "x0.png", folder / "locked" / "inside.png")
    for path in (folder / "locked.png", folder / "locked"):
        path.chmod(0)
    (folder / "loop").symlink_to("loop")
    (folder / "broken").symlink_to("gone.png")
    (folder / "sub" / "up").symlink_to("..")
    return {"x0.png": "ok", "x1.png": "ok", "photo.jpg": "ok", "scan": "ok", "scan.dat": "ok",
            "sub/deep.png": "ok", "truncated.png": "error", "notes.png": "error", "empty.png": "error",
            "locked.png": "error", "locked": "error", "loop": "error", "broken": "error"}


def test_a_folder_as_archives_hold_it_counts_equal_files_and_a_partial_rerun_keeps_every_row(tmp_path, segmenter):
    """The issue's acceptance scenario, with files left unreadable (file permissions enforced)."""
    inputs, out = tmp_path / "scans", tmp_path / "out"
    expected = _scans(inputs)
    try:
        before = _digests(inputs)
        result = run_cli("predict", str(inputs), "--out", str(out), "-r", command=_permissions_hold())
    finally:
        for path in (inputs / "locked.png", inputs / "locked"):
            path.chmod(stat.S_IRWXU)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr
    rows = _manifest(out)
    assert {str(Path(r["input"]).relative_to(inputs)): r["status"] for r in rows} == expected
    by_name = {str(Path(r["input"]).relative_to(inputs)): r for r in rows}

    # Counts equal the files on disk; no failed input left an output; temporaries are gone.
    assert _on_disk(out) == _named(rows)
    assert not _named(r for r in rows if r["status"] == "error")
    counts = _summary(result.stdout)
    assert (counts["done"], counts["total"], counts["failed"]) == (6, len(expected), 7)
    assert counts["written"] == {"mask": 6, "overlay": 6, "DICOM Segmentation": 1}
    assert counts["left_out"] == "1 link loop, 2 not images"
    assert len(list(out.rglob("*.mask.png"))) == 6 and len(list(out.rglob("*.overlay.png"))) == 6

    # Files are found by content; bad ones get plain messages; what is not an image is noted.
    assert np.array_equal(np.asarray(Image.open(out / "scan.mask.png")), np.asarray(Image.open(out / "x0.png.mask.png")))
    assert np.array_equal(np.asarray(Image.open(out / "x0.png.mask.png")), segmenter.predict(inputs / "x0.png") * 255)
    assert np.asarray(Image.open(out / "x0.png.mask.png")).shape == (300, 220)
    seg = pydicom.dcmread(out / by_name["scan.dat"]["dicom_seg"])
    assert by_name["scan.dat"]["dicom_seg"] == "scan.dat.seg.dcm" and seg.Modality == "SEG"
    assert "sub/deep.png.mask.png" in _on_disk(out)
    for name, words in (("locked.png", "cannot be read (Permission denied)"),
                        ("locked", "cannot be read (Permission denied)"),
                        ("loop", "cannot be read (a symbolic link loop)"),
                        ("broken", "cannot be read (a broken link)"), ("notes.png", "text file"),
                        ("truncated.png", "corrupt or truncated"), ("empty.png", "empty")):
        assert f"error: {inputs / name}: " in result.stderr and words in by_name[name]["message"], name
    for name in ("DICOMDIR", "README.txt"):
        assert f"note: {inputs / name}: not an image LungSeg reads; left out." in result.stderr
    assert f"note: {inputs / 'sub' / 'up'}: a link back" in result.stderr
    assert ".hidden" not in result.stderr + result.stdout and ".cache" not in result.stderr
    assert _digests(inputs) == before
    # TensorFlow's native start-up lines stay out of the terminal unless --verbose.
    assert "cuDNN" not in result.stderr and "E0000" not in result.stderr

    # A later partial run keeps every earlier row, and the kept input's outputs.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "manifest.csv"}
    assert main(["predict", str(inputs / "x1.png"), "--out", str(out), "--skip-existing"]) == 0
    assert _manifest(out) == rows
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


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
    counts = _summary(capsys.readouterr().out)
    assert (counts["done"], counts["total"], counts["failed"], counts["left_out"]) == (len(names), len(names), 0, "")
    assert counts["written"] == {"mask": len(names), "overlay": len(names)}


def test_no_output_goes_into_a_folder_that_holds_an_input(tmp_path, capsys, monkeypatch):
    """Folder inputs, file inputs (a.tif b.bmp --out their folder) and the sub-folders mirrored
    under --out alike; refused before anything is written."""
    Image.fromarray(_xray()).save(tmp_path / "x.png")
    Image.fromarray(_xray()).save(tmp_path / "a.tif")
    Image.fromarray(_xray()).save(tmp_path / "b.bmp")
    (tmp_path / "scans" / "sub").mkdir(parents=True)
    Image.fromarray(_xray()).save(tmp_path / "scans" / "sub" / "y.png")
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    Image.fromarray(_xray()).save(tmp_path / "masks" / "sub" / "z.png")
    before = _digests(tmp_path)
    assert main(["predict", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "masks"), "-r"]) == 2
    assert main(["predict", str(tmp_path / "a.tif"), str(tmp_path / "b.bmp"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("input folder") == 3 and "a.tif" in err and "Choose another folder" in err
    with pytest.raises(BatchError, match=r"output sub-folder .*sub is the input folder of .*z\.png"):
        plan([tmp_path / "scans", tmp_path / "masks" / "sub" / "z.png"], tmp_path / "masks", recursive=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BatchError, match=r"--out \. is the input folder of x\.png"):
        plan(["x.png"], ".")
    assert _digests(tmp_path) == before and not list(tmp_path.rglob("manifest.csv"))


def test_folders_are_searched_recursively_only_on_request(tmp_path, capsys):
    (tmp_path / "study" / "images").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    Image.fromarray(_xray()).save(tmp_path / "study" / "images" / "x", format="PNG")  # no extension
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    assert main(["predict", str(tmp_path / "study"), "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "study: no images found" in err and "1 in its sub-folders: add --recursive" in err
    assert f"note: {tmp_path / 'study' / 'notes.txt'}: not an image" in err
    assert main(["predict", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 1
    assert "empty: no images found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "study"), "--out", str(tmp_path / "o3"), "--recursive"]) == 0
    assert (tmp_path / "o3" / "images" / "x.mask.png").is_file()


def test_existing_outputs_need_a_flag_and_reruns_resume(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for k in range(3):
        Image.fromarray(_xray(size=(280 + k, 256))).save(inputs / f"x{k}.png")
    assert main(["predict", str(inputs), "--out", str(out)]) == 0
    first, rows = _digests(out), _manifest(out)
    capsys.readouterr()
    assert main(["predict", str(inputs), "--out", str(out)]) == 2          # nothing replaced
    assert "already exist" in capsys.readouterr().err and _digests(out) == first
    (out / "x1.png.overlay.png").unlink()                                   # as if interrupted
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("x[02]*")}
    assert main(["predict", str(inputs), "--out", str(out), "--skip-existing"]) == 0
    counts = _summary(capsys.readouterr().out)
    assert (counts["done"], counts["total"], counts["kept"]) == (1, 3, 2)
    assert counts["written"] == {"mask": 1, "overlay": 1}
    assert {p: p.stat().st_mtime_ns for p in out.glob("x[02]*")} == stamps
    assert _digests(out).keys() == first.keys()
    assert _manifest(out) == rows                                            # same rows, figures kept
    assert main(["predict", str(inputs), "--out", str(out), "--overwrite"]) == 0
    assert _summary(capsys.readouterr().out)["done"] == 3


def test_an_input_whose_outputs_cannot_all_be_written_leaves_none(tmp_path, segmenter):
    """A failed input leaves no output behind: its DICOM Segmentation or its overlay cannot be
    written (a folder in the way), or it cannot be read; outputs of an earlier run that this run
    did not replace are left and named in its row; the others are still segmented."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    grey = _xray()
    (inputs / "b.dcm").write_bytes(_dicom(grey))
    Image.fromarray(grey).save(inputs / "a.png")
    Image.fromarray(grey).save(inputs / "c.png")
    data = (inputs / "c.png").read_bytes()
    (inputs / "bad.png").write_bytes(data[: len(data) // 3])
    for blocked in ("b.dcm.seg.dcm", "a.png.overlay.png"):
        (out / blocked).mkdir(parents=True)
    (out / "bad.png.mask.png").write_bytes(b"an earlier run's mask")
    summary = run(plan([inputs], out, existing="overwrite"), out, segmenter, existing="overwrite")
    rows = {Path(r["input"]).name: r for r in summary.rows}
    assert [rows[n]["status"] for n in ("a.png", "b.dcm", "bad.png", "c.png")] == ["error", "error", "error", "ok"]
    for name in ("a.png", "b.dcm"):
        assert "its outputs could not be written (Is a directory" in rows[name]["message"]
        assert not _named([rows[name]])
    assert rows["bad.png"]["mask"] == "bad.png.mask.png" and "left as they were: bad.png.mask.png" in rows["bad.png"]["message"]
    assert (out / "bad.png.mask.png").read_bytes() == b"an earlier run's mask"
    assert _on_disk(out) == {"bad.png.mask.png", "c.png.mask.png", "c.png.overlay.png"}
    assert summary.written("mask") == summary.written("overlay") == 1 and summary.failed == 3
    assert [(r["status"], r["mask"]) for r in _manifest(out)] == [(rows[n]["status"], rows[n]["mask"])
                                                                  for n in ("a.png", "b.dcm", "bad.png", "c.png")]


def test_skip_existing_keeps_only_complete_inputs_that_were_segmented_and_merges_the_manifest(tmp_path, segmenter):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for name in ("x0.png", "x1.png", "A.PNG", "a.png"):
        Image.fromarray(_xray(rng, size=(256, 256))).save(inputs / name)
    (inputs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")                   # a PNG signature only
    first = run(plan([inputs], out), out, segmenter)
    assert [r["status"] for r in first.rows] == ["ok", "ok", "error", "ok", "ok"]   # sorted: A.PNG a.png bad ...
    twin = {r["input"]: r["mask"] for r in first.rows}[str(inputs / "a.png")]
    assert twin == "a-2.png.mask.png"
    (out / "x1.png.overlay.png").unlink()                                    # incomplete
    Image.fromarray(_xray(rng, size=(256, 256))).save(inputs / "bad.png")     # fixed
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.png") if not p.name.startswith(("x1", "bad"))}

    again = run(plan([inputs], out, existing="skip"), out, segmenter, existing="skip")
    assert again.kept == {str(inputs / n) for n in ("A.PNG", "a.png", "x0.png")}
    assert [r["status"] for r in again.rows] == ["ok"] * 5 and again.written("mask") == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "x1.png.overlay.png").is_file() and (out / "bad.png.mask.png").is_file()
    rows = _manifest(out)
    assert len(rows) == 5 and _on_disk(out) == _named(rows)

    # A partial run keeps every other row, and a twin keeps the name the first run gave it.
    for existing in ("skip", "overwrite"):
        jobs = plan([inputs / "a.png"], out, existing=existing)
        assert str(jobs[0].output("mask")) == twin
        run(jobs, out, segmenter, existing=existing)
        assert [r["input"] for r in _manifest(out)] == [r["input"] for r in rows]
    assert _on_disk(out) == _named(rows)

    # Outputs asked for now (labels) are missing: redone; a low estimate is judged by this run.
    x0 = [inputs / "x0.png"]
    labelled = run(plan(x0, out, existing="skip", labels=True), out, segmenter, existing="skip",
                   labels=True, min_quality=1.01)
    assert not labelled.kept and labelled.rows[0]["status"] == "low_quality" and labelled.failed == 1
    assert (out / "x0.png.labels.png").is_file() and labelled.written("labels") == 1
    kept = run(plan(x0, out, existing="skip", labels=True), out, segmenter, existing="skip", labels=True)
    assert kept.kept == {str(x0[0])} and kept.rows[0]["status"] == "ok" and kept.failed == 0
    low = run(plan(x0, out, existing="skip"), out, segmenter, existing="skip", min_quality=1.01)
    assert low.kept == {str(x0[0])} and low.failed == 1                       # the failure stays
    assert len(_manifest(out)) == 5

    # A manifest.csv that is not LungSeg's is never replaced.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.csv").write_text("patient,notes\n1,keep me\n")
    with pytest.raises(BatchError, match="not a LungSeg manifest"):
        plan([inputs], other, existing="skip")
    assert (other / "manifest.csv").read_text() == "patient,notes\n1,keep me\n"


def _one_after_the_other(jobs, out, segmenter, **options) -> None:
    """The plainest run: each input read, segmented and written before the next is read."""
    writer = Writer(out, **options)
    rows = [writer.settled(job, "error", {}) or writer.segmented(
        job, segmenter, lambda job=job: segmenter.analyze(job.source, name=str(job.source))) for job in jobs]
    write_manifest(out, rows)


def _rows_anywhere(out) -> list[dict]:
    """The manifest's rows with the output folder called OUT in messages, to compare two folders."""
    return [{**row, "message": row["message"].replace(str(out), "OUT")} for row in _manifest(out)]


def test_overlapped_engine_writes_what_one_input_after_the_other_writes(tmp_path, segmenter, monkeypatch):
    """Reading, the model and writing overlap in `run`; its files (byte for byte) and manifest
    equal those of a run doing one input after the other, on real X-rays of several sizes with
    inputs that fail (truncated, text, outputs that cannot be written) between them; no more than
    READ_AHEAD + 1 + WRITERS inputs are between being read and written at once; overlays are the
    X-ray tinted as rules.json says, pixel for pixel."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    real = val_images(6)
    rng = np.random.default_rng(3)
    for k in range(6):
        size = (300 + 40 * k, 256 + 30 * k)
        grey = np.asarray(Image.open(real[k]).convert("L").resize(size[::-1])) if real else _xray(rng, size)
        Image.fromarray(grey).save(inputs / f"x{k}.png")
    data = (inputs / "x1.png").read_bytes()
    (inputs / "x2b-truncated.png").write_bytes(data[: len(data) // 2])
    (inputs / "x4b-notes.png").write_text("not an X-ray")
    jobs = plan([inputs], tmp_path / "unused")
    outs = {way: tmp_path / way for way in ("overlapped", "sequential")}
    for out in outs.values():
        (out / "x3.png.labels.png").mkdir(parents=True)          # x3's outputs cannot all be written

    held, most = [], []
    read, segmented = batch._read, Writer.segmented

    def counted_read(job):
        held.append(job)
        most.append(len(held))
        return read(job)

    def counted_segmented(self, job, *args):
        try:
            return segmented(self, job, *args)
        finally:
            held.remove(job)
    monkeypatch.setattr(batch, "_read", counted_read)
    monkeypatch.setattr(Writer, "segmented", counted_segmented)
    summary = run(jobs, outs["overlapped"], segmenter, labels=True)
    monkeypatch.undo()
    assert not held and 0 < max(most) <= batch.READ_AHEAD + 1 + batch.WRITERS
    _one_after_the_other(jobs, outs["sequential"], segmenter, labels=True)

    rows = _manifest(outs["overlapped"])
    assert _rows_anywhere(outs["overlapped"]) == _rows_anywhere(outs["sequential"])
    assert "x3.png: its outputs could not be written (Is a directory" in rows[4]["message"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error", "error", "ok", "error", "ok"]
    assert [r["input"] for r in rows] == [str(job.source) for job in jobs] == [r["input"] for r in summary.rows]
    digests = {way: {str(p.relative_to(out)): d for p, d in _digests(out).items() if p.name != "manifest.csv"}
               for way, out in outs.items()}
    assert digests["overlapped"] == digests["sequential"]
    assert _on_disk(outs["overlapped"]) == _named(rows) | {r["labels"] for r in rows if r["labels"]}
    for k in (0, 5):
        image = np.asarray(Image.open(inputs / f"x{k}.png").convert("RGB")).astype(np.float32)
        mask = np.asarray(Image.open(outs["overlapped"] / f"x{k}.png.mask.png")) > 0
        opacity, color = rules.OVERLAY_OPACITY, np.array(rules.OVERLAY_RGB, np.float32)
        expected = image.copy()
        expected[mask] = (1 - opacity) * image[mask] + opacity * color
        tinted = np.asarray(Image.open(outs["overlapped"] / f"x{k}.png.overlay.png"))
        assert np.array_equal(tinted, expected.round().astype(np.uint8)) and 0 < mask.mean() < 1


def test_ctrl_c_stops_with_one_line_a_manifest_and_whole_files(tmp_path):
    """A real SIGINT to `lungseg predict`: exit 130, one line, no traceback; the manifest lists
    exactly the inputs whose outputs are on disk; --skip-existing finishes the rest."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(2)
    for k in range(30):
        Image.fromarray(_xray(rng, size=(256, 256))).save(inputs / f"x{k:02d}.png")
    job = subprocess.Popen([sys.executable, "-m", "lungseg", "predict", str(inputs), "--out", str(out)],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("*.mask.png")) and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == 130, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line and not line.startswith("segmenting")]
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and stdout == "", stderr
    rows = _manifest(out)
    assert 0 < len(rows) < 30, "the run was not interrupted half-way"
    assert f"interrupted: {len(rows)} of 30 input(s) done" in lines[0] and "--skip-existing" in lines[0]
    assert {r["status"] for r in rows} == {"ok"} and _on_disk(out) == _named(rows)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert main(["predict", str(inputs), "--out", str(out), "--skip-existing"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(_manifest(out)) == 30 and _on_disk(out) == _named(_manifest(out))


def test_a_second_ctrl_c_while_the_last_writes_finish_is_ignored(tmp_path, segmenter, monkeypatch):
    """Ctrl-C during the model's call on the 4th input, and again while the 3rd input's files are
    being written: the run still waits for that write, and raises Interrupted once, with a row for
    every input whose files are on disk, and the manifest naming exactly those files."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(4)
    for k in range(6):
        Image.fromarray(_xray(rng, size=(256, 256))).save(inputs / f"x{k}.png")
    calls, analyze_read, write_together = [], segmenter.analyze_read, batch.write_together

    def stopped_on_the_fourth(*args, **kwargs):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return analyze_read(*args, **kwargs)

    def pressed_again(folder, files):
        if "x2.png" in str(next(iter(files))):        # once the run is stopping, Ctrl-C again
            deadline = time.monotonic() + 60
            while signal.getsignal(signal.SIGINT) is not signal.SIG_IGN and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
        write_together(folder, files)
    monkeypatch.setattr(segmenter, "analyze_read", stopped_on_the_fourth)
    monkeypatch.setattr(batch, "write_together", pressed_again)
    with pytest.raises(Interrupted) as stop:
        run(plan([inputs], out), out, segmenter)
    rows = _manifest(out)
    assert [Path(r["input"]).name for r in rows] == ["x0.png", "x1.png", "x2.png"]
    assert len(stop.value.summary.rows) == 3 and _on_disk(out) == _named(rows)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


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


# --- two definitions of the lung (issue 22) -----------------------------------------------------

V7 = SHARED / "data" / "v7-whole-lung"
DEFINED = [column for column in batch.COLUMNS if column != "dicom_seg"]   # mask, ..., whole_labels


def _files_named(rows) -> set[str]:
    """Every output a manifest names, of every definition."""
    return {r[c] for r in rows for c in batch.COLUMNS if r[c]}


def _world_dicom(grey: np.ndarray) -> bytes:
    """A de-identified X-ray as older archives store it: no preamble, no file meta, implicit VR
    (tests/dicoms.py), with a Pixel Spacing of 0.6 mm."""
    return raw(deidentified(dataset(grey.astype(np.uint16) * 16 + 8, PixelSpacing=[0.6, 0.6])), implicit=True)


@requires_data
def test_predict_both_definitions_writes_each_outputs_and_columns_and_one_segmentation(tmp_path, segmenter):
    import highdicom as hd

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    paths = val_images(1, "Normal") + val_images(1, "COVID-19")
    for path in paths:
        shutil.copy(path, inputs / path.name)
    grey = np.asarray(Image.open(val_images(2, "Non-COVID")[1]).convert("L"))
    (inputs / "IM0001").write_bytes(_world_dicom(grey))                       # no extension
    assert main(["predict", str(inputs), "--out", str(out), "--definition", "both", "--labels"]) == 0
    rows = {Path(r["input"]).name: r for r in _manifest(out)}
    assert set(rows) == {p.name for p in paths} | {"IM0001"} and _on_disk(out) == _files_named(rows.values())
    for name, row in rows.items():
        assert [row[c] for c in DEFINED] == [name + rules.output_name(*batch.COLUMNS[c]) for c in DEFINED]
        assert row["whole_mask"] == name + ".whole.mask.png"
        for d in segmenter.definitions:
            written = np.asarray(Image.open(out / row[rules.column("mask", d)])) > 0
            assert float(row[rules.column("lung_fraction", d)]) == pytest.approx(written.mean(), abs=1e-6)
            assert set(np.unique(np.asarray(Image.open(out / row[rules.column("labels", d)])))) == {0, 1, 2}
            if name != "IM0001":
                assert np.array_equal(written, segmenter.predict(inputs / name, definition=d) > 0), (name, d)
        assert float(row["whole_lung_fraction"]) > float(row["lung_fraction"]), name   # behind the heart too
        assert row["quality"] and bool(row["whole_quality"]) == bool(segmenter.output("whole").quality)

    dicom = rows["IM0001"]
    assert dicom["dicom_seg"] == "IM0001.seg.dcm" and dicom["spacing_source"] == "Pixel Spacing"
    masks = {d: np.asarray(Image.open(out / dicom[rules.column("mask", d)])) > 0 for d in segmenter.definitions}
    for d, mask in masks.items():
        assert float(dicom[rules.column("lung_cm2", d)]) == pytest.approx(mask.sum() * 0.36 / 100, rel=1e-5)
    seg = hd.seg.segread(out / "IM0001.seg.dcm")
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == [f"{rules.DEFINITIONS[d]['segment']}, {side}" for d in masks for side in ("right", "left")]
    uid = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    planes = seg.get_pixels_by_source_instance([uid])[0]
    assert seg.SegmentsOverlap == "YES" and planes.shape == (*grey.shape, 4)
    for k, mask in enumerate(masks.values()):
        assert np.array_equal(planes[..., 2 * k] | planes[..., 2 * k + 1], mask)


def test_skip_existing_redoes_inputs_lacking_the_outputs_of_a_definition_asked_now(tmp_path, segmenter, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(2)
    for k in range(2):
        Image.fromarray(_xray(rng, size=(256, 240 + k))).save(inputs / f"x{k}.png")
    assert main(["predict", str(inputs), "--out", str(out)]) == 0                       # visible only
    visible = _manifest(out)
    assert all(r["whole_mask"] == r["whole_lung_fraction"] == r["whole_warnings"] == "" for r in visible)
    capsys.readouterr()

    assert main(["predict", str(inputs), "--out", str(out), "--definition", "both", "--skip-existing"]) == 0
    counts = _summary(capsys.readouterr().out)
    assert (counts["done"], counts["kept"]) == (2, 0)
    assert counts["written"] == {"mask": 2, "overlay": 2, "whole lung mask": 2, "whole lung overlay": 2}
    both = _manifest(out)
    assert [r["input"] for r in both] == [r["input"] for r in visible]
    assert all(r["whole_mask"] and r["whole_lung_fraction"] for r in both) and _on_disk(out) == _files_named(both)
    assert {r["input"]: r["lung_fraction"] for r in both} == {r["input"]: r["lung_fraction"] for r in visible}

    for definition in ("visible", "whole", "both"):                                    # all there now: kept
        before = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
        assert main(["predict", str(inputs), "--out", str(out), "--definition", definition, "--skip-existing"]) == 0
        assert _summary(capsys.readouterr().out)["kept"] == 2, definition
        assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == before and _manifest(out) == both

    # A whole-only run into a fresh folder, then a visible one: each fills its own columns, and the
    # visible run keeps the whole lung's row and outputs it did not touch named.
    fresh = tmp_path / "fresh"
    assert main(["predict", str(inputs), "--out", str(fresh), "--definition", "whole"]) == 0
    whole = _manifest(fresh)
    assert all(r["mask"] == r["lung_fraction"] == r["quality"] == "" and r["whole_mask"] for r in whole)
    assert _on_disk(fresh) == _files_named(whole) and not list(fresh.glob("*[0-9].png.mask.png"))
    assert main(["predict", str(inputs), "--out", str(fresh), "--skip-existing"]) == 0
    merged = _manifest(fresh)
    assert [r["whole_lung_fraction"] for r in merged] == [r["whole_lung_fraction"] for r in whole]
    assert all(r["mask"] for r in merged) and _on_disk(fresh) == _files_named(merged)
    assert main(["predict", str(inputs / "x0.png"), "--out", str(fresh), "--overwrite"]) == 0
    assert _manifest(fresh)[0]["whole_mask"] == "x0.png.whole.mask.png" and _manifest(fresh)[1:] == merged[1:]


def _without_whole_output(folder: Path) -> Path:
    """A copy of the default model whose card describes only its visible lung field output."""
    from lungseg import bundle

    shutil.copytree(bundle.DEFAULT_MODEL, folder)
    card = json.loads((folder / "card.json").read_text())
    del card["outputs"]
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_a_definition_the_model_does_not_give_is_refused_before_any_work(tmp_path, capsys):
    from lungseg import Segmenter

    model = _without_whole_output(tmp_path / "visible-only")
    with pytest.raises(ValueError) as refusal:
        Segmenter.load(model).output("whole")
    Image.fromarray(_xray()).save(tmp_path / "a.png")
    for command in (["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--definition", "whole"],
                    ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--definition", "whole"]):
        assert main([*command, "--model", str(model)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {refusal.value}"
        assert not (tmp_path / "o").exists()
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--model", str(model),
                 "--definition", "both"]) == 0                                        # both: what it gives
    assert _on_disk(tmp_path / "o") == {"a.png.mask.png", "a.png.overlay.png"}


@pytest.mark.skipif(not V7.is_dir(), reason=f"v7-whole-lung not found at {V7}")
def test_evaluate_whole_scores_the_whole_lung_output_and_updates_its_card(tmp_path, segmenter):
    from lungseg import bundle
    from lungseg.datasets import find_samples
    from lungseg.evaluation import at_truth_size
    from lungseg.metrics import score

    data = tmp_path / "v7"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    with (V7 / "pairs.csv").open(newline="") as table:
        for pair in list(csv.DictReader(table))[:3]:
            shutil.copy(V7 / "images" / pair["image"], data / "images")
            shutil.copy(V7 / "masks" / pair["mask"], data / "masks")
    model = tmp_path / "model"
    shutil.copytree(bundle.DEFAULT_MODEL, model)
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "r"), "--definition", "whole",
                 "--model", str(model), "--update-card"]) == 0
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["definition"] == "whole" and report["overall"]["images"] == 3
    rows = {row["image"]: row for row in report["images"]}
    for sample in find_samples(data):
        truth = sample.read_mask()
        expected = score(truth, at_truth_size(segmenter.predict(sample.image, definition="whole"), truth))
        assert {k: rows[sample.name][k] for k in expected} == pytest.approx(expected, abs=1e-9), sample.name
        visible = score(truth, at_truth_size(segmenter.predict(sample.image), truth))
        assert expected["recall"] > visible["recall"], sample.name            # the whole lung holds more
    card = json.loads((model / "card.json").read_text())
    assert card["outputs"]["whole"]["metrics"]["v7"] == {"data": data.as_posix(), **report["overall"]}
    assert card["metrics"] == segmenter.card["metrics"]
    assert card["outputs"]["visible"] == segmenter.card["outputs"]["visible"]
