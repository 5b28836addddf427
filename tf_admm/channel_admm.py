"""Structured ADMM over channel groups: the joint projection of every wrapper of a group.

A :class:`tf_admm.ChannelSparsity` wrapper cannot project on its own: a channel is kept or
removed in every layer of its group at once (:mod:`tf_admm.channels`). Between steps,
:func:`score_channels` scores each channel of a free group by the sum of squares of all the
group's wrapped values at that channel (producers' kernel slices and biases, BatchNorm gamma
and beta, depthwise filters), and with ``ChannelSparsity(score="group_and_consumers")`` of
the consumers' input weights that read it; :meth:`ChannelScores.keep` then keeps the
``size - floor(size * sparsity)`` best of each group and returns for each wrapper a
:class:`tf_admm.constraints.KeepChannels` that the Z/U updates and :func:`tf_admm.hard_project`
use in place of the wrapper's own constraint. One scoring serves every sparsity asked of it
(the ramp's and the target's under ``pull="target"``), so the channels kept at a higher
sparsity are always among those kept at a lower one.

The group's sparsity is that of its producers' wrappers (the first one's, ramped like every
other constraint under a gradual schedule; a group whose producers are not wrapped takes its
first wrapped member's); channels of a wrapper outside any free group are kept.

The groups themselves are found once per model (:func:`tf_admm.channel_groups` walks its
graph) and reused at every later scoring while the model's layers are the same ones.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable

import numpy as np

from tf_admm import projections
from tf_admm._keras import flat_layers
from tf_admm.channels import channel_groups
from tf_admm.constraints import KeepChannels
from tf_admm.dead_channels import kernel_in_axis
from tf_admm.layer_kinds import inner_layer

__all__ = ["ChannelScores", "score_channels"]


def _input_energy(member, size: int) -> np.ndarray:
    """Sum of squares of a consumer's input weights per group channel (``size`` of them, zero
    outside the member's ``start:start+length``): its kernel's input axis, summed over every
    position a Flatten repeats the channel at."""
    layer = inner_layer(member.layer)
    kernel = layer.get_weights()[0]  # a separable layer's inputs: its depthwise kernel
    moved = np.moveaxis(kernel, kernel_in_axis(layer), -1)
    energy = np.square(moved.reshape(-1, moved.shape[-1])).sum(0)
    energy = energy.reshape(member.repeat, member.width).sum(0)
    out = np.zeros(size)
    out[member.start : member.start + member.length] = energy[
        member.offset : member.offset + member.length
    ]
    return out


def _channel_energy(wrapper, values: Callable) -> np.ndarray:
    """Sum of squares per channel (canonical last axis) over the wrapper's constrained
    weights."""
    total = None
    for i, layout in enumerate(wrapper.layouts):
        e = projections.channel_energy(layout.canonical(values(wrapper, i)))
        total = e if total is None else total + e
    return total


# model -> (ids of its layers when its groups were found, its free groups): the graph walk is
# done once per model, not at every Z/U update; a model whose layers changed is walked again.
_FREE_GROUPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _free_groups(model) -> list:
    """``channel_groups(model).free``, found once per model and set of layers."""
    layers = tuple(id(layer) for layer in flat_layers(model))
    cached = _FREE_GROUPS.get(model)
    if cached is None or cached[0] != layers:
        cached = (layers, list(channel_groups(model).free))
        _FREE_GROUPS[model] = cached
    return cached[1]


@dataclasses.dataclass(frozen=True)
class _ScoredGroup:
    """One free group's wrapped (non-consumer) members, the layer whose sparsity the group
    takes, and the joint score of each of its channels."""

    members: tuple
    sets_sparsity: object
    score: np.ndarray


@dataclasses.dataclass(frozen=True)
class ChannelScores:
    """The channel scores of every free group at one moment, from :func:`score_channels`."""

    groups: tuple[_ScoredGroup, ...]
    channels: dict[int, int]  # id(wrapper) -> its channels (canonical last axis)

    def keep(self, sparsity_of: Callable) -> dict[int, KeepChannels]:
        """``{id(wrapper): KeepChannels}``: each group's best channels at
        ``sparsity_of(layer)`` of the layer that sets the group's sparsity (the ramped
        constraint's sparsity, or the target's); a wrapper's channels outside every free group
        are kept."""
        keep = {key: np.ones(n, bool) for key, n in self.channels.items()}
        for group in self.groups:
            count = projections.keep_count(group.score.size, sparsity_of(group.sets_sparsity))
            chosen = projections.topk_mask(group.score, count)
            for m in group.members:
                keep[id(m.layer)][m.offset : m.offset + m.length] = chosen[
                    m.start : m.start + m.length
                ]
        return {key: KeepChannels(mask) for key, mask in keep.items()}


def score_channels(model, wrappers: list, values: Callable) -> ChannelScores:
    """The joint channel scores of ``model``'s free groups over its channel-level wrappers.

    Args:
        model: the wrapped model (its channel groups are read through the wrappers).
        wrappers: its built wrappers (those that are not channel-level are ignored; the
            caller, :mod:`tf_admm.updates`, skips the scoring when none is).
        values: ``values(wrapper, i)``, the value to project of constrained weight ``i``
            (W, or W + U in a Z/U update).
    """
    channel = [w for w in wrappers if w.constraint.channel_level]
    wanted = {id(w) for w in channel}
    energy = {id(w): _channel_energy(w, values) for w in channel}
    groups = []
    for group in _free_groups(model):
        members = [m for m in group.members if m.role != "consumer" and id(m.layer) in wanted]
        if not members:
            continue
        producers = [m for m in members if m.role == "producer"] or members
        score = np.zeros(group.size)
        for m in members:
            score[m.start : m.start + m.length] += energy[id(m.layer)][
                m.offset : m.offset + m.length
            ]
        if producers[0].layer.constraint.score == "group_and_consumers":
            for m in group.members:
                if m.role == "consumer":
                    score += _input_energy(m, group.size)
        groups.append(_ScoredGroup(tuple(members), producers[0].layer, score))
    return ChannelScores(tuple(groups), {key: e.shape[0] for key, e in energy.items()})
