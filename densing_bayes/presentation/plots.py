"""Figures of a fitted run: every plot is a keyword-only public function returning its Figure.

Each figure is drawn from what a run folder holds (``posterior.nc`` and ``summary.json``), and
most have a "get the plot data" twin (``*_data``) returning the numbers drawn, so a figure can be
checked or re-drawn elsewhere. Functions that need per-row covariates (reference runs' sizes and
token counts, curve rows' losses, which model and benchmark a score belongs to) take ``inputs``:
a :class:`densing_bayes.model.inputs.ModelInputs`, as rebuilt from a run folder by
:func:`densing_bayes.presentation.report.plot_inputs`.

Conventions:

* bands are **equal-tailed** intervals of posterior draws (the package's one interval kind),
  with mass ``ci_prob`` (0.9 by default, the package constant) and, where drawn, 0.5;
  "credible band" means parameter uncertainty of an expected value, "predictive interval" means
  that observation noise is included;
* figures are built on matplotlib's Agg canvas (no GUI, no pyplot state) unless an ``ax`` from
  another figure is passed in;
* colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies); sequential
  colour scales use ``cividis``;
* multiplicative quantities (sizes, densities, losses, compute) are drawn on log axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import wraps

import arviz as az
import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy import stats

from densing_bayes import laws
from densing_bayes.analysis.derived import (DAYS_PER_MONTH, PAPER_REPORTED, doubling_interval,
                                            ratio_interval)
from densing_bayes.analysis.baseline import LLAMA1_RELEASE
from densing_bayes.analysis.misspecification import wilson_interval
from densing_bayes.model.build import (EXTRAPOLATION_DIRECTIONS, UNKNOWN_CHANGEPOINT_SHARPNESS,
                                      design_box, loading_pivot, outside_distances)

#: Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
    "grey": "#999999",
}
PALETTE = [OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "purple", "sky",
                                  "yellow", "black")]
SEQUENTIAL_CMAP = "cividis"

#: The package's interval mass (docs/outputs.md: every interval is equal-tailed, mass 0.9).
CI_PROB = 0.9
#: Inner band drawn beside the main one.
INNER_PROB = 0.5

#: Most posterior draws used for curves over a grid (enough for 90% bands, keeps plots fast).
MAX_CURVE_DRAWS = 400

#: Models the paper names (docs/densing-law-method.md): always labelled when present.
PAPER_NAMED_MODELS = ("Llama-1-7B", "Gemma2-9B", "MiniCPM-3-4B")

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "svg.fonttype": "none",
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
}


def styled(func: Callable) -> Callable:
    """Run a plotting function under the package style (fonts, grid, palette)."""
    @wraps(func)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(STYLE):
            return func(*args, **kwargs)
    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas (headless, independent of pyplot's global state)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure_for(ax, width: float, height: float):
    if ax is None:
        fig = new_figure(width, height)
        return fig, fig.add_subplot()
    return ax.figure, ax


# ---------------------------------------------------------------------------------------- draws
def draws(idata_group, name: str, *, max_draws: int | None = None, seed: int = 0) -> np.ndarray:
    """Draws of ``name`` as an array (sample, ...) with chains and draws stacked.

    ``max_draws`` thins evenly (deterministically) for curves drawn over a grid.
    """
    da = idata_group[name]
    other = [d for d in da.dims if d not in ("chain", "draw")]
    values = da.stack(sample=("chain", "draw")).transpose("sample", *other).values
    if max_draws is not None and len(values) > max_draws:
        keep = np.linspace(0, len(values) - 1, max_draws).round().astype(int)
        values = values[keep]
    return np.asarray(values, dtype=float)


def quantiles(values: np.ndarray, probs: Sequence[float] = (CI_PROB,), axis: int = 0) -> dict:
    """Median and equal-tailed intervals along ``axis``: {"median", "lo90", "hi90", ...}.

    One partition for all quantiles (np.quantile with a list), and NaN-aware only when there
    is a NaN: on the report's (8,000 x 3,000) predictive arrays this is several times faster
    than one np.nanquantile per quantile."""
    qs = [0.5] + [q for p in probs for q in ((1 - p) / 2, (1 + p) / 2)]
    values = np.asarray(values)
    quant = np.nanquantile if np.isnan(values).any() else np.quantile
    got = quant(values, qs, axis=axis)
    out = {"median": got[0]}
    for i, p in enumerate(probs):
        pct = int(round(p * 100))
        out[f"lo{pct}"], out[f"hi{pct}"] = got[1 + 2 * i], got[2 + 2 * i]
    return out


def _pct(p: float) -> int:
    return int(round(p * 100))


# ------------------------------------------------------------------------------------- formatting
def format_count(x: float) -> str:
    """1.3e9 -> '1.3B', 4.5e6 -> '4.5M' (parameter counts, tokens)."""
    if not np.isfinite(x) or x <= 0:
        return ""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            v = x / div
            return f"{v:.0f}{unit}" if v >= 10 or abs(v - round(v)) < 0.05 else f"{v:.1f}{unit}"
    return f"{x:.0f}"


def _count_formatter():
    return FuncFormatter(lambda x, _: format_count(x))


def _plain_log_formatter():
    """Ticks like 0.001, 0.01, 0.1, 1, 10 instead of 10^-3 (easier to read for densities)."""
    def fmt(x, _):
        if x <= 0:
            return ""
        if x >= 1:
            return f"{x:,.0f}"
        return f"{x:.{max(0, -int(math.floor(math.log10(x))))}f}".rstrip("0").rstrip(".") or "0"
    return FuncFormatter(fmt)


def _set_log_axis(axis, formatter=None) -> None:
    axis.set_major_locator(LogLocator(base=10, numticks=12))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
    axis.set_minor_formatter(NullFormatter())
    if formatter is not None:
        axis.set_major_formatter(formatter)


def _date_axis(axis) -> None:
    locator = mdates.AutoDateLocator()
    axis.set_major_locator(locator)
    axis.set_major_formatter(mdates.ConciseDateFormatter(locator))


# --------------------------------------------------------------------------------- label placement
#: Candidate label offsets in points, tried in order: close first, then further out.
_LABEL_OFFSETS = [(dx * s, dy * t) for dx, dy in ((5, 4), (5, 12), (14, 18), (4, 24), (22, 8),
                                                  (10, 32), (30, 22), (36, 4), (20, 44),
                                                  (48, 16))
                  for s, t in ((1, 1), (1, -1), (-1, 1), (-1, -1))]


@dataclass
class PlacedLabel:
    text: str
    x: float
    y: float
    bbox: object


def place_labels(ax, xs, ys, labels: Sequence[str], *, obstacles: Sequence = (),
                 soft_obstacles: Sequence = (), fontsize: float = 7.0,
                 color: str = "#222222") -> list[PlacedLabel]:
    """Greedy non-overlapping labels: each label (in priority order) takes the first candidate
    offset whose text box stays inside the axes and overlaps no earlier label nor any obstacle
    (display-space boxes, e.g. markers). ``soft_obstacles`` (e.g. interval bars) are avoided
    when possible. A label that fits nowhere is left out: the figure shows a legible subset.
    Far offsets get a thin leader line. Call after the axes limits are final.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = _renderer(fig)
    axes_box = ax.get_window_extent(renderer)
    px_per_pt = fig.dpi / 72.0
    placed: list = []
    leaders: list[np.ndarray] = []  # sampled points of the leader lines drawn so far
    out: list[PlacedLabel] = []
    xy_disp = ax.transData.transform(np.column_stack([xs, ys]))
    # Labels are names from user data: never parsed as mathtext (a '$' in a name is text).
    probe = ax.text(0, 0, "", fontsize=fontsize, transform=None, parse_math=False)
    for (x, y), (px, py), text in zip(zip(xs, ys), xy_disp, labels):
        if not (np.isfinite(px) and np.isfinite(py)) or not axes_box.contains(px, py):
            continue
        probe.set_text(text)  # the text's size does not depend on where it goes
        size = probe.get_window_extent(renderer)
        w, h = size.width, size.height
        chosen = None
        for strict in (True, False):
            for dx, dy in _LABEL_OFFSETS:
                x0 = px + dx * px_per_pt - (w if dx < 0 else 0.0)
                y0 = py + dy * px_per_pt - (h if dy < 0 else 0.0)
                box = Bbox.from_bounds(x0, y0, w, h).padded(2.0)
                clash = (not _inside(box, axes_box)
                         or any(box.overlaps(b) for b in placed)
                         or any(box.overlaps(b) for b in obstacles)
                         or any(_hits(box, pts) for pts in leaders)
                         or (strict and any(box.overlaps(b) for b in soft_obstacles)))
                leader = None
                if not clash and math.hypot(dx, dy) > LEADER_MIN_OFFSET:
                    # the leader runs from the point to the text's centre: it must cross no
                    # other label
                    leader = _segment_points((px, py), (box.x0 + box.width / 2,
                                                        box.y0 + box.height / 2))
                    leader = leader[~_inside_box(box, leader)]
                    clash = any(_hits(b, leader) for b in placed)
                if not clash:
                    chosen = (box, dx, dy, leader)
                    break
            if chosen:
                break
        if chosen is None:
            continue
        box, dx, dy, leader = chosen
        arrow = ({"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": "#777777",
                                 "shrinkA": 0, "shrinkB": 2}} if leader is not None else {})
        # A light backing keeps the text legible where a line or band runs under it (labels
        # never cover points: those are obstacles).
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                    fontsize=fontsize, color=color, zorder=6, parse_math=False,
                    bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none",
                          "alpha": 0.75}, **arrow)
        if leader is not None and len(leader):
            leaders.append(leader)
        placed.append(box)
        out.append(PlacedLabel(text, x, y, box))
    probe.remove()
    return out


#: Offsets (points) beyond which a label gets a leader line to its point.
LEADER_MIN_OFFSET = 16.0


