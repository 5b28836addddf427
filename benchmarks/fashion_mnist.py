"""Fashion-MNIST from Debian's package (``apt-get install -y dataset-fashion-mnist``), or from
a directory of the four idx files, with Keras' downloader as the fallback where there is
internet. Images as float32 in [0, 1] with a channel axis: (n, 28, 28, 1).
"""

from __future__ import annotations

import gzip
import os

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(directory: str | None = None):
    """``(x_train, y_train), (x_test, y_test)``; says how to install the data when missing."""
    directory = directory or os.environ.get("FASHION_MNIST_DIR", DEBIAN_DIR)
    if all(os.path.exists(os.path.join(directory, f)) for f in FILES.values()):
        arrays = {k: _idx(os.path.join(directory, f)) for k, f in FILES.items()}
    else:
        try:
            from tf_admm import keras

            (xt, yt), (xv, yv) = keras.datasets.fashion_mnist.load_data()
            arrays = {"x_train": xt, "y_train": yt, "x_test": xv, "y_test": yv}
        except Exception as err:  # no internet
            raise FileNotFoundError(
                f"Fashion-MNIST is not in {directory!r} and could not be downloaded ({err}). "
                "Install it with `apt-get install -y dataset-fashion-mnist`, or set "
                "FASHION_MNIST_DIR to a directory holding the four idx .gz files."
            ) from None

    def images(x):
        return (x.astype("float32") / 255.0)[..., None]

    return (images(arrays["x_train"]), arrays["y_train"].astype("int64")), (
        images(arrays["x_test"]),
        arrays["y_test"].astype("int64"),
    )
