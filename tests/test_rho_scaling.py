"""rho per layer by loss-gradient RMS: the math, the measurement, the schedule, the state."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, small_cnn, small_data, to_np, wrappers

import tf_admm
from tf_admm import keras
from tf_admm.rho_scaling import rho_scales

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_scales_have_geometric_mean_one_and_follow_the_power():
    scales = rho_scales({"a": 8.0, "b": 2.0, "c": 0.5})
    assert np.prod(list(scales.values())) == pytest.approx(1.0)
    assert scales == pytest.approx({"a": 4.0, "b": 1.0, "c": 0.25})
    assert rho_scales({"a": 8.0, "b": 2.0}, power=0.5) == pytest.approx({"a": 2**0.5, "b": 2**-0.5})
    assert rho_scales({"a": 3.0, "dead": 0.0}) == pytest.approx({"a": 1.0, "dead": 1.0})
    assert rho_scales({"dead": 0.0}) == {"dead": 1.0}
    with pytest.raises(ValueError, match="power must be a number >= 0. Received: power=-1"):
        rho_scales({"a": 1.0}, power=-1)


def _brute_force_rms(model, x, y, names):
    """Gradient RMS of each named layer's kernel on the unwrapped model, one batch."""
    kernels = [model.get_layer(n).kernel for n in names]
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=False))
    return [float(np.sqrt(np.mean(np.square(g.numpy())))) for g in tape.gradient(loss, kernels)]


def test_rho_is_proportional_to_the_gradient_rms_of_each_layer():
    base = small_cnn()
    x, y = small_data(32)
    names = ["conv", "hidden", "logits"]
    rms = _brute_force_rms(base, x, y, names)
    mean = np.exp(np.mean(np.log(rms)))
    pruned = tf_admm.prune_low_magnitude(base, 0.5, rho=2e-3)
    rho = tf_admm.scale_rho_by_gradient(pruned, (x, y), LOSS, batch_size=32, batches=1)
    for name, g in zip(names, rms):
        assert rho[f"admm_{name}"] == pytest.approx(2e-3 * g / mean, rel=1e-4)
        wrapper = pruned.get_layer(f"admm_{name}")
        assert wrapper.rho_scale == pytest.approx(g / mean, rel=1e-4)
        assert to_np(wrapper.rho) == pytest.approx(2e-3 * g / mean, rel=1e-4)
    # the layers really differ here, so the test would notice scales left at 1
    assert max(rms) / min(rms) > 1.5


def test_leaves_weights_alone_and_does_not_compound():
    pruned = tf_admm.prune_low_magnitude(small_cnn(), 0.5)
    compile_model(pruned)  # the compiled loss is used when loss is not given
    x, y = small_data(64)
    before = [to_np(v) for v in pruned.weights if "rho" not in v.name]
    first = tf_admm.scale_rho_by_gradient(pruned, (x, y), batch_size=16)
    second = tf_admm.scale_rho_by_gradient(pruned, (x, y), batch_size=16)
    assert first == pytest.approx(second)
    after = [to_np(v) for v in pruned.weights if "rho" not in v.name]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_every_layer_grows_by_one_factor_and_stops_at_its_scaled_rho_final():
    x, y = small_data(64)
    model = tf_admm.prune_low_magnitude(
        small_cnn(),
        {"hidden": 0.9, "logits": 0.5},
        rho=1e-3,
        schedule=tf_admm.schedules.Gradual(ramp_steps=8, update_every=2, rho_final=0.1),
    )
    compile_model(model)
    start = tf_admm.scale_rho_by_gradient(model, (x, y), batch_size=16)
    scale = {w.name: w.rho_scale for w in wrappers(model)}
    assert scale["admm_hidden"] != pytest.approx(scale["admm_logits"])
    admm = tf_admm.UpdateADMM()
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: seen.append(
            {w.name: float(to_np(w.rho)) for w in wrappers(model)}
        )
    )
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[admm, record])
    # 4 steps per epoch, Z/U every 2: 1e-3 -> 0.01 -> 0.1 -> 0.1 for scale 1; each layer times
    # its own scale
    for w in wrappers(model):
        assert start[w.name] == pytest.approx(1e-3 * scale[w.name])
        trajectory = [epoch[w.name] / scale[w.name] for epoch in seen]
        np.testing.assert_allclose(trajectory, [0.01, 0.1, 0.1], rtol=1e-5)
    # the plain cap scales too: update_admm's rho_max is per unit of rho_scale
    tf_admm.update_admm(model, rho_growth=100.0, rho_max=0.2)
    for w in wrappers(model):
        assert to_np(w.rho) == pytest.approx(0.2 * scale[w.name], rel=1e-5)


