import csv

import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, small_cnn, small_data, to_np, wrappers

import tf_admm
from tf_admm import keras
from tf_admm.schedules import Gradual, OneShot


def _wrapped(sparsity=0.75, rho=1e-3, schedule=None):
    model = tf_admm.prune_low_magnitude(small_cnn(), sparsity, rho=rho, schedule=schedule)
    compile_model(model)
    return model


def _state(model):
    out = []
    for w in wrappers(model):
        out += [to_np(v) for v in (*w.z_vars, *w.u_vars, *w.mask_vars, *w.support_vars)]
        out += [to_np(v) for v in (w.rho, w.step, w.epoch, w.num_updates, w.mode, w.ramp_steps)]
    return out


def test_update_math_matches_the_definition():
    model = _wrapped(0.5, rho=0.01)
    tf_admm.initialize_admm(model)
    w = wrappers(model)[-1]
    weight = to_np(w.constrained[0])
    np.testing.assert_array_equal(to_np(w.z_vars[0]), tf_admm.Sparsity(0.5).project(weight))
    assert not to_np(w.u_vars[0]).any() and int(to_np(w.step)) == 0
    u0 = np.random.default_rng(0).standard_normal(weight.shape).astype("float32") * 0.1
    w.u_vars[0].assign(u0)
    z_prev = to_np(w.z_vars[0])
    logs = tf_admm.update_admm(model, rho_growth=2.0, rho_max=0.015, rescale_dual=True)
    z = tf_admm.Sparsity(0.5).project(weight + u0)
    np.testing.assert_allclose(to_np(w.z_vars[0]), z, rtol=1e-6)
    np.testing.assert_allclose(to_np(w.u_vars[0]), (u0 + weight - z) * (0.01 / 0.015), rtol=1e-5)
    assert to_np(w.rho) == pytest.approx(0.015)  # 0.02 capped at rho_max
    assert int(to_np(w.num_updates)) == 1
    assert logs["admm_rho"] == pytest.approx(0.015)
    assert logs["admm_dual_residual"] > 0
    # dual residual of this wrapper alone is rho * ||Z - Z_prev||; the total sums squares
    assert logs["admm_dual_residual"] >= 0.01 * np.linalg.norm(z - z_prev) - 1e-6
    # without rescaling, U is the plain running sum U + W - Z
    u1 = to_np(w.u_vars[0])
    tf_admm.update_admm(model, rho_growth=1.0, rho_max=1.0, rescale_dual=False)
    z2 = tf_admm.Sparsity(0.5).project(weight + u1)
    np.testing.assert_allclose(to_np(w.u_vars[0]), u1 + weight - z2, rtol=1e-5, atol=1e-7)


def test_penalty_is_half_rho_squared_norm():
    model = _wrapped(0.5, rho=0.5)
    tf_admm.initialize_admm(model)
    x, _ = small_data(4)
    model(x, training=True)
    expected = 0.0
    for w in wrappers(model):
        diff = to_np(w.constrained[0]) - to_np(w.z_vars[0]) + to_np(w.u_vars[0])
        expected += 0.25 * float(np.sum(diff.astype(np.float64) ** 2))
    assert float(sum(tf.convert_to_tensor(l) for l in model.losses)) == pytest.approx(
        expected, rel=1e-5
    )


def test_training_without_the_callback_fails_with_advice():
    model = _wrapped()
    # Adam and a metric: their variables are what a second trace of the failed train
    # function would create (Keras 3); SGD alone hides it there
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = small_data()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="Add tf_admm.UpdateADMM"):
        model.fit(x, y, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):  # raised before any step
        np.testing.assert_array_equal(old, new)
    model.predict(x, verbose=0)  # inference needs no callback
    # following the message's advice on the same compiled model: no compile() needed
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    assert len(history.history["loss"]) == 2
    assert any(
        not np.array_equal(old, new) for old, new in zip(before, model.get_weights())
    )  # it trained


