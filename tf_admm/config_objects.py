"""Serializable value objects (constraints, schedules, penalties): one base class, and one way
to name their classes in a saved config and to find them again.

A built-in class is saved under its own name; a user's subclass under the name it is
registered with (``keras.saving.register_keras_serializable``), so a saved model can restore it.

>>> from tf_admm import config_objects
>>> class Step(config_objects.ConfigObject):
...     def __init__(self, n=1):
...         self.n = n
...     def get_config(self):
...         return {"n": self.n}
>>> Step(2) == Step.from_config({"n": 2}), Step(2)
(True, Step(n=2))
>>> config_objects.class_named("tf_admm>Step", {"Step": Step}, Step) is Step
True
"""

from __future__ import annotations

from typing import Any

from tf_admm._keras import keras

__all__ = ["ConfigObject", "class_named", "from_saved", "registered_name"]


class ConfigObject:
    """Equal, hashable and printed by its config; ``from_config`` is ``cls(**config)``."""

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def registered_name(obj: Any, built_in: dict[str, type], kind: str) -> str:
    """The ``class_name`` to save ``obj`` under: its class's name for a class of
    ``built_in``, else its registered name; a ValueError naming ``kind`` for an unregistered
    class (a saved model could not restore it)."""
    cls = type(obj)
    if built_in.get(cls.__name__) is cls:
        return cls.__name__
    name = keras.saving.get_registered_name(cls)
    if keras.saving.get_registered_object(name) is not cls:
        raise ValueError(
            f"{kind} class {cls.__name__} is not registered, so a saved model could not "
            "restore it. Decorate it with "
            "@keras.saving.register_keras_serializable(package='...')."
        )
    return name


def class_named(name: str, built_in: dict[str, type], base: type) -> type | None:
    """The class a saved ``class_name`` means: a class of ``built_in`` (plain or under the
    ``tf_admm>`` package prefix), else a registered subclass of ``base``; None if neither."""
    prefix, _, short = name.rpartition(">")
    if prefix in ("", "tf_admm") and short in built_in:
        return built_in[short]
    found = keras.saving.get_registered_object(name)
    return found if isinstance(found, type) and issubclass(found, base) else None


def from_saved(config: dict[str, Any], built_in: dict[str, type], base: type, kind: str):
    """The object a saved ``{"class_name": ..., "config": ...}`` dict describes (the class by
    :func:`class_named`); a ValueError naming ``kind``, the name received and what is allowed
    when no such class is known."""
    name = config["class_name"]
    cls = class_named(name, built_in, base)
    if cls is None:
        allowed = f"one of {sorted(built_in)} or " if built_in else ""
        raise ValueError(
            f"Unknown {kind} class_name={name!r}; allowed: {allowed}a subclass of "
            f"{base.__name__} registered with keras.saving.register_keras_serializable"
            "(package=...), its module imported before loading."
        )
    return cls.from_config(config.get("config", {}))
