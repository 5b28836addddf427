"""Export through BatchNorm folding and for kernels whose output channels are not last:
the file's weights are checked independently of export.py's own matching."""

import numpy as np
import pytest
from conftest import dequantized_constants

import tf_admm
from tf_admm import keras

L = keras.layers


def _dequantized_tensors(path):
    return [stored for _, stored in dequantized_constants(path)]


def _randomize_batchnorm(layer, rng, gamma=(0.5, 2.0), beta=0.1, mean=0.1, variance=(0.2, 3.0)):
    """Non-trivial BatchNorm statistics, as after training."""
    g, b, m, v = layer.get_weights()
    layer.set_weights(
        [
            rng.uniform(*gamma, g.shape),
            rng.normal(0, beta, b.shape),
            rng.normal(0, mean, m.shape),
            rng.uniform(*variance, v.shape),
        ]
    )


def _bn_model(rng):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, use_bias=False, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    outputs = L.Dense(4, name="dense")(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    _randomize_batchnorm(model.get_layer("bn"), rng)
    return model


@pytest.mark.parametrize("mode", [None, "int8_weights", "int8"])
def test_batchnorm_folded_conv_is_exact_in_the_file(tmp_path, mode):
    rng = np.random.default_rng(0)
    model = _bn_model(rng)
    q = tf_admm.quantize(model, 4)
    tf_admm.hard_project(q)
    x = rng.random((40, 8, 8, 3)).astype("float32")
    path = str(tmp_path / "bn.tflite")
    result = tf_admm.export_tflite(
        q, path, quantization=mode, representative_data=x if mode == "int8" else None
    )
    assert result.exact, result.inexact()
    assert not result.missing
    conv = [t for t in result.tensors if t.layer == "conv"]
    assert len(conv) == 1 and conv[0].folded and conv[0].exact

    # independent check: the file holds W * gamma / sqrt(var + eps) per output channel, exactly
    plain = tf_admm.strip_admm(q)
    kernel = plain.get_layer("conv").get_weights()[0].astype(np.float64)  # (3, 3, 3, 16)
    bn = plain.get_layer("bn")
    gamma, _, _, variance = (w.astype(np.float64) for w in bn.get_weights())
    folded = np.transpose(kernel * gamma / np.sqrt(variance + bn.epsilon), (3, 0, 1, 2))
    errors = [
        np.abs(t - folded).max() / np.abs(folded).max()
        for t in _dequantized_tensors(path)
        if t.shape == folded.shape
    ]
    assert errors and min(errors) <= 1e-6
    report = tf_admm.check_tflite(q, path, x)
    assert report["top1_agreement"] >= (0.9 if mode == "int8" else 1.0)


def test_int8_export_of_transposed_and_depthwise_kernels_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    inputs = keras.Input((6, 6, 4))
    x = L.Conv2DTranspose(5, 3, name="up")(inputs)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    outputs = L.Dense(3, name="head")(L.Flatten()(x))
    q = tf_admm.quantize(keras.Model(inputs, outputs), 4)
    tf_admm.hard_project(q)
    x = rng.random((40, 6, 6, 4)).astype("float32")
    for mode in ("int8_weights", "int8"):
        path = str(tmp_path / f"{mode}.tflite")
        result = tf_admm.export_tflite(
            q, path, quantization=mode, representative_data=x if mode == "int8" else None
        )
        assert result.exact, (mode, result.inexact())
        if mode == "int8":  # (dynamic range keeps tensors under 1024 weights in float32)
            assert {t.layer for t in result.tensors if t.dtype == "int8"} >= {"up", "dw"}
    plain = tf_admm.strip_admm(q)
    up = plain.get_layer("up").get_weights()[0].astype(np.float64)  # (h, w, out, in)
    stored = [t for t in _dequantized_tensors(path) if t.shape == (5, 3, 3, 4)]
    expected = np.transpose(up, (2, 0, 1, 3))  # TFLite TRANSPOSE_CONV: (out, h, w, in)
    assert stored and np.abs(stored[0] - expected).max() <= 1e-6 * np.abs(up).max()


def test_exact_is_false_when_weights_are_not_in_the_file(tmp_path):
    rng = np.random.default_rng(2)
    q = tf_admm.quantize(_bn_model(rng), 4)
    tf_admm.hard_project(q)
    other = keras.Sequential([keras.Input((5,)), L.Dense(7, name="other")])
    path = str(tmp_path / "other.tflite")
    tf_admm.export_tflite(other, path)
    report = tf_admm.size_report(q, path)
    assert not report.exact
    assert sorted(report.missing) == sorted(
        f"{l}/{n}" for l, n in (("conv", _name(q, "conv")), ("dense", _name(q, "dense")))
    )
    assert all("not found in the file" in line for line in report.inexact())


def _name(wrapped, layer):
    (kernel,) = tf_admm.strip_admm(wrapped).get_layer(layer).weights[:1]
    return getattr(kernel, "path", None) or kernel.name


def test_mobilenet_v2_full_int8_export_is_exact_through_every_batchnorm(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    rng = np.random.default_rng(3)
    for layer in model.layers:  # non-trivial BN statistics, as after training
        if isinstance(layer, L.BatchNormalization):
            _randomize_batchnorm(layer, rng, (0.5, 1.5), 0.05, 0.05, (0.5, 2.0))
    compressed = tf_admm.compress(model, sparsity=0.5, bits=4)
    tf_admm.hard_project(compressed)
    x = rng.random((20, 32, 32, 3)).astype("float32")
    result = tf_admm.export_tflite(
        compressed, str(tmp_path / "m.tflite"), quantization="int8", representative_data=x
    )
    wrapped = len(tf_admm.find_wrappers(compressed))
    assert wrapped == 53
    assert result.exact, result.inexact()
    assert len(result.tensors) == wrapped and not result.missing
    assert sum(t.folded for t in result.tensors) == wrapped - 1  # all but the classifier
