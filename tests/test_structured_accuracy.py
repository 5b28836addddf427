"""benchmarks/structured_accuracy.py's bookkeeping: which rows a resumed run skips, and the
arguments it refuses before loading anything."""

import argparse
import sys

import pytest
import structured_accuracy as S


def _args(**changes) -> argparse.Namespace:
    settings = dict(
        network="mobilenet_v2_small",
        rho_final=None,
        update_every="auto",
        prune_every=100,
        ramp_epochs=2,
        retrain_epochs=4,
        dense_epochs=8,
        train_size=30000,
        round_to=1,
    )
    return argparse.Namespace(**{**settings, **changes})


def _row(method="structured_admm_ramp_masked", seed=0, **changes) -> dict:
    row = {
        "network": "mobilenet_v2_small",
        "kind": "accuracy",
        "method": method,
        "target_rate": 2.0,
        "seed": seed,
        "retrain_schedule": "cosine",
        "rho_final": None,
        "ramp_epochs": 2,
        "epochs": 6,
        "dense_epochs": 8,
        "train_size": 30000,
        "masking": S.MASKING[method][0],
    }
    return {**row, **changes}


def test_a_run_is_done_only_with_the_same_settings():
    rows = [
        _row(seed=0),  # written before round_to was recorded: the default allocation
        _row(seed=1, round_to=16),
        _row(method="l1_gradual", seed=0, round_to=16),
        _row(seed=2, epochs=12, ramp_epochs=4),  # another budget
        _row(seed=2, network="resnet14_w8"),
        _row(seed=2, masking="end"),  # the method masked otherwise then: run again
        {"kind": "latency", "network": "mobilenet_v2_small", "method": "dense"},
    ]
    assert S.done_runs(rows, _args()) == {("structured_admm_ramp_masked", 2.0, 0)}
    assert S.done_runs(rows, _args(round_to=16)) == {
        ("structured_admm_ramp_masked", 2.0, 1),
        ("l1_gradual", 2.0, 0),
    }
    assert S.done_runs(rows, _args(ramp_epochs=4, retrain_epochs=8)) == {
        ("structured_admm_ramp_masked", 2.0, 2)
    }
    # --rho-final and --update-every are ADMM settings: they keep L1's rows, not ADMM's
    assert S.done_runs(rows, _args(round_to=16, rho_final=1.0)) == {("l1_gradual", 2.0, 0)}
    assert S.done_runs(rows, _args(round_to=16, update_every=20)) == {("l1_gradual", 2.0, 0)}
    # a row written before update_every was recorded ran with the library's "auto"
    assert S.done_runs([_row(), _row(seed=1, update_every=20)], _args(update_every=20)) == {
        ("structured_admm_ramp_masked", 2.0, 1)
    }
    # --prune-every is the L1 baselines' (rows before it: every 100 steps)
    assert S.done_runs(rows, _args(round_to=16, prune_every=20)) == {
        ("structured_admm_ramp_masked", 2.0, 1)
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--round-to", "0"], "--round-to must be at least 1. Received: 0"),
        (
            ["--round-to", "16", "--methods", "structured_admm_progressive"],
            "allocates each stage itself",
        ),
        (
            ["--train-size", "55000"],
            "at most the 60000 training images (the validation images are the last ones, never "
            "trained on). Received: 55000 + 10000",
        ),
        (["--validation-size", "-1"], "Received: 30000 + -1"),
        (
            ["--validation-size", "0", "--methods", "structured_admm_progressive"],
            "validates its stages on the held-out images, never on the test set",
        ),
        (["--update-every", "0"], "must be 'auto' or an int >= 1. Received: '0'"),
        (["--prune-every", "0"], "--prune-every must be at least 1. Received: 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["structured_accuracy.py", *argv])
    monkeypatch.setattr(S, "load", lambda: pytest.fail("data loaded before the check"))
    with pytest.raises(SystemExit) as exit_info:
        S.main()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_l1_baseline_with_readers_keeps_the_channel_its_readers_weigh_most():
    """A conv whose second channel has the smaller kernel but the larger weights in the Dense
    that reads it through a Flatten: plain group L1 keeps the first, with readers the second."""
    import numpy as np

    import tf_admm
    from tf_admm import keras

    inputs = keras.Input((3, 3, 1))
    conv = keras.layers.Conv2D(2, 3, use_bias=False)
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(conv(inputs))))
    (group,) = tf_admm.channel_groups(model).free
    kept = {}
    for readers in (False, True):
        conv.set_weights([np.stack([np.full((3, 3, 1), 1.0), np.full((3, 3, 1), 0.5)], -1)])
        dense.set_weights([np.array([[1.0], [20.0]])])  # 9 + 4.5 against 1 + 20 with readers
        pruner = S.GroupL1Pruning([group], {0: 0.5}, ramp_steps=1, readers=readers)
        pruner._prune(1.0)
        kept[readers] = np.flatnonzero(np.abs(conv.get_weights()[0]).sum((0, 1, 2)))
    assert kept[False].tolist() == [0]
    assert kept[True].tolist() == [1]


