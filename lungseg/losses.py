"""Training loss: binary cross-entropy plus soft Dice, on lung probabilities."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="lungseg")
def bce_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """Mean pixel BCE + (1 - soft Dice per image); balances boundary and overlap errors."""
    bce = keras.losses.binary_crossentropy(y_true, y_pred)
    bce = ops.mean(bce, axis=(1, 2))
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    return bce + 1.0 - (2.0 * inter + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="lungseg")
def bce_loss(y_true, y_pred):
    """Per-pixel cross-entropy alone: the seed model's loss (2-class softmax CE on the lung channel)."""
    return ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
