"""VGG19 feature extractor: the ImageNet-trained convolution layers up to a chosen layer.

The layers carry Keras' own names (block1_conv1, ...), so weights load from Keras'
``VGG19(weights="imagenet")`` download or, offline, from an .npz file holding
``<layer>/kernel`` and ``<layer>/bias`` arrays (see ``load_vgg19_weights``).
"""
from pathlib import Path

import keras
import numpy as np

#: VGG19's convolution layers in order, with their filter counts; a pool ends each block.
VGG19_CONVS = (
    ("block1_conv1", 64), ("block1_conv2", 64),
    ("block2_conv1", 128), ("block2_conv2", 128),
    ("block3_conv1", 256), ("block3_conv2", 256), ("block3_conv3", 256), ("block3_conv4", 256),
    ("block4_conv1", 512), ("block4_conv2", 512), ("block4_conv3", 512), ("block4_conv4", 512),
    ("block5_conv1", 512), ("block5_conv2", 512), ("block5_conv3", 512), ("block5_conv4", 512),
)


def vgg19_features(x, outputs: tuple[str, ...], trainable: bool = False) -> list:
    """Run VGG19's layers on preprocessed ``x`` up to the last of ``outputs``; return those maps."""
    wanted, found = set(outputs), {}
    block = "block1"
    for name, filters in VGG19_CONVS:
        if not name.startswith(block + "_"):
            x = keras.layers.MaxPooling2D(2, name=f"{block}_pool")(x)
            block = name.split("_")[0]
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name,
                                trainable=trainable)(x)
        if name in wanted:
            found[name] = x
            if len(found) == len(wanted):
                return [found[n] for n in outputs]
    raise ValueError(f"not VGG19 layers: {sorted(wanted - set(found))}")


def load_vgg19_weights(model: keras.Model, source: str | Path = "imagenet") -> int:
    """Set the VGG19 layers of ``model`` from ``source``: "imagenet" (Keras' download) or an .npz.

    Returns how many layers were set; raises if a VGG layer of the model has no weights there.
    """
    names = [layer.name for layer in model.layers if layer.name in dict(VGG19_CONVS)]
    if str(source) == "imagenet":
        vgg = keras.applications.VGG19(include_top=False, weights="imagenet")
        weights = {n: vgg.get_layer(n).get_weights() for n in names}
    else:
        with np.load(source) as archive:
            missing = [n for n in names if f"{n}/kernel" not in archive]
            if missing:
                raise ValueError(f"{source} has no weights for {missing}")
            weights = {n: [archive[f"{n}/kernel"], archive[f"{n}/bias"]] for n in names}
    for name in names:
        model.get_layer(name).set_weights(weights[name])
    return len(names)
