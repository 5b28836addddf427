"""How to choose per-layer targets from one global rate: four allocations on LeNet-5.

    python benchmarks/bench_allocation.py                    # rates 71.2, 246 (about 15 CPU-min)
    python benchmarks/bench_allocation.py --rates 246 --retrain-epochs 2 --quick

From one dense LeNet-5 (trained here), each allocation prunes by magnitude to its per-layer
targets (hard projection, no ADMM) and retrains with the masks for a few epochs; the test
accuracy after that short retraining measures how well the allocation preserves the network.
Allocations: "lamp" (tf_admm.allocate_sparsity, the default), "magnitude" (one global |w|
threshold), "uniform" (every layer the same sparsity), "eccv18-shape" (the hand-set ECCV'18
densities, scaled by one factor to reach the rate).
"""

from __future__ import annotations

import argparse
import json
import time

import common

import tf_admm
from tf_admm import keras


def eccv_shape(model, rate: float) -> dict[str, float]:
    sizes = {n: model.get_layer(n).kernel.shape.num_elements() for n in common.ECCV18_TARGETS}
    density = {n: 1 - s for n, s in common.ECCV18_TARGETS.items()}
    budget = sum(sizes.values()) / rate
    low, high = 0.0, 1e3  # find the factor c with sum(min(1, c * d) * size) = budget
    for _ in range(100):
        c = (low + high) / 2
        kept = sum(min(1.0, c * density[n]) * sizes[n] for n in sizes)
        low, high = (c, high) if kept < budget else (low, c)
    return {n: 1 - min(1.0, c * density[n]) for n in sizes}


def allocations(model, rate: float) -> dict[str, dict[str, float]]:
    names = list(common.ECCV18_TARGETS)
    return {
        "lamp": tf_admm.allocate_sparsity(model, rate, min_density=0.0, min_keep=0),
        "magnitude": tf_admm.allocate_sparsity(
            model, rate, min_density=0.0, min_keep=0, score="magnitude"
        ),
        "uniform": {n: 1 - 1 / rate for n in names},
        "eccv18-shape": eccv_shape(model, rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--rates", default="71.2,246")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = common.load_mnist(args.data)
    if args.quick:
        x_train, y_train = x_train[:10000], y_train[:10000]
        args.pretrain_epochs, args.retrain_epochs = 1, 1
    train = common.dataset(x_train, y_train, args.batch_size, shuffle=True)
    steps = -(-len(x_train) // args.batch_size)
    dense = common.lenet5()
    common.compile_for_mnist(dense, 1e-3, steps * args.pretrain_epochs)
    dense.fit(train, epochs=args.pretrain_epochs, verbose=2)
    dense_acc = float(dense.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
    rows = [{"rate": 1, "allocation": "dense", "test_accuracy": dense_acc}]
    for rate in (float(r) for r in args.rates.split(",")):
        for name, targets in allocations(dense, rate).items():
            cpu0 = time.process_time()
            pruned = tf_admm.prune_low_magnitude(dense, targets)
            tf_admm.hard_project(pruned)
            common.compile_for_mnist(pruned, 1e-3)
            projected = float(pruned.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
            common.compile_for_mnist(pruned, 1e-3, steps * args.retrain_epochs)
            pruned.fit(
                train, epochs=args.retrain_epochs, verbose=0, callbacks=[tf_admm.UpdateADMM()]
            )
            final = tf_admm.strip_admm(pruned)
            common.compile_for_mnist(final, 1e-3)
            total = tf_admm.summary(final, print_fn=None)["total"]
            row = {
                "rate": rate,
                "allocation": name,
                "kept_per_layer": {
                    r["layer"]: r["nonzeros"]
                    for r in tf_admm.summary(final, print_fn=None)["layers"]
                },
                "reached_rate": round(total["pruning_rate"], 1),
                "after_projection": round(projected, 4),
                "test_accuracy": round(
                    float(final.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1]), 4
                ),
                "cpu_seconds": round(time.process_time() - cpu0, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(rows, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"rows": rows, "retrain_epochs": args.retrain_epochs}, handle, indent=1)


if __name__ == "__main__":
    main()
