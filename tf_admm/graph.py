"""The call graph of a Sequential or Functional model, nested models inlined, read from the
public ``get_config()`` of each model (both Keras flavours).

Each :class:`Node` is one call of one layer: the tensors it reads and writes (global ids) and
their static shapes. Nodes come in an order where every tensor is written before it is read.
Channel groups (:mod:`tf_admm.channels`), FLOP counts (:mod:`tf_admm.flops`) and
:func:`tf_admm.shrink` all read this one walk instead of visiting the model again.

>>> from tf_admm import keras
>>> inputs = keras.Input((4,))
>>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
>>> g = model_graph(model)
>>> [n.layer.name for n in g.nodes], g.shapes[g.nodes[0].outputs[0]]
(['d'], (None, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tf_admm._keras import is_functional, is_model, is_sequential, keras

__all__ = ["Graph", "Node", "model_graph"]

TensorId = tuple


@dataclass
class Node:
    """One call of ``layer``: input and output tensor ids, in call order."""

    layer: Any
    inputs: list[TensorId]
    outputs: list[TensorId]
    # the positional arguments of the call: ("tensor", i) for inputs[i], ("value", v) for a
    # constant (a Keras 3 operation such as ``x + 3.0``); None when not recorded
    arguments: list[tuple] | None = None


@dataclass
class Graph:
    """Nodes in dependency order, the shapes of every tensor, and the model's inputs/outputs."""

    nodes: list[Node] = field(default_factory=list)
    shapes: dict[TensorId, tuple | None] = field(default_factory=dict)
    inputs: list[TensorId] = field(default_factory=list)
    outputs: list[TensorId] = field(default_factory=list)
    # id(nested model) -> the tensors it is called on (its first call)
    nested_inputs: dict[int, list[TensorId]] = field(default_factory=dict)


