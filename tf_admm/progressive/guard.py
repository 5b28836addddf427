"""The accuracy guard's retry policy: which smaller step to try before a stage that failed.

>>> import tf_admm
>>> from tf_admm import keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="fc")])
>>> retry = smaller_stage(tf_admm.Stage("s", sparsity={"fc": 0.99}), 0, m, reports=[])
>>> round(retry.sparsity["fc"], 3), retry.name
(0.9, 's (smaller)')
"""

from __future__ import annotations

import math

from tf_admm import registry
from tf_admm.flops import total_macs
from tf_admm.progressive.plan import Stage, more_bits
from tf_admm.report import layer_sparsity

__all__ = ["smaller_stage"]


def smaller_stage(
    stage: Stage, index: int, current, reports: list[dict], reference_macs: float | None = None
) -> Stage | None:
    """The retry inserted before a failed ``stage``: sparsities halfway in log-rate between the
    ``current`` (last good) model and the stage's targets; when sparsity cannot shrink (none, or
    already reached), the same stage with more bits
    (:func:`tf_admm.progressive.plan.more_bits`, halfway to
    the bits of the last passed report in ``reports``). A ``flops_rate`` stage: the MAC rate
    halfway in log-rate between ``current``'s (counted from ``reference_macs``, the dense
    model's) and the stage's. None when neither helps."""
    config = stage.get_config()
    if stage.flops_rate is not None:
        have = reference_macs / total_macs(current) if reference_macs else 1.0
        middle = math.sqrt(have * stage.flops_rate)
        if middle > have * 1.01 and middle < stage.flops_rate:
            config["flops_rate"] = middle
            config["name"] = f"{stage.label(index)} (smaller)"
            return Stage.from_config(config)
        return None
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
    good = next((r for r in reversed(reports) if r["passed"]), {"bits": {}})["bits"]
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
