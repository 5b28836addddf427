"""Which layers are compressible, and which of their weights ADMM constrains.

Built-in: kernels of Dense, EinsumDense, Conv1D/2D/3D and their transposes, DepthwiseConv1D/2D
(which TFMOT never prunes), both kernels of SeparableConv1D/2D, Embedding tables, the kernel and
recurrent kernel of LSTM, GRU and SimpleRNN (also inside ``RNN`` and ``Bidirectional``), and the
query, key, value and output kernels of MultiHeadAttention. Any other layer joins by duck typing
TFMOT's ``PrunableLayer`` protocol: a method ``get_prunable_weights()`` returning the variables
to constrain (no TFMOT import is needed).

:func:`weight_layouts` says where each constrained weight keeps its output channels
(:class:`tf_admm.layouts.Layout`), so structured constraints and per-channel scales act on the
real filters of transposed and depthwise convolutions.

>>> import tf_admm
>>> from tf_admm import keras
>>> tf_admm.registry.is_compressible(keras.layers.Dense(3))
True
>>> tf_admm.registry.is_compressible(keras.layers.BatchNormalization())
False
"""

from __future__ import annotations

from tf_admm._keras import flat_layers, keras
from tf_admm.layouts import Layout

__all__ = [
    "channel_weights",
    "holds_channels",
    "check_compressible",
    "compressible_layers",
    "compressible_weights",
    "is_compressible",
    "register_compressible",
    "supported_layers",
    "weight_layouts",
]

_L = keras.layers

# Attribute names differ between flavours (Keras 3 DepthwiseConv2D.kernel vs tf_keras
# .depthwise_kernel), so each class lists the candidates; the first that exists is used.
_WEIGHT_ATTRS: list[tuple[type, tuple[str, ...]]] = [
    (getattr(_L, name), attrs)
    for name, attrs in [
        ("SeparableConv1D", ("depthwise_kernel", "pointwise_kernel")),
        ("SeparableConv2D", ("depthwise_kernel", "pointwise_kernel")),
        ("DepthwiseConv1D", ("depthwise_kernel", "kernel")),
        ("DepthwiseConv2D", ("depthwise_kernel", "kernel")),
        ("Conv1DTranspose", ("kernel",)),
        ("Conv2DTranspose", ("kernel",)),
        ("Conv3DTranspose", ("kernel",)),
        ("Conv1D", ("kernel",)),
        ("Conv2D", ("kernel",)),
        ("Conv3D", ("kernel",)),
        ("Dense", ("kernel",)),
        ("Embedding", ("embeddings",)),
    ]
    if hasattr(_L, name)
]

