"""The TF.js export (python -m export): files, metadata read from the card, the wasm bias fix,
the dynamic input, and browser-vs-Keras parity of a fresh export (wasm, real Val X-rays)."""
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT, requires_data

sys.path.insert(0, str(ROOT))
from export import browser as eb  # noqa: E402
from export.__main__ import main as export_main  # noqa: E402
from export.convert import export_model, fix_fused_biases  # noqa: E402

from lungseg import bundle  # noqa: E402

WEB_MODEL = ROOT / "web" / "model"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default model exported (float32) to a temp dir: (folder, metadata, card)."""
    out = tmp_path_factory.mktemp("tfjs")
    metadata = export_model(bundle.DEFAULT_MODEL, out, "float32", quiet=True)
    return out, metadata, bundle.read_card(bundle.DEFAULT_MODEL)


def test_export_writes_graph_model_and_metadata(exported):
    out, meta, card = exported
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert "model.json" in files and "metadata.json" in files
    shards = [n for n in files if n.endswith(".bin")]
    assert shards, files
    saved = json.loads((out / "metadata.json").read_text())
    assert saved == meta
    # Everything the page needs comes from the card.
    for key in ("name", "version", "architecture", "input_size"):
        assert meta[key] == card[key]
    assert meta["threshold"] == pytest.approx(card["threshold"])
    assert meta["postprocess"] == {"keep_largest": card["postprocess"]["keep_largest"],
                                   "fill_holes": card["postprocess"]["fill_holes"]}
    assert meta["metrics"] == card.get("metrics", {})
    assert meta["dtype"] == "float32"
    assert meta["bytes"] == sum(size for name, size in files.items() if name != "metadata.json")
    assert set(meta["files"]) == {n for n in files if n != "metadata.json"}
    assert meta["source"]["model_sha256"] == hashlib.sha256(
        (bundle.DEFAULT_MODEL / "model.keras").read_bytes()).hexdigest()
    # A graph model with a dynamic (batch, H, W, 3) input.
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["format"] == "graph-model"
    (signature_input,) = model_json["signature"]["inputs"].values()
    dims = [int(d["size"]) for d in signature_input["tensorShape"]["dim"]]
    assert dims == [-1, -1, -1, 3]
    # No fused-op bias of rank > 1 is left (wasm's FusedConv2D needs rank-1 biases).
    biases = {n["input"][2] for n in model_json["modelTopology"]["node"]
              if n["op"].startswith("_Fused") and len(n["input"]) > 2}
    shapes = {w["name"]: w["shape"] for g in model_json["weightsManifest"] for w in g["weights"]}
    assert biases and all(len(shapes[b]) == 1 for b in biases if b in shapes)
    assert meta["bytes"] < 5_000_000
    # Each lung definition of the card -> the graph output made by its Keras layer, in TF.js's order.
    outputs = meta["outputs"]
    assert list(outputs) == list(card["outputs"]) == ["visible", "whole"]
    names = [v["name"] for v in model_json["signature"]["outputs"].values()]
    nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}
    for definition, output in outputs.items():
        facts = card["outputs"][definition]
        assert names[output["index"]] == output["output"] and output["layer"] == facts["layer"]
        assert output["threshold"] == facts["threshold"]
        assert output["quality"] == facts.get("quality", card["quality"] if definition == "visible" else None)
        head = nodes[nodes[output["output"].split(":")[0]]["input"][0]]   # Identity <- the layer's Sigmoid
        assert f"/{facts['layer']}_" in head["name"] or f"/{facts['layer']}/" in head["name"], head["name"]
    assert outputs["visible"]["quality"] == card["quality"] == meta["quality"]


def test_map_outputs_follows_layers_not_order():
    """A graph whose outputs come in another order than Keras's still maps each definition to its
    layer's output; a card naming a layer the graph lacks is refused."""
    from export.convert import map_outputs

    node = lambda name, op, *inputs: {"name": name, "op": op, "input": list(inputs)}
    graph = {"modelTopology": {"node": [
        node("image", "Placeholder"), node("m/whole_probability_1/Sigmoid", "Sigmoid", "image"),
        node("m/probability_1/Sigmoid", "Sigmoid", "image"),
        node("Identity", "Identity", "m/whole_probability_1/Sigmoid"), node("Identity_1", "Identity", "m/probability_1/Sigmoid")]},
        "signature": {"outputs": {"a": {"name": "Identity:0"}, "b": {"name": "Identity_1:0"}}}}
    card = {"threshold": 0.4, "quality": {"q": 1}, "outputs": {
        "visible": {"layer": "probability"}, "whole": {"layer": "whole_probability", "threshold": 0.6}}}
    mapped = map_outputs(graph, card)
    assert {d: (o["index"], o["output"], o["threshold"]) for d, o in mapped.items()} == {
        "visible": (1, "Identity_1:0", 0.4), "whole": (0, "Identity:0", 0.6)}
    assert mapped["visible"]["quality"] == {"q": 1} and mapped["whole"]["quality"] is None
    assert list(map_outputs(graph, {"threshold": 0.5})) == ["visible"]   # a one-output card
    with pytest.raises(RuntimeError, match="no output for whole"):
        map_outputs(graph, {"outputs": {"visible": {"layer": "probability"}, "whole": {"layer": "lobe"}}})


