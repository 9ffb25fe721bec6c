"""Archive speed: the plain engine and the Ray engine of ``lungseg predict`` on the same real X-rays.

    .venv/bin/python bench/bench_batch.py [--small 64] [--large 8] [--workers N]

Two sets, each segmented by both engines into a temporary folder (masks, overlays, manifest):
(a) ``--small`` 256 px PNGs of COVID-QU-Ex Val as they are; (b) ``--large`` full-size X-rays,
made here by upscaling real Val X-rays to 3000 x 2500 PNGs (the size of a public full-size
chest X-ray). Prints X-rays/s side by side, and where a plain run's time goes (reading and
decoding, model with quality checks, writing), measured stage by stage on the same files. The
Ray figures exclude starting Ray (printed apart) but include loading the model in the actors.
Also prints what planning a folder costs per file: found by name (an accepted extension) and
by content (the same files without extensions, as PACS exports name them: each one sniffed).
"""
import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
from PIL import Image

from lungseg import Segmenter, ray_engine
from lungseg.batch import Writer, plan, run
from lungseg.imageio import read_input

VAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covidqu-ex" / "Val"
LARGE = (2500, 3000)   # width, height


def make_sets(root: Path, small: int, large: int) -> dict[str, Path]:
    """The two input folders: Val PNGs as they are, and some upscaled to full size."""
    paths = sorted(VAL.glob("*/images/*.png"))[::7]
    if len(paths) < max(small, large):
        raise SystemExit(f"needs {max(small, large)} real X-rays in {VAL}")
    sets = {"256 px PNG": root / "small", f"{LARGE[0]}x{LARGE[1]} PNG": root / "large"}
    for folder in sets.values():
        folder.mkdir()
    for path in paths[:small]:
        shutil.copy(path, sets["256 px PNG"] / path.name)
    for path in paths[:large]:
        Image.open(path).convert("L").resize(LARGE, Image.BICUBIC).save(
            sets[f"{LARGE[0]}x{LARGE[1]} PNG"] / path.name)
    return sets


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stages(folder: Path, segmenter: Segmenter, out: Path) -> dict[str, float]:
    """Seconds per X-ray of each stage of a plain run, one stage after the other."""
    files = sorted(folder.iterdir())
    decoded: list = []
    results: list = []
    jobs = plan([folder], out)
    writer = Writer(out)
    seconds = {
        "read+decode": timed(lambda: decoded.extend(read_input(p) for p in files)),
        "model+checks": timed(lambda: results.extend(segmenter.analyze_read([d])[0] for d in decoded)),
        "write": timed(lambda: [writer.segmented(j, segmenter, lambda r=r: r) for j, r in zip(jobs, results)]),
    }
    return {k: v / len(files) for k, v in seconds.items()}


def planning(folder: Path, root: Path) -> dict[str, float]:
    """Milliseconds per file to plan a folder of ``folder``'s files: named with their extensions,
    and renamed without (found by content)."""
    bare = root / "bare"
    bare.mkdir()
    for path in folder.iterdir():
        shutil.copy(path, bare / path.stem)
    count = len(list(folder.iterdir()))
    seconds = {"by name": timed(lambda: plan([folder], root / "plan-out")),
               "by content": timed(lambda: plan([bare], root / "plan-out"))}
    shutil.rmtree(bare)
    return {k: 1000 * v / count for k, v in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=64, help="256 px X-rays")
    parser.add_argument("--large", type=int, default=8, help="full-size X-rays")
    parser.add_argument("--workers", type=int, help="Ray model actors (default: one per node)")
    args = parser.parse_args()
    segmenter = Segmenter.load()
    with tempfile.TemporaryDirectory() as tmp:
        sets = make_sets(Path(tmp), args.small, args.large)
        print(f"inputs: {args.small} Val X-rays at 256 px; {args.large} Val X-rays upscaled to "
              f"{LARGE[0]}x{LARGE[1]} PNG (built here, in {tmp})")
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        print(f"Ray started in {time.perf_counter() - start:.1f} s ({os.cpu_count()} CPUs)\n")
        print(f"{'set':<16}{'X-rays':>7}{'plain X-rays/s':>16}{'ray X-rays/s':>14}   plain, s per X-ray")
        for label, folder in sets.items():
            count = len(list(folder.iterdir()))
            plain = timed(lambda: run(plan([folder], Path(tmp) / "plain"), Path(tmp) / "plain", segmenter))
            on_ray = timed(lambda: ray_engine.run(plan([folder], Path(tmp) / "ray"), Path(tmp) / "ray",
                                                  workers=args.workers))
            split = stages(folder, segmenter, Path(tmp) / "stages")
            for out in ("plain", "ray", "stages"):
                shutil.rmtree(Path(tmp) / out)
            print(f"{label:<16}{count:>7}{count / plain:>16.2f}{count / on_ray:>14.2f}   "
                  + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
        ray.shutdown()
        cost = planning(sets["256 px PNG"], Path(tmp))
        print("\nplanning, ms per file: " + ", ".join(f"{k} {v:.2f}" for k, v in cost.items()))


if __name__ == "__main__":
    main()
