"""Export a saved LungSeg model to TensorFlow.js for the in-browser page (web/).

    python -m export                      # lungseg/weights/default -> web/model/ (float16)
    python -m export MODEL_DIR --out DIR --dtype float32|float16|uint8
    python -m export.parity               # browser (wasm) vs Keras on real Val X-rays

The export is a TF.js *graph model* (Keras 3 ``model.export`` SavedModel ->
``tensorflowjs_converter``) with a dynamic input (batch, H, W, 3): raw RGB 0-255 of any size
in, lung probability at that size out (one output per lung definition the model outlines).
``metadata.json`` beside ``model.json`` carries what the page needs (threshold, clean-up, input
size, metrics, dtype, download size, and per definition its graph output, threshold and quality
estimator), read from the model's card, so nothing about the model is written into the page.
"""
from .convert import DTYPES, export_model

__all__ = ["DTYPES", "export_model"]
