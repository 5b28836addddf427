"""Euclidean projections onto sparsity sets, as pure NumPy functions (no Keras, no TensorFlow).

Every function takes an array and returns a boolean *mask* of the entries kept; the projection is
``v * mask``. Masks, not values, are the primitive because masked retraining needs the support, and
because exactly ``k`` survivors must be chosen even when magnitudes tie.

Layouts: weights are viewed as a matrix ``[n_out, n_in]`` (``weight_as_matrix``) where the last
axis of a Keras kernel is the output axis. "Blocks" and "n:m" groups run along the input axis, as
TFLite's sparse FULLY_CONNECTED kernels (1x4 float, 1x16 int8) and 2:4 sparse tensor cores expect.

>>> import numpy as np
>>> topk_mask(np.array([0.1, -3.0, 2.0, 0.5]), 2).tolist()
[False, True, True, False]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "block_mask",
    "channel_energy",
    "channel_mask",
    "filter_mask",
    "keep_count",
    "kth_largest",
    "nm_mask",
    "topk_mask",
    "weight_as_matrix",
]


def keep_count(size: int, sparsity: float) -> int:
    """Number of entries kept at ``sparsity`` (fraction zeroed), rounding the zeros down."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1). Received: sparsity={sparsity!r}")
    return size - int(np.floor(size * sparsity + 1e-9))


_SAMPLE = 1 << 14
_RNG_SEED = 0x5EED


def kth_largest(mags: np.ndarray, k: int) -> np.floating:
    """Exact k-th largest value of a flat non-negative array (1 <= k <= size), in O(n).

    A random sample brackets the answer; only the entries inside the bracket are partitioned.
    When the bracket misses (improbable), it falls back to one full ``np.partition``. The sample
    only affects speed: the value returned is always exact.

    >>> float(kth_largest(np.array([5.0, 1.0, 3.0, 2.0]), 2))
    3.0
    """
    n = mags.size
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}]. Received: k={k}")
    if n > 8 * _SAMPLE:
        sample = np.sort(mags[np.random.default_rng(_RNG_SEED).integers(0, n, _SAMPLE)])
        q = 1.0 - k / n  # quantile of the answer
        pos = q * (_SAMPLE - 1)
        margin = 6.0 * np.sqrt(_SAMPLE * max(q * (1 - q), 1.0 / _SAMPLE)) + 2
        lo = sample[max(int(pos - margin), 0)]
        hi = sample[min(int(pos + margin) + 1, _SAMPLE - 1)]
        above = int(np.count_nonzero(mags > hi))
        band = mags[(mags >= lo) & (mags <= hi)]
        rank = k - above  # rank of the answer inside the band, counted from its top
        # Everything above hi is counted, everything in [lo, hi] is in the band, everything
        # below lo is smaller than the band: the answer is in the band iff 1 <= rank <= size.
        if 1 <= rank <= band.size:
            band.partition(band.size - rank)
            return band[band.size - rank]
    work = mags.copy()
    work.partition(n - k)
    return work[n - k]


