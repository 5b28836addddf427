import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, small_cnn, small_data, to_np, wrappers

import tf_admm
from tf_admm import keras, projections, registry
from tf_admm._keras import LEGACY

L = keras.layers

# input shape and constructor kwargs for every class in the registry
_CASES = {
    "Dense": ((8,), {"units": 6}),
    "Conv1D": ((8, 3), {"filters": 4, "kernel_size": 3}),
    "Conv2D": ((8, 8, 3), {"filters": 4, "kernel_size": 3}),
    "Conv3D": ((4, 4, 4, 2), {"filters": 4, "kernel_size": 2}),
    "Conv1DTranspose": ((8, 3), {"filters": 4, "kernel_size": 3}),
    "Conv2DTranspose": ((6, 6, 3), {"filters": 4, "kernel_size": 3}),
    "Conv3DTranspose": ((3, 3, 3, 2), {"filters": 4, "kernel_size": 2}),
    "DepthwiseConv1D": ((8, 4), {"kernel_size": 3, "depth_multiplier": 2}),
    "DepthwiseConv2D": ((8, 8, 4), {"kernel_size": 3, "depth_multiplier": 2}),
    "SeparableConv1D": ((8, 4), {"filters": 6, "kernel_size": 3}),
    "SeparableConv2D": ((8, 8, 4), {"filters": 6, "kernel_size": 3}),
    "Embedding": ((5,), {"input_dim": 20, "output_dim": 8}),
}
REGISTERED = [cls.__name__ for cls, _ in registry._WEIGHT_ATTRS]


def test_every_registered_class_has_a_case():
    assert sorted(REGISTERED) == sorted(_CASES)


@pytest.mark.parametrize("class_name", REGISTERED)
def test_each_compressible_layer_prunes_exactly_and_strips(class_name):
    shape, kwargs = _CASES[class_name]
    inputs = keras.Input(shape, dtype="int32" if class_name == "Embedding" else "float32")
    outputs = getattr(L, class_name)(name="target", **kwargs)(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (4, *shape)) if class_name == "Embedding" else rng.random((4, *shape))
    wrapped = tf_admm.prune_low_magnitude(model, 0.6)
    tf_admm.initialize_admm(wrapped)
    tf_admm.update_admm(wrapped)
    tf_admm.hard_project(wrapped)
    (w,) = wrappers(wrapped)
    expected_weights = 2 if class_name.startswith("Separable") else 1
    assert len(w.constrained) == expected_weights
    for weight in w.constrained:
        values = to_np(weight)
        assert np.count_nonzero(values) == projections.keep_count(values.size, 0.6)
    plain = tf_admm.strip_admm(wrapped)
    assert not wrappers(plain)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), wrapped.predict(x, verbose=0))


def test_user_model_and_weights_are_untouched():
    model = small_cnn()
    before = [w.copy() for w in model.get_weights()]
    wrapped = tf_admm.prune_low_magnitude(model, 0.8)
    compile_model(wrapped)
    x, y = small_data()
    wrapped.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(wrapped)
    assert [type(l).__name__ for l in model.layers] == [
        "InputLayer",
        "Conv2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_model_compiled_with_an_unregistered_loss_is_wrapped_and_stripped():
    # Keras 3's clone_model compiles the copy from the compile config, which cannot name a
    # plain function: wrapping and stripping such a model used to raise a TypeError
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def my_loss(y_true, y_pred):
        return cross_entropy(y_true, y_pred)

    model = small_cnn()
    model.compile(keras.optimizers.SGD(0.05), my_loss)
    if LEGACY:  # tf_keras never compiles a clone: nothing to warn about
        wrapped = tf_admm.prune_low_magnitude(model, 0.8)
    else:
        with pytest.warns(UserWarning, match="returned uncompiled.*my_loss"):
            wrapped = tf_admm.prune_low_magnitude(model, 0.8)
        assert model.compiled and not wrapped.compiled  # the user's model keeps its compile
    assert model.loss is my_loss
    wrapped.compile(keras.optimizers.SGD(0.05), my_loss)
    x, y = small_data()
    wrapped.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(wrapped)
    if LEGACY:
        stripped = tf_admm.strip_admm(wrapped)
    else:
        with pytest.warns(UserWarning, match="returned uncompiled"):
            stripped = tf_admm.strip_admm(wrapped)
    np.testing.assert_allclose(to_np(stripped(x)), to_np(wrapped(x)), atol=1e-5)


@pytest.mark.skipif(LEGACY, reason="tf_keras never compiles a clone")
def test_a_model_compiled_with_a_registered_loss_gives_a_compiled_copy():
    model = small_cnn()
    compile_model(model)
    wrapped = tf_admm.prune_low_magnitude(model, 0.8)
    assert wrapped.compiled and model.compiled
    assert wrapped.get_compile_config()["loss"] == model.get_compile_config()["loss"]
    x, y = small_data()
    wrapped.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])  # no compile