# The layer classes whose kernels keep their channels elsewhere than on the last axis (also
# read by tf_admm.layer_kinds). Separable convolutions constrain *both* listed kernels; the
# others use the first that exists.
SEPARABLE = tuple(getattr(_L, n) for n in ("SeparableConv1D", "SeparableConv2D") if hasattr(_L, n))
TRANSPOSED = tuple(
    getattr(_L, n)
    for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
    if hasattr(_L, n)
)
DEPTHWISE = tuple(getattr(_L, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(_L, n))
# The layers whose kernel produces channels on its last axis.
_PLAIN_PRODUCERS = tuple(getattr(_L, n) for n in ("Conv1D", "Conv2D", "Conv3D", "Dense"))

# Layers whose matrices are found by weight name (every weight called kernel or
# recurrent_kernel, nested cells and sublayers included): recurrent layers and attention.
# (tf_keras's MultiHeadAttention creates its weights only when first called with query and
# value: tf_admm.cloning.built_copy calls the copy once to build it.)
_NAMED_KERNELS = tuple(
    getattr(_L, n)
    for n in (
        "LSTM",
        "GRU",
        "SimpleRNN",
        "RNN",
        "Bidirectional",
        "MultiHeadAttention",
        "EinsumDense",
    )
    if hasattr(_L, n)
)
_KERNEL_NAMES = ("kernel", "recurrent_kernel")


# Classes registered by users: class -> (weight names, layout kind)
_USER: dict[type, tuple[tuple[str, ...], str]] = {}


def register_compressible(
    layer_class: type, weights: tuple[str, ...] = ("kernel",), layout: str = "channels_last"
) -> type:
    """Make a layer class compressible without giving it ``get_prunable_weights()``.

    Args:
        layer_class: a Keras layer class (its subclasses are included).
        weights: names of the weights to constrain: attributes of the layer holding a
            variable, or the last part of a weight's name (``"kernel"`` matches
            ``my_layer/kernel``).
        layout: where the output channels are (:data:`tf_admm.layouts.KINDS`):
            ``"channels_last"``, ``"transposed"`` (``(..., out, in)``) or ``"depthwise"``.

    Returns ``layer_class``, so it also works as a decorator (``functools.partial``).

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.w = self.add_weight(shape=(shape[-1], 3), name="w")
    ...     def call(self, x):
    ...         return x @ self.w
    >>> _ = tf_admm.register_compressible(Scale, weights=("w",))
    >>> tf_admm.registry.is_compressible(Scale())
    True
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(f"layer_class must be a Keras layer class. Received: {layer_class!r}")
    if (
        isinstance(weights, str)
        or not weights
        or not all(isinstance(w, str) and w for w in weights)
    ):
        raise ValueError(
            f"weights must be a non-empty tuple of weight names. Received: weights={weights!r}"
        )
    Layout(layout)  # checks the kind
    _USER[layer_class] = (tuple(weights), layout)
    return layer_class


def _user_entry(layer):
    for cls, entry in _USER.items():
        if isinstance(layer, cls):
            return entry
    return None


def _short_name(weight) -> str:
    """``kernel`` for ``lstm/lstm_cell/kernel`` (Keras 3 path) or ``.../kernel:0`` (tf_keras)."""
    name = getattr(weight, "path", None) or weight.name
    return name.split("/")[-1].split(":")[0]


def _builtin_attrs(layer) -> tuple[str, ...] | None:
    user = _user_entry(layer)
    if user is not None:
        return user[0]
    if isinstance(layer, _NAMED_KERNELS):
        return _KERNEL_NAMES
    for cls, attrs in _WEIGHT_ATTRS:
        if isinstance(layer, cls):
            return attrs
    return None


def compressible_layers(model) -> list:
    """The compressible layers of a model in order, those of nested models included.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a")])
    >>> outer = keras.Sequential([inner, keras.layers.ReLU(), keras.layers.Dense(2, name="b")])
    >>> [l.name for l in tf_admm.registry.compressible_layers(outer)]
    ['a', 'b']
    """
    # a built layer with nothing to constrain is left out: e.g. one whose
    # get_prunable_weights() returns [] (TFMOT marks the layers it never prunes so)
    return [
        layer
        for layer in flat_layers(model)
        if is_compressible(layer) and not (layer.built and not compressible_weights(layer))
    ]


def supported_layers() -> list[str]:
    """The names of the layer classes ADMM constrains (built in, then registered by users)."""
    builtin = [cls.__name__ for cls, _ in _WEIGHT_ATTRS] + [c.__name__ for c in _NAMED_KERNELS]
    return builtin + [cls.__name__ for cls in _USER]


def check_compressible(layer) -> None:
    """Raise ValueError naming ``layer`` and the supported layers unless ADMM can constrain
    its weights (:func:`is_compressible`)."""
    if not is_compressible(layer):
        raise ValueError(
            f"Layer {layer.name!r} of type {type(layer).__name__} has no compressible weights. "
            f"Allowed: {', '.join(supported_layers())}, or a layer with get_prunable_weights() "
            "(or one registered with tf_admm.register_compressible)."
        )


def is_compressible(layer) -> bool:
    """True if ADMM can constrain weights of ``layer`` (decidable before it is built)."""
    return _builtin_attrs(layer) is not None or callable(
        getattr(layer, "get_prunable_weights", None)
    )


def compressible_weights(layer) -> list:
    """The variables of a *built* layer that ADMM constrains, in a fixed order."""
    if callable(getattr(layer, "get_prunable_weights", None)):
        return list(layer.get_prunable_weights())
    attrs = _builtin_attrs(layer)
    if attrs is None:
        return []
    if _user_entry(layer) is not None:
        found = []
        for name in attrs:
            value = getattr(layer, name, None)
            if value is not None and hasattr(value, "shape") and hasattr(value, "assign"):
                found.append(value)
            else:
                found.extend(w for w in layer.weights if _short_name(w) == name)
        return found
    if isinstance(layer, _NAMED_KERNELS):
        return [w for w in layer.weights if _short_name(w) in _KERNEL_NAMES]
    if isinstance(layer, SEPARABLE):
        return [getattr(layer, a) for a in attrs]
    for attr in attrs:
        weight = getattr(layer, attr, None)
        if weight is not None:
            return [weight]
    return []


def weight_layouts(layer) -> list[Layout]:
    """Where each of :func:`compressible_weights` keeps its output channels, in the same order.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> up = keras.layers.Conv2DTranspose(8, 3)
    >>> up.build((None, 5, 5, 2))
    >>> tf_admm.registry.weight_layouts(up)
    [Layout('transposed')]
    """
    weights = compressible_weights(layer)
    if callable(getattr(layer, "get_prunable_weights", None)):
        return [Layout() for _ in weights]
    user = _user_entry(layer)
    if user is not None:
        return [Layout(user[1]) for _ in weights]
    if isinstance(layer, TRANSPOSED):
        return [Layout("transposed") for _ in weights]
    if isinstance(layer, DEPTHWISE):
        return [Layout("depthwise") for _ in weights]
    if isinstance(layer, SEPARABLE):  # (depthwise kernel, pointwise kernel)
        return [Layout("depthwise"), Layout()][: len(weights)]
    return [Layout() for _ in weights]


def holds_channels(layer) -> bool:
    """True for the layers :func:`channel_weights` reads: Dense, Conv*, Conv*Transpose,
    SeparableConv*, DepthwiseConv* with ``depth_multiplier=1``, BatchNormalization.

    >>> from tf_admm import keras
    >>> holds_channels(keras.layers.BatchNormalization()), holds_channels(keras.layers.ReLU())
    (True, False)
    """
    if isinstance(layer, DEPTHWISE):
        return int(layer.get_config().get("depth_multiplier", 1)) == 1
    return isinstance(layer, (_L.BatchNormalization, *SEPARABLE, *TRANSPOSED, *_PLAIN_PRODUCERS))


def channel_weights(layer) -> tuple[list, list[Layout]]:
    """The variables of a built layer that hold its channels, with their layouts (channels on
    the canonical last axis): what a :class:`tf_admm.ChannelSparsity` wrapper constrains.

    Producers (Dense, Conv, Conv*Transpose, SeparableConv's pointwise kernel): the kernel and
    the bias; DepthwiseConv (``depth_multiplier=1``): the depthwise kernel and the bias;
    BatchNormalization: gamma and beta. Empty for other layers.

    >>> from tf_admm import keras
    >>> bn = keras.layers.BatchNormalization()
    >>> bn.build((None, 4))
    >>> [tuple(w.shape) for w in channel_weights(bn)[0]]
    [(4,), (4,)]
    """
    if isinstance(layer, _L.BatchNormalization):
        found = [getattr(layer, name, None) for name in ("gamma", "beta")]
        found = [w for w in found if w is not None]
        return found, [Layout() for _ in found]
    if isinstance(layer, DEPTHWISE):
        kernel = getattr(layer, "depthwise_kernel", None)
        kernel = kernel if kernel is not None else layer.kernel
        found, layouts = [kernel], [Layout("depthwise")]
    elif isinstance(layer, SEPARABLE):
        found, layouts = [layer.pointwise_kernel], [Layout()]
    elif isinstance(layer, TRANSPOSED):
        found, layouts = [layer.kernel], [Layout("transposed")]
    elif isinstance(layer, _PLAIN_PRODUCERS):
        found, layouts = [layer.kernel], [Layout()]
    else:
        return [], []
    bias = getattr(layer, "bias", None)
    if bias is not None:
        found.append(bias)
        layouts.append(Layout())
    return found, layouts
