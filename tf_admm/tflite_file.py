"""Read and patch constant tensors of a ``.tflite`` flatbuffer in place (no Keras here).

The LiteRT schema (``ai_edge_litert.schema_py_generated``) gives NumPy views into a
``bytearray`` holding the file, so int8 weights, their per-channel scales and int32 biases can be
rewritten without re-serializing: every vector keeps its length. Sparse tensors (stored by
``Optimize.EXPERIMENTAL_SPARSITY`` as DENSE/CSR dimension metadata and read through a DENSIFY
op) are decoded to dense arrays and written back value by value.

>>> import numpy as np
>>> _csr_positions([{"dense": 2}, {"segments": np.array([0, 1, 3]),
...                                  "indices": np.array([2, 0, 1])}]).tolist()
[[0, 2], [1, 0], [1, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IDENTIFIER", "ConstTensor", "Subgraph", "TFLiteFile", "is_tflite", "litert_schema"]

IDENTIFIER = b"TFL3"  # a .tflite flatbuffer's file identifier, at bytes 4-8


def is_tflite(content: bytes) -> bool:
    """Whether ``content`` carries the ``.tflite`` file identifier."""
    return bytes(content[4:8]) == IDENTIFIER


def litert_schema():
    """LiteRT's generated flatbuffer schema module (``ai_edge_litert.schema_py_generated``)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as err:  # pragma: no cover - ai-edge-litert is a dependency
        raise ImportError(
            "Reading .tflite files needs ai-edge-litert: pip install ai-edge-litert"
        ) from err
    return schema_py_generated


_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


@dataclass
class ConstTensor:
    """A tensor whose values are stored in the file (``index`` within subgraph ``subgraph``)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    data: np.ndarray  # writable view of the stored values (sparse: the nonzero values only)
    scales: np.ndarray | None  # writable view, or None when not quantized
    quantized_dimension: int
    positions: np.ndarray | None = None  # sparse: coordinates [n_values, ndim] of the values
    metadata_bytes: int = 0  # sparse index arrays
    consumers: list[tuple[int, int]] = field(default_factory=list)  # (operator, input slot)
    subgraph: int = 0  # 0: the main graph

    @property
    def sparse(self) -> bool:
        return self.positions is not None

    @property
    def nbytes(self) -> int:
        """Bytes the file spends on this tensor's values and sparse indices."""
        return int(self.data.nbytes) + self.metadata_bytes

    def dense(self) -> np.ndarray:
        """The stored values as a dense array of ``shape`` (raw: int8 stays int8)."""
        if not self.sparse:
            return self.data.reshape(self.shape)
        out = np.zeros(self.shape, self.data.dtype)
        out[tuple(self.positions.T)] = self.data
        return out

    def write(self, dense_values: np.ndarray) -> None:
        """Overwrite the stored values from a dense array; sparse tensors keep their support."""
        dense_values = np.asarray(dense_values).reshape(self.shape)
        if self.sparse:
            self.data[...] = dense_values[tuple(self.positions.T)].astype(self.data.dtype)
        else:
            self.data[...] = dense_values.reshape(-1).astype(self.data.dtype)


def _index_vector(schema, table, kind: int) -> tuple[np.ndarray, int]:
    """The index values (as int64) and the bytes the file spends on them."""
    cls = {1: schema.Int32Vector, 2: schema.Uint16Vector, 3: schema.Uint8Vector}[kind]
    vector = cls()
    vector.Init(table.Bytes, table.Pos)
    values = vector.ValuesAsNumpy()
    return values.astype(np.int64), int(values.nbytes)


def _csr_positions(levels: list[dict]) -> np.ndarray:
    """Coordinates, level by level, of every stored value of a DENSE/CSR traversal.

    Each level is ``{"dense": size}`` or ``{"segments": ..., "indices": ...}``; the positions of
    one level are complete and ordered, so a CSR level's children are ``arange`` of its range.
    """
    coords = np.zeros((1, 0), np.int64)
    for level in levels:
        if "dense" in level:
            size = level["dense"]
            coords = np.concatenate(
                [np.repeat(coords, size, axis=0), np.tile(np.arange(size), len(coords))[:, None]],
                axis=1,
            )
        else:
            counts = np.diff(level["segments"])[: len(coords)]
            coords = np.concatenate(
                [np.repeat(coords, counts, axis=0), level["indices"][: counts.sum(), None]], axis=1
            )
    return coords


def _sparse_positions(schema, tensor, shape) -> tuple[np.ndarray, int]:
    sparsity = tensor.Sparsity()
    order = sparsity.TraversalOrderAsNumpy().tolist()
    block_map = sparsity.BlockMapAsNumpy().tolist() if sparsity.BlockMapLength() else []
    levels, metadata = [], 0
    for k in range(sparsity.DimMetadataLength()):
        dim = sparsity.DimMetadata(k)
        if dim.Format() == schema.DimensionType.DENSE:
            levels.append({"dense": int(dim.DenseSize())})
        else:
            segments, seg_bytes = _index_vector(
                schema, dim.ArraySegments(), dim.ArraySegmentsType()
            )
            indices, idx_bytes = _index_vector(schema, dim.ArrayIndices(), dim.ArrayIndicesType())
            metadata += seg_bytes + idx_bytes
            levels.append({"segments": segments, "indices": indices})
    coords = _csr_positions(levels)
    ndim = len(shape)
    out = np.zeros((coords.shape[0], ndim), np.int64)
    for level, dim in enumerate(order):
        if dim < ndim:
            out[:, dim] += coords[:, level]
    for b, dim in enumerate(block_map):  # blocked dims: block index * size + offset in block
        inner = order.index(ndim + b)
        out[:, dim] = out[:, dim] * levels[inner]["dense"] + coords[:, inner]
    return out, metadata


