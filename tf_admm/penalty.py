"""The ADMM augmented-Lagrangian term, as a stateless serializable object.

>>> import tensorflow as tf, tf_admm
>>> p = tf_admm.ADMMPenalty()
>>> float(p(tf.ones((2, 2)), tf.zeros((2, 2)), tf.zeros((2, 2)), 2.0))
4.0
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_admm._keras import register
from tf_admm.config_objects import from_saved, registered_name

__all__ = ["ADMMPenalty", "deserialize", "serialize"]


@register(package="tf_admm")
class ADMMPenalty:
    """rho / 2 * ||W - Z + U||_F^2 (the *squared* Frobenius norm), computed in float32.

    It holds no state: the layer wrapper owns W, Z, U and rho and passes them in.
    """

    def __call__(self, weight, z, u, rho) -> tf.Tensor:
        diff = tf.cast(weight, tf.float32) - tf.cast(z, tf.float32) + tf.cast(u, tf.float32)
        return 0.5 * tf.cast(rho, tf.float32) * tf.reduce_sum(tf.square(diff))

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ADMMPenalty:
        return cls(**config)


def serialize(penalty: ADMMPenalty) -> dict[str, Any]:
    """``{"class_name": registered name, "config": ...}`` (a subclass under its own name).

    >>> serialize(ADMMPenalty())
    {'class_name': 'tf_admm>ADMMPenalty', 'config': {}}
    """
    name = registered_name(penalty, {}, "Penalty")  # every class under its registered name
    return {"class_name": name, "config": penalty.get_config()}


def deserialize(config: dict[str, Any]) -> ADMMPenalty:
    """Inverse of :func:`serialize`; old configs ``{"class_name": "ADMMPenalty"}`` included."""
    saved = {"class_name": "ADMMPenalty", **config}
    return from_saved(saved, {"ADMMPenalty": ADMMPenalty}, ADMMPenalty, "penalty")
