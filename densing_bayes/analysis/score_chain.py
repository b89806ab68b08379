"""Reported-score rows recomputed in NumPy from posterior draws, at any effective size.

Integrated leave-one-out needs each score row's likelihood at values the sampler never drew:
``pair_loo`` integrates a (model, benchmark) effect out, ``model_loo`` a model's latent density.
Both need the model's ``score_obs`` formula (loss law with its extrapolation tilt, the format's
sigmoid, the protocol shift, the format mixture, the Beta precision and the outlier share) as a
function of each row's centred log size. This module is that formula, once; the tests check
that at the sampled sizes it reproduces PyMC's pointwise log-likelihood of the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, logsumexp

#: Draws used (evenly thinned from the posterior): PSIS needs hundreds, not thousands.
MAX_DRAWS = 1000

#: Beta means are kept inside [eps, 1 - eps], as in the model.
EPS = 1e-6


def draw_index(posterior, max_draws: int = MAX_DRAWS) -> np.ndarray:
    """Evenly spaced indices into the stacked (chain, draw) order, at most ``max_draws``."""
    n_total = posterior.sizes["chain"] * posterior.sizes["draw"]
    return np.unique(np.linspace(0, n_total - 1, min(max_draws, n_total)).round().astype(int))


def stack(da, index) -> np.ndarray:
    """The draws ``index`` of a posterior variable, (sample, ...)."""
    flat = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    return np.asarray(flat.values, float)[index]


@dataclass(frozen=True)
class ScoreChain:
    """Per retained draw (S) and score row (N): what maps the row's centred log N to the
    likelihood of its observed score (F: scoring formats)."""

    model: np.ndarray  # (N,) model index of each row
    x_shift: np.ndarray | None  # (S, N) benchmark drift kappa_b t_m and lineage profile
    #                             omega_lb added to log N, or None without either
    loading: np.ndarray | None  # (S, N) benchmark loading lambda_b, or None without the term
    pivot_x: float  # centred log N about which the loadings turn
    law: dict  # E, A, B, alpha, beta: (S, N)
    x_d: float  # centred log D0
    tilt: np.ndarray | None  # (S, N, K) extrapolation tilts, None without the term
    box: tuple | None  # the ladder's design box (centred log N and log D)
    columns: list  # extrapolation directions of the tilt's K columns
    gamma: np.ndarray  # (S, N, F)
    midpoint: np.ndarray  # (S, N, F)
    span: np.ndarray  # (S, N, F)
    scale: np.ndarray | None  # (S, N) protocol scale, None without the term
    format_shift: np.ndarray | None  # (S, N, F) MC drift omega t_m on the MC column, or None
    shift: np.ndarray  # (S, N) protocol + source offset on the logit scale
    chance: np.ndarray  # (N,)
    log_weight: np.ndarray  # (N, F) log P(format)
    best: np.ndarray  # (N,) the row reports the better of two protocols: the larger curve
    precision: np.ndarray  # (S, N)
    outlier_share: np.ndarray  # (S,) 0 without the outlier component
    broad: tuple | None  # (share (S,), factor (S,)) of the broad component, None without it
    favourable: tuple | None  # (share (S,), logit shift (S,)) of favourable reports, or None
    skew: np.ndarray | None  # (S,) mean of the skewed error's exponential shift, or None
    y: np.ndarray  # (N,)
    draws: np.ndarray  # indices of the retained draws in the stacked (chain, draw) order

    def logit(self, x_n: np.ndarray, sl: slice = slice(None)) -> np.ndarray:
        """Score logits (S, *G, N, F) of the draws ``sl`` at centred log sizes ``x_n``
        (S, *G, N): any grid dims G between draws and rows."""
        grid = x_n.ndim - 2

        def per_row(a):  # (S, N, ...) -> (S, 1, ..., 1, N, ...)
            a = a[sl]
            return a.reshape(a.shape[:1] + (1,) * grid + a.shape[1:])

        law = {k: per_row(v) for k, v in self.law.items()}
        if self.loading is not None:
            x_n = self.pivot_x + per_row(self.loading) * (x_n - self.pivot_x)
        if self.x_shift is not None:
            x_n = x_n + per_row(self.x_shift)
        loss = (law["E"] + law["A"] * np.exp(-law["alpha"] * x_n)
                + law["B"] * np.exp(-law["beta"] * self.x_d))
        if self.tilt is not None:
            from densing_bayes.model.build import outside_distances

            distance = outside_distances(x_n, np.full(x_n.shape, self.x_d), self.box,
                                         xp=np)[..., self.columns]
            loss = loss * np.exp(np.sum(distance * per_row(self.tilt), axis=-1))
        logit = -per_row(self.gamma) * (loss[..., None] - per_row(self.midpoint))
        if self.scale is not None:
            logit = logit * per_row(self.scale)[..., None]
        if self.format_shift is not None:
            logit = logit + per_row(self.format_shift)
        return logit + per_row(self.shift)[..., None]

    def loglik(self, logit: np.ndarray, sl: slice = slice(None)):
        """log p(y_row | logits) for the draws ``sl`` (logits (S, *G, N, F)): returns the
        log-likelihood (S, *G, N) and the Beta shapes (S, *G, N, F) of every format."""
        broad = None if self.broad is None else (self.broad[0][sl], self.broad[1][sl])
        favourable = None if self.favourable is None else tuple(v[sl] for v in self.favourable)
        return row_loglik(logit, self.span[sl], self.chance, self.precision[sl],
                          self.log_weight, self.outlier_share[sl], self.y, self.best, broad,
                          favourable=favourable,
                          skew=None if self.skew is None else self.skew[sl])

    def sampled_x_n(self, idata) -> np.ndarray:
        """(S, N) centred log N of each row's model at the sampled effective sizes."""
        post = idata.posterior
        log_eff = stack(post["log_effective_params"], self.draws)
        return (log_eff - post.attrs["centre_log_params"])[:, self.model]