def test_wrapped_model_starts_with_the_user_weights():
    model = small_cnn()
    x, _ = small_data(8)
    wrapped = tf_admm.prune_low_magnitude(model, 0.5)
    np.testing.assert_allclose(
        wrapped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_sequential_dict_callable_and_nested():
    seq = keras.Sequential(
        [keras.Input((10,)), L.Dense(8, name="a"), L.ReLU(), L.Dense(4, name="b")], name="seq"
    )
    by_dict = tf_admm.prune_low_magnitude(seq, {"a": 0.5})
    assert [type(l).__name__ for l in by_dict.layers] == ["ADMMWrapper", "ReLU", "Dense"]
    by_fn = tf_admm.prune_low_magnitude(seq, lambda l: 0.9 if l.name == "b" else None)
    assert [type(l).__name__ for l in by_fn.layers] == ["Dense", "ReLU", "ADMMWrapper"]

    inputs = keras.Input((10,))
    outer = keras.Model(inputs, L.Dense(2, name="head")(seq(inputs)), name="outer")
    nested = tf_admm.prune_low_magnitude(outer, {"a": 0.5, "head": 0.5})
    assert sorted(w.layer.name for w in wrappers(nested)) == ["a", "head"]
    x = np.random.default_rng(0).random((3, 10)).astype("float32")
    np.testing.assert_allclose(nested.predict(x, verbose=0), outer.predict(x, verbose=0), atol=1e-6)
    tf_admm.hard_project(nested)
    plain = tf_admm.strip_admm(nested)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), nested.predict(x, verbose=0))
    assert np.count_nonzero(to_np(plain.get_layer("seq").get_layer("a").kernel)) == 40


def test_layer_and_list_of_layers_are_wrapped_in_place():
    dense = L.Dense(4)
    wrapped = tf_admm.prune_low_magnitude(dense, 0.5)
    assert isinstance(wrapped, tf_admm.ADMMWrapper) and wrapped.layer is dense
    out = tf_admm.prune_low_magnitude([L.Dense(3), L.ReLU(), L.Conv2D(2, 3)], 0.5)
    assert [type(l).__name__ for l in out] == ["ADMMWrapper", "ReLU", "ADMMWrapper"]
    model = keras.Sequential([keras.Input((6,)), wrapped])
    compile_model(model)
    model.fit(np.ones((4, 6)), np.zeros(4), epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])


class _Prunable(L.Layer):
    """A custom layer following TFMOT's PrunableLayer protocol (duck typed)."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 5))

    def call(self, x):
        return tf.cast(x, self.w.dtype) @ self.w

    def get_prunable_weights(self):
        return [self.w]


def test_get_prunable_weights_protocol():
    model = keras.Sequential([keras.Input((20,)), _Prunable(name="custom")])
    wrapped = tf_admm.prune_low_magnitude(model, 0.9)
    tf_admm.hard_project(wrapped)
    assert np.count_nonzero(to_np(wrappers(wrapped)[0].constrained[0])) == 10


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(3)

    def call(self, x):
        return self.dense(x)


def _bad_cases():
    def unbuilt():
        return keras.Sequential([L.Dense(3)]), 0.5

    def int_weights():
        return keras.Sequential([keras.Input((4,)), _Prunable(dtype="int32")]), 0.5

    def subclassed():
        m = _Subclassed()
        m(np.ones((1, 4)))
        return m, 0.5

    return [
        (lambda: (small_cnn(), 1.0), r"sparsity must be in \[0, 1\). Received: sparsity=1.0"),
        (lambda: (small_cnn(), -0.2), r"Received: sparsity=-0.2"),
        (lambda: (small_cnn(), {"nope": 0.5}), r"do not exist: \['nope'\].*'conv', 'hidden'"),
        (lambda: (small_cnn(), {"flatten": 0.5}), r"without compressible weights: \['flatten'\]"),
        (lambda: (small_cnn(), {"hidden": "x"}), r"Received: 'x' of type str"),
        (unbuilt, r"is not built"),
        (int_weights, r"float weights only. Received: .*int32"),
        (subclassed, r"subclassed model.*tf_admm.prune_low_magnitude\(keras.layers.Dense"),
        (lambda: (np.ones(3), 0.5), r"takes a Keras layer.*Received: .*ndarray"),
        (lambda: (L.BatchNormalization(), 0.5), r"no compressible weights"),
    ]


@pytest.mark.parametrize("make, message", _bad_cases())
def test_bad_input_raises_before_any_change(make, message):
    model, sparsity = make()
    layers_before = list(getattr(model, "layers", []))
    with pytest.raises(ValueError, match=message):
        tf_admm.prune_low_magnitude(model, sparsity)
    assert list(getattr(model, "layers", [])) == layers_before
    if hasattr(model, "layers"):
        assert not wrappers(model)


def test_already_wrapped_and_bad_rho():
    wrapped = tf_admm.prune_low_magnitude(small_cnn(), 0.5)
    with pytest.raises(ValueError, match="already has ADMM-wrapped layers"):
        tf_admm.prune_low_magnitude(wrapped, 0.5)
    with pytest.raises(ValueError, match="already wrapped"):
        tf_admm.prune_low_magnitude(wrappers(wrapped)[0], 0.5)
    with pytest.raises(ValueError, match=r"rho must be a number > 0. Received: rho=0"):
        tf_admm.prune_low_magnitude(small_cnn(), 0.5, rho=0)


def test_strip_rejects_non_models():
    with pytest.raises(ValueError, match="strip_admm takes a Keras model"):
        tf_admm.strip_admm(L.Dense(3))


def test_nm_constraint_checked_before_wrapping():
    with pytest.raises(ValueError, match="multiple of 4"):
        tf_admm.prune_low_magnitude(small_cnn(), {"logits": 0.5, "conv": tf_admm.NMSparsity(2, 4)})


class _Bilinear(L.Layer):
    """A user layer with a weight matrix and no get_prunable_weights()."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], input_shape[-1]), name="w")

    def call(self, x):
        return x * tf.matmul(x, self.w)


