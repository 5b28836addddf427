"""The training callback that runs the ADMM Z/U updates and the rho schedule.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> model = tf_admm.prune_low_magnitude(
...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]), 0.5)
>>> model.compile("sgd", "mse")
>>> h = model.fit(np.ones((4, 8)), np.ones((4, 2)), epochs=2, verbose=0,
...               callbacks=[tf_admm.UpdateADMM()])
>>> sorted(k for k in h.history if k.startswith("admm_"))
['admm_dual_residual', 'admm_primal_residual', 'admm_rho']
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_admm import updates
from tf_admm._keras import keras
from tf_admm.rho_scaling import scale_rho_by_gradient, scale_rho_by_size
from tf_admm.validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_schedule,
    check_unit,
)

__all__ = ["UpdateADMM"]


RECIPES = ("auto", "gradual", "oneshot")
RHO_SCALINGS = ("auto", "gradient", "size", "none")
GRADUAL_RHO_FINAL = 0.1  # rho at the end of the gradual recipe's ramp
GRADUAL_EVERY = 100  # the gradual recipe's steps between Z/U updates (fewer on short fits)
ONESHOT = {"update_every": 1, "unit": "epoch", "rho_growth": 1.3, "rho_max": 1.0, "ramp_steps": 0}


def _check_ramp_steps(ramp_steps) -> int | str:
    if ramp_steps == "fit":
        return ramp_steps
    if isinstance(ramp_steps, str):
        raise ValueError(
            f"ramp_steps must be an int >= 0 or 'fit'. Received: ramp_steps={ramp_steps!r}"
        )
    return updates.check_ramp(ramp_steps)


def _check_update_every(update_every) -> int | str:
    if update_every == "auto":
        return update_every
    return check_int("update_every", update_every, 1)


def _oneshot_arguments(given: dict) -> list[str]:
    """The arguments given that only one-shot ADMM uses (rho grown by a factor per update,
    no ramp, updates counted in epochs)."""
    found = [f"{name}={given[name]!r}" for name in ("rho_growth", "rho_max") if name in given]
    if given.get("unit") == "epoch":
        found.append("unit='epoch'")
    if given.get("ramp_steps") == 0:
        found.append("ramp_steps=0")
    return found


class UpdateADMM(keras.callbacks.Callback):
    """Runs ADMM's Z/U updates between training steps and grows rho.

    On train begin it initializes every wrapper not yet initialized (Z = Proj(W), U = 0); a
    resumed model keeps its state. Then every ``update_every`` epochs or steps it calls
    :func:`tf_admm.update_admm`. ``admm_primal_residual``, ``admm_dual_residual`` and
    ``admm_rho`` go into the logs at every epoch end (and at every step in step mode), so they
    show in the progress bar, History, CSVLogger and TensorBoard (place this callback before
    those in the list). In masked-retraining mode it only keeps the stored weights masked.

    Two recipes fill the arguments left at None (``docs/results.md`` measures both):

    - ``"gradual"``: Z is projected onto a sparsity that rises from the layer's current zeros
      to the target over every step of the ``fit`` (gradual magnitude pruning's cubic
      schedule), Z/U every ``min(100, ramp // 10)`` steps, rho from the wrappers' rho to 0.1
      (``update_every="auto"``, ``unit="step"``, ``ramp_steps="fit"``, ``rho_final=0.1``).
      Needs a ``fit`` of known length. Against TFMOT's gradual magnitude pruning over 3 seeds
      it is ahead on LeNet-300 at every rate and on LeNet-5 at 100x and 400x, behind at 50x
      and 246x; with ``gradient_data`` (rho per layer, the recipe measured best) it is at or
      above GMP at every rate measured. Train it at a constant learning rate: a rate decayed
      over the ramp leaves the weights unable to follow Z when the ramp cuts most of them.
    - ``"oneshot"``: Z projected onto the target from the first update, Z/U every epoch, rho
      x1.3 per update up to 1.0 (``update_every=1``, ``unit="epoch"``, ``rho_growth=1.3``,
      ``rho_max=1.0``, ``ramp_steps=0``): the paper's schedule, and what quantization uses.
    - ``"auto"`` (default): ``"gradual"`` when every wrapper in ADMM mode prunes with a free
      sparsity (:attr:`tf_admm.constraints.Constraint.free_sparsity`) and does not quantize,
      ``"oneshot"`` for quantization (pruned with ``compress`` too) and n:m sparsity, decided at
      train begin. An argument only one-shot ADMM
      uses (``rho_growth``, ``rho_max``, ``unit="epoch"``, ``ramp_steps=0``), or
      ``update_every`` without ``unit`` (it counted epochs), selects ``"oneshot"``, so code
      written before this default keeps its meaning.

    Args:
        update_every: units between two Z/U updates (>= 1), or ``"auto"``: a tenth of the
            ramp, at most 100 (needs a ramp and ``unit="step"``).
        unit: "epoch" or "step" (a step is one call of on_train_batch_end).
        rho_growth: rho is multiplied by this at every update (>= 1); the authors use 1.3.
        rho_max: cap on rho.
        rescale_dual: rescale U when rho grows (see :func:`tf_admm.update_admm`).
        ramp_steps: 0 projects Z onto the target from the start. N > 0 ramps the sparsity Z
            is projected onto from the layer's current zeros to the target over the first N
            training steps, on gradual magnitude pruning's cubic schedule
            (:func:`tf_admm.updates.ramped_constraint`); counted in steps whatever ``unit``.
            ``"fit"``: N is every step of the ``fit`` call (its epochs times steps per epoch,
            read from ``fit`` when training begins; a resumed ``fit`` keeps it when given the
            same ``epochs`` and an ``initial_epoch``).
        rho_final: the rho reached at the end of the ramp: the growth per update is then
            ``(rho_final / rho) ** (1 / (ramp_steps // update_every))`` from the wrappers'
            initial rho, and rho stops at ``rho_final`` (``rho_growth`` and ``rho_max`` are not
            used). Needs a ramp and ``unit="step"``. A wrapper with a ``rho_scale``
            (:func:`tf_admm.scale_rho_by_gradient`) starts and stops at ``rho_scale`` times
            those values: every layer grows by the same factor.
        recipe: ``"auto"``, ``"gradual"`` or ``"oneshot"`` (above). Under ``"gradual"``, an
            argument only one-shot ADMM uses is an error.
        gradient_data: optional training batches (a batched ``tf.data.Dataset`` or ``(x,
            y)``): at train begin, :func:`tf_admm.scale_rho_by_gradient` gives each wrapper not
            yet started a rho proportional to its loss-gradient RMS on them (the compiled
            loss).
        rho_scaling: how each layer's rho is scaled at train begin, for wrappers not yet
            started and never scaled (``rho_scale`` 1): ``"gradient"`` by loss-gradient RMS
            (needs ``gradient_data``), ``"size"`` by weight count
            (:func:`tf_admm.scale_rho_by_size`, no data; on LeNet-5 at 246x as good as
            ``"gradient"``, see ``docs/results.md``), ``"none"``. ``"auto"`` (default):
            ``"gradient"`` with ``gradient_data``, else ``"none"``.

    >>> callback = UpdateADMM()  # gradual ADMM over the whole fit on a pruned model
    >>> UpdateADMM(recipe="oneshot").update_every, UpdateADMM(update_every=2).recipe
    (1, 'oneshot')
    """

    def __init__(
        self,
        update_every: int | str | None = None,
        unit: str | None = None,
        rho_growth: float | None = None,
        rho_max: float | None = None,
        rescale_dual: bool = True,
        ramp_steps: int | str | None = None,
        rho_final: float | None = None,
        recipe: str = "auto",
        gradient_data: Any = None,
        rho_scaling: str = "auto",
    ):
        super().__init__()
        check_choice("recipe", recipe, RECIPES)
        check_choice("rho_scaling", rho_scaling, RHO_SCALINGS)
        if (rho_scaling == "gradient") != (gradient_data is not None) and rho_scaling != "auto":
            raise ValueError(
                "rho_scaling='gradient' needs gradient_data, and gradient_data is only used "
                f"with rho_scaling='gradient' or 'auto'. Received: rho_scaling={rho_scaling!r}, "
                f"gradient_data={'given' if gradient_data is not None else None}"
            )
        given = {
            name: value
            for name, value in (
                ("update_every", update_every),
                ("unit", unit),
                ("rho_growth", rho_growth),
                ("rho_max", rho_max),
                ("ramp_steps", ramp_steps),
                ("rho_final", rho_final),
            )
            if value is not None
        }
        if "update_every" in given:
            _check_update_every(update_every)
        if "unit" in given:
            check_unit(unit)
        if "ramp_steps" in given:
            _check_ramp_steps(ramp_steps)
        check_schedule(
            given.get("rho_growth", ONESHOT["rho_growth"]), given.get("rho_max", ONESHOT["rho_max"])
        )
        if "rho_final" in given:
            check_positive("rho_final", rho_final)
        oneshot_only = _oneshot_arguments(given)
        if recipe == "gradual" and oneshot_only:
            raise ValueError(
                "recipe='gradual' sets rho by rho_final over a ramp counted in steps; these "
                f"arguments belong to one-shot ADMM: {', '.join(oneshot_only)}. Pass "
                "recipe='oneshot' to use them."
            )
        if recipe == "auto" and (oneshot_only or ("update_every" in given and unit is None)):
            recipe = "oneshot"
        self.recipe = recipe
        self.given = given
        self.rescale_dual = check_bool("rescale_dual", rescale_dual)
        self.gradient_data = gradient_data
        self.rho_scaling = rho_scaling
        # checked now; configured again at every train begin ("auto" decides there)
        self._configure("gradual" if recipe == "auto" else recipe)
        self._wrappers: list = []
        self._last: dict[str, float] = {}
        self._pending_steps = 0  # steps not yet added to the wrappers' step variables
        self._step: int | None = None  # the step variable plus the pending steps

    def _configure(self, recipe: str) -> None:
        """Fill the arguments left at None from ``recipe`` and check them together."""
        given = self.given
        if recipe == "gradual":
            values = {"update_every": "auto", "unit": "step", "ramp_steps": "fit"}
            values.update(rho_growth=1.0, rho_max=ONESHOT["rho_max"])  # set by rho_final
        else:
            values = dict(ONESHOT)
        values.update(given)
        self.resolved = recipe
        self.update_every = values["update_every"]
        self.unit = values["unit"]
        self.ramp_over_fit = values["ramp_steps"] == "fit"
        self.schedule = {
            "rho_growth": float(values["rho_growth"]),
            "rho_max": float(values["rho_max"]),
            "rescale_dual": self.rescale_dual,
            "ramp_steps": 0 if self.ramp_over_fit else values["ramp_steps"],
        }
        # None: the gradual recipe's 0.1 (or the wrappers' rho if higher), set at train begin
        self.rho_final = given.get("rho_final")
        self.default_rho_final = recipe == "gradual" and self.rho_final is None
        ramped = self.ramp_over_fit or self.schedule["ramp_steps"]
        wants_ramp = [f"rho_final={self.rho_final!r}"] if self.rho_final is not None else []
        if self.update_every == "auto":
            wants_ramp.append("update_every='auto'")
        if wants_ramp and (not ramped or self.unit != "step"):
            raise ValueError(
                f"{' and '.join(wants_ramp)} need a ramp counted in steps: ramp_steps > 0 or "
                f"'fit', and unit='step'. Received: ramp_steps={values['ramp_steps']!r}, "
                f"unit={self.unit!r} (recipe={self.recipe!r})"
            )

    def on_train_begin(self, logs=None):
        self._wrappers = updates.built_wrappers(self.model, "UpdateADMM")
        if any(w.trace_failed for w in self._wrappers):
            # an earlier fit without this callback stopped while tracing its train function;
            # tracing that function again would create variables, so build a new one
            self.model.make_train_function(force=True)
            for w in self._wrappers:
                w.clear_trace_failed()
        active = self._admm_wrappers()
        recipe = self.recipe
        if recipe == "auto":
            # quantized wrappers (compress's too) keep the schedule they were measured with
            ramps = bool(active) and all(
                not w.quantized and w.constraint.free_sparsity for w in active
            )
            recipe = "gradual" if ramps else "oneshot"
        self._configure(recipe)
        if active:
            self._scale_rho()
        if active and self.ramp_over_fit:
            self.schedule["ramp_steps"] = self._steps_of_fit()
        if self.update_every == "auto":
            self.update_every = min(GRADUAL_EVERY, max(1, self.schedule["ramp_steps"] // 10))
        if active and (self.rho_final is not None or self.default_rho_final):
            self._schedule_to_rho_final()
        updates.initialize_admm(self.model, ramp_steps=self.schedule["ramp_steps"])
        self._pending_steps = 0
        self._step = None  # read at the first epoch, after every callback's on_train_begin

    def _scale_rho(self) -> None:
        """rho per layer (``rho_scaling``) for wrappers not yet started and never scaled."""
        how = self.rho_scaling
        if how == "auto":
            how = "gradient" if self.gradient_data is not None else "none"
        fresh = [w for w in self._wrappers if not w.initialized]
        if how == "none" or not fresh or any(w.rho_scale != 1.0 for w in fresh):
            return  # nothing new, or the user scaled rho already: theirs is kept
        if how == "gradient":
            scale_rho_by_gradient(self.model, self.gradient_data)
        else:
            scale_rho_by_size(self.model)

    def _steps_of_fit(self) -> int:
        """Epochs times steps per epoch of the running ``fit`` (ramp_steps="fit")."""
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        if not epochs or not steps:
            raise ValueError(
                "UpdateADMM(ramp_steps='fit') reads the number of steps from fit(), which does "
                "not know it here (a dataset of unknown length, or a loop without fit). Pass "
                "steps_per_epoch to fit or give ramp_steps as a number. Received: "
                f"epochs={epochs!r}, steps per epoch={steps!r}"
            )
        return int(epochs) * int(steps)

    def _schedule_to_rho_final(self) -> None:
        """The growth that takes the wrappers' initial rho to ``rho_final`` over the ramp
        (from the initial rho, not the current one, so a resumed fit keeps the schedule)."""
        rho = min(w.rho_init for w in self._wrappers)  # before rho_scale: see update_admm
        if self.default_rho_final:
            self.rho_final = max(GRADUAL_RHO_FINAL, rho)
        if self.rho_final < rho:
            raise ValueError(
                f"rho_final must be >= the wrappers' rho (rho never shrinks). Received: "
                f"rho_final={self.rho_final}, rho={rho}"
            )
        count = max(1, self.schedule["ramp_steps"] // self.update_every)
        self.schedule["rho_growth"] = updates.growth_to_reach(rho, self.rho_final, count)
        self.schedule["rho_max"] = self.rho_final

    def _sync(self) -> None:
        """Read the step counter and residuals once per fit, at the first epoch or batch: not in
        on_train_begin, since a BackupAndRestore placed after this callback restores the step
        counter (and Z, U, rho) in its own on_train_begin."""
        if self._step is None:
            active = self._admm_wrappers()
            self._step = int(tf.convert_to_tensor(active[0].step)) if active else 0
            self._last = self._current_residuals()

    def on_epoch_begin(self, epoch, logs=None):
        self._sync()

    def _admm_wrappers(self) -> list:
        return [w for w in self._wrappers if not w.masked]

    def _current_residuals(self) -> dict[str, float]:
        return {
            "admm_primal_residual": updates.primal_residual(self._admm_wrappers()),
            "admm_dual_residual": self._last.get("admm_dual_residual", 0.0),
            "admm_rho": max(
                (float(tf.convert_to_tensor(w.rho)) for w in self._admm_wrappers()), default=0.0
            ),
        }

    def _update(self) -> None:
        self._last = updates.update_admm(self.model, **self.schedule)

    def _flush_steps(self, active) -> None:
        """Add the steps counted since the last flush to the step variables."""
        if self._pending_steps:
            for w in active:
                w.step.assign_add(self._pending_steps)
        self._pending_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        # Steps are counted in Python and written to the variables at every update, epoch end
        # and train end: one eager assign per wrapper per batch cost ~10% of a LeNet-5 step.
        active = self._admm_wrappers()
        if not active:
            return
        self._sync()
        self._pending_steps += 1
        self._step += 1
        if self.unit == "step":
            if self._step % self.update_every == 0:
                self._flush_steps(active)
                self._update()
            if logs is not None:
                logs.update(self._last)

    def on_epoch_end(self, epoch, logs=None):
        self._sync()
        active = self._admm_wrappers()
        self._flush_steps(active)
        for w in active:
            w.epoch.assign_add(1)
        if active and self.unit == "epoch":
            if int(tf.convert_to_tensor(active[0].epoch)) % self.update_every == 0:
                self._update()
        updates.apply_masks(self.model)
        if logs is not None and active:
            logs.update(self._last)

    def on_train_end(self, logs=None):
        self._flush_steps(self._admm_wrappers())
        updates.apply_masks(self.model)
