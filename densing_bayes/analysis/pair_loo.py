"""Leave-one-out of reported scores with the (model, benchmark) effect integrated out.

With ``[observation] score_pair_effect`` every (model, benchmark) pair has its own latent effect
epsilon_p ~ Normal(0, tau). Plain PSIS-LOO conditions on the sampled epsilon_p, which a pair's
only report pins by itself: leaving that report out moves epsilon_p back to its prior, the
importance ratios explode (measured: Pareto k > 0.7 for 174 of 1,043 scores) and the LOO-PIT is
meaningless. The remedy is integrated importance sampling (Vehtari, Mononen, Tolvanen, Sivula
and Winther 2016, JMLR 17): for each posterior draw theta_s (everything but the pair effects),
integrate epsilon_p numerically, one dimension per pair, given the pair's other reports:

    p(y_i | theta_s, y_{p,-i}) = int p(y_i | theta_s, e) p(e | theta_s, y_{p,-i}) de
                               = int prod_{j in p} p(y_j | theta_s, e) N(e | 0, tau_s) de
                                 / int prod_{j in p, j != i} p(y_j | theta_s, e) N(e | 0, tau_s) de

then Pareto-smooth the ratios 1 / p(y_i | theta_s, y_{p,-i}) over draws as usual. The same
conditional gives each report's predictive CDF, whose weighted mean is its LOO-PIT. The integral
runs on a fixed grid of the standardised effect (``GRID``: 81 points over +-6 SD), fine enough
for a pair whose ten reports pin its effect to a tenth of tau.

The score's mean is recomputed here in NumPy from the posterior draws (the model's
``score_obs`` formula); ``tests/test_pair_loo.py`` checks that it reproduces the model's own
pointwise log-likelihood at the sampled effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, expit, gammaln, logsumexp

#: Standardised pair-effect grid and its normal weights (normalised to sum to one).
GRID = np.linspace(-6.0, 6.0, 81)
LOG_GRID_WEIGHT = -0.5 * GRID**2 - logsumexp(-0.5 * GRID**2)

#: Draws used (evenly thinned from the posterior): PSIS needs hundreds, not thousands.
MAX_DRAWS = 1000

#: Beta means are kept inside [eps, 1 - eps], as in the model.
EPS = 1e-6


def has_pair_effect(idata) -> bool:
    return "score_pair_effect" in idata.posterior and "score_pair_sd" in idata.posterior


def _pair_sd(sd: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """(S, N) pair-effect SD per row: per benchmark, or one shared value."""
    return sd[:, benchmark] if sd.ndim == 2 else np.repeat(sd[:, None], len(benchmark), axis=1)


def _stack(da, index):
    flat = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    return np.asarray(flat.values, float)[index]


@dataclass(frozen=True)
class ScoreDraws:
    """Per retained draw: the score rows' logits without the pair effect (draw, row, format),
    and everything else the row likelihood needs."""

    logit: np.ndarray  # (S, N, F)
    span: np.ndarray  # (S, N, F)
    chance: np.ndarray  # (N,)
    log_weight: np.ndarray  # (N, F) log P(format)
    precision: np.ndarray  # (S, N)
    outlier_share: np.ndarray  # (S,) 0 without the outlier component
    pair_sd: np.ndarray  # (S, N) the SD of each row's pair effect
    pair_effect: np.ndarray  # (S, N) the sampled effect of each row's pair
    pair: np.ndarray  # (N,) pair index
    y: np.ndarray  # (N,)
    draws: np.ndarray  # indices of the retained draws in the stacked (chain, draw) order


def score_draws(idata, d0_tokens: float, max_draws: int = MAX_DRAWS) -> ScoreDraws:
    """Recompute the model's score-row quantities from the posterior (see module docstring)."""
    post, const = idata.posterior, idata.constant_data
    n_total = post.sizes["chain"] * post.sizes["draw"]
    index = np.unique(np.linspace(0, n_total - 1, min(max_draws, n_total)).round().astype(int))
    m = np.asarray(const["score_model"].values, int)
    b = np.asarray(const["score_benchmark"].values, int)
    log_eff = _stack(post["log_effective_params"], index)  # (S, model)
    x_n = log_eff - post.attrs["centre_log_params"]
    x_d = float(np.log(d0_tokens) - post.attrs["centre_log_tokens"])
    law = {k: _stack(post[k], index) for k in ("E", "A", "B", "alpha", "beta")}  # (S, bench)
    loss = (law["E"][:, b] + law["A"][:, b] * np.exp(-law["alpha"][:, b] * x_n[:, m])
            + law["B"][:, b] * np.exp(-law["beta"][:, b] * x_d))
    if "loss_extrapolation_tilt" in post and "design_box" in post.attrs:
        from densing_bayes.model.build import EXTRAPOLATION_DIRECTIONS, outside_distances

        tilt = post["loss_extrapolation_tilt"]
        columns = [EXTRAPOLATION_DIRECTIONS.index(str(k)) for k in tilt["extrapolation"].values]
        distance = outside_distances(x_n[:, m], np.full(x_n[:, m].shape, x_d),
                                     post.attrs["design_box"], xp=np)[..., columns]
        tilt = _stack(tilt.transpose("chain", "draw", "benchmark", "extrapolation"), index)
        loss = loss * np.exp(np.sum(distance * tilt[:, b, :], axis=-1))
    gamma, mid, span = (_stack(post[k], index) for k in ("gamma", "midpoint", "score_span"))
    if gamma.ndim == 2:  # a fit without formats: one (rc) curve
        gamma, mid, span = gamma[:, None], mid[:, None], span[:, None]
    # (S, F, bench) -> (S, N, F)
    g, l_mid, c = (x[:, :, b].transpose(0, 2, 1) for x in (gamma, mid, span))
    shift = _stack(post["protocol_offset"], index)[:, b]
    if "source_offset" in post and "score_source" in const:
        shift = shift + _stack(post["source_offset"], index)[:, np.asarray(
            const["score_source"].values, int)]
    logit = -g * (loss[:, :, None] - l_mid)
    if "protocol_scale" in post:
        logit = logit * _stack(post["protocol_scale"], index)[:, b][:, :, None]
    logit = logit + shift[:, :, None]
    phi = _stack(post["score_precision_eval"], index)
    precision = phi[:, b] if phi.ndim == 2 else np.repeat(phi[:, None], len(b), axis=1)
    share = (_stack(post["score_outlier_share"], index) if "score_outlier_share" in post
             else np.zeros(len(index)))
    pair = np.asarray(const["score_pair"].values, int)
    log_weight = (np.asarray(const["score_format_log_weight"].values, float)
                  if "score_format_log_weight" in const else np.zeros((len(b), 1)))
    return ScoreDraws(
        logit=logit, span=c, chance=np.asarray(const["chance"].values, float)[b],
        log_weight=log_weight, precision=precision, outlier_share=share,
        pair_sd=_pair_sd(_stack(post["score_pair_sd"], index), b),
        pair_effect=_stack(post["score_pair_effect"], index)[:, pair], pair=pair,
        y=np.asarray(idata.observed_data["score_obs"].values, float), draws=index)


