"""The extending guide's skeletons run: docs/guides/task-kinds.md's task kind (the file it includes,
docs/guides/examples/focal_kind.py) trains and scores a real tiny run, and its metric entry reaches
the summary and the report's row, as the guide says.

The kind is registered into copies of the task-kind registries (its spec and its run-time side) and
selected by `kind: focal` on the tasks, so the rest of the suite never sees it.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from curlora_bench.config.loading import load_config
from curlora_bench.core import metrics
from curlora_bench.core.errors import BenchError
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.kinds import KINDS
from curlora_bench.sources.kinds import KINDS as SPECS
from tests.conftest import ROOT, tiny_config

GUIDE = ROOT / "docs" / "guides" / "task-kinds.md"
EXAMPLE = ROOT / "docs" / "guides" / "examples" / "focal_kind.py"


@pytest.fixture
def focal(monkeypatch):
    """The guide's kind, registered for this test only (a task selects it with `kind: focal`)."""
    for registry in (SPECS, KINDS):
        registry.items()  # the built-in kinds first: the copy below keeps them
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    spec = importlib.util.spec_from_file_location("focal_kind_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    SPECS.register("focal", SPECS.adopt("focal", module.FocalSpec))
    KINDS.register("focal", KINDS.adopt("focal", module.Focal))
    return module


def test_the_guide_includes_the_tested_files():
    text = GUIDE.read_text(encoding="utf-8")
    assert '--8<-- "docs/guides/examples/focal_kind.py"' in text
    assert "def max_forgetting(A: Matrix)" in text  # the metric shown is the one tested below


def test_the_guides_task_kind_trains_and_scores_a_run(focal, toy_data, write_config, tmp_path, monkeypatch):
    calls = []
    loss = focal.Focal.loss
    monkeypatch.setattr(focal.Focal, "loss", lambda self, *a, **k: calls.append(k) or loss(self, *a, **k))
    raw = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])
    raw["tasks"] = [{**t, "kind": "focal"} for t in raw["tasks"]]
    cfg, _ = load_config(write_config(raw))
    assert [t.task_kind.name for t in cfg.tasks] == ["focal", "focal"]
    [summary] = run_experiment(cfg, tmp_path / "out")
    assert summary.status == "complete" and calls  # trained through the focal loss
    assert len(summary.score_matrix) == 2 and all(0 <= v <= 1 for v in summary.score_matrix[1])
    records = [json.loads(line) for line in (tmp_path / "out" / summary.label / "seed-0" / "records.jsonl")
               .read_text().splitlines()]
    assert {r["metric"] for r in records} == {"accuracy", "perplexity"}


def test_the_guides_focal_loss_is_cross_entropy_at_gamma_zero(focal, monkeypatch):
    import torch

    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    monkeypatch.setattr(focal, "classify", lambda *a, **k: logits)
    batch = {"input_ids": None, "attention_mask": None, "labels": labels}
    task = type("T", (), {"name": "t"})()
    ce = torch.nn.functional.cross_entropy(logits, labels)
    monkeypatch.setattr(focal, "GAMMA", 0.0)
    assert focal.Focal().loss(None, None, task, batch, "last").item() == pytest.approx(ce.item())
    monkeypatch.setattr(focal, "GAMMA", 2.0)
    per_example = focal.Focal().loss(None, None, task, batch, "last", reduction="none")
    assert per_example.shape == (6,) and (per_example <= torch.nn.functional.cross_entropy(
        logits, labels, reduction="none") + 1e-6).all()
    assert focal.Focal().loss(None, None, task, batch, "last", reduction="sum").item() == pytest.approx(
        per_example.sum().item())


def max_forgetting(A):
    """The guide's metric, as written there."""
    T = len(A)
    if T < 2:
        return None
    return max(max(A[i][j] for i in range(j, T - 1)) - A[T - 1][j] for j in range(T - 1))


def test_the_guides_metric_reaches_the_summary_and_the_report(toy_data, write_config, tmp_path):
    from curlora_bench.analysis.report import build_table, to_markdown
    from curlora_bench.store.folders import find_runs

    assert max_forgetting([[0.9, None, None], [0.7, 0.8, None], [0.6, 0.85, 0.7]]) == pytest.approx(0.3)
    entry = metrics.MatrixMetric("max_forgetting", "Forgetting, worst task", "signed",
                                 lambda A, p0, p1: max_forgetting(A))
    cfg, _ = load_config(write_config(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])))
    before = tmp_path / "before"
    run_experiment(cfg, before)
    metrics.MATRIX_METRICS.append(entry)  # the one entry the guide adds (the list every reader shares)
    try:
        [summary] = run_experiment(cfg, tmp_path / "after")
        A = summary.score_matrix
        assert summary.metrics["max_forgetting"] == pytest.approx(max_forgetting(A))
        text = to_markdown(build_table(find_runs([tmp_path / "after"])))
        assert "| Forgetting, worst task |" in text
        with pytest.raises(BenchError, match="metrics: keys"):  # the guide's warning: older summaries
            find_runs([before])
    finally:
        metrics.MATRIX_METRICS.remove(entry)


def test_the_install_page_lists_what_make_install_installs():
    """The install page's pip line is the Makefile's, and its table has a row for every extra of
    pyproject.toml, naming each package the extra installs."""
    import ast
    import re

    page = (ROOT / "docs" / "getting-started" / "install.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    [extras] = re.findall(r'pip install -q -e "(\.\[[\w,]+\])"', makefile)
    assert f'`pip install -e "{extras}"`' in page
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    section = re.sub(r"#[^\n]*", "", section)  # tomllib is Python 3.11+; the project supports 3.10
    declared = {m[1]: ast.literal_eval(m[2]) for m in re.finditer(r"^(\w+) = (\[.*?\])$", section, re.M | re.S)}
    assert set(extras[2:-1].split(",")) == set(declared)
    names = {"mkdocs": "MkDocs", "mkdocs-material": "Material", "lm_eval": "lm-evaluation-harness",
             "tensorboard": "TensorBoard", "mlflow": "MLflow", "mkdocstrings[python]": "mkdocstrings"}
    for extra, packages in declared.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{extra}` |")), None)
        assert row is not None, f"the install page has no row for the {extra!r} extra"
        for spec in packages:
            package = re.split(r"[<>=!;]", spec)[0]
            assert names.get(package, package) in row, f"{extra}: {package} is not in its row"


def test_reading_results_shows_every_figure_the_report_makes():
    """Every PNG `write_plots` can write is committed under docs/getting-started/figures/ and shown
    and explained (a heading of its own) on Reading the report and plots."""
    import inspect
    import re

    from curlora_bench.analysis import plots

    made = set(re.findall(r'folder / "(\w+\.png)"', inspect.getsource(plots.write_plots)))
    assert len(made) >= 6
    shown = {p.name for p in (ROOT / "docs" / "getting-started" / "figures").glob("*.png")}
    assert shown == made
    page = (ROOT / "docs" / "getting-started" / "reading-results.md").read_text(encoding="utf-8")
    for name in made:
        assert f"### `{name}`" in page and f"(figures/{name})" in page, name
