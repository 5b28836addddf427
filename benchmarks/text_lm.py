"""A byte-level decoder-only language model on the Python standard library's sources, for
benchmarks/oneshot.py: text that every machine has, no download.

The corpus is every ``.py`` file of the running interpreter's standard library (not
site-packages), split by file into training and held-out text by a hash of the file's path
(about one file in ten held out); the Python version is recorded with the results. The model
is built from KerasHub's layers, as users bring them: ``TokenAndPositionEmbedding``, a stack
of ``TransformerDecoder`` blocks (causal self-attention and an MLP, their Dense and EinsumDense
kernels inside each block), and a Dense head over the 256 byte values.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
import zlib

import numpy as np

SEQUENCE = 128
VOCABULARY = 256


def corpus() -> tuple[np.ndarray, np.ndarray, str]:
    """(training bytes, held-out bytes, the Python version whose sources they are)."""
    root = sysconfig.get_paths()["stdlib"]
    train, held_out = [], []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        relative = os.path.relpath(path, root)
        if "site-packages" in relative.split(os.sep):
            continue
        with open(path, "rb") as handle:
            text = handle.read() + b"\n"
        (held_out if zlib.crc32(relative.encode()) % 10 == 0 else train).append(text)
    as_array = lambda parts: np.frombuffer(b"".join(parts), np.uint8)  # noqa: E731
    return as_array(train), as_array(held_out), sys.version.split()[0]


def windows(text: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` windows of ``SEQUENCE + 1`` bytes at positions drawn by ``seed``."""
    starts = np.random.default_rng(seed).integers(0, len(text) - SEQUENCE - 1, count)
    return np.stack([text[s : s + SEQUENCE + 1] for s in starts]).astype("int32")


def decoder(width: int = 192, blocks: int = 4, heads: int = 4):
    """The decoder: about 1.9 million parameters at the defaults (MLP 4x the width)."""
    import keras_hub

    from tf_admm import keras

    inputs = keras.Input((SEQUENCE,), dtype="int32")
    x = keras_hub.layers.TokenAndPositionEmbedding(VOCABULARY, SEQUENCE, width, name="embed")(
        inputs
    )
    for i in range(blocks):
        x = keras_hub.layers.TransformerDecoder(4 * width, heads, name=f"block{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(VOCABULARY, name="head")(x), name="decoder")


def train(model, text: np.ndarray, steps: int, batch: int, seed: int) -> None:
    """Adam 1e-3 with cosine decay over ``steps`` batches of random training windows."""
    from tf_admm import keras

    data = windows(text, steps * batch, seed)
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(data[:, :-1], data[:, 1:], batch_size=batch, epochs=1, verbose=0)


def perplexity(model, data: np.ndarray) -> float:
    """exp(mean cross-entropy per byte) of next-byte prediction on ``data``'s windows."""
    logits = model.predict(data[:, :-1], batch_size=64, verbose=0).astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, data[:, 1:, None].astype(np.int64), axis=-1)
    return float(np.exp(-picked.mean()))
