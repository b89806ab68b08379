"""Model specifications: the TOML files in ``models/`` that say what to fit and how.

A spec is everything a statistician needs to reproduce a fit besides the data: structural
choices (irreducible loss, frontier vs mean trend, changepoint variant), every prior, the
sampler and its seed, and named prior variants for the sensitivity analysis. It is validated
with pydantic (all problems reported at once), resolved against the defaults, saved beside every
run and hashed, so that a run folder can refuse to load under a different configuration.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)
from pymc_extras.prior import Prior

from densing_bayes import resources
from densing_bayes.data.sniff import did_you_mean
from densing_bayes.model.priors import DEFAULT_PRIORS


class SpecError(ValueError):
    """A spec file that cannot be used, with every problem in the message."""


#: A spec or variant name: it becomes a folder name (reports/<name>), so no separators, no
#: leading dot, no "..", and nothing that an absolute path could start with.
_SAFE_NAME = re.compile(r"\w[\w .:+=@-]{0,99}")
#: Parameters that must be > 0 wherever they appear, and per distribution the shape ones.
_POSITIVE_KWARGS = {"sigma", "tau", "lam"}
_POSITIVE_SHAPES = {"Beta": {"alpha", "beta"}, "Gamma": {"alpha", "beta", "mu"},
                    "InverseGamma": {"alpha", "beta"}, "Kumaraswamy": {"a", "b"},
                    "Weibull": {"alpha", "beta"}, "LogNormal": set(), "Exponential": {"scale"},
                    "HalfNormal": set(), "HalfCauchy": {"beta"}, "Cauchy": {"beta"},
                    "Laplace": {"b"}, "StudentT": {"nu"}, "HalfStudentT": {"nu"}}


def check_name(name: str, what: str = "spec name") -> str:
    """``name`` if it is safe as one folder name, else a SpecError saying what is allowed."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise SpecError(f"{what} {name!r} cannot be used as a folder name: use letters, digits, "
                        "spaces and _ . : + = @ - (no '/', '\\', '..' or leading dot)")
    return name


