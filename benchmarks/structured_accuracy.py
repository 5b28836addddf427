"""Accuracy at equal MACs on Fashion-MNIST: structured ADMM against gradual L1 filter pruning.

For each seed it trains ``--network`` dense (cached in ``--cache``): a small CIFAR-style ResNet
(28x28x1, identity shortcuts, BatchNorm) or a MobileNetV2-style net (inverted residual blocks:
1x1 expand, depthwise, 1x1 project, identity shortcuts), then, from that same dense model, at
each ``--rates`` (dense MACs / pruned MACs) with the per-group targets of
``tf_admm.allocate_channels``:

- ``structured_admm``: ``tf_admm.prune_channels`` + ``UpdateADMM()`` (the default, gradual
  recipe) for ``--ramp-epochs``, ``tf_admm.hard_project``, ``--retrain-epochs`` of masked
  retraining with ``UpdateADMM()``, ``tf_admm.shrink``;
- ``structured_admm_ramp_masked``: the same with ``schedules.Gradual(masking="ramp")``: the
  channels outside Z's support are masked at every Z/U update of the ramp;
- ``structured_admm_ramp_end``: the same with ``Gradual(masking="ramp", ramp_end=0.9)``: the
  ramp ends at 90% of the ADMM phase, which then trains on the final channels;
- ``structured_admm_gradient``: ``structured_admm_ramp_masked`` with
  ``UpdateADMM(gradient_data=...)`` (20 training batches): rho per wrapper by the RMS of its
  loss gradient, the weight recipe's recommendation;
- ``structured_admm_consumers``: ``structured_admm_ramp_masked`` with ``Gradual(pull="target")``
  and ``prune_channels(score="group_and_consumers")``: channels ranked by the group's weights
  and the input weights of the layers that read them;
- ``structured_admm_ramp_consumers``: the same score with ``pull="ramp"`` (the default), to
  tell what the score needs ``pull="target"`` for;
- ``l1_gradual``: the standard magnitude baseline on the same groups (Li et al.'s L1-norm filter
  ranking summed over the group's producers, removed on the AGP cubic schedule of Zhu and
  Gupta over the same ``--ramp-epochs``, every 100 steps; masks enforced after every step;
  then ``--retrain-epochs`` of fine-tuning), ``tf_admm.shrink``;
- ``l1_gradual_consumers``: ``l1_gradual`` with the L1 norm of the readers' input weights added
  to each channel's score (Torch-Pruning's group L1 importance): the baseline given the ranking
  of ``structured_admm_consumers``, to tell the score's share from ADMM's;
- ``structured_admm_progressive``: the paper's progressive scheme with physical removal between
  steps, run by ``tf_admm.ProgressiveCompressor`` with ``Stage(flops_rate=...)`` (``STAGES``
  steps at geometrically growing MAC reductions, each allocated on the model the last step
  shrank, each with its share of both phases; the stages' reports are measured on the
  held-out images below).

Both sides: Adam, batch 128, the same batches (one shuffle seed), the same epochs; 1e-3 over
the ramp, a cosine decay from 1e-3 to 0 over the retraining. The test accuracy is that of the
shrunk Keras model; its ``validation_accuracy`` is on the last ``--validation-size`` training
images, which no run trains on (``--train-size`` takes the first ones): settings are chosen on
it, and the test accuracy of the chosen one is reported. One JSON object per run is appended
to ``--out`` (kind "accuracy"), and a run already there with the same settings (epochs,
training images, dense epochs, the method's schedule flags, ``--round-to``) is skipped
(resumable). The schedule flags: ``--rho-final`` and ``--update-every`` set the ADMM phase's
``schedules.Gradual`` (default: the library's), ``--prune-every`` the steps between two
pruning steps of the L1 baselines' ramp (default 100).
``--round-to`` keeps a multiple of that many channels in every group
(``allocate_channels(..., round_to=...)``, what the int8 latency tables measure with 16),
for both methods alike.

    python benchmarks/structured_accuracy.py --seeds 0 1 2 --rates 2 --out docs/structured.json
    python benchmarks/structured_accuracy.py --table --out docs/structured.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf
from common import hold_out, mean_std
from fashion_mnist import load
from nets import cifar_resnet, mobilenet_v2_small

import tf_admm
from tf_admm import keras

L = keras.layers
BATCH = 128
L1_EVERY = 100  # the L1 baselines' steps between two pruning steps (Zhu and Gupta's)
TRAIN_IMAGES = 60000  # Fashion-MNIST's training set; the validation images are its last ones


def resnet():
    """ResNet-14 of width 8 for 28x28x1 (2 blocks a stage)."""
    return cifar_resnet((28, 28, 1), width=8, blocks=2)


def dataset(x, y, seed: int):
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(BATCH)
        .prefetch(2)
    )


def compile_model(model, lr=1e-3) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


NETWORKS = {  # name -> (cache file prefix, builder)
    "resnet14_w8": ("resnet", resnet),
    "mobilenet_v2_small": ("mobilenet_v2_small", mobilenet_v2_small),
}


def dense_model(seed: int, epochs: int, data, cache: str, network: str = "resnet14_w8"):
    prefix, build = NETWORKS[network]
    path = os.path.join(cache, f"{prefix}_dense_seed{seed}_{epochs}ep.keras")
    (x, y), (xt, yt) = data
    if os.path.exists(path):
        model = keras.models.load_model(path, compile=False)
    else:
        keras.utils.set_random_seed(seed)
        model = build()
        steps = epochs * int(np.ceil(len(x) / BATCH))
        compile_model(model, keras.optimizers.schedules.CosineDecay(1e-3, steps))
        model.fit(dataset(x, y, seed), epochs=epochs, verbose=2)
        os.makedirs(cache, exist_ok=True)
        model.save(path)
    return model, accuracy(model, xt, yt)


def _channel_axis(layer) -> int:
    """The kernel axis of a layer's output channels (input channels of a depthwise kernel)."""
    kind = type(layer).__name__
    return -2 if "Transpose" in kind or "Depthwise" in kind else -1


