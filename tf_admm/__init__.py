"""tf_admm: ADMM weight pruning and quantization for Keras 3 and tf_keras.

After "Progressive DNN Compression: A Key to Achieve Ultra-High Weight Pruning and Quantization
Rates using ADMM" (Ye et al., arXiv:1903.09769).

Typical use::

    small = tf_admm.compress(model, sparsity=0.9, bits=3)      # or prune_low_magnitude, quantize
    small.compile(...)
    small.fit(x, y, epochs=8, callbacks=[tf_admm.UpdateADMM()])  # ADMM
    tf_admm.hard_project(small)                                  # exact sparsity and levels
    small.fit(x, y, epochs=4, callbacks=[tf_admm.UpdateADMM()])  # retrain on the constraint
    plain = tf_admm.strip_admm(small)
    tf_admm.export_tflite(plain, "model.tflite", quantization="int8_weights", sparse=True)

Set TF_USE_LEGACY_KERAS=1 before importing to work with tf_keras models instead of Keras 3.
"""

__version__ = "0.1.0"

from tf_admm import (  # noqa: F401  (submodules, importable as tf_admm.NAME)
    allocation,
    channel_admm,
    channels,
    cloning,
    constraints,
    dead_channels,
    export,
    flops,
    graph,
    layer_kinds,
    layouts,
    penalty,
    post_training,
    progressive,
    projections,
    quantizers,
    record,
    registry,
    removal,
    report,
    rho_scaling,
    schedules,
    structured,
    tflite_file,
    updates,
    validation,
)
from tf_admm._keras import keras  # noqa: F401  (from tf_admm import keras)
from tf_admm.allocation import allocate_sparsity, allocation_table
from tf_admm.callbacks import UpdateADMM
from tf_admm.channels import channel_groups
from tf_admm.constraints import (
    BlockSparsity,
    ChannelSparsity,
    FilterSparsity,
    NMSparsity,
    Quantization,
    Sparsity,
)
from tf_admm.export import check_tflite, export_tflite, size_report, strip_tflite_names
from tf_admm.penalty import ADMMPenalty
from tf_admm.post_training import compress_post_training
from tf_admm.progressive import (
    ProgressiveCompressor,
    Stage,
    geometric_stages,
    stages_from_json,
    stages_to_json,
)
from tf_admm.prune import compress, prune_low_magnitude, quantize, strip_admm
from tf_admm.record import compression_record
from tf_admm.registry import register_compressible
from tf_admm.removal import shrink
from tf_admm.report import summary
from tf_admm.rho_scaling import scale_rho_by_gradient, scale_rho_by_size
from tf_admm.structured import allocate_channels, prune_channels
from tf_admm.updates import (
    find_wrappers,
    hard_project,
    initialize_admm,
    keep_zeros,
    update_admm,
)
from tf_admm.wrapper import ADMMWrapper

# The public API: the functions and classes users call. Submodules (tf_admm.projections,
# tf_admm.registry, tf_admm.progressive.stage, tf_admm.export.match, ...) stay importable for
# the advanced pieces, and ``from tf_admm import keras`` gives the selected Keras flavour, but
# neither is re-exported by ``from tf_admm import *``.
__all__ = [
    "ADMMPenalty",
    "ADMMWrapper",
    "BlockSparsity",
    "ChannelSparsity",
    "FilterSparsity",
    "NMSparsity",
    "ProgressiveCompressor",
    "Quantization",
    "Sparsity",
    "Stage",
    "UpdateADMM",
    "__version__",
    "allocate_channels",
    "allocate_sparsity",
    "allocation_table",
    "channel_groups",
    "check_tflite",
    "compress",
    "compress_post_training",
    "compression_record",
    "export_tflite",
    "find_wrappers",
    "geometric_stages",
    "hard_project",
    "initialize_admm",
    "keep_zeros",
    "prune_channels",
    "prune_low_magnitude",
    "quantize",
    "register_compressible",
    "scale_rho_by_gradient",
    "scale_rho_by_size",
    "shrink",
    "size_report",
    "stages_from_json",
    "stages_to_json",
    "strip_admm",
    "strip_tflite_names",
    "summary",
    "update_admm",
]
