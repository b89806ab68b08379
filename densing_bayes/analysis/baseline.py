"""The paper's own point-estimate pipeline, run on any data folder.

Every Bayesian result of this project is shown beside "what the paper's method gives on the same
data". This module is that method (Xiao et al. 2024, ``docs``/densing-law-method.md, section 1),
written as sequential least-squares fits with no uncertainty at any step, as the paper did:

1. a loss law L(N, D) = a N^-alpha + b D^-beta (+ E) per benchmark, on the reference runs;
2. a loss -> score sigmoid S(L) = c / (1 + exp(gamma (L - l))) + d per benchmark;
3. each reported score inverted into an effective parameter size at the data budget D0;
4. one effective size and density per model from its benchmarks;
5. a line through the running maximum of log density over release time, whose slope gives the
   doubling time, and separate lines before and after ChatGPT's release.

Where the paper's recipe is undefined or was applied by hand, this module makes one documented,
deterministic choice (listed in :func:`run_baseline`) and never clips a value to make it defined:
a score without a finite inverse stays NaN with a reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from densing_bayes import laws
from densing_bayes.data.schema import DensingData, truthy

#: Llama-1's release: the paper measures time in days since this date.
LLAMA1_RELEASE = np.datetime64("2023-02-24")

#: How one score per (model, benchmark) is chosen when several rows report it.
SCORE_ROWS = ("preferred", "mean")

#: Why a score has no finite effective size (the ``reason`` column of ``per_benchmark``).
BELOW_FLOOR = "below floor"
ABOVE_CEILING = "above ceiling"
BELOW_ASYMPTOTE = "below loss asymptote"
OVERFLOW = "overflow near loss asymptote"
NO_FIT = "no reference fit"
#: The reasons that mean "the score lies outside what the fitted curves can reach".
OUTSIDE_RANGE = (BELOW_FLOOR, ABOVE_CEILING, BELOW_ASYMPTOTE)

#: Cell texts read as true in bool-ish columns that may arrive as text ('preferred', 'holdout').

#: Wide guards on the scale-free exponents and slopes searched by the least-squares fits. They keep
#: exp() finite during the search; a fit that ends on one is flagged (``at_bound``), not trusted.
_EXPONENT_RANGE = (1e-3, 10.0)
_STANDARDISED_SLOPE_RANGE = (1e-3, 1e3)
#: Smallest sigmoid range allowed, as a share of 1 - d: c must stay strictly positive.
_MIN_CEILING_SHARE = 1e-9

#: Deterministic starting points (every combination is tried; the lowest cost wins).
_START_EXPONENTS = (0.1, 0.3, 1.0)
_START_N_SHARES = (0.25, 0.5, 0.75)
_START_IRREDUCIBLE_SHARES = (0.0, 0.5)
_START_STANDARDISED_SLOPES = (0.5, 2.0, 8.0)
_START_STANDARDISED_MIDPOINTS = (-1.0, 0.0, 1.0)

#: Columns of ``BaselineResult.loss_law`` and ``.sigmoid`` (``at_bound``: a searched exponent or
#: slope ended on its guard; ``d_fixed``: d was not fitted).
LOSS_LAW_COLUMNS = ("a", "alpha", "b", "beta", "E", "r2", "n_rows", "at_bound")
SIGMOID_COLUMNS = ("c", "gamma", "l", "d", "d_fixed", "r2", "n_rows", "at_bound")

#: Tight tolerances: the inversion amplifies fit errors (N_hat varies as a power -1/alpha of the
#: loss excess), so the point estimates are converged well past the precision anyone reports.
_LEAST_SQUARES_OPTIONS = {"method": "trf", "ftol": 1e-12, "xtol": 1e-12, "gtol": 1e-12,
                          "max_nfev": 5000}


@dataclass(frozen=True)
class BaselineResult:
    """The paper's point estimates on one data folder.

    * ``loss_law``, ``sigmoid``: one row per fitted benchmark (index ``benchmark``), columns
      ``LOSS_LAW_COLUMNS`` and ``SIGMOID_COLUMNS``.
    * ``per_benchmark``: one row per (model, benchmark) score used: model, benchmark, score,
      loss_hat, effective_params, reason (see :func:`invert_scores`).
    * ``effective``: one row per model of models.csv (index ``model``): release_date, params,
      effective_params, density, n_benchmarks_used, n_scores_outside_range, trend_exclusion,
      on_envelope (see :func:`summarise_models`).
    * ``trend``: plain Python values, ready for JSON, None where a quantity cannot be estimated
      (see :func:`fit_density_trend`), plus ``excluded_models``.
    * ``notes``: which rows were left out and which choices the data forced.
    """

    loss_law: pd.DataFrame
    sigmoid: pd.DataFrame
    effective: pd.DataFrame
    per_benchmark: pd.DataFrame
    trend: dict
    notes: tuple[str, ...] = ()


def run_baseline(data: DensingData, *, d0_tokens: float = laws.D0_TOKENS,
                 irreducible: bool = False, exclude_holdout: bool = True,
                 score_rows: str = "preferred") -> BaselineResult:
    """Run the paper's least-squares pipeline on ``data``.

    Choices made where the paper leaves room (each is documented on the function that makes it):

    * loss law fitted to log loss (relative errors: losses span several-fold across sizes), with
      log N and log D centred for conditioning (:func:`fit_loss_law`); ``irreducible`` adds E >= 0;
    * sigmoid floor d fixed at the benchmark's chance level when benchmarks.csv gives one,
      otherwise fitted in [0, min score] (:func:`fit_sigmoid`);
    * scores with no finite inverse are NaN with a reason, never clipped (:func:`invert_scores`);
    * a model's effective size is the geometric mean of its finite per-benchmark sizes, where the
      paper averaged scores (:func:`summarise_models`);
    * the density envelope is the running maximum over release date, where the paper chose it by
      eye (:func:`running_max_envelope`); the ChatGPT split fits two separate lines, as the paper
      did (:func:`fit_density_trend`).

    ``exclude_holdout`` keeps reference rows marked ``holdout`` out of both fits. ``score_rows``
    is ``"preferred"`` (the row marked preferred per pair) or ``"mean"`` (the mean of all rows).
    """
    if score_rows not in SCORE_ROWS:
        raise ValueError(f"score_rows must be one of {SCORE_ROWS}, not {score_rows!r}")
    if not data.has_evaluated_models:
        raise ValueError("the baseline needs evaluated models: models.csv and scores.csv")
    notes: list[str] = []
    runs = _reference_runs(data.reference_runs, exclude_holdout, notes)
    law_rows = runs[runs["params"].notna() & runs["tokens"].notna() & runs["loss"].notna()]
    curve_rows = runs[runs["loss"].notna() & runs["score"].notna()]
    loss_law = _fit_per_benchmark(
        law_rows, "loss law", LOSS_LAW_COLUMNS, 4 + irreducible, notes,
        lambda rows, _: fit_loss_law(rows["params"], rows["tokens"], rows["loss"],
                                     irreducible=irreducible))
    chance = _chance_by_benchmark(data.benchmarks)
    sigmoid = _fit_per_benchmark(
        curve_rows, "sigmoid", SIGMOID_COLUMNS, 4, notes,
        lambda rows, benchmark: fit_sigmoid(rows["loss"], rows["score"],
                                            chance=chance.get(benchmark)))
    scores = _scores_of_known_models(data.scores, data.models, notes)
    per_benchmark = invert_scores(_select_scores(scores, score_rows, notes), loss_law, sigmoid,
                                  d0_tokens=d0_tokens)
    effective = summarise_models(per_benchmark, data.models)
    eligible = effective[effective["trend_exclusion"].isna()]
    trend = fit_density_trend(eligible["release_date"], eligible["density"])
    effective["on_envelope"] = effective.index.isin(trend["frontier_models"])
    trend["excluded_models"] = effective.index[effective["trend_exclusion"].notna()].tolist()
    return BaselineResult(loss_law=loss_law, sigmoid=sigmoid, effective=effective,
                          per_benchmark=per_benchmark, trend=trend, notes=tuple(notes))


# ----------------------------------------------------------------------------------------------
# Step 1: loss law


def fit_loss_law(params, tokens, loss, *, irreducible: bool = False) -> dict:
    """Least-squares fit of L = a N^-alpha + b D^-beta (+ E) to observed losses.

    The residual is log observed - log predicted loss: losses of a scaling ladder span several-fold,
    and the log keeps small models from dominating the fit. All of a, alpha, b, beta are searched
    on the log scale, so they stay positive (the exponents within wide guards). With log N and
    log D centred at their means, the amplitudes are searched *at the design's centre*
    (A = a e^{-alpha mean log N}), which removes the near-perfect correlation of log a and alpha
    that raw log N (about 20) causes; a and b are converted back to the paper's scale at the end.
    E, when fitted, is bounded below by 0. ``r2`` is on the scale of the fit (log loss).
    """
    x = np.log(np.asarray(params, float))
    y = np.log(np.asarray(tokens, float))
    log_loss = np.log(np.asarray(loss, float))
    x_mean, y_mean = x.mean(), y.mean()
    x, y = x - x_mean, y - y_mean

    def predicted_loss(theta):
        log_A, log_alpha, log_B, log_beta = theta[:4]
        E = theta[4] if irreducible else 0.0
        return (np.exp(log_A - np.exp(log_alpha) * x) + np.exp(log_B - np.exp(log_beta) * y) + E)

    lower = [-np.inf, np.log(_EXPONENT_RANGE[0]), -np.inf, np.log(_EXPONENT_RANGE[0])]
    upper = [np.inf, np.log(_EXPONENT_RANGE[1]), np.inf, np.log(_EXPONENT_RANGE[1])]
    if irreducible:
        lower, upper = lower + [0.0], upper + [np.inf]
    fit = _best_least_squares(lambda theta: np.log(predicted_loss(theta)) - log_loss,
                              _loss_law_starts(np.exp(log_loss), irreducible), lower, upper)
    log_A, log_alpha, log_B, log_beta = fit.x[:4]
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    exponents_at_bound = _at_bound(fit.x[[1, 3]], np.array(lower)[[1, 3]], np.array(upper)[[1, 3]])
    return {
        "a": float(np.exp(log_A + alpha * x_mean)),
        "alpha": float(alpha),
        "b": float(np.exp(log_B + beta * y_mean)),
        "beta": float(beta),
        "E": float(fit.x[4]) if irreducible else 0.0,
        "r2": _r_squared(fit.fun, log_loss),
        "n_rows": len(log_loss),
        "at_bound": exponents_at_bound,
    }


def _loss_law_starts(loss: np.ndarray, irreducible: bool) -> list[np.ndarray]:
    """Starting points: exponents from shallow to steep, the centre loss split several ways.

    The N-term takes a share of the median loss (less E's share of the smallest loss, when E is
    fitted); the D-term takes the rest.
    """
    centre = np.median(loss)
    irreducible_shares = _START_IRREDUCIBLE_SHARES if irreducible else (0.0,)
    starts = []
    for e_share, share, alpha, beta in itertools.product(
            irreducible_shares, _START_N_SHARES, _START_EXPONENTS, _START_EXPONENTS):
        E = e_share * loss.min()
        theta = [np.log(share * (centre - E)), np.log(alpha),
                 np.log((1 - share) * (centre - E)), np.log(beta)]
        starts.append(np.array(theta + ([E] if irreducible else [])))
    return starts


# ----------------------------------------------------------------------------------------------
# Step 2: loss -> score sigmoid


def fit_sigmoid(loss, score, *, chance: float | None = None) -> dict:
    """Least-squares fit of S(L) = c / (1 + exp(gamma (L - l))) + d to (loss, score) pairs.

    The residual is on the score scale, as in the paper. gamma > 0 fixes the orientation (score
    falls as loss rises) and is searched on the log scale. The floor d is the benchmark's chance
    level when given (what a model that knows nothing scores; a free floor trades off against
    gamma when few points sit near it); otherwise it is fitted in [0, min score], or set
    to 0 when min score is 0. The range is searched as c = q (1 - d) with q in (0, 1], which keeps
    the ceiling c + d <= 1 with box bounds only. Losses are standardised during the search so the
    slope bounds are scale-free; gamma and l are converted back at the end.
    """
    loss = np.asarray(loss, float)
    score = np.asarray(score, float)
    centre, spread = loss.mean(), loss.std()
    z = (loss - centre) / spread
    fixed_d = chance if chance is not None else (0.0 if score.min() <= 0 else None)

    def unpack(theta):
        d = fixed_d if fixed_d is not None else theta[3]
        return theta[2] * (1.0 - d), np.exp(theta[0]), theta[1], d

    lower = [np.log(_STANDARDISED_SLOPE_RANGE[0]), -np.inf, _MIN_CEILING_SHARE]
    upper = [np.log(_STANDARDISED_SLOPE_RANGE[1]), np.inf, 1.0]
    if fixed_d is None:
        lower, upper = lower + [0.0], upper + [score.min()]
    fit = _best_least_squares(lambda theta: laws.score_from_loss(z, *unpack(theta)) - score,
                              _sigmoid_starts(score, fixed_d), lower, upper)
    c, gamma_z, l_z, d = unpack(fit.x)
    return {
        "c": float(c),
        "gamma": float(gamma_z / spread),
        "l": float(centre + spread * l_z),
        "d": float(d),
        "d_fixed": fixed_d is not None,
        "r2": _r_squared(fit.fun, score),
        "n_rows": len(score),
        "at_bound": _at_bound(fit.x[:1], np.array(lower[:1]), np.array(upper[:1])),
    }


def _sigmoid_starts(score: np.ndarray, fixed_d: float | None) -> list[np.ndarray]:
    """Starting points: midpoints across the observed losses, slopes from gentle to sharp, and a
    range either just covering the observed scores or the largest allowed."""
    d = fixed_d if fixed_d is not None else 0.5 * score.min()
    covering = np.clip((score.max() - d) / (1.0 - d), 0.05, 1.0)
    free_d = [] if fixed_d is not None else [d]
    return [np.array([np.log(slope), midpoint, share] + free_d)
            for share, slope, midpoint in itertools.product(
                (covering, 1.0), _START_STANDARDISED_SLOPES, _START_STANDARDISED_MIDPOINTS)]


def _chance_by_benchmark(benchmarks: pd.DataFrame | None) -> dict[str, float]:
    if benchmarks is None:
        return {}
    known = benchmarks[benchmarks["chance"].notna()]
    return dict(zip(known["benchmark"], known["chance"].astype(float)))


# ----------------------------------------------------------------------------------------------
# Shared fitting machinery


def _best_least_squares(residuals: Callable, starts: list[np.ndarray], lower, upper):
    """The lowest-cost ``least_squares`` solution over deterministic starting points.

    Several starts because both fits have shallow valleys (the split between the N- and D-terms;
    a sigmoid seen on one side only); deterministic so the baseline is reproducible without a seed.
    """
    fits = [optimize.least_squares(residuals, start, bounds=(lower, upper),
                                   **_LEAST_SQUARES_OPTIONS)
            for start in starts]
    return min(fits, key=lambda fit: fit.cost)


def _at_bound(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> bool:
    """Whether a searched value ended (numerically) on one of its guards."""
    return bool(np.any(np.isclose(values, lower) | np.isclose(values, upper)))


def _r_squared(residuals: np.ndarray, observed: np.ndarray) -> float:
    return float(1.0 - np.sum(residuals**2) / np.sum((observed - observed.mean()) ** 2))


def _fit_per_benchmark(rows: pd.DataFrame, what: str, columns: tuple[str, ...],
                       n_parameters: int, notes: list[str],
                       fit: Callable[[pd.DataFrame, str], dict]) -> pd.DataFrame:
    """``fit`` applied to each benchmark's rows: a table indexed by benchmark with ``columns``.

    A benchmark needs more rows than the fit has parameters at most (so that the fit is not an
    interpolation) and more than one distinct loss; otherwise it is left out with a note.
    """
    results = {}
    for benchmark, group in rows.groupby("benchmark", sort=True):
        if len(group) <= n_parameters or group["loss"].nunique() < 2:
            notes.append(f"{what} of {benchmark}: {len(group)} usable rows, too few to fit")
            continue
        results[benchmark] = fit(group, benchmark)
        if results[benchmark]["at_bound"]:
            notes.append(f"{what} of {benchmark}: a slope or exponent ended on its search guard")
    table = pd.DataFrame.from_dict(results, orient="index", columns=list(columns))
    table.index.name = "benchmark"
    return table


# ----------------------------------------------------------------------------------------------
# Step 3: effective sizes per (model, benchmark)


def _select_scores(scores: pd.DataFrame, score_rows: str, notes: list[str]) -> pd.DataFrame:
    """One score per (model, benchmark): columns model, benchmark, score.

    ``"preferred"`` keeps the row whose ``preferred`` cell is true (bool or text); a pair without
    one is dropped and a pair with several keeps the first, with notes. Without a ``preferred``
    column the first row of each pair is used, and a note says so. ``"mean"`` averages all rows of
    a pair: it is offered as an option only, since reported scores of one pair can differ in
    setting (shots, harness), which a mean hides.
    """
    pairs = ["model", "benchmark"]
    if score_rows == "mean":
        return scores.groupby(pairs, as_index=False, sort=False)["score"].mean()
    if "preferred" not in scores:
        notes.append("scores.csv has no 'preferred' column: the first row per pair is used")
        return scores.drop_duplicates(pairs, keep="first")[pairs + ["score"]]
    preferred = scores[truthy(scores["preferred"])]
    unpreferred = len(scores.drop_duplicates(pairs)) - len(preferred.drop_duplicates(pairs))
    if unpreferred:
        notes.append(f"scores.csv: {unpreferred} (model, benchmark) pairs have no preferred row "
                     "and are not used")
    repeated = int(preferred.duplicated(pairs).sum())
    if repeated:
        notes.append(f"scores.csv: {repeated} extra preferred rows ignored "
                     "(the first row per pair is kept)")
    return preferred.drop_duplicates(pairs, keep="first")[pairs + ["score"]]


def invert_scores(scores: pd.DataFrame, loss_law: pd.DataFrame, sigmoid: pd.DataFrame, *,
                  d0_tokens: float = laws.D0_TOKENS) -> pd.DataFrame:
    """Effective parameter size of every score, by inverting the two fitted laws at ``d0_tokens``.

    A score at or below the floor d, at or above the ceiling c + d, or mapping to a loss at or
    below the asymptote E + b D0^-beta has no finite inverse: ``effective_params`` is NaN and
    ``reason`` says why (missing where the inverse exists). Clipping such scores to the curve's
    range would invent an effective size the fitted family never reaches, so nothing is clipped.
    A score on a benchmark without both fits has reason ``"no reference fit"``; an inverse too
    large for a float (a loss just above the asymptote) has reason ``"overflow near loss
    asymptote"``.
    """
    curve_keys, law_keys = ["c", "gamma", "l", "d"], ["a", "alpha", "b", "beta", "E"]
    table = (scores.reset_index(drop=True)
             .join(sigmoid[curve_keys], on="benchmark")
             .join(loss_law[law_keys], on="benchmark"))
    S = table["score"].to_numpy(float)
    curve = {key: table[key].to_numpy(float) for key in curve_keys}
    law = {key: table[key].to_numpy(float) for key in law_keys}
    loss_hat = laws.loss_from_score(S, **curve)
    with np.errstate(over="ignore"):
        n_hat = laws.params_from_loss(loss_hat, **law, D=d0_tokens)
    asymptote = law["E"] + law["b"] * d0_tokens ** (-law["beta"])
    reasons = [  # first match wins: the order is that of the inversion chain
        (table[curve_keys + law_keys].isna().any(axis=1), NO_FIT),
        (S <= curve["d"], BELOW_FLOOR),
        (S >= curve["c"] + curve["d"], ABOVE_CEILING),
        (loss_hat <= asymptote, BELOW_ASYMPTOTE),
        (np.isinf(n_hat), OVERFLOW),
    ]
    reason = pd.Series(np.nan, index=table.index, dtype="str")
    for condition, label in reversed(reasons):
        reason[np.asarray(condition)] = label
    return table[["model", "benchmark", "score"]].assign(
        loss_hat=loss_hat, effective_params=np.where(np.isfinite(n_hat), n_hat, np.nan),
        reason=reason)


# ----------------------------------------------------------------------------------------------
# Step 4: one effective size per model


def summarise_models(per_benchmark: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Effective size and density per model, indexed by model (every row of ``models``).

    The paper averages a model's benchmark scores. Here every benchmark has its own curves, so an
    average score has no curve to be inverted through, and a single score outside its curve's
    range would leave the average undefined. The analogue used instead is the geometric mean of
    the finite per-benchmark effective sizes (the mean on the log scale, where the trend is
    fitted). Benchmarks without a finite inverse are left out of the mean and counted instead.
    ``trend_exclusion`` says why a model cannot enter the trend (missing if it can).
    """
    finite = per_benchmark[per_benchmark["effective_params"].notna()]
    log_effective = np.log(finite["effective_params"]).groupby(finite["model"]).mean()
    outside = per_benchmark["reason"].isin(OUTSIDE_RANGE).groupby(per_benchmark["model"]).sum()
    table = models.set_index("model")[["release_date", "params"]].copy()
    table["effective_params"] = np.exp(log_effective.reindex(table.index))
    table["density"] = table["effective_params"] / table["params"]
    table["n_benchmarks_used"] = finite.groupby("model").size().reindex(table.index, fill_value=0)
    table["n_scores_outside_range"] = outside.reindex(table.index, fill_value=0).astype(int)
    exclusion = pd.Series(np.nan, index=table.index, dtype="str")
    exclusion[table["effective_params"].isna().to_numpy()] = "no finite effective size"
    exclusion[table["release_date"].isna().to_numpy()] = "no release date"
    table["trend_exclusion"] = exclusion
    return table