def _reader_l1(member, size: int) -> np.ndarray:
    """Per group channel, the L1 norm of a consumer's input weights that read it (every
    position a Flatten repeats it at; zero for channels outside the member's range)."""
    kernel = member.layer.get_weights()[0]
    moved = np.moveaxis(kernel, tf_admm.dead_channels.kernel_in_axis(member.layer), -1)
    l1 = np.abs(moved.reshape(-1, moved.shape[-1])).sum(0)
    return np.array([l1[member.positions([c])].sum() for c in range(size)])


class GroupL1Pruning(keras.callbacks.Callback):
    """Gradual L1-norm filter pruning on channel groups (the baseline; not library code)."""

    def __init__(
        self,
        groups,
        targets: dict[int, float],
        ramp_steps: int,
        every: int = L1_EVERY,
        readers: bool = False,
    ):
        super().__init__()
        self.groups, self.targets = groups, targets
        # readers: the L1 norm of the input weights of the layers that read each channel is
        # added to the score (Torch-Pruning's group L1 importance; the fairness check of
        # score="group_and_consumers")
        self.readers = readers
        self.ramp_steps, self.every = ramp_steps, every
        self.step = 0
        self.masks: list[tuple] = []  # (variable, mask tensor)

    def _members(self, group):
        return [m for m in group.members if m.role != "consumer"]

    def _prune(self, fraction_of_target: float) -> None:
        plan = []
        for index, target in self.targets.items():
            group = self.groups[index]
            score = np.zeros(group.size)
            for m in group.members:
                if m.role == "producer":
                    kernel = m.layer.get_weights()[0]
                    axis = _channel_axis(m.layer)
                    score += np.abs(np.moveaxis(kernel, axis, -1)).reshape(-1, group.size).sum(0)
                elif m.role == "consumer" and self.readers:
                    score += _reader_l1(m, group.size)
            sparsity = target * fraction_of_target
            k = tf_admm.projections.keep_count(group.size, sparsity)
            keep = tf_admm.projections.topk_mask(score, k)
            plan.append((group, np.flatnonzero(~keep).tolist()))
        masks = {}
        for group, dead in plan:
            for m in self._members(group):
                for variable in m.layer.weights:
                    if not variable.trainable:
                        continue
                    shape = tuple(variable.shape)
                    is_kernel = len(shape) > 1
                    axis = _channel_axis(m.layer) if is_kernel else 0
                    if not is_kernel and shape[0] != group.size and m.role == "producer":
                        continue
                    key = id(variable)
                    if key not in masks:
                        masks[key] = (variable, np.ones(shape, "float32"), axis)
                    mask = np.moveaxis(masks[key][1], axis, -1)
                    mask[..., m.positions(dead)] = 0.0
        self.masks = [(v, tf.constant(mask)) for v, mask, _ in masks.values()]
        self._apply()

    def _apply(self) -> None:
        for variable, mask in self.masks:
            variable.assign(variable * tf.cast(mask, variable.dtype))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step <= self.ramp_steps and self.step % self.every == 0:
            t = self.step / self.ramp_steps
            self._prune(1.0 - (1.0 - t) ** 3)
        elif self.step == self.ramp_steps + 1:
            self._prune(1.0)
        else:
            self._apply()


