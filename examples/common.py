"""Shared pieces of the examples and benchmarks: MNIST loading and the Caffe LeNet-5.

``benchmarks/common.py`` is a link to this file: a script in either directory imports it as
``common`` from its own directory, with no change to ``sys.path``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow start-up noise

import numpy as np
import tensorflow as tf

import tf_admm
from tf_admm import keras

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist.npz"))

# The ECCV'18 one-shot ADMM per-layer pruning targets for LeNet-5 (about 71x overall).
ECCV18_TARGETS = {"conv1": 0.80, "conv2": 0.92, "fc1": 0.991, "fc2": 0.93}


def load_mnist(path: str | None = None):
    """(x_train, y_train), (x_test, y_test) as float32 in [0, 1], shape (n, 28, 28, 1).

    Reads ``path`` (Keras npz layout) or ../shared/data/mnist.npz; falls back to
    keras.datasets.mnist (which downloads) only when no path was given and the default file
    does not exist. A missing file ends the program with one line naming --data.
    """
    layout = "an .npz with x_train, y_train, x_test, y_test (uint8, Keras layout)"
    if path is not None and not os.path.exists(path):
        raise SystemExit(f"--data {path}: no such file; give the path of {layout}.")
    path = path or DEFAULT_MNIST
    if os.path.exists(path):
        with np.load(path) as data:
            parts = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    else:
        try:
            (a, b), (c, d) = keras.datasets.mnist.load_data()
        except Exception:
            raise SystemExit(
                f"MNIST not found at {path} and keras.datasets could not download it: "
                f"pass --data PATH to {layout}."
            ) from None
        parts = a, b, c, d
    x_train, y_train, x_test, y_test = parts
    prep = lambda x: (x.astype("float32") / 255.0)[..., None]  # noqa: E731
    return (prep(x_train), y_train.astype("int64")), (prep(x_test), y_test.astype("int64"))


def mean_std(values) -> tuple[float, float]:
    """The mean of ``values`` and their sample standard deviation (ddof=1; 0 for one value):
    how every table of the docs summarizes seeds.

    >>> mean_std([80.0, 82.0])[0], round(mean_std([80.0, 82.0])[1] ** 2, 6), mean_std([1.0])
    (81.0, 2.0, (1.0, 0.0))
    """
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def hold_out(x, y, n: int = 5000):
    """``(x, y)`` without its last ``n`` examples, and those ``n``: the validation split of the
    examples and benchmarks (55,000 + 5,000 of the MNIST training images)."""
    return (x[:-n], y[:-n]), (x[-n:], y[-n:])


def dataset(x, y, batch_size: int, shuffle: bool, seed: int = 0, shift: int = 0) -> tf.data.Dataset:
    """Batches of (x, y); ``shift`` > 0 moves each image by up to that many pixels in each
    direction (zero padding, then a random 28x28 crop), anew every epoch."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if shift:
        size = x.shape[1:]

        def move(image, label):
            padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
            return tf.image.random_crop(padded, size, seed=seed), label

        ds = ds.map(move, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def lenet5() -> keras.Model:
    """The Caffe LeNet-5: conv 20@5x5, pool, conv 50@5x5, pool, dense 500 (ReLU), dense 10.

    430,500 weights plus 580 biases; outputs logits.
    """
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(20, 5, name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(50, 5, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(500, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="fc2")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def lenet300() -> keras.Model:
    """LeNet-300-100: dense 300 (ReLU), dense 100 (ReLU), dense 10 on flattened 28x28 images.

    266,200 weights plus 410 biases; outputs logits.
    """
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(10, name="fc3")(x)
    return keras.Model(inputs, outputs, name="lenet300")


def compile_for_mnist(model: keras.Model, learning_rate: float, decay_steps: int = 0) -> None:
    """Adam with cosine decay to zero over ``decay_steps`` (constant rate when 0)."""
    rate = learning_rate
    if decay_steps:
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def weight_counts(model: keras.Model, names) -> dict[str, tuple[int, int]]:
    """{layer: (weights, nonzeros)} of the named layers of a plain model (from tf_admm.summary)."""
    rows = {row["layer"]: row for row in tf_admm.summary(model, print_fn=None)["layers"]}
    return {name: (rows[name]["weights"], rows[name]["nonzeros"]) for name in names}


def tfmot_gmp(model, targets: dict, end_step: int, frequency: int = 100):
    """TFMOT's gradual magnitude pruning of ``model`` (tf_keras only): the layers named in
    ``targets`` wrapped with a PolynomialDecay from 0 to their target over ``end_step`` steps,
    masks updated every ``frequency`` steps. The clone shares ``model``'s layers (TFMOT wraps
    the layers it is given), so pass a model you do not need afterwards."""
    import tensorflow_model_optimization as tfmot

    def wrap(layer):
        if layer.name not in targets:
            return layer
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=targets[layer.name],
            begin_step=0,
            end_step=end_step,
            frequency=frequency,
        )
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    return keras.models.clone_model(model, clone_function=wrap)