class BackendUnavailableError(SpecError):
    """The spec's sampler backend needs packages that are not installed here."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Section):
    folder: str = Field("default", description="bundled data folder name or a path")
    d0_tokens: float = Field(1.0e12, gt=0, description="data budget D0 of effective sizes")
    exclude_holdout: bool = True
    score_rows: Literal["pair_mean", "distinct", "all", "preferred"] = Field(
        "pair_mean", description="'pair_mean': one measurement per (model, benchmark, "
        "format), the mean of its distinct reported values (repeated reports of one pair are "
        "not independent evidence about the model); 'distinct': one row per distinct reported "
        "value of a (model, "
        "benchmark, format): exact transcriptions of one number (an aggregator copying a "
        "developer's report) collapse into one row that lists all its sources; 'all': every "
        "reported row, copies included, as independent evidence; 'preferred': one row per "
        "(model, benchmark) by the documented selection rule")
    rounded_copies: bool = Field(
        False, description="with 'distinct' or 'pair_mean' rows: an unstated-format report "
        "that equals a stated report of the same (model, benchmark) once that report is rounded "
        "to the unstated one's reported digits (|difference| <= half a unit of its last digit, "
        "read from the `score_reported` column) is a transcription of it at lower precision, "
        "and collapses into it like an exact copy. Without `score_reported` only exact copies "
        "collapse. On the bundled data 35 unstated reports are such transcriptions "
        "(docs/model.md, 2026-12-05)")
    exclude_flags: tuple[str, ...] = Field(
        (), description="drop evaluated models carrying any of these flags (e.g. chat_only)")
    benchmarks: tuple[str, ...] = Field(
        (), description="restrict to these benchmarks (empty: all with reference curves)")
    max_curve_rows: int = Field(
        300, ge=0, description="at most this many loss/score rows per benchmark enter the "
        "sigmoid's likelihood, evenly spaced in loss order (0: all). Intermediate checkpoints "
        "of one run are strongly autocorrelated; thousands of them would act as independent "
        "evidence and dominate the fit (and its cost)")


class LossLawSettings(_Section):
    irreducible: bool = Field(True, description="add an irreducible loss E per benchmark")
    extrapolation_sd: float = Field(
        0.016, ge=0, description="SD, per unit of log distance beyond the ladder's token range, "
        "of a random tilt of each benchmark's log loss law: the law's error where it is "
        "extrapolated in D (D0 = 1T is 1.6x the ladder's largest D; the OLMo-2 7B anchor 6x). "
        "0.016 is calibrated by leave-largest-size-out on the ladder from the posterior of the "
        "law on the smaller sizes (analysis/extrapolation.py, reports/extrapolation/; 0.035 "
        "before 2026-12-03, from a degenerate MAP); 0 switches the term off")
    extrapolation_sd_params: float = Field(
        0.0, ge=0, description="the same tilt in the log N directions (below and above the "
        "ladder's sizes). Off by default: at 0.035 the latent densities of models below the "
        "ladder became bimodal (R-hat 2.08, docs/model.md), a trade-off of the common level "
        "against the tilts that the scores cannot break")
    extrapolation_sd_params_above: float | None = Field(
        None, ge=0, description="the tilt's SD above the ladder's largest N only (None: "
        "``extrapolation_sd_params``). The law read for models larger than the ladder's "
        "largest run: leave-largest-size-out on the ladder calibrates this direction "
        "(0.013-0.016 per log unit, analysis/extrapolation.py)")


#: Terms added after runs were saved without them: (section, switch) -> the term's prior.
OPT_IN_TERMS = {("observation", "protocol_scale"): ("protocol_scale",),
                ("observation", "unstated_precision"): ("score_precision_unstated",),
                ("observation", "mc_precision"): ("score_precision_mc",),
                ("observation", "size_precision"): ("score_precision_size_slope",),
                ("observation", "source_precision"): ("score_precision_source_log",),
                ("observation", "score_broad_tails"): ("score_broad_share", "score_broad_factor"),
                ("observation", "score_favourable"): ("score_favourable_share",
                                                      "score_favourable_shift"),
                ("observation", "score_skewed"): ("score_skew_scale",),
                ("trend", "benchmark_drift"): ("benchmark_drift_sd", "benchmark_drift_std"),
                ("trend", "benchmark_loading"): ("benchmark_loading_sd", "benchmark_loading_std"),
                ("trend", "lineage_profile"): ("lineage_profile_sd", "lineage_profile_std"),
                ("trend", "lineage_level"): ("lineage_level_sd", "lineage_level_std"),
                ("observation", "mc_drift"): ("mc_drift",),
                ("trend", "size_covariate"): ("size_slope", "size_slope_post"),
                ("trend", "inefficiency_trend"): ("inefficiency_trend",)}


class ObservationSettings(_Section):
    """How observed scores scatter around the chain's prediction (issue 18: calibration)."""

    score_pair_effect: bool = Field(
        False, description="a logit-scale shift per (model, benchmark) shared by every report "
        "of that pair, centred on the benchmark's protocol offset (prior `score_pair_sd`): a "
        "model's own strength or weakness on one benchmark is one deviation, however many "
        "sources report it. For 'distinct' rows; with 'pair_mean' rows (the default) each pair "
        "is already one measurement. LOO then integrates the effect out (analysis/pair_loo.py)")
    mc_drift: bool = Field(
        False, description="multiple-choice scores drift on the logit scale at a rate omega "
        "per year (prior `mc_drift`) against the task loss: reading options and answering with "
        "a letter is a skill newer models are trained for, so at the same effective size a "
        "later model's MC score sits higher. Unlike benchmark drift (on the size axis) it is "
        "not capped by the loss law's floor. Leave-future-out refits put later models' MC "
        "reports above anything the earlier fit's chain reaches (docs/model.md, 'Out of "
        "sample')")
    score_outliers: bool = Field(
        False, description="each reported score is, with probability `score_outlier_share`, an "
        "outlier drawn uniformly on (0, 1) (a mis-transcription, another benchmark version): "
        "tails that tolerate an outlying report without bending the curve")
    curve_run_effect: bool = Field(
        False, description="a logit-scale effect per (reference run, benchmark, format) shared "
        "by the run's checkpoints (prior `curve_run_sd`; formats with at least 3 runs): the "
        "checkpoints of one run are not independent draws around the family's curve, so the "
        "curve's uncertainty reflects the number of runs, not of checkpoints. Off by default: "
        "it slowed mixing below the thresholds without improving the held-out check "
        "(docs/model.md)")
    protocol_scale: bool = Field(
        False, description="a per-benchmark factor on the slope of reported scores' logit "
        "(prior `protocol_scale`, 1 = the reference curve's shape, only shifted): a harness "
        "that compresses or stretches the curve rather than shifting it. Off by default; the "
        "misspecification study (`densing-bayes misspec`) simulates worlds that have it and "
        "measures what leaving it out does to the doubling time's interval")
    score_broad_tails: bool = Field(
        False, description="each reported score comes, with probability `score_broad_share`, "
        "from a broader Beta around the same prediction (precision times "
        "`score_broad_factor` < 1): heavier tails than one Beta, for reports that sit far from "
        "the chain (another benchmark version, a transcription slip) without the uniform "
        "outlier component's second explanation of a model (score_outliers)")
    score_favourable: bool = Field(
        False, description="each reported score comes, with probability "
        "`score_favourable_share`, from a favourable protocol: its logit is shifted *up* by "
        "`score_favourable_shift` > 0 (more shots, a tuned prompt, chain of thought, a "
        "developer's best run). One-sided, unlike the outlier and broad-tail mixtures: the "
        "reference run's LOO-PIT leaves its band above only, with 18 of 700 scores above their "
        "99% quantile and 10 below 0.01 (docs/model.md)")
    score_skewed: bool = Field(
        False, description="each reported score's logit is the chain's prediction plus "
        "symmetric noise (the logit-normal with the Beta's logit mean and variance) plus a "
        "non-negative favourable-protocol shift w ~ Exponential(mean `score_skew_scale`), "
        "centred so the error's mean stays 0: an exponentially modified Gaussian on the "
        "logit scale. Its upper tail is exponential, and unlike the two-component mixtures "
        "its density is log-concave in the prediction, so one report far above a model's "
        "others cannot give that model's density a second mode (docs/model.md)")
    unstated_precision: bool = Field(
        False, description="rows whose scoring format the source does not state ('unknown', "
        "'best') get their own factor on the Beta precision (prior "
        "`score_precision_unstated`): an aggregator's transcription or an unstated protocol "
        "scatters more around the chain than a stated one, and one precision for both makes "
        "the stated rows' intervals too wide and the others' too narrow")
    mc_precision: bool = Field(
        False, description="rows stated as multiple-choice get their own factor on the Beta "
        "precision (prior `score_precision_mc`): their curve is bridged from one 7B run, so "
        "they scatter more around the chain than cloze rows, whose curve the whole ladder "
        "fits; one precision for both made the cloze rows' LOO-PIT too wide (20 of 99 grid "
        "points outside) and the multiple-choice rows' too narrow. Off: fitted, it lets the MC "
        "reports go (factor 0.05) and predicts them worse, -84 ELPD (docs/model.md)")
    size_precision: bool = Field(
        False, description="the reported scores' Beta precision changes with the model's "
        "actual size: phi times exp(zeta (log N_m - mean log N)), zeta per e-fold of N (prior "
        "`score_precision_size_slope`). The reference run's LOO-PIT by size puts 18% of the "
        "models under 3B in its 5% tails and 61-66% of those of 3-10B and 30-100B in its "
        "central half: one precision at every size is too high for the small models and "
        "too low for the large ones (docs/model.md)")
    source_precision: bool = Field(
        False, description="the reported scores' Beta precision differs by the kind of source "
        "that reported them: phi times exp(lambda_k), lambda_k zero-sum over the source kinds "
        "(prior `score_precision_source_log`), so phi_b stays the kinds' geometric mean. The "
        "reference run's LOO-PIT puts 70% of the harness runs' measurements in its central "
        "half and 42% of the aggregators' (docs/model.md, 2026-12-05): a harness evaluates a "
        "model the way the reference curves were measured, an aggregator's number carries "
        "every protocol difference")
    score_precision_mixing_df: float | None = Field(
        None, gt=0, description="heavier tails than one Beta without a second mode of "
        "explanation: each score's precision is phi times w, w equally likely to be each of "
        "the K mid-quantiles of Gamma(nu/2, rate nu/2) (mean 1; K = "
        "build.PRECISION_MIXING_NODES), summed out in the likelihood. The Beta analogue of a "
        "Student-t's scale mixture, with nu this value; None: one precision (the Beta). The "
        "reference run's LOO-PIT leaves its band with 19 of 700 scores above their 99% "
        "quantile (docs/model.md)")


