"""Tune the last progressive stage of LeNet-5 from a saved checkpoint (the 246x recipe search).

    python benchmarks/lenet5_mnist.py --directory runs/lenet5 --retrain_epochs 10 --tolerance 1.0 \
        --retries 0                                    # once: writes the stage checkpoints
    python benchmarks/bench_final_stage.py \
        --start runs/lenet5/LeNet-5-progressive/stage_02/model.keras \
        --admm-epochs 12 --retrain-epochs 30 --out runs/final_I.json

From ``--start`` (a stripped model, e.g. the 52.7x stage of the example run), prune to the
per-layer ``--targets`` (default: the LAMP allocation for 246x of that run) in ``--steps``
stages spaced evenly in log-rate from the start's own sparsities, with
tf_admm.ProgressiveCompressor (guard off), and report validation accuracy (the 5,000 held-out
training images, as in the example), test accuracy, training accuracy and wall time as JSON.
A full-length experiment here costs minutes instead of the example's 45.

``--shift N`` trains on images moved by up to N pixels (``common.dataset``). With
``--start`` already at the targets and ``--admm-epochs 0``, the run only retrains the fixed
support (the augmentation row of docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import time

import common

import tf_admm
from tf_admm import keras

# the LAMP allocation for 246x of the example's run (docs/results.md)
TARGETS_246X = {"conv1": 0.518, "conv2": 0.97984, "fc1": 0.998595, "fc2": 0.9114}


def stages_from(start: dict[str, float], targets: dict[str, float], args) -> list:
    """``args.steps`` stages from the ``start`` sparsities to ``targets``, even in log-rate."""
    return tf_admm.geometric_stages(
        targets,
        args.steps,
        start=start,
        admm_epochs=args.admm_epochs,
        retrain_epochs=args.retrain_epochs,
        update_every=args.update_every,
        unit="step",
        rho=args.rho,
        rho_growth=args.rho_growth,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", required=True, help="a stripped .keras model to start from")
    parser.add_argument("--data", default=None)
    parser.add_argument("--targets", default=None, help="JSON layer -> sparsity (default 246x)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--admm-epochs", type=int, default=6)
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--update-every", type=int, default=300)
    parser.add_argument("--rho", type=float, default=1e-3)
    parser.add_argument("--rho-growth", type=float, default=1.3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--optimizer", default="adam", help="a Keras optimizer name")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=int, default=0, help="augmentation: shift up to N px")
    parser.add_argument("--directory", default=None, help="checkpoints (resumable)")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    targets = json.loads(args.targets) if args.targets else TARGETS_246X
    (x, y), (x_test, y_test) = common.load_mnist(args.data)
    (x, y), (x_val, y_val) = common.hold_out(x, y)
    start = keras.models.load_model(args.start, compile=False)
    current = tf_admm.report.layer_sparsity(start)
    unknown = sorted(set(targets) - set(current))
    if unknown:
        raise SystemExit(f"--targets names layers {unknown}; the model has {sorted(current)}")
    run = tf_admm.ProgressiveCompressor(
        start,
        stages_from(current, targets, args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=common.dataset(x, y, args.batch_size, True, args.seed, args.shift),
        validation_data=common.dataset(x_val, y_val, 1000, False),
        tolerance=1.0,
        directory=args.directory,
        verbose=2,
    )
    t0, cpu0 = time.time(), time.process_time()
    model = run.run()
    common.compile_for_mnist(model, 1e-3)
    result = {
        "args": vars(args),
        "start_sparsity": current,
        "validation": [r["accuracy"] for r in run.reports],
        "rates": [r["pruning_rate"] for r in run.reports],
        "test_accuracy": float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1]),
        "train_accuracy": float(model.evaluate(x, y, batch_size=1000, verbose=0)[1]),
        "epochs": args.steps * (args.admm_epochs + args.retrain_epochs),
        "seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
    }
    print(json.dumps(result), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
