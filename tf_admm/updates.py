"""The between-step ADMM operations on wrapped models: initialize, Z/U update, hard projection.

These run eagerly (outside the training graph, in cross-replica context under a distribution
strategy, so every replica receives the same values). The callback calls them; custom training
loops call them directly.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
>>> pruned = tf_admm.prune_low_magnitude(model, 0.5)
>>> tf_admm.initialize_admm(pruned)
>>> sorted(tf_admm.update_admm(pruned))
['admm_dual_residual', 'admm_primal_residual', 'admm_rho']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm._keras import flat_layers, is_model
from tf_admm.validation import check_bool, check_int, check_schedule
from tf_admm.wrapper import MODE_ADMM, MODE_MASKED, ADMMWrapper

__all__ = [
    "UpdateRule",
    "find_wrappers",
    "hard_project",
    "initialize_admm",
    "keep_zeros",
    "ramped_constraint",
    "update_admm",
]


def find_wrappers(model) -> list[ADMMWrapper]:
    """All ADMM wrappers in a layer, a list of layers or a model, nested models included."""
    found: dict[int, ADMMWrapper] = {}  # by id: a shared layer counts once

    def visit(obj):
        if isinstance(obj, (list, tuple)):  # lists of layers or models, nested too
            for item in obj:
                visit(item)
            return
        for layer in flat_layers(obj) if is_model(obj) else [obj]:
            if isinstance(layer, ADMMWrapper):
                found.setdefault(id(layer), layer)

    visit(model)
    return list(found.values())


def _check_strategy(caller: str) -> None:
    """Refuse the strategies tf_admm is not tested under, before any work is done."""
    strategy = tf.distribute.get_strategy()
    unsupported = (tf.distribute.TPUStrategy, tf.distribute.experimental.ParameterServerStrategy)
    if isinstance(strategy, unsupported):
        raise ValueError(
            f"{caller} does not support {type(strategy).__name__}: the Z/U updates run eagerly "
            "between steps and are tested with the default strategy, MirroredStrategy and "
            "MultiWorkerMirroredStrategy only. Received: "
            f"strategy={type(strategy).__name__}"
        )


def built_wrappers(model, caller: str) -> list[ADMMWrapper]:
    _check_strategy(caller)
    wrappers = find_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"{caller} found no ADMM-wrapped layer in {getattr(model, 'name', model)!r}. "
            "Wrap the model with tf_admm.prune_low_magnitude(...) first."
        )
    unbuilt = [w.name for w in wrappers if not w.built]
    if unbuilt:
        raise ValueError(
            f"{caller} needs built layers; these wrappers are not built yet: {unbuilt}. "
            "Call the model on data (or build it) first."
        )
    return wrappers


def to_numpy(variable) -> np.ndarray:
    """A variable's value as a NumPy array (any flavour's variable, inside a strategy too)."""
    return np.asarray(tf.convert_to_tensor(variable))


def ramped_constraint(wrapper: ADMMWrapper, ramp_steps: int):
    """The constraint Z is projected onto at the wrapper's current step under a gradual ramp.

    Over the first ``ramp_steps`` steps the sparsity rises on the cubic schedule of gradual
    magnitude pruning (Zhu and Gupta 2017): ``s(t) = s_f + (s_0 - s_f) * (1 - t / ramp_steps)
    ** 3``, from ``s_0``, the zeros already masked (an earlier stage's), to the target ``s_f``;
    then it stays at ``s_f``. A pruned :class:`tf_admm.Quantization` (``compress``) ramps its
    pruning and keeps its levels. Without a ramp (0), or for constraints without a free sparsity
    (n:m, quantization without pruning), the wrapper's constraint itself.
    """
    constraint = wrapper.constraint
    if not ramp_steps:
        return constraint
    step = max(int(tf.convert_to_tensor(wrapper.step)), 0)
    if step >= ramp_steps:
        return constraint
    masks = [to_numpy(m) for m in wrapper.mask_vars]
    start = 1.0 - sum(float(m.sum()) for m in masks) / sum(m.size for m in masks)
    final = constraint.sparsity
    if final <= start:
        return constraint
    now = final + (start - final) * (1.0 - step / ramp_steps) ** 3
    return constraint.at_sparsity(now)


def _channel_scores(model, wrappers: list, values):
    """The joint channel-group scores (:mod:`tf_admm.channel_admm`) of the channel-level
    wrappers among ``wrappers``; None when there are none."""
    if not any(w.constraint.channel_level for w in wrappers):
        return None
    from tf_admm.channel_admm import score_channels

    return score_channels(model, wrappers, values)


def _target_sparsity(wrapper) -> float:
    return wrapper.constraint.sparsity


@dataclasses.dataclass(frozen=True)
class Projections:
    """What one wrapper's constrained weights are projected onto now: ``z`` for Z (ADMM's
    pull) and ``support`` for the ramp's support variables (None when Z's support is the
    ramp's, i.e. unless the wrapper :attr:`~tf_admm.ADMMWrapper.pulls_target`)."""

    z: Any
    support: Any = None


