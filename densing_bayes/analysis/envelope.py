"""The paper's statistic, predicted: the slope of the running-maximum envelope of densities.

The paper fits a line through the largest densities released so far (an envelope), while this
model's slope is that of the frontier's *location* (with a time-constant inefficiency scale, also
the slope of the mean log density). The two are different statistics: an envelope's slope grows
with how many models are released and how widely they scatter, and point estimates of densities
(the paper's chain of fits) add their own noise to the maximum. This module puts the paper's
kind of number on the model's scale (issue 19, item 5):

* **on the latent densities**: the envelope slope of the bundled models' own log densities, one
  value per posterior draw (what the paper's procedure would give if it saw each model's true
  density under this model);
* **replicated**: the envelope slope of a new set of models at the same release dates, their log
  densities drawn from the fitted frontier and its scatter (the posterior predictive
  distribution of the statistic);
* **observed**: the same statistic from the paper's point pipeline on the same data (the
  ``paper_baseline`` of the run's summary), compared with the replicated distribution by its
  posterior predictive p-value P(T_rep >= T_obs).

The envelope and its line follow ``baseline.fit_density_trend``: running maximum over release
date, least-squares line through the envelope points released on or after the changepoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from densing_bayes import laws
from densing_bayes.analysis.baseline import running_max_envelope
from densing_bayes.analysis.model_loo import inefficiency_scale
from densing_bayes.analysis.score_chain import draw_index, stack

#: Draws used for the envelope distributions.
MAX_DRAWS = 1000


def envelope_slope(days: np.ndarray, log_density: np.ndarray,
                   since: np.datetime64 = laws.CHATGPT_RELEASE) -> float:
    """Least-squares slope (per day) of log density over release day through the running-
    maximum envelope's points released on or after ``since``; NaN with fewer than two dates."""
    on = running_max_envelope(days, np.exp(log_density))
    after = on & (days >= since)
    t = (days[after] - since).astype(float)
    if np.unique(t).size < 2:
        return math.nan
    # the least-squares slope in closed form (scipy's linregress, called once per draw, was
    # most of the report's envelope check)
    dt = t - t.mean()
    return float(np.dot(dt, log_density[after] - log_density[after].mean()) / np.dot(dt, dt))


def doubling_days(slope_per_day):
    """ln 2 / slope in days; NaN where the slope is not positive."""
    slope = np.asarray(slope_per_day, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(slope > 0, math.log(2.0) / slope, np.nan)


@dataclass(frozen=True)
class EnvelopeCheck:
    latent: np.ndarray  # (S,) envelope slope per day of the real models' posterior densities
    replicated: np.ndarray  # (S,) the same for replicated models at the same release dates
    observed: float | None  # the point pipeline's envelope slope per day on these data
    model_slope: np.ndarray  # (S,) the frontier's slope after the changepoint, per day
    n_models: int = 0  # evaluated models whose densities make the envelope

    @property
    def p_value(self) -> float | None:
        """P(T_rep >= T_obs): near 0, the model's envelopes are flatter than the observed one."""
        if self.observed is None or not np.isfinite(self.observed):
            return None
        rep = self.replicated[np.isfinite(self.replicated)]
        return float(np.mean(rep >= self.observed)) if rep.size else None

    @property
    def p_value_latent(self) -> float:
        """P(T_rep >= T_latent), draw by draw (a realised-discrepancy check): near 0, the real
        models' envelope rises faster than the fitted frontier and scatter reproduce."""
        ok = np.isfinite(self.latent) & np.isfinite(self.replicated)
        return float(np.mean(self.replicated[ok] >= self.latent[ok]))


def envelope_check(idata, summary: dict, spec, *, seed: int = 0,
                   max_draws: int = MAX_DRAWS) -> EnvelopeCheck:
    """The three envelope statistics of a run fitted under ``spec`` (module docstring)."""
    post = idata.posterior
    index = draw_index(post, max_draws)
    names = [str(m) for m in post["model"].values]
    dates = pd.to_datetime(pd.Series({m: (summary.get("models") or {}).get(m, {}).get(
        "release_date") for m in names}))
    if dates.isna().any():
        raise LookupError("the summary lacks release dates for some models")
    days = dates.to_numpy(dtype="datetime64[D]")
    r = stack(post["log_density"], index)  # (S, M)
    dev_name = "log_density_deviation"
    if dev_name not in post:
        raise LookupError("the fit has no deviation variable (trend.latent = 'deviation')")
    trend = r - stack(post[dev_name], index)
    rng = np.random.default_rng(seed)
    if spec.trend.kind == "frontier":
        su = inefficiency_scale(idata, index)  # su(t) at the real release dates
        sv = stack(post["frontier_noise"], index)[:, None]
        # v - u, v ~ Normal(0, sv), u >= 0 the inefficiency: the frontier's scatter
        u = (su * np.abs(rng.standard_normal(r.shape)) if spec.trend.inefficiency == "half_normal"
             else su * rng.exponential(size=r.shape))
        deviation = sv * rng.standard_normal(r.shape) - u
    else:
        deviation = stack(post["trend_noise"], index)[:, None] * rng.standard_normal(r.shape)
    replicated = trend + deviation
    latent = np.array([envelope_slope(days, row) for row in r])
    rep = np.array([envelope_slope(days, row) for row in replicated])
    observed = ((summary.get("paper_baseline") or {}).get("trend") or {}).get(
        "slope_per_day_post")
    slope_name = "slope_post" if "slope_post" in post else "slope"
    return EnvelopeCheck(latent=latent, replicated=rep,
                         observed=None if observed is None else float(observed),
                         model_slope=stack(post[slope_name], index) / laws.DAYS_PER_YEAR,
                         n_models=len(names))
