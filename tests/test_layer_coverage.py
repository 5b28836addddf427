"""Recurrent and attention layers, and the output-channel axis of transposed and depthwise
kernels (structured constraints and per-channel scales follow the layer's real filters)."""

import numpy as np
import pytest
from conftest import to_np, wrappers

import tf_admm
from tf_admm import keras, projections

L = keras.layers


def _kernels(model) -> dict[str, np.ndarray]:
    out = {}
    for layer in model.layers:
        for weight in layer.weights:
            name = getattr(weight, "path", None) or weight.name
            if name.split("/")[-1].split(":")[0] in ("kernel", "recurrent_kernel"):
                out[f"{layer.name}:{name.split(':')[0]}"] = np.asarray(weight)
    return out


def _sequence_model(attention: bool):
    inputs = keras.Input((5, 8))
    x = L.LSTM(6, return_sequences=True, name="lstm")(inputs)
    x = L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")(x)
    x = L.SimpleRNN(5, return_sequences=True, name="rnn")(x)
    if attention:
        x = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = L.EinsumDense("abc,cd->abd", (5, 6), name="einsum")(x)
    outputs = L.Dense(3, name="head")(L.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("attention", [False, True])
def test_recurrent_attention_and_einsum_kernels_reach_the_sparsity(attention):
    model = _sequence_model(attention)
    wrapped = tf_admm.prune_low_magnitude(model, 0.8)
    names = [w.layer.name for w in wrappers(wrapped)]
    expected = ["lstm", "bi", "rnn"] + (["mha"] if attention else []) + ["einsum", "head"]
    assert names == expected
    # kernel + recurrent kernel; Bidirectional: both directions; attention: q, k, v, output
    counts = {"lstm": 2, "bi": 4, "rnn": 2, "mha": 4, "einsum": 1, "head": 1}
    assert [len(w.constrained) for w in wrappers(wrapped)] == [counts[n] for n in names]
    x = np.random.default_rng(0).random((16, 5, 8)).astype("float32")
    wrapped.compile("adam", "mse")
    wrapped.fit(x, x[:, 0, :3], epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(wrapped)
    plain = tf_admm.strip_admm(wrapped)
    kernels = _kernels(plain)
    assert len(kernels) == sum(counts[n] for n in names)
    for name, values in kernels.items():
        kept = projections.keep_count(values.size, 0.8)
        assert np.count_nonzero(values) == kept, name
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(model.get_layer("lstm").get_weights()[0], 0)  # user model untouched
    assert np.count_nonzero(model.get_layer("lstm").get_weights()[0]) == 8 * 24


def test_lstm_wrapper_round_trips_through_keras_file(tmp_path):
    inputs = keras.Input((5, 8))
    outputs = L.Dense(2, name="head")(L.LSTM(6, name="lstm")(inputs))
    wrapped = tf_admm.prune_low_magnitude(keras.Model(inputs, outputs), {"lstm": 0.7})
    tf_admm.hard_project(wrapped)
    path = str(tmp_path / "lstm.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).random((4, 5, 8)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), wrapped.predict(x, verbose=0))
    (w,) = wrappers(loaded)
    assert w.masked and [to_np(m).mean() for m in w.mask_vars] == pytest.approx([0.3, 0.3], 0.02)


@pytest.mark.parametrize(
    "class_name, shape",
    [
        ("Conv1DTranspose", (6, 3)),
        ("Conv2DTranspose", (5, 5, 3)),
        ("Conv3DTranspose", (3, 3, 3, 3)),
    ],
)
def test_filter_sparsity_on_a_transposed_conv_removes_output_filters(class_name, shape):
    inputs = keras.Input(shape)
    outputs = getattr(L, class_name)(8, 3, name="up")(inputs)
    wrapped = tf_admm.prune_low_magnitude(keras.Model(inputs, outputs), tf_admm.FilterSparsity(0.5))
    tf_admm.hard_project(wrapped)
    kernel = tf_admm.strip_admm(wrapped).get_layer("up").kernel.numpy()  # (..., out=8, in=3)
    per_output = np.abs(kernel).sum(axis=tuple(range(kernel.ndim - 2)) + (kernel.ndim - 1,))
    per_input = np.abs(kernel).sum(axis=tuple(range(kernel.ndim - 1)))
    assert int((per_output == 0).sum()) == 4  # 4 of 8 output filters removed entirely
    assert int((per_input == 0).sum()) == 0  # no input channel removed


def test_block_sparsity_on_a_transposed_conv_runs_along_inputs():
    inputs = keras.Input((5, 5, 8))
    outputs = L.Conv2DTranspose(6, 1, name="up")(inputs)
    wrapped = tf_admm.prune_low_magnitude(
        keras.Model(inputs, outputs), tf_admm.BlockSparsity(0.5, (1, 4))
    )
    tf_admm.hard_project(wrapped)
    kernel = tf_admm.strip_admm(wrapped).get_layer("up").kernel.numpy()[0, 0]  # (out 6, in 8)
    blocks = (kernel.reshape(6, 2, 4) != 0).any(axis=-1)
    # a block of 4 consecutive inputs of one output filter is kept or removed whole
    np.testing.assert_array_equal((kernel.reshape(6, 2, 4) != 0).all(axis=-1), blocks)
    assert int(blocks.sum()) == 6


@pytest.mark.parametrize("class_name", ["Conv2DTranspose", "DepthwiseConv2D"])
def test_per_channel_scales_follow_the_output_channels(class_name):
    inputs = keras.Input((6, 6, 4))
    if class_name == "DepthwiseConv2D":
        layer, channels = L.DepthwiseConv2D(3, depth_multiplier=2, name="target"), 8
    else:
        layer, channels = L.Conv2DTranspose(5, 3, name="target"), 5
    model = keras.Model(inputs, layer(inputs))
    wrapped = tf_admm.quantize(model, 3)
    tf_admm.hard_project(wrapped)
    (w,) = wrappers(wrapped)
    assert tuple(w.scale_vars[0].shape) == (channels,)
    kernel = tf_admm.strip_admm(wrapped).get_layer("target").get_weights()[0]
    if class_name == "DepthwiseConv2D":
        by_channel = kernel.reshape(9, 8)
    else:
        by_channel = np.moveaxis(kernel, -2, -1).reshape(-1, 5)
    scales = to_np(w.scale_vars[0])
    for c in range(channels):  # each output channel on its own 3-bit grid
        units = by_channel[:, c] / scales[c]
        np.testing.assert_allclose(units, np.round(units), atol=1e-5)
        assert np.abs(np.round(units)).max() <= 3
    x = np.random.default_rng(0).random((2, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(
        tf_admm.strip_admm(wrapped).predict(x, verbose=0),
        wrapped.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


class _Gate(L.Layer):
    """A user layer: x @ w_in, gated; registered by name, without get_prunable_weights()."""

    def build(self, input_shape):
        self.w_in = self.add_weight(shape=(input_shape[-1], 6), name="w_in")
        self.gate = self.add_weight(shape=(6,), name="gate", initializer="ones")

    def call(self, x):
        return keras.activations.sigmoid(self.gate) * (x @ self.w_in)


def test_registered_user_layer_is_compressible_and_checked():
    tf_admm.register_compressible(_Gate, weights=("w_in",))
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L.Dense(2, name="head")(_Gate(name="gate")(inputs)))
    wrapped = tf_admm.prune_low_magnitude(model, {"gate": 0.75})
    tf_admm.hard_project(wrapped)
    (w,) = wrappers(wrapped)
    assert [tuple(v.shape) for v in w.constrained] == [(8, 6)]
    assert np.count_nonzero(to_np(w.constrained[0])) == 12
    x = np.ones((3, 8), "float32")
    np.testing.assert_allclose(
        tf_admm.strip_admm(wrapped).predict(x, verbose=0), wrapped.predict(x, verbose=0)
    )
    for kwargs, match in (
        ({"layer_class": int}, "layer_class must be a Keras layer class. Received: <class 'int'>"),
        ({"layer_class": _Gate, "weights": "w_in"}, "weights must be a non-empty tuple"),
        ({"layer_class": _Gate, "layout": "sideways"}, "kind must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            tf_admm.register_compressible(**kwargs)


def test_a_built_layer_with_no_prunable_weights_is_not_compressible(tmp_path):
    # TFMOT gives the layers it never prunes (DepthwiseConv2D) a get_prunable_weights() that
    # returns []; such a model must still get a summary and an export
    model = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.DepthwiseConv2D(3, name="dw"), keras.layers.Flatten()]
    )
    model.add(keras.layers.Dense(3, name="fc"))
    model.get_layer("dw").get_prunable_weights = lambda: []
    assert [l.name for l in tf_admm.registry.compressible_layers(model)] == ["fc"]
    result = tf_admm.export_tflite(model, str(tmp_path / "m.tflite"))
    assert [l.layer for l in result.layers] == ["fc"] and result.exact
