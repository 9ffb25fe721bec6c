"""Command line: ``lungseg train | evaluate | predict`` (also ``python -m lungseg``)."""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from . import bundle, rules

log = logging.getLogger("lungseg")
INTERRUPTED = 130   # the exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells use
#: How the summary counts what was left out of folders searched (batch.Plan.left_out), one | many.
LEFT_OUT = {"not_image": ("not an image", "not images"), "loop": ("link loop", "link loops")}
DEFAULT_DEFINITION = next(iter(rules.DEFINITIONS))   # the visible lung field


def _import_tensorflow(verbose: bool) -> None:
    """Import TensorFlow, hiding the lines its native code prints at start-up unless ``verbose``
    (TF_CPP_MIN_LOG_LEVEL does not silence them: they are written before it is read)."""
    if verbose or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _train(args) -> int:
    _import_tensorflow(args.verbose)
    from .training import train
    summary = train(args.data, args.out, val=args.val, architecture=args.architecture,
                    backbone_weights=args.backbone_weights, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    limit=args.limit, seed=args.seed, fine_tune=args.fine_tune,
                    folds=args.folds, holdout=args.holdout, strategy=args.strategy,
                    robust=args.robust)
    print(f"best epoch {summary['best_epoch']}/{summary['epochs']}, "
          f"val Dice {summary['val_dice_at_best']}, {summary['training_seconds']} s of training; "
          f"model in {Path(args.out) / 'best'}")
    return 0


def _evaluate(args) -> int:
    _import_tensorflow(args.verbose)
    from .evaluation import evaluate, markdown_table
    from .inference import Segmenter
    if (args.no_postprocess or args.threshold is not None) and args.update_card:
        raise SystemExit("--update-card stores the figures of the model as shipped: "
                         "drop --no-postprocess and --threshold")
    segmenter = Segmenter.load(args.model)
    try:
        segmenter.output(args.definition)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.no_postprocess:
        segmenter.keep_regions, segmenter.fill_holes = 0, False
    out = args.out or Path("reports") / segmenter.name
    report = evaluate(segmenter, args.data, out, limit=args.limit, threshold=args.threshold,
                      definition=args.definition)
    if args.update_card:
        bundle.write_card(_card_with(segmenter.card, args.definition, args.data, report["overall"]),
                          bundle.resolve(args.model))
    print(markdown_table(report))
    print(f"{report['overall']['images']} images in {report['seconds']} s; wrote {out}/metrics.json, "
          f"metrics.md, worst.png")
    return 0


def _card_with(card: dict, definition: str, data: str, overall: dict) -> dict:
    """``card`` with the figures of ``definition`` on ``data`` in ``outputs[definition]["metrics"]``,
    keyed by the data set's name (its path after a ``data`` folder, e.g. ``v7-whole-lung``); the
    visible field's are also the card's top-level ``metrics`` (all a one-output card has)."""
    path = Path(data).absolute()
    figures = {"data": Path(data).as_posix(), **overall}
    if definition == DEFAULT_DEFINITION:
        card = {**card, "metrics": figures}
    if "outputs" not in card:
        return card
    parts = path.parts
    name = "/".join(parts[len(parts) - parts[::-1].index("data"):]) if "data" in parts[:-1] else path.name
    output = card["outputs"][definition]
    metrics = {**output.get("metrics", {}), name: figures}
    return {**card, "outputs": {**card["outputs"], definition: {**output, "metrics": metrics}}}


def _fit_quality(args) -> int:
    _import_tensorflow(args.verbose)
    from .calibration import fit_card_quality, save_rows
    fitted = fit_card_quality(args.twin, args.data, args.model, false_alarms=args.false_alarms,
                              limit=args.limit)
    if args.rows:
        save_rows(fitted["rows"], args.rows)
    params = fitted["params"]
    print(f"fitted on {params['fitted_on']['rows']} held-out rows: Spearman "
          f"{params['fitted_on']['spearman']}, mean abs. error {params['fitted_on']['mean_abs_error']}; "
          f"warning below {params['warn_below']}; written to the card of {args.model}")
    return 0


def _chosen(args):
    """The model, when the definitions asked need it to be known, and the lung definitions asked
    (``Segmenter.chosen``: "both" is every one the model gives); ValueError for a definition the
    model does not outline."""
    if args.definition == DEFAULT_DEFINITION:
        return None, (DEFAULT_DEFINITION,)
    _import_tensorflow(args.verbose)
    from .inference import Segmenter
    segmenter = Segmenter.load(args.model)
    return segmenter, tuple(segmenter.chosen(args.definition))


