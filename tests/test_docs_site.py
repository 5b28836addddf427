"""The docs site's own tools: the check CI runs on the built site (docs/hooks/site_check.py)
and the hook that renders tutorial pages from executed copies (docs/hooks/executed_tutorials.py).
"""

import json
import os

import pytest
import site_check

PAGE = "<html><body><article>{}</article></body></html>"


def _site(tmp_path, pages: dict) -> str:
    for name, body in pages.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PAGE.format(body))
    return str(tmp_path)


TUTORIAL = '<div class="jp-OutputArea-output"><img src="data:image/png;base64,AAAA"></div>'


def test_a_clean_site_has_no_problems(tmp_path):
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="guide/">guide</a> <a href="guide/#x">x</a> '
            '<a href="https://keras.io">k</a> <img src="assets/a.png">'
            '<div class="arithmatex">\\[ L_\\rho \\]</div> <code>:func:`x`</code>',
            "guide/index.html": '<a href="../">home</a>',
            "tutorials/01_x/index.html": TUTORIAL,
            "tutorials/index.html": "overview, no outputs needed",
        },
    )
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.png").write_bytes(b"png")
    assert site_check.problems(site) == []
    assert site_check.main([site]) == 0


@pytest.mark.parametrize(
    "page, body, expected",
    [
        ("index.html", "the term \\[ L \\] unrendered", "index.html: raw LaTeX"),
        ("index.html", "see :func:`tf_admm.hard_project`", "index.html: a raw Sphinx role"),
        ("index.html", '<img src="missing.png">', "index.html: image 'missing.png' does not"),
        ("index.html", '<a href="nowhere/">x</a>', "index.html: link 'nowhere/' goes nowhere"),
        ("tutorials/02_y/index.html", "<p>no outputs</p>", "needs an output cell and a figure"),
        (
            "tutorials/02_y/index.html",
            '<div class="jp-OutputArea-output">text only</div>',
            "found 1 output(s), 0 figure(s)",
        ),
    ],
)
def test_each_problem_a_reader_would_meet_is_found(tmp_path, page, body, expected):
    site = _site(tmp_path, {page: body})
    found = site_check.problems(site)
    assert len(found) == 1 and expected in found[0], found
    assert site_check.main([site]) == 1


def test_an_empty_folder_is_not_a_site(tmp_path):
    assert "no HTML pages" in site_check.problems(str(tmp_path))[0]


def _notebook(code: list[str], outputs=None) -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Title\n\ntext"}]
    for i, source in enumerate(code):
        cells.append(
            {
                "cell_type": "code",
                "metadata": {},
                "source": source,
                "outputs": (outputs or {}).get(i, []),
                "execution_count": None,
            }
        )
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_the_tutorial_hook_renders_the_matching_executed_copy(tmp_path):
    hook = pytest.importorskip("executed_tutorials")  # needs mkdocs (the dev extra)
    committed = tmp_path / "tutorials" / "01_x.ipynb"
    committed.parent.mkdir()
    committed.write_text(json.dumps(_notebook(["a = 1", "print(a)"])))
    kept = tmp_path / "kept"
    kept.mkdir()
    assert hook.executed_copy(str(committed), str(kept)) is None
    log = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:17.1   10 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:17.2   10 cudart_stub.cc:31] Could not find cuda drivers\n"
    )
    outputs = {
        0: [{"output_type": "stream", "name": "stderr", "text": log}],
        1: [
            {"output_type": "stream", "name": "stderr", "text": log + "a real warning\n"},
            {"output_type": "stream", "name": "stdout", "text": "1\n"},
        ],
    }
    quick = _notebook(["a = 1", "print(a)"], outputs)
    quick["metadata"]["tf_admm_run"] = {"mode": "quick", "date": "2026-12-04"}
    (kept / "01_x.quick.ipynb").write_text(json.dumps(quick))
    (kept / "01_x.full.ipynb").write_text(json.dumps(_notebook(["a = 2", "print(a)"])))
    path, mode = hook.executed_copy(str(committed), str(kept))  # the full copy is stale
    assert (os.path.basename(path), mode) == ("01_x.quick.ipynb", "quick")
    shown = hook.with_note(path, mode)
    note = shown["cells"][1]
    assert note["cell_type"] == "markdown" and "a QUICK run on 2026-12-04" in note["source"]
    code = [c for c in shown["cells"] if c["cell_type"] == "code"]
    assert code[0]["outputs"] == []  # only start-up lines: gone
    assert [o["text"] for o in code[1]["outputs"]] == ["a real warning\n", "1\n"]


def test_api_names_in_inline_code_link_to_the_reference():
    api_links = pytest.importorskip("api_links")  # needs griffe (the dev extra)
    import doctest

    result = doctest.testmod(api_links)
    assert result.attempted >= 2 and result.failed == 0
    names = {"tf_admm.hard_project", "tf_admm.schedules.Gradual", "tf_admm.shrink"}
    text = (
        "Use `schedules.Gradual` and `shrink`, not `shrink(model)` or `other`.\n"
        "```python\ntf_admm.hard_project(m)  # `hard_project`\n```\n"
        "    `hard_project` in an indented block"
    )
    assert api_links.link_names(text, names) == (
        "Use [`schedules.Gradual`][tf_admm.schedules.Gradual] and [`shrink`][tf_admm.shrink], "
        "not `shrink(model)` or `other`.\n"
        "```python\ntf_admm.hard_project(m)  # `hard_project`\n```\n"
        "    `hard_project` in an indented block"
    )
