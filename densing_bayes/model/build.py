"""The joint hierarchical model: loss law -> sigmoid -> latent effective sizes -> density trend.

One PyMC model, sampled jointly (statistical brief: docs section 2; README "The model").

Reference family, per benchmark b (x_N = log N - centre, x_D = log D - centre):
    loss law     L = E_b + A_b exp(-alpha_b x_N) + B_b exp(-beta_b x_D)
                 log L_obs ~ Normal(log L, sigma_loss_b)                       (law rows)
    sigmoid      S_f(L) = d_b + c_fb logistic(-gamma_fb (L - l_fb) + rho_rfb),  d_b = chance_b,
                 c_fb = (1 - d_b) ceiling_fb, one curve per scoring format f (rc: cloze, the
                 ladder's protocol; mc: answer letter, bridged by the OLMo-2 7B checkpoints
                 that log both on the same task loss); rho_rfb ~ Normal(0, sd_f): the effect of
                 run r, shared by its checkpoints (only with [observation] curve_run_effect)
                 score_obs ~ Beta(mean S_f(L_obs), precision phi_ref_fb)         (curve rows)
Evaluated model m, with a latent log density r_m (effective size N_hat_m = N_m e^{r_m} at D0):
    L_mb = loss law at (N_hat_m e^{kappa_b t_m}, D0); kappa_b = 0 unless [trend] benchmark_drift
           (each benchmark's drift rate per year, summing to zero over benchmarks); with
           [trend] benchmark_loading log N_hat_m is first read as p + lambda_b (log N_hat_m - p),
           p the models' mean log N, log lambda_b summing to zero; with [trend]
           lineage_profile it is then read at + omega_lb, l the model's lineage (a developer's
           series of families), omega summing to zero over benchmarks within each lineage
    s_mb ~ Normal(delta_b, tau_b): the (model, benchmark) pair's logit shift, shared by every
           distinct report of the pair (delta_b: the benchmark's residual harness offset within a
           format; [observation] score_pair_effect; without it s_mb = delta_b)
    score_obs_mbk ~ (1 - pi) Beta(mean d_b + c_fb logistic(-k_b gamma_fb (L_mb - l_fb) + s_mb + eta_k),
                                  phi) + pi Uniform(0, 1)
                   through the curve of the row's stated format f, or a mixture over the formats
                   (weights: the benchmark's stated-format shares) when the format is unknown,
                   or the larger of the curves when the report is the best of two protocols
    (k_b: the harness's factor on the curve's slope, 1 unless [observation] protocol_scale;
     eta_k: who reported it, sums to zero; phi: one shared precision, or one per benchmark,
     times a factor for rows of unstated format with [observation] unstated_precision and
     one for stated multiple-choice rows with [observation] mc_precision, and with
     [observation] size_precision times exp(zeta (log N_m - mean log N)); with
     [observation] source_precision times exp(lambda_k), zero-sum over source kinds;
     pi: outlier share, only with [observation] score_outliers; with [observation]
     score_favourable the second component is instead the same Beta around the curve with
     its logit moved up by xi > 0, share pi: a favourable protocol; with [observation]
     score_skewed logit(score) is instead the Beta's logit mean and SD plus a centred
     Exponential(mean xi) shift, an exponentially modified Gaussian; [data] score_rows decides what
     a row is: by default the mean of one pair's distinct reports in one format)
Density trend (t = years since the changepoint date):
    f(t) = B + slope_pre min(t - tau, 0) + slope_post max(t - tau, 0)     (continuous at tau)
               B = trend_intercept + sigma_u sqrt(2/pi)  (prior on the mean level, which data pin)
    frontier:  r_m = f(t_m) - u_m + v_m, u ~ HalfNormal(sigma_u), v ~ Normal(0, sigma_v),
               (with [trend] inefficiency_trend: sigma_u(t_m) = sigma_u exp(psi t_m))
               with u marginalised: r_m ~ SkewNormal(f(t_m), sqrt(su^2 + sv^2), -su/sv)
               (or u ~ Exponential(mean sigma_u): f(t_m) - r_m ~ ExGaussian(0, sv, su))
    mean:      r_m ~ Normal(f(t_m), sigma)

Geometry (why it is written this way): log N and log D are centred at the reference design's
centre and amplitudes live there (uncentred, log a and alpha are almost collinear); the loss
law is sampled as (total loss at the centre, the N-term's share, irreducible fraction), the
coordinates the data pin, with priors stated on those same coordinates; slopes are per year;
scale parameters that can approach zero have boundary-avoiding priors; the frontier's
inefficiency is integrated out analytically (the normal / half-normal convolution is the
skew-normal), which removes one latent per model. The latent log densities are sampled in the
coordinates ``trend.latent`` names (deviations from the trend in log-density units by default;
standardised deviations, or the log densities themselves): the same posterior, different
geometry, measured in README "Performance".
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from densing_bayes.model.inputs import ModelInputs, stated_mc_rows
from densing_bayes.model.priors import DEFAULT_PRIORS
from densing_bayes.model.spec import ModelSpec, SpecError

#: Sharpness (per year) of the smooth hinge used when the changepoint date is itself unknown:
#: softplus(k s) / k is within ln2 / k = 13 days of max(s, 0), and differentiable for NUTS.
UNKNOWN_CHANGEPOINT_SHARPNESS = 20.0

#: Variables whose posterior a summary reports first: what the statistician asked about.
KEY_PARAMETERS = (
    "slope", "slope_pre", "slope_post", "trend_intercept", "frontier_intercept", "changepoint_shift",
    "frontier_inefficiency", "frontier_noise", "trend_noise", "alpha", "beta",
    "sigmoid_ceiling", "score_precision_eval",
)


def loss_law_centred(x_params, x_tokens, E, A, B, alpha, beta):
    """The loss law in centred coordinates, as a PyTensor expression."""
    return E + A * pt.exp(-alpha * x_params) + B * pt.exp(-beta * x_tokens)


def trend_mean(time, spec: ModelSpec, intercept, slope=None, slope_pre=None, slope_post=None,
               shift=0.0, xp=pt):
    """f(t): the frontier (or mean) log density at time ``t`` years after the changepoint
    (``xp=np``: the same in NumPy, for predictions of new models from posterior draws)."""
    if spec.trend.changepoint == "none":
        return intercept + slope * time
    s = time - shift
    if spec.trend.changepoint == "fixed":
        return intercept + slope_pre * xp.minimum(s, 0.0) + slope_post * xp.maximum(s, 0.0)
    k = UNKNOWN_CHANGEPOINT_SHARPNESS
    softplus = pt.softplus if xp is pt else (lambda v: np.logaddexp(0.0, v))
    return intercept + slope_pre * s + (slope_post - slope_pre) * softplus(k * s) / k


#: With [trend] size_covariate the trend is that of a model of this size: x = ln(N / 10B).
REFERENCE_PARAMS = 1e10


def size_effect(x, time, size_slope, size_slope_post, xp=pt):
    """x (theta + theta_post max(t - tau, 0)): the size term of the trend, x = ln(N / 10B)."""
    return x * (size_slope + size_slope_post * xp.maximum(time, 0.0))


#: Beta means are kept inside [eps, 1 - eps]: a sigmoid far in its tail underflows to exactly
#: 0 or 1 in float64, which would make the Beta's shape parameters 0 (a score of 1e-6 is
#: indistinguishable from 0 for any benchmark we know).
BETA_MEAN_EPS = 1e-6


def beta_mean_precision_logp(value, mean, precision, log_norm):
    """log Beta(value | mean * precision, (1 - mean) * precision), lean.

    The same density as ``pm.Beta`` (the tests compare them value by value), written for speed:
    the Beta likelihood of 4,000+ score rows is most of the gradient's cost, and its special
    functions dominate. ``alpha + beta = precision`` is constant per benchmark, so its log-gamma
    comes in precomputed per benchmark as ``log_norm = gammaln(precision)`` (indexed per row)
    instead of once per row, and PyMC's guards are left out because nothing can trip them
    here: observed scores are validated to lie in (0, 1), the mean is clipped inside it and
    precisions are positive by their priors.
    """
    a = mean * precision
    b = precision - a
    return ((a - 1.0) * pt.log(value) + (b - 1.0) * pt.log1p(-value)
            - pt.gammaln(a) - pt.gammaln(b) + log_norm)


def _beta_random(mean, precision, log_norm, rng=None, size=None):
    return rng.beta(mean * precision, (1.0 - mean) * precision, size=size)


def _beta_obs(name, mean, precision, observed, dims, log_norm):
    """Scores ~ Beta(mean, precision); ``log_norm`` is gammaln(precision) per row."""
    mean = pt.clip(mean, BETA_MEAN_EPS, 1.0 - BETA_MEAN_EPS)
    return pm.CustomDist(name, mean, precision, log_norm, logp=beta_mean_precision_logp,
                         random=_beta_random, observed=observed, dims=dims)


def _loss_law_block(inputs: ModelInputs, spec: ModelSpec):
    """Per-benchmark loss-law parameters and the likelihood of the loss-law rows."""
    loss_scale = pt.as_tensor(inputs.loss_scale)
    centre_ratio = spec.prior("loss_centre_log_ratio").create_variable("loss_centre_log_ratio")
    loss_centre = pm.Deterministic("loss_centre", loss_scale * pt.exp(centre_ratio),
                                   dims="benchmark")
    share = spec.prior("loss_n_share").create_variable("loss_n_share")
    if spec.loss_law.irreducible:
        frac = spec.prior("loss_irreducible_frac").create_variable("loss_irreducible_frac")
        E = pm.Deterministic("E", frac * loss_centre, dims="benchmark")
    else:
        E = pm.Deterministic("E", pt.zeros_like(loss_centre), dims="benchmark")
    reducible = loss_centre - E
    A = pm.Deterministic("A", share * reducible, dims="benchmark")
    B = pm.Deterministic("B", (1.0 - share) * reducible, dims="benchmark")
    alpha = pm.Deterministic("alpha", pt.exp(spec.prior("loss_log_alpha")
                                             .create_variable("loss_log_alpha")), dims="benchmark")
    beta = pm.Deterministic("beta", pt.exp(spec.prior("loss_log_beta")
                                           .create_variable("loss_log_beta")), dims="benchmark")
    sigma = spec.prior("loss_noise").create_variable("loss_noise")

    b = pm.Data("law_benchmark", inputs.law_benchmark, dims="law_row")
    x_n = pm.Data("law_x_params", inputs.law_x_params, dims="law_row")
    x_d = pm.Data("law_x_tokens", inputs.law_x_tokens, dims="law_row")
    mu = loss_law_centred(x_n, x_d, E[b], A[b], B[b], alpha[b], beta[b])
    observed = pm.Data("law_log_loss", np.log(inputs.law_loss), dims="law_row")
    pm.Normal("log_loss_obs", mu=pt.log(mu), sigma=sigma[b], observed=observed, dims="law_row")
    return E, A, B, alpha, beta


#: Prior names of each format's sigmoid: the reference protocol ("rc") keeps the historical
#: names; every other format's curve has its own priors, prefixed with the format.
SIGMOID_PRIORS = ("sigmoid_log_slope", "sigmoid_log_midpoint", "sigmoid_ceiling",
                  "score_precision_ref")


def sigmoid_prior_name(name: str, fmt: str) -> str:
    return name if fmt == "rc" else f"{fmt}_{name}"


def _format_sigmoid(spec: ModelSpec, fmt: str, loss_scale):
    """gamma, midpoint, ceiling, precision of one format's curve (each of dim benchmark)."""
    var = {n: spec.prior(sigmoid_prior_name(n, fmt)).create_variable(sigmoid_prior_name(n, fmt))
           for n in SIGMOID_PRIORS}
    gamma = pt.exp(var["sigmoid_log_slope"]) / loss_scale
    midpoint = loss_scale * pt.exp(var["sigmoid_log_midpoint"])
    return gamma, midpoint, var["sigmoid_ceiling"], var["score_precision_ref"]