class TrendSettings(_Section):
    kind: Literal["frontier", "mean"] = "frontier"
    inefficiency: Literal["half_normal", "exponential"] = Field(
        "half_normal", description="distribution of the frontier's inefficiency u >= 0 (the "
        "stochastic-frontier literature's two classic choices; both integrate out in closed form)")
    changepoint: Literal["none", "fixed", "unknown"] = "fixed"
    changepoint_date: dt.date = dt.date(2022, 11, 30)
    latent: Literal["non_centred", "deviation", "centred"] = Field(
        "deviation", description="coordinates in which the per-model latent log densities "
        "r_m are sampled: 'deviation' (r_m - f(t_m) in log-density units), 'non_centred' "
        "(standardised deviations (r_m - f(t_m)) / scale) or 'centred' (r_m itself). The same "
        "model and posterior; only the sampler's geometry differs. 'deviation' is the default "
        "because it was the only one that mixed at every size measured (README, Performance)")
    benchmark_drift: bool = Field(
        False, description="each benchmark's effective sizes drift from the models' common "
        "one at their own rate kappa_b per year (sum to zero over benchmarks; priors "
        "`benchmark_drift_sd`, `benchmark_drift_std`): newer models gain more on some "
        "benchmarks (MMLU, ARC) than the reference family's loss predicts and less on others. "
        "The trend's slopes are then the growth of the benchmarks' mean log effective size "
        "(docs/model.md, 'Observation model')")
    benchmark_loading: bool = Field(
        False, description="each benchmark reads the models' log effective sizes with its own "
        "loading lambda_b around a pivot (the evaluated models' mean log N): log N_b = pivot + "
        "lambda_b (log N_eff - pivot), with log lambda_b summing to zero over benchmarks "
        "(priors `benchmark_loading_sd`, `benchmark_loading_std`). A (size x benchmark) "
        "term: the largest models may score higher on some benchmarks (ARC, CSQA, Winogrande) "
        "than one effective size and the reference family's exponent predict. The loadings "
        "do not move the common level or the trend (docs/model.md, 'Observation model')")
    lineage_profile: bool = Field(
        False, description="each lineage (a developer's series of model families, "
        "data/lineage.py) reads each benchmark at its own offset omega_lb on log effective "
        "size: benchmark b reads model m of lineage l as log N_eff + omega_lb, with omega "
        "summing to zero over benchmarks within a lineage (priors `lineage_profile_sd`, "
        "`lineage_profile_std`). A (developer x benchmark) term for training-data choices "
        "shared across a developer's versions: the reference run's multiple-choice MMLU reports "
        "sit above their LOO intervals for Qwen and Baichuan models and below for Falcon, MPT, "
        "OPT and Llama ones. Zero-sum, so it moves no lineage's mean reading and no trend "
        "(docs/model.md, 'Observation model')")
    lineage_level: bool = Field(
        False, description="each lineage (a developer's series of model families, "
        "data/lineage.py) lies above or below the trend by its own level delta_l on log "
        "density, shared by all its models: r_m = f(t_m) + delta_l(m) + deviation_m, delta "
        "summing to zero over lineages (priors `lineage_level_sd`, `lineage_level_std`). "
        "Models of one developer share training data and recipes, so they are not "
        "independent draws about the trend. Off: tried because leaving Qwen or Llama out "
        "moved the doubling time beyond its interval, it found levels (SD 0.46) but near 0 "
        "for those two, and left the family check failing (docs/model.md, 'Which families "
        "set the slope, and a density level per lineage')")
    drift_coordinates: Literal["non_centred", "centred"] = Field(
        "non_centred", description="with benchmark_drift: the coordinates in which the drift "
        "rates are sampled, 'non_centred' (kappa = sd * z, z ~ `benchmark_drift_std`) or "
        "'centred' (kappa ~ ZeroSumNormal(sd) itself; needs `benchmark_drift_std`'s default "
        "prior, of which it is the same model). The same posterior; only the sampler's "
        "geometry differs, and which suits depends on how well the data pin the drifts "
        "(docs/model.md, 'Sensitivity and calibration')")
    size_covariate: bool = Field(
        False, description="the trend depends on model size: f(t, N) = f(t) + x (theta + "
        "theta_post max(t, 0)) with x = ln(N / 10B) and t in years since changepoint_date (the "
        "nominal date, also when the changepoint is unknown) (priors `size_slope`, "
        "`size_slope_post`): larger models may sit at another density, and grow at another "
        "rate after the changepoint. The slopes (and the doubling time) are then those of a "
        "10B-parameter model; at size N the slope after is slope_post + theta_post x. "
        "Leave-future-out refits showed later large models above and small ones below their "
        "intervals (docs/model.md, 'Out of sample')")
    inefficiency_trend: bool = Field(
        False, description="the frontier's inefficiency scale changes over time: sigma_u(t) = "
        "sigma_u exp(psi t), t in years since changepoint_date (prior `inefficiency_trend` on "
        "psi; frontier trends only). The slopes stay those of the frontier; the mean log "
        "density then lies sigma_u(t) sqrt(2/pi) below it and grows at slope - psi sigma_u(t) "
        "sqrt(2/pi), so a widening spread makes the frontier outgrow the mean (issue 19: the "
        "frontier and mean slopes coincide only while the spread is constant)")

    @model_validator(mode="after")
    def _inefficiency_trend_needs_a_frontier(self) -> TrendSettings:
        if self.inefficiency_trend and self.kind != "frontier":
            raise ValueError("inefficiency_trend needs kind = 'frontier': a mean trend has no "
                             "inefficiency")
        return self


