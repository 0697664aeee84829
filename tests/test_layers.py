"""ARCHITECTURE.md's layer table is what the code does, and the CLI starts without torch.

The table's rows are layers, top (foundation) to bottom (entry); a module may import from its
own layer and the ones listed before it. Every import counts, at module level or inside a
function (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "curlora_bench"
HEAVY = ("torch", "transformers", "peft", "datasets")


def layer_table() -> list[tuple[str, list[str]]]:
    """(layer, [module or folder paths relative to curlora_bench/]) from ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("layer", "") or set(cells[0]) <= {"-"}:
            continue
        rows.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The index of the layer whose entry is the longest prefix of `module` (None: no entry)."""
    rel = module.removeprefix("curlora_bench").lstrip(".").replace(".", "/") or "__init__"
    best, best_len = None, -1
    for i, (_, entries) in enumerate(table):
        for entry in entries:
            e = entry.rstrip("/")
            if (rel == e or rel.startswith(e + "/")) and len(e) > best_len:
                best, best_len = i, len(e)
    return best


def imports_of(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every package-internal import in a file (`module`: its name)."""
    tree = ast.parse(path.read_text())
    here = (module or module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out += [(node.lineno, t) for t in [target, *names] if t.startswith("curlora_bench")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("curlora_bench")]
    return out


def test_the_table_covers_every_module():
    table = layer_table()
    assert [name for name, _ in table][:2] == ["foundation", "sources"] and table[-1][0] == "entry"
    missing = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p), table) is None]
    assert not missing, f"modules in no layer of ARCHITECTURE.md: {missing}"


def upward(path: Path, module: str, table: list[tuple[str, list[str]]]) -> list[str]:
    """The imports of a file that go to a layer below its own."""
    own = layer_of(module, table)
    out = []
    for line, target in imports_of(path, module):
        theirs = layer_of(target, table)
        if theirs is not None and theirs > own:
            out.append(f"{module}:{line} ({table[own][0]}) imports {target} ({table[theirs][0]})")
    return out


def test_no_import_goes_up_a_layer():
    table = layer_table()
    wrong = [w for path in sorted(PACKAGE.rglob("*.py")) for w in upward(path, module_name(path), table)]
    assert not wrong, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(sorted(set(wrong)))


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself: a foundation module importing the run layer lazily, or relatively, is caught."""
    table = layer_table()
    bad = tmp_path / "probe.py"
    bad.write_text("from .errors import BenchError\n\ndef f():\n    from ..run.recipe import run_one\n")
    assert upward(bad, "curlora_bench.core.probe", table) == [
        "curlora_bench.core.probe:4 (foundation) imports curlora_bench.run.recipe (run)",
        "curlora_bench.core.probe:4 (foundation) imports curlora_bench.run.recipe.run_one (run)"]


def import_circles() -> list[list[str]]:
    """The package's modules that import one another round a circle (strongly connected components of
    more than one module in the import graph, function-level imports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str | None:  # `package.module.name` -> the module it is read from
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {m: {r for _, t in imports_of(p, m) if (r := resolve(t)) not in (None, m)} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_one_that_imports_it_back():
    """Registries name their plugins as "module:object" strings, so no plugin family's base imports
    its plugins (which import it)."""
    assert import_circles() == []


def _heavy_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("loaded:"), done.stdout
    return [m for m in last.removeprefix("loaded:").split(",") if m]


def test_cli_help_imports_no_torch():
    assert _heavy_after("import curlora_bench.cli") == []
    code = ("from typer.testing import CliRunner\nimport curlora_bench.cli as cli\n"
            "assert CliRunner().invoke(cli.app, ['--help']).exit_code == 0")
    assert _heavy_after(code) == []


@pytest.mark.parametrize("folder", ["baselines", "sweep"])
def test_report_of_published_runs_imports_no_torch(folder):
    """`curlora-bench report` on finished runs (every method's report rows included) needs no torch."""
    code = ("from typer.testing import CliRunner\nimport curlora_bench.cli as cli\n"
            f"r = CliRunner().invoke(cli.app, ['report', 'results/published/{folder}'])\n"
            "assert r.exit_code == 0 and 'Plasticity' in r.output, r.output")
    assert _heavy_after(code) == []


def test_run_functions_read_in_one_screen():
    """The run layer reads top to bottom: no function in run/ is over 60 lines."""
    long = []
    for path in sorted((PACKAGE / "run").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
