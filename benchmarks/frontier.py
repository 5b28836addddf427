"""Bytes against accuracy on a Fashion-MNIST conv net: tf_admm against TFMOT, each as its guides
teach it, from the same converged dense model, over seeds.

For each seed, the dense ``--network`` of ``structured_accuracy.py`` (the same cache: trained
``--dense-epochs`` on the first ``--train-size`` images, cosine decay) is the start of every
method, and every figure is read from the ``.tflite`` file a user would ship: LiteRT accuracy on
the 10,000 test images (``tf_admm.check_tflite``), its bytes, its bytes zipped (deflate, as
TFMOT's guides measure) and its bytes without the converter's names
(``tf_admm.export.strip_names``, the same function on both sides' files).

- ``anchor``: the dense model as a float file and a full-int8 file (post-training, 200
  calibration images).
- ``tfmot`` (tf_keras, in a child process with ``TF_USE_LEGACY_KERAS=1``, on the same
  architecture and weights): ``tfmot.sparsity.keras.prune_low_magnitude`` on the whole model
  with ``PolynomialDecay(0 -> s)`` over the ``--ramp-epochs`` (every 100 steps, or a tenth
  of the ramp when shorter; its end moved to the last update so that s is reached), the
  ``--retrain-epochs`` of fine-tuning, ``strip_pruning``, full-int8 post-training quantization
  (``tfmot_gmp_int8``); then ``--quant-epochs`` of pruning-preserving quantization-aware
  training (``quantize_apply(..., Default8BitPrunePreserveQuantizeScheme())``) and its int8 file
  (``tfmot_pqat_int8``).
- ``tfmot_cluster`` (the same child, from the GMP model of the ``tfmot`` unit, kept in
  ``--cache``): for each of ``--clusters``, TFMOT's sparsity-preserving weight clustering
  (``cluster_weights(..., KMEANS_PLUS_PLUS, preserve_sparsity=True)``, ``--quant-epochs`` at
  1e-4, ``strip_clustering``) and its int8 file (``tfmot_cluster{n}_int8``), then
  prune- and cluster-preserving QAT (``Default8BitClusterPreserveQuantizeScheme(
  preserve_sparsity=True)``, PCQAT) and its int8 file (``tfmot_pcqat{n}_int8``). Its points are
  averaged over the seeds that have every anchor, tfmot and tf_admm point and this one.
- ``tfmot_alloc``: TFMOT's GMP as in ``tfmot`` but to tf_admm's per-layer targets
  (``allocate_sparsity``, the targets of the ``tf_admm`` side) instead of one sparsity for every
  layer, + int8 (``tfmot_gmp_alloc_int8``): separates what the allocation gives from what ADMM
  gives. Averaged like ``tfmot_cluster``.
- ``tf_admm_ramp``: the ``tf_admm`` side's pruning with ``schedules.Gradual(masking="ramp")``
  (weights outside Z's support masked at every Z/U update, as GMP masks along its ramp), int8
  only (``admm_ramp_int8``). Averaged like ``tfmot_cluster``.
- ``tf_admm_bits``: for each of ``--bits``, the ``tf_admm_ramp`` unit's pruned model (kept in
  ``--cache`` by that unit) quantized as the ``tf_admm`` side quantizes its own
  (``admm_ramp_{k}bit``, ``admm_ramp_{k}bit_sparse``): more bit widths without pruning again,
  one unit per width. Averaged like ``tfmot_cluster``.
- ``tf_admm_shrink``: the ``tf_admm_ramp`` unit's pruned model (int8, ``admm_ramp_int8_shrunk``)
  and each ``tf_admm_bits`` model of ``--bits`` (``admm_ramp_{k}bit_shrunk``), from
  ``--cache``, through ``tf_admm.shrink`` before export: the channels pruning left whole zero
  removed, their constants folded into the next layers (same outputs), one unit per model.
  What a user of the library ships; removing them also takes away near-constant channels whose
  rounding in an int8 file a following BatchNormalization of tiny variance amplifies.
- ``gmp_shrink``: TFMOT's GMP model of the ``tfmot`` unit (from ``--cache``) through
  ``tf_admm.shrink`` and int8 (``tfmot_gmp_int8_shrunk``): what ``shrink`` gives a TFMOT
  model, apart from what ADMM gives. Not a TFMOT point (TFMOT has no channel removal): the
  table does not compare tf_admm against it.
- ``tf_admm_target``: the ``tf_admm_ramp`` side with ``Gradual(masking="ramp",
  pull="target")``: Z is projected onto the final per-layer targets from the first update,
  so every weight outside them is pulled towards zero before the ramp's mask takes it
  (``admm_target_int8``). Averaged like ``tfmot_cluster``.
- ``tf_admm_uniform``: the ``tf_admm_ramp`` side given TFMOT's per-layer targets instead of
  ``allocate_sparsity``'s: the same sparsity on every layer TFMOT prunes, the depthwise
  layers left dense (``admm_uniform_int8``): the mirror of ``tfmot_alloc``. Averaged like
  ``tfmot_cluster``.
- ``tf_admm_channels``: structured pruning instead of sparse weights, for each of
  ``--flops-rates``: ``prune_channels(dense, allocate_channels(dense, rate))`` with its default
  schedule, ``UpdateADMM()``, ``hard_project``, retraining, ``tf_admm.shrink``: a smaller dense
  model with ``rate`` times fewer MACs, whose int8 file is smaller in raw bytes too and runs
  faster (``admm_channels_int8``; its ``sparsity`` is the fraction of the dense model's weights
  removed). Averaged like ``tfmot_cluster``.
- ``tf_admm`` (Keras 3, the library's defaults): ``prune_low_magnitude(dense,
  allocate_sparsity(dense, 1 / (1 - s)))``, ``UpdateADMM(gradient_data=...)`` over the ramp
  epochs, ``hard_project``, the retraining epochs, ``strip_admm``, ``export_tflite(...,
  quantization="int8")`` without and with sparse tensors (``admm_int8``, ``admm_int8_sparse``);
  then for each of ``--bits``: ``compress(pruned, sparsity=..., bits=k)`` with ``--quant-epochs``
  split between ADMM and masked retraining, exported the same way (``admm_{k}bit``,
  ``admm_{k}bit_sparse``).

Both sides: Adam, batch 128, the same batches, 1e-3 over the ramp, a cosine decay from 1e-3 over
the retraining; 1e-4 for the quantization epochs. One JSON object per file is appended to
``--out`` (resumable: a (network, side, sparsity, seed) already there at the same training
images, dense epochs and epoch budget is skipped). ``--table`` answers each TFMOT file with
the best tf_admm file at no more bytes and no more epochs after the dense model (every row
records its ``epochs``; one method at two budgets is two points).

    python benchmarks/frontier.py --seeds 0 1 2 --out docs/frontier.json
    python benchmarks/frontier.py --plot docs/frontier.png --table --out docs/frontier.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import structured_accuracy as S  # noqa: E402  (benchmarks/ is the script's directory)
import tensorflow as tf  # noqa: E402
from common import mean_std  # noqa: E402
from fashion_mnist import load  # noqa: E402

import tf_admm  # noqa: E402
from tf_admm import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the order units run in, per sparsity; every seed's figures need the first three (the later
# ones were added after seeds had run)
SIDES = (
    "anchor",
    "tfmot",
    "tf_admm",
    "tfmot_cluster",
    "tfmot_alloc",
    "tf_admm_ramp",
    "tf_admm_bits",
    "tf_admm_shrink",
    "gmp_shrink",
    "tf_admm_target",
    "tf_admm_uniform",
    "tf_admm_channels",
)
# the sides with one unit per MAC rate of --flops-rates (the others: per sparsity)
BY_MAC_RATE = ("tf_admm_channels",)
# the sides with one unit per bit width (the others: one per sparsity and seed)
PER_WIDTH = ("tf_admm_bits", "tf_admm_shrink")
CORE_SIDES = SIDES[:3]
CALIBRATION = 200  # images for full-int8 calibration, both sides
GRADIENT_IMAGES = 2560  # the training images UpdateADMM's gradient_data scales rho on


def data(train_size: int):
    (x, y), test = load()
    return (x[:train_size], y[:train_size]), test


def tflite_row(model, path: str, test, **fields) -> dict:
    """The figures of one ``.tflite`` file: LiteRT accuracy on the test set, bytes, zipped,
    and bytes without the converter's names (``tf_admm.export.strip_names``, applied alike to
    both sides' files: Keras 3 writes longer names than tf_keras)."""
    with open(path, "rb") as handle:
        content = handle.read()
    check = tf_admm.check_tflite(model, path, *test)
    return {
        **fields,
        "keras_accuracy": check["keras_accuracy"],
        "litert_accuracy": check["tflite_accuracy"],
        "raw_bytes": len(content),
        "zipped_bytes": tf_admm.export.sizes.zipped_size(content),
        "stripped_bytes": len(tf_admm.export.strip_names(content)),
    }


