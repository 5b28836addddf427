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

import tensorflow as tf

from tf_admm import updates
from tf_admm._keras import keras
from tf_admm.validation import check_int, check_positive, check_unit

__all__ = ["UpdateADMM"]


def _check_ramp_steps(ramp_steps) -> int:
    if isinstance(ramp_steps, str):
        raise ValueError(
            f"ramp_steps must be an int >= 0 or 'fit'. Received: ramp_steps={ramp_steps!r}"
        )
    return updates.check_ramp(ramp_steps)


class UpdateADMM(keras.callbacks.Callback):
    """Runs ADMM's Z/U updates between training steps and grows rho.

    On train begin it initializes every wrapper not yet initialized (Z = Proj(W), U = 0); a
    resumed model keeps its state. Then every ``update_every`` epochs (or steps, with
    ``unit="step"``) it calls :func:`tf_admm.update_admm`. ``admm_primal_residual``,
    ``admm_dual_residual`` and ``admm_rho`` go into the logs at every epoch end (and at every
    step in step mode), so they show in the progress bar, History, CSVLogger and TensorBoard
    (place this callback before those in the list). In masked-retraining mode it only keeps the
    stored weights masked.

    Args:
        update_every: number of units between two Z/U updates (>= 1).
        unit: "epoch" or "step" (a step is one call of on_train_batch_end).
        rho_growth: rho is multiplied by this at every update (>= 1); the authors use 1.3.
        rho_max: cap on rho.
        rescale_dual: rescale U when rho grows (see :func:`tf_admm.update_admm`).
        ramp_steps: 0 (default) projects Z onto the target from the start. N > 0 ramps the
            sparsity Z is projected onto from the layer's current zeros to the target over the
            first N training steps, on gradual magnitude pruning's cubic schedule
            (:func:`tf_admm.updates.ramped_constraint`); counted in steps whatever ``unit``.
            ``"fit"``: N is every step of the ``fit`` call (its epochs times steps per epoch,
            read from ``fit`` when training begins; needs data of known length).
        rho_final: None (default) or the rho reached at the end of the ramp: the growth per
            update is then ``(rho_final / rho) ** (1 / (ramp_steps // update_every))`` from
            the wrappers' initial rho, and rho stops at ``rho_final`` (``rho_growth`` and
            ``rho_max`` are not used). Needs ``ramp_steps`` and ``unit="step"``. A wrapper
            with a ``rho_scale`` (:func:`tf_admm.scale_rho_by_gradient`) starts and stops at
            ``rho_scale`` times those values: every layer grows by the same factor.

    The recipe measured best in ``docs/results.md`` (gradual ADMM) ramps over the whole ADMM
    phase, updates every 100 steps and takes rho from 1e-3 to 0.1, with each layer's rho
    scaled by :func:`tf_admm.scale_rho_by_gradient` and a constant learning rate over the ramp
    (the ramp cuts most weights of the sparsest layers at its end, where a decayed rate leaves
    W unable to follow Z):

    >>> callback = UpdateADMM(update_every=100, unit="step", ramp_steps="fit", rho_final=0.1)

    (``ramp_steps="fit"`` ramps over the whole ``fit``; an int gives the steps.)
    """

    def __init__(
        self,
        update_every: int = 1,
        unit: str = "epoch",
        rho_growth: float = 1.3,
        rho_max: float = 1.0,
        rescale_dual: bool = True,
        ramp_steps: int | str = 0,
        rho_final: float | None = None,
    ):
        super().__init__()
        self.update_every = check_int("update_every", update_every, 1)
        self.unit = check_unit(unit)
        updates.check_schedule(rho_growth, rho_max)
        self.ramp_over_fit = ramp_steps == "fit"
        self.schedule = {
            "rho_growth": float(rho_growth),
            "rho_max": float(rho_max),
            "rescale_dual": bool(rescale_dual),
            "ramp_steps": 0 if self.ramp_over_fit else _check_ramp_steps(ramp_steps),
        }
        self.rho_final = None if rho_final is None else check_positive("rho_final", rho_final)
        ramped = self.ramp_over_fit or self.schedule["ramp_steps"]
        if self.rho_final is not None and (not ramped or self.unit != "step"):
            raise ValueError(
                "rho_final sets rho at the end of the ramp, so it needs ramp_steps > 0 and "
                f"unit='step'. Received: rho_final={rho_final!r}, ramp_steps={ramp_steps!r}, "
                f"unit={unit!r}"
            )
        self._wrappers: list = []
        self._last: dict[str, float] = {}
        self._pending_steps = 0  # steps not yet added to the wrappers' step variables
        self._step: int | None = None  # the step variable plus the pending steps

    def on_train_begin(self, logs=None):
        self._wrappers = updates.built_wrappers(self.model, "UpdateADMM")
        if self.ramp_over_fit:
            self.schedule["ramp_steps"] = self._steps_of_fit()
        if self.rho_final is not None:
            self._schedule_to_rho_final()
        updates.initialize_admm(self.model, ramp_steps=self.schedule["ramp_steps"])
        self._pending_steps = 0
        self._step = None  # read at the first epoch, after every callback's on_train_begin

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
