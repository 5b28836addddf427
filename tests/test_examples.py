import os
import subprocess
import sys

import common
import numpy as np

import tf_admm


def test_lenet5_is_the_caffe_one_and_eccv18_targets_give_71x():
    model = common.lenet5()
    kernels = {n: model.get_layer(n).kernel.shape for n in common.ECCV18_TARGETS}
    assert {n: tuple(s) for n, s in kernels.items()} == {
        "conv1": (5, 5, 1, 20),
        "conv2": (5, 5, 20, 50),
        "fc1": (800, 500),
        "fc2": (500, 10),
    }
    sizes = {n: int(np.prod(s)) for n, s in kernels.items()}
    assert sum(sizes.values()) == 430_500
    kept = sum(
        tf_admm.projections.keep_count(sizes[n], s) for n, s in common.ECCV18_TARGETS.items()
    )
    assert kept == 6050 and round(430_500 / kept, 1) == 71.2


def test_pruning_lenet5_reaches_the_targets_exactly():
    wrapped = tf_admm.prune_low_magnitude(common.lenet5(), common.ECCV18_TARGETS)
    reached = tf_admm.hard_project(wrapped)
    plain = tf_admm.strip_admm(wrapped)
    counts = common.weight_counts(plain, common.ECCV18_TARGETS)
    assert sum(nz for _, nz in counts.values()) == 6050
    assert reached["admm_fc1"] == 0.991


def test_lenet300_100_has_266200_weights():
    model = common.lenet300()
    sizes = [int(np.prod(model.get_layer(n).kernel.shape)) for n in ("fc1", "fc2", "fc3")]
    assert sizes == [784 * 300, 300 * 100, 100 * 10] and sum(sizes) == 266_200


def test_final_stage_benchmark_steps_evenly_in_log_rate_to_the_targets():
    import argparse
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_final_stage.py")
    spec = importlib.util.spec_from_file_location("bench_final_stage", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(
        steps=2,
        admm_epochs=1,
        retrain_epochs=2,
        update_every=300,
        rho=1e-3,
        rho_growth=1.3,
        learning_rate=1e-3,
        optimizer="adam",
    )
    stages = bench.stages_from({"fc": 0.9}, {"fc": 0.999}, args)
    densities = [1 - s.sparsity["fc"] for s in stages]
    np.testing.assert_allclose(densities, [0.01, 0.001], rtol=1e-9)  # 0.1 -> 0.01 -> 0.001
    assert [s.retrain_epochs for s in stages] == [2, 2]


def test_shift_augmentation_moves_each_image_by_at_most_the_shift_and_keeps_labels():
    x = np.zeros((64, 28, 28, 1), "float32")
    x[:, 14, 14, 0] = 1.0  # one bright pixel in the middle of every image
    y = np.arange(64, dtype="int64")
    plain = next(iter(common.dataset(x, y, 64, shuffle=False)))
    moved_x, moved_y = next(iter(common.dataset(x, y, 64, shuffle=False, shift=2)))
    np.testing.assert_array_equal(plain[0].numpy(), x)  # shift=0: untouched
    np.testing.assert_array_equal(moved_y.numpy(), y)
    images = moved_x.numpy().reshape(64, -1)
    assert np.all(images.sum(axis=1) == 1.0)  # the pixel stays inside the 28x28 frame
    positions = [np.unravel_index(np.argmax(v), (28, 28)) for v in images]
    offsets = np.array(positions) - 14
    assert np.abs(offsets).max() == 2  # 64 images: some reach the full shift ...
    assert len({tuple(o) for o in offsets}) > 5  # ... and the shifts differ between images


def test_quick_lenet5_mnist_makes_real_zu_updates():
    # --quick trains 157 steps per epoch: Z/U every 300 steps would never update
    import lenet5_mnist

    lenet5_mnist.FLAGS(["lenet5_mnist", "--quick"])
    try:
        every = lenet5_mnist.update_interval()
        assert every == 157 // 4 and 157 // every >= 4
        assert lenet5_mnist.FLAGS.update_every == 300
    finally:
        lenet5_mnist.FLAGS.unparse_flags()
    lenet5_mnist.FLAGS(["lenet5_mnist"])
    try:
        assert lenet5_mnist.update_interval() == 300
    finally:
        lenet5_mnist.FLAGS.unparse_flags()


def test_mobilenet_v2_example_inputs_and_batchnorm_momentum():
    # in its own process: the examples define absl flags of the same names (--data, ...)
    code = """
import numpy as np, tf_admm, mobilenet_v2
x = np.random.default_rng(0).random((2, 28, 28, 1)).astype("float32")
rgb = mobilenet_v2.to_rgb32(x)
assert rgb.shape == (2, 32, 32, 3)
np.testing.assert_array_equal(rgb[:, 2:30, 2:30, 1], x[..., 0])
assert rgb[:, :2].max() == 0
model = mobilenet_v2.build(0.35)
bn = tf_admm.keras.layers.BatchNormalization
assert {l.momentum for l in model.layers if isinstance(l, bn)} == {0.9}
assert len(tf_admm.registry.compressible_layers(model)) == 53
# both sides of the comparison prune what TFMOT can: every kernel but the 17 depthwise ones
names = mobilenet_v2.tfmot_prunable(model)
assert len(names) == 36, len(names)
assert not any(isinstance(model.get_layer(n), tf_admm.keras.layers.DepthwiseConv2D) for n in names)
print("OK")
"""
    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(examples), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-2000:]