def _row_logp(d: ScoreDraws, sl: slice, effect: np.ndarray):
    """log p(y_row | draw, pair effect) for draws ``sl`` and effects (S, Q, N): returns the
    log-likelihood (S, Q, N) and the Beta shapes (S, Q, N, F) per format."""
    logit = d.logit[sl][:, None] + effect[..., None]  # (S, Q, N, F)
    mean = np.clip(d.chance[:, None] + d.span[sl][:, None] * expit(logit), EPS, 1 - EPS)
    phi = d.precision[sl][:, None, :, None]
    a, b = mean * phi, (1 - mean) * phi
    ll = ((a - 1) * np.log(d.y)[:, None] + (b - 1) * np.log1p(-d.y)[:, None]
          + gammaln(phi) - gammaln(a) - gammaln(b))
    inlier = logsumexp(ll + d.log_weight, axis=-1)
    share = d.outlier_share[sl][:, None, None]
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-share) + inlier, np.log(share)), a, b


def conditional_log_likelihood(d: ScoreDraws) -> np.ndarray:
    """log p(y_i | theta_s, sampled pair effect) (draw, row): the model's own pointwise
    log-likelihood, for the consistency test."""
    return _row_logp(d, slice(None), d.pair_effect[:, None, :])[0][:, 0]


def integrated_loo_terms(d: ScoreDraws, chunk: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(log p(y_i | theta_s, y_{p,-i}), P(y_new_i <= y_i | theta_s, y_{p,-i})), each
    (draw, row), the pair effect integrated on ``GRID`` (module docstring)."""
    n_draws, n_rows = d.logit.shape[:2]
    n_pairs = int(d.pair.max()) + 1 if n_rows else 0
    member = np.zeros((n_rows, n_pairs))
    member[np.arange(n_rows), d.pair] = 1.0
    loglik = np.empty((n_draws, n_rows))
    cdf = np.empty((n_draws, n_rows))
    for start in range(0, n_draws, chunk):
        sl = slice(start, start + chunk)
        effect = d.pair_sd[sl][:, None, :] * GRID[None, :, None]  # (S, Q, N)
        ll, a, b = _row_logp(d, sl, effect)  # ll (S, Q, N)
        pair_ll = (ll @ member)[..., d.pair]  # (S, Q, N): the whole pair's log-likelihood
        w = LOG_GRID_WEIGHT[None, :, None]
        log_joint = logsumexp(w + pair_ll, axis=1)
        others = w + pair_ll - ll  # (S, Q, N): effect's posterior given the pair's other rows
        log_norm = logsumexp(others, axis=1)
        loglik[sl] = log_joint - log_norm
        # Predictive CDF at y_i: mixture over the grid (weights: the effect given the others),
        # over formats (the row's format weights) and the outlier component (uniform: y).
        format_w = np.exp(d.log_weight - logsumexp(d.log_weight, axis=-1, keepdims=True))
        inlier_cdf = np.sum(betainc(a, b, d.y[:, None]) * format_w, axis=-1)  # (S, Q, N)
        share = d.outlier_share[sl, None, None]
        row_cdf = (1 - share) * inlier_cdf + share * d.y
        cdf[sl] = np.sum(np.exp(others - log_norm[:, None, :]) * row_cdf, axis=1)
    return loglik, cdf
