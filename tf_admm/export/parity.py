"""Parity of a file with its Keras model in the LiteRT interpreter."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tf_admm.export.checks import check_array, check_built_model, input_shapes
from tf_admm.tflite_file import TFLiteFile, is_tflite

__all__ = ["check_tflite"]


def open_interpreter(path: str, content: bytes):
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


def run_interpreter(interpreter, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The first output of ``interpreter`` on ``x`` (float32), in batches of ``batch_size``.

    A file converted with a static batch runs in batches of that size, the last one padded
    (the padding's outputs dropped); a dynamic batch is resized to each batch.
    """
    input_detail = interpreter.get_input_details()[0]
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
    return np.concatenate(outputs)


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
    check_built_model(model, "check_tflite")
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"path must name an existing .tflite file. Received: path={path!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    x = check_array(x, model, "x")
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
    if not is_tflite(content):
        raise ValueError(
            f"path is not a .tflite flatbuffer (no TFL3 identifier). Received: path={path!r}, "
            f"starting with {content[:8]!r}"
        )
    interpreter = open_interpreter(path, content)
    input_detail = interpreter.get_input_details()[0]
    file_shape = tuple(int(d) for d in input_detail["shape"][1:])
    shapes = input_shapes(model) or [(None, *x.shape[1:])]
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
    got = run_interpreter(interpreter, x, batch_size).reshape(expected.shape)
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
