"""MobileNetV2 (alpha 0.35) on MNIST padded to 32x32x3: ADMM to >= 90% sparsity with 4-bit
weights, then a full-int8 .tflite whose weights are exact through BatchNorm folding.

    python examples/mobilenet_v2.py --quick                 # a smoke test, about a minute
    python examples/mobilenet_v2.py                         # the numbers in docs/results.md

Steps: dense training (Adam, cosine decay); per-layer targets from one global rate
(``tf_admm.allocate_sparsity``, LAMP); ``tf_admm.compress(sparsity=targets, bits=4)``; gradual
ADMM epochs (the gradual recipe: rho per layer by loss-gradient scale, ``gradient_data``; Z
projected onto the 4-bit levels with a sparsity rising to the targets over the phase, Z/U every
100 steps, rho from 1e-3 to 0.1: ``schedule=tf_admm.schedules.Gradual()``; a constant learning rate
over the ramp); ``hard_project``; masked 4-bit
retraining (cosine decay); export of a float file, a
full-int8 file (exact: the converter folds each BatchNormalization into the conv before it, and
the 4-bit grid times the BN factor is written), and for comparison the dense model's float and
post-training int8 files and TFMOT's gradual magnitude pruning of the same dense model (same
per-layer targets, same epochs as ADMM + retraining; TFMOT needs tf_keras, so it runs in a
child process with ``TF_USE_LEGACY_KERAS=1`` on the same architecture and weights;
``--notfmot`` skips it). Every file is run by LiteRT on the whole test set. Results go to
``--output_dir``/report.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np
from absl import app, flags, logging

import tf_admm
from tf_admm import keras

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Path to mnist.npz (Keras layout); default ../shared/data.")
flags.DEFINE_float("alpha", 0.35, "MobileNetV2 width multiplier.")
flags.DEFINE_float("rate", 10.0, "Global pruning rate (weights / nonzeros); 10 = 90% sparsity.")
flags.DEFINE_integer("bits", 4, "Bits per weight after pruning.")
flags.DEFINE_integer("train_images", 20000, "Training images used (of 55,000).")
flags.DEFINE_integer("pretrain_epochs", 4, "Epochs of dense training.")
flags.DEFINE_integer("admm_epochs", 4, "Epochs of gradual ADMM training.")
flags.DEFINE_integer("retrain_epochs", 2, "Epochs of masked 4-bit retraining.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("quick", False, "A smoke test: 2,000 images, 1 epoch per phase.")
flags.DEFINE_string("output_dir", "runs/mobilenet_v2", "Where the files and report go.")
flags.DEFINE_bool("tfmot", True, "Also prune the dense model with TFMOT (tf_keras child).")
flags.DEFINE_string("tfmot_child", None, "Internal: run the TFMOT part from this spec file.")


def to_rgb32(x: np.ndarray) -> np.ndarray:
    """(n, 28, 28, 1) in [0, 1] -> (n, 32, 32, 3): zero-padded by 2, channel repeated."""
    return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)


def build(alpha: float, bn_momentum: float = 0.9):
    """keras.applications.MobileNetV2 with BatchNormalization momentum ``bn_momentum``: the
    application's 0.999 leaves the moving statistics near their initial values after a few
    epochs from scratch, and evaluation (inference mode) then sees chance accuracy."""
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=alpha, weights=None, classes=10, classifier_activation=None
    )
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = bn_momentum
    return keras.Model.from_config(config)


def compile_model(model, steps: int, rate: float = 1e-3, decay: bool = True):
    """Adam at ``rate``, cosine-decayed over ``steps`` unless ``decay`` is False."""
    schedule = keras.optimizers.schedules.CosineDecay(rate, max(steps, 1)) if decay else rate
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def litert_row(name: str, model, export, x_test, y_test) -> dict:
    check = tf_admm.check_tflite(model, export.path, x_test, y_test)
    return {
        "file": name,
        "bytes": export.bytes,
        "zipped_bytes": export.zipped_bytes,
        "litert_accuracy": round(check["tflite_accuracy"], 4),
        "keras_accuracy": round(check["keras_accuracy"], 4),
        "top1_agreement": round(check["top1_agreement"], 4),
        "exact": export.exact,
    }


def load_data(quick: bool):
    (x_train, y_train), (x_test, y_test) = common.load_mnist(FLAGS.data)
    (x_train, y_train), _ = common.hold_out(x_train, y_train)
    images = 2000 if quick else FLAGS.train_images
    x_train, y_train = to_rgb32(x_train[:images]), y_train[:images]
    x_test = to_rgb32(x_test[:1000] if quick else x_test)
    return (x_train, y_train), (x_test, y_test[: len(x_test)])


def run_tfmot(spec_path: str) -> None:
    """The child (tf_keras): TFMOT's PolynomialDecay pruning of the parent's dense model to its
    per-layer targets, strip, float and post-training full-int8 files, each run in LiteRT."""
    with open(spec_path) as handle:
        spec = json.load(handle)
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = load_data(spec["quick"])
    dense = build(FLAGS.alpha)
    with np.load(spec["weights"]) as stored:
        weights = [stored[f"w{i}"] for i in range(len(stored.files))]
    shapes = [tuple(w.shape) for w in dense.get_weights()]
    if shapes != [w.shape for w in weights]:
        raise SystemExit("the tf_keras MobileNetV2 does not have the Keras 3 model's weights")
    dense.set_weights(weights)
    train = common.dataset(x_train, y_train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    steps = -(-len(x_train) // FLAGS.batch_size)
    epochs = spec["epochs"]
    import tensorflow_model_optimization as tfmot

    end = int(0.7 * epochs * steps)  # as compare_methods: 70% of the steps, masks every 100
    pruned = common.tfmot_gmp(dense, spec["targets"], end, frequency=max(1, min(100, end // 10)))
    compile_model(pruned, steps * epochs)
    pruned.fit(
        train,
        epochs=epochs,
        verbose=2,
        shuffle=False,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    compile_model(final, 1)
    out = os.path.dirname(spec_path)
    rows = []
    for name, path, options in (
        ("TFMOT GMP float", "tfmot_float.tflite", {}),
        (
            "TFMOT GMP full int8",
            "tfmot_int8.tflite",
            {"quantization": "int8", "representative_data": x_train[:200]},
        ),
    ):
        export = tf_admm.export_tflite(final, f"{out}/{path}", overwrite=True, **options)
        rows.append(litert_row(name, final, export, x_test, y_test))
    # over the same kernels as ADMM's (TFMOT leaves DepthwiseConv2D dense)
    kernels = []
    for name in spec["targets"]:
        layer = final.get_layer(name)
        depthwise = getattr(layer, "depthwise_kernel", None)
        kernels.append(np.asarray(layer.kernel if depthwise is None else depthwise))
    sparsity = 1.0 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
    with open(spec["result"], "w") as handle:
        json.dump({"rows": rows, "sparsity": sparsity}, handle)


def tfmot_rows(dense, targets: dict, epochs: int, out: str) -> tuple[list[dict], float]:
    """Run :func:`run_tfmot` in a tf_keras child process on ``dense``'s weights."""
    weights = f"{out}/dense_weights.npz"
    np.savez(weights, **{f"w{i}": w for i, w in enumerate(dense.get_weights())})
    spec = {
        "weights": weights,
        "targets": targets,
        "epochs": epochs,
        "quick": FLAGS.quick,
        "result": f"{out}/tfmot_result.json",
    }
    with open(f"{out}/tfmot_spec.json", "w") as handle:
        json.dump(spec, handle)
    args = [
        f"--tfmot_child={out}/tfmot_spec.json",
        f"--alpha={FLAGS.alpha}",
        f"--train_images={FLAGS.train_images}",
        f"--batch_size={FLAGS.batch_size}",
        f"--seed={FLAGS.seed}",
    ] + ([f"--data={FLAGS.data}"] if FLAGS.data else [])
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, check=True)
    with open(spec["result"]) as handle:
        result = json.load(handle)
    return result["rows"], result["sparsity"]