def test_residuals_in_history_and_csv_logger(tmp_path):
    model = _wrapped(0.9, rho=0.05, schedule=OneShot(rho_growth=1.5))
    x, y = small_data()
    path = str(tmp_path / "log.csv")
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[tf_admm.UpdateADMM(), keras.callbacks.CSVLogger(path)],
    )
    h = history.history
    assert h["admm_rho"] == pytest.approx([0.05 * 1.5**i for i in range(1, 5)], rel=1e-5)
    assert all(np.isfinite(h["admm_primal_residual"])) and h["admm_dual_residual"][0] > 0
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[-1]["admm_rho"]) == pytest.approx(0.05 * 1.5**4)
    w = wrappers(model)[0]
    assert int(to_np(w.epoch)) == 4 and int(to_np(w.step)) == 16 and int(to_np(w.num_updates)) == 4


def test_admm_drives_weights_towards_the_constraint():
    # rho large enough to beat cross-entropy on random labels (0.1 oscillates at this size)
    model = _wrapped(0.9, rho=1.0, schedule=OneShot(rho_growth=1.3, rho_max=5.0))
    x, y = small_data(128)
    h = model.fit(
        x,
        y,
        epochs=12,
        batch_size=32,
        verbose=0,
        callbacks=[tf_admm.UpdateADMM()],
    ).history["admm_primal_residual"]
    assert h[-1] < 0.1 * h[0]


def test_step_unit_updates_every_n_steps():
    model = _wrapped(schedule=OneShot(update_every=3, unit="step"))
    x, y = small_data(64)
    cb = tf_admm.UpdateADMM()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])  # 16 steps
    w = wrappers(model)[0]
    assert int(to_np(w.step)) == 16 and int(to_np(w.num_updates)) == 5


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        lambda: keras.optimizers.RMSprop(0.01),
        lambda: keras.optimizers.Adam(0.01, clipnorm=0.5),
    ],
    ids=["adam", "adamw", "sgd_momentum", "rmsprop", "clipnorm"],
)
def test_masked_retraining_keeps_pruned_weights_exactly_zero(make_optimizer):
    model = tf_admm.prune_low_magnitude(small_cnn(), 0.8)
    compile_model(model, make_optimizer())
    x, y = small_data()
    # ADMM with the same optimizer first, so its moments are non-zero when masking starts
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(model)
    masks = {w.name: [to_np(m) for m in w.mask_vars] for w in wrappers(model)}
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    for w in wrappers(model):
        for weight, mask in zip(w.constrained, masks[w.name]):
            values = to_np(weight)
            assert not values[mask == 0].any()
            assert np.count_nonzero(values) == int(mask.sum())
    stripped = tf_admm.strip_admm(model)
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), model.predict(x, verbose=0))


def test_forward_is_masked_even_without_the_callback():
    model = _wrapped(0.8)
    tf_admm.hard_project(model)
    x, y = small_data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # no callback: stored W may drift
    before = model.predict(x, verbose=0)
    stripped = tf_admm.strip_admm(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), before, atol=1e-6)


