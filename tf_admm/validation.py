"""Argument checks shared by the modules: each raises ValueError naming what it received.

>>> from tf_admm import validation
>>> validation.check_int("epochs", 3, 0)
3
>>> validation.check_sparsity(1.5)
Traceback (most recent call last):
...
ValueError: sparsity must be in [0, 1). Received: sparsity=1.5
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = [
    "UNITS",
    "check_bool",
    "check_choice",
    "check_int",
    "check_model",
    "check_non_negative",
    "check_positive",
    "check_scheme",
    "check_schedule",
    "check_sparsity",
    "check_unit",
]

UNITS = ("epoch", "step")


def check_model(caller: str, model: Any, *, built: bool = False) -> None:
    """``model`` is a Keras model of the flavour in use (and built, with ``built``)."""
    from tf_admm._keras import is_keras_object, is_model, other_flavour_hint

    if not is_keras_object(model) or not is_model(model):
        raise ValueError(
            f"{caller} takes a Keras model. Received: {model!r} of type "
            f"{type(model).__name__}. {other_flavour_hint()}"
        )
    if built and not model.built:
        raise ValueError(
            f"{caller}: model {model.name!r} is not built; give it a keras.Input (or call it "
            "on a batch) first."
        )  # what UpdateADMM's and a Stage's update_every counts


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
    return int(value)


def check_positive(name: str, value: Any, low: float = 0.0) -> float:
    """``value`` as a float > ``low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > low:
        raise ValueError(f"{name} must be a number > {low:g}. Received: {name}={value!r}")
    return float(value)


def check_non_negative(name: str, value: Any) -> float:
    """``value`` as a float >= 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")
    return float(value)


def check_schedule(rho_growth: Any, rho_max: Any) -> None:
    """rho's schedule: ``rho_growth`` a number >= 1 (rho never shrinks), ``rho_max`` > 0.

    >>> check_schedule(0.5, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: rho_growth must be >= 1 (rho never shrinks). Received: rho_growth=0.5
    """
    for name, value in (("rho_growth", rho_growth), ("rho_max", rho_max)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number. Received: {name}={value!r}")
    if rho_growth < 1:
        raise ValueError(
            f"rho_growth must be >= 1 (rho never shrinks). Received: rho_growth={rho_growth!r}"
        )
    if not rho_max > 0:
        raise ValueError(f"rho_max must be > 0. Received: rho_max={rho_max!r}")


def check_sparsity(sparsity: Any) -> float:
    """``sparsity`` as a float in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise ValueError(
            f"sparsity must be a float in [0, 1). Received: sparsity={sparsity!r} "
            f"of type {type(sparsity).__name__}"
        )
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1). Received: sparsity={sparsity!r}")
    return float(sparsity)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False.

    >>> check_bool("sparse", 1)
    Traceback (most recent call last):
    ...
    ValueError: sparse must be True or False. Received: sparse=1
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
    return value


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}. Received: {name}={value!r}")
    return value


def check_unit(unit: Any) -> str:
    """``"epoch"`` or ``"step"``: what ``update_every`` counts."""
    return check_choice("unit", unit, UNITS)


def check_scheme(scheme: Any) -> str:
    """A quantization scheme of :data:`tf_admm.quantizers.SCHEMES`."""
    from tf_admm.quantizers import SCHEMES

    return check_choice("scheme", scheme, SCHEMES)
