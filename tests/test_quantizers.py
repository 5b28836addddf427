"""The quantization math: levels, scale fitting, zero preservation, distinct-value counts."""

import numpy as np
import pytest
import tensorflow as tf

import tf_admm
from tf_admm.quantizers import Quantizer, quantize_tf

RNG = np.random.default_rng(0)

SCHEMES = [("uniform", b) for b in range(2, 9)] + [("binary", 1)]
SCHEMES += [("power_of_two", b) for b in (2, 3, 4)]


def _error(v, alpha, units):
    return float(((v - alpha[:, None] * units) ** 2).sum())


@pytest.mark.parametrize("scheme,bits", SCHEMES)
def test_levels_are_symmetric_with_the_documented_count(scheme, bits):
    levels = Quantizer(scheme, bits).levels
    np.testing.assert_array_equal(levels, -levels[::-1])
    assert len(levels) == (2 if scheme == "binary" else 2**bits - 1)
    assert (0.0 in levels) == (scheme != "binary")


@pytest.mark.parametrize("scheme,bits", SCHEMES)
def test_projection_is_on_the_levels_and_idempotent(scheme, bits):
    # With 31+ levels (b >= 6) ALS is a local search and may re-fit a grid point differently.
    q = Quantizer(scheme, bits)
    v = RNG.standard_normal((6, 50))
    alpha, units = q.fit(v)
    assert alpha.shape == (6,) and (alpha > 0).all()
    for row in units:
        assert set(np.unique(row)) <= set(q.levels)
    projected = units * alpha[:, None]
    if bits >= 6:
        return
    alpha2, units2 = q.fit(projected)
    np.testing.assert_allclose(units2 * alpha2[:, None], projected, rtol=1e-9, atol=1e-12)


def test_binary_and_ternary_scales_are_the_exact_optimum():
    v = RNG.standard_normal((4, 40))
    alpha, units = Quantizer("binary", 1).fit(v)
    np.testing.assert_allclose(alpha, np.abs(v).mean(axis=1))
    alpha, units = Quantizer("uniform", 2).fit(v)
    for r in range(4):  # brute force over every support: the j largest magnitudes
        mags = np.sort(np.abs(v[r]))[::-1]
        best = (mags**2).sum() - max(mags[:j].sum() ** 2 / j for j in range(1, 41))
        assert _error(v[r : r + 1], alpha[r : r + 1], units[r : r + 1]) == pytest.approx(best)


@pytest.mark.parametrize("bits,tolerance", [(3, 1.01), (4, 1.02), (8, 1.10)])
def test_als_scale_is_close_to_a_brute_force_search(bits, tolerance):
    q = Quantizer("uniform", bits)
    ratios = []
    for _ in range(10):
        v = RNG.standard_normal((1, 400))
        alpha, units = q.fit(v)
        got = _error(v, alpha, units)
        top = np.abs(v).max() / q.top
        grid = np.linspace(top / 10, top * 1.01, 5000)
        best = min(_error(v, np.array([a]), q.round_np(np.abs(v) / a) * np.sign(v)) for a in grid)
        ratios.append(got / best)
    assert max(ratios) <= tolerance, ratios


@pytest.mark.parametrize("scheme,bits", [s for s in SCHEMES if s[0] != "binary"])
def test_zeros_stay_zero(scheme, bits):
    v = RNG.standard_normal((5, 30))
    v[:, ::3] = 0.0
    alpha, units = Quantizer(scheme, bits).fit(v)
    assert not units[:, ::3].any()


@pytest.mark.parametrize("scheme,bits", SCHEMES)
def test_kept_entries_take_nonzero_levels_so_the_count_is_exact(scheme, bits):
    v = RNG.standard_normal((5, 60)) * 0.01
    v[:, :3] = 5.0  # a large value makes small survivors round to zero without the rule
    keep = RNG.random((5, 60)) < 0.3
    alpha, units = Quantizer(scheme, bits).fit(v, keep)
    assert np.array_equal(units != 0, keep)