def test_save_and_load_mid_admm_resumes_the_same_update(tmp_path):
    model = _wrapped(0.75)
    x, y = small_data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    path = str(tmp_path / "mid.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    for a, b in zip(_state(model), _state(loaded)):
        np.testing.assert_array_equal(a, b)
    assert wrappers(loaded)[0].constraint == tf_admm.Sparsity(0.75)
    a, b = tf_admm.update_admm(model), tf_admm.update_admm(loaded)
    assert a == pytest.approx(b)
    for u, v in zip(_state(model), _state(loaded)):
        np.testing.assert_allclose(u, v, rtol=1e-6)


class _StopAfter(keras.callbacks.Callback):
    """Ends fit after ``epochs`` epochs, as a killed job would (its ``fit`` asked for more)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


_SCHEDULES = {"gradual": None, "oneshot": OneShot()}


@pytest.mark.parametrize("schedule", list(_SCHEDULES))
def test_resume_from_saved_model_equals_uninterrupted(tmp_path, schedule):
    # the default (gradual) ramps over the 4 epochs of the first fit; the wrappers keep that
    # ramp in their variables and their schedule in the .keras file, so the resumed fit needs
    # UpdateADMM() and the 2 epochs left, nothing else
    x, y = small_data()
    kw = dict(batch_size=16, shuffle=False, verbose=0)
    full = _wrapped(schedule=_SCHEDULES[schedule])
    full.fit(x, y, epochs=4, callbacks=[tf_admm.UpdateADMM()], **kw)
    want = Gradual() if schedule == "gradual" else OneShot()
    assert wrappers(full)[0].schedule == want
    keras.utils.set_random_seed(0)
    part = _wrapped(schedule=_SCHEDULES[schedule])
    part.fit(x, y, epochs=4, callbacks=[tf_admm.UpdateADMM(), _StopAfter(2)], **kw)
    path = str(tmp_path / "half.keras")
    part.save(path)
    resumed = keras.models.load_model(path)
    assert wrappers(resumed)[0].schedule == want
    resumed.fit(x, y, epochs=2, callbacks=[tf_admm.UpdateADMM()], **kw)
    for a, b in zip(_state(full), _state(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(full.predict(x, verbose=0), resumed.predict(x, verbose=0), atol=1e-5)


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("schedule", list(_SCHEDULES))
def test_backup_and_restore_resumes_admm(tmp_path, schedule):
    x, y = small_data()
    kw = dict(epochs=4, batch_size=16, shuffle=False, verbose=0)
    full = _wrapped(schedule=_SCHEDULES[schedule])
    full.fit(x, y, callbacks=[tf_admm.UpdateADMM()], **kw)

    keras.utils.set_random_seed(0)
    model = _wrapped(schedule=_SCHEDULES[schedule])
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            x,
            y,
            callbacks=[
                tf_admm.UpdateADMM(),
                keras.callbacks.BackupAndRestore(backup),
                _StopAt(2),
            ],
            **kw,
        )
    keras.utils.set_random_seed(0)
    fresh = _wrapped(schedule=_SCHEDULES[schedule])  # a new process starts from scratch
    fresh.fit(
        x,
        y,
        callbacks=[
            tf_admm.UpdateADMM(),
            keras.callbacks.BackupAndRestore(backup),
        ],
        **kw,
    )
    w_full, w_fresh = wrappers(full)[0], wrappers(fresh)[0]
    # one-shot: one update per epoch; gradual: every step here (a tenth of a 16-step ramp)
    expected = 4 if schedule == "oneshot" else 16
    assert int(to_np(w_fresh.num_updates)) == int(to_np(w_full.num_updates)) == expected
    for a, b in zip(_state(full), _state(fresh)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_custom_training_loop():
    model = tf_admm.prune_low_magnitude(small_cnn(), 0.75)
    x, y = small_data(32)
    opt = keras.optimizers.SGD(0.05)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tf_admm.initialize_admm(model)
    for step in range(6):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        if step % 2 == 1:
            logs = tf_admm.update_admm(model)
    assert int(to_np(wrappers(model)[0].num_updates)) == 3 and logs["admm_primal_residual"] > 0


def test_callback_and_schedule_argument_checks():
    with pytest.raises(
        ValueError, match=r"update_every must be an int >= 1. Received: update_every=0"
    ):
        OneShot(update_every=0)
    with pytest.raises(ValueError, match=r"unit must be one of \('epoch', 'step'\)"):
        OneShot(unit="batch")
    with pytest.raises(ValueError, match=r"rho_growth must be >= 1"):
        OneShot(rho_growth=0.5)
    with pytest.raises(ValueError, match=r"update_every must be an int >= 1.*'soon'"):
        Gradual(update_every="soon")
    with pytest.raises(ValueError, match=r"rho_scaling must be one of"):
        Gradual(rho_scaling="layer")
    with pytest.raises(ValueError, match=r"A schedule must be a tf_admm.schedules.ADMMSchedule"):
        tf_admm.prune_low_magnitude(small_cnn(), 0.5, schedule="fast")
    with pytest.raises(ValueError, match=r"schedule names layers that are not wrapped: \['nope'\]"):
        tf_admm.prune_low_magnitude(small_cnn(), {"hidden": 0.5}, schedule={"nope": OneShot()})
    with pytest.raises(TypeError):
        tf_admm.UpdateADMM(update_every=2)  # the schedule is the wrappers', not the callback's
    plain = small_cnn()
    compile_model(plain)
    with pytest.raises(ValueError, match="found no ADMM-wrapped layer"):
        plain.fit(*small_data(8), epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])


def _replica_values(strategy, var):
    """The per-replica copies of a variable (Keras 3 wraps the tf.distribute variable in
    ``var.value``; tf_keras's variable is the distributed one, whose ``value`` is a method)."""
    inner = getattr(var, "value", var)
    return strategy.experimental_local_results(var if callable(inner) else inner)


def test_mirrored_strategy_matches_single_device():
    x, y = small_data(64)
    kw = dict(epochs=3, batch_size=16, shuffle=False, verbose=0)
    single = _wrapped(0.75)
    init = single.get_weights()
    single.fit(x, y, callbacks=[tf_admm.UpdateADMM()], **kw)

    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        dist = _wrapped(0.75)
        dist.set_weights(init)
    dist.fit(x, y, callbacks=[tf_admm.UpdateADMM()], **kw)
    tf_admm.hard_project(dist)
    dist.fit(x, y, callbacks=[tf_admm.UpdateADMM()], **kw)
    tf_admm.hard_project(single)
    single.fit(x, y, callbacks=[tf_admm.UpdateADMM()], **kw)
    for w in wrappers(dist):  # replicas identical
        for var in (*w.constrained, *w.z_vars, *w.u_vars, *w.mask_vars):
            values = [np.asarray(v) for v in _replica_values(strategy, var)]
            assert len(values) == 2
            for other in values[1:]:
                np.testing.assert_array_equal(values[0], other)
    for a, b in zip(_state(single), _state(dist)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(single.predict(x, verbose=0), dist.predict(x, verbose=0), atol=1e-3)


def test_mixed_precision_keeps_float32_master_weights():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tf_admm.prune_low_magnitude(small_cnn(), 0.75)
        compile_model(model, keras.optimizers.Adam(1e-2))
        x, y = small_data()
        model.fit(x, y, epochs=2, verbose=0, callbacks=[tf_admm.UpdateADMM()])
        tf_admm.hard_project(model)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
        for w in wrappers(model):
            values = to_np(w.constrained[0])
            assert values.dtype == np.float32 and to_np(w.z_vars[0]).dtype == np.float32
            # the in-call mask write must not round the float32 weights through float16
            assert not np.array_equal(values, values.astype(np.float16).astype(np.float32))
            assert np.count_nonzero(values) == int(to_np(w.mask_vars[0]).sum())
        stripped = tf_admm.strip_admm(model)
        np.testing.assert_array_equal(stripped.predict(x, verbose=0), model.predict(x, verbose=0))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "cls", [tf.distribute.experimental.ParameterServerStrategy, tf.distribute.TPUStrategy]
)
def test_untested_strategies_get_a_clear_error(monkeypatch, cls):
    model = _wrapped(0.5)
    before = [np.copy(v) for v in _state(model)]
    fake = object.__new__(cls)  # no cluster needed: only its type is looked at
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: fake)
    with pytest.raises(ValueError, match=f"does not support {cls.__name__}"):
        tf_admm.initialize_admm(model)
    with pytest.raises(ValueError, match="MultiWorkerMirroredStrategy only"):
        tf_admm.update_admm(model)
    for a, b in zip(before, _state(model)):  # nothing was touched
        np.testing.assert_array_equal(a, b)


class _ZeroFractions(keras.callbacks.Callback):
    """Z's zero fraction of the first wrapper after every batch (place after UpdateADMM)."""

    def __init__(self):
        super().__init__()
        self.zeros = []

    def on_train_batch_end(self, batch, logs=None):
        z = to_np(wrappers(self.model)[0].z_vars[0])
        self.zeros.append(int(z.size - np.count_nonzero(z)))


def test_ramp_projects_z_onto_the_cubic_schedule_then_the_target():
    x, y = small_data(64)
    model = _wrapped({"hidden": 0.9}, schedule=OneShot(2, "step", ramp_steps=8))
    record = _ZeroFractions()
    admm = tf_admm.UpdateADMM()
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[admm, record])
    size = 2304  # hidden: 144 x 16
    expected = []
    for t in range(1, 13):
        last = t - t % 2  # Z was last updated at this step (0: the initialization)
        s = 0.9 * (1 - (1 - min(last / 8, 1.0)) ** 3)
        expected.append(int(np.floor(size * s + 1e-9)))
    assert record.zeros == expected
    assert expected[0] == 0 and expected[-1] == int(size * 0.9)
    tf_admm.hard_project(model)
    assert (to_np(wrappers(model)[0].constrained[0]) == 0).sum() == int(size * 0.9)