# ----------------------------------------------------------------------------------------------
# Step 5: the density trend


def running_max_envelope(release_dates, densities) -> np.ndarray:
    """Which models lie on the envelope of the largest densities over release time.

    The paper drew its envelope by eye. Here a model is on it if its density exceeds that of
    every model released on an earlier day and is the largest of its own release day (ties at the
    top of a day are all kept). Returns a bool array aligned with the inputs.
    """
    days = np.asarray(release_dates, dtype="datetime64[D]")
    density = np.asarray(densities, dtype=float)
    on_envelope = np.zeros(len(density), dtype=bool)
    best_so_far = -np.inf
    for day in np.unique(days):
        same_day = days == day
        top = density[same_day].max()
        if top > best_so_far:
            on_envelope |= same_day & (density == top)
            best_so_far = top
    return on_envelope


def fit_density_trend(release_dates: pd.Series, densities: pd.Series) -> dict:
    """The paper's trend: ln(rho_max) = A t + B through the running-maximum envelope.

    t is in days since Llama-1's release (2023-02-24); the doubling time is ln 2 / A days (None
    unless A > 0). The ChatGPT split fits two *separate* lines on the envelope points released
    before 2022-11-30 and on or after it, as the paper did (not one continuous broken line); each
    side needs two points at different dates, otherwise its values are None. Both series are
    indexed by model; the envelope is computed over all of them before the split.

    Keys: origin, changepoint (ISO dates); n_models, n_frontier_models, frontier_models (in
    release order); slope_per_day, intercept (ln density at the origin), r2, doubling_time_days;
    the same four with suffixes ``_pre`` and ``_post``; doubling_time_ratio
    (``laws.doubling_time_ratio`` of the two slopes: post / pre where both are positive; None
    where it is not finite).
    """
    models = pd.DataFrame({"release_date": release_dates, "density": densities})
    models = models.sort_values("release_date", kind="stable")
    on_envelope = running_max_envelope(models["release_date"], models["density"])
    frontier = models[on_envelope]
    days = frontier["release_date"].to_numpy(dtype="datetime64[D]")
    t = (days - LLAMA1_RELEASE).astype(float)
    log_density = np.log(frontier["density"].to_numpy(dtype=float))
    after = days >= laws.CHATGPT_RELEASE
    trend = {
        "origin": str(LLAMA1_RELEASE),
        "changepoint": str(laws.CHATGPT_RELEASE),
        "n_models": len(models),
        "n_frontier_models": len(frontier),
        "frontier_models": [str(model) for model in frontier.index],
        **_line_fit(t, log_density),
        **_line_fit(t[~after], log_density[~after], suffix="_pre"),
        **_line_fit(t[after], log_density[after], suffix="_post"),
    }
    pre, post = trend["slope_per_day_pre"], trend["slope_per_day_post"]
    ratio = laws.doubling_time_ratio(post, pre) if pre is not None and post is not None else None
    trend["doubling_time_ratio"] = float(ratio) if ratio is not None and np.isfinite(ratio) \
        else None
    return trend


