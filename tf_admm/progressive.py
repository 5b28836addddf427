"""Progressive compression: stages of growing targets, each seeded by the previous result.

A :class:`Stage` is one step of the paper's progressive scheme: wrap (sparsity and/or bits,
global or per layer), ADMM for some epochs, hard projection, retraining on the constraint, strip.
:class:`ProgressiveCompressor` runs a list of stages in order. Weights that an earlier stage
pruned stay zero in every later stage (their mask is in force from the start of the next ADMM
phase, and each layer's sparsity never drops below what it already has). After every stage the
validation accuracy is compared with the dense model's; a stage outside the tolerance is
reported, the last good model is kept, and optionally a smaller step is tried first.

Everything needed to resume lives in ``directory``: the dense model, the model after every
finished stage, the live plan and the reports (``state.json``), and Keras' BackupAndRestore
inside the stage that was running. A killed run started again with the same arguments resumes
where it stopped, without redoing finished stages.

>>> import tf_admm
>>> stages = [tf_admm.Stage("half", sparsity=0.5, admm_epochs=2, retrain_epochs=1),
...           tf_admm.Stage("final", sparsity={"fc1": 0.9}, bits=3)]
>>> tf_admm.stages_from_json(tf_admm.stages_to_json(stages)) == stages
True
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm import constraints as constraints_lib
from tf_admm import registry
from tf_admm._keras import is_keras_object, is_model, keras, other_flavour_hint
from tf_admm.callbacks import UpdateADMM
from tf_admm.prune import compress, strip_admm
from tf_admm.quantizers import SCHEMES
from tf_admm.report import layer_sparsity, summary
from tf_admm.updates import find_wrappers, hard_project

__all__ = [
    "ProgressiveCompressor",
    "Stage",
    "geometric_stages",
    "more_bits",
    "stages_from_json",
    "stages_to_json",
]

_UNITS = ("epoch", "step")
_SCHEDULES = ("cosine", "constant")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
    return int(value)


def _check_positive(name: str, value: Any, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > low:
        raise ValueError(f"{name} must be a number > {low}. Received: {name}={value!r}")
    return float(value)


def _check_sparsity_spec(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for name, s in value.items():
            if not isinstance(name, str):
                raise ValueError(f"sparsity keys must be layer names. Received: {name!r}")
            out[name] = None if s is None else constraints_lib._check_sparsity(s)
        return out
    return constraints_lib._check_sparsity(value)


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
        scheme, per_channel: as in :func:`tf_admm.quantize`.
        admm_epochs: epochs of ADMM training (0: hard projection right away).
        retrain_epochs: epochs of retraining on the constraint after the hard projection.
        update_every, unit: Z/U update interval (see :class:`tf_admm.UpdateADMM`).
        rho, rho_growth, rho_max: the rho schedule.
        optimizer: a Keras optimizer name (``"adam"``, ``"sgd"``, ...).
        learning_rate: for the ADMM phase; ``retrain_learning_rate`` for retraining (default
            the same).
        schedule: ``"cosine"`` decay over each phase, or ``"constant"``.

    >>> Stage("s1", sparsity=0.9, admm_epochs=2).get_config()["sparsity"]
    0.9
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        sparsity: Any = None,
        bits: Any = None,
        scheme: str = "uniform",
        per_channel: bool = True,
        admm_epochs: int = 4,
        retrain_epochs: int = 4,
        update_every: int = 1,
        unit: str = "epoch",
        rho: float = 1e-3,
        rho_growth: float = 1.3,
        rho_max: float = 1.0,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        retrain_learning_rate: float | None = None,
        schedule: str = "cosine",
    ):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a str or None. Received: name={name!r}")
        self.name = name
        self.sparsity = _check_sparsity_spec(sparsity)
        self.bits = _check_bits_spec(bits)
        if self.sparsity is None and self.bits is None:
            raise ValueError("A Stage needs sparsity=..., bits=... or both. Received neither.")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}. Received: scheme={scheme!r}")
        if not isinstance(per_channel, bool):
            raise ValueError(f"per_channel must be True or False. Received: {per_channel!r}")
        self.scheme, self.per_channel = scheme, per_channel
        self.admm_epochs = _check_int("admm_epochs", admm_epochs, 0)
        self.retrain_epochs = _check_int("retrain_epochs", retrain_epochs, 0)
        self.update_every = _check_int("update_every", update_every, 1)
        if unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}. Received: unit={unit!r}")
        self.unit = unit
        self.rho = _check_positive("rho", rho)
        self.rho_growth = _check_positive("rho_growth", rho_growth)
        if self.rho_growth < 1:
            raise ValueError(f"rho_growth must be >= 1. Received: rho_growth={rho_growth!r}")
        self.rho_max = _check_positive("rho_max", rho_max)
        if not isinstance(optimizer, str):
            raise ValueError(f"optimizer must be a Keras optimizer name. Received: {optimizer!r}")
        keras.optimizers.get(optimizer)  # raises on unknown names
        self.optimizer = optimizer
        self.learning_rate = _check_positive("learning_rate", learning_rate)
        self.retrain_learning_rate = (
            None
            if retrain_learning_rate is None
            else _check_positive("retrain_learning_rate", retrain_learning_rate)
        )
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}. Received: {schedule!r}")
        self.schedule = schedule

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sparsity": self.sparsity,
            "bits": self.bits,
            "scheme": self.scheme,
            "per_channel": self.per_channel,
            "admm_epochs": self.admm_epochs,
            "retrain_epochs": self.retrain_epochs,
            "update_every": self.update_every,
            "unit": self.unit,
            "rho": self.rho,
            "rho_growth": self.rho_growth,
            "rho_max": self.rho_max,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "retrain_learning_rate": self.retrain_learning_rate,
            "schedule": self.schedule,
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
    steps = _check_int("steps", steps, 1)
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


def _as_dataset(data, batch_size: int, shuffle: bool):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        ds = tf.data.Dataset.from_tensor_slices(data)
        if shuffle:
            ds = ds.shuffle(len(data[0]), seed=0, reshuffle_each_iteration=True)
        return ds.batch(batch_size)
    raise ValueError(
        "Data must be a batched tf.data.Dataset or a tuple (x, y) of arrays. "
        f"Received: {type(data).__name__}"
    )


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=1, default=float)
    os.replace(tmp, path)


class ProgressiveCompressor:
    """Runs stages in order, each seeded by the last good result (see module docs).

    Args:
        model: the trained dense Keras model (Sequential or Functional; not changed).
        stages: a list of :class:`Stage` (or their configs, or a JSON plan / path).
        loss: the Keras loss to train with.
        train_data, validation_data: batched ``tf.data.Dataset`` or ``(x, y)`` arrays.
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
        callbacks: extra Keras callbacks for every fit.
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
        callbacks: list | None = None,
        verbose: int = 1,
    ):
        if not is_keras_object(model) or not is_model(model):
            raise ValueError(
                f"ProgressiveCompressor takes a Keras model. Received: {model!r}. "
                f"{other_flavour_hint()}"
            )
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
        self.retries = _check_int("retries", retries, 0)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: {verbose!r}")
        self.dense = model
        self.plan = stages
        self.loss = loss
        self.metric = metric
        self.tolerance = float(tolerance)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.train = _as_dataset(train_data, self.batch_size, shuffle=True)
        self.validation = _as_dataset(validation_data, self.batch_size, shuffle=False)
        self.directory = None if directory is None else os.fspath(directory)
        self.callbacks = list(callbacks or [])
        self.verbose = verbose
        self.model = None
        self.reports: list[dict] = []
        self.dense_metric: float | None = None

    # -- files ----------------------------------------------------------------------------
    def _path(self, *parts: str) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, *parts)

    def _stage_dir(self, index: int) -> str | None:
        path = self._path(f"stage_{index + 1:02d}")
        if path is not None:
            os.makedirs(path, exist_ok=True)
        return path

    def _save_state(self, plan, done, retries_left) -> None:
        if self.directory is None:
            return
        _write_json(
            self._path("state.json"),
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
        path = self._path("state.json")
        if path is None or not os.path.exists(path):
            return None
        with open(path) as handle:
            state = json.load(handle)
        if state["original_plan"] != [s.get_config() for s in self.plan]:
            raise ValueError(
                f"{self.directory!r} holds a run of another plan. Use a new directory, or the "
                "same stages to resume."
            )
        return state

    # -- pieces -----------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def _evaluate(self, model) -> float:
        model.compile(loss=self.loss, metrics=[self.metric])
        result = model.evaluate(self.validation, verbose=0, return_dict=True)
        key = self.metric if self.metric in result else [k for k in result if k != "loss"][0]
        return float(result[key])

    def _compile(self, model, stage: Stage, epochs: int, retrain: bool) -> None:
        lr = stage.retrain_learning_rate if retrain and stage.retrain_learning_rate else None
        lr = lr or stage.learning_rate
        steps = int(self.train.cardinality())
        if stage.schedule == "cosine" and steps > 0 and epochs > 0:
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs)
        optimizer = keras.optimizers.get({"class_name": stage.optimizer, "config": {}})
        config = optimizer.get_config()
        config["learning_rate"] = lr
        optimizer = optimizer.__class__.from_config(config)
        model.compile(optimizer=optimizer, loss=self.loss, metrics=[self.metric])

    def _wrap(self, seed, stage: Stage):
        """Wrap ``seed`` for ``stage``: each layer's sparsity never below its current zeros,
        and those zeros masked from the start of ADMM."""
        current = layer_sparsity(seed)
        sparsity, bits = {}, {}
        for name, zeros in current.items():
            target = stage.layer_sparsity(name)
            s = max(target or 0.0, zeros)
            if target is not None or zeros > 0:
                sparsity[name] = s
            b = stage.layer_bits(name)
            if b is not None:
                bits[name] = b
        wrapped = compress(
            seed,
            sparsity=sparsity or None,
            bits=bits or None,
            scheme=stage.scheme,
            per_channel=stage.per_channel,
            rho=stage.rho,
        )
        for wrapper in find_wrappers(wrapped):
            for weight, mask in zip(wrapper.constrained, wrapper.mask_vars):
                values = np.asarray(weight)
                mask.assign((values != 0).astype(values.dtype))
        return wrapped

    def _fit(self, model, epochs, callbacks, backup: str | None):
        if epochs == 0:
            return {}
        callbacks = list(callbacks) + self.callbacks
        if backup is not None:
            callbacks.append(keras.callbacks.BackupAndRestore(backup_dir=backup))
        history = model.fit(
            self.train,
            epochs=epochs,
            validation_data=self.validation,
            callbacks=callbacks,
            verbose=self.verbose,
            shuffle=False,  # the dataset shuffles itself
        )
        return {k: [float(v) for v in vals] for k, vals in history.history.items()}

    def _run_stage(self, index: int, stage: Stage, seed) -> tuple[Any, dict]:
        start, cpu0 = time.time(), time.process_time()
        folder = self._stage_dir(index)
        projected_path = None if folder is None else os.path.join(folder, "projected.keras")
        histories: dict[str, Any] = {}
        if projected_path is not None and os.path.exists(projected_path):
            wrapped = keras.models.load_model(projected_path)
            self._log(f"  resuming after the hard projection ({projected_path})")
            phase = _read_json(os.path.join(folder, "admm_history.json"))
            histories["admm"] = phase
        else:
            wrapped = self._wrap(seed, stage)
            self._compile(wrapped, stage, stage.admm_epochs, retrain=False)
            admm = UpdateADMM(
                update_every=stage.update_every,
                unit=stage.unit,
                rho_growth=stage.rho_growth,
                rho_max=stage.rho_max,
            )
            backup = None if folder is None else os.path.join(folder, "admm_backup")
            histories["admm"] = self._fit(wrapped, stage.admm_epochs, [admm], backup)
            hard_project(wrapped)
            if folder is not None:
                _write_json(os.path.join(folder, "admm_history.json"), histories["admm"])
                wrapped.save(projected_path)
        self._compile(wrapped, stage, stage.retrain_epochs, retrain=True)
        backup = None if folder is None else os.path.join(folder, "retrain_backup")
        histories["retrain"] = self._fit(wrapped, stage.retrain_epochs, [UpdateADMM()], backup)
        bits = {w.layer.name: w.constraint.bits for w in find_wrappers(wrapped) if w.quantized}
        result = strip_admm(wrapped)
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
            if self.directory is not None:
                os.makedirs(self.directory, exist_ok=True)
            self.dense_metric = self._evaluate(_clone(self.dense))
            plan, done, retries_left = list(self.plan), 0, self.retries
            current = _clone(self.dense)
            if self.directory is not None:
                current.save(self._path("dense.keras"))
            self.reports = []
        else:
            self.dense_metric = state["dense_metric"]
            plan = [Stage.from_config(c) for c in state["plan"]]
            done, retries_left = state["done"], state["retries_left"]
            self.reports = state["reports"]
            current = keras.models.load_model(self._last_good_path())
            self._log(f"resuming {self.directory!r} after {done} of {len(plan)} stages")
        self._log(f"dense {self.metric}: {self.dense_metric:.4f} (tolerance {self.tolerance})")
        self._save_state(plan, done, retries_left)
        writer = _writer(self._path("tensorboard"))
        while done < len(plan):
            stage = plan[done]
            self._log(self._banner(done, len(plan), stage))
            result, report = self._run_stage(done, stage, current)
            first_epoch = sum(
                len(r["history"].get("admm", {}).get("admm_primal_residual", []))
                for r in self.reports
            )
            self.reports.append(report)
            _tensorboard(writer, report, len(self.reports), self.metric, first_epoch)
            verdict = "passed" if report["passed"] else "FAILED"
            self._log(
                f"{report['name']}: {self.metric} {report[self.metric]:.4f} "
                f"(dense {self.dense_metric:.4f}), {report['pruning_rate']:.1f}x fewer weights, "
                f"{report['storage_rate']:.1f}x smaller, {report['seconds']:.0f} s: {verdict}"
            )
            folder = self._stage_dir(done)
            if folder is not None:
                _write_json(os.path.join(folder, "report.json"), report)
            if report["passed"]:
                current = result
                if folder is not None:
                    result.save(os.path.join(folder, "model.keras"))
                done += 1
            elif retries_left > 0 and (smaller := self._smaller(plan, done, current)) is not None:
                retries_left -= 1
                self._log(f"retrying with a smaller step first: {smaller.name}")
                if folder is not None:
                    shutil.rmtree(folder)
                plan.insert(done, smaller)
            else:
                self._log("stopping: keeping the last good model")
                self._save_state(plan, done, retries_left)
                if folder is not None:
                    shutil.rmtree(folder)
                break
            self._save_state(plan, done, retries_left)
            self._figures()
        self._figures()
        self.model = current
        return current

    def _last_good_path(self) -> str:
        state = self._load_state()
        done = state["done"] if state else 0
        if done == 0:
            return self._path("dense.keras")
        return self._path(f"stage_{done:02d}", "model.keras")

    def _banner(self, index: int, total: int, stage: Stage) -> str:
        parts = []
        if isinstance(stage.sparsity, dict):
            shown = {n: round(v, 4) if v is not None else None for n, v in stage.sparsity.items()}
            parts.append(f"sparsity {shown}")
        elif stage.sparsity is not None:
            parts.append(f"sparsity {stage.sparsity}")
        if stage.bits is not None:
            parts.append(f"bits {stage.bits}")
        return (
            f"== {stage.label(index)} ({index + 1}/{total}): {', '.join(parts)}; "
            f"ADMM {stage.admm_epochs} + retrain {stage.retrain_epochs} epochs"
        )

    def _smaller(self, plan, index: int, current) -> Stage | None:
        """The retry inserted before a failed stage: sparsities halfway in log-rate between the
        current model and the stage's targets; when sparsity cannot shrink (none, or already
        reached), the same stage with more bits (:func:`more_bits`). None when neither helps."""
        stage = plan[index]
        config = stage.get_config()
        if stage.sparsity is not None:
            have = layer_sparsity(current)
            targets = {}
            changed = False
            for name, zeros in have.items():
                target = stage.layer_sparsity(name)
                if target is None:
                    continue
                middle = 1.0 - math.sqrt((1.0 - zeros) * (1.0 - target))
                changed |= middle < target - 1e-6
                targets[name] = middle
            if changed:
                config["sparsity"] = targets
                config["name"] = f"{stage.label(index)} (smaller)"
                return Stage.from_config(config)
        if stage.bits is None:
            return None
        # halfway from the failed bits to those of the last good model, layer by layer
        good = next((r for r in reversed(self.reports) if r["passed"]), {"bits": {}})["bits"]
        binary = stage.scheme == "binary"  # every layer of the stage is binary (1 bit)
        names = (
            stage.bits
            if isinstance(stage.bits, dict)
            else [layer.name for layer in registry.compressible_layers(current)]
        )
        bits, grew = {}, False
        for name in names:
            target = stage.layer_bits(name)
            if target is None:  # a layer the stage does not quantize
                bits[name] = None
                continue
            failed = "binary" if binary else target
            more = more_bits(failed, good.get(name))
            grew |= more is not None
            bits[name] = more or failed
        if not grew:
            return None
        if not isinstance(stage.bits, dict) and len(set(bits.values())) == 1:
            bits = bits.popitem()[1]  # the same for every layer: keep the stage's form
        config["bits"] = bits
        config["scheme"] = "uniform" if binary else stage.scheme
        config["name"] = f"{stage.label(index)} (more bits)"
        return Stage.from_config(config)

    def _figures(self) -> None:
        folder = self._path("figures")
        if folder is None or not self.reports:
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:  # pragma: no cover - optional dependency
            return
        os.makedirs(folder, exist_ok=True)
        good = [r for r in self.reports if r["passed"]]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for group, style in ((good, "o-"), ([r for r in self.reports if not r["passed"]], "x")):
            if group:
                ax.plot([r["pruning_rate"] for r in group], [r[self.metric] for r in group], style)
        ax.axhline(self.dense_metric, color="gray", ls="--", label="dense")
        ax.axhline(self.dense_metric - self.tolerance, color="red", ls=":", label="tolerance")
        ax.set_xscale("log")
        ax.set_xlabel("pruning rate (weights / nonzeros)")
        ax.set_ylabel(self.metric)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "accuracy_vs_compression.png"), dpi=100)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        offset = 0
        for r in self.reports:
            curve = r["history"].get("admm", {}).get("admm_primal_residual", [])
            if curve:
                ax.plot(range(offset, offset + len(curve)), curve, label=r["name"])
                offset += len(curve)
        ax.set_yscale("log")
        ax.set_xlabel("ADMM epoch")
        ax.set_ylabel("||W - Z|| / ||W||")
        if offset:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "residuals.png"), dpi=100)
        plt.close(fig)
        last = (good or self.reports)[-1]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        names = list(last["layers"])
        ax.bar(names, [last["layers"][n] for n in names])
        ax.set_ylim(0, 1)
        ax.set_ylabel("sparsity")
        ax.set_title(last["name"])
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "layer_sparsity.png"), dpi=100)
        plt.close(fig)


