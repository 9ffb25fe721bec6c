"""LungSeg: lung segmentation of chest X-rays with VGG19 features.

    from lungseg import Segmenter
    mask = Segmenter.load().predict("xray.png")   # (H, W) uint8, 1 = lung

TensorFlow is imported only when a Segmenter is first needed, so reading images, the rules
and ``lungseg --help`` stay fast.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of the CLI

from .imageio import ImageError, read_image, read_mask  # noqa: E402

__all__ = ["Segmenter", "ImageError", "read_image", "read_mask"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Segmenter":
        from .inference import Segmenter
        return Segmenter
    raise AttributeError(f"module 'lungseg' has no attribute {name!r}")
