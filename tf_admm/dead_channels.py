"""Which channels are dead: the constant every tensor holds per channel for any input, and
the channels of each free group that every reader sees as a foldable constant.

A constant starts where weights zero a channel (a producer's kernel slice, a BatchNorm
gamma, a depthwise filter) and follows the layers that keep it; a convolution that pads (or a
transposed one) makes a nonzero constant vary at the border, so such a channel is kept.

>>> from tf_admm import keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
>>> dead_channels(m).count  # a fresh model has no dead channel
0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf_admm._keras import keras
from tf_admm.channels import ChannelGroups, channel_groups
from tf_admm.layer_kinds import (
    BATCHNORM,
    CONV,
    DENSE,
    DEPTHWISE,
    SEPARABLE,
    TRANSPOSED,
    inner_layer,
    layer_kind,
)

__all__ = [
    "ShrinkPlan",
    "bn_parts",
    "constants",
    "dead_channels",
    "kernel_in_axis",
    "kernel_out_axis",
    "producer_kernel",
    "slice_zero",
]


def kernel_out_axis(layer) -> int:
    return -2 if isinstance(layer, TRANSPOSED) else -1


def kernel_in_axis(layer) -> int:
    """The axis of ``weights[0]`` that holds the layer's inputs (a separable layer's:
    its depthwise kernel's)."""
    return -1 if isinstance(layer, TRANSPOSED) else -2


def producer_kernel(layer) -> np.ndarray:
    """The kernel whose last (or, transposed, second-to-last) axis holds the outputs."""
    weights = layer.get_weights()
    return weights[1] if isinstance(layer, SEPARABLE) else weights[0]


def slice_zero(kernel: np.ndarray, axis: int) -> np.ndarray:
    """Per output channel: is the whole slice zero?"""
    moved = np.moveaxis(kernel, axis, -1)
    return ~np.any(moved.reshape(-1, moved.shape[-1]) != 0, axis=0)


def bn_parts(layer) -> dict[str, np.ndarray]:
    config = layer.get_config()
    names = (["gamma"] if config.get("scale", True) else []) + (
        ["beta"] if config.get("center", True) else []
    )
    names += ["moving_mean", "moving_variance"]
    return dict(zip(names, layer.get_weights()))


def _sample_shape(shape: tuple | None) -> tuple:
    if shape is None:
        raise ValueError("shape unknown")
    return (1,) + tuple(8 if d is None else int(d) for d in shape[1:])


def _pads(layer) -> bool:
    """True when a convolution pads its input (a constant then differs at the border)."""
    config = layer.get_config()
    kernel = config.get("kernel_size", (1,))
    if all(int(k) == 1 for k in kernel):
        return False
    return config.get("padding", "valid") != "valid"


def _call(layer, inputs):
    return np.asarray(layer(inputs, training=False), dtype=np.float64)


