"""The tf-admm command line: summary, export, check, shrink, and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import compile_model, small_cnn, small_data

import tf_admm
from tf_admm import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    x, y = small_data(64)
    model = tf_admm.prune_low_magnitude(small_cnn(), {"hidden": 0.75})
    compile_model(model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(model)
    path = str(folder / "pruned.keras")
    model.save(path)
    data = str(folder / "data.npz")
    np.savez(data, x=x, y=y)
    return folder, path, data, model, x


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_summary_export_check(files, capsys):
    folder, path, data, model, x = files
    assert cli.main(["summary", path]) == 0
    total = _last_json(capsys)
    assert total["nonzeros"] == tf_admm.summary(model, print_fn=None)["total"]["nonzeros"]
    out = str(folder / "m.tflite")
    assert cli.main(["export", path, out, "--sparse"]) == 0
    assert os.path.getsize(out) == _last_json(capsys)["bytes"]
    assert cli.main(["check", path, out, "--data", data]) == 0
    report = _last_json(capsys)
    assert report["max_abs_diff"] < 1e-4 and report["samples"] == len(x)
    assert "tflite_accuracy" in report


def test_errors_are_one_line_and_status_2(files, capsys):
    folder, path, data, _, _ = files
    assert cli.main(["summary", str(folder / "missing.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tf-admm summary: no such model file") and "\n" not in err
    assert cli.main(["export", path, str(folder / "q.tflite"), "--quantization", "int8"]) == 2
    assert "representative_data" in capsys.readouterr().err
    assert cli.main(["check", path, str(folder / "none.tflite"), "--data", data]) == 2
    assert "existing .tflite file" in capsys.readouterr().err


def test_python_dash_m_help():
    out = subprocess.run(
        [sys.executable, "-m", "tf_admm", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert all(c in out.stdout for c in ("summary", "groups", "export", "check", "shrink"))


def test_shrink_writes_the_smaller_equal_model(tmp_path, capsys):
    x, y = small_data(32)
    model = tf_admm.prune_channels(small_cnn(), 0.5)
    compile_model(model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(model)
    path, out = str(tmp_path / "pruned.keras"), str(tmp_path / "small.keras")
    model.save(path)
    assert cli.main(["groups", path]) == 0
    groups = tf_admm.channel_groups(model)
    assert _last_json(capsys) == {
        "groups": len(groups),
        "free": 2,  # conv's 4 channels (through the Flatten) and hidden's 16; logits fixed
        "removable_channels": 20,
        "fixed": {str(g.index): g.fixed for g in groups if g.fixed},
    }
    assert cli.main(["shrink", path, out]) == 0
    report = _last_json(capsys)
    small = tf_admm.keras.models.load_model(out)
    assert small.get_layer("conv").filters == 2 and small.get_layer("hidden").units == 8
    macs = tf_admm.flops.total_macs
    assert (report["macs"], report["macs_before"]) == (macs(small), macs(small_cnn()))
    assert report["flops_rate"] == pytest.approx(macs(small_cnn()) / macs(small))
    assert report["params"] == small.count_params() < report["params_before"]
    assert report["max_rel_diff"] < 1e-5
    plain = tf_admm.strip_admm(model)
    np.testing.assert_allclose(small(x), plain(x), rtol=1e-5, atol=1e-5)
    # refused before any work: an existing file, a file that is not .keras
    assert cli.main(["shrink", path, out]) == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert cli.main(["shrink", path, str(tmp_path / "small.h5")]) == 2
    assert "written as a .keras file" in capsys.readouterr().err
    assert cli.main(["shrink", path, out, "--overwrite"]) == 0


def test_shrink_compares_every_output_of_a_two_headed_model(tmp_path, capsys):
    inputs = tf_admm.keras.Input((8, 8, 1))
    x = tf_admm.keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf_admm.keras.layers.Flatten()(x)
    x = tf_admm.keras.layers.Dense(16, activation="relu", name="hidden")(x)
    heads = [tf_admm.keras.layers.Dense(n, name=f"head{n}")(x) for n in (3, 2)]
    model = tf_admm.prune_channels(tf_admm.keras.Model(inputs, heads), 0.5)
    tf_admm.hard_project(model)  # straight onto the constraint, no training
    path, out = str(tmp_path / "two.keras"), str(tmp_path / "small.keras")
    model.save(path)
    assert cli.main(["shrink", path, out]) == 0
    report = _last_json(capsys)
    assert report["max_rel_diff"] < 1e-5 and report["flops_rate"] > 1.5
    small = tf_admm.keras.models.load_model(out)
    assert len(small.outputs) == 2 and small.get_layer("hidden").units == 8