#: The four directions in which a point can leave the reference design box, in the order of
#: the ``extrapolation`` dim: below / above the ladder's log N range, below / above its log D.
EXTRAPOLATION_DIRECTIONS = ("params_below", "params_above", "tokens_below", "tokens_above")


def design_box(inputs: ModelInputs) -> tuple[float, float, float, float]:
    """(min, max) of centred log N and of centred log D over the loss-law rows."""
    return (float(np.min(inputs.law_x_params)), float(np.max(inputs.law_x_params)),
            float(np.min(inputs.law_x_tokens)), float(np.max(inputs.law_x_tokens)))


def outside_distances(x_n, x_d, box, xp=pt):
    """Distances (log units) outside the design box per direction, stacked on the last axis."""
    n_lo, n_hi, d_lo, d_hi = box
    zero = 0.0
    return xp.stack([xp.maximum(n_lo - x_n, zero), xp.maximum(x_n - n_hi, zero),
                     xp.maximum(d_lo - x_d, zero) + 0.0 * x_n,
                     xp.maximum(x_d - d_hi, zero) + 0.0 * x_n], axis=-1)


def extrapolation_sds(spec: ModelSpec) -> dict[str, float]:
    """The tilt's SD per direction (only directions with a positive SD are modelled)."""
    law = spec.loss_law
    params, tokens = law.extrapolation_sd_params, law.extrapolation_sd
    above = params if law.extrapolation_sd_params_above is None \
        else law.extrapolation_sd_params_above
    # below the ladder's token range nothing is read off the law (D0 and the anchors lie above)
    sds = dict(zip(EXTRAPOLATION_DIRECTIONS, (params, above, 0.0, tokens)))
    return {k: v for k, v in sds.items() if v > 0}