class _ComputedZeros(keras.callbacks.Callback):
    """Zeros of the first wrapper's kernel as the forward pass sees it, after each step."""

    def __init__(self):
        super().__init__()
        self.zeros = []

    def on_train_batch_end(self, batch, logs=None):
        w = wrappers(self.model)[0]
        self.zeros.append(int((w.compressed_weights()[0] == 0).sum()))


@pytest.mark.parametrize("masking", ["end", "ramp"])
def test_masking_ramp_masks_weights_outside_z_at_every_update(masking):
    x, y = small_data(64)
    schedule = OneShot(2, "step", ramp_steps=8, masking=masking)
    model = _wrapped({"hidden": 0.9}, schedule=schedule)
    record = _ComputedZeros()
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[tf_admm.UpdateADMM(), record],
    )
    size = 2304
    if masking == "end":
        assert max(record.zeros) == 0  # ADMM only pulls; hard_project masks
    else:  # the model computes with W outside Z's support at zero, Z on the ramp
        assert record.zeros == [
            int(np.floor(size * 0.9 * (1 - (1 - min((t - t % 2) / 8, 1.0)) ** 3) + 1e-9))
            for t in range(1, 13)
        ]
    tf_admm.hard_project(model)
    assert (to_np(wrappers(model)[0].constrained[0]) == 0).sum() == int(size * 0.9)
    assert Gradual(masking="ramp").get_config()["masking"] == "ramp"
    with pytest.raises(ValueError, match="masking must be one of \\('end', 'ramp'\\)"):
        Gradual(masking="always")