def retrain_rate(x, epochs: int):
    """Both methods retrain on a cosine decay from 1e-3 to 0 (the ramp runs at 1e-3)."""
    return keras.optimizers.schedules.CosineDecay(1e-3, epochs * int(np.ceil(len(x) / BATCH)))


def run_admm(
    dense,
    targets,
    data,
    seed,
    ramp_epochs,
    retrain_epochs,
    schedule=None,
    masking="end",
    ramp_end=1.0,
    gradient_batches=0,
    pull="ramp",
    score="group",
):
    (x, y), _ = data
    keras.utils.set_random_seed(seed)
    # schedule: the flags' schedules.Gradual arguments (SCHEDULE_FLAGS["admm"]); their
    # defaults are the library's
    gradual = tf_admm.schedules.Gradual(
        **(schedule or {}), masking=masking, ramp_end=ramp_end, pull=pull
    )
    pruned = tf_admm.prune_channels(dense, targets, schedule=gradual, score=score)
    compile_model(pruned)
    # gradient_batches > 0: rho per wrapper by its loss-gradient RMS on that many batches
    gradient_data = dataset(x, y, seed).take(gradient_batches) if gradient_batches else None
    update = tf_admm.UpdateADMM(gradient_data=gradient_data)
    pruned.fit(dataset(x, y, seed), epochs=ramp_epochs, verbose=0, callbacks=[update])
    tf_admm.hard_project(pruned)
    compile_model(pruned, retrain_rate(x, retrain_epochs))
    pruned.fit(
        dataset(x, y, seed + 1), epochs=retrain_epochs, verbose=0, callbacks=[tf_admm.UpdateADMM()]
    )
    return tf_admm.shrink(pruned)


RAMP_END = 0.9
GRADIENT_BATCHES = 20  # as the weight recipe's UpdateADMM(gradient_data=...) measurements
# structured_admm with Gradual(masking="ramp"): the channels outside Z's support are masked at
# every Z/U update of the ramp, not only by hard_project (prune_channels' default)
run_admm_ramp_masked = functools.partial(run_admm, masking="ramp")
# ... and Gradual(ramp_end=0.9): the ramp ends at 90% of the ADMM phase, which then trains on
# the final channels before hard_project
run_admm_ramp_end = functools.partial(run_admm, masking="ramp", ramp_end=RAMP_END)
# ... and UpdateADMM(gradient_data=...) over the ramp (20 training batches): each wrapper's
# rho scaled by its loss-gradient RMS, as the weight-pruning recipe recommends
run_admm_gradient = functools.partial(run_admm, masking="ramp", gradient_batches=GRADIENT_BATCHES)
# ... and Gradual(pull="target"): Z projected onto the final channels from the first update
# (ADMM pulls every channel the ramp will remove towards zero from the start) while the mask
# of the forward pass follows the ramp
run_admm_pull_target = functools.partial(run_admm, masking="ramp", pull="target")
# ... and prune_channels(score="group_and_consumers"): the channels ranked by the group's
# weights and the input weights of the layers that read them
run_admm_consumers = functools.partial(
    run_admm, masking="ramp", pull="target", score="group_and_consumers"
)


