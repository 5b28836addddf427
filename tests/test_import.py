"""Import-time checks: the Keras flavour and backend tf_admm runs on."""

import os
import subprocess
import sys


def test_another_keras_backend_is_refused_at_import_with_a_clear_error():
    env = dict(os.environ, KERAS_BACKEND="numpy", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    out = subprocess.run(
        [sys.executable, "-c", "import tf_admm"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: tf_admm runs on the TensorFlow backend of Keras 3")
    assert "KERAS_BACKEND='numpy'" in last


def test_public_api_lists_callables_only():
    import inspect

    import tf_admm

    names = [n for n in tf_admm.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in names:
        obj = getattr(tf_admm, name)
        assert inspect.isclass(obj) or inspect.isfunction(obj), name
        assert obj.__doc__, f"{name} has no docstring"
    # submodules and the Keras flavour stay reachable, but are not API re-exports
    assert "keras" not in tf_admm.__all__ and "projections" not in tf_admm.__all__
    assert tf_admm.projections.topk_mask and tf_admm.keras.layers.Dense


def test_docs_requirements_are_in_the_dev_extra():
    """docs/requirements.txt (the site's build, without TensorFlow) and the dev extra agree."""
    import tomllib

    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
        dev = tomllib.load(handle)["project"]["optional-dependencies"]["dev"]
    with open(os.path.join(root, "docs", "requirements.txt")) as handle:
        docs = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert docs and set(docs) <= set(dev), sorted(set(docs) - set(dev))
