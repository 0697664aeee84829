"""tradeoff.png: what the matched-plasticity verdict compares, drawn so the answer can be seen.

Two panels, one above the other, against the same plasticity axis (or its gain over head-only):
perplexity drift (final / initial) on a log axis with ticks written ×1.05, as the report analyses
it, zoomed to the stable points (those past ×3 are listed in the panel instead), and task
forgetting. Each seed is a dot, each point's mean a larger marker (filled when on its family's
frontier) with its 95% interval, frontiers as lines (from two points), duration paths dashed with
their epochs, head-only's plasticity a vertical line, joint training (no plasticity) a dotted drift
level.

The figure is drawn for the width the docs show it at (about 800 px: 8 inches, type of 11-13 pt,
saved at 150 dpi so a click-to-zoom shows more detail). Each point's name is placed where it
covers no marker, interval, legend or other name and lies nearer its own point than any other
point, with a leader line when it has to move away (`place_labels`).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from .tradeoff import TradeOff, duration_paths  # noqa: E402

UNSTABLE = 3.0  # drift beyond x3 is listed, not drawn: it would squash every stable point
TICKS = (0.9, 0.95, 1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0)
WIDTH = 8.0  # inches: shown at about 800 px in the docs' content column, so 1 pt is about 1.4 px there
DPI = 150
# Type sizes for every report figure (`plots.py` uses them too): readable at the width shown.
STYLE = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11,
         "ytick.labelsize": 11, "legend.fontsize": 10.5, "figure.titlesize": 13, "savefig.dpi": DPI}
LABEL_SIZE = 10.5


def ratio(log_drift: float) -> float:
    return math.exp(log_drift)


def drift_axis(ax, shown: list[float]) -> None:
    """A log axis over the drawn drifts (ratios), ticks written ×1.05; intervals reaching further
    are cut at the frame. Every experiment's drift is drawn on this axis."""
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


# ---- labels that cover nothing -----------------------------------------------------------------