def topk_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Mask of exactly ``k`` largest-magnitude entries (ties: lowest flat index first).

    O(n): :func:`kth_largest` finds the threshold without sorting, then linear passes.

    >>> topk_mask(np.array([1.0, 1.0, 1.0, 0.0]), 2).tolist()
    [True, True, False, False]
    """
    values = np.asarray(values)
    n = values.size
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}]. Received: k={k}")
    if k == n:
        return np.ones(values.shape, dtype=bool)
    if k == 0:
        return np.zeros(values.shape, dtype=bool)
    mags = np.abs(values).ravel()
    threshold = kth_largest(mags, k)
    mask = mags >= threshold
    extra = int(np.count_nonzero(mask)) - k
    if extra > 0:  # ties at the threshold: drop the last tied entries in flat order
        tied = np.flatnonzero(mags == threshold)
        mask[tied[len(tied) - extra :]] = False
    return mask.reshape(values.shape)


def weight_as_matrix(values: np.ndarray) -> np.ndarray:
    """View a Keras weight as ``[n_out, n_in]`` (output axis last in Keras, first here)."""
    values = np.asarray(values)
    if values.ndim < 2:
        return values.reshape(1, -1)
    return values.reshape(-1, values.shape[-1]).T


def _matrix_mask_to_weight(mask2d: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) < 2:
        return mask2d.reshape(shape)
    return np.ascontiguousarray(mask2d.T).reshape(shape)


def block_mask(values: np.ndarray, sparsity: float, block_shape: tuple[int, int]) -> np.ndarray:
    """Keep the blocks of largest L2 norm; ``block_shape`` is (outputs, inputs), e.g. (1, 4).

    Edges that do not fill a block form partial blocks. The fraction of *blocks* zeroed is
    ``sparsity`` (rounded down), so the weight sparsity equals it when the shape divides.

    >>> m = block_mask(np.arange(16.0).reshape(8, 2), 0.5, (1, 4))
    >>> m.astype(int).T.tolist()
    [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]]
    """
    bo, bi = (int(b) for b in block_shape)
    if bo < 1 or bi < 1:
        raise ValueError(f"block_shape must be positive. Received: block_shape={block_shape}")
    values = np.asarray(values)
    mat = weight_as_matrix(values)
    n_out, n_in = mat.shape
    go, gi = -(-n_out // bo), -(-n_in // bi)
    padded = np.zeros((go * bo, gi * bi), dtype=np.float64)
    padded[:n_out, :n_in] = mat
    energy = (padded.reshape(go, bo, gi, bi) ** 2).sum(axis=(1, 3))
    keep = topk_mask(energy, keep_count(energy.size, sparsity))
    full = np.repeat(np.repeat(keep, bo, axis=0), bi, axis=1)[:n_out, :n_in]
    return _matrix_mask_to_weight(full, values.shape)


def filter_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep whole output channels (filters / units) of largest L2 norm."""
    return block_mask(values, sparsity, (1, weight_as_matrix(values).shape[1]))


def channel_energy(values: np.ndarray) -> np.ndarray:
    """Sum of squares per channel, the channels on the last axis (any rank).

    >>> channel_energy(np.array([[1.0, 2.0], [3.0, 0.0]])).tolist()
    [10.0, 4.0]
    """
    values = np.asarray(values, np.float64)
    return np.square(values).reshape(-1, values.shape[-1]).sum(axis=0)


def channel_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep whole channels (last axis, any rank, 1-D included) of largest L2 norm.

    >>> channel_mask(np.array([1.0, 5.0, 0.1, 2.0]), 0.5).tolist()
    [False, True, False, True]
    """
    values = np.asarray(values)
    energy = channel_energy(values)
    keep = topk_mask(energy, keep_count(energy.size, sparsity))
    return np.broadcast_to(keep, values.shape).copy()


def nm_mask(values: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the ``n`` largest of every ``m`` consecutive inputs of each output (2:4 sparsity).

    The input count must be a multiple of ``m``.

    >>> nm_mask(np.array([[1.0], [-4.0], [3.0], [0.5]]), 2, 4)[:, 0].tolist()
    [False, True, True, False]
    """
    if not 0 < n <= m:
        raise ValueError(f"n:m sparsity needs 0 < n <= m. Received: n={n}, m={m}")
    values = np.asarray(values)
    mat = weight_as_matrix(values)
    n_out, n_in = mat.shape
    if n_in % m:
        raise ValueError(
            f"n:m sparsity needs the input size to be a multiple of m. "
            f"Received: inputs={n_in}, m={m}, weight shape={values.shape}"
        )
    groups = np.abs(mat).reshape(n_out, n_in // m, m)
    # stable argsort on -|v| keeps ties in index order; groups are tiny, so sorting is cheap
    order = np.argsort(-groups, axis=-1, kind="stable")[..., :n]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return _matrix_mask_to_weight(keep.reshape(n_out, n_in), values.shape)
