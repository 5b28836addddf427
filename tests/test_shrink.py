"""Channel groups and exact channel removal (tf_admm.channel_groups, tf_admm.shrink).

Each layer and op kind that channel groups follow is covered by a small model: its groups are
checked, a third of the free channels of every group is zeroed (producers' slices and biases,
BatchNorm gamma/beta, depthwise filters), and the shrunk model must compute what the original
computes (inference mode) within 1e-5 relative, with fewer parameters. Runs under Keras 3 and
tf_keras.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from conftest import subclassed_dense

import tf_admm
from tf_admm import keras
from tf_admm.dead_channels import dead_channels
from tf_admm.removal import zero_channels

L = keras.layers


def _randomize_batchnorm(model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so that dead channels carry nonzero constants."""
    rng = np.random.default_rng(seed)
    for layer in tf_admm.cloning.flat_layers(model):
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights(
                [w + rng.uniform(0.2, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()]
            )


def _zero_third(model, groups=None, seed: int = 0) -> dict[int, list[int]]:
    groups = groups or tf_admm.channel_groups(model)
    rng = np.random.default_rng(seed)
    chosen = {
        g.index: sorted(int(c) for c in rng.choice(g.size, max(g.size // 3, 1), replace=False))
        for g in groups.free
    }
    zero_channels(model, chosen, groups)
    return chosen


def _max_rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def _check_shrinks(model, x) -> keras.Model:
    _randomize_batchnorm(model)
    chosen = _zero_third(model)
    assert chosen, "the model has no free channel group"
    before = [w.copy() for w in model.get_weights()]
    expected = np.asarray(model(x, training=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is kept or skipped silently
        small = tf_admm.shrink(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert _max_rel(expected, small(x, training=False)) < 1e-5
    assert small.count_params() < model.count_params()
    return small


def _image(shape=(8, 8, 3), n: int = 2):
    return np.random.default_rng(1).normal(size=(n, *shape)).astype("float32")


def _conv_bn(x, filters, name, kernel=3, padding="same", **kwargs):
    x = L.Conv2D(filters, kernel, padding=padding, use_bias=False, name=f"{name}_conv", **kwargs)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def resnet_block_model():
    """A residual stream (stem + two identity blocks), BatchNorm, pooling, dense head."""
    inputs = keras.Input((8, 8, 3))
    x = _conv_bn(inputs, 8, "stem")
    for i in range(2):
        y = _conv_bn(x, 6, f"b{i}a")
        y = L.Conv2D(8, 3, padding="same", use_bias=False, name=f"b{i}b_conv")(y)
        y = L.BatchNormalization(name=f"b{i}b_bn")(y)
        x = L.ReLU(name=f"b{i}_out")(L.Add(name=f"b{i}_add")([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def test_resnet_groups_tie_the_residual_stream():
    model = resnet_block_model()
    groups = tf_admm.channel_groups(model)
    stream = [g for g in groups.free if "stem_conv" in g.producers]
    assert len(stream) == 1
    assert stream[0].producers == ["stem_conv", "b0b_conv", "b1b_conv"]
    assert set(stream[0].consumers) == {"b0a_conv", "b1a_conv", "head"}
    assert {"stem_bn", "b0b_bn", "b1b_bn"} <= set(stream[0].channelwise)
    assert sorted(g.size for g in groups.free) == [6, 6, 8]
    fixed = {g.fixed for g in groups if g.fixed}
    assert fixed == {"model input", "feeds a model output"}
    table = str(groups)
    assert "stem_conv" in table and "3 of 5 groups free" in table


def test_resnet_shrinks_exactly():
    small = _check_shrinks(resnet_block_model(), _image())
    assert small.get_layer("stem_conv").filters == 6  # 8 - 8 // 3
    assert small.get_layer("b0a_conv").filters == 4


def mobilenet_block_model():
    """Inverted residual: expand 1x1, depthwise 3x3, project 1x1, residual add; ReLU6."""
    inputs = keras.Input((8, 8, 3))
    x = _conv_bn(inputs, 6, "stem")
    y = _conv_bn(x, 12, "expand", kernel=1)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(y)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(6.0, name="dw_relu")(y)
    y = L.Conv2D(6, 1, use_bias=False, name="project")(y)
    y = L.BatchNormalization(name="project_bn")(y)
    x = L.Add(name="add")([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_depthwise_is_channelwise_and_shrinks():
    model = mobilenet_block_model()
    groups = tf_admm.channel_groups(model)
    expanded = next(g for g in groups.free if g.producers == ["expand_conv"])
    assert expanded.channelwise == ["expand_bn", "dw", "dw_bn"]
    assert expanded.consumers == ["project"]
    small = _check_shrinks(model, _image())
    assert small.get_layer("dw").get_weights()[0].shape[-2] == 8


def test_concatenate_places_groups_side_by_side():
    inputs = keras.Input((8, 8, 3))
    a = _conv_bn(inputs, 6, "a")
    b = _conv_bn(inputs, 9, "b", kernel=1)
    x = L.Concatenate(name="cat")([a, b])
    x = L.BatchNormalization(name="cat_bn")(x)
    x = L.Conv2D(4, 3, padding="same", name="after")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalMaxPooling2D()(x)))
    groups = tf_admm.channel_groups(model)
    group_b = next(g for g in groups.free if g.producers == ["b_conv"])
    member = next(m for m in group_b.members if m.layer.name == "after")
    assert (member.offset, member.width) == (6, 15)
    assert member.positions([0, 2]) == [6, 8]
    _check_shrinks(model, _image())


def test_flatten_spreads_each_channel_over_the_dense_inputs():
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(5, 3, activation="relu", name="conv")(inputs)  # valid: 4x4x5
    x = L.MaxPooling2D(name="pool")(x)  # 2x2x5
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.5)(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    groups = tf_admm.channel_groups(model)
    (group,) = groups.free
    member = next(m for m in group.members if m.role == "consumer")
    assert member.repeat == 4 and member.positions([1]) == [1, 6, 11, 16]
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., [0, 3]] = 0.0  # dead, with biases kept: relu(bias) folded into the head
    model.get_layer("conv").set_weights([kernel, bias + 0.5])
    x = _image((6, 6, 2))
    small = tf_admm.shrink(model)
    assert small.get_layer("conv").filters == 3
    assert small.get_layer("head").get_weights()[0].shape == (12, 3)
    assert _max_rel(model(x), small(x)) < 1e-5


def test_reshape_to_one_axis_is_a_flatten():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(4, 1, name="conv")(inputs)
    x = L.Reshape((64,), name="reshape")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    small = _check_shrinks(model, _image((4, 4, 3)))
    assert small.get_layer("reshape").get_config()["target_shape"] in ((48,), [48])


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"])
def test_merging_layers_tie_their_inputs(merge):
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(6, 1, name="b")(inputs)
    x = getattr(L, merge)(name="merge")([a, b])
    x = L.Conv2D(4, 3, padding="same", name="reader")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    groups = tf_admm.channel_groups(model)
    tied = next(g for g in groups.free if "a" in g.producers)
    assert tied.producers == ["a", "b"] and tied.consumers == ["reader"]
    _check_shrinks(model, _image())


@pytest.mark.parametrize(
    "layer",
    [
        lambda: L.ZeroPadding2D(1),
        lambda: L.Cropping2D(1),
        lambda: L.UpSampling2D(2),
        lambda: L.AveragePooling2D(2, padding="same"),
        lambda: L.MaxPooling2D(2),
        lambda: L.Activation("swish"),
        lambda: L.LeakyReLU(),
        lambda: L.SpatialDropout2D(0.2),
    ],
)
def test_parameter_free_layers_pass_channels_through(layer):
    inputs = keras.Input((8, 8, 3))
    x = _conv_bn(inputs, 6, "a")
    x = layer()(x)
    x = L.Conv2D(4, 3, padding="same", name="reader")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    (group, *_) = tf_admm.channel_groups(model).free
    assert group.producers == ["a_conv"] and group.consumers == ["reader"]
    _check_shrinks(model, _image())


@pytest.mark.parametrize(
    "producer, shape",
    [
        (lambda: L.Conv1D(6, 3, padding="same", name="p"), (8, 3)),
        (lambda: L.Conv3D(6, 3, padding="same", name="p"), (4, 4, 4, 3)),
        (lambda: L.SeparableConv2D(6, 3, padding="same", name="p"), (8, 8, 3)),
        (lambda: L.Conv2DTranspose(6, 3, strides=2, padding="same", name="p"), (8, 8, 3)),
        (lambda: L.Dense(6, name="p"), (5,)),
    ],
)
def test_every_producer_kind_shrinks(producer, shape):
    inputs = keras.Input(shape)
    x = producer()(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Activation("relu")(x)
    if len(shape) > 1:
        x = producer().__class__.from_config({**producer().get_config(), "name": "reader"})(x)
        x = L.Flatten()(x)
    else:
        x = L.Dense(4, name="reader")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    groups = tf_admm.channel_groups(model)
    group = next(g for g in groups.free if g.producers == ["p"])
    assert "reader" in group.consumers
    small = _check_shrinks(model, _image(shape))
    assert small.get_layer("p").get_weights()[-1].shape == (4,)


def test_separable_reader_folds_a_constant_exactly():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="p")(inputs)
    x = L.SeparableConv2D(4, 3, depth_multiplier=2, name="reader")(x)  # valid padding
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    kernel, bias = model.get_layer("p").get_weights()
    kernel[..., 1] = 0.0
    model.get_layer("p").set_weights([kernel, bias + 1.0])
    x = _image()
    small = tf_admm.shrink(model)
    assert small.get_layer("p").filters == 5
    assert _max_rel(model(x), small(x)) < 1e-5


def test_nested_models_are_followed():
    inner_in = keras.Input((8, 8, 6))
    y = L.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, L.BatchNormalization(name="inner_bn")(y), name="inner")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="outer_conv")(inputs)
    x = L.Add()([x, inner(x)])
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    groups = tf_admm.channel_groups(model)
    stream = next(g for g in groups.free if "outer_conv" in g.producers)
    assert stream.producers == ["outer_conv", "inner_conv"]
    small = _check_shrinks(model, _image())
    assert small.get_layer("inner").get_layer("inner_conv").filters == 4


def test_sequential_model_shrinks():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(6, 3, padding="same", name="c1"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(6, 3, padding="same", name="c2"),
            L.GlobalAveragePooling2D(),
            L.Dense(2),
        ]
    )
    small = _check_shrinks(model, _image())
    assert small.get_layer("c1").filters == 4


def test_unfollowed_layers_fix_their_groups_and_say_why():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", name="a")(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="double")(a)
    b = L.Conv2D(5, 3, padding="same", name="b", activation="softmax")(x)
    c = L.Conv2D(4, 3, padding="same", name="c")(b)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(c)))
    groups = {g.producers[0]: g for g in tf_admm.channel_groups(model) if g.producers}
    assert "Lambda 'double'" in groups["a"].fixed
    assert "softmax" in groups["b"].fixed
    assert groups["c"].fixed is None
    kernel, bias = model.get_layer("a").get_weights()
    kernel[..., 0] = 0.0
    model.get_layer("a").set_weights([kernel, bias])
    with pytest.warns(UserWarning) as caught:
        tf_admm.shrink(model)
    messages = [str(w.message) for w in caught]
    assert any("'a'" in m and "Lambda 'double'" in m for m in messages)
    assert any("no channel to remove" in m for m in messages)


def test_padding_reader_keeps_a_nonzero_constant_and_warns():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="p")(inputs)
    x = L.Conv2D(4, 3, padding="same", name="reader")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    kernel, bias = model.get_layer("p").get_weights()
    kernel[..., :2] = 0.0
    bias[0], bias[1] = 0.7, -0.3  # channel 0: relu(0.7) kept; channel 1: relu(-0.3) = 0 removed
    model.get_layer("p").set_weights([kernel, bias])
    with pytest.warns(UserWarning, match="'reader' pads its input") as caught:
        small = tf_admm.shrink(model)
    assert small.get_layer("p").filters == 5
    x = _image()
    assert _max_rel(model(x), small(x)) < 1e-5
    message = next(str(w.message) for w in caught if "reader" in str(w.message))
    assert "kept 1 of the 2 dead channels" in message and "(1 removed)" in message


def test_padded_depthwise_that_keeps_dead_channels_is_warned():
    """A dead channel whose constant a padded depthwise convolution turns into border
    values cannot go; shrink says how many it kept, of how many, and which layer."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="p")(inputs)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(4, 1, name="reader")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    kernel, bias = model.get_layer("p").get_weights()
    kernel[..., :5] = 0.0
    bias[:2] = 0.0  # zero inside and after the padding: removable
    bias[2:5] = [0.5, -0.4, 0.9]  # a constant the padded border changes: kept
    model.get_layer("p").set_weights([kernel, bias])
    with pytest.warns(UserWarning, match="'dw' pads its input") as caught:
        small = tf_admm.shrink(model)
    message = next(str(w.message) for w in caught if "'dw'" in str(w.message))
    assert "kept 3 of the 5 dead channels" in message and "(2 removed)" in message
    assert "(3 channels)" in message
    assert small.get_layer("p").filters == 4
    x = _image()
    assert _max_rel(model(x), small(x)) < 1e-5


def test_nothing_to_remove_returns_an_equal_copy_with_a_warning():
    model = resnet_block_model()
    with pytest.warns(UserWarning, match="no channel to remove"):
        copy = tf_admm.shrink(model)
    assert copy is not model and copy.count_params() == model.count_params()
    x = _image()
    assert np.array_equal(model(x), copy(x))


def test_a_group_keeps_at_least_one_channel():
    inputs = keras.Input((4,))
    h = L.Dense(3, name="h")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(h))
    model.get_layer("h").set_weights([np.zeros((4, 3)), np.ones(3)])
    assert dead_channels(model).count == 2  # all three units are dead; one stays
    small = tf_admm.shrink(model)
    assert small.get_layer("h").units == 1
    x = _image((4,))
    assert _max_rel(model(x), small(x)) < 1e-5


def test_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="shrink takes a Keras model"):
        tf_admm.shrink("model.keras")
    with pytest.raises(ValueError, match="channel_groups takes a Keras model"):
        tf_admm.channel_groups(L.Dense(3))
    unbuilt = keras.Sequential([L.Dense(3)])
    for call in (tf_admm.shrink, tf_admm.channel_groups, lambda m: tf_admm.prune_channels(m, 0.5)):
        with pytest.raises(ValueError, match="is not built; give it a keras.Input"):
            call(unbuilt)
    with pytest.raises(ValueError, match="subclassed model"):
        tf_admm.shrink(subclassed_dense(3))


def test_filter_sparsity_after_hard_project_shrinks_a_wrapped_model():
    inputs = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, L.Dense(3, name="out")(h))
    pruned = tf_admm.prune_low_magnitude(model, {"hidden": tf_admm.FilterSparsity(0.5)})
    tf_admm.initialize_admm(pruned)
    tf_admm.hard_project(pruned)
    x = _image((6,), 4)
    expected = tf_admm.strip_admm(pruned)(x)
    small = tf_admm.shrink(pruned)
    assert small.get_layer("hidden").units == 4
    assert _max_rel(expected, small(x)) < 1e-5
    assert tf_admm.registry.compressible_layers(small)  # plain layers: can be pruned further


def test_shrunk_model_exports_and_matches_in_litert(tmp_path):
    model = resnet_block_model()
    x = _image(n=8)
    small = _check_shrinks(model, x)
    path = os.path.join(tmp_path, "small.tflite")
    tf_admm.export_tflite(small, path)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x[:1])
    interpreter.invoke()
    assert _max_rel(small(x[:1]), interpreter.get_tensor(out["index"])) < 1e-5


def test_layer_macs_count_what_shrink_removes():
    model = resnet_block_model()
    before = tf_admm.flops.total_macs(model)
    assert tf_admm.flops.layer_macs(model)["stem_conv"] == 8 * 8 * 9 * 3 * 8
    table = tf_admm.summary(model, print_fn=None)
    assert {r["layer"]: r["macs"] for r in table["layers"]}["stem_conv"] == 8 * 8 * 9 * 3 * 8
    assert table["total"]["macs"] == before
    small = _check_shrinks(model, _image())
    assert tf_admm.flops.layer_macs(small)["stem_conv"] == 8 * 8 * 9 * 3 * 6
    assert tf_admm.flops.total_macs(small) < 0.6 * before


# -- structured ADMM over channel groups ----------------------------------------------------


def _fit_steps(model, x, y, steps: int, callbacks):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=8, epochs=steps, verbose=0, callbacks=callbacks)


def test_prune_channels_wraps_producers_and_batchnorm_of_the_chosen_groups():
    model = resnet_block_model()
    pruned = tf_admm.prune_channels(model, 0.5)
    names = sorted(w.layer.name for w in tf_admm.find_wrappers(pruned))
    assert names == sorted(
        ["stem_conv", "stem_bn", "b0a_conv", "b0a_bn", "b0b_conv", "b0b_bn"]
        + ["b1a_conv", "b1a_bn", "b1b_conv", "b1b_bn"]
    )
    bn = next(w for w in tf_admm.find_wrappers(pruned) if w.layer.name == "stem_bn")
    assert [tuple(v.shape) for v in bn.constrained] == [(8,), (8,)]  # gamma, beta
    assert isinstance(bn.constraint, tf_admm.ChannelSparsity)
    # the default schedule of channel pruning masks what leaves Z's support along the ramp
    assert bn.schedule == tf_admm.schedules.Gradual(masking="ramp")
    # one group only, by a producer's name; other groups stay unwrapped
    only = tf_admm.prune_channels(model, {"b0a_conv": 0.5})
    assert sorted(w.layer.name for w in tf_admm.find_wrappers(only)) == ["b0a_bn", "b0a_conv"]


def test_prune_channels_refuses_bad_targets_before_any_work():
    model = resnet_block_model()
    with pytest.raises(ValueError, match="not a free channel group"):
        tf_admm.prune_channels(model, {"head": 0.5})
    with pytest.raises(ValueError, match="sparsity must be in"):
        tf_admm.prune_channels(model, 1.5)
    with pytest.raises(ValueError, match="selects no free channel group|select no free"):
        tf_admm.prune_channels(model, 0.0)


def test_structured_admm_zeroes_whole_groups_and_shrinks_exactly():
    model = resnet_block_model()
    x = _image(n=32)
    y = np.random.default_rng(2).normal(size=(32, 3)).astype("float32")
    pruned = tf_admm.prune_channels(model, 0.5, rho=1e-2, schedule=tf_admm.schedules.OneShot())
    _fit_steps(pruned, x, y, 3, [tf_admm.UpdateADMM()])
    tf_admm.hard_project(pruned)
    _fit_steps(pruned, x, y, 2, [tf_admm.UpdateADMM()])
    groups = tf_admm.channel_groups(tf_admm.strip_admm(pruned))
    plain = tf_admm.strip_admm(pruned)
    # every free group lost exactly half its channels, in every layer that holds them
    stream = next(g for g in groups.free if "stem_conv" in g.producers)
    dead = [
        c
        for c in range(stream.size)
        if not np.any(plain.get_layer("stem_conv").get_weights()[0][..., c])
    ]
    assert len(dead) == 4
    for name in ("b0b_conv", "b1b_conv"):
        assert not np.any(plain.get_layer(name).get_weights()[0][..., dead])
    for name in ("stem_bn", "b0b_bn", "b1b_bn"):
        gamma, beta = plain.get_layer(name).get_weights()[:2]
        assert not np.any(gamma[dead]) and not np.any(beta[dead])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = tf_admm.shrink(pruned)
    assert small.get_layer("stem_conv").filters == 4
    assert small.get_layer("b0a_conv").filters == 3
    assert _max_rel(plain(x, training=False), small(x, training=False)) < 1e-5
    macs = tf_admm.flops.total_macs
    assert macs(small) < 0.3 * macs(model)


def _round_trip_then_shrink(pruned, x, tmp_path):
    """Save ``pruned`` as .keras and load it (checking every ADMM variable came back:
    Z, U, masks and, under ``pull="target"``, the support), hard-project the loaded model
    and shrink it, checking the shrunk model equals the stripped one within 1e-5 relative.
    Returns ``(loaded, small)``."""
    path = os.path.join(tmp_path, "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(tf_admm.find_wrappers(pruned), tf_admm.find_wrappers(loaded)):
        for va, vb in zip(
            [*a.z_vars, *a.u_vars, *a.mask_vars, *a.support_vars],
            [*b.z_vars, *b.u_vars, *b.mask_vars, *b.support_vars],
            strict=True,
        ):
            assert np.array_equal(np.asarray(va), np.asarray(vb))
    tf_admm.hard_project(loaded)
    small = tf_admm.shrink(loaded)
    plain = tf_admm.strip_admm(loaded)
    assert _max_rel(plain(x, training=False), small(x, training=False)) < 1e-5
    return loaded, small


def test_gradual_channel_ramp_and_save_load_round_trip(tmp_path):
    model = mobilenet_block_model()
    x = _image(n=16)
    y = np.random.default_rng(3).normal(size=(16, 2)).astype("float32")
    pruned = tf_admm.prune_channels(model, tf_admm.allocate_channels(model, 2.0))
    _fit_steps(pruned, x, y, 2, [tf_admm.UpdateADMM()])  # the default (gradual) recipe
    loaded, small = _round_trip_then_shrink(pruned, x, tmp_path)
    for a, b in zip(tf_admm.find_wrappers(pruned), tf_admm.find_wrappers(loaded)):
        assert a.constraint == b.constraint
    ratio = tf_admm.flops.total_macs(model) / tf_admm.flops.total_macs(small)
    assert 1.8 < ratio < 2.3


def _group_channels(group, values) -> np.ndarray:
    """The channels of ``group`` that ``values(wrapper, i)`` keeps (nonzero in any wrapped
    weight of a non-consumer member), checking that every member keeps the same ones."""
    kept = None
    for m in group.members:
        if m.role == "consumer" or not isinstance(m.layer, tf_admm.ADMMWrapper):
            continue
        w = m.layer
        energy = sum(
            tf_admm.projections.channel_energy(w.layouts[i].canonical(values(w, i)))
            for i in range(len(w.constrained))
        )[m.offset : m.offset + m.length]
        here = np.zeros(group.size, bool)
        here[m.start : m.start + m.length] = energy > 0
        assert kept is None or np.array_equal(kept, here), (group.index, w.name)
        kept = here
    return kept


def test_pull_target_keeps_z_on_the_final_channels_and_the_mask_on_the_ramp(tmp_path):
    model = resnet_block_model()
    x = _image(n=16)
    y = np.random.default_rng(3).normal(size=(16, 3)).astype("float32")
    schedule = tf_admm.schedules.Gradual(
        ramp_steps=8, update_every=2, masking="ramp", pull="target"
    )
    pruned = tf_admm.prune_channels(model, 0.5, schedule=schedule)
    _fit_steps(pruned, x, y, 2, [tf_admm.UpdateADMM()])  # 4 of the ramp's 8 steps
    groups = [g for g in tf_admm.channel_groups(pruned).free]
    assert groups
    for g in groups:
        z = _group_channels(g, lambda w, i: np.asarray(w.z_vars[i]))
        support = _group_channels(g, lambda w, i: np.asarray(w.support_vars[i]))
        seen = _group_channels(g, lambda w, i: w.compressed_weights()[i])
        assert z.sum() == tf_admm.projections.keep_count(g.size, 0.5)  # the target already
        assert np.array_equal(seen, support) and np.all(support[z])  # Z inside the ramp's
        assert support.sum() > z.sum()  # the ramp has not reached the target yet
    loaded, _ = _round_trip_then_shrink(pruned, x, tmp_path)
    for a, b in zip(tf_admm.find_wrappers(pruned), tf_admm.find_wrappers(loaded)):
        assert a.schedule == b.schedule == schedule
        assert len(b.support_vars) == len(a.constrained)
    for g in tf_admm.channel_groups(loaded).free:
        assert _group_channels(g, lambda w, i: np.asarray(w.constrained[i])).sum() == (
            tf_admm.projections.keep_count(g.size, 0.5)
        )


def test_channel_groups_are_found_once_per_model_not_at_every_update(monkeypatch):
    import gc

    from tf_admm import channel_admm

    walks = []
    real = channel_admm.channel_groups
    monkeypatch.setattr(channel_admm, "channel_groups", lambda m: walks.append(m) or real(m))
    model = resnet_block_model()
    x = _image(n=16)
    y = np.random.default_rng(3).normal(size=(16, 3)).astype("float32")
    schedule = tf_admm.schedules.Gradual(ramp_steps=6, update_every=1, masking="ramp")
    pruned = tf_admm.prune_channels(model, 0.5, schedule=schedule)
    _fit_steps(pruned, x, y, 3, [tf_admm.UpdateADMM()])  # initialization + 6 Z/U updates
    tf_admm.hard_project(pruned)
    assert len(walks) == 1
    # a model whose layers changed is walked again
    other = tf_admm.prune_channels(resnet_block_model(), 0.5, schedule=schedule)
    _fit_steps(other, x, y, 1, [tf_admm.UpdateADMM()])
    assert len(walks) == 2
    # the cache does not keep a model alive
    del walks[:], pruned, other
    gc.collect()
    assert len(channel_admm._FREE_GROUPS) == 0


def test_allocate_channels_reaches_the_mac_target():
    model = resnet_block_model()
    targets = tf_admm.allocate_channels(model, 2.0)
    groups = tf_admm.channel_groups(model)
    assert set(targets) == {g.index for g in groups.free}
    assert all(0.0 < s <= 0.9 for s in targets.values())
    dense_macs = tf_admm.flops.total_macs(model)
    removed = {g.index: list(range(int(g.size * targets[g.index] + 1e-9))) for g in groups.free}
    zero_channels(model, removed, groups)
    ratio = dense_macs / tf_admm.flops.total_macs(tf_admm.shrink(model))
    assert 2.0 <= ratio < 2.2  # at most dense / 2, and close to it
    with pytest.raises(ValueError, match="cannot divide the MACs"):
        tf_admm.allocate_channels(model, 1000.0)
    with pytest.raises(ValueError, match="flops_rate must be"):
        tf_admm.allocate_channels(model, 0.5)


@pytest.mark.parametrize("round_to", [2, 4])
def test_allocate_channels_rounds_kept_channels_to_multiples(round_to):
    model = resnet_block_model()
    groups = tf_admm.channel_groups(model)
    dense_macs = tf_admm.flops.total_macs(model)
    targets = tf_admm.allocate_channels(model, 1.8, round_to=round_to)
    assert targets
    removed = {}
    for g in groups.free:
        removed[g.index] = list(range(int(np.floor(g.size * targets.get(g.index, 0.0) + 1e-9))))
        kept = g.size - len(removed[g.index])
        assert kept == g.size or (kept % round_to == 0 and kept >= round_to), (g.size, kept)
    zero_channels(model, removed, groups)
    assert dense_macs / tf_admm.flops.total_macs(tf_admm.shrink(model)) >= 1.8
    with pytest.raises(ValueError, match="round_to must be an int >= 1"):
        tf_admm.allocate_channels(model, 2.0, round_to=0)
    with pytest.raises(ValueError, match="rounded up to multiples of 8"):
        tf_admm.allocate_channels(model, 1.5, round_to=8)  # groups of 8 and 6: none can shrink


def test_channel_sparsity_is_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="ChannelSparsity wraps layers that hold channels"):
        tf_admm.ADMMWrapper(L.Flatten(), tf_admm.ChannelSparsity(0.5))
    with pytest.raises(ValueError, match="does not take ChannelSparsity"):
        tf_admm.Quantization(4, sparsity=tf_admm.ChannelSparsity(0.5))


def _producer_and_reader(score: str):
    """Conv channels 0-1 have the larger kernels; the Dense after the Flatten reads only
    channels 2-3 (at every one of the 4 positions)."""
    x = keras.Input((2, 2, 3))
    h = L.Conv2D(4, 1, use_bias=False, name="conv")(x)
    model = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(h)))
    kernel = np.ones((1, 1, 3, 4), "float32")
    kernel[..., :2] = 1.1
    reads = np.zeros((16, 2), "float32")  # input p * 4 + c
    reads[[p * 4 + c for p in range(4) for c in (2, 3)]] = 1.0
    model.get_layer("conv").set_weights([kernel])
    model.get_layer("out").set_weights([reads, np.zeros(2, "float32")])
    pruned = tf_admm.prune_channels(model, 0.5, score=score)
    tf_admm.hard_project(pruned)
    kept = np.any(tf_admm.strip_admm(pruned).get_layer("conv").get_weights()[0], axis=(0, 1, 2))
    return np.flatnonzero(kept).tolist()


def test_channel_score_can_count_the_consumers_that_read_each_channel():
    # the group alone: channels 0-1 (3 * 1.21 = 3.63 against 3.0 each)
    assert _producer_and_reader("group") == [0, 1]
    # with the reader's input weights: channels 2-3 (3.0 + 4 positions * 2 outputs = 11.0)
    assert _producer_and_reader("group_and_consumers") == [2, 3]
    constraint = tf_admm.ChannelSparsity(0.5, score="group_and_consumers")
    assert tf_admm.constraints.get(tf_admm.constraints.serialize(constraint)).score == (
        "group_and_consumers"
    )
    assert tf_admm.ChannelSparsity.from_config({"sparsity": 0.5}).score == "group"  # older files
    with pytest.raises(ValueError, match=r"score must be one of \('group', 'group_and_consumers'"):
        tf_admm.prune_channels(resnet_block_model(), 0.5, score="l1")
