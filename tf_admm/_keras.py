"""The one place that chooses between Keras 3 and tf_keras.

``TF_USE_LEGACY_KERAS=1`` (the switch TensorFlow itself reads) selects tf_keras; anything else
selects Keras 3 with the TensorFlow backend. Every other module imports ``keras`` from here and
uses only public Keras API, so one source serves both flavours.
"""

from __future__ import annotations

import os

import tensorflow as tf

LEGACY: bool = os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes")

if LEGACY:
    try:
        import tf_keras as keras
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TF_USE_LEGACY_KERAS=1 asks tf_admm to use tf_keras, which is not installed. "
            "Install it (`pip install tf_keras`, or the [tfmot] extra of tf_admm) or unset "
            "TF_USE_LEGACY_KERAS."
        ) from err
else:
    _backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if _backend != "tensorflow":  # before importing Keras, whose other backends may be missing
        raise ImportError(
            "tf_admm runs on the TensorFlow backend of Keras 3. "
            f"Received: KERAS_BACKEND={_backend!r}; allowed: 'tensorflow' (or unset)."
        )
    import keras

    if not keras.__version__.startswith("3."):  # pragma: no cover
        raise ImportError(f"tf_admm needs Keras 3 or tf_keras; found keras=={keras.__version__}.")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover - set in ~/.keras/keras.json
        raise ImportError(
            "tf_admm runs on the TensorFlow backend of Keras 3. "
            f"Received: KERAS_BACKEND={keras.backend.backend()!r}; allowed: 'tensorflow'."
        )

register = keras.utils.register_keras_serializable


def aggregation(name: str):
    """Variable aggregation by name ("none", "mean", "only_first_replica") for add_weight."""
    if LEGACY:
        return {
            "none": tf.VariableAggregation.NONE,
            "mean": tf.VariableAggregation.MEAN,
            "only_first_replica": tf.VariableAggregation.ONLY_FIRST_REPLICA,
        }[name]
    return name


def is_model(obj) -> bool:
    return isinstance(obj, keras.Model)


def flat_layers(model) -> list:
    """The layers of ``model`` in order, nested models replaced by their own layers: the one
    walk of a model that the helpers finding wrappers or compressible layers filter."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if is_model(layer) else [layer])
    return out


def is_sequential(obj) -> bool:
    return isinstance(obj, keras.Sequential)


def is_functional(obj) -> bool:
    """A Functional model (graph of layers): its config lists layers and input layers."""
    if not is_model(obj) or is_sequential(obj):
        return False
    try:
        config = obj.get_config()
    except NotImplementedError:
        return False
    return isinstance(config, dict) and "layers" in config and "input_layers" in config


def is_keras_object(obj) -> bool:
    """True for layers of the selected flavour, so a tf_keras model is refused under Keras 3."""
    return isinstance(obj, keras.layers.Layer)


def other_flavour_hint() -> str:
    if LEGACY:
        return "tf_admm is using tf_keras (TF_USE_LEGACY_KERAS=1); pass a tf_keras object."
    return (
        "tf_admm is using Keras 3; pass a Keras 3 object, or set TF_USE_LEGACY_KERAS=1 "
        "before importing tf_admm to work with tf_keras models."
    )
