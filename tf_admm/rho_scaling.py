"""rho per layer from the scale of each layer's loss gradient.

Adam divides every weight's step by the running RMS of that weight's whole gradient. Where the
loss gradient ``g`` dominates it, the ADMM pull ``rho * (W - Z + U)`` moves the weight by about
``lr * rho * (W - Z + U) / |g|`` per step: one rho is a strong pull on a layer with small loss
gradients and a weak one on a layer with large gradients (``benchmarks/adam_pull.py``
measures it). :func:`scale_rho_by_gradient` evens this out by giving each wrapper a
``rho_scale`` proportional to its loss-gradient RMS; every layer's rho then grows by the same
factor (what it changed in accuracy: ``docs/research.md``).

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="a"),
...                          keras.layers.Dense(2, name="b")])
>>> pruned = tf_admm.prune_low_magnitude(base, 0.5)
>>> x, y = np.random.rand(32, 4), np.random.randint(0, 2, 32)
>>> rho = tf_admm.scale_rho_by_gradient(
...     pruned, (x, y), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> sorted(rho)
['admm_a', 'admm_b']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm._keras import keras
from tf_admm.updates import built_wrappers
from tf_admm.validation import check_int, check_non_negative

__all__ = ["rho_scales", "scale_rho_by_gradient", "scale_rho_by_size"]


def rho_scales(gradient_rms: dict[str, float], power: float = 1.0) -> dict[str, float]:
    """``(g / G) ** power`` per name, with G the geometric mean of the positive ``g``.

    The scales have geometric mean 1, so the rho of a typical layer stays the rho asked for.
    A layer without gradient (0) keeps scale 1.

    >>> rho_scales({"a": 4.0, "b": 1.0})
    {'a': 2.0, 'b': 0.5}
    >>> rho_scales({"a": 4.0, "b": 1.0}, power=0.0)
    {'a': 1.0, 'b': 1.0}
    """
    check_non_negative("power", power)
    positive = [g for g in gradient_rms.values() if g > 0]
    if not positive:
        return {name: 1.0 for name in gradient_rms}
    mean = math.exp(sum(math.log(g) for g in positive) / len(positive))
    return {name: (g / mean) ** power if g > 0 else 1.0 for name, g in gradient_rms.items()}


def _scale_fresh(wrappers: list, measure: Callable[[list], list], power: float) -> dict:
    """Set ``rho_scales`` of ``measure(fresh)`` (one value per wrapper not yet started) on
    those wrappers; the others keep theirs. Returns every wrapper's initial rho by name."""
    fresh = [w for w in wrappers if not w.initialized]
    if fresh:
        scales = rho_scales({w.name: g for w, g in zip(fresh, measure(fresh))}, power)
        for wrapper in fresh:
            wrapper.set_rho_scale(scales[wrapper.name])
    return {w.name: w.initial_rho for w in wrappers}


def _batches(data: Any, batch_size: int) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) in (2, 3):
        return tf.data.Dataset.from_tensor_slices(tuple(data[:2])).batch(batch_size)
    raise ValueError(
        "data must be a batched tf.data.Dataset of (x, y) or a tuple (x, y) of arrays. "
        f"Received: {type(data).__name__}"
    )


def _loss_function(model, loss):
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "scale_rho_by_gradient needs the training loss: compile the model first or "
                "pass loss=... (a Keras loss, its name, or a function (y_true, y_pred)). "
                "Received: loss=None on an uncompiled model"
            )
    if isinstance(loss, (dict, list, tuple)):
        raise ValueError(
            "scale_rho_by_gradient takes one loss for the model's output; for several outputs "
            "pass loss=a function (y_true, y_pred) over the whole structure. Received: "
            f"loss of type {type(loss).__name__}"
        )
    if isinstance(loss, str):
        return keras.losses.get(loss)
    if not callable(loss):
        raise ValueError(f"loss must be a Keras loss, its name or a callable. Received: {loss!r}")
    return loss


def _gradient_rms(model, wrappers, batches: tf.data.Dataset, count: int, loss_fn) -> list:
    """RMS of d loss / d W over each wrapper's constrained weights, averaged over batches."""
    sums = np.zeros(len(wrappers))
    seen = 0
    variables = [list(w.constrained) for w in wrappers]
    for batch in batches.take(count):
        x, y = batch[0], batch[1]
        with tf.GradientTape() as tape:
            # training=False: no side effects (BatchNorm statistics, dropout) on the model
            loss = tf.reduce_mean(loss_fn(y, model(x, training=False)))
        grads = tape.gradient(loss, variables)
        for i, layer_grads in enumerate(grads):
            squares = [
                float(tf.reduce_sum(tf.square(tf.cast(g, tf.float64))))
                for g in layer_grads
                if g is not None
            ]
            size = sum(int(np.prod(v.shape)) for v in variables[i])
            sums[i] += sum(squares) / size
        seen += 1
    if not seen:
        raise ValueError("scale_rho_by_gradient received no batches: the data is empty.")
    return [float(np.sqrt(s / seen)) for s in sums]


