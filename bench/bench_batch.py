"""Archive speed: ``lungseg predict``'s engines on the same real X-rays, and with ``--root`` the
plain engine of another checkout (e.g. an older revision) beside this one's, with the same masks.

    .venv/bin/python bench/bench_batch.py [--small 64] [--large 8] [--root OLD_CHECKOUT]
                                          [--repeat 3] [--no-overlay] [--no-ray] [--png]

    git archive 0708253 | (mkdir -p /tmp/lungseg-0708253 && tar -x -C /tmp/lungseg-0708253)
    .venv/bin/python bench/bench_batch.py --small 0 --large 8 --root /tmp/lungseg-0708253 --no-ray

Two sets: (a) ``--small`` 256 px PNGs of COVID-QU-Ex Val as they are; (b) ``--large`` full-size
X-rays, made here by upscaling real Val X-rays to 2500 x 3000 PNGs (the size of a public
full-size chest X-ray). The plain engine runs in a fresh process per checkout and repeat (sides
taken in turn, so both see the same load on a shared machine), its model loaded and warmed up
before the clock starts. Printed: X-rays/s (the best of ``--repeat``); the CPU time a run takes
(all threads, median) and the process's peak resident memory (model loaded, the run); where
the time goes (reading and decoding, model with quality checks, writing: measured stage by
stage on the same files, medians); the outputs' sizes; whether both checkouts wrote the same
masks and overlays (pixel for pixel). ``--no-overlay`` adds this checkout writing masks only.
The Ray engine of this checkout runs here; its figures exclude starting Ray (printed apart) but
include loading the model in the actors. ``--png`` prints what each PNG compression setting
costs on the full-size masks and overlays (the choice behind ``imageio.PNG_OPTIONS``). Also
prints what planning a folder costs per file: found by name (an accepted extension) and by
content (the same files without extensions, as PACS exports name them: each one sniffed).
"""
import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parents[1]
VAL = HERE.parent / "shared" / "data" / "covidqu-ex" / "Val"
LARGE = (2500, 3000)   # width, height
#: PNG settings compared by --png: Pillow's default, faster levels, and run-length deflate.
PNG_SETTINGS = {"level 6 (Pillow's default)": {"compress_level": 6}, "level 1": {"compress_level": 1},
                "level 3, filtered": {"compress_level": 3, "compress_type": zlib.Z_FILTERED},
                "level 1, run-length": {"compress_level": 1, "compress_type": zlib.Z_RLE}}


def make_sets(root: Path, small: int, large: int) -> dict[str, Path]:
    """The input folders: Val PNGs as they are, and some upscaled to full size (empty sets left out)."""
    paths = sorted(VAL.glob("*/images/*.png"))[::7]
    if len(paths) < max(small, large):
        raise SystemExit(f"needs {max(small, large)} real X-rays in {VAL}")
    sets = {}
    for label, count, size in (("256 px PNG", small, None), (f"{LARGE[0]}x{LARGE[1]} PNG", large, LARGE)):
        if not count:
            continue
        sets[label] = folder = root / ("large" if size else "small")
        folder.mkdir()
        for path in paths[:count]:
            if size:
                Image.open(path).convert("L").resize(size, Image.BICUBIC).save(folder / path.name)
            else:
                shutil.copy(path, folder / path.name)
    return sets


