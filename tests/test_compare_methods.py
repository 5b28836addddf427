"""The method-comparison harness: schema of its JSON, resume, subsets, the summary."""

import json
import os

import compare_methods
import pytest
import tensorflow as tf

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist.npz")


@pytest.mark.skipif(not os.path.exists(DATA), reason="needs ../shared/data/mnist.npz")
def test_quick_grid_writes_the_schema_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "runs.json")
    args = [
        "--quick",
        "--networks",
        "lenet300",
        "--rates",
        "20",
        "--seeds",
        "0",
        "--methods",
        "gmp,admm_gradual,dense",
        "--out",
        out,
        "--cache",
        str(tmp_path / "cache"),
    ]
    compare_methods.main(args)
    rows = json.load(open(out))
    assert [r["method"] for r in rows] == ["gmp", "admm_gradual", "dense"]
    dense = rows.pop()  # trained on, not compressed
    assert dense["rate_reached"] == 1.0 and not any(dense["per_layer_sparsity"].values())
    keys = {
        "network",
        "method",
        "default",
        "rate",
        "epochs",
        "seed",
        "dense_accuracy",
        "test_accuracy",
        "per_layer_sparsity",
        "cpu_seconds",
    }
    for row in rows:
        assert keys <= set(row)
        assert row["default"] == (row["method"] == "admm_gradual")  # UpdateADMM()'s recipe
        assert row["rate_reached"] == pytest.approx(20, rel=0.01)  # the same targets for all
    assert rows[0]["per_layer_sparsity"] == rows[1]["per_layer_sparsity"]
    assert 0.0 <= rows[1]["projected_accuracy"] <= 1.0  # after the hard projection
    assert 0.0 <= rows[1]["admm_accuracy"] <= 1.0  # before it
    assert "projected_accuracy" not in rows[0]  # GMP has no projection
    assert os.path.exists(str(tmp_path / "runs.png"))
    compare_methods.main(args)  # everything is there: nothing runs again
    assert len(json.load(open(out))) == 3
    with pytest.raises(SystemExit, match="unknown methods"):
        compare_methods.main(["--methods", "nope", "--out", out])


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [
        {
            "network": "n",
            "method": "m",
            "rate": 2.0,
            "epochs": 3,
            "seed": s,
            "test_accuracy": a,
            "dense_accuracy": 0.9,
            "cpu_seconds": 1.0,
        }
        for s, a in ((0, 0.5), (1, 0.7), (2, 0.6))
    ]
    (row,) = compare_methods.summarize(rows)
    assert row["mean"] == pytest.approx(0.6) and row["std"] == pytest.approx(0.1)
    assert row["seeds"] == [0, 1, 2] and row["cpu_seconds"] == 3.0


def test_paired_difference_pairs_runs_of_the_same_seed():
    base = {"network": "n", "rate": 2.0, "epochs": 3, "dense_accuracy": 0.9, "cpu_seconds": 1}
    rows = [
        dict(base, method="gmp", seed=0, test_accuracy=0.90),
        dict(base, method="gmp", seed=1, test_accuracy=0.80),
        dict(base, method="admm", seed=0, test_accuracy=0.91),
        dict(base, method="admm", seed=1, test_accuracy=0.83),
        dict(base, method="admm", seed=2, test_accuracy=0.99),  # no GMP run to pair with
    ]
    paired = compare_methods.paired_vs_gmp(rows)
    mean, std, n = paired[("n", "admm", 2.0, 3, "constant", "", "lamp", "")]
    assert n == 2 and mean == pytest.approx(2.0) and std == pytest.approx(1.4142, rel=1e-3)


