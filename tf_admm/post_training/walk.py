"""The linear layers of a model, nested ones included, and their inputs on calibration data.

Post-training compression works on the layers that multiply their input by a kernel
(:data:`.linear_maps.LINEAR`), wherever they sit: in the model itself, or inside a layer that
holds others (KerasHub's ``TransformerDecoder``, ``MultiHeadAttention``, a user's block). Each
is named by its path, the names from the model down joined by ``/`` (``"block0/self_attention
/query"``), found through the attributes that hold sublayers, as Keras itself tracks them.

A layer's inputs are read while the model runs: its ``call`` is wrapped for the duration of
one pass over the calibration batches, so whatever computes them (a functional graph, a custom
layer's Python) is the model's own code.

>>> import numpy as np
>>> from tf_admm import keras
>>> inputs = keras.Input((4,))
>>> block = keras.layers.MultiHeadAttention(2, 2, name="attention")
>>> x = keras.layers.Reshape((2, 2))(inputs)
>>> model = keras.Model(inputs, block(x, x))
>>> [path for path, _ in linear_layers(model)]
['attention/query', 'attention/key', 'attention/value', 'attention/attention_output']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tf_admm._keras import keras
from tf_admm.post_training.linear_maps import LINEAR, linear_map

__all__ = ["calling_order", "gram", "linear_layers", "reading_inputs"]


def _sublayers(layer) -> list:
    """The layers ``layer`` holds in its attributes (lists, tuples and dicts of them too)."""
    found = []
    for value in vars(layer).values():
        items = value.values() if isinstance(value, dict) else value
        if not isinstance(items, (list, tuple)) or isinstance(items, str):
            items = [value]
        found.extend(v for v in items if isinstance(v, keras.layers.Layer) and v is not layer)
    return found


def linear_layers(model) -> list[tuple[str, Any]]:
    """``(path, layer)`` of every linear layer of ``model``, nested ones included, each once,
    in the order of ``model.layers`` (then of the attributes that hold them)."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def visit(layer, prefix: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        path = f"{prefix}{layer.name}"
        if isinstance(layer, LINEAR):
            found.append((path, layer))
            return
        for sub in _sublayers(layer):
            visit(sub, path + "/")

    for layer in model.layers:
        visit(layer, "")
    return found


@contextlib.contextmanager
def _reading(layer, record: Callable[[Any], None]) -> Iterator[None]:
    """``layer.call`` records its first argument while the block runs."""
    original = layer.call

    def call(inputs, *args, **kwargs):
        record(inputs)
        return original(inputs, *args, **kwargs)

    layer.call = call
    try:
        yield
    finally:
        del layer.call  # the class's own call again


def _run(model, batches) -> None:
    for batch in batches:
        model(batch if len(batch) > 1 else batch[0], training=False)


def reading_inputs(model, layer, batches, record: Callable[[Any], None]) -> None:
    """Run ``model`` on every batch; ``record`` gets each input ``layer`` is called with."""
    with _reading(layer, record):
        _run(model, batches)


def calling_order(model, layers: list, batch) -> list:
    """``layers`` in the order the model first calls them on ``batch``; a layer it never calls
    is left out."""
    order: list = []
    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.enter_context(
                _reading(layer, lambda _, l=layer: None if l in order else order.append(l))
            )
        _run(model, [batch])
    return order


def gram(model, layer, batches) -> np.ndarray:
    """``Xᵀ X`` per group (:mod:`.linear_maps`) of ``layer``'s inputs over ``batches`` (lists
    of model inputs), read while ``model`` runs: one batch of rows at a time."""
    linear = linear_map(layer)
    total: list[np.ndarray] = []

    def record(inputs) -> None:
        rows = linear.rows(np.asarray(inputs))
        part = rows.transpose(0, 2, 1) @ rows
        if total:
            total[0] += part
        else:
            total.append(part)

    reading_inputs(model, layer, batches, record)
    return total[0]
