"""The training callback that drives each wrapper's ADMM schedule.

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

__all__ = ["UpdateADMM"]


class _Plan:
    """What the callback does for one wrapper in this fit, read from its schedule once at
    train begin: the unit and interval of its Z/U updates and its :class:`UpdateRule`."""

    def __init__(self, wrapper, fit_steps: int | None):
        schedule = wrapper.schedule
        ramp = int(tf.convert_to_tensor(wrapper.ramp_steps))
        if ramp < 0:  # fixed when ADMM starts, kept in the wrapper's variables
            ramp = schedule.ramp(fit_steps)
            wrapper.ramp_steps.assign(ramp)
        self.wrapper = wrapper
        self.unit = schedule.unit
        self.every = schedule.interval(ramp)
        growth, cap = schedule.rho_rule(wrapper.rho_init, ramp)
        self.rule = updates.UpdateRule(growth, cap, schedule.rescale_dual, ramp)


class UpdateADMM(keras.callbacks.Callback):
    """Runs ADMM's Z/U updates between training steps, as each wrapper's schedule says.

    Every wrapper holds a :mod:`schedule <tf_admm.schedules>` (given to
    :func:`tf_admm.prune_low_magnitude`, :func:`tf_admm.quantize`, :func:`tf_admm.compress`
    or :func:`tf_admm.prune_channels`; by default gradual for pruning, one-shot for
    quantization and n:m sparsity). On train begin this callback scales the rho of wrappers
    not yet started as their schedules' ``rho_scaling`` says, fixes their ramp (a schedule's
    ``ramp_steps="fit"`` reads this ``fit``'s epochs times steps per epoch) and initializes them
    (Z = Proj(W), U = 0); a resumed model keeps its state, so a model reloaded from ``.keras``
    continues its schedule with ``UpdateADMM()``. Then, at every step or epoch end, it updates
    the wrappers whose schedule is due (:func:`tf_admm.updates.update_wrappers`).
    ``admm_primal_residual``, ``admm_dual_residual`` and ``admm_rho`` go into the logs at every
    epoch end (and at every step when a schedule counts steps), so they show in the progress
    bar, History, CSVLogger and TensorBoard (place this callback before those in the list). In
    masked-retraining mode it only keeps the stored weights masked.

    Args:
        gradient_data: optional training batches (a batched ``tf.data.Dataset`` or ``(x, y)``)
            for the schedules whose ``rho_scaling`` is ``"gradient"`` or ``"auto"``: at train
            begin, :func:`tf_admm.scale_rho_by_gradient` gives each wrapper not yet started a
            rho proportional to its loss-gradient RMS on them (the compiled loss).

    >>> callback = UpdateADMM()  # each wrapper's own schedule
    """

    def __init__(self, gradient_data: Any = None):
        super().__init__()
        self.gradient_data = gradient_data
        self._wrappers: list = []
        self._by_step: list[_Plan] = []  # wrappers whose schedule counts steps
        self._by_epoch: list[_Plan] = []  # ... and epochs
        self._last: dict[str, float] = {}
        self._pending_steps = 0  # steps not yet added to the wrappers' step variables
        self._step: int | None = None  # the step variable plus the pending steps

    def on_train_begin(self, logs=None):
        self._wrappers = updates.built_wrappers(self.model, "UpdateADMM")
        if any(w.trace_failed for w in self._wrappers):
            # an earlier fit without this callback stopped while tracing its train function;
            # tracing that function again would create variables, so build a new one
            self.model.make_train_function(force=True)
            for w in self._wrappers:
                w.clear_trace_failed()
        active = self._admm_wrappers()
        _check_channel_schedules(active)
        if active:
            self._scale_rho()
        fit_steps = self._steps_of_fit()
        plans = [_Plan(w, fit_steps) for w in active]
        self._by_step = [p for p in plans if p.unit == "step"]
        self._by_epoch = [p for p in plans if p.unit == "epoch"]
        rules = {id(p.wrapper): p.rule for p in plans}
        updates.initialize_wrappers(self.model, active, lambda w: rules[id(w)].ramp_steps)
        self._pending_steps = 0
        self._step = None  # read at the first epoch, after every callback's on_train_begin

    def _scale_rho(self) -> None:
        """rho per layer for wrappers not yet started and never scaled, as their schedules'
        ``rho_scaling`` says (one way per model: the scaling compares the layers)."""
        fresh = [w for w in self._wrappers if not w.initialized]
        if not fresh or any(w.rho_scale != 1.0 for w in fresh):
            return  # nothing new, or the user scaled rho already: theirs is kept
        ways = {w.schedule.rho_scaling for w in fresh}
        if len(ways) > 1:
            raise ValueError(
                "The layers starting ADMM have schedules with different rho_scaling "
                f"({sorted(ways)}); rho per layer compares the layers, so give them one."
            )
        how = ways.pop()
        if how == "auto":
            how = "gradient" if self.gradient_data is not None else "none"
        if how == "gradient" and self.gradient_data is None:
            raise ValueError(
                "The layers' schedules scale rho by gradient (rho_scaling='gradient'), which "
                "needs UpdateADMM(gradient_data=...): a few training batches. Received: "
                "gradient_data=None"
            )
        if how == "gradient":
            scale_rho_by_gradient(self.model, self.gradient_data)
        elif how == "size":
            scale_rho_by_size(self.model)

    def _steps_of_fit(self) -> int | None:
        """Epochs times steps per epoch of the running ``fit`` (None when unknown)."""
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        return int(epochs) * int(steps) if epochs and steps else None

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

    def _update(self, due: list[_Plan]) -> None:
        if due:
            rules = {id(p.wrapper): p.rule for p in due}
            self._last = updates.update_wrappers(
                self.model, [p.wrapper for p in due], lambda w: rules[id(w)]
            )

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
        due = [p for p in self._by_step if self._step % p.every == 0]
        if due:
            self._flush_steps(active)
            self._update(due)
        if self._by_step and logs is not None:
            logs.update(self._last)

    def on_epoch_end(self, epoch, logs=None):
        self._sync()
        active = self._admm_wrappers()
        self._flush_steps(active)
        for w in active:
            w.epoch.assign_add(1)
        due = [
            p for p in self._by_epoch if int(tf.convert_to_tensor(p.wrapper.epoch)) % p.every == 0
        ]
        self._update(due)
        updates.apply_masks(self.model)
        if logs is not None and active:
            logs.update(self._last)

    def on_train_end(self, logs=None):
        self._flush_steps(self._admm_wrappers())
        updates.apply_masks(self.model)


def _check_channel_schedules(wrappers: list) -> None:
    """Channel-level wrappers are projected jointly by group, so they share one schedule."""
    channel = {w.schedule for w in wrappers if w.constraint.channel_level}
    if len(channel) > 1:
        raise ValueError(
            "The ChannelSparsity wrappers of a model are projected together by channel group, "
            f"so they need one schedule. Received: {sorted(map(repr, channel))}"
        )
