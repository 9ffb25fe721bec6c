"""The input rules every surface follows: accepted formats, size limits and the wording of errors.

They live in ``rules.json`` beside this module, the one source read here (API, CLI, Streamlit
app) and by the web page (``web/scripts/vendor.mjs`` copies it to ``web/vendor/rules.json``), so a
user gets the same limits and the same message for the same file everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

RULES: dict = json.loads((Path(__file__).with_name("rules.json")).read_text())

MAX_PIXELS: int = RULES["max_pixels"]
MIN_SIDE: int = RULES["min_side"]
MAX_FILE_BYTES: int = RULES["max_file_bytes"]
EXTENSIONS: tuple[str, ...] = tuple(e for f in RULES["formats"] for e in f["extensions"])
FORMATS: str = ", ".join(f["name"] for f in RULES["formats"])
OVERLAY_RGB: tuple[int, int, int] = tuple(RULES["overlay"]["color"])
OVERLAY_OPACITY: float = RULES["overlay"]["opacity"]
#: The lung definitions a model may outline, the default (the visible lung field) first: their
#: names, what they mean, and the prefix of their outputs' names and manifest columns.
DEFINITIONS: dict[str, dict] = {k: v for k, v in RULES["definitions"].items() if k != "_doc"}
#: Output names (suffixes after the input's full file name) and the manifest's columns, the same
#: for the CLI's output folder and the app's and page's zips.
OUTPUTS: dict[str, str] = {k: v for k, v in RULES["outputs"].items() if isinstance(v, str) and k != "_doc"}
MANIFEST_COLUMNS: list[str] = RULES["outputs"]["manifest_columns"]


def message(code: str, file: str, **fields) -> str:
    """The user message ``code`` of rules.json for ``file``, with the limits filled in."""
    limits = {"formats": FORMATS, "min_side": MIN_SIDE,
              "max_megapixels": f"{MAX_PIXELS / 1e6:g}", "max_megabytes": f"{MAX_FILE_BYTES / 2**20:g}"}
    return RULES["messages"][code].format(file=file, **limits, **fields)


def is_supported(path: str | Path) -> bool:
    """Whether a file name has an accepted image extension (how folders are searched)."""
    return Path(path).suffix.lower() in EXTENSIONS


def output_name(kind: str, definition: str = "visible") -> str:
    """The suffix of one output of one definition: ``.mask.png``, ``.whole.mask.png``."""
    prefix = DEFINITIONS[definition]["prefix"]
    return f".{prefix}{OUTPUTS[kind]}" if prefix else OUTPUTS[kind]


def column(name: str, definition: str = "visible") -> str:
    """A manifest column of one definition: ``lung_cm2``, ``whole_lung_cm2``."""
    prefix = DEFINITIONS[definition]["prefix"]
    return f"{prefix}_{name}" if prefix else name
