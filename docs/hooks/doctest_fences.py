"""A griffe extension for the API reference: docstring examples (``>>>`` lines and their
expected output) are shown as Python console code blocks instead of Markdown quotes, and the
Sphinx roles of the docstrings (``:func:`tf_admm.hard_project```) become links to the
reference entries of ``docs/api.md`` (code text for names without an entry)."""

from __future__ import annotations

import os
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`([^`]+)`")
API_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "api.md")


def documented(page: str = API_PAGE) -> set[str]:
    """The names the API page renders (its ``::: name`` lines)."""
    with open(page) as handle:
        return {line[4:].strip() for line in handle if line.startswith("::: ")}


def link_roles(text: str, names: set[str]) -> str:
    """Sphinx roles as Markdown: a link to the reference entry when the page renders the name,
    else code text; ``~a.b.c`` shows ``c``, ``label <target>`` shows the label.

    >>> link_roles(":func:`tf_admm.f` and :mod:`~tf_admm.x.y`", {"tf_admm.f"})
    '[`tf_admm.f`][tf_admm.f] and `y`'
    >>> link_roles(":class:`the schedules <tf_admm.schedules>`", set())
    '`the schedules`'
    """

    def markdown(match: re.Match) -> str:
        body = match.group(1)
        labelled = re.fullmatch(r"(.*?)\s*<(.+)>", body)
        if labelled:
            label, target = labelled.groups()
        else:
            target = body.lstrip("~")
            label = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        return f"[`{label}`][{target}]" if target in names else f"`{label}`"

    return ROLE.sub(markdown, text)


def fence_doctests(text: str) -> str:
    """Wrap every run of ``>>>``/``...`` lines and the output after it in a ``pycon`` fence.

    >>> print(fence_doctests("Text.\\n\\n>>> 1 + 1\\n2\\n\\nMore."))
    Text.
    <BLANKLINE>
    ```pycon
    >>> 1 + 1
    2
    ```
    <BLANKLINE>
    More.
    """
    out, in_block, indent = [], False, ""
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(">>>") and not in_block:
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_block = True
        elif in_block and not stripped:
            out.append(f"{indent}```")
            in_block = False
        out.append(line)
    if in_block:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self.names = documented()

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        value = link_roles(obj.docstring.value, self.names)
        if ">>>" in value:
            value = fence_doctests(value)
        obj.docstring.value = value
