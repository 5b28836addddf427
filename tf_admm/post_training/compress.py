"""``compress_post_training``: a trained model compressed from calibration data alone.

Layer by layer in the order the model calls them, each layer's calibration inputs are taken
from the model as compressed so far (as SparseGPT does), ``H = Xᵀ X`` is accumulated over
streamed batches, and layer-wise ADMM (:mod:`.layerwise_admm`) finds the kernel in the
constraint set that best reproduces the layer's outputs. Only one layer's ``H`` and one batch
of its inputs are held at a time, so memory follows the largest layer, not the model or the
calibration set.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from tf_admm.cloning import copy_model
from tf_admm.post_training import layerwise_admm
from tf_admm.post_training.calibration import Calibration
from tf_admm.post_training.linear_maps import ALLOWED, linear_map, supported
from tf_admm.post_training.walk import calling_order, gram, linear_layers
from tf_admm.prune import BitsSpec, SparsitySpec, check_model_kind, target_resolver
from tf_admm.validation import check_bool, check_int, check_model, check_positive

__all__ = ["compress_post_training"]


def compress_post_training(
    model,
    calibration_data: Any,
    *,
    sparsity: SparsitySpec = None,
    bits: BitsSpec = None,
    scheme: str = "uniform",
    per_channel: bool = True,
    batch_size: int = 32,
    iterations: int = 60,
    damping: float = 0.01,
    skip_unsupported: bool = False,
    verbose: bool = True,
):
    """Compress a trained model from calibration data, without training (layer-wise ADMM).

    For every targeted layer, the kernel ``W`` in the constraint set that minimises
    ``||X W0 - X W||²`` on the layer's calibration inputs ``X`` (taken from the model compressed
    so far), found by ADMM with the library's projections, then refitted on the support found
    (or on the levels' scales, for quantization). Biases and every other weight are kept.

    The layers compressed are those that multiply their input by a kernel (Dense,
    EinsumDense, convolutions), wherever they sit: in the model, or inside layers that hold
    others (MultiHeadAttention, KerasHub's TransformerDecoder, a custom block), named by their
    path (``"block0/self_attention/query"``).

    Args:
        model: a built Sequential or Functional model (Keras 3, or tf_keras under
            ``TF_USE_LEGACY_KERAS=1``); it is not changed.
        calibration_data: a few hundred representative inputs: an array (a list or dict of
            arrays for several inputs), or a ``tf.data.Dataset`` of batches of inputs or of
            ``(inputs, targets)``. Labels are not needed.
        sparsity: as in :func:`tf_admm.compress`: a float in [0, 1), a constraint
            (``tf_admm.NMSparsity(2, 4)``, ``tf_admm.BlockSparsity(0.8, (1, 4))``), a callable
            layer -> either, or a dict whose keys are layer names or paths (a key naming a
            layer that holds others targets every linear layer inside it).
        bits: 2..8 bits, ``"ternary"``, ``"binary"`` or a :class:`tf_admm.Quantization`, in
            the same forms; with ``sparsity`` too, the survivors take nonzero levels.
        scheme, per_channel: the levels, as in :func:`tf_admm.quantize`.
        batch_size: samples per batch when streaming array data.
        iterations: ADMM iterations per layer.
        damping: added to ``H``'s diagonal, relative to its mean (inputs that never vary).
        skip_unsupported: leave targeted layers whose inputs this path cannot read (transposed
            and separable convolutions, ...) dense with a warning, instead of refusing.
        verbose: print one line per layer: the relative output error of plain projection
            (magnitude) and of ADMM, and the time taken.

    Returns:
        A new plain model of the same architecture; every targeted kernel is exactly in its
        set (``k`` nonzeros, n:m, blocks, levels).

    Raises:
        ValueError: on bad input (a subclassed model, data that does not fit the inputs,
            fewer than 16 samples, a target a layer cannot take), before any work.

    >>> import numpy as np, tf_admm
    >>> from tf_admm import keras
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")])
    >>> x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    >>> small = tf_admm.compress_post_training(model, x, sparsity=0.75, verbose=False)
    >>> float((small.get_layer("fc").kernel.numpy() == 0).mean())
    0.75
    """
    check_model("compress_post_training", model, built=True)
    check_model_kind(model, "compress_post_training")
    if sparsity is None and bits is None:
        raise ValueError(
            "compress_post_training needs sparsity=..., bits=... or both. Received neither."
        )
    check_bool("skip_unsupported", skip_unsupported)
    check_bool("verbose", verbose)
    iterations = check_int("iterations", iterations, 1)
    damping = check_positive("damping", damping)
    found = linear_layers(model)
    targets = _targets(found, sparsity, bits, scheme, per_channel, skip_unsupported)
    data = Calibration(model, calibration_data, batch_size)

    work = copy_model(model)
    by_path = dict(linear_layers(work))
    first = next(iter(data.batches()))
    order = calling_order(work, [by_path[path] for path in targets], first)
    uncalled = sorted(set(targets) - {path for path, l in by_path.items() if l in order})
    if uncalled:
        raise ValueError(
            f"compress_post_training: the model never calls the targeted layers {uncalled} "
            "on the calibration data, so their inputs cannot be read."
        )
    paths = {id(layer): path for path, layer in by_path.items()}
    for index, layer in enumerate(order, 1):
        start = time.perf_counter()
        path = paths[id(layer)]
        linear = linear_map(layer)
        h = gram(work, layer, data.batches())
        kernel, before, after = _compress(linear, targets[path], h, iterations, damping)
        linear.kernel.assign(kernel.astype(np.asarray(linear.kernel).dtype))
        if verbose:
            print(
                f"[{index}/{len(order)}] {path} ({type(layer).__name__}): output error "
                f"{before:.4f} projected, {after:.4f} after ADMM "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    return work


def _by_path(spec: Any, found: list[tuple[str, Any]], arg: str) -> Any:
    """A dict keyed by layer names or paths as a callable on the linear layers (other forms
    as they are); unknown keys refused."""
    if not isinstance(spec, dict):
        return spec
    paths = [path for path, _ in found]
    path_of = {id(layer): path for path, layer in found}
    unknown = sorted(k for k in spec if not any(p == k or p.startswith(k + "/") for p in paths))
    if unknown:
        raise ValueError(
            f"{arg} names no linear layer: {unknown}. Linear layers of this model (a key may "
            f"also name a layer that holds some): {paths}"
        )

    def lookup(layer) -> Any:
        parts = path_of[id(layer)].split("/")
        for end in range(len(parts), 0, -1):  # the longest key that names it or holds it
            if "/".join(parts[:end]) in spec:
                return spec["/".join(parts[:end])]
        return None

    return lookup


def _targets(found, sparsity, bits, scheme, per_channel, skip_unsupported) -> dict:
    """``{path: constraint}`` per targeted layer, every check done."""
    resolve = target_resolver(
        _by_path(sparsity, found, "sparsity"), _by_path(bits, found, "bits"), scheme, per_channel
    )([layer for _, layer in found])
    targets, unsupported = {}, []
    for path, layer in found:
        constraint = resolve(layer)
        if constraint is None:
            continue
        if getattr(constraint, "channel_level", False):
            raise ValueError(
                "compress_post_training does not remove channels yet; it takes unstructured, "
                f"n:m, block and filter sparsity and quantization. Received: {constraint!r} "
                f"for layer {path!r}"
            )
        if not supported(layer):
            unsupported.append(f"{path} ({type(layer).__name__})")
            continue
        linear_map(layer).check(constraint, path)
        targets[path] = constraint
    if unsupported:
        message = (
            f"compress_post_training cannot read the inputs of the targeted layers "
            f"{unsupported}. Allowed: {ALLOWED}."
        )
        if not skip_unsupported:
            raise ValueError(message + " Pass skip_unsupported=True to leave them dense.")
        warnings.warn(message + " They stay dense.", stacklevel=3)
    if not targets:
        raise ValueError("compress_post_training: the targets select no layer it can compress.")
    return targets


def _compress(linear, constraint, h: np.ndarray, iterations: int, damping: float):
    """(the new kernel, output error of plain projection, output error after ADMM)."""
    w0 = linear.groups_of(np.asarray(linear.kernel, np.float64))
    h = layerwise_admm.damped(h, damping)
    project = linear.projector(constraint)
    w = layerwise_admm.solve(
        h,
        w0,
        project,
        constraint,
        iterations=iterations,
        at_sparsity=lambda s: linear.projector(constraint.at_sparsity(s)),
    )
    before = layerwise_admm.error(h, w0, project(w0))
    return linear.kernel_of(w), before, layerwise_admm.error(h, w0, w)