def score_chain(idata, d0_tokens: float, max_draws: int = MAX_DRAWS) -> ScoreChain:
    """The score rows' chain from a fitted run's posterior and constant data."""
    post, const = idata.posterior, idata.constant_data
    index = draw_index(post, max_draws)
    b = np.asarray(const["score_benchmark"].values, int)
    law = {k: stack(post[k], index)[:, b] for k in ("E", "A", "B", "alpha", "beta")}
    tilt = box = None
    columns: list = []
    if "loss_extrapolation_tilt" in post and "design_box" in post.attrs:
        from densing_bayes.model.build import EXTRAPOLATION_DIRECTIONS

        da = post["loss_extrapolation_tilt"]
        columns = [EXTRAPOLATION_DIRECTIONS.index(str(k)) for k in da["extrapolation"].values]
        tilt = stack(da.transpose("chain", "draw", "benchmark", "extrapolation"), index)[:, b]
        box = tuple(post.attrs["design_box"])
    gamma, mid, span = (stack(post[k], index) for k in ("gamma", "midpoint", "score_span"))
    if gamma.ndim == 2:  # a fit without formats: one (rc) curve
        gamma, mid, span = gamma[:, None], mid[:, None], span[:, None]
    # (S, F, bench) -> (S, N, F)
    gamma, mid, span = (x[:, :, b].transpose(0, 2, 1) for x in (gamma, mid, span))
    shift = stack(post["protocol_offset"], index)[:, b]
    if "source_offset" in post and "score_source" in const:
        shift = shift + stack(post["source_offset"], index)[:, np.asarray(
            const["score_source"].values, int)]
    phi = stack(post["score_precision_eval"], index)
    phi = phi[:, b] if phi.ndim == 2 else np.repeat(phi[:, None], len(b), axis=1)
    if "score_precision_unstated" in post:
        unstated = np.asarray(const["score_unstated"].values, int) == 1
        factor = stack(post["score_precision_unstated"], index)
        factor = factor[:, b] if factor.ndim == 2 else factor[:, None]  # per benchmark, or one
        phi = np.where(unstated, phi * factor, phi)
    if "score_precision_mc" in post:
        stated_mc = np.asarray(const["score_stated_mc"].values, int) == 1
        phi = np.where(stated_mc, phi * stack(post["score_precision_mc"], index)[:, None], phi)
    if "score_precision_source" in post:
        phi = phi * stack(post["score_precision_source"], index)[
            :, np.asarray(const["score_source"].values, int)]
    model = np.asarray(const["score_model"].values, int)
    if "score_precision_size_slope" in post:
        from densing_bayes.model.build import loading_pivot

        log_params = np.asarray(const["model_log_params"].values, float)
        size = (log_params - loading_pivot(log_params))[model]
        phi = phi * np.exp(stack(post["score_precision_size_slope"], index)[:, None] * size)
    x_shift = None
    if "benchmark_drift" in post:
        time = np.asarray(const["model_time"].values, float)[model]
        x_shift = stack(post["benchmark_drift"], index)[:, b] * time
    if "lineage_profile" in post:
        profile = lineage_profile_rows(post, const, index, model, b)
        x_shift = profile if x_shift is None else x_shift + profile
    loading, pivot_x = None, 0.0
    if "benchmark_loading" in post:
        from densing_bayes.model.build import loading_pivot

        loading = stack(post["benchmark_loading"], index)[:, b]
        pivot_x = loading_pivot(const["model_log_params"].values) - post.attrs["centre_log_params"]
    format_shift = None
    if "mc_drift" in post:
        formats = [str(f) for f in post["gamma"]["format"].values] if "format" in \
            post["gamma"].dims else ["rc"]
        is_mc = np.array([f == "mc" for f in formats], float)
        time = np.asarray(const["model_time"].values, float)[model]
        format_shift = (stack(post["mc_drift"], index)[:, None] * time)[..., None] * is_mc
    return ScoreChain(
        model=model, x_shift=x_shift, loading=loading, pivot_x=pivot_x, law=law,
        x_d=float(np.log(d0_tokens) - post.attrs["centre_log_tokens"]),
        tilt=tilt, box=box, columns=columns, gamma=gamma, midpoint=mid, span=span,
        scale=(stack(post["protocol_scale"], index)[:, b] if "protocol_scale" in post
               else None), format_shift=format_shift,
        shift=shift, chance=np.asarray(const["chance"].values, float)[b],
        log_weight=(np.asarray(const["score_format_log_weight"].values, float)
                    if "score_format_log_weight" in const else np.zeros((len(b), 1))),
        best=(np.asarray(const["score_best"].values, int) == 1 if "score_best" in const
              else np.zeros(len(b), bool)),
        precision=phi,
        outlier_share=(stack(post["score_outlier_share"], index)
                       if "score_outlier_share" in post else np.zeros(len(index))),
        broad=((stack(post["score_broad_share"], index), stack(post["score_broad_factor"], index))
               if "score_broad_share" in post else None),
        favourable=((stack(post["score_favourable_share"], index),
                     stack(post["score_favourable_shift"], index))
                    if "score_favourable_share" in post else None),
        skew=stack(post["score_skew_scale"], index) if "score_skew_scale" in post else None,
        y=np.asarray(idata.observed_data["score_obs"].values, float), draws=index)


