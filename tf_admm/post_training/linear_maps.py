"""A compressible layer as a batch of matrix products ``Y_g = X_g @ W_g`` (g over groups).

Post-training compression needs, for each layer, the rows ``X`` its kernel multiplies and the
kernel as a matrix ``W`` of shape (inputs, outputs):

- Dense: one group; the rows are the inputs with every leading axis flattened.
- Conv1D, Conv2D (``groups=1``, channels last, any strides, dilation and padding): one group;
  the rows are the input patches in the kernel's (height, width, channels) order (im2col).
- DepthwiseConv1D/2D: one group per input channel; its rows are that channel's patches, its
  matrix the channel's ``(kernel size, depth multiplier)`` slice.
- EinsumDense (the query, key, value and output projections of MultiHeadAttention too): one
  group; the kernel's contracted axes are the inputs, its other axes the outputs (equations
  where the kernel shares an axis with both input and output are not read).

``kernel_of(groups)`` and ``groups_of(kernel)`` move between the Keras kernel and the grouped
matrices, so a constraint projects the Keras-shaped kernel as it does in training.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> layer = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
>>> x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype("float32")
>>> y = layer(x).numpy()
>>> linear = tf_admm.post_training.linear_maps.linear_map(layer)
>>> rows = linear.rows(x)                        # (groups, rows, inputs)
>>> w = linear.groups_of(layer.get_weights()[0])  # (groups, inputs, outputs)
>>> rows.shape, w.shape, bool(np.allclose(rows @ w, y.reshape(1, -1, 3), atol=1e-4))
((1, 50, 36), (1, 36, 3), True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tf_admm import registry
from tf_admm._keras import keras
from tf_admm.layouts import OnLayout

__all__ = ["ALLOWED", "LINEAR", "LinearMap", "linear_map", "supported"]

ALLOWED = (
    "Dense, EinsumDense (MultiHeadAttention's projections too), Conv1D and Conv2D (groups=1, "
    "channels last), DepthwiseConv1D and DepthwiseConv2D"
)

_L = keras.layers
_CONV = tuple(getattr(_L, n) for n in ("Conv1D", "Conv2D"))
_DEPTHWISE = registry.DEPTHWISE
# subclasses of Conv in tf_keras that read their inputs otherwise: matched first, refused
_OTHER_CONV = registry.SEPARABLE + registry.TRANSPOSED + (_L.Conv3D,)
# the layers that multiply their input by a kernel: the leaves post-training compression
# looks for (read or, when unsupported, named)
LINEAR = (_L.Dense, _L.EinsumDense, _L.Conv1D, _L.Conv2D, _L.Conv3D) + _DEPTHWISE + _OTHER_CONV


class LinearMap:
    """How one layer's kernel reads its input (see the module docstring)."""

    def __init__(self, layer, kernel: tf.Variable):
        self.layer = layer
        self.kernel = kernel
        self.shape = tuple(int(d) for d in kernel.shape)

    def rows(self, x) -> np.ndarray:
        """The layer's input batch ``x`` as rows, ``(groups, rows, inputs)`` float64."""
        raise NotImplementedError

    def groups_of(self, kernel: np.ndarray) -> np.ndarray:
        """The Keras kernel as ``(groups, inputs, outputs)``."""
        return np.asarray(kernel).reshape(1, -1, self.shape[-1])

    def kernel_of(self, groups: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`groups_of`."""
        return np.asarray(groups).reshape(self.shape)

    def projector(self, constraint) -> Callable[[np.ndarray], np.ndarray]:
        """``Proj`` onto ``constraint`` on arrays shaped like :meth:`groups_of`: through the
        Keras kernel in the layer's layout, as training projects it."""
        on_layout = OnLayout(constraint, registry.weight_layouts(self.layer)[0])
        return lambda w: self.groups_of(on_layout.project(self.kernel_of(w)))

    def check(self, constraint, name: str) -> None:
        """Raise ValueError if ``constraint`` cannot apply to this kernel."""
        OnLayout(constraint, registry.weight_layouts(self.layer)[0]).check_weight(self.shape, name)


class _Dense(LinearMap):
    def rows(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x.reshape(1, -1, x.shape[-1])


def _patches(x, layer, size: tuple[int, ...]) -> tf.Tensor:
    """Input patches ``(batch, *positions, prod(size) * channels)`` of a 1-D or 2-D conv."""
    x = tf.convert_to_tensor(x, tf.float32)
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    if len(size) == 1:  # a 1-D conv is a 2-D one of height 1
        x, size = x[:, None], (1, *size)
        strides, dilation = (1, *strides), (1, *dilation)
    padding = layer.padding.upper()
    if padding == "CAUSAL":
        x = tf.pad(x, [[0, 0], [0, 0], [dilation[1] * (size[1] - 1), 0], [0, 0]])
        padding = "VALID"
    return tf.image.extract_patches(
        x,
        sizes=[1, *size, 1],
        strides=[1, *strides, 1],
        rates=[1, *dilation, 1],
        padding=padding,
    )


class _Einsum(LinearMap):
    """``x @ kernel`` over the axes the equation contracts (see the module docstring)."""

    def __init__(self, layer, kernel):
        super().__init__(layer, kernel)
        inputs, kernel_axes, _ = _einsum_parts(layer.equation)
        self.contracted = [a for a in kernel_axes if a in inputs]
        self.inputs = inputs
        # the kernel with its contracted axes first: (n_in, n_out) after a reshape
        self.order = [kernel_axes.index(a) for a in self.contracted] + [
            i for i, a in enumerate(kernel_axes) if a not in self.contracted
        ]

    def rows(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        explicit = self.inputs.replace("...", "")
        letters = [None] * (x.ndim - len(explicit)) + list(explicit)  # None: under "..."
        contracted = [letters.index(a) for a in self.contracted]
        others = [i for i in range(x.ndim) if i not in contracted]
        n_in = int(np.prod([x.shape[i] for i in contracted]))
        return x.transpose(others + contracted).reshape(1, -1, n_in)

    def groups_of(self, kernel: np.ndarray) -> np.ndarray:
        moved = np.asarray(kernel).transpose(self.order)
        n_in = int(np.prod(moved.shape[: len(self.contracted)]))
        return moved.reshape(1, n_in, -1)

    def kernel_of(self, groups: np.ndarray) -> np.ndarray:
        moved_shape = [self.shape[i] for i in self.order]
        return np.asarray(groups).reshape(moved_shape).transpose(np.argsort(self.order))

    # The (inputs, outputs) matrix is projected as a Dense kernel would be: n:m groups run
    # along the contracted inputs and per-channel scales are per output (head and feature),
    # whatever axes the equation gives the kernel.
    def projector(self, constraint) -> Callable[[np.ndarray], np.ndarray]:
        return lambda w: constraint.project(w[0])[None]

    def check(self, constraint, name: str) -> None:
        constraint.check_weight(self.groups_of(np.zeros(self.shape)).shape[1:], name)


def _einsum_parts(equation: str) -> tuple[str, str, str]:
    left, output = equation.replace(" ", "").split("->")
    inputs, kernel = left.split(",")
    return inputs, kernel, output


def _einsum_readable(layer) -> bool:
    """Every kernel axis either contracted with the input or kept in the output, not both."""
    inputs, kernel, output = _einsum_parts(layer.equation)
    return "..." not in kernel and all((a in inputs) != (a in output) for a in kernel)


class _Conv(LinearMap):
    def rows(self, x) -> np.ndarray:
        patches = _patches(x, self.layer, self.shape[:-2]).numpy().astype(np.float64)
        return patches.reshape(1, -1, patches.shape[-1])


class _Depthwise(LinearMap):
    # kernel (*size, channels, multiplier) <-> groups (channels, prod(size), multiplier)
    def rows(self, x) -> np.ndarray:
        size = self.shape[:-2]
        patches = _patches(x, self.layer, size).numpy().astype(np.float64)
        taps, channels = int(np.prod(size)), self.shape[-2]
        return patches.reshape(-1, taps, channels).transpose(2, 0, 1)

    def groups_of(self, kernel: np.ndarray) -> np.ndarray:
        taps = int(np.prod(self.shape[:-2]))
        return np.asarray(kernel).reshape(taps, self.shape[-2], self.shape[-1]).transpose(1, 0, 2)

    def kernel_of(self, groups: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(groups).transpose(1, 0, 2)).reshape(self.shape)


def _kind(layer) -> type[LinearMap] | None:
    if isinstance(layer, _OTHER_CONV):
        return None
    if isinstance(layer, _DEPTHWISE):
        return _Depthwise
    if isinstance(layer, _CONV):
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
        return _Conv if channels_last and getattr(layer, "groups", 1) == 1 else None
    if isinstance(layer, _L.Dense):
        return _Dense
    if isinstance(layer, _L.EinsumDense):
        return _Einsum if _einsum_readable(layer) else None
    return None


def supported(layer) -> bool:
    """Whether post-training compression reads ``layer``'s inputs (see the module docstring).

    >>> from tf_admm import keras
    >>> supported(keras.layers.Dense(2)), supported(keras.layers.Conv2DTranspose(2, 3))
    (True, False)
    """
    return _kind(layer) is not None


def linear_map(layer) -> LinearMap:
    """The :class:`LinearMap` of a built, supported layer."""
    kind = _kind(layer)
    if kind is None:
        raise ValueError(
            f"Post-training compression does not read the inputs of layer {layer.name!r} of "
            f"type {type(layer).__name__}. Allowed: {ALLOWED}."
        )
    return kind(layer, registry.compressible_weights(layer)[0])
