"""Per-layer sparsity targets from one global compression rate.

Every public ADMM implementation hand-sets per-layer ratios. :func:`allocate_sparsity` derives
them from a single rate by a global magnitude ranking: keep the ``total / rate`` weights of
largest magnitude over all compressible layers together, but never fewer than a floor per layer
(``min_density`` of its weights and at least ``min_keep``), so small, sensitive layers such as the
first convolution are not emptied. The floors are met by water-filling: a layer that would fall
under its floor gets exactly its floor and the global threshold is recomputed for the others.
``docs/research.md`` compares it with uniform and hand-set allocations on LeNet-5.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, name="a"),
...                       keras.layers.Dense(4, name="b")])
>>> targets = tf_admm.allocate_sparsity(m, rate=10, min_density=0.05, min_keep=16)
>>> sizes = {"a": 64 * 32, "b": 32 * 4}
>>> sum(n - int(n * targets[k] + 1e-9) for k, n in sizes.items())  # (2048 + 128) / 10
218
"""

from __future__ import annotations

import numbers

import numpy as np

from tf_admm import registry
from tf_admm.updates import find_wrappers
from tf_admm.validation import check_model

__all__ = ["allocate_sparsity", "allocation_table"]


def _layers(model):
    """The built compressible layers; a wrapped layer counts as itself (its inner layer), so a
    model wrapped by prune_low_magnitude can be re-allocated from its current weights."""
    wrapped = [w.layer for w in find_wrappers(model)]
    return [layer for layer in registry.compressible_layers(model) + wrapped if layer.built]


def _magnitudes(layer) -> np.ndarray:
    return np.concatenate(
        [np.abs(np.asarray(w)).ravel() for w in registry.compressible_weights(layer)]
    )


def _lamp(mags: np.ndarray) -> np.ndarray:
    """LAMP scores (Lee et al., ICLR 2021) of a layer's magnitudes, in descending order:
    w_u^2 / sum of w_v^2 over the weights v at least as large. Scale-free across layers."""
    squares = np.sort(mags.astype(np.float64) ** 2)  # ascending
    tails = np.cumsum(squares[::-1])[::-1]  # sum of squares from u upwards
    return (squares / np.maximum(tails, 1e-300))[::-1]


AUTO_FLOOR = 0.02  # the floor per layer at low rates (min_density="auto")
AUTO_FLOOR_SHARE = 0.1  # at high rates, a layer's floor is this share of the mean density


def allocate_sparsity(
    model,
    rate: float,
    *,
    min_density: float | str = "auto",
    min_keep: int = 16,
    layers: list[str] | None = None,
    score: str = "lamp",
) -> dict[str, float]:
    """Per-layer sparsities whose kept weights total ``weights / rate`` (global magnitude
    ranking with per-layer floors).

    Args:
        model: a built Keras model (trained: the ranking uses its weights); wrapped layers
            count under their own names, with their current weights.
        rate: the global pruning rate (weights / nonzeros), e.g. 246 for 246x.
        min_density: each layer keeps at least this fraction of its weights (``"auto"``:
            ``min(0.02, 0.1 / rate)``: no layer below a tenth of the mean density, and the
            floors never take more than a tenth of the budget, so they cannot cap the rate)...
        min_keep: ...and at least this many (or all, when smaller).
        layers: names of the layers to prune (default: every compressible layer).
        score: ``"lamp"`` (default: magnitudes normalized per layer, so layers of different
            scale compete fairly) or ``"magnitude"`` (raw |w| across layers).

    Returns:
        layer name -> sparsity, for :func:`tf_admm.prune_low_magnitude` or a
        :class:`tf_admm.Stage`. Edit any entry to override it.

    Raises:
        ValueError: if the floors alone exceed the budget, or on bad arguments.
    """
    check_model("allocate_sparsity", model)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not rate >= 1:
        raise ValueError(f"rate must be a number >= 1 (weights / nonzeros). Received: {rate!r}")
    if min_density == "auto":
        min_density = min(AUTO_FLOOR, AUTO_FLOOR_SHARE / float(rate))
    elif (
        isinstance(min_density, bool)
        or not isinstance(min_density, numbers.Real)
        or not 0 <= min_density <= 1
    ):
        raise ValueError(
            f"min_density must be 'auto' or a number in [0, 1]. Received: {min_density!r}"
        )
    if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 0:
        raise ValueError(f"min_keep must be an int >= 0. Received: {min_keep!r}")
    found = {layer.name: layer for layer in _layers(model)}
    if layers is not None:
        unknown = sorted(set(layers) - set(found))
        if unknown:
            raise ValueError(
                f"layers names unknown or non-compressible layers: {unknown}. "
                f"Compressible: {sorted(found)}"
            )
        found = {name: found[name] for name in layers}
    if not found:
        raise ValueError(f"Model {model.name!r} has no built compressible layer.")
    if score not in ("lamp", "magnitude"):
        raise ValueError(f"score must be 'lamp' or 'magnitude'. Received: score={score!r}")
    mags = {name: np.sort(_magnitudes(layer))[::-1] for name, layer in found.items()}
    if score == "lamp":
        mags = {name: _lamp(m) for name, m in mags.items()}
    sizes = {name: m.size for name, m in mags.items()}
    total = sum(sizes.values())
    budget = int(round(total / float(rate)))
    floors = {n: min(s, max(int(np.ceil(min_density * s)), min_keep)) for n, s in sizes.items()}
    if sum(floors.values()) > budget:
        raise ValueError(
            f"The per-layer floors keep {sum(floors.values())} weights, more than the "
            f"{budget} that rate={rate} allows over {total} weights. Lower min_density/min_keep "
            "or the rate."
        )
    keep = _water_fill(mags, floors, budget)
    return {name: 1.0 - keep[name] / sizes[name] for name in found}


