"""``lungseg predict --engine ray``: the plain engine's files and manifest on a local 2-CPU Ray, from
paths and file:// URIs; Ctrl-C (one line, exit 130, files matching the manifest) and a resume with
--skip-existing; a clear error without Ray."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, ROOT, requires_data, val_images
from lungseg.cli import main
from lungseg.ray_engine import BATCH

SHENZHEN = DATA.parent / "shenzhen" / "images"


@pytest.fixture(scope="module")
def local_ray():
    """One embedded 2-CPU Ray for the module (the engine uses a running Ray as it finds it)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _archive(folder):
    """Real X-rays of mixed sizes (256 px, 512 px, an upscaled 1400 x 1100 JPEG), names with dots,
    one name in two sub-folders, case twins, one without an extension, a hidden file, a text file
    and two bad files."""
    val = val_images(4)
    shenzhen = sorted(SHENZHEN.glob("*.png"))[:2]
    if len(val) < 4 or len(shenzhen) < 2:
        pytest.skip("real X-rays not found")
    files = {"10.1016.j.crad.2020.04.002-a.png": val[0], "a/x.png": val[1], "b/deep/x.png": val[2],
             "b/X.PNG": val[3], "b/x.png": val[0], "sz/1-s2.0-S0085.png": shenzhen[0],
             "sz/CHNCXR.0008.png": shenzhen[1]}
    for name, source in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(source.read_bytes())
    Image.open(shenzhen[0]).convert("L").resize((1100, 1400)).save(folder / "sz" / "big.v2.jpg", quality=95)
    (folder / ".hidden.png").write_bytes(val[0].read_bytes())
    (folder / "b" / "scan").write_bytes(val[3].read_bytes())
    (folder / "README").write_text("an archive of 2026")
    (folder / "notes.png").write_text("not an image")
    (folder / "a" / "truncated.png").write_bytes(val[1].read_bytes()[:2000])
    return folder


def _rows(out):
    with (out / "manifest.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def _masks(out):
    return {p.relative_to(out): np.asarray(Image.open(p)) > 0 for p in out.rglob("*.mask.png")}


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@requires_data
def test_ray_writes_what_the_plain_engine_writes(tmp_path, local_ray):
    inputs = _archive(tmp_path / "scans")
    plain, ray_out, uri_out = tmp_path / "plain", tmp_path / "ray", tmp_path / "uri"
    assert main(["predict", str(inputs), "--out", str(plain), "-r"]) == 1       # two bad files
    assert main(["predict", str(inputs), "--out", str(ray_out), "-r", "--engine", "ray"]) == 1
    assert main(["predict", inputs.as_uri(), "--out", str(uri_out), "-r", "--engine", "ray"]) == 1

    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert len(files) == 2 * 9 + 1                                    # 9 X-rays, mask + overlay each
    for out in (ray_out, uri_out):
        assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    expected, got = _masks(plain), _masks(ray_out)
    assert {m.shape for m in expected.values()} == {(256, 256), (512, 512), (1400, 1100)}
    assert all(_iou(expected[name], got[name]) >= 0.999 for name in expected)
    assert all(np.array_equal(got[name], mask) for name, mask in _masks(uri_out).items())

    rows = {name: _rows(out) for name, out in (("plain", plain), ("ray", ray_out), ("uri", uri_out))}
    columns = ("input", "status", "mask", "overlay", "width", "height", "warnings", "message")
    assert [[r[c] for c in columns] for r in rows["ray"]] == [[r[c] for c in columns] for r in rows["plain"]]
    for mine, theirs in zip(rows["ray"], rows["plain"]):
        for column in ("lung_fraction", "quality"):
            assert float(mine[column] or 0) == pytest.approx(float(theirs[column] or 0), abs=1e-3)
    assert [r["input"] for r in rows["uri"]] == [inputs.as_uri() + r["input"][len(str(inputs)):]
                                                 for r in rows["plain"]]
    assert [r["mask"] for r in rows["uri"]] == [r["mask"] for r in rows["plain"]]
    assert sum(r["status"] == "error" for r in rows["ray"]) == 2
    assert {r["mask"] for r in rows["ray"]} >= {"b/scan.mask.png"}


@requires_data
def test_an_interrupted_ray_run_resumes_with_only_what_was_missing(tmp_path):
    pytest.importorskip("ray")
    inputs, out = tmp_path / "scans", tmp_path / "masks"
    inputs.mkdir()
    for k, path in enumerate(val_images(40)):
        (inputs / f"x{k:02d}.png").write_bytes(path.read_bytes())
    command = [sys.executable, "-m", "lungseg", "predict", str(inputs), "--out", str(out), "--engine", "ray"]
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(list(out.glob("*.mask.png"))) <= 2 * BATCH and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)                                                 # some batches are done
    job.send_signal(signal.SIGINT)                                      # Ctrl-C
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: ") and stdout == ""
    rows = _rows(out) if (out / "manifest.csv").exists() else []   # none if no batch came back yet
    assert len(rows) < 40, "the run was not interrupted half-way"
    named = {r[c] for r in rows for c in ("mask", "overlay") if r[c]}
    assert {str(p.relative_to(out)) for p in out.iterdir() if p.name != "manifest.csv"} == named
    done = {out / name: (out / name).stat().st_mtime_ns for name in named}

    if rows:
        assert main(["predict", str(inputs), "--out", str(out), "--engine", "ray"]) == 2   # nothing replaced
    assert main(["predict", str(inputs), "--out", str(out), "--engine", "ray", "--skip-existing"]) == 0
    assert {p: p.stat().st_mtime_ns for p in done} == done                  # kept as they were
    assert len(list(out.glob("*.mask.png"))) == len(list(out.glob("*.overlay.png"))) == 40
    rows = _rows(out)
    assert len(rows) == 40 and {r["status"] for r in rows} == {"ok"}


