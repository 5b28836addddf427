"""Physical channel removal: a smaller dense model with the dead channels of every free channel
group (:mod:`tf_admm.channels`) taken out, computing what the input model computes.

A channel is *dead* when every layer that reads it receives a constant: its producers' kernel
slices are zero (what structured pruning leaves), or a BatchNormalization's gamma or a
depthwise filter zeroes it on the way. The constant it still carries (a bias, BatchNorm's beta
through the activation) is folded into the readers' biases: exact for Dense readers and for
convolutions that do not pad; a convolution that pads sees a different value at the border, so
there a nonzero constant keeps the channel (a warning says where), while a zero constant, what
:func:`tf_admm.hard_project` leaves for a structured constraint, removes it exactly.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> x = keras.Input((8,))
>>> h = keras.layers.Dense(6, activation="relu", name="hidden")(x)
>>> model = keras.Model(x, keras.layers.Dense(2, name="out")(h))
>>> kernel, bias = model.get_layer("hidden").get_weights()
>>> kernel[:, :3] = 0.0  # units 0-2 dead, biases kept: folded into "out"
>>> model.get_layer("hidden").set_weights([kernel, bias])
>>> small = tf_admm.shrink(model)
>>> small.get_layer("hidden").units
3
>>> data = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
>>> bool(np.allclose(small(data), model(data), atol=1e-5))
True
"""

from __future__ import annotations

import warnings

import numpy as np

from tf_admm import cloning
from tf_admm._keras import is_model, keras
from tf_admm.channels import ChannelGroups, channel_groups
from tf_admm.dead_channels import (
    bn_parts,
    dead_channels,
    kernel_in_axis,
    kernel_out_axis,
    producer_kernel,
    slice_zero,
)
from tf_admm.graph import model_graph
from tf_admm.layer_kinds import DENSE, DEPTHWISE, SEPARABLE, TRANSPOSED, inner_layer, layer_kind
from tf_admm.validation import check_model

__all__ = ["shrink", "zero_channels"]


def _keep(size: int, drop: list[int]) -> np.ndarray:
    keep = np.ones(size, bool)
    keep[drop] = False
    return keep


def _fold(layer, kernel: np.ndarray, values: np.ndarray, drop: list[int], weights: list):
    """Bias contribution of the constants at the dropped input positions."""
    if not drop:
        return None
    v = values[drop]
    if not np.any(v):
        return None
    if isinstance(layer, SEPARABLE):
        depthwise, pointwise = weights[0], weights[1]
        m = depthwise.shape[-1]
        per = depthwise.reshape(-1, depthwise.shape[-2], m).sum(axis=0)  # (in, m)
        rows = [(i, j) for i in drop for j in range(m)]
        contrib = np.zeros(pointwise.shape[-1])
        for i, j in rows:
            contrib += values[i] * per[i, j] * pointwise.reshape(-1, pointwise.shape[-1])[i * m + j]
        return contrib
    summed = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)  # (in, out)
    return (v[:, None] * summed[drop]).sum(axis=0)