def test_ramp_end_reaches_the_target_early_and_trains_on_the_final_support():
    x, y = small_data(64)  # 4 steps an epoch, 5 epochs: 20 steps, a ramp of 16
    schedule = Gradual(update_every=2, masking="ramp", ramp_end=0.8)
    model = _wrapped({"hidden": 0.9}, schedule=schedule)
    record = _ComputedZeros()
    fit = dict(epochs=5, batch_size=16, shuffle=False, verbose=0)
    model.fit(x, y, **fit, callbacks=[tf_admm.UpdateADMM(), record])
    final = int(2304 * 0.9)
    assert int(wrappers(model)[0].ramp_steps.numpy()) == 16
    assert record.zeros[15:] == [final] * 5 and record.zeros[14] < final  # 4 steps at target
    assert Gradual(ramp_end=0.8).get_config()["ramp_end"] == 0.8
    assert Gradual.from_config({"masking": "ramp"}).ramp_end == 1.0  # configs saved before
    with pytest.raises(ValueError, match="only with ramp_steps='fit'. Received: ramp_end=0.5"):
        Gradual(ramp_steps=10, ramp_end=0.5)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        Gradual(ramp_end=1.5)


def test_ramp_starts_from_the_zeros_already_masked():
    model = _wrapped({"hidden": 0.9})
    w = wrappers(model)[0]
    kernel = to_np(w.constrained[0])
    half = (np.arange(kernel.size) % 2).reshape(kernel.shape).astype("float32")
    w.mask_vars[0].assign(half)  # an earlier stage left 50% zeros
    w.constrained[0].assign(kernel * half)
    tf_admm.initialize_admm(model, ramp_steps=10)
    assert tf_admm.updates.ramped_constraint(w, 10) == tf_admm.Sparsity(0.5)
    w.step.assign(5)
    assert tf_admm.updates.ramped_constraint(w, 10).sparsity == pytest.approx(
        0.9 + (0.5 - 0.9) * 0.5**3
    )
    w.step.assign(10)
    assert tf_admm.updates.ramped_constraint(w, 10) == tf_admm.Sparsity(0.9)
    with pytest.raises(ValueError, match="ramp_steps must be an int >= 0"):
        OneShot(ramp_steps=-1)


