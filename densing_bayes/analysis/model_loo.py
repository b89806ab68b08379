"""Leave-one-model-out: PSIS-LOO over evaluated models, each model's latent density integrated.

Pointwise LOO over score rows is the wrong unit for the trend: a model's other scores pin its
latent density, so leaving one score out hardly asks the trend anything. Leaving a *model* out
does: its scores must then be predicted from the trend at its release date alone,

    p(y_m | theta_s) = int prod_{i in m} p(y_i | theta_s, r) p(r | f_s(t_m), scales_s) dr,

with theta_s everything but the model's own log density r. The integral is one-dimensional and
runs on a grid of the standardised deviation from the trend (``GRID``, step 0.05, refined
eightfold over the 15 steps around each integrand's peak; the frontier's deviation is skew-normal, so the grid reaches
further into the left tail), then the
ratios 1 / p(y_m | theta_s) are Pareto-smoothed over draws (Vehtari, Gelman and Gabry 2017;
integrated importance sampling, Vehtari et al. 2016). The result is an ELPD per model with its
Pareto k: the fit's predictive accuracy for an unseen model of a given size and release date,
the unit in which trend structures should be compared (issue 19).

Supported: the default observation model (Beta format mixture with best-of-two rows, protocol
and source offsets, extrapolation tilt, protocol scale, benchmark drift, the unstated-format
precision, outliers or broad tails) and the frontier (half-normal inefficiency, constant or
changing over time) or mean trends, sampled as deviations from the trend or non-centred. With pair effects each pair's
effect would have to be integrated too: not supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import arviz as az
import numpy as np
from scipy import stats
from scipy.special import logsumexp

from densing_bayes.analysis.score_chain import MAX_DRAWS, ScoreChain, score_chain, stack

#: Standardised deviation r - f(t) in units of the deviation's scale, a midpoint-rule grid:
#: wider to the left, where the frontier's inefficiency puts a half-normal tail.
GRID_STEP = 0.05
GRID = np.arange(-9.0, 5.0, GRID_STEP) + GRID_STEP / 2

#: Around each integrand's peak the ``REFINED_CELLS`` coarse cells are split ``REFINE``-fold:
#: a model with many scores can pin its density more tightly than the coarse step.
REFINED_CELLS = 15
REFINE = 8
_FINE = (np.arange(REFINED_CELLS * REFINE) + 0.5) * (GRID_STEP / REFINE) \
    - REFINED_CELLS * GRID_STEP / 2

#: ArviZ's Pareto k threshold for reliable PSIS estimates.
PARETO_K_GOOD = 0.7


@dataclass(frozen=True)
class ModelLoo:
    """Leave-one-model-out results: per model and in total."""

    models: list[str]
    elpd: np.ndarray  # (M,) elpd_loo of each model's scores
    pareto_k: np.ndarray  # (M,)
    n_rows: np.ndarray  # (M,) score rows per model
    elpd_total: float
    se: float
    p_loo: float
    n_draws: int

    @property
    def share_k_good(self) -> float:
        return float(np.mean(self.pareto_k < PARETO_K_GOOD))


def inefficiency_scale(idata, index, time=None) -> np.ndarray:
    """sigma_u per draw, (S, 1), or with an inefficiency trend sigma_u exp(psi t) per draw and
    model, (S, M): ``time`` (M,) the models' years since the changepoint date (default: the
    fit's own models)."""
    post = idata.posterior
    su = stack(post["frontier_inefficiency"], index)[:, None]
    if "inefficiency_trend" not in post:
        return su
    if time is None:
        time = np.asarray(idata.constant_data["model_time"].values, float)
    return su * np.exp(stack(post["inefficiency_trend"], index)[:, None]
                       * np.asarray(time, float)[None, :])


