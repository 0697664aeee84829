"""Every command, every parameter: a usage mistake is one error line, the usage hint, exit 2."""

from __future__ import annotations

import enum
import typing

import click
import pytest
import typer

from curlora_bench.cli import app


def _commands(cmd, path=()):
    """(command path, command) of every leaf command of the app."""
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


def _kind(annotation):
    """int for `int | None` and `list[int] | None`; the annotation itself otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
        return _kind(args[0])
    return annotation


def _bad_invocations() -> list[tuple[str, list[str]]]:
    """For each command: its required arguments left out, an unknown option, and each typed
    option given a value of the wrong type, out of range or outside its choices."""
    cases = []
    root = typer.main.get_command(app)
    for path, cmd in _commands(root):
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        given = ["x"] * len(args)
        name = " ".join(path)
        if any(a.required for a in args):
            cases.append((f"{name}: missing argument", [*path]))
        cases.append((f"{name}: unknown option", [*path, *given, "--no-such-option"]))
        cases.append((f"{name}: extra argument", [*path, *given, "extra", "extra2"] if args and
                      not any(a.nargs == -1 for a in args) else [*path, "--no-such-option=1"]))
        for p in cmd.params:
            if p.param_type_name != "option" or p.is_flag:
                continue
            flag = p.opts[0]
            kind = _kind(p.type_descriptor.annotation)
            bad = []
            if kind in (int, float):
                bad = ["many", "1e999x"]
                if p.min is not None:
                    bad.append(str(p.min - 1))
            elif isinstance(kind, type) and issubclass(kind, enum.Enum):
                bad = ["xml-nope"]
            for value in bad:
                cases.append((f"{name} {flag} {value}", [*path, *given, flag, value]))
            cases.append((f"{name} {flag} without a value", [*path, *given, flag]))
    cases.append(("unknown command", ["no-such-command"]))
    cases.append(("unknown group command", ["assets", "no-such-command"]))
    return cases


CASES = _bad_invocations()


def test_the_walk_covers_every_command_and_typed_option():
    names = {c[0].split(":")[0].split(" -")[0] for c in CASES}
    for cmd in ("run", "report", "export", "bench", "models", "tasks", "methods",
                "assets list", "assets fetch", "assets verify"):
        assert cmd in names, cmd
    flags = " ".join(c[0] for c in CASES)
    for flag in ("--format xml-nope", "--stage many", "--seed many", "--rank 0", "--executor xml-nope",
                 "--workers many", "--gpus-per-run many", "--seq-len 1", "--warmup -1"):
        assert flag.split()[0] in flags and any(flag in c[0] for c in CASES), flag
    assert len(CASES) > 60


@pytest.mark.parametrize(("case", "argv"), CASES, ids=[c[0] for c in CASES])
def test_usage_error_is_one_line_plus_usage_exit_2(case, argv, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and no results/ folder is read
    code, out, err = cli(*argv)
    assert code == 2, (case, code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("Usage: "), err
    assert "--help" in lines[1] and "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


def test_click_classes_include_typers_vendored_copy():
    from curlora_bench.cli import _click_classes

    classes = _click_classes("ClickException")
    assert click.ClickException in classes
    vendored = pytest.importorskip("typer._click.exceptions")
    assert vendored.ClickException in classes


def test_a_command_exit_code_is_kept(cli, tmp_path, monkeypatch):
    # without standalone mode Click *returns* typer.Exit's code; main must exit with it
    import curlora_bench.sources.assets as assets

    monkeypatch.setattr(assets, "verify", lambda cache_dir=None: [("tiny", "missing")])
    code, out, _ = cli("assets", "verify")
    assert code == 1 and "missing" in out


@pytest.mark.parametrize("path", [p for p, _ in _commands(typer.main.get_command(app))], ids=" ".join)
def test_help_keeps_bracketed_text(path):
    """Rich reads `[word]` in a help text as markup and drops it (`pip install 'pkg[extra]'` lost
    its extra once): every bracket a help text shows must reach the rendered --help."""
    import re

    from typer.testing import CliRunner

    cmd = dict(_commands(typer.main.get_command(app)))[path]
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
    for param in cmd.params:
        for bracketed in re.findall(r"\[[a-z][a-z-]*\]", (param.help or "").replace("\\[", "[")):
            assert bracketed in shown, f"{' '.join(path)} {param.name}: {bracketed} lost from --help"
