"""LeNet-5 on MNIST: ADMM quantization against TFMOT int8 QAT and post-training int8, one run.

    python benchmarks/bench_quantization.py                  # the full table (about 25 CPU-min)
    python benchmarks/bench_quantization.py --quick          # a smoke run of every row
    python benchmarks/bench_quantization.py --out docs/quantization.json

Rows, all from the same dense LeNet-5 (trained here first, float TFLite file as the size base):
  (a) ADMM 3-bit quantization of every layer, exported as full int8 with the ADMM scales;
  (b) fully binarized LeNet-5: conv2 and fc1 first, then conv1 and fc2 too (the paper's order);
  (c) the 71.2x pruning of examples/lenet5_admm.py, then 3-bit on the survivors,
      exported as full int8 with sparse tensors;
  (d) TFMOT int8 quantization-aware training (tf_keras, in a subprocess);
  (e) TFMOT/TFLite post-training full int8 of the dense model (same subprocess).
Columns: Keras and TFLite test accuracy (10,000 images), Keras/TFLite top-1 agreement, file size
raw and zipped and the ratio to the dense float file, CPU seconds of the row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import common
import numpy as np


def _row(name, keras_acc, report, result, cpu, float_bytes, extra=None):
    row = {
        "row": name,
        "keras_accuracy": round(keras_acc, 4),
        "tflite_accuracy": round(report["tflite_accuracy"], 4),
        "agreement": round(report["top1_agreement"], 4),
        "max_abs_diff": float(f"{report['max_abs_diff']:.3g}"),
        "bytes": result["bytes"],
        "zipped_bytes": result["zipped_bytes"],
        "vs_float": round(float_bytes / result["bytes"], 2),
        "zipped_vs_float": round(float_bytes / result["zipped_bytes"], 2),
        "cpu_seconds": round(cpu, 1),
    }
    row.update(extra or {})
    print(json.dumps(row), flush=True)
    return row


def tfmot_rows(args) -> None:
    """Runs under TF_USE_LEGACY_KERAS=1: QAT and PTQ of the dense weights saved by the parent."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot  # switches tf.keras to tf_keras

    import tf_admm

    (x_train, y_train), (x_test, y_test) = common.load_mnist(args.data)
    if args.quick:
        x_train, y_train = x_train[:10000], y_train[:10000]
    weights = np.load(args.dense_weights)
    rows = []
    for name in ("tfmot_int8_qat", "ptq_int8"):
        cpu0 = time.process_time()
        dense = common.lenet5()
        dense.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
        if name == "tfmot_int8_qat":
            model = tfmot.quantization.keras.quantize_model(dense)
            steps = -(-len(x_train) // args.batch_size)
            common.compile_for_mnist(model, 1e-4, steps * args.qat_epochs)
            train = common.dataset(x_train, y_train, args.batch_size, shuffle=True)
            model.fit(train, epochs=args.qat_epochs, verbose=2)
        else:
            model = dense
            common.compile_for_mnist(model, 1e-3)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        sample = x_train[:200]
        converter.representative_dataset = lambda s=sample: ([s[i : i + 1]] for i in range(len(s)))
        path = os.path.join(args.workdir, f"{name}.tflite")
        with open(path, "wb") as handle:
            handle.write(converter.convert())
        content = open(path, "rb").read()
        result = {"bytes": len(content), "zipped_bytes": tf_admm.export.zipped_size(content)}
        keras_acc = float(model.evaluate(x_test, y_test, verbose=0, batch_size=1000)[1])
        report = tf_admm.check_tflite(model, path, x_test, y_test, batch_size=1000)
        extra = {"epochs": args.qat_epochs if name == "tfmot_int8_qat" else 0}
        cpu = time.process_time() - cpu0
        rows.append(_row(name, keras_acc, report, result, cpu, args.float_bytes, extra))
    print("RESULT " + json.dumps(rows), flush=True)


def admm_rows(args) -> list[dict]:
    import tf_admm
    from tf_admm import keras

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = common.load_mnist(args.data)
    e = dict(pretrain=8, admm=4, retrain=6, prune_admm=10, prune_retrain=16)
    if args.quick:
        x_train, y_train = x_train[:10000], y_train[:10000]
        e = {k: 1 for k in e}
    train = common.dataset(x_train, y_train, args.batch_size, shuffle=True, seed=args.seed)
    test = common.dataset(x_test, y_test, 1000, shuffle=False)
    steps = -(-len(x_train) // args.batch_size)
    rep = x_train[:200]
    rows = []

    def fit(model, epochs, lr, callbacks=()):
        common.compile_for_mnist(model, lr, steps * epochs)
        model.fit(train, epochs=epochs, verbose=2, callbacks=list(callbacks))

    # Z/U every 300 steps, rho x1.3 per update up to 1 (what these rows were measured with)
    ONESHOT = tf_admm.schedules.OneShot(300, "step")

    def admm_then_retrain(model, admm_epochs, retrain_epochs):
        fit(model, admm_epochs, 1e-3, [tf_admm.UpdateADMM()])
        print("hard projection:", tf_admm.hard_project(model), flush=True)
        fit(model, retrain_epochs, 1e-3, [tf_admm.UpdateADMM()])
        return model

    def export_row(name, model, cpu0, sparse=False, extra=None):
        path = os.path.join(args.workdir, f"{name}.tflite")
        result = tf_admm.export_tflite(
            model, path, quantization="int8", sparse=sparse, representative_data=rep, overwrite=True
        )
        print(result.table(), flush=True)
        keras_acc = float(model.evaluate(test, verbose=0)[1])
        report = tf_admm.check_tflite(model, path, x_test, y_test, batch_size=1000)
        extra = dict(extra or {})
        extra["exact_int8_weights"] = result.exact and all(
            t.dtype == "int8" for t in result.tensors
        )
        extra["packing_bound_bytes"] = round(result.lower_bound_bytes)
        res = {"bytes": result.bytes, "zipped_bytes": result.zipped_bytes}
        cpu = time.process_time() - cpu0
        return _row(name, keras_acc, report, res, cpu, args.float_bytes, extra)

    cpu0 = time.process_time()
    dense = common.lenet5()
    fit(dense, e["pretrain"], 1e-3)
    dense_path = os.path.join(args.workdir, "dense_float.tflite")
    float_result = tf_admm.export_tflite(dense, dense_path, overwrite=True)
    args.float_bytes = float_result.bytes
    report = tf_admm.check_tflite(dense, dense_path, x_test, y_test, batch_size=1000)
    float_row = {"bytes": float_result.bytes, "zipped_bytes": float_result.zipped_bytes}
    dense_acc = float(dense.evaluate(test, verbose=0)[1])
    cpu = time.process_time() - cpu0
    rows.append(_row("dense_float", dense_acc, report, float_row, cpu, args.float_bytes))
    np.savez(args.dense_weights, **{f"w{i}": w for i, w in enumerate(dense.get_weights())})

    cpu0 = time.process_time()
    q3 = admm_then_retrain(tf_admm.quantize(dense, 3, schedule=ONESHOT), e["admm"], e["retrain"])
    rows.append(export_row("admm_3bit", q3, cpu0, extra={"epochs": e["admm"] + e["retrain"]}))

    cpu0 = time.process_time()
    inner = {"conv2": "binary", "fc1": "binary"}
    step1 = admm_then_retrain(
        tf_admm.quantize(dense, inner, schedule=ONESHOT), e["admm"], e["retrain"]
    )
    binary = admm_then_retrain(
        tf_admm.quantize(tf_admm.strip_admm(step1), "binary", schedule=ONESHOT),
        e["admm"],
        e["retrain"],
    )
    epochs = 2 * (e["admm"] + e["retrain"])
    rows.append(export_row("admm_binary", binary, cpu0, extra={"epochs": epochs}))

    cpu0 = time.process_time()
    pruned = tf_admm.prune_low_magnitude(dense, common.ECCV18_TARGETS, schedule=ONESHOT)
    pruned = admm_then_retrain(pruned, e["prune_admm"], e["prune_retrain"])
    stripped = tf_admm.strip_admm(pruned)
    common.compile_for_mnist(stripped, 1e-3)
    pruned_acc = float(stripped.evaluate(test, verbose=0)[1])
    both = admm_then_retrain(
        tf_admm.compress(stripped, sparsity=common.ECCV18_TARGETS, bits=3, schedule=ONESHOT),
        e["admm"],
        e["retrain"],
    )
    counts = common.weight_counts(tf_admm.strip_admm(both), common.ECCV18_TARGETS)
    total = sum(c[0] for c in counts.values())
    nonzero = sum(c[1] for c in counts.values())
    epochs = e["prune_admm"] + e["prune_retrain"] + e["admm"] + e["retrain"]
    extra = {
        "epochs": epochs,
        "pruning_rate": round(total / nonzero, 1),
        "pruned_float_accuracy": round(pruned_acc, 4),
    }
    rows.append(export_row("admm_71x_3bit", both, cpu0, sparse=True, extra=extra))
    rows[0]["epochs"] = e["pretrain"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--tfmot-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dense-weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--float-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tfmot_only:
        tfmot_rows(args)
        return
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench_quant_")
    args.dense_weights = os.path.join(args.workdir, "dense.npz")
    rows = admm_rows(args)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    cmd = [sys.executable, __file__, "--tfmot-only", "--dense-weights", args.dense_weights]
    cmd += ["--workdir", args.workdir, "--float-bytes", str(args.float_bytes)]
    cmd += ["--batch-size", str(args.batch_size), "--qat-epochs", str(args.qat_epochs)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--data", args.data] if args.data else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
        raise SystemExit("the TFMOT subprocess failed")
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
    rows += json.loads(line[len("RESULT ") :])
    print(json.dumps(rows, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"rows": rows, "quick": args.quick, "seed": args.seed}, handle, indent=1)


if __name__ == "__main__":
    main()