def main(_):
    logging.set_verbosity(logging.ERROR)
    if FLAGS.tfmot_child:
        run_tfmot(FLAGS.tfmot_child)
        return
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = load_data(FLAGS.quick)
    epochs = (
        (1, 1, 1)
        if FLAGS.quick
        else (
            FLAGS.pretrain_epochs,
            FLAGS.admm_epochs,
            FLAGS.retrain_epochs,
        )
    )
    out = FLAGS.output_dir
    os.makedirs(out, exist_ok=True)
    train = common.dataset(x_train, y_train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    steps = -(-len(x_train) // FLAGS.batch_size)
    cpu0, wall0 = time.process_time(), time.time()

    dense = build(FLAGS.alpha)
    compile_model(dense, steps * epochs[0])
    dense.fit(train, epochs=epochs[0], verbose=2, shuffle=False)  # the dataset shuffles
    dense_acc = float(dense.evaluate(x_test, y_test, batch_size=500, verbose=0)[1])
    print(f"dense accuracy: {dense_acc:.4f}")

    targets = tf_admm.allocate_sparsity(dense, FLAGS.rate)
    tfmot, tfmot_sparsity = [], None
    if FLAGS.tfmot:  # before ADMM touches anything: the same dense weights and targets
        tfmot, tfmot_sparsity = tfmot_rows(dense, targets, epochs[1] + epochs[2], out)
    # gradual (compress's models default to one-shot): the pruning inside each Quantization
    # constraint ramps over the whole fit, Z/U every 100 steps (a tenth of a short phase), rho
    # from 1e-3 to 0.1, each layer's rho scaled by its loss-gradient RMS (gradient_data below)
    model = tf_admm.compress(
        dense, sparsity=targets, bits=FLAGS.bits, schedule=tf_admm.schedules.Gradual()
    )
    # a constant rate over the ramp: it cuts most weights in its last steps, and W must follow Z
    compile_model(model, steps * epochs[1], decay=False)
    update = tf_admm.UpdateADMM(gradient_data=train)
    model.fit(train, epochs=epochs[1], verbose=2, callbacks=[update], shuffle=False)
    tf_admm.hard_project(model)
    compile_model(model, steps * epochs[2], 5e-4)
    model.fit(train, epochs=epochs[2], verbose=2, callbacks=[tf_admm.UpdateADMM()], shuffle=False)
    final = tf_admm.strip_admm(model)
    compile_model(final, 1)
    final_acc = float(final.evaluate(x_test, y_test, batch_size=500, verbose=0)[1])
    totals = tf_admm.summary(final, print_fn=None)["total"]
    print(f"compressed accuracy: {final_acc:.4f}, sparsity {totals['sparsity']:.4f}")

    calibration = x_train[:200]
    files = [
        ("dense float", dense, tf_admm.export_tflite(dense, f"{out}/dense.tflite", overwrite=True)),
        (
            "dense post-training int8",
            dense,
            tf_admm.export_tflite(
                dense,
                f"{out}/dense_int8.tflite",
                quantization="int8",
                representative_data=calibration,
                overwrite=True,
            ),
        ),
        (
            f"ADMM {FLAGS.bits}-bit float",
            final,
            tf_admm.export_tflite(final, f"{out}/admm_float.tflite", overwrite=True),
        ),
        (
            f"ADMM {FLAGS.bits}-bit full int8",
            final,
            tf_admm.export_tflite(
                final,
                f"{out}/admm_int8.tflite",
                quantization="int8",
                representative_data=calibration,
                overwrite=True,
            ),
        ),
    ]
    rows = [litert_row(name, m, export, x_test, y_test) for name, m, export in files] + tfmot
    int8 = files[-1][2]
    report = {
        "quick": FLAGS.quick,
        "alpha": FLAGS.alpha,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "epochs": dict(zip(("pretrain", "admm", "retrain"), epochs)),
        "dense_accuracy": round(dense_acc, 4),
        "compressed_accuracy": round(final_acc, 4),
        "sparsity": round(totals["sparsity"], 4),
        "tfmot_sparsity": None if tfmot_sparsity is None else round(tfmot_sparsity, 4),
        "bits": FLAGS.bits,
        "int8_exact": int8.exact,
        "int8_weights_folded": sum(t.folded for t in int8.tensors),
        "int8_weights_found": len(int8.tensors),
        "int8_not_exact": int8.inexact(),
        "files": rows,
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - wall0, 1),
        "keras": keras.__version__,
    }
    with open(os.path.join(out, "report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    head = f"{'file':<28}{'bytes':>10}{'zipped':>10}{'LiteRT acc':>12}{'agree':>8}{'exact':>7}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['file']:<28}{r['bytes']:>10,}{r['zipped_bytes']:>10,}"
            f"{r['litert_accuracy']:>12.4f}{r['top1_agreement']:>8.4f}{str(r['exact']):>7}"
        )
    print(
        f"full-int8 file: {report['int8_weights_found']} weight tensors found, "
        f"{report['int8_weights_folded']} through a folded BatchNormalization, exact: "
        f"{int8.exact}. Files and report.json in {out}/."
    )


if __name__ == "__main__":
    app.run(main)
