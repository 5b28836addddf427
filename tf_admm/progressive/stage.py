"""One progressive stage: wrap the seed model, ADMM, hard projection, retraining, strip.

Usable on its own (examples and benchmarks run single stages with it) and by
:class:`tf_admm.ProgressiveCompressor`. With a
:class:`tf_admm.progressive.store.RunStore`, each phase
backs itself up at every epoch end (all model weights, the optimizer's variables, the epoch
count and the history so far, in one atomically written file), and a stage started again
continues from the last finished epoch. Together with :class:`TrainData`, whose batch order in
epoch ``e`` is a function of ``(seed, e)`` only, a resumed stage computes the same numbers as an
uninterrupted one.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> from tf_admm.progressive.stage import TrainData, run_stage
>>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype("int64")
>>> dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, name="fc")])
>>> small, history, bits = run_stage(
...     dense, tf_admm.Stage(sparsity=0.5, admm_epochs=1, retrain_epochs=1),
...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
...     train=TrainData((x, y), batch_size=16), verbose=0)
>>> float((small.get_layer("fc").get_weights()[0] == 0).mean())
0.5
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm._keras import keras
from tf_admm.callbacks import UpdateADMM
from tf_admm.flops import total_macs
from tf_admm.progressive.plan import Stage
from tf_admm.progressive.store import RunStore
from tf_admm.prune import compress, strip_admm
from tf_admm.removal import shrink
from tf_admm.report import layer_sparsity
from tf_admm.rho_scaling import scale_rho_by_gradient
from tf_admm.schedules import OneShot, growth_to_reach
from tf_admm.structured import allocate_channels, prune_channels
from tf_admm.updates import find_wrappers, hard_project, keep_zeros, to_numpy
from tf_admm.validation import check_int

__all__ = ["PhaseBackup", "TrainData", "run_stage", "wrap_for_stage"]


class TrainData:
    """Training batches for :func:`run_stage`.

    From arrays ``(x, y)``, epoch ``e`` visits the examples in an order drawn from
    ``(seed, e)`` alone (a stateless shuffle), so a process that resumes at epoch ``e`` sees
    the batches an uninterrupted run would have seen. A batched ``tf.data.Dataset`` is used as
    it is: its order after a restart is whatever the dataset makes it.

    >>> import numpy as np
    >>> data = TrainData((np.arange(10.0), np.arange(10)), batch_size=4, seed=1)
    >>> data.steps
    3
    >>> a = [b[1].numpy().tolist() for b in data.epochs(1, 2)]
    >>> b = [b[1].numpy().tolist() for b in data.epochs(0, 2)][3:]
    >>> a == b
    True
    """

    def __init__(self, data: Any, batch_size: int = 64, seed: int = 0):
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        if isinstance(data, tf.data.Dataset):
            self.fixed = data
            cardinality = int(data.cardinality())
            self.steps = cardinality if cardinality > 0 else None
            self.x = self.y = None
        elif isinstance(data, tuple) and len(data) == 2:
            self.fixed = None
            self.x, self.y = tf.convert_to_tensor(data[0]), tf.convert_to_tensor(data[1])
            if self.x.shape[0] != self.y.shape[0] or not self.x.shape[0]:
                raise ValueError(
                    "x and y need the same number (> 0) of examples. Received: "
                    f"{self.x.shape[0]} and {self.y.shape[0]}"
                )
            self.steps = -(-int(self.x.shape[0]) // self.batch_size)
        else:
            raise ValueError(
                "Data must be a batched tf.data.Dataset or a tuple (x, y) of arrays. "
                f"Received: {type(data).__name__}"
            )

    def epochs(self, first: int, last: int) -> tf.data.Dataset:
        """The batches of epochs ``first`` .. ``last - 1``, one after the other."""
        if self.fixed is not None:
            return self.fixed
        n, seed, batch = int(self.x.shape[0]), self.seed, self.batch_size
        x, y = self.x, self.y

        def order(epoch):
            pair = tf.stack([tf.constant(seed, tf.int64), epoch])
            index = tf.random.experimental.stateless_shuffle(tf.range(n), seed=pair)
            return tf.data.Dataset.from_tensor_slices(index).batch(batch)

        batches = tf.data.Dataset.range(first, last).flat_map(order)
        return batches.map(lambda i: (tf.gather(x, i), tf.gather(y, i))).prefetch(2)


def channel_targets(seed, stage: Stage, reference_macs: float | None = None) -> dict[int, float]:
    """Per-group sparsity that takes ``seed`` to ``reference_macs / stage.flops_rate`` MACs
    (``reference_macs`` defaults to the seed's own)."""
    have = total_macs(seed)
    reference = have if reference_macs is None else float(reference_macs)
    relative = have / (reference / stage.flops_rate)
    if relative <= 1.0:
        raise ValueError(
            f"Stage {stage.name!r} asks for {stage.flops_rate:g}x fewer MACs than the dense "
            f"model ({reference:.4g} MACs), which its seed already has ({have:.4g} MACs). "
            "Give a larger flops_rate than the stage before."
        )
    return allocate_channels(seed, relative)


def wrap_for_stage(seed, stage: Stage, reference_macs: float | None = None, schedule: Any = None):
    """Wrap ``seed`` for ``stage``: each layer's sparsity never below its current zeros, and
    those zeros masked from the start of ADMM (weights pruned earlier stay zero); the wrappers
    keep ``schedule`` (the stage's ``admm_schedule``, or :func:`stage_schedule`). A
    ``flops_rate`` stage wraps the channel groups (:func:`channel_targets`)."""
    if stage.flops_rate is not None:
        targets = channel_targets(seed, stage, reference_macs)
        wrapped = prune_channels(seed, targets, rho=stage.rho, schedule=schedule)
        keep_zeros(wrapped)
        return wrapped
    current = layer_sparsity(seed)
    sparsity, bits = {}, {}
    for name, zeros in current.items():
        target = stage.layer_sparsity(name)
        if target is not None or zeros > 0:
            sparsity[name] = max(target or 0.0, zeros)
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
        schedule=schedule,
    )
    keep_zeros(wrapped)
    return wrapped


