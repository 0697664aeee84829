"""tradeoff.png: what the matched-plasticity verdict compares, drawn so the answer can be seen.

Two panels against plasticity (or its gain over head-only): perplexity drift (final / initial)
on a log axis, as the report analyses it, zoomed to the stable points (those past x3 are listed
in the panel instead), and task forgetting. Each seed is a dot, each point's mean a larger marker
(filled when on its family's frontier) with its 95% interval, frontiers as lines (from two
points), duration paths dashed with their epochs, head-only's plasticity a vertical line, joint
training (no plasticity) a dotted drift level; labels are moved apart where they would overlap.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from .tradeoff import TradeOff, duration_paths  # noqa: E402

UNSTABLE = 3.0  # drift beyond x3 is listed, not drawn: it would squash every stable point
TICKS = (0.9, 0.95, 1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0)


def ratio(log_drift: float) -> float:
    return math.exp(log_drift)


def drift_axis(ax, shown: list[float]) -> None:
    """A log axis over the drawn drifts (ratios), ticks written ×1.05; intervals reaching further
    are cut at the frame."""
    lo, hi = min(shown + [1.0]), max(shown + [1.0])
    span = math.log(hi / lo) or 0.05
    lo, hi = lo * math.exp(-0.12 * span), hi * math.exp(0.25 * span)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [1.0]  # ×1 first, then the others that keep 7% of the axis from every kept tick
    for t in TICKS:
        if lo <= t <= hi and all(abs(math.log(t / k)) >= 0.07 * math.log(hi / lo) for k in ticks):
            ticks.append(t)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"×{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def place_labels(ax, items: list[tuple[float, float, str, str]]) -> None:
    """Annotate (x, y, text, colour) without overlaps: each label moves up in small steps (axes
    fractions) until it clears the ones already placed."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    placed: list[tuple[float, float, float]] = []
    for x, y, text, colour in sorted(items, key=lambda i: (i[1], i[0])):
        fx, fy = (x - x0) / (x1 - x0 or 1), (y - y0) / (y1 - y0 or 1)
        width = 0.012 * len(text)
        ly = fy + 0.02
        for _ in range(40):
            if not any(abs(ly - py) < 0.04 and fx < px + pw and px < fx + width for px, py, pw in placed):
                break
            ly += 0.035
        placed.append((fx, ly, width))
        ax.annotate(text, (x, y), xytext=(fx + 0.01, ly), textcoords="axes fraction", fontsize=6, color=colour,
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.4, "alpha": 0.6}
                    if ly - fy > 0.03 else None)