def timed(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def stages(folder: Path, segmenter, out: Path, overlay: bool = True) -> dict[str, float]:
    """Seconds per X-ray of each stage of a plain run, one stage after the other."""
    from lungseg.batch import Writer, plan
    from lungseg.imageio import read_input

    files = sorted(folder.iterdir())
    decoded: list = []
    results: list = []
    jobs = plan([folder], out)
    writer = Writer(out, overlay)
    seconds = {
        "read+decode": timed(lambda: decoded.extend(read_input(p) for p in files)),
        "model+checks": timed(lambda: results.extend(segmenter.analyze_read([d])[0] for d in decoded)),
        "write": timed(lambda: [writer.segmented(j, segmenter, lambda r=r: r) for j, r in zip(jobs, results)]),
    }
    return {k: v / len(files) for k, v in seconds.items()}


def measure(folder: Path, out: Path, overlay: bool = True) -> None:
    """(In a fresh process, with the checkout to measure first on sys.path.) Time a plain run of
    ``folder`` into ``out``, then its stages; print them as one JSON line."""
    import lungseg
    from lungseg import Segmenter
    from lungseg.batch import plan, run

    segmenter = Segmenter.load()
    segmenter.analyze(np.full((256, 256), 128, np.uint8))          # the model's first call, untimed
    cpu = time.process_time()
    seconds = timed(lambda: run(plan([folder], out), out, segmenter, overlay=overlay))
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # MB, before the stages hold every X-ray
    split = stages(folder, segmenter, out.parent / (out.name + "-stages"), overlay)
    shutil.rmtree(out.parent / (out.name + "-stages"))
    print(json.dumps({"code": str(Path(lungseg.__file__).parents[1]), "seconds": seconds, "cpu": cpu, "peak": peak,
                      "split": split}))


def measured(root: Path, folder: Path, out: Path, overlay: bool) -> dict:
    """``measure`` run in a fresh Python with ``root``'s lungseg."""
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, __file__, "--measure", str(folder), str(out)]
                          + ["--no-overlay"] * (not overlay), env=env, cwd=root, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measuring {root} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["code"]) != root:
        raise SystemExit(f"{root}: the run used lungseg from {result['code']}")
    return result


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def same_outputs(first: Path, second: Path, suffix: str) -> str:
    """How many outputs ending in ``suffix`` are equal pixel for pixel in both folders (and the
    lowest IoU of masks that differ)."""
    names = sorted(p.name for p in first.glob(f"*{suffix}"))
    if sorted(p.name for p in second.glob(f"*{suffix}")) != names:
        return "different files"
    equal, ious = 0, []
    for name in names:
        a, b = pixels(first / name), pixels(second / name)
        if a.shape == b.shape and np.array_equal(a, b):
            equal += 1
        elif a.ndim == 2 and a.shape == b.shape:
            ious.append(((a > 0) & (b > 0)).sum() / max(((a > 0) | (b > 0)).sum(), 1))
    return f"{equal}/{len(names)} equal" + (f" (lowest IoU of the others {min(ious):.5f})" if ious else "")


def kilobytes(folder: Path, suffix: str) -> float:
    files = list(folder.glob(f"*{suffix}"))
    return sum(p.stat().st_size for p in files) / max(len(files), 1) / 1000


def compare_plain(sets: dict[str, Path], sides: dict[str, tuple[Path, bool]], work: Path, repeat: int) -> None:
    """The plain engine of each side (a checkout, with overlays or not) on each set, in fresh
    processes taken in turn; the first two sides' masks and overlays compared."""
    for label, folder in sets.items():
        count = len(list(folder.iterdir()))
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for k in range(repeat):
            for side, (root, overlay) in sides.items():
                out = work / f"{side}-{k}"
                runs[side].append(measured(root, folder, out, overlay))
                if k:
                    shutil.rmtree(out)
        print(f"\n{label}, {count} X-rays: plain engine, X-rays/s (best of {repeat}; all runs)")
        best = {side: count / min(r["seconds"] for r in results) for side, results in runs.items()}
        for side, results in runs.items():
            split = {key: statistics.median(r["split"][key] for r in results) for key in results[0]["split"]}
            each = ", ".join(f"{count / r['seconds']:.2f}" for r in results)
            sizes = ", ".join(f"{kind} {kilobytes(work / f'{side}-0', f'.{kind}.png'):.0f} kB"
                              for kind in ("mask", "overlay") if list((work / f"{side}-0").glob(f"*.{kind}.png")))
            cpu = statistics.median(r["cpu"] for r in results) / count
            peak = max(r["peak"] for r in results)
            print(f"  {side:<28}{best[side]:>6.2f}   ({each})   CPU {cpu:.2f} s per X-ray, peak {peak:.0f} MB;"
                  "   stages, s per X-ray: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in split.items())
                  + f"   {sizes}")
        if len(sides) > 1 and all(overlay for _, overlay in list(sides.values())[:2]):
            old, new = list(sides)[:2]
            print(f"  speed-up {best[new] / best[old]:.2f}x; masks: "
                  f"{same_outputs(work / f'{old}-0', work / f'{new}-0', '.mask.png')}; overlays: "
                  f"{same_outputs(work / f'{old}-0', work / f'{new}-0', '.overlay.png')}")
        for side in sides:
            shutil.rmtree(work / f"{side}-0")


