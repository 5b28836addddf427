"""Check a built documentation site the way a reader meets it: no raw LaTeX outside the math
KaTeX renders, no raw Sphinx roles, every image and internal link resolves, and every tutorial
page shows at least one output cell and one figure.

    mkdocs build --site-dir site && python docs/hooks/site_check.py site

Prints one line per problem and exits 1 when there is any. Standard library only (the site is
built in a virtual environment without TensorFlow).
"""

from __future__ import annotations

import os
import re
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`")
LATEX = re.compile(r"\\\[|\\\(|\$\$")
SKIPPED = ("code", "pre", "script", "style")  # text a reader sees as code, or not at all


class Page(HTMLParser):
    """The text outside code and math, the image sources, link targets and notebook cells."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.outputs = 0
        self._hidden: list[str] = []  # open elements whose text is skipped

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if "jp-OutputArea-output" in classes:
            self.outputs += 1
        if tag in SKIPPED or "arithmatex" in classes or self._hidden:
            if tag not in ("img", "br", "hr", "input", "meta", "link"):  # void elements
                self._hidden.append(tag)

    def handle_endtag(self, tag):
        if self._hidden and self._hidden[-1] == tag:
            self._hidden.pop()

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def parse(path: str) -> Page:
    page = Page()
    with open(path, encoding="utf-8") as handle:
        page.feed(handle.read())
    return page


def target(site: str, page_path: str, url: str) -> str | None:
    """The file an internal ``url`` of the page at ``page_path`` points to (None: external)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("#", "mailto:", "data:")):
        return None
    path = unquote(parts.path)
    if not path:
        return None
    base = site if path.startswith("/") else os.path.dirname(page_path)
    resolved = os.path.normpath(os.path.join(base, path.lstrip("/")))
    if path.endswith("/") or os.path.isdir(resolved):
        resolved = os.path.join(resolved, "index.html")
    return resolved


def problems(site: str) -> list[str]:
    """Every problem found in the built site at ``site``."""
    found = []
    pages = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(site)
        for name in names
        if name.endswith(".html") and name != "404.html"
    ]
    if not pages:
        return [f"{site}: no HTML pages (was the site built?)"]
    for path in sorted(pages):
        page = parse(path)
        where = os.path.relpath(path, site)
        text = "".join(page.text)
        for pattern, what in ((LATEX, "raw LaTeX"), (ROLE, "a raw Sphinx role")):
            match = pattern.search(text)
            if match:
                start = max(0, match.start() - 40)
                context = " ".join(text[start : match.end() + 40].split())
                found.append(f"{where}: {what}: ...{context}...")
        for url in page.images:
            file = target(site, path, url)
            if file is not None and not os.path.isfile(file):
                found.append(f"{where}: image {url!r} does not resolve")
        for url in page.links:
            file = target(site, path, url)
            if file is not None and not os.path.exists(file):
                found.append(f"{where}: link {url!r} goes nowhere")
        parts = where.split(os.sep)
        if parts[0] == "tutorials" and len(parts) == 3:  # tutorials/<name>/index.html
            figures = [u for u in page.images if u.startswith("data:image/")]
            if page.outputs == 0 or not figures:
                found.append(
                    f"{where}: a tutorial page needs an output cell and a figure; found "
                    f"{page.outputs} output(s), {len(figures)} figure(s) (were the executed "
                    "copies in runs/tutorials/ made? see docs/hooks/executed_tutorials.py)"
                )
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/hooks/site_check.py SITE_DIR", file=sys.stderr)
        return 2
    found = problems(argv[0])
    for line in found:
        print(line)
    print(f"site check: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
