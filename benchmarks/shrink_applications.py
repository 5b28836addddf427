"""Exactness of tf_admm.shrink on keras.applications models (random weights, no download).

For each model: BatchNorm statistics are randomized (so that removed channels carry nonzero
constants), a random 30% of every free channel group is zeroed (``tf_admm.removal.zero_channels``,
what ``hard_project`` of a structured constraint leaves), the model is shrunk, and the largest
output difference on two random inputs is printed relative to the largest output, with the
groups, parameters and MACs before and after.

    python benchmarks/shrink_applications.py                 # every model of issue 23
    TF_USE_LEGACY_KERAS=1 python benchmarks/shrink_applications.py MobileNetV2 ResNet50
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

import tf_admm
from tf_admm import keras
from tf_admm.removal import zero_channels

MODELS = [
    "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ResNet50", "ResNet50V2",
    "DenseNet121", "EfficientNetB0", "EfficientNetV2B0", "NASNetMobile", "ConvNeXtTiny",
    "Xception", "InceptionV3", "VGG16",
]  # fmt: skip
SIZES = {"InceptionV3": 299, "Xception": 299}


def check(name: str, seed: int = 0) -> str:
    size = SIZES.get(name, 224)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    rng = np.random.default_rng(seed)
    for layer in tf_admm.cloning.flat_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()]
            )
    groups = tf_admm.channel_groups(model)
    chosen = {
        g.index: list(rng.choice(g.size, int(0.3 * g.size), replace=False)) for g in groups.free
    }
    zero_channels(model, chosen, groups)
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = tf_admm.shrink(model)
    rel = np.max(np.abs(np.asarray(small(x, training=False)) - expected)) / np.max(np.abs(expected))
    macs = tf_admm.flops.total_macs
    return (
        f"{name}: groups {len(groups)} free {len(groups.free)} removed "
        f"{sum(len(v) for v in chosen.values())} params {model.count_params()}->"
        f"{small.count_params()} MACs {macs(model) / 1e6:.0f}M->{macs(small) / 1e6:.0f}M "
        f"max rel error {rel:.1e} warnings {len(caught)}"
    )


if __name__ == "__main__":
    for name in sys.argv[1:] or MODELS:
        print(check(name), flush=True)
