"""ADMM schedules: when Z and U are updated, what Z is projected onto, how rho grows.

A schedule is data, held by each :class:`tf_admm.ADMMWrapper` and saved in its config (so in
the ``.keras`` file), like TFMOT's pruning schedules. :class:`tf_admm.UpdateADMM` asks each
wrapper's schedule what to do; a model reloaded mid-run resumes with ``UpdateADMM()`` and no
arguments. Two schedules:

- :class:`Gradual`: Z is projected onto a sparsity that rises from the layer's current zeros to
  its target on gradual magnitude pruning's cubic curve over ``ramp_steps`` steps, Z/U every
  ``update_every`` steps, rho from the wrapper's rho to ``rho_final`` over the ramp. The
  default of pruning wrappers with a free sparsity.
- :class:`OneShot`: Z projected onto the target from the first update, Z/U every
  ``update_every`` epochs (or steps), rho multiplied by ``rho_growth`` per update up to
  ``rho_max``: the paper's schedule. The default of quantizing wrappers and n:m sparsity.

Both say how each layer's rho is scaled before ADMM starts (``rho_scaling``), and when weights
outside Z's support are masked (``masking``): ``"end"`` only by :func:`tf_admm.hard_project`
(the paper's ADMM), ``"ramp"`` also while ADMM runs, so that what the model computes loses
weights as Z's ramp removes them, the way gradual magnitude pruning's mask does, while ADMM
chooses what goes.

>>> from tf_admm import schedules
>>> s = schedules.Gradual(ramp_steps=1000)
>>> s.interval(s.ramp(None)), round(s.rho_rule(1e-3, s.ramp(None))[0], 4)
(100, 1.5849)
>>> schedules.get(schedules.serialize(s)) == s
True
"""

from __future__ import annotations

from typing import Any

from tf_admm._keras import register
from tf_admm.config_objects import ConfigObject, from_saved, registered_name
from tf_admm.validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_schedule,
    check_unit,
)

__all__ = [
    "ADMMSchedule",
    "Gradual",
    "OneShot",
    "default_for",
    "get",
    "get_spec",
    "serialize",
    "serialize_spec",
]

RHO_SCALINGS = ("auto", "gradient", "size", "none")
MASKINGS = ("end", "ramp")
PULLS = ("ramp", "target")
GRADUAL_RHO_FINAL = 0.1  # rho at the end of the gradual ramp by default
GRADUAL_EVERY = 100  # the gradual schedule's most steps between Z/U updates


def growth_to_reach(rho: float, rho_final: float, count: int) -> float:
    """The factor per Z/U update that takes ``rho`` to ``rho_final`` in ``count`` updates
    (1 when there is none).

    >>> round(growth_to_reach(1e-3, 0.1, 2), 6)
    10.0
    """
    return (rho_final / rho) ** (1.0 / count) if count > 0 else 1.0


class ADMMSchedule(ConfigObject):
    """Base class: a serializable ADMM schedule (see the module docs).

    Subclasses set ``unit`` and implement :meth:`ramp`, :meth:`interval` and
    :meth:`rho_rule`, and ``get_config``; ``from_config``, equality and ``repr`` come from the
    config (:class:`tf_admm.config_objects.ConfigObject`).
    """

    unit: str = "epoch"
    rho_scaling: str = "auto"
    rescale_dual: bool = True
    masking: str = "end"
    pull: str = "ramp"

    def _check_common(self, rho_scaling: Any, rescale_dual: Any, masking: Any, pull: Any) -> None:
        self.rho_scaling = check_choice("rho_scaling", rho_scaling, RHO_SCALINGS)
        self.rescale_dual = check_bool("rescale_dual", rescale_dual)
        self.masking = check_choice("masking", masking, MASKINGS)
        self.pull = check_choice("pull", pull, PULLS)
        if self.pull == "target" and self.masking != "ramp":
            raise ValueError(
                "pull='target' projects Z onto the target from the first update while the "
                "forward pass's mask follows the ramp, so it needs masking='ramp' (with "
                "masking='end' nothing would follow the ramp). Received: "
                f"pull={pull!r}, masking={masking!r}"
            )

    def ramp(self, fit_steps: int | None) -> int:
        """The steps of the sparsity ramp (0: none), given the running ``fit``'s steps."""
        raise NotImplementedError

    def interval(self, ramp_steps: int) -> int:
        """Units (``self.unit``) between two Z/U updates, given the resolved ramp."""
        raise NotImplementedError

    def rho_rule(self, rho: float, ramp_steps: int) -> tuple[float, float]:
        """``(growth per update, cap)`` for a layer starting at ``rho`` (before its
        ``rho_scale``, which multiplies the cap)."""
        raise NotImplementedError


