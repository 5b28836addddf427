"""Post-training compression from calibration data: tf_admm's layer-wise ADMM
(``tf_admm.compress_post_training``) against one-shot magnitude, Wanda, SparseGPT and GPTQ
(benchmarks/oneshot_baselines.py), on the same dense models and calibration samples.

For every (network, seed) the dense model is trained once and cached (10 epochs of Adam with
cosine decay on the first 55,000 MNIST training images, as benchmarks/compare_methods.py trains
it, in the same cache format). The calibration samples are ``--calibration-samples`` training
images drawn by the seed. Every method compresses the same layers in the same order, each
layer's inputs taken from the model compressed so far. Each unit runs in its own process (peak
RSS is that process's) and appends one JSON object per line to ``--out``:

    {"network", "method", "pattern", "sparsity", "bits", "calibration_samples", "seed",
     "dense_metric", "metric_name", "metric", "cpu_seconds", "peak_rss_mb", "layers"}

``metric`` is the Keras test accuracy on the 10,000 MNIST test images; ``cpu_seconds`` the
process CPU time of the compression alone. A unit already in ``--out`` is skipped, so a study
resumes. ``--table`` prints mean ± std over seeds and the paired difference to ADMM.

    python benchmarks/oneshot.py --networks lenet5,lenet300 --seeds 0,1,2
    python benchmarks/oneshot.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NETWORKS = {"lenet5": ("conv1", "conv2", "fc1", "fc2"), "lenet300": ("fc1", "fc2", "fc3")}
METHODS = ("admm", "sparsegpt", "wanda", "magnitude", "gptq")
PATTERNS = {  # pattern: (sparsity (unstructured: --sparsities), bits, methods that take it)
    "unstructured": (None, None, ("admm", "sparsegpt", "wanda", "magnitude")),
    "2:4": ("2:4", None, ("admm", "sparsegpt", "wanda", "magnitude")),
    "4bit": (None, 4, ("admm", "gptq", "magnitude")),
    "2bit": (None, 2, ("admm", "gptq", "magnitude")),  # ternary: {-a, 0, a} per channel
}
DENSE_EPOCHS = 10


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def key(row: dict) -> tuple:
    names = ("network", "method", "pattern", "sparsity", "calibration_samples", "seed")
    return tuple(row[k] for k in names)


def load_data(path, quick):
    import common

    (x_train, y_train), (x_test, y_test) = common.load_mnist(path)
    (x_train, y_train), _ = common.hold_out(x_train, y_train)
    if quick:
        return (x_train[:2000], y_train[:2000]), (x_test[:1000], y_test[:1000])
    return (x_train, y_train), (x_test, y_test)


def dense_model(network: str, seed: int, args):
    """The cached dense model of (network, seed), trained first if missing."""
    import common

    from tf_admm import keras

    model = getattr(common, network)()
    stem = os.path.join(args.cache, f"{network}_seed{seed}{'_quick' if args.quick else ''}")
    if not os.path.exists(stem + ".npz"):
        keras.utils.set_random_seed(seed)
        (x_train, y_train), _ = load_data(args.data, args.quick)
        train = common.dataset(x_train, y_train, 128, shuffle=True, seed=seed)
        epochs = 1 if args.quick else DENSE_EPOCHS
        common.compile_for_mnist(model, 1e-3, epochs * int(train.cardinality()))
        model.fit(train, epochs=epochs, verbose=0)
        os.makedirs(args.cache, exist_ok=True)
        weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        np.savez(stem + ".tmp.npz", **weights)
        os.replace(stem + ".tmp.npz", stem + ".npz")
    with np.load(stem + ".npz") as weights:
        model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    return model


def targets(network: str, pattern: str, sparsity, model) -> tuple[dict | None, int | None]:
    """(sparsity per layer or None, bits or None): 2:4 on the layers whose inputs it divides."""
    import tf_admm

    bits = PATTERNS[pattern][1]
    if sparsity is None:
        return None, bits
    if pattern == "2:4":
        chosen = {}
        for name in NETWORKS[network]:
            kernel = model.get_layer(name).get_weights()[0]
            if int(np.prod(kernel.shape[:-1])) % 4 == 0:
                chosen[name] = tf_admm.NMSparsity(2, 4)
        return chosen, bits
    return {name: sparsity for name in NETWORKS[network]}, bits


def baseline(model, calibration, spec: dict, method: str):
    """A baseline through the same walk as the library: layers in order, inputs from the model
    compressed so far, the layer's H over the calibration batches."""
    import oneshot_baselines as base

    import tf_admm
    from tf_admm import keras
    from tf_admm.post_training import layerwise_admm
    from tf_admm.post_training.linear_maps import linear_map

    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    for name, constraint in spec.items():
        layer = work.get_layer(name)
        linear = linear_map(layer)
        reader = keras.Model(work.inputs[0], layer.input)
        h = None
        for start in range(0, len(calibration), 32):
            rows = linear.rows(np.asarray(reader(calibration[start : start + 32])))
            part = np.einsum("gni,gnj->gij", rows, rows)
            h = part if h is None else h + part
        norms = np.sqrt(np.einsum("gii->gi", h))
        h = layerwise_admm.damped(h, 0.01)
        kernel = np.asarray(layer.get_weights()[0], np.float64)
        w = linear.groups_of(kernel)
        nm = (constraint.n, constraint.m) if isinstance(constraint, tf_admm.NMSparsity) else None
        quant = isinstance(constraint, tf_admm.Quantization)
        sparsity = None if quant or nm else constraint.sparsity
        if method == "magnitude":
            new = linear.groups_of(constraint.project(kernel))
        elif method == "wanda":
            new = base.wanda(w, norms, sparsity, nm)
        elif method == "sparsegpt":
            new = base.sparsegpt(w, h, sparsity, nm)
        else:  # gptq: the grid of the dense kernel, per output channel
            scale = constraint.fit(kernel)[0].astype(np.float64)
            top = 2 ** (constraint.bits - 1) - 1

            def rounding(column, index, scale=scale, top=top):
                return scale * np.clip(np.round(column / scale), -top, top)

            new = base.gptq(w, h, rounding)
        weights = layer.get_weights()
        weights[0] = linear.kernel_of(new).astype(weights[0].dtype)
        layer.set_weights(weights)
    return work


