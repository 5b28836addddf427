"""One-shot baselines, written from their papers, for benchmarks/oneshot.py (not part of the
library, which ships ADMM only). Each takes a layer's damped ``H = XᵀX`` per group
``(groups, inputs, inputs)``, its input norms and the dense kernel as ``(groups, inputs,
outputs)`` (tf_admm.post_training.linear_maps) and returns the compressed weights in that form.

- ``magnitude``: the projection alone (the library's constraint, no data).
- ``wanda`` (Sun et al., arXiv:2306.11695): score |W_ij| * ||X_j||, pruned per output, no update.
- ``sparsegpt`` (Frantar & Alistarh, arXiv:2301.00774): columns swept in blocks of 128, the mask
  chosen per block (one threshold) from w² / [H⁻¹]_jj², every pruned weight's error spread onto
  the columns not yet visited through the Cholesky factor of H⁻¹ (OBS); n:m masks chosen every
  m columns.
- ``gptq`` (Frantar et al., arXiv:2210.17323): the same sweep rounding each column onto a grid
  fitted to the dense weights before the sweep (per output channel, the library's levels).
"""

from __future__ import annotations

import numpy as np

BLOCK = 128


def wanda(w: np.ndarray, norms: np.ndarray, sparsity: float | None, nm: tuple | None):
    """``w`` (g, in, out); ``norms`` (g, in): ||X_j|| per input."""
    score = np.abs(w) * norms[:, :, None]
    keep = np.ones_like(w, bool)
    n_in = w.shape[1]
    for g in range(w.shape[0]):
        for o in range(w.shape[2]):
            s = score[g, :, o]
            if nm is not None:
                n, m = nm
                groups = s.reshape(-1, m)
                drop = np.argsort(groups, axis=1)[:, : m - n]
                mask = np.ones_like(groups, bool)
                np.put_along_axis(mask, drop, False, axis=1)
                keep[g, :, o] = mask.reshape(-1)
            else:
                pruned = int(np.floor(n_in * sparsity))
                keep[g, np.argsort(s)[:pruned], o] = False
    return np.where(keep, w, 0.0)


def _inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of H⁻¹ (SparseGPT's and GPTQ's ``Hinv``)."""
    inverse = np.linalg.inv(h)
    return np.linalg.cholesky(inverse).T


def sparsegpt(w, h, sparsity: float | None, nm: tuple | None, quantize=None):
    """SparseGPT on each group; ``quantize(column, index) -> values`` for sparsity + levels."""
    out = np.empty_like(w)
    for g in range(w.shape[0]):
        out[g] = _sweep(w[g].T.copy(), h[g], sparsity, nm, quantize).T
    return out


def gptq(w, h, quantize):
    """GPTQ on each group: ``quantize(column, index)`` rounds one input column (all outputs)."""
    return sparsegpt(w, h, None, None, quantize)


def _sweep(weights: np.ndarray, h: np.ndarray, sparsity, nm, quantize) -> np.ndarray:
    """One OBS sweep over the columns of ``weights`` (outputs, inputs)."""
    rows, cols = weights.shape
    hinv = _inverse_cholesky(h)
    mask = np.zeros_like(weights, bool)  # True: pruned
    for start in range(0, cols, BLOCK):
        end = min(start + BLOCK, cols)
        block = weights[:, start:end].copy()
        errors = np.zeros_like(block)
        hblock = hinv[start:end, start:end]
        if sparsity is not None and nm is None:
            score = (block**2 / np.diag(hblock)[None, :] ** 2).ravel()
            pruned = int(np.floor(score.size * sparsity))  # one threshold for the block
            flat = np.zeros(score.size, bool)
            flat[np.argsort(score, kind="stable")[:pruned]] = True
            mask[:, start:end] = flat.reshape(rows, end - start)
        for i in range(end - start):
            column = block[:, i]
            d = hblock[i, i]
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                chunk = block[:, i : i + m] ** 2 / np.diag(hblock)[i : i + m][None, :] ** 2
                drop = np.argsort(chunk, axis=1)[:, : m - n]
                np.put_along_axis(mask[:, start + i : start + i + m], drop, True, axis=1)
            q = np.where(mask[:, start + i], 0.0, column)
            if quantize is not None:
                q = np.where(mask[:, start + i], 0.0, quantize(q, start + i))
            err = (column - q) / d
            block[:, i] = q
            block[:, i + 1 :] -= np.outer(err, hblock[i, i + 1 :])
            errors[:, i] = err
        weights[:, start:end] = block
        weights[:, end:] -= errors @ hinv[start:end, end:]
    return weights
