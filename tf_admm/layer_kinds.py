"""How channel groups treat each kind of layer (:func:`layer_kind`), and the layer classes
the channel code recognizes, in one place for :mod:`tf_admm.channels`, :mod:`tf_admm.flops`,
:mod:`tf_admm.dead_channels` and :mod:`tf_admm.removal`.

>>> from tf_admm import keras
>>> layer_kind(keras.layers.Add())
('tie', None)
"""

from __future__ import annotations

from tf_admm._keras import keras
from tf_admm.registry import DEPTHWISE, SEPARABLE, TRANSPOSED  # noqa: F401  (re-exported)

__all__ = ["inner_layer", "layer_kind"]

_L = keras.layers


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(getattr(_L, n) for n in names if hasattr(_L, n))


CONV = _classes("Conv1D", "Conv2D", "Conv3D")
DENSE = _classes("Dense")
BATCHNORM = _classes("BatchNormalization")
TIES = _classes("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
CONCAT = _classes("Concatenate")
FLATTEN = _classes("Flatten")
RESHAPE = _classes("Reshape")
GLOBAL_POOLING = _classes(
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
)
# Parameter-free layers that act on each channel alone (or copy channels unchanged).
PASSTHROUGH = GLOBAL_POOLING + _classes(
    "ReLU",
    "LeakyReLU",
    "ELU",
    "ThresholdedReLU",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
)
_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
SOFTMAX_REASON = "a softmax over channels couples every channel"


def inner_layer(layer):
    """The layer an ADMM wrapper holds (channel handling is the inner layer's)."""
    from tf_admm.wrapper import ADMMWrapper

    return layer.layer if isinstance(layer, ADMMWrapper) else layer


def _activation_name(layer) -> str:
    act = inner_layer(layer).get_config().get("activation", "linear")
    if isinstance(act, dict):  # a serialized function or object
        act = act.get("config", {}).get("name", act.get("class_name", "?"))
    return str(act)


def _channels_last(layer) -> bool:
    return layer.get_config().get("data_format", "channels_last") in (None, "channels_last")


# Keras 3 operations (keras.ops calls recorded in a functional graph) that act elementwise
_ELEMENTWISE_OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum")


def layer_kind(
    layer, in_shape: tuple | None = None, arguments: list | None = None
) -> tuple[str, str | None]:
    """How channel groups treat ``layer``: ``(kind, reason)``, kind one of ``"producer"``,
    ``"channelwise"`` (per-channel parameters), ``"passthrough"``, ``"tie"``, ``"concat"``,
    ``"flatten"``, ``"reshape"`` or ``"unknown"`` (reason says why it is not followed).

    >>> from tf_admm import keras
    >>> layer_kind(keras.layers.BatchNormalization())
    ('channelwise', None)
    >>> layer_kind(keras.layers.Lambda(lambda x: x))[0]
    'unknown'
    """
    layer = inner_layer(layer)
    name = type(layer).__name__
    rank = len(in_shape) if in_shape is not None else None
    if not isinstance(layer, keras.layers.Layer):  # a Keras 3 operation
        tensors = sum(1 for a in arguments or () if a[0] == "tensor")
        if name in _ELEMENTWISE_OPS and arguments and tensors == 1:
            return "passthrough", None  # an operation with a number: channel by channel
        if name in _ELEMENTWISE_OPS and arguments and tensors == len(arguments):
            return "tie", None
        return "unknown", f"the operation {name} is not followed"
    if isinstance(layer, DEPTHWISE):
        if not _channels_last(layer):
            return "unknown", "data_format='channels_first' is not followed"
        if int(layer.get_config().get("depth_multiplier", 1)) != 1:
            return "unknown", "depth_multiplier > 1 ties each input to several outputs"
        if _activation_name(layer) in _CHANNEL_MIXING_ACTIVATIONS:
            return "unknown", SOFTMAX_REASON
        return "channelwise", None
    if isinstance(layer, SEPARABLE + TRANSPOSED + CONV + DENSE):
        if isinstance(layer, SEPARABLE + TRANSPOSED + CONV) and not _channels_last(layer):
            return "unknown", "data_format='channels_first' is not followed"
        if int(layer.get_config().get("groups", 1)) != 1:
            return "unknown", "a grouped convolution ties input and output channel groups"
        return "producer", None
    if isinstance(layer, BATCHNORM):
        axis = layer.get_config().get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis == -1 or (rank is not None and axis == rank - 1):
            return "channelwise", None
        return "unknown", f"normalizes over axis {axis!r}, not the channel axis"
    if isinstance(layer, _classes("Activation")):
        if _activation_name(layer) in _CHANNEL_MIXING_ACTIVATIONS:
            return "unknown", SOFTMAX_REASON
        return "passthrough", None
    if isinstance(layer, _classes("Softmax")):
        axis = layer.get_config().get("axis", -1)
        if axis == -1 or (rank is not None and axis == rank - 1):
            return "unknown", SOFTMAX_REASON
        return "passthrough", None
    if isinstance(layer, PASSTHROUGH):
        if "data_format" in layer.get_config() and not _channels_last(layer):
            return "unknown", "data_format='channels_first' is not followed"
        return "passthrough", None
    if isinstance(layer, TIES):
        return "tie", None
    if isinstance(layer, CONCAT):
        return "concat", None
    if isinstance(layer, FLATTEN):
        if "data_format" in layer.get_config() and not _channels_last(layer):
            return "unknown", "data_format='channels_first' is not followed"
        return "flatten", None
    if isinstance(layer, RESHAPE):
        return "reshape", None
    if isinstance(layer, _classes("Lambda")):
        return "unknown", "a Lambda layer's function is not followed"
    return "unknown", f"layers of type {name} are not followed"
