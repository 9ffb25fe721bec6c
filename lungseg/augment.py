"""Training-time augmentation of raw X-rays and their masks (tf.data, seeded).

Geometry (small rotations, scales, shifts) moves image and mask together; photometry
(brightness, contrast, gamma) changes the image alone, so the model holds up on X-rays
exposed and processed differently from the training hospital's.
"""
import keras
import tensorflow as tf

ROTATION = 10 / 360   # +-10 degrees, as a fraction of a full turn
ZOOM = 0.12           # +-12 % scale
SHIFT = 0.06          # +-6 % of the side
GAMMA = (0.7, 1.4)
CONTRAST = (0.75, 1.25)
BRIGHTNESS = 20.0     # +- on the 0-255 scale


def make_augmenter(seed: int):
    """Return a function (image uint8 HxWx3, mask float HxWx1) -> augmented (float image, mask)."""
    geometry = keras.Sequential([
        keras.layers.RandomRotation(ROTATION, fill_mode="constant", seed=seed),
        keras.layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed + 2),
    ])
    rng = tf.random.Generator.from_seed(seed)

    def augment(image, mask):
        image = tf.cast(image, tf.float32)
        both = geometry(tf.concat([image, mask], axis=-1), training=True)
        image, mask = both[..., :3], tf.cast(both[..., 3:] > 0.5, tf.float32)
        gamma = rng.uniform((), *GAMMA)
        contrast = rng.uniform((), *CONTRAST)
        brightness = rng.uniform((), -BRIGHTNESS, BRIGHTNESS)
        image = 255.0 * tf.pow(image / 255.0, gamma)
        mean = tf.reduce_mean(image)
        image = (image - mean) * contrast + mean + brightness
        return tf.clip_by_value(image, 0.0, 255.0), mask

    return augment