def _segment_points(p0, p1, step_px: float = 2.0) -> np.ndarray:
    """Points every ``step_px`` along the segment p0 -> p1 (display coordinates)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    n = max(2, int(np.hypot(*(p1 - p0)) / step_px) + 1)
    return p0 + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0)


def _inside_box(box, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, float).reshape(-1, 2)
    return ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
            & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1))


def _hits(box, points: np.ndarray) -> bool:
    return bool(_inside_box(box, points).any())


def _renderer(fig):
    canvas = fig.canvas
    if hasattr(canvas, "get_renderer"):
        return canvas.get_renderer()
    fig.draw_without_rendering()
    return fig._get_renderer()  # noqa: SLF001 - matplotlib's documented way for other canvases


def _inside(box, outer) -> bool:
    return (box.x0 >= outer.x0 and box.x1 <= outer.x1 and box.y0 >= outer.y0
            and box.y1 <= outer.y1)


def _point_boxes(ax, xs, ys, radius_px: float = 3.5):
    from matplotlib.transforms import Bbox

    pts = ax.transData.transform(np.column_stack([xs, ys]))
    return [Bbox.from_extents(px - radius_px, py - radius_px, px + radius_px, py + radius_px)
            for px, py in pts if np.isfinite(px) and np.isfinite(py)]


def _segment_boxes(ax, xs, lo, hi, half_width_px: float = 1.5):
    from matplotlib.transforms import Bbox

    a = ax.transData.transform(np.column_stack([xs, lo]))
    b = ax.transData.transform(np.column_stack([xs, hi]))
    return [Bbox.from_extents(p[0] - half_width_px, min(p[1], q[1]), p[0] + half_width_px,
                              max(p[1], q[1]))
            for p, q in zip(a, b) if np.all(np.isfinite(p)) and np.all(np.isfinite(q))]


def _norm_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def find_model(names: Iterable[str], wanted: str) -> str | None:
    """The model in ``names`` matching ``wanted``, case- and punctuation-insensitively."""
    key = _norm_name(wanted)
    for name in names:
        if _norm_name(name) == key:
            return name
    return None


# ================================================================================ 1. density trend
def trend_curve(posterior, trend: dict, dates, *, max_draws: int | None = MAX_CURVE_DRAWS
                ) -> np.ndarray:
    """Draws (sample, date) of the trend f(t) in ln density at ``dates`` (datetime64).

    ``trend`` is summary.json's ``trend`` ({kind, changepoint, changepoint_date}); the formula
    is the model's (``densing_bayes.model.build.trend_mean``), evaluated with NumPy. Its
    intercept is ``frontier_intercept`` (the frontier's ln density at the changepoint, which
    lies E[u] above the mean ``trend_intercept``) when the posterior has it.
    """
    origin = np.datetime64(str(trend.get("changepoint_date", "2022-11-30")), "D")
    t = laws.years_since(np.asarray(dates, "datetime64[D]"), origin)[None, :]
    get = lambda n: draws(posterior, n, max_draws=max_draws)[:, None]  # noqa: E731
    intercept = get("frontier_intercept" if "frontier_intercept" in posterior
                    else "trend_intercept")
    kind = trend.get("changepoint", "fixed")
    if kind == "none" or "slope" in posterior:
        return intercept + get("slope") * t
    pre, post = get("slope_pre"), get("slope_post")
    if kind == "unknown" and "changepoint_shift" in posterior:
        s = t - get("changepoint_shift")
        k = UNKNOWN_CHANGEPOINT_SHARPNESS
        return intercept + pre * s + (post - pre) * np.logaddexp(0.0, k * s) / k
    return intercept + pre * np.minimum(t, 0.0) + post * np.maximum(t, 0.0)


def _model_table(summary: dict, posterior=None) -> pd.DataFrame:
    """One row per fitted model: name, release date, params (from summary.json)."""
    rows = [{"model": name, "release_date": np.datetime64(entry["release_date"], "D"),
             "params": entry["params"]}
            for name, entry in (summary.get("models") or {}).items()]
    table = pd.DataFrame(rows, columns=["model", "release_date", "params"])
    if posterior is not None and "model" in posterior.coords:
        order = [str(m) for m in posterior.coords["model"].values]
        table = table.set_index("model").reindex(order).reset_index()
    return table


def density_trend_data(*, idata, summary: dict, ci_prob: float = CI_PROB,
                       n_grid: int = 200) -> dict[str, object]:
    """The numbers behind :func:`plot_density_trend`.

    Returns ``models`` (per model: release date, posterior median and intervals of density, the
    paper baseline's point density, whether it is a frontier model), ``frontier`` (a date grid
    with the median and the 50% and ``ci_prob`` bands of exp f(t)), ``paper_line`` (dates and
    densities of the published slope anchored at Llama-1's release), ``changepoint``.
    """
    post = idata.posterior
    models = _model_table(summary, post)
    log_rho = draws(post, "log_density")
    q = quantiles(np.exp(log_rho), (INNER_PROB, ci_prob))
    p, pi = _pct(ci_prob), _pct(INNER_PROB)
    models["median"], models["lower"], models["upper"] = q["median"], q[f"lo{p}"], q[f"hi{p}"]
    models["lower50"], models["upper50"] = q[f"lo{pi}"], q[f"hi{pi}"]
    base = ((summary.get("paper_baseline") or {}).get("models") or {})
    models["baseline_density"] = [
        (base.get(m) or {}).get("density") if (base.get(m) or {}).get("density") is not None
        else np.nan for m in models["model"]]
    models["frontier"] = running_max(models["release_date"].to_numpy(), models["median"]
                                     .to_numpy())

    trend = summary.get("trend") or {}
    cp_date = np.datetime64(str(trend.get("changepoint_date", "2022-11-30")), "D")
    released = models["release_date"].to_numpy().astype("datetime64[D]")
    first, last = released.min(), released.max()
    pad = max(np.timedelta64(30, "D"), (last - first) // 30)
    start, stop = first - pad, last + pad
    grid = start + (np.linspace(0, 1, n_grid) * (stop - start).astype(float)).astype(
        "timedelta64[D]")
    f = np.exp(trend_curve(post, trend, grid))
    fq = quantiles(f, (INNER_PROB, ci_prob))
    frontier = pd.DataFrame({"date": grid, "median": fq["median"], "lower": fq[f"lo{p}"],
                             "upper": fq[f"hi{p}"], "lower50": fq[f"lo{pi}"],
                             "upper50": fq[f"hi{pi}"]})

    anchor_date = np.datetime64(LLAMA1_RELEASE, "D")
    anchor = float(np.median(trend_curve(post, trend, np.array([anchor_date]))[:, 0]))
    line_dates = np.array([min(anchor_date, last), max(anchor_date, stop)], "datetime64[D]")
    days = (line_dates - anchor_date).astype(float)
    paper_line = pd.DataFrame({"date": line_dates, "density": np.exp(
        anchor + PAPER_REPORTED["slope_per_day"] * days)})

    cp = {"date": cp_date, "kind": trend.get("changepoint", "fixed")}
    if "changepoint_shift" in post:
        shift_days = draws(post, "changepoint_shift") * laws.DAYS_PER_YEAR
        sq = quantiles(shift_days, (ci_prob,))
        cp.update({f"{k}": cp_date + np.timedelta64(int(round(float(sq[key]))), "D")
                   for k, key in (("median", "median"), ("lower", f"lo{p}"),
                                  ("upper", f"hi{p}"))})
        cp["shift_days"] = shift_days
    return {"models": models, "frontier": frontier, "paper_line": paper_line,
            "changepoint": cp, "anchor_density": math.exp(anchor), "ci_prob": ci_prob,
            "kind": trend.get("kind", "frontier")}


def running_max(dates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Models whose value exceeds that of every earlier-released model (the running maximum)."""
    order = np.argsort(np.asarray(dates, "datetime64[D]"), kind="stable")
    out = np.zeros(len(values), bool)
    best = -np.inf
    for i in order:
        if values[i] > best:
            out[i] = True
            best = values[i]
    return out


def _label_priority(models: pd.DataFrame) -> list[int]:
    """Which models to label, most important first: named in the paper, then the running-max
    frontier (densest first), then the densest of the rest."""
    named = [models.index[models["model"] == m][0]
             for w in PAPER_NAMED_MODELS
             if (m := find_model(models["model"], w)) is not None]
    frontier = models[models["frontier"]].sort_values("median", ascending=False).index.tolist()
    rest = models.sort_values("median", ascending=False).index.tolist()
    seen, order = set(), []
    for i in named + frontier + rest[:12]:
        if i not in seen:
            seen.add(i)
            order.append(i)
    return order


def _interval_text(entry, fmt="{:.0f}", unbounded="unbounded") -> str | None:
    """'median [lower, upper]' of a summary interval (``unbounded`` for a null end)."""
    if not isinstance(entry, dict) or entry.get("median") is None:
        return None
    lo = unbounded if entry.get("lower") is None else fmt.format(entry["lower"])
    hi = unbounded if entry.get("upper") is None else fmt.format(entry["upper"])
    return f"{fmt.format(entry['median'])} [{lo}, {hi}]"


def _numbers_box(ax, summary: dict, ci_prob: float):
    """The headline numbers in the upper left of the density-trend axes (None without them)."""
    after = _interval_text(summary.get("doubling_time_days"))
    if after is None:
        return None
    before = _interval_text(summary.get("doubling_time_days_pre"))
    diff = _interval_text(summary.get("slope_difference_per_year"), "{:+.2f}")
    ratio = _interval_text(summary.get("doubling_time_ratio"), "{:.2f}")
    cp = str((summary.get("trend") or {}).get("changepoint_date", ""))
    what = ("benchmarks' mean frontier" if summary.get("doubling_time_days_by_benchmark")
            else "frontier")
    lines = [f"{what} doubling time, median [{_pct(ci_prob)}% interval]:"]
    if before is not None:
        lines += [f"  after {cp}: {after} days", f"  before: {before} days"]
        if diff is not None:  # the difference is stable where the ratio is not
            lines.append(f"  slope after - before: {diff} per year")
        elif ratio is not None:
            lines.append(f"  doubling time before / after: {ratio}")
    else:
        lines.append(f"  {after} days")
    lines.append("  paper: 95 days (running-maximum envelope)")
    lines.append("absolute level: relative to the reference family")
    return ax.text(0.012, 0.985, "\n".join(lines), transform=ax.transAxes, va="top",
                   ha="left", fontsize=8, zorder=7, linespacing=1.35,
                   bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "#bbbbbb",
                         "alpha": 0.92})


@styled
def plot_density_trend(*, idata, summary: dict, ci_prob: float = CI_PROB, ax=None,
                       label_models: bool = True) -> Figure:
    """The Densing Law with uncertainty: density of every model against its release date.

    Points: posterior medians with ``ci_prob`` equal-tailed credible intervals (hollow squares:
    the paper's least-squares pipeline on the same data). Line and bands: the posterior
    frontier exp f(t) with 50% and ``ci_prob`` credible bands. Dashed: the paper's published
    slope (0.0073/day), anchored through the posterior median frontier at Llama-1's release.
    """
    data = density_trend_data(idata=idata, summary=summary, ci_prob=ci_prob)
    own_figure = ax is None
    fig, ax = _figure_for(ax, 10.0, 7.0)
    models, fr = data["models"], data["frontier"]
    what = "frontier" if data["kind"] == "frontier" else "mean trend"
    ax.fill_between(fr["date"], fr["lower"], fr["upper"], color=OKABE_ITO["sky"], alpha=0.25,
                    lw=0, label=f"{what}: {_pct(ci_prob)}% credible band")
    ax.fill_between(fr["date"], fr["lower50"], fr["upper50"], color=OKABE_ITO["sky"],
                    alpha=0.45, lw=0, label=f"{what}: 50% credible band")
    ax.plot(fr["date"], fr["median"], color=OKABE_ITO["blue"], lw=1.8,
            label=f"{what} exp f(t): posterior median")
    pl = data["paper_line"]
    ax.plot(pl["date"], pl["density"], color=OKABE_ITO["black"], lw=1.2, ls=(0, (5, 3)),
            label="paper's slope, 0.0073/day (doubling 95 days),\nanchored at Llama-1's release")
    cp = data["changepoint"]
    when = str(cp["date"]) + (" (ChatGPT)" if cp["date"] == laws.CHATGPT_RELEASE else "")
    ax.axvline(cp["date"], color=OKABE_ITO["vermillion"], lw=1.0, ls=":",
               label={"fixed": f"changepoint {when}",
                      "unknown": f"changepoint: prior centre {when}"}.get(
                          cp["kind"], f"{when}: no changepoint in this model"))
    if "median" in cp:
        ax.axvspan(cp["lower"], cp["upper"], color=OKABE_ITO["vermillion"], alpha=0.12, lw=0,
                   label=f"changepoint: {_pct(ci_prob)}% credible interval")
        ax.axvline(cp["median"], color=OKABE_ITO["vermillion"], lw=1.2,
                   label="changepoint: posterior median")

    x = models["release_date"].to_numpy().astype("datetime64[D]")
    y = models["median"].to_numpy()
    ax.vlines(x, models["lower"], models["upper"], color=OKABE_ITO["grey"], lw=0.9, alpha=0.9,
              zorder=3, label=f"model: {_pct(ci_prob)}% credible interval")
    ax.scatter(x, y, s=16, color=OKABE_ITO["orange"], edgecolor=OKABE_ITO["black"], lw=0.4,
               zorder=4, label="model: posterior median density")
    # The y range follows the posterior alone. The paper's point pipeline is drawn only where
    # it is defined (a finite, positive density) and inside that range: its inversions explode
    # near a sigmoid's ceiling (densities in the tens of thousands, or exactly 0), and such
    # points would squash the posterior into a sliver.
    lows = np.concatenate([models["lower"], fr["lower"]])
    highs = np.concatenate([models["upper"], fr["upper"]])
    post_lo, post_hi = np.nanmin(lows[lows > 0]), np.nanmax(highs)
    y_lo, y_hi = post_lo / 2.0, post_hi * 3.0
    base = models["baseline_density"].to_numpy(float)
    has_base = np.isfinite(base) & (base > 0)
    within = has_base & (base >= y_lo) & (base <= y_hi)
    if has_base.any():
        off = int(has_base.sum() - within.sum())
        ax.scatter(x[within], base[within], s=26, marker="s", facecolor="none",
                   edgecolor=OKABE_ITO["green"], lw=1.0, zorder=4,
                   label=f"paper's point pipeline (defined for {int(has_base.sum())} of "
                         f"{len(models)} models" + (f"; {off} outside this axis, not drawn)"
                                                   if off else ")"))
    box = _numbers_box(ax, summary, ci_prob)
    ax.set_yscale("log")
    _set_log_axis(ax.yaxis, _plain_log_formatter())
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlim(fr["date"].iloc[0], fr["date"].iloc[-1])
    _date_axis(ax.xaxis)
    ax.set_xlabel("release date")
    ax.set_ylabel("capability density  (effective / actual parameters, log scale)")
    if own_figure:  # below the axes: the plot area is for the data and the labels
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3,
                   fontsize=7.5)
    else:
        ax.legend(loc="upper left", ncols=2, fontsize=7.5)
    if label_models and len(models):
        order = _label_priority(models)
        renderer = _renderer(fig)
        fig.draw_without_rendering()  # settle the layout before measuring text
        legend = ax.get_legend()
        legend_box = [legend.get_window_extent(renderer)] if legend is not None else []
        xn = mdates.date2num(x)
        points = (_point_boxes(ax, xn, y, 4.5)
                  + _point_boxes(ax, xn[within], base[within], 5.5))
        text_box = [box.get_window_extent(renderer)] if box is not None else []
        place_labels(ax, xn[order], y[order], models["model"].to_numpy()[order],
                     obstacles=points + legend_box + text_box,
                     soft_obstacles=_segment_boxes(ax, xn, models["lower"], models["upper"]))
    return fig


