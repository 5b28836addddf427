"""LiteRT latency of shrunk models against their dense files, at 1.5x, 2x and 3x fewer MACs.

For each network (MobileNetV2 alpha 1.0 and ResNet50 at 224x224x3, a CIFAR-style ResNet-20
with identity shortcuts at 32x32x3, a DenseNet-style net with Concatenate at 32x32x3, and the
ResNet-14 and MobileNetV2-style net of the Fashion-MNIST studies at 28x28x1) with
random weights (latency depends on shapes, not on what was learned), it removes the channels
``tf_admm.allocate_channels(model, rate, round_to=...)`` allocates (random channels of each
group, ``tf_admm.removal.zero_channels``: what ``hard_project`` of a structured constraint
leaves) and ``tf_admm.shrink`` removes them. It checks that the shrunk model computes what the
zeroed dense model computes, exports dense and shrunk models as float and as full int8
(``tf_admm.export_tflite``, no sparse tensors) and times ``invoke()`` on batch 1 with the
default XNNPACK delegate, 1 and 2 threads, every file of a network in the same run, their
rounds interleaved (``bench_latency.time_files``) so that drift falls on every file alike.

One JSON object per measurement is appended to ``--out`` (kind "latency"): network, method
("dense" or "shrunk"), flops_rate (measured), round_to, precision, threads, seconds,
latency_ratio (to the dense file of the same precision and threads), raw_bytes, bytes_ratio,
max_rel_error.

    python benchmarks/bench_structured.py --out docs/structured.json
    python benchmarks/bench_structured.py --plot docs/structured_latency.png  # the figure
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from bench_latency import time_files
from nets import cifar_resnet, mobilenet_v2_small

import tf_admm
from tf_admm import keras
from tf_admm.removal import zero_channels

L = keras.layers


def densenet_style(growth: int = 24, blocks=(6, 12, 8)) -> keras.Model:
    """DenseNet-BC-style: BN-ReLU-1x1-BN-ReLU-3x3 layers whose outputs are concatenated."""
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(2 * growth, 3, padding="same", use_bias=False)(inputs)
    for i, count in enumerate(blocks):
        for _ in range(count):
            y = L.ReLU()(L.BatchNormalization()(x))
            y = L.Conv2D(4 * growth, 1, use_bias=False)(y)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.Conv2D(growth, 3, padding="same", use_bias=False)(y)
            x = L.Concatenate()([x, y])
        if i < len(blocks) - 1:
            x = L.ReLU()(L.BatchNormalization()(x))
            x = L.Conv2D(x.shape[-1] // 2, 1, use_bias=False)(x)
            x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(x)))
    return keras.Model(inputs, L.Dense(10)(x), name="densenet_style")


NETWORKS = {
    "mobilenet_v2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(224, 224, 3), alpha=1.0
    ),
    "resnet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
    "cifar_resnet20": cifar_resnet,  # width 16, 3 blocks a stage, 32x32x3
    "densenet_style": densenet_style,
    # the Fashion-MNIST nets of structured_accuracy.py and frontier.py, at their 28x28x1 inputs
    "resnet14_w8": lambda: cifar_resnet((28, 28, 1), width=8, blocks=2),
    "mobilenet_v2_small": mobilenet_v2_small,
}


def randomize_batchnorm(model, rng) -> None:
    for layer in tf_admm.cloning.flat_layers(model):
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights(
                [w + rng.uniform(0.2, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()]
            )


def shrunk_at(dense, rate: float, round_to: int, seed: int):
    """A copy of ``dense`` with the channels ``tf_admm.allocate_channels(dense, rate,
    round_to=round_to)`` asks for zeroed (random channels of each group: latency depends on how
    many, not which), and its shrunk model."""
    targets = tf_admm.allocate_channels(dense, rate, round_to=round_to)
    zeroed = keras.models.clone_model(dense)
    zeroed.set_weights(dense.get_weights())
    rng = np.random.default_rng(seed)
    groups = tf_admm.channel_groups(zeroed)
    chosen = {
        i: sorted(rng.choice(groups[i].size, int(np.floor(groups[i].size * s + 1e-9)), False))
        for i, s in targets.items()
    }
    zero_channels(zeroed, chosen, groups)
    return zeroed, tf_admm.shrink(zeroed)


def export(model, path: str, precision: str, calibration) -> int:
    kwargs = (
        {"quantization": "int8", "representative_data": calibration} if precision == "int8" else {}
    )
    tf_admm.export_tflite(model, path, overwrite=True, **kwargs)
    return os.path.getsize(path)


def run(
    name: str, rates, round_tos, threads_list, invokes: int, repeats: int, out: str, seed: int
) -> None:
    keras.utils.set_random_seed(seed)
    dense = NETWORKS[name]()
    rng = np.random.default_rng(seed)
    randomize_batchnorm(dense, rng)
    shape = (1,) + tuple(dense.input_shape[1:])
    x = rng.normal(size=(8,) + shape[1:]).astype("float32")
    dense_macs = tf_admm.flops.total_macs(dense)
    models = [("dense", 1.0, 1, dense, 0.0)]
    for rate, round_to in [(r, k) for k in round_tos for r in rates]:
        start = time.time()
        zeroed, small = shrunk_at(dense, rate, round_to, seed)
        macs = tf_admm.flops.total_macs(small)
        error = float(
            np.max(np.abs(np.asarray(small(x)) - np.asarray(zeroed(x))))
            / np.max(np.abs(np.asarray(zeroed(x))))
        )
        print(
            f"{name}: {dense_macs / macs:.2f}x fewer MACs (round_to={round_to}), max rel error "
            f"{error:.1e} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )
        models.append(("shrunk", dense_macs / macs, round_to, small, error))
    with tempfile.TemporaryDirectory() as directory:
        for precision in ("float", "int8"):
            files = []
            for method, rate, round_to, model, error in models:
                path = os.path.join(
                    directory, f"{name}_{method}_{rate:.2f}_{round_to}_{precision}.tflite"
                )
                size = export(model, path, precision, x[:8])
                files.append((method, rate, round_to, path, size, error))
            for threads in threads_list:
                times = time_files([f[3] for f in files], x, invokes, repeats, threads)
                base = (times[0], files[0][4])
                for (method, rate, round_to, _, size, error), seconds in zip(files, times):
                    record = {
                        "network": name,
                        "kind": "latency",
                        "method": method,
                        "flops_rate": round(rate, 3),
                        "round_to": round_to,
                        "precision": precision,
                        "threads": threads,
                        "seconds": seconds,
                        "latency_ratio": seconds / base[0],
                        "raw_bytes": size,
                        "bytes_ratio": size / base[1],
                        "max_rel_error": error,
                        "input_shape": list(shape),
                    }
                    print(json.dumps(record), flush=True)
                    with open(out, "a") as f:
                        f.write(json.dumps(record) + "\n")


def plot(rows: list[dict], path: str, threads: int = 1) -> None:
    """One panel per network: latency ratio (shrunk / dense file of the same precision, one
    thread) against the MAC reduction, float and int8, the default allocation as lines and
    ``round_to=16`` as open markers; the dashed curve is a latency that follows the MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last: dict[tuple, dict] = {}  # the latest measurement of each point
    for r in rows:
        if r.get("kind") == "latency" and r["method"] == "shrunk" and r["threads"] == threads:
            last[(r["network"], r["round_to"], round(r["flops_rate"], 1), r["precision"])] = r
    networks = sorted({key[0] for key in last})
    columns = min(2, len(networks))
    rows_ = -(-len(networks) // columns)
    fig, axes = plt.subplots(
        rows_, columns, figsize=(4.2 * columns, 3.4 * rows_), sharey=True, squeeze=False
    )
    axes = axes.ravel()
    colors = {"float": "tab:blue", "int8": "tab:orange"}
    for ax in axes[len(networks) :]:
        ax.set_visible(False)
    for ax, network in zip(axes, networks):
        xs = np.linspace(1.0, 3.2, 50)
        ax.plot(xs, 1 / xs, "--", color="grey", lw=1, label="follows MACs")
        for precision, color in colors.items():
            for round_to, style in ((1, "o-"), (16, "s")):
                points = sorted(
                    (r["flops_rate"], r["latency_ratio"])
                    for (n, rt, _, p), r in last.items()
                    if n == network and rt == round_to and p == precision
                )
                if not points:
                    continue
                x, y = zip(*points)
                face = color if round_to == 1 else "none"
                label = precision + ("" if round_to == 1 else ", round_to=16")
                ax.plot(x, y, style, color=color, mfc=face, label=label)
        ax.plot([2.0], [0.6], "k*", ms=9, label="target at 2x")
        ax.set_title(network, fontsize=10)
        ax.set_xlabel("MACs: dense / shrunk")
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel(f"LiteRT time / dense file ({threads} thread)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--rates", nargs="+", type=float, default=[1.5, 2.0, 3.0])
    parser.add_argument(
        "--round-to",
        nargs="+",
        type=int,
        default=[1],
        help="allocate_channels(round_to=...) values, each at every rate",
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--invokes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/structured.json")
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="only draw the latency figure from --out's rows into PNG (no measurement)",
    )
    args = parser.parse_args()
    if args.plot:
        with open(args.out) as f:
            plot([json.loads(line) for line in f], args.plot)
        return
    for name in args.networks:
        run(
            name,
            args.rates,
            args.round_to,
            args.threads,
            args.invokes,
            args.repeats,
            args.out,
            args.seed,
        )


if __name__ == "__main__":
    main()
