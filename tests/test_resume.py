"""Crash safety and exact resume: interrupted runs end where uninterrupted ones do, and damaged
files never leave a directory that cannot resume."""

import json
import warnings

import numpy as np
import pytest
from conftest import compile_model, small_cnn, small_data, to_np, wrappers

import tf_admm
from tf_admm import keras
from tf_admm.progressive.stage import TrainData
from tf_admm.progressive.store import RunStore


class _Interrupt(keras.callbacks.Callback):
    """Raises at the end of the ``at``-th epoch (counted over every fit it sees), before the
    phase backup of that epoch is written: like a kill during that epoch."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("killed")


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def _dense():
    x, y = small_data(96)
    model = small_cnn()
    compile_model(model, keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    return model, x, y


STAGES = [
    tf_admm.Stage(
        "one",
        sparsity={"hidden": 0.5},
        admm_epochs=3,
        retrain_epochs=2,
        update_every=2,
        unit="step",
    ),
    tf_admm.Stage(
        "two",
        sparsity={"hidden": 0.8, "conv": 0.5},
        admm_epochs=3,
        retrain_epochs=4,
        update_every=2,
        unit="step",
    ),
]


def _run(model, x, y, directory, callbacks=(), stages=STAGES):
    return tf_admm.ProgressiveCompressor(
        model,
        stages,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=(x, y),
        validation_data=(x, y),
        batch_size=32,
        tolerance=1.0,
        directory=str(directory),
        callbacks=list(callbacks),
        verbose=0,
    )


def _final_weights(run):
    return [np.asarray(w) for w in run.model.get_weights()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model, x, y = _dense()
    run = _run(model, x, y, tmp_path_factory.mktemp("full"))
    run.run()
    return model, x, y, _final_weights(run), run.reports


def _assert_same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("kill_at", [2, 5, 9])  # stage 1 ADMM, stage 1 retrain, stage 2 ADMM
def test_resumed_run_equals_the_uninterrupted_one(tmp_path, uninterrupted, kill_at):
    model, x, y, expected, reports = uninterrupted
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path, [_Interrupt(kill_at)]).run()
    counter = _CountEpochs()
    run = _run(model, x, y, tmp_path, [counter])
    run.run()
    _assert_same(_final_weights(run), expected)
    # 5 + 7 epochs in all: the kill lost the epoch it hit, nothing more was redone
    assert counter.epochs == 12 - (kill_at - 1)
    assert [len(r["history"]["retrain"]["loss"]) for r in run.reports] == [2, 4]
    assert [r["accuracy"] for r in run.reports] == [r["accuracy"] for r in reports]


def test_resumed_in_admm_phase_retrains_all_its_epochs(tmp_path, uninterrupted):
    # Keras' BackupAndRestore left the model's initial epoch set for the next fit, so a stage
    # resumed in its ADMM phase retrained 3 of its 4 epochs under Keras 3
    model, x, y, _, _ = uninterrupted
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path, [_Interrupt(7)]).run()  # stage 2, second ADMM epoch
    run = _run(model, x, y, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.run()
    history = run.reports[1]["history"]
    assert len(history["admm"]["loss"]) == 3 and len(history["retrain"]["loss"]) == 4
    # the stage models are loaded without their optimizer (each phase compiles its own): the
    # saved one no longer fails to load into it with Keras 3's "Skipping variable loading"
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]


@pytest.mark.parametrize("damaged", ["stage_02/projected.keras", "stage_02/retrain_backup.npz"])
def test_truncated_files_are_recovered(tmp_path, uninterrupted, damaged):
    model, x, y, expected, _ = uninterrupted
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path, [_Interrupt(10)]).run()  # stage 2, first retrain epoch
    path = tmp_path / damaged
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="damaged"):
        run = _run(model, x, y, tmp_path)
        run.run()
    assert (tmp_path / (damaged + ".damaged")).exists()
    _assert_same(_final_weights(run), expected)


def test_damaged_stage_model_falls_back_to_the_stage_before(tmp_path, uninterrupted):
    model, x, y, expected, _ = uninterrupted
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path, [_Interrupt(8)]).run()
    (tmp_path / "stage_01" / "model.keras").write_bytes(b"PK\x03\x04 not a model")
    (tmp_path / "state.json").write_text("{ half a json")  # and the state too
    with pytest.warns(UserWarning, match="damaged"):
        run = _run(model, x, y, tmp_path)
        run.run()
    _assert_same(_final_weights(run), expected)
    assert json.loads((tmp_path / "state.json").read_text())["done"] == 2


def test_update_count_survives_backup_and_restore_in_step_mode(tmp_path):
    # 4 steps per epoch, Z/U every 3 steps, 6 epochs: 8 updates. Before the fix the callback
    # read the step counter before BackupAndRestore restored it, and a resumed fit made 7.
    x, y = small_data(64)
    kw = dict(epochs=6, batch_size=16, shuffle=False, verbose=0)

    def wrapped():
        keras.utils.set_random_seed(0)
        model = tf_admm.prune_low_magnitude(
            small_cnn(), {"hidden": 0.75}, schedule=tf_admm.schedules.OneShot(3, "step")
        )
        compile_model(model)
        return model

    def update():
        return tf_admm.UpdateADMM()

    full = wrapped()
    full.fit(x, y, callbacks=[update()], **kw)
    backup = str(tmp_path / "backup")
    model = wrapped()
    with pytest.raises(RuntimeError, match="killed"):
        model.fit(
            x,
            y,
            callbacks=[update(), keras.callbacks.BackupAndRestore(backup), _Interrupt(2)],
            **kw,
        )
    fresh = wrapped()
    fresh.fit(x, y, callbacks=[update(), keras.callbacks.BackupAndRestore(backup)], **kw)
    a, b = wrappers(full)[0], wrappers(fresh)[0]
    assert int(to_np(a.num_updates)) == int(to_np(b.num_updates)) == 8
    assert int(to_np(b.step)) == 24
    assert float(to_np(a.rho)) == pytest.approx(float(to_np(b.rho)))
    for u, v in zip(full.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_train_data_order_depends_only_on_seed_and_epoch():
    x, y = np.arange(20, dtype="float32"), np.arange(20)
    data = TrainData((x, y), batch_size=8, seed=3)
    whole = [b[1].numpy().tolist() for b in data.epochs(0, 3)]
    assert len(whole) == 9 and data.steps == 3
    assert [b[1].numpy().tolist() for b in data.epochs(2, 3)] == whole[6:]
    assert sorted(sum(whole[:3], [])) == list(range(20))  # each epoch visits every example
    assert whole[:3] != whole[3:6]  # anew every epoch
    other = [b[1].numpy().tolist() for b in TrainData((x, y), 8, seed=4).epochs(0, 1)]
    assert other != whole[:3]
    with pytest.raises(ValueError, match="same number"):
        TrainData((x, y[:5]))


def test_run_store_writes_atomically_and_reads_verified(tmp_path):
    store = RunStore(tmp_path)
    store.write_json("a/state.json", {"done": 2})
    assert store.read_json("a/state.json") == {"done": 2}
    assert not list(tmp_path.glob("a/*.partial"))
    store.save_arrays("b.npz", {"w": np.ones(3)})
    np.testing.assert_array_equal(store.load_arrays("b.npz")["w"], np.ones(3))
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="damaged"):
        assert store.load_arrays("b.npz") is None
    assert (tmp_path / "b.npz.damaged").exists() and not (tmp_path / "b.npz").exists()
    model = small_cnn()
    store.save_model("m.keras", model)
    assert store.load_model("m.keras") is not None
    (tmp_path / "m.keras").write_bytes((tmp_path / "m.keras").read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged"):
        assert store.load_model("m.keras") is None
    with pytest.raises(ValueError, match="end in .keras"):
        store.save_model("m.h5", model)


def test_a_plan_saved_without_newer_stage_options_still_resumes(tmp_path, uninterrupted):
    model, x, y, expected, _ = uninterrupted
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path, [_Interrupt(4)]).run()
    state = json.loads((tmp_path / "state.json").read_text())
    for key in ("original_plan", "plan"):  # as written by a version without these options
        for config in state[key]:
            del config["ramp"], config["rho_final"], config["rho_by_gradient"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    run = _run(model, x, y, tmp_path)
    run.run()
    _assert_same(_final_weights(run), expected)


def test_rho_by_gradient_resumes_to_the_uninterrupted_run(tmp_path):
    # the scales are measured again on the same first batches and the phase backup restores
    # rho and the rho_scale variable
    stages = [
        tf_admm.Stage.from_config(dict(s.get_config(), rho_by_gradient=1.0, rho_final=0.05))
        for s in STAGES
    ]
    keras.utils.set_random_seed(0)
    model, x, y = _dense()
    full = _run(model, x, y, tmp_path / "full", stages=stages)
    full.run()
    plain = _run(model, x, y, tmp_path / "plain")
    plain.run()
    rho = [r["history"]["admm"]["admm_rho"][0] for r in (full.reports[1], plain.reports[1])]
    assert rho[0] > rho[1] * 1.05  # the largest layer scale is above 1: the option is on
    with pytest.raises(RuntimeError, match="killed"):
        _run(model, x, y, tmp_path / "cut", [_Interrupt(8)], stages=stages).run()
    resumed = _run(model, x, y, tmp_path / "cut", stages=stages)
    resumed.run()
    _assert_same(_final_weights(resumed), _final_weights(full))