def compare_png(folder: Path, repeat: int = 3) -> None:
    """What each PNG setting costs on the full-size masks and overlays of ``folder``: per file the
    least CPU time (of this thread: what other processes do barely counts) of ``repeat`` encodings."""
    from lungseg import Segmenter
    from lungseg.plots import overlay

    segmenter = Segmenter.load()
    results = [segmenter.analyze(path) for path in sorted(folder.iterdir())]
    arrays = {"mask": [r.mask * 255 for r in results], "overlay": [overlay(r.image, r.mask) for r in results]}
    seconds = {(name, kind): [] for name in PNG_SETTINGS for kind in arrays}
    sizes = {key: [] for key in seconds}
    for kind, images in arrays.items():
        for image in images:
            for name, options in PNG_SETTINGS.items():
                buffer = io.BytesIO()
                seconds[name, kind].append(min(timed(lambda: Image.fromarray(image).save(
                    io.BytesIO(), format="PNG", **options), time.thread_time) for _ in range(repeat)))
                Image.fromarray(image).save(buffer, format="PNG", **options)
                sizes[name, kind].append(buffer.tell())
    print(f"\nPNG settings on {len(results)} {LARGE[0]}x{LARGE[1]} masks and RGB overlays (CPU ms: "
          f"median over files of the least of {repeat} encodings; mean kB):")
    for name in PNG_SETTINGS:
        print(f"  {name:<28}" + ";  ".join(
            f"{kind} {1000 * statistics.median(seconds[name, kind]):4.0f} ms {np.mean(sizes[name, kind]) / 1000:6.0f} kB"
            for kind in arrays))


def compare_ray(sets: dict[str, Path], work: Path, workers: int | None) -> None:
    import ray

    from lungseg import ray_engine
    from lungseg.batch import plan

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"\nRay started in {time.perf_counter() - start:.1f} s ({os.cpu_count()} CPUs)")
    for label, folder in sets.items():
        count = len(list(folder.iterdir()))
        seconds = timed(lambda: ray_engine.run(plan([folder], work / "ray"), work / "ray", workers=workers))
        shutil.rmtree(work / "ray")
        print(f"  {label}, {count} X-rays: ray engine {count / seconds:.2f} X-rays/s")
    ray.shutdown()


def planning(folder: Path, root: Path) -> dict[str, float]:
    """Milliseconds per file to plan a folder of ``folder``'s files: named with their extensions,
    and renamed without (found by content)."""
    from lungseg.batch import plan

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
    parser.add_argument("--root", type=Path, help="another checkout whose plain engine runs beside this one's")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the plain engine per checkout")
    parser.add_argument("--workers", type=int, help="Ray model actors (default: one per node)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray engine out")
    parser.add_argument("--no-overlay", action="store_true",
                        help="also run this checkout with --no-overlay (with --measure: the run's option)")
    parser.add_argument("--png", action="store_true", help="compare PNG settings on the full-size set")
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure, overlay=not args.no_overlay)
    sides = {f"{args.root.resolve().name} (--root)": (args.root.resolve(), True)} if args.root else {}
    sides["this checkout"] = HERE, True
    if args.no_overlay:
        sides["this checkout, --no-overlay"] = HERE, False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = make_sets(work, args.small, args.large)
        print(f"inputs: {args.small} Val X-rays at 256 px; {args.large} Val X-rays upscaled to "
              f"{LARGE[0]}x{LARGE[1]} PNG (built here, in {tmp}); {os.cpu_count()} CPUs")
        compare_plain(sets, sides, work, args.repeat)
        if args.png and args.large:
            compare_png(sets[f"{LARGE[0]}x{LARGE[1]} PNG"])
        if not args.no_ray:
            compare_ray(sets, work, args.workers)
        if args.small:
            cost = planning(sets["256 px PNG"], work)
            print("\nplanning, ms per file: " + ", ".join(f"{k} {v:.2f}" for k, v in cost.items()))


if __name__ == "__main__":
    main()
