"""Per-layer compression summaries of wrapped, stripped or plain models.

>>> import tf_admm
>>> from tf_admm import keras
>>> base = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")])
>>> m = tf_admm.compress(base, sparsity=0.75, bits=3)
>>> _ = tf_admm.hard_project(m)
>>> rows = tf_admm.summary(m, print_fn=None)
>>> rows["layers"][0]["weights"], rows["layers"][0]["nonzeros"], rows["layers"][0]["sparsity"]
(128, 32, 0.75)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tf_admm._keras import is_keras_object, is_model, other_flavour_hint
from tf_admm.export import format_bits, layer_sizes, plain_model
from tf_admm.flops import layer_macs

__all__ = ["layer_sparsity", "summary"]


def _plain(model):
    if not is_keras_object(model) or not is_model(model):
        raise ValueError(
            f"Expected a Keras model. Received: {model!r} of type {type(model).__name__}. "
            f"{other_flavour_hint()}"
        )
    return plain_model(model)


def layer_sparsity(model) -> dict[str, float]:
    """Fraction of zeros in the compressible weights of every compressible layer, by name.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> tf_admm.report.layer_sparsity(m)
    {'fc': 0.0}
    """
    layers, _ = layer_sizes(_plain(model), {})
    return {l.layer: 1.0 - l.nonzeros / l.weights for l in layers}


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def summary(model, print_fn: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Print (and return) a per-layer table: weights, nonzeros, sparsity, bits per value, packed
    bytes (see ``docs/export.md``), compression against dense float32 and multiply-accumulates
    of one inference (:mod:`tf_admm.flops`; "-" for a subclassed model), with totals.

    Works on wrapped models (what :func:`tf_admm.strip_admm` would give), stripped and plain
    models. Bits are the quantization's bits for wrapped layers after hard_project, otherwise
    ``ceil(log2(most distinct values in a channel))`` (32 for weights off a grid). Returns
    ``{"layers": [...], "total": {...}}``; ``print_fn=None`` prints nothing.
    """
    plain = _plain(model)
    layers, others = layer_sizes(plain, {}, format_bits(model))
    try:
        macs = layer_macs(plain)
    except ValueError:  # a subclassed model: no graph to count from
        macs = None
    rows = []
    for l in layers:
        rows.append(
            {
                "layer": l.layer,
                "weights": l.weights,
                "nonzeros": l.nonzeros,
                "sparsity": round(1.0 - l.nonzeros / l.weights, 6) if l.weights else 0.0,
                "bits": l.bits,
                "bytes": int(np.ceil(l.lower_bound_bytes)),
                "pruning_rate": l.weights / l.nonzeros if l.nonzeros else float("inf"),
                "compression": 4 * l.weights / l.lower_bound_bytes if l.lower_bound_bytes else 0,
                "macs": None if macs is None else macs.get(l.layer, 0),
            }
        )
    weights = sum(r["weights"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    packed = sum(l.lower_bound_bytes for l in layers)
    total = {
        "weights": weights,
        "nonzeros": nonzeros,
        "sparsity": 1.0 - nonzeros / weights if weights else 0.0,
        "pruning_rate": weights / nonzeros if nonzeros else float("inf"),
        "bytes": int(np.ceil(packed)),
        "compression": 4 * weights / packed if packed else 0.0,
        "other_parameters": others,
        "macs": None if macs is None else sum(macs.values()),
    }
    if print_fn is not None:
        head = (
            f"{'layer':<18}{'weights':>10}{'nonzeros':>10}{'sparsity':>10}{'bits':>6}"
            f"{'bytes':>10}{'rate':>9}{'storage':>9}{'MACs':>14}"
        )
        print_fn(head)
        print_fn("-" * len(head))
        for r in rows:
            print_fn(
                f"{r['layer']:<18}{r['weights']:>10}{r['nonzeros']:>10}{r['sparsity']:>10.2%}"
                f"{r['bits']:>6}{r['bytes']:>10}{r['pruning_rate']:>8.1f}x"
                f"{r['compression']:>8.1f}x{_count(r['macs']):>14}"
            )
        print_fn("-" * len(head))
        print_fn(
            f"{'total':<18}{weights:>10}{nonzeros:>10}{total['sparsity']:>10.2%}{'':>6}"
            f"{total['bytes']:>10}{total['pruning_rate']:>8.1f}x{total['compression']:>8.1f}x"
            f"{_count(total['macs']):>14}"
        )
        print_fn(f"(plus {others} other parameters: biases, normalization)")
    return {"layers": rows, "total": total}
