"""MobileNetV2 (alpha 0.35) on MNIST padded to 32x32x3: tf_admm against TFMOT at the same point,
from the same converged dense model, every figure read from the .tflite file a user would ship.

    python examples/mobilenet_v2.py --quick                 # a smoke test, a few minutes
    python examples/mobilenet_v2.py                         # the numbers in docs/research.md

Steps: dense training to convergence (Adam, cosine decay, ``--pretrain_epochs``; the model is
cached in ``--output_dir`` and reloaded by a later run of the same settings); per-layer targets
from one global rate (``tf_admm.allocate_sparsity``, LAMP) over the layers TFMOT can prune
(TFMOT leaves ``DepthwiseConv2D`` dense, so both sides leave them dense and every kernel has
the same sparsity on both sides); then, each from the dense weights, the same epochs:

- **TFMOT** (tf_keras, in a child process with ``TF_USE_LEGACY_KERAS=1`` on the same
  architecture and weights): gradual magnitude pruning to the targets, ``strip_pruning``,
  post-training full int8;
- **tf_admm, the same point**: ``prune_low_magnitude(dense, targets,
  schedule=schedules.Gradual())``, ``UpdateADMM(gradient_data=...)`` over the ADMM epochs,
  ``hard_project``, masked retraining, ``strip_admm``, post-training full int8;
- **the control**: the dense model trained on for the same epochs with the same learning
  rates, nothing removed (what the extra training alone gives);
- **tf_admm, the paper's joint case**: ``compress(dense, sparsity=targets, bits=--bits)`` the
  same way: the same sparsity with ``--bits``-bit weights, an exact full-int8 file (the
  converter folds each BatchNormalization into the conv before it and the k-bit grid times the
  BN factor is written).

Every file is run by LiteRT on the whole test set; the report (``--output_dir``/report.json)
puts the two int8 files at the same sparsity side by side. ``--notfmot`` skips TFMOT.
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
flags.DEFINE_integer("pretrain_epochs", 16, "Epochs of dense training (to convergence).")
flags.DEFINE_integer("admm_epochs", 4, "Epochs of gradual ADMM training (TFMOT: its ramp).")
flags.DEFINE_integer("retrain_epochs", 2, "Epochs of masked retraining (both sides).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("quick", False, "A smoke test: 2,000 images, 1 epoch per phase.")
flags.DEFINE_bool("reuse_dense", True, "Load the cached dense model of the same settings.")
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


# both sides and the control: a constant rate over the ramp, then a cosine decay from a lower one
RAMP_RATE, RETRAIN_RATE = 1e-3, 5e-4


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
    """Training, validation (the 5,000 held-out images) and test sets, as 32x32x3."""
    (x_train, y_train), (x_test, y_test) = common.load_mnist(FLAGS.data)
    (x_train, y_train), (x_val, y_val) = common.hold_out(x_train, y_train)
    images = 2000 if quick else FLAGS.train_images
    x_train, y_train = to_rgb32(x_train[:images]), y_train[:images]
    x_val, y_val = to_rgb32(x_val[:500] if quick else x_val), y_val[: 500 if quick else None]
    x_test = to_rgb32(x_test[:1000] if quick else x_test)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test[: len(x_test)])


def tfmot_prunable(model) -> list[str]:
    """The compressible layers TFMOT prunes: all but DepthwiseConv2D (its registry lists no
    prunable weight for it, so TFMOT leaves depthwise kernels dense)."""
    depthwise = keras.layers.DepthwiseConv2D
    return [
        layer.name
        for layer in tf_admm.registry.compressible_layers(model)
        if not isinstance(layer, depthwise)
    ]


def run_tfmot(spec_path: str) -> None:
    """The child (tf_keras): TFMOT's PolynomialDecay pruning of the parent's dense model to its
    per-layer targets, strip, float and post-training full-int8 files, each run in LiteRT."""
    with open(spec_path) as handle:
        spec = json.load(handle)
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), _, (x_test, y_test) = load_data(spec["quick"])
    dense = build(FLAGS.alpha)
    with np.load(spec["weights"]) as stored:
        weights = [stored[f"w{i}"] for i in range(len(stored.files))]
    shapes = [tuple(w.shape) for w in dense.get_weights()]
    if shapes != [w.shape for w in weights]:
        raise SystemExit("the tf_keras MobileNetV2 does not have the Keras 3 model's weights")
    dense.set_weights(weights)
    train = common.dataset(x_train, y_train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    steps = -(-len(x_train) // FLAGS.batch_size)
    ramp_epochs, retrain_epochs = spec["epochs"]
    import tensorflow_model_optimization as tfmot

    # the ramp over the ADMM epochs, masks every 100 steps (a tenth of a short ramp), its end
    # on the last update so that the targets are reached; the learning rates of the ADMM side
    end = ramp_epochs * steps
    frequency = max(1, min(100, end // 10))
    pruned = common.tfmot_gmp(dense, spec["targets"], end - end % frequency, frequency)
    for epochs, rate, decay in (
        (ramp_epochs, RAMP_RATE, False),
        (retrain_epochs, RETRAIN_RATE, True),
    ):
        compile_model(pruned, steps * epochs, rate, decay)
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
    sparsity = kernel_sparsity(final, list(spec["targets"]))
    with open(spec["result"], "w") as handle:
        json.dump({"rows": rows, "sparsity": sparsity}, handle)


def tfmot_rows(dense, targets: dict, epochs: tuple, out: str) -> tuple[list[dict], float]:
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


def dense_model(train, validation, steps: int, epochs: int, out: str):
    """The dense model trained ``epochs`` (cosine decay), cached in ``out`` with its
    validation accuracy per epoch; a cached model of the same settings is loaded instead."""
    tag = f"a{FLAGS.alpha}_{len(train[0])}img_{epochs}ep_seed{FLAGS.seed}"
    path = os.path.join(out, f"dense_{tag}.keras")
    if FLAGS.reuse_dense and os.path.exists(path) and os.path.exists(path + ".json"):
        with open(path + ".json") as handle:
            return keras.models.load_model(path, compile=False), json.load(handle), path
    dense = build(FLAGS.alpha)
    compile_model(dense, steps * epochs)
    batches = common.dataset(*train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    history = dense.fit(batches, epochs=epochs, verbose=2, validation_data=validation)
    curve = [round(float(a), 4) for a in history.history["val_accuracy"]]
    dense.save(path)
    with open(path + ".json", "w") as handle:
        json.dump(curve, handle)
    return dense, curve, path


def admm(dense, targets: dict, bits: int | None, train, steps: int, epochs: tuple):
    """tf_admm's gradual recipe from ``dense``: pruning to ``targets`` (and ``bits``-bit
    weights when given), ADMM epochs, hard projection, masked retraining; the stripped model."""
    gradual = tf_admm.schedules.Gradual()
    if bits is None:
        model = tf_admm.prune_low_magnitude(dense, targets, schedule=gradual)
    else:
        model = tf_admm.compress(dense, sparsity=targets, bits=bits, schedule=gradual)
    # a constant rate over the ramp: it cuts most weights in its last steps, and W must follow Z
    compile_model(model, steps * epochs[0], RAMP_RATE, decay=False)
    update = tf_admm.UpdateADMM(gradient_data=train)
    model.fit(train, epochs=epochs[0], verbose=2, callbacks=[update], shuffle=False)
    tf_admm.hard_project(model)
    compile_model(model, steps * epochs[1], RETRAIN_RATE)
    model.fit(train, epochs=epochs[1], verbose=2, callbacks=[tf_admm.UpdateADMM()], shuffle=False)
    final = tf_admm.strip_admm(model)
    compile_model(final, 1)
    return final


def train_on(dense, train, steps: int, epochs: tuple):
    """The control: ``dense`` trained as long as the compressed models, with their learning
    rates (constant 1e-3, then a cosine decay from 5e-4), nothing removed. A compressed model
    above the dense one but not above this one gained from the training, not the method."""
    model = keras.models.clone_model(dense)
    model.set_weights(dense.get_weights())
    compile_model(model, steps * epochs[0], RAMP_RATE, decay=False)
    model.fit(train, epochs=epochs[0], verbose=2, shuffle=False)
    compile_model(model, steps * epochs[1], RETRAIN_RATE)
    model.fit(train, epochs=epochs[1], verbose=2, shuffle=False)
    return model


def kernel_sparsity(model, names) -> float:
    """Zeros over the kernels of the layers ``names``."""
    kernels = [np.asarray(model.get_layer(name).kernel) for name in names]
    return 1.0 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)


def main(_):
    logging.set_verbosity(logging.ERROR)
    if FLAGS.tfmot_child:
        run_tfmot(FLAGS.tfmot_child)
        return
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), validation, (x_test, y_test) = load_data(FLAGS.quick)
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

    dense, curve, dense_path = dense_model((x_train, y_train), validation, steps, epochs[0], out)
    compile_model(dense, 1)
    dense_acc = float(dense.evaluate(x_test, y_test, batch_size=500, verbose=0)[1])
    print(f"dense accuracy: {dense_acc:.4f} (validation by epoch: {curve})")

    # both sides prune the same layers to the same targets: those TFMOT can prune
    pruned_layers = tfmot_prunable(dense)
    targets = tf_admm.allocate_sparsity(dense, FLAGS.rate, layers=pruned_layers)
    tfmot, tfmot_sparsity = [], None
    if FLAGS.tfmot:  # before ADMM touches anything: the same dense weights and targets
        tfmot, tfmot_sparsity = tfmot_rows(dense, targets, epochs[1:], out)
    longer = train_on(dense, train, steps, epochs[1:])
    pruned = admm(dense, targets, None, train, steps, epochs[1:])
    joint = admm(dense, targets, FLAGS.bits, train, steps, epochs[1:])
    sparsity = kernel_sparsity(pruned, pruned_layers)
    joint_sparsity = kernel_sparsity(joint, pruned_layers)
    print(f"sparsity over the {len(pruned_layers)} pruned kernels: {sparsity:.4f}")

    calibration = x_train[:200]
    int8 = {"quantization": "int8", "representative_data": calibration, "overwrite": True}
    files = [
        ("dense float", dense, tf_admm.export_tflite(dense, f"{out}/dense.tflite", overwrite=True)),
        ("dense int8", dense, tf_admm.export_tflite(dense, f"{out}/dense_int8.tflite", **int8)),
        (
            "dense int8, trained on",
            longer,
            tf_admm.export_tflite(longer, f"{out}/dense_longer_int8.tflite", **int8),
        ),
        ("ADMM int8", pruned, tf_admm.export_tflite(pruned, f"{out}/admm_int8.tflite", **int8)),
        (
            f"ADMM {FLAGS.bits}-bit int8",
            joint,
            tf_admm.export_tflite(joint, f"{out}/admm_{FLAGS.bits}bit_int8.tflite", **int8),
        ),
    ]
    rows = [litert_row(name, m, export, x_test, y_test) for name, m, export in files] + tfmot
    by_name = {r["file"]: r for r in rows}
    same_point = None
    if tfmot:  # the two int8 files at the same sparsity: the comparison the report leads with
        ours, theirs = by_name["ADMM int8"], by_name["TFMOT GMP full int8"]
        same_point = {
            "sparsity": round(sparsity, 4),
            "tfmot_sparsity": round(tfmot_sparsity, 4),
            "litert_accuracy_gain": round(ours["litert_accuracy"] - theirs["litert_accuracy"], 4),
            "zipped_bytes_ratio": round(ours["zipped_bytes"] / theirs["zipped_bytes"], 4),
        }
    joint_export = files[-1][2]
    report = {
        "quick": FLAGS.quick,
        "seed": FLAGS.seed,
        "alpha": FLAGS.alpha,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "epochs": dict(zip(("pretrain", "admm", "retrain"), epochs)),
        "dense_model": dense_path,
        "dense_validation_by_epoch": curve,
        "dense_accuracy": round(dense_acc, 4),
        "pruned_layers": len(pruned_layers),
        "dense_layers": len(tf_admm.registry.compressible_layers(dense)) - len(pruned_layers),
        "sparsity": round(sparsity, 4),
        "joint_sparsity": round(joint_sparsity, 4),
        "tfmot_sparsity": None if tfmot_sparsity is None else round(tfmot_sparsity, 4),
        "bits": FLAGS.bits,
        "same_point": same_point,
        "joint_int8_exact": joint_export.exact,
        "joint_int8_weights_folded": sum(t.folded for t in joint_export.tensors),
        "joint_int8_weights_found": len(joint_export.tensors),
        "joint_int8_not_exact": joint_export.inexact(),
        "files": rows,
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - wall0, 1),
        "keras": keras.__version__,
    }
    with open(os.path.join(out, "report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    head = f"{'file':<24}{'bytes':>10}{'zipped':>10}{'LiteRT acc':>12}{'agree':>8}{'exact':>7}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['file']:<24}{r['bytes']:>10,}{r['zipped_bytes']:>10,}"
            f"{r['litert_accuracy']:>12.4f}{r['top1_agreement']:>8.4f}{str(r['exact']):>7}"
        )
    if same_point:
        print(
            f"same point ({sparsity:.1%} sparse over the {len(pruned_layers)} kernels TFMOT "
            f"prunes, 8-bit weights): ADMM {same_point['litert_accuracy_gain']:+.2%} LiteRT "
            f"accuracy at {same_point['zipped_bytes_ratio']:.2f}x TFMOT's zipped bytes"
        )
    print(
        f"{FLAGS.bits}-bit full-int8 file: {report['joint_int8_weights_found']} weight tensors "
        f"found, {report['joint_int8_weights_folded']} through a folded BatchNormalization, "
        f"exact: {joint_export.exact}. Files and report.json in {out}/."
    )


if __name__ == "__main__":
    app.run(main)
