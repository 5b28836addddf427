"""A MkDocs hook: the tutorial pages show the outputs and plots of an executed run.

The committed notebooks (``docs/tutorials/*.ipynb``) carry no outputs. The tutorial test and
``benchmarks/run_tutorials.py`` keep executed copies in ``runs/tutorials/`` as
``<name>.quick.ipynb`` (QUICK mode, what CI runs) and ``<name>.full.ipynb`` (the whole data and
the epochs the notebook states). A page is rendered from the full copy if there is one, else
from the QUICK copy, provided its code cells are those of the committed notebook (a copy of an
older version is not used); a note at the top says which run it shows. Without a copy, the page
shows the notebook without outputs. The download link always gives the committed notebook.

    python -m pytest tests/test_notebooks.py          # QUICK copies (Keras 3)
    python benchmarks/run_tutorials.py --mode full    # full copies
    mkdocs build
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

from mkdocs.plugins import event_priority

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEPT = os.path.join(ROOT, "runs", "tutorials")
MODES = ("full", "quick")  # the preferred run first
NOTE = {
    "full": ("a full run", " (the whole data and the epochs the notebook states)"),
    "quick": (
        "a QUICK run",
        " (`TF_ADMM_QUICK=1`: a slice of the data and fewer epochs, what CI runs), so their "
        "accuracies and sizes are not those the text states for a full run",
    ),
}

_committed: dict[str, str] = {}  # rendered path -> committed notebook
_build = {"folder": ""}  # this build's folder of rendered copies, removed after the build


def on_pre_build(config):
    _build["folder"] = tempfile.mkdtemp(prefix="tf_admm_tutorials_")


def on_post_build(config):
    shutil.rmtree(_build["folder"], ignore_errors=True)
    _committed.clear()


def on_build_error(error):
    on_post_build(None)


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _code(notebook: dict) -> list[str]:
    def text(source):
        return "".join(source) if isinstance(source, list) else source

    return [text(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def executed_copy(committed: str, kept: str = KEPT) -> tuple[str, str] | None:
    """``(path, mode)`` of the executed copy of ``committed`` to render, or None."""
    stem = os.path.splitext(os.path.basename(committed))[0]
    source = _code(_read(committed))
    for mode in MODES:
        path = os.path.join(kept, f"{stem}.{mode}.ipynb")
        if os.path.exists(path) and _code(_read(path)) == source:
            return path, mode
    return None


STARTUP_LOG = re.compile(  # TensorFlow's C++ start-up lines (docs/installation.md)
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|I0000 \S+ +\d+ (port|cudart_stub|cpu_feature_guard)\.cc"
    r"|To enable the following instructions:)"
)


def without_startup_log(notebook: dict) -> dict:
    """``notebook`` without TensorFlow's start-up lines in its stderr outputs (printed before
    ``TF_CPP_MIN_LOG_LEVEL`` is read, so no setting removes them); an output left empty goes."""
    for cell in notebook["cells"]:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output["text"]
                lines = ("".join(text) if isinstance(text, list) else text).splitlines(True)
                lines = [line for line in lines if not STARTUP_LOG.match(line)]
                if not "".join(lines).strip():
                    continue
                output = {**output, "text": "".join(lines)}
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return notebook


def with_note(path: str, mode: str) -> dict:
    """The executed notebook, without TensorFlow's start-up log, with a cell after its title
    saying which run made its outputs."""
    notebook = without_startup_log(_read(path))
    run = notebook.get("metadata", {}).get("tf_admm_run", {})
    label, detail = NOTE[mode]
    when = f" on {run['date']}" if run.get("date") else ""
    note = f"> **Outputs.** The outputs on this page come from {label}{when}{detail}."
    cells = notebook["cells"]
    first = cells[0] if cells else {}
    title = first.get("cell_type") == "markdown" and "".join(first["source"]).startswith("# ")
    cells.insert(
        1 if title else 0,
        {"cell_type": "markdown", "id": "tf-admm-outputs", "metadata": {}, "source": note},
    )
    return notebook


@event_priority(100)  # before mkdocs-jupyter renders the page
def on_pre_page(page, config, files):
    src = page.file.abs_src_path
    if not (src and src.endswith(".ipynb") and os.path.dirname(src).endswith("tutorials")):
        return page
    found = executed_copy(src)
    if found is None:
        return page
    target = os.path.join(_build["folder"], "tutorials", os.path.basename(src))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(with_note(*found), handle)
    _committed[target] = src
    page.file.abs_src_path = target
    return page


@event_priority(-100)  # after mkdocs-jupyter copied the rendered notebook for download
def on_post_page(output, page, config):
    committed = _committed.get(page.file.abs_src_path)
    if committed:
        folder = os.path.dirname(page.file.abs_dest_path)
        shutil.copyfile(committed, os.path.join(folder, os.path.basename(committed)))
    return output
