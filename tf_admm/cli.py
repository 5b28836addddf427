"""The ``tf-admm`` command line: what users do with model files.

    tf-admm summary model.keras
    tf-admm groups model.keras
    tf-admm export model.keras out.tflite [--quantization int8_weights|int8] [--sparse]
                   [--data x.npz] [--overwrite]
    tf-admm check model.keras out.tflite --data x.npz
    tf-admm shrink model.keras small.keras [--overwrite]

``--data`` is an ``.npz`` holding the inputs under ``x`` (or ``x_test``; uint8 images are
scaled to [0, 1]) and optionally integer labels under ``y`` (or ``y_test``). Also
``python -m tf_admm ...``. ``groups`` prints :func:`tf_admm.channel_groups`; ``shrink`` writes
:func:`tf_admm.shrink`'s smaller model (the dead channels of a channel-pruned model removed)
and reports its multiply-accumulates and parameters against the input's and the largest
relative difference of their outputs (every output) on random inputs. Each command prints a
readable table or report, then one JSON line with the numbers. Errors are one line on stderr
and exit status 2.

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
import tensorflow as tf

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


def _groups(args) -> dict[str, Any]:
    groups = tf_admm.channel_groups(_load_model(args.model))
    print(groups.table())
    free = groups.free
    return {
        "groups": len(groups),
        "free": len(free),
        "removable_channels": sum(g.size for g in free),
        "fixed": {str(g.index): g.fixed for g in groups if g.fixed is not None},
    }


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


def _output_difference(model, small) -> float | None:
    """The largest relative difference of ``small``'s outputs (every output) from
    ``model``'s on 4 random inputs: shrink's promise, checked on this model. None for a model
    with several inputs or inputs of unknown shape."""
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if shape is None or None in shape:
        return None
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
    pairs = zip(
        tf.nest.flatten(model(x, training=False)), tf.nest.flatten(small(x, training=False))
    )
    worst = 0.0
    for a, b in pairs:
        a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12)))
    return worst


def _shrink(args) -> dict[str, Any]:
    from tf_admm.export.checks import check_output_path
    from tf_admm.flops import total_macs

    if not str(args.out).endswith(".keras"):
        raise ValueError(f"the shrunk model is written as a .keras file. Received: {args.out!r}")
    out = check_output_path(args.out, args.overwrite, "out")  # before any work
    model = _load_model(args.model)
    small = tf_admm.shrink(model)
    small.save(out)
    difference = _output_difference(model, small)
    before, after = total_macs(model), total_macs(small)
    result = {
        "path": out,
        "macs_before": before,
        "macs": after,
        "flops_rate": before / max(after, 1),
        "params_before": int(model.count_params()),
        "params": int(small.count_params()),
        "max_rel_diff": difference,
    }
    print(
        f"{out}: {after:,} multiply-accumulates ({result['flops_rate']:.2f}x fewer than "
        f"{before:,}), {result['params']:,} parameters (from {result['params_before']:,}); "
        + (
            "outputs not compared (inputs of unknown shape)"
            if difference is None
            else f"largest relative output difference {difference:.1e} on random inputs"
        )
    )
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-admm",
        description="Inspect, shrink, export and check ADMM-compressed Keras models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("summary", help="per-layer weights, nonzeros, bits and compression")
    p.add_argument("model", help="a .keras file (wrapped or stripped)")
    p.set_defaults(run=_summary)
    p = commands.add_parser("groups", help="the channel groups: what can be removed together")
    p.add_argument("model", help="a .keras file (wrapped or stripped)")
    p.set_defaults(run=_groups)
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
    p = commands.add_parser("shrink", help="remove dead channels: a smaller, faster dense model")
    p.add_argument("model", help="a .keras file with whole zero channels (wrapped or stripped)")
    p.add_argument("out", help="the .keras file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_shrink)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        message = str(error)
        if isinstance(error, FileExistsError):  # the library's keyword is a flag here
            message = message.replace("overwrite=True", "--overwrite")
        print(f"tf-admm {args.command}: {message}", file=sys.stderr)
        return 2
    print(json.dumps(result, default=float))  # the last line: machine-readable
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
