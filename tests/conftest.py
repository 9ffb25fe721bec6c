"""Shared test fixtures: paths, the real X-rays in ../shared, and Debian's Chromium for Playwright.

Every test finds ../shared through the constants here. With env LUNGSEG_HIDE_SHARED=1 they point
nowhere, so the suite runs as in a fresh clone without ../shared (tests that need it skip);
.ci/run runs the suite both ways.
"""
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HIDE_SHARED = os.environ.get("LUNGSEG_HIDE_SHARED") == "1"
SHARED = ROOT / "tests" / "hidden-shared" if HIDE_SHARED else ROOT.parent / "shared"
DATA = SHARED / "data" / "covidqu-ex"
WEIGHTS = SHARED / "weights" / "vgg19_imagenet_block1-3.npz"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

requires_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="../shared hidden (LUNGSEG_HIDE_SHARED=1)" if HIDE_SHARED
    else f"real X-rays not found at {DATA}")


def val_images(count: int, group: str = "*") -> list[Path]:
    """The first ``count`` Val X-rays of ``group`` (sorted by name, so every run uses the same)."""
    return sorted(DATA.glob(f"Val/{group}/images/*.png"))[:count]


def mask_of(image: Path) -> Path:
    """The manual lung mask file of a COVID-QU-Ex X-ray."""
    return image.parent.parent / "lung masks" / image.name


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive Debian's chromium (Playwright cannot download its own browser here)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium not installed at {CHROMIUM}")
        pytest.skip("browser tests need Debian's chromium (make browser)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def segmenter():
    """The committed default model, loaded once for the whole test session."""
    from lungseg import Segmenter
    return Segmenter.load()


@pytest.fixture(scope="session")
def dicom_grey():
    """A real X-ray's grey levels stretched to the full 0..255, so 12-bit DICOM copies of it
    (tests/dicoms.py) map back exactly."""
    import numpy as np
    from PIL import Image

    paths = val_images(1, "Normal")
    if not paths:
        pytest.skip("real X-rays not found")
    g = np.asarray(Image.open(paths[0]).convert("L")).astype(np.float64)
    return np.round((g - g.min()) * 255 / (g.max() - g.min())).astype(np.uint8)
