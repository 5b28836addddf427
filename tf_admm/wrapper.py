"""The layer wrapper that holds the ADMM state of one compressible layer.

For every constrained weight W of the wrapped layer it creates, in ``build()``, non-trainable
variables Z (the projected copy), U (the scaled dual) and a mask (and the ramp's support under
a schedule with ``pull="target"``); per layer it keeps rho, a step counter (-1 until ADMM is
initialized), an epoch counter, the number of Z/U updates made, the mode (0: ADMM, 1: masked
retraining after :func:`tf_admm.hard_project`) and the steps of its schedule's ramp, fixed
when ADMM starts, and its :mod:`schedule <tf_admm.schedules>`: a saved model can resume.

In ADMM mode the wrapper adds ``rho/2 * ||W - Z + U||^2`` to the training loss through
:class:`tf_admm.ADMMPenalty`. Before every forward pass it writes ``W * mask`` into the stored
weight; the mask is all ones until :func:`tf_admm.hard_project`, after which pruned weights are
exactly zero whatever the optimizer did.

For a :class:`tf_admm.Quantization` constraint the wrapper also holds one scale variable per
weight (per output channel or per tensor). After :func:`tf_admm.hard_project` it retrains with a
straight-through estimator that needs no change to the inner layer: the latent float weight is
``W + U``; each forward pass writes its quantization ``Q(W + U)`` into W and the remainder into
U, so the optimizer's step on W moves the latent weight and W is always on the levels.

>>> import numpy as np, tf_admm
>>> from tf_admm import keras
>>> layer = tf_admm.ADMMWrapper(keras.layers.Dense(4), tf_admm.Sparsity(0.5))
>>> layer(np.ones((1, 3), "float32")).shape
TensorShape([1, 4])
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import tensorflow as tf

from tf_admm import constraints as constraints_lib
from tf_admm import penalty as penalty_lib
from tf_admm import quantizers, registry
from tf_admm import schedules as schedules_lib
from tf_admm._keras import LEGACY, aggregation, keras, register
from tf_admm.layouts import OnLayout
from tf_admm.penalty import ADMMPenalty
from tf_admm.validation import check_positive

__all__ = ["MODE_ADMM", "MODE_MASKED", "MODE_STRIPPED", "ADMMWrapper"]

MODE_ADMM = 0
MODE_MASKED = 1
MODE_STRIPPED = 2  # strip_admm(model, in_place=True): the inner layer's weights are final

NOT_INITIALIZED_MESSAGE = (
    "tf_admm: this layer is wrapped for ADMM, but ADMM was never initialized. Add "
    "tf_admm.UpdateADMM() to the callbacks of fit() (the next fit with it rebuilds the train "
    "function that failed here), or call tf_admm.initialize_admm(model) before a custom "
    "training loop. No weight was changed."
)


def check_unwrapped(layer) -> None:
    """Raise ValueError when ``layer`` is an :class:`ADMMWrapper` already."""
    if isinstance(layer, ADMMWrapper):
        raise ValueError(f"Layer {layer.name!r} is already wrapped for ADMM; wrap it only once.")


def _check_channel_layer(layer) -> None:
    """A channel-group constraint takes the layers that hold a group's channels."""
    if not registry.holds_channels(layer):
        raise ValueError(
            "ChannelSparsity wraps layers that hold channels (Dense, Conv*, Conv*Transpose, "
            "SeparableConv*, DepthwiseConv* with depth_multiplier=1, BatchNormalization). "
            f"Received: {layer.name!r} of type {type(layer).__name__}"
        )


def _no_autocast() -> dict[str, Any]:
    return {"experimental_autocast": False} if LEGACY else {"autocast": False}


class _Slots:
    """Plain holder, deliberately not tracked by Keras: the variables in it are already owned
    (W by the inner layer, Z/U/mask by the wrapper through add_weight)."""

    def __init__(self):
        self.constrained, self.z, self.u, self.mask, self.scale = [], [], [], [], []
        self.support = []  # the ramp's support, under a schedule with pull="target"
        self.layouts = []
        self.trace_failed = False  # a training call raised NOT_INITIALIZED_MESSAGE