def run_admm_progressive(dense, rate, data, seed, ramp_epochs, retrain_epochs, schedule=None):
    """The paper's progressive scheme with physical removal between steps, run by the library:
    ``tf_admm.ProgressiveCompressor`` over ``STAGES`` ``Stage(flops_rate=...)`` steps at
    geometrically growing MAC reductions (each allocated by ``allocate_channels`` on the model
    the last step shrank, counted from the dense MACs), each with its share of the ramp and
    retraining epochs. A stage's ADMM phase mirrors the one-step method: a sparsity ramp over
    the whole phase, Z/U every tenth of it (at most 100 steps), rho 1e-3 to 0.1, the channels
    outside Z's support masked along the ramp (a channel Stage's default), a constant learning
    rate; retraining on a cosine decay. The accuracy guard is off (tolerance 1); the stages'
    reports are measured on the held-out images, never on the test set."""
    (x, y), held_out = data
    # the flags' schedule, whose rules (Z/U interval, final rho) each stage's phase follows
    gradual = tf_admm.schedules.Gradual(**(schedule or {}))
    steps = int(np.ceil(len(x) / BATCH)) * (ramp_epochs // STAGES)
    rho = 1e-3  # each stage's starting rho (Stage's default)
    stages = [
        tf_admm.Stage(
            f"{rate ** (k / STAGES):.2f}x",
            flops_rate=rate ** (k / STAGES),
            admm_epochs=ramp_epochs // STAGES,
            retrain_epochs=retrain_epochs // STAGES,
            ramp=1.0,
            unit="step",
            rho=rho,
            update_every=gradual.interval(steps),
            rho_final=gradual.rho_rule(rho, steps)[1],
        )
        for k in range(1, STAGES + 1)
    ]
    keras.utils.set_random_seed(seed)
    run = tf_admm.ProgressiveCompressor(
        dense,
        stages,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        train_data=(x, y),
        validation_data=held_out,
        tolerance=1.0,
        batch_size=BATCH,
        seed=seed,
        verbose=0,
    )
    return run.run()


STAGES = 2
RUNNER = "progressive_compressor"  # progressive rows run by the library's driver
# the ADMM masking each method runs with (a channel Stage masks along its ramp since it
# follows prune_channels); rows written before the field existed ran with the second value
MASKING = {
    "structured_admm": ("end", "end"),
    "structured_admm_ramp_masked": ("ramp", "ramp"),
    "structured_admm_ramp_end": ("ramp", "ramp"),
    "structured_admm_gradient": ("ramp", "ramp"),
    "structured_admm_pull_target": ("ramp", "ramp"),
    "structured_admm_consumers": ("ramp", "ramp"),
    "structured_admm_ramp_consumers": ("ramp", "ramp"),
    "structured_admm_progressive": ("ramp", "end"),
    "l1_gradual": (None, None),
    "l1_gradual_consumers": (None, None),
}


# what Z is projected onto along the ramp (schedules.Gradual(pull=...)); None: not ADMM or a
# row written before the field, all of which projected onto the ramp
PULL = {m: "ramp" for m in MASKING if m.startswith("structured_admm")}
PULL["structured_admm_pull_target"] = PULL["structured_admm_consumers"] = "target"
# how the ADMM methods rank a group's channels (prune_channels(score=...)); None: not ADMM
SCORE = {m: "group" for m in PULL}
SCORE["structured_admm_consumers"] = SCORE["structured_admm_ramp_consumers"] = "group_and_consumers"
SCORE["l1_gradual_consumers"] = "group_and_consumers"  # L1 norms, not sums of squares


def run_l1(dense, targets, data, seed, ramp_epochs, retrain_epochs, schedule=None, readers=False):
    (x, y), _ = data
    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(dense)
    model.set_weights(dense.get_weights())
    groups = tf_admm.channel_groups(model)
    steps = ramp_epochs * int(np.ceil(len(x) / BATCH))
    every = (schedule or {}).get("prune_every", L1_EVERY)
    pruner = GroupL1Pruning(groups, targets, steps, every=every, readers=readers)
    compile_model(model)
    model.fit(dataset(x, y, seed), epochs=ramp_epochs, verbose=0, callbacks=[pruner])
    pruner._prune(1.0)
    compile_model(model, retrain_rate(x, retrain_epochs))
    model.fit(dataset(x, y, seed + 1), epochs=retrain_epochs, verbose=0, callbacks=[pruner])
    return tf_admm.shrink(model)


# structured_admm_ramp_masked with the readers' score alone (pull="ramp"): which of the two
# settings of structured_admm_consumers its gain needs
run_admm_ramp_consumers = functools.partial(run_admm, masking="ramp", score="group_and_consumers")
# ... with the readers' input weights in the score, as score="group_and_consumers" ranks
run_l1_readers = functools.partial(run_l1, readers=True)


METHODS = {
    "structured_admm": run_admm,
    "structured_admm_ramp_masked": run_admm_ramp_masked,
    "structured_admm_ramp_end": run_admm_ramp_end,
    "structured_admm_gradient": run_admm_gradient,
    "structured_admm_pull_target": run_admm_pull_target,
    "structured_admm_consumers": run_admm_consumers,
    "structured_admm_ramp_consumers": run_admm_ramp_consumers,
    "l1_gradual": run_l1,
    "l1_gradual_consumers": run_l1_readers,
    "structured_admm_progressive": run_admm_progressive,
}


# the flags that set each kind of method's schedule, with their defaults (what rows written
# before a field ran with): the ADMM methods' schedules.Gradual arguments (--rho-final,
# --update-every; the library's defaults), the L1 baselines' steps between two pruning steps
# (--prune-every)
SCHEDULE_FLAGS = {
    "admm": {"rho_final": None, "update_every": "auto"},
    "l1": {"prune_every": L1_EVERY},
}


def schedule_flags(method: str) -> dict:
    """:data:`SCHEDULE_FLAGS` of ``method``'s kind, with their defaults."""
    return SCHEDULE_FLAGS["admm" if method.startswith("structured_admm") else "l1"]


def schedule_of(method: str, source: dict) -> dict:
    """The schedule settings (:func:`schedule_flags`) a run of ``method`` was made with, read
    from a row or from the flags (``vars(args)``)."""
    return {name: source.get(name, default) for name, default in schedule_flags(method).items()}


def schedule_text(method: str, settings: dict) -> str:
    """The settings that differ from their defaults, ``name=value`` (or "default")."""
    flags = schedule_flags(method)
    changed = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in settings.items()
        if v != flags[k]
    ]
    return ", ".join(changed) or "default"


