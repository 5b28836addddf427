"""Export compressed models to TFLite/LiteRT, check them in the interpreter, account their size.

:func:`export_tflite` strips the ADMM wrappers, converts (float, int8 weights or full int8,
optionally with sparse tensors), then makes the int8 weights of ADMM-quantized layers exact: the
converter picks its own scale ``max|w| / 127`` per channel, on which a k-bit grid
``alpha * {-(2^(k-1)-1), ..., 2^(k-1)-1}`` does not fall, so every int8 weight tensor whose Keras
weight lies on a grid gets that grid's scale and integers instead (and, in full-int8 files, its
bias the matching scale). Dequantized, the file's weights then equal the Keras weights.

>>> import os, tempfile, numpy as np, tf_admm
>>> from tf_admm import keras
>>> base = keras.Sequential([keras.Input((32,)), keras.layers.Dense(48, name="fc")])
>>> q = tf_admm.quantize(base, 3)
>>> _ = tf_admm.hard_project(q)
>>> path = os.path.join(tempfile.mkdtemp(), "fc.tflite")
>>> result = tf_admm.export_tflite(q, path, quantization="int8_weights")
>>> [(t.layer, t.dtype, t.exact) for t in result.tensors]
[('fc', 'int8', True)]
>>> tf_admm.check_tflite(q, path, np.ones((4, 32), "float32"))["top1_agreement"]
1.0
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tf_admm import registry
from tf_admm._keras import keras
from tf_admm.cloning import flat_layers, float32_copy, uses_reduced_precision
from tf_admm.layouts import Layout
from tf_admm.prune import strip_admm
from tf_admm.record import bits_by_layer, compression_record
from tf_admm.tflite_file import ConstTensor, TFLiteFile
from tf_admm.updates import find_wrappers
from tf_admm.validation import check_model

__all__ = [
    "QUANTIZATION_MODES",
    "ExportResult",
    "LayerSize",
    "TensorMatch",
    "check_tflite",
    "export_tflite",
    "format_bits",
    "int8_grid",
    "layer_sizes",
    "plain_model",
    "size_report",
    "zipped_size",
]

QUANTIZATION_MODES = (None, "int8_weights", "int8")
_REPRESENTATIVE_SAMPLES = 200


# -- grids -----------------------------------------------------------------------------------
def int8_grid(values: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """Per output channel (last axis), the largest scale s with values = s * q, q int in
    [-127, 127]; returns ``(scales [channels], q)`` or None if a channel has no such grid.

    >>> s, q = int8_grid(np.array([[0.3, -0.1], [0.0, 0.2], [0.6, 0.1]], "float32"))
    >>> s.round(6).tolist(), q.T.tolist()
    ([0.3, 0.1], [[1, 0, 2], [-1, 2, 1]])
    """
    values = np.asarray(values, np.float64)
    matrix = values.reshape(-1, values.shape[-1]) if values.ndim >= 1 else values.reshape(1, 1)
    scales = np.ones(matrix.shape[1])
    ints = np.zeros(matrix.shape, np.int64)
    for c in range(matrix.shape[1]):
        column = matrix[:, c]
        mags = np.abs(column[column != 0])
        if mags.size == 0:
            continue
        smallest = mags.min()
        tolerance = rtol * mags.max()
        for j in range(1, 128):
            scale = smallest / j
            q = np.round(column / scale)
            if np.abs(q).max() > 127:
                return None
            if np.abs(q * scale - column).max() <= tolerance:
                scales[c], ints[:, c] = scale, q
                break
        else:
            return None
    return scales, ints.reshape(values.shape)


def _value_bits(values: np.ndarray) -> int:
    """Bits per value: log2 of the most distinct values in a channel when on a grid, else 32."""
    if int8_grid(values) is None:
        return 32
    matrix = values.reshape(-1, values.shape[-1])
    distinct = max(len(np.unique(matrix[:, c])) for c in range(matrix.shape[1]))
    return max(1, math.ceil(math.log2(max(distinct, 2))))


def _log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def zipped_size(content: bytes) -> int:
    """Bytes of ``content`` in a zip archive with deflate (what TFMOT's tutorials quote).

    >>> zipped_size(bytes(10000)) < 200
    True
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.tflite", content)
    return len(out.getvalue())


# -- reports ---------------------------------------------------------------------------------
@dataclass
class TensorMatch:
    """One Keras weight found in the file: how it is stored and whether it is exact."""

    layer: str
    weight: str
    tensor: str
    dtype: str  # "int8", "float32", ...
    sparse: bool
    nbytes: int
    exact: bool  # dequantized file values equal the Keras weight (relative error <= 1e-6)
    max_rel_error: float
    patched: bool  # scales and integers replaced by the weight's own grid
    folded: bool = False  # stored times a BatchNormalization's per-channel factor


@dataclass
class LayerSize:
    """Size accounting of one compressible layer (all its constrained weights together)."""

    layer: str
    weights: int
    nonzeros: int
    bits: int
    file_bytes: int | None  # bytes of the matched tensors in the file (values + sparse indices)
    zipped_bytes: int | None
    lower_bound_bytes: float  # min(n * bits, nnz * bits + log2 C(n, nnz)) / 8, plus scales

    @property
    def compression(self) -> float:
        """Dense float32 bytes / lower bound."""
        return 4 * self.weights / self.lower_bound_bytes if self.lower_bound_bytes else math.inf


@dataclass
class ExportResult:
    """What :func:`export_tflite` wrote: the file, its sizes, and per-weight exactness."""

    path: str
    quantization: str | None
    sparse: bool
    bytes: int
    zipped_bytes: int
    tensors: list[TensorMatch] = field(default_factory=list)
    layers: list[LayerSize] = field(default_factory=list)
    other_parameters: int = 0  # biases and other weights not in ``layers``
    missing: list[str] = field(default_factory=list)  # compressible weights not found in file

    @property
    def lower_bound_bytes(self) -> float:
        return sum(l.lower_bound_bytes for l in self.layers) + 4 * self.other_parameters

    @property
    def exact(self) -> bool:
        """Every compressible weight was found in the file (a folded BatchNormalization
        included) and its stored values equal the Keras values (relative error <= 1e-6)."""
        return bool(self.tensors) and not self.missing and all(t.exact for t in self.tensors)

    def inexact(self) -> list[str]:
        """Why :attr:`exact` is False: one line per weight not exact or not found."""
        lines = [
            f"{t.layer}/{t.weight}: stored as {t.dtype} with relative error {t.max_rel_error:.2g}"
            for t in self.tensors
            if not t.exact
        ]
        return lines + [
            f"{name}: not found in the file (a kernel the converter transformed, e.g. split "
            "into the gate tensors of a fused LSTM op)"
            for name in self.missing
        ]

    def table(self) -> str:
        """A per-layer text table with totals."""
        head = (
            f"{'layer':<16}{'weights':>9}{'nonzero':>9}{'bits':>5}{'file B':>9}"
            f"{'zipped B':>10}{'bound B':>10}"
        )
        rows = [head, "-" * len(head)]
        for l in self.layers:
            rows.append(
                f"{l.layer:<16}{l.weights:>9}{l.nonzeros:>9}{l.bits:>5}"
                f"{l.file_bytes if l.file_bytes is not None else '-':>9}"
                f"{l.zipped_bytes if l.zipped_bytes is not None else '-':>10}"
                f"{l.lower_bound_bytes:>10.0f}"
            )
        rows.append("-" * len(head))
        rows.append(
            f"{'file':<16}{'':>9}{'':>9}{'':>5}{self.bytes:>9}{self.zipped_bytes:>10}"
            f"{self.lower_bound_bytes:>10.0f}"
        )
        return "\n".join(rows)


# -- argument checks -------------------------------------------------------------------------
def _check_model(model, caller: str) -> None:
    check_model(caller, model, built=True)


def _input_shapes(model) -> list[tuple] | None:
    """The input shapes of a Sequential/Functional model; None for a subclassed model."""
    inputs = getattr(model, "inputs", None)
    return [tuple(t.shape) for t in inputs] if inputs else None


def _check_array(data, model, name: str) -> np.ndarray:
    shapes = _input_shapes(model)
    if shapes is None:  # subclassed: the shape is checked by the model (or the file) itself
        array = np.asarray(data)
        if array.ndim < 1 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"{name} must be a non-empty numeric batch of model inputs. Received: shape "
                f"{array.shape}, dtype {array.dtype}"
            )
        return array.astype(np.float32)
    if len(shapes) != 1:
        raise ValueError(
            f"{name} as an array needs a single-input model; {model.name!r} has {len(shapes)} "
            "inputs. Pass a callable yielding lists of input batches instead."
        )
    array = np.asarray(data)
    expected = shapes[0][1:]
    ok = array.ndim == len(expected) + 1 and all(
        e is None or e == a for e, a in zip(expected, array.shape[1:])
    )
    if not ok or array.shape[0] == 0:
        raise ValueError(
            f"{name} must be a batch of model inputs of shape (n, {', '.join(map(str, expected))})"
            f". Received: shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric. Received: dtype {array.dtype}")
    return array.astype(np.float32)