def projections_now(model, wrappers: list, values, ramp_of: Callable) -> dict[int, Projections]:
    """``{id(wrapper): Projections}``: the ramped constraint (jointly by channel group where
    the wrapper is channel-level) for Z, or, for a wrapper that pulls towards the target,
    the target for Z and the ramped constraint for its support."""
    scores = _channel_scores(model, wrappers, values)  # scored once, kept at each sparsity
    ramped = target = {}
    if scores is not None:
        ramped = scores.keep(lambda w: ramped_constraint(w, ramp_of(w)).sparsity)
        if any(w.pulls_target for w in wrappers):
            target = scores.keep(_target_sparsity)
    out = {}
    for wrapper in wrappers:
        now = ramped.get(id(wrapper)) or ramped_constraint(wrapper, ramp_of(wrapper))
        if wrapper.pulls_target:
            out[id(wrapper)] = Projections(target.get(id(wrapper)) or wrapper.constraint, now)
        else:
            out[id(wrapper)] = Projections(now)
    return out


def check_ramp(ramp_steps) -> int:
    return check_int("ramp_steps", ramp_steps, 0)


def initialize_admm(model, *, ramp_steps: int = 0) -> None:
    """Z = Proj(W), U = 0, step = 0 for every wrapper not yet initialized; others untouched.

    With ``ramp_steps`` (see :func:`ramped_constraint`), Z starts at the sparsity the wrapper
    already has instead of at the target. Safe to call again: an initialized (or resumed) model
    keeps its state.
    """
    ramp_steps = check_ramp(ramp_steps)
    initialize_wrappers(model, built_wrappers(model, "initialize_admm"), lambda w: ramp_steps)


def initialize_wrappers(model, wrappers: list, ramp_of: Callable) -> None:
    """:func:`initialize_admm` of those of ``wrappers`` not yet initialized, each with its
    own ramp (``ramp_of(wrapper)`` steps)."""
    fresh = [w for w in wrappers if not w.initialized]
    now = projections_now(model, fresh, lambda w, i: to_numpy(w.constrained[i]), ramp_of)
    for wrapper in fresh:
        onto = now[id(wrapper)]
        for i, (weight, z, u) in enumerate(
            zip(wrapper.constrained, wrapper.z_vars, wrapper.u_vars)
        ):
            w_np = to_numpy(weight)
            z.assign(wrapper.constraint_for(i, onto.z).project(w_np))
            u.assign(tf.zeros_like(tf.convert_to_tensor(u)))
            if onto.support is not None:
                keep = wrapper.constraint_for(i, onto.support).mask(w_np)
                wrapper.support_vars[i].assign(keep.astype(w_np.dtype))
        wrapper.rho.assign(wrapper.initial_rho)
        wrapper.step.assign(0)


def primal_residual(wrappers: list[ADMMWrapper]) -> float:
    """||W - Z|| / ||W|| over the constrained weights of ``wrappers`` (Z as last updated)."""
    num = den = 0.0
    for wrapper in wrappers:
        for weight, z in zip(wrapper.constrained, wrapper.z_vars):
            w = tf.cast(tf.convert_to_tensor(weight), tf.float64)
            num += float(tf.reduce_sum(tf.square(w - tf.cast(tf.convert_to_tensor(z), tf.float64))))
            den += float(tf.reduce_sum(tf.square(w)))
    return float(np.sqrt(num / den)) if den else 0.0


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """What one Z/U update does to one wrapper: rho ``*= rho_growth`` up to ``rho_max`` (times
    the wrapper's ``rho_scale``), U rescaled when rho grows (``rescale_dual``), Z projected
    onto the ramped sparsity at the wrapper's step (``ramp_steps``, 0: the target).
    :class:`tf_admm.UpdateADMM` makes one per wrapper from its schedule."""

    rho_growth: float = 1.3
    rho_max: float = 1.0
    rescale_dual: bool = True
    ramp_steps: int = 0


