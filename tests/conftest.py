"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and small model builders."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # pragma: no cover - already initialized
    pass

import tf_admm  # noqa: E402
from tf_admm import keras  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The docstring examples run once, under Keras 3 (CI's first pass); the tf_keras pass
    (TF_USE_LEGACY_KERAS=1) runs the tests, which cover both flavours where they differ."""
    if keras.__version__.startswith("3."):
        return
    skip = pytest.mark.skip(reason="docstring examples run under Keras 3 only")
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(skip)


# Keras 3's clear_session runs a full gc.collect() by default, which costs 0.5-2 s per test once
# the process holds a few hundred tests' worth of TensorFlow objects (a third of the Keras 3
# pass); Python's own collector still runs. tf_keras's clear_session has no such argument.
_CLEAR = {"free_memory": False} if keras.__version__.startswith("3.") else {}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(**_CLEAR)


def small_cnn(name: str = "small_cnn") -> keras.Model:
    """Functional: conv 4@3x3, flatten, dense 16, dense 3 on 8x8x1 inputs."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def small_data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, n).astype("int64")
    return x, y


def compile_model(model, optimizer=None) -> None:
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def wrappers(model):
    return tf_admm.find_wrappers(model)


def to_np(variable) -> np.ndarray:
    return np.asarray(tf.convert_to_tensor(variable))


def dequantized_constants(path: str) -> list[tuple[object, np.ndarray]]:
    """Every constant tensor of rank >= 2 in a .tflite file with its dequantized values
    (float64), read independently of export.py's matching."""
    from tf_admm.tflite_file import TFLiteFile

    with open(path, "rb") as handle:
        file = TFLiteFile(handle.read())
    out = []
    for const in file.all_constants():
        if len(const.shape) < 2:
            continue
        stored = const.dense().astype(np.float64)
        if const.dtype is np.int8:
            shape = [1] * len(const.shape)
            shape[const.quantized_dimension] = const.scales.size
            stored = stored * const.scales.astype(np.float64).reshape(shape)
        out.append((const, stored))
    return out


def subclassed_dense(inputs: int = 4):
    """A built subclassed model (one Dense): what the model-rebuilding entry points refuse."""

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, inputs), "float32"))
    return model