def _representative(data, model) -> Callable:
    if callable(data):
        return data
    if isinstance(data, tf.data.Dataset):
        return lambda: ([tf.cast(x, tf.float32)] for x in data.unbatch().batch(1).take(500))
    array = _check_array(data, model, "representative_data")
    take = array[:_REPRESENTATIVE_SAMPLES]
    return lambda: ([take[i : i + 1]] for i in range(len(take)))


def _check_export_args(model, path, quantization, sparse, representative_data, overwrite) -> str:
    _check_model(model, "export_tflite")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike. Received: {path!r}")
    path = os.fspath(path)
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"quantization must be one of {QUANTIZATION_MODES}. Received: quantization="
            f"{quantization!r}"
        )
    for name, flag in (("sparse", sparse), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False. Received: {name}={flag!r}")
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            'quantization="int8" (full integer) needs representative_data: a batch of inputs '
            "(e.g. 100-500 training samples) to calibrate the activation ranges."
        )
    if quantization != "int8" and representative_data is not None:
        raise ValueError(
            'representative_data is only used with quantization="int8". Received it with '
            f"quantization={quantization!r}."
        )
    if representative_data is not None and not (
        callable(representative_data) or isinstance(representative_data, tf.data.Dataset)
    ):
        _check_array(representative_data, model, "representative_data")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"The directory of path does not exist. Received: path={path!r}")
    if os.path.isdir(path):
        raise ValueError(f"path is a directory; give a file name. Received: path={path!r}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"The directory of path is not writable. Received: path={path!r}")
    return path


def _check_projected(model, allow_dense: bool, caller: str) -> None:
    """Refuse a model still in its ADMM phase: its weights are not on the constraint yet."""
    if not isinstance(allow_dense, bool):
        raise ValueError(f"allow_dense must be True or False. Received: {allow_dense!r}")
    pending = [w.name for w in find_wrappers(model) if w.built and not w.masked]
    if pending and not allow_dense:
        raise ValueError(
            f"{caller}: wrappers {pending} are still in their ADMM phase, so their weights are "
            "dense (the constraint is enforced by tf_admm.hard_project). Call "
            "tf_admm.hard_project(model) (and retrain) first, or pass allow_dense=True to "
            "export the weights as they are."
        )


# -- conversion ------------------------------------------------------------------------------
def _has_recurrent_layer(model) -> bool:
    recurrent = (keras.layers.RNN, keras.layers.Bidirectional)
    return any(isinstance(layer, recurrent) for layer in flat_layers(model))


def _converter(model, batch_size: int | None):
    """From the Keras model, or, with a fixed ``batch_size``, from a model calling it on
    inputs of that batch size (the form in which recurrent layers convert)."""
    if batch_size is not None:
        inputs = [
            keras.Input(shape=tuple(t.shape[1:]), batch_size=batch_size, dtype=t.dtype)
            for t in model.inputs
        ]
        model = keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0]))
    return tf.lite.TFLiteConverter.from_keras_model(model)


