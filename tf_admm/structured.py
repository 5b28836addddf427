"""Structured ADMM entry points: wrap every layer of the chosen channel groups with
:class:`tf_admm.ChannelSparsity`, and per-group targets from one MAC (FLOP) reduction.

>>> import tf_admm
>>> from tf_admm import keras
>>> x = keras.Input((8, 8, 3))
>>> h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
>>> h = keras.layers.BatchNormalization(name="bn")(h)
>>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h))
>>> pruned = tf_admm.prune_channels(keras.Model(x, y), 0.5)
>>> sorted(w.name for w in tf_admm.find_wrappers(pruned))
['admm_bn', 'admm_conv']
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from tf_admm.channels import ChannelGroups, channel_groups
from tf_admm.constraints import CHANNEL_SCORES, ChannelSparsity
from tf_admm.flops import node_macs
from tf_admm.layer_kinds import inner_layer, layer_kind
from tf_admm.validation import (
    check_choice,
    check_int,
    check_model,
    check_positive,
    check_sparsity,
)

__all__ = ["allocate_channels", "prune_channels"]


def _group_targets(groups: ChannelGroups, sparsity: Any) -> dict[int, float]:
    """Group index -> sparsity from a float (every free group) or a dict keyed by group
    index or by the name of one of the group's producers."""
    free = {g.index: g for g in groups.free}
    if isinstance(sparsity, numbers.Real) and not isinstance(sparsity, bool):
        s = check_sparsity(sparsity)
        return {i: s for i in free} if s > 0 else {}
    if not isinstance(sparsity, dict):
        raise ValueError(
            "sparsity must be a float in [0, 1) for every free channel group, or a dict "
            "{group index or producer layer name: float}. "
            f"Received: sparsity={sparsity!r} of type {type(sparsity).__name__}"
        )
    by_name = {name: g.index for g in free.values() for name in g.producers}
    targets = {}
    for key, value in sparsity.items():
        index = by_name.get(key) if isinstance(key, str) else key
        if index not in free:
            fixed = {g.index: g.fixed for g in groups if g.fixed}
            raise ValueError(
                f"sparsity names {key!r}, which is not a free channel group or a producer of "
                f"one. Free groups: {sorted(free)}; producers: {sorted(by_name)}"
                + (f"; fixed groups: {fixed}" if fixed else "")
            )
        try:
            targets[index] = check_sparsity(value)
        except ValueError as err:
            raise ValueError(f"sparsity[{key!r}]: {err}") from None
    return {i: s for i, s in targets.items() if s > 0}


def prune_channels(
    model, sparsity: Any, *, rho: float = 1e-3, schedule: Any = None, score: str = "group"
):
    """Wrap a model for structured ADMM over its channel groups.

    Every producer and every BatchNorm / depthwise layer of the chosen free groups
    (:func:`tf_admm.channel_groups`) is wrapped with :class:`tf_admm.ChannelSparsity`; the
    Z/U updates of :class:`tf_admm.UpdateADMM` project each group jointly, and
    :func:`tf_admm.hard_project` zeroes whole channels across the group (kernel slices,
    biases, BatchNorm gamma and beta), after which :func:`tf_admm.shrink` removes them.

    Args:
        model: a built Sequential or Functional model (not changed; a wrapped copy is
            returned).
        sparsity: the fraction of channels removed, a float for every free group, or a dict
            ``{group index or producer name: float}`` (:func:`allocate_channels` gives one
            from a MAC target).
        rho: initial ADMM penalty weight.
        schedule: one :class:`tf_admm.schedules.ADMMSchedule` for every wrapper (a group is
            projected jointly, so its layers share it); None:
            ``schedules.Gradual(masking="ramp")``: the group sparsity ramps over the fit and
            the channels outside Z's support are masked at every Z/U update.
        score: how the channels of a group are ranked (:class:`tf_admm.ChannelSparsity`):
            ``"group"``, the joint norm of the group's wrapped weights, or
            ``"group_and_consumers"``, which also counts the input weights of the layers that
            read each channel.
    """
    from tf_admm.prune import WrapOptions, check_model_kind, wrap_layers

    score = check_choice("score", score, CHANNEL_SCORES)
    options = WrapOptions(rho, schedule)
    if options.by_name is not None:
        raise ValueError(
            "prune_channels takes one schedule for every wrapper (a channel group is projected "
            f"jointly). Received a dict by layer: {sorted(options.by_name)}"
        )

    check_model("prune_channels", model, built=True)
    check_model_kind(model, "prune_channels")
    groups = channel_groups(model)
    targets = _group_targets(groups, sparsity)
    if not targets:
        raise ValueError(
            f"prune_channels: the targets select no free channel group of {model.name!r}; "
            "nothing to wrap. Its groups:\n" + groups.table()
        )
    per_layer: dict[str, float] = {}
    for index, s in targets.items():
        for member in groups[index].members:
            if member.role != "consumer":
                name = member.layer.name
                per_layer[name] = max(per_layer.get(name, 0.0), s)
    # a layer also in a group left alone keeps those channels: the joint projection only
    # removes channels of groups with a target

    def resolver(layers):
        return lambda layer: (
            ChannelSparsity(per_layer[layer.name], score) if layer.name in per_layer else None
        )

    return wrap_layers(model, resolver, options, "prune_channels")