def _extrapolation_tilt(spec: ModelSpec):
    """Per-benchmark random tilts of the log loss law outside the design box, (benchmark,
    direction): tilt = sd * z, z ~ Normal(0, 1); the law is exact inside the box and its log
    error grows linearly, at a rate the ladder cannot see, in each direction it is extrapolated.
    Returns (tilt, column indices of its directions), or ``None`` when switched off."""
    sds = extrapolation_sds(spec)
    if not sds:
        return None
    model = pm.modelcontext(None)
    model.add_coord("extrapolation", list(sds))
    z = pm.Normal("loss_extrapolation_z", 0.0, 1.0, dims=("benchmark", "extrapolation"))
    tilt = pm.Deterministic("loss_extrapolation_tilt", np.array(list(sds.values())) * z,
                            dims=("benchmark", "extrapolation"))
    return tilt, [EXTRAPOLATION_DIRECTIONS.index(k) for k in sds]


def _sigmoid_block(inputs: ModelInputs, spec: ModelSpec):
    """Per-(format, benchmark) loss -> score sigmoids and the likelihood of the curve rows.

    Returns (format, benchmark) tensors. All formats share the task loss and the chance floor;
    each has its own slope, midpoint, ceiling and precision.
    """
    loss_scale = pt.as_tensor(inputs.loss_scale)
    parts = [_format_sigmoid(spec, fmt, loss_scale) for fmt in inputs.formats]
    gamma = pm.Deterministic("gamma", pt.stack([p[0] for p in parts]),
                             dims=("format", "benchmark"))
    midpoint = pm.Deterministic("midpoint", pt.stack([p[1] for p in parts]),
                                dims=("format", "benchmark"))
    chance = pt.as_tensor(inputs.chance)
    span = pm.Deterministic("score_span", (1.0 - chance) * pt.stack([p[2] for p in parts]),
                            dims=("format", "benchmark"))
    phi = pt.stack([p[3] for p in parts])

    b = pm.Data("curve_benchmark", inputs.curve_benchmark, dims="curve_row")
    f = pm.Data("curve_format", inputs.curve_format, dims="curve_row")
    loss = pm.Data("curve_loss", inputs.curve_loss, dims="curve_row")
    if spec.observation.curve_run_effect and len(inputs.curve_groups):
        group = pm.Data("curve_group_index", inputs.curve_group, dims="curve_row")
        logit = -gamma[f, b] * (loss - midpoint[f, b]) + _curve_run_effect(inputs, spec)[group]
    else:
        logit = -gamma[f, b] * (loss - midpoint[f, b])
    mean = chance[b] + span[f, b] * pm.math.sigmoid(logit)
    observed = pm.Data("curve_score", inputs.curve_score, dims="curve_row")
    _beta_obs("curve_score_obs", mean, phi[f, b], observed, "curve_row", pt.gammaln(phi)[f, b])
    return gamma, midpoint, span, chance


def _curve_run_effect(inputs: ModelInputs, spec: ModelSpec):
    """Logit effect of each (reference run, benchmark, format) group, shared by the run's
    checkpoints: rho_g ~ Normal(0, curve_run_sd[f]), centred (each run's checkpoints pin its
    effect). Returns the effect per group with a trailing 0 for rows without a group (formats
    with fewer than ``inputs.RUN_EFFECT_MIN_RUNS`` runs: a run SD cannot be learned from two
    runs, and measured at 4 x 1000 the MC curves' two run effects sat on a ridge with the
    curve's midpoint, R-hat 1.04 / bulk ESS 64 centred, 1.08 / 48 centred on the midpoint)."""
    sd = spec.prior("curve_run_sd").create_variable("curve_run_sd")
    rho = pm.Normal("curve_run_effect", 0.0, sd[inputs.curve_group_format], dims="curve_group")
    return pt.concatenate([rho, pt.zeros(1)])


