"""Quantization level sets and their projections, as pure math (NumPy, plus one TF function).

A level set is ``alpha * L`` with ``L`` a fixed set of unit levels symmetric around zero and
``alpha > 0`` a scale per tensor or per output channel:

- ``uniform`` with ``b`` bits: ``L = {-(2^(b-1)-1), ..., -1, 0, 1, ..., 2^(b-1)-1}``; ``b = 2`` is
  ternary ``{-1, 0, 1}``. Zero is a level, so pruned weights stay pruned.
- ``binary``: ``L = {-1, 1}``.
- ``power_of_two`` with ``b`` bits: ``L = {0, +-1, +-1/2, ..., +-2^-(m-1)}`` with
  ``m = 2^(b-1)-1`` magnitudes, for shift-only hardware.

The projection of ``v`` fits ``alpha`` and the levels jointly: exactly for binary
(``alpha = mean|v|``) and ternary (a search over all thresholds), and by alternating least squares
(``Q = round(v / alpha)``, ``alpha = <v, Q> / <Q, Q>``) from several starting scales for the
others. When a support ``keep`` is given (the survivors of pruning), the kept entries go onto the
*nonzero* levels and everything else to zero, so the number of nonzeros stays exactly the kept
count.

Weights are handled as matrices ``[n_out, n_in]`` (:func:`tf_admm.projections.weight_as_matrix`):
a per-channel scale is one ``alpha`` per row.

>>> import numpy as np
>>> q = Quantizer("uniform", 3)
>>> scale, units = q.fit(np.array([[0.9, -0.31, 0.02, 0.6]]))
>>> (units * scale[:, None]).round(3).tolist()
[[0.902, -0.301, 0.0, 0.601]]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["SCHEMES", "Quantizer", "quantize_tf"]

SCHEMES = ("uniform", "binary", "power_of_two")

_ALS_STARTS = (1.0, 0.75, 0.5, 0.3)  # starting alphas, as fractions of max|v| / top level
_ALS_ITERATIONS = 30
_REFINE = np.linspace(0.95, 1.05, 41)  # final local search around the best ALS scale


class Quantizer:
    """One level set (``scheme``, ``bits``): unit levels, the fit of the scale, and rounding.

    Args:
        scheme: ``"uniform"``, ``"binary"`` or ``"power_of_two"``.
        bits: 2..8 for uniform and power_of_two; 1 for binary.

    >>> Quantizer("uniform", 2).levels.tolist()
    [-1.0, 0.0, 1.0]
    >>> Quantizer("power_of_two", 3).levels.tolist()
    [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
    """

    def __init__(self, scheme: str, bits: int):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}. Received: scheme={scheme!r}")
        if scheme == "binary" and bits != 1:
            raise ValueError(f"binary quantization has 1 bit. Received: bits={bits!r}")
        if scheme != "binary" and not 2 <= bits <= 8:
            raise ValueError(f"{scheme} quantization needs 2 <= bits <= 8. Received: bits={bits!r}")
        self.scheme, self.bits = scheme, int(bits)
        if scheme == "uniform":
            self.magnitudes = np.arange(1, 2 ** (bits - 1), dtype=np.float64)
        elif scheme == "binary":
            self.magnitudes = np.ones(1)
        else:
            m = 2 ** (bits - 1) - 1
            self.magnitudes = 2.0 ** -np.arange(m - 1, -1, -1, dtype=np.float64)
        self.has_zero = scheme != "binary"

    @property
    def levels(self) -> np.ndarray:
        """All unit levels, ascending."""
        mags = self.magnitudes
        middle = np.zeros(1) if self.has_zero else np.zeros(0)
        return np.concatenate([-mags[::-1], middle, mags])

    @property
    def top(self) -> float:
        """The largest unit level."""
        return float(self.magnitudes[-1])

    @property
    def int8_unit(self) -> float | None:
        """The unit u such that every level is an integer multiple of u within +-127, or None.

        An int8 file can then store the levels exactly with scale ``alpha * u``.
        """
        unit = float(self.magnitudes[0])
        return unit if self.top / unit <= 127 else None

    # -- rounding of magnitudes x = |v| / alpha onto unit levels -------------------------------
    def round_np(self, x: np.ndarray, nonzero: bool | np.ndarray = False) -> np.ndarray:
        """Nearest unit magnitude of ``x >= 0``; where ``nonzero``, the nearest nonzero one."""
        if self.scheme == "uniform":
            r = np.clip(np.round(x), 0.0, self.top)
        elif self.scheme == "binary":
            return np.ones_like(x)
        else:
            r = _pow2_round(np, x, self.magnitudes[0], self.top)
        return np.where(nonzero, np.maximum(r, self.magnitudes[0]), r)

    def round_tf(self, x: tf.Tensor, nonzero: bool = False) -> tf.Tensor:
        """:meth:`round_np` for a tensor (``nonzero`` applies to every entry)."""
        low = tf.constant(self.magnitudes[0] if nonzero else 0.0, x.dtype)
        if self.scheme == "uniform":
            return tf.clip_by_value(tf.round(x), low, tf.constant(self.top, x.dtype))
        if self.scheme == "binary":
            return tf.ones_like(x)
        return tf.maximum(_pow2_round(tf, x, self.magnitudes[0], self.top), low)

    # -- the projection ------------------------------------------------------------------------
    def fit(self, matrix: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Fit one scale per row of ``matrix``; returns ``(alpha [rows], signed units)``.

        ``units * alpha[:, None]`` is the projection. With ``keep`` (a boolean support), kept
        entries take nonzero levels and the rest are zero; without it, zero is allowed anywhere
        (binary has no zero level, so every entry is +-alpha).
        """
        v = np.asarray(matrix, dtype=np.float64)
        nonzero = keep is not None
        support = np.ones(v.shape, bool) if keep is None else np.asarray(keep, bool)
        mag = np.abs(v) * support
        if self.scheme == "binary" or (self.bits == 2 and nonzero):
            count = np.maximum(support.sum(axis=1), 1)
            alpha = mag.sum(axis=1) / count
        elif self.bits == 2:
            alpha = _ternary_alpha(mag)
        else:
            alpha = self._als(mag, support, nonzero)
        alpha = np.where(alpha > 0, alpha, 1.0)
        units = self.round_np(mag / alpha[:, None], nonzero) * np.where(v < 0, -1.0, 1.0)
        return alpha, np.where(support, units, 0.0)

    def _error(self, mag, support, nonzero, alpha):
        units = self.round_np(mag / alpha[:, None], nonzero) * support
        return ((mag - units * alpha[:, None]) ** 2).sum(axis=1)

    def _als(self, mag, support, nonzero) -> np.ndarray:
        top = np.maximum(mag.max(axis=1), 1e-30) / self.top
        best = top.copy()
        best_err = self._error(mag, support, nonzero, best)
        for start in _ALS_STARTS:
            alpha = top * start
            for _ in range(_ALS_ITERATIONS):
                units = self.round_np(mag / alpha[:, None], nonzero) * support
                den = (units * units).sum(axis=1)
                new = np.where(den > 0, (mag * units).sum(axis=1) / np.maximum(den, 1e-300), alpha)
                done = np.allclose(new, alpha, rtol=1e-9, atol=0)
                alpha = new
                if done:
                    break
            err = self._error(mag, support, nonzero, alpha)
            better = err < best_err
            best, best_err = np.where(better, alpha, best), np.where(better, err, best_err)
        for factor in _REFINE:
            alpha = best * factor
            err = self._error(mag, support, nonzero, alpha)
            better = err < best_err
            best, best_err = np.where(better, alpha, best), np.where(better, err, best_err)
        return best

    def get_config(self) -> dict:
        return {"scheme": self.scheme, "bits": self.bits}

    def __repr__(self) -> str:
        return f"Quantizer(scheme={self.scheme!r}, bits={self.bits})"


def quantize_tf(quantizer: Quantizer, values, scale, mask, nonzero: bool):
    """``mask * sign(values) * alpha * round(|values| / alpha)`` in TensorFlow, with a fixed
    ``scale`` (alpha) broadcast on the last axis; the in-graph twin of :meth:`Quantizer.fit`."""
    scale = tf.cast(scale, values.dtype)
    safe = tf.where(scale > 0, scale, tf.ones_like(scale))
    units = quantizer.round_tf(tf.abs(values) / safe, nonzero)
    sign = tf.where(values < 0, -tf.ones_like(values), tf.ones_like(values))
    return tf.where(tf.cast(mask, tf.bool), sign * units * safe, tf.zeros_like(values))


def _pow2_round(xp, x, smallest: float, top: float):
    """Nearest of {0} U {smallest, ..., top} (powers of two), in plain distance, for NumPy or TF."""
    tiny = smallest * 0.5
    safe = xp.maximum(x, tiny)
    if xp is np:
        low = 2.0 ** np.floor(np.log2(safe))
    else:
        low = tf.pow(tf.constant(2.0, x.dtype), tf.floor(tf.math.log(safe) / np.log(2.0)))
    nearest = xp.where(x - low > 2 * low - x, 2 * low, low)
    nearest = xp.minimum(xp.maximum(nearest, smallest), top)
    return xp.where(x < tiny, xp.zeros_like(x), nearest)


def _ternary_alpha(mag: np.ndarray) -> np.ndarray:
    """Exact ternary scale per row: keep the j largest magnitudes, j maximizing S_j^2 / j."""
    ordered = -np.sort(-mag, axis=1)
    sums = np.cumsum(ordered, axis=1)
    counts = np.arange(1, mag.shape[1] + 1)
    best = np.argmax(sums * sums / counts, axis=1)
    rows = np.arange(mag.shape[0])
    return sums[rows, best] / counts[best]
