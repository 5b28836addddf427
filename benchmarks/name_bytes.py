"""Bytes a .tflite file spends on the converter's names, per network and Keras flavour.

Each network (random weights, and random BatchNorm statistics as after training: with the
initial ones the converter folds BatchNorm away and writes fewer tensors) is exported by
``tf_admm.export_tflite`` as float and as full int8 (200 random calibration inputs), once as the
converter writes it and once with ``strip_names=True``, under Keras 3 and, in a child process
with ``TF_USE_LEGACY_KERAS=1``, under tf_keras. Each file is run in LiteRT against its stripped
twin on 8 inputs (``max_abs_diff`` between the two must be 0). One JSON object per file pair is
written to ``--out`` (replaced).

    python benchmarks/name_bytes.py --out docs/name_bytes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from nets import cifar_resnet, mobilenet_v2_small  # noqa: E402

import tf_admm  # noqa: E402
from tf_admm import keras  # noqa: E402
from tf_admm.export.parity import open_interpreter, run_interpreter  # noqa: E402

NETWORKS = {
    "resnet14_w8 (28x28x1)": lambda: cifar_resnet((28, 28, 1), width=8, blocks=2),
    "mobilenet_v2_small (28x28x1)": mobilenet_v2_small,
}


def outputs(path: str, x: np.ndarray) -> np.ndarray:
    return run_interpreter(open_interpreter(path, open(path, "rb").read()), x)


def trained_statistics(model, rng) -> None:
    """BatchNorm gamma, beta, moving mean and variance away from their initial values."""
    for layer in tf_admm.cloning.flat_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.1, m.shape),
                    rng.uniform(0.2, 3.0, v.shape),
                ]
            )


def measure() -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for network, build in NETWORKS.items():
        keras.utils.set_random_seed(0)
        model = build()
        trained_statistics(model, rng)
        shape = tuple(model.inputs[0].shape[1:])
        x = rng.random((200, *shape)).astype("float32")
        for quantization in (None, "int8"):
            options = {"quantization": quantization, "overwrite": True}
            if quantization:
                options["representative_data"] = x
            with tempfile.TemporaryDirectory() as folder:
                full = tf_admm.export_tflite(model, os.path.join(folder, "a.tflite"), **options)
                short = tf_admm.export_tflite(
                    model, os.path.join(folder, "b.tflite"), strip_names=True, **options
                )
                diff = np.abs(outputs(full.path, x[:8]) - outputs(short.path, x[:8])).max()
            rows.append(
                {
                    "network": network,
                    "keras": keras.__name__ + " " + keras.__version__,
                    "precision": quantization or "float",
                    "raw_bytes": full.bytes,
                    "stripped_bytes": short.bytes,
                    "names_share": 1 - short.bytes / full.bytes,
                    "zipped_bytes": full.zipped_bytes,
                    "stripped_zipped_bytes": short.zipped_bytes,
                    "max_abs_diff": float(diff),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/name_bytes.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("ROWS " + json.dumps(measure()), flush=True)
        return
    rows = measure()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows += next(json.loads(line[5:]) for line in child.stdout.splitlines() if line[:5] == "ROWS ")
    with open(args.out, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print("| network | Keras | precision | bytes | stripped | names | zipped | stripped, zipped |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['network']} | {r['keras']} | {r['precision']} | {r['raw_bytes']:,} | "
            f"{r['stripped_bytes']:,} | {r['names_share']:.1%} | {r['zipped_bytes']:,} | "
            f"{r['stripped_zipped_bytes']:,} |"
        )


if __name__ == "__main__":
    main()
