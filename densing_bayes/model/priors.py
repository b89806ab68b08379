"""Every prior of the joint model: its name, its default and why.

Priors are pymc-extras ``Prior`` objects, so a spec overrides one by writing its dict form
(``dist`` / ``kwargs`` / ``dims`` / ``centered``) and a sensitivity analysis is "swap these
dicts and refit". All default priors are on *dimensionless* quantities (ratios to a data scale,
exponents, logits, slopes in e-folds per year), which is what lets one spec fit any valid data
folder without editing: the data scale enters only through the documented constants of
``densing_bayes.model.inputs`` (median loss per benchmark, centre of log N and log D).

Scale parameters that may approach zero (hyper-SDs across 5-10 benchmarks, the frontier's noise
and inefficiency scales) get boundary-avoiding Gamma priors: half-normal priors on them created
funnels and divergences in every sampler we tried (docs: densing-law-method.md, section 4).
The sensitivity analysis swaps them for the half-normal/exponential alternatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymc_extras.prior import Prior


@dataclass(frozen=True)
class PriorDoc:
    """A named prior with the sentence a statistician needs to judge it."""

    prior: Prior
    doc: str
    unit: str = ""


def _hier(mu: float, mu_sd: float, tau_alpha: float, tau_beta: float,
          centered: bool) -> Prior:
    """Partially pooled benchmark effect, centred: each benchmark's own reference runs (dozens
    of loss-law rows, hundreds of curve rows) pin it, and the non-centred form mixed 2-3x
    worse on the simulated paper design."""
    return Prior(
        "Normal",
        mu=Prior("Normal", mu=mu, sigma=mu_sd),
        sigma=Prior("Gamma", alpha=tau_alpha, beta=tau_beta),
        dims="benchmark",
        centered=centered,
    )


DEFAULT_PRIORS: dict[str, PriorDoc] = {
    # ---- loss law: L = E + A exp(-alpha x_N) + B exp(-beta x_D), x centred at the design centre
    "loss_centre_log_ratio": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5, dims="benchmark"),
        "log of (reducible + irreducible loss at the reference design's centre) / (median "
        "observed loss-law loss of the benchmark): the data pin it; the prior only sets the scale.",
    ),
    "loss_n_share": PriorDoc(
        Prior("Beta", alpha=2.0, beta=2.0, dims="benchmark"),
        "share of the reducible loss at the design centre carried by the parameter term "
        "A / (A + B); the data pin the total far better than the split (corr ~ -0.99), so the "
        "prior keeps the split away from 0 and 1.",
    ),
    "loss_irreducible_frac": PriorDoc(
        Prior("Beta", alpha=2.0, beta=2.0, dims="benchmark"),
        "irreducible loss E as a fraction of the total loss at the design centre (only with "
        "[loss_law] irreducible = true). Task bits-per-byte do not go to zero with scale.",
    ),
    "loss_log_alpha": PriorDoc(
        _hier(mu=math.log(0.3), mu_sd=0.5, tau_alpha=4.0, tau_beta=10.0, centered=True),
        "log of the parameter exponent alpha, partially pooled across benchmarks; centred on "
        "alpha = 0.3 (Chinchilla-like), 1 SD spans 0.18-0.49.",
    ),
    "loss_log_beta": PriorDoc(
        _hier(mu=math.log(0.3), mu_sd=0.5, tau_alpha=4.0, tau_beta=10.0, centered=True),
        "log of the data exponent beta, partially pooled across benchmarks (as alpha).",
    ),
    "loss_noise": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=40.0, dims="benchmark"),
        "SD of log(observed loss) around the law, per benchmark; mean 0.05 (5% loss noise and "
        "misfit); Gamma keeps it off zero.",
    ),
    # ---- sigmoid: S = d + c * logistic(-gamma (L - l)), d = chance, c = (1 - d) * ceiling
    "sigmoid_log_slope": PriorDoc(
        _hier(mu=math.log(5.0), mu_sd=1.0, tau_alpha=4.0, tau_beta=8.0, centered=True),
        "log of the dimensionless slope gamma * L_c (L_c: the benchmark's loss scale), partially "
        "pooled; gamma > 0 fixes the orientation (score falls as loss rises).",
    ),
    "sigmoid_log_midpoint": PriorDoc(
        _hier(mu=0.0, mu_sd=0.5, tau_alpha=4.0, tau_beta=8.0, centered=True),
        "log of the midpoint l / L_c, partially pooled: the loss at which a benchmark is half "
        "way between floor and ceiling, relative to its loss scale.",
    ),
    "sigmoid_ceiling": PriorDoc(
        Prior("Beta", alpha=6.0, beta=1.5, dims="benchmark"),
        "ceiling as a fraction of the room above chance (c + d <= 1); mean 0.8: label noise "
        "and ambiguous items keep real benchmarks below 100%.",
    ),
    "score_precision_ref": PriorDoc(
        Prior("LogNormal", mu=math.log(200.0), sigma=1.0, dims="benchmark"),
        "Beta precision of reference-family scores around the sigmoid (200 ~ SD 0.035 at 0.5).",
    ),
    # ---- the multiple-choice (MC) curve: same loss, options listed, answer letter scored. Used
    # when the reference data have MC curve rows (the OLMo-2 7B bridge). MC accuracy emerges
    # late and steeply (Gu et al. 2024, OLMES), so its midpoint sits at a lower loss than RC's;
    # the priors are as wide as RC's and pooled across benchmarks the same way.
    "mc_sigmoid_log_slope": PriorDoc(
        _hier(mu=math.log(5.0), mu_sd=1.0, tau_alpha=4.0, tau_beta=8.0, centered=True),
        "MC curve: log of the dimensionless slope gamma * L_c, partially pooled (as RC's).",
    ),
    "mc_sigmoid_log_midpoint": PriorDoc(
        _hier(mu=0.0, mu_sd=0.5, tau_alpha=4.0, tau_beta=8.0, centered=True),
        "MC curve: log of the midpoint l / L_c, partially pooled (as RC's).",
    ),
    "mc_sigmoid_ceiling": PriorDoc(
        Prior("Beta", alpha=6.0, beta=1.5, dims="benchmark"),
        "MC curve: ceiling as a fraction of the room above chance (as RC's).",
    ),
    "mc_score_precision_ref": PriorDoc(
        Prior("LogNormal", mu=math.log(200.0), sigma=1.0, dims="benchmark"),
        "MC curve: Beta precision of reference-family MC scores around their sigmoid.",
    ),
    "score_precision_eval": PriorDoc(
        Prior("LogNormal", mu=math.log(100.0), sigma=1.0),
        "Beta precision of reported scores around the chain's prediction (100 ~ SD 0.05 at "
        "0.5): the scatter of a (model, benchmark) measurement, harness noise and the model's "
        "own strength on the benchmark. One shared value unless a spec says otherwise; the "
        "bundled default spec takes it per benchmark (dims = ['benchmark']) together with "
        "[observation] protocol_scale: alone, a precision per benchmark bent the shared curves "
        "away from the reference family (held-out 7B 29 of 40 inside); with the scale it "
        "predicts unseen models better by 98 ELPD and keeps the curves (docs/model.md).",
    ),
    "score_broad_share": PriorDoc(
        Prior("Beta", alpha=2.0, beta=8.0),
        "with [observation] score_broad_tails: share of reported scores from the broad "
        "component; mean 0.2, 90% in [0.04, 0.45].",
    ),
    "score_broad_factor": PriorDoc(
        Prior("Beta", alpha=2.0, beta=6.0),
        "with [observation] score_broad_tails: the broad component's precision as a fraction "
        "of the narrow one's; mean 0.25 (SD about twice as large), kept below 1 so that the two "
        "components cannot swap.",
    ),
    "score_favourable_share": PriorDoc(
        Prior("Beta", alpha=2.0, beta=18.0),
        "with [observation] score_favourable: share of reported scores from a favourable "
        "protocol; mean 0.1, 90% in [0.02, 0.22]. The reference run's LOO-PIT has about 2.5% "
        "of scores above their 99% quantile where 1% are expected; the prior allows a few "
        "times that, and keeps the share off 0 and 1, where the mixture would lose a component.",
    ),
    "score_favourable_shift": PriorDoc(
        Prior("Gamma", alpha=3.0, beta=4.0),
        "with [observation] score_favourable: how far up (logit) a favourable protocol moves "
        "a score; mean 0.75, 90% in [0.2, 1.6] (about +0.05 to +0.35 at a score of 0.6). "
        "Gamma keeps it off zero: at zero the two components coincide and their share is "
        "unidentified.",
        "logit",
    ),
    "score_skew_scale": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=5.0),
        "with [observation] score_skewed: mean of the favourable-protocol shift of a "
        "reported score's logit (the exponential part of the error); mean 0.4, 90% in "
        "[0.07, 0.95]. At 0.5 one score in 55 is shifted more than 2 logits above its protocol's typical "
        "value, about the excess the reference run's LOO-PIT shows above its 99% quantile. "
        "Gamma(2, .) keeps it off 0, where the error is Gaussian and the formula unstable.",
        "logit",
    ),
    "score_precision_unstated": PriorDoc(
        Prior("LogNormal", mu=0.0, sigma=1.0),
        "with [observation] unstated_precision: factor on the precision of reported scores "
        "whose format is not stated ('unknown', 'best'); 1 = as precise as stated rows, 90% "
        "prior mass in [0.19, 5.2]. Given dims = ['benchmark'], one factor per benchmark "
        "(each benchmark's transcriptions may mix other protocols).",
    ),
    "score_precision_mc": PriorDoc(
        Prior("LogNormal", mu=0.0, sigma=1.0),
        "with [observation] mc_precision: factor on the precision of reported scores stated "
        "as multiple-choice, against stated cloze rows; 1 = as precise, 90% prior mass in "
        "[0.19, 5.2] (the same weakly informative prior as the unstated rows' factor).",
    ),
    "score_precision_size_slope": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5),
        "with [observation] size_precision: change of the reported scores' log precision per "
        "e-fold of the model's actual size, about the evaluated models' mean log size. 0 = "
        "equally precise at every size; at 0.5 (one SD) the precision differs 8-fold between "
        "the mean size and 60 times it. Centred at 0: the direction is the data's to say.",
        "per e-fold of N",
    ),
    "score_precision_source_log": PriorDoc(
        Prior("ZeroSumNormal", sigma=0.7, dims="source_kind"),
        "with [observation] source_precision: log factor on the reported scores' precision per "
        "kind of source (own, other developer, aggregator, harness, mixed), summing to zero "
        "over the kinds so that it cannot move the benchmarks' precisions as a whole. sigma 0.7: "
        "over five kinds each factor's log has marginal SD 0.63 (90% prior mass of a factor in "
        "[0.36, 2.8]) and two kinds' log ratio SD 0.99 (a ratio of e at one SD).",
        "log factor",
    ),
    "score_pair_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=5.0, dims="benchmark"),
        "SD (logit), per benchmark, of the (model, benchmark) effect: how far one model's score "
        "on one benchmark sits from what its effective size predicts, shared by every report "
        "of the pair (with [observation] score_pair_effect). Per benchmark because benchmarks "
        "differ in how closely they track a model's general capability (one shared SD left "
        "HellaSwag's and PIQA's LOO-PIT too central, SD 0.21 against 0.29). Mean 0.4; Gamma "
        "keeps it off zero.",
        "logit",
    ),
    "score_outlier_share": PriorDoc(
        Prior("Beta", alpha=1.0, beta=19.0),
        "share of reported scores that are outliers, uniform on (0, 1) (with [observation] "
        "score_outliers); mean 5%: rare, but one wrong transcription should not need the "
        "curve to bend.",
    ),
    "curve_run_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=10.0, dims="format"),
        "SD (logit), per scoring format, of the effect of one reference run on one benchmark, "
        "shared by the run's checkpoints (with [observation] curve_run_effect); mean 0.2: runs "
        "of one family differ by seeds and data order, far less than families do.",
        "logit",
    ),
    "protocol_offset": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.3, dims="benchmark"),
        "residual logit-scale offset of reported scores from the reference harness *within a "
        "scoring format* (shots, prompt wording, normalisation), per benchmark; with pair "
        "effects, the mean of the benchmark's (model, benchmark) shifts. The format "
        "itself (cloze vs multiple choice) is carried by separate curves, not by this offset. "
        "Scale from data: on the bundled scores, distinct reports of the same (model, "
        "benchmark, format) differ by SD 0.48 logit, i.e. 0.34 per report "
        "(`densing_bayes.data.derive.harness_spread`); a benchmark-wide offset is a mean of "
        "such shifts, so 0.3 is generous. The sensitivity analysis refits at 0.15 and 0.6.",
    ),
    "protocol_scale": PriorDoc(
        Prior("LogNormal", mu=0.0, sigma=0.2, dims="benchmark"),
        "factor on the logit slope of reported scores relative to the reference curve, per "
        "benchmark (with [observation] protocol_scale): 1 means a harness only shifts the "
        "curve; SD 0.2 on the log scale puts 90% of benchmarks within [0.72, 1.39].",
    ),
    "source_offset": PriorDoc(
        Prior("ZeroSumNormal", sigma=0.25, dims="source_kind"),
        "logit-scale effect of who reported a score (own report, other developer, aggregator, "
        "harness, third party); sums to zero so it cannot move the overall level.",
    ),
    # ---- density trend: log rho = f(t) - u + v, t in years since the changepoint
    "trend_intercept": PriorDoc(
        Prior("Normal", mu=0.0, sigma=2.0),
        "mean log density of models released at the changepoint date (0 = the reference "
        "family's density); the frontier lies sigma_u sqrt(2/pi) above it "
        "(`frontier_intercept`).",
        "log density",
    ),
    "slope": PriorDoc(
        Prior("Normal", mu=0.0, sigma=2.5),
        "frontier slope without a changepoint; 2.5 e-folds per year ~ doubling every 101 days, "
        "centred at no growth.",
        "1/year",
    ),
    "slope_pre": PriorDoc(
        Prior("Normal", mu=0.0, sigma=2.5),
        "frontier slope before the changepoint (as `slope`).",
        "1/year",
    ),
    "slope_post": PriorDoc(
        Prior("Normal", mu=0.0, sigma=2.5),
        "frontier slope after the changepoint (as `slope`).",
        "1/year",
    ),
    "changepoint_shift": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.25),
        "with changepoint = 'unknown': the changepoint's offset from the configured date; "
        "SD 3 months.",
        "years",
    ),
    "frontier_inefficiency": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=2.0),
        "scale sigma_u of the inefficiency u >= 0 (distance below the frontier: the "
        "half-normal's scale, or the exponential's mean); mean 1 e-fold.",
        "log density",
    ),
    "frontier_noise": PriorDoc(
        Prior("Gamma", alpha=4.0, beta=16.0),
        "SD sigma_v of the symmetric noise v around the frontier; mean 0.25, P(< 0.05) ~ 1%: "
        "as sigma_v -> 0 the skew-normal tends to a half-normal with a hard edge at the "
        "frontier, where NUTS diverges (3 of 4 divergences in a test fit sat at sigma_v < 0.04 "
        "under Gamma(2, 8)).",
        "log density",
    ),
    "benchmark_drift_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=4.0),
        "with [trend] benchmark_drift: SD across benchmarks of their drift rates kappa_b; mean "
        "0.5 e-folds per year (about a third of the post-changepoint slope), 90% in "
        "[0.09, 1.19]; "
        "boundary-avoiding, like the other scales.",
        "1/year",
    ),
    "benchmark_drift_std": PriorDoc(
        Prior("ZeroSumNormal", sigma=1.0, dims="benchmark"),
        "with [trend] benchmark_drift: standardised drift rates kappa_b / sd, summing to zero "
        "over benchmarks so that the drifts cannot move the common trend (non-centred: "
        "kappa = sd * z).",
    ),
    "benchmark_loading_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=10.0),
        "with [trend] benchmark_loading: SD across benchmarks of log lambda_b, the log of "
        "their loadings on log effective size; mean 0.2, 90% in [0.04, 0.47]. A loading of "
        "1.2 moves a model 3 e-folds from the pivot (a 70B or a 0.5B model) by 0.6 e-folds "
        "on that benchmark, about the spread the high ARC / CSQA reports of the largest "
        "models show; boundary-avoiding, like the other scales.",
        "log loading",
    ),
    "benchmark_loading_std": PriorDoc(
        Prior("ZeroSumNormal", sigma=1.0, dims="benchmark"),
        "with [trend] benchmark_loading: standardised log loadings log lambda_b / sd, summing "
        "to zero over benchmarks so that the loadings cannot rescale every effective size at "
        "once (which the latent densities would absorb) (non-centred: log lambda = sd * z).",
    ),
    "lineage_profile_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=4.0),
        "with [trend] lineage_profile: SD of the lineages' per-benchmark offsets on log "
        "effective size; mean 0.5 e-folds (a developer's models read 1.6 times larger or "
        "smaller on one benchmark than on their average), 90% in [0.09, 1.19], as the drift "
        "rates' SD; boundary-avoiding, like the other scales.",
        "log N",
    ),
    "lineage_profile_std": PriorDoc(
        Prior("ZeroSumNormal", sigma=1.0, dims=("lineage", "benchmark")),
        "with [trend] lineage_profile: standardised offsets omega_lb / sd, summing to zero "
        "over benchmarks within each lineage, so that a profile cannot move a lineage's mean "
        "reading (its latent densities carry that) (non-centred: omega = sd * z).",
    ),
    "lineage_level_sd": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=4.0),
        "with [trend] lineage_level: SD of the lineages' levels about the trend in log "
        "density; mean 0.5 e-folds (a developer's models 1.6 times denser or sparser than "
        "the trend at their dates), 90% in [0.09, 1.19], about the size of the models' own "
        "spread about the trend; boundary-avoiding, like the other scales, so that a fit "
        "with few lineages cannot collapse it onto 0.",
        "log density",
    ),
    "lineage_level_std": PriorDoc(
        Prior("ZeroSumNormal", sigma=1.0, dims="lineage"),
        "with [trend] lineage_level: standardised levels delta_l / sd, summing to zero over "
        "lineages so that the trend's intercept keeps its meaning (the average lineage's "
        "level) (non-centred: delta = sd * z).",
    ),
    "mc_drift": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5),
        "with [observation] mc_drift: change per year of the logit of multiple-choice scores "
        "at a given task loss (0: MC skill follows the loss, the default model); 0.5 per "
        "year would move an MC score from 0.5 to 0.73 of its span in two years, about what "
        "later models' MMLU reports show above the earlier fit's chain.",
        "logit per year",
    ),
    "size_slope": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5),
        "with [trend] size_covariate: change of log density per e-fold of size, x = ln(N / "
        "10B); 0 = no size effect (the default model); 0.5 would make a 100x larger model "
        "2.3 e-folds denser, far more than the posterior of the size-free model's deviations "
        "admits.",
        "log density per e-fold of N",
    ),
    "size_slope_post": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5),
        "with [trend] size_covariate: change of the slope after the changepoint per e-fold of "
        "size; 0.5 per year would let a 100x larger model grow 2.3 e-folds per year faster, "
        "beyond the post-changepoint slope itself.",
        "1/year per e-fold of N",
    ),
    "inefficiency_trend": PriorDoc(
        Prior("Normal", mu=0.0, sigma=0.5),
        "with [trend] inefficiency_trend: psi, the change of log sigma_u per year, sigma_u(t) = "
        "sigma_u exp(psi t); 0 = a constant spread below the frontier (the default model). "
        "SD 0.5 lets the spread grow or shrink by a factor e (one SD) over the two years on "
        "either side of the changepoint that hold most models; a factor e^2 per two years "
        "would already be 2 SD out.",
        "1/year (log sigma_u)",
    ),
    "trend_noise": PriorDoc(
        Prior("Gamma", alpha=2.0, beta=2.0),
        "with trend kind 'mean': SD of log density around the mean trend; mean 1 e-fold.",
        "log density",
    ),
}


def default_priors() -> dict[str, Prior]:
    """A fresh copy of the default priors, keyed by name."""
    return {name: Prior.from_dict(entry.prior.to_dict()) for name, entry in DEFAULT_PRIORS.items()}
