"""Channel groups: the sets of channels that must be removed together (Torch-Pruning's
dependency groups, for Keras).

A *space* is the output channels of one producing layer (Dense, Conv, Conv*Transpose, the
pointwise half of SeparableConv). Channel-wise layers (BatchNormalization, DepthwiseConv with
``depth_multiplier=1``, activations, dropout, pooling, padding, cropping, upsampling, global
pooling) carry a space through unchanged; Add, Subtract, Multiply, Maximum, Minimum and Average
tie the spaces of their inputs into one group (a residual stream is one group); Concatenate
places spaces side by side; Flatten (or a Reshape to one axis) after a spatial map spreads
each channel over strided inputs of the next Dense. Removing channel ``j`` of a group removes
output ``j`` of every producer, entry ``j`` of every channel-wise layer's parameters, and the
matching inputs of every consumer.

A group is *fixed* (its channels stay) when it reaches the model's inputs or outputs, or a
layer whose channel handling is not followed (Lambda, custom layers, softmax over channels,
grouped convolutions, ...); :attr:`ChannelGroup.fixed` says which layer and why.

>>> import tf_admm
>>> from tf_admm import keras
>>> x = keras.Input((8, 8, 3))
>>> a = keras.layers.Conv2D(8, 3, padding="same", name="stem")(x)
>>> b = keras.layers.Conv2D(8, 3, padding="same", name="branch")(a)
>>> y = keras.layers.Add(name="add")([a, b])
>>> y = keras.layers.GlobalAveragePooling2D()(y)
>>> model = keras.Model(x, keras.layers.Dense(2, name="head")(y))
>>> groups = tf_admm.channel_groups(model)
>>> [(g.size, g.producers, g.consumers) for g in groups.free]
[(8, ['stem', 'branch'], ['branch', 'head'])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tf_admm.graph import Graph, model_graph
from tf_admm.layer_kinds import (
    _CHANNEL_MIXING_ACTIVATIONS,
    DENSE,
    SOFTMAX_REASON,
    _activation_name,
    inner_layer,
    layer_kind,
)
from tf_admm.validation import check_model

__all__ = ["ChannelGroup", "ChannelGroups", "Member", "channel_groups"]


@dataclass(frozen=True)
class Member:
    """One layer's share of a group's channels.

    ``role``: ``"producer"`` (output channels ``start:start+length`` of the layer are the
    group's), ``"channelwise"`` (per-channel parameters at ``offset:offset+length``) or
    ``"consumer"`` (input channel ``offset + i`` of ``width`` reads group channel
    ``start + i``; after a Flatten that input repeats at every one of ``repeat`` positions,
    ``position * width + offset + i``).
    """

    layer: Any
    role: str
    offset: int
    start: int
    length: int
    width: int
    repeat: int = 1

    def positions(self, channels) -> list[int]:
        """Where the group's ``channels`` sit on this layer's channel axis (inputs for a
        consumer), in order; channels outside this member's range are skipped."""
        out = []
        for p in range(self.repeat):
            for c in channels:
                if self.start <= c < self.start + self.length:
                    out.append(p * self.width + self.offset + c - self.start)
        return sorted(out)


@dataclass
class ChannelGroup:
    """A set of channels removed together: ``size`` channels shared by every member."""

    index: int
    size: int
    members: list[Member] = field(default_factory=list)
    fixed: str | None = None

    def _names(self, role: str) -> list[str]:
        names: list[str] = []
        for m in self.members:
            if m.role == role and m.layer.name not in names:
                names.append(m.layer.name)
        return names

    @property
    def producers(self) -> list[str]:
        """Names of the layers whose output channels are the group's."""
        return self._names("producer")

    @property
    def channelwise(self) -> list[str]:
        """Names of the channel-wise layers with parameters (BatchNorm, depthwise)."""
        return self._names("channelwise")

    @property
    def consumers(self) -> list[str]:
        """Names of the layers that read the group's channels as inputs."""
        return self._names("consumer")


class ChannelGroups(list):
    """The channel groups of a model (a list of :class:`ChannelGroup`); ``str()`` is a table."""

    graph: Graph | None = None
    # tensor id -> [(group index, start, length)] along its last axis, and its repeat
    layout: dict[tuple, tuple[list[tuple[int, int, int]], int]] | None = None

    @property
    def free(self) -> list[ChannelGroup]:
        """The groups whose channels can be removed."""
        return [g for g in self if g.fixed is None]

    def positions(self, tensor, channels: dict[int, list[int]]) -> list[int]:
        """Where ``channels`` (``{group index: [channel, ...]}``) sit on the last axis of
        ``tensor`` (a :class:`tf_admm.graph.Graph` tensor id), sorted; every position of a
        channel spread by a Flatten is included."""
        if tensor not in self.layout:
            return []
        segments, repeat = self.layout[tensor]
        width = sum(n for _, _, n in segments)
        out, offset = [], 0
        for g, start, length in segments:
            for c in channels.get(g, ()):
                if start <= c < start + length:
                    out.extend(p * width + offset + c - start for p in range(repeat))
            offset += length
        return sorted(out)

    def table(self) -> str:
        def cut(names: list[str], n: int = 3) -> str:
            return ", ".join(names[:n]) + (f" (+{len(names) - n})" if len(names) > n else "")

        rows = [("group", "channels", "producers", "consumers", "fixed because")]
        for g in self:
            rows.append(
                (str(g.index), str(g.size), cut(g.producers), cut(g.consumers), g.fixed or "")
            )
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        free = self.free
        lines.append(
            f"{len(free)} of {len(self)} groups free, {sum(g.size for g in free)} removable "
            "channels"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython / notebooks
        printer.text(self.table())


@dataclass
class _Channels:
    """A tensor's channel axis: segments ``(space, start, length)``; ``repeat`` > 1 after a
    Flatten (each channel then sits at ``repeat`` strided positions)."""

    segments: list[tuple[int, int, int]]
    repeat: int = 1

    @property
    def width(self) -> int:
        return sum(s[2] for s in self.segments)


class _Builder:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.sizes: list[int] = []
        self.parent: list[int] = []
        self.fixed: dict[int, str] = {}
        self.members: dict[int, list[Member]] = {}
        self.producer_space: dict[int, int] = {}
        self.channels: dict[tuple, _Channels] = {}

    # union-find over spaces
    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def space(self, size: int, fixed: str | None = None) -> int:
        self.sizes.append(int(size))
        self.parent.append(len(self.parent))
        if fixed:
            self.fixed[len(self.sizes) - 1] = fixed
        return len(self.sizes) - 1

    def fix(self, chans: _Channels | None, reason: str) -> None:
        if chans is not None:
            for s, _, _ in chans.segments:
                self.fixed.setdefault(s, reason)

    def add(self, space: int, member: Member) -> None:
        self.members.setdefault(space, []).append(member)

    def fresh(self, shape: tuple | None, reason: str) -> _Channels:
        width = shape[-1] if shape and shape[-1] is not None else 0
        return _Channels([(self.space(width, reason), 0, width)])

    def consume(self, layer, chans: _Channels) -> None:
        if chans.repeat > 1 and not isinstance(inner_layer(layer), DENSE):
            self.fix(chans, f"{type(layer).__name__} {layer.name!r} reads a flattened map")
            return
        offset = 0
        for s, start, length in chans.segments:
            self.add(s, Member(layer, "consumer", offset, start, length, chans.width, chans.repeat))
            offset += length

    def run(self) -> ChannelGroups:
        g = self.graph
        for t in g.inputs:
            self.channels[t] = self.fresh(g.shapes.get(t), "model input")
        for node in g.nodes:
            self.visit(node)
        for t in g.outputs:
            self.fix(self.channels.get(t), "feeds a model output")
        return self.groups()

    def visit(self, node) -> None:
        layer, g = node.layer, self.graph
        ins = [self.channels.get(t) for t in node.inputs]
        in_shape = g.shapes.get(node.inputs[0]) if node.inputs else None
        out_shape = g.shapes.get(node.outputs[0]) if node.outputs else None
        kind, reason = layer_kind(layer, in_shape, node.arguments)
        label = f"{type(layer).__name__} {layer.name!r}"
        if kind != "unknown" and (not ins or any(c is None for c in ins)):
            kind, reason = "unknown", "its inputs are not followed"
        if (
            kind in ("producer", "channelwise", "passthrough", "flatten", "reshape")
            and len(ins) != 1
        ):
            kind, reason = "unknown", f"takes {len(ins)} inputs"
        out: _Channels | None = None
        if kind == "producer":
            self.consume(layer, ins[0])
            space = self.producer_space.get(id(layer))
            width = out_shape[-1] if out_shape and out_shape[-1] is not None else None
            if space is None:
                if width is None:
                    out = self.fresh(out_shape, f"{label}: output shape unknown")
                    self.channels[node.outputs[0]] = out
                    return
                space = self.space(width)
                self.producer_space[id(layer)] = space
                self.add(space, Member(layer, "producer", 0, 0, width, width))
                if _activation_name(layer) in _CHANNEL_MIXING_ACTIVATIONS:
                    self.fixed.setdefault(space, f"{label}: {SOFTMAX_REASON}")
            out = _Channels([(space, 0, self.sizes[space])])
        elif kind == "channelwise":
            chans = ins[0]
            if chans.repeat > 1:
                self.fix(chans, f"{label} reads a flattened map")
                out = self.fresh(out_shape, f"{label} reads a flattened map")
            else:
                offset = 0
                for s, start, length in chans.segments:
                    self.add(s, Member(layer, "channelwise", offset, start, length, chans.width))
                    offset += length
                out = chans
        elif kind == "passthrough":
            out = ins[0]
        elif kind == "tie":
            out = self.tie(label, ins, out_shape)
        elif kind == "concat":
            out = self.concat(layer, label, ins, out_shape)
        elif kind == "flatten":
            out = self.flatten(ins[0], in_shape)
        elif kind == "reshape":
            if in_shape and out_shape and len(out_shape) == 2 and len(in_shape) > 2:
                out = self.flatten(ins[0], in_shape)
            elif in_shape and out_shape and in_shape[-1] == out_shape[-1] and ins[0].repeat == 1:
                out = ins[0]  # the channel axis is kept: only the other axes are reshaped
            else:
                kind, reason = "unknown", "a Reshape that moves the channel axis"
        if kind == "unknown":
            for chans in ins:
                self.fix(chans, f"{label}: {reason}")
            for t in node.outputs:
                self.channels[t] = self.fresh(g.shapes.get(t), f"{label}: {reason}")
            return
        for t in node.outputs:
            self.channels[t] = out

    def tie(self, label: str, ins: list[_Channels], out_shape) -> _Channels:
        simple = all(
            len(c.segments) == 1
            and c.repeat == 1
            and c.segments[0][1] == 0
            and c.segments[0][2] == self.sizes[c.segments[0][0]]
            for c in ins
        )
        if not simple or len({c.width for c in ins}) != 1:
            reason = f"{label}: ties inputs whose channels it cannot align"
            for c in ins:
                self.fix(c, reason)
            return self.fresh(out_shape, reason)
        for c in ins[1:]:
            self.union(ins[0].segments[0][0], c.segments[0][0])
        return ins[0]

    def concat(self, layer, label: str, ins: list[_Channels], out_shape) -> _Channels:
        axis = layer.get_config().get("axis", -1)
        rank = len(out_shape) if out_shape else None
        if axis == -1 or (rank is not None and axis == rank - 1):
            if any(c.repeat > 1 for c in ins):
                reason = f"{label}: concatenates flattened maps"
                for c in ins:
                    self.fix(c, reason)
                return self.fresh(out_shape, reason)
            return _Channels([s for c in ins for s in c.segments])
        return self.tie(label, ins, out_shape)  # another axis: channels line up one to one

    def flatten(self, chans: _Channels, in_shape) -> _Channels:
        if in_shape is None or len(in_shape) <= 2:
            return chans
        spatial = 1
        for d in in_shape[1:-1]:
            if d is None:
                return self.fresh(None, "Flatten of a map with unknown size")
            spatial *= int(d)
        return _Channels(chans.segments, chans.repeat * spatial)

    def groups(self) -> ChannelGroups:
        roots: dict[int, ChannelGroup] = {}
        result = ChannelGroups()
        for s in range(len(self.sizes)):
            root = self.find(s)
            if root not in roots:
                roots[root] = ChannelGroup(len(result), self.sizes[root])
                result.append(roots[root])
            group = roots[root]
            group.members.extend(self.members.get(s, []))
            if s in self.fixed and group.fixed is None:
                group.fixed = self.fixed[s]
        # a layer met twice (shared) must read the same channels each time
        for group in result:
            seen: dict[tuple, Member] = {}
            unique = []
            for m in group.members:
                key = (id(m.layer), m.role)
                if key in seen and seen[key] != m and group.fixed is None:
                    group.fixed = f"shared layer {m.layer.name!r} reads different channels"
                if m not in unique:
                    unique.append(m)
                seen[key] = m
            group.members = unique
            if group.fixed is None and not group.producers:
                group.fixed = "no layer produces these channels"
        kept = ChannelGroups(g for g in result if g.size > 0)
        for i, group in enumerate(kept):
            group.index = i
        kept.graph = self.graph
        kept.layout = {
            t: ([(roots[self.find(s)].index, a, n) for s, a, n in c.segments if n], c.repeat)
            for t, c in self.channels.items()
        }
        return kept


def channel_groups(model, graph: Graph | None = None) -> ChannelGroups:
    """The channel groups of a built Sequential or Functional model (nested models included).

    Args:
        model: a built Keras model (wrapped by tf_admm or plain).
        graph: the model's :func:`tf_admm.graph.model_graph`, when the caller has it.

    Returns a :class:`ChannelGroups` list; ``print(groups)`` shows the table (group, channels,
    producers, consumers, why fixed), ``groups.free`` the removable ones.
    """
    check_model("channel_groups", model, built=True)
    return _Builder(graph or model_graph(model)).run()
