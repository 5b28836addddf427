"""Where the output channels of a weight lie, and a constraint applied in that layout.

Constraints (:mod:`tf_admm.constraints`) and quantizer scales treat the *last* axis of a
weight as its output channels, which holds for Dense and Conv kernels ``(..., in, out)``. Other
layers store their kernels differently:

- ``"transposed"``: Conv1D/2D/3DTranspose kernels are ``(..., out, in)``; the output filters
  are the second-to-last axis.
- ``"depthwise"``: DepthwiseConv and the depthwise kernel of SeparableConv are ``(..., in,
  multiplier)``; each of the ``in * multiplier`` output channels is one filter (and one
  per-channel scale in TFLite).

A :class:`Layout` maps a weight to its *canonical* form (output channels last) and back;
:class:`OnLayout` applies a constraint through it, so filter and block sparsity, n:m groups and
per-channel scales follow the layer's real output channels.

>>> import numpy as np
>>> kernel = np.zeros((3, 3, 8, 2))  # Conv2DTranspose(8) on 2 input channels: (h, w, out, in)
>>> Layout("transposed").canonical(kernel).shape
(3, 3, 2, 8)
>>> Layout("depthwise").canonical(np.zeros((3, 3, 4, 2))).shape
(3, 3, 1, 8)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["KINDS", "Layout", "OnLayout"]

KINDS = ("channels_last", "transposed", "depthwise")


class Layout:
    """How a weight maps to the canonical output-channels-last layout (and back).

    Args:
        kind: one of :data:`KINDS`.
    """

    def __init__(self, kind: str = "channels_last"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
        self.kind = kind

    def canonical_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of :meth:`canonical` for a weight of ``shape``."""
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2 or self.kind == "channels_last":
            return shape
        if self.kind == "transposed":
            return shape[:-2] + (shape[-1], shape[-2])
        return shape[:-2] + (1, shape[-2] * shape[-1])

    def canonical(self, values: np.ndarray) -> np.ndarray:
        """``values`` with the output channels on the last axis (NumPy)."""
        values = np.asarray(values)
        if values.ndim < 2 or self.kind == "channels_last":
            return values
        if self.kind == "transposed":
            return np.swapaxes(values, -1, -2)
        return values.reshape(self.canonical_shape(values.shape))

    def restore(self, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of :meth:`canonical` for a weight of ``shape`` (NumPy)."""
        values = np.asarray(values)
        if len(shape) < 2 or self.kind == "channels_last":
            return values
        if self.kind == "transposed":
            return np.ascontiguousarray(np.swapaxes(values, -1, -2))
        return values.reshape(shape)

    def canonical_tf(self, values: tf.Tensor) -> tf.Tensor:
        """:meth:`canonical` in TensorFlow (static shapes)."""
        shape = tuple(values.shape)
        if len(shape) < 2 or self.kind == "channels_last":
            return values
        if self.kind == "transposed":
            perm = list(range(len(shape) - 2)) + [len(shape) - 1, len(shape) - 2]
            return tf.transpose(values, perm)
        return tf.reshape(values, self.canonical_shape(shape))

    def restore_tf(self, values: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
        """:meth:`restore` in TensorFlow."""
        if len(shape) < 2 or self.kind == "channels_last":
            return values
        if self.kind == "transposed":
            perm = list(range(len(shape) - 2)) + [len(shape) - 1, len(shape) - 2]
            return tf.transpose(values, perm)
        return tf.reshape(values, shape)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        return f"Layout({self.kind!r})"


class OnLayout:
    """A constraint applied to a weight through its :class:`Layout`: ``mask``, ``project`` and
    ``fit`` take and return the weight as stored; the constraint sees it channels-last.

    >>> import numpy as np, tf_admm
    >>> kernel = np.ones((1, 1, 4, 2))  # Conv2DTranspose(4) kernel, output filters on axis -2
    >>> kernel[:, :, :2] *= 3.0
    >>> keep = OnLayout(tf_admm.FilterSparsity(0.5), Layout("transposed")).mask(kernel)
    >>> keep[0, 0].all(axis=1).tolist()  # whole output filters kept or removed
    [True, True, False, False]
    """

    def __init__(self, constraint: Any, layout: Layout):
        self.constraint = constraint
        self.layout = layout

    @property
    def quantizer(self):
        return self.constraint.quantizer

    @property
    def prune(self):
        return getattr(self.constraint, "prune", None)

    @property
    def sparsity(self) -> float:
        return self.constraint.sparsity

    def mask(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        keep = self.constraint.mask(self.layout.canonical(values))
        return self.layout.restore(keep, values.shape)

    def project(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        projected = self.constraint.project(self.layout.canonical(values))
        return self.layout.restore(projected, values.shape)

    def fit(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scale, keep, projected)``; the scale is per canonical output channel."""
        values = np.asarray(values)
        scale, keep, projected = self.constraint.fit(self.layout.canonical(values))
        restore = self.layout.restore
        return scale, restore(keep, values.shape), restore(projected, values.shape)

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.constraint.scale_shape(self.layout.canonical_shape(shape))

    def check_weight(self, shape: tuple[int, ...], name: str) -> None:
        self.constraint.check_weight(self.layout.canonical_shape(shape), name)