def _convert(model, quantization, sparse, representative, batch_size, configure) -> bytes:
    if batch_size is None and _has_recurrent_layer(model) and _input_shapes(model):
        batch_size = 1  # recurrent layers convert with a static batch (resizable at run time)
    converter = _converter(model, batch_size)
    optimizations = []
    if quantization is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantization == "int8":
        converter.representative_dataset = representative
    if configure is not None:
        configure(converter)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras 3 prints the saved artifact
        return converter.convert()


def _has_loop(content: bytes) -> bool:
    """Whether a converted file runs a WHILE loop (a recurrent layer the converter could not
    fuse into one op)."""
    file = TFLiteFile(content)
    return any(
        graph.is_op(j, "WHILE") for graph in file.subgraphs for j in range(len(graph.operators))
    )


def _check_int8_convertible(model, batch_size, configure) -> None:
    """Full-int8 calibration of a WHILE loop crashes the TensorFlow Lite converter (a
    segmentation fault, TF 2.21, plain converter too): refuse it before it takes the process."""
    if not _has_recurrent_layer(model):
        return
    if _has_loop(_convert(model, None, False, None, batch_size, configure)):
        raise ValueError(
            'quantization="int8" (full integer) is not available for this model: its recurrent '
            "layers convert to a WHILE loop, and full-int8 calibration of such a loop crashes "
            "the TensorFlow Lite converter (segmentation fault). Use "
            'quantization="int8_weights" (int8 weights, float activations), which stores the '
            "same exact ADMM grids, or None."
        )


def plain_model(model):
    """``model`` without training wrappers: :func:`tf_admm.strip_admm` of a wrapped model, the
    model itself when it has none or when they were stripped in place (subclassed models)."""
    wrappers = find_wrappers(model)
    if not wrappers or all(w.stripped for w in wrappers):
        return model
    return strip_admm(model)


def _compressible_layers(model) -> list:
    """The compressible layers of a plain model, and the layers inside wrappers stripped in
    place (a subclassed model after ``strip_admm(model, in_place=True)``)."""
    return registry.compressible_layers(model) + [
        w.layer for w in find_wrappers(model) if w.stripped
    ]