def child(spec: dict, args) -> dict:
    import tf_admm

    (x_train, _), (x_test, y_test) = load_data(args.data, args.quick)
    model = dense_model(spec["network"], spec["seed"], args)
    rng = np.random.default_rng(spec["seed"])
    calibration = x_train[rng.choice(len(x_train), spec["calibration_samples"], replace=False)]
    by_layer, bits = targets(spec["network"], spec["pattern"], spec["sparsity"], model)
    cpu0 = time.process_time()
    if spec["method"] == "admm":
        small = tf_admm.compress_post_training(
            model, calibration, sparsity=by_layer, bits=bits, verbose=False
        )
    else:
        resolve = tf_admm.prune.target_resolver(by_layer, bits, "uniform", True)
        layers = [model.get_layer(n) for n in NETWORKS[spec["network"]]]
        choose = resolve(layers)
        chosen = {l.name: choose(l) for l in layers if choose(l) is not None}
        small = baseline(model, calibration, chosen, spec["method"])
    cpu = time.process_time() - cpu0

    def accuracy(m):
        logits = m.predict(x_test, batch_size=1000, verbose=0)
        return float((logits.argmax(1) == y_test).mean())

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "small.tflite")
        tf_admm.export_tflite(small, path, quantization="int8", representative_data=calibration)
        litert = tf_admm.check_tflite(small, path, x_test, y_test)["tflite_accuracy"]
    layers = {}
    for name in NETWORKS[spec["network"]]:
        kernel = small.get_layer(name).get_weights()[0]
        layers[name] = {
            "sparsity": round(float((kernel == 0).mean()), 6),
            "levels_max": int(max(np.unique(kernel[..., o]).size for o in range(kernel.shape[-1]))),
        }
    return {
        "dense_metric": accuracy(model),
        "metric_name": "accuracy",
        "metric": accuracy(small),
        "litert_metric": float(litert),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "layers": layers,
    }


