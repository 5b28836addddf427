"""User constraint and penalty classes round-trip through a .keras file."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import to_np, wrappers

import tf_admm
from tf_admm import keras


@keras.utils.register_keras_serializable(package="user_pkg")
class EveryOther(tf_admm.constraints.Constraint):
    """Keep every other entry (a user's constraint set)."""

    def __init__(self, offset: int = 0):
        self.offset = int(offset)

    def mask(self, values):
        keep = np.zeros(np.asarray(values).size, bool)
        keep[self.offset :: 2] = True
        return keep.reshape(np.shape(values))

    def get_config(self):
        return {"offset": self.offset}


@keras.utils.register_keras_serializable(package="user_pkg")
class DoublePenalty(tf_admm.ADMMPenalty):
    def __call__(self, weight, z, u, rho):
        return 2.0 * super().__call__(weight, z, u, rho)


class Unregistered(EveryOther):
    pass


def test_registered_user_constraint_and_penalty_round_trip(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            tf_admm.ADMMWrapper(
                keras.layers.Dense(4, name="fc"), EveryOther(1), penalty=DoublePenalty()
            ),
        ]
    )
    tf_admm.hard_project(model)
    path = str(tmp_path / "user.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    (w,) = wrappers(loaded)
    assert w.constraint == EveryOther(1) and type(w.penalty) is DoublePenalty
    assert w.get_config()["constraint"]["class_name"] == "user_pkg>EveryOther"
    kernel = to_np(w.constrained[0]).reshape(-1)
    assert np.all(kernel[0::2] == 0)
    x = np.ones((2, 6), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    ones = tf.ones((2, 2))
    assert float(w.penalty(ones, tf.zeros((2, 2)), tf.zeros((2, 2)), 1.0)) == 4.0


def test_unregistered_or_unknown_classes_are_refused_with_advice():
    with pytest.raises(ValueError, match="not registered"):
        tf_admm.constraints.serialize(Unregistered())
    with pytest.raises(ValueError, match="Unknown constraint class_name='nope>X'"):
        tf_admm.constraints.get({"class_name": "nope>X", "config": {}})
    with pytest.raises(ValueError, match="Unknown penalty class_name='nope>P'"):
        tf_admm.penalty.deserialize({"class_name": "nope>P", "config": {}})
    with pytest.raises(ValueError, match=r"Unknown ADMM schedule class_name='nope>S'.*'Gradual'"):
        tf_admm.schedules.get({"class_name": "nope>S", "config": {}})


def test_a_wrapped_model_round_trips_through_the_legacy_h5_format(tmp_path):
    """TFMOT's guides and ModelCheckpoint("*.h5") users save .h5: every weight, Z, U, mask
    and counter comes back, and training resumes (tf_keras named every cloned kernel
    "kernel:0", and the optimizer's slots then collided in the file)."""
    from conftest import compile_model, small_cnn, small_data

    x, y = small_data()
    model = tf_admm.prune_low_magnitude(small_cnn(), {"conv": 0.5, "hidden": 0.8})
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tf_admm.UpdateADMM()])
    path = str(tmp_path / "wrapped.h5")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 0, 0)
    for a, b in zip(wrappers(model), wrappers(loaded)):
        for va, vb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(to_np(va), to_np(vb))
    compile_model(loaded)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tf_admm.UpdateADMM()])