def format_mixture_logp(value, mean, log_weight, precision, log_norm):
    """log sum_f w_rf Beta(value_r | mean_rf, precision): a stated format has weight 1 on its
    own curve (the others carry IMPOSSIBLE_LOG_WEIGHT), an unknown one the benchmark's shares."""
    mean = pt.clip(mean, BETA_MEAN_EPS, 1.0 - BETA_MEAN_EPS)
    per_format = beta_mean_precision_logp(value[:, None], mean, precision[..., None],
                                          log_norm[..., None])
    if mean.type.shape[-1] == 1:
        return per_format[:, 0]
    return pt.logsumexp(per_format + log_weight, axis=-1)


def robust_score_logp(value, mean, log_weight, precision, log_norm, outlier_share):
    """log[(1 - pi) sum_f w_rf Beta(value_r | mean_rf, precision) + pi * 1]: the format mixture,
    contaminated by a share ``pi`` of outliers uniform on (0, 1) (density 1)."""
    inlier = format_mixture_logp(value, mean, log_weight, precision, log_norm)
    return pt.logaddexp(pt.log1p(-outlier_share) + inlier, pt.log(outlier_share))


def broad_score_logp(value, mean, log_weight, precision, log_norm, broad_share, broad_factor):
    """log[(1 - pi) mix(phi) + pi mix(phi c)]: the format mixture at precision phi, with a
    share ``pi`` of reports from a broader Beta (precision phi c, c < 1) around the same mean."""
    narrow = format_mixture_logp(value, mean, log_weight, precision, log_norm)
    wide = precision * broad_factor
    broad = format_mixture_logp(value, mean, log_weight, wide, pt.gammaln(wide))
    return pt.logaddexp(pt.log1p(-broad_share) + narrow, pt.log(broad_share) + broad)


def favourable_score_logp(value, mean, favourable, log_weight, precision, log_norm, share):
    """log[(1 - pi) mix(mean) + pi mix(favourable)]: the format mixture around the chain's
    prediction, or, with probability ``pi``, around the prediction moved up by a favourable
    protocol (the logit plus a positive shift, computed by the caller)."""
    usual = format_mixture_logp(value, mean, log_weight, precision, log_norm)
    up = format_mixture_logp(value, favourable, log_weight, precision, log_norm)
    return pt.logaddexp(pt.log1p(-share) + usual, pt.log(share) + up)


def skewed_score_logp(value, mean, log_weight, precision, scale):
    """log sum_f w_rf p(value_r | mean_rf): logit(value) = c + e + (w - xi), e ~ Normal(0, s),
    w ~ Exponential(mean xi), c and s^2 the mean and variance of logit(Y) for Y ~ Beta(mean,
    precision) (digamma and trigamma differences), plus the logit's Jacobian. As xi -> 0 it is
    the Beta's logit-normal match; its upper tail is exponential, and as a convolution of two
    log-concave densities it is log-concave in c (one mode per report, whatever its size)."""
    mean = pt.clip(mean, BETA_MEAN_EPS, 1.0 - BETA_MEAN_EPS)
    a = mean * precision[..., None]
    b = precision[..., None] - a
    centre = _digamma(a) - _digamma(b)
    sd = pt.sqrt(_trigamma(a) + _trigamma(b))
    z = pt.log(value) - pt.log1p(-value)
    per_format = exgaussian_logp(z[:, None], centre - scale, sd, scale) \
        - pt.log(value)[:, None] - pt.log1p(-value)[:, None]
    if mean.type.shape[-1] == 1:
        return per_format[:, 0]
    return pt.logsumexp(per_format + log_weight, axis=-1)


#: The recurrence shift before the asymptotic series in ``_digamma`` / ``_trigamma``: from
#: x + 6 on, the series' first omitted term is below 1e-9 relative.
_POLYGAMMA_SHIFT = 6


def _digamma(x):
    """psi(x) in elementary operations (recurrence, then the asymptotic series): PyTensor's
    digamma and trigamma run in Numba's slow object mode, once per row and gradient."""
    y = x + _POLYGAMMA_SHIFT
    series = pt.log(y) - 0.5 / y - 1.0 / (12.0 * y**2) + 1.0 / (120.0 * y**4) \
        - 1.0 / (252.0 * y**6)
    return series - sum(1.0 / (x + i) for i in range(_POLYGAMMA_SHIFT))


def _trigamma(x):
    """psi'(x) in elementary operations, as ``_digamma``."""
    y = x + _POLYGAMMA_SHIFT
    series = 1.0 / y + 0.5 / y**2 + 1.0 / (6.0 * y**3) - 1.0 / (30.0 * y**5) \
        + 1.0 / (42.0 * y**7)
    return series + sum(1.0 / (x + i) ** 2 for i in range(_POLYGAMMA_SHIFT))


def exgaussian_logp(x, mu, sigma, nu):
    """log density of Normal(mu, sigma) + Exponential(mean nu) at x (PyMC's ExGaussian, whose
    log Phi is evaluated stably far in the tail)."""
    from pymc.distributions.dist_math import normal_lcdf

    return (-pt.log(nu) + (mu - x) / nu + 0.5 * (sigma / nu) ** 2
            + normal_lcdf(mu + sigma ** 2 / nu, sigma, x))