def deviation_scale(idata, index, trend, time=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(scale, skew) of r - f(t), (S, 1) per draw or (S, M) per draw and model: the
    frontier's skew-normal (omega, alpha) with omega = sqrt(su^2 + sv^2), alpha = -su / sv,
    or the mean trend's normal (sigma, None). ``trend``: the spec's trend settings; ``time``
    (M,): the models' years since the changepoint date, which a frontier whose inefficiency
    scale changes over time (su(t) = su exp(psi t)) needs, and which the fit's own models
    default to."""
    post = idata.posterior
    if trend.kind == "frontier":
        if trend.inefficiency != "half_normal":
            raise NotImplementedError("leave-one-model-out supports the half-normal "
                                      "inefficiency only")
        su = inefficiency_scale(idata, index, time)
        sv = stack(post["frontier_noise"], index)[:, None]
        return np.sqrt(su**2 + sv**2), -su / sv
    return stack(post["trend_noise"], index)[:, None], None


def trend_at_models(idata, index, scale: np.ndarray) -> np.ndarray:
    """(S, M) f(t_m) per draw: log density minus its deviation from the trend."""
    post = idata.posterior
    r = stack(post["log_density"], index)
    if "log_density_deviation" in post:
        return r - stack(post["log_density_deviation"], index)
    if "log_density_std" in post:
        return r - scale * stack(post["log_density_std"], index)
    raise NotImplementedError("log densities sampled as 'centred' carry no deviation variable; "
                              "refit with trend.latent = 'deviation'")


def _log_density(z: np.ndarray, skew: np.ndarray | None) -> np.ndarray:
    """log density of the standardised deviation at z (S, Z, M), per draw's (and model's)
    skew (S, 1 or M)."""
    if skew is None:
        return stats.norm.logpdf(z)
    return stats.skewnorm.logpdf(z, skew[:, None, :])


def _log_mass(skew: np.ndarray | None, k: int) -> np.ndarray:
    """log of the density's mass on the grid's span, (S, 1 or M) (exact, from its CDF)."""
    lo, hi = GRID[0] - GRID_STEP / 2, GRID[-1] + GRID_STEP / 2
    if skew is None:
        return np.full((k, 1), np.log(stats.norm.cdf(hi) - stats.norm.cdf(lo)))
    return np.log(stats.skewnorm.cdf(hi, skew) - stats.skewnorm.cdf(lo, skew))


def integrated_model_loglik(chain: ScoreChain, x_n_trend: np.ndarray, scale: np.ndarray,
                            skew: np.ndarray | None, chunk: int = 10) -> np.ndarray:
    """log p(y_m | theta_s) (S, M): each model's scores, its log density integrated out.

    ``x_n_trend`` (S, M): the centred log N a model would have at the trend's density f(t_m);
    ``scale``, ``skew`` (S, 1) or (S, M): the deviation's scale and skew (None: normal), as
    ``deviation_scale`` gives them. Midpoint rule on
    ``GRID``, refined ``REFINE``-fold over the ``REFINED_CELLS`` cells around each integrand's
    peak, the density normalised by its exact mass on the grid's span. Against adaptive
    quadrature: within 2e-4 in log (tests/test_model_loo.py), the largest errors where a
    skew-normal with |alpha| > 10 puts a cliff inside one step.
    """
    n_draws, n_models = x_n_trend.shape
    member = np.zeros((chain.y.size, n_models))
    member[np.arange(chain.y.size), chain.model] = 1.0
    rows = chain.model
    out = np.empty((n_draws, n_models))

    def models_loglik(z, sl):  # z (S, Z, M) -> sum over each model's rows (S, Z, M)
        x_n = x_n_trend[sl][:, None, :] + scale[sl][:, None, :] * z
        ll, _, _ = chain.loglik(chain.logit(x_n[..., rows], sl), sl)
        return ll @ member

    for start in range(0, n_draws, chunk):
        sl = slice(start, start + chunk)
        k = len(range(*sl.indices(n_draws)))
        sk = None if skew is None else skew[sl]
        log_norm = _log_mass(sk, k)[:, None, :]
        coarse_z = np.broadcast_to(GRID[None, :, None], (k, GRID.size, n_models))
        coarse = (models_loglik(coarse_z, sl) + _log_density(coarse_z, sk)
                  + np.log(GRID_STEP) - log_norm)
        peak = GRID[np.argmax(coarse, axis=1)]  # (S, M)
        fine_z = peak[:, None, :] + _FINE[None, :, None]
        fine = (models_loglik(fine_z, sl) + _log_density(fine_z, sk)
                + np.log(GRID_STEP / REFINE) - log_norm)
        replaced = np.abs(coarse_z - peak[:, None, :]) < REFINED_CELLS * GRID_STEP / 2
        coarse = np.where(replaced, -np.inf, coarse)
        out[sl] = logsumexp(np.concatenate([coarse, fine], axis=1), axis=1)
    return out


def model_loo(idata, spec, max_draws: int = MAX_DRAWS) -> ModelLoo:
    """PSIS-LOO over evaluated models (module docstring) of a run fitted under ``spec``."""
    if "score_pair_effect" in idata.posterior:
        raise NotImplementedError("leave-one-model-out with (model, benchmark) pair effects "
                                  "would integrate every pair of the model too")
    chain = score_chain(idata, spec.data.d0_tokens, max_draws)
    post = idata.posterior
    scale, skew = deviation_scale(idata, chain.draws, spec.trend)
    trend = trend_at_models(idata, chain.draws, scale)
    log_params = np.asarray(idata.constant_data["model_log_params"].values, float)
    x_n_trend = trend + log_params[None, :] - post.attrs["centre_log_params"]
    n_models = trend.shape[1]
    loglik = integrated_model_loglik(chain, x_n_trend, scale, skew)
    # Thinned draws are close to independent: relative efficiency 1.
    log_w, k = az.psislw(-loglik.T, reff=1.0)
    log_w = np.asarray(log_w).T  # (S, M), normalised per model
    elpd = logsumexp(log_w + loglik, axis=0)
    lppd = logsumexp(loglik, axis=0) - math.log(loglik.shape[0])
    return ModelLoo(
        models=[str(m) for m in post["model"].values], elpd=elpd, pareto_k=np.asarray(k),
        n_rows=np.bincount(chain.model, minlength=n_models), elpd_total=float(elpd.sum()),
        se=float(math.sqrt(elpd.size * np.var(elpd))), p_loo=float(np.sum(lppd - elpd)),
        n_draws=int(loglik.shape[0]))
