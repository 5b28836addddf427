"""Integer grids of weights: the int8 scale and integers a value set lies on, the bits it needs."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["int8_grid", "log2_binomial", "value_bits"]


def int8_grid(values: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """Per output channel (last axis), the largest scale s with values = s * q, q int in
    [-127, 127]; returns ``(scales [channels], q)`` or None if a channel has no such grid.

    >>> s, q = int8_grid(np.array([[0.3, -0.1], [0.0, 0.2], [0.6, 0.1]], "float32"))
    >>> s.round(6).tolist(), q.T.tolist()
    ([0.3, 0.1], [[1, 0, 2], [-1, 2, 1]])
    """
    values = np.asarray(values, np.float64)
    matrix = values.reshape(-1, values.shape[-1]) if values.ndim >= 1 else values.reshape(1, 1)
    scales = np.ones(matrix.shape[1])
    ints = np.zeros(matrix.shape, np.int64)
    for c in range(matrix.shape[1]):
        column = matrix[:, c]
        mags = np.abs(column[column != 0])
        if mags.size == 0:
            continue
        smallest = mags.min()
        tolerance = rtol * mags.max()
        for j in range(1, 128):
            scale = smallest / j
            q = np.round(column / scale)
            if np.abs(q).max() > 127:
                return None
            if np.abs(q * scale - column).max() <= tolerance:
                scales[c], ints[:, c] = scale, q
                break
        else:
            return None
    return scales, ints.reshape(values.shape)


def value_bits(values: np.ndarray) -> int:
    """Bits per value: log2 of the most distinct values in a channel when on a grid, else 32."""
    if int8_grid(values) is None:
        return 32
    matrix = values.reshape(-1, values.shape[-1])
    distinct = max(len(np.unique(matrix[:, c])) for c in range(matrix.shape[1]))
    return max(1, math.ceil(math.log2(max(distinct, 2))))


def log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