def converter_int8(model, x, qat: bool = False) -> bytes:
    """Full-int8 post-training quantization as TFMOT's and TensorFlow's guides do it."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not qat:
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(CALIBRATION))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


# ----------------------------------------------------------------------------- TFMOT (child)


def save_weights(path: str, weights: list, **extra) -> None:
    """``weights`` (a model's get_weights()) as w0, w1, ... in an .npz, beside ``extra``."""
    np.savez(path, **extra, **{f"w{i}": w for i, w in enumerate(weights)})


def load_weights(path: str) -> tuple[list, dict]:
    """The weights :func:`save_weights` wrote, and its other entries."""
    with np.load(path) as saved:
        count = sum(name.startswith("w") for name in saved.files)
        extra = {name: saved[name] for name in saved.files if not name.startswith("w")}
        return [saved[f"w{i}"] for i in range(count)], extra


def tfmot_gmp(spec: dict, x, y):
    """TFMOT's gradual magnitude pruning of the dense weights to ``spec["sparsity"]``, stripped
    (tf_keras), and the CPU seconds it took. Its weights and CPU time are kept in
    ``spec["gmp_weights"]``; a later unit loads them instead of pruning again, so that its
    clustering starts from the model of the GMP rows (and counts the GMP's CPU time)."""
    import tensorflow_model_optimization as tfmot

    model = S.NETWORKS[spec["network"]][1]()
    cached = spec.get("gmp_weights")
    if cached and os.path.exists(cached):
        weights, extra = load_weights(cached)
        model.set_weights(weights)
        return model, float(extra["cpu_seconds"])
    start = time.process_time()
    model.set_weights(load_weights(spec["dense_weights"])[0])
    end = spec["ramp_epochs"] * int(np.ceil(len(x) / S.BATCH))
    frequency = min(100, max(1, end // 10))  # TFMOT's default 100, or ten updates over the ramp

    def schedule(sparsity: float):
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=sparsity,
            begin_step=0,
            end_step=end - end % frequency,  # the last update lands on the end step: s reached
            frequency=frequency,
        )

    targets = spec.get("targets")  # {position in model.layers: sparsity}, or None: uniform
    if targets is None:
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule(spec["sparsity"])
        )
    else:
        position = {layer.name: i for i, layer in enumerate(model.layers)}

        def wrap(layer):
            target = targets.get(str(position[layer.name]))
            if target is None:
                return layer
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=schedule(target)
            )

        pruned = keras.models.clone_model(model, clone_function=wrap)
    S.compile_model(pruned)
    step = tfmot.sparsity.keras.UpdatePruningStep()
    pruned.fit(
        S.dataset(x, y, spec["seed"]), epochs=spec["ramp_epochs"], verbose=0, callbacks=[step]
    )
    S.compile_model(pruned, S.retrain_rate(x, spec["retrain_epochs"]))
    pruned.fit(
        S.dataset(x, y, spec["seed"] + 1),
        epochs=spec["retrain_epochs"],
        verbose=0,
        callbacks=[step],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    cpu = time.process_time() - start
    if cached:
        save_weights(cached, stripped.get_weights(), cpu_seconds=cpu)
    return stripped, cpu


def quantize_aware(model, scheme, spec: dict, x, y):
    """``--quant-epochs`` of TFMOT's quantization-aware training under ``scheme``."""
    import tensorflow_model_optimization as tfmot

    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    S.compile_model(qat, 1e-4)
    qat.fit(S.dataset(x, y, spec["seed"] + 2), epochs=spec["quant_epochs"], verbose=0)
    return qat


def admm_targets(dense, sparsity: float) -> dict[str, float]:
    """tf_admm's per-layer targets for an overall ``sparsity``:
    ``tf_admm.allocate_sparsity(dense, 1 / (1 - sparsity))``."""
    return tf_admm.allocate_sparsity(dense, 1.0 / (1.0 - sparsity))


def tfmot_targets(dense, sparsity: float) -> dict[str, float]:
    """TFMOT's per-layer targets as ``prune_low_magnitude`` on the whole model sets them, for
    tf_admm: ``sparsity`` on every compressible layer (``tf_admm.registry.compressible_layers``,
    those ``admm_targets`` allocates) except the depthwise ones (TFMOT's prune registry has no
    prunable weight for DepthwiseConv2D)."""
    return {
        layer.name: sparsity
        for layer in tf_admm.registry.compressible_layers(dense)
        if not isinstance(layer, keras.layers.DepthwiseConv2D)
    }


def allocation_by_position(dense, sparsity: float) -> dict[str, float]:
    """:func:`admm_targets` keyed by each layer's position in ``dense.layers`` (the child
    builds the same network under tf_keras, whose automatic layer names need not be the
    cached model's)."""
    targets = admm_targets(dense, sparsity)
    position = {layer.name: i for i, layer in enumerate(dense.layers)}
    return {str(position[name]): target for name, target in targets.items()}


def tfmot_child(spec: dict) -> None:
    """Run one TFMOT unit for one (seed, sparsity) under tf_keras; print one JSON row per file.

    ``spec["side"]`` ``"tfmot"``: GMP + int8, then + PQAT. ``"tfmot_cluster"``: from the GMP
    model, for each ``spec["clusters"]``: sparsity-preserving weight clustering (k-means++
    centroids) with ``--quant-epochs`` of fine-tuning, ``strip_clustering``, int8
    (``tfmot_cluster{n}_int8``); then prune- and cluster-preserving QAT
    (``Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)``) and its int8 file
    (``tfmot_pcqat{n}_int8``)."""
    import tensorflow_model_optimization as tfmot

    (x, y), test = data(spec["train_size"])
    keras.utils.set_random_seed(spec["seed"])
    stripped, gmp_cpu = tfmot_gmp(spec, x, y)
    folder = spec["folder"]
    epochs = spec["ramp_epochs"] + spec["retrain_epochs"]
    rows = []

    def add(model, name: str, qat: bool, spent: int, cpu: float, **fields) -> None:
        path = os.path.join(folder, f"{name}.tflite")
        with open(path, "wb") as handle:
            handle.write(converter_int8(model, x, qat=qat))
        rows.append(tflite_row(model, path, test, method=name, epochs=spent, **fields))
        rows[-1]["cpu_seconds"] = cpu

    if spec.get("side") == "tfmot_alloc":
        add(stripped, "tfmot_gmp_alloc_int8", False, epochs, gmp_cpu, bits=8)
    elif spec.get("side", "tfmot") == "tfmot":
        add(stripped, "tfmot_gmp_int8", False, epochs, gmp_cpu, bits=8)
        if spec["quant_epochs"]:
            start = time.process_time()
            scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            qat = quantize_aware(stripped, scheme, spec, x, y)
            spent = epochs + spec["quant_epochs"]
            add(qat, "tfmot_pqat_int8", True, spent, gmp_cpu + time.process_time() - start, bits=8)
    else:
        cluster = tfmot.clustering.keras
        for n in spec["clusters"]:
            # a fresh GMP model for each count: cluster_weights leaves the model it wraps
            # without trainable weights, and the next count's cluster_weights then refuses it
            # ("Layer conv2d has no weights to cluster")
            stripped, gmp_cpu = tfmot_gmp(spec, x, y)
            start = time.process_time()
            keras.utils.set_random_seed(spec["seed"])
            clustered = cluster.cluster_weights(
                stripped,
                number_of_clusters=n,
                cluster_centroids_init=cluster.CentroidInitialization.KMEANS_PLUS_PLUS,
                preserve_sparsity=True,
            )
            S.compile_model(clustered, 1e-4)
            clustered.fit(S.dataset(x, y, spec["seed"] + 2), epochs=spec["quant_epochs"], verbose=0)
            clustered = cluster.strip_clustering(clustered)
            spent = epochs + spec["quant_epochs"]
            cpu = gmp_cpu + time.process_time() - start
            add(clustered, f"tfmot_cluster{n}_int8", False, spent, cpu, bits=8, clusters=n)
            scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=True
            )
            qat = quantize_aware(clustered, scheme, spec, x, y)
            spent += spec["quant_epochs"]
            cpu = gmp_cpu + time.process_time() - start
            add(qat, f"tfmot_pcqat{n}_int8", True, spent, cpu, bits=8, clusters=n)
    for row in rows:
        print("ROW " + json.dumps(row), flush=True)