def test_layers_left_dense_are_named_in_one_warning():
    inputs = keras.Input((6, 4))
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(inputs)
    x = _Bilinear(name="bilinear")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)  # vectors only: not named
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning) as record:
        wrapped = tf_admm.prune_low_magnitude(model, 0.5)
    texts = [str(w.message) for w in record if "stay dense" in str(w.message)]
    assert len(texts) == 1
    assert "bilinear (_Bilinear)" in texts[0]
    assert "lstm" not in texts[0] and "norm" not in texts[0] and "head" not in texts[0]
    assert [w.layer.name for w in tf_admm.find_wrappers(wrapped)] == ["lstm", "head"]


def test_clone_model_idiom_leaves_the_user_model_untouched():
    model = small_cnn()
    before = [w.copy() for w in model.get_weights()]

    def wrap(layer):
        if registry.is_compressible(layer):
            return tf_admm.prune_low_magnitude(layer, 0.5)
        return layer.__class__.from_config(layer.get_config())

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    for w in wrappers(wrapped):  # the copies start from the user's weights
        np.testing.assert_array_equal(
            to_np(w.constrained[0]), model.get_layer(w.layer.name).get_weights()[0]
        )
    compile_model(wrapped)
    x, y = small_data()
    wrapped.fit(x, y, epochs=1, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    tf_admm.hard_project(wrapped)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert all(w.layer is not model.get_layer(w.layer.name) for w in wrappers(wrapped))


def test_a_built_layer_is_copied_and_an_unbuilt_one_wrapped_itself():
    built = L.Dense(4, name="d")
    built.build((None, 3))
    wrapper = tf_admm.prune_low_magnitude(built, 0.5)
    assert wrapper.layer is not built
    np.testing.assert_array_equal(wrapper.layer.get_weights()[0], built.get_weights()[0])
    fresh = L.Dense(4)
    assert tf_admm.prune_low_magnitude(fresh, 0.5).layer is fresh
    (copied,) = tf_admm.quantize([built], 3)
    assert copied.layer is not built


def test_find_wrappers_reads_layers_lists_and_nested_models_once_each():
    inner = tf_admm.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a")]), 0.5
    )
    outer = keras.Sequential([inner, keras.layers.Dense(2, name="b")])
    a = inner.layers[0]
    b = tf_admm.prune_low_magnitude(outer.layers[-1], 0.5)
    assert tf_admm.find_wrappers(outer) == [a]  # inside the nested model
    assert tf_admm.find_wrappers(b) == [b]  # a layer itself
    assert tf_admm.find_wrappers([b, [outer, (a, b)]]) == [b, a]  # nested lists, each once
    assert tf_admm.find_wrappers([outer.layers[-1]]) == []


def _lambda_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Lambda(lambda t: 2.0 * t, name="double")(inputs)  # a Python lambda
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def test_models_with_a_python_lambda_are_pruned_and_stripped():
    """Keras 3 refuses to rebuild a Lambda around a Python lambda from its config; the
    copies share it (it holds no state) instead of failing."""
    model = _lambda_model()
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")
    pruned = tf_admm.prune_low_magnitude(model, 0.5)
    tf_admm.hard_project(pruned)
    plain = tf_admm.strip_admm(pruned)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)
    assert float((plain.get_layer("fc").get_weights()[0] == 0).mean()) == 0.5
    channels = tf_admm.prune_channels(model, {"conv": 0.5})
    assert type(channels.get_layer("double")).__name__ == "Lambda"
    small = tf_admm.compress_post_training(model, x, sparsity=0.5, verbose=False)
    assert float((small.get_layer("fc").get_weights()[0] == 0).mean()) == 0.5
