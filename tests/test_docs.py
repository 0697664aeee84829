"""The documentation is checked like code.

The CLI and config references are the generated ones and name every command, argument, option
and config key; `mkdocs build --strict` passes (no broken link or anchor, no page left out of
the nav, the included ARCHITECTURE.md and the API docstrings are there); the README stays a
short landing page whose links resolve.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import os
import re
import subprocess
import sys

import gen_docs
import pytest

from .conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _plain_html(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


# ---- generated references ----------------------------------------------------------------

def test_cli_reference_is_the_generated_one():
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert text == gen_docs.cli_markdown(), "docs/reference/cli.md is stale: run `make docs-gen`"


def _cli_sections() -> dict[str, str]:
    """docs/reference/cli.md split at its command headings: command path -> that section."""
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^#{2,3} (curlora-bench[\w -]*)$", text, flags=re.M)
    return {path.strip(): body for path, body in zip(parts[1::2], parts[2::2])}


def _walk(group, ctx, out):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        sub = cmd.context_class(cmd, info_name=name, parent=ctx)
        out.append((cmd, sub))
        if hasattr(cmd, "commands"):
            _walk(cmd, sub, out)
    return out


def test_every_command_argument_and_option_is_in_the_cli_reference():
    import typer

    from curlora_bench.cli import app

    root = typer.main.get_command(app)
    commands = _walk(root, root.context_class(root, info_name="curlora-bench"), [])
    sections = _cli_sections()
    assert len(commands) >= 8
    for cmd, ctx in commands:
        path = ctx.command_path
        assert path in sections, f"docs/reference/cli.md has no section for `{path}`"
        body = sections[path]
        assert gen_docs._plain(cmd.help) in body, f"{path}: its help text is missing"
        for param in cmd.params:
            names = [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else [param.name]
            for name in names:
                assert re.search(rf"`(?:[^`]*[ ,])?{re.escape(name)}(?![\w-])", body), \
                    f"{path}: {name} is missing from docs/reference/cli.md"
            if param.help:
                assert gen_docs._cell(gen_docs._plain(param.help)) in body, f"{path} {names[0]}: its help is missing"


def _schema_keys() -> list[tuple[str, str]]:
    """(section heading, key) for every key of the config schema, read from the dataclasses."""
    from curlora_bench.config import reference as ref
    from curlora_bench.config.methods import MethodEntry
    from curlora_bench.core.parse import declared_fields
    from curlora_bench.strategies.base import strategies

    common = [f.name for f in declared_fields(MethodEntry)]
    keys = [("Top-level keys", f.name) for f in declared_fields(ref.ExperimentConfig)]
    for section, cls in ref.NESTED.items():
        keys += [(section, f.name) for f in declared_fields(cls)]
    keys += [("methods", name) for name in [*common, "grid"]]
    for name, adapter in ref.ADAPTERS.items():
        keys += [(f"method: {name}", "<key>" if f.metadata.get("inline") else f.name)
                 for f in declared_fields(adapter.config_cls)]
    keys += [("tasks", f.name) for f in dataclasses.fields(ref.TaskConfig) if f.name not in ref.TASK_SKIP]
    for name, cls in strategies().items():
        keys.append((f"name: {name}", None))
        keys += [(f"name: {name}", key) for key in cls.options_spec]
    return keys


def _config_tables() -> dict[str, set[str]]:
    """docs/reference/config.md: section heading -> the keys of its table."""
    text = (DOCS / "reference" / "config.md").read_text(encoding="utf-8")
    parts = re.split(r"^#{2,4} (.+)$", text, flags=re.M)
    return {heading.strip("`"): set(re.findall(r"^\| `([^`]+)` \|", body, re.M))
            for heading, body in zip(parts[1::2], parts[2::2])}


def test_every_config_key_is_in_the_config_reference():
    tables = _config_tables()
    keys = _schema_keys()
    assert len(keys) > 60
    missing = [f"{section}: {key}" for section, key in keys
               if section not in tables or (key is not None and key not in tables[section])]
    assert not missing, f"config keys missing from docs/reference/config.md's tables: {missing}"


def test_generator_check_mode_passes():
    """`python scripts/gen_docs.py` (no --write) is what CI-style checks run: exit 0 when current."""
    assert gen_docs.main([]) == 0


# ---- the site ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with `mkdocs build --strict` into a temporary folder."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the docs extra is not installed ({exc}): pip install -e '.[docs]' (`make install` does)")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strict_with_every_page(site):
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS)
        target = site / (rel.parent if rel.name == "index.md" else rel.with_suffix("")) / "index.html"
        assert target.is_file(), f"{page.relative_to(ROOT)} was not built"


def test_site_home_page_is_the_readme(site):
    home = _plain_html((site / "index.html").read_text(encoding="utf-8"))
    for heading in re.findall(r"^## (.+)$", README.read_text(encoding="utf-8"), re.M):
        assert heading.replace("`", "") in home, f"README section {heading!r} is not on the site's home page"


def test_site_includes_architecture_and_figures(site):
    arch = re.sub(r"^```.*?^```", "", (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"), flags=re.M | re.S)
    extending = _plain_html((site / "extending" / "index.html").read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,3} (.+)$", arch, re.M):
        assert _plain_html(heading.replace("`", "")) in extending, f"ARCHITECTURE.md's {heading!r} is not included"
    for png in (ROOT / "results" / "published").glob("*/*.png"):
        assert (site / png.relative_to(ROOT)).is_file(), f"{png.relative_to(ROOT)} is not on the site"


def test_site_hook_keeps_intervals_on_one_line():
    """Table cells keep an interval, a spread and an exponent number on one line (a span the
    stylesheet does not wrap); links, code and header cells are left readable."""
    import mkdocs_hooks

    cells = ('<td>0.779 [0.762, 0.796]</td><td>1.612 ×/÷ 1.085</td><td>+0.027 ± 0.021</td>'
             '<td>6.52e-03</td><td><a href="../x-1e-3/">lr 1e-3</a></td><th>lora-r8+ewc1000</th>')
    assert mkdocs_hooks.keep_intervals_whole(cells) == (
        '<td>0.779 <span class="nowrap">[0.762, 0.796]</span></td>'
        '<td>1.612 <span class="nowrap">×/÷ 1.085</span></td>'
        '<td>+0.027 <span class="nowrap">± 0.021</span></td>'
        '<td><span class="nowrap">6.52e-03</span></td>'
        '<td><a href="../x-1e-3/">lr <span class="nowrap">1e-3</span></a></td>'
        '<th>lora-r8+<wbr>ewc1000</th>')
    assert ".nowrap" in (DOCS / "stylesheets" / "extra.css").read_text(encoding="utf-8")


def _docstring(dotted: str) -> str:
    """The docstring of `package.module.function`, read from the source without importing it."""
    module, name = dotted.rsplit(".", 1)
    base = ROOT / module.replace(".", "/")
    source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
    return ast.get_docstring(node)


def test_site_api_page_renders_the_docstrings(site):
    directives = re.findall(r"^::: ([\w.]+)$", (DOCS / "reference" / "api.md").read_text(encoding="utf-8"), re.M)
    assert {d.rsplit(".", 1)[1] for d in directives} >= {"load_adapter", "load_model"}
    api = _plain_html((site / "reference" / "api" / "index.html").read_text(encoding="utf-8"))
    for dotted in directives:
        first = _docstring(dotted).splitlines()[0]
        assert " ".join(first.replace("`", "").split()) in api, f"{dotted}: its docstring is not on the API page"


# ---- the README --------------------------------------------------------------------------

def test_readme_is_a_short_landing_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md is a landing page: 200 lines at most; move detail into docs/"
    for command in ("make run", "make test", "curlora-bench run "):
        assert command in text, f"README.md no longer shows `{command}`"


def test_readme_and_docs_links_resolve_in_the_repository():
    """Relative links work where the files are read on their own too (a repository browser)."""
    broken = []
    for page in [README, *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            if page.parent == DOCS / "results" and path.startswith("published/"):
                path = "../../results/" + path  # the figures: served beside these pages by the site hook
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, f"links to missing files: {broken}"


def test_docs_name_only_existing_files():
    """Test files, configs and scripts the docs mention exist (they move in refactors)."""
    missing = set()
    for page in [README, *DOCS.rglob("*.md")]:
        for path in re.findall(r"\b((?:tests|configs|scripts)/[\w.-]+\.(?:py|yaml|sh))\b", page.read_text(encoding="utf-8")):
            if not (ROOT / path).exists():
                missing.add(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, f"files the docs name that do not exist: {sorted(missing)}"
