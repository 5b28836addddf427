"""Entry points in TFMOT's shape: wrap a model for ADMM pruning, and strip the wrappers again.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> model = keras.Sequential(
...     [keras.Input((16,)), keras.layers.Dense(8, name="a"), keras.layers.Dense(2, name="b")])
>>> pruned = tf_admm.prune_low_magnitude(model, {"a": 0.75})
>>> [type(l).__name__ for l in pruned.layers]
['ADMMWrapper', 'Dense']
>>> _ = tf_admm.hard_project(pruned)
>>> plain = tf_admm.strip_admm(pruned)
>>> float((plain.layers[0].kernel.numpy() == 0).mean())
0.75
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm import constraints as constraints_lib
from tf_admm import registry
from tf_admm import schedules as schedules_lib
from tf_admm._keras import (
    flat_layers,
    is_functional,
    is_keras_object,
    is_model,
    is_sequential,
    other_flavour_hint,
)
from tf_admm.cloning import built_copy, copy_with_weights, fresh_copy, rebuild
from tf_admm.layouts import OnLayout
from tf_admm.updates import find_wrappers
from tf_admm.validation import check_bool, check_model, check_positive, check_scheme
from tf_admm.wrapper import ADMMWrapper, check_unwrapped

__all__ = [
    "check_model_kind",
    "compress",
    "prune_low_magnitude",
    "quantize",
    "strip_admm",
    "target_resolver",
    "wrap_layers",
    "WrapOptions",
]

SparsitySpec = Any  # float | Constraint | dict[str, float | Constraint | None] | Callable
ScheduleSpec = Any  # ADMMSchedule | its config | dict[str, ADMMSchedule | None] | None


def check_model_kind(model, caller: str) -> None:
    if is_sequential(model) or is_functional(model):
        for layer in model.layers:
            if is_model(layer):
                check_model_kind(layer, caller)
        return
    raise ValueError(
        f"{caller} accepts Sequential and Functional models. Received: a subclassed model "
        f"{model.name!r} of type {type(model).__name__}, whose layers cannot be rebuilt from its "
        "config. Wrap its compressible layers yourself where you create them: "
        "`self.dense = tf_admm.prune_low_magnitude(keras.layers.Dense(...), 0.9)`; after "
        "training, tf_admm.strip_admm(model, in_place=True) makes it ready for export."
    )


def _resolver(spec: Any, layers: list, arg: str = "sparsity", convert: Callable | None = None):
    """Turn a per-layer argument (one value, a dict by layer name, or a callable) into
    layer -> object | None, converting every value with ``convert`` and validating it fully."""
    convert = convert or constraints_lib.get
    if isinstance(spec, dict):
        by_name = {layer.name: layer for layer in layers}
        unknown = sorted(set(spec) - set(by_name))
        if unknown:
            compressible = sorted(n for n, l in by_name.items() if registry.is_compressible(l))
            raise ValueError(
                f"{arg} names layers that do not exist: {unknown}. "
                f"Compressible layers of this model: {compressible}"
            )
        not_compressible = sorted(
            n for n in spec if spec[n] is not None and not registry.is_compressible(by_name[n])
        )
        if not_compressible:
            raise ValueError(f"{arg} names layers without compressible weights: {not_compressible}")
        table = {}
        for name, value in spec.items():
            try:
                table[name] = convert(value)
            except ValueError as err:
                raise ValueError(f"{arg}[{name!r}]: {err}") from None
        return lambda layer: table.get(layer.name)
    if callable(spec) and not isinstance(spec, constraints_lib.Constraint):
        table = {}
        for layer in layers:
            if registry.is_compressible(layer):
                try:
                    table[id(layer)] = convert(spec(layer))
                except ValueError as err:
                    raise ValueError(f"{arg}({layer.name!r}) returned a bad value: {err}") from None
        return lambda layer: table.get(id(layer))
    value = convert(spec)
    return lambda layer: value if registry.is_compressible(layer) else None


class WrapOptions:
    """What every wrapper of one call gets besides its constraint: rho and its schedule,
    checked before anything is created."""

    def __init__(self, rho: Any, schedule: ScheduleSpec):
        self.rho = check_positive("rho", rho)
        spec = schedules_lib.get_spec(schedule)
        self.by_name: dict[str, Any] | None = spec if isinstance(spec, dict) else None
        self.schedule = None if isinstance(spec, dict) else spec

    def check_names(self, wrapped: list[str], caller: str) -> None:
        """A schedule dict names only layers that are wrapped."""
        unknown = sorted(set(self.by_name or ()) - set(wrapped))
        if unknown:
            raise ValueError(
                f"{caller}: schedule names layers that are not wrapped: {unknown}. "
                f"Wrapped: {sorted(wrapped)}"
            )

    def wrap(self, layer, constraint):
        schedule = self.schedule if self.by_name is None else self.by_name.get(layer.name)
        return ADMMWrapper(layer, constraint, rho=self.rho, schedule=schedule)


def _check_weights(layer, constraint) -> None:
    """Checks on a built layer's weights, before anything is created."""
    if not layer.built:
        return
    layouts = registry.weight_layouts(layer)
    for weight, layout in zip(registry.compressible_weights(layer), layouts):
        dtype = tf.as_dtype(weight.dtype)
        if not dtype.is_floating:
            raise ValueError(
                f"ADMM constrains float weights only. Received: layer {layer.name!r} with a "
                f"weight of dtype {dtype.name}; allowed: floating dtypes."
            )
        OnLayout(constraint, layout).check_weight(tuple(weight.shape), layer.name)