def scale_rho_by_gradient(
    model,
    data: Any,
    loss: Any = None,
    *,
    power: float = 1.0,
    batches: int = 20,
    batch_size: int = 128,
) -> dict[str, float]:
    """Give each wrapper not yet started a rho proportional to its loss-gradient RMS.

    The RMS of the loss gradient of each wrapper's constrained weights is measured on the first
    ``batches`` batches of ``data`` (the model as it is, ``training=False``, no ADMM penalty).
    Each wrapper's ``rho_scale`` becomes ``(g / G) ** power`` (G: geometric mean over the
    wrappers, see :func:`rho_scales`), so ADMM starts it at ``rho * rho_scale`` and every rho
    grows by the same factor (``UpdateADMM``'s ``rho_growth``/``rho_final``, each cap times
    the scale). Call it after wrapping and before the first fit. Wrappers already started
    (initialized, e.g. a resumed model) are left as they are, so a restarted script may call it
    again.

    Args:
        model: a model wrapped by :func:`tf_admm.prune_low_magnitude` (or ``quantize``,
            ``compress``), built.
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` (or ``(x, y, weights)``), or a
            tuple ``(x, y)`` of arrays, batched by ``batch_size``.
        loss: the training loss (a Keras loss, its name, or a function ``(y_true, y_pred)``);
            default: the compiled model's loss.
        power: 1 (default) makes rho proportional to the gradient RMS; 0 leaves every scale 1.
        batches: how many batches to average over.

    Returns:
        The initial rho of every wrapper, by wrapper name.

    >>> import numpy as np, tf_admm
    >>> from tf_admm import keras
    >>> m = tf_admm.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), 0.5, rho=1e-3)
    >>> m.compile("adam", "mse")
    >>> rho = tf_admm.scale_rho_by_gradient(m, (np.ones((8, 4)), np.zeros((8, 2))))
    >>> [round(r, 6) for r in rho.values()]  # one layer: the geometric mean is itself
    [0.001]
    """
    batches = check_int("batches", batches, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    rho_scales({}, power)  # checks power
    wrappers = built_wrappers(model, "scale_rho_by_gradient")
    loss_fn = _loss_function(model, loss)
    dataset = _batches(data, batch_size)
    return _scale_fresh(
        wrappers, lambda fresh: _gradient_rms(model, fresh, dataset, batches, loss_fn), power
    )


def scale_rho_by_size(model, *, power: float = 0.5) -> dict[str, float]:
    """Give each wrapper not yet started a rho proportional to ``size ** -power``, no data needed.

    ``size`` is the number of the wrapper's constrained weights. The RMS of a layer's loss
    gradient tends to fall with its size, roughly as ``size ** -0.5`` (every layer's gradient
    has a norm of the same order, spread over its weights): on this project's dense LeNet-5
    (500 / 25,000 / 400,000 / 5,000 weights) the measured RMS ratios are 6.7 / 0.65 / 0.13 /
    1.8 against 5.0 / 0.71 / 0.18 / 1.6 from the sizes. This is a data-free stand-in for
    :func:`scale_rho_by_gradient`; the scales (``rho_scales`` of ``1 / size``) have geometric
    mean 1, and wrappers already started are left as they are.

    Args:
        model: a model wrapped by :func:`tf_admm.prune_low_magnitude` (or ``quantize``,
            ``compress``), built.
        power: 0.5 (default); 0 leaves every scale 1.

    Returns:
        The initial rho of every wrapper, by wrapper name.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="a"),
    ...                          keras.layers.Dense(64, name="b")])
    >>> pruned = tf_admm.prune_low_magnitude(base, 0.5, rho=1e-3)
    >>> {k: round(v, 6) for k, v in tf_admm.scale_rho_by_size(pruned).items()}
    {'admm_a': 0.002, 'admm_b': 0.0005}
    """
    rho_scales({}, power)  # checks power
    wrappers = built_wrappers(model, "scale_rho_by_size")
    return _scale_fresh(
        wrappers,
        lambda fresh: [1.0 / sum(int(np.prod(v.shape)) for v in w.constrained) for w in fresh],
        power,
    )
