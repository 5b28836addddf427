"""Serializable constraint sets S for ADMM: each owns a projection from :mod:`tf_admm.projections`.

A plain float ``s`` given to :func:`tf_admm.prune_low_magnitude` means ``Sparsity(s)``
(unstructured: exactly ``k = size - floor(size * s)`` entries kept per tensor).

>>> import numpy as np, tf_admm
>>> c = tf_admm.BlockSparsity(0.5, block_shape=(1, 4))
>>> int(c.mask(np.ones((8, 3))).sum())
12
>>> tf_admm.constraints.get({"class_name": "Sparsity", "config": {"sparsity": 0.9}})
Sparsity(sparsity=0.9)
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np

from tf_admm import projections
from tf_admm._keras import register
from tf_admm.config_objects import ConfigObject, from_saved, registered_name
from tf_admm.quantizers import Quantizer
from tf_admm.validation import check_bool, check_choice, check_scheme, check_sparsity

__all__ = [
    "BlockSparsity",
    "ChannelSparsity",
    "Constraint",
    "FilterSparsity",
    "NMSparsity",
    "Quantization",
    "Sparsity",
    "get",
]


class Constraint(ConfigObject):
    """Base class: a set S with a Euclidean projection given by a keep-mask.

    Sparsity constraints project by masking (``quantizer`` is None); :class:`Quantization` also
    moves the kept values onto levels (``quantizer`` set, ``fit`` returns the scales).
    """

    quantizer: Quantizer | None = None
    sparsity: float = 0.0
    # True for constraints over a channel group (ChannelSparsity): the wrapper then constrains
    # every weight that holds the layer's channels, biases and BatchNorm gamma/beta included
    channel_level: bool = False

    def mask(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the entries the projection of ``values`` keeps."""
        raise NotImplementedError

    def project(self, values: np.ndarray) -> np.ndarray:
        """Proj_S(values) = values * mask(values)."""
        values = np.asarray(values)
        return np.where(self.mask(values), values, np.zeros((), values.dtype))

    def check_weight(self, shape: tuple[int, ...], name: str) -> None:
        """Raise ValueError if this constraint cannot apply to a weight of ``shape``."""

    @property
    def free_sparsity(self) -> bool:
        """Whether the set has a sparsity that can be chosen (what a gradual ramp moves):
        False for n:m sparsity and for quantization without pruning.

        >>> Sparsity(0.9).free_sparsity, NMSparsity(2, 4).free_sparsity
        (True, False)
        """
        return "sparsity" in self.get_config() and self.quantizer is None

    def at_sparsity(self, sparsity: float) -> Constraint:
        """The same kind of set at another sparsity (the gradual ramp of
        :class:`tf_admm.UpdateADMM`); constraints without a free sparsity (n:m, quantization
        without pruning) return themselves.

        >>> BlockSparsity(0.9, (1, 4)).at_sparsity(0.5)
        BlockSparsity(sparsity=0.5, block_shape=[1, 4])
        >>> NMSparsity(2, 4).at_sparsity(0.1)
        NMSparsity(n=2, m=4)
        """
        if not self.free_sparsity:
            return self
        return type(self).from_config({**self.get_config(), "sparsity": check_sparsity(sparsity)})


@register(package="tf_admm")
class Sparsity(Constraint):
    """Unstructured sparsity: keep exactly the ``size - floor(size * sparsity)`` largest |w|.

    >>> import numpy as np
    >>> Sparsity(0.75).project(np.array([1.0, -4.0, 3.0, 0.5])).tolist()
    [0.0, -4.0, 0.0, 0.0]
    """

    def __init__(self, sparsity: float):
        self.sparsity = check_sparsity(sparsity)

    def mask(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        return projections.topk_mask(values, projections.keep_count(values.size, self.sparsity))

    def get_config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity}