def _mac_terms(groups: ChannelGroups) -> list[tuple]:
    """Per layer call that has MACs: ``(macs, input segments, output segments, channel-wise)``,
    read once from the graph, so the MACs at many removal fractions cost no model walk."""
    graph = groups.graph
    terms = []
    for node in graph.nodes:
        layer = inner_layer(node.layer)
        in_t, out_t = node.inputs[0] if node.inputs else None, node.outputs[0]
        macs = node_macs(layer, graph.shapes.get(in_t), graph.shapes.get(out_t))
        if macs:
            kind, _ = layer_kind(layer, graph.shapes.get(in_t))
            segments = [groups.layout.get(t, ([], 1))[0] for t in (in_t, out_t)]
            terms.append((macs, segments[0], segments[1], kind == "channelwise"))
    return terms


def _macs_at(terms: list[tuple], fractions: dict[int, float]) -> float:
    """MACs of the model once ``fractions`` of each group's channels are removed."""

    def kept(segments) -> float:
        width = sum(n for _, _, n in segments)
        if not width:
            return 1.0
        removed = sum(int(np.floor(n * fractions.get(g, 0.0) + 1e-9)) for g, _, n in segments)
        return (width - removed) / width

    return sum(
        macs * (kept(out) if channelwise else kept(inp) * kept(out))
        for macs, inp, out, channelwise in terms
    )


def _kept(size: int, fraction: float, round_to: int) -> int:
    """Channels a group of ``size`` keeps when about ``fraction`` is removed: the remainder
    rounded up to a multiple of ``round_to`` (the whole group when that is not smaller)."""
    keep = size - int(np.floor(size * fraction + 1e-9))
    if round_to > 1:
        keep = max(round_to, -(-keep // round_to) * round_to)
    return min(size, keep)


def allocate_channels(
    model, flops_rate: float, *, max_sparsity: float = 0.9, round_to: int = 1
) -> dict[int, float]:
    """Per-group sparsity that divides the model's MACs by ``flops_rate``: about the same
    fraction of every free group (at most ``max_sparsity``, so no group empties), found by
    bisection on the MACs counted from the shapes (:mod:`tf_admm.flops`), then channels given
    back (``round_to`` at a time), largest groups first, while the MACs stay at most ``dense /
    flops_rate``.

    ``round_to`` > 1 keeps a multiple of ``round_to`` channels in every group (a group of at
    most ``round_to`` channels is left whole): CPU kernels compute output channels in blocks
    (XNNPACK's int8 convolutions in blocks of 8 or 16 on x86), so 11 channels of 16 can cost
    what 16 cost; Torch-Pruning's ``round_to`` does the same for GPUs.

    Returns ``{group index: sparsity}`` for :func:`prune_channels`. Raises ValueError when
    even ``max_sparsity`` everywhere does not reach the rate (the fixed groups cost too much).

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> x = keras.Input((8, 8, 3))
    >>> h = keras.layers.Conv2D(16, 3, padding="same")(x)
    >>> h = keras.layers.Conv2D(16, 3, padding="same")(h)
    >>> m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    >>> {g: round(s, 3) for g, s in tf_admm.allocate_channels(m, 2.0).items()}
    {1: 0.312, 2: 0.375}
    >>> tf_admm.allocate_channels(m, 2.0, round_to=4)
    {1: 0.25, 2: 0.5}
    """
    rate = check_positive("flops_rate", flops_rate, 1.0)
    max_sparsity = check_sparsity(max_sparsity)
    round_to = check_int("round_to", round_to, 1)
    groups = channel_groups(model)
    sizes = {g.index: g.size for g in groups.free}
    free = list(sizes)
    terms = _mac_terms(groups)
    dense = _macs_at(terms, {})
    target = dense / rate

    def fractions(kept: dict[int, int]) -> dict[int, float]:
        return {i: (sizes[i] - kept[i]) / sizes[i] for i in free}

    def uniform(fraction: float) -> dict[int, int]:
        return {i: _kept(sizes[i], fraction, round_to) for i in free}

    least = _macs_at(terms, fractions(uniform(max_sparsity)))
    if not free or least > target:
        raise ValueError(
            f"allocate_channels cannot divide the MACs of {model.name!r} by {rate:g}: removing "
            f"max_sparsity={max_sparsity:g} of every free group"
            + (f" (kept counts rounded up to multiples of {round_to})" if round_to > 1 else "")
            + f" leaves {least:.4g} of {dense:.4g}. Groups:\n"
            + groups.table()
        )
    lo, hi = 0.0, max_sparsity
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _macs_at(terms, fractions(uniform(mid))) > target else (lo, mid)
    # channel counts are whole: give channels back, largest groups first, while the MACs stay
    # within the target (a uniform fraction alone overshoots on narrow layers)
    kept = uniform(hi)
    changed = True
    while changed:
        changed = False
        for i in sorted(free, key=lambda i: -sizes[i]):
            more = min(sizes[i], kept[i] + round_to)
            if more == kept[i]:
                continue
            trial = {**kept, i: more}
            if _macs_at(terms, fractions(trial)) <= target:
                kept, changed = trial, True
    return {i: s for i, s in fractions(kept).items() if s > 0}
