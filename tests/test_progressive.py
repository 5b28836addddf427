"""The progressive driver: plans, seeding, the accuracy guard, resume, allocation, summary."""

import json
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, small_cnn, small_data

import tf_admm
from tf_admm import keras


def _dense(epochs=30):
    x, y = small_data(96)
    model = small_cnn()
    compile_model(model, keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, x, y


def _compressor(model, x, y, stages, **kwargs):
    kwargs.setdefault("verbose", 0)
    return tf_admm.ProgressiveCompressor(
        model,
        stages,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=(x, y),
        validation_data=(x, y),
        batch_size=32,
        **kwargs,
    )


def _zeros(model, name):
    return np.asarray(model.get_layer(name).get_weights()[0]) == 0


def test_plan_round_trip_through_json_file(tmp_path):
    stages = [
        tf_admm.Stage("inner", bits={"hidden": "binary"}, admm_epochs=3, unit="step"),
        tf_admm.Stage("all", sparsity={"hidden": 0.9, "conv": None}, bits=2, rho=1e-4),
    ]
    path = str(tmp_path / "plan.json")
    text = tf_admm.stages_to_json(stages, path)
    assert json.loads(text)[0]["bits"] == {"hidden": "binary"}
    assert tf_admm.stages_from_json(path) == stages
    assert tf_admm.stages_from_json(text) == stages


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(), r"sparsity=..., bits=... \(or both\), or flops_rate"),
        (dict(flops_rate=1.0), "flops_rate must be a number > 1"),
        (dict(flops_rate=2.0, sparsity=0.5), "not both"),
        (dict(sparsity=1.0), r"sparsity must be in \[0, 1\)"),
        (dict(bits=9), "2 <= bits <= 8"),
        (dict(sparsity=0.5, admm_epochs=-1), "admm_epochs must be an int >= 0"),
        (dict(sparsity=0.5, unit="batch"), "unit must be one of"),
        (dict(sparsity=0.5, rho_growth=0.5), "rho_growth must be >= 1"),
        (dict(sparsity=0.5, ramp=1.5), r"ramp must be a fraction in \[0, 1\]"),
        (dict(sparsity=0.5, rho=1e-2, rho_final=1e-3), "rho_final must be >= rho"),
        (dict(sparsity=0.5, schedule="linear"), "schedule must be one of"),
        (dict(sparsity=0.5, rho_by_gradient=True), "rho_by_gradient must be a number >= 0"),
        (dict(sparsity=0.5, optimizer="nope"), "nope"),
    ],
)
def test_stage_argument_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tf_admm.Stage("s", **kwargs)


def test_geometric_stages_end_on_the_target():
    stages = tf_admm.geometric_stages({"a": 0.99, "b": 0.5}, 3, admm_epochs=1)
    assert [round(s.sparsity["a"], 4) for s in stages] == [0.7846, 0.9536, 0.99]
    assert stages[-1].sparsity["b"] == pytest.approx(0.5)
    assert all(s.admm_epochs == 1 for s in stages)