def run_tfmot(spec: dict) -> list[dict]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        print(out.stdout[-3000:], out.stderr[-5000:], file=sys.stderr)
        raise RuntimeError(f"the TFMOT child failed for {spec}")
    return [json.loads(line[4:]) for line in out.stdout.splitlines() if line.startswith("ROW ")]


# ----------------------------------------------------------------------------- tf_admm


def export_rows(
    model, folder: str, name: str, test, x, sparse_too: bool = True, **fields
) -> list[dict]:
    """The int8 file of a stripped model without and (``sparse_too``) with sparse tensors."""
    rows = []
    for sparse in (False, True) if sparse_too else (False,):
        path = os.path.join(folder, f"{name}{'_sparse' if sparse else ''}.tflite")
        tf_admm.export_tflite(
            model,
            path,
            quantization="int8",
            sparse=sparse,
            representative_data=x[:CALIBRATION],
            overwrite=True,
        )
        method = f"{name}_sparse" if sparse else name
        rows.append(tflite_row(model, path, test, method=method, **fields))
    return rows


# the schedule each tf_admm pruning unit passes to prune_low_magnitude, by the name of its
# rows and cached model (None: the library's default)
SCHEDULES = {
    "admm": lambda: {},
    # the weights outside Z's support masked at every Z/U update of the ramp, as GMP masks
    "admm_ramp": lambda: {"schedule": tf_admm.schedules.Gradual(masking="ramp")},
    # ... and Z on the final targets from the first update
    "admm_target": lambda: {"schedule": tf_admm.schedules.Gradual(masking="ramp", pull="target")},
}
# ... masking="ramp" to TFMOT's per-layer targets
SCHEDULES["admm_uniform"] = SCHEDULES["admm_ramp"]
# the per-layer targets of each unit (allocate_sparsity's unless named here)
TARGETS = {"admm_uniform": tfmot_targets}
# the sides that prune with run_admm and export int8 only, and the name of their rows and
# cached model
PRUNING_SIDES = {
    "tf_admm_ramp": "admm_ramp",
    "tf_admm_target": "admm_target",
    "tf_admm_uniform": "admm_uniform",
}