def _own(layer):
    """The layer a wrapper may own: an unbuilt layer itself (inside a model definition), a copy
    with the same weights of a built one, so training the wrapper never changes the user's
    layer (as in ``keras.models.clone_model(model, clone_function=lambda l:
    tf_admm.prune_low_magnitude(l, 0.5))``)."""
    if not layer.built:
        return layer
    new = built_copy(layer)
    if not new.built:
        raise ValueError(
            f"Layer {layer.name!r} of type {type(layer).__name__} is built but records no build "
            "config, so it cannot be copied (a wrapper never trains the caller's own layer). "
            "Wrap the unbuilt layer where the model is defined, or wrap the whole model."
        )
    new.set_weights(layer.get_weights())
    return new


def prune_low_magnitude(
    to_prune,
    sparsity: SparsitySpec,
    *,
    rho: float = 1e-3,
    schedule: ScheduleSpec = None,
):
    """Wrap compressible layers for ADMM pruning (TFMOT-style entry point).

    Args:
        to_prune: a layer, a list of layers, or a built Sequential or Functional model (nested
            models included). Models are cloned: the result is a new model and the user's model
            and its weights stay untouched. An unbuilt layer is wrapped itself (use this form
            inside a model definition or a subclassed model); a built layer is copied with its
            weights first, so ``keras.models.clone_model(model, clone_function=lambda l:
            tf_admm.prune_low_magnitude(l, 0.5))`` leaves ``model`` untouched too.
        sparsity: target per compressible layer: a float in [0, 1) or a constraint
            (e.g. ``tf_admm.BlockSparsity(0.9, (1, 4))``) for every compressible layer; a dict
            layer name -> float / constraint / None (unnamed layers stay unwrapped); or a callable
            layer -> float / constraint / None.
        rho: initial ADMM penalty weight.
        schedule: the ADMM schedule the wrappers keep
            (:class:`tf_admm.schedules.Gradual`, :class:`tf_admm.schedules.OneShot`), one for
            every wrapped layer or a dict layer name -> schedule; None (or a layer left out of
            the dict): :func:`tf_admm.schedules.default_for` its constraint (gradual for
            pruning).

    Returns:
        The wrapped layer, list of layers, or a new model.

    Raises:
        ValueError: on bad input, before anything is created.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> wrapped = tf_admm.prune_low_magnitude(keras.layers.Dense(4), 0.9)
    >>> type(wrapped).__name__
    'ADMMWrapper'
    """
    if sparsity is None:
        raise ValueError(
            "prune_low_magnitude needs a target. Received: sparsity=None; allowed: a float in "
            "[0, 1), a constraint, a dict layer name -> either, or a callable."
        )
    return wrap_layers(
        to_prune,
        lambda layers: _resolver(sparsity, layers),
        WrapOptions(rho, schedule),
        "prune_low_magnitude",
    )


