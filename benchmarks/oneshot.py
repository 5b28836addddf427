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
# network: the units compressed (a layer, or a block whose every linear layer is compressed)
NETWORKS = {
    "lenet5": ("conv1", "conv2", "fc1", "fc2"),
    "lenet300": ("fc1", "fc2", "fc3"),
    "decoder": ("block0", "block1", "block2", "block3"),
}
METHODS = ("admm", "sparsegpt", "wanda", "magnitude", "gptq", "keras_gptq")
PATTERNS = {  # pattern: (sparsity (unstructured: --sparsities), bits, methods that take it)
    "unstructured": (None, None, ("admm", "sparsegpt", "wanda", "magnitude")),
    "2:4": ("2:4", None, ("admm", "sparsegpt", "wanda", "magnitude")),
    "4bit": (None, 4, ("admm", "gptq", "magnitude", "keras_gptq")),
    "2bit": (None, 2, ("admm", "gptq", "magnitude")),  # ternary: {-a, 0, a} per channel
}
DENSE_EPOCHS = 10
TASKS = {"lenet5": "Mnist", "lenet300": "Mnist", "decoder": "Text"}  # resolved below


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def key(row: dict) -> tuple:
    names = ("network", "method", "pattern", "sparsity", "calibration_samples", "seed")
    return tuple(row[k] for k in names)


class Mnist:
    """LeNet-5 or LeNet-300-100 on MNIST: accuracy on the 10,000 test images, and in LiteRT."""

    metric_name = "accuracy"

    def __init__(self, network: str, args):
        import common

        (x_train, y_train), (x_test, y_test) = common.load_mnist(args.data)
        (x_train, y_train), _ = common.hold_out(x_train, y_train)
        if args.quick:
            x_train, y_train = x_train[:2000], y_train[:2000]
            x_test, y_test = x_test[:1000], y_test[:1000]
        self.train, self.test = (x_train, y_train), (x_test, y_test)
        self.network, self.args = network, args

    def dense(self, seed: int):
        """The cached dense model of the seed: 10 epochs of Adam with cosine decay."""
        import common

        model = getattr(common, self.network)()

        def fit():
            train = common.dataset(*self.train, 128, shuffle=True, seed=seed)
            epochs = 1 if self.args.quick else DENSE_EPOCHS
            common.compile_for_mnist(model, 1e-3, epochs * int(train.cardinality()))
            model.fit(train, epochs=epochs, verbose=0)

        return cached(model, f"{self.network}_seed{seed}", fit, seed, self.args)

    def calibration(self, seed: int, count: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.train[0][rng.choice(len(self.train[0]), count, replace=False)]

    def evaluate(self, model) -> float:
        logits = model.predict(self.test[0], batch_size=1000, verbose=0)
        return float((logits.argmax(1) == self.test[1]).mean())

    def litert(self, model, calibration) -> float | None:
        import tf_admm

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "small.tflite")
            tf_admm.export_tflite(model, path, quantization="int8", representative_data=calibration)
            return float(tf_admm.check_tflite(model, path, *self.test)["tflite_accuracy"])


class Text:
    """The byte-level decoder (benchmarks/text_lm.py): held-out perplexity; one dense model
    (seed 0) for every calibration seed."""

    metric_name = "perplexity"

    def __init__(self, network: str, args):
        import text_lm

        self.lm, self.args = text_lm, args
        self.train, held_out, self.python = text_lm.corpus()
        self.test = text_lm.windows(held_out, 64 if args.quick else 512, seed=12345)

    def dense(self, seed: int):
        model = self.lm.decoder()
        steps = 20 if self.args.quick else self.args.lm_steps

        def fit():
            self.lm.train(model, self.train, steps, 32, seed=0)

        return cached(model, f"decoder_steps{steps}", fit, 0, self.args)

    def calibration(self, seed: int, count: int) -> np.ndarray:
        return self.lm.windows(self.train, count, seed=1000 + seed)[:, :-1]

    def evaluate(self, model) -> float:
        return self.lm.perplexity(model, self.test)

    def litert(self, model, calibration) -> None:
        return None


