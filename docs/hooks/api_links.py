"""A MkDocs hook: in the guide pages, an API name in inline code links to its entry in the API
reference. `` `tf_admm.hard_project` ``, `` `hard_project` `` and `` `hard_project()` `` become
links when ``docs/api.md`` renders ``tf_admm.hard_project`` (``schedules.Gradual`` likewise for
``tf_admm.schedules.Gradual``); code blocks, calls with arguments and other names stay as
they are.
"""

from __future__ import annotations

import os
import re

from doctest_fences import API_PAGE, documented

CODE = re.compile(r"(?<!`)`([A-Za-z_][\w.]*)(\(\))?`(?!`)")
FENCE = re.compile(r"^\s*(```|~~~)")


def targets(names: set[str]) -> dict[str, str]:
    """Inline-code spellings -> the reference identifier: the full name, and without its
    ``tf_admm.`` prefix when that is unambiguous."""
    out = {name: name for name in names}
    short: dict[str, set[str]] = {}
    for name in names:
        if name.startswith("tf_admm."):
            short.setdefault(name[len("tf_admm.") :], set()).add(name)
    out.update({k: next(iter(v)) for k, v in short.items() if len(v) == 1 and k not in out})
    return out


def link_names(markdown: str, names: set[str]) -> str:
    """``markdown`` with documented names in inline code (outside fences) as reference links.

    >>> link_names("Call `hard_project()` or `tf_admm.shrink`; `x`.", {"tf_admm.hard_project",
    ...     "tf_admm.shrink"})
    'Call [`hard_project()`][tf_admm.hard_project] or [`tf_admm.shrink`][tf_admm.shrink]; `x`.'
    >>> link_names("```\\n`shrink`\\n```", {"tf_admm.shrink"})
    '```\\n`shrink`\\n```'
    """
    lookup = targets(names)

    def link(match: re.Match) -> str:
        identifier = lookup.get(match.group(1))
        if identifier is None:
            return match.group(0)
        return f"[{match.group(0)}][{identifier}]"

    out, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):  # indented code blocks too
            line = CODE.sub(link, line)
        out.append(line)
    return "\n".join(out)


_names: set[str] | None = None


def on_page_markdown(markdown, page, config, files):
    global _names
    if not page.file.src_uri.endswith(".md") or page.file.abs_src_path == os.path.abspath(API_PAGE):
        return markdown
    if _names is None:
        _names = documented()
    return link_names(markdown, _names)