class SamplerSettings(_Section):
    #: NUTS implementation; ``densing-bayes bench`` measures them side by side (README
    #: "Performance"). "numpyro" needs the optional extra ``densing_bayes[numpyro]``.
    backend: Literal["nutpie", "pymc", "numpyro"] = "nutpie"
    draws: int = Field(1000, gt=0)
    tune: int = Field(1000, gt=0)
    chains: int = Field(4, gt=0)
    target_accept: float = Field(0.9, gt=0, lt=1)
    seed: int = Field(20241205, ge=0)
    #: nutpie's mass matrix: "diag" (diagonal, gradient-based adaptation) or "low_rank" (adds a
    #: low-rank correction that captures correlated directions such as the frontier's
    #: sigma_u-sigma_v ridge), or "dense": sample in coordinates whitened by the stored
    #: posterior covariance of an earlier fit of the same model and data (when there is none:
    #: of a short diagonal pilot with `pilot_draws`, else "diag"; the fit's covariance is
    #: stored for the next fit; docs/performance.md). The PyMC
    #: backend always adapts a diagonal one.
    mass_matrix: Literal["diag", "low_rank", "dense"] = "diag"
    pilot_draws: int = Field(
        0, ge=0, description="with mass_matrix = 'dense' and no stored covariance for this "
        "model and data: draws per chain of a diagonal-metric pilot (after `tune` steps) whose "
        "covariance whitens the fit (raised to 2 draws per coordinate over the chains); 0: the "
        "whole fit on the diagonal metric instead")