def test_started_wrappers_keep_their_rho_and_the_scale_survives_saving(tmp_path):
    x, y = small_data(32)
    model = tf_admm.prune_low_magnitude(small_cnn(), 0.5, rho=1e-3)
    compile_model(model)
    scaled = tf_admm.scale_rho_by_gradient(model, (x, y))
    tf_admm.initialize_admm(model)
    tf_admm.update_admm(model, rho_growth=2.0)
    grown = {w.name: float(to_np(w.rho)) for w in wrappers(model)}
    again = tf_admm.scale_rho_by_gradient(model, (x, y))  # a restarted script calls it again
    assert again == pytest.approx(scaled)  # the initial rho, unchanged
    assert {w.name: float(to_np(w.rho)) for w in wrappers(model)} == grown
    with pytest.raises(ValueError, match="has started ADMM.*Received: rho_scale=2.0"):
        wrappers(model)[0].set_rho_scale(2.0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(wrappers(model), wrappers(loaded)):
        assert b.rho_scale == pytest.approx(a.rho_scale)
        assert to_np(b.rho) == pytest.approx(to_np(a.rho))


def test_bad_input_is_refused_before_any_change():
    x, y = small_data(16)
    model = tf_admm.prune_low_magnitude(small_cnn(), 0.5)
    with pytest.raises(ValueError, match="compile the model first or pass loss"):
        tf_admm.scale_rho_by_gradient(model, (x, y))
    with pytest.raises(ValueError, match="data must be a batched tf.data.Dataset.*Received: list"):
        tf_admm.scale_rho_by_gradient(model, [x, y], LOSS)
    with pytest.raises(ValueError, match="batches must be an int >= 1. Received: batches=0"):
        tf_admm.scale_rho_by_gradient(model, (x, y), LOSS, batches=0)
    with pytest.raises(ValueError, match="power must be a number >= 0"):
        tf_admm.scale_rho_by_gradient(model, (x, y), LOSS, power="1")
    with pytest.raises(ValueError, match="found no ADMM-wrapped layer"):
        tf_admm.scale_rho_by_gradient(small_cnn(), (x, y), LOSS)
    with pytest.raises(ValueError, match="rho_scale must be a number > 0. Received: rho_scale=0"):
        wrappers(model)[0].set_rho_scale(0)
    assert all(w.rho_scale == 1.0 for w in wrappers(model))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    rho = tf_admm.scale_rho_by_gradient(model, dataset, "sparse_categorical_crossentropy")
    assert len(rho) == 3 and all(r > 0 for r in rho.values())


def test_rho_by_size_is_the_inverse_square_root_of_each_layers_weight_count():
    model = tf_admm.prune_low_magnitude(small_cnn(), 0.5, rho=1e-3)
    # conv 3x3x1x4 = 36, hidden (6x6x4)x16 = 2304, logits 16x3 = 48 weights
    sizes = {"admm_conv": 36, "admm_hidden": 2304, "admm_logits": 48}
    mean = np.prod(list(sizes.values())) ** (1 / 3)
    rho = tf_admm.scale_rho_by_size(model)
    assert rho == pytest.approx({n: 1e-3 * (s / mean) ** -0.5 for n, s in sizes.items()})
    assert np.prod([w.rho_scale for w in wrappers(model)]) == pytest.approx(1.0)
    tf_admm.initialize_admm(model)
    assert tf_admm.scale_rho_by_size(model, power=1.0) == pytest.approx(rho)  # started: kept
    fresh = tf_admm.prune_low_magnitude(small_cnn(), 0.5, rho=1e-3)
    with pytest.raises(ValueError, match="power must be a number >= 0. Received: power=-0.5"):
        tf_admm.scale_rho_by_size(fresh, power=-0.5)
    assert all(w.rho_scale == 1.0 for w in wrappers(fresh))
    assert list(tf_admm.scale_rho_by_size(fresh, power=0.0).values()) == pytest.approx([1e-3] * 3)