def _wrapper_state_size(model) -> int:
    """Parameters held by in-place-stripped wrappers besides their layer's (Z, U, masks, ...)."""
    size = 0
    for wrapper in find_wrappers(model):
        own = {id(v) for v in wrapper.layer.weights}
        size += sum(int(np.prod(v.shape)) for v in wrapper.weights if id(v) not in own)
    return size


class _Candidate(NamedTuple):
    """A Keras weight export looks for in the file."""

    layer: str
    name: str
    values: np.ndarray
    layout: Layout
    step: np.ndarray | None  # the recorded grid step per output channel (quantized weights)


def _keras_weights(model, records: dict | None = None) -> list[_Candidate]:
    """Every compressible weight (nested models included), with the grid step the wrappers
    recorded for it (:func:`tf_admm.record.compression_record`) when there is one."""
    records = records or {}
    out = []
    for layer in _compressible_layers(model):
        layouts = registry.weight_layouts(layer)
        for i, (weight, layout) in enumerate(zip(registry.compressible_weights(layer), layouts)):
            name = getattr(weight, "path", None) or weight.name
            record = records.get((layer.name, i))
            step = record.step if record is not None else None
            out.append(_Candidate(layer.name, name, np.asarray(weight), layout, step))
    return out


def _lstm_layer_names(model) -> set[str]:
    """Names of the compressible layers that run an LSTMCell (alone or in Bidirectional)."""
    names = set()
    for layer in _compressible_layers(model):
        inner = [
            layer,
            getattr(layer, "forward_layer", None),
            getattr(layer, "backward_layer", None),
        ]
        if any(isinstance(getattr(x, "cell", None), keras.layers.LSTMCell) for x in inner):
            names.add(layer.name)
    return names


def _with_gate_pieces(model, candidates: list) -> tuple[list, dict[int, int]]:
    """``candidates`` plus, for every 2-D LSTM kernel, its four gate blocks (input, forget,
    cell, output: ``kernel[:, k*units:(k+1)*units]``), the tensors TFLite's fused LSTM op stores
    (tf_keras's LSTM converts to it); and the map piece key -> whole key."""
    lstm = _lstm_layer_names(model)
    out, parts = list(candidates), {}
    for key, (layer, name, values, layout, step) in enumerate(candidates):
        if layer not in lstm or values.ndim != 2 or values.shape[1] % 4:
            continue
        units = values.shape[1] // 4
        for k in range(4):
            parts[len(out)] = key
            gate = slice(k * units, (k + 1) * units)
            piece = np.ascontiguousarray(values[:, gate])
            piece_step = step if step is None or step.size == 1 else step[gate]
            out.append(_Candidate(layer, f"{name}[gate {k}]", piece, layout, piece_step))
    return out, parts


def _batchnorm_factors(model) -> list[np.ndarray]:
    """``gamma / sqrt(moving_variance + epsilon)`` of every BatchNormalization over the last
    axis (nested models included): the per-channel factor the converter folds into the kernel
    of the convolution before it."""
    factors = []
    for layer in flat_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.built:
            continue
        axis = layer.axis if isinstance(layer.axis, int) else list(layer.axis)
        if (
            axis not in (-1, [-1])
            and axis != [len(layer.input.shape) - 1]
            and axis != (len(layer.input.shape) - 1)
        ):
            continue
        variance = np.asarray(layer.moving_variance, np.float64)
        gamma = np.asarray(layer.gamma, np.float64) if layer.gamma is not None else 1.0
        factors.append(gamma / np.sqrt(variance + float(layer.epsilon)))
    return factors


def _as_stored(values: np.ndarray, layout: Layout, factors: list[np.ndarray]):
    """``values`` as the file may hold them: unchanged, then times each per-channel factor of
    the right size (BatchNormalization folded in), in float64."""
    yield values.astype(np.float64), None
    canonical = layout.canonical(values).astype(np.float64)
    for factor in factors:
        if canonical.ndim >= 2 and factor.shape == (canonical.shape[-1],):
            yield layout.restore(canonical * factor, values.shape), factor


def _arrangements(values: np.ndarray, shape: tuple[int, ...]):
    """``values`` laid out as the converter may have (axis order, then reshape to ``shape``):
    Dense [in, out] -> [out, in]; Conv2D [h, w, in, out] -> [out, h, w, in]; depthwise
    [h, w, in, m] -> [1, h, w, in * m]."""
    if values.size != int(np.prod(shape)):
        return
    orders = itertools.permutations(range(values.ndim)) if values.ndim <= 5 else [None]
    for perm in orders:
        yield np.transpose(values, perm).reshape(shape)


def _dequantized(const: ConstTensor) -> np.ndarray:
    dense = const.dense().astype(np.float64)
    if const.scales is None or const.dtype not in (np.int8,):
        return dense
    shape = [1] * len(const.shape)
    if const.scales.size > 1:
        shape[const.quantized_dimension] = const.scales.size
    return dense * const.scales.astype(np.float64).reshape(shape)


