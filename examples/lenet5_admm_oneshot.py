"""One-shot ADMM pruning of the Caffe LeNet-5 on MNIST with the ECCV'18 per-layer targets.

conv1 80%, conv2 92%, fc1 99.1%, fc2 93% (about 71x fewer weights). Steps: train the dense
model, ADMM-regularized training (Z/U updated every --update_every steps, rho x1.3 per update
from 1e-3), hard projection, masked retraining, strip, evaluate. Each phase uses Adam with a
cosine-decayed learning rate.

    python examples/lenet5_admm_oneshot.py            # full run, about 5-9 min on 2 CPU cores
    python examples/lenet5_admm_oneshot.py --quick    # about 1-2 min, lower accuracy
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

import tf_admm  # noqa: E402
from tf_admm import keras  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Path to mnist.npz (Keras layout); default ../shared/data.")
flags.DEFINE_integer("pretrain_epochs", 8, "Epochs of dense training.")
flags.DEFINE_integer("admm_epochs", 10, "Epochs of ADMM-regularized training.")
flags.DEFINE_integer("retrain_epochs", 16, "Epochs of masked retraining after hard projection.")
flags.DEFINE_integer("update_every", 300, "Training steps between two ADMM Z/U updates.")
flags.DEFINE_float("rho", 1e-3, "Initial rho.")
flags.DEFINE_float("rho_max", 1.0, "Cap on rho.")
flags.DEFINE_float("retrain_lr", 1e-3, "Initial (cosine-decayed) learning rate of retraining.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("quick", False, "A short run (2+2+2 epochs on 20k images) for a smoke test.")
flags.DEFINE_string("report", None, "Write the results as JSON to this path.")


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = common.load_mnist(FLAGS.data)
    epochs = (FLAGS.pretrain_epochs, FLAGS.admm_epochs, FLAGS.retrain_epochs)
    if FLAGS.quick:
        x_train, y_train = x_train[:20000], y_train[:20000]
        epochs = (2, 2, 2)
    train = common.dataset(x_train, y_train, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    test = common.dataset(x_test, y_test, 1000, shuffle=False)
    cpu0 = time.process_time()
    wall0 = time.time()

    dense = common.lenet5()
    steps = -(-len(x_train) // FLAGS.batch_size)
    common.compile_for_mnist(dense, 1e-3, steps * epochs[0])
    dense.fit(train, epochs=epochs[0], verbose=2)
    dense_acc = dense.evaluate(test, verbose=0)[1]
    print(f"dense accuracy: {dense_acc:.4f}")

    pruned = tf_admm.prune_low_magnitude(dense, common.ECCV18_TARGETS, rho=FLAGS.rho)
    common.compile_for_mnist(pruned, 1e-3, steps * epochs[1])
    admm = tf_admm.UpdateADMM(update_every=FLAGS.update_every, unit="step", rho_max=FLAGS.rho_max)
    pruned.fit(train, epochs=epochs[1], verbose=2, callbacks=[admm])
    admm_acc = pruned.evaluate(test, verbose=0)[1]
    print(f"after ADMM (not yet sparse): {admm_acc:.4f}")

    print("hard projection:", tf_admm.hard_project(pruned))
    print(f"right after hard projection: {pruned.evaluate(test, verbose=0)[1]:.4f}")
    common.compile_for_mnist(pruned, FLAGS.retrain_lr, steps * epochs[2])
    pruned.fit(train, epochs=epochs[2], verbose=2, callbacks=[tf_admm.UpdateADMM()])

    final = tf_admm.strip_admm(pruned)
    common.compile_for_mnist(final, 1e-3)
    final_acc = final.evaluate(test, verbose=0)[1]
    counts = common.weight_counts(final, common.ECCV18_TARGETS)
    total = sum(c[0] for c in counts.values())
    nonzero = sum(c[1] for c in counts.values())
    result = {
        "dense_accuracy": round(float(dense_acc), 4),
        "pruned_accuracy": round(float(final_acc), 4),
        "weights": total,
        "nonzero_weights": nonzero,
        "compression_rate": round(total / nonzero, 1),
        "per_layer_sparsity": {n: round(1 - nz / w, 4) for n, (w, nz) in counts.items()},
        "epochs": {"pretrain": epochs[0], "admm": epochs[1], "retrain": epochs[2]},
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - wall0, 1),
        "keras": keras.__version__,
    }
    print(json.dumps(result, indent=2))
    if FLAGS.report:
        with open(FLAGS.report, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
