"""``streamlit run app/asgi.py`` (streamlit_app.py and its zip route) with the default model
loaded first, in the same process.

    python -m app.serve [streamlit options, e.g. --server.port 8501]

scripts/start.py runs the app this way: TensorFlow's import, the model load and a first
prediction happen before Streamlit answers, so the first visitor does not wait for them.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from streamlit.web import cli

APP = Path(__file__).resolve().parent / "asgi.py"


def warm_up() -> float:
    """Load the default model into the app's model cache and run it once; returns seconds."""
    from app import results
    from lungseg.bundle import DEFAULT_MODEL

    start = time.perf_counter()
    seg = results.load_segmenter(str(DEFAULT_MODEL))
    seg.predict_proba(np.zeros((256, 256, 3), np.uint8))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    print(f"LungSeg: default model loaded and warmed up in {warm_up():.1f} s", flush=True)
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