def admm_and_retrain(pruned, spec: dict, train, update) -> None:
    """The recipe both tf_admm pruning sides run on a wrapped model: ``--ramp-epochs`` at 1e-3
    with ``update`` (an ``UpdateADMM``), ``hard_project``, ``--retrain-epochs`` on the cosine
    decay with ``UpdateADMM()`` (the masks held)."""
    (x, y) = train
    S.compile_model(pruned)
    pruned.fit(
        S.dataset(x, y, spec["seed"]), epochs=spec["ramp_epochs"], verbose=0, callbacks=[update]
    )
    tf_admm.hard_project(pruned)
    S.compile_model(pruned, S.retrain_rate(x, spec["retrain_epochs"]))
    pruned.fit(
        S.dataset(x, y, spec["seed"] + 1),
        epochs=spec["retrain_epochs"],
        verbose=0,
        callbacks=[tf_admm.UpdateADMM()],
    )


def run_admm(
    dense, sparsity: float, spec: dict, train, test, bits: list[int], name: str = "admm"
) -> list[dict]:
    """tf_admm's side: ``prune_low_magnitude`` with the schedule ``SCHEDULES[name]`` (the
    defaults for "admm"), retraining, int8 files and the k-bit files of ``bits``."""
    (x, y) = train
    gradient_data = (x[:GRADIENT_IMAGES], y[:GRADIENT_IMAGES])
    start = time.process_time()
    keras.utils.set_random_seed(spec["seed"])
    targets = TARGETS.get(name, admm_targets)(dense, sparsity)
    pruned = tf_admm.prune_low_magnitude(dense, targets, **SCHEDULES[name]())
    admm_and_retrain(pruned, spec, train, tf_admm.UpdateADMM(gradient_data=gradient_data))
    stripped = tf_admm.strip_admm(pruned)
    prune_cpu = time.process_time() - start
    # the pruned model, for the bits the tf_admm_bits side quantizes it to later
    save_weights(spec["pruned_weights"], stripped.get_weights(), cpu_seconds=prune_cpu)
    epochs = spec["ramp_epochs"] + spec["retrain_epochs"]
    rows = export_rows(stripped, spec["folder"], f"{name}_int8", test, x, bits=8, epochs=epochs)
    for row in rows:
        row["cpu_seconds"] = prune_cpu
    return rows + quantize_rows(stripped, targets, spec, train, test, bits, "admm", prune_cpu)


