"""Training-time augmentation of raw X-rays and their masks (tf.data, seeded).

Geometry (small rotations, scales, shifts) moves image and mask together; photometry (gamma,
contrast, brightness) changes the image alone. With ``robust``, also what devices and exports do,
in their order: a one-sided crop, a wider gamma range, the grey range squeezed into a band, loss
of detail (blur or a low-resolution copy), sensor noise, lossy compression, then 8-bit rounding;
each drawn at random over a range wider than lungseg.perturb's benchmark settings, so a model
learns to ignore them rather than one setting of each.
"""
import math

import keras
import tensorflow as tf

ROTATION = 10 / 360   # +-10 degrees, as a fraction of a full turn
ZOOM = 0.12           # +-12 % scale
SHIFT = 0.06          # +-6 % of the side
GAMMA = (0.7, 1.4)    # log-uniform
CONTRAST = (0.75, 1.25)
BRIGHTNESS = 20.0     # +- on the 0-255 scale
#: With ``robust``: a wider gamma range, and each degradation's chance and range.
ROBUST_GAMMA = (0.45, 2.2)
CROP = (0.15, (0.05, 0.25))       # a fraction of the side cut off at one side, stretched back
BAND = (0.25, (0.15, 1.0))        # the grey range squeezed into a band this wide, anywhere in 0-255
BLUR = (0.15, (0.5, 2.5))         # Gaussian sigma in pixels
LOW_RES = (0.15, (0.35, 0.75))    # down to this fraction of the side and back up
NOISE = (0.25, (2.0, 12.0))       # Gaussian sigma in grey levels
JPEG = (0.2, (8, 60))             # JPEG quality
AUGMENTATION = "rotation, zoom, shift, gamma, contrast, brightness"
ROBUST_AUGMENTATION = ("rotation, zoom, shift, one-sided crop; gamma 0.45-2.2, contrast, brightness, "
                       "grey range squeezed into a band, blur, low resolution, noise, JPEG; 8-bit rounding")


def make_augmenter(seed: int, robust: bool = False):
    """Return a function (image uint8 HxWx3, mask float HxWx1) -> augmented (float image, mask)."""
    geometry = keras.Sequential([
        keras.layers.RandomRotation(ROTATION, fill_mode="constant", seed=seed),
        keras.layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed + 2),
    ])
    rng = tf.random.Generator.from_seed(seed)

    def uniform(low, high):
        return rng.uniform((), low, high)

    def maybe(chance, degrade, x):
        return tf.cond(uniform(0.0, 1.0) < chance, lambda: degrade(x), lambda: x)

    def crop(both):
        size = tf.shape(both)[:2]
        side = tf.cast(uniform(0.0, 4.0), tf.int32)  # top, bottom, left, right
        cut = tf.cast(uniform(*CROP[1]) * tf.cast(size[side // 2], tf.float32), tf.int32)
        top, left = tf.where(side == 0, cut, 0), tf.where(side == 2, cut, 0)
        height = size[0] - tf.where(side < 2, cut, 0)
        width = size[1] - tf.where(side >= 2, cut, 0)
        kept = tf.image.crop_to_bounding_box(both, top, left, height, width)
        return tf.image.resize(kept, size)

    def band(image):
        width = 255.0 * uniform(*BAND[1])
        low = uniform(0.0, 255.0 - width)
        return tf.round(low + image * (width / 255.0))

    def blur(image):
        sigma = uniform(*BLUR[1])
        taps = tf.range(-7.0, 8.0)
        kernel = tf.exp(-0.5 * tf.square(taps / sigma))
        kernel = kernel / tf.reduce_sum(kernel)
        kernel = tf.tile(kernel[:, None, None, None], (1, 1, 3, 1))
        x = tf.nn.depthwise_conv2d(image[None], kernel, (1, 1, 1, 1), "SAME")
        x = tf.nn.depthwise_conv2d(x, tf.transpose(kernel, (1, 0, 2, 3)), (1, 1, 1, 1), "SAME")
        return x[0]

    def low_res(image):
        size = tf.shape(image)[:2]
        small = tf.cast(tf.cast(size, tf.float32) * uniform(*LOW_RES[1]), tf.int32)
        return tf.image.resize(tf.image.resize(image, small), size)

    def noise(image):
        grain = rng.normal(tf.concat([tf.shape(image)[:2], [1]], 0)) * uniform(*NOISE[1])
        return image + grain

    def jpeg(image):
        quality = tf.cast(uniform(*JPEG[1]), tf.int32)
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return tf.cast(tf.image.adjust_jpeg_quality(pixels, quality), tf.float32)

    def augment(image, mask):
        image = tf.cast(image, tf.float32)
        both = geometry(tf.concat([image, mask], axis=-1), training=True)
        if robust:
            both = maybe(CROP[0], crop, both)
        image, mask = both[..., :3], tf.cast(both[..., 3:] > 0.5, tf.float32)
        low, high = ROBUST_GAMMA if robust else GAMMA
        gamma = tf.exp(uniform(math.log(low), math.log(high))) if robust else uniform(low, high)
        contrast = uniform(*CONTRAST)
        brightness = uniform(-BRIGHTNESS, BRIGHTNESS)
        image = 255.0 * tf.pow(tf.clip_by_value(image, 0.0, 255.0) / 255.0, gamma)
        mean = tf.reduce_mean(image)
        image = tf.clip_by_value((image - mean) * contrast + mean + brightness, 0.0, 255.0)
        if not robust:
            return image, mask
        image = maybe(BAND[0], band, image)
        image = maybe(BLUR[0], blur, image)
        image = maybe(LOW_RES[0], low_res, image)
        image = tf.clip_by_value(maybe(NOISE[0], noise, image), 0.0, 255.0)
        image = maybe(JPEG[0], jpeg, image)
        return tf.round(tf.clip_by_value(image, 0.0, 255.0)), mask

    return augment
