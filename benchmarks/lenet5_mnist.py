"""Progressive ADMM pruning of the Caffe LeNet-5 on MNIST, against TFMOT and one-shot ADMM.

1. Train the dense LeNet-5 (55,000 training images; 5,000 held out for the accuracy guard; the
   10,000 test images only for the reported numbers).
2. Allocate per-layer targets for --rate (default 246x) from the trained weights
   (tf_admm.allocate_sparsity, LAMP scores), print them.
3. Progressive ADMM (tf_admm.ProgressiveCompressor): --steps stages growing evenly in log-rate,
   each ADMM + hard projection + masked retraining, seeded by the last.
4. Push further (--push_rates, e.g. 300x), each stage seeded by the last good model.
5. 3-bit quantization of the survivors on top (--bits): total storage rate.
6. The same per-layer targets and the same number of epochs as step 3 with one-shot ADMM (one
   stage) and with TFMOT's PolynomialDecay (tf_keras, in a subprocess).
7. LeNet-300-100 through the same progressive procedure (--lenet300_rate).

    python benchmarks/lenet5_mnist.py                # the full run (about 45-60 CPU-minutes)
    python benchmarks/lenet5_mnist.py --quick        # a few minutes, low accuracy
    python benchmarks/lenet5_mnist.py --directory runs/lenet5   # resumable after a kill
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import common
import numpy as np
from absl import app, flags

import tf_admm
from tf_admm import keras

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Path to mnist.npz (Keras layout); default ../shared/data.")
flags.DEFINE_float("rate", 246.0, "Global pruning rate of the progressive run.")
flags.DEFINE_list("push_rates", ["300"], "Higher rates tried after --rate, in order.")
flags.DEFINE_integer("steps", 3, "Progressive stages up to --rate.")
flags.DEFINE_integer("pretrain_epochs", 10, "Dense training epochs.")
flags.DEFINE_integer("admm_epochs", 6, "ADMM epochs per stage.")
flags.DEFINE_integer("retrain_epochs", 8, "Retraining epochs per stage.")
flags.DEFINE_integer("update_every", 300, "Steps between Z/U updates.")
flags.DEFINE_integer("bits", 3, "Bits of the final quantization stage (0: skip).")
flags.DEFINE_float("tolerance", 0.001, "Accuracy guard: allowed validation loss from dense.")
flags.DEFINE_integer("retries", 2, "Smaller steps the guard may insert per run.")
flags.DEFINE_float("min_density", 0.0, "Floor per layer for the allocation.")
flags.DEFINE_string("targets", None, "JSON dict layer -> sparsity, overriding the allocation.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("compare", True, "Run one-shot ADMM and TFMOT at the same budget.")
flags.DEFINE_float("lenet300_rate", 60.0, "Rate for LeNet-300-100 (0: skip).")
flags.DEFINE_string("directory", None, "Checkpoints and reports (default: a temp dir).")
flags.DEFINE_bool("quick", False, "A short smoke run.")
flags.DEFINE_string("report", None, "Write the results as JSON here.")
flags.DEFINE_bool("tfmot_only", False, "Internal: the TFMOT baseline (tf_keras subprocess).")
flags.DEFINE_string("weights", None, "Internal: dense weights (npz) for the TFMOT baseline.")


def _data():
    (x_train, y_train), (x_test, y_test) = common.load_mnist(FLAGS.data)
    (x_train, y_train), (x_val, y_val) = common.hold_out(x_train, y_train)
    if FLAGS.quick:
        x_train, y_train = x_train[:10000], y_train[:10000]
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def _epochs():
    if FLAGS.quick:
        return dict(pretrain=2, admm=1, retrain=1)
    return dict(
        pretrain=FLAGS.pretrain_epochs, admm=FLAGS.admm_epochs, retrain=FLAGS.retrain_epochs
    )


def _accuracy(model, x, y) -> float:
    common.compile_for_mnist(model, 1e-3)
    return float(model.evaluate(x, y, batch_size=1000, verbose=0)[1])


def _rates(model, names) -> tuple[float, dict]:
    counts = common.weight_counts(model, names)
    total = sum(c[0] for c in counts.values())
    nonzero = sum(c[1] for c in counts.values())
    return total / nonzero, {n: round(1 - nz / w, 5) for n, (w, nz) in counts.items()}


def tfmot_baseline() -> None:
    """PolynomialDecay to the same per-layer targets over the same epochs (tf_keras)."""
    import tensorflow_model_optimization as tfmot  # switches tf.keras to tf_keras

    spec = json.loads(FLAGS.targets)
    targets, epochs = spec["targets"], spec["epochs"]
    cpu0 = time.process_time()
    (x_train, y_train), _, (x_test, y_test) = _data()
    steps = -(-len(x_train) // FLAGS.batch_size)
    model = common.lenet5()
    weights = np.load(FLAGS.weights)
    model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    end = int(steps * epochs * 2 / 3)  # prune over two thirds, fine-tune the last third

    pruned = common.tfmot_gmp(model, targets, end)  # shares model's weights
    common.compile_for_mnist(pruned, 1e-3, steps * epochs)
    train = common.dataset(x_train, y_train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    pruned.fit(
        train, epochs=epochs, verbose=2, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()]
    )
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    rate, layers = _rates(final, targets)
    row = {
        "method": "TFMOT PolynomialDecay",
        "test_accuracy": _accuracy(final, x_test, y_test),
        "rate": round(rate, 1),
        "layers": layers,
        "epochs": epochs,
        "cpu_seconds": round(time.process_time() - cpu0, 1),
    }
    print("RESULT " + json.dumps(row), flush=True)


def _compress(model, stages, val, directory, name, guard=True):
    """A ProgressiveCompressor run; ``guard=False`` (the baselines) reports the accuracy at the
    targets whatever it is, without the tolerance and retries."""
    (x_train, y_train), (x_val, y_val) = val
    run = tf_admm.ProgressiveCompressor(
        model,
        stages,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=common.dataset(x_train, y_train, FLAGS.batch_size, True, FLAGS.seed),
        validation_data=common.dataset(x_val, y_val, 1000, False),
        tolerance=FLAGS.tolerance if guard else 1.0,
        retries=FLAGS.retries if guard else 0,
        directory=os.path.join(directory, name),
        verbose=2,
    )
    return run.run(), run


def update_interval() -> int:
    """--update_every; with --quick at most a quarter of an epoch (10,000 images, 157 steps),
    so that the short ADMM phases make real Z/U updates (300 steps would make none)."""
    if FLAGS.quick:
        return max(1, min(FLAGS.update_every, -(-10000 // FLAGS.batch_size) // 4))
    return FLAGS.update_every


def _stage_kwargs(e):
    return dict(
        admm_epochs=e["admm"],
        retrain_epochs=e["retrain"],
        update_every=update_interval(),
        unit="step",
    )


def _row(method, model, names, x_test, y_test, cpu, epochs, extra=None):
    rate, layers = _rates(model, names)
    accuracy = _accuracy(model, x_test, y_test)
    row = {
        "method": method,
        "test_accuracy": accuracy,
        "rate": round(rate, 1),
        "layers": layers,
        "epochs": epochs,
        "cpu_seconds": round(cpu, 1),
    }
    row.update(extra or {})
    if "dense_accuracy" in row:
        row["loss_points"] = round(100 * (row.pop("dense_accuracy") - accuracy), 2)
    print(json.dumps(row), flush=True)
    return row


def _progressive_model(build, names, rate, data, directory, label, e, rows, dense_acc):
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    cpu0 = time.process_time()
    dense = build()
    steps = -(-len(x_train) // FLAGS.batch_size)
    common.compile_for_mnist(dense, 1e-3, steps * e["pretrain"])
    dense.fit(
        common.dataset(x_train, y_train, FLAGS.batch_size, True, FLAGS.seed),
        epochs=e["pretrain"],
        verbose=2,
    )
    acc = _accuracy(dense, x_test, y_test)
    rows.append(
        _row(
            f"{label} dense",
            dense,
            names,
            x_test,
            y_test,
            time.process_time() - cpu0,
            e["pretrain"],
        )
    )
    dense_acc[label] = acc
    targets = tf_admm.allocate_sparsity(dense, rate, min_density=FLAGS.min_density, min_keep=0)
    if FLAGS.targets and label == "LeNet-5":
        targets = json.loads(FLAGS.targets)
    print(f"{label}: per-layer targets for {rate}x (override with --targets)")
    print(tf_admm.allocation_table(dense, targets), flush=True)
    stages = tf_admm.geometric_stages(targets, FLAGS.steps, **_stage_kwargs(e))
    cpu0 = time.process_time()
    model, run = _compress(
        dense, stages, ((x_train, y_train), (x_val, y_val)), directory, f"{label}-progressive"
    )
    # every epoch the run spent, retried and failed stages included: the baselines' budget
    budget = sum(r["config"]["admm_epochs"] + r["config"]["retrain_epochs"] for r in run.reports)
    extra = {"dense_accuracy": acc, "stages": [r["name"] for r in run.reports if r["passed"]]}
    row = _row(
        f"{label} progressive ADMM",
        model,
        names,
        x_test,
        y_test,
        time.process_time() - cpu0,
        budget,
        extra,
    )
    rows.append(row)
    return dense, targets, model, budget


def main(_):
    if FLAGS.tfmot_only:
        tfmot_baseline()
        return
    keras.utils.set_random_seed(FLAGS.seed)
    directory = FLAGS.directory or tempfile.mkdtemp(prefix="lenet5_mnist_")
    os.makedirs(directory, exist_ok=True)
    print(f"checkpoints and reports: {directory}")
    data = _data()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    e = _epochs()
    names = list(common.ECCV18_TARGETS)
    rows, dense_acc = [], {}
    wall0 = time.time()

    dense, targets, model, budget = _progressive_model(
        common.lenet5, names, FLAGS.rate, data, directory, "LeNet-5", e, rows, dense_acc
    )
    val = ((x_train, y_train), (x_val, y_val))

    best = model
    if FLAGS.push_rates:
        cpu0 = time.process_time()
        push = []
        for r in FLAGS.push_rates:
            t = tf_admm.allocate_sparsity(
                dense, float(r), min_density=FLAGS.min_density, min_keep=0
            )
            push.append(tf_admm.Stage(f"{r}x", sparsity=t, **_stage_kwargs(e)))
        best, run = _compress(model, push, val, directory, "LeNet-5-push")
        passed = [r["name"] for r in run.reports if r["passed"]]
        rows.append(
            _row(
                "LeNet-5 pushed further",
                best,
                names,
                x_test,
                y_test,
                time.process_time() - cpu0,
                len(push) * (e["admm"] + e["retrain"]),
                {"stages": passed},
            )
        )

    if FLAGS.bits:
        cpu0 = time.process_time()
        quant = [
            tf_admm.Stage(
                f"{FLAGS.bits}-bit",
                bits=FLAGS.bits,
                admm_epochs=max(1, e["admm"] // 2),
                retrain_epochs=e["retrain"],
                update_every=update_interval(),
                unit="step",
            )
        ]
        quantized, run = _compress(best, quant, val, directory, "LeNet-5-quantized")
        table = tf_admm.summary(quantized, print_fn=print)["total"]
        nonzero = table["nonzeros"]
        extra = {
            "bits": FLAGS.bits if run.reports and run.reports[-1]["passed"] else 32,
            "storage_rate_weights_only": round(32 * table["weights"] / (nonzero * FLAGS.bits), 1),
            "storage_rate_with_indices": round(table["compression"], 1),
        }
        rows.append(
            _row(
                f"LeNet-5 + {FLAGS.bits}-bit",
                quantized,
                names,
                x_test,
                y_test,
                time.process_time() - cpu0,
                run.reports[-1]["config"]["admm_epochs"]
                + run.reports[-1]["config"]["retrain_epochs"],
                extra,
            )
        )

    if FLAGS.compare:
        # the baselines get the per-layer sparsities the progressive run reached, and its epochs
        targets = tf_admm.report.layer_sparsity(model)
        cpu0 = time.process_time()
        share = budget / (e["admm"] + e["retrain"])  # the same ADMM / retraining split
        half = dict(e, admm=round(share * e["admm"]), retrain=budget - round(share * e["admm"]))
        one = [tf_admm.Stage("one-shot", sparsity=targets, **_stage_kwargs(half))]
        oneshot, _ = _compress(dense, one, val, directory, "LeNet-5-oneshot", guard=False)
        rows.append(
            _row(
                "LeNet-5 one-shot ADMM",
                oneshot,
                names,
                x_test,
                y_test,
                time.process_time() - cpu0,
                budget,
            )
        )
        weights = os.path.join(directory, "dense_lenet5.npz")
        np.savez(weights, **{f"w{i}": w for i, w in enumerate(dense.get_weights())})
        cmd = [
            sys.executable,
            __file__,
            "--tfmot_only",
            f"--weights={weights}",
            "--targets=" + json.dumps({"targets": targets, "epochs": budget}),
            f"--batch_size={FLAGS.batch_size}",
            f"--seed={FLAGS.seed}",
        ]
        cmd += ["--quick"] if FLAGS.quick else []
        cmd += [f"--data={FLAGS.data}"] if FLAGS.data else []
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            print(out.stdout[-2000:], out.stderr[-3000:], file=sys.stderr)
            raise SystemExit("the TFMOT baseline failed")
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
        rows.append(json.loads(line[len("RESULT ") :]))
        print(line, flush=True)

    if FLAGS.lenet300_rate:
        _progressive_model(
            common.lenet300,
            ["fc1", "fc2", "fc3"],
            FLAGS.lenet300_rate,
            data,
            directory,
            "LeNet-300-100",
            e,
            rows,
            dense_acc,
        )

    result = {
        "rows": rows,
        "dense_test_accuracy": dense_acc,
        "rate": FLAGS.rate,
        "quick": FLAGS.quick,
        "wall_seconds": round(time.time() - wall0, 1),
        "keras": keras.__version__,
    }
    print(json.dumps(result, indent=1))
    if FLAGS.report:
        with open(FLAGS.report, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    app.run(main)
