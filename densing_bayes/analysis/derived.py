"""Derived quantities of a fitted run: effective sizes, densities, doubling times, acceleration.

Everything here is a function of posterior draws, computed after sampling (cheaper than
deterministics inside the model, and the same code serves any spec variant).

Intervals are equal-tailed with mass ``ci_prob`` (0.9 by default): equal-tailed intervals
are invariant under monotone transforms, so the doubling time's interval is exactly ln 2 / the
slope's interval, reversed. A slope whose interval reaches zero has no upper doubling time: the
upper end is reported as null (unbounded), never as a negative or huge number.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import xarray as xr

from densing_bayes import laws
from densing_bayes.model.inputs import ModelInputs
from densing_bayes.model.spec import ModelSpec

#: Mean Gregorian month in days, for doubling times in months (the paper's "3.3 months").
DAYS_PER_MONTH = 30.436875

#: The paper's reported point numbers (arXiv 2412.04315), shown beside every result.
PAPER_REPORTED = {
    "slope_per_day": 0.0073,
    "slope_per_day_pre": 0.0048,
    "doubling_time_days": 95.0,
    "doubling_time_months": 3.3,
    "r2": 0.912,
    "doubling_time_ratio": 0.0073 / 0.0048,  # both slopes positive: the slope ratio
}


def interval(draws, ci_prob: float) -> dict[str, float]:
    """Median and equal-tailed interval of the finite draws."""
    values = np.asarray(draws, dtype=float).ravel()
    values = values[np.isfinite(values)]
    lo, med, hi = np.quantile(values, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])
    return {"median": float(med), "lower": float(lo), "upper": float(hi)}


def lineage_level_summary(posterior, ci_prob: float) -> dict:
    """The lineage levels' SD and each lineage's level about the trend (log density), highest
    first: which developers' models are denser than the trend at their dates."""
    level = posterior["lineage_level"]
    levels = {str(lin): interval(level.sel(lineage=lin), ci_prob)
              for lin in level["lineage"].values}
    return {"lineage_level_sd": interval(posterior["lineage_level_sd"], ci_prob),
            "lineage_level": dict(sorted(levels.items(), key=lambda kv: -kv[1]["median"]))}


def lineage_profile_summary(posterior, ci_prob: float) -> dict:
    """The lineage profiles' SD and every (lineage, benchmark) offset whose interval excludes 0,
    largest first: which developers' models read larger or smaller on which benchmark."""
    omega = posterior["lineage_profile"]
    cells = []
    for lin in omega["lineage"].values:
        for bench in omega["benchmark"].values:
            entry = interval(omega.sel(lineage=lin, benchmark=bench), ci_prob)
            if entry["lower"] > 0 or entry["upper"] < 0:
                cells.append({"lineage": str(lin), "benchmark": str(bench), **entry})
    cells.sort(key=lambda c: -abs(c["median"]))
    return {"lineage_profile_sd": interval(posterior["lineage_profile_sd"], ci_prob),
            "lineage_profile_nonzero": cells}


def quantiles_keeping_infinity(values, probs) -> np.ndarray:
    """NumPy's default (linear) quantiles of draws that may be +-inf (NaN draws are dropped).

    ``np.quantile`` returns NaN where it interpolates next to an infinite draw (inf - inf, or
    0 x inf); here a quantile that needs an infinite order statistic is that infinity, and a
    quantile between finite draws is exactly NumPy's.
    """
    v = np.sort(np.asarray(values, dtype=float).ravel())
    v = v[~np.isnan(v)]
    if v.size == 0:
        return np.full(np.shape(probs), np.nan)
    h = (v.size - 1) * np.asarray(probs, dtype=float)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, v.size - 1)
    frac = h - lo
    a, b = v[lo], v[hi]
    with np.errstate(invalid="ignore"):
        linear = a + (b - a) * frac
    return np.where((frac == 0) | (a == -np.inf), a, np.where(b == np.inf, b, linear))


def ratio_interval(draws, ci_prob: float) -> dict[str, float | None]:
    """Median and equal-tailed interval of an extended-real quantity (the doubling-time ratio):
    NaN draws (undefined) are left out, +inf draws are kept, and an infinite end is reported as
    None, the convention of an unbounded doubling time."""
    q = quantiles_keeping_infinity(draws, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])

    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {"median": finite(q[1]), "lower": finite(q[0]), "upper": finite(q[2])}


def doubling_interval(slope_per_year, ci_prob: float, unit_days: float = 1.0) -> dict:
    """Doubling time ln2 / slope (in days, or months with ``unit_days``) by quantile transform."""
    q = interval(slope_per_year, ci_prob)

    def to_time(s: float) -> float | None:
        return None if s <= 0 else math.log(2.0) / s * laws.DAYS_PER_YEAR / unit_days

    return {"median": to_time(q["median"]), "lower": to_time(q["upper"]),
            "upper": to_time(q["lower"])}