def cached(model, name: str, fit, seed: int, args):
    """``model`` with the cached weights of ``name``, trained by ``fit`` first if missing."""
    from tf_admm import keras

    stem = os.path.join(args.cache, name + ("_quick" if args.quick else ""))
    if not os.path.exists(stem + ".npz"):
        keras.utils.set_random_seed(seed)
        fit()
        os.makedirs(args.cache, exist_ok=True)
        weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        np.savez(stem + ".tmp.npz", **weights)
        os.replace(stem + ".tmp.npz", stem + ".npz")
    with np.load(stem + ".npz") as weights:
        model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    return model


def targets(network: str, pattern: str, sparsity, model) -> tuple[dict | None, int | None]:
    """(constraint per unit or None, bits or None): a unit is a layer or a block of layers;
    2:4 on the layers whose inputs it divides."""
    import tf_admm
    from tf_admm.post_training.linear_maps import linear_map
    from tf_admm.post_training.walk import linear_layers

    bits = PATTERNS[pattern][1]
    if sparsity is None:
        return None, bits
    if pattern != "2:4":
        return {name: sparsity for name in NETWORKS[network]}, bits
    nm = tf_admm.NMSparsity(2, 4)
    chosen = {}
    for path, layer in linear_layers(model):
        if _unit(path, NETWORKS[network]) is not None:
            try:
                linear_map(layer).check(nm, path)
            except ValueError:
                continue  # 4 does not divide its inputs: stays dense
            chosen[path] = nm
    return chosen, bits


def _unit(path: str, units) -> str | None:
    return next((u for u in units if path == u or path.startswith(u + "/")), None)


def baseline(model, calibration, by_path: dict, method: str):
    """A baseline through the same walk as the library: the linear layers in the order the
    model calls them, inputs from the model compressed so far, the layer's H over the same
    batches of 32."""
    import oneshot_baselines as base

    import tf_admm
    from tf_admm import keras
    from tf_admm.post_training import layerwise_admm, walk
    from tf_admm.post_training.linear_maps import linear_map

    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    layers = dict(walk.linear_layers(work))
    batches = [[calibration[s : s + 32]] for s in range(0, len(calibration), 32)]
    order = walk.calling_order(work, [layers[p] for p in by_path], batches[0])
    path_of = {id(layer): path for path, layer in layers.items()}
    for layer in order:
        constraint = by_path[path_of[id(layer)]]
        linear = linear_map(layer)
        h = walk.gram(work, layer, batches)
        norms = np.sqrt(np.einsum("gii->gi", h))
        h = layerwise_admm.damped(h, 0.01)
        w = linear.groups_of(np.asarray(layer.get_weights()[0], np.float64))
        nm = (constraint.n, constraint.m) if isinstance(constraint, tf_admm.NMSparsity) else None
        quant = isinstance(constraint, tf_admm.Quantization)
        sparsity = None if quant or nm else constraint.sparsity
        if method == "magnitude":
            new = linear.projector(constraint)(w)
        elif method == "wanda":
            new = base.wanda(w, norms, sparsity, nm)
        elif method == "sparsegpt":
            new = base.sparsegpt(w, h, sparsity, nm)
        else:  # gptq: the grid of the dense matrix, one scale per output
            if w.shape[0] != 1:
                raise SystemExit("gptq here reads one group per layer (no depthwise layers)")
            scale = constraint.fit(w[0])[0].astype(np.float64)
            top = 2 ** (constraint.bits - 1) - 1

            def rounding(column, index, scale=scale, top=top):
                return scale * np.clip(np.round(column / scale), -top, top)

            new = base.gptq(w, h, rounding)
        weights = layer.get_weights()
        weights[0] = linear.kernel_of(new).astype(weights[0].dtype)
        layer.set_weights(weights)
    return work


