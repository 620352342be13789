"""The README is a landing page and the documentation site builds strictly and offline: no page
reads a script, style sheet, font or picture from another site (the pages are read on machines
without the network, and a page that calls a CDN tells it who reads what)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(r"^\s*(https?:)?//", re.I)


# -- the README: the two commands on the first screen ---------------------------------------

def _first_screen(text: str) -> list[str]:
    """The README down to its first `## ` heading: what a newcomer sees before scrolling."""
    return text.split("\n## ", 1)[0].splitlines()


def test_readme_first_screen_gives_exactly_the_two_commands_and_names_the_system_tools():
    readme = (ROOT / "README.md").read_text()
    screen = _first_screen(readme)
    assert len(screen) <= 30, f"the first screen is {len(screen)} lines"
    commands = [line.split("#", 1)[0].strip() for line in screen if line.startswith("    ") and line.strip()]
    assert commands == ["make demo", "make test"]
    text = "\n".join(screen)
    for tool in ("Chromium", "jpegtran", "apt-get install chromium libjpeg-turbo-progs"):
        assert tool in text, tool
    assert len(readme.splitlines()) <= 250, "the README is a landing page: move the detail to docs/"


def test_readme_links_lead_to_pages_that_exist():
    """mkdocs checks the site's links; the README is not part of the site, so its links are checked here."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert len(targets) >= 10
    missing = [t for t in targets if not re.match(r"https?:", t) and not (ROOT / t).is_file()]
    assert not missing, missing


# -- the site ----------------------------------------------------------------------------------

ASSET_ATTRIBUTES = {  # tag: attributes that make the browser fetch something
    "script": ("src",), "link": ("href",), "img": ("src", "srcset"), "source": ("src", "srcset"),
    "iframe": ("src",), "video": ("src", "poster"), "audio": ("src",), "embed": ("src",),
    "object": ("data",), "image": ("href", "xlink:href"), "use": ("href", "xlink:href"),
}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)|@import\s+['"]([^'"]+)""", re.I)


class _Assets(HTMLParser):
    """Every URL a page makes the browser fetch: asset attributes, inline style urls."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and "stylesheet" not in (attrs.get("rel") or "") and "icon" not in (attrs.get("rel") or "") \
                and "preload" not in (attrs.get("rel") or "") and "manifest" not in (attrs.get("rel") or ""):
            return  # rel=canonical, alternate, next...: a link, not an asset
        for name in ASSET_ATTRIBUTES.get(tag, ()):
            for url in re.split(r",\s*", attrs.get(name) or ""):
                if url.strip():
                    self.urls.append(url.strip().split()[0])
        self.urls += [a or b for a, b in CSS_URL.findall(attrs.get("style") or "")]

    def handle_data(self, data):
        if self.lasttag == "style":
            self.urls += [a or b for a, b in CSS_URL.findall(data)]


def external_assets(site: Path) -> dict[str, list[str]]:
    """{file: external URLs} over every HTML page and style sheet of a built site."""
    found: dict[str, list[str]] = {}
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            parser = _Assets()
            parser.feed(path.read_text(encoding="utf-8"))
            urls = parser.urls
        elif path.suffix == ".css":
            urls = [a or b for a, b in CSS_URL.findall(path.read_text(encoding="utf-8"))]
        else:
            continue
        bad = [u for u in urls if EXTERNAL.match(u)]
        if bad:
            found[str(path.relative_to(site))] = bad
    return found


def test_external_asset_finder_sees_what_a_page_would_fetch(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<link rel="canonical" href="https://example.org/a.html"><a href="https://example.org">ok</a>'
        '<script src="//cdn.example.org/x.js"></script><img srcset="p.png 1x, https://e.org/p.png 2x">'
        '<style>@import "https://e.org/s.css";</style><script src="assets/local.js"></script>')
    (tmp_path / "s.css").write_text("a{background:url('https://e.org/i.png')} b{background:url(i.png)}")
    assert external_assets(tmp_path) == {
        "a.html": ["https://fonts.googleapis.com/css?family=Roboto", "//cdn.example.org/x.js",
                   "https://e.org/p.png", "https://e.org/s.css"],
        "s.css": ["https://e.org/i.png"]}


def test_site_builds_strictly_offline_with_every_page_and_no_external_assets(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the [dev] extra's MkDocs packages are not installed")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    pages = {p.relative_to(ROOT / "docs").with_suffix(".html").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert pages <= built, pages - built
    assert external_assets(site) == {}

    # The API reference is generated from the docstrings, not left empty.
    api = {name: (site / "api" / f"{name}.html").read_text() for name in ("torch", "keras", "hf", "head", "upright")}
    for name, symbol in [("torch", "ImageFolder"), ("keras", "image_dataset_from_directory"), ("hf", "readable"),
                         ("head", "SoftmaxRegression"), ("upright", "open_upright")]:
        assert f'id="upright.{name + "." if name != "upright" else ""}{symbol}"' in api[name], (name, symbol)
    # The home page carries the README's first screen (included, not copied).
    home = (site / "index.html").read_text()
    assert "make demo" in home and "make test" in home and "--8&lt;--" not in home and "--8<--" not in home
