"""Conversion to a TFLite flatbuffer: the converter's settings, recurrent layers, full-int8
refusals, and the plain model a wrapped one converts as."""

from __future__ import annotations

import contextlib
import io
import warnings

import tensorflow as tf

from tf_admm._keras import flat_layers, keras
from tf_admm.export.checks import input_shapes
from tf_admm.prune import strip_admm
from tf_admm.tflite_file import TFLiteFile
from tf_admm.updates import find_wrappers

__all__ = ["check_int8_convertible", "convert", "plain_model"]


def has_recurrent_layer(model) -> bool:
    recurrent = (keras.layers.RNN, keras.layers.Bidirectional)
    return any(isinstance(layer, recurrent) for layer in flat_layers(model))


def make_converter(model, batch_size: int | None):
    """From the Keras model, or, with a fixed ``batch_size``, from a model calling it on
    inputs of that batch size (the form in which recurrent layers convert)."""
    if batch_size is not None:
        inputs = [
            keras.Input(shape=tuple(t.shape[1:]), batch_size=batch_size, dtype=t.dtype)
            for t in model.inputs
        ]
        model = keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0]))
    return tf.lite.TFLiteConverter.from_keras_model(model)


def convert(model, quantization, sparse, representative, batch_size, configure) -> bytes:
    if batch_size is None and has_recurrent_layer(model) and input_shapes(model):
        batch_size = 1  # recurrent layers convert with a static batch (resizable at run time)
    converter = make_converter(model, batch_size)
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
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Keras 3 prints the saved artifact; int8-weight files need no input statistics, of
        # which the converter warns whatever the file
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def has_loop(content: bytes) -> bool:
    """Whether a converted file runs a WHILE loop (a recurrent layer the converter could not
    fuse into one op)."""
    file = TFLiteFile(content)
    return any(
        graph.is_op(j, "WHILE") for graph in file.subgraphs for j in range(len(graph.operators))
    )


def check_int8_convertible(model, batch_size, configure) -> None:
    """Full-int8 calibration of a WHILE loop crashes the TensorFlow Lite converter (a
    segmentation fault, TF 2.21, plain converter too): refuse it before it takes the process."""
    if not has_recurrent_layer(model):
        return
    if has_loop(convert(model, None, False, None, batch_size, configure)):
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
