"""The tutorials: committed without outputs, and each runs end to end in QUICK mode."""

import glob
import os

import nbformat
import pytest

from tf_admm import keras

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
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TF_ADMM_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "test accuracy" in text and "LiteRT vs Keras" in text  # every tutorial ends in LiteRT
