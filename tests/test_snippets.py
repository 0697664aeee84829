"""Every Python and shell snippet of the README and the docs runs in a test, or is checked.

Run for real, on a tiny run made here (its folder standing in for `results/seq`, a tiny model
for the built-in one): every Python snippet, end to end (`curlora-bench export` → PEFT's
`PeftModel.from_pretrained` and `curlora_bench.load_adapter`); `curlora-bench report` and
`curlora-bench export`; the quick listing commands (`models`, `tasks`, `sequences`, `methods`, `assets list`).

Checked, not run, because they take minutes to hours or need the network:
`curlora-bench run` (parsed by the Typer app, and its config loaded and validated with the
snippet's own `--set`s: the training itself is the rest of the suite's job), `curlora-bench
assets fetch`/`verify` (network, the asset cache), `make` (its target exists in the Makefile:
`make run`/`make test` install and take minutes), `python -m pytest` (its files and markers
exist: it is this suite), `ray start` (a cluster on the user's machines), `mlflow ui` and
`tensorboard` (servers: their command lines parsed by their own CLIs) and `git clone`
(nothing to clone in a test).
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import textwrap

import pytest

from tests.conftest import ROOT, tiny_config

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = ("bash", "sh", "shell", "console")
PYTHON = ("python", "py")
# what a snippet names that only exists on a real installation -> what stands in for it here
STAND_INS = {"results/seq": "{tiny}", "out/lora": "{export}", "smollm2-135m": "tiny-gpt2",
             "~/.cache/curlora-bench/assets/smollm2-135m": "{base}", "results/published/<name>": "results/published/sweep",
             "plots/": "{tmp}/plots", "--plots DIR": "--plots {tmp}/plots-dir"}
QUICK = {"models", "tasks", "sequences", "methods", "list", "report", "export"}  # subcommands run for real


def snippets(langs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(page:line, code) of every fenced block in one of `langs`."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```", text, re.M | re.S):  # in a list item too
            if m.group(1) in langs:
                out.append((f"{page.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}",
                            textwrap.dedent(m.group(2))))
    return out


def commands() -> list[tuple[str, str]]:
    """(page:line, command) of every shell line, continuations joined, comments dropped."""
    out = []
    for where, code in snippets(SHELL):
        for line in code.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s|\s#$|^#", line, maxsplit=1)[0].strip()
            if line:
                out.append((where, line))
    return out


def test_the_docs_have_snippets_of_both_kinds():
    assert len(snippets(PYTHON)) >= 2 and len(commands()) >= 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, toy_data):
    """A finished two-stage run of `lora-r8` (the label the export snippet names), its export,
    and the tiny base model saved as a transformers folder."""
    import yaml

    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_experiment
    from curlora_bench.sources.models import load_model

    d = tmp_path_factory.mktemp("snippets")
    (d / "exp.yaml").write_text(yaml.safe_dump(tiny_config(toy_data, methods=[{"method": "lora", "rank": 8}],
                                                           perplexity=None)))
    run_experiment(load_config(d / "exp.yaml")[0], d / "seq")
    load_model("tiny-gpt2").model.save_pretrained(d / "base")
    return {"tiny": str(d / "seq"), "export": str(d / "out" / "lora"), "base": str(d / "base"), "tmp": str(d)}


def stand_in(text: str, tiny: dict) -> str:
    for name, value in sorted(STAND_INS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(name, value.format(**tiny))
    return text


def parse_cli(words: list[str], cmd=None, name: str = "curlora-bench"):
    """The (sub)command and its parsed parameters, as the CLI (`cmd`, a Click command; default
    ours) would see them (a UsageError if not)."""
    import typer

    from curlora_bench.cli import app

    cmd = cmd or typer.main.get_command(app)
    ctx = cmd.make_context(name, list(words))
    while hasattr(cmd, "commands"):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        rest = [*protected, *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize(("where", "line"), commands(), ids=[f"{w} {c[:40]}" for w, c in commands()])
def test_shell_snippet(where, line, tiny, cli, monkeypatch):
    words = shlex.split(line.split("&&")[0])
    if words[0] == "git":
        return  # `git clone <this repository>`: nothing to clone in a test
    if words[0] == "ray":
        assert words[1] in ("start", "stop", "status"), f"{where}: `ray {words[1]}`?"
        return  # Ray's own command, starting a cluster on the user's machines: not run here
    if words[0] == "mlflow":  # a server: its command line parsed by MLflow's own CLI, not served
        parse_cli(words[1:], pytest.importorskip("mlflow.cli").cli, "mlflow")
        return
    if words[0] == "tensorboard":  # a server: its flags parsed by TensorBoard itself, not served
        pytest.importorskip("tensorboard").program.TensorBoard().configure(argv=words)
        return
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets, f"{where}: `make {words[1]}`: no such target"
        return
    if words[:3] == ["python", "-m", "pytest"]:
        for word in words[3:]:
            if word.startswith("tests/"):
                assert (ROOT / word.split("::")[0]).is_file(), f"{where}: {word} does not exist"
        registered = re.findall(r'"(\w+):', (ROOT / "pyproject.toml").read_text().split("markers", 1)[1].split("]", 1)[0])
        for k, word in enumerate(words[3:-1], 3):
            if word == "-m":
                assert words[k + 1].split()[-1] in registered, f"{where}: marker {words[k + 1]!r} is not registered"
        return
    assert words[0] == "curlora-bench", f"{where}: a command this test does not know: {line!r}"
    words = shlex.split(stand_in(" ".join(shlex.quote(w) for w in words[1:]), tiny))
    ctx = parse_cli(words)  # the command, its arguments and flags exist and parse
    if ctx.info_name == "run":  # minutes to hours: the config and its --set are loaded and validated instead
        from curlora_bench.config.loading import load_config

        load_config(ROOT / ctx.params["config"], ctx.params["set_"] or [])
        return
    if ctx.info_name not in QUICK:
        return  # assets fetch / verify: the network, the asset cache
    if ctx.info_name == "export":
        shutil.rmtree(ctx.params["out_dir"], ignore_errors=True)  # a new folder, whichever test exported first
    monkeypatch.chdir(ROOT)
    code, out, err = cli(*words)
    assert code == 0, f"{where}: `curlora-bench {' '.join(words)}` exited {code}: {err}"


def test_python_snippets_run_end_to_end(tiny, cli, monkeypatch):
    """The export snippet first (it makes out/lora), then every Python snippet as written, its
    names standing in for a real installation's."""
    shutil.rmtree(tiny["export"], ignore_errors=True)
    code, _, err = cli("export", tiny["tiny"], tiny["export"], "--method", "lora-r8", "--seed", "0", "--stage", "2")
    assert code == 0, err
    monkeypatch.chdir(ROOT)
    found = snippets(PYTHON)
    for where, code_text in found:
        source = stand_in(code_text, tiny)
        ast.parse(source)
        namespace: dict = {}
        exec(compile(source, where, "exec"), namespace)  # noqa: S102 (our own documentation)
        for name in ("heads", "model"):
            if name in namespace:
                assert namespace[name] is not None, f"{where}: {name} is None"
    assert any("load_adapter" in code_text for _, code_text in found)
    assert any("PeftModel" in code_text for _, code_text in found)
