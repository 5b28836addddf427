"""Time one ADMM Z/U update of a 4096x4096 float32 kernel against np.partition on the same data.

    python benchmarks/bench_update.py [--size 4096] [--repeats 5]

The update (tf_admm.update_admm on a wrapped Dense(4096)) includes reading W and U from the
variables, the exact top-k projection, U <- U + W - Z, both residuals and writing Z and U back.
The baseline is np.partition alone on |W + U| (already computed), the cheapest way NumPy finds
the k-th magnitude. Ratios are medians over the repeats, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

import tf_admm
from tf_admm import keras


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(n: int, sparsity: float, repeats: int) -> dict[str, float]:
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(n, name="fc")])
    wrapped = tf_admm.prune_low_magnitude(model, sparsity)
    tf_admm.initialize_admm(wrapped)
    (wrapper,) = tf_admm.find_wrappers(wrapped)
    rng = np.random.default_rng(0)
    wrapper.u_vars[0].assign(rng.standard_normal((n, n)).astype("float32") * 1e-3)
    tf_admm.update_admm(wrapped, rho_growth=1.0)  # warm-up
    update = median_time(lambda: tf_admm.update_admm(wrapped, rho_growth=1.0), repeats)

    v = np.asarray(wrapper.constrained[0]) + np.asarray(wrapper.u_vars[0])
    k = tf_admm.projections.keep_count(v.size, sparsity)
    mags = np.abs(v).ravel()
    partition = median_time(lambda: np.partition(mags, mags.size - k), repeats)
    mask = median_time(lambda: tf_admm.projections.topk_mask(v, k), repeats)
    return {
        "update_s": round(update, 4),
        "topk_mask_s": round(mask, 4),
        "np_partition_s": round(partition, 4),
        "update_over_partition": round(update / partition, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for sparsity in (0.5, 0.99):
        results[str(sparsity)] = bench(args.size, sparsity, args.repeats)
        print(f"sparsity {sparsity}: {results[str(sparsity)]}", flush=True)
    print(json.dumps({"size": args.size, "keras": keras.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