def constants(groups: ChannelGroups) -> dict[tuple, np.ndarray]:
    """Per tensor, per position of its last axis: the constant value it holds for every input,
    NaN where it varies. Constants start where weights zero a channel (a producer's kernel
    slice, a BatchNorm gamma, a depthwise filter) and follow the layers that keep them."""
    graph = groups.graph
    const: dict[tuple, np.ndarray] = {}
    for t in graph.inputs:
        const[t] = np.full((graph.shapes[t] or (0,))[-1] or 0, np.nan)
    for node in graph.nodes:
        layer = inner_layer(node.layer)
        ins = [const.get(t) for t in node.inputs]
        shapes = [graph.shapes.get(t) for t in node.inputs]
        out_shape = graph.shapes.get(node.outputs[0]) if node.outputs else None
        kind, _ = layer_kind(layer, shapes[0] if shapes else None, node.arguments)
        width = out_shape[-1] if out_shape and out_shape[-1] is not None else 0
        out = np.full(width, np.nan)
        try:
            if any(c is None for c in ins) or kind == "unknown":
                pass
            elif kind == "producer":
                killed = slice_zero(producer_kernel(layer), kernel_out_axis(layer))
                if killed.any():
                    y = _call(layer, tf.zeros(_sample_shape(shapes[0])))
                    out = _read(y, killed)
            elif (
                kind in ("flatten", "reshape")
                and len(shapes[0] or ()) > 2
                and width != (shapes[0][-1])
            ):
                out = np.tile(ins[0], max(width // max(len(ins[0]), 1), 1))
            elif kind in ("flatten", "reshape"):
                out = ins[0].copy()
            elif kind == "concat" and len(out) == sum(len(c) for c in ins):
                out = np.concatenate(ins)
            else:  # channel-wise layers and ties: evaluate on the constants
                candidate = _candidates(layer, kind, ins)
                if candidate.any():
                    samples = [
                        tf.constant(
                            np.broadcast_to(np.nan_to_num(c, nan=0.0), _sample_shape(s)),
                            tf.float32,
                        )
                        for c, s in zip(ins, shapes)
                    ]
                    if not isinstance(layer, keras.layers.Layer):  # a Keras 3 operation
                        args = [samples[a[1]] if a[0] == "tensor" else a[1] for a in node.arguments]
                        y = np.asarray(layer(*args), dtype=np.float64)
                    else:
                        y = _call(layer, samples if kind in ("tie", "concat") else samples[0])
                    out = _read(y, candidate)
        except (ValueError, TypeError):  # a shape it cannot sample: nothing is constant
            out = np.full(width, np.nan)
        for t in node.outputs:
            const[t] = out
    return const


def _candidates(layer, kind: str, ins: list[np.ndarray]) -> np.ndarray:
    if kind == "tie" and len(ins) > 1:
        stacked = np.stack(ins)
        finite = np.all(np.isfinite(stacked), axis=0)
        if type(layer).__name__ == "Multiply":
            finite |= np.any(stacked == 0, axis=0)
        return finite
    finite = np.isfinite(ins[0])
    if isinstance(layer, BATCHNORM):
        parts = bn_parts(layer)
        if "gamma" in parts:
            finite |= parts["gamma"] == 0
    if isinstance(layer, DEPTHWISE):
        kernel = layer.get_weights()[0]
        finite |= slice_zero(kernel.reshape(*kernel.shape[:-2], -1), -1)
    return finite


def _read(y: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The value of each channel in ``which`` where it is the same at every position; NaN
    elsewhere (a zero-padded border makes a constant vary)."""
    flat = y.reshape(-1, y.shape[-1])
    first = flat[0]
    same = np.all(np.abs(flat - first) <= 1e-6 * np.maximum(1.0, np.abs(first)), axis=0)
    return np.where(which & same, first, np.nan)


@dataclass
class KeptDead:
    """The dead channels of one group that shrink keeps: ``kept`` of ``dead`` (constant
    somewhere in the group), and why, one reason per layer that keeps some."""

    kept: int
    dead: int
    reasons: list[str]

    def message(self, group: int) -> str:
        return (
            f"shrink kept {self.kept} of the {self.dead} dead channels of group {group} "
            f"({self.dead - self.kept} removed): " + "; ".join(self.reasons)
        )


@dataclass
class ShrinkPlan:
    """What :func:`shrink` removes: per group index, the channels removed, and per group
    the channels that are dead but kept, with why; ``constants`` (:func:`constants`) are the
    values the removed channels still carry, which shrink folds into the readers' biases."""

    removed: dict[int, list[int]] = field(default_factory=dict)
    kept_dead: dict[int, KeptDead] = field(default_factory=dict)
    constants: dict[tuple, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.removed.values())


def _foldable(layer, value: float) -> str | None:
    """None if a constant input of ``value`` can be folded into the reader's bias exactly."""
    if value == 0.0 or isinstance(layer, DENSE):
        return None
    if isinstance(layer, TRANSPOSED):
        return f"{layer.name!r} (a transposed convolution) reads it as {value:.3g}, not 0"
    if isinstance(layer, SEPARABLE + CONV) and _pads(layer):
        return f"{layer.name!r} pads its input and reads it as {value:.3g}, not 0"
    return None


def dead_channels(model, groups: ChannelGroups | None = None) -> ShrinkPlan:
    """The channels :func:`tf_admm.shrink` removes from ``model`` (a plain model: strip
    first)."""
    groups = groups if groups is not None else channel_groups(model)
    const = constants(groups)
    graph = groups.graph
    plan = ShrinkPlan(constants=const)
    readers: dict[int, list[tuple]] = {}  # group -> [(layer, tensor)]
    for node in graph.nodes:
        layer = inner_layer(node.layer)
        kind, _ = layer_kind(layer)
        if kind == "producer" and node.inputs:
            for group, _, _ in groups.layout.get(node.inputs[0], ([], 1))[0]:
                readers.setdefault(group, []).append((layer, node.inputs[0]))
    for group in groups.free:
        pairs = readers.get(group.index, [])
        if not pairs:
            continue
        dead = np.ones(group.size, bool)
        reasons: dict[str, set] = {}  # reason -> the channels it keeps
        for layer, tensor in pairs:
            values = const.get(tensor)
            for c in range(group.size):
                vals = values[groups.positions(tensor, {group.index: [c]})]
                if not np.all(np.isfinite(vals)):
                    dead[c] = False
                    continue
                reason = next((r for v in vals if (r := _foldable(layer, v))), None)
                if reason:
                    dead[c] = False
                    reasons.setdefault(reason, set()).add(c)
        channels = [int(c) for c in np.flatnonzero(dead)]
        if len(channels) == group.size:
            channels = channels[1:]  # a layer keeps at least one channel
        if channels:
            plan.removed[group.index] = channels
        somewhere = _dead_somewhere(groups, const, group.index, group.size)
        for layer_name, lost in _varying(groups, const, group.index, group.size).items():
            lost &= somewhere & ~dead
            if lost.any():
                reason = (
                    f"{layer_name!r} pads its input, so their constant differs at the borders "
                    "after it"
                )
                reasons.setdefault(reason, set()).update(int(c) for c in np.flatnonzero(lost))
        kept = int((somewhere & ~np.isin(np.arange(group.size), channels)).sum())
        if reasons and kept:
            described = [f"{r} ({len(cs)} channels)" for r, cs in reasons.items()]
            plan.kept_dead[group.index] = KeptDead(kept, int(somewhere.sum()), described)
    return plan


def _group_tensors(groups: ChannelGroups, index: int) -> list:
    return [t for t, (segments, _) in groups.layout.items() if any(s[0] == index for s in segments)]


def _finite(groups: ChannelGroups, const: dict, tensor, index: int, size: int) -> np.ndarray:
    """Per channel of group ``index``: is it a constant at ``tensor``?"""
    values = const.get(tensor)
    if values is None:
        return np.zeros(size, bool)
    return np.array(
        [np.all(np.isfinite(values[groups.positions(tensor, {index: [c]})])) for c in range(size)]
    )


def _dead_somewhere(groups: ChannelGroups, const: dict, index: int, size: int) -> np.ndarray:
    """Per channel of the group: a constant at some tensor of the group (dead there)."""
    out = np.zeros(size, bool)
    for tensor in _group_tensors(groups, index):
        out |= _finite(groups, const, tensor, index, size)
    return out


def _varying(groups: ChannelGroups, const: dict, index: int, size: int) -> dict[str, np.ndarray]:
    """Per layer inside the group (a padded depthwise convolution, ...): the channels constant
    at its input and no longer at its output."""
    tensors = set(_group_tensors(groups, index))
    out: dict[str, np.ndarray] = {}
    for node in groups.graph.nodes:
        if not node.inputs or not node.outputs:
            continue
        if node.inputs[0] not in tensors or node.outputs[0] not in tensors:
            continue
        before = _finite(groups, const, node.inputs[0], index, size)
        after = _finite(groups, const, node.outputs[0], index, size)
        if (before & ~after).any():
            out[inner_layer(node.layer).name] = before & ~after
    return out
