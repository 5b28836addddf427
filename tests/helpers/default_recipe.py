"""The default recipes on a small model, through the public API only.

``tests/test_schedules.py`` compares what these return with numbers recorded from the code
before ADMM schedules became objects (``tests/data/default_recipe_<flavour>.npz``), so the
defaults a user gets with ``UpdateADMM()`` stay the measured recipe. Regenerate only on purpose:

    python tests/helpers/default_recipe.py            # Keras 3
    TF_USE_LEGACY_KERAS=1 python tests/helpers/default_recipe.py
"""

from __future__ import annotations

import os

import numpy as np

import tf_admm
from tf_admm import keras

RECIPES = ("gradual", "gradual_gradient", "quantize")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12)).astype("float32")
    y = (x[:, :3].sum(1) > 0).astype("int64") + (x[:, 3] > 0.5).astype("int64")
    return x, y


def _model():
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(16, activation="relu", name="fc1"),
            keras.layers.Dense(3, name="fc2"),
        ]
    )


def _compile(model) -> None:
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def run(recipe: str) -> list[np.ndarray]:
    """Wrap, ADMM for 3 epochs of 16 steps with ``UpdateADMM`` as the docs show it, hard
    projection, 1 epoch of retraining; the stripped model's weights."""
    x, y = _data()
    dense = _model()
    if recipe == "quantize":
        wrapped = tf_admm.compress(dense, sparsity=0.5, bits=3)
    else:
        wrapped = tf_admm.prune_low_magnitude(dense, 0.8)
    _compile(wrapped)
    data = (x[:64], y[:64]) if recipe == "gradual_gradient" else None
    callback = tf_admm.UpdateADMM(gradient_data=data) if data else tf_admm.UpdateADMM()
    wrapped.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[callback])
    tf_admm.hard_project(wrapped)
    wrapped.fit(
        x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[tf_admm.UpdateADMM()]
    )
    return [np.asarray(w) for w in tf_admm.strip_admm(wrapped).get_weights()]


def recorded_path() -> str:
    flavour = "tf_keras" if tf_admm._keras.LEGACY else "keras3"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "data", f"default_recipe_{flavour}.npz")


if __name__ == "__main__":
    arrays = {}
    for name in RECIPES:
        for i, w in enumerate(run(name)):
            arrays[f"{name}/{i}"] = w
    np.savez(recorded_path(), **arrays)
    print("wrote", recorded_path(), len(arrays), "arrays")