#: Seed of the profiles drawn for lineages the fit has not seen (held-out families): fixed, so a
#: prediction is reproducible from the run alone.
NEW_LINEAGE_SEED = 20241205


def lineage_profile_rows(post, const, index, model, b) -> np.ndarray:
    """(S, N) each row's lineage profile omega_lb on log N. ``const["model_lineage"]`` holds
    each model's index into the fit's lineages; a negative code -1 - k marks the k-th lineage
    the fit has not seen, whose profile is drawn from the population the fit learnt: iid
    Normal(0, sd) centred over benchmarks (exactly the zero-sum normal), one draw per (draw,
    new lineage), shared by that lineage's models."""
    omega = stack(post["lineage_profile"].transpose("chain", "draw", "lineage", "benchmark"),
                  index)  # (S, L, B)
    code = np.asarray(const["model_lineage"].values, int)[model]  # (N,)
    rows = np.zeros((len(index), len(b)))
    known = code >= 0
    rows[:, known] = omega[:, code[known], b[known]]
    if (~known).any():
        n_new = int((-1 - code[~known]).max()) + 1
        rng = np.random.default_rng(NEW_LINEAGE_SEED)
        z = rng.standard_normal((len(index), n_new, omega.shape[2]))
        z = z - z.mean(axis=2, keepdims=True)
        new = stack(post["lineage_profile_sd"], index)[:, None, None] * z
        rows[:, ~known] = new[:, -1 - code[~known], b[~known]]
    return rows