def _line_fit(t: np.ndarray, y: np.ndarray, suffix: str = "") -> dict:
    """Least-squares line y = slope t + intercept, with R^2 and the doubling time ln 2 / slope."""
    keys = ("slope_per_day", "intercept", "r2", "doubling_time_days")
    if len(np.unique(t)) < 2:
        return {key + suffix: None for key in keys}
    line = stats.linregress(t, y)
    doubling = float(laws.doubling_time_days(line.slope * laws.DAYS_PER_YEAR))
    values = (float(line.slope), float(line.intercept), float(line.rvalue**2),
              None if np.isnan(doubling) else doubling)
    return {key + suffix: value for key, value in zip(keys, values)}


# ----------------------------------------------------------------------------------------------
# Input rows


def _reference_runs(runs: pd.DataFrame, exclude_holdout: bool, notes: list[str]) -> pd.DataFrame:
    if not exclude_holdout or "holdout" not in runs:
        return runs
    held = truthy(runs["holdout"])
    if held.any():
        notes.append(f"reference_runs.csv: {int(held.sum())} hold-out rows kept out of the fits")
    return runs[~held]


def _scores_of_known_models(scores: pd.DataFrame, models: pd.DataFrame,
                            notes: list[str]) -> pd.DataFrame:
    """Scores of models listed in models.csv: a density needs the model's parameter count."""
    known = scores["model"].isin(models["model"])
    if not known.all():
        notes.append(f"scores.csv: {int((~known).sum())} rows of models absent from models.csv "
                     "are not used")
    return scores[known]
