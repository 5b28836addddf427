"""The tutorials: committed without outputs, and each runs end to end in QUICK mode."""

import glob
import os

import nbformat
import pytest
import run_tutorials

from tf_admm import keras

KEPT = os.path.join(os.path.dirname(__file__), "..", "runs", "tutorials")
TUTORIALS = sorted(
    glob.glob(os.path.join(os.path.dirname(__file__), "..", "docs", "tutorials", "*.ipynb"))
)


def test_there_are_tutorials():
    assert TUTORIALS


@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.skipif(
    not keras.__version__.startswith("3."), reason="the tutorials are run under Keras 3"
)
@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_runs_end_to_end_in_quick_mode(path, monkeypatch):
    """The executed copy is kept in runs/tutorials/, where the docs site reads its outputs."""
    pytest.importorskip("nbclient")
    monkeypatch.setenv("TF_ADMM_QUICK", "1")
    row = run_tutorials.run_notebook(path, quick=True, keep=KEPT)
    text = "\n".join(row["results"])
    assert "test accuracy" in text and "LiteRT vs Keras" in text  # every tutorial ends in LiteRT
    kept = nbformat.read(os.path.join(KEPT, os.path.basename(path)[:-6] + ".quick.ipynb"), 4)
    assert kept.metadata["tf_admm_run"]["mode"] == "quick"
    assert any(c.get("outputs") for c in kept.cells if c.cell_type == "code")