def test_the_table_pairs_each_method_with_l1_on_the_same_seeds():
    def row(method, seed, test, **changes):
        return _row(method, seed, test_accuracy=test, dense_accuracy=0.9, flops_rate=2.0, **changes)

    rows = [
        row("l1_gradual", 0, 0.900),
        row("l1_gradual", 1, 0.910),
        row("structured_admm_ramp_masked", 0, 0.700),  # run again below: the later row counts
        row("structured_admm_ramp_masked", 0, 0.905, validation_accuracy=0.92),
        row("structured_admm_ramp_masked", 1, 0.925, validation_accuracy=0.94),
        row("structured_admm_ramp_masked", 2, 0.990, masking="end"),  # stale: not read
        row("structured_admm_ramp_masked", 0, 0.880, rho_final=1.0),  # another variant
        row("structured_admm_ramp_masked", 1, 0.930, update_every=20),  # and another
        row("l1_gradual", 1, 0.920, prune_every=20),  # L1 on another schedule: not the base
        row("structured_admm_ramp_masked", 0, 0.5, epochs=12, ramp_epochs=4),  # another setting
    ]
    text = S.table(rows)
    assert text.count("| l1_gradual | default |") == 1  # no L1 row in the 4 + 8 setting
    assert "mobilenet_v2_small, dense 8 epochs (90.00 ± 0.00%), 2 + 4 epochs" in text
    assert (
        "| structured_admm_ramp_masked | default | 0 1 | 2.00x | 91.50 ± 1.41 | 93.00 ± 1.41 | "
        "+1.00 ± 0.71 (2) |" in text
    )
    assert (
        "| structured_admm_ramp_masked | rho_final=1 | 0 | 2.00x | 88.00 ± 0.00 |  | "
        "-2.00 ± 0.00 (1) |" in text
    )
    assert (
        "| structured_admm_ramp_masked | update_every=20 | 1 | 2.00x | 93.00 ± 0.00 |  | "
        "+2.00 ± 0.00 (1) |" in text
    )
    assert (
        "| l1_gradual | prune_every=20 | 1 | 2.00x | 92.00 ± 0.00 |  | +1.00 ± 0.00 (1) |" in text
    )
    assert "| l1_gradual | default | 0 1 | 2.00x | 90.50 ± 0.71 |  |  |" in text
    assert "| structured_admm_ramp_masked | default | 0 | 2.00x | 50.00 ± 0.00 |  |  |" in text


def test_the_progressive_method_validates_on_the_held_out_images(monkeypatch):
    """Its stages' reports are measured on the runner's second data item (the held-out
    images main passes), not on the test set."""
    import numpy as np

    seen = {}

    class Driver:
        def __init__(self, model, stages, **kwargs):
            seen.update(kwargs, stages=stages)

        def run(self):
            return "shrunk"

    monkeypatch.setattr(S.tf_admm, "ProgressiveCompressor", Driver)
    train = (np.zeros((256, 28, 28, 1)), np.zeros(256))
    held_out = (np.ones((10, 28, 28, 1)), np.ones(10))
    out = S.run_admm_progressive("dense", 3.0, (train, held_out), 0, 4, 2, {"update_every": 7})
    assert out == "shrunk"
    assert seen["validation_data"] is held_out
    assert seen["train_data"][0] is train[0]
    assert [s.update_every for s in seen["stages"]] == [7, 7]
