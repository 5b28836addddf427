"""ADMM against TFMOT's gradual magnitude pruning (GMP) at the same targets and epochs, per seed.

For every (network, seed) a dense model is trained once and cached (``--cache``). For every rate
the per-layer targets come from ``tf_admm.allocate_sparsity(dense, rate, min_density=0,
min_keep=0)`` (LAMP, no floors) and are the same for every method; every method gets the same
number of epochs (``--epochs``, counted after the dense training), the same batches in the same
order, the same optimizer (Adam) and learning-rate schedule (``--learning-rate``). Each run executes
in its own process (GMP under tf_keras, since TFMOT rejects Keras 3 models) and appends one
object to ``--out``:

    {"network", "method", "default", "rate", "epochs", "seed", "dense_accuracy",
     "test_accuracy", "per_layer_sparsity", "cpu_seconds", "recipe"}

``"default": true`` marks the library's default ADMM recipe (:func:`is_default`: what
``UpdateADMM()`` runs on ``prune_low_magnitude``'s default schedule, without rho per layer).
``admm_gradual`` rows also hold ``"projected_accuracy"``, the test accuracy right after the hard
projection (before masked retraining), and ``"admm_accuracy"``, right before it (rows written
since the field was added; older rows lack it). ``--shift N`` moves the training images by up
to N pixels in the compression epochs of every method (recorded as ``recipe.shift``, its own
point). ``--distill T`` trains every method's compression epochs on Hinton et al.'s
distillation loss from the seed's dense model at temperature T (half cross-entropy on the
labels, half T² times the cross-entropy to the teacher's softened outputs; the teacher's logits
are computed once per run and counted in its CPU time; ``recipe.distill``, its own point).
A run already in ``--out`` (same network, method, rate, epochs, seed) is skipped, so an
interrupted study resumes where it stopped, and subsets run with ``--networks``, ``--methods``,
``--rates``, ``--seeds``. ``--plot`` draws test accuracy against compression rate, mean and
standard deviation over seeds, one curve per method.

    python benchmarks/compare_methods.py --networks lenet300 --seeds 0,1,2
    python benchmarks/compare_methods.py --networks lenet5 --rates 246 --methods gmp,admm
    python benchmarks/compare_methods.py --plot-only        # the PNG and table from the JSON

Methods (:data:`METHODS`; every ADMM method ends with a hard projection and masked retraining):
- ``gmp``: TFMOT PolynomialDecay from 0 to the targets over the first 70% of the steps, mask
  updates every 100 steps, then fine-tuning at the targets.
- ``admm``: one-shot ADMM: Z = Proj(W + U) at the targets, Z/U every ``update_every`` steps, rho
  from 1e-3 x1.3 per update; ADMM for 3/8 of the epochs, retraining for the rest.
- ``admm_sgd``: ``admm`` with the authors' optimizer in the ADMM phase: SGD, momentum 0.9,
  learning rate 0.01.
- ``admm_gradual``: README's recipe through the public API (:func:`admm_gradual`):
  ``prune_low_magnitude`` with the default ``schedules.Gradual()`` (Z projected onto sparsities
  rising on GMP's cubic schedule from 0 to the targets over the ADMM fit, Z/U every 100 steps,
  rho 1e-3 to 0.1), ``UpdateADMM`` for the first 70% of the epochs (``--variant gscale=1``:
  with ``gradient_data``, rho per layer), ``hard_project``, masked retraining for the rest.
- ``progressive``: three stages geometric in log-rate, each ADMM + retraining, seeded by the last
  (``tf_admm.geometric_stages``), the epochs split evenly.
- ``progressive_gradual``: ``progressive`` whose stages each run gradual ADMM with the library's
  schedule (``schedules.Gradual(ramp_steps=..., rho_final=0.1)``, Z/U every 100 steps; ramp
  from the last stage's zeros over 70% of the stage's epochs, then hard projection and
  retraining; ``tf_admm.keep_zeros`` keeps the last stage's zeros).
- ``post_training``: ``tf_admm.compress_post_training`` of the dense model at the targets from
  512 training images drawn by the seed (no labels, no training; exactly at the targets), then
  masked retraining on its zeros for ``--epochs`` (``prune_low_magnitude``, ``hard_project``
  at once, ``fit`` with ``UpdateADMM``): the short fine-tune of a post-training model.
- ``dense``: no compression: the dense model trained for the same epochs with the same batches,
  optimizer and augmentation (what the extra training alone gives; ``rate`` is only a label).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DEFAULT_METHOD = "admm_gradual"  # prune_low_magnitude's default schedule with UpdateADMM()
METHODS = (
    "gmp",
    "admm",
    "admm_sgd",
    "admm_gradual",
    "progressive",
    "progressive_gradual",
    "post_training",
    "dense",
)
CALIBRATION_SAMPLES = 512  # post_training's calibration images, drawn by the seed
NETWORKS = {
    # network: (builder in examples/common.py, compressible layers, rates, epochs after dense)
    "lenet5": ("lenet5", ("conv1", "conv2", "fc1", "fc2"), (50.0, 100.0, 246.0, 400.0), 24),
    "lenet300": ("lenet300", ("fc1", "fc2", "fc3"), (20.0, 60.0, 100.0), 24),
}
DENSE_EPOCHS = 10
GMP_END = 0.7  # the share of the steps over which GMP (and admm_gradual) raise the sparsity
# admm_gradual's options (--variant): ramp end (share of the steps), steps between Z/U updates,
# rho at the start and at the end of the ramp
# gscale: rho per layer times (its loss-gradient RMS / the layers' geometric mean) ** gscale
# sscale: rho per layer times (its weight count / the layers' geometric mean) ** -sscale, no
# data (tf_admm.scale_rho_by_size); not together with gscale
VARIANT_OPTIONS = {
    "end": GMP_END,
    "every": 100.0,
    "rho": 1e-3,
    "rho_final": 0.1,
    "gscale": 0.0,
    "sscale": 0.0,
}
LEARNING_RATE = 1e-3
# --distill T: the weight of the cross-entropy on the labels; the rest goes to the teacher's
# softened outputs (Hinton et al. 2015)
DISTILL_HARD_WEIGHT = 0.5
# --allocation: "lamp" (tf_admm.allocate_sparsity) or a hand-set shape, the share of each layer
# kept, scaled by one factor to the rate. sparsevd: Sparse VD's LeNet-5 at 280x (Molchanov et
# al. 2017, table 1: 33% / 2% / 0.2% / 5% of conv1 / conv2 / fc1 / fc2 kept)
PLOTTED_VARIANT = "gscale=1"  # admm_gradual with rho per layer: the recipe the README shows
SHAPES = {"sparsevd": {"lenet5": {"conv1": 0.33, "conv2": 0.02, "fc1": 0.002, "fc2": 0.05}}}


# -- shared by parent and child ----------------------------------------------------------------
def is_default(row: dict) -> bool:
    """Whether a run is the library's default recipe: ``DEFAULT_METHOD`` with no ``--variant``
    (rho per layer needs ``UpdateADMM(gradient_data=...)``, so ``gscale=1`` is not the
    default)."""
    return row["method"] == DEFAULT_METHOD and not variant_of(row)


def learning_rate_of(row: dict) -> str:
    """The learning-rate recipe of a run (rows written before the option existed: constant)."""
    return row.get("recipe", {}).get("learning_rate", "constant")


def variant_of(row: dict) -> str:
    """The method options of a run (``--variant``, e.g. ``"rho_final=0.01,every=50"``; "")."""
    return row.get("recipe", {}).get("variant", "")


def parse_variant(text: str) -> dict[str, float]:
    """``"rho_final=0.01,every=50"`` -> ``{"rho_final": 0.01, "every": 50.0}`` (checked)."""
    options = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in VARIANT_OPTIONS:
            raise SystemExit(f"unknown variant option {name!r}; allowed: {sorted(VARIANT_OPTIONS)}")
        try:
            options[name] = float(value)
        except ValueError:
            raise SystemExit(f"variant option {name} needs a number. Received: {part!r}") from None
    merged = dict(VARIANT_OPTIONS, **options)
    if not 0 < merged["end"] <= 1 or (merged["gscale"] and merged["sscale"]):
        raise SystemExit(
            f"variant needs 0 < end <= 1, and gscale or sscale, not both. Received: {text!r}"
        )
    return options


def allocation_of(row: dict) -> str:
    """How the per-layer targets were chosen (rows written before the option existed: lamp)."""
    return row.get("recipe", {}).get("allocation", "lamp")


def shape_targets(shape: dict[str, float], sizes: dict[str, int], rate: float) -> dict:
    """Per-layer sparsity keeping ``c * shape[layer]`` of each layer, c chosen so that the
    whole network is ``rate`` times smaller (a layer kept whole stays whole)."""
    total = sum(sizes.values())
    c = total / (rate * sum(sizes[n] * k for n, k in shape.items()))
    return {n: 1.0 - min(1.0, c * k) for n, k in shape.items()}


def extras_of(row: dict) -> str:
    """What every method of a pairing gets on top of the protocol in its compression epochs:
    augmentation (``--shift``) and distillation from the dense model (``--distill``);
    e.g. ``"shift=1"``, ``"distill=4"``, "" for none."""
    recipe = row.get("recipe", {})
    parts = [f"{name}={recipe[name]:g}" for name in ("shift", "distill") if recipe.get(name)]
    return ",".join(parts)


def _key(row: dict) -> tuple:
    """(network, method, rate, epochs, learning_rate, variant, allocation, extras, seed): one run;
    without the seed, one point of a curve."""
    return (
        row["network"],
        row["method"],
        float(row["rate"]),
        int(row["epochs"]),
        learning_rate_of(row),
        variant_of(row),
        allocation_of(row),
        extras_of(row),
        int(row["seed"]),
    )


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return json.load(handle)


def write_rows(path: str, rows: list[dict]) -> None:
    """Atomic: a temp file, fsynced, then renamed over ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(rows, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# -- child: one run ----------------------------------------------------------------------------
def _data(spec: dict, quick: bool):
    import common

    (x_train, y_train), (x_test, y_test) = common.load_mnist(spec.get("data"))
    (x_train, y_train), _ = common.hold_out(x_train, y_train)
    if quick:
        x_train, y_train, x_test, y_test = (
            x_train[:4000],
            y_train[:4000],
            x_test[:2000],
            y_test[:2000],
        )
    return (x_train, y_train), (x_test, y_test)


def _train_batches(common, x_train, y_train, spec: dict):
    """The compression epochs' batches: shuffled by the seed, shifted by up to ``shift``
    pixels when the run asks for it (the same for every method). With ``distill``, each label
    comes with the dense model's logits for its image: ``y`` is ``[label, 10 logits]``."""
    if spec.get("distill"):
        from tf_admm import keras

        teacher = _dense(keras, spec).predict(x_train, batch_size=1000, verbose=0)
        y_train = np.concatenate([y_train[:, None].astype("float32"), teacher], axis=1)
    return common.dataset(
        x_train,
        y_train,
        spec["batch_size"],
        shuffle=True,
        seed=spec["seed"],
        shift=int(spec.get("shift", 0)),
    )


def _hold_then_cosine(keras, rate: float, hold: int, decay: int):
    """``rate`` for ``hold`` steps, then cosine decay to 0 over ``decay`` steps."""
    import tensorflow as tf

    class HoldThenCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            t = tf.clip_by_value((tf.cast(step, "float32") - hold) / max(decay, 1), 0.0, 1.0)
            return rate * 0.5 * (1.0 + tf.cos(math.pi * t))

        def get_config(self):
            return {"rate": rate, "hold": hold, "decay": decay}

    return HoldThenCosine()


def _optimizer(
    keras, name: str, steps: int, learning_rate: str, masked: bool = False, hold: int = 0
):
    """Adam 1e-3 (SGD 0.01 with momentum 0.9 for ``"sgd"``) over ``steps`` steps.

    ``learning_rate``: ``"constant"``; ``"cosine"`` decays over every phase; ``"finetune"`` keeps
    the rate constant while the method prunes and decays it over the masked phase only
    (``masked=True``, or after ``hold`` steps of a single-phase method such as GMP).
    """
    rate = 0.01 if name == "sgd" else LEARNING_RATE
    if steps and (learning_rate == "cosine" or (learning_rate == "finetune" and masked)):
        rate = keras.optimizers.schedules.CosineDecay(rate, steps)
    elif steps and learning_rate == "finetune" and hold:
        rate = _hold_then_cosine(keras, rate, hold, steps - hold)
    if name == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9)
    return keras.optimizers.Adam(rate)


