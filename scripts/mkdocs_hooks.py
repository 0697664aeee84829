"""MkDocs hooks: the site's home page is the README, and the published figures join the site.

- `docs/index.md` holds only a placeholder comment; its page is README.md with its links
  rewritten for the site (`docs/guides/x.md` -> `guides/x.md`, `ARCHITECTURE.md` -> the
  Extending page), so the landing page and the README never disagree.
- The figures committed under results/published/ stay where `scripts/publish.sh` and
  `curlora-bench report --plots` put them (the README links them there); the site serves them
  at the same path, results/published/<name>/*.png.
- In table cells an interval ("[0.762, 0.796]", "± 0.063") stays on one line, so a narrow
  column breaks between an estimate and its interval, never inside it; a header may
  break after a "+" ("lora-r8+" / "ewc1000") as it may after a hyphen (docs/stylesheets/extra.css
  lets the columns be as narrow as that).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
_CELL = re.compile(r"(<td\b[^>]*>)(.*?)(</td>)", re.S)
_HEADER = re.compile(r"(<th\b[^>]*>)([^<]*)(</th>)")
_NUMBER = r"[-+−×÷]?\d[\d.,]*(?:e[-+]?\d+)?%?"
# An interval ("[0.762, 0.796]"), a spread ("± 0.063", "×/÷ 1.085") or a number a browser would
# break at its exponent's hyphen ("6.52e-03"): each is kept on one line.
_WHOLE = re.compile(rf"\[{_NUMBER}, {_NUMBER}\]|(?:±|×/÷) {_NUMBER}|[-+−×÷]?\d[\d.]*e[-+]\d+")
PLACEHOLDER = "<!-- home page: README.md, put here by scripts/mkdocs_hooks.py -->"


def on_files(files, config):
    for png in sorted((ROOT / "results" / "published").glob("*/*.png")):
        files.append(File.generated(config, png.relative_to(ROOT).as_posix(), abs_src_path=str(png)))
    return files


def readme_for_site(text: str) -> str:
    """The README with its repository-relative links pointing into the site instead."""
    text = re.sub(r"\]\(docs/", "](", text)
    return text.replace("](ARCHITECTURE.md)", "](extending.md)")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "index.md" and markdown.strip() == PLACEHOLDER:
        return readme_for_site((ROOT / "README.md").read_text(encoding="utf-8"))
    return markdown


def keep_intervals_whole(html: str) -> str:
    """Table cells with each interval, spread and exponent number in a no-wrap span, and plain
    header cells with a break opportunity after each "+"."""
    def cell(m: re.Match) -> str:
        parts = re.split(r"(<[^>]+>)", m[2])  # only text is changed, never a tag or its attributes
        for i in range(0, len(parts), 2):
            parts[i] = _WHOLE.sub(lambda w: f'<span class="nowrap">{w[0]}</span>', parts[i])
        return m[1] + "".join(parts) + m[3]

    html = _HEADER.sub(lambda m: m[1] + m[2].replace("+", "+<wbr>") + m[3], html)
    return _CELL.sub(cell, html)


def on_page_content(html, page, config, files):
    return keep_intervals_whole(html)
