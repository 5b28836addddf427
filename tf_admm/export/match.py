"""Finding each Keras weight among the file's tensors (through layouts, folded BatchNorm
factors and fused LSTM gates) and patching int8 tensors onto their exact ADMM grids."""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

import numpy as np

from tf_admm import registry
from tf_admm._keras import flat_layers, keras
from tf_admm.export.grids import int8_grid
from tf_admm.export.sizes import TensorMatch, compressible_layers
from tf_admm.layouts import Layout
from tf_admm.tflite_file import ConstTensor, TFLiteFile

__all__ = ["analyse", "arrangements", "dequantized"]


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
    for layer in compressible_layers(model):
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
    for layer in compressible_layers(model):
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


def arrangements(values: np.ndarray, shape: tuple[int, ...]):
    """``values`` laid out as the converter may have (axis order, then reshape to ``shape``):
    Dense [in, out] -> [out, in]; Conv2D [h, w, in, out] -> [out, h, w, in]; depthwise
    [h, w, in, m] -> [1, h, w, in * m]."""
    if values.size != int(np.prod(shape)):
        return
    orders = itertools.permutations(range(values.ndim)) if values.ndim <= 5 else [None]
    for perm in orders:
        yield np.transpose(values, perm).reshape(shape)


def dequantized(const: ConstTensor) -> np.ndarray:
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
    stored = dequantized(const)
    step = float(np.abs(const.scales).max()) if const.dtype is np.int8 else 0.0
    for key in _named_first(const, candidates):
        values, layout = candidates[key].values, candidates[key].layout
        if key in used or values.size != stored.size:
            continue
        for expected, factor in _as_stored(values, layout, factors):
            tolerance = 0.51 * step + 1e-6 * max(float(np.abs(expected).max()), 1e-30)
            for arranged in arrangements(expected, const.shape):
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


def analyse(
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
        stored = dequantized(const)
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