@register(package="tf_admm")
class BlockSparsity(Constraint):
    """Block sparsity over (outputs, inputs) blocks; (1, 4) and (1, 16) match TFLite kernels.

    >>> import numpy as np
    >>> int(BlockSparsity(0.5, (1, 4)).mask(np.ones((16, 2))).sum())
    16
    """

    def __init__(self, sparsity: float, block_shape: tuple[int, int] = (1, 4)):
        self.sparsity = check_sparsity(sparsity)
        if not isinstance(block_shape, (tuple, list)) or not all(
            isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in block_shape
        ):
            raise ValueError(
                "block_shape must be two positive ints (outputs, inputs), e.g. (1, 4). "
                f"Received: block_shape={block_shape!r}"
            )
        shape = tuple(int(b) for b in block_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(
                f"block_shape must be two positive ints (outputs, inputs). "
                f"Received: block_shape={block_shape!r}"
            )
        self.block_shape = shape

    def mask(self, values: np.ndarray) -> np.ndarray:
        return projections.block_mask(values, self.sparsity, self.block_shape)

    def get_config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "block_shape": list(self.block_shape)}


@register(package="tf_admm")
class FilterSparsity(Constraint):
    """Structured sparsity: remove whole output channels (conv filters, dense units).

    >>> import numpy as np
    >>> FilterSparsity(0.5).mask(np.array([[1.0, 5.0], [1.0, 5.0]])).tolist()
    [[False, True], [False, True]]
    """

    def __init__(self, sparsity: float):
        self.sparsity = check_sparsity(sparsity)

    def mask(self, values: np.ndarray) -> np.ndarray:
        return projections.filter_mask(values, self.sparsity)

    def get_config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity}


CHANNEL_SCORES = ("group", "group_and_consumers")


@register(package="tf_admm")
class ChannelSparsity(Constraint):
    """Structured sparsity over a channel group (:func:`tf_admm.channel_groups`): keep the
    ``size - floor(size * sparsity)`` channels of largest score.

    ``score="group"`` (default): a channel's joint L2 norm over every weight of the group that
    holds it (producers' kernel slices and biases, BatchNorm gamma and beta, depthwise filters
    and biases), the Euclidean projection of ADMM's Z-update. ``"group_and_consumers"`` adds
    the squared norm of the consumers' input weights that read the channel (the next layers'
    kernel slices, as Torch-Pruning's group importance counts them): how much the network
    downstream uses it. The consumers' weights only score; they are not pulled or masked.

    :func:`tf_admm.prune_channels` wraps each such layer with it; the Z/U updates and
    :func:`tf_admm.hard_project` then project the whole group at once, so a removed channel
    is zero everywhere (truly dead) and :func:`tf_admm.shrink` removes it. Applied to one
    weight on its own, it keeps the channels (last axis) of largest norm.

    >>> import numpy as np
    >>> ChannelSparsity(0.5).mask(np.array([[1.0, 5.0, 0.1, 2.0]])).tolist()
    [[False, True, False, True]]
    >>> ChannelSparsity(0.5, score="group_and_consumers").get_config()
    {'sparsity': 0.5, 'score': 'group_and_consumers'}
    """

    channel_level = True

    def __init__(self, sparsity: float, score: str = "group"):
        self.sparsity = check_sparsity(sparsity)
        self.score = check_choice("score", score, CHANNEL_SCORES)

    def mask(self, values: np.ndarray) -> np.ndarray:
        return projections.channel_mask(values, self.sparsity)

    def get_config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "score": self.score}