def _zu_rest(v, w, z_old, z, scale):
    u_new = v - z  # = U + W - Z
    sums = tf.stack(
        [
            tf.reduce_sum(tf.square(tf.cast(z - z_old, tf.float32))),
            tf.reduce_sum(tf.square(tf.cast(w - z, tf.float32))),
            tf.reduce_sum(tf.square(tf.cast(w, tf.float32))),
        ]
    )
    return z, u_new * tf.cast(scale, u_new.dtype), sums


@tf.function(jit_compile=True, reduce_retracing=True)
def _zu_step(v, w, z_old, keep, scale):
    """Elementwise part of a Z/U update from V = W + U, fused by XLA: returns Z, scaled U and
    three sums of squares (||Z - Z_prev||^2, ||W - Z||^2, ||W||^2)."""
    return _zu_rest(v, w, z_old, tf.where(keep, v, tf.zeros_like(v)), scale)


@tf.function(jit_compile=True, reduce_retracing=True)
def _zu_step_projected(v, w, z_old, z, scale):
    """:func:`_zu_step` for a Z already projected (quantization: Z is not V times a mask)."""
    return _zu_rest(v, w, z_old, z, scale)


def update_admm(
    model,
    *,
    rho_growth: float = 1.3,
    rho_max: float = 1.0,
    rescale_dual: bool = True,
    ramp_steps: int = 0,
) -> dict[str, float]:
    """One ADMM Z/U update of every wrapper in ADMM mode; returns the residuals.

    Z <- Proj(W + U); U <- U + W - Z; then rho <- min(rho * rho_growth, rho_max * s), with s
    the wrapper's ``rho_scale`` (1 unless :func:`tf_admm.scale_rho_by_gradient` set it). With
    ``ramp_steps``, Proj is onto the sparsity of the gradual ramp at the wrapper's step
    (:func:`ramped_constraint`): ADMM's pull towards a mask that grows like gradual magnitude
    pruning's, instead of towards the final mask from the first step; a wrapper whose
    schedule has ``pull="target"`` keeps Z on its target and writes the ramped projection into
    its support variables (the mask of ``masking="ramp"``) instead. With
    ``rescale_dual`` (default), U is multiplied by rho_old / rho_new when rho grows, which keeps
    the unscaled dual rho * U unchanged (Boyd et al. 2011, sec. 3.4.1); ``False`` reproduces the
    authors' code, which does not rescale. Wrappers not yet initialized are initialized first.

    Returns ``admm_primal_residual`` = ||W - Z|| / ||W||, ``admm_dual_residual`` =
    ||rho (Z - Z_prev)|| over all wrapped weights, and ``admm_rho`` (largest rho after growth).
    """
    check_schedule(rho_growth, rho_max)
    rule = UpdateRule(
        float(rho_growth),
        float(rho_max),
        check_bool("rescale_dual", rescale_dual),
        check_ramp(ramp_steps),
    )
    return update_wrappers(model, built_wrappers(model, "update_admm"), lambda w: rule)


def update_wrappers(model, wrappers: list, rule_of: Callable) -> dict[str, float]:
    """:func:`update_admm` of those of ``wrappers`` in ADMM mode, each by its own
    :class:`UpdateRule` (``rule_of(wrapper)``)."""
    initialize_wrappers(model, wrappers, lambda w: rule_of(w).ramp_steps)
    primal_sq = weight_sq = dual_sq = 0.0
    rho_out = 0.0
    active = [w for w in wrappers if int(tf.convert_to_tensor(w.mode)) == MODE_ADMM]
    now = projections_now(
        model,
        active,
        lambda w, i: to_numpy(w.constrained[i]) + to_numpy(w.u_vars[i]),
        lambda w: rule_of(w).ramp_steps,
    )
    for wrapper in active:
        rule = rule_of(wrapper)
        rho = float(tf.convert_to_tensor(wrapper.rho))
        cap = rule.rho_max * wrapper.rho_scale
        rho_next = min(rho * rule.rho_growth, max(cap, rho))
        onto = now[id(wrapper)]
        scale_t = tf.constant(rho / rho_next if rule.rescale_dual else 1.0, tf.float32)
        for i, (weight, z, u) in enumerate(
            zip(wrapper.constrained, wrapper.z_vars, wrapper.u_vars)
        ):
            on_layout = wrapper.constraint_for(i, onto.z)
            w_t = tf.convert_to_tensor(weight)
            v_t = w_t + tf.convert_to_tensor(u)
            if onto.support is not None:
                keep_now = wrapper.constraint_for(i, onto.support).mask(np.asarray(v_t))
                wrapper.support_vars[i].assign(keep_now.astype(v_t.dtype.as_numpy_dtype))
            z_old = tf.convert_to_tensor(z)
            if wrapper.quantized:
                z_t = tf.convert_to_tensor(on_layout.project(np.asarray(v_t)))
                z_new, u_new, sums = _zu_step_projected(v_t, w_t, z_old, z_t, scale_t)
            else:
                keep = tf.convert_to_tensor(on_layout.mask(np.asarray(v_t)))
                z_new, u_new, sums = _zu_step(v_t, w_t, z_old, keep, scale_t)
            d_sq, p_sq, w_sq = (float(x) for x in np.asarray(sums))
            dual_sq += rho * rho * d_sq
            primal_sq += p_sq
            weight_sq += w_sq
            z.assign(z_new)
            u.assign(u_new)
        wrapper.rho.assign(rho_next)
        wrapper.num_updates.assign_add(1)
        rho_out = max(rho_out, rho_next)
    return {
        "admm_primal_residual": float(np.sqrt(primal_sq / weight_sq)) if weight_sq else 0.0,
        "admm_dual_residual": float(np.sqrt(dual_sq)),
        "admm_rho": rho_out,
    }


