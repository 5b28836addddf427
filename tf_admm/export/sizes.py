"""Size accounting of exported models: zipped bytes, per-layer bounds, and the report
:func:`tf_admm.export_tflite` returns."""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field

import numpy as np

from tf_admm import registry
from tf_admm.export.grids import log2_binomial, value_bits
from tf_admm.record import bits_by_layer, compression_record
from tf_admm.tflite_file import ConstTensor
from tf_admm.updates import find_wrappers

__all__ = [
    "ExportResult",
    "LayerSize",
    "TensorMatch",
    "compressible_layers",
    "format_bits",
    "layer_sizes",
    "zipped_size",
]


def zipped_size(content: bytes) -> int:
    """Bytes of ``content`` in a zip archive with deflate (what TFMOT's tutorials quote).

    >>> zipped_size(bytes(10000)) < 200
    True
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.tflite", content)
    return len(out.getvalue())


@dataclass
class TensorMatch:
    """One Keras weight found in the file: how it is stored and whether it is exact."""

    layer: str
    weight: str
    tensor: str
    dtype: str  # "int8", "float32", ...
    sparse: bool
    nbytes: int
    exact: bool  # dequantized file values equal the Keras weight (relative error <= 1e-6)
    max_rel_error: float
    patched: bool  # scales and integers replaced by the weight's own grid
    folded: bool = False  # stored times a BatchNormalization's per-channel factor


@dataclass
class LayerSize:
    """Size accounting of one compressible layer (all its constrained weights together)."""

    layer: str
    weights: int
    nonzeros: int
    bits: int
    file_bytes: int | None  # bytes of the matched tensors in the file (values + sparse indices)
    zipped_bytes: int | None
    lower_bound_bytes: float  # min(n * bits, nnz * bits + log2 C(n, nnz)) / 8, plus scales

    @property
    def compression(self) -> float:
        """Dense float32 bytes / lower bound."""
        return 4 * self.weights / self.lower_bound_bytes if self.lower_bound_bytes else math.inf


@dataclass
class ExportResult:
    """What :func:`export_tflite` wrote: the file, its sizes, and per-weight exactness."""

    path: str
    quantization: str | None
    sparse: bool
    bytes: int
    zipped_bytes: int
    tensors: list[TensorMatch] = field(default_factory=list)
    layers: list[LayerSize] = field(default_factory=list)
    other_parameters: int = 0  # biases and other weights not in ``layers``
    missing: list[str] = field(default_factory=list)  # compressible weights not found in file

    @property
    def lower_bound_bytes(self) -> float:
        return sum(l.lower_bound_bytes for l in self.layers) + 4 * self.other_parameters

    @property
    def exact(self) -> bool:
        """Every compressible weight was found in the file (a folded BatchNormalization
        included) and its stored values equal the Keras values (relative error <= 1e-6)."""
        return bool(self.tensors) and not self.missing and all(t.exact for t in self.tensors)

    def inexact(self) -> list[str]:
        """Why :attr:`exact` is False: one line per weight not exact or not found."""
        lines = [
            f"{t.layer}/{t.weight}: stored as {t.dtype} with relative error {t.max_rel_error:.2g}"
            for t in self.tensors
            if not t.exact
        ]
        return lines + [
            f"{name}: not found in the file (a kernel the converter transformed, e.g. split "
            "into the gate tensors of a fused LSTM op)"
            for name in self.missing
        ]

    def table(self) -> str:
        """A per-layer text table with totals."""
        head = (
            f"{'layer':<16}{'weights':>9}{'nonzero':>9}{'bits':>5}{'file B':>9}"
            f"{'zipped B':>10}{'bound B':>10}"
        )
        rows = [head, "-" * len(head)]
        for l in self.layers:
            rows.append(
                f"{l.layer:<16}{l.weights:>9}{l.nonzeros:>9}{l.bits:>5}"
                f"{l.file_bytes if l.file_bytes is not None else '-':>9}"
                f"{l.zipped_bytes if l.zipped_bytes is not None else '-':>10}"
                f"{l.lower_bound_bytes:>10.0f}"
            )
        rows.append("-" * len(head))
        rows.append(
            f"{'file':<16}{'':>9}{'':>9}{'':>5}{self.bytes:>9}{self.zipped_bytes:>10}"
            f"{self.lower_bound_bytes:>10.0f}"
        )
        return "\n".join(rows)


def compressible_layers(model) -> list:
    """The compressible layers of a plain model, and the layers inside wrappers stripped in
    place (a subclassed model after ``strip_admm(model, in_place=True)``)."""
    return registry.compressible_layers(model) + [
        w.layer for w in find_wrappers(model) if w.stripped
    ]


def wrapper_state_size(model) -> int:
    """Parameters held by in-place-stripped wrappers besides their layer's (Z, U, masks, ...)."""
    size = 0
    for wrapper in find_wrappers(model):
        own = {id(v) for v in wrapper.layer.weights}
        size += sum(int(np.prod(v.shape)) for v in wrapper.weights if id(v) not in own)
    return size


def format_bits(model) -> dict[str, int]:
    """Bits per value of the wrapped layers whose weights are on their levels (after
    :func:`tf_admm.hard_project`), by inner layer name, from their compression record."""
    return bits_by_layer(compression_record(model))


def layer_sizes(
    model, matches: dict[str, list[ConstTensor]], bits_by_layer: dict[str, int] | None = None
) -> tuple[list[LayerSize], int]:
    """Per-layer size accounting of a plain model: ``([LayerSize], other parameters)``.

    ``matches`` maps layer names to the file tensors holding them (empty: no file);
    ``bits_by_layer`` gives the format's bits where known (a wrapper's constraint) instead of
    the bits the values need.

    >>> from tf_admm import keras
    >>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> sizes, others = layer_sizes(m, {})
    >>> (sizes[0].layer, sizes[0].weights, sizes[0].bits, others)
    ('fc', 32, 32, 4)
    """
    bits_by_layer = bits_by_layer or {}
    layers, compressible_params = [], 0
    for layer in compressible_layers(model):
        weights = [np.asarray(w) for w in registry.compressible_weights(layer)]
        layouts = registry.weight_layouts(layer)
        n = sum(w.size for w in weights)
        compressible_params += n
        nnz = sum(int(np.count_nonzero(w)) for w in weights)
        known = bits_by_layer.get(layer.name)
        bits = known or max(value_bits(l.canonical(w)) for w, l in zip(weights, layouts))
        bound = 0.0
        for w, layout in zip(weights, layouts):
            size, kept = w.size, int(np.count_nonzero(w))
            wbits = known or value_bits(layout.canonical(w))
            bound_bits = min(size * wbits, kept * wbits + log2_binomial(size, kept))
            if wbits < 32:  # one float32 scale per output channel
                bound_bits += 32 * layout.canonical_shape(w.shape)[-1]
            bound += bound_bits / 8
        stored = matches.get(layer.name)
        file_bytes = sum(c.nbytes for c in stored) if stored else None
        zipped = None
        if stored:
            raw = b"".join(c.data.tobytes() for c in stored)
            zipped = zipped_size(raw) - zipped_size(b"")
        layers.append(LayerSize(layer.name, n, nnz, bits, file_bytes, zipped, bound))
    total = sum(int(np.prod(w.shape)) for w in model.weights) - wrapper_state_size(model)
    return layers, total - compressible_params