# ================================================================================ 2. doubling time
def doubling_time_data(*, idata, ci_prob: float = CI_PROB) -> dict[str, object]:
    """Draws of the doubling times (days; NaN where the slope is <= 0) and of their ratio
    before / after (``laws.doubling_time_ratio``: +inf where only the slope after is > 0)."""
    post = idata.posterior
    out: dict[str, object] = {"ci_prob": ci_prob}
    if "slope" in post:
        slopes = {"whole period": draws(post, "slope")}
    elif "slope_post" in post:
        slopes = {"before": draws(post, "slope_pre"), "after": draws(post, "slope_post")}
        out["ratio"] = laws.doubling_time_ratio(slopes["after"], slopes["before"])
        out["difference"] = slopes["after"] - slopes["before"]
    else:
        slopes = {}
    out["doubling_days"] = {k: np.asarray(laws.doubling_time_days(v)) for k, v in slopes.items()}
    out["prob_growth"] = {k: float(np.mean(v > 0)) for k, v in slopes.items()}
    # the summary's intervals: quantiles of the slope, transformed (a draw with a slope <= 0 is
    # "never doubles", the far end, not a dropped draw)
    out["doubling_interval"] = {k: doubling_interval(v, ci_prob) for k, v in slopes.items()}
    return out


def _kde_line(ax, values, *, color, label, lo=None, hi=None, ci_prob=CI_PROB, fill=True,
              interval=None):
    """A kernel density line, its ``ci_prob`` interval shaded and its median dashed; pass
    ``interval`` (a summary's {median, lower, upper}, None = unbounded) when the values drawn
    are a truncated subset of the draws the interval describes."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < 5 or np.ptp(values) == 0:
        return
    lo = np.min(values) if lo is None else lo
    hi = np.max(values) if hi is None else hi
    grid = np.linspace(lo, hi, 400)
    dens = stats.gaussian_kde(values)(grid)
    ax.plot(grid, dens, color=color, lw=1.6, label=label)
    if fill:
        a, b = np.quantile(values, [(1 - ci_prob) / 2, (1 + ci_prob) / 2])
        med = np.median(values)
        if interval is not None and interval.get("median") is not None:
            a = grid[0] if interval.get("lower") is None else interval["lower"]
            b = grid[-1] if interval.get("upper") is None else interval["upper"]
            med = interval["median"]
        inside = (grid >= a) & (grid <= b)
        ax.fill_between(grid[inside], dens[inside], color=color, alpha=0.25, lw=0)
        ax.vlines(med, 0, np.interp(med, grid, dens), color=color, lw=1.0, ls="--")


@styled
def plot_doubling_time(*, idata, ci_prob: float = CI_PROB) -> Figure:
    """Posterior densities of the doubling time before and after the changepoint (days, with a
    months axis on top) and of the acceleration slope_after - slope_before (per year): the
    difference, not the ratio, which is unstable when the slope before has mass near 0."""
    data = doubling_time_data(idata=idata, ci_prob=ci_prob)
    has_ratio = "ratio" in data
    fig = new_figure(10.0 if has_ratio else 6.0, 3.8)
    axes = fig.subplots(1, 2 if has_ratio else 1, squeeze=False)[0]
    ax = axes[0]
    dd = data["doubling_days"]
    finite = np.concatenate([v[np.isfinite(v)] for v in dd.values()]) if dd else np.array([])
    if finite.size:
        # cut the axis at 1.6 x the largest finite interval end: a slope near 0 has doubling
        # times in the tens of thousands of days, which would squeeze every density flat
        ends = [e for iv in data["doubling_interval"].values()
                for e in (iv["upper"], iv["median"]) if e is not None]
        hi = min(float(np.quantile(finite, 0.995)), 1.6 * max(ends)) if ends \
            else float(np.quantile(finite, 0.995))
        hi = max(hi, PAPER_REPORTED["doubling_time_days"] * 1.15)
        lo = max(0.0, float(np.quantile(finite, 0.001)) * 0.8)
        # reference lines are part of the comparison: never clip them off the axis
        lo = min(lo, 0.85 * PAPER_REPORTED["doubling_time_days"])
        colors = {"before": OKABE_ITO["orange"], "after": OKABE_ITO["blue"],
                  "whole period": OKABE_ITO["blue"]}
        for key, values in dd.items():
            shown = values[np.isfinite(values) & (values <= hi)]
            share = data["prob_growth"][key]
            label = f"{key} the changepoint" if key != "whole period" else "whole period"
            text = _interval_text(data["doubling_interval"][key])
            if text is not None:
                label += f": {text} days"
            if share < 1:
                label += f" (P(slope>0) = {share:.2f})"
            _kde_line(ax, shown, color=colors[key], label=label, lo=lo, hi=hi, ci_prob=ci_prob,
                      interval=data["doubling_interval"][key])
        ax.axvline(PAPER_REPORTED["doubling_time_days"], color=OKABE_ITO["black"], lw=1.0,
                   ls=(0, (5, 3)), label="paper: 95 days")
        if has_ratio:
            pre_days = math.log(2) / PAPER_REPORTED["slope_per_day_pre"]
            if pre_days <= hi:
                ax.axvline(pre_days, color=OKABE_ITO["grey"], lw=1.0, ls=(0, (5, 3)),
                           label=f"paper, before: ln2/0.0048 = {pre_days:.0f} days")
        ax.set_xlim(lo, hi)
        secax = ax.secondary_xaxis("top", functions=(lambda d: d / DAYS_PER_MONTH,
                                                     lambda m: m * DAYS_PER_MONTH))
        secax.set_xlabel("doubling time (months)")
    ax.set_xlabel("doubling time of the frontier density (days); "
                  f"median [{_pct(ci_prob)}% interval] in the legend")
    ax.set_ylabel("posterior probability density")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # headroom: the legend sits above the densities
    ax.legend(loc="upper right", fontsize=7.5)
    if has_ratio:
        ax = axes[1]
        diff = np.asarray(data["difference"])
        finite = diff[np.isfinite(diff)]
        paper = (PAPER_REPORTED["slope_per_day"] - PAPER_REPORTED["slope_per_day_pre"]) \
            * laws.DAYS_PER_YEAR
        lo, hi = np.quantile(finite, [0.005, 0.995])
        lo, hi = min(lo, -0.1), max(hi, paper * 1.1)
        qs = np.quantile(finite, [0.5, (1 - ci_prob) / 2, (1 + ci_prob) / 2])
        _kde_line(ax, finite[(finite >= lo) & (finite <= hi)], color=OKABE_ITO["green"],
                  label=f"posterior: {qs[0]:+.2f} [{qs[1]:+.2f}, {qs[2]:+.2f}]", lo=lo, hi=hi,
                  ci_prob=ci_prob)
        ax.axvline(0.0, color=OKABE_ITO["grey"], lw=1.0, label="no acceleration (0)")
        ax.axvline(paper, color=OKABE_ITO["black"], lw=1.0, ls=(0, (5, 3)),
                   label=f"paper: {paper:+.2f} (0.0073 - 0.0048 per day)")
        p = float(np.mean(finite > 0.0))
        ratio = np.asarray(data["ratio"])
        ratio_text = _interval_text(ratio_interval(ratio, ci_prob), "{:.2f}",
                                    unbounded="inf") or "median infinite"
        # the numbers as the panel's title: inside the axes they collide with the legend
        ax.set_title(f"P(difference > 0) = {p:.3f}\ndoubling time before / after: "
                     f"{ratio_text}; P(ratio > 1) = {float(np.mean(ratio > 1)):.3f}",
                     fontsize=8.5, fontweight="bold")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.4)
        ax.set_xlabel("acceleration: slope after - slope before (e-folds of density per year)")
        ax.set_ylabel("posterior probability density")
        ax.legend(loc="upper left", fontsize=7.5)
    return fig


# ================================================================ 3. effective size per model
def model_forest_data(*, idata, summary: dict, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Per model (newest first): params, and median / 50% / ``ci_prob`` intervals of effective
    params and density, with the paper baseline's points."""
    post = idata.posterior
    table = _model_table(summary, post)
    p, pi = _pct(ci_prob), _pct(INNER_PROB)
    for name in ("effective_params", "density"):
        values = (draws(post, name) if name in post else
                  np.exp(draws(post, "log_effective_params" if name == "effective_params"
                                else "log_density")))
        q = quantiles(values, (INNER_PROB, ci_prob))
        table[f"{name}_median"] = q["median"]
        table[f"{name}_lower"], table[f"{name}_upper"] = q[f"lo{p}"], q[f"hi{p}"]
        table[f"{name}_lower50"], table[f"{name}_upper50"] = q[f"lo{pi}"], q[f"hi{pi}"]
    base = ((summary.get("paper_baseline") or {}).get("models") or {})
    for name in ("effective_params", "density"):
        table[f"baseline_{name}"] = [
            float(v) if (v := (base.get(m) or {}).get(name)) is not None else np.nan
            for m in table["model"]]
    return table.sort_values(["release_date", "model"], ascending=False).reset_index(drop=True)


@styled
def plot_effective_size(*, idata, summary: dict, ci_prob: float = CI_PROB) -> Figure:
    """Forest plots per model (newest at the top): effective parameter size with the actual
    size marked, and density with the reference family's density 1 marked (log x axes)."""
    table = model_forest_data(idata=idata, summary=summary, ci_prob=ci_prob)
    n = len(table)
    fig = new_figure(10.0, max(3.0, 0.155 * n + 1.3))
    axes = fig.subplots(1, 2, sharey=True)
    ypos = np.arange(n)[::-1]
    labels = [f"{m}  ({str(d)[:7]})" for m, d in zip(table["model"], table["release_date"])]
    for ax, name, xlabel in ((axes[0], "effective_params", "parameters (log scale)"),
                             (axes[1], "density", "capability density (log scale)")):
        for row in ypos[::2]:  # banding: follow a row across both panels
            ax.axhspan(row - 0.5, row + 0.5, color="#f2f2f2", lw=0, zorder=0)
        ax.hlines(ypos, table[f"{name}_lower"], table[f"{name}_upper"], color=OKABE_ITO["sky"],
                  lw=1.2, label=f"{_pct(ci_prob)}% credible interval")
        ax.hlines(ypos, table[f"{name}_lower50"], table[f"{name}_upper50"],
                  color=OKABE_ITO["blue"], lw=3.0, label="50% credible interval")
        ax.scatter(table[f"{name}_median"], ypos, s=12, color=OKABE_ITO["black"], zorder=4,
                   label="posterior median")
        base = table[f"baseline_{name}"].to_numpy(float)
        defined = np.isfinite(base) & (base > 0)
        lo_x = np.nanmin(table[f"{name}_lower"]) / 3.0
        hi_x = np.nanmax(table[f"{name}_upper"]) * 3.0
        if name == "effective_params":
            lo_x = min(lo_x, np.nanmin(table["params"]) / 1.5)
            hi_x = max(hi_x, np.nanmax(table["params"]) * 1.5)
        else:  # the reference line (density 1) is part of the figure: keep it in range
            lo_x, hi_x = min(lo_x, 1 / 1.5), max(hi_x, 1.5)
        ok = defined & (base >= lo_x) & (base <= hi_x)
        ax.scatter(base[ok], ypos[ok], s=22, marker="s", facecolor="none",
                   edgecolor=OKABE_ITO["green"], lw=0.9, zorder=5,
                   label=f"paper's point pipeline (defined for {int(defined.sum())} of {n} "
                         f"models; points off the axes not drawn)")
        ax.set_xscale("log")
        ax.set_xlim(lo_x, hi_x)
        ax.tick_params(axis="x", top=True, labeltop=True)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        ax.set_ylim(-0.8, n - 0.2)
    axes[0].scatter(table["params"], ypos, marker="x", s=22, color=OKABE_ITO["vermillion"],
                    zorder=5, label="actual parameters")
    _set_log_axis(axes[0].xaxis, _count_formatter())
    _set_log_axis(axes[1].xaxis, _plain_log_formatter())
    axes[1].axvline(1.0, color=OKABE_ITO["grey"], lw=1.0, ls="--",
                    label="density 1 (reference family)")
    axes[0].set_yticks(ypos, labels, fontsize=7 if n > 40 else 8, parse_math=False)
    axes[0].set_title("effective parameter size (at D0 training tokens, 1T by default)")
    axes[1].set_title("density = effective / actual size")
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncols=4,
               fontsize=7.5)
    return fig


# ======================================================================= 4. loss law per benchmark
def _reference_sizes(inputs) -> tuple[np.ndarray, np.ndarray]:
    n = np.exp(np.asarray(inputs.law_x_params) + inputs.centre_log_params)
    d = np.exp(np.asarray(inputs.law_x_tokens) + inputs.centre_log_tokens)
    return n, d