def slopes(idata: az.InferenceData, spec: ModelSpec) -> dict[str, xr.DataArray]:
    """Frontier slopes (per year) after (``post``) and before (``pre``) the changepoint."""
    post = idata.posterior
    if spec.trend.changepoint == "none":
        return {"post": post["slope"]}
    return {"post": post["slope_post"], "pre": post["slope_pre"]}


def add_derived(idata: az.InferenceData, spec: ModelSpec) -> az.InferenceData:
    """Add effective params, densities, doubling times, the slope difference (per year) and the
    doubling-time ratio (:func:`laws.doubling_time_ratio`) to the posterior."""
    post = idata.posterior
    new = {}
    if "log_density" in post:
        new["density"] = np.exp(post["log_density"])
        new["effective_params"] = np.exp(post["log_effective_params"])
    if "trend_intercept" in post:
        s = slopes(idata, spec)
        new["doubling_time_days"] = xr.where(s["post"] > 0, math.log(2) / s["post"]
                                             * laws.DAYS_PER_YEAR, np.nan)
        if "pre" in s:
            new["doubling_time_days_pre"] = xr.where(s["pre"] > 0, math.log(2) / s["pre"]
                                                     * laws.DAYS_PER_YEAR, np.nan)
            new["slope_difference"] = s["post"] - s["pre"]
            new["doubling_time_ratio"] = xr.apply_ufunc(laws.doubling_time_ratio, s["post"],
                                                        s["pre"])
    idata.posterior = post.assign(new)
    return idata


def trend_summary(idata: az.InferenceData, spec: ModelSpec, model_time=None) -> dict:
    """The doubling-time part of summary.json (null where the spec has no changepoint).
    ``model_time``: the models' years since the changepoint date (a fit's constant data need
    not carry them: a frozen model compiles its data in)."""
    ci = spec.ci_prob
    s = slopes(idata, spec)
    out = {
        "doubling_time_days": doubling_interval(s["post"], ci),
        "doubling_time_months": doubling_interval(s["post"], ci, DAYS_PER_MONTH),
        "slope_per_day": {k: v / laws.DAYS_PER_YEAR for k, v in interval(s["post"], ci).items()},
        "prob_growth": float((s["post"] > 0).mean()),
        "doubling_time_days_pre": None,
        "doubling_time_months_pre": None,
        "slope_per_day_pre": None,
        "doubling_time_ratio": None,
        "prob_acceleration": None,
        "changepoint_shift_days": None,
    }
    if "pre" in s:
        ratio = laws.doubling_time_ratio(s["post"], s["pre"])
        out.update(
            doubling_time_days_pre=doubling_interval(s["pre"], ci),
            doubling_time_months_pre=doubling_interval(s["pre"], ci, DAYS_PER_MONTH),
            slope_per_day_pre={k: v / laws.DAYS_PER_YEAR for k, v in interval(s["pre"], ci).items()},
            # T_before / T_after on [0, inf]: +inf where only the slope after is positive
            # (the upper end is then None, unbounded); undefined where neither slope is
            doubling_time_ratio=ratio_interval(ratio, ci),
            prob_doubling_time_ratio_undefined=float(np.isnan(ratio).mean()),
            # the primary acceleration summary: the ratio is unstable when the slope before
            # has mass near zero, the difference is not
            slope_difference_per_year=interval(s["post"] - s["pre"], ci),
            prob_slope_difference_positive=float((s["post"] > s["pre"]).mean()),
            # P(doubling-time ratio > 1) = P(slope after > max(slope before, 0)): faster
            # doubling after, including "doubling after, none before"
            prob_acceleration=float((ratio > 1).mean()),
            prob_slope_pre_positive=float((s["pre"] > 0).mean()),
        )
    if "benchmark_drift" in idata.posterior:
        out["benchmark_drift_per_year"], out["doubling_time_days_by_benchmark"] = \
            benchmark_trends(idata, s["post"], ci)
    if "benchmark_loading" in idata.posterior:
        loading = idata.posterior["benchmark_loading"]
        out["benchmark_loading"] = {str(b): interval(loading.sel(benchmark=b), ci)
                                    for b in loading["benchmark"].values}
    if "lineage_profile" in idata.posterior:
        out.update(lineage_profile_summary(idata.posterior, ci))
    if "lineage_level" in idata.posterior:
        out.update(lineage_level_summary(idata.posterior, ci))
    if "inefficiency_trend" in idata.posterior:
        out.update(inefficiency_trend_summary(idata, s["post"], ci, model_time))
    if "changepoint_shift" in idata.posterior:
        out["changepoint_shift_days"] = {
            k: v * laws.DAYS_PER_YEAR
            for k, v in interval(idata.posterior["changepoint_shift"], ci).items()}
    return out