def row_loglik(logit, span, chance, precision, log_weight, outlier_share, y, best=None,
               broad=None, *, favourable=None, skew=None):
    """The model's score-row likelihood: log[(1 - pi) sum_f w_f Beta(y | mean_f, phi) + pi],
    mean_f = chance + span_f logistic(logit_f), for logits (S, *G, N, F), spans (S, N, F),
    precisions (S, N) and outlier shares (S,); a ``best`` row (N,) takes max_f mean_f in every
    column; with ``broad`` = (share, factor) (S,) each, the Beta term is the scale mixture
    (1 - share) Beta(phi) + share Beta(phi factor); with ``favourable`` = (share, shift) (S,)
    each, the mixture (1 - share) mix(logit) + share mix(logit + shift); with ``skew`` (S,),
    the exponentially modified Gaussian on logit(y) of ``build.skewed_score_logp``. Returns it
    (S, *G, N) with the narrow component's Beta shapes."""
    grid = logit.ndim - 3
    expand = (slice(None),) + (None,) * grid
    per_draw = (-1,) + (1,) * (grid + 2)  # (S,) -> broadcast against (S, *G, N, F)
    phi = precision[expand][..., None]

    def means(logit):
        mean = np.clip(chance[:, None] + span[expand] * expit(logit), EPS, 1 - EPS)
        if best is not None and np.any(best):
            mean = np.where(best[:, None], mean.max(axis=-1, keepdims=True), mean)
        return mean

    def mixture(phi, mean):
        a, b = mean * phi, (1 - mean) * phi
        if skew is None:
            ll = ((a - 1) * np.log(y)[:, None] + (b - 1) * np.log1p(-y)[:, None]
                  + gammaln(phi) - gammaln(a) - gammaln(b))
        else:
            ll = _skewed_logpdf(y[:, None], a, b, np.reshape(skew, per_draw))
        return logsumexp(ll + log_weight, axis=-1), a, b

    mean = means(logit)
    inlier, a, b = mixture(phi, mean)
    if favourable is not None:
        share, up = (np.reshape(v, per_draw) for v in favourable)
        shifted, _, _ = mixture(phi, means(logit + up))
        share = share[..., 0]
        inlier = np.logaddexp(np.log1p(-share) + inlier, np.log(share) + shifted)
    if broad is not None:
        share, factor = (np.asarray(v).reshape((-1,) + (1,) * (grid + 1)) for v in broad)
        wide, _, _ = mixture(phi * factor[..., None], mean)
        inlier = np.logaddexp(np.log1p(-share) + inlier, np.log(share) + wide)
    share = np.asarray(outlier_share).reshape((-1,) + (1,) * (grid + 1))
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-share) + inlier, np.log(share)), a, b


def _skewed_logpdf(y, a, b, scale):
    """log density of y whose logit is the logit-normal match of Beta(a, b) plus a centred
    Exponential(mean ``scale``) shift (``build.skewed_score_logp``, in NumPy)."""
    from scipy.special import digamma, log_ndtr, polygamma

    centre = digamma(a) - digamma(b)
    sd = np.sqrt(polygamma(1, a) + polygamma(1, b))
    z = np.log(y) - np.log1p(-y)
    mu = centre - scale
    return (-np.log(scale) + (mu - z) / scale + 0.5 * (sd / scale) ** 2
            + log_ndtr((z - mu - sd ** 2 / scale) / sd) - np.log(y) - np.log1p(-y))