def test_fix_fused_biases_reshapes_rank4_bias():
    model_json = {
        "modelTopology": {"node": [
            {"name": "b", "op": "Const", "attr": {"value": {"tensor": {"tensorShape": {"dim": [{"size": "1"}] * 4}}}}},
            {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"]},
            {"name": "c", "op": "Const"}]},
        "weightsManifest": [{"weights": [{"name": "b", "shape": [1, 1, 1, 1]}, {"name": "w", "shape": [1, 1, 8, 1]},
                                         {"name": "c", "shape": [1, 1, 1, 1]}]}]}
    assert fix_fused_biases(model_json) == ["b"]
    weights = {w["name"]: w["shape"] for w in model_json["weightsManifest"][0]["weights"]}
    assert weights == {"b": [1], "w": [1, 1, 8, 1], "c": [1, 1, 1, 1]}


def test_export_cli_errors(tmp_path, capsys):
    assert export_main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert "model.keras" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["--dtype", "float8"])


def test_committed_web_model_is_the_export_of_its_source():
    """web/model/ must be re-exported whenever its source model changes (python -m export)."""
    meta = json.loads((WEB_MODEL / "metadata.json").read_text())
    source = eb.source_model(meta)
    card = bundle.read_card(source)
    assert hashlib.sha256((source / "model.keras").read_bytes()).hexdigest() == meta["source"]["model_sha256"], (
        f"web/model is stale: {source} changed since the export; run: python -m export --dtype auto")
    assert (meta["name"], meta["version"], meta["threshold"]) == (card["name"], card["version"], card["threshold"])
    for name, size in meta["files"].items():
        assert (WEB_MODEL / name).stat().st_size == size
    assert meta["bytes"] <= 5_000_000
    assert meta["dtype"] in ("float32", "float16", "uint8")


@requires_data
def test_browser_matches_keras_on_fresh_export(exported, browser):
    """The exported model in Chromium (wasm) vs Keras on real Val X-rays and an odd size."""
    if not eb.vendor_ready():
        if os.environ.get("CI"):
            pytest.fail("web/vendor missing: cd web && npm ci && node scripts/vendor.mjs")
        pytest.skip("web/vendor missing (cd web && npm ci && node scripts/vendor.mjs)")
    from export.parity import test_inputs as parity_inputs
    from lungseg import Segmenter

    out, meta, _ = exported
    seg = Segmenter.load(bundle.DEFAULT_MODEL)
    inputs = parity_inputs(2)   # two Val X-rays + one resized to 301x227
    with eb.harness_page(browser, {"/_t/": out}) as (page, _):
        info = eb.load_in_page(page, "/_t/", "wasm")
        assert info["backend"] == "wasm"
        assert info["meta"]["name"] == meta["name"]
        for name, rgb in inputs:
            for definition in seg.definitions:   # the visible lung field and the whole lung
                result = eb.segment_in_page(page, rgb, definition=definition)
                prob = seg.predict_proba(rgb, definition=definition)
                assert result["probability"].shape == rgb.shape[:2]
                assert float(np.abs(result["probability"] - prob).max()) < 1e-3, (name, definition)
                assert eb.iou(result["mask"], seg.to_mask(prob, definition=definition)) >= 0.999, (name, definition)


@requires_data
def test_an_export_without_outputs_gives_the_visible_field(exported, browser, tmp_path):
    """metadata.json of an export made before the model had two outputs (no `outputs`): the page
    runs the graph's first output as the visible lung field, and says it has no whole lung."""
    import shutil

    from lungseg import Segmenter, read_image

    out, meta, _ = exported
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "outputs"}))
    rgb = read_image(eb.val_images(1)[0])
    with eb.harness_page(browser, {"/_old/": old}) as (page, _):
        info = eb.load_in_page(page, "/_old/", "wasm")
        assert list(info["meta"]["outputs"]) == ["visible"]
        result = eb.segment_in_page(page, rgb)
        assert eb.iou(result["mask"], Segmenter.load(bundle.DEFAULT_MODEL).predict(rgb)) >= 0.999
        with pytest.raises(Exception, match="does not outline the whole lung"):
            eb.segment_in_page(page, rgb, definition="whole")
