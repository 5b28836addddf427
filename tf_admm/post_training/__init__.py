"""Post-training compression: a trained model pruned or quantized from calibration data alone,
layer by layer with ADMM (no training run).

- :mod:`.calibration`: the calibration batches, checked against the model's inputs.
- :mod:`.linear_maps`: each supported layer as matrix products ``X @ W`` (im2col for convs).
- :mod:`.layerwise_admm`: the pure NumPy solver of ``min ||X W0 - X W||²`` over ``W`` in a set.
- :mod:`.walk`: the linear layers of a model, nested ones included, and their inputs.
- :mod:`.compress`: :func:`compress_post_training`, layer by layer through the model.
"""

from tf_admm.post_training import calibration, layerwise_admm, linear_maps, walk
from tf_admm.post_training.compress import compress_post_training

__all__ = ["calibration", "compress_post_training", "layerwise_admm", "linear_maps", "walk"]