def _water_fill(mags: dict[str, np.ndarray], floors: dict[str, int], budget: int) -> dict:
    """Kept counts: the ``budget`` largest magnitudes overall, each layer at least its floor."""
    fixed: dict[str, int] = {}
    while True:
        free = {n: m for n, m in mags.items() if n not in fixed}
        left = budget - sum(fixed.values())
        pooled = np.sort(np.concatenate(list(free.values())))[::-1]
        if left <= 0 or not len(pooled):
            counts = {n: 0 for n in free}
        else:
            threshold = pooled[min(left, len(pooled)) - 1]
            counts = {n: int(np.sum(m >= threshold)) for n, m in free.items()}
            # ties at the threshold could overshoot: trim from the largest layer
            excess = sum(counts.values()) - left
            for n in sorted(counts, key=lambda n: -counts[n]):
                if excess <= 0:
                    break
                cut = min(excess, counts[n] - floors[n])
                if cut > 0:
                    counts[n] -= cut
                    excess -= cut
        under = [n for n in free if counts[n] < floors[n]]
        if not under:
            return {**fixed, **counts}
        for n in under:
            fixed[n] = floors[n]


def allocation_table(model, targets: dict[str, float]) -> str:
    """The per-layer plan as text: weights, sparsity, kept weights and rate, with the total.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> print(tf_admm.allocation_table(m, {"fc": 0.75}))
    layer                weights  sparsity      kept     rate
    fc                        32    75.00%         8     4.0x
    total                     32    75.00%         8     4.0x
    """
    found = {layer.name: layer for layer in _layers(model)}
    rows = [f"{'layer':<18}{'weights':>10}{'sparsity':>10}{'kept':>10}{'rate':>9}"]
    weights = kept = 0
    for name, sparsity in targets.items():
        if name not in found:
            raise ValueError(f"targets names an unknown layer {name!r}; known: {sorted(found)}")
        size = _magnitudes(found[name]).size
        k = size - int(np.floor(size * sparsity + 1e-9))
        weights, kept = weights + size, kept + k
        rows.append(f"{name:<18}{size:>10}{sparsity:>10.2%}{k:>10}{size / max(k, 1):>8.1f}x")
    total_sparsity = 1 - kept / weights if weights else 0.0
    rows.append(
        f"{'total':<18}{weights:>10}{total_sparsity:>10.2%}{kept:>10}"
        f"{weights / max(kept, 1):>8.1f}x"
    )
    return "\n".join(rows)
