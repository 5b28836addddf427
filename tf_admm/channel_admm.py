"""Structured ADMM over channel groups: the joint projection of every wrapper of a group.

A :class:`tf_admm.ChannelSparsity` wrapper cannot project on its own: a channel is kept or
removed in every layer of its group at once (:mod:`tf_admm.channels`). Between steps,
:func:`group_constraints` scores each channel of a free group by the sum of squares of all
the group's wrapped values at that channel (producers' kernel slices and biases, BatchNorm
gamma and beta, depthwise filters), keeps the ``size - floor(size * sparsity)`` best, and
returns for each wrapper a :class:`tf_admm.constraints.KeepChannels` that the Z/U updates and
:func:`tf_admm.hard_project` use in place of the wrapper's own constraint.

The group's sparsity is that of its producers' wrappers (the first one's, ramped like every
other constraint under a gradual schedule; a group whose producers are not wrapped takes its
first wrapped member's); channels of a wrapper outside any free group are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tf_admm import projections
from tf_admm.channels import channel_groups
from tf_admm.constraints import KeepChannels

__all__ = ["group_constraints"]


def _channel_energy(wrapper, values: Callable) -> np.ndarray:
    """Sum of squares per channel (canonical last axis) over the wrapper's constrained
    weights."""
    total = None
    for i, layout in enumerate(wrapper.layouts):
        e = projections.channel_energy(layout.canonical(values(wrapper, i)))
        total = e if total is None else total + e
    return total


def group_constraints(
    model, wrappers: list, values: Callable, sparsity_of: Callable
) -> dict[int, KeepChannels]:
    """``{id(wrapper): KeepChannels}`` for every channel-level wrapper of ``model``.

    Args:
        model: the wrapped model (its channel groups are read through the wrappers).
        wrappers: its built wrappers.
        values: ``values(wrapper, i)``, the value to project of constrained weight ``i``
            (W, or W + U in a Z/U update).
        sparsity_of: ``sparsity_of(wrapper)``, the sparsity now in force for a wrapper (its
            ramped constraint's).
    """
    channel = [w for w in wrappers if w.constraint.channel_level]
    if not channel:
        return {}
    wanted = {id(w) for w in channel}
    energy = {id(w): _channel_energy(w, values) for w in channel}
    keep = {id(w): np.ones(energy[id(w)].shape, bool) for w in channel}
    for group in channel_groups(model).free:
        members = [m for m in group.members if m.role != "consumer" and id(m.layer) in wanted]
        if not members:
            continue
        producers = [m for m in members if m.role == "producer"] or members
        score = np.zeros(group.size)
        for m in members:
            score[m.start : m.start + m.length] += energy[id(m.layer)][
                m.offset : m.offset + m.length
            ]
        sparsity = sparsity_of(producers[0].layer)
        chosen = projections.topk_mask(score, projections.keep_count(group.size, sparsity))
        for m in members:
            keep[id(m.layer)][m.offset : m.offset + m.length] = chosen[m.start : m.start + m.length]
    return {key: KeepChannels(mask) for key, mask in keep.items()}