def loss_law_data(*, idata, inputs, ci_prob: float = CI_PROB, n_grid: int = 40
                  ) -> dict[str, pd.DataFrame]:
    """Data points and fitted curves of the loss law, per benchmark.

    ``points``: benchmark, params N, tokens D, compute 6ND, loss. ``curves``: for each
    reference size N of the benchmark, a grid over its token range with the median and
    ``ci_prob`` credible band of the expected loss (parameter uncertainty).
    """
    post = idata.posterior
    n, d = _reference_sizes(inputs)
    bench = np.asarray(inputs.benchmarks)[np.asarray(inputs.law_benchmark)]
    points = pd.DataFrame({"benchmark": bench, "params": n, "tokens": d, "compute": 6 * n * d,
                           "loss": np.asarray(inputs.law_loss)})
    E, A, B = (draws(post, k, max_draws=MAX_CURVE_DRAWS) for k in ("E", "A", "B"))
    alpha, beta = (draws(post, k, max_draws=MAX_CURVE_DRAWS) for k in ("alpha", "beta"))
    p = _pct(ci_prob)
    rows = []
    for bi, b in enumerate(inputs.benchmarks):
        sub = points[points["benchmark"] == b]
        for size in np.unique(sub["params"].round(-3)):
            toks = sub.loc[np.isclose(sub["params"].round(-3), size), "tokens"]
            grid = np.exp(np.linspace(np.log(toks.min()) - 0.15, np.log(toks.max()) + 0.15,
                                      n_grid))
            xn = np.log(size) - inputs.centre_log_params
            xd = np.log(grid) - inputs.centre_log_tokens
            loss = (E[:, bi, None] + A[:, bi, None] * np.exp(-alpha[:, bi, None] * xn)
                    + B[:, bi, None] * np.exp(-beta[:, bi, None] * xd[None, :]))
            q = quantiles(loss, (ci_prob,))
            rows.append(pd.DataFrame({"benchmark": b, "params": size, "tokens": grid,
                                      "compute": 6 * size * grid, "median": q["median"],
                                      "lower": q[f"lo{p}"], "upper": q[f"hi{p}"]}))
    curves = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return {"points": points, "curves": curves}


def _grid_shape(k: int, max_cols: int = 5) -> tuple[int, int]:
    """Rows and columns for ``k`` small multiples: near-square, few empty panels."""
    k = max(1, k)
    preferred = {1: 1, 2: 2, 3: 3, 4: 4, 5: 3, 6: 3, 7: 4, 8: 4, 9: 3, 10: 5, 11: 4, 12: 4}
    cols = min(max_cols, preferred.get(k, max_cols))
    return math.ceil(k / cols), cols


def _size_colours(sizes: np.ndarray) -> dict[float, str]:
    sizes = np.sort(np.unique(sizes))
    if len(sizes) <= len(PALETTE) - 1:
        return {s: PALETTE[i] for i, s in enumerate(sizes)}
    cmap = mpl.colormaps[SEQUENTIAL_CMAP]
    return {s: mpl.colors.to_hex(cmap(i / max(1, len(sizes) - 1)))
            for i, s in enumerate(sizes)}


