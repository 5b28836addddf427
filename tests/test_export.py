"""TFLite/LiteRT export: exact int8 weights on ADMM grids, interpreter parity, sizes, checks."""

import os

import numpy as np
import pytest
from conftest import compile_model, dequantized_constants, small_cnn, small_data

import tf_admm
from tf_admm import keras
from tf_admm.export import int8_grid
from tf_admm.export.match import arrangements as _arrangements
from tf_admm.tflite_file import TFLiteFile

CB = [tf_admm.UpdateADMM()]


def _trained(make, epochs=(2, 2)):
    x, y = small_data(128)
    model = make(small_cnn())
    compile_model(model, keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=epochs[0], batch_size=32, verbose=0, callbacks=CB)
    tf_admm.hard_project(model)
    model.fit(x, y, epochs=epochs[1], batch_size=32, verbose=0, callbacks=CB)
    return model, x


@pytest.fixture(scope="module")
def quantized_3bit():
    keras.utils.set_random_seed(0)
    return _trained(lambda m: tf_admm.compress(m, sparsity={"hidden": 0.8}, bits=3))


def _file_weights(path, plain):
    """Independent re-read: every Keras kernel found in the file, dequantized, with its error."""
    kernels = {l.name: l.get_weights()[0] for l in plain.layers if l.get_weights()}
    found = {}
    for const, stored in dequantized_constants(path):
        for name, kernel in kernels.items():
            for arranged in _arrangements(kernel, const.shape):
                if np.abs(arranged - stored).max() <= 0.02 * np.abs(kernel).max():
                    err = np.abs(arranged - stored).max() / np.abs(kernel).max()
                    found[name] = (np.dtype(const.dtype).name, float(err))
    return found


@pytest.mark.parametrize("mode", ["int8_weights", "int8"])
@pytest.mark.parametrize("sparse", [False, True])
def test_admm_quantized_weights_are_exact_in_the_int8_file(quantized_3bit, tmp_path, mode, sparse):
    model, x = quantized_3bit
    path = str(tmp_path / "q.tflite")
    result = tf_admm.export_tflite(
        model,
        path,
        quantization=mode,
        sparse=sparse,
        representative_data=x if mode == "int8" else None,
    )
    plain = tf_admm.strip_admm(model)
    found = _file_weights(path, plain)
    int8_layers = {"hidden"} if mode == "int8_weights" else {"conv", "hidden", "logits"}
    # (dynamic range leaves tensors under 1024 weights in float32, which is exact anyway)
    assert {n for n, (dtype, _) in found.items() if dtype == "int8"} == int8_layers
    for name, (_, err) in found.items():
        assert err <= 1e-6, (name, err)
    assert result.exact and all(t.patched for t in result.tensors if t.dtype == "int8")
    assert any(t.sparse for t in result.tensors) == sparse


def test_without_the_grid_scale_the_converter_is_not_exact(quantized_3bit, tmp_path):
    """Why export patches: the converter's own max|w|/127 scale misses a 3-bit grid."""
    model, _ = quantized_3bit
    plain = tf_admm.strip_admm(model)
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = str(tmp_path / "plain.tflite")
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    assert _file_weights(path, plain)["hidden"][1] > 1e-4


def test_litert_parity_float_and_int8(quantized_3bit, tmp_path):
    model, x = quantized_3bit
    float_path = tf_admm.export_tflite(model, str(tmp_path / "f.tflite")).path
    y = np.argmax(model.predict(x, verbose=0), axis=-1)
    y[::2] = (y[::2] + 1) % 3  # every other label wrong: accuracy exactly 0.5
    report = tf_admm.check_tflite(model, float_path, x, y)
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0
    assert report["samples"] == len(x)
    assert report["keras_accuracy"] == report["tflite_accuracy"] == 0.5
    logits = model.predict(x, verbose=0)
    spread = float(logits.max() - logits.min())
    for mode, data in (("int8_weights", None), ("int8", x)):
        for sparse in (False, True):
            path = str(tmp_path / f"{mode}_{sparse}.tflite")
            tf_admm.export_tflite(
                model, path, quantization=mode, sparse=sparse, representative_data=data
            )
            report = tf_admm.check_tflite(model, path, x, batch_size=50)
            # exact weights; the remaining error is activation quantization
            assert report["max_abs_diff"] <= 0.05 * spread, (mode, sparse, report)
            assert report["top1_agreement"] >= 0.95, (mode, sparse, report)


def test_int8_sparse_file_runs_without_the_default_delegate(quantized_3bit, tmp_path):
    model, x = quantized_3bit
    path = str(tmp_path / "s.tflite")
    tf_admm.export_tflite(model, path, quantization="int8", sparse=True, representative_data=x)
    file = TFLiteFile(open(path, "rb").read())
    assert file.has_sparse_tensors() and file.has_int8_weights()
    assert tf_admm.check_tflite(model, path, x[:8])["top1_agreement"] >= 0.75


