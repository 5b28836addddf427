"""Calibration data: the batches of model inputs that post-training compression streams.

Accepted: a NumPy array (or anything ``np.asarray`` takes) for a one-input model, a list or
tuple of arrays (one per model input) or a dict by input name for a multi-input model, or a
``tf.data.Dataset`` of batches whose elements are the inputs or ``(inputs, targets[, weights])``
as ``fit`` takes them. Everything is checked against the model's inputs before any work.

>>> import numpy as np
>>> from tf_admm import keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> data = Calibration(model, np.zeros((40, 4), "float32"), batch_size=16)
>>> data.samples, [len(b[0]) for b in data.batches()]
(40, [16, 16, 8])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm.validation import check_int

__all__ = ["MIN_SAMPLES", "Calibration"]

# Fewer samples cannot estimate even a small layer's input statistics: refused.
MIN_SAMPLES = 16


class Calibration:
    """Calibration data checked against ``model``'s inputs; :meth:`batches` streams it.

    Args:
        model: the built model whose inputs the data feeds.
        data: see the module docstring.
        batch_size: samples per batch for array data (a dataset keeps its own batches).
    """

    def __init__(self, model, data: Any, batch_size: int = 32):
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.specs = [(t.name, tuple(t.shape)[1:]) for t in model.inputs]
        if isinstance(data, tf.data.Dataset):
            self.dataset, self.arrays = data, None
            self.samples = sum(len(batch[0]) for batch in self.batches())
        else:
            self.dataset = None
            self.arrays = self._check(self._as_inputs(data, "calibration_data"))
            self.samples = len(self.arrays[0])
        if self.samples < MIN_SAMPLES:
            raise ValueError(
                f"calibration_data holds {self.samples} samples; post-training compression "
                f"needs at least {MIN_SAMPLES} (a few hundred are typical)."
            )

    def _as_inputs(self, data: Any, what: str) -> list[np.ndarray]:
        if isinstance(data, dict):
            names = [name for name, _ in self.specs]
            missing = sorted(set(names) - set(data))
            if missing:
                raise ValueError(
                    f"{what} is a dict without the model inputs {missing}. "
                    f"Received keys: {sorted(data)}; the model's inputs: {names}"
                )
            data = [data[name] for name in names]
        if len(self.specs) == 1 and not isinstance(data, (list, tuple)):
            data = [data]
        if not isinstance(data, (list, tuple)) or len(data) != len(self.specs):
            raise ValueError(
                f"{what} must give {len(self.specs)} input(s), one per model input. "
                f"Received: {type(data).__name__}"
                + (f" of {len(data)}" if isinstance(data, (list, tuple)) else "")
            )
        arrays = []
        for item in data:
            array = item.numpy() if hasattr(item, "numpy") else np.asarray(item)
            if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
                raise ValueError(
                    f"{what} must hold numbers. Received: an array of dtype {array.dtype}"
                )
            arrays.append(array)
        return arrays

    def _check(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        lengths = {len(a) if a.ndim else 0 for a in arrays}
        if len(lengths) != 1:
            raise ValueError(
                f"calibration_data's inputs hold different numbers of samples: {sorted(lengths)}"
            )
        for array, (name, shape) in zip(arrays, self.specs):
            ok = array.ndim == len(shape) + 1 and all(
                want is None or want == got for want, got in zip(shape, array.shape[1:])
            )
            if not ok:
                raise ValueError(
                    f"calibration_data does not fit model input {name!r}: expected samples of "
                    f"shape {shape} (None: any size). Received: an array of shape "
                    f"{array.shape} (samples first)."
                )
        return arrays

    def _from_element(self, element: Any) -> list[np.ndarray]:
        # (inputs, targets[, weights]) as fit takes it, or the inputs alone
        if isinstance(element, tuple) and len(element) in (2, 3):
            if len(self.specs) == 1 or isinstance(element[0], (tuple, list, dict)):
                element = element[0]
        return self._check(self._as_inputs(element, "calibration_data's dataset"))

    def batches(self) -> Iterator[list[np.ndarray]]:
        """One list of arrays (one per model input) per batch, in the same order every call."""
        if self.dataset is not None:
            for element in self.dataset:
                yield self._from_element(element)
            return
        for start in range(0, self.samples, self.batch_size):
            yield [a[start : start + self.batch_size] for a in self.arrays]
