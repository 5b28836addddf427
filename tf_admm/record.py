"""What the wrappers enforced on each weight, read once and passed forward to export.

After :func:`tf_admm.hard_project` a wrapper knows exactly what its weights are: the mask, and
for quantization the scale ``alpha`` of every output channel and the unit levels. Export uses
that record to write the int8 grid of each weight (step = ``alpha`` times the smallest unit
level) instead of searching the stored values for a grid; a model that was stripped (and maybe
saved) before export has no wrappers, and export then fits the grid from the values.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> m = tf_admm.quantize(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")]), 3)
>>> _ = tf_admm.hard_project(m)
>>> r = tf_admm.compression_record(m)[("fc", 0)]
>>> (r.bits, r.max_level, r.step.shape)
(3, 3, (3,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tf_admm.layouts import Layout
from tf_admm.updates import find_wrappers, to_numpy

__all__ = ["WeightRecord", "bits_by_layer", "compression_record"]


@dataclass(frozen=True)
class WeightRecord:
    """One constrained weight as its wrapper enforced it.

    Attributes:
        layer: the inner layer's name (the layer's name in the stripped model).
        index: the weight's position among the layer's compressible weights.
        layout: how the weight maps to output-channels-last.
        sparsity: the fraction of entries the mask sets to zero.
        bits: bits of the level set, or None when the weight is only pruned.
        step: quantized weights: the grid step of each output channel (``alpha`` times the
            smallest nonzero unit level), shape ``[channels]`` or ``[1]`` (one scale per
            tensor); None otherwise. Every value is an integer multiple of its channel's step.
        max_level: the largest of those integers (7 for 4-bit uniform, 64 for 4-bit powers of
            two), None when not quantized.
    """

    layer: str
    index: int
    layout: Layout
    sparsity: float
    bits: int | None
    step: np.ndarray | None
    max_level: int | None


def compression_record(model) -> dict[tuple[str, int], WeightRecord]:
    """``{(layer name, weight index): WeightRecord}`` for every weight of a wrapper that was hard
    projected (wrappers still in their ADMM phase enforce nothing yet and are left out)."""
    records = {}
    for wrapper in find_wrappers(model):
        if not (wrapper.built and wrapper.masked):
            continue
        quantizer = wrapper.constraint.quantizer
        for i, mask in enumerate(wrapper.mask_vars):
            keep = to_numpy(mask)
            step = max_level = bits = None
            if quantizer is not None:
                magnitudes = np.abs(quantizer.levels[quantizer.levels != 0])
                unit = float(magnitudes.min())
                max_level = int(round(float(magnitudes.max()) / unit))
                step = to_numpy(wrapper.scale_vars[i]).astype(np.float64).reshape(-1) * unit
                bits = quantizer.bits
            records[(wrapper.layer.name, i)] = WeightRecord(
                layer=wrapper.layer.name,
                index=i,
                layout=wrapper.constraint_for(i).layout,
                sparsity=float(1.0 - keep.mean()) if keep.size else 0.0,
                bits=bits,
                step=step,
                max_level=max_level,
            )
    return records


def bits_by_layer(records: dict[tuple[str, int], WeightRecord]) -> dict[str, int]:
    """Bits per value of each quantized layer of a record (the format's bits, by layer name)."""
    return {r.layer: r.bits for r in records.values() if r.bits is not None}