def draw(to: TradeOff, path: Path, word: str = "accuracy") -> Path | None:
    """Both panels into `path` (`word`: what the task numbers are, accuracy or score)."""
    if not any(p.stats["perplexity_drift"] for p in to.points):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    colours = dict(zip(dict.fromkeys(p.family for p in to.points),
                       plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    unstable, labels, shown_y = draw_points(to, left, right, colours)
    for fam, cols in to.frontiers.items():
        by_name = {p.column: p for p in to.points}
        front = [by_name[c] for c in cols if by_name[c].stats["perplexity_drift"].shown <= UNSTABLE]
        if len(front) < 2:
            continue  # one point is a point, not a frontier
        left.plot([p.stats["plasticity"].mean for p in front], [ratio(p.stats["perplexity_drift"].mean) for p in front],
                  "-", color=colours[fam], label=f"{fam} (frontier)")
    draw_durations(to, left, right, colours)
    floor = [p for p in to.points if p.family == "head-only" and p.stats["plasticity"]]
    for p in floor:
        for ax in (left, right):
            ax.axvline(p.stats["plasticity"].mean, color="grey", linestyle="--", lw=0.8,
                       label="head-only (the heads alone)" if ax is left else None)
    if to.axis != "plasticity":
        for ax in (left, right):
            ax.axvline(0, color="grey", linestyle="--", lw=0.8)
    drift_axis(left, shown_y)
    for ax in (left, right):
        place_labels(ax, labels[ax])
        ax.set_xlabel(f"{to.axis}: mean {word} of each task right after it was learned"
                      + (" minus head-only's" if to.axis != "plasticity" else ""))
        ax.grid(alpha=0.3)
    corpus = f" on {to.drift_corpus}" if to.drift_corpus else ""
    left.set_ylabel(f"perplexity drift{corpus}: final / initial (log scale)")
    right.set_ylabel(f"forgetting of earlier tasks ({word})")
    right.axhline(0, color="black", lw=0.5)
    left.axhline(1, color="black", lw=0.5)
    if unstable:
        left.text(0.02, 0.98, f"past ×{UNSTABLE:g}, not drawn:\n" + "\n".join(unstable), transform=left.transAxes, fontsize=7,
                  va="top", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "grey"})
    left.set_title("Learning vs drift of general text: up is forgetting", fontsize=10)
    right.set_title("Learning vs forgetting of the earlier tasks", fontsize=10)
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=7, loc="upper right")
    fig.suptitle("dots: seeds; markers: means with 95% intervals (filled: on the family's frontier)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_points(to: TradeOff, left, right, colours) -> tuple[list[str], dict, list[float]]:
    """Each point's seeds and mean with its interval in both panels (joint: a level); returns the
    points past the drift scale, the labels to place per panel and the drift values drawn."""
    unstable, labels, shown_y = [], {left: [], right: []}, []
    for p in (p for p in to.points if p.stats["perplexity_drift"]):
        colour, px = colours[p.family], p.stats["plasticity"]
        if px is None:  # joint training: a drift, no plasticity: a level
            level = ratio(p.stats["perplexity_drift"].mean)
            left.axhline(level, color=colour, linestyle=":", label=f"{p.column} (drift only: no plasticity)")
            shown_y.append(level)
            continue
        if p.stats["perplexity_drift"].shown > UNSTABLE:
            unstable.append(f"{p.column} ×{p.stats['perplexity_drift'].shown:.3g}")
        for ax, q in ((left, "perplexity_drift"), (right, "forgetting")):
            s = p.stats[q]
            if s is None or (q == "perplexity_drift" and s.shown > UNSTABLE):
                continue
            f = ratio if q == "perplexity_drift" else (lambda v: v)
            seeds = [(r.values["plasticity"], f(r.values[q])) for r in p.runs
                     if r.values["plasticity"] is not None and r.values[q] is not None]
            ax.scatter(*zip(*seeds), s=10, color=colour, alpha=0.35, linewidths=0)
            y = f(s.mean)
            if ax is left:
                shown_y += [y, *(v for _, v in seeds if v <= UNSTABLE)]
            xerr = [[px.mean - px.ci95[0]], [px.ci95[1] - px.mean]] if px.ci95 else None
            yerr = [[y - f(s.ci95[0])], [f(s.ci95[1]) - y]] if s.ci95 else None
            ax.errorbar([px.mean], [y], xerr=xerr, yerr=yerr, fmt="o", ms=6, color=colour, capsize=2, lw=0.8,
                        mfc=colour if p.on_frontier else "white", mec="black", mew=0.7, zorder=3)
            labels[ax].append((px.mean, y, p.column, colour))
    return unstable, labels, shown_y


def draw_durations(to: TradeOff, left, right, colours) -> None:
    """Points that differ only in their epochs, joined in order of training duration; in the drift
    panel only the stable ones (those past the zoom are listed there), in the forgetting panel all."""
    for pts in duration_paths(to):
        stable = [p for p in pts if p.stats["perplexity_drift"].shown <= UNSTABLE]
        for ax, shown, ys in ((left, stable, [ratio(p.stats["perplexity_drift"].mean) for p in stable]),
                              (right, pts, [p.stats["forgetting"].mean if p.stats["forgetting"] else math.nan
                                            for p in pts])):
            if len(shown) < 2:
                continue
            xs = [p.stats["plasticity"].mean for p in shown]
            ax.plot(xs, ys, "--", color=colours[pts[0].family], lw=1, alpha=0.8)
            for x, y, p in zip(xs, ys, shown):  # the duration as a multiple of the path's shortest
                ax.annotate(f"{p.epochs / pts[0].epochs:g}×", (x, y), xytext=(-8, -9), textcoords="offset points", fontsize=6,
                            color=colours[p.family])
