"""Where the time goes: LiteRT latency of each conv layer of a dense and a shrunk network.

LiteRT's Python interpreter has no per-operator profiler, so each Conv2D, DepthwiseConv2D and
Dense layer of the network is exported on its own (a one-layer model with the layer's input
shape and weights, ``tf_admm.export_tflite``, float and full int8) and timed like a whole file
(``bench_latency.time_files``: batch 1, XNNPACK, median of rounds, the dense and shrunk
files' rounds interleaved). The shrunk network is the
one ``bench_structured.py`` times (the same seed, ``--rate`` and ``--round-to``: the channels of
``tf_admm.allocate_channels``, zeroed and removed by ``tf_admm.shrink``); its
layers keep their names, so each layer is paired with its dense self. One JSON object per
layer, precision and threads is appended to ``--out``: network, layer, role (MobileNetV2's
"expand", "depthwise", "project", or "other"), precision, threads, macs and seconds for dense
and shrunk, and their ratios. A one-layer int8 file quantizes its input and dequantizes its
output; those two ops are in both files of a pair.

    python benchmarks/profile_layers.py --network mobilenet_v2 --out docs/structured_layers.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from bench_latency import time_files
from bench_structured import NETWORKS, export, randomize_batchnorm, shrunk_at

import tf_admm
from tf_admm import keras

L = keras.layers
TIMED = (L.Conv2D, L.DepthwiseConv2D, L.Dense)


def role(name: str) -> str:
    for word in ("expand", "depthwise", "project"):
        if name.endswith(word):
            return word
    return "other"


def alone(layer) -> keras.Model:
    """A one-layer model computing what ``layer`` computes, on its input shape."""
    copy = layer.__class__.from_config(layer.get_config())
    model = keras.Sequential([keras.Input(tuple(layer.input.shape[1:])), copy])
    copy.set_weights(layer.get_weights())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS))
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--invokes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/structured_layers.json")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    dense = NETWORKS[args.network]()
    rng = np.random.default_rng(args.seed)
    randomize_batchnorm(dense, rng)
    _, small = shrunk_at(dense, args.rate, args.round_to, args.seed)
    rate = tf_admm.flops.total_macs(dense) / tf_admm.flops.total_macs(small)
    dense_macs, small_macs = tf_admm.flops.layer_macs(dense), tf_admm.flops.layer_macs(small)
    print(f"{args.network}: shrunk to {rate:.2f}x fewer MACs", flush=True)
    pairs = [
        (layer, small.get_layer(layer.name))
        for layer in tf_admm.cloning.flat_layers(dense)
        if isinstance(layer, TIMED)
    ]
    with tempfile.TemporaryDirectory() as directory:
        for layer, shrunk in pairs:
            models = {"dense": alone(layer), "shrunk": alone(shrunk)}
            for precision in ("float", "int8"):
                files = {}
                for method, model in models.items():
                    shape = (8,) + tuple(model.input_shape[1:])
                    x = rng.normal(size=shape).astype("float32")
                    path = os.path.join(directory, f"{method}_{precision}.tflite")
                    export(model, path, precision, x)
                    files[method] = (path, x)
                for threads in args.threads:
                    times = time_files(
                        [files["dense"][0], files["shrunk"][0]],
                        [files["dense"][1], files["shrunk"][1]],
                        args.invokes,
                        args.repeats,
                        threads,
                    )
                    seconds = dict(zip(("dense", "shrunk"), times))
                    layer_macs = {
                        "dense": dense_macs[layer.name],
                        "shrunk": small_macs[layer.name],
                    }
                    record = {
                        "network": args.network,
                        "model_flops_rate": round(rate, 3),
                        "round_to": args.round_to,
                        "layer": layer.name,
                        "kind": type(layer).__name__,
                        "role": role(layer.name),
                        "precision": precision,
                        "threads": threads,
                        "dense_macs": layer_macs["dense"],
                        "shrunk_macs": layer_macs["shrunk"],
                        "dense_seconds": seconds["dense"],
                        "shrunk_seconds": seconds["shrunk"],
                        "macs_ratio": layer_macs["shrunk"] / max(layer_macs["dense"], 1),
                        "latency_ratio": seconds["shrunk"] / seconds["dense"],
                    }
                    print(json.dumps(record), flush=True)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