BitsSpec = Any  # int | str | Quantization | dict[str, ...] | Callable


def _bits_converter(scheme: str, per_channel: bool, sparsity: Any = None) -> Callable:
    def convert(bits):
        if bits is None:
            return None
        if isinstance(bits, constraints_lib.Quantization):
            return bits
        if isinstance(bits, dict) and "class_name" in bits:
            return constraints_lib.get(bits)
        return constraints_lib.Quantization(
            bits, scheme=scheme, per_channel=per_channel, sparsity=sparsity
        )

    return convert


def _check_quant_options(scheme: Any, per_channel: Any) -> None:
    check_scheme(scheme)
    check_bool("per_channel", per_channel)


def quantize(
    to_quantize,
    bits: BitsSpec,
    *,
    scheme: str = "uniform",
    per_channel: bool = True,
    rho: float = 1e-3,
    schedule: ScheduleSpec = None,
):
    """Wrap compressible layers for ADMM quantization (same wrapper, callback and strip).

    Args:
        to_quantize: a layer, a list of layers, or a built Sequential or Functional model
            (cloned; the original stays untouched).
        bits: per compressible layer: an int 2..8, ``"ternary"``, ``"binary"`` or a
            :class:`tf_admm.Quantization`; a dict layer name -> bits / None; or a callable
            layer -> bits / None (mixed precision per layer).
        scheme: ``"uniform"`` (levels ``alpha * {-(2^(b-1)-1), ..., 2^(b-1)-1}``) or
            ``"power_of_two"``; ``bits="binary"`` implies binary.
        per_channel: one scale per output channel (default) or per tensor.
        rho: initial ADMM penalty weight.
        schedule: as in :func:`prune_low_magnitude` (default one-shot for quantization).

    After ADMM and :func:`tf_admm.hard_project`, retraining keeps the weights on the levels
    (straight-through estimator); :func:`tf_admm.strip_admm` then returns them exactly.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> q = tf_admm.quantize(base, "ternary")
    >>> _ = tf_admm.hard_project(q)
    >>> import numpy as np
    >>> [len(np.unique(c)) <= 3 for c in tf_admm.strip_admm(q).layers[0].kernel.numpy().T]
    [True, True, True, True]
    """
    _check_quant_options(scheme, per_channel)
    convert = _bits_converter(scheme, per_channel)
    resolve = lambda layers: _resolver(bits, layers, "bits", convert)  # noqa: E731
    return wrap_layers(to_quantize, resolve, WrapOptions(rho, schedule), "quantize")


def compress(
    to_compress,
    *,
    sparsity: SparsitySpec = None,
    bits: BitsSpec = None,
    scheme: str = "uniform",
    per_channel: bool = True,
    rho: float = 1e-3,
    schedule: ScheduleSpec = None,
):
    """Wrap layers for pruning and quantization at once: top-k first, survivors onto nonzero
    levels. ``sparsity`` and ``bits`` take the forms of :func:`prune_low_magnitude` and
    :func:`quantize` (one value, a dict by layer name, or a callable); a layer with only one of
    them gets only that constraint. ``rho`` and ``schedule`` as in
    :func:`prune_low_magnitude`.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> m = tf_admm.compress(base, sparsity=0.75, bits=3)
    >>> m.layers[0].constraint
    Quantization(bits=3, scheme='uniform', per_channel=True, sparsity={'class_name': 'Sparsity', \
'config': {'sparsity': 0.75}})
    >>> tf_admm.hard_project(m)
    {'admm_fc': 0.75}
    """
    if sparsity is None and bits is None:
        raise ValueError("compress needs sparsity=..., bits=... or both. Received neither.")
    resolve = target_resolver(sparsity, bits, scheme, per_channel)
    return wrap_layers(to_compress, resolve, WrapOptions(rho, schedule), "compress")