@pytest.mark.parametrize("scheme,bits", SCHEMES)
@pytest.mark.parametrize("nonzero", [False, True])
def test_tensorflow_rounding_equals_numpy(scheme, bits, nonzero):
    q = Quantizer(scheme, bits)
    x = np.abs(RNG.standard_normal(2000)) * q.top
    on_levels = q.levels[q.levels >= 0]
    x[: len(on_levels)] = on_levels  # exactly on the levels
    got = q.round_tf(tf.constant(x, tf.float32), nonzero).numpy()
    np.testing.assert_array_equal(got, q.round_np(x.astype(np.float32), nonzero))


@pytest.mark.parametrize(
    "constraint,limit",
    [
        (tf_admm.Quantization(3), 7),
        (tf_admm.Quantization(4, scheme="power_of_two"), 15),
        (tf_admm.Quantization("ternary"), 3),
        (tf_admm.Quantization("binary"), 2),
        (tf_admm.Quantization(3, sparsity=0.8), 7),
        (tf_admm.Quantization("binary", sparsity=0.5), 3),
    ],
)
@pytest.mark.parametrize("per_channel", [True, False])
def test_distinct_values_per_channel(constraint, limit, per_channel):
    config = constraint.get_config()
    config["per_channel"] = per_channel
    c = tf_admm.Quantization(**config)
    w = RNG.standard_normal((3, 3, 8, 6)).astype("float32")
    scale, keep, projected = c.fit(w)
    assert projected.dtype == np.float32 and projected.shape == w.shape
    assert scale.shape == ((6,) if per_channel else (1,))
    for channel in range(6):
        assert len(np.unique(projected[..., channel])) <= limit
    if not per_channel:
        assert len(np.unique(projected)) <= limit
    if c.prune is not None:
        assert np.count_nonzero(projected) == int(keep.sum()) == w.size - int(w.size * c.sparsity)
    # every value is exactly float32(level * scale), which is how TensorFlow recomputes it
    scale_b = np.broadcast_to(scale, w.shape)
    levels = np.union1d(c.quantizer.levels, [0.0])  # pruned entries are 0 even for binary
    nearest = levels[np.abs(projected[..., None] / scale_b[..., None] - levels).argmin(axis=-1)]
    np.testing.assert_array_equal(nearest.astype(np.float32) * scale_b, projected)


def test_quantize_tf_matches_the_numpy_projection_with_its_scale():
    c = tf_admm.Quantization(3, sparsity=0.5)
    w = RNG.standard_normal((20, 7)).astype("float32")
    scale, keep, projected = c.fit(w)
    got = quantize_tf(c.quantizer, tf.constant(w), tf.constant(scale), tf.constant(keep), True)
    np.testing.assert_array_equal(got.numpy(), projected)


def test_quantization_config_round_trip_and_aliases():
    c = tf_admm.Quantization(4, scheme="power_of_two", per_channel=False, sparsity=0.5)
    assert tf_admm.constraints.get(tf_admm.constraints.serialize(c)) == c
    assert tf_admm.Quantization("ternary").bits == 2
    assert tf_admm.Quantization("binary").scheme == "binary"
    block = tf_admm.Quantization(8, sparsity=tf_admm.BlockSparsity(0.5, (1, 4)))
    assert tf_admm.constraints.get(tf_admm.constraints.serialize(block)) == block


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bits=9), "2 <= bits <= 8"),
        (dict(bits=1), "2 <= bits <= 8"),
        (dict(bits="quaternary"), "Received: bits='quaternary'"),
        (dict(bits=3.0), "of type float"),
        (dict(bits=True), "of type bool"),
        (dict(bits=3, scheme="log"), "scheme must be one of"),
        (dict(bits=3, per_channel=1), "per_channel must be True or False"),
        (dict(bits=3, sparsity=1.5), r"sparsity must be in \[0, 1\)"),
        (dict(bits=3, sparsity=tf_admm.Quantization(3)), "not another Quantization"),
    ],
)
def test_quantization_argument_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tf_admm.Quantization(**kwargs)
