"""The segmentation models: raw RGB image (any size, 0-255) in, lung probability out.

Every model maps (batch, H, W, 3) raw pixels to (batch, H, W, 1) lung probabilities at the
input's own size; resizing and VGG preprocessing are layers of the model (lungseg.layers).

- ``seed``: the original method as a fully convolutional model. block1_conv2's 64 features
  per pixel at 48x48 -> Dense(512, tanh) -> Dropout(0.3) -> Dense(2, softmax), the dense
  layers as 1x1 convolutions.
- ``context``: the default. Frozen VGG19 features at three scales (block1_conv2,
  block2_conv2, block3_conv1) and a light decoder: a dilated-convolution context module and a
  pooled branch at 1/4 and 1/16 scale tell lung from other dark regions, then 1x1 projections
  of the finer VGG maps sharpen the boundary on the way up to full resolution.

Either can first standardise each X-ray's intensities to those of a typical training X-ray
(``intensity=TRAIN_INTENSITY``, layers.Preprocess), as ``lungseg train --robust`` builds them.
"""
import keras

from .backbone import vgg19_features
from .layers import Preprocess, Resize, ResizeLike

#: Mean and standard deviation of a COVID-QU-Ex Train X-ray's grey levels at 192 px (the means
#: over its 3728 X-rays: 135.4 and 56.1); a robust model standardises every X-ray to them.
TRAIN_INTENSITY = (135.0, 56.0)


def _image_input() -> keras.KerasTensor:
    return keras.Input((None, None, 3), name="image")


def build_seed(input_size: int = 48, intensity: tuple[float, float] | None = None) -> keras.Model:
    """The original per-pixel method: block1_conv2 -> Dense(512, tanh) -> Dropout -> Dense(2)."""
    image = _image_input()
    (features,) = vgg19_features(Preprocess(input_size, intensity, name="preprocess")(image), ("block1_conv2",))
    hidden = keras.layers.Conv2D(512, 1, activation="tanh", name="dense_512")(features)
    hidden = keras.layers.Dropout(0.3, name="dropout")(hidden)
    classes = keras.layers.Conv2D(2, 1, activation="softmax", name="dense_2")(hidden)
    lung = classes[..., 1:2]
    return keras.Model(image, ResizeLike(name="probability")([lung, image]), name="seed")


def conv_bn_relu(x, filters: int, kernel: int, name: str, dilation: int = 1):
    x = keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                            use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def build_context(input_size: int = 192, width: int = 64,
                  intensity: tuple[float, float] | None = None) -> keras.Model:
    """The default model: VGG19 features at 1, 1/2 and 1/4 scale with a context decoder."""
    s = input_size
    image = _image_input()
    f1, f2, f3 = vgg19_features(Preprocess(s, intensity, name="preprocess")(image),
                                ("block1_conv2", "block2_conv2", "block3_conv1"))
    # Context at 1/4 scale: residual dilated convolutions see a wide part of the chest.
    c = conv_bn_relu(f3, width, 1, "ctx_in")
    for d in (1, 2, 4, 8):
        c = keras.layers.Add(name=f"ctx_d{d}_add")([c, conv_bn_relu(c, width, 3, f"ctx_d{d}", dilation=d)])
    # A pooled branch at 1/16 scale sees the whole thorax.
    g = keras.layers.AveragePooling2D(4, name="global_pool")(c)
    g = conv_bn_relu(g, width, 3, "global_a")
    g = conv_bn_relu(g, width, 3, "global_b", dilation=2)
    c = keras.layers.Add(name="global_add")([c, Resize(s // 4, name="global_up")(g)])
    # Up to 1/2 scale with block2 features, then to full scale with block1 features.
    y = keras.layers.Add(name="half_add")([Resize(s // 2, name="half_up")(c), conv_bn_relu(f2, width, 1, "half_skip")])
    y = conv_bn_relu(y, 32, 3, "half_fuse")
    z = keras.layers.Add(name="full_add")([Resize(s, name="full_up")(y), conv_bn_relu(f1, 32, 1, "full_skip")])
    z = keras.layers.ReLU(name="full_relu")(z)
    logits = keras.layers.Conv2D(1, 1, name="logits")(z)
    logits = ResizeLike(name="to_input_size")([logits, image])
    return keras.Model(image, keras.layers.Activation("sigmoid", name="probability")(logits),
                       name="context")


#: Architecture name -> builder; a saved model's card names its architecture.
ARCHITECTURES = {"seed": build_seed, "context": build_context}
