"""ADMM quantization through the same wrapper, callback, hard_project and strip as pruning."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, small_cnn, small_data, to_np, wrappers

import tf_admm
from tf_admm import keras

CB = [tf_admm.UpdateADMM()]


def _on_grid(wrapper, values, index=0):
    """Integer-like units: values / scale lands on the constraint's levels (0 allowed)."""
    scale = np.broadcast_to(to_np(wrapper.scale_vars[index]), values.shape)
    levels = np.union1d(wrapper.constraint.quantizer.levels, [0.0])
    units = values / scale
    nearest = levels[np.abs(units[..., None] - levels).argmin(axis=-1)]
    np.testing.assert_array_equal(nearest.astype(values.dtype) * scale, values)


def _distinct_per_channel(values):
    return max(len(np.unique(values[..., c])) for c in range(values.shape[-1]))


def _admm_then_retrain(model, x, y, optimizer=None, epochs=(2, 3)):
    compile_model(model, optimizer)
    model.fit(x, y, epochs=epochs[0], batch_size=16, verbose=0, callbacks=CB)
    tf_admm.hard_project(model)
    after_projection = [to_np(w.constrained[0]) for w in wrappers(model)]
    model.fit(x, y, epochs=epochs[1], batch_size=16, verbose=0, callbacks=CB)
    return after_projection


def test_update_admm_puts_z_on_the_levels():
    model = tf_admm.quantize(small_cnn(), 3)
    compile_model(model)
    x, y = small_data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=CB)
    before = [(to_np(w.constrained[0]), to_np(w.u_vars[0])) for w in wrappers(model)]
    tf_admm.update_admm(model, rho_growth=1.0)
    for w, (weight, u_old) in zip(wrappers(model), before):
        z = to_np(w.z_vars[0])
        assert _distinct_per_channel(z) <= 7
        np.testing.assert_allclose(z, w.constraint.project(weight + u_old), rtol=1e-6)
        np.testing.assert_allclose(to_np(w.u_vars[0]), u_old + weight - z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bits,limit",
    [(3, 7), ("ternary", 3), ("binary", 2), (4, 15)],
    ids=["3bit", "ternary", "binary", "4bit"],
)
def test_ste_retraining_keeps_weights_on_the_grid_and_still_learns(bits, limit):
    x, y = small_data(96)
    model = tf_admm.quantize(small_cnn(), bits)
    after_projection = _admm_then_retrain(model, x, y, keras.optimizers.Adam(1e-2))
    moved = 0
    for w, start in zip(wrappers(model), after_projection):
        values = to_np(w.constrained[0])
        _on_grid(w, values)
        assert _distinct_per_channel(values) <= limit
        moved += int((values != start).sum())
    assert moved > 0  # the latent weights moved some weights to other levels
    stripped = tf_admm.strip_admm(model)
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), model.predict(x, verbose=0))
    for w, layer in zip(wrappers(model), [stripped.get_layer(n) for n in ("conv", "hidden")]):
        kernel = layer.get_weights()[0]
        _on_grid(w, kernel)
        assert _distinct_per_channel(kernel) <= limit


def test_ste_retraining_lowers_the_loss_after_projection():
    x, y = small_data(96)
    model = tf_admm.quantize(small_cnn(), 2)
    compile_model(model, keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=CB)
    tf_admm.hard_project(model)
    projected_loss = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=CB)
    assert model.evaluate(x, y, verbose=0) < projected_loss * 0.9


def test_latent_weight_follows_the_optimizer_step_straight_through():
    model = tf_admm.quantize(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), 3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.ones((1, 4), "float32")
    model.predict(x, verbose=0)
    tf_admm.hard_project(model)
    w = wrappers(model)[0]
    latent = to_np(w.constrained[0]) + to_np(w.u_vars[0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x, training=True) - 1.0) ** 2)
    grad = tape.gradient(loss, w.constrained[0])  # taken at the quantized weight
    model.optimizer.apply_gradients([(grad, w.constrained[0])])
    model(x)  # the next forward pass re-quantizes the moved latent weight
    new_latent = to_np(w.constrained[0]) + to_np(w.u_vars[0])
    np.testing.assert_allclose(new_latent, latent - 0.1 * grad.numpy(), rtol=1e-5, atol=1e-6)
    _on_grid(w, to_np(w.constrained[0]))


