"""The argument checks of export and parity, each before any work is done."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tf_admm.updates import find_wrappers
from tf_admm.validation import check_model

__all__ = [
    "QUANTIZATION_MODES",
    "check_array",
    "check_built_model",
    "check_export_args",
    "check_projected",
    "input_shapes",
    "representative_batches",
]


QUANTIZATION_MODES = (None, "int8_weights", "int8")


REPRESENTATIVE_SAMPLES = 200


def check_built_model(model, caller: str) -> None:
    check_model(caller, model, built=True)


def input_shapes(model) -> list[tuple] | None:
    """The input shapes of a Sequential/Functional model; None for a subclassed model."""
    inputs = getattr(model, "inputs", None)
    return [tuple(t.shape) for t in inputs] if inputs else None


def check_array(data, model, name: str) -> np.ndarray:
    shapes = input_shapes(model)
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


def representative_batches(data, model) -> Callable:
    if callable(data):
        return data
    if isinstance(data, tf.data.Dataset):
        return lambda: ([tf.cast(x, tf.float32)] for x in data.unbatch().batch(1).take(500))
    array = check_array(data, model, "representative_data")
    take = array[:REPRESENTATIVE_SAMPLES]
    return lambda: ([take[i : i + 1]] for i in range(len(take)))


def check_export_args(
    model, path, quantization, sparse, representative_data, overwrite, strip_names=False
) -> str:
    check_built_model(model, "export_tflite")
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"quantization must be one of {QUANTIZATION_MODES}. Received: quantization="
            f"{quantization!r}"
        )
    for name, flag in (("sparse", sparse), ("overwrite", overwrite), ("strip_names", strip_names)):
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
        check_array(representative_data, model, "representative_data")
    return check_output_path(path, overwrite)


def check_output_path(path, overwrite: bool, name: str = "path") -> str:
    """``path`` as a str, after checking that a file can be written there: its directory
    exists and is writable, it is not a directory, and it does not exist unless ``overwrite``.
    ``name`` is the argument's name in the messages."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a str or os.PathLike. Received: {path!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"The directory of {name} does not exist. Received: {name}={path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory; give a file name. Received: {name}={path!r}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"The directory of {name} is not writable. Received: {name}={path!r}")
    return path


def check_projected(model, allow_dense: bool, caller: str) -> None:
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
