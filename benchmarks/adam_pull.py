"""How fast the ADMM pull rho * (W - Z + U) moves a weight under Adam and under SGD.

One weight w starts at 1 and is pulled towards z = 0 by the gradient of rho/2 * w^2 plus a
"loss gradient" of Gaussian noise with standard deviation ``noise`` (0: the weight matters to
nothing else). Counted: the steps until |w| < 0.05, up to ``--max-steps``. Under SGD the pull
is proportional to rho; under Adam, which divides by the root of the running second moment,
a weight whose own loss gradient is small moves about one learning rate per step whatever rho
is, and a weight with a noisy loss gradient feels the pull only in proportion
rho * w / noise.

    python benchmarks/adam_pull.py
"""

from __future__ import annotations

import argparse

import numpy as np


def steps_to_zero(optimizer: str, rho: float, noise: float, max_steps: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    w, m, v, velocity = 1.0, 0.0, 0.0, 0.0
    lr = 1e-3 if optimizer == "adam" else 1e-2
    b1, b2, eps = 0.9, 0.999, 1e-7  # Keras' Adam defaults
    for t in range(1, max_steps + 1):
        g = rho * w + noise * rng.normal()
        if optimizer == "adam":
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        else:  # SGD with momentum 0.9, the authors' ADMM optimizer
            velocity = 0.9 * velocity - lr * g
            w += velocity
        if abs(w) < 0.05:
            return t
    return max_steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    rhos = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    print("| optimizer | loss-gradient noise | " + " | ".join(f"rho {r:g}" for r in rhos) + " |")
    print("|---|---|" + "---|" * len(rhos))
    for optimizer in ("adam", "sgd"):
        for noise in (0.0, 0.01, 0.1):
            cells = []
            for rho in rhos:
                runs = [
                    steps_to_zero(optimizer, rho, noise, args.max_steps, s)
                    for s in range(args.seeds)
                ]
                median = int(np.median(runs))
                cells.append(f">{args.max_steps}" if median >= args.max_steps else str(median))
            label = "Adam 1e-3" if optimizer == "adam" else "SGD 0.01, momentum 0.9"
            print(f"| {label} | {noise:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