def _named_first(const: ConstTensor, candidates: list[_Candidate]) -> list[int]:
    """Candidate keys, those whose layer the tensor's name mentions first (the converter names
    tensors after the ops of the layers, e.g. ``model/conv1/Conv2D``): two weights with equal
    values (both still at their initializer, say) then go to the right layers."""
    tokens = set(re.split(r"[/;:]", const.name))
    return sorted(range(len(candidates)), key=lambda k: candidates[k].layer not in tokens)


def _match(const: ConstTensor, candidates: list[_Candidate], used: set, factors: list[np.ndarray]):
    """``(key, arranged, factor)``: the Keras weight this file tensor stores, laid out (and,
    when ``factor`` is not None, scaled by that folded BatchNormalization's per-channel factor)
    as in the file; None if none fits."""
    stored = _dequantized(const)
    step = float(np.abs(const.scales).max()) if const.dtype is np.int8 else 0.0
    for key in _named_first(const, candidates):
        values, layout = candidates[key].values, candidates[key].layout
        if key in used or values.size != stored.size:
            continue
        for expected, factor in _as_stored(values, layout, factors):
            tolerance = 0.51 * step + 1e-6 * max(float(np.abs(expected).max()), 1e-30)
            for arranged in _arrangements(expected, const.shape):
                if np.abs(arranged - stored).max() <= tolerance:
                    return key, arranged, factor
    return None


def _recorded_grid(const: ConstTensor, arranged: np.ndarray, step: np.ndarray):
    """``(scales, ints)`` of the recorded grid (``step`` per output channel, already times a
    folded BatchNormalization's factor) in the file's quantization layout; None when the file
    keeps its scales another way (e.g. one per tensor for several channel steps) or the
    values are not on it."""
    n, qdim = const.scales.size, const.quantized_dimension
    if step.size == n:
        scales = step
    elif n == 1 and np.allclose(step, step[0], rtol=1e-7, atol=0):
        scales = step[:1]
    elif step.size == 1:
        scales = np.full(n, float(step[0]))
    else:
        return None
    scales = np.where(scales > 0, scales, 1.0)  # a channel pruned away: zeros on any grid
    shape = [1] * arranged.ndim
    if n > 1:
        shape[qdim] = n
    ints = np.round(arranged / scales.reshape(shape))
    error = np.abs(ints * scales.reshape(shape) - arranged).max()
    if np.abs(ints).max() > 127 or error > 1e-6 * max(float(np.abs(arranged).max()), 1e-30):
        return None
    return scales, ints.astype(np.int64)


def _fitted_grid(const: ConstTensor, arranged: np.ndarray):
    """``(scales, ints)`` fitted to the values (no record: a model stripped before export)."""
    qdim = const.quantized_dimension
    if const.scales.size > 1:
        grid = int8_grid(np.moveaxis(arranged, qdim, -1))
        return None if grid is None else (grid[0], np.moveaxis(grid[1], -1, qdim))
    grid = int8_grid(arranged.reshape(-1, 1))
    return None if grid is None else (grid[0], grid[1].reshape(const.shape))


def _patch(
    file: TFLiteFile, const: ConstTensor, arranged: np.ndarray, step: np.ndarray | None
) -> bool:
    """Give an int8 tensor the grid of its Keras weight (if it has one); True when patched.

    ``arranged`` is the Keras weight in the file's layout; ``step`` the grid step per output
    channel the wrapper recorded (None: fit the grid to the values, per quantized channel of
    the file; a depthwise file channel is part of one Keras channel)."""
    if const.scales is None:
        return False
    grid = _recorded_grid(const, arranged, step) if step is not None else None
    grid = grid or _fitted_grid(const, arranged)
    if grid is None:
        return False
    new_scales, ints = grid
    if new_scales.size != const.scales.size:
        return False
    const.write(ints)
    const.scales[...] = new_scales.astype(np.float32)
    graph = file.subgraphs[const.subgraph]
    for copy in graph.densified(const.index):
        copy_scales, _ = graph.scales(copy)
        if copy_scales is not None and copy_scales.size == new_scales.size:
            copy_scales[...] = new_scales.astype(np.float32)
    _patch_biases(file, const, const.scales.astype(np.float64))
    return True