@register(package="tf_admm")
class Gradual(ADMMSchedule):
    """Gradual ADMM: Z follows a growing sparsity, rho rises to ``rho_final`` over the ramp.

    Z is projected onto a sparsity that rises from the layer's current zeros to its target on
    the cubic curve of gradual magnitude pruning (Zhu and Gupta 2017) over ``ramp_steps``
    training steps, then stays at the target. Train it at a constant learning rate: a rate
    decayed over the ramp leaves the weights unable to follow Z where the ramp cuts most.

    Args:
        ramp_steps: steps of the ramp (>= 1), or ``"fit"``: the first ``ramp_end`` of the
            steps of the ``fit`` in which ADMM starts (its epochs times steps per epoch).
            Resolved once, when the layer starts ADMM, and kept in the wrapper's variables: a
            resumed fit keeps it.
        update_every: steps between two Z/U updates (>= 1), or ``"auto"``: a tenth of the
            ramp, at most 100.
        rho_final: the rho reached at the end of the ramp (None: 0.1, or the layer's rho if
            higher); rho grows by the same factor at every update to get there.
        rho_scaling: how each layer's rho is scaled before ADMM starts: ``"gradient"`` by its
            loss-gradient RMS (:func:`tf_admm.scale_rho_by_gradient`, needs
            ``UpdateADMM(gradient_data=...)``), ``"size"`` by its weight count, ``"none"``;
            ``"auto"``: ``"gradient"`` when ``UpdateADMM`` is given ``gradient_data``, else
            ``"none"``.
        rescale_dual: rescale U when rho grows (see :func:`tf_admm.update_admm`).
        masking: ``"end"`` (default): weights are masked by :func:`tf_admm.hard_project`
            only, after ADMM has pulled them towards Z; ``"ramp"``: while ADMM runs, the
            forward pass also sees the weights outside the ramp's support (Z's, as of the
            last Z/U update) at zero, so the model never meets the whole projection at once.
            The wrapper's masks are not changed: a weight Z takes back trains again, from the
            zero the forward pass wrote into it. Pruning constraints only (a quantizing
            wrapper keeps its levels for ``hard_project``).
        pull: what Z, the target of ADMM's pull, is projected onto while the ramp runs:
            ``"ramp"`` (default) the ramped sparsity, so Z and the forward pass's mask are one
            support; ``"target"`` the final target from the first update, while the mask of
            ``masking="ramp"`` (required) still follows the ramp: every weight outside the
            target is pulled towards zero from the first update, before the mask removes it.
            The wrapper then keeps the ramp's support in variables of its own
            (:attr:`tf_admm.ADMMWrapper.support_vars`).
        ramp_end: with ``ramp_steps="fit"``, the fraction of the fit's steps the ramp takes,
            in (0, 1]; Z stays at the target for the rest of the fit, so that under
            ``masking="ramp"`` the model trains on the final support before
            :func:`tf_admm.hard_project` (1: the ramp ends at the fit's last step).

    >>> from tf_admm import schedules
    >>> s = schedules.Gradual(ramp_steps=50, update_every=5)
    >>> s.ramp(None), s.interval(50), s.rho_rule(1e-3, 50)[1]
    (50, 5, 0.1)
    >>> schedules.Gradual(ramp_end=0.9).ramp(470)
    423
    """

    unit = "step"

    def __init__(
        self,
        ramp_steps: int | str = "fit",
        update_every: int | str = "auto",
        rho_final: float | None = None,
        rho_scaling: str = "auto",
        rescale_dual: bool = True,
        masking: str = "end",
        ramp_end: float = 1.0,
        pull: str = "ramp",
    ):
        if ramp_steps != "fit":
            if isinstance(ramp_steps, str):
                raise ValueError(
                    f"ramp_steps must be an int >= 1 or 'fit'. Received: ramp_steps={ramp_steps!r}"
                )
            ramp_steps = check_int("ramp_steps", ramp_steps, 1)
        if update_every != "auto":
            update_every = check_int("update_every", update_every, 1)
        self.ramp_steps = ramp_steps
        self.update_every = update_every
        self.rho_final = None if rho_final is None else check_positive("rho_final", rho_final)
        self._check_common(rho_scaling, rescale_dual, masking, pull)
        ramp_end = check_positive("ramp_end", ramp_end)
        if ramp_end > 1.0 or (ramp_end != 1.0 and ramp_steps != "fit"):
            raise ValueError(
                "ramp_end is the fraction of the fit's steps the ramp takes: in (0, 1], and "
                "only with ramp_steps='fit'. Received: "
                f"ramp_end={ramp_end!r}, ramp_steps={ramp_steps!r}"
            )
        self.ramp_end = float(ramp_end)

    def ramp(self, fit_steps: int | None) -> int:
        if self.ramp_steps != "fit":
            return self.ramp_steps
        if not fit_steps:
            raise ValueError(
                "Gradual(ramp_steps='fit') reads the number of steps from fit(), which does "
                "not know it here (a dataset of unknown length, or a loop without fit). Pass "
                "steps_per_epoch to fit, or give the schedule ramp_steps as a number. Received: "
                f"steps of the fit={fit_steps!r}"
            )
        return max(1, int(self.ramp_end * fit_steps))

    def interval(self, ramp_steps: int) -> int:
        if self.update_every == "auto":
            return min(GRADUAL_EVERY, max(1, ramp_steps // 10))
        return self.update_every

    def rho_rule(self, rho: float, ramp_steps: int) -> tuple[float, float]:
        final = self.rho_final if self.rho_final is not None else max(GRADUAL_RHO_FINAL, rho)
        if final < rho:
            raise ValueError(
                "rho_final must be >= the layer's rho (rho never shrinks). Received: "
                f"rho_final={final}, rho={rho}"
            )
        count = max(1, ramp_steps // self.interval(ramp_steps))
        return growth_to_reach(rho, final, count), final

    def get_config(self) -> dict[str, Any]:
        return {
            "ramp_steps": self.ramp_steps,
            "update_every": self.update_every,
            "rho_final": self.rho_final,
            "rho_scaling": self.rho_scaling,
            "rescale_dual": self.rescale_dual,
            "masking": self.masking,
            "ramp_end": self.ramp_end,
            "pull": self.pull,
        }


@register(package="tf_admm")
class OneShot(ADMMSchedule):
    """The paper's ADMM: Z projected onto the target from the start, rho grown geometrically.

    Args:
        update_every: units between two Z/U updates (>= 1).
        unit: ``"epoch"`` or ``"step"`` (a step is one training batch).
        rho_growth: rho is multiplied by this at every update (>= 1); the authors use 1.3.
        rho_max: cap on rho (times the layer's ``rho_scale``).
        ramp_steps: 0 (default) projects Z onto the target from the first update; N > 0
            ramps the sparsity as :class:`Gradual` does over the first N steps while rho still
            grows geometrically (what a progressive ``Stage(ramp=...)`` without ``rho_final``
            runs).
        rho_scaling, rescale_dual, masking, pull: as in :class:`Gradual`.

    >>> from tf_admm import schedules
    >>> schedules.OneShot().rho_rule(1e-3, 0)
    (1.3, 1.0)
    """

    def __init__(
        self,
        update_every: int = 1,
        unit: str = "epoch",
        rho_growth: float = 1.3,
        rho_max: float = 1.0,
        ramp_steps: int = 0,
        rho_scaling: str = "auto",
        rescale_dual: bool = True,
        masking: str = "end",
        pull: str = "ramp",
    ):
        self.update_every = check_int("update_every", update_every, 1)
        self.unit = check_unit(unit)
        check_schedule(rho_growth, rho_max)
        self.rho_growth, self.rho_max = float(rho_growth), float(rho_max)
        self.ramp_steps = check_int("ramp_steps", ramp_steps, 0)
        self._check_common(rho_scaling, rescale_dual, masking, pull)

    def ramp(self, fit_steps: int | None) -> int:
        return self.ramp_steps

    def interval(self, ramp_steps: int) -> int:
        return self.update_every

    def rho_rule(self, rho: float, ramp_steps: int) -> tuple[float, float]:
        return self.rho_growth, self.rho_max

    def get_config(self) -> dict[str, Any]:
        return {
            "update_every": self.update_every,
            "unit": self.unit,
            "rho_growth": self.rho_growth,
            "rho_max": self.rho_max,
            "ramp_steps": self.ramp_steps,
            "rho_scaling": self.rho_scaling,
            "rescale_dual": self.rescale_dual,
            "masking": self.masking,
            "pull": self.pull,
        }


_CLASSES = {"Gradual": Gradual, "OneShot": OneShot}


def default_for(constraint) -> ADMMSchedule:
    """The schedule a wrapper gets when none is given: :class:`Gradual` for pruning with a
    free sparsity (:attr:`tf_admm.constraints.Constraint.free_sparsity`) and no quantization,
    with ``masking="ramp"`` for whole channels (:class:`tf_admm.ChannelSparsity`);
    :class:`OneShot` otherwise (quantization, ``compress``, n:m sparsity).

    >>> import tf_admm
    >>> type(default_for(tf_admm.Sparsity(0.9))).__name__
    'Gradual'
    >>> default_for(tf_admm.ChannelSparsity(0.5)).masking
    'ramp'
    >>> type(default_for(tf_admm.Quantization(4))).__name__
    'OneShot'
    """
    if constraint.quantizer is None and constraint.free_sparsity:
        return Gradual(masking="ramp" if constraint.channel_level else "end")
    return OneShot()


def serialize(schedule: ADMMSchedule) -> dict[str, Any]:
    """``{"class_name", "config"}``; a user's subclass under its registered name."""
    name = registered_name(schedule, _CLASSES, "Schedule")
    return {"class_name": name, "config": schedule.get_config()}


def _is_serialized(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"class_name", "config"}


def get(identifier: Any) -> ADMMSchedule | None:
    """An :class:`ADMMSchedule` from itself, its :func:`serialize` dict, or None."""
    if identifier is None or isinstance(identifier, ADMMSchedule):
        return identifier
    if _is_serialized(identifier):
        return from_saved(identifier, _CLASSES, ADMMSchedule, "ADMM schedule")
    raise ValueError(
        "A schedule must be a tf_admm.schedules.ADMMSchedule (Gradual(), OneShot()) or its "
        f"serialized dict. Received: {identifier!r} of type {type(identifier).__name__}"
    )


def get_spec(spec: Any) -> ADMMSchedule | dict[str, ADMMSchedule | None] | None:
    """A schedule argument checked: None, one schedule (or its :func:`serialize` dict), or a
    dict layer name -> schedule (or None: that layer's default).

    >>> from tf_admm import schedules
    >>> spec = schedules.get_spec({"fc1": {"class_name": "OneShot", "config": {}}})
    >>> type(spec["fc1"]).__name__
    'OneShot'
    """
    if not isinstance(spec, dict) or _is_serialized(spec):
        return get(spec)
    out: dict[str, ADMMSchedule | None] = {}
    for name, value in spec.items():
        if not isinstance(name, str):
            raise ValueError(
                f"A schedule dict maps layer names to schedules. Received key {name!r}"
            )
        out[name] = get(value)
    return out


def serialize_spec(spec: ADMMSchedule | dict[str, ADMMSchedule | None] | None) -> Any:
    """JSON-ready form of a :func:`get_spec` result (None, one dict, or a dict by layer).

    >>> from tf_admm import schedules
    >>> spec = {"fc1": schedules.OneShot()}
    >>> schedules.get_spec(schedules.serialize_spec(spec)) == spec
    True
    """
    if spec is None or isinstance(spec, ADMMSchedule):
        return None if spec is None else serialize(spec)
    return {name: None if s is None else serialize(s) for name, s in spec.items()}
