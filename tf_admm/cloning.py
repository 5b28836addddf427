"""Copies of layers and models: fresh layers from their configs, models rebuilt layer by layer
(nested models too), and the float32 copy a converter needs of a mixed-precision model.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="mixed_float16")])
>>> c = tf_admm.cloning.float32_copy(m)
>>> c.layers[0].compute_dtype, bool(np.all(c.get_weights()[0] == m.get_weights()[0]))
('float32', True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from tf_admm._keras import flat_layers, is_model, keras

__all__ = [
    "built_copy",
    "clone",
    "copy_model",
    "copy_with_weights",
    "flat_layers",
    "float32_copy",
    "fresh_copy",
    "rebuild",
]


def fresh_copy(layer, **overrides):
    """A new, unbuilt layer of the same class and config (``overrides`` replace entries)."""
    return layer.__class__.from_config({**layer.get_config(), **overrides})


def copy_with_weights(layer) -> tuple[Any, Callable]:
    """``(new layer, copy_fn)`` for :func:`rebuild`: a fresh copy whose ``copy_fn`` moves the
    weights over once built. A layer without weights that its config cannot rebuild (Keras 3
    refuses a ``Lambda`` around a Python lambda in safe mode) is shared instead: it holds no
    state, and the user's function is theirs, not a file's.

    >>> from tf_admm import keras
    >>> double = keras.layers.Lambda(lambda t: 2 * t)
    >>> copy_with_weights(double)[0] is double or keras.__version__.startswith("2.")
    True
    """
    if not layer.weights:
        try:
            return fresh_copy(layer), lambda new: None
        except ValueError:
            return layer, lambda new: None
    return fresh_copy(layer), lambda new: new.set_weights(layer.get_weights())


def copy_model(model) -> Any:
    """A copy of ``model`` (nested models too) with its weights; the layers are new except the
    stateless ones :func:`copy_with_weights` shares."""
    return rebuild(model, copy_with_weights)


def built_copy(layer):
    """A fresh copy built like ``layer`` (multi-input layers such as MultiHeadAttention need
    their recorded build config, not one input shape)."""
    import tensorflow as tf

    new = fresh_copy(layer)
    config = layer.get_build_config() if layer.built else None
    if config:
        # tf_keras names a variable by the name scope it is created in: building outside a
        # call would name every kernel "kernel:0", and the legacy .h5 format (optimizer slots
        # included) needs the names unique
        with tf.name_scope(new.name):
            new.build_from_config(config)
    if layer.built and len(new.weights) < len(layer.weights):
        _build_by_calling(new, layer)
    return new


def _build_by_calling(new, layer) -> None:
    """Layers that create their weights only when called (tf_keras's MultiHeadAttention):
    call the copy once on zeros shaped from the original's kernels."""
    import tensorflow as tf

    if not isinstance(layer, keras.layers.MultiHeadAttention):
        return
    kernels = {}
    for weight in layer.weights:
        name = (getattr(weight, "path", None) or weight.name).split(":")[0].split("/")
        if name[-1] == "kernel":
            kernels[name[-2]] = tuple(weight.shape)
    dims = {part: kernels[part][0] for part in ("query", "key", "value") if part in kernels}
    if len(dims) == 3:
        zeros = {part: tf.zeros((1, 1, dim)) for part, dim in dims.items()}
        new(zeros["query"], zeros["value"], key=zeros["key"])


def clone(model, clone_function: Callable | None = None) -> Any:
    """``keras.models.clone_model``, compiled like ``model`` wherever that can be rebuilt.

    Keras 3 compiles a clone from the original's compile config inside ``clone_model``, which
    raises when the config names a loss or metric that is not registered (a plain function
    passed to ``compile``). Here the clone is made uncompiled, then compiled from the config;
    where that fails, it is returned uncompiled with a warning that says why, and the user
    compiles it as after any TFMOT wrapper. tf_keras never compiles a clone.

    >>> from tf_admm import keras
    >>> from tf_admm.cloning import clone
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    >>> c = clone(m)
    >>> c is not m, c.get_layer("d") is not m.get_layer("d")
    (True, True)
    """
    compiled = getattr(model, "compiled", False) is True  # Keras 3's public flag
    if compiled:
        model.compiled = False  # only for the copy; restored below whatever happens
    try:
        copy = keras.models.clone_model(model, clone_function=clone_function)
    finally:
        if compiled:
            model.compiled = True
    if compiled:
        try:
            copy.compile_from_config(model.get_compile_config())
        except (TypeError, ValueError) as error:
            warnings.warn(
                f"The copy of model {model.name!r} is returned uncompiled: its compile config "
                f"could not be rebuilt ({str(error).splitlines()[0]}). Compile it before "
                "fit, or register the loss and metrics with "
                "keras.saving.register_keras_serializable.",
                stacklevel=3,
            )
    return copy


def rebuild(model, replace: Callable) -> Any:
    """Clone ``model`` (nested models recursively) with ``replace(layer) -> (new, copy_fn)``;
    ``copy_fn(new)`` moves the weights over once the clone is built."""
    copies = []

    def clone_function(layer):
        if is_model(layer):
            return rebuild(layer, replace)
        new, copy_fn = replace(layer)
        copies.append((new, copy_fn))
        return new

    copy = clone(model, clone_function=clone_function)
    for new, copy_fn in copies:
        copy_fn(new)
    return copy


def uses_reduced_precision(model) -> bool:
    """True when a layer computes in float16 or bfloat16 (a mixed-precision policy)."""
    return any(
        getattr(layer, "compute_dtype", "float32") in ("float16", "bfloat16")
        for layer in flat_layers(model)
    )


def float32_copy(model):
    """``model`` rebuilt with every layer computing in float32, same weights (cast): the form
    the TFLite converter takes, since it has no float16 MatMul or Conv kernels."""

    def replace(layer):
        new = fresh_copy(layer, dtype="float32")
        return new, lambda n: n.set_weights([w.astype("float32") for w in layer.get_weights()])

    return rebuild(model, replace)