def _compile(keras, model, optimizer, loss=None):
    """Cross-entropy on the labels with accuracy, or ``loss`` (then no metric: its ``y`` may
    not be a label)."""
    if loss is not None:
        model.compile(optimizer=optimizer, loss=loss)
        return
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model, x, y) -> float:
    """Test accuracy from the logits, whatever loss the model was compiled with."""
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _training_loss(keras, spec: dict):
    """The loss of the compression epochs: cross-entropy on the labels, or with ``distill``
    T > 0 Hinton et al.'s distillation from the dense model: ``DISTILL_HARD_WEIGHT`` times the
    cross-entropy on the labels plus the rest times T² times the cross-entropy between the
    teacher's and the student's softmax at temperature T (``y`` as :func:`_train_batches`)."""
    temperature = float(spec.get("distill", 0))
    if not temperature:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    import tensorflow as tf

    def distillation(y_true, y_pred):
        labels = tf.cast(y_true[:, 0], "int32")
        soft = tf.nn.softmax(y_true[:, 1:] / temperature)
        hard_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, y_pred)
        soft_loss = tf.nn.softmax_cross_entropy_with_logits(soft, y_pred / temperature)
        return (
            DISTILL_HARD_WEIGHT * hard_loss
            + (1 - DISTILL_HARD_WEIGHT) * (temperature**2) * soft_loss
        )

    # strip_admm clones the model, and Keras 3's clone compiles the copy from the compile
    # config, which must find the loss by name
    return keras.saving.register_keras_serializable("compare_methods")(distillation)


