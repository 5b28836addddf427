"""What the default allocation floors do at high rates, on the cached dense models of the study.

For each network, seed and rate it calls ``tf_admm.allocate_sparsity`` three ways on the dense
model ``compare_methods.py`` trained (``runs/compare_cache``; trained there first when
missing): with the floors before this change (``min_density=0.02, min_keep=16``), with today's
default (``min_density="auto"``: ``min(0.02, 0.1 / rate)``, ``min_keep=16``) and with no floor
(what every row of the study was measured with), and reports, per allocation, whether it
exists (the old floors refuse high rates) and the fraction of the kept weights placed
differently from the no-floor allocation (half the L1 distance between the per-layer kept
counts, over the budget: 0 means the same targets, hence the study's accuracy). One JSON
object per (network, seed, rate) to ``--out``; no training.

    python benchmarks/allocation_floors.py --out docs/allocation_floors.json
"""

from __future__ import annotations

import argparse
import json
import os

import compare_methods  # benchmarks/ is the script's directory
import numpy as np

import tf_admm

FLOORS = {
    "before (0.02, 16)": {"min_density": 0.02, "min_keep": 16},
    "default (auto, 16)": {},
    "none (0, 0)": {"min_density": 0.0, "min_keep": 0},
}


def kept(model, targets: dict[str, float]) -> dict[str, int]:
    sizes = {n: int(np.prod(model.get_layer(n).kernel.shape)) for n in targets}
    return {n: sizes[n] - int(np.floor(sizes[n] * s + 1e-9)) for n, s in targets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default="lenet300,lenet5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rates", default="20,50,100,246,400")
    parser.add_argument("--cache", default=os.path.join("runs", "compare_cache"))
    parser.add_argument("--out", default=os.path.join("docs", "allocation_floors.json"))
    args = parser.parse_args()
    options = argparse.Namespace(
        cache=args.cache, quick=False, data=None, batch_size=128, rates_for=lambda n: []
    )
    rows = []
    for network in args.networks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            path, _, _ = compare_methods.dense_model(network, seed, options)
            model = compare_methods._dense(tf_admm.keras, {"network": network, "dense_path": path})
            for rate in (float(r) for r in args.rates.split(",")):
                row = {"network": network, "seed": seed, "rate": rate}
                reference = kept(
                    model, tf_admm.allocate_sparsity(model, rate, **FLOORS["none (0, 0)"])
                )
                budget = sum(reference.values())
                for name, floor in FLOORS.items():
                    try:
                        got = kept(model, tf_admm.allocate_sparsity(model, rate, **floor))
                    except ValueError as err:
                        row[name] = {"refused": str(err).split(".")[0]}
                        continue
                    moved = sum(abs(got[n] - reference[n]) for n in got) / 2 / budget
                    row[name] = {"moved": round(moved, 4), "kept": got}
                rows.append(row)
                print(
                    json.dumps(
                        {
                            k: v if not isinstance(v, dict) else v.get("moved", "refused")
                            for k, v in row.items()
                        }
                    ),
                    flush=True,
                )
    with open(args.out, "w") as handle:
        json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