def _segment(args, jobs, existing: str, segmenter, definitions: tuple[str, ...]):
    """Run the jobs on the engine asked for: plain (this process, with ``segmenter`` if loaded
    already) or Ray."""
    options = dict(threshold=args.threshold, overlay=not args.no_overlay, existing=existing,
                   min_quality=args.min_quality, labels=args.labels, definitions=definitions)
    if args.engine == "ray":
        from . import ray_engine
        return ray_engine.run(jobs, args.out, args.model, workers=args.workers, address=args.address,
                              **options)
    from tqdm.auto import tqdm

    from .batch import run
    if segmenter is None:
        _import_tensorflow(args.verbose)
        from .inference import Segmenter
        segmenter = Segmenter.load(args.model)
    return run(jobs, args.out, segmenter,
               progress=lambda j: tqdm(j, desc="segmenting", unit="img", disable=len(j) < 2), **options)


def _named(what: str, definition: str) -> str:
    """An output's name in the summary: "mask", or another definition's "whole lung mask"."""
    return what if definition == DEFAULT_DEFINITION else f"{rules.DEFINITIONS[definition]['name']} {what}"


def _summary_line(summary, args, left_out: list[tuple[str, str]], definitions: tuple[str, ...]) -> str:
    """What a run did, in one line whose counts equal the files on disk."""
    new = summary.new()
    low = summary.count("low_quality")
    counts = [f"{len(new)} of {len(summary.rows)} input(s) segmented"]
    counts += [f"{n} {what}" for n, what in (
        (summary.warned(), "with warnings"),
        (len(summary.kept), "kept from an earlier run"),
        (summary.failed, "failed" + (f" ({low} below --min-quality {args.min_quality})" if low else "")))
        if n]
    kinds = [("mask", "mask")] + [("overlay", "overlay")] * (not args.no_overlay) \
        + [("labels", "label image")] * args.labels
    written = [f"{summary.written(rules.column(kind, d))} {_named(what, d)}(s)" for d in definitions
               for kind, what in kinds]
    written += [f"{n} DICOM Segmentation(s)"] if (n := summary.written("dicom_seg")) else []
    out = Path(args.out)
    reasons = Counter(reason for reason, _ in left_out)
    left = [f"{n} {LEFT_OUT[reason][n > 1]}" for reason, n in sorted(reasons.items())]
    return (", ".join(counts) + (f"; left out: {', '.join(left)}" if left else "")
            + f"; wrote {', '.join(written)} into {out}; manifest: {out / 'manifest.csv'}")


def _estimates(row: dict, definitions: tuple[str, ...]) -> str:
    """A row's estimated Dice: " (estimated Dice 0.93)", with more than one definition each
    named: " (estimated Dice 0.97 visible lung field, 0.91 whole lung)"."""
    found = [(d, q) for d in definitions if (q := row.get(rules.column("quality", d))) is not None]
    if not found:
        return ""
    if len(definitions) == 1:
        return f" (estimated Dice {found[0][1]:.2f})"
    return " (estimated Dice " + ", ".join(f"{q:.2f} {rules.DEFINITIONS[d]['name']}" for d, q in found) + ")"