def test_rho_final_takes_rho_there_over_the_ramp_and_stops():
    x, y = small_data(64)
    schedule = Gradual(ramp_steps=8, update_every=2, rho_final=0.1)
    model = _wrapped({"hidden": 0.9}, rho=1e-3, schedule=schedule)
    admm = tf_admm.UpdateADMM()
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[admm])
    # 4 steps per epoch: the 4 updates of the ramp (steps 2, 4, 6, 8) take rho from 1e-3 to 0.1
    # by a factor 10 ** 0.5 each; the 2 updates after the ramp keep it at 0.1
    assert schedule.rho_rule(1e-3, 8)[0] == pytest.approx(10**0.5)
    np.testing.assert_allclose(history.history["admm_rho"], [0.01, 0.1, 0.1], rtol=1e-5)
    assert int(to_np(wrappers(model)[0].num_updates)) == 6


def test_rho_final_is_checked():
    with pytest.raises(ValueError, match="ramp_steps must be an int >= 1. Received: ramp_steps=0"):
        Gradual(ramp_steps=0)
    with pytest.raises(ValueError, match="update_every must be an int >= 1"):
        OneShot(update_every="auto")
    with pytest.raises(ValueError, match="rho_final must be a number > 0"):
        Gradual(ramp_steps=8, rho_final=-1.0)
    x, y = small_data(16)
    model = _wrapped({"hidden": 0.9}, schedule=Gradual(ramp_steps=8, rho_final=1e-6))
    with pytest.raises(ValueError, match="rho_final must be >= the layer's rho"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tf_admm.UpdateADMM()])


def test_ramp_over_the_fit_equals_the_ramp_given_in_steps():
    x, y = small_data(64)
    states = []
    for ramp in ("fit", 12):  # 3 epochs x 4 steps
        keras.utils.set_random_seed(0)
        schedule = Gradual(ramp_steps=ramp, update_every=2, rho_final=0.1)
        model = _wrapped({"hidden": 0.9}, rho=1e-3, schedule=schedule)
        model.fit(
            x,
            y,
            epochs=3,
            batch_size=16,
            shuffle=False,
            verbose=0,
            callbacks=[tf_admm.UpdateADMM()],
        )
        assert int(to_np(wrappers(model)[0].ramp_steps)) == 12
        states.append(_state(model))
    for a, b in zip(*states):
        np.testing.assert_array_equal(a, b)


def test_ramp_over_the_fit_needs_a_known_length():
    with pytest.raises(ValueError, match="ramp_steps must be an int >= 1 or 'fit'. Received: "):
        Gradual(ramp_steps="all")
    x, y = small_data(32)
    model = _wrapped({"hidden": 0.9})
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(16)
    with pytest.raises(ValueError, match="reads the number of steps from fit"):
        model.fit(unknown, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])