def _skewed_score_random(mean, log_weight, precision, scale, rng=None, size=None):
    from scipy import special

    chosen = _pick_format_mean(mean, log_weight, rng)
    a, b = chosen * precision, (1.0 - chosen) * precision
    centre = special.digamma(a) - special.digamma(b)
    sd = np.sqrt(special.polygamma(1, a) + special.polygamma(1, b))
    shape = np.shape(centre)
    logit = centre - scale + sd * rng.standard_normal(shape) + rng.exponential(1.0, shape) * scale
    return special.expit(logit)


def _favourable_score_random(mean, favourable, log_weight, precision, log_norm, share,
                             rng=None, size=None):
    pick = rng.random(np.broadcast_shapes(np.shape(mean)[:-1], np.shape(share))) < share
    chosen = np.where(pick[..., None], favourable, mean)
    return _format_mixture_random(chosen, log_weight, precision, log_norm, rng=rng, size=size)


def _broad_score_random(mean, log_weight, precision, log_norm, broad_share, broad_factor,
                        rng=None, size=None):
    broad = rng.random(np.broadcast_shapes(np.shape(precision), np.shape(broad_share))) \
        < broad_share
    phi = np.where(broad, precision * broad_factor, precision)
    return _format_mixture_random(mean, log_weight, phi, log_norm, rng=rng, size=size)


def _robust_score_random(mean, log_weight, precision, log_norm, outlier_share, rng=None,
                         size=None):
    draws = _format_mixture_random(mean, log_weight, precision, log_norm, rng=rng, size=size)
    outlier = rng.random(np.shape(draws)) < outlier_share
    return np.where(outlier, rng.random(np.shape(draws)), draws)


def _pick_format_mean(mean, log_weight, rng):
    """Each row's mean under one format, drawn with the row's format weights."""
    mean = np.clip(mean, BETA_MEAN_EPS, 1.0 - BETA_MEAN_EPS)
    weight = np.exp(log_weight - log_weight.max(axis=-1, keepdims=True))
    cumulative = np.cumsum(weight / weight.sum(axis=-1, keepdims=True), axis=-1)
    pick = (rng.random(cumulative.shape[:-1])[..., None] > cumulative).sum(axis=-1)
    pick = np.minimum(pick, mean.shape[-1] - 1)
    return np.take_along_axis(mean, pick[..., None], axis=-1)[..., 0]


def _format_mixture_random(mean, log_weight, precision, log_norm, rng=None, size=None):
    chosen = _pick_format_mean(mean, log_weight, rng)
    return rng.beta(chosen * precision, (1.0 - chosen) * precision, size=size)


#: Nodes of the precision mixing ([observation] score_precision_mixing_df): equally likely
#: multipliers of the Beta precision. 12 mid-quantiles reach down to 0.15 at nu = 4 (a
#: precision of 27 for phi = 180) and cost 12 Beta densities per score row.
PRECISION_MIXING_NODES = 12


def precision_mixing_nodes(df: float, k: int = PRECISION_MIXING_NODES) -> np.ndarray:
    """The K equally likely precision multipliers: mid-quantiles of Gamma(df/2, rate df/2)."""
    from scipy import stats

    return stats.gamma.ppf((np.arange(k) + 0.5) / k, a=df / 2.0, scale=2.0 / df)


def mixed_precision_logp(value, mean, log_weight, precision, nodes):
    """log (1/K) sum_k sum_f w_rf Beta(value_r | mean_rf, precision_r * nodes_k): the format
    mixture with the precision multiplied by one of K equally likely ``nodes``."""
    mean = pt.clip(mean, BETA_MEAN_EPS, 1.0 - BETA_MEAN_EPS)
    # PyMC pads the constant nodes with batch axes ((1, K) in a model): every row shares them
    w = pt.as_tensor(nodes).reshape((-1, nodes.shape[-1]))[0]
    phi = precision[:, None, None] * w[None, None, :]      # (row, 1, K)
    per = beta_mean_precision_logp(value[:, None, None], mean[:, :, None], phi, pt.gammaln(phi))
    per_node = pt.logsumexp(per + log_weight[:, :, None], axis=1)  # (row, K)
    return pt.logsumexp(per_node, axis=-1) - pt.log(w.shape[0])


def _mixed_precision_random(mean, log_weight, precision, nodes, rng=None, size=None):
    precision = np.asarray(precision, float)
    nodes = np.broadcast_to(np.asarray(nodes, float), precision.shape + np.shape(nodes)[-1:])
    pick = rng.integers(0, nodes.shape[-1], size=precision.shape)
    w = np.take_along_axis(nodes, pick[..., None], axis=-1)[..., 0]
    return _format_mixture_random(mean, log_weight, precision * w, None, rng=rng, size=size)


def _pair_shift(inputs: ModelInputs, spec: ModelSpec, protocol_offset):
    """Logit shift of each (model, benchmark) pair, shared by every report of the pair:
    shift_p ~ Normal(protocol_offset[b], score_pair_sd[b]) (b: the pair's benchmark).

    Centred, with the benchmark's offset as its mean (hierarchical centring): reports pin each
    pair's shift, so the non-centred form ties every z to the SD (measured at 4 x 500: bulk ESS
    9 for the SD), and a zero-mean centred effect beside a separate offset ties the offset to
    the mean of hundreds of effects (bulk ESS 45). ``score_pair_effect`` = shift - offset."""
    sd = spec.prior("score_pair_sd").create_variable("score_pair_sd")
    pb = inputs.pair_benchmark
    shift = pm.Normal("score_pair_shift", protocol_offset[pb], sd[pb] if sd.ndim else sd,
                      dims="pair")
    pm.Deterministic("score_pair_effect", shift - protocol_offset[pb], dims="pair")
    return shift