def _predict(args) -> int:
    from .batch import BatchError, Interrupted, plan
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        print('error: --engine ray needs Ray: pip install "lungseg[ray]"', file=sys.stderr)
        return 2
    existing = "skip" if args.skip_existing else "overwrite" if args.overwrite else "error"
    try:
        segmenter, definitions = _chosen(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        jobs = plan(args.inputs, args.out, recursive=args.recursive, overlay=not args.no_overlay,
                    existing=existing, labels=args.labels, definitions=definitions)
        summary = _segment(args, jobs, existing, segmenter, definitions)
    except BatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        done = stop.summary
        print(f"interrupted: {len(done.rows)} of {done.total} input(s) done ({len(done.new())} "
              f"segmented, {len(done.kept)} kept, {done.failed} failed); "
              + (f"manifest written: {Path(args.out) / 'manifest.csv'}; " if done.rows else "")
              + "rerun with --skip-existing to finish", file=sys.stderr)
        return INTERRUPTED
    for _, message in jobs.left_out:
        print(f"note: {message}", file=sys.stderr)
    for row in summary.rows:
        if row["status"] == "error":
            print(f"error: {row['message']}", file=sys.stderr)
        elif row["input"] not in summary.kept and any(row[rules.column("warnings", d)] for d in definitions):
            print(f"warning: {row['input']}{_estimates(row, definitions)}: {row['message']}", file=sys.stderr)
    print(_summary_line(summary, args, jobs.left_out, definitions))
    return 1 if summary.failed else 0


def _meanings() -> str:
    """What each lung definition outlines, in rules.json's words."""
    return "; ".join(f"{d}: {facts['means']}" for d, facts in rules.DEFINITIONS.items()) \
        + f" (default {DEFAULT_DEFINITION})"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lungseg", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true",
                        help="show TensorFlow's start-up and device messages")

    p = commands.add_parser("train", parents=[common], help="train a model on a dataset folder")
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
    p.add_argument("--folds", type=int, help="cut --data into this many seeded parts and leave one "
                   "out (--holdout), to score the model out of sample on it")
    p.add_argument("--holdout", type=int, default=0, help="the part left out (0 .. folds-1)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--robust", action="store_true",
                   help="standardise each X-ray's intensities inside the model and train on copies "
                        "degraded as devices and exports do (crop, exposure, blur, noise, JPEG)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="tf.distribute: mirrored = every GPU of this machine; multiworker = the "
                        "machines in TF_CONFIG (run the same command on each); --batch-size is the "
                        "global batch, split across the devices")
    p.set_defaults(run=_train)

    p = commands.add_parser("evaluate", parents=[common], help="score a model on a labelled dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=bundle.DEFAULT_MODEL, help="saved model folder")
    p.add_argument("--out", help="report folder (default reports/<model name>)")
    p.add_argument("--limit", type=int, help="score the first N pairs only")
    p.add_argument("--no-postprocess", action="store_true",
                   help="score the thresholded probabilities without the card's clean-up")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--update-card", action="store_true",
                   help="store the overall figures in the model's card (for a release)")
    p.add_argument("--definition", choices=list(rules.DEFINITIONS), default=DEFAULT_DEFINITION,
                   help="the model output scored against the masks given: " + _meanings())
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("fit-quality", parents=[common],
                            help="fit a model's quality estimate on a twin's held-out X-rays")
    p.add_argument("--twin", required=True, help="model trained with --folds/--holdout on --data")
    p.add_argument("--data", required=True, help="the twin's training set folder")
    p.add_argument("--model", default=bundle.DEFAULT_MODEL, help="model whose card gets the estimate")
    p.add_argument("--false-alarms", type=float, default=0.03,
                   help="share of good masks (Dice >= 0.95) allowed below the warning threshold")
    p.add_argument("--limit", type=int, help="use this many held-out X-rays only")
    p.add_argument("--rows", help="also write the fit's rows (features, Dice) to this JSON file")
    p.set_defaults(run=_fit_quality)

    p = commands.add_parser(
        "predict", parents=[common], help="write lung masks for images or folders",
        description="Write <file name>.mask.png (0/255, the X-ray's size) and <file name>.overlay.png "
                    "(the X-ray with the lungs tinted, also at its size) for every X-ray (with "
                    "--definition whole or both, the whole lung's too: <file name>.whole.mask.png, ...), "
                    "mirroring sub-folders, plus manifest.csv (one row per input: outputs, status, "
                    "message; merged with the folder's earlier manifest). Folders "
                    "are searched by content: an image without an extension is segmented, other "
                    "files are counted as left out; hidden ones (names starting with '.') are "
                    "skipped. Inputs are never overwritten; an input that fails leaves no output; "
                    "outputs that exist stop the run unless --skip-existing or --overwrite is "
                    "given. Exit code: 0 all segmented, 1 some failed, 2 refused, 130 Ctrl-C.")
    p.add_argument("inputs", nargs="+", help="image files or folders, paths or URIs (s3://, gs://, "
                   "file://...; folders: their images at the top level; all levels with --recursive)")
    p.add_argument("--out", required=True, help="output folder (not a folder that holds an input)")
    p.add_argument("--recursive", "-r", action="store_true", help="search folders' sub-folders too")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--skip-existing", action="store_true",
                          help="resume a run: keep the inputs an earlier run segmented (status ok "
                               "or low_quality in the manifest, every output there) and do the "
                               "rest, failed and incomplete ones included")
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument("--model", default=bundle.DEFAULT_MODEL,
                   help="saved model folder (default: the committed default model)")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--no-overlay", action="store_true", help="write masks only (at full size, the "
                   "overlay is most of what writing costs)")
    p.add_argument("--definition", choices=[*rules.DEFINITIONS, "both"], default=DEFAULT_DEFINITION,
                   help="which lung to outline: " + _meanings() + "; both: each, one pass of the "
                   f"model (<file name>{rules.output_name('mask')} and <file name>{rules.output_name('mask', 'whole')}, "
                   "...)")
    p.add_argument("--labels", action="store_true", help="also write <file name>.labels.png "
                   "(1 = the patient's right lung, 2 = left lung); DICOM-SEG outputs get two segments "
                   "per definition")
    p.add_argument("--min-quality", type=float, metavar="Q",
                   help="count masks whose estimated Dice is below Q as failures (exit code 1)")
    p.add_argument("--engine", choices=("plain", "ray"), default="plain",
                   help="plain: this process (the next X-ray decoded and the previous ones "
                        "written while the model runs; at most 4 held at once); ray: Ray Data "
                        "(decoding in parallel tasks, a pool of model actors), needs lungseg[ray]")
    p.add_argument("--address", help="--engine ray: the Ray cluster to use (e.g. auto, "
                   "ray://head:10001; default: an embedded local Ray on this machine)")
    p.add_argument("--workers", type=int, metavar="N", help="--engine ray: model actors "
                   "(default: one per GPU of the cluster, else one per node)")
    p.set_defaults(run=_predict)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("lungseg").setLevel(logging.INFO)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
