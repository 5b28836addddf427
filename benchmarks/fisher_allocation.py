"""Per-layer shares a Fisher (OBD) saliency ranking would keep on LeNet-5 at one rate.

A candidate for deriving per-layer targets from data instead of weights alone: rank every
weight over all layers by its estimated loss increase when removed, F * w^2 / 2 (Optimal Brain
Damage with the diagonal empirical Fisher F, the mean per-example squared gradient on
``--images`` training images), and keep the ``weights / rate`` highest. Printed per layer, for
the dense models ``benchmarks/compare_methods.py`` cached, next to LAMP's shares
(``tf_admm.allocate_sparsity``). docs/results.md records the outcome (fc1 nearly emptied).

    python benchmarks/fisher_allocation.py            # after compare_methods.py --networks lenet5
"""

from __future__ import annotations

import argparse
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAYERS = ("conv1", "conv2", "fc1", "fc2")


def kept_shares(scores: dict[str, np.ndarray], rate: float) -> dict[str, float]:
    """The share of each layer among the ``total / rate`` highest scores over all layers."""
    total = sum(s.size for s in scores.values())
    ranked = np.sort(np.concatenate([s.ravel() for s in scores.values()]))[::-1]
    threshold = ranked[int(total / rate) - 1]
    return {name: float(np.mean(s >= threshold)) for name, s in scores.items()}


def fisher_diagonal(model, kernels, x, y, chunk: int = 50) -> list[np.ndarray]:
    """Mean per-example squared gradient of the cross-entropy for each kernel."""
    import tensorflow as tf

    from tf_admm import keras

    sums = [np.zeros(k.shape) for k in kernels]
    for start in range(0, len(x), chunk):
        xb, yb = tf.constant(x[start : start + chunk]), tf.constant(y[start : start + chunk])
        with tf.GradientTape() as tape:
            per_example = keras.losses.sparse_categorical_crossentropy(
                yb, model(xb), from_logits=True
            )
        for i, jac in enumerate(tape.jacobian(per_example, kernels)):
            sums[i] += np.sum(np.asarray(jac) ** 2, axis=0)
    return [s / len(x) for s in sums]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=os.path.join(ROOT, "runs", "compare_cache"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rate", type=float, default=246.0)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", default=None, help="mnist.npz (default: common.load_mnist's)")
    args = parser.parse_args(argv)

    import common

    import tf_admm

    (x_train, y_train), _ = common.load_mnist(args.data)
    (x_train, y_train), _ = common.hold_out(x_train, y_train)
    pick = np.random.default_rng(0).choice(len(x_train), args.images, replace=False)
    x, y = x_train[pick], y_train[pick]
    print("kept per layer, %:", ", ".join(LAYERS))
    for seed in (int(s) for s in args.seeds.split(",")):
        path = os.path.join(args.cache, f"lenet5_seed{seed}.npz")
        if not os.path.exists(path):
            raise SystemExit(f"no cached dense model {path}: run compare_methods.py first")
        model = common.lenet5()
        with np.load(path) as weights:
            model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
        kernels = [model.get_layer(name).kernel for name in LAYERS]
        fisher = fisher_diagonal(model, kernels, x, y)
        obd = {n: f * np.asarray(k) ** 2 / 2 for n, f, k in zip(LAYERS, fisher, kernels)}
        lamp = tf_admm.allocate_sparsity(model, args.rate, min_density=0.0, min_keep=0)
        for label, shares in (
            ("fisher/OBD", kept_shares(obd, args.rate)),
            ("LAMP", {n: 1 - lamp[n] for n in LAYERS}),
        ):
            print(f"seed {seed} {label:10s}", " ".join(f"{100 * shares[n]:7.3f}" for n in LAYERS))


if __name__ == "__main__":
    main()
