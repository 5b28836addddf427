"""A subclassed model with wrapped layers: train, strip in place, summary, size report and a
.tflite file that matches Keras."""

import numpy as np
import pytest
from conftest import to_np

import tf_admm
from tf_admm import keras

L = keras.layers


class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = tf_admm.prune_low_magnitude(L.Conv2D(6, 3, name="conv"), 0.5)
        self.flat = L.Flatten()
        self.fc = tf_admm.quantize(L.Dense(5, name="fc"), 3)

    def call(self, x, training=None):
        return self.fc(self.flat(self.conv(x, training=training)), training=training)


def _trained():
    keras.utils.set_random_seed(0)
    model = Net()
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, 64)
    model(x[:1])  # build the wrappers: UpdateADMM needs their variables
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=False
    )
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    return model, x


def test_subclassed_model_strips_in_place_and_exports(tmp_path):
    model, x = _trained()
    before = model.predict(x, verbose=0)
    with pytest.raises(ValueError, match="in_place=True"):
        tf_admm.strip_admm(model)
    assert tf_admm.strip_admm(model, in_place=True) is model
    assert all(w.stripped for w in tf_admm.find_wrappers(model))
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-6, atol=1e-6)
    conv = model.conv.layer.kernel
    assert np.count_nonzero(to_np(conv)) == to_np(conv).size // 2

    rows = tf_admm.summary(model, print_fn=None)
    assert [r["layer"] for r in rows["layers"]] == ["conv", "fc"]
    assert rows["layers"][0]["sparsity"] == pytest.approx(0.5)
    assert rows["layers"][1]["bits"] == 3
    assert rows["total"]["other_parameters"] == 6 + 5  # the biases only

    path = str(tmp_path / "net.tflite")
    result = tf_admm.export_tflite(model, path)
    assert result.exact and not result.missing, result.inexact()
    report = tf_admm.check_tflite(model, path, x)
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0
    sizes = tf_admm.size_report(model, path)
    assert [l.layer for l in sizes.layers] == ["conv", "fc"]

    quantized = tf_admm.export_tflite(
        model, str(tmp_path / "int8.tflite"), quantization="int8", representative_data=x
    )
    # fc is on its 3-bit grid and exact; conv is only pruned, so int8 rounds it: reported
    assert [t.layer for t in quantized.tensors if t.exact] == ["fc"]
    (line,) = quantized.inexact()
    assert "conv" in line and "int8" in line and not quantized.exact


def test_a_stripped_wrapper_only_calls_its_layer():
    model, x = _trained()
    tf_admm.strip_admm(model, in_place=True)
    inner = model.conv.layer.kernel
    kernel = to_np(inner).copy()
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((64, 5)), epochs=1, verbose=0)  # no UpdateADMM needed, no penalty
    assert not model.losses or all(float(l) == 0 for l in model.losses)
    assert np.count_nonzero(to_np(inner)) > np.count_nonzero(kernel)  # no mask: it regrows