def _trend_block(inputs: ModelInputs, spec: ModelSpec):
    """Frontier (or mean) trend over release time; returns the latent log density per model."""
    time = pm.Data("model_time", inputs.model_time, dims="model")
    # The prior is on the *mean* log density at the changepoint, which the data pin; the
    # frontier lies E[u] = sigma_u sqrt(2/pi) above it. Sampling the frontier's intercept
    # instead leaves a ridge along (intercept, sigma_u) that cut the ESS of both ~3x.
    mean_intercept = spec.prior("trend_intercept").create_variable("trend_intercept")
    if spec.trend.kind == "frontier":
        sigma_u = spec.prior("frontier_inefficiency").create_variable("frontier_inefficiency")
        sigma_v = spec.prior("frontier_noise").create_variable("frontier_noise")
        mean_u = (sigma_u * np.sqrt(2.0 / np.pi) if spec.trend.inefficiency == "half_normal"
                  else sigma_u)
        intercept = mean_intercept + mean_u
    else:
        intercept = mean_intercept
    pm.Deterministic("frontier_intercept", intercept)
    if spec.trend.changepoint == "none":
        f = trend_mean(time, spec, intercept, slope=spec.prior("slope").create_variable("slope"))
    else:
        shift = (spec.prior("changepoint_shift").create_variable("changepoint_shift")
                 if spec.trend.changepoint == "unknown" else 0.0)
        f = trend_mean(time, spec, intercept,
                       slope_pre=spec.prior("slope_pre").create_variable("slope_pre"),
                       slope_post=spec.prior("slope_post").create_variable("slope_post"),
                       shift=shift)
    if spec.trend.size_covariate:
        f = f + size_effect(pm.Data("model_log_params_rel", inputs.model_log_params
                                    - np.log(REFERENCE_PARAMS), dims="model"),
                            time, spec.prior("size_slope").create_variable("size_slope"),
                            spec.prior("size_slope_post").create_variable("size_slope_post"))
    if spec.trend.lineage_level:
        # A developer's models share a level about the trend (their data and recipes): the
        # trend is then the average lineage's, and a family is one cluster, not n models.
        lineage = pm.Data("model_lineage", inputs.model_lineage, dims="model")
        f = f + _lineage_level(spec)[lineage]
    if spec.trend.kind == "frontier":
        if spec.trend.inefficiency_trend:
            # sigma_u(t) = sigma_u exp(psi t): sigma_u stays the scale at the changepoint, so
            # trend_intercept (the mean there) and the frontier's intercept keep their meaning.
            psi = spec.prior("inefficiency_trend").create_variable("inefficiency_trend")
            sigma_u = sigma_u * pt.exp(psi * time)
        scales = {"sigma_u": sigma_u, "sigma_v": sigma_v}
    else:
        scales = {"sigma": spec.prior("trend_noise").create_variable("trend_noise")}
    # Scores pin densities *relative to each other* far better than their common level (which
    # trades off against the protocol offsets), so the common level should move through f
    # alone, not through every latent at once: the deviation and non-centred forms do that.
    if spec.trend.latent == "centred":
        return _deviation_from_trend("log_density", f, spec, **scales)
    if spec.trend.latent == "deviation":
        deviation = _deviation_from_trend("log_density_deviation", 0.0, spec, **scales)
        return pm.Deterministic("log_density", f + deviation, dims="model")
    # Non-centred: r_m = f(t_m) + scale * z_m.
    if spec.trend.kind == "frontier" and spec.trend.inefficiency == "half_normal":
        # v - u with u half-normal is skew-normal(0, sqrt(su^2 + sv^2), -su/sv).
        scale = pt.sqrt(sigma_u**2 + sigma_v**2)
        z = pm.SkewNormal("log_density_std", mu=0.0, sigma=1.0, alpha=-sigma_u / sigma_v,
                          dims="model")
    elif spec.trend.kind == "frontier":
        # u - v with u exponential (mean su) is exponentially modified Gaussian(0, sv, su).
        scale = -sigma_v
        z = pm.ExGaussian("log_density_std", mu=0.0, sigma=1.0, nu=sigma_u / sigma_v,
                          dims="model")
    else:
        scale = scales["sigma"]
        z = pm.Normal("log_density_std", mu=0.0, sigma=1.0, dims="model")
    return pm.Deterministic("log_density", f + scale * z, dims="model")


def _minus_exgaussian(mu, sigma, nu, size):
    """mu - g with g ~ ExGaussian(0, sigma, nu): PyMC derives the shifted, negated density."""
    return mu - pm.ExGaussian.dist(mu=0.0, sigma=sigma, nu=nu, size=size)


def _deviation_from_trend(name, loc, spec: ModelSpec, sigma_u=None, sigma_v=None, sigma=None):
    """A variable distributed as loc + (r_m - f(t_m)), in log-density units (not standardised).

    ``trend.latent = "centred"`` samples r_m itself (loc = f); ``"deviation"`` samples
    r_m - f(t_m) (loc = 0), which keeps the non-centred form's one-parameter common level
    (it moves through f alone) but not its standardisation. Standardised deviations
    z_m = (r_m - f) / scale become functions of the trend's scales once hundreds of models pin
    both, and (z, scale) then forms a thin curved ridge; neither of these forms has it.
    """
    if spec.trend.kind == "mean":
        return pm.Normal(name, mu=loc, sigma=sigma, dims="model")
    if spec.trend.inefficiency == "half_normal":
        return pm.SkewNormal(name, mu=loc, sigma=pt.sqrt(sigma_u**2 + sigma_v**2),
                             alpha=-sigma_u / sigma_v, dims="model")
    return pm.CustomDist(name, loc, sigma_v, sigma_u, dist=_minus_exgaussian, dims="model")


