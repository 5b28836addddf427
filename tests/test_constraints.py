import numpy as np
import pytest

import tf_admm
from tf_admm import constraints


@pytest.mark.parametrize(
    "constraint",
    [
        tf_admm.Sparsity(0.9),
        tf_admm.BlockSparsity(0.5, (1, 16)),
        tf_admm.FilterSparsity(0.25),
        tf_admm.NMSparsity(2, 4),
    ],
)
def test_config_round_trip(constraint):
    again = constraints.get(constraints.serialize(constraint))
    assert again == constraint and type(again) is type(constraint)
    values = np.random.default_rng(0).standard_normal((16, 8))
    assert np.array_equal(again.mask(values), constraint.mask(values))


def test_get_accepts_float_constraint_and_none():
    assert constraints.get(0.5) == tf_admm.Sparsity(0.5)
    assert constraints.get(None) is None
    c = tf_admm.FilterSparsity(0.5)
    assert constraints.get(c) is c


def test_project_zeroes_what_mask_drops():
    v = np.array([[1.0, -2.0], [0.5, 4.0]])
    np.testing.assert_array_equal(tf_admm.Sparsity(0.5).project(v), [[0.0, -2.0], [0.0, 4.0]])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tf_admm.Sparsity(1.0), r"sparsity must be in \[0, 1\). Received: sparsity=1.0"),
        (lambda: tf_admm.Sparsity(-0.1), r"Received: sparsity=-0.1"),
        (lambda: tf_admm.Sparsity("0.5"), r"Received: sparsity='0.5' of type str"),
        (lambda: tf_admm.BlockSparsity(0.5, (0, 4)), r"Received: block_shape=\(0, 4\)"),
        (lambda: tf_admm.NMSparsity(4, 2), r"Received: n=4, m=2"),
        (lambda: constraints.get("unstructured"), r"Received: 'unstructured' of type str"),
        (lambda: constraints.get({"class_name": "Nope"}), r"Unknown constraint class_name='Nope'"),
    ],
)
def test_bad_arguments_say_what_was_received(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_nm_check_weight_names_the_layer():
    with pytest.raises(ValueError, match=r"'fc'.*weight shape=\(6, 3\)"):
        tf_admm.NMSparsity(2, 4).check_weight((6, 3), "fc")
