"""The ``tf-admm`` command line: what users do with model files.

    tf-admm summary model.keras
    tf-admm export model.keras out.tflite [--quantization int8_weights|int8] [--sparse]
                   [--data x.npz] [--overwrite]
    tf-admm check model.keras out.tflite --data x.npz

``--data`` is an ``.npz`` holding the inputs under ``x`` (or ``x_test``; uint8 images are
scaled to [0, 1]) and optionally integer labels under ``y`` (or ``y_test``). Also
``python -m tf_admm ...``. Each command prints a readable table or report, then one JSON line
with the numbers. Errors are one line on stderr and exit status 2.

>>> from tf_admm import cli
>>> cli.main(["--help"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
SystemExit: 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

import tf_admm  # the package (registers the ADMM objects for loading); not imported by it
from tf_admm import keras

__all__ = ["main"]


def _load_model(path: str):
    if not os.path.isfile(path):
        raise ValueError(f"no such model file: {path}")
    return keras.models.load_model(path)


def _load_data(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    if not os.path.isfile(path):
        raise ValueError(f"no such data file: {path}")
    with np.load(path) as data:
        key = next((k for k in ("x", "x_test") if k in data.files), None)
        if key is None:
            raise ValueError(f"{path} holds {data.files}; expected inputs under 'x' or 'x_test'")
        x = data[key]
        label = next((k for k in ("y", "y_test") if k in data.files), None)
        y = data[label] if label else None
    if x.dtype == np.uint8:
        x = x.astype("float32") / 255.0
    return x, y


def _fit_shape(x: np.ndarray, model) -> np.ndarray:
    """Add the channel axis of 28x28 MNIST-style images when the model expects one."""
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim == len(expected) and expected[-1] == 1:
        x = x[..., None]
    return x


def _summary(args) -> dict[str, Any]:
    return tf_admm.summary(_load_model(args.model))["total"]


def _export(args) -> dict[str, Any]:
    model = _load_model(args.model)
    representative = None
    if args.data:
        representative = _fit_shape(_load_data(args.data)[0], model)
    result = tf_admm.export_tflite(
        model,
        args.out,
        quantization=args.quantization,
        sparse=args.sparse,
        representative_data=representative,
        overwrite=args.overwrite,
    )
    print(result.table())
    return {"path": result.path, "bytes": result.bytes, "zipped_bytes": result.zipped_bytes}


def _check(args) -> dict[str, Any]:
    model = _load_model(args.model)
    x, y = _load_data(args.data)
    x = _fit_shape(x, model)
    if y is not None:
        y = y.astype("int64")
    return tf_admm.check_tflite(model, args.tflite, x, y)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-admm", description="Inspect, export and check ADMM-compressed Keras models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("summary", help="per-layer weights, nonzeros, bits and compression")
    p.add_argument("model", help="a .keras file (wrapped or stripped)")
    p.set_defaults(run=_summary)
    p = commands.add_parser("export", help="convert to .tflite (exact int8 for ADMM grids)")
    p.add_argument("model", help="a .keras file")
    p.add_argument("out", help="the .tflite file to write")
    p.add_argument("--quantization", choices=("int8_weights", "int8"), default=None)
    p.add_argument("--sparse", action="store_true", help="store sparse tensors")
    p.add_argument("--data", help="an .npz of inputs (x) for --quantization int8")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_export)
    p = commands.add_parser("check", help="run a .tflite in LiteRT against the Keras model")
    p.add_argument("model", help="the .keras file")
    p.add_argument("tflite", help="the .tflite file")
    p.add_argument("--data", required=True, help="an .npz of inputs x (and labels y)")
    p.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"tf-admm {args.command}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, default=float))  # the last line: machine-readable
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
