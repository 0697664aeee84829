"""MkDocs hooks: the site's home page is the README, and the published figures join the site.

- `docs/index.md` holds only a placeholder comment; its page is README.md with its links
  rewritten for the site (`docs/guides/x.md` -> `guides/x.md`, `ARCHITECTURE.md` -> the
  Extending page), so the landing page and the README never disagree.
- The figures committed under results/published/ stay where `scripts/publish.sh` and
  `curlora-bench report --plots` put them (the README links them there); the site serves them
  at the same path, results/published/<name>/*.png.
- In table cells an interval ("[0.762, 0.796]", "0.732 ± 0.063") is joined with no-break
  spaces, so a narrow column breaks between an estimate and its interval, never inside the
  interval (docs/stylesheets/extra.css lets the columns be as narrow as that).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
_CELL = re.compile(r"(<td\b[^>]*>)(.*?)(</td>)", re.S)
_NUMBER = r"[-+−×÷]?\d[^\[\]<>\s]{0,14}"
_INTERVAL = re.compile(rf"\[({_NUMBER}), ({_NUMBER})\]")
_SPREAD = re.compile(r"(?<=\d) (±|×/÷) (?=[×÷]?\d)")
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
    """Table cells with each interval's spaces made no-break ("[a,&nbsp;b]", "a&nbsp;±&nbsp;b")."""
    def cell(m: re.Match) -> str:
        body = _INTERVAL.sub(lambda i: f"[{i[1]},&nbsp;{i[2]}]", m[2])
        return m[1] + _SPREAD.sub(lambda s: f"&nbsp;{s[1]}&nbsp;", body) + m[3]

    return _CELL.sub(cell, html)


def on_page_content(html, page, config, files):
    return keep_intervals_whole(html)