def _benchmark_drift(spec: ModelSpec):
    """kappa_b (per year, sums to zero over benchmarks): benchmark b reads model m's log
    effective size as r_m + log N_m + kappa_b t_m. Non-centred (kappa = sd * z) by default:
    centred small scales make funnels; ``trend.drift_coordinates = "centred"`` samples kappa
    itself, for data that pin the drifts (where non-centred coordinates make the funnel)."""
    sd = spec.prior("benchmark_drift_sd").create_variable("benchmark_drift_sd")
    if spec.trend.drift_coordinates == "centred":
        std = spec.prior("benchmark_drift_std")
        if std.to_dict() != DEFAULT_PRIORS["benchmark_drift_std"].prior.to_dict():
            raise SpecError("trend.drift_coordinates = 'centred' samples kappa ~ "
                            "ZeroSumNormal(sigma=benchmark_drift_sd), the model of the default "
                            "benchmark_drift_std prior; it cannot carry another prior for it")
        return pm.ZeroSumNormal("benchmark_drift", sigma=sd, dims="benchmark")
    z = spec.prior("benchmark_drift_std").create_variable("benchmark_drift_std")
    return pm.Deterministic("benchmark_drift", sd * z, dims="benchmark")


def loading_pivot(model_log_params) -> float:
    """The log N about which benchmark loadings turn: the evaluated models' mean log size, so a
    loading changes how benchmarks spread the models, not where their middle reads."""
    return float(np.mean(model_log_params))


def _benchmark_loading(spec: ModelSpec):
    """lambda_b = exp(sd * z), z zero-sum (non-centred, as the drift): benchmark b reads model
    m's centred log effective size x as pivot + lambda_b (x - pivot)."""
    sd = spec.prior("benchmark_loading_sd").create_variable("benchmark_loading_sd")
    z = spec.prior("benchmark_loading_std").create_variable("benchmark_loading_std")
    return pm.Deterministic("benchmark_loading", pt.exp(sd * z), dims="benchmark")


def _lineage_level(spec: ModelSpec):
    """delta_l = sd * z_l, z zero-sum over lineages (non-centred, as the drift): lineage l's
    models lie delta_l above the trend in log density."""
    sd = spec.prior("lineage_level_sd").create_variable("lineage_level_sd")
    z = spec.prior("lineage_level_std").create_variable("lineage_level_std")
    return pm.Deterministic("lineage_level", sd * z, dims="lineage")


def _lineage_profile(spec: ModelSpec):
    """omega_lb = sd * z_lb, z zero-sum over benchmarks within each lineage (non-centred, as
    the drift): benchmark b reads a model of lineage l at log N_eff + omega_lb."""
    sd = spec.prior("lineage_profile_sd").create_variable("lineage_profile_sd")
    z = spec.prior("lineage_profile_std").create_variable("lineage_profile_std")
    return pm.Deterministic("lineage_profile", sd * z, dims=("lineage", "benchmark"))