def update_every(text: str):
    """``--update-every``: ``"auto"`` or a number of steps (>= 1)."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an int >= 1. Received: {text!r}")
    return int(text)


def read_rows(path: str) -> list[dict]:
    """The JSON objects of ``path``, one a line."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def current_rows(rows: list[dict]) -> list[dict]:
    """The accuracy rows of ``rows`` that still stand: cosine retraining, and neither a
    progressive row of the hand-written loop nor a row whose ADMM masking is not the method's
    current one (those are run again, and a resumed run or the table reads the new row)."""
    current = []
    for r in rows:
        if not (r.get("kind") == "accuracy" and r.get("retrain_schedule") == "cosine"):
            continue
        stale = r["method"].endswith("progressive") and r.get("runner") != RUNNER
        now, before = MASKING[r["method"]]
        if not stale and r.get("masking", before) == now:
            current.append(r)
    return current


def done_runs(rows: list[dict], args) -> set[tuple]:
    """The ``(method, target rate, seed)`` runs of ``rows`` made with ``args``' settings
    (network, the method's :data:`SCHEDULE_FLAGS`, epochs, dense epochs, training images,
    ``--round-to``; rows written before a field existed have its old value), which a
    resumed run skips. Only :func:`current_rows` count."""
    done = set()
    for r in current_rows(rows):
        method = r["method"]
        same_run = (
            r["network"] == args.network
            and schedule_of(method, r) == schedule_of(method, vars(args))
            and r.get("ramp_epochs", 4) == args.ramp_epochs
            and r.get("epochs") == args.ramp_epochs + args.retrain_epochs
            and r.get("dense_epochs") == args.dense_epochs
            and r.get("train_size") == args.train_size
            and r.get("round_to", 1) == args.round_to  # rows before the field: 1
        )
        if same_run:
            done.add((r["method"], r["target_rate"], r["seed"]))
    return done