def _read_json(path: str) -> Any:
    with open(path) as handle:
        return json.load(handle)


def _clone(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _writer(path: str | None):
    """A TensorBoard writer, or None without a directory or without the tensorboard package
    (``pip install tf-admm[reports]``)."""
    if path is None:
        return None
    try:
        import tensorboard  # noqa: F401  (tf.summary needs it)
    except ImportError:
        return None
    return tf.summary.create_file_writer(path)


def _tensorboard(writer, report: dict, step: int, metric: str, first_epoch: int) -> None:
    """Stage scalars at ``step`` (the stage count); ADMM curves from ``first_epoch`` on."""
    if writer is None:
        return
    with writer.as_default():
        tf.summary.scalar(f"stage/{metric}", report[metric], step=step)
        tf.summary.scalar("stage/pruning_rate", report["pruning_rate"], step=step)
        tf.summary.scalar("stage/storage_rate", report["storage_rate"], step=step)
        for name, sparsity in report["layers"].items():
            tf.summary.scalar(f"sparsity/{name}", sparsity, step=step)
        admm = report["history"].get("admm", {})
        for key in ("admm_primal_residual", "admm_dual_residual", "admm_rho"):
            for i, value in enumerate(admm.get(key, [])):
                tf.summary.scalar(f"admm/{key[5:]}", value, step=first_epoch + i)
    writer.flush()