def _overlap(a, b) -> float:
    """Area shared by two boxes (x0, y0, x1, y1), display pixels."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _crosses(box, seg) -> bool:
    """Whether segment ((x0, y0), (x1, y1)) passes through box, by sampling along it."""
    (x0, y0), (x1, y1) = seg
    steps = max(2, int(math.hypot(x1 - x0, y1 - y0) / 3))
    return any(box[0] <= x0 + (x1 - x0) * k / steps <= box[2] and box[1] <= y0 + (y1 - y0) * k / steps <= box[3]
               for k in range(steps + 1))


def obstacles(ax, renderer) -> tuple[list, list]:
    """What a label must not cover in `ax`, in display pixels: boxes (markers, the legend, texts
    already there) and segments (error bars, frontier and duration lines, reference lines)."""
    boxes, segments = [], []
    for line in ax.get_lines():
        xy = line.get_transform().transform(line.get_xydata())
        if line.get_marker() not in (None, "None", "", " ") and len(xy):
            r = line.get_markersize() * renderer.points_to_pixels(1.0) / 2 + 2
            boxes += [(x - r, y - r, x + r, y + r) for x, y in xy if math.isfinite(x) and math.isfinite(y)]
        if line.get_linestyle() not in ("None", "", " "):
            segments += [(a, b) for a, b in zip(xy[:-1], xy[1:]) if all(map(math.isfinite, (*a, *b)))]
    for coll in ax.collections:  # error bars (LineCollection) and seed dots (PathCollection)
        for seg in getattr(coll, "get_segments", lambda: [])():
            xy = coll.get_transform().transform(seg)
            segments += list(zip(xy[:-1], xy[1:]))
        if hasattr(coll, "get_offsets") and not hasattr(coll, "get_segments"):
            for x, y in coll.get_offset_transform().transform(coll.get_offsets()):
                boxes.append((x - 3, y - 3, x + 3, y + 3))
    for artist in [*ax.texts, ax.get_legend()]:
        if artist is not None:
            e = artist.get_window_extent(renderer)
            boxes.append((e.x0, e.y0, e.x1, e.y1))
    return boxes, segments


def place_labels(ax, items: list[tuple[float, float, str, str]]) -> None:
    """Annotate (x, y, text, colour) in data coordinates: each name goes to the candidate position
    around its point (eight directions, growing distances) that covers the fewest markers,
    intervals, lines and names already placed, stays inside the panel and lies nearer its own point
    than any other; a leader line joins a name set apart from its point."""
    if not items:
        return
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    boxes, segments = obstacles(ax, renderer)
    frame = ax.get_window_extent(renderer)
    points = [tuple(ax.transData.transform((x, y))) for x, y, _, _ in items]
    px = renderer.points_to_pixels(1.0)
    names: list[tuple] = []  # boxes of the names placed so far, with a margin
    crowded = sorted(range(len(items)), key=lambda i: sum(math.dist(points[i], p) < 80 * px for p in points), reverse=True)
    for i in crowded:
        x, y, text, colour = items[i]
        (cx, cy), probe = points[i], ax.text(0, 0, text, fontsize=LABEL_SIZE)
        e = probe.get_window_extent(renderer)
        w, h = e.width + 4, e.height + 2
        probe.remove()
        best = None
        for radius in (6, 12, 20, 30, 42, 56, 72, 92, 115):
            r = radius * px
            for k in range(16):
                a = 2 * math.pi * k / 16
                dx, dy = math.cos(a), math.sin(a)
                bx = cx + r * dx - w * (0.5 - 0.5 * dx)  # the box's side nearest the point faces it
                by = cy + r * dy - h * (0.5 - 0.5 * dy)
                box = (bx, by, bx + w, by + h)
                centre = (bx + w / 2, by + h / 2)
                cost = r / px * 0.6
                cost += 5000 * (box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1)
                cost += sum(_overlap(box, b) for b in boxes) * 4 / px**2
                cost += 3000 * any(_overlap(box, b) > 0 for b in names)  # names never overlap
                cost += 250 * sum(_crosses(box, s) for s in segments)
                near = min((math.dist(centre, p) for j, p in enumerate(points) if j != i), default=math.inf)
                cost += 400 * (near < math.dist(centre, (cx, cy)))  # beside another point: misread
                if best is None or cost < best[0]:
                    best = (cost, box, r)
        _, box, r = best
        ox, oy = (box[0] - cx) / px, (box[1] - cy) / px  # offset points of the box's lower left
        ax.annotate(text, (x, y), xytext=(ox + 2, oy + 1), textcoords="offset points", ha="left", va="bottom",
                    fontsize=LABEL_SIZE, color=colour, zorder=5,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.75, "edgecolor": "none"},
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.8, "shrinkA": 0, "shrinkB": 4}
                    if r > 10 * px else None)
        names.append((box[0] - 2 * px, box[1] - 2 * px, box[2] + 2 * px, box[3] + 2 * px))


def draw(to: TradeOff, path: Path, word: str = "accuracy") -> Path | None:
    """Both panels into `path` (`word`: what the task numbers are, accuracy or score)."""
    if not any(p.stats["perplexity_drift"] for p in to.points):
        return None
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(2, 1, figsize=(WIDTH, 10.5), dpi=DPI, sharex=True)
        _draw(to, fig, left, right, word)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw(to: TradeOff, fig, left, right, word: str) -> None:
    colours = dict(zip(dict.fromkeys(p.family for p in to.points),
                       plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    unstable, labels, shown_y = draw_points(to, left, right, colours)
    for fam, cols in to.frontiers.items():
        by_name = {p.column: p for p in to.points}
        front = [by_name[c] for c in cols if by_name[c].stats["perplexity_drift"].shown <= UNSTABLE]
        if len(front) < 2:
            continue  # one point is a point, not a frontier
        left.plot([p.stats["plasticity"].mean for p in front], [ratio(p.stats["perplexity_drift"].mean) for p in front],
                  "-", color=colours[fam], lw=1.5, label=f"{fam} (frontier)")
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
    xlabel = textwrap.fill(f"{to.axis}: mean {word} of each task right after it was learned"
                           + (" minus head-only's" if to.axis != "plasticity" else ""), 72)
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        ax.tick_params(labelbottom=True)  # the shared axis is labelled under both panels
        ax.grid(alpha=0.3)
    corpus = f" on {to.drift_corpus}" if to.drift_corpus else ""
    left.set_ylabel(f"perplexity drift{corpus}\nfinal / initial (log scale)")
    right.set_ylabel(f"forgetting of earlier tasks ({word})")
    right.axhline(0, color="black", lw=0.5)
    left.axhline(1, color="black", lw=0.5)
    if unstable:
        left.text(0.02, 0.97, f"past ×{UNSTABLE:g}, not drawn:\n" + "\n".join(unstable), transform=left.transAxes,
                  fontsize=10, va="top", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "grey"})
    left.set_title("Learning vs drift of general text: up is forgetting")
    right.set_title("Learning vs forgetting of the earlier tasks: up is forgetting")
    if left.get_legend_handles_labels()[0]:
        left.legend(loc="upper right" if unstable else "best", framealpha=0.9)
    fig.suptitle("dots: seeds; markers: means with 95% intervals (filled: on the family's frontier)", fontsize=11)
    fig.tight_layout()
    fig.canvas.draw()  # final positions: labels are placed in display pixels
    for ax in (left, right):
        place_labels(ax, labels[ax])


def draw_points(to: TradeOff, left, right, colours) -> tuple[list[str], dict, list[float]]:
    """Each point's seeds and mean with its interval in both panels (joint: a level); returns the
    points past the drift scale, the labels to place per panel and the drift values drawn."""
    unstable, labels, shown_y = [], {left: [], right: []}, []
    for p in (p for p in to.points if p.stats["perplexity_drift"]):
        colour, px = colours[p.family], p.stats["plasticity"]
        if px is None:  # joint training: a drift, no plasticity: a level
            level = ratio(p.stats["perplexity_drift"].mean)
            left.axhline(level, color=colour, linestyle=":", lw=2, label=f"{p.column} (drift only: no plasticity)")
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
            ax.scatter(*zip(*seeds), s=18, color=colour, alpha=0.4, linewidths=0)
            y = f(s.mean)
            if ax is left:
                shown_y += [y, *(v for _, v in seeds if v <= UNSTABLE)]
            xerr = [[px.mean - px.ci95[0]], [px.ci95[1] - px.mean]] if px.ci95 else None
            yerr = [[y - f(s.ci95[0])], [f(s.ci95[1]) - y]] if s.ci95 else None
            ax.errorbar([px.mean], [y], xerr=xerr, yerr=yerr, fmt="o", ms=8, color=colour, capsize=3, lw=1,
                        mfc=colour if p.on_frontier else "white", mec="black", mew=0.8, zorder=3)
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
            ax.plot(xs, ys, "--", color=colours[pts[0].family], lw=1.2, alpha=0.8)
            for x, y, p in zip(xs, ys, shown):  # the duration as a multiple of the path's shortest
                ax.annotate(f"{p.epochs / pts[0].epochs:g}×", (x, y), xytext=(-10, -14), textcoords="offset points",
                            fontsize=10, color=colours[p.family], fontweight="bold")
