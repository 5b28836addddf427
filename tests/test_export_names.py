"""Files without the converter's names: fewer bytes, the same weights, the same outputs."""

import os

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from conftest import dequantized_constants

import tf_admm
from tf_admm import keras
from tf_admm.export.names import ALIGNMENT, strip_names
from tf_admm.export.parity import open_interpreter, run_interpreter

L = keras.layers


def _residual_net():
    """Conv + BatchNorm + a residual add + Dense: fused ops with long concatenated names."""
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = L.BatchNormalization(name="bn_a")(x)
    y = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same", name="conv_b")(y)
    y = L.BatchNormalization(name="bn_b")(y)
    x = L.ReLU()(L.Add()([x, y]))
    outputs = L.Dense(5, name="head")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _outputs(path, x):
    path = str(path)
    content = open(path, "rb").read()
    return run_interpreter(open_interpreter(path, content), x)  # int8 + sparse: builtin


def _buffer_offsets(content: bytes) -> list[int]:
    """Where each non-empty buffer's data starts in the file."""
    model = schema.Model.GetRootAs(bytearray(content), 0)
    base = np.frombuffer(content, np.uint8).__array_interface__["data"][0]
    offsets = []
    for i in range(model.BuffersLength()):
        data = model.Buffers(i).DataAsNumpy()
        if isinstance(data, np.ndarray) and data.size:
            offsets.append(data.__array_interface__["data"][0] - base)
    return offsets


def _tensor_names(content: bytes) -> list[bytes]:
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    return [t.name or b"" for t in model.subgraphs[0].tensors]


@pytest.mark.parametrize("mode", [None, "int8_weights", "int8"])
@pytest.mark.parametrize("sparse", [False, True])
def test_stripped_file_is_smaller_with_the_same_weights_and_outputs(tmp_path, mode, sparse):
    keras.utils.set_random_seed(0)
    pruned = tf_admm.prune_low_magnitude(_residual_net(), 0.8)
    tf_admm.hard_project(pruned)
    x = np.random.default_rng(0).random((6, 12, 12, 3)).astype("float32")
    options = {"quantization": mode, "sparse": sparse}
    if mode == "int8":
        options["representative_data"] = x
    full = tf_admm.export_tflite(pruned, tmp_path / "full.tflite", **options)
    short = tf_admm.export_tflite(pruned, tmp_path / "short.tflite", strip_names=True, **options)
    assert short.bytes == os.path.getsize(short.path)
    # what goes: the intermediate tensors' names (and their length prefixes); what comes: at
    # most ALIGNMENT - 1 bytes of padding per buffer
    names = _tensor_names(open(full.path, "rb").read())
    dropped = sum(len(n) for n in names) - len(names[0]) - len(names[-1])
    padding = ALIGNMENT * len(_buffer_offsets(open(full.path, "rb").read()))
    assert dropped > 200  # a test that could not fail otherwise
    assert full.bytes - short.bytes >= dropped - padding, (full.bytes, short.bytes, dropped)
    assert [t.exact for t in short.tensors] == [t.exact for t in full.tensors]
    # the same stored values, tensor by tensor (dense or sparse, int8 with their scales)
    before = dequantized_constants(full.path)
    after = dequantized_constants(short.path)
    assert len(before) == len(after) > 0
    for (_, a), (_, b) in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # the same outputs, bit for bit, and check_tflite reads the stripped file
    np.testing.assert_array_equal(_outputs(full.path, x), _outputs(short.path, x))
    checks = [tf_admm.check_tflite(pruned, e.path, x)["max_abs_diff"] for e in (full, short)]
    assert checks[0] == checks[1]
    content = open(short.path, "rb").read()
    assert all(offset % ALIGNMENT == 0 for offset in _buffer_offsets(content))


def test_only_input_and_output_names_and_the_signature_remain(tmp_path):
    keras.utils.set_random_seed(0)
    model = _residual_net()
    path = tmp_path / "short.tflite"
    tf_admm.export_tflite(model, path, strip_names=True)
    content = open(path, "rb").read()
    interpreter = Interpreter(model_content=content)
    names = _tensor_names(content)
    kept = {interpreter.get_input_details()[0]["index"]}
    kept |= {interpreter.get_output_details()[0]["index"]}
    assert all(names[i] for i in kept)
    assert not any(name for i, name in enumerate(names) if i not in kept)
    signatures = interpreter.get_signature_list()
    assert list(signatures) == ["serving_default"]
    runner = interpreter.get_signature_runner()
    (key,) = signatures["serving_default"]["inputs"]
    x = np.ones((1, 12, 12, 3), "float32")
    result = runner(**{key: x})
    np.testing.assert_allclose(list(result.values())[0], model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_a_file_made_by_another_tool_shrinks_to_a_copy_and_the_source_is_kept(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    content = tf.lite.TFLiteConverter.from_keras_model(_residual_net()).convert()
    source = tmp_path / "other.tflite"
    source.write_bytes(content)
    written = tf_admm.strip_tflite_names(source, tmp_path / "other_short.tflite")
    assert written == os.path.getsize(tmp_path / "other_short.tflite") < len(content)
    assert source.read_bytes() == content
    x = np.random.default_rng(1).random((2, 12, 12, 3)).astype("float32")
    np.testing.assert_array_equal(_outputs(source, x), _outputs(tmp_path / "other_short.tflite", x))
    # stripping a stripped file changes nothing more
    again = strip_names((tmp_path / "other_short.tflite").read_bytes())
    assert len(again) == written


def test_strip_refuses_bad_input_before_writing(tmp_path):
    source = tmp_path / "a.tflite"
    tf_admm.export_tflite(_residual_net(), source)
    original = source.read_bytes()
    with pytest.raises(ValueError, match="destination must differ from source"):
        tf_admm.strip_tflite_names(source, source)
    existing = tmp_path / "b.tflite"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tf_admm.strip_tflite_names(source, existing)
    assert existing.read_bytes() == b"keep me"
    assert tf_admm.strip_tflite_names(source, existing, overwrite=True) < len(original)
    with pytest.raises(ValueError, match="existing .tflite file"):
        tf_admm.strip_tflite_names(tmp_path / "missing.tflite", tmp_path / "c.tflite")
    not_tflite = tmp_path / "notes.txt"
    not_tflite.write_bytes(b"hello, not a flatbuffer")
    with pytest.raises(ValueError, match="TFL3"):
        tf_admm.strip_tflite_names(not_tflite, tmp_path / "d.tflite")
    assert not (tmp_path / "d.tflite").exists()
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        tf_admm.strip_tflite_names(source, tmp_path / "e.tflite", overwrite="yes")
    with pytest.raises(ValueError, match="strip_names must be True or False"):
        tf_admm.export_tflite(_residual_net(), tmp_path / "f.tflite", strip_names=1)
    assert not (tmp_path / "f.tflite").exists()
    with pytest.raises(ValueError, match="directory of destination does not exist"):
        tf_admm.strip_tflite_names(source, tmp_path / "no_such_folder" / "g.tflite")
    with pytest.raises(ValueError, match="destination is a directory"):
        tf_admm.strip_tflite_names(source, tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="destination must be a str"):
        tf_admm.strip_tflite_names(source, 3)
    assert source.read_bytes() == original
