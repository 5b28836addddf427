"""The two calls that write or read a file's accounting: :func:`export_tflite` and
:func:`size_report`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tf_admm.cloning import float32_copy, uses_reduced_precision
from tf_admm.export.checks import (
    check_built_model,
    check_export_args,
    check_projected,
    input_shapes,
    representative_batches,
)
from tf_admm.export.convert import check_int8_convertible, convert, plain_model
from tf_admm.export.match import analyse
from tf_admm.export.names import strip_names as strip
from tf_admm.export.sizes import ExportResult, format_bits, layer_sizes, zipped_size
from tf_admm.record import bits_by_layer, compression_record
from tf_admm.tflite_file import TFLiteFile

__all__ = ["export_tflite", "size_report"]


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
    strip_names: bool = False,
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
        strip_names: write the file without the names of its intermediate tensors, subgraphs
            and description (:func:`tf_admm.export.names.strip_names`): the same weights and
            outputs in fewer bytes (on small networks the converter's names are several
            percent of the file); input, output and signature names are kept.

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
    path = check_export_args(
        model, path, quantization, sparse, representative_data, overwrite, strip_names
    )
    check_projected(model, allow_dense, "export_tflite")
    if batch_size is not None and not (
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    ):
        raise ValueError(f"batch_size must be None or an int >= 1. Received: {batch_size!r}")
    if batch_size is not None and not input_shapes(model):
        raise ValueError("batch_size needs a model with keras.Input (not a subclassed model).")
    if configure is not None and not callable(configure):
        raise ValueError(f"configure must be a callable or None. Received: {configure!r}")
    representative = (
        representative_batches(representative_data, model) if quantization == "int8" else None
    )
    plain = plain_model(model)
    if input_shapes(plain) and uses_reduced_precision(plain):
        plain = float32_copy(plain)
    if quantization == "int8":
        check_int8_convertible(plain, batch_size, configure)
    records = compression_record(model)  # what the wrappers enforced: the grids to write
    file = TFLiteFile(convert(plain, quantization, sparse, representative, batch_size, configure))
    tensors, by_layer, missing = analyse(file, plain, quantization is not None, records)
    content = strip(file.tobytes()) if strip_names else file.tobytes()
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
    check_built_model(model, "size_report")
    plain = plain_model(model)
    tensors, by_layer, missing, size, zipped = [], {}, [], 0, 0
    if path is not None:
        with open(path, "rb") as handle:
            content = handle.read()
        tensors, by_layer, missing = analyse(TFLiteFile(content), plain, patch=False)
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