def _ramps(model, steps: int | None) -> bool:
    """Whether a wrapper's schedule ramps its targets (read only for an ADMM phase)."""
    return any(w.schedule.ramp(steps or 1) > 0 for w in find_wrappers(model))


def compile_for_phase(
    model, stage: Stage, loss, metric: str, steps: int | None, epochs: int, retrain: bool
) -> None:
    """Compile with the stage's optimizer and learning rate: cosine over the phase, or constant
    (``schedule="constant"``, or ``"auto"`` in an ADMM phase where a wrapper's schedule ramps
    its targets)."""
    lr = stage.retrain_learning_rate if retrain and stage.retrain_learning_rate else None
    lr = lr or stage.learning_rate
    decay = stage.schedule == "cosine" or (
        stage.schedule == "auto" and (retrain or not _ramps(model, steps))
    )
    if decay and steps and epochs > 0:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs)
    optimizer = keras.optimizers.get({"class_name": stage.optimizer, "config": {}})
    config = optimizer.get_config()
    config["learning_rate"] = lr
    optimizer = optimizer.__class__.from_config(config)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])


def _optimizer_variables(model) -> list:
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


class PhaseBackup(keras.callbacks.Callback):
    """Saves a phase's state at every epoch end: every model weight, the optimizer's variables,
    the number of finished epochs and the per-epoch logs, in one ``.npz`` written atomically.

    Place it after the callbacks that change weights at epoch end (UpdateADMM does).
    :meth:`restore` loads it before ``fit``; a file that does not fit the model is discarded.
    """

    def __init__(self, store: RunStore, rel: str, history: dict[str, list] | None = None):
        super().__init__()
        self.store, self.rel = store, rel
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        arrays = {"epoch": np.array(epoch + 1), "history": np.array(json.dumps(self.history))}
        for i, v in enumerate(self.model.weights):
            arrays[f"w{i}"] = to_numpy(v)
        for i, v in enumerate(_optimizer_variables(self.model)):
            arrays[f"o{i}"] = to_numpy(v)
        self.store.save_arrays(self.rel, arrays)

    @staticmethod
    def restore(model, store: RunStore, rel: str) -> tuple[int, dict[str, list]]:
        """(finished epochs, history) after loading the backup into ``model`` (compiled);
        (0, {}) when there is none or it does not fit (then it is discarded)."""
        saved = store.load_arrays(rel)
        if saved is None:
            return 0, {}
        weights, slots = model.weights, _optimizer_variables(model)
        names = [f"w{i}" for i in range(len(weights))] + [f"o{i}" for i in range(len(slots))]
        expected = {"epoch", "history", *names}
        fits = set(saved) == expected and all(
            tuple(saved[n].shape) == tuple(v.shape) for n, v in zip(names, [*weights, *slots])
        )
        if not fits:
            store.discard(rel, "it does not match the model being trained")
            return 0, {}
        for name, variable in zip(names, [*weights, *slots]):
            variable.assign(saved[name])
        return int(saved["epoch"]), json.loads(str(saved["history"]))


