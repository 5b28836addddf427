"""benchmarks/frontier.py's bookkeeping: both sides averaged over the same seeds."""

import json

import frontier


def _row(seed, side, method, sparsity, accuracy, zipped, epochs=6):
    return {
        "epochs": epochs,
        "network": "net",
        "seed": seed,
        "side": side,
        "method": method,
        "sparsity": sparsity,
        "litert_accuracy": accuracy,
        "raw_bytes": 2 * zipped,
        "zipped_bytes": zipped,
        "stripped_bytes": 2 * zipped - 7,
    }


def _table(rows, tmp_path, capsys) -> str:
    """What ``frontier.table`` prints for ``rows`` written as its JSON-lines file."""
    out = tmp_path / "rows.json"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frontier.table(str(out))
    return capsys.readouterr().out


def test_points_average_only_the_seeds_that_have_every_point(capsys, tmp_path):
    rows = [
        _row(0, "tfmot", "tfmot_gmp_int8", 0.9, 0.80, 100),
        _row(0, "tf_admm", "admm_int8", 0.9, 0.84, 90),
        _row(1, "tfmot", "tfmot_gmp_int8", 0.9, 0.82, 110),
        _row(1, "tf_admm", "admm_int8", 0.9, 0.86, 100),
        _row(2, "tfmot", "tfmot_gmp_int8", 0.9, 0.50, 10),  # seed 2 has no tf_admm point yet
        # a side added later, run on seed 0 only: it does not take seed 1 out of the others
        _row(0, "tfmot_cluster", "tfmot_cluster16_int8", 0.9, 0.83, 80),
    ]
    del rows[1]["stripped_bytes"]  # a row written before the field: no stripped figure
    assert {r["seed"] for r in frontier.complete(rows)} == {0, 1}
    # a second network, on seed 0 only so far, leaves the first network's seeds alone
    other = [dict(r, network="other") for r in rows[:2]]
    both = frontier.complete(rows + other)
    assert {r["seed"] for r in both if r["network"] == "net"} == {0, 1}
    assert {r["seed"] for r in both if r["network"] == "other"} == {0}
    by_method = {p["method"]: p for p in frontier.points(rows)}
    assert by_method["tfmot_gmp_int8"]["seeds"] == 2
    assert by_method["tfmot_cluster16_int8"]["seeds"] == 1
    assert by_method["tfmot_gmp_int8"]["accuracy"] == 81.0
    # the sample standard deviation (80 and 82: sqrt(2)), as the docs' other tables
    assert abs(by_method["tfmot_gmp_int8"]["std"] - 2**0.5) < 1e-9
    assert by_method["tfmot_cluster16_int8"]["std"] == 0.0  # one seed
    assert by_method["admm_int8"]["zipped_bytes"] == 95.0
    assert by_method["admm_int8"]["stripped_bytes"] is None
    assert by_method["tfmot_gmp_int8"]["stripped_bytes"] == 203.0
    text = _table(rows, tmp_path, capsys)
    assert "seeds with every point: [0, 1]" in text
    # the margin of the means, and paired by seed: +4 on both seeds (seed 2 is not complete)
    assert (
        "| net | tfmot_gmp_int8 at 0.9, 6 ep (81.00) | 105 | admm_int8 at 0.9, 6 ep (85.00, 95 B) "
        "| +4.00 | +4.00 ± 0.00 (2) |" in text
    )
    # stripped bytes: TFMOT's point has them, no tf_admm point does
    assert "| net | tfmot_gmp_int8 at 0.9, 6 ep (81.00) | 203 | none | - | - |" in text


def test_the_paired_difference_is_over_the_seeds_both_points_have():
    rows = [
        _row(0, "tfmot", "tfmot_gmp_int8", 0.9, 0.80, 100),
        _row(0, "tf_admm", "admm_int8", 0.9, 0.84, 90),
        _row(1, "tfmot", "tfmot_gmp_int8", 0.9, 0.82, 110),
        _row(1, "tf_admm", "admm_int8", 0.9, 0.83, 100),
        _row(0, "tf_admm_ramp", "admm_ramp_int8", 0.9, 0.85, 90),  # a later side, seed 0 only
    ]
    by_method = {p["method"]: p for p in frontier.points(rows)}
    gmp = by_method["tfmot_gmp_int8"]
    mean, std, n = frontier.paired(rows, by_method["admm_int8"], gmp)
    assert n == 2 and abs(mean - 2.5) < 1e-9  # (+4, +1)
    assert abs(std - 4.5**0.5) < 1e-9
    # the difference of the means would be 85 - 81 = +4; paired over seed 0 it is +5
    mean, std, n = frontier.paired(rows, by_method["admm_ramp_int8"], gmp)
    assert (n, std) == (1, 0.0) and abs(mean - 5.0) < 1e-9