def _new_layer(layer, kind: str, in_drop: list[int], out_drop: list[int], values, new_width: int):
    """(config overrides, new weights) for one layer of ``kind`` (:func:`layer_kind`)."""
    weights = layer.get_weights()
    config: dict = {}
    if kind == "producer":
        out_axis = kernel_out_axis(layer)
        if isinstance(layer, SEPARABLE):
            depthwise, pointwise = weights[0], weights[1]
            m = depthwise.shape[-1]
            contrib = _fold(layer, None, values, in_drop, weights)
            keep_in = _keep(depthwise.shape[-2], in_drop)
            depthwise = depthwise[..., keep_in, :]
            pointwise = pointwise[..., np.repeat(keep_in, m), :]
            kernel_list = [depthwise, pointwise]
            kernel = pointwise
        else:
            kernel = weights[0]
            in_axis = kernel_in_axis(layer)
            contrib = (
                None
                if isinstance(layer, TRANSPOSED)
                else _fold(layer, kernel, values, in_drop, weights)
            )
            kernel = np.delete(kernel, in_drop, axis=in_axis)
            kernel_list = [kernel]
        has_bias = layer.get_config().get("use_bias", True)
        bias = weights[len(kernel_list)] if has_bias else np.zeros(kernel.shape[out_axis])
        if contrib is not None:
            bias = bias + contrib.astype(bias.dtype)
            if not has_bias:
                config["use_bias"] = True
                has_bias = True
        kernel_list[-1] = np.delete(kernel_list[-1], out_drop, axis=out_axis)
        n_out = kernel_list[-1].shape[out_axis]
        config["units" if isinstance(layer, DENSE) else "filters"] = int(n_out)
        new = kernel_list + (
            [np.delete(bias, out_drop).astype(weights[0].dtype)] if has_bias else []
        )
        return config, new
    if kind == "channelwise":
        if isinstance(layer, DEPTHWISE):
            return config, [np.delete(weights[0], in_drop, axis=-2)] + [
                np.delete(w, in_drop) for w in weights[1:]
            ]
        return config, [np.delete(w, in_drop, axis=-1) for w in weights]
    if kind == "reshape":  # keeps the channel axis last, or flattens: the last size changes
        target = list(layer.get_config()["target_shape"])
        target[-1] = new_width
        return {"target_shape": tuple(int(d) for d in target)}, weights
    return config, weights


def shrink(model: keras.Model) -> keras.Model:
    """A new, smaller dense model with the dead channels of every free channel group removed.

    >>> import numpy as np
    >>> import tf_admm
    >>> from tf_admm import keras
    >>> model = keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(3, name="hidden"), keras.layers.Dense(2)]
    ... )
    >>> kernel, bias = model.get_layer("hidden").get_weights()
    >>> kernel[:, 1] = 0.0  # unit 1 reads nothing: it outputs its bias, a constant
    >>> model.get_layer("hidden").set_weights([kernel, bias])
    >>> small = tf_admm.shrink(model)  # the constant folded into the next layer's bias
    >>> small.get_layer("hidden").units
    2
    >>> x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    >>> bool(np.allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5))
    True

    Args:
        model: a built Sequential or Functional model, plain or wrapped by tf_admm (then its
            :func:`tf_admm.strip_admm` copy is shrunk), whose weights hold whole zero
            channels: a structured tf_admm constraint after :func:`tf_admm.hard_project`, or
            channels pruned by hand or by another library.

    Returns a new model whose outputs equal ``model``'s (inference mode) up to float rounding;
    ``model`` is not changed. A model with nothing to remove comes back as an equal copy, with
    a warning saying so; dead channels that cannot be removed exactly (a nonzero constant read
    by a padding convolution, a group fixed by a layer that is not followed) are kept, with a
    warning that names the layer.
    """
    from tf_admm.prune import strip_admm
    from tf_admm.updates import find_wrappers

    check_model("shrink", model, built=True)
    plain = strip_admm(model) if find_wrappers(model) else model
    graph = model_graph(plain)
    groups = channel_groups(plain, graph)
    plan = dead_channels(plain, groups)
    fixed_dead = _dead_in_fixed(groups)
    for message in [kept.message(g) for g, kept in plan.kept_dead.items()] + fixed_dead:
        warnings.warn(message, stacklevel=2)
    if not plan.count:
        warnings.warn(
            f"shrink found no channel to remove in {model.name!r}: no free channel group has a "
            "channel that every reader sees as a constant. Returned an equal copy.",
            stacklevel=2,
        )

    def _drop(tensor) -> list[int]:
        return groups.positions(tensor, plan.removed)

    specs: dict[int, tuple] = {}
    for node in graph.nodes:
        layer = inner_layer(node.layer)
        if id(layer) in specs or not plan.count:
            continue
        in_t = node.inputs[0] if node.inputs else None
        kind, _ = layer_kind(layer, graph.shapes.get(in_t))
        out_t = node.outputs[0] if node.outputs else None
        in_drop, out_drop = _drop(in_t), _drop(out_t)
        if kind not in ("producer", "channelwise", "reshape") or not (in_drop or out_drop):
            continue
        new_width = (graph.shapes[out_t][-1] or 0) - len(out_drop) if out_t else 0
        specs[id(layer)] = _new_layer(
            layer, kind, in_drop, out_drop, plan.constants.get(in_t), new_width
        )

    def replace(layer):
        if not isinstance(layer, keras.layers.Layer):  # a stateless Keras 3 operation
            return layer, lambda n: None
        spec = specs.get(id(layer))
        if spec is None:
            return cloning.copy_with_weights(layer)
        config, weights = spec
        return cloning.fresh_copy(layer, **config), lambda n, w=weights: n.set_weights(w)

    new_inputs = {
        key: [
            (1,) + tuple(graph.shapes[t][1:-1]) + (graph.shapes[t][-1] - len(_drop(t)),)
            for t in tensors
        ]
        for key, tensors in graph.nested_inputs.items()
    }
    return _rebuild(plain, replace, new_inputs, top=True)