class _Record(keras.callbacks.Callback):
    """Per-epoch logs of a phase (without a store)."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))


def fit_phase(
    model,
    train: TrainData,
    epochs: int,
    *,
    validation=None,
    callbacks=(),
    store: RunStore | None = None,
    backup: str | None = None,
    verbose: int = 1,
):
    """``fit`` for ``epochs`` epochs, continuing from the phase's backup when there is one;
    returns the per-epoch history of the whole phase."""
    if epochs == 0:
        return {}
    done, history = (0, {})
    if store is not None and backup is not None:
        done, history = PhaseBackup.restore(model, store, backup)
        recorder = PhaseBackup(store, backup, history)
    else:
        recorder = _Record()
    if done < epochs:
        model.fit(
            train.epochs(done, epochs),
            epochs=epochs,
            initial_epoch=done,
            steps_per_epoch=train.steps if train.fixed is None else None,
            validation_data=validation,
            callbacks=[*callbacks, recorder],
            verbose=verbose,
            shuffle=False,  # TrainData orders the batches itself
        )
        history = recorder.history
    return history


def _rho_growth(stage: Stage, train: TrainData) -> float:
    """``stage.rho_growth``, or with ``rho_final`` the growth that gets there over the phase."""
    if stage.rho_final is None:
        return stage.rho_growth
    units = stage.admm_epochs
    if stage.unit == "step":
        if not train.steps:
            raise ValueError(
                f"Stage {stage.name!r} has rho_final with unit='step', which needs the number "
                "of steps per epoch; the training dataset's cardinality is unknown."
            )
        units *= train.steps
    return growth_to_reach(stage.rho, stage.rho_final, units // stage.update_every)


def _ramp_steps(stage: Stage, train: TrainData) -> int:
    if not stage.ramp:
        return 0
    if not train.steps:
        raise ValueError(
            f"Stage {stage.name!r} has ramp={stage.ramp}, which needs the number of steps per "
            "epoch; the training dataset's cardinality is unknown. Give (x, y) arrays or a "
            "dataset of known length, or ramp=0."
        )
    return max(1, int(stage.ramp * stage.admm_epochs * train.steps))


def stage_schedule(stage: Stage, train: TrainData) -> OneShot:
    """The ADMM schedule a stage's wrappers keep: its Z/U interval and unit, rho grown by
    ``rho_growth`` (or by the factor that reaches ``rho_final`` over the phase) up to
    ``rho_max``, its ramp in steps; rho per layer is the stage's own (``rho_by_gradient``).
    A ``flops_rate`` stage masks the channels outside Z's support at every update
    (``masking="ramp"``, as :func:`tf_admm.prune_channels` does by default); a weight stage
    leaves masking to the hard projection."""
    return OneShot(
        update_every=stage.update_every,
        unit=stage.unit,
        rho_growth=_rho_growth(stage, train),
        rho_max=max(stage.rho_max, stage.rho_final or 0.0),
        ramp_steps=_ramp_steps(stage, train),
        rho_scaling="none",
        masking="end" if stage.flops_rate is None else "ramp",
    )


def run_stage(
    seed,
    stage: Stage,
    *,
    loss: Any,
    train: TrainData,
    validation: Any = None,
    metric: str = "accuracy",
    store: RunStore | None = None,
    folder: str = "stage",
    callbacks: list | None = None,
    verbose: int = 1,
    reference_macs: float | None = None,
) -> tuple[Any, dict[str, dict], dict[str, Any]]:
    """Run one stage from the stripped model ``seed``; returns (stripped result, histories of
    the ``"admm"`` and ``"retrain"`` phases, bits per quantized layer).

    A ``flops_rate`` stage's result is shrunk (:func:`tf_admm.shrink`): its removed channels
    are gone from the layers' shapes. Its rate counts from ``reference_macs`` (the run's dense
    model's MACs; default: the seed's).

    With ``store``, ``folder`` holds ``projected.keras`` (after the hard projection),
    ``admm_history.json`` and the two phase backups; a stage run again with the same store
    resumes from them.
    """
    callbacks = list(callbacks or [])
    histories: dict[str, dict] = {}
    projected = f"{folder}/projected.keras"
    wrapped = store.load_model(projected) if store is not None else None
    if wrapped is not None:
        histories["admm"] = store.read_json(f"{folder}/admm_history.json") or {}
    else:
        schedule = stage.admm_schedule
        if schedule is None:
            schedule = stage_schedule(stage, train)
        wrapped = wrap_for_stage(seed, stage, reference_macs, schedule)
        compile_for_phase(wrapped, stage, loss, metric, train.steps, stage.admm_epochs, False)
        if stage.rho_by_gradient and stage.admm_epochs:
            # before the phase backup is read: a resumed phase keeps its started wrappers
            scale_rho_by_gradient(wrapped, train.epochs(0, 1), power=stage.rho_by_gradient)
        # a given schedule's rho_scaling ("auto": by gradient) reads the stage's batches
        gradient_data = None if stage.admm_schedule is None else train.epochs(0, 1)
        histories["admm"] = fit_phase(
            wrapped,
            train,
            stage.admm_epochs,
            validation=validation,
            callbacks=[UpdateADMM(gradient_data=gradient_data), *callbacks],
            store=store,
            backup=f"{folder}/admm_backup.npz",
            verbose=verbose,
        )
        hard_project(wrapped)
        if store is not None:
            store.write_json(f"{folder}/admm_history.json", histories["admm"])
            store.save_model(projected, wrapped)
    compile_for_phase(wrapped, stage, loss, metric, train.steps, stage.retrain_epochs, True)
    histories["retrain"] = fit_phase(
        wrapped,
        train,
        stage.retrain_epochs,
        validation=validation,
        callbacks=[UpdateADMM(), *callbacks],
        store=store,
        backup=f"{folder}/retrain_backup.npz",
        verbose=verbose,
    )
    bits = {w.layer.name: w.constraint.bits for w in find_wrappers(wrapped) if w.quantized}
    if stage.flops_rate is not None:
        return shrink(wrapped), histories, bits
    return strip_admm(wrapped), histories, bits