def quant_split(quant_epochs: int) -> tuple[int, int]:
    """The ``--quant-epochs`` as epochs of ADMM and of masked retraining (at least 1 each)."""
    half = max(1, quant_epochs // 2)
    return half, max(1, quant_epochs - half)


def quantize_rows(
    stripped, targets, spec: dict, train, test, bits: list[int], name: str, prune_cpu: float
) -> list[dict]:
    """For each of ``bits``: ``compress(stripped, sparsity=targets, bits=k)`` (the library's
    joint constraint, from the pruned model), half the ``--quant-epochs`` of ADMM and half of
    masked retraining, at 1e-4, and the int8 files (``{name}_{k}bit``, with and without sparse
    tensors); ``cpu_seconds`` counts the pruning (``prune_cpu``) and this quantization."""
    (x, y) = train
    gradient_data = (x[:GRADIENT_IMAGES], y[:GRADIENT_IMAGES])
    epochs = spec["ramp_epochs"] + spec["retrain_epochs"]
    half, rest = quant_split(spec["quant_epochs"])
    rows = []
    for k in bits if spec["quant_epochs"] else []:
        start = time.process_time()
        keras.utils.set_random_seed(spec["seed"])
        both = tf_admm.compress(stripped, sparsity=targets, bits=k)
        S.compile_model(both, 1e-4)
        both.fit(
            S.dataset(x, y, spec["seed"] + 2),
            epochs=half,
            verbose=0,
            callbacks=[tf_admm.UpdateADMM(gradient_data=gradient_data)],
        )
        tf_admm.hard_project(both)
        S.compile_model(both, 1e-4)
        both.fit(
            S.dataset(x, y, spec["seed"] + 3),
            epochs=rest,
            verbose=0,
            callbacks=[tf_admm.UpdateADMM()],
        )
        quantized = tf_admm.strip_admm(both)
        cpu = prune_cpu + time.process_time() - start
        if spec.get("quantized_weights"):  # for the tf_admm_shrink side
            save_weights(spec["quantized_weights"][k], quantized.get_weights(), cpu_seconds=cpu)
        k_rows = export_rows(
            quantized,
            spec["folder"],
            f"{name}_{k}bit",
            test,
            x,
            bits=k,
            epochs=epochs + half + rest,
        )
        for row in k_rows:
            row["cpu_seconds"] = cpu
        rows += k_rows
    return rows


def cached_model(dense, path: str):
    """The model a unit kept at ``path`` (weights of ``dense``'s architecture, in a clone of
    it) and the CPU seconds it took to train."""
    weights, extra = load_weights(path)
    model = keras.models.clone_model(dense)
    model.set_weights(weights)
    return model, float(extra["cpu_seconds"])


def run_admm_bits(dense, sparsity: float, spec: dict, train, test, k: int) -> list[dict]:
    """The ``tf_admm_ramp`` unit's pruned model (kept in ``--cache``) quantized to ``k`` bits
    with ``compress`` (``admm_ramp_{k}bit``): the bit widths of the frontier without pruning
    again. Its ``cpu_seconds`` include the pruning's."""
    pruned, prune_cpu = cached_model(dense, spec["pruned_weights"])
    targets = admm_targets(dense, sparsity)  # as the pruning's
    return quantize_rows(pruned, targets, spec, train, test, [k], "admm_ramp", prune_cpu)


def run_shrink(dense, path: str, name: str, test, x, **fields) -> list[dict]:
    """The model cached at ``path`` (weights of ``dense``'s architecture) through
    ``tf_admm.shrink``, exported as ``export_rows`` exports (``{name}``, ``{name}_sparse``);
    ``cpu_seconds`` counts the cached model's training and the shrinking."""
    model, cached_cpu = cached_model(dense, path)
    start = time.process_time()
    shrunk = tf_admm.shrink(model)
    cpu = cached_cpu + time.process_time() - start
    rows = export_rows(shrunk, fields.pop("folder"), name, test, x, **fields)
    for row in rows:
        row["cpu_seconds"] = cpu
        row["parameters"] = shrunk.count_params()
    return rows


def run_channels(dense, rate: float, spec: dict, train, test) -> list[dict]:
    """tf_admm's structured side: ``prune_channels(dense, allocate_channels(dense, rate))``
    with its default schedule (``Gradual(masking="ramp")``), ``UpdateADMM()`` over the ramp
    epochs, ``hard_project``, the retraining epochs, ``shrink``: a smaller dense model with
    ``rate`` times fewer MACs, as an int8 file (``admm_channels_int8``; no sparse file, it has
    no zeros to store). Its rows give the MAC rate reached (``flops_rate``), its
    ``parameters`` and the fraction of the dense model's weights removed (``sparsity``)."""
    (x, y) = train
    start = time.process_time()
    keras.utils.set_random_seed(spec["seed"])
    pruned = tf_admm.prune_channels(dense, tf_admm.allocate_channels(dense, rate))
    admm_and_retrain(pruned, spec, train, tf_admm.UpdateADMM())
    small = tf_admm.shrink(pruned)
    fields = {
        "cpu_seconds": time.process_time() - start,
        "parameters": small.count_params(),
        "sparsity": 1.0 - small.count_params() / dense.count_params(),
        "flops_rate": tf_admm.flops.total_macs(dense) / tf_admm.flops.total_macs(small),
        "flops_target": rate,
    }
    epochs = spec["ramp_epochs"] + spec["retrain_epochs"]
    name = "admm_channels_int8"
    rows = export_rows(
        small, spec["folder"], name, test, x, sparse_too=False, bits=8, epochs=epochs
    )
    return [{**row, **fields} for row in rows]


# ----------------------------------------------------------------------------- driver


def unit_key(network: str, side: str, sparsity: float, seed: int, bits: int) -> tuple:
    """What makes a unit: its network, side, sparsity (for ``tf_admm_channels``, the MAC rate
    it was asked for) and seed, and for the sides of ``PER_WIDTH`` (one unit per bit width)
    its bits."""
    return (network, side, sparsity, seed, bits if side in PER_WIDTH else None)


def cache_path(args, kind: str, sparsity: float, seed: int) -> str:
    """Where a unit keeps its model (``kind``: "gmp", "gmp_alloc", "admm", "admm_ramp", or a
    quantized one, "admm_4bit", "admm_ramp_3bit", ...) for later units, keyed by everything
    it was trained from: two settings never share a file."""
    name = f"{args.network}_{kind}_{sparsity:g}_seed{seed}_{args.ramp_epochs}"
    name += f"+{args.retrain_epochs}ep_{args.train_size}_dense{args.dense_epochs}"
    if "bit" in kind:  # quantized: its epochs too
        name += f"_q{args.quant_epochs}"
    return os.path.join(args.cache, name + ".npz")


def done_units(rows: list[dict], args) -> set[tuple]:
    """The units (``unit_key``) of ``rows`` run at ``args``' training images, dense epochs
    and epoch budget: rows of another setting are another experiment (rows written before the
    budget was recorded all ran 2 + 4 epochs, and 2 more)."""
    return {
        unit_key(
            r["network"], r["side"], r.get("flops_target", r["sparsity"]), r["seed"], r.get("bits")
        )
        for r in rows
        if r["train_size"] == args.train_size
        and r["dense_epochs"] == args.dense_epochs
        and r.get("ramp_epochs", 2) == args.ramp_epochs
        and r.get("retrain_epochs", 4) == args.retrain_epochs
        and r.get("quant_epochs", 2) == args.quant_epochs
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--network", default="resnet14_w8", choices=list(S.NETWORKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.75, 0.9, 0.95])
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument(
        "--flops-rates",
        nargs="+",
        type=float,
        default=[2.0, 3.0],
        help="the tf_admm_channels side's targets: dense MACs / the shrunk model's MACs",
    )
    parser.add_argument("--clusters", nargs="+", type=int, default=[16, 8])
    parser.add_argument("--bits", nargs="+", type=int, default=[4])
    parser.add_argument("--dense-epochs", type=int, default=8)
    parser.add_argument("--ramp-epochs", type=int, default=2)
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.add_argument("--quant-epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=30000)
    parser.add_argument("--cache", default="runs/structured_cache")
    parser.add_argument("--out", default="docs/frontier.json")
    parser.add_argument("--plot", help="draw the frontier of --out to this PNG and stop")
    parser.add_argument("--table", action="store_true", help="print --out as tables and stop")
    args = parser.parse_args()
    if args.child:
        tfmot_child(json.loads(args.child))
        return
    if args.plot or args.table:
        if args.plot:
            plot(args.out, args.plot)
        if args.table:
            table(args.out)
        return
    train, test = data(args.train_size)
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as handle:
            done = done_units([json.loads(line) for line in handle], args)
    for seed in args.seeds:
        dense, dense_acc = S.dense_model(
            seed, args.dense_epochs, (train, test), args.cache, args.network
        )
        # keyed like the cached model: two runs from different dense models never share it
        name = f"{args.network}_dense_seed{seed}_{args.dense_epochs}ep.npz"
        weights = os.path.join(args.cache, name)
        save_weights(weights, dense.get_weights())
        spec = {
            "network": args.network,
            "seed": seed,
            "train_size": args.train_size,
            "ramp_epochs": args.ramp_epochs,
            "retrain_epochs": args.retrain_epochs,
            "quant_epochs": args.quant_epochs,
            "dense_weights": weights,
        }
        common = {
            "network": args.network,
            "seed": seed,
            "dense_accuracy": dense_acc,
            "dense_epochs": args.dense_epochs,
            "train_size": args.train_size,
            "ramp_epochs": args.ramp_epochs,
            "retrain_epochs": args.retrain_epochs,
            "quant_epochs": args.quant_epochs,
        }
        units = [("anchor", 0.0, None)] if "anchor" in args.sides else []
        for sparsity in args.sparsities:
            for side in (s for s in SIDES[1:] if s not in BY_MAC_RATE):
                widths = {
                    "tf_admm_bits": args.bits,
                    # 8: the int8 file of the pruned model, then the k-bit models
                    "tf_admm_shrink": [8] + [k for k in args.bits if k != 8],
                }.get(side, [None])
                units += [(side, sparsity, k) for k in widths]
        units += [(side, rate, None) for side in BY_MAC_RATE for rate in args.flops_rates]
        for side, sparsity, k in units:
            if side not in args.sides or unit_key(args.network, side, sparsity, seed, k) in done:
                continue
            # its cached tf_admm models
            kind = {"tf_admm": "admm", **PRUNING_SIDES}.get(side, "admm_ramp")
            with tempfile.TemporaryDirectory() as folder:  # the unit's .tflite files
                unit = {
                    **spec,
                    "sparsity": sparsity,
                    "folder": folder,
                    "side": side,
                    "clusters": args.clusters,
                    # GMP's model, shared by both TFMOT sides; tf_admm's pruned models (the
                    # masking="ramp" one is what tf_admm_bits quantizes)
                    "gmp_weights": cache_path(args, "gmp", sparsity, seed),
                    "pruned_weights": cache_path(args, kind, sparsity, seed),
                    # and the k-bit models quantize_rows makes of them
                    "quantized_weights": {
                        b: cache_path(args, f"{kind}_{b}bit", sparsity, seed) for b in args.bits
                    },
                }
                if side == "tfmot_alloc":  # GMP to tf_admm's per-layer targets, by position
                    unit["targets"] = allocation_by_position(dense, sparsity)
                    unit["gmp_weights"] = cache_path(args, "gmp_alloc", sparsity, seed)
                source = {  # the cached model a side starts from, and the side making it
                    "tf_admm_bits": (unit["pruned_weights"], "tf_admm_ramp"),
                    "tf_admm_shrink": (
                        (unit["pruned_weights"], "tf_admm_ramp")
                        if k == 8
                        else (unit["quantized_weights"].get(k), f"tf_admm_bits --bits {k}")
                    ),
                    "gmp_shrink": (unit["gmp_weights"], "tfmot"),
                }.get(side)
                if source and not os.path.exists(source[0]):
                    print(
                        f"skipped {side} at {sparsity:g}, seed {seed}: no {source[0]}; run the "
                        f"{source[1]} side first (it keeps its model there)",
                        file=sys.stderr,
                    )
                    continue
                if side == "anchor":
                    rows = anchor_rows(dense, train, test, folder)
                elif side == "tfmot_cluster":
                    try:  # TFMOT's k-means++ refuses a layer with fewer nonzeros than
                        rows = run_tfmot(unit)  # clusters (ResNet-14 from 90% sparsity)
                    except RuntimeError as err:
                        print(f"skipped, TFMOT's clustering failed: {err}", file=sys.stderr)
                        continue
                elif side.startswith("tfmot"):
                    rows = run_tfmot(unit)
                elif side in PRUNING_SIDES:
                    rows = run_admm(dense, sparsity, unit, train, test, [], kind)
                elif side == "tf_admm_channels":
                    rows = run_channels(dense, sparsity, unit, train, test)
                elif side == "tf_admm_bits":
                    rows = run_admm_bits(dense, sparsity, unit, train, test, k)
                elif side in ("tf_admm_shrink", "gmp_shrink"):
                    quantized = side == "tf_admm_shrink" and k != 8  # a tf_admm_bits model
                    name = "tfmot_gmp_int8" if side == "gmp_shrink" else "admm_ramp_int8"
                    name = f"admm_ramp_{k}bit" if quantized else name
                    epochs = args.ramp_epochs + args.retrain_epochs
                    epochs += sum(quant_split(args.quant_epochs)) if quantized else 0
                    rows = run_shrink(
                        dense,
                        source[0],
                        f"{name}_shrunk",
                        test,
                        train[0],
                        folder=folder,
                        bits=k or 8,
                        epochs=epochs,
                    )
                else:
                    rows = run_admm(dense, sparsity, unit, train, test, args.bits)
            for row in rows:
                row.setdefault("sparsity", sparsity)  # tf_admm_channels' says what it removed
                row.update(common, side=side)
                print(json.dumps(row), flush=True)
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(row) + "\n")


def anchor_rows(dense, train, test, folder: str) -> list[dict]:
    (x, _) = train
    start = time.process_time()
    rows = []
    for quantization in (None, "int8"):
        path = os.path.join(folder, f"dense_{quantization or 'float'}.tflite")
        calibration = x[:CALIBRATION] if quantization else None
        tf_admm.export_tflite(
            dense, path, quantization=quantization, representative_data=calibration
        )
        method = f"dense_{quantization or 'float'}"
        bits = 8 if quantization else 32
        rows.append(tflite_row(dense, path, test, method=method, bits=bits, epochs=0))
    for row in rows:
        row["cpu_seconds"] = time.process_time() - start
    return rows


def complete(rows: list[dict]) -> list[dict]:
    """The rows of the seeds that have, for their network, every (method, sparsity) of the
    core sides (``CORE_SIDES``) in ``rows``, so that both sides are averaged over the same
    seeds; a later side's points are averaged over those of these seeds that have them
    (``seeds`` says how many). Each network counts on its own: a network still running does
    not take seeds out of another's points."""
    core = [r for r in rows if r["side"] in CORE_SIDES]
    keep = set()
    for network in {r["network"] for r in core}:
        mine = [r for r in core if r["network"] == network]
        units = {(r["method"], r["sparsity"]) for r in mine}
        for seed in {r["seed"] for r in mine}:
            if units == {(r["method"], r["sparsity"]) for r in mine if r["seed"] == seed}:
                keep.add((network, seed))
    return [r for r in rows if (r["network"], r["seed"]) in keep]


def point_key(r: dict) -> tuple:
    """What makes a point: a row's (network, method, sparsity, epochs); ``points`` averages
    the rows of one key over seeds and ``paired`` pairs two keys' rows by seed."""
    return (r["network"], r["method"], r["sparsity"], r["epochs"])


def points(rows: list[dict]) -> list[dict]:
    """Mean and sample std over seeds of each (network, method, sparsity, epochs), over the
    complete seeds; the table and the figure both read them. A point's ``label`` is its
    method, with its epochs where the file holds that method at more than one budget (4 bits
    after 1 + 1 and after 2 + 2 quantization epochs are two points, never averaged)."""
    groups: dict[tuple, list[dict]] = {}
    for r in complete(rows):
        groups.setdefault(point_key(r), []).append(r)
    budgets: dict[tuple, set] = {}
    for network, method, _, epochs in groups:
        budgets.setdefault((network, method), set()).add(epochs)
    out = []
    for (network, method, sparsity, epochs), group in sorted(groups.items()):
        # the sample standard deviation over seeds, as every table of the docs
        accuracy, std = mean_std([100 * r["litert_accuracy"] for r in group])
        several = len(budgets[(network, method)]) > 1
        out.append(
            {
                "network": network,
                "method": method,
                "label": f"{method} ({epochs} ep)" if several else method,
                "side": group[0]["side"],
                "sparsity": sparsity,
                # the tf_admm_channels side's MAC rate (its sparsity is the weights removed)
                "flops_rate": (
                    float(np.mean([r["flops_rate"] for r in group]))
                    if "flops_rate" in group[0]
                    else None
                ),
                "epochs": epochs,
                "seeds": len(group),
                "accuracy": accuracy,
                "std": std,
                "raw_bytes": float(np.mean([r["raw_bytes"] for r in group])),
                "zipped_bytes": float(np.mean([r["zipped_bytes"] for r in group])),
                # rows written before the field existed have none: no stripped figure then
                "stripped_bytes": (
                    float(np.mean([r["stripped_bytes"] for r in group]))
                    if all("stripped_bytes" in r for r in group)
                    else None
                ),
            }
        )
    return out


def paired(rows: list[dict], mine: dict, theirs: dict) -> tuple[float, float, int]:
    """Mean and sample std over seeds of point ``mine``'s LiteRT accuracy minus ``theirs``
    (points of :func:`points`), in points, over the complete seeds both have, and how many."""
    kept = complete(rows)

    def by_seed(p: dict) -> dict[int, float]:
        return {r["seed"]: 100 * r["litert_accuracy"] for r in kept if point_key(r) == point_key(p)}

    a, b = by_seed(mine), by_seed(theirs)
    diffs = [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]
    if not diffs:
        return float("nan"), 0.0, 0
    return (*mean_std(diffs), len(diffs))


def where(p: dict) -> str:
    """A point's sparsity, and for a shrunk channel-pruned model its MAC rate first."""
    if p["flops_rate"] is None:
        return f"{p['sparsity']:g}"
    return f"{p['flops_rate']:.2f}x MACs ({p['sparsity']:.3f})"


def table(out: str) -> None:
    """The frontier points as a Markdown table, then for each TFMOT point the best tf_admm
    point at no more bytes (zipped, raw, then stripped) and no more epochs after the dense
    model (the issue's same budget per side: a 4-bit file trained 8 epochs is not set against
    GMP's 6), its accuracy margin (difference of the means) and the difference paired by seed
    (mean ± std, and over how many seeds)."""
    rows = [json.loads(line) for line in open(out)]
    print(f"seeds with every point: {sorted({r['seed'] for r in complete(rows)})}\n")
    pts = points(rows)
    print(
        "| network | method | sparsity | epochs | seeds | LiteRT acc. % | raw bytes "
        "| zipped bytes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p in pts:
        print(
            f"| {p['network']} | {p['method']} | {where(p)} | {p['epochs']} | "
            f"{p['seeds']} | "
            f"{p['accuracy']:.2f} ± {p['std']:.2f} | {p['raw_bytes']:,.0f} | "
            f"{p['zipped_bytes']:,.0f} |"
        )
    print()
    for size in ("zipped_bytes", "raw_bytes", "stripped_bytes"):
        theirs = [p for p in pts if p["side"].startswith("tfmot") and p[size] is not None]
        if not theirs:
            continue
        print(
            f"| network | TFMOT point | {size} | best tf_admm point at <= bytes and epochs "
            "| margin | paired (seeds) |"
        )
        print("|---|---|---|---|---|---|")
        for t in theirs:
            mine = [
                p
                for p in pts
                if p["side"].startswith("tf_admm")  # any schedule, bit width or shrink
                and p["network"] == t["network"]
                and p[size] is not None
                and p[size] <= t[size]
                and p["epochs"] <= t["epochs"]
            ]
            best = max(mine, key=lambda p: p["accuracy"], default=None)
            answer = "none | - | -"
            if best:
                mean, std, n = paired(rows, best, t)
                answer = (
                    f"{best['method']} at {where(best)}, {best['epochs']} ep "
                    f"({best['accuracy']:.2f}, {best[size]:,.0f} B) | "
                    f"{best['accuracy'] - t['accuracy']:+.2f} | "
                    f"{mean:+.2f} ± {std:.2f} ({n})"
                )
            print(
                f"| {t['network']} | {t['method']} at {where(t)}, {t['epochs']} ep "
                f"({t['accuracy']:.2f}) | {t[size]:,.0f} | {answer} |"
            )
        print()


MARKERS = "o^DvPX<>*"  # after the 20 colours of tab20 run out, the next marker


def method_style(index: int) -> tuple[tuple, str]:
    """The colour and marker of the ``index``-th method of a figure: tab20's 20 colours with
    circles, then the same colours with the next marker, so no two methods look alike."""
    import matplotlib.pyplot as plt

    return plt.cm.tab20(index % 20), MARKERS[(index // 20) % len(MARKERS)]


def plot(out: str, png: str) -> list[str]:
    """Mean LiteRT accuracy against mean zipped bytes (all points, then the top 3 points below
    the dense file's accuracy) and raw bytes: tf_admm in solid lines, TFMOT dashed, one colour
    per label (``points``: a method, or a method at one of its epoch budgets) in every panel,
    one row per network, the legend below (every label drawn in any panel, once;
    ``method_style`` tells them apart). Returns the legend's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    pts = points([json.loads(line) for line in open(out)])
    networks = sorted({p["network"] for p in pts})
    # one colour per label (a method, or a method at one of its budgets), every panel
    labels = sorted({p["label"] for p in pts})
    panels = (("zipped_bytes", False), ("zipped_bytes", True), ("raw_bytes", False))
    height = 4.8 * len(networks) + 1  # inches
    fig, axes = plt.subplots(len(networks), len(panels), figsize=(17, height), squeeze=False)
    for axes_row, network in zip(axes, networks):
        mine = [p for p in pts if p["network"] == network]
        dense = [p["accuracy"] for p in mine if p["method"] == "dense_float"]
        for ax, (size, zoom) in zip(axes_row, panels):
            drawn = []  # (kB, %) of every mean drawn
            for label in sorted({p["label"] for p in mine}):
                line = sorted((p for p in mine if p["label"] == label), key=lambda p: p["sparsity"])
                method = line[0]["method"]  # the styles go by method, the colours by label
                xs = [p[size] / 1000 for p in line]
                ys = [p["accuracy"] for p in line]
                es = [p["std"] for p in line]
                if method != "dense_float":  # the zoomed panel draws it as a line
                    drawn += zip(xs, ys)
                style = "--" if method.startswith("tfmot") else "-"
                colour, marker = method_style(labels.index(label))
                marker = "s" if method.startswith("dense") else marker
                ax.errorbar(
                    xs, ys, yerr=es, fmt=marker + style, label=label, capsize=3, color=colour
                )
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_xlabel(f"{size.replace('_', ' ')} (kB, log)")
            ax.set_ylabel("LiteRT test accuracy (%)")
            what = size.split("_")[0] + " bytes"
            if zoom and dense:
                top = dense[0]
                ax.set_ylim(top - 3, top + 1)
                near = [kb for kb, accuracy in drawn if accuracy >= top - 3]
                ax.set_xlim(min(near) / 1.1, max(near) * 1.1)
                ax.axhline(top, color="grey", linewidth=0.8, linestyle=":")
                what += f", within 3 points of dense ({top:.2f}%)"
            ax.set_title(f"{network}: accuracy against {what}", fontsize=10)
            ax.grid(alpha=0.3)
    legend = {}  # label -> handle: a method one network lacks is still in the legend
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    drawn_labels = sorted(legend)
    fig.legend(
        [legend[label] for label in drawn_labels],
        drawn_labels,
        loc="lower center",
        ncol=7,
        fontsize=8,
        frameon=False,
    )
    # room below the panels for the legend's rows (about 0.2 inch each at fontsize 8)
    rows = -(-len(drawn_labels) // 7)
    fig.tight_layout(rect=(0, (0.3 + 0.2 * rows) / height, 1, 1))
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return drawn_labels


if __name__ == "__main__":
    main()
