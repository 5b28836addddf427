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

__all__ = ["ADMMPenalty"]


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
