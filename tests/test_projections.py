import numpy as np
import pytest

from tf_admm import projections as P


@pytest.mark.parametrize("n", [10, 1000, 300_000])
@pytest.mark.parametrize("frac", [0.0, 0.01, 0.3, 0.5, 0.99, 1.0])
def test_kth_largest_is_exact(n, frac):
    rng = np.random.default_rng(n)
    mags = np.abs(rng.standard_normal(n)).astype(np.float32)
    k = min(n, max(1, int(round(n * frac))))
    assert P.kth_largest(mags, k) == np.sort(mags)[n - k]


def test_kth_largest_falls_back_when_sample_misses():
    # heavy duplicates make the sampled bracket collapse; the answer must still be exact
    mags = np.concatenate([np.zeros(200_000), np.arange(1, 1001, dtype=float)])
    for k in (1, 500, 1000, 1001, 150_000):
        assert P.kth_largest(mags.copy(), k) == np.sort(mags)[mags.size - k]


@pytest.mark.parametrize("shape", [(7,), (40, 30), (3, 3, 8, 16), (600, 600)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.991])
def test_topk_keeps_exactly_k_largest(shape, sparsity):
    values = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    k = P.keep_count(values.size, sparsity)
    mask = P.topk_mask(values, k)
    assert mask.shape == values.shape and mask.sum() == k
    if 0 < k < values.size:
        assert np.abs(values[mask]).min() >= np.abs(values[~mask]).max()


def test_topk_ties_keep_exactly_k_lowest_index_first():
    values = np.array([0.5, -1.0, 1.0, 1.0, 0.2, -1.0])
    mask = P.topk_mask(values, 2)
    assert mask.tolist() == [False, True, True, False, False, False]
    big = np.zeros(500_000, np.float32)
    big[[5, 70, 900, 40_000]] = 3.0
    assert np.flatnonzero(P.topk_mask(big, 3)).tolist() == [5, 70, 900]
    assert P.topk_mask(big, 10).sum() == 10


def test_topk_is_the_euclidean_projection():
    rng = np.random.default_rng(2)
    v = rng.standard_normal(50)
    best = np.linalg.norm(v - v * P.topk_mask(v, 10))
    for _ in range(200):
        other = np.zeros(50, bool)
        other[rng.choice(50, 10, replace=False)] = True
        assert best <= np.linalg.norm(v - v * other) + 1e-12


def test_keep_count_rounds_zeros_down_and_checks_range():
    assert P.keep_count(1000, 0.991) == 9
    assert P.keep_count(10, 0.25) == 8
    assert P.keep_count(10, 0.0) == 10
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\). Received: sparsity=1.0"):
        P.keep_count(10, 1.0)


def test_block_mask_1x4_blocks_along_inputs():
    kernel = np.random.default_rng(3).standard_normal((32, 6))  # Dense: 32 inputs, 6 outputs
    mask = P.block_mask(kernel, 0.75, (1, 4))
    blocks = mask.T.reshape(6, 8, 4)  # [out, in/4, 4]
    assert np.all(blocks.all(-1) | ~blocks.any(-1))  # each block is all kept or all pruned
    assert blocks.all(-1).sum() == 12  # 25% of 48 blocks
    assert mask.mean() == 0.25


def test_block_mask_partial_edge_blocks_and_conv_kernels():
    mask = P.block_mask(np.ones((3, 3, 2, 5)), 0.5, (1, 16))  # 18 inputs -> blocks of 16 and 2
    assert mask.shape == (3, 3, 2, 5)
    flat = mask.reshape(18, 5)  # per output: a block of 16 inputs (energy 16) and one of 2 (2)
    assert flat[:16].all() and not flat[16:].any()


def test_filter_mask_removes_whole_output_channels():
    kernel = np.random.default_rng(4).standard_normal((3, 3, 4, 10))
    kernel[..., [1, 7]] *= 10
    mask = P.filter_mask(kernel, 0.8)
    per_filter = mask.reshape(-1, 10).all(0)
    assert per_filter.tolist() == [i in (1, 7) for i in range(10)]
    assert np.array_equal(mask.reshape(-1, 10).any(0), per_filter)


def test_channel_mask_keeps_the_channels_of_largest_norm_against_brute_force():
    rng = np.random.default_rng(6)
    for shape in [(7,), (5, 7), (3, 3, 2, 7)]:
        values = rng.standard_normal(shape)
        values[..., 2] = values[..., 4] = 0.5  # two tied channels: the lower index wins
        for sparsity in (0.0, 0.3, 0.5, 0.9):
            k = 7 - int(np.floor(7 * sparsity + 1e-9))
            norms = [float(np.sum(values[..., c] ** 2)) for c in range(7)]
            kept = sorted(range(7), key=lambda c: (-norms[c], c))[:k]
            mask = P.channel_mask(values, sparsity)
            assert mask.shape == values.shape
            assert [bool(mask[..., c].all()) for c in range(7)] == [c in kept for c in range(7)]
            assert np.array_equal(mask.reshape(-1, 7).any(0), mask.reshape(-1, 7).all(0))
    # for a kernel of rank >= 2 it is the filter projection
    kernel = rng.standard_normal((3, 3, 4, 10))
    assert np.array_equal(P.channel_mask(kernel, 0.6), P.filter_mask(kernel, 0.6))


def test_nm_mask_two_of_four():
    kernel = np.random.default_rng(5).standard_normal((16, 3))
    mask = P.nm_mask(kernel, 2, 4)
    groups = mask.T.reshape(3, 4, 4)
    assert np.all(groups.sum(-1) == 2)
    mags = np.abs(kernel.T.reshape(3, 4, 4))
    kept_min = np.where(groups, mags, np.inf).min(-1)
    dropped_max = np.where(groups, -np.inf, mags).max(-1)
    assert np.all(kept_min >= dropped_max)
    with pytest.raises(ValueError, match="multiple of m"):
        P.nm_mask(np.ones((6, 2)), 2, 4)