class KeepChannels(Constraint):
    """The channels (last axis) chosen for one weight by a joint group projection; built
    between steps by :mod:`tf_admm.channel_admm`, never saved."""

    channel_level = True

    def __init__(self, keep: np.ndarray):
        self.keep = np.asarray(keep, bool)

    @property
    def sparsity(self) -> float:  # type: ignore[override]
        return 1.0 - float(self.keep.mean()) if self.keep.size else 0.0

    def mask(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        return np.broadcast_to(self.keep, values.shape).copy()

    def get_config(self) -> dict[str, Any]:
        return {"keep": self.keep.tolist()}


@register(package="tf_admm")
class NMSparsity(Constraint):
    """n:m sparsity: ``n`` kept of every ``m`` consecutive inputs per output (default 2:4).

    >>> import numpy as np
    >>> float(NMSparsity(2, 4).mask(np.ones((8, 3))).mean())
    0.5
    """

    def __init__(self, n: int = 2, m: int = 4):
        if isinstance(n, bool) or isinstance(m, bool) or not 0 < int(n) <= int(m):
            raise ValueError(f"NMSparsity needs ints 0 < n <= m. Received: n={n!r}, m={m!r}")
        self.n, self.m = int(n), int(m)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def mask(self, values: np.ndarray) -> np.ndarray:
        return projections.nm_mask(values, self.n, self.m)

    def check_weight(self, shape: tuple[int, ...], name: str) -> None:
        n_in = projections.weight_as_matrix(np.empty(shape, dtype=np.float32)).shape[1]
        if n_in % self.m:
            raise ValueError(
                f"NMSparsity(n={self.n}, m={self.m}) needs the input size of {name!r} to be a "
                f"multiple of {self.m}. Received: weight shape={tuple(shape)} ({n_in} inputs)"
            )

    def get_config(self) -> dict[str, Any]:
        return {"n": self.n, "m": self.m}


def _as_sparsity(sparsity: Any) -> Constraint | None:
    if sparsity is None or (
        isinstance(sparsity, numbers.Real)
        and not isinstance(sparsity, bool)
        and float(sparsity) == 0.0
    ):
        return None
    if isinstance(sparsity, Quantization):
        raise ValueError("Quantization(sparsity=...) takes a sparsity, not another Quantization.")
    if getattr(sparsity, "channel_level", False):
        raise ValueError(
            "Quantization(sparsity=...) does not take ChannelSparsity: prune channels with "
            "tf_admm.prune_channels, shrink, then quantize the smaller model. "
            f"Received: sparsity={sparsity!r}"
        )
    if isinstance(sparsity, dict) and sparsity.get("class_name", "").endswith("Quantization"):
        raise ValueError("Quantization(sparsity=...) takes a sparsity, not another Quantization.")
    return get(sparsity)


_BITS_ALIASES = {"binary": ("binary", 1), "ternary": ("uniform", 2)}


@register(package="tf_admm")
class Quantization(Constraint):
    """Quantization onto ``alpha * levels`` (see :mod:`tf_admm.quantizers`), optionally pruned.

    Args:
        bits: 2..8 (``2`` is ternary), or ``"binary"`` / ``"ternary"``.
        scheme: ``"uniform"`` (default), ``"power_of_two"``, or ``"binary"`` (set by
            ``bits="binary"``).
        per_channel: one scale per output channel (default) or one per tensor.
        sparsity: None / 0 for quantization only; a float or a sparsity constraint to prune
            first (top-k, or blocks, filters, n:m), the survivors taking nonzero levels.

    The scale is fitted inside the projection; after :func:`tf_admm.hard_project` it is fixed,
    and retraining keeps every weight on ``alpha * levels`` (straight-through estimator).

    >>> import numpy as np
    >>> c = Quantization(2, sparsity=0.5, per_channel=False)
    >>> c.project(np.array([[0.9], [-0.1], [0.3], [-1.1]])).ravel().tolist()
    [1.0, 0.0, 0.0, -1.0]
    >>> Quantization("binary").quantizer
    Quantizer(scheme='binary', bits=1)
    """

    def __init__(
        self,
        bits: int | str = 8,
        *,
        scheme: str = "uniform",
        per_channel: bool = True,
        sparsity: Any = None,
    ):
        if isinstance(bits, str):
            if bits not in _BITS_ALIASES:
                raise ValueError(
                    f"bits must be an int in 2..8, 'binary' or 'ternary'. Received: bits={bits!r}"
                )
            alias_scheme, bits = _BITS_ALIASES[bits]
            scheme = alias_scheme if scheme == "uniform" else scheme
        elif isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
            raise ValueError(
                f"bits must be an int in 2..8, 'binary' or 'ternary'. Received: bits={bits!r} "
                f"of type {type(bits).__name__}"
            )
        check_scheme(scheme)
        if scheme == "binary":
            bits = 1
        check_bool("per_channel", per_channel)
        self.quantizer = Quantizer(scheme, int(bits))
        self.per_channel = per_channel
        self.prune = _as_sparsity(sparsity)

    @property
    def bits(self) -> int:
        return self.quantizer.bits

    @property
    def scheme(self) -> str:
        return self.quantizer.scheme

    @property
    def sparsity(self) -> float:  # type: ignore[override]
        return self.prune.sparsity if self.prune is not None else 0.0

    @property
    def free_sparsity(self) -> bool:
        """True when it prunes with a free sparsity: a gradual ramp then moves the pruning
        inside and keeps the levels.

        >>> Quantization(4, sparsity=0.9).free_sparsity, Quantization(4).free_sparsity
        (True, False)
        """
        return self.prune is not None and self.prune.free_sparsity

    def at_sparsity(self, sparsity: float) -> Constraint:
        """The same quantization with its pruning at ``sparsity`` (itself without pruning).

        >>> Quantization(4, sparsity=0.9).at_sparsity(0.5).sparsity
        0.5
        """
        if not self.free_sparsity:
            return self
        ramped = copy.copy(self)
        ramped.prune = self.prune.at_sparsity(sparsity)
        return ramped

    def mask(self, values: np.ndarray) -> np.ndarray:
        """The support: the pruning mask, or all True without sparsity."""
        values = np.asarray(values)
        if self.prune is None:
            return np.ones(values.shape, bool)
        return self.prune.mask(values)

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int]:
        """Shape of the scale variable for a weight of ``shape`` (broadcasts on the last axis)."""
        return (int(shape[-1]),) if self.per_channel and len(shape) >= 2 else (1,)

    def fit(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(scale, keep, projected)``: scale of :meth:`scale_shape`, the support and
        Proj(values) in ``values``' shape and dtype."""
        values = np.asarray(values)
        keep = self.mask(values)
        matrix = projections.weight_as_matrix(values)
        keep_m = projections.weight_as_matrix(keep) if self.prune is not None else None
        if not self.per_channel or values.ndim < 2:
            matrix = matrix.reshape(1, -1)
            keep_m = None if keep_m is None else keep_m.reshape(1, -1)
        alpha, units = self.quantizer.fit(matrix, keep_m)
        scale = alpha.astype(values.dtype)
        units = units.astype(values.dtype)
        if not self.per_channel or values.ndim < 2:
            projected = (units * scale[:, None]).reshape(values.shape)
        else:
            projected = np.ascontiguousarray((units * scale[:, None]).T).reshape(values.shape)
        return scale.reshape(self.scale_shape(values.shape)), keep, projected

    def project(self, values: np.ndarray) -> np.ndarray:
        return self.fit(values)[2]

    def check_weight(self, shape: tuple[int, ...], name: str) -> None:
        if self.prune is not None:
            self.prune.check_weight(shape, name)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bits": self.bits,
            "scheme": self.scheme,
            "per_channel": self.per_channel,
        }
        config["sparsity"] = None if self.prune is None else serialize(self.prune)
        return config

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.get_config())))


_CLASSES = {
    c.__name__: c
    for c in (Sparsity, BlockSparsity, FilterSparsity, ChannelSparsity, NMSparsity, Quantization)
}


def get(identifier: Any) -> Constraint | None:
    """A constraint from a float (unstructured sparsity), a dict config, a Constraint or None.

    A config whose ``class_name`` is not built in is looked up among the classes registered
    with ``keras.saving.register_keras_serializable`` (a user's :class:`Constraint` subclass).
    """
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        return from_saved(identifier, _CLASSES, Constraint, "constraint")
    if isinstance(identifier, numbers.Real) and not isinstance(identifier, bool):
        return Sparsity(identifier)
    raise ValueError(
        "A constraint must be a float sparsity in [0, 1), a tf_admm constraint "
        "(Sparsity, BlockSparsity, FilterSparsity, NMSparsity, Quantization), a config dict, "
        "or None. "
        f"Received: {identifier!r} of type {type(identifier).__name__}"
    )


def serialize(constraint: Constraint) -> dict[str, Any]:
    """``{"class_name", "config"}``; a user's class under its registered name ("pkg>Name")."""
    name = registered_name(constraint, _CLASSES, "Constraint")
    return {"class_name": name, "config": constraint.get_config()}
