"""tf_admm: ADMM weight pruning for Keras 3 and tf_keras.

After "Progressive DNN Compression: A Key to Achieve Ultra-High Weight Pruning and Quantization
Rates using ADMM" (Ye et al., arXiv:1903.09769).

Typical use::

    pruned = tf_admm.prune_low_magnitude(model, sparsity=0.9)
    pruned.compile(...)
    pruned.fit(x, y, epochs=8, callbacks=[tf_admm.UpdateADMM()])   # ADMM
    tf_admm.hard_project(pruned)                                  # exact sparsity
    pruned.fit(x, y, epochs=4, callbacks=[tf_admm.UpdateADMM()])   # masked retraining
    plain = tf_admm.strip_admm(pruned)

Set TF_USE_LEGACY_KERAS=1 before importing to work with tf_keras models instead of Keras 3.
"""

__version__ = "0.1.0"

from tf_admm import constraints, export, projections, quantizers, registry, tflite_file
from tf_admm._keras import keras
from tf_admm.callbacks import UpdateADMM
from tf_admm.constraints import BlockSparsity, FilterSparsity, NMSparsity, Quantization, Sparsity
from tf_admm.export import check_tflite, export_tflite, size_report
from tf_admm.penalty import ADMMPenalty
from tf_admm.prune import compress, prune_low_magnitude, quantize, strip_admm
from tf_admm.updates import find_wrappers, hard_project, initialize_admm, update_admm
from tf_admm.wrapper import ADMMWrapper

__all__ = [
    "ADMMPenalty",
    "ADMMWrapper",
    "BlockSparsity",
    "FilterSparsity",
    "NMSparsity",
    "Quantization",
    "Sparsity",
    "UpdateADMM",
    "__version__",
    "compress",
    "check_tflite",
    "constraints",
    "export",
    "export_tflite",
    "find_wrappers",
    "hard_project",
    "initialize_admm",
    "keras",
    "prune_low_magnitude",
    "projections",
    "quantize",
    "quantizers",
    "registry",
    "size_report",
    "strip_admm",
    "tflite_file",
    "update_admm",
]