def test_engine_ray_without_ray_says_how_to_install(tmp_path):
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "a.png")
    code = ("import sys\nsys.modules['ray'] = None\nfrom lungseg.cli import main\n"
            f"sys.exit(main(['predict', {str(tmp_path / 'a.png')!r}, '--out', {str(tmp_path / 'o')!r}, "
            "'--engine', 'ray']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert 'pip install "lungseg[ray]"' in result.stderr and not (tmp_path / "o").exists()


def test_outputs_go_to_a_local_folder(tmp_path, capsys):
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", (tmp_path / "a.png").as_uri(), "--out", "s3://bucket/masks"]) == 2
    assert "outputs go to a local folder" in capsys.readouterr().err


@requires_data
def test_ray_writes_both_definitions_as_the_plain_engine_does(tmp_path, local_ray):
    from dicoms import dataset, encode
    from lungseg import rules
    from lungseg.batch import COLUMNS

    inputs = tmp_path / "scans"
    inputs.mkdir()
    for path in val_images(2):
        (inputs / path.name).write_bytes(path.read_bytes())
    grey = np.asarray(Image.open(val_images(3)[2]).convert("L"))
    (inputs / "chest.dcm").write_bytes(encode(dataset(grey.astype(np.uint16) * 16 + 8, PixelSpacing=[0.5, 0.5])))
    plain, ray_out = tmp_path / "plain", tmp_path / "ray"
    for out, engine in ((plain, "plain"), (ray_out, "ray")):
        assert main(["predict", str(inputs), "--out", str(out), "--definition", "both", "--engine", engine]) == 0
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert len(files) == 3 * 4 + 1 + 1                        # mask + overlay per definition, a SEG, the manifest
    assert sorted(p.relative_to(ray_out) for p in ray_out.rglob("*") if p.is_file()) == files
    expected, got = _masks(plain), _masks(ray_out)
    assert len(expected) == 6 and all(_iou(expected[name], got[name]) >= 0.999 for name in expected)
    mine, theirs = _rows(ray_out), _rows(plain)
    assert [[r[c] for c in ("input", "status", *COLUMNS)] for r in mine] == \
        [[r[c] for c in ("input", "status", *COLUMNS)] for r in theirs]
    for column in [rules.column(name, d) for d in rules.DEFINITIONS for name in ("lung_fraction", "lung_cm2")]:
        assert [float(r[column] or 0) for r in mine] == pytest.approx([float(r[column] or 0) for r in theirs], abs=1e-3)
