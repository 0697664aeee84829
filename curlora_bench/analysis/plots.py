"""Runs -> PNG figures: accuracy matrices, perplexity per stage, earlier tasks across stages, drift,
the trade-off, and the training loss over the whole sequence (from each run's train_log.jsonl).

Seeds are pooled per report column (settings hash + label): points are means, error bars one
standard deviation. Every figure is drawn for the width the docs show it at (8 inches, about
800 px there) with the type sizes of `tradeoff_plot.STYLE`; panels wrap onto rows rather than
shrink.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from ..core import metrics  # noqa: E402
from ..core.layout import TRAIN_LOG  # noqa: E402
from ..core.metrics import TASK_METRICS  # noqa: E402
from ..store.folders import Run  # noqa: E402
from ..store.schema import RunSummary, read_train_log  # noqa: E402
from .report import check_one_experiment, group_columns  # noqa: E402
from .rows import score_word  # noqa: E402
from .tradeoff import tradeoff  # noqa: E402
from .tradeoff_plot import DPI, STYLE, WIDTH  # noqa: E402


def styled(draw):
    """Draw with the report's type sizes, leaving matplotlib's global settings as they were."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def grid(n: int, per_row: int, height: float, **kwargs):
    """`n` panels on rows of at most `per_row`, the figure WIDTH wide; unused panels hidden."""
    cols = min(n, per_row)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height * rows), squeeze=False, **kwargs)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n], flat[n:]


def by_column(runs: list[Run]) -> dict[str, list[RunSummary]]:
    check_one_experiment(runs)
    return {c.name: [r.summary for r in c.runs] for c in group_columns(runs)}


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    """metrics.mean_std over the measured values; NaN (drawn as a gap) when there are none."""
    vals = [v for v in values if v is not None]
    return metrics.mean_std(vals) if vals else (float("nan"), float("nan"))


@styled
def accuracy_heatmaps(runs: list[Run], path: Path) -> Path:
    groups = by_column(runs)
    tasks = runs[0].summary.tasks
    T = len(tasks)
    fig, axes, _ = grid(len(groups), 3, 3.4 if T <= 3 else 2.6 + 0.25 * T)
    image = None
    per_row = min(len(groups), 3)
    for k, (ax, (label, summaries)) in enumerate(zip(axes, groups.items())):
        mean = np.full((T, T), np.nan)
        for i in range(T):
            for j in range(i + 1):
                mean[i, j] = _mean_std([s.score_matrix[i][j] for s in summaries])[0]
        image = ax.imshow(mean, vmin=0.0, vmax=1.0, cmap="viridis")
        for i in range(T):
            for j in range(i + 1):
                if not np.isnan(mean[i, j]):
                    ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center",
                            color="white" if mean[i, j] < 0.6 else "black", fontsize=11 if T <= 4 else 9)
        ax.set_title(f"{label}\n(n={len(summaries)})", fontsize=11)
        ax.set_xticks(range(T), tasks, rotation=30, ha="right", fontsize=10)
        ax.set_yticks(range(T), [f"after {t}" for t in tasks] if k % per_row == 0 else [], fontsize=10)
    mixed = runs[0].summary.metric is not None  # some task's primary metric is not accuracy
    fig.colorbar(image, ax=axes, shrink=0.8, label="each task's primary metric" if mixed else "accuracy")
    fig.suptitle(f"{'Score' if mixed else 'Accuracy'} matrix A[i][j]: task j (column) after stage i (row)")
    return _save(fig, path)