class Subgraph:
    """One subgraph of a ``.tflite`` file: its operators and its constant tensors.

    Subgraph 0 is the model's main graph; control flow (a WHILE loop, as in a Keras 3 LSTM)
    keeps the loop body, with its own constants, in further subgraphs.
    """

    def __init__(self, file: TFLiteFile, number: int):
        graph = file.model.Subgraphs(number)
        self.number = number
        self.schema = file.schema
        self.operators = []  # (builtin code, inputs, outputs)
        for j in range(graph.OperatorsLength()):
            op = graph.Operators(j)
            self.operators.append(
                (
                    file.opcodes[op.OpcodeIndex()],
                    op.InputsAsNumpy().tolist() if op.InputsLength() else [],
                    op.OutputsAsNumpy().tolist() if op.OutputsLength() else [],
                )
            )
        self.tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        self.constants: dict[int, ConstTensor] = {}
        for i, tensor in enumerate(self.tensors):
            const = self._constant(file, i, tensor)
            if const is not None:
                self.constants[i] = const
        for j, (_, inputs, _) in enumerate(self.operators):
            for slot, t in enumerate(inputs):
                if t in self.constants:
                    self.constants[t].consumers.append((j, slot))

    def _constant(self, file: TFLiteFile, index, tensor) -> ConstTensor | None:
        buffer = file.model.Buffers(tensor.Buffer())
        if buffer is None or buffer.DataLength() == 0 or tensor.Type() not in _NUMPY_TYPES:
            return None
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        data = buffer.DataAsNumpy().view(_NUMPY_TYPES[tensor.Type()])
        positions, metadata = None, 0
        if tensor.Sparsity() is not None:
            positions, metadata = _sparse_positions(self.schema, tensor, shape)
        elif data.size != int(np.prod(shape)):
            return None
        scales, qdim = self.scales(index)
        return ConstTensor(
            index=index,
            name=(tensor.Name() or b"").decode(),  # "" in a file without names
            shape=shape,
            dtype=_NUMPY_TYPES[tensor.Type()],
            data=data,
            scales=scales,
            quantized_dimension=qdim,
            positions=positions,
            metadata_bytes=metadata,
            subgraph=self.number,
        )

    def scales(self, index: int) -> tuple[np.ndarray | None, int]:
        """Writable view of tensor ``index``'s quantization scales and its quantized dimension."""
        quant = self.tensors[index].Quantization()
        if quant is None or quant.ScaleLength() == 0:
            return None, 0
        return quant.ScaleAsNumpy(), int(quant.QuantizedDimension())

    def is_op(self, operator: int, name: str) -> bool:
        return self.operators[operator][0] == getattr(self.schema.BuiltinOperator, name)

    def densified(self, index: int) -> list[int]:
        """Tensors that DENSIFY ops produce from tensor ``index`` (the ones other ops read)."""
        return [
            outputs[0]
            for code, inputs, outputs in self.operators
            if code == self.schema.BuiltinOperator.DENSIFY and inputs and inputs[0] == index
        ]

    def readers(self, index: int) -> list[tuple[int, int]]:
        """(operator, input slot) pairs reading tensor ``index`` or its densified copies."""
        ids = [index, *self.densified(index)]
        return [
            (j, slot)
            for j, (_, inputs, _) in enumerate(self.operators)
            for slot, t in enumerate(inputs)
            if t in ids
        ]


class TFLiteFile:
    """A ``.tflite`` model held in memory, with its constant tensors as writable views.

    ``subgraphs[0]`` is the main graph; :meth:`all_constants` walks every subgraph (loop
    bodies included).

    >>> import os, tempfile, tf_admm
    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
    >>> _ = tf_admm.export_tflite(m, path)
    >>> f = TFLiteFile(open(path, "rb").read())
    >>> [c.shape for c in f.all_constants() if len(c.shape) == 2]  # Dense kernel, transposed
    [(2, 4)]
    """

    def __init__(self, content: bytes):
        self.schema = litert_schema()
        self.buffer = bytearray(content)
        self.model = self.schema.Model.GetRootAsModel(self.buffer, 0)
        self.opcodes = []
        for i in range(self.model.OperatorCodesLength()):
            code = self.model.OperatorCodes(i)
            self.opcodes.append(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        self.subgraphs = [Subgraph(self, k) for k in range(self.model.SubgraphsLength())]

    def all_constants(self) -> list[ConstTensor]:
        """The constant tensors of every subgraph, main graph first."""
        return [c for graph in self.subgraphs for c in graph.constants.values()]

    def has_sparse_tensors(self) -> bool:
        return any(c.sparse for c in self.all_constants())

    def has_int8_weights(self) -> bool:
        return any(c.dtype is np.int8 for c in self.all_constants())

    def tobytes(self) -> bytes:
        return bytes(self.buffer)