def _shape(tensor) -> tuple | None:
    shape = getattr(tensor, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        return None


def _output_shapes(layer, count: int) -> list[tuple | None]:
    """Static shapes of the layer's (first call's) outputs; None where unknown (a layer called
    more than once has no single ``output``)."""
    try:
        value = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return [None] * count
    values = value if isinstance(value, (list, tuple)) else [value]
    shapes = [_shape(v) for v in values]
    return (shapes + [None] * count)[:count] if len(shapes) != count else shapes


def _tensor_refs(obj) -> list[tuple]:
    """The ``(layer_name, node_index, tensor_index)`` references in a Keras 3 or tf_keras
    inbound-node entry, in order."""
    refs: list[tuple] = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            history = obj["config"]["keras_history"]
            refs.append((history[0], int(history[1]), int(history[2])))
        else:
            for value in obj.values():
                refs.extend(_tensor_refs(value))
    elif isinstance(obj, (list, tuple)):
        if (
            len(obj) >= 3
            and isinstance(obj[0], str)
            and isinstance(obj[1], int)
            and isinstance(obj[2], int)
        ):
            refs.append((obj[0], obj[1], obj[2]))  # tf_keras: [name, node, tensor, kwargs]
            if len(obj) > 3:
                refs.extend(_tensor_refs(obj[3]))
        else:
            for value in obj:
                refs.extend(_tensor_refs(value))
    return refs


def _arguments(node) -> list[tuple] | None:
    """The positional arguments of a Keras 3 inbound node: tensors by their order, numbers
    as values; None if another kind of argument is there."""
    if not isinstance(node, dict):
        return None
    out, count = [], 0
    for arg in node.get("args", []):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            out.append(("tensor", count))
            count += 1
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            out.append(("value", arg))
        else:
            return None
    return out


def _as_ref_list(entry) -> list[tuple]:
    if entry and isinstance(entry[0], str):
        entry = [entry]
    return [(e[0], int(e[1]), int(e[2])) for e in entry]


class _Walker:
    def __init__(self):
        self.graph = Graph()
        self.count = 0

    def new_id(self, *parts) -> TensorId:
        self.count += 1
        return (self.count, *parts)

    def call(self, layer, inputs: list[TensorId], n_outputs: int = 1, arguments=None):
        if is_model(layer):
            return self.model(layer, inputs)
        outputs = [self.new_id(layer.name, i) for i in range(n_outputs)]
        for t, shape in zip(outputs, _output_shapes(layer, n_outputs)):
            self.graph.shapes[t] = shape
        self.graph.nodes.append(Node(layer, list(inputs), outputs, arguments))
        return outputs

    def model(self, model, inputs: list[TensorId] | None) -> list[TensorId]:
        if inputs is not None:
            self.graph.nested_inputs.setdefault(id(model), list(inputs))
        if is_sequential(model):
            return self.sequential(model, inputs)
        if is_functional(model):
            return self.functional(model, inputs)
        raise ValueError(
            "tf_admm follows the layers of Sequential and Functional models only. Received: "
            f"a subclassed model {model.name!r} of type {type(model).__name__}, whose graph "
            "cannot be read from its config."
        )

    def sequential(self, model, inputs):
        if inputs is None:
            inputs = [self.new_id(model.name, "input")]
            self.graph.shapes[inputs[0]] = _shape(model.inputs[0]) if model.inputs else None
            self.graph.inputs.extend(inputs)
        x = inputs
        for layer in model.layers:
            x = self.call(layer, x)
        return x

    def functional(self, model, inputs):
        config = model.get_config()
        layers = {entry["name"]: entry for entry in config["layers"]}
        input_refs = _as_ref_list(config["input_layers"])
        output_refs = _as_ref_list(config["output_layers"])
        known: dict[tuple, TensorId] = {}
        if inputs is None:
            inputs = []
            for ref, tensor in zip(input_refs, model.inputs):
                t = self.new_id(ref[0], "input")
                self.graph.shapes[t] = _shape(tensor)
                inputs.append(t)
            self.graph.inputs.extend(inputs)
        if len(inputs) != len(input_refs):
            raise ValueError(
                f"Model {model.name!r} takes {len(input_refs)} inputs; it is called with "
                f"{len(inputs)} in the enclosing model."
            )
        for ref, t in zip(input_refs, inputs):
            known[(ref[0], 0)] = [t]
        pending = [
            (entry["name"], k, node)
            for entry in config["layers"]
            if entry["class_name"] != "InputLayer"
            for k, node in enumerate(entry.get("inbound_nodes", []))
        ]

        # Keras 3 records keras.ops calls in the graph as operations, which are not layers
        operations = {
            op.name: op
            for op in getattr(model, "operations", [])
            if not isinstance(op, keras.layers.Layer)
        }
        n_outputs: dict[str, int] = {}
        for ref in output_refs + [
            r for e in config["layers"] for n in e.get("inbound_nodes", []) for r in _tensor_refs(n)
        ]:
            n_outputs[ref[0]] = max(n_outputs.get(ref[0], 1), ref[2] + 1)

        def resolve(ref) -> TensorId | None:
            name, node_index, tensor_index = ref
            n_nodes = len(layers[name].get("inbound_nodes", [])) or 1
            # tf_keras may number a nested model's call after calls made outside this model;
            # a layer called once here has one node, whatever its number.
            key = (name, node_index if n_nodes > 1 else 0)
            found = known.get(key)
            if found is None or tensor_index >= len(found):
                return None
            return found[tensor_index]

        while pending:
            progressed = False
            for item in list(pending):
                name, k, node = item
                refs = _tensor_refs(node)
                resolved = [resolve(r) for r in refs]
                if any(r is None for r in resolved):
                    continue
                layer = operations.get(name)
                arguments = None
                if layer is None:
                    layer = model.get_layer(name)
                else:  # a Keras 3 operation (``x + 3.0``): keep its constant arguments
                    arguments = _arguments(node)
                n_out = n_outputs.get(name, 1)
                known[(name, k if len(layers[name].get("inbound_nodes", [])) > 1 else 0)] = (
                    self.call(layer, resolved, n_out, arguments)
                )
                pending.remove(item)
                progressed = True
            if not progressed:
                names = sorted({p[0] for p in pending})
                raise ValueError(
                    f"Could not order the layers of model {model.name!r}: {names} read tensors "
                    "that no layer of the model writes."
                )
        outputs = [resolve(r) for r in output_refs]
        if any(o is None for o in outputs):
            raise ValueError(f"Could not find the outputs of model {model.name!r}.")
        return outputs


def model_graph(model) -> Graph:
    """The call graph of a built Sequential or Functional ``model`` (nested models inlined).

    Raises ValueError for a subclassed model (its graph is not in its config).
    """
    walker = _Walker()
    walker.graph.outputs = walker.model(model, None)
    return walker.graph
