"""ADMM schedules as objects: defaults equal to the recorded recipe, config round trips, the
wrapper holding its schedule through a .keras file, resume with UpdateADMM() and no arguments."""

from __future__ import annotations

import default_recipe
import numpy as np
import pytest


@pytest.mark.parametrize("recipe", default_recipe.RECIPES)
def test_defaults_reproduce_the_recorded_recipe(recipe):
    """UpdateADMM() (and with gradient_data) on wrappers with default schedules gives the
    weights the code gave before schedules were objects (recorded in tests/data)."""
    recorded = np.load(default_recipe.recorded_path())
    weights = default_recipe.run(recipe)
    assert len(weights) == 4
    for i, w in enumerate(weights):
        np.testing.assert_allclose(w, recorded[f"{recipe}/{i}"], rtol=1e-5, atol=1e-7)