def _finish(keras, final, spec, data, cpu0) -> dict:
    import common

    _, (x_test, y_test) = data
    _compile(keras, final, "adam")
    accuracy = float(final.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
    counts = common.weight_counts(final, spec["layers"])
    return {
        "test_accuracy": accuracy,
        "per_layer_sparsity": {n: round(1 - nz / w, 6) for n, (w, nz) in counts.items()},
        "rate_reached": round(
            sum(c[0] for c in counts.values()) / sum(c[1] for c in counts.values()), 2
        ),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
    }


def _dense(keras, spec):
    import common

    model = getattr(common, NETWORKS[spec["network"]][0])()
    with np.load(spec["dense_path"]) as weights:
        model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    return model


def run_gmp(spec: dict, quick: bool) -> dict:
    import common
    import tensorflow_model_optimization as tfmot  # switches tf.keras to tf_keras

    from tf_admm import keras  # tf_keras here: TF_USE_LEGACY_KERAS=1 in the child

    cpu0 = time.process_time()
    data = _data(spec, quick)
    (x_train, y_train), _ = data
    train = _train_batches(common, x_train, y_train, spec)
    steps = int(train.cardinality()) * spec["epochs"]
    targets = spec["targets"]

    end = int(GMP_END * steps)
    frequency = min(100, max(1, end // 10))  # 100 in full runs
    pruned = common.tfmot_gmp(_dense(keras, spec), targets, end, frequency)
    hold = int(GMP_END * steps)  # fine-tuning at the targets starts here
    _compile(
        keras,
        pruned,
        _optimizer(keras, "adam", steps, spec["learning_rate"], hold=hold),
        _training_loss(keras, spec),
    )
    pruned.fit(
        train,
        epochs=spec["epochs"],
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    return _finish(keras, final, spec, data, cpu0)


def _admm_fit(keras, wrapped, train, epochs, optimizer, callback, loss):
    if epochs:
        _compile(keras, wrapped, optimizer, loss)
        wrapped.fit(train, epochs=epochs, verbose=0, callbacks=[callback])


def admm_schedule(tf_admm, options: dict):
    """The library schedule of ``admm_gradual`` with ``options`` (:data:`VARIANT_OPTIONS`):
    ``schedules.Gradual()`` over the ADMM phase's fit, Z/U every ``every`` steps (100:
    the library's "auto", a tenth of the ramp, at most 100), rho to ``rho_final`` (0.1: the
    library's default), rho per layer by size with ``sscale=0.5`` (the library's power). With
    the default options it is ``schedules.Gradual()`` itself."""
    every, rho_final = options["every"], options["rho_final"]
    return tf_admm.schedules.Gradual(
        update_every="auto" if every == VARIANT_OPTIONS["every"] else int(every),
        rho_final=None if rho_final == VARIANT_OPTIONS["rho_final"] else rho_final,
        rho_scaling="size" if options["sscale"] == 0.5 else "auto",
    )


def admm_gradual(
    tf_admm,
    dense,
    targets,
    train,
    options: dict,
    *,
    admm_optimizer,
    retrain_optimizer,
    epochs: tuple[int, int],
    loss,
    test=None,
):
    """The ``admm_gradual`` method through the public API, as README and the guide write it:
    ``prune_low_magnitude`` with :func:`admm_schedule`, ``fit`` with ``UpdateADMM`` (given
    ``gradient_data=train`` with ``gscale=1``: rho per layer by gradient), ``hard_project``,
    masked retraining with ``UpdateADMM()``, ``strip_admm``. Other ``gscale`` / ``sscale``
    powers call ``scale_rho_by_gradient`` / ``scale_rho_by_size`` before the fit (the callback
    keeps a scale set before it). Returns (stripped model, test accuracy before and right after
    the hard projection; None without ``test``)."""
    from tf_admm import keras

    wrapped = tf_admm.prune_low_magnitude(
        dense, targets, rho=options["rho"], schedule=admm_schedule(tf_admm, options)
    )
    gradient_data = train if options["gscale"] == 1 else None
    if options["gscale"] not in (0, 1):
        tf_admm.scale_rho_by_gradient(wrapped, train, loss, power=options["gscale"])
    if options["sscale"] not in (0, 0.5):
        tf_admm.scale_rho_by_size(wrapped, power=options["sscale"])
    _admm_fit(
        keras,
        wrapped,
        train,
        epochs[0],
        admm_optimizer,
        tf_admm.UpdateADMM(gradient_data=gradient_data),
        loss,
    )
    before = _accuracy(wrapped, *test) if test else None
    tf_admm.hard_project(wrapped)
    projected = _accuracy(wrapped, *test) if test else None
    _admm_fit(keras, wrapped, train, epochs[1], retrain_optimizer, tf_admm.UpdateADMM(), loss)
    return tf_admm.strip_admm(wrapped), before, projected


def _seeded_start(keras, spec: dict, quick: bool):
    """(CPU clock at the start, data, training batches) of a Keras 3 run, seeded by the run."""
    import common

    cpu0 = time.process_time()
    data = _data(spec, quick)
    (x_train, y_train), _ = data
    keras.utils.set_random_seed(spec["seed"])
    return cpu0, data, _train_batches(common, x_train, y_train, spec)


def run_admm(spec: dict, quick: bool) -> dict:
    import tf_admm
    from tf_admm import keras

    cpu0, data, train = _seeded_start(keras, spec, quick)
    per_epoch = int(train.cardinality())
    epochs, method, targets = spec["epochs"], spec["method"], spec["targets"]
    learning_rate = spec["learning_rate"]
    dense = _dense(keras, spec)
    loss = _training_loss(keras, spec)

    if method in ("progressive", "progressive_gradual"):
        gradual = method == "progressive_gradual"
        stages = tf_admm.geometric_stages(
            targets,
            3,
            admm_epochs=0,
            retrain_epochs=0,
            update_every=spec["update_every"],
            unit="step",
        )
        share = [epochs // 3 + (1 if i < epochs % 3 else 0) for i in range(3)]
        current = dense
        for stage, stage_epochs in zip(stages, share):
            admm_epochs = (
                math.ceil(stage_epochs * GMP_END) if gradual else round(stage_epochs * 3 / 8)
            )
            current = _one_shot(
                keras,
                tf_admm,
                current,
                stage.sparsity,
                train,
                admm_epochs,
                stage_epochs - admm_epochs,
                "adam",
                learning_rate,
                per_epoch,
                spec["update_every"],
                loss,
                ramp_steps=int(GMP_END * stage_epochs * per_epoch) if gradual else 0,
            )
        return _finish(keras, current, spec, data, cpu0)
    if method == "post_training":
        (x_train, _), _ = data
        picked = np.random.default_rng(spec["seed"]).choice(
            len(x_train), CALIBRATION_SAMPLES, replace=False
        )
        start = tf_admm.compress_post_training(
            dense, x_train[picked], sparsity=targets, verbose=False
        )
        wrapped = tf_admm.prune_low_magnitude(start, targets)
        tf_admm.hard_project(wrapped)  # the support is the post-training model's nonzeros
        _admm_fit(
            keras,
            wrapped,
            train,
            epochs,
            _optimizer(keras, "adam", epochs * per_epoch, learning_rate, masked=True),
            tf_admm.UpdateADMM(),
            loss,
        )
        return _finish(keras, tf_admm.strip_admm(wrapped), spec, data, cpu0)
    if method == "admm_gradual":
        options = dict(VARIANT_OPTIONS, **parse_variant(spec.get("variant", "")))
        admm_epochs = math.ceil(options["end"] * epochs)
        final, before, projected = admm_gradual(
            tf_admm,
            dense,
            targets,
            train,
            options,
            admm_optimizer=_optimizer(keras, "adam", admm_epochs * per_epoch, learning_rate),
            retrain_optimizer=_optimizer(
                keras, "adam", (epochs - admm_epochs) * per_epoch, learning_rate, masked=True
            ),
            epochs=(admm_epochs, epochs - admm_epochs),
            loss=loss,
            test=data[1],
        )
        result = _finish(keras, final, spec, data, cpu0)
        return dict(result, projected_accuracy=projected, admm_accuracy=before)
    admm_epochs = round(epochs * 3 / 8)
    optimizer = "sgd" if method == "admm_sgd" else "adam"
    final = _one_shot(
        keras,
        tf_admm,
        dense,
        targets,
        train,
        admm_epochs,
        epochs - admm_epochs,
        optimizer,
        learning_rate,
        per_epoch,
        spec["update_every"],
        loss,
    )
    return _finish(keras, final, spec, data, cpu0)


def _one_shot(
    keras,
    tf_admm,
    model,
    targets,
    train,
    admm_epochs,
    retrain_epochs,
    optimizer,
    learning_rate,
    per_epoch,
    update_every,
    loss,
    ramp_steps=0,
):
    """ADMM at ``targets`` (weights already zero stay zero), hard projection, retraining.
    With ``ramp_steps``: gradual ADMM through the library's options (ramp from the zeros
    already there, Z/U every 100 steps or a tenth of the ramp, rho to 0.1 at its end)."""
    from tf_admm.report import layer_sparsity

    have = layer_sparsity(model)
    if ramp_steps:
        admm_schedule = tf_admm.schedules.Gradual(ramp_steps=ramp_steps, rho_final=0.1)
    else:
        admm_schedule = tf_admm.schedules.OneShot(update_every, "step")
    wrapped = tf_admm.prune_low_magnitude(
        model,
        {n: max(s, have.get(n, 0.0)) for n, s in targets.items()},
        rho=1e-3,
        schedule=admm_schedule,
    )
    tf_admm.keep_zeros(wrapped)  # weights an earlier stage pruned stay zero
    callback = tf_admm.UpdateADMM()
    _admm_fit(
        keras,
        wrapped,
        train,
        admm_epochs,
        _optimizer(keras, optimizer, admm_epochs * per_epoch, learning_rate),
        callback,
        loss,
    )
    tf_admm.hard_project(wrapped)
    _admm_fit(
        keras,
        wrapped,
        train,
        retrain_epochs,
        _optimizer(keras, "adam", retrain_epochs * per_epoch, learning_rate, masked=True),
        tf_admm.UpdateADMM(),
        loss,
    )
    return tf_admm.strip_admm(wrapped)


def run_dense(spec: dict, quick: bool) -> dict:
    from tf_admm import keras

    cpu0, data, train = _seeded_start(keras, spec, quick)
    model = _dense(keras, spec)
    steps = int(train.cardinality()) * spec["epochs"]
    _compile(
        keras,
        model,
        _optimizer(keras, "adam", steps, spec["learning_rate"]),
        _training_loss(keras, spec),
    )
    model.fit(train, epochs=spec["epochs"], verbose=0)
    return _finish(keras, model, spec, data, cpu0)


def child(spec: dict, quick: bool) -> None:
    run = {"gmp": run_gmp, "dense": run_dense}.get(spec["method"], run_admm)
    result = run(spec, quick)
    print("RESULT " + json.dumps(result), flush=True)


# -- parent: dense models, targets, the grid ---------------------------------------------------
def dense_model(network: str, seed: int, args) -> tuple[str, float, dict]:
    """(weights path, dense test accuracy, {rate: targets}) for (network, seed), cached."""
    import common

    import tf_admm
    from tf_admm import keras

    stem = os.path.join(args.cache, f"{network}_seed{seed}{'_quick' if args.quick else ''}")
    path, meta_path = stem + ".npz", stem + ".json"
    if os.path.exists(meta_path):
        with open(meta_path) as handle:
            meta = json.load(handle)
    else:
        keras.utils.set_random_seed(seed)
        data = _data({"data": args.data}, args.quick)
        (x_train, y_train), (x_test, y_test) = data
        model = getattr(common, NETWORKS[network][0])()
        train = common.dataset(x_train, y_train, args.batch_size, shuffle=True, seed=seed)
        epochs = 1 if args.quick else DENSE_EPOCHS
        _compile(
            keras, model, _optimizer(keras, "adam", epochs * int(train.cardinality()), "cosine")
        )
        cpu0 = time.process_time()
        model.fit(train, epochs=epochs, verbose=0)
        accuracy = float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
        os.makedirs(args.cache, exist_ok=True)
        np.savez(path + ".tmp.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        os.replace(path + ".tmp.npz", path)
        meta = {
            "dense_accuracy": accuracy,
            "cpu_seconds": time.process_time() - cpu0,
            "targets": {},
        }
        write_rows(meta_path, meta)
        print(f"{network} seed {seed}: dense {accuracy:.4f}", flush=True)
    missing = [r for r in args.rates_for(network) if str(r) not in meta["targets"]]
    if missing:
        model = getattr(common, NETWORKS[network][0])()
        with np.load(path) as weights:
            model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
        for rate in missing:
            meta["targets"][str(rate)] = tf_admm.allocate_sparsity(
                model, rate, min_density=0.0, min_keep=0
            )
        write_rows(meta_path, meta)
    return path, meta["dense_accuracy"], meta["targets"]


def layer_sizes(network: str) -> dict[str, int]:
    """Weights per compressible layer (kernels) of ``network``."""
    import common

    model = getattr(common, NETWORKS[network][0])()
    return {n: int(np.prod(model.get_layer(n).kernel.shape)) for n in NETWORKS[network][1]}


def run_one(spec: dict, quick: bool) -> dict:
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    if spec["method"] == "gmp":
        env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    cmd += ["--quick"] if quick else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(
            f"run {spec['method']} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std (over seeds, ddof=1) of test accuracy per (network, method, rate, epochs)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row)[:8], []).append(row)
    table = []
    for key, group in sorted(groups.items()):
        network, method, rate, epochs, learning_rate, variant, allocation, extras = key
        acc = np.array([r["test_accuracy"] for r in group])
        dense = np.array([r["dense_accuracy"] for r in group])
        table.append(
            {
                "network": network,
                "method": method,
                "rate": rate,
                "epochs": epochs,
                "learning_rate": learning_rate,
                "variant": variant,
                "allocation": allocation,
                "extras": extras,
                "seeds": sorted(r["seed"] for r in group),
                "mean": float(acc.mean()),
                "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "dense_mean": float(dense.mean()),
                "cpu_seconds": float(sum(r["cpu_seconds"] for r in group)),
            }
        )
    return table


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the methods as run by default (constant learning rate, LAMP targets, each network's
    # epochs, no --variant) and the recommended recipe (PLOTTED_VARIANT); other variants are
    # single points of the table, which would only crowd the curves
    table = [
        t
        for t in summarize(rows)
        if t["learning_rate"] == "constant"
        and t["variant"] in ("", PLOTTED_VARIANT)
        and t["allocation"] == "lamp"
        and not t["extras"]
        and t["method"] != "dense"  # the dashed line; trained-on dense models are in the table
    ]
    # one budget per network: its default epochs where measured (else the smallest, e.g. quick)
    budgets: dict[str, set] = {}
    for t in table:
        budgets.setdefault(t["network"], set()).add(t["epochs"])
    chosen = {
        n: NETWORKS[n][3] if n in NETWORKS and NETWORKS[n][3] in e else min(e)
        for n, e in budgets.items()
    }
    table = [t for t in table if t["epochs"] == chosen[t["network"]]]
    networks = sorted({t["network"] for t in table})
    if not networks:
        return
    fig, axes = plt.subplots(1, len(networks), figsize=(5.5 * len(networks), 4), squeeze=False)
    for ax, network in zip(axes[0], networks):
        part = [t for t in table if t["network"] == network]
        curves = sorted({(t["method"], t["variant"]) for t in part})
        for i, (method, variant) in enumerate(curves):
            points = sorted(
                (t for t in part if (t["method"], t["variant"]) == (method, variant)),
                key=lambda t: t["rate"],
            )
            shift = 1 + 0.02 * (i - (len(curves) - 1) / 2)  # side by side, not on top
            color = f"C{METHODS.index(method)}" if method in METHODS else None
            color = "black" if variant else color  # the recommended recipe stands out
            name = f"{method} ({variant})" if variant else method
            ax.errorbar(
                [t["rate"] * shift for t in points],
                [100 * t["mean"] for t in points],
                yerr=[100 * t["std"] for t in points],
                marker="o",
                capsize=3,
                color=color,
                label=f"{name} (n={min(len(t['seeds']) for t in points)})",
            )
        dense = np.mean([t["dense_mean"] for t in part])
        ax.axhline(100 * dense, color="gray", ls="--", label="dense (mean)")
        ax.set_xscale("log")
        rates = sorted({t["rate"] for t in part})
        ax.set_xticks(rates, [f"{r:g}x" for r in rates])
        ax.minorticks_off()
        ax.set_xlim(min(rates) / 1.3, max(rates) * 1.3)
        ax.set_xlabel("pruning rate (weights / nonzeros)")
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.set_title(f"{network}, {part[0]['epochs']} epochs after dense")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def paired_vs_gmp(rows: list[dict]) -> dict[tuple, tuple[float, float, int]]:
    """(mean, std, n) over seeds of (method - GMP) test accuracy, in points, pairing runs of
    the same network, rate, epochs and seed (same dense model, targets and batches)."""

    def pair(r):  # GMP's run of the same network, rate, epochs, learning rate, allocation, ...
        # and seed
        k = _key(r)
        return k[:1] + k[2:5] + k[6:]

    gmp = {pair(r): r["test_accuracy"] for r in rows if r["method"] == "gmp"}
    diffs: dict[tuple, list[float]] = {}
    for r in rows:
        ref = gmp.get(pair(r))
        if r["method"] != "gmp" and ref is not None:
            diffs.setdefault(_key(r)[:8], []).append(100 * (r["test_accuracy"] - ref))
    return {
        k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
        for k, v in diffs.items()
    }


def print_table(rows: list[dict]) -> None:
    """Markdown: mean ± std per method and rate, and the paired difference from GMP."""
    paired = paired_vs_gmp(rows)
    print(
        "| network | rate | method | epochs | learning rate | seeds | test accuracy (mean ± std) "
        "| minus GMP, paired by seed (mean ± std) | dense |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t in summarize(rows):
        d = paired.get(
            (
                t["network"],
                t["method"],
                t["rate"],
                t["epochs"],
                t["learning_rate"],
                t["variant"],
                t["allocation"],
                t["extras"],
            )
        )
        diff = "" if d is None else f"{d[0]:+.2f} ± {d[1]:.2f} (n={d[2]})"
        options = ", ".join(
            o
            for o in (
                t["variant"],
                "" if t["allocation"] == "lamp" else t["allocation"],
                t["extras"],
            )
            if o
        )
        print(
            f"| {t['network']} | {t['rate']:g}x | {t['method']}"
            f"{' (' + options + ')' if options else ''} | {t['epochs']} | "
            f"{t['learning_rate']} | "
            f"{len(t['seeds'])} | {100 * t['mean']:.2f} ± {100 * t['std']:.2f} | {diff} | "
            f"{100 * t['dense_mean']:.2f} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default="lenet300,lenet5")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rates", default=None, help="comma list; default per network")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default per network")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--update-every", type=int, default=300, help="steps between Z/U")
    parser.add_argument(
        "--learning-rate", choices=("constant", "cosine", "finetune"), default="constant"
    )
    parser.add_argument(
        "--variant",
        default="",
        help="admm_gradual options, e.g. 'rho_final=0.01,every=50,end=0.5' "
        f"(defaults {VARIANT_OPTIONS})",
    )
    parser.add_argument(
        "--allocation",
        default="lamp",
        choices=("lamp", *SHAPES),
        help="per-layer targets: LAMP, or a hand-set shape scaled to each rate",
    )
    parser.add_argument(
        "--shift",
        type=int,
        default=0,
        help="augment the compression epochs of every method: images moved by up to this "
        "many pixels (the dense models are trained without)",
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="distil every method's compression epochs from the seed's dense model at this "
        "temperature (0: labels only; not with --shift, whose images the teacher never saw)",
    )
    parser.add_argument("--data", default=None, help="mnist.npz (Keras layout)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "method_comparison.json"))
    parser.add_argument("--png", default=None, help="default: --out with .png")
    parser.add_argument("--cache", default=os.path.join(ROOT, "runs", "compare_cache"))
    parser.add_argument("--quick", action="store_true", help="tiny data and epochs (smoke test)")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child), args.quick)
        return
    networks = args.networks.split(",")
    methods = args.methods.split(",")
    for name, allowed, given in (("networks", NETWORKS, networks), ("methods", METHODS, methods)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise SystemExit(f"unknown {name} {unknown}; allowed: {sorted(allowed)}")
    parse_variant(args.variant)  # a typo stops here, before any training
    if args.distill < 0 or (args.distill and args.shift):
        raise SystemExit(
            "--distill needs a temperature >= 0 and no --shift (the teacher's logits are "
            f"computed once, on unmoved images). Received: --distill {args.distill:g} "
            f"--shift {args.shift}"
        )
    seeds = [int(s) for s in args.seeds.split(",")]
    rates = None if args.rates is None else [float(r) for r in args.rates.split(",")]
    args.rates_for = lambda n: rates or NETWORKS[n][2]
    png = args.png or os.path.splitext(args.out)[0] + ".png"
    if not args.plot_only:
        for network in networks:
            epochs = 2 if args.quick else (args.epochs or NETWORKS[network][3])
            for seed in seeds:
                path, dense_acc, all_targets = dense_model(network, seed, args)
                if args.allocation != "lamp":
                    if network not in SHAPES[args.allocation]:
                        raise SystemExit(f"no {args.allocation} shape for {network}")
                    sizes = layer_sizes(network)
                    shape = SHAPES[args.allocation][network]
                    all_targets = {
                        str(r): shape_targets(shape, sizes, r) for r in args.rates_for(network)
                    }
                for rate in args.rates_for(network):
                    for method in methods:
                        variant = args.variant if method == "admm_gradual" else ""
                        base = {
                            "network": network,
                            "method": method,
                            "rate": rate,
                            "epochs": epochs,
                            "seed": seed,
                            "recipe": {
                                "learning_rate": args.learning_rate,
                                "variant": variant,
                                "allocation": args.allocation,
                                "shift": args.shift,
                                "distill": args.distill,
                            },
                        }
                        done = {_key(r) for r in read_rows(args.out)}
                        if _key(base) in done:
                            continue
                        spec = dict(
                            base,
                            targets=all_targets[str(rate)],
                            layers=list(NETWORKS[network][1]),
                            dense_path=path,
                            data=args.data,
                            batch_size=args.batch_size,
                            update_every=args.update_every,
                            learning_rate=args.learning_rate,
                            variant=variant,
                            shift=args.shift,
                            distill=args.distill,
                        )
                        result = run_one(spec, args.quick)
                        row = dict(
                            base,
                            default=is_default(base),
                            dense_accuracy=dense_acc,
                            **result,
                        )
                        row["recipe"] = {
                            k: spec[k]
                            for k in ("batch_size", "update_every", "learning_rate", "variant")
                        }
                        if args.allocation != "lamp":
                            row["recipe"]["allocation"] = args.allocation
                        if args.shift:
                            row["recipe"]["shift"] = args.shift
                        if args.distill:
                            row["recipe"]["distill"] = args.distill
                        if args.quick:
                            row["quick"] = True
                        write_rows(args.out, read_rows(args.out) + [row])
                        print(
                            f"{network} seed {seed} {rate:g}x {method}: "
                            f"{row['test_accuracy']:.4f} (dense {dense_acc:.4f}, "
                            f"{row['cpu_seconds']:.0f} CPU-s)",
                            flush=True,
                        )
    rows = read_rows(args.out)
    print_table(rows)
    plot(rows, png)


if __name__ == "__main__":
    main()
