"""Finding X-ray / lung-mask pairs in the dataset layouts people download.

Supported layouts (detected automatically; pairs are matched by file name, never by list
position, and unmatched files are reported):

- COVID-QU-Ex: ``{Train,Val,Test}/<class>/images`` + ``<class>/lung masks``
- COVID-19 Radiography Database: ``<class>/images`` + ``<class>/masks``
- Montgomery County: ``CXR_png/`` + ``ManualMask/leftMask`` + ``ManualMask/rightMask``
- any folder with ``images/`` + ``masks/`` matched by file stem
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from . import rules
from .imageio import read_mask

log = logging.getLogger(__name__)

MASK_FOLDERS = ("lung masks", "masks", "lung_masks", "mask")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One X-ray and its lung mask file(s); ``group`` is its class or subfolder."""
    image: Path
    masks: tuple[Path, ...]
    group: str

    @property
    def name(self) -> str:
        return self.image.stem

    def read_mask(self) -> np.ndarray:
        """The lung mask (union of the mask files) as a (H, W) 0/1 uint8 array."""
        return np.maximum.reduce([read_mask(m) for m in self.masks])


def _images_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in rules.EXTENSIONS and not p.name.startswith(".")}


def _pair(images: Path, mask_folders: list[Path], group: str,
          unmatched: list[str]) -> list[Sample]:
    """Pair every image in ``images`` with the same-stem file in each of ``mask_folders``."""
    found = _images_by_stem(images)
    masks = [_images_by_stem(f) for f in mask_folders]
    samples = []
    for stem, path in found.items():
        # Montgomery and some exports suffix masks ("_mask"); accept either spelling.
        files = [m.get(stem) or m.get(stem + "_mask") for m in masks]
        if all(files):
            samples.append(Sample(path, tuple(files), group))
        else:
            unmatched.append(f"{path}: no mask")
    known = set(found) | {s + "_mask" for s in found}
    for m, folder in zip(masks, mask_folders):
        unmatched += [f"{folder / p.name}: no image" for s, p in m.items() if s not in known]
    return samples


def _mask_folder(parent: Path) -> Path | None:
    return next((parent / n for n in MASK_FOLDERS if (parent / n).is_dir()), None)


def find_samples(root: str | Path) -> list[Sample]:
    """All image/mask pairs under ``root`` in any supported layout, sorted by path.

    Raises FileNotFoundError when nothing pairs; logs a warning naming unmatched files.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    unmatched: list[str] = []
    samples: list[Sample] = []
    if (root / "CXR_png").is_dir() and (root / "ManualMask").is_dir():
        samples = _pair(root / "CXR_png", [root / "ManualMask/leftMask", root / "ManualMask/rightMask"],
                        "Montgomery", unmatched)
    else:
        for images in sorted(p for p in root.rglob("images") if p.is_dir()):
            masks = _mask_folder(images.parent)
            if masks is None:
                unmatched.append(f"{images}: no mask folder beside it")
                continue
            group = str(images.parent.relative_to(root)) if images.parent != root else root.name
            samples += _pair(images, [masks], group, unmatched)
    if unmatched:
        log.warning("%d unmatched file(s) under %s, skipped:\n  %s", len(unmatched), root,
                    "\n  ".join(unmatched[:20]) + ("\n  ..." if len(unmatched) > 20 else ""))
    if not samples:
        raise FileNotFoundError(f"{root}: no image/mask pairs found (see lungseg.datasets for layouts)")
    return sorted(samples, key=lambda s: s.image)


def holdout_split(samples: list[Sample], folds: int, holdout: int,
                  seed: int = 1234) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) samples: a seeded permutation cut into ``folds`` parts, part
    ``holdout`` held out. A model trained on the first can be scored out of sample on the second."""
    if not 0 <= holdout < folds:
        raise ValueError(f"holdout must be in 0..{folds - 1}")
    order = np.random.default_rng(seed).permutation(len(samples))
    held = set(order[holdout::folds].tolist())
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])