def test_variants_and_schedules_are_separate_points_paired_with_plain_gmp():
    base = {"network": "n", "rate": 2.0, "epochs": 3, "dense_accuracy": 0.9, "cpu_seconds": 1}
    gradual = dict(base, method="admm_gradual")
    rows = [
        dict(base, method="gmp", seed=0, test_accuracy=0.90),
        dict(base, method="gmp", seed=0, test_accuracy=0.80, recipe={"learning_rate": "finetune"}),
        dict(gradual, seed=0, test_accuracy=0.91),
        dict(gradual, seed=0, test_accuracy=0.95, recipe={"variant": "every=50"}),
        dict(gradual, seed=0, test_accuracy=0.85, recipe={"learning_rate": "finetune"}),
    ]
    paired = compare_methods.paired_vs_gmp(rows)
    key = ("n", "admm_gradual", 2.0, 3)
    assert paired[(*key, "constant", "", "lamp", "")][0] == pytest.approx(1.0)
    assert paired[(*key, "constant", "every=50", "lamp", "")][0] == pytest.approx(5.0)
    assert paired[(*key, "finetune", "", "lamp", "")][0] == pytest.approx(5.0)
    assert len(compare_methods.summarize(rows)) == 5
    assert compare_methods.parse_variant("every=50,rho_final=0.01") == {
        "every": 50.0,
        "rho_final": 0.01,
    }
    with pytest.raises(SystemExit, match="unknown variant option 'evry'"):
        compare_methods.parse_variant("evry=50")
    # levers that never won left the harness (issue 24): they are unknown now
    for gone in ("hold=0.1", "lag=0.1", "realloc=1"):
        with pytest.raises(SystemExit, match="unknown variant option"):
            compare_methods.parse_variant(gone)
    # the ramp's share out of (0, 1]; two rho scalings at once
    for bad in ("end=0", "end=1.2", "gscale=1,sscale=0.5"):
        with pytest.raises(SystemExit, match="0 < end <= 1, and gscale or sscale, not both"):
            compare_methods.parse_variant(bad)


def test_a_hand_set_shape_is_scaled_to_the_rate_and_paired_with_gmp_on_it():
    sizes = {"a": 100, "b": 1000}
    targets = compare_methods.shape_targets({"a": 0.5, "b": 0.05}, sizes, 11.0)
    kept = sum(n * (1 - targets[k]) for k, n in sizes.items())
    assert sum(sizes.values()) / kept == pytest.approx(11.0)
    assert (1 - targets["a"]) / (1 - targets["b"]) == pytest.approx(10.0)  # the shape kept
    whole = compare_methods.shape_targets({"a": 1.0, "b": 0.01}, sizes, 1.05)
    assert whole["a"] == 0.0  # a layer is never asked to keep more than all of it
    base = {"network": "n", "rate": 2.0, "epochs": 3, "dense_accuracy": 0.9, "cpu_seconds": 1}
    shaped = {"allocation": "sparsevd"}
    rows = [
        dict(base, method="gmp", seed=0, test_accuracy=0.90),
        dict(base, method="gmp", seed=0, test_accuracy=0.80, recipe=shaped),
        dict(base, method="admm_gradual", seed=0, test_accuracy=0.95, recipe=shaped),
    ]
    paired = compare_methods.paired_vs_gmp(rows)
    assert paired == {
        ("n", "admm_gradual", 2.0, 3, "constant", "", "sparsevd", ""): (
            pytest.approx(15.0),
            0.0,
            1,
        )
    }


def test_shifted_runs_are_their_own_point_paired_with_shifted_gmp():
    base = {"network": "n", "rate": 2.0, "epochs": 3, "dense_accuracy": 0.9, "cpu_seconds": 1}
    shifted = {"shift": 1}
    rows = [
        dict(base, method="gmp", seed=0, test_accuracy=0.90),
        dict(base, method="gmp", seed=0, test_accuracy=0.80, recipe=shifted),
        dict(base, method="admm_gradual", seed=0, test_accuracy=0.95, recipe=shifted),
        dict(base, method="admm_gradual", seed=0, test_accuracy=0.91, recipe={"shift": 0}),
    ]
    paired = compare_methods.paired_vs_gmp(rows)
    key = ("n", "admm_gradual", 2.0, 3, "constant", "", "lamp")
    assert paired[(*key, "shift=1")][0] == pytest.approx(15.0)
    assert paired[(*key, "")][0] == pytest.approx(1.0)  # shift 0 is the plain point
    assert len(compare_methods.summarize(rows)) == 4


def test_distilled_runs_are_their_own_point_paired_with_distilled_gmp():
    base = {"network": "n", "rate": 2.0, "epochs": 3, "dense_accuracy": 0.9, "cpu_seconds": 1}
    rows = [
        dict(base, method="gmp", seed=0, test_accuracy=0.90),
        dict(base, method="gmp", seed=0, test_accuracy=0.80, recipe={"distill": 4.0}),
        dict(base, method="admm_gradual", seed=0, test_accuracy=0.95, recipe={"distill": 4.0}),
        dict(base, method="admm_gradual", seed=0, test_accuracy=0.91, recipe={"distill": 0.0}),
    ]
    paired = compare_methods.paired_vs_gmp(rows)
    key = ("n", "admm_gradual", 2.0, 3, "constant", "", "lamp")
    assert paired[(*key, "distill=4")][0] == pytest.approx(15.0)
    assert paired[(*key, "")][0] == pytest.approx(1.0)
    assert compare_methods.extras_of({"recipe": {"shift": 1, "distill": 2.5}}) == (
        "shift=1,distill=2.5"
    )


