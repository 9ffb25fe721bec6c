"""Command line: ``lungseg train | evaluate | predict`` (also ``python -m lungseg``)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import bundle

log = logging.getLogger("lungseg")


def _train(args) -> int:
    from .training import train
    summary = train(args.data, args.out, val=args.val, architecture=args.architecture,
                    backbone_weights=args.backbone_weights, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    limit=args.limit, seed=args.seed, fine_tune=args.fine_tune)
    print(f"best epoch {summary['best_epoch']}/{summary['epochs']}, "
          f"val Dice {summary['val_dice_at_best']}, {summary['training_seconds']} s of training; "
          f"model in {Path(args.out) / 'best'}")
    return 0


def _evaluate(args) -> int:
    from .evaluation import evaluate, markdown_table
    from .inference import Segmenter
    if (args.no_postprocess or args.threshold is not None) and args.update_card:
        raise SystemExit("--update-card stores the figures of the model as shipped: "
                         "drop --no-postprocess and --threshold")
    segmenter = Segmenter.load(args.model)
    if args.no_postprocess:
        segmenter.keep_regions, segmenter.fill_holes = 0, False
    if args.threshold is not None:
        segmenter.threshold = args.threshold
    out = args.out or Path("reports") / segmenter.name
    report = evaluate(segmenter, args.data, out, limit=args.limit)
    if args.update_card:
        card = {**segmenter.card, "metrics": {"data": f"{Path(args.data).as_posix()}",
                                              **report["overall"]}}
        bundle.write_card(card, bundle.resolve(args.model))
    print(markdown_table(report))
    print(f"{report['overall']['images']} images in {report['seconds']} s; wrote {out}/metrics.json, "
          f"metrics.md, worst.png")
    return 0


def _inputs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, output stem relative to --out) for every file given or found in a given folder."""
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found += [(p, p.relative_to(given).with_suffix("")) for p in sorted(given.rglob("*"))
                      if p.is_file() and not p.name.startswith(".")]
        else:
            found.append((given, Path(given.stem)))
    return found


def _predict(args) -> int:
    from tqdm.auto import tqdm

    from .imageio import ImageError, encode_png, read_image
    from .inference import Segmenter
    from .plots import overlay
    segmenter = Segmenter.load(args.model)
    out = Path(args.out)
    failed = []
    files = _inputs(args.inputs)
    for path, stem in tqdm(files, desc="segmenting", unit="img", disable=len(files) < 2):
        try:
            image = read_image(path)
        except ImageError as err:
            failed.append(str(err) if path.name in str(err) else f"{path}: {err}")
            continue
        mask = segmenter.predict(image, threshold=args.threshold)
        target = out / stem
        target.parent.mkdir(parents=True, exist_ok=True)
        target.with_suffix(".png").write_bytes(encode_png(mask))
        if not args.no_overlay:
            (target.parent / f"{target.name}_overlay.png").write_bytes(encode_png(overlay(image, mask)))
    for message in failed:
        print(f"error: {message}", file=sys.stderr)
    done = len(files) - len(failed)
    print(f"{done} of {len(files)} image(s) segmented into {out}" + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed or not files else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lungseg", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a model on a dataset folder")
    p.add_argument("--data", required=True, help="training set folder (any supported layout)")
    p.add_argument("--val", help="validation set folder, for model selection")
    p.add_argument("--out", required=True, help="run folder: checkpoints, history, curves, best/")
    p.add_argument("--architecture", choices=("context", "seed"), default="context")
    p.add_argument("--backbone-weights", default="imagenet",
                   help='VGG19 weights: "imagenet" (Keras download) or an .npz file')
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--fine-tune", metavar="MODEL_DIR",
                   help="start from this saved model and train its VGG19 layers too")
    p.add_argument("--limit", type=int, help="train on this many images only")
    p.add_argument("--seed", type=int, default=1234)
    p.set_defaults(run=_train)

    p = commands.add_parser("evaluate", help="score a model on a labelled dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=bundle.DEFAULT_MODEL, help="saved model folder")
    p.add_argument("--out", help="report folder (default reports/<model name>)")
    p.add_argument("--limit", type=int, help="score the first N pairs only")
    p.add_argument("--no-postprocess", action="store_true",
                   help="score the thresholded probabilities without the card's clean-up")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--update-card", action="store_true",
                   help="store the overall figures in the model's card (for a release)")
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("predict", help="write lung masks for images or folders")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder for <name>.png masks")
    p.add_argument("--model", default=bundle.DEFAULT_MODEL, help="saved model folder")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--no-overlay", action="store_true", help="skip <name>_overlay.png")
    p.set_defaults(run=_predict)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return args.run(args)
