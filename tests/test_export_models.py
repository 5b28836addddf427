"""Export of recurrent and mixed-precision models, and the converter options."""

import numpy as np
import pytest

import tf_admm
from tf_admm import keras

L = keras.layers


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_recurrent_model_exports_and_matches_keras(tmp_path, cell):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    outputs = L.Dense(3, name="head")(getattr(L, cell)(6, name="rnn")(inputs))
    wrapped = tf_admm.prune_low_magnitude(keras.Model(inputs, outputs), 0.7)
    tf_admm.hard_project(wrapped)
    path = str(tmp_path / "rnn.tflite")
    result = tf_admm.export_tflite(wrapped, path)  # batch 1 by default for recurrent layers
    x = np.random.default_rng(0).random((7, 5, 8)).astype("float32")
    report = tf_admm.check_tflite(wrapped, path, x)  # 7 samples through a batch-1 file
    assert report["samples"] == 7 and report["max_abs_diff"] <= 1e-5
    assert result.exact and not result.missing, result.inexact()
    rnn = [t.weight for t in result.tensors if t.layer == "rnn"]
    if cell == "LSTM" and not keras.__version__.startswith("3."):
        # tf_keras's LSTM becomes TFLite's fused op, which stores each kernel as its 4 gate
        # blocks: all 8 are found
        assert len(rnn) == 8 and all("[gate " in n for n in rnn), rnn
    else:
        # a WHILE loop: the kernels live in the loop body's subgraph, which is read too
        assert len(rnn) == 2 and not any("[gate " in n for n in rnn), rnn


def _recurrent_4bit(cell):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 40))
    outputs = L.Dense(3, name="head")(getattr(L, cell)(32, name="rnn")(inputs))
    wrapped = tf_admm.compress(keras.Model(inputs, outputs), sparsity=0.7, bits=4)
    tf_admm.hard_project(wrapped)
    return wrapped


def test_loop_body_kernels_get_their_exact_int8_grid(tmp_path):
    wrapped = _recurrent_4bit("GRU")  # a WHILE loop in both flavours
    path = str(tmp_path / "gru.tflite")
    result = tf_admm.export_tflite(wrapped, path, quantization="int8_weights")
    rnn = [t for t in result.tensors if t.layer == "rnn"]
    assert len(rnn) == 2 and all(t.dtype == "int8" and t.patched for t in rnn), rnn
    assert result.exact, result.inexact()
    x = np.random.default_rng(0).random((8, 5, 40)).astype("float32")
    assert tf_admm.check_tflite(wrapped, path, x)["max_abs_diff"] <= 5e-3


def test_full_int8_of_a_loop_is_refused_before_the_converter_crashes(tmp_path):
    wrapped = _recurrent_4bit("GRU")
    path = tmp_path / "gru.tflite"
    x = np.random.default_rng(0).random((8, 5, 40)).astype("float32")
    with pytest.raises(ValueError, match="WHILE loop.*int8_weights"):
        tf_admm.export_tflite(wrapped, str(path), quantization="int8", representative_data=x)
    assert not path.exists()


def test_mixed_precision_model_exports_from_a_float32_copy(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((8,))
        hidden = L.Dense(16, name="hidden")(inputs)
        outputs = L.Dense(3, name="head", dtype="float32")(hidden)
        model = keras.Model(inputs, outputs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    quantized = tf_admm.quantize(model, 4)
    tf_admm.hard_project(quantized)
    path = str(tmp_path / "mp.tflite")
    result = tf_admm.export_tflite(quantized, path)
    assert result.exact, result.inexact()
    x = np.random.default_rng(1).random((16, 8)).astype("float32")
    report = tf_admm.check_tflite(quantized, path, x)
    assert report["max_abs_diff"] <= 2e-2  # Keras computes the hidden layer in float16
    assert report["top1_agreement"] >= 0.9
    assert quantized.get_layer("admm_hidden").layer.compute_dtype == "float16"  # untouched


def test_configure_reaches_the_converter_and_options_are_checked(tmp_path):
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc")])
    seen = []

    def configure(converter):
        seen.append(type(converter).__name__)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]

    result = tf_admm.export_tflite(model, str(tmp_path / "a.tflite"), configure=configure)
    assert seen and result.exact
    fixed = tf_admm.export_tflite(model, str(tmp_path / "b.tflite"), batch_size=2)
    x = np.ones((5, 4), "float32")
    assert tf_admm.check_tflite(model, fixed.path, x)["max_abs_diff"] <= 1e-5
    for kwargs, match in (
        ({"batch_size": 0}, "batch_size must be None or an int >= 1. Received: 0"),
        ({"batch_size": 1.5}, "Received: 1.5"),
        ({"configure": "yes"}, "configure must be a callable or None. Received: 'yes'"),
    ):
        with pytest.raises(ValueError, match=match):
            tf_admm.export_tflite(model, str(tmp_path / "c.tflite"), **kwargs)
        assert not (tmp_path / "c.tflite").exists()


@pytest.mark.skipif(
    keras.__version__.startswith("3."), reason="Keras 3's LSTM converts to a WHILE loop"
)
@pytest.mark.parametrize("quantization", ["int8_weights", "int8"])
def test_fused_lstm_gates_get_the_exact_grid_with_one_scale_per_weight(tmp_path, quantization):
    # the fused op keeps one int8 scale per gate tensor: a per-tensor ADMM grid fits it exactly
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 40))
    outputs = L.Dense(3, name="head")(L.LSTM(32, name="rnn")(inputs))
    model = keras.Model(inputs, outputs)
    wrapped = tf_admm.compress(model, sparsity=0.7, bits=4, per_channel=False)
    tf_admm.hard_project(wrapped)
    x = np.random.default_rng(0).random((16, 5, 40)).astype("float32")
    path = str(tmp_path / "lstm.tflite")
    extra = {"representative_data": x} if quantization == "int8" else {}
    result = tf_admm.export_tflite(wrapped, path, quantization=quantization, **extra)
    gates = [t for t in result.tensors if t.layer == "rnn"]
    assert len(gates) == 8 and all(t.dtype == "int8" and t.patched for t in gates), gates
    assert result.exact, result.inexact()
    assert tf_admm.check_tflite(wrapped, path, x)["top1_agreement"] >= 0.9