def _patch_biases(file: TFLiteFile, const: ConstTensor, new_w: np.ndarray) -> None:
    """Full-int8 ops hold int32 biases with scale input_scale * weight_scale: rescale them."""
    graph = file.subgraphs[const.subgraph]
    for operator, slot in graph.readers(const.index):
        if slot != 1:
            continue
        inputs = graph.operators[operator][1]
        if len(inputs) < 3 or inputs[2] < 0 or inputs[2] not in graph.constants:
            continue
        bias = graph.constants[inputs[2]]
        if bias.dtype is not np.int32 or bias.scales is None:
            continue
        input_scales, _ = graph.scales(inputs[0])
        if input_scales is None:
            continue
        real = bias.dense().astype(np.float64) * bias.scales.astype(np.float64)
        new_scale = float(input_scales[0]) * np.broadcast_to(new_w, bias.scales.shape)
        bias.write(np.round(real / new_scale).clip(-(2**31), 2**31 - 1).astype(np.int64))
        bias.scales[...] = new_scale.astype(np.float32)


def format_bits(model) -> dict[str, int]:
    """Bits per value of the wrapped layers whose weights are on their levels (after
    :func:`tf_admm.hard_project`), by inner layer name, from their compression record."""
    return bits_by_layer(compression_record(model))


def layer_sizes(
    model, matches: dict[str, list[ConstTensor]], bits_by_layer: dict[str, int] | None = None
) -> tuple[list[LayerSize], int]:
    """Per-layer size accounting of a plain model: ``([LayerSize], other parameters)``.

    ``matches`` maps layer names to the file tensors holding them (empty: no file);
    ``bits_by_layer`` gives the format's bits where known (a wrapper's constraint) instead of
    the bits the values need.

    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> sizes, others = layer_sizes(m, {})
    >>> (sizes[0].layer, sizes[0].weights, sizes[0].bits, others)
    ('fc', 32, 32, 4)
    """
    bits_by_layer = bits_by_layer or {}
    layers, compressible_params = [], 0
    for layer in _compressible_layers(model):
        weights = [np.asarray(w) for w in registry.compressible_weights(layer)]
        layouts = registry.weight_layouts(layer)
        n = sum(w.size for w in weights)
        compressible_params += n
        nnz = sum(int(np.count_nonzero(w)) for w in weights)
        known = bits_by_layer.get(layer.name)
        bits = known or max(_value_bits(l.canonical(w)) for w, l in zip(weights, layouts))
        bound = 0.0
        for w, layout in zip(weights, layouts):
            size, kept = w.size, int(np.count_nonzero(w))
            wbits = known or _value_bits(layout.canonical(w))
            bound_bits = min(size * wbits, kept * wbits + _log2_binomial(size, kept))
            if wbits < 32:  # one float32 scale per output channel
                bound_bits += 32 * layout.canonical_shape(w.shape)[-1]
            bound += bound_bits / 8
        stored = matches.get(layer.name)
        file_bytes = sum(c.nbytes for c in stored) if stored else None
        zipped = None
        if stored:
            raw = b"".join(c.data.tobytes() for c in stored)
            zipped = zipped_size(raw) - zipped_size(b"")
        layers.append(LayerSize(layer.name, n, nnz, bits, file_bytes, zipped, bound))
    total = sum(int(np.prod(w.shape)) for w in model.weights) - _wrapper_state_size(model)
    return layers, total - compressible_params


def _analyse(
    file: TFLiteFile, plain, patch: bool, records: dict | None = None
) -> tuple[list[TensorMatch], dict[str, list[ConstTensor]]]:
    candidates, parts = _with_gate_pieces(plain, _keras_weights(plain, records))
    gates: dict[int, list[int]] = {}  # whole key -> its gate keys
    for piece, whole in parts.items():
        gates.setdefault(whole, []).append(piece)
    factors = _batchnorm_factors(plain)
    used: set[int] = set()
    found, by_layer = [], {}
    for const in file.all_constants():
        if const.dtype not in (np.int8, np.float32, np.float16) or len(const.shape) < 2:
            continue
        hit = _match(const, candidates, used, factors)
        if hit is None:
            continue
        key, arranged, factor = hit
        used.add(key)
        if key in parts:  # one gate of a fused LSTM: the whole kernel is no longer a candidate
            used.add(parts[key])
        else:  # the whole kernel: its gates are no longer candidates
            used.update(gates.get(key, []))
        layer, name, _, _, step = candidates[key]
        if step is not None and factor is not None:
            step = step * factor if step.size in (1, factor.size) else None
        patched = patch and const.dtype is np.int8 and _patch(file, const, arranged, step)
        stored = _dequantized(const)
        scale = max(float(np.abs(arranged).max()), 1e-30)
        error = float(np.abs(stored - arranged.astype(np.float64)).max()) / scale
        found.append(
            TensorMatch(
                layer=layer,
                weight=name,
                tensor=const.name,
                dtype=np.dtype(const.dtype).name,
                sparse=const.sparse,
                nbytes=const.nbytes,
                exact=error <= 1e-6,
                max_rel_error=error,
                patched=bool(patched),
                folded=factor is not None,
            )
        )
        by_layer.setdefault(layer, []).append(const)
    matched = {t.weight for t in found}
    missing = []
    for key, (layer, name, *_) in enumerate(candidates):
        if key in parts:
            continue
        pieces = [candidates[p].name for p in gates.get(key, [])]
        if name in matched or (pieces and all(p in matched for p in pieces)):
            continue
        missing.append(f"{layer}/{name}")
    return found, by_layer, missing