def test_sparse_tensors_decode_to_the_dense_weights(quantized_3bit, tmp_path):
    model, _ = quantized_3bit
    path = tf_admm.export_tflite(model, str(tmp_path / "sf.tflite"), sparse=True).path
    plain = tf_admm.strip_admm(model)
    hidden = plain.get_layer("hidden").get_weights()[0]
    file = TFLiteFile(open(path, "rb").read())
    sparse = [c for c in file.all_constants() if c.sparse]
    assert sparse
    match = [c for c in sparse if c.data.size == np.count_nonzero(hidden)]
    assert len(match) == 1
    np.testing.assert_array_equal(match[0].dense(), hidden.T)


def test_size_accounting(quantized_3bit, tmp_path):
    model, _ = quantized_3bit
    path = str(tmp_path / "z.tflite")
    result = tf_admm.export_tflite(model, path, quantization="int8_weights", sparse=True)
    assert result.bytes == os.path.getsize(path)
    assert 0 < result.zipped_bytes < result.bytes
    plain = tf_admm.strip_admm(model)
    rows = {l.layer: l for l in result.layers}
    assert set(rows) == {"conv", "hidden", "logits"}
    for name, row in rows.items():
        kernel = plain.get_layer(name).get_weights()[0]
        assert row.weights == kernel.size
        assert row.nonzeros == np.count_nonzero(kernel)
        assert row.bits <= 3
    hidden = rows["hidden"]
    assert hidden.nonzeros == 2304 - int(2304 * 0.8)
    assert hidden.file_bytes is not None and hidden.file_bytes < 2304  # sparse int8
    biases = sum(int(np.prod(w.shape)) for w in plain.weights) - sum(
        r.weights for r in rows.values()
    )
    assert result.other_parameters == biases
    assert "hidden" in result.table() and "file" in result.table()
    again = tf_admm.size_report(model, path)
    assert [l.lower_bound_bytes for l in again.layers] == [
        l.lower_bound_bytes for l in result.layers
    ]
    assert again.bytes == result.bytes


def test_export_leaves_the_wrapped_model_untouched(quantized_3bit, tmp_path):
    model, x = quantized_3bit
    before = [np.array(w) for w in model.get_weights()]
    tf_admm.export_tflite(model, str(tmp_path / "u.tflite"), quantization="int8_weights")
    assert tf_admm.find_wrappers(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_int8_grid_recovers_scales_and_rejects_float():
    rng = np.random.default_rng(0)
    ints = rng.integers(-3, 4, (20, 5))
    scales = np.array([0.1, 0.02, 1.5, 3e-4, 0.7], np.float32)
    values = (ints.astype(np.float32) * scales).astype(np.float32)
    got_scales, got_ints = int8_grid(values)
    np.testing.assert_allclose(got_ints * got_scales, values, rtol=1e-6)
    assert np.abs(got_ints).max() <= 127
    assert int8_grid(rng.standard_normal((20, 5)).astype(np.float32)) is None


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(quantization="int4"), ValueError, "quantization must be one of"),
        (dict(quantization="int8"), ValueError, "needs representative_data"),
        (dict(representative_data=np.zeros((4, 8, 8, 1))), ValueError, "only used with"),
        (
            dict(quantization="int8", representative_data=np.zeros((4, 9, 8, 1))),
            ValueError,
            r"shape \(n, 8, 8, 1\)",
        ),
        (dict(sparse="yes"), ValueError, "sparse must be True or False"),
        (dict(overwrite=1), ValueError, "overwrite must be True or False"),
    ],
)
def test_export_argument_checks_come_before_converting(tmp_path, kwargs, error, match):
    path = str(tmp_path / "bad.tflite")
    with pytest.raises(error, match=match):
        tf_admm.export_tflite(small_cnn(), path, **kwargs)
    assert not os.path.exists(path)


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tf_admm.export_tflite(small_cnn(), path)
    assert path.read_bytes() == b"keep me"
    tf_admm.export_tflite(small_cnn(), path, overwrite=True)
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="directory of path does not exist"):
        tf_admm.export_tflite(small_cnn(), tmp_path / "missing" / "m.tflite")
    with pytest.raises(ValueError, match="takes a Keras model"):
        tf_admm.export_tflite("model", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="existing .tflite file"):
        tf_admm.check_tflite(small_cnn(), tmp_path / "none.tflite", np.zeros((1, 8, 8, 1)))


