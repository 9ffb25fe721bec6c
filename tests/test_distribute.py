"""``lungseg train --strategy``: MirroredStrategy on two logical CPU devices trains as one device does,
and a mirrored run checkpoints and resumes (in a subprocess: devices are set before TF starts).

Why the steps are compared outside ``train``: its losses differ from run to run even on one device
(augmentation is drawn in a parallel tf.data map), so the comparison fine-tunes the committed
context model with the same loss, optimizer and global batches, without augmentation, and with
its BatchNormalization in inference mode (its learned statistics): in training mode each replica
would normalise by its own half batch, which is meant to differ from one device. What is left
differs only in float32 summation order (per-replica sums of ~65k pixels per image, the
all-reduce of the gradients): about sqrt(65536) * 1.2e-7 = 3e-5
relative, hence rtol 1e-4, well below what a distribution error (a batch not split, a gradient
not averaged: a loss off by 1e-2 or more after one step) would give.
"""
import json
import subprocess
import sys

import pytest

from conftest import DATA, ROOT, WEIGHTS, requires_data

SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from lungseg import bundle, losses, whole
from lungseg.datasets import find_samples
from lungseg.training import dataset, distribution, load_arrays, train

val, weights, out = sys.argv[1:]
x, y = load_arrays(find_samples(val)[:8])
result = {}
for strategy in ("default", "mirrored"):
    keras.utils.set_random_seed(0)
    distributed = distribution(strategy)
    with distributed.scope():       # a few more steps for the committed (context) model
        model = whole.visible_only(bundle.load()[0])
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.bce_dice_loss)
    history = model.fit(dataset(x, y, 4), epochs=3, verbose=0).history["loss"]
    result[strategy] = {"replicas": distributed.num_replicas_in_sync, "loss": history}
for epochs in (1, 2):   # a mirrored run of train(), then its resumption
    train(val, out, architecture="seed", backbone_weights=weights, epochs=epochs, batch_size=4,
          limit=8, val_limit=None, strategy="mirrored")
result["resumed"] = json.load(open(out + "/history.json"))
print(json.dumps(result))
"""


@requires_data
@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"VGG19 weights not found at {WEIGHTS}")
def test_mirrored_training_matches_one_device_and_resumes(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(DATA / "Val"), str(WEIGHTS),
                             str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    one, mirrored = found["default"], found["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    assert mirrored["loss"] == pytest.approx(one["loss"], rel=1e-4), (one, mirrored)
    assert abs(one["loss"][-1] - one["loss"][0]) > 100 * 1e-4 * one["loss"][0]   # the steps did train
    assert [row["epoch"] for row in found["resumed"]] == [1, 2]
    assert (tmp_path / "run" / "best" / "model.keras").is_file()
