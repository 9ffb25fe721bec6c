"""Keras (saved LungSeg model folder) -> TensorFlow.js graph model + metadata.json."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lungseg import bundle

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
DEFAULT_OUT = WEB / "model"
#: The default precision: float32 always matches Keras (max |dp| ~1e-4 in wasm). `--dtype auto`
#: picks the smallest precision whose browser masks match Keras (python -m export.parity).
DEFAULT_DTYPE = "float32"
DTYPES = {"float32": [], "float16": ["--quantize_float16", "*"], "uint8": ["--quantize_uint8", "*"]}
#: Ops whose third input is a bias that TF.js' wasm backend wants as rank 1.
FUSED_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul", "FusedConv2D"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _display_path(path: Path) -> str:
    path = path.resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def fix_fused_biases(model_json: dict) -> list[str]:
    """Reshape biases of fused ops folded as [1, 1, 1, n] to [n] (wasm needs rank-1 biases).

    The weight bytes are unchanged (same element count); only the manifest shape changes.
    Returns the names of the weights that were reshaped.
    """
    nodes = model_json["modelTopology"].get("node", [])
    bias_names = set()
    for node in nodes:
        if node.get("op") in FUSED_OPS and len(node.get("input", [])) >= 3:
            bias_names.add(node["input"][2].split(":")[0].lstrip("^"))
    fixed = []
    for group in model_json["weightsManifest"]:
        for weight in group["weights"]:
            shape = weight.get("shape", [])
            if weight["name"] in bias_names and len(shape) > 1:
                count = 1
                for dim in shape:
                    count *= dim
                if count == shape[-1]:
                    weight["shape"] = [count]
                    fixed.append(weight["name"])
    for node in nodes:  # keep the graph's own constant shapes in step, where it states them
        if node.get("name") in fixed:
            shape = node.get("attr", {}).get("value", {}).get("tensor", {}).get("tensorShape")
            if shape and "dim" in shape:
                shape["dim"] = [{"size": str(weight_size)} for weight_size in
                                [_count(shape["dim"])]]
    return fixed


def _count(dims: list[dict]) -> int:
    count = 1
    for dim in dims:
        count *= int(dim.get("size", 1))
    return count


def _layer_of(node_name: str, layers: list[str]) -> str | None:
    """The Keras layer (of ``layers``) a graph node belongs to: a path part named after it, or
    after it with the ``_N`` suffix Keras adds when it traces a layer again."""
    parts = node_name.split("/")
    for layer in sorted(layers, key=len, reverse=True):
        if any(part == layer or re.fullmatch(re.escape(layer) + r"_\d+", part) for part in parts):
            return layer
    return None


def map_outputs(model_json: dict, card: dict) -> dict:
    """Each lung definition the card describes -> {definition, index (its place among the graph's
    outputs as TF.js lists them: the graph may order them unlike Keras), output (the signature's
    tensor name), layer, threshold, quality, metrics}, found by the Keras layer each output comes
    from; threshold, quality and metrics as ``lungseg.bundle.outputs`` reads the card."""
    described = bundle.outputs(card)
    layers = {facts["layer"]: d for d, facts in described.items() if "layer" in facts}
    nodes = {node["name"]: node for node in model_json["modelTopology"]["node"]}
    names = [v["name"] for v in model_json["signature"]["outputs"].values()]
    found = {}
    for index, name in enumerate(names):
        node, definition = nodes.get(name.split(":")[0]), None
        while node is not None and layers and definition is None:   # back through Identity/Sigmoid
            layer = _layer_of(node["name"], list(layers))
            definition = layers.get(layer)
            inputs = [i for i in node.get("input", []) if not i.startswith("^")]
            node = nodes.get(inputs[0].split(":")[0]) if inputs else None
        definition = definition or ("visible" if not layers and index == 0 else None)
        if definition:
            found[definition] = {"definition": definition, "index": index, "output": name,
                                 "layer": described[definition].get("layer")}
    missing = sorted(set(described) - set(found))
    if missing:
        raise RuntimeError(f"the exported graph has no output for {', '.join(missing)} (outputs: {names})")
    return {d: {**found[d], "threshold": facts["threshold"], "quality": facts["quality"],
                "metrics": facts.get("metrics", {})}
            for d, facts in described.items()}   # the card's order: the visible field first


def _converter() -> list[str]:
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # tfdf's banner imports IPython
    exe = Path(sys.executable).with_name("tensorflowjs_converter")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tensorflowjs.converters.converter"]


def export_model(model_dir: str | Path | None = None, out: str | Path = DEFAULT_OUT,
                 dtype: str = DEFAULT_DTYPE, quiet: bool = False, extra: dict | None = None) -> dict:
    """Export a saved model folder to TF.js in ``out``; returns the metadata written there."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    folder = bundle.resolve(model_dir or bundle.DEFAULT_MODEL)
    model, card = bundle.load(folder)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="lungseg-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        converted = Path(tmp) / "tfjs"
        command = _converter() + [
            "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
            "--signature_name=serving_default", "--saved_model_tags=serve",
            "--weight_shard_size_bytes=4194304", *DTYPES[dtype], str(saved), str(converted)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"tensorflowjs_converter failed:\n{result.stderr[-4000:]}")
        model_json = json.loads((converted / "model.json").read_text())
        fixed = fix_fused_biases(model_json)
        (converted / "model.json").write_text(json.dumps(model_json, separators=(",", ":")))
        # Replace the previous export's files only (keep anything else a user put there).
        out.mkdir(parents=True, exist_ok=True)
        for old in list(out.glob("group*-shard*of*.bin")) + [out / "model.json", out / "metadata.json"]:
            old.unlink(missing_ok=True)
        files = {}
        for path in sorted(converted.iterdir()):
            shutil.copy2(path, out / path.name)
            files[path.name] = path.stat().st_size

    signature = model_json.get("signature", {})
    inputs = {k: v.get("name", k) for k, v in signature.get("inputs", {}).items()}
    outputs = {k: v.get("name", k) for k, v in signature.get("outputs", {}).items()}
    from importlib.metadata import version

    metadata = {
        "name": card.get("name", model.name),
        "version": card.get("version", ""),
        "architecture": card.get("architecture", ""),
        "input_size": card.get("input_size"),
        "threshold": float(card.get("threshold", 0.5)),
        "postprocess": {"keep_largest": int(card.get("postprocess", {}).get("keep_largest", 0)),
                        "fill_holes": bool(card.get("postprocess", {}).get("fill_holes", False))},
        "metrics": card.get("metrics", {}),
        "training": card.get("training", {}),
        "quality": card.get("quality"),           # the visible field's estimator (web/js/quality.js)
        "outputs": map_outputs(model_json, card),  # per lung definition: graph output, threshold, quality
        "dtype": dtype,
        "bytes": sum(files.values()),
        "files": files,
        "input": "image: float32 (1, H, W, 3) raw RGB 0-255, any H and W",
        "output": "float32 (1, H, W, 1) lung probability at the input's size, one per lung definition (outputs)",
        "signature": {"inputs": inputs, "outputs": outputs},
        "wasm_bias_fix": fixed,
        "source": {"model_dir": _display_path(folder),
                   "model_sha256": _sha256(folder / bundle.MODEL_FILE),
                   "card": card},
        "exported": {"tensorflowjs": version("tensorflowjs"),
                     "at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    metadata.update(extra or {})
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    if not quiet:
        print(f"exported {_display_path(folder)} ({metadata['name']} {metadata['version']}) -> "
              f"{_display_path(out)}: {dtype}, {metadata['bytes'] / 1e6:.2f} MB in {len(files)} files"
              + (f"; wasm bias fix on {len(fixed)} weight(s)" if fixed else ""))
    return metadata