def build_model(inputs: ModelInputs, spec: ModelSpec) -> pm.Model:
    """The PyMC model for ``inputs`` under ``spec`` (no sampling happens here)."""
    with pm.Model(coords=inputs.coords()) as model:
        E, A, B, alpha, beta = _loss_law_block(inputs, spec)
        if len(inputs.curve_loss) == 0 and not inputs.has_evaluated_models:
            return model  # the loss law alone: no curve rows to fit a sigmoid to
        gamma, midpoint, span, chance = _sigmoid_block(inputs, spec)
        if not inputs.has_evaluated_models:
            return model

        log_density = _trend_block(inputs, spec)
        log_params = pm.Data("model_log_params", inputs.model_log_params, dims="model")
        log_eff = pm.Deterministic("log_effective_params", log_params + log_density, dims="model")

        m = pm.Data("score_model", inputs.score_model, dims="score_row")
        b = pm.Data("score_benchmark", inputs.score_benchmark, dims="score_row")
        k = pm.Data("score_source", inputs.score_source, dims="score_row")
        x_n = log_eff[m] - inputs.centre_log_params
        if spec.trend.benchmark_loading:
            pivot = loading_pivot(inputs.model_log_params) - inputs.centre_log_params
            x_n = pivot + _benchmark_loading(spec)[b] * (x_n - pivot)
        if spec.trend.benchmark_drift:
            x_n = x_n + _benchmark_drift(spec)[b] * model["model_time"][m]
        if spec.trend.lineage_profile:
            lineage = (model["model_lineage"] if "model_lineage" in model.named_vars
                       else pm.Data("model_lineage", inputs.model_lineage, dims="model"))
            x_n = x_n + _lineage_profile(spec)[lineage[m], b]
        loss = loss_law_centred(x_n, inputs.log_d0_centred, E[b], A[b], B[b], alpha[b], beta[b])
        extrapolation = _extrapolation_tilt(spec)
        if extrapolation is not None:
            tilt, columns = extrapolation
            distance = outside_distances(x_n, inputs.log_d0_centred, design_box(inputs))
            loss = loss * pt.exp(pt.sum(distance[:, columns] * tilt[b], axis=-1))
        offset = spec.prior("protocol_offset").create_variable("protocol_offset")
        if spec.observation.score_pair_effect and len(inputs.pairs):
            pair = pm.Data("score_pair", inputs.score_pair, dims="score_row")
            shift = _pair_shift(inputs, spec, offset)[pair]
        else:
            shift = offset[b]
        if len(inputs.source_kinds) > 1:
            shift = shift + spec.prior("source_offset").create_variable("source_offset")[k]
        # (row, format): the row's score under each format's curve; the mixture picks.
        curve_logit = -gamma[:, b] * (loss[None, :] - midpoint[:, b])
        if spec.observation.protocol_scale:
            scale = spec.prior("protocol_scale").create_variable("protocol_scale")
            curve_logit = curve_logit * scale[b][None, :]
        if spec.observation.mc_drift and "mc" in inputs.formats:
            rate = spec.prior("mc_drift").create_variable("mc_drift")
            is_mc = np.array([f == "mc" for f in inputs.formats], float)
            curve_logit = curve_logit + pt.as_tensor(is_mc)[:, None] \
                * (rate * model["model_time"][m])[None, :]
        logit = (curve_logit + shift[None, :]).T
        mean = chance[b][:, None] + span[:, b].T * pm.math.sigmoid(logit)
        favourable = None
        if spec.observation.score_favourable:
            up = spec.prior("score_favourable_shift").create_variable("score_favourable_shift")
            favourable = chance[b][:, None] + span[:, b].T * pm.math.sigmoid(logit + up)
        if inputs.score_best.any():
            # The reported value is the better of two protocols: the larger curve's score
            # (its log-weight puts all mass on the first column).
            best = pm.Data("score_best", inputs.score_best.astype("int8"), dims="score_row")
            mean = pt.where(pt.eq(best, 1)[:, None], pt.max(mean, axis=1, keepdims=True), mean)
            if favourable is not None:
                favourable = pt.where(pt.eq(best, 1)[:, None],
                                      pt.max(favourable, axis=1, keepdims=True), favourable)
        log_weight = pm.Data("score_format_log_weight", inputs.score_format_log_weight,
                             dims=("score_row", "format"))
        phi = spec.prior("score_precision_eval").create_variable("score_precision_eval")
        phi_row = phi[b] if phi.ndim == 1 else pt.ones_like(loss) * phi
        if spec.observation.unstated_precision:
            # a report whose protocol is not stated scatters more (or less) than a stated one
            unstated = pm.Data("score_unstated", (inputs.score_format < 0).astype("int8"),
                               dims="score_row")
            factor = spec.prior("score_precision_unstated").create_variable(
                "score_precision_unstated")
            if factor.ndim == 1:  # dims = ["benchmark"]: each benchmark's unstated rows
                factor = factor[b]
            phi_row = phi_row * pt.switch(pt.eq(unstated, 1), factor, 1.0)
        if spec.observation.mc_precision and "mc" in inputs.formats:
            # a multiple-choice report scatters more around its (bridged) curve than a cloze one
            stated_mc = pm.Data("score_stated_mc", stated_mc_rows(inputs), dims="score_row")
            factor = spec.prior("score_precision_mc").create_variable("score_precision_mc")
            phi_row = phi_row * pt.switch(pt.eq(stated_mc, 1), factor, 1.0)
        if spec.observation.source_precision and len(inputs.source_kinds) > 1:
            # a harness run scatters less about the chain than an aggregator's transcription
            log_factor = spec.prior("score_precision_source_log").create_variable(
                "score_precision_source_log")
            factor = pm.Deterministic("score_precision_source", pt.exp(log_factor),
                                      dims="source_kind")
            phi_row = phi_row * factor[k]
        if spec.observation.size_precision:
            # larger models' reports scatter less (or more) about the chain than smaller ones'
            zeta = spec.prior("score_precision_size_slope").create_variable(
                "score_precision_size_slope")
            size = log_params[m] - loading_pivot(inputs.model_log_params)
            phi_row = phi_row * pt.exp(zeta * size)
        observed = pm.Data("score_value", inputs.score_value, dims="score_row")
        tail_models = [spec.observation.score_broad_tails, spec.observation.score_outliers,
                       spec.observation.score_precision_mixing_df is not None,
                       spec.observation.score_favourable, spec.observation.score_skewed]
        if sum(tail_models) > 1:
            raise ValueError("[observation] score_broad_tails, score_outliers, "
                             "score_precision_mixing_df, score_favourable and score_skewed "
                             "are five tail models: switch one of them on, not more")
        if spec.observation.score_precision_mixing_df is not None:
            nodes = pt.as_tensor(precision_mixing_nodes(spec.observation.score_precision_mixing_df))
            pm.CustomDist("score_obs", mean, log_weight, phi_row, nodes,
                          logp=mixed_precision_logp, random=_mixed_precision_random,
                          observed=observed, dims="score_row", signature="(f),(f),(),(k)->()")
        elif spec.observation.score_broad_tails:
            share = spec.prior("score_broad_share").create_variable("score_broad_share")
            factor = spec.prior("score_broad_factor").create_variable("score_broad_factor")
            pm.CustomDist("score_obs", mean, log_weight, phi_row, pt.gammaln(phi_row), share,
                          factor, logp=broad_score_logp, random=_broad_score_random,
                          observed=observed, dims="score_row",
                          signature="(f),(f),(),(),(),()->()")
        elif favourable is not None:
            share = spec.prior("score_favourable_share").create_variable(
                "score_favourable_share")
            pm.CustomDist("score_obs", mean, favourable, log_weight, phi_row,
                          pt.gammaln(phi_row), share, logp=favourable_score_logp,
                          random=_favourable_score_random, observed=observed, dims="score_row",
                          signature="(f),(f),(f),(),(),()->()")
        elif spec.observation.score_skewed:
            scale = spec.prior("score_skew_scale").create_variable("score_skew_scale")
            pm.CustomDist("score_obs", mean, log_weight, phi_row, scale,
                          logp=skewed_score_logp, random=_skewed_score_random,
                          observed=observed, dims="score_row", signature="(f),(f),(),()->()")
        elif spec.observation.score_outliers:
            share = spec.prior("score_outlier_share").create_variable("score_outlier_share")
            pm.CustomDist("score_obs", mean, log_weight, phi_row, pt.gammaln(phi_row), share,
                          logp=robust_score_logp, random=_robust_score_random,
                          observed=observed, dims="score_row",
                          signature="(f),(f),(),(),()->()")
        else:
            pm.CustomDist("score_obs", mean, log_weight, phi_row, pt.gammaln(phi_row),
                          logp=format_mixture_logp, random=_format_mixture_random,
                          observed=observed, dims="score_row", signature="(f),(f),(),()->()")
    return model