class Thresholds(_Section):
    """Diagnostic thresholds a fit must meet (issue: geometry is a requirement)."""

    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    min_bfmi: float = 0.3


class ModelSpec(_Section):
    name: str
    description: str = ""
    data: DataSettings = DataSettings()
    loss_law: LossLawSettings = LossLawSettings()
    observation: ObservationSettings = ObservationSettings()
    trend: TrendSettings = TrendSettings()
    sampler: SamplerSettings = SamplerSettings()
    diagnostics: Thresholds = Thresholds()
    ci_prob: float = Field(0.9, gt=0, lt=1, description="mass of every reported interval")
    priors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named overrides for the sensitivity analysis")

    @field_validator("priors")
    @classmethod
    def _known_priors(cls, priors: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(priors) - set(DEFAULT_PRIORS))
        if unknown:
            hints = "".join(did_you_mean(name, DEFAULT_PRIORS) for name in unknown)
            raise ValueError(f"unknown prior(s) {unknown}{hints}; known: {sorted(DEFAULT_PRIORS)}")
        for name, entry in priors.items():
            try:
                prior = Prior.from_dict(_prior_dict(entry))
            except Exception as exc:  # pymc-extras raises several types
                raise ValueError(f"prior '{name}': {exc}") from exc
            problem = _role_problem(name, prior)
            if problem:
                raise ValueError(f"prior '{name}': {problem}")
        return priors

    @field_validator("variants")
    @classmethod
    def _safe_variant_names(cls, variants: dict[str, dict[str, Any]]) -> dict:
        for name in variants:
            try:
                check_name(name, "variant name")
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return variants

    # ---------------------------------------------------------------- resolved views
    def prior(self, name: str) -> Prior:
        """The prior in force for ``name``: the spec's override, else the default."""
        if name in self.priors:
            return Prior.from_dict(_prior_dict(self.priors[name]))
        return Prior.from_dict(DEFAULT_PRIORS[name].prior.to_dict())

    def resolved(self) -> ModelSpec:
        """The same spec with every default written out (what is saved beside a run)."""
        priors = {name: _jsonable(self.prior(name).to_dict()) for name in DEFAULT_PRIORS}
        return self.model_copy(update={"priors": priors})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def _hashed(self) -> dict[str, Any]:
        """The resolved spec as hashed: an opt-in term that is off (``OPT_IN_TERMS``) leaves
        the model unchanged, so neither its switch nor its prior enters the hash (runs saved
        before the term existed keep their hash)."""
        content = self.resolved().to_dict()
        if content["loss_law"].get("extrapolation_sd_params_above") is None:
            content["loss_law"].pop("extrapolation_sd_params_above", None)  # as before it existed
        if content["observation"].get("score_precision_mixing_df") is None:
            content["observation"].pop("score_precision_mixing_df", None)  # off: as before
        if content["trend"].get("drift_coordinates") == "non_centred":
            content["trend"].pop("drift_coordinates")  # as before the choice existed
        if not content["data"].get("rounded_copies"):
            content["data"].pop("rounded_copies", None)  # off: as before it existed
        if not content["sampler"].get("pilot_draws"):
            content["sampler"].pop("pilot_draws", None)  # no pilot: as before it existed
        for (section, flag), priors in OPT_IN_TERMS.items():
            if not content[section].get(flag):
                content[section].pop(flag, None)
                for prior in priors:
                    content["priors"].pop(prior, None)
        return content

    def config_hash(self) -> str:
        """SHA-256 of the resolved spec, canonical JSON: same hash <=> same configuration."""
        return _sha256_json(self._hashed())

    def model_hash(self) -> str:
        """SHA-256 of the resolved spec without its sampler settings and labels: the same hash
        <=> the same model, priors and data choices, however long the chains (a sensitivity
        analysis refits with shorter chains than the run it belongs to)."""
        content = self._hashed()
        for key in ("sampler", "name", "description"):
            content.pop(key, None)
        return _sha256_json(content)

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.resolved().to_dict()))

    def with_overrides(self, overrides: dict[str, Any], name: str | None = None) -> ModelSpec:
        """A new spec with nested overrides merged in (used by variants and CLI flags)."""
        merged = _deep_merge(self.to_dict(), overrides)
        if name is not None:
            merged["name"] = name
        return parse_spec(merged, origin=f"{self.name} + overrides", check_variants=False)

    def variant(self, variant_name: str) -> ModelSpec:
        if variant_name not in self.variants:
            raise SpecError(f"spec '{self.name}' has no variant '{variant_name}'; "
                            f"available: {sorted(self.variants)}")
        return self.with_overrides(self.variants[variant_name],
                                   name=f"{self.name}:{variant_name}")