def hard_project(model) -> dict[str, float]:
    """Project W onto its constraint, fix the mask and switch every wrapper to masked retraining.

    Afterwards the forward pass and the stored weights keep pruned entries exactly zero; for a
    :class:`tf_admm.Quantization` constraint the scale is fitted once and fixed, W is set to its
    levels and the float remainder is kept in U as the latent weight of the straight-through
    retraining. Returns the sparsity reached per wrapper (fraction of constrained weights that
    are zero).

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> m = tf_admm.prune_low_magnitude(base, 0.75)
    >>> tf_admm.hard_project(m)
    {'admm_fc': 0.75}
    """
    wrappers = built_wrappers(model, "hard_project")
    scores = _channel_scores(model, wrappers, lambda w, i: to_numpy(w.constrained[i]))
    groups = {} if scores is None else scores.keep(_target_sparsity)
    result = {}
    for wrapper in wrappers:
        zeros = total = 0
        for i, (weight, mask, z) in enumerate(
            zip(wrapper.constrained, wrapper.mask_vars, wrapper.z_vars)
        ):
            w_np = to_numpy(weight)
            on_layout = wrapper.constraint_for(i, groups.get(id(wrapper)))
            if wrapper.quantized:
                scale, keep, projected = on_layout.fit(w_np)
                wrapper.scale_vars[i].assign(scale)
                wrapper.u_vars[i].assign((w_np - projected) * keep.astype(w_np.dtype))
            else:
                keep = on_layout.mask(w_np)
                projected = np.where(keep, w_np, np.zeros((), w_np.dtype))
            mask.assign(keep.astype(w_np.dtype))
            weight.assign(projected)
            z.assign(projected)
            zeros += int(projected.size - np.count_nonzero(projected))
            total += projected.size
        if not wrapper.initialized:
            wrapper.step.assign(0)
        wrapper.mode.assign(MODE_MASKED)
        result[wrapper.name] = zeros / total
    return result


def keep_zeros(model) -> None:
    """Mask every constrained weight that is zero already, so it stays zero from the start of
    ADMM: what a progressive step does with the weights an earlier step pruned. Call it on a
    freshly wrapped model, before training.

    >>> import numpy as np, tf_admm
    >>> from tf_admm import keras
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> base.layers[0].set_weights([np.eye(4, 2, dtype="float32"), np.zeros(2, "float32")])
    >>> wrapped = tf_admm.prune_low_magnitude(base, 0.5)
    >>> tf_admm.keep_zeros(wrapped)
    >>> int(np.asarray(wrapped.layers[0].mask_vars[0]).sum())
    2
    """
    for wrapper in built_wrappers(model, "keep_zeros"):
        for weight, mask in zip(wrapper.constrained, wrapper.mask_vars):
            values = to_numpy(weight)
            mask.assign((values != 0).astype(values.dtype))


def apply_masks(model) -> None:
    """Write W * mask into the stored weights of every wrapper in masked mode."""
    for wrapper in find_wrappers(model):
        if wrapper.built and wrapper.masked:
            wrapper.apply_masks()