def test_default_recipe_is_gradual_for_pruning_and_oneshot_for_quantization():
    x, y = small_data(64)  # 4 steps per epoch of 16
    pruned = _wrapped({"hidden": 0.9}, rho=1e-3)
    admm = tf_admm.UpdateADMM()
    history = pruned.fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0, callbacks=[admm])
    # gradual: a ramp over the fit's 20 steps, Z/U every 2 (a tenth), rho from 1e-3 to 0.1
    hidden = wrappers(pruned)[0]
    assert hidden.schedule == Gradual() and int(to_np(hidden.ramp_steps)) == 20
    assert hidden.schedule.interval(20) == 2
    assert history.history["admm_rho"][-1] == pytest.approx(0.1, rel=1e-5)
    assert int(to_np(wrappers(pruned)[0].num_updates)) == 10
    z = to_np(wrappers(pruned)[0].z_vars[0])
    assert np.mean(z == 0) == pytest.approx(0.9, abs=1 / z.size)  # the ramp reached the target

    quantized = tf_admm.quantize(small_cnn(), {"hidden": 2}, rho=1e-3)
    compile_model(quantized)
    admm = tf_admm.UpdateADMM()
    history = quantized.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[admm])
    # one-shot: one update per epoch, rho x1.3 per update
    assert wrappers(quantized)[0].schedule == OneShot()
    np.testing.assert_allclose(history.history["admm_rho"], [1.3e-3, 1.69e-3], rtol=1e-5)
    # n:m sparsity has no sparsity to ramp
    nm = tf_admm.prune_low_magnitude(small_cnn(), {"hidden": tf_admm.NMSparsity(2, 4)})
    assert wrappers(nm)[0].schedule == OneShot()


def test_gradient_data_scales_rho_per_layer_at_train_begin():
    x, y = small_data(64)
    keras.utils.set_random_seed(0)
    expected = _wrapped(0.75, rho=1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rho = tf_admm.scale_rho_by_gradient(expected, (x, y), loss, batch_size=16)
    assert len(set(round(r, 9) for r in rho.values())) > 1  # layers differ
    keras.utils.set_random_seed(0)
    model = _wrapped(0.75, rho=1e-3)
    admm = tf_admm.UpdateADMM(gradient_data=tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, callbacks=[admm])
    for got, want in zip(wrappers(model), wrappers(expected)):
        assert got.rho_scale == pytest.approx(want.rho_scale, rel=1e-5)
        assert got.rho_init == want.rho_init == 1e-3


def test_rho_scaling_size_scales_rho_by_weight_count_unless_already_scaled():
    x, y = small_data(64)
    expected = _wrapped(0.75, rho=1e-3)
    tf_admm.scale_rho_by_size(expected)
    assert len({round(w.rho_scale, 9) for w in wrappers(expected)}) == 3  # layers differ

    def scales_after(schedule, before=None, admm=None):
        model = _wrapped(0.75, rho=1e-3, schedule=schedule)
        if before:
            before(model)
        model.fit(
            x, y, epochs=1, batch_size=16, verbose=0, callbacks=[admm or tf_admm.UpdateADMM()]
        )
        return [w.rho_scale for w in wrappers(model)]

    want = [w.rho_scale for w in wrappers(expected)]
    assert scales_after(Gradual(rho_scaling="size")) == pytest.approx(want, rel=1e-6)
    assert scales_after(OneShot(rho_scaling="size")) == pytest.approx(want, rel=1e-6)
    assert scales_after(None) == [1.0, 1.0, 1.0]  # "auto" without data
    # "none" even with data
    none = scales_after(Gradual(rho_scaling="none"), admm=tf_admm.UpdateADMM(gradient_data=(x, y)))
    assert none == [1.0, 1.0, 1.0]
    mine = scales_after(  # set by the user before fit: kept
        Gradual(rho_scaling="size"),
        before=lambda m: wrappers(m)[0].set_rho_scale(3.0),
    )
    assert mine == [3.0, 1.0, 1.0]
    with pytest.raises(
        ValueError, match="rho_scaling='gradient'.*needs UpdateADMM\\(gradient_data"
    ):
        scales_after(Gradual(rho_scaling="gradient"))
    mixed = {"conv": Gradual(rho_scaling="size"), "hidden": Gradual(rho_scaling="none")}
    with pytest.raises(
        ValueError, match="different rho_scaling \\(\\['auto', 'none', 'size'\\]\\)"
    ):
        scales_after(mixed)


def test_compress_ramps_its_pruning_under_the_gradual_recipe_and_defaults_to_oneshot():
    x, y = small_data(64)  # 4 steps per epoch of 16
    model = tf_admm.compress(
        small_cnn(), sparsity={"hidden": 0.9}, bits={"hidden": 2}, schedule=Gradual()
    )
    compile_model(model)
    hidden = [w for w in wrappers(model) if w.layer.name == "hidden"][0]
    zeros = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            zeros.append(float(np.mean(to_np(hidden.z_vars[0]) == 0)))

    admm = tf_admm.UpdateADMM()
    model.fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0, callbacks=[admm, Watch()])
    # Z rises through intermediate sparsities to 0.9 and stays on the levels
    assert 0.0 < zeros[2] < zeros[10] < 0.9 and zeros[-1] == pytest.approx(0.9, abs=0.01)
    z = to_np(hidden.z_vars[0])  # ternary, one scale per output channel: +-alpha only
    assert max(len(np.unique(column[column != 0])) for column in z.T) <= 2
    assert np.count_nonzero(z) > 2 * z.shape[1]  # more kept weights than levels
    default = tf_admm.compress(small_cnn(), sparsity={"hidden": 0.9}, bits={"hidden": 2})
    assert wrappers(default)[0].schedule == OneShot()  # what quantization was measured with


