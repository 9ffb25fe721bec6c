"""The model's own preprocessing and resizing layers.

They are part of every saved and exported model, so Python and the browser feed the same
raw 0-255 RGB pixels and cannot drift: resizing to the model's input size and VGG's
"caffe" normalisation happen inside the graph (as ResizeBilinear, Sub and a channel flip,
which TensorFlow.js runs exactly). So does the per-X-ray intensity standardisation of models
trained with it: a washed-out, dark or flat export reaches VGG with the contrast of a typical
training X-ray.

``resize_taps`` and ``resize_input`` are the same bilinear resize in numpy, value for value
(float32, the same operations in the same order), for parts of it: Python inference resizes a
full-size X-ray to the model's input size reading only the pixels the resize reads, and makes
full-size probabilities band by band (lungseg.postprocess) instead of in the graph.
"""
import keras
import numpy as np
import tensorflow as tf

#: ImageNet channel means in BGR order, as keras.applications.vgg19.preprocess_input uses.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="lungseg")
class Preprocess(keras.layers.Layer):
    """Raw RGB pixels (0-255, any size) -> the VGG input: resized to size x size, BGR, mean-free.

    With ``intensity=(mean, std)``, each resized X-ray's own mean and standard deviation (over
    all its pixels) are first mapped to these, so any linear change of exposure or contrast
    gives the same VGG input (a floor of 1 grey level keeps flat images finite).
    """

    def __init__(self, size: int, intensity: tuple[float, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.intensity = tuple(intensity) if intensity else None

    def call(self, image):
        image = tf.image.resize(image, (self.size, self.size), method="bilinear")
        if self.intensity:
            mean = tf.reduce_mean(image, axis=(1, 2, 3), keepdims=True)
            std = tf.sqrt(tf.reduce_mean(tf.square(image - mean), axis=(1, 2, 3), keepdims=True))
            image = (image - mean) * (self.intensity[1] / tf.maximum(std, 1.0)) + self.intensity[0]
        return image[..., ::-1] - tf.constant(IMAGENET_MEAN_BGR, dtype=image.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "intensity": self.intensity}


@keras.saving.register_keras_serializable(package="lungseg")
class Resize(keras.layers.Layer):
    """Bilinear resize of a feature map to a fixed size (exports as one ResizeBilinear op)."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, x):
        return tf.image.resize(x, (self.size, self.size), method="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="lungseg")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of ``x`` to the height and width of ``reference`` (the input image)."""

    def call(self, inputs):
        x, reference = inputs
        return tf.image.resize(x, tf.shape(reference)[1:3], method="bilinear")

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[-1])


def resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where ``tf.image.resize(method="bilinear")`` (half-pixel centres, no antialiasing) reads
    along one axis: for each output index its lower and upper input index and the float32 weight
    of the upper one, computed as TensorFlow's kernel does."""
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
    return lower, upper, position - floor


def resize_input(image: np.ndarray, size: int, invert: bool = False) -> np.ndarray:
    """``Preprocess``'s resize of an (H, W, C) uint8 image to (size, size, C) float32, equal to
    the graph's, reading only the 4 pixels per output pixel it reads (no full-size float copy);
    ``invert``: of ``255 - image``."""
    rows_lo, rows_hi, row_w = resize_taps(image.shape[0], size)
    cols_lo, cols_hi, col_w = resize_taps(image.shape[1], size)
    col_w = col_w[None, :, None]

    def taps(rows):
        picked = image[rows]
        out = [picked[:, cols_lo], picked[:, cols_hi]]
        return [(255 - p if invert else p).astype(np.float32) for p in out]
    (top_left, top_right), (bottom_left, bottom_right) = taps(rows_lo), taps(rows_hi)
    top = top_left + (top_right - top_left) * col_w
    bottom = bottom_left + (bottom_right - bottom_left) * col_w
    return top + (bottom - top) * row_w[:, None, None]