def test_compress_prunes_then_quantizes_and_keeps_zeros():
    x, y = small_data(96)
    model = tf_admm.compress(small_cnn(), sparsity={"hidden": 0.9, "conv": 0.5}, bits=3)
    compile_model(model, keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=CB)
    reached = tf_admm.hard_project(model)
    assert reached["admm_hidden"] == int(144 * 16 * 0.9) / (144 * 16)
    masks = {w.name: to_np(w.mask_vars[0]) for w in wrappers(model)}
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=CB)
    for w in wrappers(model):
        values = to_np(w.constrained[0])
        mask = masks[w.name]
        if w.name != "admm_logits":  # bits only: zero is a level, no fixed support
            expected = {"admm_hidden": 0.9, "admm_conv": 0.5}[w.name]
            kept = values.size - int(values.size * expected + 1e-9)
            assert np.count_nonzero(values) == int(mask.sum()) == kept
            assert not values[mask == 0].any()
        _on_grid(w, values)
        assert _distinct_per_channel(values) <= 7
    logits = [w for w in wrappers(model) if w.name == "admm_logits"][0]
    assert logits.constraint == tf_admm.Quantization(3)  # bits only: no sparsity for it


def test_mixed_bits_per_layer_by_dict_and_callable():
    base = small_cnn()
    by_dict = tf_admm.quantize(base, {"conv": 8, "hidden": "binary"})
    assert [w.constraint.bits for w in wrappers(by_dict)] == [8, 1]
    by_fn = tf_admm.quantize(base, lambda layer: 2 if layer.name == "logits" else None)
    assert [w.name for w in wrappers(by_fn)] == ["admm_logits"]
    pow2 = tf_admm.quantize(base, 4, scheme="power_of_two", per_channel=False)
    assert all(w.constraint.scheme == "power_of_two" for w in wrappers(pow2))
    assert all(to_np(w.scale_vars[0]).shape == (1,) for w in wrappers(pow2))


def test_quantized_save_load_round_trip_in_retraining(tmp_path):
    x, y = small_data()
    model = tf_admm.compress(small_cnn(), sparsity=0.5, bits=4)
    _admm_then_retrain(model, x, y, epochs=(1, 1))
    path = str(tmp_path / "q.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(wrappers(model), wrappers(loaded)):
        assert a.constraint == b.constraint
        for u, v in zip(a.weights, b.weights):
            np.testing.assert_array_equal(to_np(u), to_np(v))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    loaded.compile(optimizer=keras.optimizers.SGD(0.05), loss=model.loss)
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=CB)
    for w in wrappers(loaded):
        _on_grid(w, to_np(w.constrained[0]))


def test_quantized_retraining_under_mirrored_strategy_keeps_replicas_identical():
    x, y = small_data(64)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = tf_admm.quantize(small_cnn(), 3)
    _admm_then_retrain(model, x, y, epochs=(2, 2))
    for w in wrappers(model):
        for var in (*w.constrained, *w.u_vars, *w.scale_vars):
            values = [np.asarray(v) for v in strategy.experimental_local_results(var)]
            for other in values[1:]:
                np.testing.assert_array_equal(values[0], other)
        _on_grid(w, to_np(w.constrained[0]))


def test_quantization_keeps_float32_master_weights_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = small_data()
        model = tf_admm.quantize(small_cnn(), 4)
        _admm_then_retrain(model, x, y, keras.optimizers.Adam(1e-2), epochs=(1, 1))
        for w in wrappers(model):
            assert to_np(w.constrained[0]).dtype == np.float32
            _on_grid(w, to_np(w.constrained[0]))
        stripped = tf_admm.strip_admm(model)
        np.testing.assert_array_equal(stripped.predict(x, verbose=0), model.predict(x, verbose=0))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: tf_admm.quantize(m, 9), "2 <= bits <= 8"),
        (lambda m: tf_admm.quantize(m, {"nope": 3}), "do not exist"),
        (lambda m: tf_admm.quantize(m, {"conv": "four"}), r"bits\['conv'\]"),
        (lambda m: tf_admm.quantize(m, 3, scheme="log"), "scheme must be one of"),
        (lambda m: tf_admm.quantize(m, 3, per_channel="yes"), "per_channel must be"),
        (lambda m: tf_admm.compress(m), "needs sparsity=..., bits=... or both"),
        (lambda m: tf_admm.compress(m, sparsity=tf_admm.Quantization(3)), "sparsity constraints"),
        (
            lambda m: tf_admm.compress(m, sparsity=0.5, bits=tf_admm.Quantization(3, sparsity=0.2)),
            "sparsity twice",
        ),
    ],
)
def test_entry_point_argument_checks_leave_the_model_alone(call, match):
    model = small_cnn()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=match):
        call(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
