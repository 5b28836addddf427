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

import numbers
from typing import Any

import numpy as np

from tf_admm import projections
from tf_admm._keras import register

__all__ = ["BlockSparsity", "Constraint", "FilterSparsity", "NMSparsity", "Sparsity", "get"]


def _check_sparsity(sparsity: Any) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise ValueError(
            f"sparsity must be a float in [0, 1). Received: sparsity={sparsity!r} "
            f"of type {type(sparsity).__name__}"
        )
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1). Received: sparsity={sparsity!r}")
    return float(sparsity)


class Constraint:
    """Base class: a set S with a Euclidean projection given by a keep-mask."""

    def mask(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the entries the projection of ``values`` keeps."""
        raise NotImplementedError

    def project(self, values: np.ndarray) -> np.ndarray:
        """Proj_S(values) = values * mask(values)."""
        values = np.asarray(values)
        return np.where(self.mask(values), values, np.zeros((), values.dtype))

    def check_weight(self, shape: tuple[int, ...], name: str) -> None:
        """Raise ValueError if this constraint cannot apply to a weight of ``shape``."""

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register(package="tf_admm")
class Sparsity(Constraint):
    """Unstructured sparsity: keep exactly the ``size - floor(size * sparsity)`` largest |w|.

    >>> import numpy as np
    >>> Sparsity(0.75).project(np.array([1.0, -4.0, 3.0, 0.5])).tolist()
    [0.0, -4.0, 0.0, 0.0]
    """

    def __init__(self, sparsity: float):
        self.sparsity = _check_sparsity(sparsity)

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
        self.sparsity = _check_sparsity(sparsity)
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
        self.sparsity = _check_sparsity(sparsity)

    def mask(self, values: np.ndarray) -> np.ndarray:
        return projections.filter_mask(values, self.sparsity)

    def get_config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity}


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


_CLASSES = {c.__name__: c for c in (Sparsity, BlockSparsity, FilterSparsity, NMSparsity)}


def get(identifier: Any) -> Constraint | None:
    """A constraint from a float (unstructured sparsity), a dict config, a Constraint or None."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        name = identifier["class_name"].split(">")[-1]
        if name not in _CLASSES:
            raise ValueError(
                f"Unknown constraint class_name={identifier['class_name']!r}; "
                f"allowed: {sorted(_CLASSES)}"
            )
        return _CLASSES[name].from_config(identifier.get("config", {}))
    if isinstance(identifier, numbers.Real) and not isinstance(identifier, bool):
        return Sparsity(identifier)
    raise ValueError(
        "A constraint must be a float sparsity in [0, 1), a tf_admm constraint "
        "(Sparsity, BlockSparsity, FilterSparsity, NMSparsity), a config dict, or None. "
        f"Received: {identifier!r} of type {type(identifier).__name__}"
    )


def serialize(constraint: Constraint) -> dict[str, Any]:
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