def table(rows: list[dict]) -> str:
    import common

    groups: dict = {}
    for row in rows:
        unit = (row["network"], row["pattern"], str(row["sparsity"]), row["calibration_samples"])
        groups.setdefault(unit, []).append(row)
    lines = [
        "| network | pattern | samples | method | seeds | accuracy % | - ADMM | LiteRT int8 % "
        "| dense % | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (network, pattern, sparsity, samples), members in sorted(groups.items()):
        admm = {r["seed"]: r["metric"] for r in members if r["method"] == "admm"}
        for method in METHODS:
            mine = [r for r in members if r["method"] == method]
            if not mine:
                continue
            mean, std = common.mean_std([100 * r["metric"] for r in mine])
            dense = common.mean_std([100 * r["dense_metric"] for r in mine])[0]
            paired = [100 * (r["metric"] - admm[r["seed"]]) for r in mine if r["seed"] in admm]
            diff = ""
            if method != "admm" and paired:
                diff = "{:+.2f} ± {:.2f}".format(*common.mean_std(paired))
            cpu = np.mean([r["cpu_seconds"] for r in mine])
            litert = "{:.2f} ± {:.2f}".format(
                *common.mean_std([100 * r["litert_metric"] for r in mine])
            )
            lines.append(
                f"| {network} | {pattern} {sparsity if pattern == 'unstructured' else ''} | "
                f"{samples} | {method} | {len(mine)} | "
                f"{mean:.2f} ± {std:.2f} | {diff} | {litert} | {dense:.2f} | {cpu:.1f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default="lenet5,lenet300")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sparsities", default="0.5,0.8", help="of the unstructured pattern")
    parser.add_argument("--calibration-samples", type=int, default=512)
    parser.add_argument("--data", default=None, help="mnist.npz (Keras layout)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "oneshot.json"))
    parser.add_argument("--cache", default=os.path.join(ROOT, "runs", "compare_cache"))
    parser.add_argument("--quick", action="store_true", help="tiny data (smoke test)")
    parser.add_argument("--table", action="store_true", help="print the table of --out")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child), args)))
        return
    if args.table:
        print(table(read_rows(args.out)))
        return
    given = {
        "networks": args.networks.split(","),
        "methods": args.methods.split(","),
        "patterns": args.patterns.split(","),
    }
    for name, allowed in (("networks", NETWORKS), ("methods", METHODS), ("patterns", PATTERNS)):
        unknown = sorted(set(given[name]) - set(allowed))
        if unknown:
            raise SystemExit(f"unknown {name} {unknown}; allowed: {sorted(allowed)}")
    units = [
        (network, int(seed), pattern, sparsity, method)
        for network in given["networks"]
        for seed in args.seeds.split(",")
        for pattern in given["patterns"]
        for sparsity in (
            [float(s) for s in args.sparsities.split(",")]
            if pattern == "unstructured"
            else [PATTERNS[pattern][0]]
        )
        for method in given["methods"]
        if method in PATTERNS[pattern][2]
    ]
    for network, seed, pattern, sparsity, method in units:
        spec = {
            "network": network,
            "method": method,
            "pattern": pattern,
            "sparsity": sparsity,
            "bits": PATTERNS[pattern][1],
            "calibration_samples": args.calibration_samples,
            "seed": seed,
        }
        if key(spec) in {key(r) for r in read_rows(args.out)}:
            continue
        command = [sys.executable, __file__, "--child", json.dumps(spec)]
        for flag in ("data", "cache"):
            if getattr(args, flag):
                command += [f"--{flag}", getattr(args, flag)]
        if args.quick:
            command.append("--quick")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{spec} failed:\n{done.stderr[-3000:]}")
        row = dict(spec, **json.loads(done.stdout.strip().splitlines()[-1]))
        if args.quick:
            row["quick"] = True
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(
            f"{network} seed {seed} {pattern} {sparsity} {method}: {row['metric']:.4f} "
            f"(LiteRT int8 {row['litert_metric']:.4f}, dense {row['dense_metric']:.4f}, "
            f"{row['cpu_seconds']:.1f} CPU-s)",
            flush=True,
        )
    print(table(read_rows(args.out)))


if __name__ == "__main__":
    main()