def export_tflite(
    model,
    path: str | os.PathLike,
    *,
    quantization: str | None = None,
    sparse: bool = False,
    representative_data: Any = None,
    overwrite: bool = False,
    allow_dense: bool = False,
    batch_size: int | None = None,
    configure: Callable[[Any], None] | None = None,
) -> ExportResult:
    """Convert a (wrapped or stripped) Keras model to a ``.tflite`` file.

    Args:
        model: a Keras 3 or tf_keras model; ADMM wrappers are stripped first (the model itself
            is not changed).
        path: the file to write.
        quantization: None (float32), ``"int8_weights"`` (dynamic range: int8 weights, float
            activations) or ``"int8"`` (full integer, needs ``representative_data``). Weights
            on an ADMM grid are stored with the grid's own scale, so they are exact.
        sparse: store sparse tensors (``Optimize.EXPERIMENTAL_SPARSITY``); pays off from about
            70% sparsity.
        representative_data: for ``"int8"``: an array of inputs (first 200 used), a
            ``tf.data.Dataset`` of inputs, or a callable yielding lists of input batches.
        overwrite: replace an existing file.
        allow_dense: export wrappers still in their ADMM phase (before
            :func:`tf_admm.hard_project`) with their dense weights instead of raising.
        batch_size: convert with this fixed batch size (the model called on
            ``keras.Input(batch_size=...)``) instead of a dynamic one. Models with
            LSTM/GRU/SimpleRNN layers use 1 by default: the converter cannot lower their loops
            with a dynamic batch (tf_keras's LSTM then becomes TFLite's fused sequence op).
        configure: called with the ``tf.lite.TFLiteConverter`` just before converting, for
            any other converter setting, e.g. ``lambda c: setattr(c.target_spec,
            "supported_ops", [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])``
            (select TF ops) or float16 weights (``c.target_spec.supported_types =
            [tf.float16]``).

    A mixed-precision model (float16/bfloat16 compute) is converted from a float32 copy with
    the same weights, since TFLite has no float16 MatMul or Conv kernels.

    Returns:
        :class:`ExportResult` with sizes (raw, zipped, lower bound per layer) and, for every
        Keras weight found in the file, whether its stored values are exact.

    Raises:
        ValueError / FileExistsError: on bad arguments, before converting; ValueError for
            ``"int8"`` on a model whose recurrent layers become a WHILE loop (the converter's
            full-int8 calibration crashes on it; ``"int8_weights"`` works).
    """
    path = _check_export_args(model, path, quantization, sparse, representative_data, overwrite)
    _check_projected(model, allow_dense, "export_tflite")
    if batch_size is not None and not (
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    ):
        raise ValueError(f"batch_size must be None or an int >= 1. Received: {batch_size!r}")
    if batch_size is not None and not _input_shapes(model):
        raise ValueError("batch_size needs a model with keras.Input (not a subclassed model).")
    if configure is not None and not callable(configure):
        raise ValueError(f"configure must be a callable or None. Received: {configure!r}")
    representative = _representative(representative_data, model) if quantization == "int8" else None
    plain = plain_model(model)
    if _input_shapes(plain) and uses_reduced_precision(plain):
        plain = float32_copy(plain)
    if quantization == "int8":
        _check_int8_convertible(plain, batch_size, configure)
    records = compression_record(model)  # what the wrappers enforced: the grids to write
    file = TFLiteFile(_convert(plain, quantization, sparse, representative, batch_size, configure))
    tensors, by_layer, missing = _analyse(file, plain, quantization is not None, records)
    content = file.tobytes()
    with open(path, "wb" if overwrite else "xb") as handle:
        handle.write(content)
    layers, others = layer_sizes(plain, by_layer, bits_by_layer(records))
    return ExportResult(
        path=path,
        quantization=quantization,
        sparse=sparse,
        bytes=len(content),
        zipped_bytes=zipped_size(content),
        tensors=tensors,
        layers=layers,
        other_parameters=others,
        missing=missing,
    )


