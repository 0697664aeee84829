"""The built site, read in a real browser: every page at 1,280 px wide, as a newcomer sees it.

`mkdocs build --strict` (tests/test_docs.py) proves the links resolve; only a browser shows
whether a table or a figure fits the content column. This test builds the site into a temporary
folder, serves it on 127.0.0.1 and loads every page in headless Chromium through Selenium; it
fails when a table or an image is wider than the content column, an image does not load
(naturalWidth 0) or a formula is not rendered (KaTeX, vendored under docs/javascripts/katex/,
renders what pymdownx.arithmatex marks; an error or no KaTeX at all fails). A second test
builds a tiny site made to overflow and checks that the same measurement catches it, so a green
run means the pages fit, not that nothing was measured.

Chromium and its driver are Debian's `chromium` and `chromium-driver` (`make install` installs
them where apt-get runs as root); without them, or without the `selenium` package, both tests
are skipped and say why.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT

WIDTH = 1280  # the viewport a laptop reader has (CSS px)
HEIGHT = 900

# Pages whose generated tables still overflow at 1,280 px after the stylesheet's fix, each with
# why it is tolerated here. Only the tables `curlora-bench report` writes between the results
# pages' markers belong here; a page listed that fits again, or a page not listed that overflows,
# fails the test.
ALLOWED_OVERFLOW: dict[str, str] = {}

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)

# What one loaded page measures: the content column's inner width, every table's and image's
# full width (a table Material makes scrollable still has its full scrollWidth), every image
# that did not load and every formula KaTeX did not render.
MEASURE_JS = """
const article = document.querySelector('article.md-content__inner') || document.body;
const style = getComputedStyle(article);
const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
const tables = [];
let heading = '';
for (const el of article.querySelectorAll('h1, h2, h3, h4, table')) {
  if (el.tagName !== 'TABLE') { heading = el.textContent.replace('¶', '').trim(); continue; }
  const head = [...el.querySelectorAll('th')].map(th => th.textContent.trim()).filter(Boolean);
  tables.push({index: tables.length, width: Math.max(el.scrollWidth, el.getBoundingClientRect().width),
               heading: heading.slice(0, 60), first: (head[0] || '').slice(0, 30)});
}
const images = [...document.querySelectorAll('article img')].map((img, i) => ({
  index: i, src: img.getAttribute('src'), complete: img.complete, natural: img.naturalWidth,
  width: img.getBoundingClientRect().width}));
const math = [...article.querySelectorAll('.arithmatex')]
  .filter(el => !el.querySelector('.katex') || el.querySelector('.katex-error'))
  .map(el => el.textContent.trim().slice(0, 40));
return {column: column, innerWidth: window.innerWidth, tables: tables, images: images, math: math};
"""


def _binary(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (the dev and docs extras have it: `make install`)"
    if not _binary("chromium", "chromium-browser"):
        return "chromium is not installed (Debian: apt-get install chromium chromium-driver; `make install` does)"
    if not _binary("chromedriver"):
        return "chromedriver is not installed (Debian: apt-get install chromium-driver; `make install` does)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def build_site(config: Path, out: Path) -> Path:
    """`mkdocs build --strict` of `config` into `out`."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(out)],
        cwd=config.parent, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test's output to its failures
        pass