#: Priors whose role allows other dims than the default's: the evaluated scores' precision and
#: the unstated rows' factor on it may be one shared value or one per benchmark (the LOO
#: comparisons in docs/model.md).
ALTERNATIVE_DIMS = {"score_precision_eval": ((), ("benchmark",)),
                    "score_precision_unstated": ((), ("benchmark",)),
                    "score_pair_sd": ((), ("benchmark",))}


def _role_problem(name: str, prior: Prior) -> str | None:
    """Why an override cannot take the place of the default prior ``name``, or None.

    The model indexes each prior by the dims of its role (one value per benchmark, one shared
    value, ...); an override with other dims would build silently with the wrong shape, or fail
    deep inside PyTensor, so it is refused here with the dims to write.
    """
    role = tuple(DEFAULT_PRIORS[name].prior.dims or ())
    dims = tuple(prior.dims or ())
    if dims in ALTERNATIVE_DIMS.get(name, ()):
        return _distribution_problem(prior)
    if dims != role:
        need = f"dims = {list(role)}" if role else "no dims (one value shared by all)"
        return f"dims {list(dims)} do not match its role in the model, which needs {need}"
    return _distribution_problem(prior)


def _distribution_problem(prior: Prior) -> str | None:
    """A distribution the model cannot use, or a scale/shape parameter that is not > 0."""
    import pymc as pm

    dist = getattr(pm, prior.distribution, None)
    if not (isinstance(dist, type) and issubclass(dist, pm.Distribution)):
        return (f"dist '{prior.distribution}' is not a PyMC distribution with a closed form "
                "(CustomDist, DensityDist and Simulator cannot be used as priors here)")
    positive = _POSITIVE_KWARGS | _POSITIVE_SHAPES.get(prior.distribution, set())
    for key, value in prior.parameters.items():
        if isinstance(value, Prior):
            problem = _distribution_problem(value)
            if problem:
                return problem
        elif key in positive and isinstance(value, int | float) and not value > 0:
            return f"{prior.distribution} needs {key} > 0; got {value}"
        elif isinstance(value, int | float) and not math.isfinite(value):
            return f"{key} must be a finite number; got {value}"
    return None


