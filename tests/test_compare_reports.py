"""scripts/compare_reports.py on hand-built reports with known paired differences."""
import json
import subprocess
import sys

from conftest import ROOT


def _report(folder, dice):
    folder.mkdir()
    rows = [{"image": f"x{i}", "group": "g", "dice": d} for i, d in enumerate(dice)]
    (folder / "metrics.json").write_text(json.dumps({"images": rows}))
    return folder


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_reports.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_paired_difference_counts_and_worst_share(tmp_path):
    a = _report(tmp_path / "a", [0.5, 0.6, 0.7, 0.8])
    b = _report(tmp_path / "b", [0.7, 0.8, 0.6, 0.8])   # +0.2, +0.2, -0.1, 0: mean +0.075
    out = _run(a, b)
    assert out.returncode == 0, out.stderr
    assert "A 0.6500, B 0.7250" in out.stdout and "B - A: +0.0750" in out.stdout
    assert "B better on 2, worse on 1" in out.stdout
    assert "worst 1 images average 0.6000, the other 3 0.7667" in out.stdout


def test_reports_of_different_images_are_refused(tmp_path):
    out = _run(_report(tmp_path / "a", [0.5, 0.6]), _report(tmp_path / "b", [0.5]))
    assert out.returncode != 0 and "different images" in out.stderr
