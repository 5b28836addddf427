"""LiteRT invoke time of the files export_tflite writes, as ratios to the dense float file.

For LeNet-5 (pruned to the ECCV'18 targets, about 71x) and MobileNetV2 0.35 at 32x32x3
(pruned to 90% with LAMP targets), all 4-bit after pruning, it writes the dense float file and
the compressed model as float, float + sparse tensors, full int8 and full int8 + sparse
tensors, plus the dense model's post-training int8 file, then times ``invoke()`` on batch 1,
one thread, in this process one file after the other (median of ``--repeats`` rounds of
``--invokes`` calls, after a warm-up). Weights are random: latency does not depend on what the
model learned, only on shapes, sparsity and types.

Every file runs with LiteRT's default XNNPACK delegate where the delegate takes it, else on the
builtin kernels (XNNPACK refuses some int8 + sparse files, see docs/export.md), which the table
says; the dense float file is timed both ways: with the default delegate (the baseline of the
ratios) and without it.

    python benchmarks/bench_latency.py --out docs/latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import common
import numpy as np

import tf_admm
from tf_admm import keras


def _interpreter(path: str, builtin: bool, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": threads}
    if builtin:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=path, **kwargs)
    interpreter.allocate_tensors()
    return interpreter


def time_file(
    path: str, x: np.ndarray, builtin: bool, invokes: int, repeats: int, threads: int = 1
) -> float:
    """Median over ``repeats`` of the mean seconds per ``invoke()`` (batch 1)."""
    return time_files([path], x, invokes, repeats, threads, builtin)[0]


def time_files(
    paths: list[str], x, invokes: int, repeats: int, threads: int = 1, builtin: bool = False
) -> list[float]:
    """:func:`time_file` for several files at once, their rounds interleaved (file 1, file 2,
    ..., file 1, ...), so that a drift of the machine's speed during the run falls on every
    file alike; each file's median over ``repeats`` rounds of ``invokes`` calls. ``x``: one
    input for every file, or a list with one per file."""
    inputs = x if isinstance(x, (list, tuple)) else [x] * len(paths)
    interpreters = []
    for path, x in zip(paths, inputs):
        interpreter = _interpreter(path, builtin, threads)
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], x[:1].astype(detail["dtype"]))
        for _ in range(max(invokes // 5, 5)):  # warm-up
            interpreter.invoke()
        interpreters.append(interpreter)
    rounds: list[list[float]] = [[] for _ in paths]
    for _ in range(repeats):
        for interpreter, times in zip(interpreters, rounds):
            start = time.perf_counter()
            for _ in range(invokes):
                interpreter.invoke()
            times.append((time.perf_counter() - start) / invokes)
    return [statistics.median(times) for times in rounds]


def files_for(name: str, dense, targets, x, directory: str) -> list[tuple[str, str, bool]]:
    """(label, path, sparse) of every file of one network."""
    compressed = tf_admm.compress(dense, sparsity=targets, bits=4)
    tf_admm.hard_project(compressed)
    final = tf_admm.strip_admm(compressed)
    calibration = x[:50]
    out = []

    def export(label, model, **kwargs):
        path = os.path.join(directory, f"{name}_{label.replace(' ', '_')}.tflite")
        if kwargs.get("quantization") == "int8":
            kwargs["representative_data"] = calibration
        tf_admm.export_tflite(model, path, overwrite=True, **kwargs)
        out.append((label, path, kwargs.get("sparse", False)))

    export("dense float", dense)
    export("dense int8", dense, quantization="int8")
    export("admm float", final)
    export("admm float sparse", final, sparse=True)
    export("admm int8", final, quantization="int8")
    export("admm int8 sparse", final, quantization="int8", sparse=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invokes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--networks", default="lenet5,mobilenet_v2")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    directory = tempfile.mkdtemp()
    results = []
    for name in args.networks.split(","):
        if name == "lenet5":
            dense, targets = common.lenet5(), dict(common.ECCV18_TARGETS)
            x = rng.random((64, 28, 28, 1)).astype("float32")
        elif name == "mobilenet_v2":
            dense = keras.applications.MobileNetV2(
                input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
            )
            targets = tf_admm.allocate_sparsity(dense, 10.0)
            x = rng.random((64, 32, 32, 3)).astype("float32")
        else:
            raise SystemExit(f"unknown network {name!r}; allowed: lenet5, mobilenet_v2")
        files = files_for(name, dense, targets, x, directory)
        base = time_file(files[0][1], x, False, args.invokes, args.repeats)
        base_builtin = time_file(files[0][1], x, True, args.invokes, args.repeats)
        rows = [
            {"file": "dense float", "kernels": "default (XNNPACK)", "seconds": base},
            {"file": "dense float", "kernels": "builtin", "seconds": base_builtin},
        ]
        for label, path, _ in files[1:]:
            try:  # the default delegate where it takes the file, else the builtin kernels
                seconds = time_file(path, x, False, args.invokes, args.repeats)
                kernels = "default (XNNPACK)"
            except RuntimeError:
                seconds = time_file(path, x, True, args.invokes, args.repeats)
                kernels = "builtin (XNNPACK refused the file)"
            rows.append({"file": label, "kernels": kernels, "seconds": seconds})
        for row in rows:
            row.update(
                network=name,
                bytes=os.path.getsize(next(p for label, p, _ in files if label == row["file"])),
                ratio_to_dense_float=round(row["seconds"] / base, 3),
                microseconds=round(1e6 * row["seconds"], 1),
            )
            del row["seconds"]
        results.extend(rows)
    print("| network | file | kernels | bytes | us per invoke | time / dense float |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['network']} | {r['file']} | {r['kernels']} | {r['bytes']:,} | "
            f"{r['microseconds']:.1f} | {r['ratio_to_dense_float']:.2f} |"
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(
                {"invokes": args.invokes, "repeats": args.repeats, "rows": results},
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
