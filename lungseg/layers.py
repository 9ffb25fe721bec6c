"""The model's own preprocessing and resizing layers.

They are part of every saved and exported model, so Python and the browser feed the same
raw 0-255 RGB pixels and cannot drift: resizing to the model's input size and VGG's
"caffe" normalisation happen inside the graph (as ResizeBilinear, Sub and a channel flip,
which TensorFlow.js runs exactly). So does the per-X-ray intensity standardisation of models
trained with it: a washed-out, dark or flat export reaches VGG with the contrast of a typical
training X-ray.
"""
import keras
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