def inefficiency_trend_summary(idata: az.InferenceData, slope_post, ci_prob: float,
                               model_time=None) -> dict:
    """With an inefficiency scale that changes over time, sigma_u(t) = sigma_u exp(psi t), the
    mean log density lies sigma_u(t) sqrt(2/pi) below the frontier, so the two grow at different
    rates. Over the period after the changepoint up to the last release T, the mean's average
    slope is exactly slope_post - sqrt(2/pi) sigma_u (exp(psi T) - 1) / T: the frontier's
    slope (the headline) beside the mean's, and psi itself."""
    post = idata.posterior
    psi = post["inefficiency_trend"]
    out = {"inefficiency_trend_per_year": interval(psi, ci_prob)}
    time = model_time
    if time is None and "constant_data" in idata and "model_time" in idata.constant_data:
        time = idata.constant_data["model_time"].values
    time = None if time is None else np.asarray(time, float)
    if time is None or time.max() <= 0:
        return out
    span = float(time.max())
    mean_slope = slope_post - math.sqrt(2 / math.pi) * post["frontier_inefficiency"] \
        * np.expm1(psi * span) / span
    out.update(mean_slope_post_per_year=interval(mean_slope, ci_prob),
               mean_doubling_time_days=doubling_interval(mean_slope, ci_prob),
               mean_slope_span_years=span)
    return out


def benchmark_trends(idata: az.InferenceData, slope_post, ci_prob: float) -> tuple[dict, dict]:
    """With benchmark drift: each benchmark's drift kappa_b (per year) and the doubling time
    after the changepoint of the effective sizes benchmark b reads, ln 2 / (slope + kappa_b)."""
    drift = idata.posterior["benchmark_drift"]
    kappa, doubling = {}, {}
    for b in drift["benchmark"].values:
        k = drift.sel(benchmark=b)
        kappa[str(b)] = interval(k, ci_prob)
        doubling[str(b)] = doubling_interval(slope_post + k, ci_prob)
    return kappa, doubling


def model_summary(idata: az.InferenceData, inputs: ModelInputs, ci_prob: float) -> dict:
    """Per evaluated model: effective params and density intervals, with the facts beside them."""
    post = idata.posterior
    out = {}
    for i, name in enumerate(inputs.models):
        out[name] = {
            "params": float(np.exp(inputs.model_log_params[i])),
            "release_date": str(inputs.model_release[i]),
            "n_scores": int((inputs.score_model == i).sum()),
            "effective_params": interval(post["effective_params"].sel(model=name), ci_prob),
            "density": interval(post["density"].sel(model=name), ci_prob),
        }
    return out


def benchmark_summary(idata: az.InferenceData, inputs: ModelInputs, ci_prob: float) -> dict:
    """Per benchmark: the paper-scale parameters (a, alpha, b, beta, E, c, gamma, l, d)."""
    natural = natural_parameters(idata, inputs)
    return {b: {k: interval(v.sel(benchmark=b), ci_prob) for k, v in natural.items()}
            for b in inputs.benchmarks}


def natural_parameters(idata: az.InferenceData, inputs: ModelInputs) -> dict[str, xr.DataArray]:
    """Posterior draws of the paper's a, alpha, b, beta, E, c, gamma, l, d per benchmark.

    The model samples amplitudes at the design centre: A = a N_c^-alpha, so a = A e^{alpha c_N}.
    The sigmoid's c, gamma, l are those of the reference protocol (RC, the paper's curve);
    other formats' curves follow with the format as suffix (``c_mc``, ``gamma_mc``, ``l_mc``).
    """
    post = idata.posterior
    chance = xr.DataArray(inputs.chance, coords={"benchmark": inputs.benchmarks})
    params = {
        "a": post["A"] * np.exp(post["alpha"] * inputs.centre_log_params),
        "alpha": post["alpha"],
        "b": post["B"] * np.exp(post["beta"] * inputs.centre_log_tokens),
        "beta": post["beta"],
        "E": post["E"],
    }
    if "gamma" not in post:  # the loss law fitted alone: no sigmoid
        return params
    formats = (list(post["format"].values) if "format" in post["gamma"].dims else ["rc"])
    for fmt in formats:
        pick = ({"format": fmt} if "format" in post["gamma"].dims else {})
        suffix = "" if fmt == "rc" else f"_{fmt}"
        params[f"c{suffix}"] = post["score_span"].sel(pick, drop=True)
        params[f"gamma{suffix}"] = post["gamma"].sel(pick, drop=True)
        params[f"l{suffix}"] = post["midpoint"].sel(pick, drop=True)
    params["d"] = xr.zeros_like(params["gamma"]) + chance
    return params