@pytest.fixture
def serve():
    """serve(folder) -> the URL of a server on 127.0.0.1 for that folder, stopped after the test."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver, a fresh profile, a 1,280 px wide viewport."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
    try:
        # The viewport, not the window, must be WIDTH wide: pin it whatever the window's frame takes.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def measure(driver, url: str) -> dict:
    """Load `url` and wait until its images have loaded or failed and its math is rendered;
    its measurements."""
    driver.get(url)
    driver.execute_script("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not driver.execute_script(
            "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"
            " && [...document.querySelectorAll('.arithmatex')].every(m => m.querySelector('.katex, .katex-error'));"):
        time.sleep(0.05)
    return driver.execute_script(MEASURE_JS)


def problems(page: str, m: dict) -> list[str]:
    """What does not fit on one measured page, one line each."""
    assert m["innerWidth"] == WIDTH, f"{page}: the viewport is {m['innerWidth']} px wide, not {WIDTH}"
    column = m["column"]
    assert column > 300, f"{page}: no content column found ({column} px)"
    out = []
    for t in m["tables"]:
        if t["width"] > column + 1:
            out.append(f"{page}: table {t['index'] + 1} under {t['heading']!r} (columns {t['first']!r}, ...) is "
                       f"{t['width']:.0f} px wide, the column {column:.0f} px")
    for img in m["images"]:
        if not img["complete"] or img["natural"] == 0:
            out.append(f"{page}: image {img['src']} did not load")
        elif img["width"] > column + 1:
            out.append(f"{page}: image {img['src']} is {img['width']:.0f} px wide, the column {column:.0f} px")
    out += [f"{page}: the formula {tex!r} is not rendered" for tex in m["math"]]
    return out


def site_pages(site: Path) -> list[str]:
    """Every page of a built site, as its URL path ('' for the home page)."""
    pages = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    return sorted("" if p == "." else p + "/" for p in pages)


def test_every_page_fits_the_content_column_at_1280px(tmp_path, serve, browser):
    site = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    base = serve(site)
    pages = site_pages(site)
    assert len(pages) >= 30 and "results/" in pages and "reference/config/" in pages
    found: dict[str, list[str]] = {}
    for page in pages:
        lines = problems(page or "/", measure(browser, base + page))
        if lines:
            found[page] = lines
    new = [line for page, lines in found.items() if page not in ALLOWED_OVERFLOW for line in lines]
    fixed = sorted(set(ALLOWED_OVERFLOW) - set(found))
    assert not new, "tables or images that do not fit the column at 1,280 px:\n" + "\n".join(new)
    assert not fixed, f"these pages fit now: take them off ALLOWED_OVERFLOW: {fixed}"


def test_an_overflowing_page_fails(tmp_path, serve, browser):
    """A tiny site with the project's stylesheet and math: a 30-column table, a missing image and
    a formula KaTeX cannot read are caught; a narrow table, a real image and a formula are not."""
    docs = tmp_path / "docs"
    (docs / "stylesheets").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "stylesheets" / "extra.css", docs / "stylesheets" / "extra.css")
    shutil.copytree(ROOT / "docs" / "javascripts", docs / "javascripts")
    png = next((ROOT / "results" / "published").glob("*/*.png"))
    shutil.copy(png, docs / "figure.png")
    wide = "| " + " | ".join(f"column{i}" for i in range(30)) + " |\n|" + "---|" * 30 + "\n| " + \
        " | ".join(f"0.{i:03d}_[0.700,_0.800]" for i in range(30)) + " |\n"
    (docs / "index.md").write_text("# Fits\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![a figure](figure.png)\n\n"
                                   "$\\frac{1}{T}\\sum_j A_{j,j}$\n")
    (docs / "wide.md").write_text(f"# Too wide\n\n{wide}\n")
    (docs / "broken.md").write_text('# A missing image\n\n<img src="missing.png" alt="gone">\n\n'
                                    "$\\frac{1}$ and $x^2$\n")
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: overflow
        theme: {name: material, font: false}
        extra_css: [stylesheets/extra.css, javascripts/katex/katex.min.css]
        extra_javascript: [javascripts/katex/katex.min.js, javascripts/math.js]
        markdown_extensions: [tables, attr_list, {pymdownx.arithmatex: {generic: true}}]
        nav: [index.md, wide.md, broken.md]
        """))
    site = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    base = serve(site)
    found = {page: problems(page, measure(browser, base + page)) for page in site_pages(site)}
    assert found[""] == [], found[""]
    assert len(found["wide/"]) == 1 and "table 1 under 'Too wide' (columns 'column0', ...)" in found["wide/"][0], found["wide/"]
    assert len(found["broken/"]) == 2, found["broken/"]
    assert "missing.png did not load" in found["broken/"][0], found["broken/"]
    assert "frac{1}" in found["broken/"][1] and "is not rendered" in found["broken/"][1], found["broken/"]
