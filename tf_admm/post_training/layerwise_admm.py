"""Layer-wise ADMM (pure numpy): the weights in a constraint set that best reproduce a layer's
outputs on calibration inputs.

For a layer with calibration rows ``X`` (per group, see :mod:`.linear_maps`) and dense weights
``W0``, find ``W`` in the set ``S`` minimising ``||X W0 - X W||²``; only ``H = Xᵀ X`` is needed.
ADMM splits it (Boža, arXiv:2401.02938) with ``Z`` in ``S`` and the scaled dual ``U``:

    W <- (H + rho I)⁻¹ (H W0 + rho (Z - U))     (one eigendecomposition of H serves every rho)
    Z <- Proj_S(W + U)                          (the library's projections, as in training)
    U <- U + W - Z

with rho growing geometrically and, for a constraint with a free sparsity, the sparsity of the
projection rising on the cubic ramp of gradual pruning over the first ``ramp`` share of the
iterations. The last ``Z`` fixes the support; a least-squares solve on it then gives the kept
weights their best values (sparsity), or the scales of the levels are refitted under ``H``
(quantization), so the result is exactly in ``S``.

>>> import numpy as np
>>> from tf_admm import Sparsity
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(256, 16)) @ rng.normal(size=(16, 16))   # correlated inputs
>>> w0 = rng.normal(size=(1, 16, 4))
>>> h = (x.T @ x)[None]
>>> project = lambda w: Sparsity(0.75).project(w)
>>> w = solve(h, w0, project, Sparsity(0.75))
>>> int((w != 0).sum()), bool(error(h, w0, w) < error(h, w0, project(w0)))
(16, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tf_admm.constraints import Constraint, Quantization

__all__ = ["damped", "error", "solve"]


def damped(h: np.ndarray, damping: float) -> np.ndarray:
    """``H + damping * mean(diag H) * I`` per group (a dead input keeps H invertible)."""
    h = np.array(h, np.float64)
    diag = np.einsum("gii->gi", h)
    mean = diag.mean(axis=1)
    mean = np.where(mean > 0, mean, 1.0)
    diag += damping * mean[:, None]
    return h


def error(h: np.ndarray, w0: np.ndarray, w: np.ndarray) -> float:
    """Relative reconstruction error ``||X (W - W0)||² / ||X W0||²`` summed over groups."""
    delta = w - w0
    num = float(np.sum(delta * (h @ delta)))
    den = float(np.sum(w0 * (h @ w0)))
    return num / den if den > 0 else num


def _ramp(step: int, steps: int, final: float) -> float:
    """Sparsity of step ``step`` of ``steps`` on gradual pruning's cubic ramp to ``final``."""
    done = min(1.0, (step + 1) / max(steps, 1))
    return final * (1.0 - (1.0 - done) ** 3)


def solve(
    h: np.ndarray,
    w0: np.ndarray,
    project: Callable[[np.ndarray], np.ndarray],
    constraint: Constraint,
    *,
    iterations: int = 60,
    ramp: float = 0.5,
    rho: tuple[float, float] = (0.01, 10.0),
    at_sparsity: Callable[[float], Callable[[np.ndarray], np.ndarray]] | None = None,
) -> np.ndarray:
    """ADMM on ``min ||X(W - W0)||²`` over ``W`` in the set (see the module docstring).

    Args:
        h: ``(groups, inputs, inputs)``, already damped (:func:`damped`).
        w0: ``(groups, inputs, outputs)``, the dense weights.
        project: ``Proj_S`` on arrays shaped like ``w0`` (the caller maps them to the Keras
            kernel and back).
        constraint: the set, for its kind (sparsity or levels) and its ramp.
        iterations: ADMM iterations.
        ramp: share of the iterations over which a free sparsity rises to its target.
        rho: the penalty at the first and last iteration, relative to ``mean(diag H)``
            per group, growing geometrically between them.
        at_sparsity: ``s -> Proj`` onto the set at sparsity ``s`` (the ramp); None: no ramp.

    Returns:
        ``W`` in the set, shaped like ``w0``.
    """
    h = np.asarray(h, np.float64)
    w0 = np.asarray(w0, np.float64)
    scale = np.einsum("gii->g", h) / h.shape[1]
    scale = np.where(scale > 0, scale, 1.0)
    eigenvalues, vectors = np.linalg.eigh(h / scale[:, None, None])
    target = (h / scale[:, None, None]) @ w0
    transposed = vectors.transpose(0, 2, 1)
    rhos = np.geomspace(rho[0], rho[1], max(iterations, 1))
    ramped = at_sparsity is not None and constraint.free_sparsity
    steps = max(1, int(round(ramp * iterations)))
    z = w0.copy() if ramped else project(w0)
    u = np.zeros_like(w0)
    previous = rhos[0]
    for step, r in enumerate(rhos):
        u *= previous / r  # the scaled dual follows rho
        previous = r
        rhs = target + r * (z - u)
        w = vectors @ ((transposed @ rhs) / (eigenvalues[:, :, None] + r))
        proj = at_sparsity(_ramp(step, steps, constraint.sparsity)) if ramped else project
        z = proj(w + u)
        u += w - z
    if isinstance(constraint, Quantization):
        return _refit_scales(h, w0, z, constraint)
    return _least_squares_on_support(h, w0, z != 0)


def _least_squares_on_support(h: np.ndarray, w0: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per group and output, the kept weights minimising ``||X(W - W0)||²``, the rest zero."""
    w = np.zeros_like(w0)
    target = h @ w0
    for g in range(w0.shape[0]):
        for o in range(w0.shape[2]):
            support = np.flatnonzero(keep[g, :, o])
            if support.size:
                sub = h[g][np.ix_(support, support)]
                w[g, support, o] = np.linalg.solve(sub, target[g, support, o])
    return w


def _refit_scales(h: np.ndarray, w0: np.ndarray, z: np.ndarray, constraint) -> np.ndarray:
    """``Z`` with each scale (per output channel, or one per tensor) refitted to minimise
    ``||X(alpha Q - W0)||²`` for its fixed integer levels ``Q = Z / alpha``: the result stays on
    a grid of the same levels."""
    hz = h @ z
    num = np.einsum("gio,gio->go", hz, w0)  # an output channel is a (group, output) pair
    den = np.einsum("gio,gio->go", hz, z)
    if not constraint.per_channel:
        num, den = num.sum(keepdims=True), den.sum(keepdims=True)
    factor = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    factor = np.where(factor > 0, factor, 1.0)
    return z * factor[:, None, :]
