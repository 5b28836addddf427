"""Interop: TFMOT's pruning-preserving QAT after tf_admm (tf_keras), Keras 3's
``model.quantize("int8")`` after tf_admm, and TFMOT-pruned weights as an ADMM stage's start."""

import numpy as np
import pytest
import tensorflow as tf

import tf_admm
from tf_admm import keras
from tf_admm.progressive.stage import TrainData, run_stage
from tf_admm.tflite_file import TFLiteFile

KERAS3 = keras.__version__.startswith("3.")
needs_tf_keras = pytest.mark.skipif(KERAS3, reason="TFMOT runs on tf_keras only")
needs_keras3 = pytest.mark.skipif(not KERAS3, reason="model.quantize is Keras 3 API")


def _data(n=256):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 16)).astype("float32")
    y = (x[:, :3].argmax(axis=1)).astype("int64")
    return x, y


def _mlp():
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="logits"),
        ]
    )


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _admm_pruned(sparsity):
    x, y = _data()
    dense = _mlp()
    dense.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_loss())
    dense.fit(x, y, epochs=5, verbose=0)
    wrapped = tf_admm.prune_low_magnitude(dense, sparsity)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_loss())
    wrapped.fit(x, y, epochs=2, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(wrapped)
    return tf_admm.strip_admm(wrapped), x, y


def _int8_weight(content, shape):
    matches = [
        c for c in TFLiteFile(content).all_constants() if c.shape == shape and c.dtype is np.int8
    ]
    assert len(matches) == 1, [c.shape for c in TFLiteFile(content).all_constants()]
    return matches[0].dense()


@needs_tf_keras
def test_tfmot_prune_preserving_qat_keeps_our_zeros_in_the_int8_file():
    import tensorflow_model_optimization as tfmot

    pruned, x, y = _admm_pruned({"hidden": 0.75, "logits": 0.5})
    zeros = {n: pruned.get_layer(n).get_weights()[0] == 0 for n in ("hidden", "logits")}
    annotated = tfmot.quantization.keras.quantize_annotate_model(pruned)
    qat = tfmot.quantization.keras.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    )
    qat.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_loss())
    qat.fit(x, y, epochs=2, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    content = converter.convert()
    for kernel_zeros in zeros.values():
        stored = _int8_weight(content, kernel_zeros.T.shape)  # FULLY_CONNECTED: (out, in)
        np.testing.assert_array_equal(stored == 0, kernel_zeros.T)


@needs_keras3
def test_keras_quantize_int8_keeps_our_zeros_and_exports(tmp_path):
    pruned, x, _ = _admm_pruned({"hidden": 0.75, "logits": 0.5})
    zeros = {n: pruned.get_layer(n).get_weights()[0] == 0 for n in ("hidden", "logits")}
    pruned.quantize("int8")
    for name, kernel_zeros in zeros.items():
        layer = pruned.get_layer(name)
        ints = [np.asarray(v) for v in layer.weights if np.asarray(v).dtype == np.int8]
        assert len(ints) == 1 and ints[0].shape == kernel_zeros.shape
        np.testing.assert_array_equal(ints[0] == 0, kernel_zeros)
    # The TFLite converter rejects Keras 3's int8 layers (their int8 activations feed
    # BatchMatMulV3), pruned or not; the SavedModel export keeps the quantized model exactly.
    path = str(tmp_path / "quantized")
    pruned.export(path, format="tf_saved_model")
    loaded = tf.saved_model.load(path)
    served = loaded.serve(x[:64]).numpy()
    np.testing.assert_allclose(served, pruned.predict(x[:64], verbose=0), atol=1e-6)


@needs_tf_keras
def test_tfmot_pruned_weights_seed_an_admm_stage():
    import tensorflow_model_optimization as tfmot

    x, y = _data()
    dense = _mlp()
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(dense, pruning_schedule=schedule)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_loss())
    pruned.fit(x, y, epochs=3, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    start = tfmot.sparsity.keras.strip_pruning(pruned)
    before = start.get_layer("hidden").get_weights()[0] == 0
    assert before.mean() == 0.5
    stage = tf_admm.Stage(sparsity={"hidden": 0.8}, admm_epochs=2, retrain_epochs=1)
    result, _, _ = run_stage(start, stage, loss=_loss(), train=TrainData((x, y), 32), verbose=0)
    after = result.get_layer("hidden").get_weights()[0] == 0
    assert after.sum() == int(after.size * 0.8)  # floor(512 * 0.8) = 409 zeros
    assert after[before].all()  # every weight TFMOT pruned stays pruned


@needs_tf_keras
def test_tfmot_pruned_models_shrink_with_the_same_outputs(tmp_path):
    import tensorflow_model_optimization as tfmot

    x, y = _data()
    # 97% of 512 weights: at most 15 of the 32 hidden units keep a weight, the rest are dead
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.97, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(_mlp(), pruning_schedule=schedule)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_loss())
    pruned.fit(x, y, epochs=3, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernel = stripped.get_layer("hidden").get_weights()[0]
    live = int((kernel != 0).any(axis=0).sum())
    assert live <= 15
    small = tf_admm.shrink(stripped)
    assert small.get_layer("hidden").get_weights()[0].shape == (16, live)
    # the dead units' relu(bias) folded into the logits' bias: the same outputs
    np.testing.assert_allclose(
        small.predict(x, verbose=0), stripped.predict(x, verbose=0), atol=1e-5
    )
    path = str(tmp_path / "small.tflite")
    tf_admm.export_tflite(small, path, quantization="int8", representative_data=x)
    assert tf_admm.check_tflite(small, path, x, y)["top1_agreement"] > 0.9