@register(package="tf_admm")
class ADMMWrapper(keras.layers.Wrapper):
    """Wraps a compressible layer and owns its ADMM state (Z, U, mask, rho, counters, mode).

    Args:
        layer: a compressible Keras layer (see :mod:`tf_admm.registry`).
        constraint: the set each constrained weight is projected onto: a float sparsity, a
            :class:`tf_admm.constraints.Constraint`, or its config dict.
        rho: initial ADMM penalty weight (> 0).
        penalty: the penalty object; defaults to :class:`tf_admm.ADMMPenalty`.
        rho_scale: this layer's multiplier on the whole rho schedule (> 0, default 1): ADMM
            starts at ``rho * rho_scale`` and every cap on rho (``rho_max``, ``rho_final``) is
            multiplied by it too, so the layers keep their ratios while rho grows. Set by
            :func:`tf_admm.scale_rho_by_gradient`.
        schedule: the :class:`tf_admm.schedules.ADMMSchedule` that
            :class:`tf_admm.UpdateADMM` follows for this layer (or its serialized dict);
            None: :func:`tf_admm.schedules.default_for` the constraint.

    Example:

    >>> import tf_admm
    >>> from tf_admm import keras
    >>> w = tf_admm.ADMMWrapper(keras.layers.Dense(8), 0.9, rho=1e-3)
    >>> w.get_config()["constraint"]
    {'class_name': 'Sparsity', 'config': {'sparsity': 0.9}}
    """

    def __init__(
        self,
        layer,
        constraint: Any,
        rho: float = 1e-3,
        penalty: ADMMPenalty | dict | None = None,
        rho_scale: float = 1.0,
        schedule: schedules_lib.ADMMSchedule | dict | None = None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "ADMMWrapper wraps a Keras layer. Received: "
                f"layer={layer!r} of type {type(layer).__name__}"
            )
        check_unwrapped(layer)
        constraint = constraints_lib.get(constraint)
        if constraint is not None and constraint.channel_level:
            _check_channel_layer(layer)
        else:
            registry.check_compressible(layer)
        if constraint is None:
            raise ValueError("ADMMWrapper needs a constraint. Received: constraint=None")
        rho = check_positive("rho", rho)
        rho_scale = check_positive("rho_scale", rho_scale)
        if isinstance(penalty, dict):
            penalty = penalty_lib.deserialize(penalty)
        schedule = schedules_lib.get(schedule) or schedules_lib.default_for(constraint)
        kwargs.setdefault("name", f"admm_{layer.name}")
        # The wrapper computes in the variables' dtype, so under mixed precision it reads and
        # writes W in float32; the inner layer still autocasts to its own compute dtype.
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(layer, **kwargs)
        self.constraint = constraint
        self.schedule = schedule
        self.rho_init = float(rho)
        self._rho_scale = float(rho_scale)  # until build; then the rho_scale variable
        self.rho_scale_var = None
        self.penalty = penalty or ADMMPenalty()
        self._accepts_training = "training" in inspect.signature(layer.call).parameters
        self._slots = _Slots()

    # -- state -------------------------------------------------------------------------------
    def build(self, input_shape=None):
        super().build(input_shape)
        if self.constraint.channel_level:
            weights, self._slots.layouts = registry.channel_weights(self.layer)
        else:
            weights = registry.compressible_weights(self.layer)
            self._slots.layouts = registry.weight_layouts(self.layer)
        if not weights:
            raise ValueError(f"Layer {self.layer.name!r} built no compressible weights.")
        for i, weight in enumerate(weights):
            dtype = tf.as_dtype(weight.dtype)
            if not dtype.is_floating:
                raise ValueError(
                    f"ADMM constrains float weights only. Received: {self.layer.name!r} weight "
                    f"{i} of dtype {dtype.name}; allowed: float16, bfloat16, float32, float64."
                )
            on_layout = self.constraint_for(i)
            on_layout.check_weight(tuple(weight.shape), self.layer.name)
            per_weight = [
                ("z", self._slots.z, "zeros"),
                ("u", self._slots.u, "zeros"),
                ("mask", self._slots.mask, "ones"),
            ]
            if self.pulls_target:  # the ramp's support, apart from Z's
                per_weight.append(("support", self._slots.support, "ones"))
            for kind, store, init in per_weight:
                store.append(
                    self.add_weight(
                        name=f"{kind}_{i}",
                        shape=tuple(weight.shape),
                        dtype=dtype.name,
                        initializer=init,
                        trainable=False,
                        aggregation=aggregation("only_first_replica"),
                        **_no_autocast(),
                    )
                )
            if self.constraint.quantizer is not None:
                self._slots.scale.append(
                    self.add_weight(
                        name=f"scale_{i}",
                        shape=on_layout.scale_shape(tuple(weight.shape)),
                        dtype=dtype.name,
                        initializer="ones",
                        trainable=False,
                        aggregation=aggregation("only_first_replica"),
                        **_no_autocast(),
                    )
                )
            self._slots.constrained.append(weight)
        scalar = {"shape": (), "trainable": False, "aggregation": aggregation("only_first_replica")}
        self.rho = self.add_weight(
            name="rho",
            dtype="float32",
            initializer=keras.initializers.Constant(self.initial_rho),
            **scalar,
            **_no_autocast(),
        )
        self.step = self.add_weight(
            name="step", dtype="int64", initializer=keras.initializers.Constant(-1), **scalar
        )
        self.epoch = self.add_weight(name="epoch", dtype="int64", initializer="zeros", **scalar)
        self.num_updates = self.add_weight(
            name="num_updates", dtype="int64", initializer="zeros", **scalar
        )
        self.mode = self.add_weight(name="mode", dtype="int32", initializer="zeros", **scalar)
        # a variable, so phase backups and checkpoints restore it with rho
        self.rho_scale_var = self.add_weight(
            name="rho_scale",
            dtype="float32",
            initializer=keras.initializers.Constant(self._rho_scale),
            **scalar,
            **_no_autocast(),
        )
        # the schedule's ramp in steps, fixed when ADMM starts (-1: not yet)
        self.ramp_steps = self.add_weight(
            name="ramp_steps", dtype="int64", initializer=keras.initializers.Constant(-1), **scalar
        )
        self.built = True

    def constraint_for(self, index: int, constraint: Any = None) -> OnLayout:
        """``constraint`` (default: the wrapper's) as it applies to constrained weight
        ``index``: through that weight's layout, so output channels are the layer's real
        filters (the second-to-last axis of a transposed conv kernel, ``in * multiplier`` of
        a depthwise kernel)."""
        return OnLayout(constraint or self.constraint, self._slots.layouts[index])

    @property
    def layouts(self) -> list:
        """Where each constrained weight keeps its output channels (:class:`Layout`)."""
        return self._slots.layouts

    @property
    def constrained(self) -> list:
        """The inner layer's variables that ADMM constrains (W)."""
        return self._slots.constrained

    @property
    def z_vars(self) -> list:
        """Z, the projections, one per constrained weight."""
        return self._slots.z

    @property
    def u_vars(self) -> list:
        """U, the scaled duals, one per constrained weight."""
        return self._slots.u

    @property
    def mask_vars(self) -> list:
        """The masks (1 kept, 0 pruned) enforced in masked mode."""
        return self._slots.mask

    @property
    def pulls_target(self) -> bool:
        """True when Z is projected onto the target while the forward pass's mask follows the
        ramp (a pruning constraint under a schedule with ``pull="target"``)."""
        return self.schedule.pull == "target" and self.constraint.quantizer is None

    @property
    def support_vars(self) -> list:
        """The ramp's support (1 kept, 0 masked while ADMM runs), one per constrained weight,
        when :attr:`pulls_target`; empty otherwise (Z's support is the ramp's)."""
        return self._slots.support

    @property
    def scale_vars(self) -> list:
        """The quantization scales (alpha, per channel or per tensor); empty when not quantizing.

        Fitted by :func:`tf_admm.hard_project`, then fixed during retraining."""
        return self._slots.scale

    @property
    def quantized(self) -> bool:
        """True when the constraint quantizes (the weights go onto levels, not only zeros)."""
        return self.constraint.quantizer is not None

    @property
    def rho_scale(self) -> float:
        """This layer's multiplier on the rho schedule (see the ``rho_scale`` argument)."""
        if self.rho_scale_var is not None:
            return float(tf.convert_to_tensor(self.rho_scale_var))
        return self._rho_scale

    @property
    def initial_rho(self) -> float:
        """The rho ADMM starts from: ``rho * rho_scale``."""
        return self.rho_init * self.rho_scale

    def set_rho_scale(self, rho_scale: float) -> None:
        """Set this layer's multiplier on the rho schedule (before ADMM starts).

        >>> import tf_admm
        >>> from tf_admm import keras
        >>> w = tf_admm.ADMMWrapper(keras.layers.Dense(8), 0.9, rho=1e-3)
        >>> w.set_rho_scale(2.0)
        >>> w.initial_rho
        0.002
        """
        rho_scale = check_positive("rho_scale", rho_scale)
        if self.initialized:
            raise ValueError(
                f"{self.name!r} has started ADMM (Z and U are set), so its rho schedule is "
                "fixed; set rho_scale before initialize_admm or the first fit. Received: "
                f"rho_scale={rho_scale!r}"
            )
        self._rho_scale = rho_scale
        if self.rho_scale_var is not None:
            self.rho_scale_var.assign(rho_scale)
            self.rho.assign(self.initial_rho)

    @property
    def trace_failed(self) -> bool:
        """True when a training call raised because ADMM was never initialized: the train
        function traced then must be built again (:class:`tf_admm.UpdateADMM` does)."""
        return self._slots.trace_failed

    def clear_trace_failed(self) -> None:
        self._slots.trace_failed = False

    @property
    def initialized(self) -> bool:
        """True once ADMM was initialized (Z = Proj(W), U = 0)."""
        return self.built and int(tf.convert_to_tensor(self.step)) >= 0

    @property
    def masked(self) -> bool:
        """True after hard_project: retraining with the mask enforced (or stripped in place)."""
        return self.built and int(tf.convert_to_tensor(self.mode)) in (MODE_MASKED, MODE_STRIPPED)

    @property
    def stripped(self) -> bool:
        """True after ``strip_admm(model, in_place=True)``: the wrapper only calls its layer."""
        return self.built and int(tf.convert_to_tensor(self.mode)) == MODE_STRIPPED

    def strip_in_place(self) -> None:
        """Write :meth:`compressed_weights` into the inner layer and make this wrapper a
        pass-through (no masks written, no penalty): what ``strip_admm(model, in_place=True)``
        does for every wrapper, the path for subclassed models."""
        for weight, value in zip(self.constrained, self.compressed_weights()):
            weight.assign(value)
        self.mode.assign(MODE_STRIPPED)

    @tf.autograph.experimental.do_not_convert
    def _state_outside_graph(self) -> tuple[int, int] | None:
        """``(step, mode)`` read outside any graph being traced (``tf.init_scope``), so a
        call can decide at trace time; None before build or in a TF1-style graph."""
        if not self.built:
            return None
        with tf.init_scope():
            if not tf.executing_eagerly():
                return None
            return int(tf.convert_to_tensor(self.step)), int(tf.convert_to_tensor(self.mode))

    # -- forward -----------------------------------------------------------------------------
    def _enforced(self, index: int, projected: tf.Tensor):
        """(new W, new U) for constrained weight ``index``; ``projected`` is a bool scalar."""
        weight, mask, u = self.constrained[index], self.mask_vars[index], self.u_vars[index]
        value = tf.convert_to_tensor(weight)
        m = tf.cast(tf.convert_to_tensor(mask), value.dtype)
        if not self.quantized:
            if self.schedule.masking == "ramp":
                m *= self._ramp_support(index, value.dtype)
            return value * m, None
        # Straight-through estimator without touching the inner layer: the latent float weight
        # is W + U. W holds its quantization Q(W + U) for the forward pass and U the rest, so
        # the optimizer's step on W moves the latent weight and the next call re-quantizes it.
        u_value = tf.convert_to_tensor(u)
        latent = value + u_value
        layout = self._slots.layouts[index]
        q = quantizers.quantize_tf(
            self.constraint.quantizer,
            layout.canonical_tf(latent),
            tf.convert_to_tensor(self.scale_vars[index]),
            layout.canonical_tf(m),
            nonzero=self.constraint.prune is not None,
        )
        q = layout.restore_tf(q, tuple(latent.shape))
        return tf.where(projected, q, value * m), tf.where(projected, (latent - q) * m, u_value)

    def _ramp_support(self, index: int, dtype) -> tf.Tensor:
        """The ramp's support while ADMM runs (the schedule's ``masking="ramp"``): Z's, or
        the support variable when :attr:`pulls_target`; ones before ADMM starts (Z not set)
        and after :func:`tf_admm.hard_project`."""
        if self.pulls_target:
            support = tf.cast(tf.convert_to_tensor(self.support_vars[index]), dtype)
        else:
            support = tf.cast(tf.not_equal(tf.convert_to_tensor(self.z_vars[index]), 0), dtype)
        running = tf.logical_and(
            tf.equal(tf.convert_to_tensor(self.mode), MODE_ADMM),
            tf.convert_to_tensor(self.step) >= 0,
        )
        return tf.where(running, support, tf.ones_like(support))

    def apply_masks(self) -> None:
        """Enforce the constraint on the stored weights: W * mask, and in masked mode for a
        quantizing constraint W = Q(W + U) (levels with the fixed scale), U = the remainder.

        A no-op in ADMM mode (masks all ones) unless an earlier stage left a mask in force.
        """
        # Unconditional: in ADMM mode this writes W (and U) back unchanged. (A tf.cond around
        # the assign breaks Keras 3's symbolic build under MirroredStrategy.)
        projected = tf.equal(tf.convert_to_tensor(self.mode), MODE_MASKED)
        for i, weight in enumerate(self.constrained):
            new_w, new_u = self._enforced(i, projected)
            weight.assign(tf.cast(new_w, weight.dtype))
            if new_u is not None:
                self.u_vars[i].assign(new_u)

    def compressed_weights(self) -> list[np.ndarray]:
        """The constrained weights as :func:`tf_admm.strip_admm` exports them (NumPy), without
        changing any variable: masked and on the levels in masked mode, W as it is before."""
        projected = tf.constant(self.masked)
        return [np.asarray(self._enforced(i, projected)[0]) for i in range(len(self.constrained))]

    def _penalty(self):
        rho = tf.convert_to_tensor(self.rho)
        total = tf.constant(0.0, tf.float32)
        for weight, z, u in zip(self.constrained, self.z_vars, self.u_vars):
            total += self.penalty(
                tf.convert_to_tensor(weight), tf.convert_to_tensor(z), tf.convert_to_tensor(u), rho
            )
        return total

    def call(self, inputs, *args, training=None, **kwargs):
        """``self.layer(inputs, *args, **kwargs)`` with the constraint enforced; further
        positional arguments (MultiHeadAttention's ``value``) pass through."""
        # Decided when the call is traced, from the variables read outside the graph: a
        # stripped wrapper's graph holds the inner layer's call only (converters see no
        # variable writes), and a training call before ADMM was initialized (fit without
        # UpdateADMM) raises before any weight changes; the in-graph assertion below stays as a
        # second guard (TF1-style graphs).
        state = self._state_outside_graph()
        training_call = training is not None and training is not False
        if self._accepts_training:
            kwargs["training"] = training
        if state is not None and state[1] == MODE_STRIPPED:
            return self.layer(inputs, *args, **kwargs)
        if training_call and state is not None and state[0] < 0 and state[1] == MODE_ADMM:
            # UpdateADMM reads this at the next train begin: the train function whose trace
            # stopped here must be built again (a retrace of it would create variables)
            self._slots.trace_failed = True
            raise ValueError(NOT_INITIALIZED_MESSAGE)
        mode = tf.convert_to_tensor(self.mode)
        self.apply_masks()
        if training_call:
            in_admm = tf.equal(mode, MODE_ADMM)
            tf.debugging.Assert(
                tf.logical_or(tf.logical_not(in_admm), tf.convert_to_tensor(self.step) >= 0),
                [NOT_INITIALIZED_MESSAGE],
            )
            loss = tf.cond(in_admm, self._penalty, lambda: tf.constant(0.0, tf.float32))
            if not isinstance(training, bool):
                loss *= tf.cast(training, tf.float32)
            self.add_loss(loss)
        return self.layer(inputs, *args, **kwargs)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return self.layer.compute_output_shape(input_shape, *args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        """Keras 3: the inner layer's output spec for all call arguments (a layer such as
        MultiHeadAttention needs its ``value`` too)."""
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # -- serialization -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "constraint": constraints_lib.serialize(self.constraint),
                "rho": self.rho_init,
                "rho_scale": self.rho_scale,
                "penalty": penalty_lib.serialize(self.penalty),
                "schedule": schedules_lib.serialize(self.schedule),
            }
        )
        return config
