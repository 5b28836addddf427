"""Training-step time of LeNet-5 wrapped for ADMM against the plain model, in the same run.

    python benchmarks/bench_step.py                 # tf_admm under Keras 3, TFMOT in a subprocess
    python benchmarks/bench_step.py --no-tfmot      # skip the TFMOT comparison

Each variant trains on synthetic MNIST-shaped data (batch 128) for --epochs epochs of --steps
steps; the first epoch (tracing) is dropped and the median epoch time is divided by the steps.
Plain and wrapped alternate in rounds so drift on a shared machine hits both. The wrapped model
trains in ADMM mode with OneShot(100, "step"), so the
penalty, the mask write, the callback's counters and the Z/U updates are all in the measured
time. With --tfmot-only
(used by the subprocess, under TF_USE_LEGACY_KERAS=1) it measures TFMOT's prune_low_magnitude
with UpdatePruningStep against plain tf_keras instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class EpochTimer:
    def __init__(self):
        self.times = []

    def callback(self, keras):
        timer = self

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.times.append(time.perf_counter() - self.start)

        return _Timer()


def step_time(model, ds, steps, epochs, callbacks, keras) -> float:
    timer = EpochTimer()
    model.fit(
        ds,
        epochs=epochs,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[*callbacks, timer.callback(keras)],
    )
    return statistics.median(timer.times[1:]) / steps


def synthetic():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((128 * 8, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 128 * 8)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(128).repeat().prefetch(4)


def run_pair(make_plain, make_wrapped, extra_callbacks, args, keras):
    ds = synthetic()
    plain_t, wrapped_t = [], []
    for _ in range(args.rounds):
        plain_t.append(step_time(make_plain(), ds, args.steps, args.epochs, [], keras))
        wrapped_t.append(
            step_time(make_wrapped(), ds, args.steps, args.epochs, extra_callbacks(), keras)
        )
    plain, wrapped = statistics.median(plain_t), statistics.median(wrapped_t)
    return {
        "plain_ms": round(plain * 1e3, 2),
        "wrapped_ms": round(wrapped * 1e3, 2),
        "ratio": round(wrapped / plain, 3),
    }


def compiled(model, keras):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-tfmot", action="store_true")
    parser.add_argument("--tfmot-only", action="store_true")
    args = parser.parse_args()

    if args.tfmot_only:
        import common
        import tensorflow_model_optimization as tfmot  # switches tf.keras to tf_keras

        from tf_admm import keras

        sched = tfmot.sparsity.keras.ConstantSparsity(0.9, begin_step=0, frequency=100)
        result = run_pair(
            lambda: compiled(common.lenet5(), keras),
            lambda: compiled(
                tfmot.sparsity.keras.prune_low_magnitude(common.lenet5(), pruning_schedule=sched),
                keras,
            ),
            lambda: [tfmot.sparsity.keras.UpdatePruningStep()],
            args,
            keras,
        )
        print("RESULT " + json.dumps(result))
        return

    import common

    import tf_admm
    from tf_admm import keras

    result = {
        "tf_admm": run_pair(
            lambda: compiled(common.lenet5(), keras),
            lambda: compiled(
                tf_admm.prune_low_magnitude(
                    common.lenet5(),
                    common.ECCV18_TARGETS,
                    schedule=tf_admm.schedules.OneShot(100, "step"),
                ),
                keras,
            ),
            lambda: [tf_admm.UpdateADMM()],
            args,
            keras,
        ),
        "keras": keras.__version__,
        "flavour": "tf_keras" if keras.__name__.startswith("tf_keras") else "keras3",
    }
    print("tf_admm:", result["tf_admm"], flush=True)
    if not args.no_tfmot:
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
        cmd = [
            sys.executable,
            __file__,
            "--tfmot-only",
            f"--steps={args.steps}",
            f"--epochs={args.epochs}",
            f"--rounds={args.rounds}",
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
        result["tfmot_tf_keras"] = json.loads(line[len("RESULT ") :])
        print("tfmot:", result["tfmot_tf_keras"], flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
