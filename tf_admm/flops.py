"""Multiply-accumulates per layer, counted from the static shapes of the model's call graph.

Counted: Dense, Conv1D/2D/3D, their transposes, DepthwiseConv and SeparableConv (the layers
whose cost channel removal changes); every other layer counts 0. One MAC is one multiply and
one add (FLOPs are twice this, as most papers count; ratios are the same).

>>> from tf_admm import keras
>>> x = keras.Input((8, 8, 3))
>>> y = keras.layers.Conv2D(4, 3, padding="same", name="c")(x)
>>> layer_macs(keras.Model(x, y))
{'c': 6912}
"""

from __future__ import annotations

import math

from tf_admm.graph import Graph, model_graph
from tf_admm.layer_kinds import CONV, DENSE, DEPTHWISE, SEPARABLE, TRANSPOSED, inner_layer

__all__ = ["layer_macs", "node_macs", "total_macs"]


def node_macs(layer, in_shape, out_shape) -> int:
    """MACs of one call of ``layer`` from its input and output shapes (0 if not counted)."""
    if in_shape is None or out_shape is None or None in in_shape[1:] or None in out_shape[1:]:
        return 0
    config = layer.get_config()
    c_in, c_out = int(in_shape[-1]), int(out_shape[-1])
    out_positions = math.prod(out_shape[1:-1])
    if isinstance(layer, DEPTHWISE):
        return out_positions * math.prod(config["kernel_size"]) * c_out
    if isinstance(layer, SEPARABLE):
        multiplier = int(config.get("depth_multiplier", 1))
        depthwise = out_positions * math.prod(config["kernel_size"]) * c_in * multiplier
        return depthwise + out_positions * c_in * multiplier * c_out
    if isinstance(layer, TRANSPOSED):
        in_positions = math.prod(in_shape[1:-1])
        return in_positions * math.prod(config["kernel_size"]) * c_in * c_out
    if isinstance(layer, CONV):
        groups = int(config.get("groups", 1))
        return out_positions * math.prod(config["kernel_size"]) * (c_in // groups) * c_out
    if isinstance(layer, DENSE):
        return out_positions * c_in * c_out
    return 0


def layer_macs(model, graph: Graph | None = None) -> dict[str, int]:
    """Multiply-accumulates of one inference (batch 1) per layer name, for the layers that
    have them (a layer called twice counts twice)."""
    graph = graph or model_graph(model)
    macs: dict[str, int] = {}
    for node in graph.nodes:
        layer = inner_layer(node.layer)
        in_shape = graph.shapes.get(node.inputs[0]) if node.inputs else None
        out_shape = graph.shapes.get(node.outputs[0]) if node.outputs else None
        count = node_macs(layer, in_shape, out_shape)
        if count:
            macs[node.layer.name] = macs.get(node.layer.name, 0) + count
    return macs


def total_macs(model, graph: Graph | None = None) -> int:
    """Multiply-accumulates of one inference (batch 1) of the whole model."""
    return sum(layer_macs(model, graph).values())