def test_stages_are_seeded_and_keep_earlier_zeros(tmp_path):
    model, x, y = _dense()
    before = [w.copy() for w in model.get_weights()]
    stages = [
        tf_admm.Stage("half", sparsity={"hidden": 0.5}, admm_epochs=2, retrain_epochs=1),
        tf_admm.Stage(
            "more", sparsity={"hidden": 0.8, "conv": 0.5}, bits=3, admm_epochs=2, retrain_epochs=1
        ),
    ]
    matplotlib = pytest.importorskip("matplotlib")
    backend = matplotlib.get_backend()
    matplotlib.use("pdf")  # a notebook's inline backend, say: the figures must not switch it
    try:
        run = _compressor(model, x, y, stages, tolerance=1.0, directory=str(tmp_path))
        final = run.run()
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(backend)
    first = keras.models.load_model(str(tmp_path / "stage_01" / "model.keras"))
    assert _zeros(first, "hidden").mean() == 0.5
    zeros1, zeros2 = _zeros(first, "hidden"), _zeros(final, "hidden")
    assert zeros2[zeros1].all()  # pruned in stage 1 -> still zero in stage 2
    assert zeros2.mean() == int(0.8 * zeros2.size) / zeros2.size
    for name in ("conv", "hidden", "logits"):  # bits=3 everywhere: at most 7 values per channel
        kernel = final.get_layer(name).get_weights()[0]
        assert max(len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1])) <= 7
    assert [r["passed"] for r in run.reports] == [True, True]
    assert run.reports[1]["layers"]["hidden"] == pytest.approx(0.8, abs=1e-3)
    assert run.reports[1]["bits"] == {"conv": 3, "hidden": 3, "logits": 3}
    for a, b in zip(before, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(a, b)
    for name in ("state.json", "dense.keras", "stage_02/report.json", "stage_02/model.keras"):
        assert os.path.exists(tmp_path / name), name
    report = json.loads((tmp_path / "stage_02" / "report.json").read_text())
    assert len(report["history"]["admm"]["admm_primal_residual"]) == 2
    assert os.listdir(tmp_path / "tensorboard")
    assert os.path.exists(tmp_path / "figures" / "accuracy_vs_compression.png")


def test_guard_keeps_the_last_good_model_and_retries_smaller(capsys):
    model, x, y = _dense()
    capsys.readouterr()
    stages = [
        tf_admm.Stage("ok", sparsity={"hidden": 0.3}, admm_epochs=0, retrain_epochs=2),
        tf_admm.Stage("too far", sparsity=0.98, admm_epochs=0, retrain_epochs=0),
    ]
    run = _compressor(model, x, y, stages, tolerance=0.0, retries=1)
    final = run.run()
    assert capsys.readouterr().out == ""  # verbose=0 is silent
    names = [r["name"] for r in run.reports]
    assert names[:3] == ["ok", "too far", "too far (smaller)"]
    assert run.reports[0]["passed"] and not run.reports[1]["passed"]
    # the result is the last stage that passed
    last_good = [r for r in run.reports if r["passed"]][-1]
    assert tf_admm.report.layer_sparsity(final)["hidden"] == pytest.approx(
        last_good["layers"]["hidden"], abs=1e-6
    )
    smaller = run.reports[2]["config"]["sparsity"]
    assert 0.3 < smaller["hidden"] < 0.98 and 0 < smaller["conv"] < 0.98


def test_channel_stages_shrink_the_model_step_by_step_to_the_mac_target(tmp_path):
    model, x, y = _dense()
    before = [w.copy() for w in model.get_weights()]
    dense_macs = tf_admm.flops.total_macs(model)
    stages = [
        tf_admm.Stage("c1", flops_rate=1.4, admm_epochs=1, retrain_epochs=1),
        tf_admm.Stage(  # the second pulls towards its final channels from the start
            "c2",
            flops_rate=2.0,
            admm_epochs=1,
            retrain_epochs=1,
            admm_schedule=tf_admm.schedules.Gradual(masking="ramp", pull="target"),
        ),
    ]
    assert tf_admm.stages_from_json(tf_admm.stages_to_json(stages)) == stages
    run = _compressor(model, x, y, stages, tolerance=1.0, directory=str(tmp_path))
    final = run.run()
    with warnings.catch_warnings():  # a stage's file loads quietly (no optimizer mismatch)
        warnings.simplefilter("error")
        first = keras.models.load_model(str(tmp_path / "stage_01" / "model.keras"))
    macs = [tf_admm.flops.total_macs(m) for m in (first, final)]
    assert macs[0] <= dense_macs / 1.4 and macs[1] <= dense_macs / 2.0 and macs[1] < macs[0]
    assert [r["macs"] for r in run.reports] == macs
    # physically smaller, not masked: fewer units and filters, no wrappers, no zero channels
    widths = [(m.get_layer("conv").filters, m.get_layer("hidden").units) for m in (first, final)]
    assert widths[1][0] <= widths[0][0] <= 4 and widths[1][1] <= widths[0][1] <= 16
    assert sum(widths[1]) < sum(widths[0]) < 20
    assert not tf_admm.find_wrappers(final)
    assert all(np.abs(final.get_layer("hidden").get_weights()[0]).sum(0) > 0)
    for a, b in zip(before, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(a, b)


def test_a_channel_stage_masks_along_its_ramp_like_prune_channels():
    from tf_admm.progressive.stage import TrainData, stage_schedule

    train = TrainData(small_data(96), batch_size=32)
    channels = stage_schedule(tf_admm.Stage("c", flops_rate=2.0, ramp=0.5), train)
    weights = stage_schedule(tf_admm.Stage("w", sparsity=0.5, ramp=0.5), train)
    assert (channels.masking, weights.masking) == ("ramp", "end")
    assert channels.ramp_steps == weights.ramp_steps == 6  # half of 4 epochs of 3 steps


def test_a_channel_stage_below_what_its_seed_has_is_refused():
    from tf_admm.progressive.stage import TrainData, run_stage

    model, x, y = _dense(epochs=1)
    dense_macs = tf_admm.flops.total_macs(model)
    stage = tf_admm.Stage("c", flops_rate=2.0, admm_epochs=0, retrain_epochs=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    half, _, _ = run_stage(model, stage, loss=loss, train=TrainData((x, y), 32), verbose=0)
    assert tf_admm.flops.total_macs(half) <= dense_macs / 2
    again = tf_admm.Stage("again", flops_rate=1.5, admm_epochs=0, retrain_epochs=0)
    with pytest.raises(ValueError, match="which its seed already has"):
        run_stage(half, again, loss=loss, train=TrainData((x, y), 32), reference_macs=dense_macs)


def test_guard_retries_a_channel_stage_halfway_in_mac_rate():
    model, _, _ = _dense(epochs=1)
    dense_macs = tf_admm.flops.total_macs(model)
    smaller = tf_admm.progressive.guard.smaller_stage(
        tf_admm.Stage("c", flops_rate=4.0), 0, model, [], dense_macs
    )
    assert smaller.flops_rate == pytest.approx(2.0) and smaller.name == "c (smaller)"
    barely = tf_admm.Stage("c", flops_rate=1.01)
    assert tf_admm.progressive.guard.smaller_stage(barely, 0, model, [], dense_macs) is None


class _Kill(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_epoch_end(self, epoch, logs=None):
        self.calls += 1
        if self.calls == 4:  # stage 1: 2 + 1 epochs; dies after stage 2's first ADMM epoch
            raise RuntimeError("killed")


class _CountFits(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1


def test_a_killed_run_resumes_without_redoing_finished_stages(tmp_path):
    model, x, y = _dense()
    stages = [
        tf_admm.Stage("one", sparsity={"hidden": 0.5}, admm_epochs=2, retrain_epochs=1),
        tf_admm.Stage("two", sparsity={"hidden": 0.75}, admm_epochs=2, retrain_epochs=1),
    ]
    with pytest.raises(RuntimeError, match="killed"):
        _compressor(
            model, x, y, stages, directory=str(tmp_path), tolerance=1.0, callbacks=[_Kill()]
        ).run()
    stage1 = (tmp_path / "stage_01" / "model.keras").read_bytes()
    assert json.loads((tmp_path / "state.json").read_text())["done"] == 1
    counter = _CountFits()
    run = _compressor(
        model, x, y, stages, directory=str(tmp_path), tolerance=1.0, callbacks=[counter]
    )
    final = run.run()
    assert counter.fits == 2  # stage 2's ADMM (resumed) and retraining only
    assert (tmp_path / "stage_01" / "model.keras").read_bytes() == stage1
    assert [r["name"] for r in run.reports] == ["one", "two"]
    assert _zeros(final, "hidden").mean() == 0.75
    with pytest.raises(ValueError, match="another plan"):
        _compressor(model, x, y, stages[:1], directory=str(tmp_path)).run()


def test_allocation_meets_the_global_target_with_floors():
    model, _, _ = _dense(epochs=1)
    targets = tf_admm.allocate_sparsity(model, rate=10, min_density=0.05, min_keep=4)
    sizes = {"conv": 36, "hidden": 2304, "logits": 48}
    kept = {n: sizes[n] - int(np.floor(sizes[n] * s + 1e-9)) for n, s in targets.items()}
    assert sum(kept.values()) == round(sum(sizes.values()) / 10)
    assert all(kept[n] >= max(np.ceil(0.05 * sizes[n]), 4) for n in sizes)
    floored = tf_admm.allocate_sparsity(model, rate=10, min_density=0.09, min_keep=4)
    assert 2304 - int(np.floor(2304 * floored["hidden"] + 1e-9)) >= np.ceil(0.09 * 2304)
    pruned = tf_admm.prune_low_magnitude(model, targets)
    tf_admm.hard_project(pruned)
    total = tf_admm.summary(pruned, print_fn=None)["total"]
    assert total["nonzeros"] == sum(kept.values())
    assert "total" in tf_admm.allocation_table(model, targets)
    with pytest.raises(ValueError, match="floors keep"):
        tf_admm.allocate_sparsity(model, rate=1000, min_density=0.5)
    with pytest.raises(ValueError, match="rate must be"):
        tf_admm.allocate_sparsity(model, rate=0.5)


def test_default_floors_scale_with_the_rate_and_never_cap_it():
    """min_density="auto" is min(2%, 0.1 / rate): 2% at low rates; at high rates the floors
    take at most a tenth of the budget, so rates the old fixed 2% refused are allocated."""
    model, _, _ = _dense(epochs=1)
    sizes = {"conv": 36, "hidden": 2304, "logits": 48}

    def kept(targets):
        return {n: sizes[n] - int(np.floor(sizes[n] * s + 1e-9)) for n, s in targets.items()}

    low = tf_admm.allocate_sparsity(model, rate=10, min_keep=0)
    assert low == tf_admm.allocate_sparsity(model, rate=10, min_density=0.02, min_keep=0)
    with pytest.raises(ValueError, match="floors keep"):  # the old default at 60x
        tf_admm.allocate_sparsity(model, rate=60, min_density=0.02, min_keep=0)
    high = kept(tf_admm.allocate_sparsity(model, rate=60, min_keep=0))
    assert sum(high.values()) == round(sum(sizes.values()) / 60)
    assert all(high[n] >= np.ceil(0.1 / 60 * sizes[n]) for n in sizes)
    with pytest.raises(ValueError, match="min_density must be 'auto' or a number in"):
        tf_admm.allocate_sparsity(model, rate=10, min_density="high")


def test_allocation_of_a_wrapped_model_ranks_its_current_weights():
    model, _, _ = _dense(epochs=1)
    plain = tf_admm.allocate_sparsity(model, rate=10, min_density=0.0, min_keep=0)
    wrapped = tf_admm.prune_low_magnitude(model, {"hidden": 0.5})  # one layer wrapped
    assert tf_admm.allocate_sparsity(wrapped, rate=10, min_density=0.0, min_keep=0) == plain
    layer = tf_admm.find_wrappers(wrapped)[0].layer
    layer.kernel.assign(layer.kernel * 0.0)  # its weights now rank last everywhere
    moved = tf_admm.allocate_sparsity(wrapped, rate=10, min_density=0.0, min_keep=0)
    assert moved["hidden"] > plain["hidden"]


def test_allocation_counts_every_kernel_of_a_bidirectional_layer():
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi"),
            keras.layers.Dense(2, name="d"),
        ]
    )
    targets = tf_admm.allocate_sparsity(model, rate=4, min_density=0.0, min_keep=0)
    sizes = {"bi": 2 * (3 * 16 + 4 * 16), "d": 8 * 2}  # both directions: 224 weights
    kept = sum(n - int(np.floor(n * targets[k] + 1e-9)) for k, n in sizes.items())
    assert kept == round(sum(sizes.values()) / 4)


def test_summary_numbers_equal_counted_weights():
    model, x, y = _dense(epochs=1)
    wrapped = tf_admm.compress(model, sparsity={"hidden": 0.9}, bits={"hidden": 4, "conv": 2})
    tf_admm.hard_project(wrapped)
    lines = []
    table = tf_admm.summary(wrapped, print_fn=lines.append)
    stripped = tf_admm.strip_admm(wrapped)
    for row in table["layers"]:
        kernel = stripped.get_layer(row["layer"]).get_weights()[0]
        assert row["weights"] == kernel.size
        assert row["nonzeros"] == np.count_nonzero(kernel)
    bits = {r["layer"]: r["bits"] for r in table["layers"]}
    assert bits == {"conv": 2, "hidden": 4, "logits": 32}
    assert table["total"]["nonzeros"] == sum(
        np.count_nonzero(stripped.get_layer(n).get_weights()[0]) for n in bits
    )
    assert (
        tf_admm.summary(stripped, print_fn=None)["total"]["nonzeros"] == table["total"]["nonzeros"]
    )
    assert any(line.startswith("total") for line in lines)
    assert tf_admm.summary(model, print_fn=None)["total"]["pruning_rate"] == 1.0


def test_binarize_inner_layers_first_then_all():
    model, x, y = _dense(epochs=5)
    stages = [
        tf_admm.Stage("inner", bits={"hidden": "binary"}, admm_epochs=1, retrain_epochs=1),
        tf_admm.Stage("all", bits="binary", admm_epochs=1, retrain_epochs=1),
    ]
    run = _compressor(model, x, y, stages, tolerance=1.0)
    final = run.run()
    assert run.reports[0]["bits"] == {"hidden": 1}
    assert run.reports[1]["bits"] == {"conv": 1, "hidden": 1, "logits": 1}
    for name in ("conv", "hidden", "logits"):
        kernel = final.get_layer(name).get_weights()[0]
        for c in range(kernel.shape[-1]):
            values = np.unique(kernel[..., c])
            assert len(values) == 2 and values[0] == -values[1]


def test_guard_retries_a_failed_quantization_step_with_more_bits():
    model, x, y = _dense()
    stages = [tf_admm.Stage("binary", bits="binary", admm_epochs=0, retrain_epochs=0)]
    run = _compressor(model, x, y, stages, tolerance=0.0, retries=1)
    run.run()
    names = [r["name"] for r in run.reports]
    assert names[:2] == ["binary", "binary (more bits)"]
    assert not run.reports[0]["passed"]
    retry = run.reports[1]["config"]
    assert retry["bits"] == 5 and retry["scheme"] == "uniform"
    assert set(run.reports[1]["bits"].values()) == {5}


def test_more_bits_halves_the_way_to_8_and_checks_its_argument():
    assert [tf_admm.progressive.more_bits(b) for b in ("binary", "ternary", 2, 3, 6, 7, 8)] == [
        5,
        5,
        5,
        6,
        7,
        8,
        None,
    ]
    with pytest.raises(ValueError, match="bits must be 1..8"):
        tf_admm.progressive.more_bits(9)


def test_repeated_bit_retries_move_halfway_from_the_last_good_bits():
    model, x, y = _dense()
    stages = [tf_admm.Stage("binary", bits="binary", admm_epochs=0, retrain_epochs=1)]
    run = _compressor(model, x, y, stages, tolerance=0.0, retries=4)
    run.run()
    retries = [r for r in run.reports if r["name"] == "binary (more bits)"]
    # float -> 5 passes, binary fails again -> halfway from 5 is 3, then from 3 it is 2;
    # no retry repeats an earlier one
    assert [r["config"]["bits"] for r in retries] == [5, 3, 2]
    assert all(not r["passed"] for r in run.reports if r["name"] == "binary")


def test_a_ramped_stage_reaches_its_targets_exactly():
    model, x, y = _dense(epochs=5)
    stage = tf_admm.Stage(
        sparsity={"hidden": 0.9},
        admm_epochs=2,
        retrain_epochs=1,
        update_every=1,
        unit="step",
        ramp=1.0,
        rho_final=0.1,
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = tf_admm.progressive.stage.TrainData((x, y), batch_size=32)
    result, history, _ = tf_admm.progressive.stage.run_stage(
        model, stage, loss=loss, train=data, verbose=0
    )
    assert _zeros(result, "hidden").sum() == int(2304 * 0.9)
    # after the first epoch Z is still on the way (half the ramp): W is nearer to it than to
    # the final targets that a stage without the ramp projects onto
    config = dict(stage.get_config(), ramp=0.0)
    _, plain, _ = tf_admm.progressive.stage.run_stage(
        model, tf_admm.Stage.from_config(config), loss=loss, train=data, verbose=0
    )
    first = history["admm"]["admm_primal_residual"][0]
    # rho_final: rho 1e-3 -> 0.1 over the 6 Z/U updates of the phase (3 steps per epoch)
    assert history["admm"]["admm_rho"][-1] == pytest.approx(0.1, rel=1e-4)
    assert first < plain["admm"]["admm_primal_residual"][0] - 0.1  # 0.72 against 0.95
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(32)
    with pytest.raises(ValueError, match="cardinality is unknown"):
        tf_admm.progressive.stage.run_stage(
            model, stage, loss=loss, train=tf_admm.progressive.stage.TrainData(unknown), verbose=0
        )


def _learning_rate_config(model):
    return model.optimizer.get_config()["learning_rate"]


@pytest.mark.parametrize(
    "schedule,fields,admm_decays,retrain_decays",
    [
        ("auto", dict(), True, True),
        ("auto", dict(ramp=0.7), False, True),  # W must follow Z to the end of the ramp
        ("cosine", dict(ramp=0.7), True, True),
        ("constant", dict(), False, False),
        ("auto", dict(admm_schedule=tf_admm.schedules.Gradual()), False, True),
        ("auto", dict(admm_schedule={"hidden": tf_admm.schedules.OneShot()}), True, True),
    ],
)
def test_schedule_decays_each_phase_as_documented(schedule, fields, admm_decays, retrain_decays):
    model = small_cnn()  # compiling needs no trained weights
    x, y = small_data(96)
    if "admm_schedule" not in fields:
        fields["unit"] = "step"
    stage = tf_admm.Stage(sparsity={"hidden": 0.5}, schedule=schedule, **fields)
    if "admm_schedule" not in fields:
        fields["admm_schedule"] = tf_admm.progressive.stage.stage_schedule(
            stage, tf_admm.progressive.stage.TrainData((x, y), batch_size=32)
        )
    wrapped = tf_admm.progressive.stage.wrap_for_stage(model, stage, None, fields["admm_schedule"])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    compile_phase = tf_admm.progressive.stage.compile_for_phase
    for retrain, decays in ((False, admm_decays), (True, retrain_decays)):
        compile_phase(wrapped, stage, loss, "accuracy", steps=3, epochs=2, retrain=retrain)
        rate = _learning_rate_config(wrapped)
        assert isinstance(rate, dict) == decays, (retrain, rate)
        if not decays:
            assert rate == pytest.approx(1e-3)


def test_stage_takes_its_schedule_as_an_object_saved_in_the_plan(tmp_path):
    gradual = tf_admm.schedules.Gradual(ramp_steps=4, update_every=2, rho_final=0.05)
    stages = [
        tf_admm.Stage("one", sparsity=0.5, admm_schedule=gradual),
        tf_admm.Stage("by layer", bits=4, admm_schedule={"hidden": tf_admm.schedules.OneShot()}),
        tf_admm.Stage("channels", flops_rate=1.5, admm_schedule=tf_admm.schedules.OneShot()),
    ]
    back = tf_admm.stages_from_json(tf_admm.stages_to_json(stages, str(tmp_path / "plan.json")))
    assert back == stages
    assert back[0].admm_schedule == gradual
    assert back[1].admm_schedule == {"hidden": tf_admm.schedules.OneShot()}
    with pytest.raises(ValueError, match=r"not both\. Received: .*'ramp': 0\.5"):
        tf_admm.Stage(sparsity=0.5, ramp=0.5, admm_schedule=gradual)
    with pytest.raises(ValueError, match="one admm_schedule for every wrapper"):
        tf_admm.Stage(flops_rate=2.0, admm_schedule={"conv": gradual})
    with pytest.raises(ValueError, match="A schedule must be"):
        tf_admm.Stage(sparsity=0.5, admm_schedule="gradual")


def _run_stage(model, stage, x, y, store=None):
    data = tf_admm.progressive.stage.TrainData((x, y), batch_size=32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return tf_admm.progressive.stage.run_stage(
        model, stage, loss=loss, train=data, store=store, verbose=0
    )[0]


def test_a_stage_schedule_object_equal_to_its_fields_gives_the_same_weights():
    model, x, y = _dense(epochs=5)
    fields = tf_admm.Stage(sparsity={"hidden": 0.8}, admm_epochs=2, retrain_epochs=1)
    same = tf_admm.schedules.OneShot(rho_scaling="none")  # what the default fields mean
    by_object = tf_admm.Stage.from_config(dict(fields.get_config(), admm_schedule=same))
    a = _run_stage(model, fields, x, y)
    b = _run_stage(model, by_object, x, y)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_stage_wrappers_keep_the_schedule_per_layer(tmp_path):
    model, x, y = _dense(epochs=5)
    gradual = tf_admm.schedules.Gradual(update_every=1)
    stage = tf_admm.Stage(
        sparsity={"hidden": 0.9, "conv": 0.5},
        admm_epochs=2,
        retrain_epochs=1,
        admm_schedule={"hidden": gradual},
    )
    store = tf_admm.progressive.store.RunStore(tmp_path)
    result = _run_stage(model, stage, x, y, store)
    assert _zeros(result, "hidden").sum() == int(2304 * 0.9)
    assert _zeros(result, "conv").sum() == int(36 * 0.5)
    projected = store.load_model("stage/projected.keras")
    kept = {w.layer.name: w.schedule for w in tf_admm.updates.find_wrappers(projected)}
    assert kept["hidden"] == gradual
    assert kept["conv"] == tf_admm.schedules.Gradual()  # left out: the default for pruning
    # the given schedules scale rho by gradient ("auto" with the stage's batches)
    scales = {w.layer.name: w.rho_scale for w in tf_admm.updates.find_wrappers(projected)}
    assert scales["hidden"] != 1.0 and scales["conv"] != 1.0