def test_a_method_at_two_budgets_is_two_points_and_tfmot_is_met_only_at_no_more_epochs(
    capsys, tmp_path
):
    rows = []
    for seed, gain in ((0, 0.0), (1, 0.02)):
        rows += [
            _row(seed, "tfmot", "tfmot_gmp_int8", 0.5, 0.80, 100),
            _row(seed, "tfmot", "tfmot_pcqat8_int8", 0.5, 0.81, 100, epochs=10),
            _row(seed, "tf_admm", "admm_int8", 0.5, 0.79, 90),
            # the same method after 2 and after 4 quantization epochs
            _row(seed, "tf_admm_bits", "admm_ramp_4bit", 0.5, 0.82, 60, epochs=8),
            _row(seed, "tf_admm_bits", "admm_ramp_4bit", 0.5, 0.84 + gain, 60, epochs=10),
        ]
    pts = {p["label"]: p for p in frontier.points(rows)}
    assert pts["admm_ramp_4bit (8 ep)"]["accuracy"] == 82.0  # never averaged with the 10
    assert abs(pts["admm_ramp_4bit (10 ep)"]["accuracy"] - 85.0) < 1e-9
    assert pts["admm_int8"]["label"] == "admm_int8"  # one budget: the method alone
    mean, _, n = frontier.paired(rows, pts["admm_ramp_4bit (10 ep)"], pts["tfmot_gmp_int8"])
    assert n == 2 and abs(mean - 5.0) < 1e-9
    text = _table(rows, tmp_path, capsys)
    # GMP's 6 epochs: only the 6-epoch file may answer it, however accurate the 4-bit ones
    assert "| net | tfmot_gmp_int8 at 0.5, 6 ep (80.00) | 100 | admm_int8 at 0.5, 6 ep" in text
    # PCQAT's 10: the 4-bit file of the same budget
    assert (
        "| net | tfmot_pcqat8_int8 at 0.5, 10 ep (81.00) | 100 | admm_ramp_4bit at 0.5, 10 ep "
        "(85.00, 60 B) | +4.00 | +4.00 ± 1.41 (2) |" in text
    )