def _rebuild(model, replace, new_inputs: dict[int, list[tuple]], top: bool = False):
    """:func:`tf_admm.cloning.rebuild`, with nested models given inputs of their new widths."""
    copies = []

    def clone_function(layer):
        if is_model(layer):
            return _rebuild(layer, replace, new_inputs)
        new, copy_fn = replace(layer)
        copies.append((new, copy_fn))
        return new

    if top:
        copy = cloning.clone(model, clone_function=clone_function)
    else:
        tensors = [keras.Input(batch_shape=(None,) + s[1:]) for s in new_inputs[id(model)]]
        copy = keras.models.clone_model(
            model,
            input_tensors=tensors[0] if len(tensors) == 1 else tensors,
            clone_function=clone_function,
        )
    for new, copy_fn in copies:
        copy_fn(new)
    return copy


def _dead_in_fixed(groups: ChannelGroups) -> list[str]:
    messages = []
    for group in groups:
        if group.fixed is None or group.fixed in ("model input", "feeds a model output"):
            continue
        for member in group.members:
            if member.role == "producer":
                layer = inner_layer(member.layer)
                zero = slice_zero(producer_kernel(layer), kernel_out_axis(layer))
                if zero.any():
                    messages.append(
                        f"shrink kept {int(zero.sum())} zero channels of {layer.name!r} "
                        f"(group {group.index}): {group.fixed}"
                    )
                    break
    return messages


def zero_channels(model, channels: dict[int, list[int]], groups: ChannelGroups | None = None):
    """Set to zero, in place, every weight of the given channels of each group: producers'
    kernel slices and biases, BatchNorm gamma and beta, depthwise filters and biases. What
    :func:`tf_admm.hard_project` leaves for a structured constraint, for tests and timing.

    Args:
        model: a plain built model.
        channels: ``{group index: [channel, ...]}`` from :func:`tf_admm.channel_groups`.
    """
    groups = groups if groups is not None else channel_groups(model)
    by_index = {g.index: g for g in groups}
    for index, chans in channels.items():
        group = by_index.get(index)
        if group is None or group.fixed is not None:
            raise ValueError(
                f"zero_channels takes free group indices. Received: group {index}"
                + (f", fixed because {group.fixed}" if group is not None else "")
            )
        for member in group.members:
            layer = inner_layer(member.layer)
            pos = member.positions(chans)
            if member.role == "consumer" or not pos:
                continue
            weights = layer.get_weights()
            if member.role == "producer":
                axis = kernel_out_axis(layer)
                k = 1 if isinstance(layer, SEPARABLE) else 0
                kernel = np.moveaxis(weights[k], axis, -1).copy()
                kernel[..., pos] = 0
                weights[k] = np.moveaxis(kernel, -1, axis)
                if layer.get_config().get("use_bias", True):
                    weights[-1] = weights[-1].copy()
                    weights[-1][pos] = 0
            elif isinstance(layer, DEPTHWISE):
                weights[0] = weights[0].copy()
                weights[0][..., pos, :] = 0
                for w in weights[1:]:
                    w[pos] = 0
            else:  # BatchNorm: gamma and beta
                parts = bn_parts(layer)
                for name in ("gamma", "beta"):
                    if name in parts:
                        parts[name][pos] = 0
                weights = list(parts.values())
            layer.set_weights(weights)
    return model
