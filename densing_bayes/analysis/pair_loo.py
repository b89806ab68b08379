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

The score's mean is recomputed in NumPy from the posterior draws (``score_chain``, the model's
``score_obs`` formula); ``tests/test_pair_loo.py`` checks that it reproduces the model's own
pointwise log-likelihood at the sampled effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, logsumexp

from densing_bayes.analysis.score_chain import MAX_DRAWS, row_loglik, score_chain, stack

#: Standardised pair-effect grid and its normal weights (normalised to sum to one).
GRID = np.linspace(-6.0, 6.0, 81)
LOG_GRID_WEIGHT = -0.5 * GRID**2 - logsumexp(-0.5 * GRID**2)



def has_pair_effect(idata) -> bool:
    return "score_pair_effect" in idata.posterior and "score_pair_sd" in idata.posterior


def _pair_sd(sd: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """(S, N) pair-effect SD per row: per benchmark, or one shared value."""
    return sd[:, benchmark] if sd.ndim == 2 else np.repeat(sd[:, None], len(benchmark), axis=1)


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
    best: np.ndarray | None = None  # (N,) best-of-two-protocols rows


def score_draws(idata, d0_tokens: float, max_draws: int = MAX_DRAWS) -> ScoreDraws:
    """The model's score-row quantities at the sampled effective sizes (``score_chain``),
    with the pair effects' SDs and sampled values."""
    chain = score_chain(idata, d0_tokens, max_draws)
    for name, term in (("score_broad_tails", chain.broad),
                       ("score_favourable", chain.favourable), ("score_skewed", chain.skew)):
        if term is not None:
            raise NotImplementedError(f"pair-effect LOO with [observation] {name} is not "
                                      "implemented: its predictive CDF is not the Beta's")
    post, const = idata.posterior, idata.constant_data
    b = np.asarray(const["score_benchmark"].values, int)
    pair = np.asarray(const["score_pair"].values, int)
    return ScoreDraws(
        logit=chain.logit(chain.sampled_x_n(idata)), span=chain.span, chance=chain.chance,
        log_weight=chain.log_weight, best=chain.best, precision=chain.precision,
        outlier_share=chain.outlier_share,
        pair_sd=_pair_sd(stack(post["score_pair_sd"], chain.draws), b),
        pair_effect=stack(post["score_pair_effect"], chain.draws)[:, pair], pair=pair,
        y=chain.y, draws=chain.draws)


def _row_logp(d: ScoreDraws, sl: slice, effect: np.ndarray):
    """log p(y_row | draw, pair effect) for draws ``sl`` and effects (S, Q, N): returns the
    log-likelihood (S, Q, N) and the Beta shapes (S, Q, N, F) per format."""
    logit = d.logit[sl][:, None] + effect[..., None]  # (S, Q, N, F)
    return row_loglik(logit, d.span[sl], d.chance, d.precision[sl], d.log_weight,
                      d.outlier_share[sl], d.y, d.best)


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