@styled
def plot_loss_law(*, idata, inputs, ci_prob: float = CI_PROB) -> Figure:
    """Loss law per benchmark: reference runs' loss against training compute 6ND (log-log),
    one colour per model size N, with the fitted law along each size's token range
    (median and ``ci_prob`` credible band of the expected loss)."""
    data = loss_law_data(idata=idata, inputs=inputs, ci_prob=ci_prob)
    points, curves = data["points"], data["curves"]
    benchmarks = list(inputs.benchmarks)
    rows, cols = _grid_shape(len(benchmarks))
    fig = new_figure(min(12.0, 2.5 * cols + 0.6), 2.3 * rows + 0.9)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    colours = _size_colours(points["params"].round(-3).to_numpy())
    for ax, b in zip(axes, benchmarks):
        sub = points[points["benchmark"] == b]
        for size, colour in colours.items():
            c = curves[(curves["benchmark"] == b) & np.isclose(curves["params"], size)]
            if len(c):
                ax.fill_between(c["compute"], c["lower"], c["upper"], color=colour, alpha=0.25,
                                lw=0)
                ax.plot(c["compute"], c["median"], color=colour, lw=1.1)
            s = sub[np.isclose(sub["params"].round(-3), size)]
            ax.scatter(s["compute"], s["loss"], s=10, color=colour, edgecolor="white", lw=0.3,
                       zorder=3)
        ax.set_title(b)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _set_log_axis(ax.xaxis)
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=5))
        c_all = curves[curves["benchmark"] == b]
        values = np.concatenate([sub["loss"], c_all["lower"], c_all["upper"]]) if len(c_all) \
            else sub["loss"].to_numpy()
        _nice_log_y(ax, values)
        ax.set_xlabel("compute 6ND (FLOPs)")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("loss (log scale)")
    for ax in axes[len(benchmarks):]:
        ax.set_visible(False)
    handles = [mpl.lines.Line2D([], [], color=c, marker="o", lw=1.1, markersize=4,
                                label=f"N = {format_count(s)}") for s, c in colours.items()]
    handles.append(mpl.patches.Patch(color=OKABE_ITO["grey"], alpha=0.35,
                                     label=f"{_pct(ci_prob)}% credible band"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(8, len(handles)))
    return fig


def _nice_log_y(ax, values) -> None:
    """Readable ticks on a log y axis. Losses often span less than a decade, where log ticks
    label one value or none: there, round values (MaxNLocator) labelled plainly."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() < 8:
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_minor_locator(mpl.ticker.NullLocator())
    else:
        _set_log_axis(ax.yaxis)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


# ============================================================== 5. loss -> score per benchmark
def evaluated_loss_draws(*, idata, inputs, max_draws: int | None = MAX_CURVE_DRAWS) -> np.ndarray:
    """Draws (sample, model, benchmark) of the loss the loss law gives each evaluated model at
    its effective size (as benchmark b reads it, with the benchmark's loading and drift) and
    the data budget D0, with the law's extrapolation tilt (the x position of a model on the
    sigmoid, where the model puts it)."""
    post = idata.posterior
    log_eff = draws(post, "log_effective_params", max_draws=max_draws)
    E, A, B = (draws(post, k, max_draws=max_draws) for k in ("E", "A", "B"))
    alpha, beta = (draws(post, k, max_draws=max_draws) for k in ("alpha", "beta"))
    xn = log_eff[:, :, None] - inputs.centre_log_params
    if "benchmark_loading" in post:  # benchmark b reads p + lambda_b (log N_eff - p)
        pivot = loading_pivot(inputs.model_log_params) - inputs.centre_log_params
        lam = draws(post, "benchmark_loading", max_draws=max_draws)
        xn = pivot + lam[:, None, :] * (xn - pivot)
    if "benchmark_drift" in post:  # benchmark b reads log N_eff + kappa_b t_m
        kappa = draws(post, "benchmark_drift", max_draws=max_draws)
        xn = xn + kappa[:, None, :] * np.asarray(inputs.model_time)[None, :, None]
    loss = (E[:, None, :] + A[:, None, :] * np.exp(-alpha[:, None, :] * xn)
            + B[:, None, :] * np.exp(-beta[:, None, :] * inputs.log_d0_centred))
    if "loss_extrapolation_tilt" in post:  # the law's error outside the ladder, as in the model
        tilt = post["loss_extrapolation_tilt"]
        columns = [EXTRAPOLATION_DIRECTIONS.index(str(k)) for k in tilt["extrapolation"].values]
        tilt = draws(post, "loss_extrapolation_tilt", max_draws=max_draws)  # (S, bench, K)
        box = tuple(post.attrs["design_box"]) if "design_box" in post.attrs \
            else design_box(inputs)
        distance = outside_distances(xn, np.full(xn.shape, inputs.log_d0_centred), box,
                                     xp=np)[..., columns]  # (S, model, bench, K)
        loss = loss * np.exp(np.sum(distance * tilt[:, None, :, :], axis=-1))
    return loss


def loss_score_data(*, idata, inputs, ci_prob: float = CI_PROB, n_grid: int = 120
                    ) -> dict[str, pd.DataFrame]:
    """The numbers behind :func:`plot_loss_score`.

    ``curve_points``: the reference family's (loss, score) rows. ``curves``: per benchmark, a loss
    grid with the median and ``ci_prob`` credible band of the reference sigmoid, and the median
    of the evaluated-protocol curve (with the protocol offset delta_b and scale k_b).
    ``models``: per reported score, the model, benchmark, score and the posterior median and
    interval of the model's loss.
    """
    post = idata.posterior
    if "format" in post["gamma"].dims:  # the reference protocol's (RC) curve
        post = post.sel(format="rc")
    bench_names = np.asarray(inputs.benchmarks)
    formats = np.asarray(getattr(inputs, "curve_format", []))
    rc_rows = formats == 0 if len(formats) else slice(None)
    curve_points = pd.DataFrame({"benchmark": bench_names[np.asarray(inputs.curve_benchmark)],
                                 "loss": np.asarray(inputs.curve_loss),
                                 "score": np.asarray(inputs.curve_score)})[rc_rows]
    gamma, mid, span = (draws(post, k, max_draws=MAX_CURVE_DRAWS)
                        for k in ("gamma", "midpoint", "score_span"))
    delta = (draws(post, "protocol_offset", max_draws=MAX_CURVE_DRAWS)
             if "protocol_offset" in post else np.zeros_like(gamma))
    # with [observation] protocol_scale the reported scores' logit slope is k_b times the
    # reference curve's (the model's score chain, analysis.score_chain)
    scale = (draws(post, "protocol_scale", max_draws=MAX_CURVE_DRAWS)
             if "protocol_scale" in post else np.ones_like(gamma))
    chance = np.asarray(inputs.chance)
    models = pd.DataFrame(columns=["model", "benchmark", "score", "loss_median", "loss_lower",
                                   "loss_upper"])
    eval_loss = None
    if getattr(inputs, "has_evaluated_models", False) and "log_effective_params" in post:
        eval_loss = evaluated_loss_draws(idata=idata, inputs=inputs)
        q = quantiles(eval_loss, (ci_prob,))
        m, b = np.asarray(inputs.score_model), np.asarray(inputs.score_benchmark)
        p = _pct(ci_prob)
        models = pd.DataFrame({"model": np.asarray(inputs.models)[m], "benchmark": bench_names[b],
                               "score": np.asarray(inputs.score_value),
                               "loss_median": q["median"][m, b],
                               "loss_lower": q[f"lo{p}"][m, b], "loss_upper": q[f"hi{p}"][m, b]})
    rows = []
    p = _pct(ci_prob)
    for bi, b in enumerate(bench_names):
        losses = [curve_points.loc[curve_points["benchmark"] == b, "loss"].to_numpy()]
        if len(models):
            losses.append(models.loc[models["benchmark"] == b, "loss_median"].to_numpy())
        allv = np.concatenate(losses)
        allv = allv[np.isfinite(allv)]
        if allv.size == 0:
            continue
        lo, hi = np.min(allv), np.max(allv)
        pad = 0.05 * (hi - lo if hi > lo else max(hi, 1e-3))
        grid = np.linspace(lo - pad, hi + pad, n_grid)
        logit = -gamma[:, bi, None] * (grid[None, :] - mid[:, bi, None])
        ref = chance[bi] + span[:, bi, None] / (1.0 + np.exp(-logit))
        evald = chance[bi] + span[:, bi, None] / (
            1.0 + np.exp(-(logit * scale[:, bi, None] + delta[:, bi, None])))
        q = quantiles(ref, (ci_prob,))
        qe = quantiles(evald, (ci_prob,))
        rows.append(pd.DataFrame({"benchmark": b, "loss": grid, "median": q["median"],
                                  "lower": q[f"lo{p}"], "upper": q[f"hi{p}"],
                                  "eval_median": qe["median"], "eval_lower": qe[f"lo{p}"],
                                  "eval_upper": qe[f"hi{p}"], "chance": chance[bi]}))
    curves = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return {"curve_points": curve_points, "curves": curves, "models": models}


@styled
def plot_loss_score(*, idata, inputs, ci_prob: float = CI_PROB) -> Figure:
    """Loss -> score per benchmark: the reference family's rows (grey), the fitted sigmoid
    (median and ``ci_prob`` credible band), the reported scores' curve (the reference curve with
    their protocol offset and, with [observation] protocol_scale, their slope factor; dashed),
    and the evaluated models' reported scores at their posterior median loss."""
    data = loss_score_data(idata=idata, inputs=inputs, ci_prob=ci_prob)
    benchmarks = list(inputs.benchmarks)
    rows, cols = _grid_shape(len(benchmarks))
    fig = new_figure(min(12.0, 2.5 * cols + 0.6), 2.3 * rows + 0.9)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cp, curves, models = data["curve_points"], data["curves"], data["models"]
    for ax, b in zip(axes, benchmarks):
        pts = cp[cp["benchmark"] == b]
        ax.scatter(pts["loss"], pts["score"], s=7 if len(pts) < 500 else 4, color="#7f7f7f",
                   alpha=0.7 if len(pts) < 500 else 0.45, lw=0, rasterized=len(pts) > 500,
                   zorder=2)
        c = curves[curves["benchmark"] == b]
        if len(c):
            ax.fill_between(c["loss"], c["lower"], c["upper"], color=OKABE_ITO["sky"],
                            alpha=0.35, lw=0, zorder=1)
            ax.plot(c["loss"], c["median"], color=OKABE_ITO["blue"], lw=1.4, zorder=3)
            if len(models):
                ax.plot(c["loss"], c["eval_median"], color=OKABE_ITO["vermillion"], lw=1.1,
                        ls="--", zorder=3)
            ax.axhline(c["chance"].iloc[0], color=OKABE_ITO["black"], lw=0.7, ls=":")
        m = models[models["benchmark"] == b]
        if len(m):
            ax.scatter(m["loss_median"], m["score"], s=11, color=OKABE_ITO["orange"],
                       edgecolor=OKABE_ITO["black"], lw=0.3, zorder=4)
        ax.set_title(b)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[len(benchmarks):]:
        ax.set_visible(False)
    for ax in axes[:len(benchmarks)]:
        ax.set_xlabel("loss")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("score (fraction)")
    handles = [
        mpl.lines.Line2D([], [], color=OKABE_ITO["grey"], marker="o", lw=0, markersize=3,
                         label="reference runs (loss, score)"),
        mpl.lines.Line2D([], [], color=OKABE_ITO["blue"], lw=1.4,
                         label="fitted sigmoid: posterior median"),
        mpl.patches.Patch(color=OKABE_ITO["sky"], alpha=0.5,
                          label=f"{_pct(ci_prob)}% credible band"),
        mpl.lines.Line2D([], [], color=OKABE_ITO["black"], lw=0.7, ls=":", label="chance"),
    ]
    if len(models):
        handles[2:2] = [
            mpl.lines.Line2D([], [], color=OKABE_ITO["vermillion"], lw=1.1, ls="--",
                             label="reported scores' curve (protocol offset and scale)"),
            mpl.lines.Line2D([], [], color=OKABE_ITO["orange"], marker="o", lw=0,
                             markeredgecolor="black", markersize=4,
                             label="evaluated model: reported score at its median loss")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    return fig


# ============================================================================= 6. checks
#: Parameters shown prior vs posterior: name -> (label, transform).
PRIOR_POSTERIOR_PARAMETERS: dict[str, tuple[str, Callable]] = {
    "slope_pre": ("slope before (ln density / year)", lambda v: v),
    "slope_post": ("slope after (ln density / year)", lambda v: v),
    "slope": ("slope (ln density / year)", lambda v: v),
    "trend_intercept": ("mean ln density at changepoint", lambda v: v),
    "changepoint_shift": ("changepoint shift (days)", lambda v: v * laws.DAYS_PER_YEAR),
    "frontier_inefficiency": ("frontier inefficiency scale sigma_u", lambda v: v),
    "frontier_noise": ("frontier noise sigma_v", lambda v: v),
    "trend_noise": ("trend noise sigma", lambda v: v),
    "loss_log_alpha_mu": ("loss exponent alpha (pooled, e^mu)", np.exp),
    "loss_log_beta_mu": ("loss exponent beta (pooled, e^mu)", np.exp),
    "sigmoid_log_slope_mu": ("sigmoid slope gamma L_s (pooled, e^mu)", np.exp),
    "score_precision_eval": ("score precision phi (evaluated)", lambda v: v),
}


def prior_posterior_data(*, idata, var_names: Sequence[str] | None = None
                         ) -> dict[str, dict[str, np.ndarray]]:
    """Prior and posterior draws (transformed for display) of each parameter in both groups."""
    names = var_names or list(PRIOR_POSTERIOR_PARAMETERS)
    out = {}
    if "prior" not in idata.groups():
        return out
    for name in names:
        if name in idata.posterior and name in idata.prior:
            transform = PRIOR_POSTERIOR_PARAMETERS.get(name, (name, lambda v: v))[1]
            post = draws(idata.posterior, name)
            prior = draws(idata.prior, name)
            if post.ndim > 1 or prior.ndim > 1:
                continue
            out[name] = {"prior": transform(prior), "posterior": transform(post)}
    return out


@styled
def plot_prior_posterior(*, idata, var_names: Sequence[str] | None = None) -> Figure:
    """Prior (grey) against posterior (blue) of the key scalar parameters; each curve scaled
    to its own maximum, so that shape and location compare; the title gives sd ratios."""
    data = prior_posterior_data(idata=idata, var_names=var_names)
    k = max(1, len(data))
    rows, cols = _grid_shape(k, 4)
    fig = new_figure(2.6 * cols + 0.4, 2.0 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    if not data:
        axes[0].text(0.5, 0.5, "no prior draws in this run", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, (name, d) in zip(axes, data.items()):
        prior = d["prior"][np.isfinite(d["prior"])]
        post = d["posterior"][np.isfinite(d["posterior"])]
        lo = min(np.quantile(prior, 0.005), np.quantile(post, 0.001))
        hi = max(np.quantile(prior, 0.995), np.quantile(post, 0.999))
        lo, hi = lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo)
        grid = np.linspace(lo, hi, 400)
        for values, colour, label in ((prior, OKABE_ITO["grey"], "prior"),
                                      (post, OKABE_ITO["blue"], "posterior")):
            if len(values) > 5 and np.ptp(values) > 0:
                dens = stats.gaussian_kde(values)(grid)
                dens = dens / dens.max()
                ax.fill_between(grid, dens, color=colour, alpha=0.3, lw=0)
                ax.plot(grid, dens, color=colour, lw=1.3, label=label)
        ratio = np.std(post) / np.std(prior) if np.std(prior) > 0 else np.nan
        # where the posterior sits in the prior: its median's z-score (location conflict)
        z = ((np.median(post) - np.mean(prior)) / np.std(prior) if np.std(prior) > 0
             else np.nan)
        conflict = abs(z) >= 2
        ax.set_title(f"{PRIOR_POSTERIOR_PARAMETERS.get(name, (name,))[0]}\n"
                     f"sd post/prior {ratio:.2g}; median at {z:+.1f} prior sd", fontsize=8.5,
                     color=OKABE_ITO["vermillion"] if conflict else "black")
        ax.set_yticks([])
        ax.set_ylim(0, 1.08)
        ax.set_xlim(lo, hi)
    for ax in axes[len(data):]:
        ax.set_visible(False)
    if data:
        axes[0].legend(loc="upper right", fontsize=7)
    return fig


def plot_envelope_check(*, check, paper_days: float | None = None,
                        ci_prob: float = CI_PROB) -> Figure:
    """The paper's statistic on the model's scale: doubling times of the fitted frontier, of the
    running-maximum envelope of the real models' densities and of replicated models' envelopes,
    with the point pipeline's envelope and the paper's value marked."""
    from densing_bayes.analysis.envelope import doubling_days

    fig = new_figure(10.0, 4.2)
    ax = fig.subplots()
    n_models = check.n_models
    series = (("fitted frontier (this model's answer)", check.model_slope, OKABE_ITO["blue"]),
              (f"envelope of the {n_models} models' densities", check.latent,
               OKABE_ITO["green"]),
              ("envelope of replicated models, same dates", check.replicated,
               OKABE_ITO["grey"]))
    lo, hi = 20.0, 1000.0
    bins = np.geomspace(lo, hi, 70)
    p = _pct(ci_prob)
    for label, slope, colour in series:
        days = doubling_days(slope)
        days = days[np.isfinite(days)]
        q = np.quantile(days, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])
        ax.hist(np.clip(days, lo, hi), bins=bins, weights=np.full(days.size, 1.0 / days.size),
                histtype="stepfilled", alpha=0.35, color=colour,
                label=f"{label}: {q[1]:.0f} [{q[0]:.0f}, {q[2]:.0f}] d")
    if check.observed is not None and check.observed > 0:
        obs = float(doubling_days(check.observed))
        ax.axvline(obs, color=OKABE_ITO["orange"], lw=2,
                   label=f"point pipeline's envelope on these data: {obs:.0f} d "
                         f"(P(replicated >= it) = {check.p_value:.2f})")
    if paper_days:
        ax.axvline(paper_days, color="black", ls="--", lw=1.2,
                   label=f"paper (its models and benchmarks): {paper_days:.0f} d")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [20, 50, 100, 200, 500, 1000]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_xlabel("doubling time after 2022-11-30 (days, log scale)")
    ax.set_ylabel("share of draws per bin\n(bins of equal width in log days)")
    ax.set_title(f"Frontier slope against envelope slope (medians [{p}% intervals]); "
                 f"P(replicated envelope >= real models' envelope) = {check.p_value_latent:.2f}",
                 fontsize=9.5)
    ax.legend(fontsize=8, loc="upper right")
    return fig


#: Doubling times beyond this many days are shown at the axis's right edge of the prior check.
PRIOR_DAYS_RANGE = (10.0, 1e5)


def prior_predictive_data(*, idata, var_name: str = "score_obs",
                          slope: str = "slope_post") -> dict:
    """What the priors alone say about the outcome scale: reported scores and the doubling time.

    Returns the prior predictive scores (all draws and rows), per-draw mean and SD of the
    scores with the observed ones and their prior predictive p-values P(stat_rep >= stat_obs),
    and the prior's doubling times (days, for growing draws) with the share of draws in which
    density never doubles (slope <= 0). Keys are absent when the run lacks the groups.
    """
    out: dict = {}
    if "prior_predictive" in idata.groups() and var_name in idata.prior_predictive:
        rep = draws(idata.prior_predictive, var_name)  # (sample, row)
        obs = np.asarray(idata.observed_data[var_name].values, float)
        stats_rep = {"mean": rep.mean(axis=1), "sd": rep.std(axis=1)}
        stats_obs = {"mean": float(obs.mean()), "sd": float(obs.std())}
        out["scores"] = {"replicated": rep.ravel(), "observed": obs, "stats": stats_rep,
                         "observed_stats": stats_obs,
                         "p_values": {k: float(np.mean(stats_rep[k] >= stats_obs[k]))
                                      for k in stats_rep}}
    if "prior" in idata.groups() and slope in idata.prior:
        s = draws(idata.prior, slope).ravel()
        days = laws.doubling_time_days(s[s > 0])  # slopes are per year
        out["doubling"] = {"days": np.asarray(days, float), "share_no_growth": float(np.mean(s <= 0)),
                           "n": int(s.size)}
        if "posterior" in idata.groups() and slope in idata.posterior:
            post = draws(idata.posterior, slope).ravel()
            post_days = laws.doubling_time_days(post[post > 0])
            out["doubling"]["posterior"] = np.quantile(post_days, [0.05, 0.5, 0.95])
    return out


def plot_prior_predictive(*, idata, paper_days: float | None = None) -> Figure:
    """Prior predictive check on the outcome scale: the reported scores the priors alone
    produce against the observed ones, and the doubling time the priors alone imply."""
    data = prior_predictive_data(idata=idata)
    fig = new_figure(12.5, 4.0)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    if "scores" in data:
        d = data["scores"]
        bins = np.linspace(0, 1, 41)
        ax1.hist(d["replicated"], bins=bins, density=True, color=OKABE_ITO["grey"], alpha=0.6,
                 label=f"prior predictive ({d['stats']['mean'].size} draws)")
        ax1.hist(d["observed"], bins=bins, density=True, histtype="step", lw=1.6,
                 color=OKABE_ITO["blue"], label=f"observed ({d['observed'].size})")
        ax1.set_xlabel("score (fraction correct)")
        ax1.set_ylabel("density")
        ax1.set_title("Score measurements:\npriors alone against observed", fontsize=9.5)
        ax1.legend(fontsize=7.5, loc="upper left")
        ax2.scatter(d["stats"]["mean"], d["stats"]["sd"], s=6, color=OKABE_ITO["grey"],
                    alpha=0.6, label="prior predictive draw")
        ax2.scatter([d["observed_stats"]["mean"]], [d["observed_stats"]["sd"]], marker="*",
                    s=160, color=OKABE_ITO["vermillion"], zorder=3, label="observed")
        ax2.set_xlabel("mean score over all measurements")
        ax2.set_ylabel("SD of the scores")
        p = d["p_values"]
        ax2.set_title(f"Per draw: P(mean_rep >= obs) = {p['mean']:.2f},\n"
                      f"P(sd_rep >= obs) = {p['sd']:.2f}", fontsize=9.5)
        ax2.legend(fontsize=7.5, loc="upper right")
    else:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no prior predictive draws in this run\n(a thinned copy drops "
                    "them; refit to see them)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8.5)
            ax.set_axis_off()
    if "doubling" in data:
        d = data["doubling"]
        lo, hi = PRIOR_DAYS_RANGE
        days = np.clip(d["days"], lo, hi)
        ax3.hist(days, bins=np.geomspace(lo, hi, 50), color=OKABE_ITO["grey"], alpha=0.6,
                 label="prior (growing draws)")
        ax3.set_xscale("log")
        if "posterior" in d:
            q = d["posterior"]
            ax3.axvspan(q[0], q[2], color=OKABE_ITO["blue"], alpha=0.3,
                        label=f"posterior 90%: {q[1]:.0f} [{q[0]:.0f}, {q[2]:.0f}] d")
        if paper_days:
            ax3.axvline(paper_days, color=OKABE_ITO["orange"], lw=1.5,
                        label=f"paper: {paper_days:.0f} d")
        ax3.set_xlabel("doubling time after the changepoint (days, log scale)")
        ax3.set_ylabel("prior draws")
        ax3.set_title(f"Doubling time implied by the priors\n(in {d['share_no_growth']:.0%} "
                      "of prior draws density never doubles)", fontsize=9.5)
        ax3.legend(fontsize=7.5, loc="upper right", framealpha=0.9)
    else:
        ax3.text(0.5, 0.5, "no prior draws in this run", ha="center", va="center",
                 transform=ax3.transAxes)
        ax3.set_axis_off()
    return fig


#: Posterior predictive draws behind each observation's predictive interval in the PPC figures.
PPC_MAX_DRAWS = 4000


def ppc_data(*, idata, var_name: str, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Per observation: observed value, posterior predictive median and ``ci_prob`` predictive
    interval, and whether the interval covers the observation."""
    obs = np.asarray(idata.observed_data[var_name].values, float)
    # 4,000 evenly spaced draws pin a 90% interval's ends to about 0.3% of the interval;
    # sorting all 16,000 x 3,000 predictive values took most of this figure's time.
    pp = draws(idata.posterior_predictive, var_name, max_draws=PPC_MAX_DRAWS)
    q = quantiles(pp, (ci_prob,))
    p = _pct(ci_prob)
    table = pd.DataFrame({"observed": obs, "median": q["median"], "lower": q[f"lo{p}"],
                          "upper": q[f"hi{p}"]})
    table["covered"] = (table["observed"] >= table["lower"]) & (table["observed"] <= table["upper"])
    return table


#: Most predictive intervals drawn per panel of the pooled PPC (the share inside uses all).
PPC_MAX_INTERVALS = 400

PPC_VARIABLES = {"log_loss_obs": "ln loss (reference runs)",
                 "curve_score_obs": "score (reference runs)",
                 "score_obs": "score (evaluated models)"}


#: Posterior predictive replicates drawn in the ECDF panel of the pooled PPC.
PPC_REPLICATES = 50


def _ppc_ecdfs(ax, idata, name: str, *, seed: int, legend: bool) -> None:
    """Observed ECDF against the ECDFs of ``PPC_REPLICATES`` replicated data sets (random
    draws, seeded). An ECDF, not a kernel density: scores live on [0, 1] and a density leaks
    past the bounds; it also needs no bandwidth. Drawn as one LineCollection (ArviZ's
    plot_ppc took 10 s here, most of it pooling every draw for a mean curve)."""
    from matplotlib.collections import LineCollection

    obs = np.sort(np.asarray(idata.observed_data[name].values, float).ravel())
    pp = idata.posterior_predictive[name]
    n_chain, n_draw = pp.sizes["chain"], pp.sizes["draw"]
    rng = np.random.default_rng(seed)
    picks = rng.choice(n_chain * n_draw, size=min(PPC_REPLICATES, n_chain * n_draw),
                       replace=False)
    flat = pp.values.reshape(n_chain * n_draw, -1)
    share = np.arange(1, obs.size + 1) / obs.size
    lines = [np.column_stack([np.sort(flat[i]), share]) for i in picks]
    ax.add_collection(LineCollection(lines, colors=OKABE_ITO["sky"], linewidths=0.6,
                                     alpha=0.5, label=f"{len(lines)} replicated data sets"))
    ax.step(obs, share, where="post", color=OKABE_ITO["black"], lw=1.2, label="observed")
    ax.autoscale_view()
    if legend:
        ax.legend(loc="upper left", fontsize=7)  # an ECDF leaves this corner empty


@styled
def plot_ppc(*, idata, ci_prob: float = CI_PROB, seed: int = 0) -> Figure:
    """Posterior predictive checks of each likelihood term: top, the observed ECDF against
    the ECDFs of 50 posterior predictive replicates; bottom, each observation
    against its posterior predictive median with the ``ci_prob`` predictive interval and the
    share of observations it covers."""
    names = [n for n in PPC_VARIABLES if n in getattr(idata, "observed_data", {})
             and "posterior_predictive" in idata.groups() and n in idata.posterior_predictive]
    k = max(1, len(names))
    fig = new_figure(3.4 * k + 0.4, 6.2)
    axes = fig.subplots(2, k, squeeze=False)
    if not names:
        axes[0, 0].text(0.5, 0.5, "no posterior predictive draws in this run", ha="center",
                        transform=axes[0, 0].transAxes)
        return fig
    for j, name in enumerate(names):
        ax = axes[0, j]
        _ppc_ecdfs(ax, idata, name, seed=seed, legend=j == 0)
        ax.set_title(PPC_VARIABLES[name])
        ax.set_xlabel(PPC_VARIABLES[name].split(" (")[0])
        ax.set_ylabel("cumulative share")
        ax = axes[1, j]
        table = ppc_data(idata=idata, var_name=name, ci_prob=ci_prob)
        # At most PPC_MAX_INTERVALS intervals (evenly spaced in the predicted median): thousands
        # of overplotted bars are a solid mass; the share inside is computed from all rows.
        shown = table.sort_values("median")
        if len(shown) > PPC_MAX_INTERVALS:
            shown = shown.iloc[np.linspace(0, len(shown) - 1, PPC_MAX_INTERVALS).astype(int)]
        ax.vlines(shown["median"], shown["lower"], shown["upper"], color=OKABE_ITO["sky"],
                  lw=0.6, alpha=0.6)
        ax.scatter(table["median"], table["observed"], s=5, color=OKABE_ITO["blue"], lw=0,
                   rasterized=len(table) > 1000, zorder=3)
        lo = np.nanmin(table[["observed", "lower"]].to_numpy())
        hi = np.nanmax(table[["observed", "upper"]].to_numpy())
        ax.plot([lo, hi], [lo, hi], color=OKABE_ITO["black"], lw=0.8, ls="--")
        ax.set_xlabel("posterior predictive median")
        ax.set_ylabel("observed")
        ax.text(0.03, 0.95, f"{table['covered'].mean():.0%} of {len(table)} inside their\n"
                f"{_pct(ci_prob)}% predictive interval", transform=ax.transAxes, va="top",
                fontsize=7.5)
    return fig


@styled
def plot_loo_pit(*, idata=None, var_name: str = "score_obs", ci_prob: float = CI_PROB,
                 pit: np.ndarray | None = None, band_prob: float | None = None) -> Figure:
    """LOO-PIT of ``var_name``: the ECDF of the leave-one-out probability integral transforms
    minus the uniform CDF, inside the *simultaneous* ``band_prob`` band of a uniform sample's
    ECDF (ArviZ's optimised ECDF band; :func:`densing_bayes.analysis.checks.loo_pit_band`), with
    the verdict written on the figure. ``pit``: precomputed PIT values (else az.loo_pit)."""
    from densing_bayes.analysis import checks

    band_prob = checks.LOO_PIT_BAND_PROB if band_prob is None else band_prob
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    if pit is None:
        if idata is None or "log_likelihood" not in idata.groups() or \
                var_name not in idata.log_likelihood:
            ax.text(0.5, 0.5, f"no log-likelihood of {var_name} in this run", ha="center",
                    transform=ax.transAxes)
            return fig
        pit = np.asarray(az.loo_pit(idata, y=var_name), float)
    pit = np.sort(np.asarray(pit, float)[np.isfinite(pit)])
    grid = checks.LOO_PIT_GRID
    lower, upper = checks.loo_pit_band(pit.size, prob=band_prob, grid=grid)
    ecdf = np.searchsorted(pit, grid, side="right") / pit.size
    outside = (ecdf < lower) | (ecdf > upper)
    ax.fill_between(grid, lower - grid, upper - grid, color=OKABE_ITO["sky"], alpha=0.35, lw=0,
                    step="mid", label=f"uniform: simultaneous {_pct(band_prob)}% band")
    ax.plot(grid, ecdf - grid, color=OKABE_ITO["blue"], lw=1.5, label="LOO-PIT ECDF - uniform CDF")
    if outside.any():
        ax.scatter(grid[outside], (ecdf - grid)[outside], s=9, color=OKABE_ITO["vermillion"],
                   zorder=3, label="outside the band")
    ax.axhline(0, color=OKABE_ITO["black"], lw=0.6)
    test_p = checks.p_text(checks.ecdf_uniformity_p(pit, grid))
    verdict = (f"outside the band at {int(outside.sum())} of {grid.size} points "
               f"(simultaneous test p {test_p}): miscalibrated" if outside.any()
               else f"inside the band everywhere (simultaneous test p {test_p})")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               fontsize=7.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("LOO-PIT value")
    ax.set_ylabel("ECDF - uniform CDF")
    what = (f"LOO-PIT of the evaluated models' scores ({pit.size})" if var_name == "score_obs"
            else f"LOO-PIT of {var_name}")
    ax.set_title(f"{what}\n{verdict}", fontsize=9,
                 color=OKABE_ITO["vermillion"] if outside.any() else OKABE_ITO["black"])
    return fig


#: The SBC quantities the report draws: what the headline and its check are read from.
SBC_HEADLINE_QUANTITIES = ("slope_pre", "slope_post", "trend_intercept", "log_likelihood")
SBC_QUANTITY_LABELS = {"slope_pre": "slope before the changepoint",
                       "slope_post": "slope after the changepoint",
                       "trend_intercept": "level at the changepoint",
                       "log_likelihood": "log-likelihood of the data"}


def sbc_fractional_ranks(table: pd.DataFrame, quantity: str) -> np.ndarray:
    """Midpoint fractional ranks (rank + 1/2) / (L + 1) of a quantity over a batch's
    successful simulations that ranked it."""
    ok = table[(table["status"] == "ok") & table[f"rank_{quantity}"].notna()]
    return np.sort((ok[f"rank_{quantity}"].to_numpy(float) + 0.5)
                   / (ok["n_draws"].to_numpy(float) + 1.0))


def plot_sbc_ranks(*, batches: dict[str, tuple[pd.DataFrame, dict]],
                   quantities: Sequence[str] = SBC_HEADLINE_QUANTITIES,
                   band_prob: float = 0.95) -> Figure:
    """Rank ECDFs of the truth minus the uniform CDF, one row per SBC batch (name -> (its
    ranks.csv, its sbc.json)) and one column per headline quantity, inside each panel's
    simultaneous ``band_prob`` band, with each quantity's KS p and family-wise (Holm) p."""
    from densing_bayes.analysis import checks

    quantities = [q for q in quantities
                  if any(f"rank_{q}" in table for table, _ in batches.values())]
    fig = new_figure(2.6 * max(len(quantities), 1), 2.3 * len(batches) + 0.5)
    axes = fig.subplots(len(batches), len(quantities), squeeze=False, sharex=True)
    grid = checks.LOO_PIT_GRID
    for row, (name, (table, report)) in zip(axes, batches.items(), strict=True):
        adjusted = (report.get("family_wise") or {}).get("adjusted_p") or {}
        diag = report.get("sampler_diagnostics") or {}
        if diag.get("n_fits"):  # a reader must see when the ranks come from divergent fits
            name = f"{name} ({diag.get('n_with_divergences', 0)} of {diag['n_fits']} divergent)"
        for ax, q in zip(row, quantities, strict=True):
            u = sbc_fractional_ranks(table, q) if f"rank_{q}" in table else np.array([])
            if u.size < 2:
                ax.text(0.5, 0.5, "not ranked", ha="center", transform=ax.transAxes)
                continue
            lower, upper = checks.loo_pit_band(u.size, prob=band_prob, grid=grid)
            ecdf = np.searchsorted(u, grid, side="right") / u.size
            outside = (ecdf < lower) | (ecdf > upper)
            ax.fill_between(grid, lower - grid, upper - grid, color=OKABE_ITO["sky"],
                            alpha=0.35, lw=0, step="mid")
            ax.plot(grid, ecdf - grid, color=OKABE_ITO["blue"], lw=1.3)
            if outside.any():
                ax.scatter(grid[outside], (ecdf - grid)[outside], s=7, zorder=3,
                           color=OKABE_ITO["vermillion"])
            ax.axhline(0, color=OKABE_ITO["black"], lw=0.6)
            test = (report.get("uniformity") or {}).get(q) or {}
            stats_text = (f"KS p {test['p_ks']:.2f}" if "p_ks" in test else "")
            if q in adjusted:
                stats_text += f", Holm p {adjusted[q]:.2f}"
            ax.set_title(f"{SBC_QUANTITY_LABELS.get(q, q)}\n{name}, n = {u.size}"
                         + (f"\n{stats_text}" if stats_text else ""), fontsize=7.5)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("ECDF - uniform CDF", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank of the truth", fontsize=8)
    return fig


def benchmark_ppc_data(*, idata, var_name: str = "score_obs", ci_prob: float = CI_PROB,
                       bins: np.ndarray | None = None, max_draws: int = 400
                       ) -> dict[str, object]:
    """Per benchmark: histogram of the observed scores and the median and ``ci_prob`` band of
    the same histogram over replicated data sets, and the share of observations inside their
    ``ci_prob`` predictive intervals."""
    bins = np.linspace(0, 1, 21) if bins is None else bins
    post = idata.posterior
    benchmarks = [str(b) for b in post.coords["benchmark"].values]
    b_of = np.asarray(idata.constant_data["score_benchmark"].values, int)
    obs = np.asarray(idata.observed_data[var_name].values, float)
    rep = draws(idata.posterior_predictive, var_name, max_draws=max_draws)
    table = ppc_data(idata=idata, var_name=var_name, ci_prob=ci_prob)
    p = _pct(ci_prob)
    out = {}
    for j, name in enumerate(benchmarks):
        rows = b_of == j
        if not rows.any():
            continue
        hist_obs = np.histogram(obs[rows], bins)[0]
        hist_rep = np.stack([np.histogram(r, bins)[0] for r in rep[:, rows]])
        q = quantiles(hist_rep.astype(float), (ci_prob,))
        out[name] = {"bins": bins, "observed": hist_obs, "median": q["median"],
                     "lower": q[f"lo{p}"], "upper": q[f"hi{p}"], "n": int(rows.sum()),
                     "coverage": float(table["covered"].to_numpy()[rows].mean())}
    return out


@styled
def plot_benchmark_ppc(*, idata, var_name: str = "score_obs", ci_prob: float = CI_PROB
                       ) -> Figure:
    """Posterior predictive check per benchmark (small multiples): histogram of the reported
    scores (black steps) against the median and ``ci_prob`` band of the same histogram over
    replicated data sets; each panel gives the share of scores inside their ``ci_prob``
    predictive intervals."""
    data = benchmark_ppc_data(idata=idata, var_name=var_name, ci_prob=ci_prob)
    rows, cols = _grid_shape(len(data))
    fig = new_figure(min(12.0, 2.5 * cols + 0.6), 2.0 * rows + 0.9)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, d) in zip(axes, data.items()):
        edges = d["bins"]
        ax.fill_between(edges[:-1], d["lower"], d["upper"], step="post",
                        color=OKABE_ITO["sky"], alpha=0.45, lw=0)
        ax.step(edges[:-1], d["median"], where="post", color=OKABE_ITO["blue"], lw=1.0)
        ax.step(edges, np.append(d["observed"], d["observed"][-1]), where="post",
                color=OKABE_ITO["black"], lw=1.3)
        colour = OKABE_ITO["black"] if d["coverage"] >= ci_prob - 0.05 else OKABE_ITO["vermillion"]
        ax.set_title(f"{name}: {d['coverage']:.0%} of {d['n']} inside", fontsize=8.5,
                     color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("reported score", fontsize=8)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("scores per bin")
    for ax in axes[len(data):]:
        ax.set_visible(False)
    handles = [mpl.lines.Line2D([], [], color=OKABE_ITO["black"], lw=1.3,
                                label="reported scores"),
               mpl.lines.Line2D([], [], color=OKABE_ITO["blue"], lw=1.0,
                                label="replicated data: median"),
               mpl.patches.Patch(color=OKABE_ITO["sky"], alpha=0.6,
                                 label=f"replicated data: {_pct(ci_prob)}% band per bin")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    return fig


# ============================================================================= 7. diagnostics
def trend_parameters(posterior) -> list[str]:
    """The trend's scalar parameters present in ``posterior`` (for rank plots)."""
    return [n for n in ("trend_intercept", "slope", "slope_pre", "slope_post",
                        "changepoint_shift", "frontier_inefficiency", "frontier_noise",
                        "trend_noise") if n in posterior]


@styled
def plot_rank(*, idata, var_names: Sequence[str] | None = None) -> Figure:
    """Rank plots (ArviZ plot_rank, bars) of the trend parameters: under good mixing every
    chain's ranks are uniform (bars within the dashed band)."""
    names = list(var_names or trend_parameters(idata.posterior))
    rows, cols = _grid_shape(max(1, len(names)), 3)
    fig = new_figure(3.3 * cols + 0.3, 2.3 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    if names:
        az.plot_rank(idata, var_names=names, ax=axes[:len(names)],
                     colors=PALETTE[:idata.posterior.sizes["chain"]]
                     if idata.posterior.sizes["chain"] <= len(PALETTE) else "cycle")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[:len(names)]:
        ax.title.set_fontsize(9)
    return fig


@styled
def plot_energy(*, idata) -> Figure:
    """Energy plot (ArviZ plot_energy): marginal energy against energy transitions, with E-BFMI
    per chain in the legend; transitions much narrower than the marginal mean poor exploration."""
    fig = new_figure(5.4, 3.6)
    ax = fig.add_subplot()
    if "energy" not in idata.sample_stats:
        ax.text(0.5, 0.5, "the sampler recorded no energy", ha="center", transform=ax.transAxes)
        return fig
    az.plot_energy(idata, ax=ax, fill_color=(OKABE_ITO["sky"], OKABE_ITO["orange"]),
                   fill_alpha=(0.6, 0.5), legend=True, textsize=8)
    ax.set_xlabel("energy (centred)")
    return fig


# ============================================================================= forest plots
#: How a forest row that did not converge is drawn: hollow marker, dashed, paler interval.
UNCONVERGED_STYLE = {"ls": (0, (2, 1.5)), "alpha": 0.6}


def draw_forest(ax, table: pd.DataFrame, *, series: dict[str, tuple[str, str, str]],
                rows: Sequence[str] | None = None, log_x: bool = False,
                right_edge: float | None = None) -> dict[str, float]:
    """The package's one forest plot: one row per ``row`` label (top to bottom), one interval
    per ``series`` within a row.

    ``table`` columns: ``row``, ``series``, ``median``, ``lower``, ``upper`` (NaN upper with a
    finite median = unbounded above: drawn to ``right_edge`` with an arrow), optional
    ``lower50``/``upper50`` (a thicker inner interval), optional ``converged`` (False: hollow
    marker and a pale dashed interval, with a legend entry saying so). ``series`` maps a series
    name to (legend label, colour, marker); the series ``"prior"`` is drawn as a wide
    translucent grey bar behind the others.
    Returns the y position of every row; legend entries are added for what was drawn.
    """
    rows = list(rows if rows is not None else dict.fromkeys(table["row"]))
    ypos = {r: len(rows) - 1 - i for i, r in enumerate(rows)}
    drawn = [k for k in series if k != "prior" and (table["series"] == k).any()]
    step = 0.3 / max(1, len(drawn) - 1) if len(drawn) > 1 else 0.0
    offsets = {k: (i - (len(drawn) - 1) / 2) * step for i, k in enumerate(drawn)}
    offsets["prior"] = 0.0
    any_unconverged = any_unbounded = False
    for key, (label, colour, marker) in series.items():
        sub = table[(table["series"] == key) & np.isfinite(table["median"])
                    & table["row"].isin(ypos)]
        if sub.empty:
            continue
        y = np.array([ypos[r] for r in sub["row"]]) + offsets[key]
        upper = sub["upper"].to_numpy(float)
        unbounded = ~np.isfinite(upper)
        if unbounded.any() and right_edge is not None:
            upper = np.where(unbounded, right_edge, upper)
            any_unbounded = True
        if key == "prior":
            ax.hlines(y, sub["lower"], upper, color=OKABE_ITO["grey"], lw=7, alpha=0.3,
                      label=label, zorder=1)
            continue
        conv = (sub["converged"].to_numpy(bool) if "converged" in sub
                else np.ones(len(sub), bool))
        any_unconverged |= bool((~conv).any())
        for ok in (True, False):
            m = conv == ok
            if not m.any():
                continue
            style = {"color": colour, "ls": "-"} if ok else {"color": colour, **UNCONVERGED_STYLE}
            ax.hlines(y[m], sub["lower"].to_numpy(float)[m], upper[m], lw=1.6, zorder=2,
                      **style)
            if "lower50" in sub:
                ax.hlines(y[m], sub["lower50"].to_numpy(float)[m],
                          sub["upper50"].to_numpy(float)[m], lw=4.0, zorder=2, **style)
            ax.scatter(sub["median"].to_numpy(float)[m], y[m], marker=marker, s=26, zorder=3,
                       facecolor=colour if ok else "white", edgecolor=colour, lw=1.2)
        ax.plot([], [], color=colour, marker=marker, lw=1.6, markersize=5, label=label)
        if unbounded.any() and right_edge is not None:
            ax.scatter(np.full(unbounded.sum(), right_edge), y[unbounded], marker=">",
                       color=colour, s=24, zorder=3, clip_on=False)
    if any_unconverged:
        ax.plot([], [], marker="o", markerfacecolor="white", color=OKABE_ITO["grey"], lw=1.4,
                **UNCONVERGED_STYLE, label="hollow, dashed: did not converge (failed its "
                                           "diagnostics), indicative only")
    if any_unbounded:
        ax.scatter([], [], marker=">", color=OKABE_ITO["grey"], label="interval unbounded above")
    if log_x:
        ax.set_xscale("log")
    ax.set_yticks([ypos[r] for r in rows], rows, parse_math=False)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="y", visible=False)
    return ypos


# ============================================================================= 9. sensitivity
#: The intervals a sensitivity analysis stores per variant, as drawn (label, colour, marker).
SENSITIVITY_SERIES = {
    "doubling_time_days": ("after the changepoint", OKABE_ITO["blue"], "o"),
    "doubling_time_days_pre": ("before the changepoint", OKABE_ITO["orange"], "s"),
}

#: Display names of sensitivity entries ("baseline" there means this spec refitted with the
#: analysis' shorter chains, not the paper's pipeline).
SENSITIVITY_NAMES = {"baseline": "this spec (short refit)"}


def _interval_of(entry) -> tuple[float, float, float]:
    entry = entry if isinstance(entry, dict) else {}

    def get(key):
        v = entry.get(key)
        return float(v) if v is not None else np.nan
    return get("median"), get("lower"), get("upper")


def sensitivity_data(*, sensitivity: dict, summary: dict | None = None,
                     quantities: Sequence[str] = tuple(SENSITIVITY_SERIES)) -> pd.DataFrame:
    """One row per (variant, quantity): name, kind, status, converged, quantity, median, lower,
    upper (NaN where missing; an upper end of NaN with a finite median means unbounded). This
    fit, from ``summary``, comes first; ``converged`` is whether the refit passed its
    diagnostics."""
    rows = []
    entries = []
    if summary is not None:
        diag = summary.get("diagnostics") or {}
        entries.append({"name": "this fit", "kind": "run", "status": "ok",
                        "diagnostics": {"passed": diag.get("passed", True)},
                        **{q: summary.get(q) for q in quantities}})
    entries.extend(v for v in (sensitivity.get("prior_variants") or []) if isinstance(v, dict))
    for e in entries:
        diag = e.get("diagnostics")
        converged = isinstance(diag, dict) and bool(diag.get("passed"))
        for q in quantities:
            med, lo, hi = _interval_of(e.get(q))
            rows.append({"name": str(e.get("name", "?")), "kind": str(e.get("kind", "")),
                         "status": str(e.get("status", "ok")), "converged": converged,
                         "quantity": q, "median": med, "lower": lo, "upper": hi})
    return pd.DataFrame(rows, columns=["name", "kind", "status", "converged", "quantity",
                                       "median", "lower", "upper"])


@styled
def plot_sensitivity(*, sensitivity: dict, summary: dict | None = None) -> Figure:
    """Forest plot of the doubling times after and before the changepoint under each variant of
    the sensitivity analysis (prior variants, data left out), beside this fit; log x axis in
    days. Refits that failed their diagnostics are hollow and grey; an arrow marks an interval
    unbounded above."""
    table = sensitivity_data(sensitivity=sensitivity, summary=summary)
    names = list(dict.fromkeys(table["name"]))
    status = table.drop_duplicates("name").set_index("name")["status"]
    label = {m: SENSITIVITY_NAMES.get(m, m) + ("" if status[m] == "ok" else f" ({status[m]})")
             for m in names}
    n = max(1, len(names))
    fig = new_figure(8.0, 0.3 * n + 1.7)
    ax = fig.add_subplot()
    finite = table[["median", "lower", "upper"]].to_numpy(float)
    finite = np.append(finite[np.isfinite(finite) & (finite > 0)],
                       PAPER_REPORTED["doubling_time_days"])
    right = finite.max() * 1.3
    left = finite.min() / 1.2
    forest = table.assign(row=table["name"].map(label), series=table["quantity"])
    draw_forest(ax, forest, series=SENSITIVITY_SERIES, rows=[label[m] for m in names],
                log_x=True, right_edge=right)
    ax.axvline(PAPER_REPORTED["doubling_time_days"], color=OKABE_ITO["black"], lw=1.0,
               ls=(0, (5, 3)), label="paper: 95 days")
    ax.xaxis.set_major_locator(mpl.ticker.FixedLocator([50, 100, 200, 500, 1000, 2000]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:g}"[0] in "37" and v < 1000 else ""))
    ax.set_xlim(left, right * 1.08)
    ax.set_xlabel("doubling time of the frontier density (days, log scale)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig


# ============================================================================= protocol offsets
def protocol_offsets_data(*, idata, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Per benchmark (``protocol_offset``, delta_b) and per source kind (``source_offset``,
    eta_k): posterior and prior median and intervals (logit scale); with [observation]
    protocol_scale also the slope factors k_b (variable ``protocol_scale``, a ratio); empty
    without them."""
    rows = []
    p, pi = _pct(ci_prob), _pct(INNER_PROB)
    for var, dim, prefix in (("protocol_offset", "benchmark", ""),
                             ("source_offset", "source_kind", "source: "),
                             ("protocol_scale", "benchmark", "")):
        if var not in idata.posterior:
            continue
        coords = [str(c) for c in idata.posterior.coords[dim].values]
        groups = [("posterior", idata.posterior)]
        if "prior" in idata.groups() and var in idata.prior:
            groups.append(("prior", idata.prior))
        for series, group in groups:
            q = quantiles(draws(group, var), (INNER_PROB, ci_prob))
            for j, c in enumerate(coords):
                rows.append({"row": prefix + c, "variable": var, "series": series,
                             "median": q["median"][j], "lower": q[f"lo{p}"][j],
                             "upper": q[f"hi{p}"][j], "lower50": q[f"lo{pi}"][j],
                             "upper50": q[f"hi{pi}"][j]})
    return pd.DataFrame(rows, columns=["row", "variable", "series", "median", "lower", "upper",
                                       "lower50", "upper50"])


@styled
def plot_protocol_offsets(*, idata, ci_prob: float = CI_PROB) -> Figure:
    """Forest plot of the protocol offsets delta_b (per benchmark) and source offsets eta_k
    (per source kind) on the logit scale: posterior against prior."""
    everything = protocol_offsets_data(idata=idata, ci_prob=ci_prob)
    is_scale = everything["variable"] == "protocol_scale"
    table, scales = everything[~is_scale], everything[is_scale]
    rows = list(dict.fromkeys(table["row"]))
    fig = new_figure(11.0 if len(scales) else 7.0, 0.3 * max(1, len(rows)) + 1.6)
    ax = fig.add_subplot(1, 2 if len(scales) else 1, 1)
    if table.empty:
        ax.text(0.5, 0.5, "no protocol offsets in this run", ha="center",
                transform=ax.transAxes)
        return fig
    series = {"prior": (f"prior: {_pct(ci_prob)}% interval", OKABE_ITO["grey"], "|"),
              "posterior": (f"posterior: median, 50% and {_pct(ci_prob)}% intervals",
                            OKABE_ITO["blue"], "o")}
    draw_forest(ax, table, series=series, rows=rows)
    ax.axvline(0.0, color=OKABE_ITO["black"], lw=0.8)
    ax.set_xlabel("offset on the logit scale of the score\n(reported protocol vs reference "
                  "family's)")
    ax.set_title("offsets: shift the curve", fontsize=9)
    if len(scales):
        ax_k = fig.add_subplot(1, 2, 2)
        draw_forest(ax_k, scales, series=series, rows=list(dict.fromkeys(scales["row"])),
                    log_x=True)
        ax_k.axvline(1.0, color=OKABE_ITO["black"], lw=0.8)
        ticks = [t for t in (0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
                 if scales["lower"].min() * 0.9 <= t <= scales["upper"].max() * 1.1]
        ax_k.xaxis.set_major_locator(mpl.ticker.FixedLocator(ticks))
        ax_k.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax_k.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax_k.set_xlabel("factor k_b on the reported scores' logit slope\n(1 = the reference "
                        "curve's shape; log scale)")
        ax_k.set_title("protocol scales: stretch the curve", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig


# ============================================================================= held-out runs
@styled
def plot_holdout(*, table: pd.DataFrame, ci_prob: float = CI_PROB) -> Figure:
    """Held-out reference runs: per benchmark (rows) and run (series), the posterior predictive
    median and ``ci_prob`` interval of the score (the forest) with the actual score (black
    diamond; red when outside its interval). ``table``: as from
    :func:`densing_bayes.analysis.holdout.validate_holdout`."""
    runs = list(dict.fromkeys(str(r) for r in table["run_id"]))
    benchmarks = list(dict.fromkeys(str(b) for b in table["benchmark"]))
    fig = new_figure(7.0, 0.42 * max(1, len(benchmarks)) + 1.7)
    ax = fig.add_subplot()
    colours = [OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["green"], OKABE_ITO["purple"]]
    series = {r: (f"{r}: predicted median and {_pct(ci_prob)}% interval",
                  colours[i % len(colours)], "o") for i, r in enumerate(runs)}
    forest = pd.DataFrame({"row": table["benchmark"].astype(str),
                           "series": table["run_id"].astype(str),
                           "median": table["median"], "lower": table["lower"],
                           "upper": table["upper"]})
    ypos = draw_forest(ax, forest, series=series, rows=benchmarks)
    drawn = [r for r in runs if (forest["series"] == r).any()]
    step = 0.3 / max(1, len(drawn) - 1) if len(drawn) > 1 else 0.0
    offset = {r: (i - (len(drawn) - 1) / 2) * step for i, r in enumerate(drawn)}
    y = np.array([ypos[str(b)] + offset[str(r)] for b, r in zip(table["benchmark"],
                                                                 table["run_id"])])
    inside = table["inside"].to_numpy(bool)
    for mask, colour, label in ((inside, OKABE_ITO["black"], "actual score: inside"),
                                (~inside, OKABE_ITO["vermillion"], "actual score: outside")):
        if mask.any():
            ax.scatter(table["actual"].to_numpy(float)[mask], y[mask], marker="D", s=22,
                       color=colour, zorder=4, label=label)
    ax.set_xlabel("score (fraction)")
    ax.set_title(f"{int(inside.sum())} of {len(table)} actual scores inside their "
                 f"{_pct(ci_prob)}% predictive intervals", fontsize=9,
                 color=OKABE_ITO["vermillion"] if inside.mean() < ci_prob - 0.1 else "black")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig


# ============================================================================= robustness refits
#: Behind numbers printed across gridlines and bands, so that they stay legible.
TEXT_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6}
ROBUSTNESS_MARKERS = {"baseline": ("o", OKABE_ITO["black"], "this spec, refitted"),
                      "future": ("v", OKABE_ITO["blue"], "leave-future-out"),
                      "family": ("s", OKABE_ITO["orange"], "leave-one-family-out"),
                      "structure": ("D", OKABE_ITO["green"], "other trend structure"),
                      "pre": ("^", OKABE_ITO["purple"], "one pre-changepoint model left out")}


@styled
def plot_robustness(*, report: dict, summary: dict | None = None) -> Figure:
    """Robustness refits, one row each. Left: the doubling time after the changepoint
    (median and interval as stored; log x) against this fit's interval (grey band). Right: the
    held-out scores' coverage of their 90% predictive intervals with a Wilson 95% interval,
    against the nominal 0.9 and the band called honest; for trend structures, the
    leave-one-model-out ELPD difference to this spec, printed; for a pre-changepoint model
    left out, the slope difference (in vermillion when its interval reaches 0)."""
    # exact leave-one-model-out refits answer an ELPD question, not a doubling-time one
    entries = [e for e in report.get("refits") or [] if e.get("status") == "ok"
               and e.get("kind") != "exact"]
    n = max(1, len(entries))
    fig = new_figure(10.0, 0.34 * n + 1.9)
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.3, 1.0]})
    y = np.arange(n)[::-1]
    main = (summary or {}).get("doubling_time_days") or {}
    ci = (summary or {}).get("ci_prob", CI_PROB)
    values = [main.get(k) for k in ("lower", "upper")]
    for e in entries:
        d = e.get("doubling_time_days") or {}
        values += [d.get("lower"), d.get("upper"), d.get("median")]
    finite = [v for v in values if v is not None and np.isfinite(v) and v > 0]
    x_max = max(finite) * 1.25 if finite else 1000.0
    x_min = min(finite) / 1.25 if finite else 10.0
    if main.get("lower") is not None:
        left.axvspan(main["lower"], main["upper"] or x_max, color=OKABE_ITO["grey"], alpha=0.25,
                     lw=0, label=f"this fit: {_pct(ci)}% interval")
    shown = set()
    for yi, e in zip(y, entries):
        marker, color, name = ROBUSTNESS_MARKERS.get(e["kind"], ("o", "grey", e["kind"]))
        ok = bool((e.get("diagnostics") or {}).get("passed"))
        d = e.get("doubling_time_days") or {}
        if d.get("median") is None:
            continue
        upper = d["upper"] if d.get("upper") is not None else x_max
        left.plot([d["lower"], upper], [yi, yi], color=color, lw=1.6,
                  ls="-" if ok else (0, (3, 2)))
        label = None if e["kind"] in shown else name
        shown.add(e["kind"])
        left.plot(d["median"], yi, marker=marker, ms=6, color=color,
                  mfc=color if ok else "white", ls="none", label=label)
        left.annotate(f"{d['median']:.0f}", (d["median"], yi), xytext=(0, 5),
                      textcoords="offset points", ha="center", fontsize=7.5)
    left.set_xscale("log")
    left.set_xlim(x_min, x_max)
    left.xaxis.set_major_locator(mpl.ticker.FixedLocator(
        [50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000]))
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("doubling time after the changepoint (days, log scale)")
    left.set_yticks(y, [e["name"] for e in entries])
    band = report.get("coverage_band") or [0.85, 0.95]
    right.axvspan(band[0], band[1], color=OKABE_ITO["green"], alpha=0.15, lw=0,
                  label=f"coverage band {band[0]:.2f}-{band[1]:.2f}")
    right.axvline(0.9, color=OKABE_ITO["black"], lw=0.8, ls=(0, (4, 3)), label="nominal 0.9")
    for yi, e in zip(y, entries):
        p = e.get("prediction") or {}
        marker, color, _ = ROBUSTNESS_MARKERS.get(e["kind"], ("o", "grey", e["kind"]))
        diff = e.get("slope_difference_per_year") or {}
        if e["kind"] == "pre" and diff.get("median") is not None:
            # one model's few scores say little about coverage; what such a refit tests is
            # the acceleration
            right.text(0.52, yi, f"after - before {diff['median']:+.2f} "
                       f"[{diff['lower']:+.2f}, {diff['upper']:+.2f}] /yr; "
                       f"{p.get('n_inside', 0)}/{p.get('n_rows', 0)} inside", va="center",
                       fontsize=7.5, color=(OKABE_ITO["vermillion"] if diff["lower"] <= 0
                                            else color), bbox=TEXT_BOX)
            continue
        if p.get("n_rows"):
            lo, hi = wilson_interval(p["n_inside"], p["n_rows"])
            right.plot([lo, hi], [yi, yi], color=color, lw=1.6)
            right.plot(p["coverage"], yi, marker=marker, color=color, ms=6, ls="none")
            right.annotate(f"{p['n_inside']}/{p['n_rows']}", (hi, yi), xytext=(4, 0),
                           textcoords="offset points", va="center", fontsize=7.5)
        loo = (e.get("model_loo") or {}).get("vs_baseline")
        if loo:
            right.text(0.52, yi, f"ELPD vs this spec {loo['difference']:+.1f} "
                       f"(SE {loo['se']:.1f})", va="center", fontsize=7.5, color=color,
                       bbox=TEXT_BOX)
    right.set_xlim(0.5, 1.08)  # room for the count beside a coverage of 1
    right.xaxis.set_major_locator(mpl.ticker.FixedLocator([0.5, 0.6, 0.7, 0.8, 0.9, 1.0]))
    right.set_xlabel("held-out scores inside their 90% predictive intervals")
    left.plot([], [], marker="o", mfc="white", color=OKABE_ITO["grey"], ls=(0, (3, 2)),
              label="hollow, dashed: missed its sampler thresholds")
    handles, labels = left.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    fig.legend(handles + h2, labels + l2, loc="outside lower center", ncols=3, fontsize=8)
    return fig
