"""`python -m export [MODEL_DIR] [--out DIR] [--dtype float32|float16|uint8]`."""
import argparse
import sys

from .convert import DEFAULT_DTYPE, DEFAULT_OUT, DTYPES, export_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a saved LungSeg model folder to a TensorFlow.js graph model for web/.")
    parser.add_argument("model", nargs="?", default=None,
                        help="saved model folder (model.keras + card.json); default: the packaged default")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: web/model)")
    parser.add_argument("--dtype", choices=sorted(DTYPES) + ["auto"], default=DEFAULT_DTYPE,
                        help=f"weight precision (default: {DEFAULT_DTYPE}); auto: the smallest whose browser "
                             "masks match Keras (IoU >= 0.999 on every checked Val image), else float32")
    args = parser.parse_args(argv)
    try:
        dtype, extra = args.dtype, {}
        if dtype == "auto":
            from lungseg import bundle

            from .parity import choose_dtype
            print("choosing the precision by browser parity (uint8, float16 vs Keras)...")
            dtype, choice = choose_dtype(bundle.resolve(args.model or bundle.DEFAULT_MODEL))
            extra = {"dtype_choice": choice} if choice else {}
        export_model(args.model, args.out, dtype, extra=extra)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
