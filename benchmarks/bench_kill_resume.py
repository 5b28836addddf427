"""Fault injection: SIGKILL a real progressive run at random moments, restart it every time.

One uninterrupted run of a 3-stage ``tf_admm.ProgressiveCompressor`` (LeNet-300-100 on a
subset of MNIST, or on synthetic images with ``--synthetic``) gives the reference weights and
its duration. Then the same run is started in a fresh directory and killed with SIGKILL at a
random moment after its start-up (imports, data): after 0 or 1 more finished epochs (odds
60:40), uniform over the next 1.2 epochs of the uninterrupted run, so that the kills land in
training steps, epoch-end backups, hard projections and stage ends all over the run;
``--kills`` times, each restart resuming from what the previous one left; after the last kill
it runs to the end. Reported:

- resumed: restarts that found the directory usable (ran on until killed again or finished;
  ``attempts`` says which of them reported resuming after finished stages);
- dead directories: restarts that failed with an error of their own (not our kill);
- epochs redone: epochs trained over all attempts minus those of the uninterrupted run;
- max |difference| between the final weights and the uninterrupted run's.

    python benchmarks/bench_kill_resume.py                     # 20 kills
    python benchmarks/bench_kill_resume.py --kills 3 --synthetic --out runs/kill.json

Only processes this script started are killed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

EPOCH_MARK = "EPOCH_DONE"


def child(directory: str, synthetic: bool, data: str | None) -> None:
    """The run being killed: 3 stages of 2 ADMM + 2 retraining epochs, then the final weights
    are written to ``directory/final.npz`` (atomically)."""
    import common

    import tf_admm
    from tf_admm import keras

    keras.utils.set_random_seed(0)
    if synthetic:
        rng = np.random.default_rng(0)
        x = rng.random((2048, 28, 28, 1), dtype=np.float32)
        y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype("int64")
    else:
        (x, y), _ = common.load_mnist(data)
        x, y = x[:4096], y[:4096]
    (x_train, y_train), (x_val, y_val) = common.hold_out(x, y, 512)
    dense = common.lenet300()
    common.compile_for_mnist(dense, 1e-3)
    dense.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0, shuffle=False)

    class Mark(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(EPOCH_MARK, flush=True)

    stages = tf_admm.geometric_stages(
        {"fc1": 0.98, "fc2": 0.95, "fc3": 0.5},
        3,
        admm_epochs=2,
        retrain_epochs=2,
        update_every=10,
        unit="step",
    )
    run = tf_admm.ProgressiveCompressor(
        dense,
        stages,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=(x_train, y_train),
        validation_data=(x_val, y_val),
        tolerance=1.0,
        directory=directory,
        callbacks=[Mark()],
        verbose=1,
    )
    print(f"STARTED {time.time()}", flush=True)
    final = run.run()
    store = tf_admm.progressive.store.RunStore(directory)
    store.save_arrays("final.npz", {f"w{i}": w for i, w in enumerate(final.get_weights())})
    print("FINISHED", flush=True)


def _start(directory: str, args, log: str) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", directory]
    cmd += ["--synthetic"] if args.synthetic else []
    cmd += ["--data", args.data] if args.data else []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    with open(log, "w") as handle:
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)


def _read(log: str) -> str:
    with open(log) as handle:
        return handle.read()


def _reached(process: subprocess.Popen, log: str, marker: str, count: int) -> bool:
    """Wait until ``marker`` appears ``count`` times in the child's log; False if it exited
    first."""
    while process.poll() is None:
        if _read(log).count(marker) >= count:
            return True
        time.sleep(0.02)
    return False


def _weights(directory: str) -> list[np.ndarray]:
    with np.load(os.path.join(directory, "final.npz")) as data:
        return [data[f"w{i}"] for i in range(len(data.files))]


def measure(kills: int, seed: int, args) -> dict:
    work = args.work or tempfile.mkdtemp(prefix="kill_resume_")
    os.makedirs(work, exist_ok=True)
    reference = os.path.join(work, "uninterrupted")
    log = os.path.join(work, "uninterrupted.log")
    start = time.time()
    process = _start(reference, args, log)
    if process.wait():
        raise SystemExit(f"the uninterrupted run failed:\n{_read(log)[-3000:]}")
    duration = time.time() - start
    text = _read(log)
    reference_epochs = text.count(EPOCH_MARK)
    startup = float(text.split("STARTED ")[1].split()[0]) - start  # imports, data, dense model
    epoch_time = (duration - startup) / max(reference_epochs, 1)

    rng = random.Random(seed)
    directory = os.path.join(work, "killed")
    attempts, resumed, dead, epochs = [], 0, 0, 0
    for attempt in range(kills + 1):
        log = os.path.join(work, f"attempt_{attempt:02d}.log")
        process = _start(directory, args, log)
        killed, delay = False, None
        if attempt < kills:
            # after the start-up, after 0 or 1 (40%) more finished epochs, at a random moment of the
            # next 1.2 epochs: inside training steps, epoch-end backups, projections, stage ends
            epochs_first = int(rng.random() < 0.4)
            delay = rng.uniform(0, 1.2 * epoch_time)
            if _reached(process, log, "STARTED", 1) and _reached(
                process, log, EPOCH_MARK, epochs_first
            ):
                try:
                    process.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    killed = True
        code = process.wait()
        text = _read(log)
        epochs += text.count(EPOCH_MARK)
        failed = not killed and code != 0
        resumed += attempt > 0 and not failed
        dead += failed
        attempts.append(
            {
                "attempt": attempt,
                "killed_after_s": None if not killed else round(delay, 2),
                "exit": code,
                "resumed": "resuming" in text,
                "failed": failed,
            }
        )
        if failed:
            print(text[-3000:], file=sys.stderr)
        if not killed and code == 0:
            break
    finished = os.path.exists(os.path.join(directory, "final.npz"))
    diff = None
    if finished:
        diff = max(
            float(np.max(np.abs(a - b))) if a.size else 0.0
            for a, b in zip(_weights(reference), _weights(directory))
        )
    return {
        "kills": sum(a["killed_after_s"] is not None for a in attempts),
        "restarts": len(attempts) - 1,
        "resumed": int(resumed),
        "dead_directories": int(dead),
        "finished": finished,
        "uninterrupted_epochs": reference_epochs,
        "epochs_trained": epochs,
        "epochs_redone": epochs - reference_epochs,
        "max_abs_difference": diff,
        "uninterrupted_seconds": round(duration, 1),
        "startup_seconds": round(startup, 1),
        "attempts": attempts,
        "directory": work,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="draws the kill times")
    parser.add_argument("--synthetic", action="store_true", help="random images, no MNIST file")
    parser.add_argument("--data", default=None, help="mnist.npz (Keras layout)")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.synthetic, args.data)
        return
    result = measure(args.kills, args.seed, args)
    summary = {k: v for k, v in result.items() if k != "attempts"}
    print(json.dumps(summary, indent=1))
    print(
        f"{result['resumed']} of {result['restarts']} restarts resumed, "
        f"{result['dead_directories']} dead directories, {result['epochs_redone']} epochs "
        f"redone, max |difference| from the uninterrupted run: {result['max_abs_difference']}"
    )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
