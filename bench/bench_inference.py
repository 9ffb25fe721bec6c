"""Python inference speed of the committed models on this machine.

    .venv/bin/python bench/bench_inference.py [--model DIR] [--repeats 50]

Prints, for one 256x256 X-ray: median latency of ``Segmenter.predict`` (model + threshold +
clean-up), of ``Segmenter.analyze`` (the same plus quality estimate and warnings; for a model
with two lung definitions also the whole lung's ``predict`` and ``analyze`` of both) and of the
model call alone, as Segmenter makes it (at the model's working size) beside the whole graph at
the input's size; and images/second for batches of 1, 8 and 32. Full-size X-rays:
bench/bench_full_size.py.
Uses a real Val X-ray when ../shared is present, else a synthetic image of the same size.
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from lungseg import Segmenter, bundle, read_image
from lungseg.layers import resize_input

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covidqu-ex" / "Val"


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: graph tracing and allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Times of two calls taken turn about, so drifting machine load hits both alike."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def bench(folder: Path, image: np.ndarray, repeats: int) -> None:
    seg = Segmenter.load(folder)
    batch1 = image[None].astype(np.float32)
    print(f"\n{seg.name} ({folder.name}, input size {seg.card.get('input_size')}, "
          f"{seg.model.count_params():,} parameters)")
    predict, analyze = interleaved(lambda: seg.predict(image), lambda: seg.analyze(image), repeats)
    print(f"  predict(), one 256x256 image: median {1000 * statistics.median(predict):.1f} ms")
    print(f"  analyze() (+ quality, checks): median {1000 * statistics.median(analyze):.1f} ms "
          f"({100 * (statistics.median(analyze) / statistics.median(predict) - 1):+.1f}%)")
    if len(seg.definitions) > 1:
        whole, both = interleaved(lambda: seg.predict(image, definition="whole"),
                                  lambda: seg.analyze(image, definition="both"), repeats)
        print(f"  predict(definition='whole'):  median {1000 * statistics.median(whole):.1f} ms; "
              f"analyze(definition='both'): {1000 * statistics.median(both):.1f} ms")
    working1 = resize_input(image, seg.input_size)[None]
    working, whole = interleaved(lambda: seg.working_model(['visible'])(working1, training=False),
                                 lambda: seg.model(batch1, training=False), repeats)
    print(f"  model call alone:             median {1000 * statistics.median(working):.1f} ms at working "
          f"size (the whole graph at 256x256: {1000 * statistics.median(whole):.1f} ms)")
    for size in (1, 8, 32):
        batch = np.repeat(working1, size, axis=0)
        t = timed(lambda: seg.working_model(['visible'])(batch, training=False), max(3, repeats // size))
        print(f"  batch of {size:2d}: {size / statistics.median(t):6.1f} images/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path,
                        help="saved model folder (repeatable; default: default and seed)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    files = sorted(DATA.glob("*/images/*.png"))
    image = read_image(files[0]) if files else np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)
    print(f"{os.cpu_count()} CPU(s); image: {files[0].name if files else 'synthetic'}")
    for folder in args.model or [bundle.DEFAULT_MODEL, bundle.SEED_MODEL]:
        bench(folder, image, args.repeats)


if __name__ == "__main__":
    main()