def test_distillation_loss_is_hintons_mix_of_hard_and_soft_cross_entropy():
    import numpy as np

    from tf_admm import keras

    temperature, weight = 4.0, compare_methods.DISTILL_HARD_WEIGHT
    loss = compare_methods._training_loss(keras, {"distill": temperature})
    student = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], "float32")
    teacher = np.array([[4.0, 1.0, 0.0], [0.0, 2.0, 8.0]], "float32")
    labels = np.array([0, 2], "float32")

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    hard = -np.log(softmax(student)[[0, 1], [0, 2]])
    soft = -(softmax(teacher / temperature) * np.log(softmax(student / temperature))).sum(1)
    expected = weight * hard + (1 - weight) * temperature**2 * soft
    got = np.asarray(loss(np.concatenate([labels[:, None], teacher], 1), student))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_distillation_with_shift_is_refused_before_any_training(tmp_path):
    with pytest.raises(SystemExit, match="--distill needs .* Received: --distill 4 --shift 1"):
        compare_methods.main(
            ["--distill", "4", "--shift", "1", "--cache", str(tmp_path / "never_made")]
        )
    assert not (tmp_path / "never_made").exists()


def test_fisher_allocation_keeps_the_highest_scores_over_all_layers():
    import fisher_allocation
    import numpy as np

    scores = {"a": np.array([5.0, 1.0, 0.5, 0.1]), "b": np.array([4.0, 3.0, 2.0, 0.2])}
    shares = fisher_allocation.kept_shares(scores, rate=2.0)  # the 4 highest of 8
    assert shares == {"a": 0.25, "b": 0.75}


@pytest.mark.parametrize("gscale", [0.0, 1.0])
def test_benchmark_default_method_is_the_readme_recipe(gscale):
    """``admm_gradual`` (``gscale=0``: the JSON's default; ``gscale=1``: with
    ``gradient_data``) computes the weights of README's "Quick start", bit for bit."""
    import numpy as np
    from conftest import small_cnn, small_data

    import tf_admm
    from tf_admm import keras

    x, y = small_data(96)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    targets = {"conv": 0.5, "hidden": 0.9}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(0)
    dense = small_cnn()
    options = dict(compare_methods.VARIANT_OPTIONS, gscale=gscale)
    assert compare_methods.admm_schedule(tf_admm, options) == tf_admm.schedules.Gradual()
    bench, _, _ = compare_methods.admm_gradual(
        tf_admm,
        dense,
        targets,
        data,
        options,
        admm_optimizer=keras.optimizers.Adam(1e-3),
        retrain_optimizer=keras.optimizers.Adam(1e-3),
        epochs=(3, 1),
        loss=loss,
    )

    # README, "Quick start"
    pruned = tf_admm.prune_low_magnitude(dense, targets, rho=1e-3)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    admm = tf_admm.UpdateADMM(gradient_data=data) if gscale else tf_admm.UpdateADMM()
    pruned.fit(data, epochs=3, callbacks=[admm], verbose=0)
    tf_admm.hard_project(pruned)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    pruned.fit(data, epochs=1, callbacks=[tf_admm.UpdateADMM()], verbose=0)
    final = tf_admm.strip_admm(pruned)

    assert len(bench.get_weights()) == len(final.get_weights()) == 6
    for a, b in zip(bench.get_weights(), final.get_weights()):
        np.testing.assert_array_equal(a, b)
    zeros = np.mean(final.get_layer("hidden").get_weights()[0] == 0)
    assert zeros == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize(
    "learning_rate,decays",
    [("constant", (False, False)), ("cosine", (True, True)), ("finetune", (False, True))],
)
def test_one_shot_phases_get_the_learning_rate_asked(monkeypatch, learning_rate, decays):
    """The ADMM and retraining optimizers of the one-step and progressive methods follow
    --learning-rate (the ADMM schedule object once took the learning rate's name and
    silenced it: every rate was constant)."""
    import tf_admm
    from tf_admm import keras

    seen = []
    monkeypatch.setattr(
        compare_methods, "_admm_fit", lambda k, w, t, e, optimizer, c, l: seen.append(optimizer)
    )
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    compare_methods._one_shot(
        keras, tf_admm, model, {"fc": 0.5}, None, 2, 2, "adam", learning_rate, 10, 5, None
    )
    assert tuple("CosineDecay" in str(o.get_config()["learning_rate"]) for o in seen) == decays
