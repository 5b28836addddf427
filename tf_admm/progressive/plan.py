"""The plan of a progressive run: :class:`Stage` (one step's targets and training settings),
JSON round trips, the geometric spacing of the paper, and the bit steps of the accuracy guard.

Pure configuration: nothing here trains or touches files other than the JSON it is given.

>>> import tf_admm
>>> stages = [tf_admm.Stage("half", sparsity=0.5, admm_epochs=2, retrain_epochs=1),
...           tf_admm.Stage("final", sparsity={"fc1": 0.9}, bits=3)]
>>> tf_admm.stages_from_json(tf_admm.stages_to_json(stages)) == stages
True
"""

from __future__ import annotations

import inspect
import json
import numbers
import os
from typing import Any

from tf_admm import constraints as constraints_lib
from tf_admm import schedules as schedules_lib
from tf_admm._keras import keras
from tf_admm.validation import (
    check_bool,
    check_int,
    check_non_negative,
    check_positive,
    check_schedule,
    check_scheme,
    check_sparsity,
    check_unit,
)

__all__ = [
    "Stage",
    "geometric_stages",
    "more_bits",
    "stages_from_json",
    "stages_to_json",
]

_SCHEDULES = ("auto", "cosine", "constant")


def _check_sparsity_spec(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for name, s in value.items():
            if not isinstance(name, str):
                raise ValueError(f"sparsity keys must be layer names. Received: {name!r}")
            out[name] = None if s is None else check_sparsity(s)
        return out
    return check_sparsity(value)


def _check_bits_spec(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        for name, b in value.items():
            if not isinstance(name, str):
                raise ValueError(f"bits keys must be layer names. Received: {name!r}")
            if b is not None:
                constraints_lib.Quantization(b)
        return dict(value)
    constraints_lib.Quantization(value)
    return value


class Stage:
    """One progressive step: targets, ADMM and retraining settings (JSON-serializable).

    Args:
        name: a label for banners and reports.
        sparsity: None, a float for every compressible layer, or a dict layer name -> float.
        bits: None, 2..8 / ``"ternary"`` / ``"binary"`` for every compressible layer, or a dict
            layer name -> bits (e.g. binarize all but the first and last layers, then those).
        flops_rate: structured pruning instead of ``sparsity``/``bits``: the stage removes whole
            channels (:func:`tf_admm.prune_channels` with per-group targets from
            :func:`tf_admm.allocate_channels`) until the model has at most ``1 / flops_rate``
            of the MACs of the run's dense model (:func:`run_stage`'s ``reference_macs``),
            and its result is physically smaller (:func:`tf_admm.shrink`).
        scheme, per_channel: as in :func:`tf_admm.quantize`.
        admm_epochs: epochs of ADMM training (0: hard projection right away).
        retrain_epochs: epochs of retraining on the constraint after the hard projection.
        update_every, unit: Z/U update interval (see :class:`tf_admm.UpdateADMM`).
        ramp: 0 projects Z onto the stage's targets from the first step; a fraction in (0, 1]
            ramps the sparsity Z is projected onto from the seed's zeros to the targets over
            that share of the ADMM phase's steps (``UpdateADMM(ramp_steps=...)``). The default
            ``schedule="auto"`` then keeps the ADMM phase's rate constant: under a decayed
            rate W cannot follow Z at the end of the ramp, where most weights of the sparsest
            layers are cut.
        rho, rho_growth, rho_max: the rho schedule.
        rho_final: when set, the growth per Z/U update is derived so that rho goes from
            ``rho`` to ``rho_final`` over the ADMM phase (``rho_growth`` is then ignored).
        rho_by_gradient: 0 (default) gives every layer the same rho; a power p > 0 scales each
            layer's rho schedule by (its loss-gradient RMS / their geometric mean) ** p,
            measured on 20 training batches before the ADMM phase
            (:func:`tf_admm.scale_rho_by_gradient`; 1 is the measured recipe).
        optimizer: a Keras optimizer name (``"adam"``, ``"sgd"``, ...).
        learning_rate: for the ADMM phase; ``retrain_learning_rate`` for retraining (default
            the same).
        schedule: the learning rate's: ``"auto"`` (default): cosine decay over each phase,
            except a constant rate over an ADMM phase whose targets ramp (``ramp > 0``, or
            wrappers whose schedule ramps); ``"cosine"``: cosine decay over each phase;
            ``"constant"``: no decay.
        admm_schedule: the ADMM schedule as an object instead of the fields above
            (``update_every``, ``unit``, ``ramp``, ``rho_growth``, ``rho_max``, ``rho_final``,
            ``rho_by_gradient``, which must then keep their defaults): one
            :class:`tf_admm.schedules.ADMMSchedule` for every wrapped layer, or a dict layer
            name -> schedule (layers left out get :func:`tf_admm.schedules.default_for` their
            constraint; one schedule only in a ``flops_rate`` stage). The stage's wrappers keep
            it, as with ``prune_low_magnitude(schedule=...)``; ``rho_scaling="auto"`` scales
            rho by gradient, measured on the stage's training batches.

    >>> Stage("s1", sparsity=0.9, admm_epochs=2).get_config()["sparsity"]
    0.9
    >>> from tf_admm import schedules
    >>> s = Stage("s2", sparsity=0.9, admm_schedule=schedules.Gradual(rho_final=0.05))
    >>> Stage.from_config(s.get_config()) == s
    True
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        sparsity: Any = None,
        bits: Any = None,
        flops_rate: float | None = None,
        scheme: str = "uniform",
        per_channel: bool = True,
        admm_epochs: int = 4,
        retrain_epochs: int = 4,
        update_every: int = 1,
        unit: str = "epoch",
        ramp: float = 0.0,
        rho: float = 1e-3,
        rho_growth: float = 1.3,
        rho_max: float = 1.0,
        rho_final: float | None = None,
        rho_by_gradient: float = 0.0,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        retrain_learning_rate: float | None = None,
        schedule: str = "auto",
        admm_schedule: Any = None,
    ):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a str or None. Received: name={name!r}")
        self.name = name
        self.sparsity = _check_sparsity_spec(sparsity)
        self.bits = _check_bits_spec(bits)
        self.flops_rate = (
            None if flops_rate is None else check_positive("flops_rate", flops_rate, 1.0)
        )
        if self.flops_rate is not None and (self.sparsity is not None or self.bits is not None):
            raise ValueError(
                "A Stage prunes channels (flops_rate=...) or prunes and quantizes weights "
                "(sparsity=..., bits=...), not both: give them to consecutive stages. Received: "
                f"flops_rate={flops_rate!r}, sparsity={sparsity!r}, bits={bits!r}"
            )
        if self.sparsity is None and self.bits is None and self.flops_rate is None:
            raise ValueError(
                "A Stage needs sparsity=..., bits=... (or both), or flops_rate=.... "
                "Received none of them."
            )
        self.scheme = check_scheme(scheme)
        self.per_channel = check_bool("per_channel", per_channel)
        self.admm_epochs = check_int("admm_epochs", admm_epochs, 0)
        self.retrain_epochs = check_int("retrain_epochs", retrain_epochs, 0)
        self.update_every = check_int("update_every", update_every, 1)
        self.unit = check_unit(unit)
        if isinstance(ramp, bool) or not isinstance(ramp, numbers.Real) or not 0 <= ramp <= 1:
            raise ValueError(f"ramp must be a fraction in [0, 1]. Received: ramp={ramp!r}")
        self.ramp = float(ramp)
        self.rho = check_positive("rho", rho)
        check_schedule(rho_growth, rho_max)
        self.rho_growth, self.rho_max = float(rho_growth), float(rho_max)
        self.rho_final = None if rho_final is None else check_positive("rho_final", rho_final)
        if self.rho_final is not None and self.rho_final < self.rho:
            raise ValueError(
                f"rho_final must be >= rho (rho never shrinks). Received: rho={rho!r}, "
                f"rho_final={rho_final!r}"
            )
        self.rho_by_gradient = check_non_negative("rho_by_gradient", rho_by_gradient)
        if not isinstance(optimizer, str):
            raise ValueError(f"optimizer must be a Keras optimizer name. Received: {optimizer!r}")
        keras.optimizers.get(optimizer)  # raises on unknown names
        self.optimizer = optimizer
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.retrain_learning_rate = (
            None
            if retrain_learning_rate is None
            else check_positive("retrain_learning_rate", retrain_learning_rate)
        )
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}. Received: {schedule!r}")
        self.schedule = schedule
        self.admm_schedule = schedules_lib.get_spec(admm_schedule)
        if self.admm_schedule is not None:
            self._check_one_schedule(admm_schedule)

    _SCHEDULE_FIELDS = (
        "update_every",
        "unit",
        "ramp",
        "rho_growth",
        "rho_max",
        "rho_final",
        "rho_by_gradient",
    )

    def _check_one_schedule(self, admm_schedule: Any) -> None:
        """The schedule comes as an object or as the fields, not both; a channel stage's
        groups share one."""
        defaults = inspect.signature(Stage).parameters
        given = {
            k: getattr(self, k)
            for k in self._SCHEDULE_FIELDS
            if getattr(self, k) != defaults[k].default
        }
        if given:
            raise ValueError(
                "A Stage takes its ADMM schedule as admm_schedule=... or as the fields "
                f"{sorted(self._SCHEDULE_FIELDS)}, not both. Received: "
                f"admm_schedule={admm_schedule!r} and {given}"
            )
        if self.flops_rate is not None and isinstance(self.admm_schedule, dict):
            raise ValueError(
                "A flops_rate stage takes one admm_schedule for every wrapper (a channel group "
                f"is projected jointly). Received a dict by layer: {sorted(self.admm_schedule)}"
            )

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sparsity": self.sparsity,
            "bits": self.bits,
            "flops_rate": self.flops_rate,
            "scheme": self.scheme,
            "per_channel": self.per_channel,
            "admm_epochs": self.admm_epochs,
            "retrain_epochs": self.retrain_epochs,
            "update_every": self.update_every,
            "unit": self.unit,
            "ramp": self.ramp,
            "rho": self.rho,
            "rho_growth": self.rho_growth,
            "rho_max": self.rho_max,
            "rho_final": self.rho_final,
            "rho_by_gradient": self.rho_by_gradient,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "retrain_learning_rate": self.retrain_learning_rate,
            "schedule": self.schedule,
            "admm_schedule": schedules_lib.serialize_spec(self.admm_schedule),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Stage:
        config = dict(config)
        return cls(config.pop("name", None), **config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, sparsity={self.sparsity!r}, bits={self.bits!r})"

    def label(self, index: int) -> str:
        return self.name or f"stage {index + 1}"

    def layer_sparsity(self, name: str) -> float | None:
        if isinstance(self.sparsity, dict):
            return self.sparsity.get(name)
        return self.sparsity

    def layer_bits(self, name: str) -> Any:
        if isinstance(self.bits, dict):
            return self.bits.get(name)
        return self.bits


def stages_to_json(stages: list[Stage], path: str | os.PathLike | None = None) -> str:
    """The plan as JSON text (and written to ``path`` when given)."""
    text = json.dumps([s.get_config() for s in stages], indent=1)
    if path is not None:
        with open(path, "w") as handle:
            handle.write(text)
    return text


def stages_from_json(text_or_path: str | os.PathLike) -> list[Stage]:
    """Stages from JSON text or from a file holding it."""
    text = os.fspath(text_or_path)
    if not text.lstrip().startswith("[") and os.path.isfile(text):
        with open(text) as handle:
            text = handle.read()
    configs = json.loads(text)
    if not isinstance(configs, list):
        raise ValueError("A plan is a JSON list of stage configs.")
    return [Stage.from_config(c) for c in configs]


def geometric_stages(
    targets: dict[str, float],
    steps: int,
    *,
    start: dict[str, float] | None = None,
    **stage_kwargs,
) -> list[Stage]:
    """Split final per-layer sparsities into ``steps`` stages whose kept fraction (density)
    shrinks geometrically, i.e. evenly in log-rate: the paper's progression.

    ``start`` gives the sparsities the stages begin from (default: dense, 0 for every layer),
    e.g. ``tf_admm.report.layer_sparsity(checkpoint)`` to continue from a pruned model.

    >>> [round(s.sparsity["fc"], 3) for s in geometric_stages({"fc": 0.99}, 2)]
    [0.9, 0.99]
    >>> [round(s.sparsity["fc"], 3) for s in geometric_stages({"fc": 0.999}, 2, start={"fc": 0.9})]
    [0.99, 0.999]
    """
    steps = check_int("steps", steps, 1)
    start = start or {}  # layers of start without a target are ignored
    stages = []
    for k in range(1, steps + 1):
        sparsity = {}
        for n, s in targets.items():
            kept = 1.0 - start.get(n, 0.0)  # density: kept * ((1 - s) / kept) ** (k / steps)
            sparsity[n] = 1.0 - kept ** (1 - k / steps) * (1.0 - s) ** (k / steps)
        kwargs = dict(stage_kwargs)
        kwargs.setdefault("name", f"step {k}/{steps}")
        stages.append(Stage(kwargs.pop("name"), sparsity=sparsity, **kwargs))
    return stages


def _bit_count(bits: Any) -> int:
    b = {"binary": 1, "ternary": 2}.get(bits, bits)
    if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 1 <= b <= 8:
        raise ValueError(f"bits must be 1..8, 'binary' or 'ternary'. Received: {bits!r}")
    return int(b)


def more_bits(bits: Any, current: Any = None) -> int | None:
    """The accuracy guard's retry for a failed quantization step: halfway, rounded up, from
    ``bits`` to the ``current`` bits of the last good model (None: not quantized, counted as
    8). ``"binary"`` counts as 1 bit, ``"ternary"`` as 2. None when no step lies between.

    >>> [more_bits(b) for b in ("binary", "ternary", 3, 4, 7, 8)]
    [5, 5, 6, 6, 8, None]
    >>> [more_bits("binary", current=c) for c in (5, 3, 2)]
    [3, 2, None]
    """
    b = _bit_count(bits)
    c = 8 if current is None else _bit_count(current)
    middle = -(-(b + c) // 2)
    if middle <= b or (current is not None and middle >= c):
        return None
    return middle