def target_resolver(
    sparsity: SparsitySpec, bits: BitsSpec, scheme: str, per_channel: bool
) -> Callable:
    """``layers -> (layer -> constraint | None)`` for :func:`compress`'s ``sparsity`` and
    ``bits`` (either may be None): every value converted and checked when given the layers,
    a layer with both getting a :class:`tf_admm.Quantization` that prunes first."""
    _check_quant_options(scheme, per_channel)

    def resolve_both(layers):
        by_sparsity = _resolver(sparsity, layers, "sparsity", _sparsity_only)
        by_bits = _resolver(bits, layers, "bits", _bits_converter(scheme, per_channel))

        def resolve(layer):
            prune, quant = by_sparsity(layer), by_bits(layer)
            if quant is None or prune is None:
                return quant or prune
            if quant.prune is not None:
                raise ValueError(
                    f"Layer {layer.name!r} gets a sparsity twice: from sparsity= and inside "
                    f"its Quantization {quant!r}."
                )
            config = quant.get_config()
            config["sparsity"] = prune
            return constraints_lib.Quantization(**config)

        return resolve

    return resolve_both


def _sparsity_only(value):
    constraint = constraints_lib.get(value)
    if isinstance(constraint, constraints_lib.Quantization):
        raise ValueError(f"sparsity= takes sparsity constraints. Received: {constraint!r}")
    return constraint


def wrap_layers(to_prune, make_resolver: Callable, options: WrapOptions, caller: str):
    """Shared body of the entry points: ``make_resolver(layers)`` gives layer -> constraint."""
    if isinstance(to_prune, (list, tuple)):
        for layer in to_prune:
            if not is_keras_object(layer) or is_model(layer):
                raise ValueError(
                    f"A list given to {caller} must hold layers. Received: "
                    f"{layer!r} of type {type(layer).__name__}. {other_flavour_hint()}"
                )
        resolve = make_resolver(list(to_prune))
        plan = [_plan_layer(layer, resolve) for layer in to_prune]
        options.check_names([l.name for l, c in plan if c is not None], caller)
        return [options.wrap(_own(l), c) if c is not None else l for l, c in plan]
    if not is_keras_object(to_prune):
        raise ValueError(
            f"{caller} takes a Keras layer, a list of layers or a model. Received: "
            f"{to_prune!r} of type {type(to_prune).__name__}. {other_flavour_hint()}"
        )
    if not is_model(to_prune):
        check_unwrapped(to_prune)
        registry.check_compressible(to_prune)
        layer, constraint = _plan_layer(to_prune, make_resolver([to_prune]))
        if constraint is None:
            raise ValueError(f"{caller}: no target for layer {layer.name!r}.")
        options.check_names([layer.name], caller)
        return options.wrap(_own(layer), constraint)

    model = to_prune
    check_model_kind(model, caller)
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Model {model.name!r} is not built. Build it first: give it a keras.Input, or call "
            "it on a batch of data."
        )
    layers = flat_layers(model)
    wrapped_already = [l.name for l in layers if isinstance(l, ADMMWrapper)]
    if wrapped_already:
        raise ValueError(
            f"Model {model.name!r} already has ADMM-wrapped layers: {wrapped_already}. "
            "Strip them first with tf_admm.strip_admm(model)."
        )
    resolve = make_resolver(layers)
    targets = {id(l): c for l, c in (_plan_layer(l, resolve) for l in layers)}
    if not any(c is not None for c in targets.values()):
        raise ValueError(
            f"{caller}: the targets select no compressible layer of model {model.name!r}; "
            "nothing to wrap."
        )
    options.check_names([l.name for l in layers if targets.get(id(l)) is not None], caller)
    _warn_dense_layers(layers, caller)

    def replace(layer):
        constraint = targets.get(id(layer))
        if constraint is None:
            return copy_with_weights(layer)
        wrapper = options.wrap(built_copy(layer), constraint)
        return wrapper, lambda new: new.layer.set_weights(layer.get_weights())

    return rebuild(model, replace)