BASELINE = "l1_gradual"  # what every method is set against, paired by seed


def _mean_std(values: list[float], sign: str = "") -> str:
    mean, std = mean_std(values)
    return f"{mean:{sign}.2f} ± {std:.2f}"


def table(rows: list[dict]) -> str:
    """Markdown, one table per setting (network, dense epochs, ramp + retraining epochs,
    training images, ``--round-to``, MAC rate): per method and schedule (its
    :data:`SCHEDULE_FLAGS` that differ from their defaults), the seeds, the
    MAC rate reached, test and validation accuracy (%, mean ± std over seeds) and the
    difference from :data:`BASELINE`'s test accuracy on the same seeds (mean ± std, paired by
    seed). Of two rows of one run, the later one counts."""
    settings: dict[tuple, dict[tuple, dict[int, dict]]] = {}
    for r in current_rows(rows):
        key = (
            r["network"],
            r["dense_epochs"],
            r.get("ramp_epochs", 4),
            r["epochs"],
            r["train_size"],
            r.get("round_to", 1),
            r["target_rate"],
        )
        variant = (r["method"], tuple(schedule_of(r["method"], r).items()))
        settings.setdefault(key, {}).setdefault(variant, {})[r["seed"]] = r
    out = []
    for key in sorted(settings):
        network, dense_epochs, ramp, epochs, images, round_to, rate = key
        variants = settings[key]
        dense = {s: 100 * r["dense_accuracy"] for v in variants.values() for s, r in v.items()}
        out += [
            f"{network}, dense {dense_epochs} epochs ({_mean_std(list(dense.values()))}%), "
            f"{ramp} + {epochs - ramp} epochs, {images} training images, round_to {round_to}, "
            f"{rate:g}x fewer MACs",
            "",
            f"| method | schedule | seeds | MACs | test % | validation % | - {BASELINE} (paired) |",
            "|---|---|---|---|---|---|---|",
        ]
        base = variants.get((BASELINE, tuple(schedule_of(BASELINE, {}).items())), {})
        for (method, chosen), by_seed in sorted(variants.items(), key=lambda item: str(item[0])):
            seeds = sorted(by_seed)
            test = [100 * by_seed[s]["test_accuracy"] for s in seeds]
            held = [by_seed[s].get("validation_accuracy") for s in seeds]
            valid = _mean_std([100 * v for v in held]) if None not in held else ""
            shared = [s for s in seeds if s in base]
            diff = [100 * (by_seed[s]["test_accuracy"] - base[s]["test_accuracy"]) for s in shared]
            is_base = by_seed is base
            paired = f"{_mean_std(diff, '+')} ({len(diff)})" if diff and not is_base else ""
            macs = float(np.mean([by_seed[s]["flops_rate"] for s in seeds]))
            out.append(
                f"| {method} | {schedule_text(method, dict(chosen))} | "
                f"{' '.join(map(str, seeds))} | {macs:.2f}x | {_mean_std(test)} | {valid} | "
                f"{paired} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="resnet14_w8", choices=list(NETWORKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rates", nargs="+", type=float, default=[2.0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--dense-epochs", type=int, default=8)
    parser.add_argument("--ramp-epochs", type=int, default=4)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=30000)  # every row so far: 30,000
    parser.add_argument(
        "--rho-final",
        type=float,
        default=None,
        help="schedules.Gradual(rho_final=...) for the ADMM phase (default: the library's)",
    )
    parser.add_argument(
        "--update-every",
        type=update_every,
        default="auto",
        help="schedules.Gradual(update_every=...): steps between two Z/U updates of the ADMM "
        "phase (default: the library's 'auto')",
    )
    parser.add_argument(
        "--prune-every",
        type=int,
        default=L1_EVERY,
        help="the L1 baselines' steps between two pruning steps of their ramp",
    )
    parser.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="tf_admm.allocate_channels(..., round_to=...): a multiple of it kept in every group",
    )
    parser.add_argument(
        "--validation-size",
        type=int,
        default=10000,
        help="the last N training images, never trained on: each row's validation_accuracy, "
        "on which settings are chosen (0: none)",
    )
    parser.add_argument("--cache", default="runs/structured_cache")
    parser.add_argument("--out", default="docs/structured.json")
    parser.add_argument(
        "--table", action="store_true", help="print --out's accuracy tables and run nothing"
    )
    args = parser.parse_args()
    if args.table:
        print(table(read_rows(args.out)))
        return
    if args.round_to < 1:
        parser.error(f"--round-to must be at least 1. Received: {args.round_to}")
    if args.prune_every < 1:
        parser.error(f"--prune-every must be at least 1. Received: {args.prune_every}")
    if args.round_to != 1 and "structured_admm_progressive" in args.methods:
        parser.error(
            "--round-to applies to the one-step methods (their allocation is made here); "
            "structured_admm_progressive allocates each stage itself. Received: --round-to "
            f"{args.round_to} with structured_admm_progressive"
        )
    if args.validation_size == 0 and "structured_admm_progressive" in args.methods:
        parser.error(
            "structured_admm_progressive validates its stages on the held-out images, never "
            "on the test set: --validation-size must be at least 1. Received: 0"
        )
    if args.validation_size < 0 or args.train_size + args.validation_size > TRAIN_IMAGES:
        parser.error(
            f"--train-size + --validation-size must be at most the {TRAIN_IMAGES} training "
            "images (the validation images are the last ones, never trained on). Received: "
            f"{args.train_size} + {args.validation_size}"
        )
    (x, y), test = load()
    train = (x[: args.train_size], y[: args.train_size])
    held_out = hold_out(x, y, args.validation_size)[1] if args.validation_size else None
    done = done_runs(read_rows(args.out), args) if os.path.exists(args.out) else set()
    schedules = {method: schedule_of(method, vars(args)) for method in args.methods}
    for seed in args.seeds:
        start = time.process_time()
        dense, dense_acc = dense_model(
            seed, args.dense_epochs, (train, test), args.cache, args.network
        )
        dense_cpu = time.process_time() - start
        dense_macs = tf_admm.flops.total_macs(dense)
        for rate in args.rates:
            targets = tf_admm.allocate_channels(dense, rate, round_to=args.round_to)
            for method in args.methods:
                if (method, rate, seed) in done:
                    continue
                start = time.process_time()
                small = METHODS[method](
                    dense,
                    rate if method.endswith("progressive") else targets,
                    (train, held_out),  # the test set is for the rows alone
                    seed,
                    args.ramp_epochs,
                    args.retrain_epochs,
                    schedules[method],
                )
                record = {
                    "network": args.network,
                    "kind": "accuracy",
                    "method": method,
                    "target_rate": rate,
                    "flops_rate": dense_macs / tf_admm.flops.total_macs(small),
                    "seed": seed,
                    "dense_accuracy": dense_acc,
                    "dense_epochs": args.dense_epochs,
                    "epochs": args.ramp_epochs + args.retrain_epochs,
                    "test_accuracy": accuracy(small, *test),
                    "validation_accuracy": (accuracy(small, *held_out) if held_out else None),
                    "validation_size": args.validation_size,
                    "params": int(small.count_params()),
                    "dense_params": int(dense.count_params()),
                    "cpu_seconds": time.process_time() - start,
                    "dense_cpu_seconds": dense_cpu,
                    "train_size": args.train_size,
                    **schedules[method],
                    "retrain_schedule": "cosine",
                    "ramp_epochs": args.ramp_epochs,
                    "stages": STAGES if method.endswith("progressive") else 1,
                    "runner": RUNNER if method.endswith("progressive") else None,
                    "masking": MASKING[method][0],
                    "pull": PULL.get(method),
                    "score": SCORE.get(method),
                    "round_to": args.round_to,
                }
                print(json.dumps(record), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