def test_export_before_hard_project_raises_unless_allowed(tmp_path):
    model = tf_admm.prune_low_magnitude(small_cnn(), {"hidden": 0.9})
    path = tmp_path / "m.tflite"
    before = [np.copy(w) for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"still in their ADMM phase.*hard_project"):
        tf_admm.export_tflite(model, path)
    assert not path.exists()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="still in their ADMM phase"):
        tf_admm.export_tflite(model, path, allow_dense=True)
    with pytest.warns(UserWarning, match="hard_project"):
        tf_admm.strip_admm(model)
    with pytest.raises(ValueError, match="allow_dense must be True or False"):
        tf_admm.export_tflite(model, tmp_path / "n.tflite", allow_dense="yes")


def test_export_to_an_unwritable_directory_fails_before_converting(tmp_path, monkeypatch):
    from tf_admm.export import checks, files

    monkeypatch.setattr(checks.os, "access", lambda path, mode: False)
    converted = []
    monkeypatch.setattr(files, "convert", lambda *a: converted.append(1))
    with pytest.raises(ValueError, match="not writable"):
        tf_admm.export_tflite(small_cnn(), tmp_path / "m.tflite")
    assert not converted


def test_check_tflite_refuses_other_files(tmp_path):
    model = small_cnn()
    x, _ = small_data(8)
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_bytes(b"hello, this is not a flatbuffer")
    with pytest.raises(ValueError, match="not a .tflite flatbuffer"):
        tf_admm.check_tflite(model, not_tflite, x)
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    path = tf_admm.export_tflite(other, tmp_path / "other.tflite").path
    with pytest.raises(ValueError, match=r"not a file of this model: its input is \(n, 5\)"):
        tf_admm.check_tflite(model, path, x)


def test_argument_errors_name_what_was_received():
    with pytest.raises(ValueError, match=r"block_shape must be two positive ints.*Received: .*4"):
        tf_admm.BlockSparsity(0.5, 4)
    with pytest.raises(ValueError, match="Received: sparsity=None"):
        tf_admm.prune_low_magnitude(small_cnn(), None)


def _int8_scales(path, shape):
    (const,) = [c for c in TFLiteFile(open(path, "rb").read()).all_constants() if c.shape == shape]
    return const.scales.astype(np.float64)


def test_export_writes_the_recorded_grid_not_one_fitted_to_the_values(tmp_path):
    # a 4-bit channel that happens to use only even levels: the values alone suggest a step of
    # 2 * alpha; the wrapper recorded alpha, and the file gets alpha (both grids are exact)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, name="fc")])
    wrapped = tf_admm.quantize(model, 4)
    tf_admm.hard_project(wrapped)
    (wrapper,) = tf_admm.find_wrappers(wrapped)
    alpha = np.asarray(wrapper.scale_vars[0], np.float64).reshape(-1)
    kernel = np.asarray(wrapper.constrained[0], np.float64)
    levels = np.round(kernel / alpha)
    assert np.abs(levels * alpha - kernel).max() <= 1e-6 * np.abs(kernel).max()  # on the grid
    levels[:, 0] = 2 * np.clip(np.round(levels[:, 0] / 2), -3, 3)  # channel 0: even levels only
    assert np.abs(levels[:, 0]).min() == 0 and (np.abs(levels[:, 0]) == 2).any()
    wrapper.constrained[0].assign((levels * alpha).astype("float32"))

    recorded = str(tmp_path / "recorded.tflite")
    result = tf_admm.export_tflite(wrapped, recorded, quantization="int8_weights")
    assert result.exact, result.inexact()
    scales = _int8_scales(recorded, (64, 32))
    np.testing.assert_allclose(scales, alpha, rtol=1e-6)  # alpha for every channel, channel 0 too

    fitted = str(tmp_path / "fitted.tflite")  # stripped first: no record, the grid is fitted
    result = tf_admm.export_tflite(tf_admm.strip_admm(wrapped), fitted, quantization="int8_weights")
    assert result.exact, result.inexact()
    assert _int8_scales(fitted, (64, 32))[0] == pytest.approx(2 * alpha[0], rel=1e-6)


def test_compression_record_says_what_each_wrapper_enforced():
    from tf_admm.record import compression_record

    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8, name="a"), keras.layers.Dense(4, name="b")]
    )
    wrapped = tf_admm.compress(model, sparsity={"a": 0.75, "b": 0.5}, bits={"a": 3})
    assert compression_record(wrapped) == {}  # nothing enforced before the hard projection
    tf_admm.hard_project(wrapped)
    record = compression_record(wrapped)
    assert sorted(record) == [("a", 0), ("b", 0)]
    a, b = record[("a", 0)], record[("b", 0)]
    assert (a.sparsity, a.bits, a.max_level, a.step.shape) == (0.75, 3, 3, (8,))
    assert (b.sparsity, b.bits, b.step, b.max_level) == (0.5, None, None, None)
    kernel = np.asarray(tf_admm.find_wrappers(wrapped)[0].constrained[0], np.float64)
    units = kernel / a.step
    np.testing.assert_allclose(units, np.round(units), atol=1e-5)  # integer multiples of the step