class _ZAndSupport(keras.callbacks.Callback):
    """After each step: zeros of Z, zeros of the kernel the forward pass sees, and whether
    Z's support lies inside the ramp's support (first wrapper)."""

    def __init__(self):
        super().__init__()
        self.z_zeros, self.computed_zeros, self.nested = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        w = wrappers(self.model)[0]
        z, support = to_np(w.z_vars[0]), to_np(w.support_vars[0])
        self.z_zeros.append(int(z.size - np.count_nonzero(z)))
        self.computed_zeros.append(int((w.compressed_weights()[0] == 0).sum()))
        self.nested.append(bool(np.all(support[z != 0] == 1)))


def test_pull_target_projects_z_onto_the_target_while_the_mask_follows_the_ramp():
    x, y = small_data(64)
    schedule = OneShot(2, "step", ramp_steps=8, masking="ramp", pull="target")
    model = _wrapped({"hidden": 0.9}, schedule=schedule)
    hidden, rest = wrappers(model)[0], wrappers(model)[1:]
    assert len(hidden.support_vars) == len(hidden.constrained) == 1 and not rest
    record = _ZAndSupport()
    fit = dict(epochs=3, batch_size=16, shuffle=False, verbose=0)
    model.fit(x, y, **fit, callbacks=[tf_admm.UpdateADMM(), record])
    size, final = 2304, int(2304 * 0.9)
    assert record.z_zeros == [final] * 12  # the target from the initialization on
    assert record.computed_zeros == [  # the forward pass follows the cubic ramp
        int(np.floor(size * 0.9 * (1 - (1 - min((t - t % 2) / 8, 1.0)) ** 3) + 1e-9))
        for t in range(1, 13)
    ]
    assert all(record.nested)
    tf_admm.hard_project(model)
    assert (to_np(hidden.constrained[0]) == 0).sum() == final
    assert OneShot.from_config(schedule.get_config()) == schedule
    assert Gradual.from_config({"masking": "ramp"}).pull == "ramp"  # configs saved before
    assert not wrappers(_wrapped(0.5))[0].support_vars  # pull="ramp": Z's support is the ramp's
    with pytest.raises(ValueError, match="needs masking='ramp'.*pull='target', masking='end'"):
        Gradual(pull="target")
    with pytest.raises(ValueError, match="pull must be one of \\('ramp', 'target'\\)"):
        Gradual(masking="ramp", pull="final")