def keras_gptq(model, calibration, spec: dict, task):
    """Keras's own ``model.quantize("gptq")`` on a copy: 4 bits, symmetric, groups of 64
    inputs (its per-channel mode, ``group_size=-1``, fails on this decoder's MLP in Keras 3.15:
    a scale of 2 groups assigned to a variable of 1), the blocks in order after the
    embedding. Only for the decoder, which has the block structure it needs."""
    from tf_admm import keras

    if not isinstance(task, Text):
        raise SystemExit("keras_gptq runs on the decoder only (it needs sequential blocks)")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    config = keras.quantizers.GPTQConfig(
        calibration,
        lambda text: text,  # the data is already tokens; Keras asks for a tokenizer anyway
        weight_bits=spec["bits"],
        num_samples=len(calibration),
        sequence_length=calibration.shape[1],
        group_size=64,
        symmetric=True,
        quantization_layer_structure={
            "pre_block_layers": [copy.get_layer("embed")],
            "sequential_blocks": [copy.get_layer(name) for name in NETWORKS["decoder"]],
        },
    )
    copy.quantize("gptq", config=config)
    return copy


def child(spec: dict, args) -> dict:
    import tf_admm
    from tf_admm.post_training.walk import linear_layers

    task = TASKS[spec["network"]](spec["network"], args)
    model = task.dense(spec["seed"])
    calibration = task.calibration(spec["seed"], spec["calibration_samples"])
    units, bits = targets(spec["network"], spec["pattern"], spec["sparsity"], model)
    units = units or {}
    found = [(p, l) for p, l in linear_layers(model) if _unit(p, NETWORKS[spec["network"]])]
    cpu0 = time.process_time()
    if spec["method"] == "keras_gptq":
        small = keras_gptq(model, calibration, spec, task)
    elif spec["method"] == "admm":
        small = tf_admm.compress_post_training(
            model, calibration, sparsity=units or None, bits=bits, verbose=False
        )
    else:  # the constraint compress_post_training gives each layer, for the same walk
        by_layer = {}
        for path, layer in found:
            sparsity = units.get(path, units.get(_unit(path, units)))
            constraint = tf_admm.prune.target_resolver(sparsity, bits, "uniform", True)([layer])
            if constraint(layer) is not None:
                by_layer[path] = constraint(layer)
        small = baseline(model, calibration, by_layer, spec["method"])
    cpu = time.process_time() - cpu0
    layers = {}
    compressed = dict(linear_layers(small))
    for path, _ in found if spec["method"] != "keras_gptq" else []:  # its kernels are packed
        kernel = np.asarray(compressed[path].get_weights()[0])
        layers[path] = {
            "sparsity": round(float((kernel == 0).mean()), 6),
            "levels_max": int(max(np.unique(kernel[..., o]).size for o in range(kernel.shape[-1]))),
        }
    row = {
        "dense_metric": task.evaluate(model),
        "metric_name": task.metric_name,
        "metric": task.evaluate(small),
        "litert_metric": task.litert(small, calibration),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "layers": layers,
    }
    if isinstance(task, Text):
        row["python"] = task.python
    return row


def _cell(values: list[float]) -> str:
    import common

    return "{:.2f} ± {:.2f}".format(*common.mean_std(values))