def size_report(model, path: str | os.PathLike | None = None) -> ExportResult:
    """Size accounting without converting: per-layer packing bounds, and file sizes when
    ``path`` names an existing ``.tflite`` file of this model.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> [(l.layer, l.weights, l.bits) for l in tf_admm.size_report(m).layers]
    [('fc', 32, 32)]
    """
    _check_model(model, "size_report")
    plain = plain_model(model)
    tensors, by_layer, missing, size, zipped = [], {}, [], 0, 0
    if path is not None:
        with open(path, "rb") as handle:
            content = handle.read()
        tensors, by_layer, missing = _analyse(TFLiteFile(content), plain, patch=False)
        size, zipped = len(content), zipped_size(content)
    layers, others = layer_sizes(plain, by_layer, format_bits(model))
    return ExportResult(
        path=os.fspath(path) if path is not None else "",
        quantization=None,
        sparse=False,
        bytes=size,
        zipped_bytes=zipped,
        tensors=tensors,
        layers=layers,
        other_parameters=others,
        missing=missing,
    )


# -- parity ----------------------------------------------------------------------------------
def _interpreter(path: str, content: bytes):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as err:  # pragma: no cover
        raise ImportError("check_tflite needs ai-edge-litert: pip install ai-edge-litert") from err
    file = TFLiteFile(content)
    kwargs = {}
    if file.has_sparse_tensors():
        # int8 + sparse files fail under the default XNNPACK delegate: use the builtin kernels.
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_path=path, **kwargs)


def check_tflite(
    model, path: str | os.PathLike, x: Any, y: Any = None, *, batch_size: int = 256
) -> dict:
    """Run ``path`` in the LiteRT interpreter on ``x`` and compare with the Keras ``model``.

    Returns ``max_abs_diff`` (over all outputs), ``top1_agreement`` (fraction of samples whose
    argmax over the last axis agrees) and ``samples``; with integer labels ``y`` also
    ``keras_accuracy`` and ``tflite_accuracy``. Files with sparse tensors run on the builtin
    kernels, without the XNNPACK delegate.

    >>> import numpy as np, os, tempfile, tf_admm
    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> path = tf_admm.export_tflite(m, os.path.join(tempfile.mkdtemp(), "m.tflite")).path
    >>> tf_admm.check_tflite(m, path, np.ones((5, 3), "float32"))["max_abs_diff"] < 1e-5
    True
    """
    _check_model(model, "check_tflite")
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"path must name an existing .tflite file. Received: path={path!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    x = _check_array(x, model, "x")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"y must hold one integer label per sample of x ({len(x)}). Received: shape "
                f"{y.shape}, dtype {y.dtype}"
            )
    path = os.fspath(path)
    with open(path, "rb") as handle:
        content = handle.read()
    if content[4:8] != b"TFL3":
        raise ValueError(
            f"path is not a .tflite flatbuffer (no TFL3 identifier). Received: path={path!r}, "
            f"starting with {content[:8]!r}"
        )
    interpreter = _interpreter(path, content)
    input_detail = interpreter.get_input_details()[0]
    file_shape = tuple(int(d) for d in input_detail["shape"][1:])
    shapes = _input_shapes(model) or [(None, *x.shape[1:])]
    model_shape = shapes[0][1:]
    if (
        len(interpreter.get_input_details()) != len(shapes)
        or any(m is not None and m != f for m, f in zip(model_shape, file_shape))
        or len(file_shape) != len(model_shape)
    ):
        raise ValueError(
            f"{path!r} is not a file of this model: its input is (n, "
            f"{', '.join(map(str, file_shape))}), the model's (n, "
            f"{', '.join(map(str, model_shape))}); {len(interpreter.get_input_details())} "
            f"against {len(shapes)} inputs."
        )
    expected = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    outputs = []
    fixed = int(input_detail["shape_signature"][0])  # -1: dynamic batch
    step = fixed if fixed > 0 else batch_size
    if fixed > 0:  # a file converted with a static batch (export_tflite(batch_size=...))
        interpreter.allocate_tensors()
    for start in range(0, len(x), step):
        batch = x[start : start + step]
        count = len(batch)
        if fixed > 0 and count < fixed:  # pad the last batch, drop the padding's outputs
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - count, axis=0)])
        if fixed <= 0:
            interpreter.resize_tensor_input(input_detail["index"], list(batch.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], batch.astype(input_detail["dtype"]))
        interpreter.reset_all_variables()  # fused LSTM ops keep their state between invokes
        interpreter.invoke()
        output_detail = interpreter.get_output_details()[0]
        result = interpreter.get_tensor(output_detail["index"]).astype(np.float32)
        outputs.append(result[:count])
    got = np.concatenate(outputs).reshape(expected.shape)
    agree = float(np.mean(np.argmax(got, axis=-1) == np.argmax(expected, axis=-1)))
    report = {
        "max_abs_diff": float(np.abs(got - expected).max()),
        "top1_agreement": agree,
        "samples": int(len(x)),
    }
    if y is not None:
        report["keras_accuracy"] = float(np.mean(np.argmax(expected, axis=-1) == y))
        report["tflite_accuracy"] = float(np.mean(np.argmax(got, axis=-1) == y))
    return report