def _args():
    """The driver's arguments the bookkeeping reads (frontier.py's defaults)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        network="net",
        cache="cache",
        train_size=30000,
        dense_epochs=8,
        ramp_epochs=2,
        retrain_epochs=4,
        quant_epochs=2,
    )


def test_a_shrunk_channel_point_is_named_by_its_mac_rate(capsys, tmp_path):
    rows = []
    for seed in (0, 1):
        rows += [
            _row(seed, "tfmot", "tfmot_gmp_int8", 0.5, 0.80, 100),
            _row(seed, "tf_admm", "admm_int8", 0.5, 0.79, 90),
            {
                **_row(seed, "tf_admm_channels", "admm_channels_int8", 0.4832, 0.83, 70),
                "flops_rate": 2.0 + seed / 100,
            },
        ]
    text = _table(rows, tmp_path, capsys)
    assert "| net | admm_channels_int8 | 2.00x MACs (0.483) | 6 | 2 | 83.00 ± 0.00 |" in text
    assert (
        "| tfmot_gmp_int8 at 0.5, 6 ep (80.00) | 100 | admm_channels_int8 at 2.00x MACs (0.483), "
        "6 ep (83.00, 70 B) | +3.00 | +3.00 ± 0.00 (2) |" in text
    )


def test_a_unit_is_done_only_at_the_same_data_dense_model_and_budget():
    args = _args()
    base = {"network": "net", "side": "tf_admm", "sparsity": 0.5, "train_size": 30000}
    rows = [
        {**base, "seed": 0, "dense_epochs": 8},  # before the budget was recorded: 2 + 4, 2
        {**base, "seed": 1, "dense_epochs": 16},  # another dense model
        {**base, "seed": 2, "dense_epochs": 8, "ramp_epochs": 4, "retrain_epochs": 8},
        {**base, "seed": 3, "dense_epochs": 8, "train_size": 60000},
        {
            **base,
            "seed": 4,
            "dense_epochs": 8,
            "ramp_epochs": 2,
            "retrain_epochs": 4,
            "quant_epochs": 2,
        },
        {**base, "seed": 5, "dense_epochs": 8, "quant_epochs": 3},
    ]
    assert {unit[3] for unit in frontier.done_units(rows, args)} == {0, 4}
    args.dense_epochs, args.ramp_epochs, args.retrain_epochs = 8, 4, 8
    assert {unit[3] for unit in frontier.done_units(rows, args)} == {2}


def test_the_bits_side_is_one_unit_per_width_and_reads_the_ramp_units_model():
    args = _args()
    base = {"network": "net", "sparsity": 0.9, "seed": 0, "train_size": 30000, "dense_epochs": 8}
    rows = [
        {**base, "side": "tf_admm", "bits": 8},
        {**base, "side": "tf_admm", "bits": 4},
        {**base, "side": "tf_admm_bits", "bits": 3},
    ]
    done = frontier.done_units(rows, args)
    # another side's widths do not count: 4 bits from the ramp model is still to run
    assert frontier.unit_key("net", "tf_admm", 0.9, 0, None) in done
    assert frontier.unit_key("net", "tf_admm_bits", 0.9, 0, 3) in done
    assert frontier.unit_key("net", "tf_admm_bits", 0.9, 0, 4) not in done
    assert frontier.unit_key("net", "tf_admm_bits", 0.9, 1, 3) not in done
    # each setting its own cached model: kind, sparsity, seed and budget all in the name
    path = frontier.cache_path(args, "admm_ramp", 0.9, 0)
    assert path == "cache/net_admm_ramp_0.9_seed0_2+4ep_30000_dense8.npz"
    assert path != frontier.cache_path(args, "admm", 0.9, 0)
    args.retrain_epochs = 8
    assert frontier.cache_path(args, "admm_ramp", 0.9, 0) != path


def test_the_figure_has_one_row_per_network_and_every_method_in_its_legend(tmp_path):
    rows = [_row(seed, "anchor", "dense_float", 0.0, 0.90, 300) for seed in (0, 1)] + [
        _row(seed, "tfmot", "tfmot_gmp_int8", 0.5, 0.88, 100) for seed in (0, 1)
    ]
    # a second network with a method the first lacks (its legend entry must not be lost)
    rows += [dict(r, network="other") for r in rows]
    rows += [
        dict(_row(seed, "tfmot_cluster", "tfmot_cluster16_int8", 0.5, 0.87, 80), network="other")
        for seed in (0, 1)
    ]
    out, png = tmp_path / "rows.json", tmp_path / "frontier.png"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = frontier.plot(str(out), str(png))
    assert labels == ["dense_float", "tfmot_cluster16_int8", "tfmot_gmp_int8"]
    assert png.stat().st_size > 0


def test_the_shrink_side_is_one_unit_per_width_and_quantized_models_are_keyed_by_their_epochs():
    args = _args()
    base = {"network": "net", "sparsity": 0.9, "seed": 0, "train_size": 30000, "dense_epochs": 8}
    rows = [
        {**base, "side": "tf_admm_shrink", "bits": 8},  # the pruned model's int8 file
        {**base, "side": "tf_admm_bits", "bits": 3},
        {**base, "side": "gmp_shrink", "bits": 8},
    ]
    done = frontier.done_units(rows, args)
    assert frontier.unit_key("net", "tf_admm_shrink", 0.9, 0, 8) in done
    assert frontier.unit_key("net", "tf_admm_shrink", 0.9, 0, 3) not in done  # its 3-bit model
    assert frontier.unit_key("net", "gmp_shrink", 0.9, 0, None) in done
    pruned = frontier.cache_path(args, "admm_ramp", 0.9, 0)
    three = frontier.cache_path(args, "admm_ramp_3bit", 0.9, 0)
    assert three == "cache/net_admm_ramp_3bit_0.9_seed0_2+4ep_30000_dense8_q2.npz"
    args.quant_epochs = 4  # another quantization budget: another quantized model, same pruning
    assert frontier.cache_path(args, "admm_ramp_3bit", 0.9, 0) != three
    assert frontier.cache_path(args, "admm_ramp", 0.9, 0) == pruned
    assert frontier.quant_split(2) == (1, 1) and frontier.quant_split(1) == (1, 1)
    assert frontier.quant_split(5) == (2, 3)


def test_run_shrink_exports_the_cached_model_without_its_dead_channels(tmp_path):
    import numpy as np

    from tf_admm import keras

    keras.utils.set_random_seed(0)
    dense = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    weights = dense.get_weights()
    weights[0][..., 1] = 0.0  # channel 1 pruned whole: BatchNormalization makes it a constant
    path = str(tmp_path / "pruned.npz")
    frontier.save_weights(path, weights, cpu_seconds=12.5)
    x = np.random.default_rng(0).normal(size=(40, 6, 6, 1)).astype("float32")
    y = np.arange(40) % 3
    pruned = keras.models.clone_model(dense)
    pruned.set_weights(weights)
    rows = frontier.run_shrink(
        dense, path, "admm_ramp_int8_shrunk", (x, y), x, folder=str(tmp_path), bits=8, epochs=6
    )
    assert [r["method"] for r in rows] == ["admm_ramp_int8_shrunk", "admm_ramp_int8_shrunk_sparse"]
    # one channel of four fewer: 9 kernel weights + bias + 4 BatchNorm values + 3 Dense weights
    assert rows[0]["parameters"] == pruned.count_params() - 17
    assert all(r["cpu_seconds"] >= 12.5 and r["bits"] == 8 and r["epochs"] == 6 for r in rows)
    # the shrunk model is the pruned one: its Keras accuracy equals the cached model's
    expected = float(np.mean(np.argmax(pruned.predict(x, verbose=0), axis=1) == y))
    assert rows[0]["keras_accuracy"] == expected


def test_no_two_methods_of_a_figure_share_a_colour_and_marker():
    styles = [frontier.method_style(i) for i in range(60)]
    assert len({(tuple(colour), marker) for colour, marker in styles}) == 60
    assert styles[0][1] == "o" and styles[20][1] == "^" and styles[20][0] == styles[0][0]


def test_tfmot_targets_give_every_layer_tfmot_prunes_the_sparsity_and_leave_depthwise_dense():
    from nets import mobilenet_v2_small

    from tf_admm import keras

    dense = mobilenet_v2_small()
    targets = frontier.tfmot_targets(dense, 0.5)
    allocated = frontier.admm_targets(dense, 0.5)
    depthwise = {
        layer.name for layer in dense.layers if isinstance(layer, keras.layers.DepthwiseConv2D)
    }
    assert depthwise and depthwise <= set(allocated)  # tf_admm's allocation prunes them
    assert set(targets) == set(allocated) - depthwise
    assert set(targets.values()) == {0.5}


def test_the_channels_side_ships_a_shrunk_model_at_the_rate_asked_and_is_keyed_by_it(tmp_path):
    import numpy as np

    from tf_admm import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    dense = keras.Model(inputs, keras.layers.Dense(3)(h))
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype("float32")
    y = np.arange(64) % 3
    spec = {"seed": 0, "ramp_epochs": 1, "retrain_epochs": 1, "folder": str(tmp_path)}
    rows = frontier.run_channels(dense, 2.0, spec, (x, y), (x, y))
    assert [r["method"] for r in rows] == ["admm_channels_int8"]  # no sparse file
    row = rows[0]
    assert row["flops_target"] == 2.0 and row["flops_rate"] >= 1.8
    assert row["parameters"] < dense.count_params()
    assert row["sparsity"] == 1.0 - row["parameters"] / dense.count_params()
    assert row["bits"] == 8 and row["epochs"] == 2
    # resumed: the unit is the rate it was asked for, not the sparsity it reached
    args = _args()
    done = frontier.done_units(
        [
            {
                **row,
                "network": "net",
                "side": "tf_admm_channels",
                "seed": 0,
                "train_size": 30000,
                "dense_epochs": 8,
            }
        ],
        args,
    )
    assert done == {frontier.unit_key("net", "tf_admm_channels", 2.0, 0, None)}