def _warn_dense_layers(layers: list, caller: str) -> None:
    """One warning naming the layers with matrix weights that no constraint reaches (a user
    layer without get_prunable_weights(), tf_keras's MultiHeadAttention, ...): they stay dense
    whatever the target says."""
    dense = [
        f"{l.name} ({type(l).__name__})"
        for l in layers
        if not is_model(l)
        and not registry.is_compressible(l)
        and any(len(w.shape) >= 2 for w in l.weights)
    ]
    if dense:
        warnings.warn(
            f"{caller}: these layers have weight matrices that tf_admm does not compress; they "
            f"stay dense: {', '.join(dense)}. Give them get_prunable_weights() to include them.",
            stacklevel=3,
        )


def _plan_layer(layer, resolve):
    check_unwrapped(layer)
    constraint = resolve(layer)
    if constraint is not None and not constraint.channel_level:
        registry.check_compressible(layer)
        _check_weights(layer, constraint)
    return layer, constraint


def strip_admm(model, *, in_place: bool = False):
    """A plain Keras model of the original architecture with the compressed weights.

    Wrappers in masked mode contribute ``W * mask`` (exact zeros); wrappers still in ADMM mode
    contribute W as it is (call :func:`tf_admm.hard_project` first to make it sparse). Its
    predictions equal the wrapped model's. The wrapped model is left untouched.

    Args:
        model: a wrapped Sequential or Functional model (nested models too), or, with
            ``in_place=True``, any model, subclassed ones included.
        in_place: instead of a new model, write the compressed weights into each wrapped
            layer of ``model`` and make its wrappers pass-through layers (no masks, no
            penalty; :attr:`tf_admm.ADMMWrapper.stripped`). This is the path for subclassed
            models, whose layers cannot be rebuilt from a config; the model is then ready for
            :func:`tf_admm.export_tflite`, :func:`tf_admm.summary` and
            :func:`tf_admm.size_report`. Returns ``model``.

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> m = tf_admm.prune_low_magnitude(base, 0.5)
    >>> [type(l).__name__ for l in tf_admm.strip_admm(m).layers]
    ['Dense']
    """
    check_model("strip_admm", model)
    if not isinstance(in_place, bool):
        raise ValueError(f"in_place must be True or False. Received: in_place={in_place!r}")
    if not in_place:
        check_model_kind(model, "strip_admm")
    pending = [w.name for w in find_wrappers(model) if w.built and not w.masked]
    if pending:
        warnings.warn(
            f"strip_admm: wrappers {pending} are still in their ADMM phase; their weights are "
            "exported dense. Call tf_admm.hard_project(model) first for the compressed model.",
            stacklevel=2,
        )
    if in_place:
        unbuilt = [w.name for w in find_wrappers(model) if not w.built]
        if unbuilt:
            raise ValueError(
                f"strip_admm(in_place=True): wrappers {unbuilt} are not built; call the model "
                "on data first."
            )
        for wrapper in find_wrappers(model):
            wrapper.strip_in_place()
        return model

    def replace(layer):
        if not isinstance(layer, ADMMWrapper):
            return copy_with_weights(layer)

        def copy(new, wrapper=layer):
            pairs = zip(wrapper.constrained, wrapper.compressed_weights())
            compressed = {id(w): v for w, v in pairs}
            values = [
                compressed[id(var)] if id(var) in compressed else np.asarray(var)
                for var in wrapper.layer.weights
            ]
            new.set_weights(values)

        return fresh_copy(layer.layer), copy

    return rebuild(model, replace)
