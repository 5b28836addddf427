"""Export compressed models to TFLite/LiteRT, check them in the interpreter, account their size.

:func:`export_tflite` strips the ADMM wrappers, converts (float, int8 weights or full int8,
optionally with sparse tensors), then makes the int8 weights of ADMM-quantized layers exact: the
converter picks its own scale ``max|w| / 127`` per channel, on which a k-bit grid
``alpha * {-(2^(k-1)-1), ..., 2^(k-1)-1}`` does not fall, so every int8 weight tensor whose Keras
weight lies on a grid gets that grid's scale and integers instead (and, in full-int8 files, its
bias the matching scale). Dequantized, the file's weights then equal the Keras weights.

The modules, in the order a file is made: :mod:`~tf_admm.export.checks` (arguments, before any
work), :mod:`~tf_admm.export.convert` (the converter), :mod:`~tf_admm.export.match` (each Keras
weight found among the file's tensors, int8 tensors patched onto their grids, with
:mod:`~tf_admm.export.grids`), :mod:`~tf_admm.export.sizes` (bytes and bounds, the report),
:mod:`~tf_admm.export.parity` (the file against the model in LiteRT),
:mod:`~tf_admm.export.names` (the names no interpreter needs, dropped);
:mod:`~tf_admm.export.files` holds :func:`export_tflite` and :func:`size_report`.

>>> import os, tempfile, numpy as np, tf_admm
>>> from tf_admm import keras
>>> base = keras.Sequential([keras.Input((32,)), keras.layers.Dense(48, name="fc")])
>>> q = tf_admm.quantize(base, 3)
>>> _ = tf_admm.hard_project(q)
>>> path = os.path.join(tempfile.mkdtemp(), "fc.tflite")
>>> result = tf_admm.export_tflite(q, path, quantization="int8_weights")
>>> [(t.layer, t.dtype, t.exact) for t in result.tensors]
[('fc', 'int8', True)]
>>> tf_admm.check_tflite(q, path, np.ones((4, 32), "float32"))["top1_agreement"]
1.0
"""

from tf_admm.export.checks import QUANTIZATION_MODES
from tf_admm.export.convert import plain_model
from tf_admm.export.files import export_tflite, size_report
from tf_admm.export.grids import int8_grid
from tf_admm.export.names import strip_names, strip_tflite_names
from tf_admm.export.parity import check_tflite
from tf_admm.export.sizes import (
    ExportResult,
    LayerSize,
    TensorMatch,
    format_bits,
    layer_sizes,
    zipped_size,
)

__all__ = [
    "QUANTIZATION_MODES",
    "ExportResult",
    "LayerSize",
    "TensorMatch",
    "check_tflite",
    "export_tflite",
    "format_bits",
    "int8_grid",
    "layer_sizes",
    "plain_model",
    "size_report",
    "strip_names",
    "strip_tflite_names",
    "zipped_size",
]
