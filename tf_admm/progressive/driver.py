"""The driver: :class:`ProgressiveCompressor` runs a plan stage by stage, guards, resumes."""

from __future__ import annotations

import numbers
import os
import time
from typing import Any

import tensorflow as tf

from tf_admm import cloning, registry
from tf_admm.flops import total_macs
from tf_admm.progressive.guard import smaller_stage
from tf_admm.progressive.plan import (
    Stage,
    stages_from_json,
)
from tf_admm.progressive.reports import FigureReporter, JsonReporter, TensorBoardReporter
from tf_admm.progressive.stage import TrainData, run_stage
from tf_admm.progressive.store import RunStore
from tf_admm.report import summary
from tf_admm.updates import find_wrappers
from tf_admm.validation import check_int, check_model

__all__ = ["ProgressiveCompressor"]


def _as_validation(data, batch_size: int):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    raise ValueError(
        "Data must be a batched tf.data.Dataset or a tuple (x, y) of arrays. "
        f"Received: {type(data).__name__}"
    )


class ProgressiveCompressor:
    """Runs stages in order, each seeded by the last good result (see module docs).

    Args:
        model: the trained dense Keras model (Sequential or Functional; not changed).
        stages: a list of :class:`Stage` (or their configs, or a JSON plan / path).
        loss: the Keras loss to train with.
        train_data, validation_data: batched ``tf.data.Dataset`` or ``(x, y)`` arrays. Array
            training data is shuffled anew every epoch from ``(seed, epoch)``, which makes a
            resumed run equal to an uninterrupted one.
        metric: the validation metric the guard compares (higher is better).
        tolerance: a stage passes when its metric >= dense metric - tolerance (0.001 = 0.1
            point of accuracy).
        retries: how many times a failing stage may be preceded by a smaller step before the
            run stops: halfway in log-rate between the last good sparsities and the failed ones,
            or, when the sparsity cannot shrink (a quantization step), the same step with more
            bits (halfway to the last good model's bits, see :func:`more_bits`).
        directory: where checkpoints, reports, TensorBoard logs and figures go (None: nothing
            is written and nothing can resume).
        batch_size: for array data.
        seed: the shuffling seed for array training data.
        callbacks: extra Keras callbacks for every fit.
        listeners: objects with ``on_stage_end(report, run)`` (default with a directory: JSON
            reports, TensorBoard and figures, see :mod:`tf_admm.progressive.reports`).
        verbose: 0 silent, 1 progress bars and a banner per stage, 2 one line per epoch.

    Attributes after :meth:`run`: ``model`` (the last good, stripped), ``reports`` (one dict
    per stage tried), ``dense_metric``.

    >>> import numpy as np, tf_admm
    >>> from tf_admm import keras
    >>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, name="fc")])
    >>> run = tf_admm.ProgressiveCompressor(
    ...     dense, [tf_admm.Stage(sparsity=0.5, admm_epochs=1, retrain_epochs=1)],
    ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...     train_data=(x, y), validation_data=(x, y), tolerance=1.0, verbose=0)
    >>> small = run.run()
    >>> float((small.get_layer("fc").get_weights()[0] == 0).mean())
    0.5
    """

    def __init__(
        self,
        model,
        stages: Any,
        *,
        loss: Any,
        train_data: Any,
        validation_data: Any,
        metric: str = "accuracy",
        tolerance: float = 0.001,
        retries: int = 0,
        directory: str | os.PathLike | None = None,
        batch_size: int = 64,
        seed: int = 0,
        callbacks: list | None = None,
        listeners: list | None = None,
        verbose: int = 1,
    ):
        check_model("ProgressiveCompressor", model)
        if find_wrappers(model):
            raise ValueError("Give the dense (unwrapped) model; strip it with tf_admm.strip_admm.")
        if isinstance(stages, (str, os.PathLike)):
            stages = stages_from_json(stages)
        stages = [s if isinstance(s, Stage) else Stage.from_config(s) for s in stages]
        if not stages:
            raise ValueError("stages is empty; give at least one Stage.")
        names = {l.name for l in registry.compressible_layers(model)}
        for stage in stages:
            for spec, arg in ((stage.sparsity, "sparsity"), (stage.bits, "bits")):
                if isinstance(spec, dict):
                    unknown = sorted(set(spec) - names)
                    if unknown:
                        raise ValueError(
                            f"Stage {stage.name!r}: {arg} names unknown or non-compressible "
                            f"layers {unknown}. Compressible: {sorted(names)}"
                        )
        if not isinstance(metric, str):
            raise ValueError(f"metric must be a metric name. Received: {metric!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or tolerance < 0:
            raise ValueError(f"tolerance must be a number >= 0. Received: {tolerance!r}")
        self.retries = check_int("retries", retries, 0)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: {verbose!r}")
        self.dense = model
        # the MACs that flops_rate stages count from, read once (None: no such stage)
        self.dense_macs = total_macs(model) if any(s.flops_rate for s in stages) else None
        self.plan = stages
        self.loss = loss
        self.metric = metric
        self.tolerance = float(tolerance)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.train = TrainData(train_data, self.batch_size, seed)
        self.validation = _as_validation(validation_data, self.batch_size)
        self.directory = None if directory is None else os.fspath(directory)
        self.callbacks = list(callbacks or [])
        self.verbose = verbose
        self.model = None
        self.reports: list[dict] = []
        self.dense_metric: float | None = None
        self.store = None if self.directory is None else RunStore(self.directory)
        if listeners is None:
            listeners = []
            if self.store is not None:
                listeners = [
                    JsonReporter(self.store),
                    TensorBoardReporter(self.store.path("tensorboard")),
                    FigureReporter(self.store.path("figures")),
                ]
        self.listeners = list(listeners)

    # -- state ------------------------------------------------------------------------------
    def _save_state(self, plan, done, retries_left) -> None:
        if self.store is None:
            return
        self.store.write_json(
            "state.json",
            {
                "dense_metric": self.dense_metric,
                "metric": self.metric,
                "plan": [s.get_config() for s in plan],
                "original_plan": [s.get_config() for s in self.plan],
                "done": done,
                "retries_left": retries_left,
                "reports": self.reports,
            },
        )

    def _load_state(self) -> dict | None:
        if self.store is None:
            return None
        state = self.store.read_json("state.json")
        if state is None:
            return None
        # compared through Stage, so a plan saved before a Stage option existed still matches
        saved = [Stage.from_config(c).get_config() for c in state.get("original_plan", [])]
        if saved != [s.get_config() for s in self.plan]:
            raise ValueError(
                f"{self.directory!r} holds a run of another plan. Use a new directory, or the "
                "same stages to resume."
            )
        return state

    def _fresh(self) -> tuple[Any, list[Stage], int, int]:
        """Start from the dense model: stage folders of a run without a state are stale."""
        if self.store is not None:
            for entry in os.listdir(self.directory):
                if entry.startswith("stage_"):
                    self.store.remove(entry)
        self.dense_metric = self._evaluate(_clone(self.dense))
        current = _clone(self.dense)
        if self.store is not None:
            self.store.save_model("dense.keras", current)
        self.reports = []
        return current, list(self.plan), 0, self.retries

    def _resume(self, state: dict) -> tuple[Any, list[Stage], int, int]:
        """The last good model of ``state``; a damaged checkpoint sends the run back to the
        stage before it (the dense model at worst, rebuilt from ``self.dense`` if need be)."""
        self.dense_metric = state["dense_metric"]
        plan = [Stage.from_config(c) for c in state["plan"]]
        done, retries_left = state["done"], state["retries_left"]
        self.reports = state["reports"]
        current = None
        while current is None and done > 0:
            current = self.store.load_model(f"stage_{done:02d}/model.keras")
            if current is None:
                done -= 1
                self._keep_reports(done)
                self.store.remove(f"stage_{done + 1:02d}")
        if current is None:
            current = self.store.load_model("dense.keras")
        if current is None:
            current = _clone(self.dense)
            self.store.save_model("dense.keras", current)
        self._log(f"resuming {self.directory!r} after {done} of {len(plan)} stages")
        return current, plan, done, retries_left

    def _keep_reports(self, done: int) -> None:
        """Drop the reports after the ``done``-th passed stage."""
        passed = 0
        for i, report in enumerate(self.reports):
            if passed == done:
                self.reports = self.reports[:i]
                return
            passed += bool(report["passed"])

    # -- pieces -----------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def _evaluate(self, model) -> float:
        # evaluation only; plain SGD holds no slot variables, so the stage's saved model loads
        # without the optimizer-mismatch warning an unbuilt default (RMSprop) would give
        model.compile(optimizer="sgd", loss=self.loss, metrics=[self.metric])
        result = model.evaluate(self.validation, verbose=0, return_dict=True)
        key = self.metric if self.metric in result else [k for k in result if k != "loss"][0]
        return float(result[key])

    def _run_stage(self, index: int, stage: Stage, seed) -> tuple[Any, dict]:
        start, cpu0 = time.time(), time.process_time()
        result, histories, bits = run_stage(
            seed,
            stage,
            loss=self.loss,
            train=self.train,
            validation=self.validation,
            metric=self.metric,
            store=self.store,
            folder=f"stage_{index + 1:02d}",
            callbacks=self.callbacks,
            verbose=self.verbose,
            reference_macs=self.dense_macs,
        )
        value = self._evaluate(result)
        table = summary(result, print_fn=None)
        report = {
            "stage": index + 1,
            "name": stage.label(index),
            "config": stage.get_config(),
            self.metric: value,
            "dense_" + self.metric: self.dense_metric,
            "passed": value >= self.dense_metric - self.tolerance,
            "layers": {r["layer"]: r["sparsity"] for r in table["layers"]},
            "bits": bits,
            "pruning_rate": table["total"]["pruning_rate"],
            "storage_rate": table["total"]["compression"],
            "macs": total_macs(result),
            "history": histories,
            "seconds": time.time() - start,
            "cpu_seconds": time.process_time() - cpu0,
        }
        return result, report

    # -- the run ----------------------------------------------------------------------------
    def run(self):
        """Run (or resume) the plan; returns the last good model, stripped."""
        state = self._load_state()
        if state is None:
            current, plan, done, retries_left = self._fresh()
        else:
            current, plan, done, retries_left = self._resume(state)
        self._log(f"dense {self.metric}: {self.dense_metric:.4f} (tolerance {self.tolerance})")
        self._save_state(plan, done, retries_left)
        while done < len(plan):
            stage = plan[done]
            self._log(self._banner(done, len(plan), stage))
            result, report = self._run_stage(done, stage, current)
            self.reports.append(report)
            verdict = "passed" if report["passed"] else "FAILED"
            self._log(
                f"{report['name']}: {self.metric} {report[self.metric]:.4f} "
                f"(dense {self.dense_metric:.4f}), {report['pruning_rate']:.1f}x fewer weights, "
                f"{report['storage_rate']:.1f}x smaller, {report['seconds']:.0f} s: {verdict}"
            )
            folder = f"stage_{done + 1:02d}"
            if report["passed"]:
                current = result
                if self.store is not None:
                    self.store.save_model(f"{folder}/model.keras", result)
                self._notify(report)
                done += 1
                self._save_state(plan, done, retries_left)
                if self.store is not None:  # the phases are over: their backups are not needed
                    for name in ("admm_backup.npz", "retrain_backup.npz", "projected.keras"):
                        self.store.remove(f"{folder}/{name}")
                continue
            self._notify(report)
            smaller = None
            if retries_left > 0:
                smaller = smaller_stage(plan[done], done, current, self.reports, self.dense_macs)
            if self.store is not None:
                self.store.remove(folder)
            if smaller is None:
                self._log("stopping: keeping the last good model")
                self._save_state(plan, done, retries_left)
                break
            retries_left -= 1
            self._log(f"retrying with a smaller step first: {smaller.name}")
            plan.insert(done, smaller)
            self._save_state(plan, done, retries_left)
        self.model = current
        return current

    def _notify(self, report: dict) -> None:
        for listener in self.listeners:
            listener.on_stage_end(report, self)

    def _banner(self, index: int, total: int, stage: Stage) -> str:
        parts = []
        if isinstance(stage.sparsity, dict):
            shown = {n: round(v, 4) if v is not None else None for n, v in stage.sparsity.items()}
            parts.append(f"sparsity {shown}")
        elif stage.sparsity is not None:
            parts.append(f"sparsity {stage.sparsity}")
        if stage.bits is not None:
            parts.append(f"bits {stage.bits}")
        if stage.flops_rate is not None:
            parts.append(f"{stage.flops_rate:g}x fewer MACs than dense")
        return (
            f"== {stage.label(index)} ({index + 1}/{total}): {', '.join(parts)}; "
            f"ADMM {stage.admm_epochs} + retrain {stage.retrain_epochs} epochs"
        )


def _clone(model):
    copy = cloning.clone(model)
    copy.set_weights(model.get_weights())
    return copy
