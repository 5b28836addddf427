"""benchmarks/oneshot.py and its baselines: the patterns they reach, and the published table
equal to the one rendered from its data file."""

from __future__ import annotations

import os

import numpy as np
import oneshot
import oneshot_baselines as base

import tf_admm
from tf_admm.post_training import layerwise_admm

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _problem(n_in=256, n_out=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, n_in)) @ rng.normal(size=(n_in, n_in)) / np.sqrt(n_in)
    h = layerwise_admm.damped((x.T @ x)[None], 0.01)
    return h, rng.normal(size=(1, n_in, n_out))


def test_sparsegpt_reaches_the_sparsity_and_beats_magnitude():
    h, w = _problem()
    out = base.sparsegpt(w, h, 0.5, None)
    assert (out == 0).sum() == w.size // 2  # one threshold per block of 128 columns
    magnitude = tf_admm.Sparsity(0.5).project(w[0])[None]
    assert layerwise_admm.error(h, w, out) < layerwise_admm.error(h, w, magnitude)


def test_nm_masks_of_sparsegpt_and_wanda():
    h, w = _problem()
    norms = np.sqrt(np.einsum("gii->gi", h))
    nm = tf_admm.NMSparsity(2, 4)
    for out in (base.sparsegpt(w, h, None, (2, 4)), base.wanda(w, norms, None, (2, 4))):
        kernel = out[0]
        assert np.array_equal(nm.mask(kernel), kernel != 0)
        assert (kernel != 0).sum() == kernel.size // 2


def test_gptq_stays_on_the_grid():
    h, w = _problem()
    constraint = tf_admm.Quantization(3)
    scale = constraint.fit(w[0])[0].astype(np.float64)

    def rounding(column, index):
        return scale * np.clip(np.round(column / scale), -3, 3)

    out = base.gptq(w, h, rounding)[0]
    units = out / scale
    np.testing.assert_allclose(units, np.round(units), atol=1e-9)
    assert np.abs(units).max() <= 3
    projected = constraint.project(w[0])[None]
    assert layerwise_admm.error(h, w, out[None]) < layerwise_admm.error(h, w, projected)


def test_published_table_is_the_data_file_rendered():
    rows = oneshot.read_rows(os.path.join(ROOT, "docs", "oneshot.json"))
    with open(os.path.join(ROOT, "docs", "tables", "oneshot.md")) as handle:
        published = handle.read()
    assert published.strip() == oneshot.table(rows).strip()
    assert {r["method"] for r in rows} >= {"admm", "sparsegpt", "wanda", "magnitude", "gptq"}


def test_published_finetune_table_is_the_method_comparison_rendered():
    import json

    with open(os.path.join(ROOT, "docs", "method_comparison.json")) as handle:
        rows = json.load(handle)
    with open(os.path.join(ROOT, "docs", "tables", "post_training_finetune.md")) as handle:
        published = handle.read()
    assert published.strip() == oneshot.finetune_table(rows).strip()
    assert "post-training model" in published and "dense model" in published


def test_a_unit_is_keyed_by_everything_that_changes_it():
    row = {
        "network": "lenet5",
        "method": "admm",
        "pattern": "unstructured",
        "sparsity": 0.5,
        "calibration_samples": 512,
        "seed": 0,
    }
    assert oneshot.key(row) != oneshot.key(dict(row, sparsity=0.8))
    assert oneshot.key(row) != oneshot.key(dict(row, calibration_samples=128))