@styled
def perplexity_per_stage(runs: list[Run], path: Path) -> Path | None:
    groups = by_column(runs)
    tasks = runs[0].summary.tasks
    if runs[0].summary.perplexity.initial is None:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 5))
    x = np.arange(len(tasks) + 1)
    for label, summaries in groups.items():
        series = [[s.perplexity.initial, *s.perplexity.after_stage] for s in summaries]
        stats = [_mean_std([row[k] for row in series]) for k in x]
        ax.errorbar(x, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o", ms=7, capsize=4, label=label)
    ax.set_xticks(x, ["initial", *[f"after {t}" for t in tasks]], rotation=20, ha="right")
    ax.set_ylabel("perplexity")
    corpus = (runs[0].summary.perplexity.protocol or {}).get("corpus", "")
    ax.set_title(f"General-language perplexity per stage ({corpus})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


@styled
def earlier_tasks(runs: list[Run], path: Path) -> Path:
    groups = by_column(runs)
    tasks = runs[0].summary.tasks
    majority = runs[0].summary.baseline
    T = len(tasks)
    fig, axes, spare = grid(T, 2, 3.8, sharey=True)
    for j, (ax, task) in enumerate(zip(axes, tasks)):
        x = np.arange(j, T)
        for label, summaries in groups.items():
            stats = [_mean_std([s.score_matrix[i][j] for s in summaries]) for i in x]
            ax.errorbar(x, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o", ms=7, capsize=4,
                        label=label)
        first = runs[0].summary
        if task in majority:
            floor = "zero-shot" if task in (first.zero_shot or {}) else "majority class"
            ax.axhline(majority[task], color="grey", linestyle="--", linewidth=1, label=floor)
        ax.set_xticks(x, [f"after {tasks[i]}" for i in x], rotation=20, ha="right", fontsize=10)
        ax.set_xlim(j - 0.4, T - 0.6)
        ax.set_title(task if first.metric is None else f"{task} ({TASK_METRICS[first.primary(task)].title})",
                     fontsize=12)
        ax.grid(alpha=0.3)
        ax.tick_params(labelleft=True)
    for ax in axes[::2]:
        ax.set_ylabel("accuracy" if runs[0].summary.metric is None else "primary metric")
    handles, names = axes[0].get_legend_handles_labels()
    by_name = dict(zip(names, handles))
    for ax in axes[1:]:  # the majority line is drawn in every panel: one entry
        by_name.update(zip(*reversed(ax.get_legend_handles_labels())))
    if spare:  # an odd number of tasks leaves a panel free: the legend goes there
        spare[0].set_visible(True)
        spare[0].axis("off")
        spare[0].legend(by_name.values(), by_name.keys(), loc="center")
    else:
        fig.legend(by_name.values(), by_name.keys(), loc="lower center", ncol=min(4, len(by_name)),
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Each task's accuracy from the stage it is learned to the end\n(mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0 if spare else 0.06, 1, 1))
    return _save(fig, path)


@styled
def weight_drift(runs: list[Run], path: Path) -> Path | None:
    groups = by_column(runs)
    tasks = runs[0].summary.tasks
    fig, ax = plt.subplots(figsize=(WIDTH, 5))
    drew = False
    for label, summaries in groups.items():
        series = [[d.mean for d in s.drift] for s in summaries]
        if not any(series) or not any(v > 0 for row in series for v in row):
            continue
        n = max(len(row) for row in series)
        stats = [_mean_std([row[k] if k < len(row) else None for row in series]) for k in range(n)]
        ax.errorbar(np.arange(1, n + 1), [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o", ms=7,
                    capsize=4, label=label)
        drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.set_xticks(np.arange(1, len(tasks) + 1), [f"after {t}" for t in tasks], rotation=20, ha="right")
    ax.set_ylabel("‖ΔW‖_F / ‖W‖_F\n(mean over adapted matrices)")
    ax.set_title("How far each method moved the adapted weights")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def tradeoff_plot(runs: list[Run], path: Path, **options) -> Path | None:
    """The learning–forgetting trade-off in two panels (`analysis/tradeoff_plot.py`)."""
    from .tradeoff_plot import draw

    check_one_experiment(runs)
    to = tradeoff(group_columns(runs), draws=0, **options)
    return draw(to, path, score_word(runs[0].summary.metric)) if to is not None else None


@styled
def training_loss(runs: list[Run], path: Path) -> Path | None:
    """Training loss per optimizer step over the whole sequence: one line per report column (the
    mean over seeds), the seeds' range as a band, stage boundaries as dashed lines."""
    check_one_experiment(runs)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ends: dict[str, tuple[str, list[int]]] = {}  # column -> (colour, last global step of each stage)
    tasks: list[str] = []
    for k, col in enumerate(group_columns(runs)):
        logs = [log for log in (read_train_log(r.path / TRAIN_LOG) for r in col.runs) if log]
        if not logs:
            continue
        per_seed = [{e.global_step: e.loss for e in log} for log in logs]
        steps = sorted({s for seed in per_seed for s in seed})
        values = [[seed[s] for seed in per_seed if s in seed] for s in steps]
        colour = colours[k % len(colours)]
        longest = max(logs, key=len)
        stages = sorted({e.stage for e in longest})
        ends[col.name] = (colour, [max(e.global_step for e in longest if e.stage == s) for s in stages])
        # a gap at each boundary: the next stage trains a new head on another task
        x, mean, lo, hi = [], [], [], []
        for step, v in zip(steps, values):
            if x and any(x[-1] <= end < step for end in ends[col.name][1]):
                for series, gap in ((x, x[-1] + 0.5), (mean, np.nan), (lo, np.nan), (hi, np.nan)):
                    series.append(gap)
            for series, point in ((x, step), (mean, np.mean(v)), (lo, min(v)), (hi, max(v))):
                series.append(point)
        ax.plot(x, mean, color=colour, linewidth=1.2, label=f"{col.name} (n={len(logs)})")
        if len(logs) > 1:
            ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
        tasks = tasks or [next(e.task for e in longest if e.stage == s) for s in stages]
    if not ends:
        plt.close(fig)
        return None
    shared = len({tuple(v) for _, v in ends.values()}) == 1
    for colour, stage_ends in list(ends.values())[:1] if shared else ends.values():
        for x in stage_ends[:-1]:
            ax.axvline(x + 0.5, color="grey" if shared else colour, linestyle="--", linewidth=0.8)
    if shared:
        first = next(iter(ends.values()))[1]
        for x0, x1, task in zip([0, *first[:-1]], first, tasks):
            ax.text((x0 + x1) / 2 + 0.5, 1.01, task, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=11)
    ax.set_xlabel("optimizer step (whole sequence)")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per step, stage boundaries dashed\n(mean over seeds, band: range)", pad=20)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def write_plots(runs: list[Run], folder: Path, **tradeoff_options) -> list[Path]:
    """Every figure for these runs into `folder`; returns the files written (`tradeoff_options`:
    the trade-off's `plasticity` axis and drift `corpus`)."""
    out = [
        accuracy_heatmaps(runs, folder / "accuracy_matrix.png"),
        perplexity_per_stage(runs, folder / "perplexity.png"),
        earlier_tasks(runs, folder / "earlier_tasks.png"),
        weight_drift(runs, folder / "weight_drift.png"),
        tradeoff_plot(runs, folder / "tradeoff.png", **tradeoff_options),
        training_loss(runs, folder / "training_loss.png"),
    ]
    return [p for p in out if p is not None]