def table(rows: list[dict]) -> str:
    """One table per metric: mean ± std over seeds per (network, pattern, calibration samples,
    method), accuracies in %, perplexities as they are; "- ADMM" is the method minus ADMM,
    paired by seed."""
    out = []
    for metric in sorted({r["metric_name"] for r in rows}):
        scale = 100 if metric == "accuracy" else 1
        mine = [r for r in rows if r["metric_name"] == metric]
        litert = any(r.get("litert_metric") is not None for r in mine)
        unit = " %" if scale == 100 else ""
        head = ["network", "pattern", "method", "seeds", f"{metric}{unit}", "- ADMM"]
        head += [f"LiteRT int8{unit}"] if litert else []
        head += [f"dense{unit}", "CPU s"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        groups: dict = {}
        for r in mine:
            unit_key = (r["network"], r["pattern"], str(r["sparsity"]), r["calibration_samples"])
            groups.setdefault(unit_key, []).append(r)
        many_samples = len({key[3] for key in groups}) > 1
        for (network, pattern, sparsity, samples), members in sorted(groups.items()):
            admm = {r["seed"]: r["metric"] for r in members if r["method"] == "admm"}
            label = f"{pattern} {sparsity}" if pattern == "unstructured" else pattern
            label += f" ({samples} samples)" if many_samples else ""
            for method in METHODS:
                runs = [r for r in members if r["method"] == method]
                if not runs:
                    continue
                paired = [
                    scale * (r["metric"] - admm[r["seed"]]) for r in runs if r["seed"] in admm
                ]
                diff = _cell(paired) if method != "admm" and paired else ""
                if diff and not diff.startswith("-"):
                    diff = "+" + diff
                cells = [network, label, method, str(len(runs))]
                cells += [_cell([scale * r["metric"] for r in runs]), diff]
                if litert:
                    values = [scale * r["litert_metric"] for r in runs if r.get("litert_metric")]
                    cells.append(_cell(values) if values else "")
                cells.append(f"{scale * float(np.mean([r['dense_metric'] for r in runs])):.2f}")
                cells.append(f"{np.mean([r['cpu_seconds'] for r in runs]):.1f}")
                lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def finetune_table(rows: list[dict]) -> str:
    """The short fine-tune (compare_methods.py's ``post_training``) against the README
    recipe from the dense model at the same epochs and at its usual 24, from the method
    comparison's rows (constant learning rate, LAMP targets, no variant)."""
    import common

    chosen = [
        r
        for r in rows
        if r["method"] in ("post_training", "admm_gradual")
        and not r.get("recipe", {}).get("variant")
        and r.get("recipe", {}).get("learning_rate", "constant") == "constant"
        and not any(r.get("recipe", {}).get(k) for k in ("allocation", "shift", "distill"))
    ]
    starts = {(r["network"], r["rate"]) for r in chosen if r["method"] == "post_training"}
    lines = [
        "| network | rate | start | epochs | seeds | test accuracy % | dense % |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in chosen:
        if (r["network"], r["rate"]) in starts:
            groups.setdefault((r["network"], r["rate"], r["epochs"], r["method"]), []).append(r)
    for (network, rate, epochs, method), members in sorted(groups.items()):
        start = "post-training model" if method == "post_training" else "dense model"
        mean, std = common.mean_std([100 * r["test_accuracy"] for r in members])
        dense = 100 * float(np.mean([r["dense_accuracy"] for r in members]))
        lines.append(
            f"| {network} | {rate:g}x | {start} | {epochs} | {len(members)} | "
            f"{mean:.2f} ± {std:.2f} | {dense:.2f} |"
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
    parser.add_argument("--lm-steps", type=int, default=1500, help="the decoder's training")
    parser.add_argument("--data", default=None, help="mnist.npz (Keras layout)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "oneshot.json"))
    parser.add_argument("--cache", default=os.path.join(ROOT, "runs", "compare_cache"))
    parser.add_argument("--quick", action="store_true", help="tiny data (smoke test)")
    parser.add_argument("--table", action="store_true", help="print the table of --out")
    parser.add_argument(
        "--finetune-table",
        default=None,
        metavar="JSON",
        help="print the short fine-tune table of compare_methods.py's rows in JSON",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child), args)))
        return
    if args.table:
        print(table(read_rows(args.out)))
        return
    if args.finetune_table:
        with open(args.finetune_table) as handle:
            print(finetune_table(json.load(handle)))
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
        if method in PATTERNS[pattern][2] and (method != "keras_gptq" or network == "decoder")
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
        command += ["--lm-steps", str(args.lm_steps)]
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
            f"(LiteRT int8 {row['litert_metric']}, dense {row['dense_metric']:.4f}, "
            f"{row['cpu_seconds']:.1f} CPU-s)",
            flush=True,
        )
    print(table(read_rows(args.out)))


TASKS = {name: globals()[kind] for name, kind in TASKS.items()}

if __name__ == "__main__":
    main()