def _sha256_json(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _prior_dict(entry: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples: normalise ``dims`` and accept 'kwargs' omitted."""
    entry = copy.deepcopy(entry)
    entry.setdefault("kwargs", {})
    if isinstance(entry.get("dims"), list):
        entry["dims"] = tuple(entry["dims"])
    return entry


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if key == "priors" or not (isinstance(value, dict) and isinstance(out.get(key), dict)):
            if key == "priors":
                out.setdefault("priors", {}).update(copy.deepcopy(value))
            else:
                out[key] = copy.deepcopy(value)
        else:
            out[key] = _deep_merge(out[key], value)
    return out


def parse_spec(raw: dict[str, Any], *, origin: str = "<dict>",
               check_variants: bool = True) -> ModelSpec:
    """Validate a spec dict; every problem, its variants' too, is listed in one SpecError.

    Variants are checked here, when the spec loads, so a typo in one surfaces before a fit and
    not an hour later in the sensitivity batch.
    """
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError("\n".join(_error_lines(exc, origin))) from None
    if check_variants:
        lines = []
        base = {k: v for k, v in spec.to_dict().items() if k != "variants"}
        for name, overrides in spec.variants.items():
            try:
                ModelSpec.model_validate(_deep_merge(base, overrides))
            except ValidationError as exc:
                lines += _error_lines(exc, f"{origin}: variants.{name}")
        if lines:
            raise SpecError("\n".join(lines))
    return spec


def _error_lines(exc: ValidationError, origin: str) -> list[str]:
    """One line per pydantic error, with a spelling hint for unknown names."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message += did_you_mean(loc[-1], _known_fields(loc[:-1]))
        lines.append(f"{origin}: {'.'.join(loc) or '<top>'}: {message}")
    return lines


def _known_fields(section: list[str]) -> list[str]:
    """Field names of the spec section at ``section`` (e.g. ['sampler'])."""
    model: Any = ModelSpec
    for part in section:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def parse_setting(text: str) -> dict[str, Any]:
    """``"trend.latent=centred"`` -> ``{"trend": {"latent": "centred"}}`` (a command-line override).

    The value is read as a TOML value when it is one (numbers, booleans, quoted strings,
    arrays), else taken as a bare string. Validation happens when the override is merged into
    a spec (:meth:`ModelSpec.with_overrides`), which names every problem.
    """
    key, sep, value = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise SpecError(f"setting '{text}': expected SECTION.KEY=VALUE, e.g. trend.latent=centred")
    try:
        parsed: Any = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    for part in reversed(path):
        parsed = {part: parsed}
    return parsed


def merge_settings(texts: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Several ``--set`` overrides as one nested dict (later ones win)."""
    merged: dict[str, Any] = {}
    for text in texts:
        merged = _deep_merge(merged, parse_setting(text))
    return merged


def bundled_spec_names() -> list[str]:
    return sorted(p.stem for p in resources.specs_dir().glob("*.toml"))


def spec_path(name_or_path: str | Path) -> Path:
    """A TOML path as given, else the bundled spec of that name (``default``, ...)."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {path} does not exist")
        return path
    bundled = resources.specs_dir() / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise SpecError(f"no spec file '{name_or_path}' and no bundled spec of that name"
                        f"{did_you_mean(str(name_or_path), bundled_spec_names())}; "
                        f"bundled: {bundled_spec_names()}")
    return bundled


def load_spec(name_or_path: str | Path = "default") -> ModelSpec:
    """Read and validate a spec (a path, or the name of a bundled spec)."""
    path = spec_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    raw.setdefault("name", path.stem)
    try:
        check_name(raw["name"])
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return parse_spec(raw, origin=str(path))
