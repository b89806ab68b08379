"""Does the trend hold out of sample? Leave-future-out, leave-one-family-out, trend structures.

One resumable batch of refits (``densing_bayes.inference.batch``), each answering one question
a referee asks of the doubling time:

* **Leave-future-out** (cut-off date c): fit the models released before c, then predict the
  reported scores of the models released on or after c from their sizes and release dates
  alone. For each draw, a held-out model's log density is drawn from the fitted trend's
  population at its date, r = f(t) + deviation, and its scores follow the fitted chain (loss
  law, benchmark drift, sigmoids, protocol offsets, format mixture, Beta precision). The PIT of
  every held-out score is exact given the draws (the Beta CDF, mixed over formats); a score is
  inside its central 90% predictive interval when its PIT lies in [0.05, 0.95]. Coverage near
  0.9 says the trend's extrapolation *and* its scatter are honest a year ahead.
* **Leave-one-family-out**: the same, leaving out every model of one lineage (Qwen, Llama,
  Gemma, ...): does one developer's series set the slope? The refit's doubling time is set
  beside the full fit's interval, and the family's scores are predicted as above.
* **Trend structures**: the full data under no changepoint, an unknown changepoint date and a
  mean (not frontier) trend, compared with the baseline by leave-one-model-out ELPD
  (``model_loo``: the unit in which a trend predicts).
* **Exact leave-one-model-out** where importance sampling is unreliable: every model whose
  Pareto k in the baseline's leave-one-model-out is above 0.7 is left out of a refit and its
  ELPD computed exactly, log mean_s p(y_m | theta_s) over the refit's draws with its density
  integrated as ``model_loo`` integrates it (Vehtari, Gelman and Gabry 2017, sec. 2.1: refit
  for the observations PSIS cannot handle; what ``az.reloo`` does pointwise). These refits run
  after the others, in the same folder, because they depend on the baseline's k.

Held-out predictions weigh unstated formats with the MC shares of the rows the model was fitted
to, and a held-out row from a source kind the refit never saw is not predicted (counted).
Supported observation models: those ``score_chain`` supports, without pair effects or broad
tails (the default is one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, softmax

from densing_bayes import resources
from densing_bayes.data.lineage import lineage
from densing_bayes.data.schema import DensingData
from densing_bayes.inference import batch
from densing_bayes.model.inputs import stated_mc_rows
from densing_bayes.model.spec import ModelSpec

#: Cut-off dates of the leave-future-out refits: about half and about a third of the models
#: are released on or after them (48 / 41 and 59 / 30 of 89 dated models in the bundled data).
DEFAULT_CUTOFFS = ("2024-03-01", "2024-06-01")

#: Lineages with at least this many models get a leave-one-family-out refit.
MIN_FAMILY_MODELS = 5

#: Trend structures refitted on the full data: name -> spec override.
STRUCTURES = {
    "no_changepoint": {"trend": {"changepoint": "none"}},
    "unknown_changepoint": {"trend": {"changepoint": "unknown"}},
    "mean_trend": {"trend": {"kind": "mean"}},
    "size_covariate": {"trend": {"size_covariate": True}},
    "inefficiency_trend": {"trend": {"inefficiency_trend": True}},
    # not a trend but how benchmarks read the models: compared by the same held-out scores
    "lineage_profile": {"trend": {"lineage_profile": True}},
}

#: Structures refitted by default (the size covariate and the inefficiency trend are asked for
#: by name: the first changes the estimand to the trend of a 10B-parameter model, the second
#: makes the frontier's slope differ from the mean's).
DEFAULT_STRUCTURES = ("no_changepoint", "unknown_changepoint", "mean_trend")

#: What a structure adds to summary.json's trend (the inefficiency trend: psi, and the mean log
#: density's slope beside the frontier's), kept in its refit's record when present.
STRUCTURE_TERMS = ("inefficiency_trend_per_year", "mean_slope_post_per_year",
                   "mean_doubling_time_days", "mean_slope_span_years")

#: Intervals reported for every refit (summary.json's definitions).
REPORTED = ("doubling_time_days", "doubling_time_days_pre", "slope_difference_per_year",
            "doubling_time_ratio")

#: Nominal level of the held-out predictive intervals, and the coverage band called honest
#: (issue 19: within [0.85, 0.95] at nominal 0.9).
PREDICTIVE_PROB = 0.9
COVERAGE_BAND = (0.85, 0.95)

#: Draws used for held-out predictions and model-level LOO (thinned evenly).
MAX_DRAWS = 1000

ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_CSV = "robustness.csv"
HELDOUT_SCORES_CSV = "heldout_scores.csv"
HELDOUT_MODELS_CSV = "heldout_models.csv"


@dataclass(frozen=True)
class Refit:
    """One refit: a spec, the models left out of it (their scores are then predicted), and
    whether its leave-one-model-out ELPD is computed (full-data fits only)."""

    name: str
    kind: Literal["baseline", "future", "family", "structure", "exact", "pre"]
    description: str
    spec: ModelSpec
    held_out: tuple[str, ...] = ()
    model_loo: bool = False
    #: the trend structure (a ``STRUCTURES`` name) when not the spec's own
    structure: str | None = None
    #: the one held-out model's ELPD is computed exactly (kind "exact", and "pre")
    exact_loo: bool = False
    #: the task whose record this refit shares: the same spec, seed and held-out models make
    #: the same fit (an exact leave-one-out refit of a model that a "pre" refit left out)
    shares: str | None = None

    @property
    def task_id(self) -> str:
        return self.shares or self.name.replace(":", "-")


def robustness_refits(spec: ModelSpec, data: DensingData, *,
                      cutoffs: Sequence[str] = DEFAULT_CUTOFFS,
                      min_family_models: int = MIN_FAMILY_MODELS,
                      structures: Sequence[str] | None = None,
                      future_structures: Sequence[str] = (),
                      leave_each_pre: bool = False) -> list[Refit]:
    """Baseline, leave-future-out at each cut-off, leave-one-family-out for each lineage with
    at least ``min_family_models`` models, the trend structures (``DEFAULT_STRUCTURES`` when
    None), leave-future-out again under each of ``future_structures``, and with
    ``leave_each_pre`` a refit without each model released before the changepoint (the slope
    before rests on a handful of models: does one of them carry the acceleration?)."""
    for name in [*(structures or ()), *future_structures]:
        if name not in STRUCTURES:
            raise ValueError(f"unknown trend structure {name!r}; known: {sorted(STRUCTURES)}")
    models = data.models.dropna(subset=["release_date"])
    release = pd.to_datetime(models["release_date"])
    refits = [Refit("baseline", "baseline", "the spec as written", spec, model_loo=True)]
    for cutoff in cutoffs:
        later = tuple(sorted(models.loc[release >= pd.Timestamp(cutoff), "model"].astype(str)))
        if not later or len(later) == len(models):
            raise ValueError(f"cut-off {cutoff} leaves no model on one side "
                             f"(models released {release.min():%Y-%m-%d} to "
                             f"{release.max():%Y-%m-%d})")
        refits.append(Refit(f"future:{cutoff}", "future",
                            f"fitted to models released before {cutoff}; the {len(later)} "
                            "released on or after it predicted", spec, held_out=later))
        for name in future_structures:
            refits.append(Refit(f"future:{cutoff}:{name}", "future",
                                f"as future:{cutoff}, under the trend structure {name}",
                                _structure_spec(spec, name), held_out=later,
                                structure=name))
    if "family" in models:
        lineages = models["family"].fillna("").astype(str).map(lineage)
        counts = lineages[lineages != ""].value_counts()
        for name, n in counts[counts >= min_family_models].items():
            members = tuple(sorted(models.loc[lineages == name, "model"].astype(str)))
            refits.append(Refit(f"family:{name}", "family",
                                f"the {n} {name} models left out and predicted", spec,
                                held_out=members))
    if leave_each_pre:
        before = release < pd.Timestamp(spec.trend.changepoint_date)
        for name in sorted(models.loc[before, "model"].astype(str)):
            refits.append(Refit(f"pre:{name}", "pre", f"{name} (released before the "
                                f"changepoint) left out and predicted", spec,
                                held_out=(name,), exact_loo=True))
    for name in (DEFAULT_STRUCTURES if structures is None else structures):
        refits.append(Refit(f"structure:{name}", "structure", f"trend override "
                            f"{STRUCTURES[name]['trend']}", _structure_spec(spec, name),
                            model_loo=True, structure=name))
    return refits


def exact_loo_refits(spec: ModelSpec, pareto_k: Mapping[str, float]) -> list[Refit]:
    """One refit without each model whose leave-one-model-out Pareto k exceeds 0.7."""
    from densing_bayes.analysis.model_loo import PARETO_K_GOOD

    return [Refit(f"exact:{m}", "exact",
                  f"{m} left out: its ELPD computed exactly (Pareto k {k:.2f})", spec,
                  held_out=(m,), exact_loo=True)
            for m, k in sorted(pareto_k.items()) if k > PARETO_K_GOOD]


def share_identical_fits(extra: Sequence[Refit], refits: Sequence[Refit],
                         records: Mapping[str, dict]) -> list[Refit]:
    """``extra`` exact leave-one-out refits, each pointed at the record of a refit in
    ``refits`` that made the same fit and holds its exact ELPD (a "pre" refit of the same
    model and spec), unless its own record already exists in ``records`` (task id ->
    record). A twin recorded before pre refits computed the exact ELPD is not shared."""
    out = []
    for e in extra:
        twin = next((r for r in refits if r.exact_loo and r.held_out == e.held_out
                     and r.spec.config_hash() == e.spec.config_hash()), None)
        exact = twin is not None and "exact_loo" in (
            (records.get(twin.task_id) or {}).get("result") or {})
        if exact and e.task_id not in records:
            e = replace(e, shares=twin.task_id)
        out.append(e)
    return out


def _structure_spec(spec: ModelSpec, name: str) -> ModelSpec:
    return spec.with_overrides(STRUCTURES[name], name=f"{spec.name}:{name}")


def split_models(data: DensingData, held_out: Sequence[str]) -> tuple[DensingData, DensingData]:
    """(the data without the ``held_out`` models, the data with only them): both keep the
    reference runs and benchmarks; scores and models are split."""
    held = set(held_out)
    in_models = data.models["model"].astype(str).isin(held)
    in_scores = data.scores["model"].astype(str).isin(held)
    return (replace(data, models=data.models[~in_models], scores=data.scores[~in_scores]),
            replace(data, models=data.models[in_models], scores=data.scores[in_scores]))


# ------------------------------------------------------------------- predictions for new models
def lineage_level_at(posterior, index: np.ndarray, codes: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray | None:
    """(S, M) each held-out model's lineage level delta_l per retained draw ([trend]
    lineage_level), or None without the term: a lineage the fit has seen keeps its posterior
    level; the k-th unseen one (code -1 - k, ``fit_lineage_codes``) draws one new level per
    draw from N(0, sd), shared by all its models, so a held-out family is one cluster."""
    from densing_bayes.analysis.score_chain import stack

    if "lineage_level" not in posterior:
        return None
    codes = np.asarray(codes, int)
    level = stack(posterior["lineage_level"].transpose("chain", "draw", "lineage"), index)
    sd = stack(posterior["lineage_level_sd"], index)
    n_new = int(max(0, -codes.min(initial=0)))
    new = sd[:, None] * rng.standard_normal((len(index), n_new))
    return np.where(codes[None, :] >= 0, level[:, np.maximum(codes, 0)],
                    new[:, np.maximum(-1 - codes, 0)] if n_new else 0.0)


def trend_at(posterior, spec: ModelSpec, time: np.ndarray, index: np.ndarray,
             log_params: np.ndarray | None = None) -> np.ndarray:
    """(S, M) f(t) per retained draw at ``time`` (years since the changepoint date) and, with
    the size covariate, at ``log_params`` (ln N): the model's own ``trend_mean`` and
    ``size_effect`` evaluated in NumPy on the draws."""
    from densing_bayes.analysis.score_chain import stack
    from densing_bayes.model.build import REFERENCE_PARAMS, size_effect, trend_mean

    def draws(name):
        return stack(posterior[name], index)[:, None] if name in posterior else None

    t = np.asarray(time, float)[None, :]
    f = trend_mean(t, spec, draws("frontier_intercept"), slope=draws("slope"),
                   slope_pre=draws("slope_pre"), slope_post=draws("slope_post"),
                   shift=draws("changepoint_shift") if spec.trend.changepoint == "unknown"
                   else 0.0, xp=np)
    if "size_slope" in posterior:
        if log_params is None:
            raise ValueError("a trend with the size covariate needs the models' sizes")
        x = (np.asarray(log_params, float) - np.log(REFERENCE_PARAMS))[None, :]
        f = f + size_effect(x, t, draws("size_slope"), draws("size_slope_post"), xp=np)
    return np.broadcast_to(f, (len(index), t.shape[1])).copy()


def _heldout_inputs(fit_inputs, heldout_data: DensingData, spec: ModelSpec):
    """The held-out rows prepared as the fit prepares its own, then aligned with the fit:
    source kinds re-indexed by name, unstated formats weighted by the fit's MC shares.
    Returns (inputs, usable rows mask)."""
    from densing_bayes.model.inputs import format_log_weights, prepare_inputs

    held = prepare_inputs(heldout_data, spec)
    if list(held.benchmarks) != list(fit_inputs.benchmarks):
        raise ValueError("held-out rows were prepared on other benchmarks than the fit")
    kinds = {k: i for i, k in enumerate(fit_inputs.source_kinds)}
    source = np.array([kinds.get(held.source_kinds[k], -1) for k in held.score_source], int)
    usable = source >= 0
    log_weight = format_log_weights(held.score_format, held.score_benchmark,
                                    fit_inputs.mc_weight, tuple(fit_inputs.formats))
    return replace(held, score_source=np.where(usable, source, 0),
                   score_format_log_weight=log_weight,
                   model_lineage=(fit_lineage_codes(held, fit_inputs.lineages)
                                  if len(fit_inputs.lineages) else held.model_lineage),
                   lineages=list(fit_inputs.lineages)), usable


def fit_lineage_codes(held, fit_lineages: Sequence[str]) -> np.ndarray:
    """Each held-out model's lineage as an index into the fit's lineages, or -1 - k for the
    k-th lineage the fit has not seen (``score_chain.lineage_profile_rows`` draws its
    profile)."""
    known = {name: i for i, name in enumerate(fit_lineages)}
    new: dict[str, int] = {}
    codes = []
    for i in held.model_lineage:
        name = held.lineages[i]
        codes.append(known[name] if name in known else -1 - new.setdefault(name, len(new)))
    return np.array(codes, int)


def _prediction_idata(fit_idata, held):
    """An InferenceData carrying the fit's posterior and the held-out rows as constant and
    observed data: the shape ``score_chain`` reads."""
    import arviz as az
    import xarray as xr

    row = ("score_row",)
    const = xr.Dataset({
        "score_benchmark": (row, held.score_benchmark),
        "score_source": (row, held.score_source),
        "score_model": (row, held.score_model),
        "score_unstated": (row, (held.score_format < 0).astype("int8")),
        "score_stated_mc": (row, stated_mc_rows(held)),
        "score_best": (row, held.score_best.astype("int8")),
        "score_format_log_weight": (("score_row", "format"), held.score_format_log_weight),
        "model_time": (("model",), held.model_time),
        "chance": (("benchmark",), np.asarray(fit_idata.constant_data["chance"].values)),
    })
    if len(held.model_lineage):  # a fit with [trend] lineage_profile
        const["model_lineage"] = (("model",), held.model_lineage)
    observed = xr.Dataset({"score_obs": (row, held.score_value)})
    return az.InferenceData(posterior=fit_idata.posterior, constant_data=const,
                            observed_data=observed)


def predict_heldout(fit_idata, fit_inputs, heldout_data: DensingData, spec: ModelSpec, *,
                    seed: int, max_draws: int = MAX_DRAWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Posterior predictive of the held-out models' scores and densities (module docstring).

    Returns (one row per held-out score: PIT, predictive median and interval, inside;
    one row per held-out model: predictive density median and interval).
    """
    held, usable = _heldout_inputs(fit_inputs, heldout_data, spec)
    scores, models = predict_rows(fit_idata, held, spec, seed=seed, max_draws=max_draws)
    return scores[usable].reset_index(drop=True), models


def predict_rows(fit_idata, held, spec: ModelSpec, *, seed: int,
                 max_draws: int = MAX_DRAWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``predict_heldout`` on held-out inputs already aligned with the fit."""
    from densing_bayes.analysis.model_loo import deviation_scale
    from densing_bayes.analysis.score_chain import EPS, score_chain

    obs = spec.observation
    if obs.score_pair_effect or obs.score_broad_tails or obs.score_favourable \
            or obs.score_skewed:
        raise NotImplementedError("held-out prediction supports neither pair effects nor the "
                                  "broad, favourable or skewed tails (its predictive draws "
                                  "and CDF are the Beta's)")
    chain = score_chain(_prediction_idata(fit_idata, held), spec.data.d0_tokens, max_draws)
    post = fit_idata.posterior
    scale, skew = deviation_scale(fit_idata, chain.draws, spec.trend, held.model_time)
    f = trend_at(post, spec, np.asarray(held.model_time, float), chain.draws,
                 held.model_log_params)  # (S, M)
    rng = np.random.default_rng(seed)
    level = lineage_level_at(post, chain.draws, held.model_lineage, rng)
    if level is not None:
        f = f + level
    if skew is None:
        z = rng.standard_normal(f.shape)
    else:
        z = stats.skewnorm.rvs(skew, size=f.shape, random_state=rng)
    log_density = f + scale * z  # (S, M)
    x_n = (log_density + held.model_log_params[None, :] - post.attrs["centre_log_params"])
    logit = chain.logit(x_n[:, chain.model])  # (S, N, F)
    mean = np.clip(chain.chance[:, None] + chain.span * expit(logit), EPS, 1 - EPS)
    mean = np.where(chain.best[:, None], mean.max(axis=-1, keepdims=True), mean)
    phi = chain.precision[..., None]
    weight = softmax(chain.log_weight, axis=-1)[None]  # (1, N, F)
    share = chain.outlier_share[:, None]
    cdf = (1 - share) * np.sum(weight * stats.beta.cdf(chain.y[None, :, None], mean * phi,
                                                       (1 - mean) * phi), axis=-1) \
        + share * chain.y[None, :]
    pit = cdf.mean(axis=0)
    # predictive draws of each score, for its interval and median: format, then Beta
    u = rng.uniform(size=mean.shape[:2])[..., None]
    pick = (np.cumsum(np.broadcast_to(weight, mean.shape), axis=-1) < u).sum(axis=-1)
    pick = np.minimum(pick, mean.shape[-1] - 1)
    m = np.take_along_axis(mean, pick[..., None], axis=-1)[..., 0]
    draws = rng.beta(m * chain.precision, (1 - m) * chain.precision)
    outlier = rng.uniform(size=draws.shape) < share
    draws = np.where(outlier, rng.uniform(size=draws.shape), draws)
    tail = (1 - PREDICTIVE_PROB) / 2
    lower, median, upper = np.quantile(draws, [tail, 0.5, 1 - tail], axis=0)
    reach = reachable_mean(chain)
    scores = pd.DataFrame({
        "model": [held.models[i] for i in held.score_model],
        "benchmark": [held.benchmarks[b] for b in held.score_benchmark],
        "format": [format_name(c, held.formats) for c in held.score_format],
        "score": chain.y,
        "predicted_median": median, "predicted_lower": lower, "predicted_upper": upper,
        "pit": pit,
        "inside": (pit >= tail) & (pit <= 1 - tail),
    })
    if reach is not None:
        top = np.quantile(reach, REACH_QUANTILE, axis=0)
        scores["reachable_mean"] = top
        scores["beyond_reach"] = chain.y > top
    density = np.exp(log_density)
    q = np.quantile(density, [tail, 0.5, 1 - tail], axis=0)
    models = pd.DataFrame({
        "model": held.models,
        "release_date": [str(d) for d in held.model_release],
        "params": np.exp(held.model_log_params),
        "density_median": q[1], "density_lower": q[0], "density_upper": q[2],
    })
    return scores, models


#: Quantile (over draws) of the highest reachable mean score a held-out score is compared
#: with: as the reachability check's.
REACH_QUANTILE = 0.99

#: Centred log N standing in for N -> infinity: A e^{-alpha x} is 0 in float64 for any
#: alpha > 1e-3 (finite, so that the extrapolation distances stay defined).
UNBOUNDED_X = 1e6


def reachable_mean(chain) -> np.ndarray | None:
    """(S, N) the highest mean score any effective size reaches for each row, per draw: the
    chain at N -> infinity, where the task loss is the floor E + B D0^-beta of the loss law at
    the data budget D0 (for a row of unknown format, or the better of two protocols, the
    larger of its possible formats' curves). None when the loss law is tilted in log N
    (``extrapolation_sd_params``): its limit is then not the law's."""
    from densing_bayes.model.inputs import IMPOSSIBLE_LOG_WEIGHT

    if chain.tilt is not None and any(c in (0, 1) for c in chain.columns):
        return None
    logit = chain.logit(np.full((len(chain.draws), chain.y.size), UNBOUNDED_X))
    top = chain.chance[None, :, None] + chain.span * expit(logit)  # (S, N, F)
    possible = (chain.log_weight > IMPOSSIBLE_LOG_WEIGHT / 2) | chain.best[:, None]
    return np.where(possible[None], top, -np.inf).max(axis=-1)


def format_name(code: int, formats: Sequence[str]) -> str:
    """A score row's format code as a name (``model.inputs.SCORE_FORMAT_CODES``)."""
    from densing_bayes.model.inputs import SCORE_FORMAT_CODES

    if code >= 0:
        return str(formats[code])
    return {v: k for k, v in SCORE_FORMAT_CODES.items()}[int(code)]


def coverage_by(scores: pd.DataFrame, column: str) -> dict:
    """Held-out coverage per value of ``column`` (format, benchmark): where the misses are."""
    tail = (1 - PREDICTIVE_PROB) / 2
    out = {}
    for key, group in scores.groupby(column, sort=True):
        out[str(key)] = {"n_rows": len(group), "coverage": float(group["inside"].mean()),
                         "share_above": float((group["pit"] > 1 - tail).mean()),
                         "share_below": float((group["pit"] < tail).mean()),
                         "mean_pit": float(group["pit"].mean())}
    return out


def _beyond_reach(scores: pd.DataFrame) -> dict:
    """How many held-out scores lie above the highest mean the fitted chain reaches at any
    effective size (``reachable_mean``), and how many of the misses above that explains."""
    if "beyond_reach" not in scores:
        return {}
    beyond = scores["beyond_reach"].astype(bool)
    above = scores["pit"] > 1 - (1 - PREDICTIVE_PROB) / 2
    return {"n_beyond_reach": int(beyond.sum()), "n_above": int(above.sum()),
            "n_above_beyond_reach": int((beyond & above).sum())}


def prediction_summary(scores: pd.DataFrame) -> dict:
    """Coverage of the held-out scores' 90% intervals, with its binomial p-value, the mean
    error (observed - predictive median) and the LOO-PIT-style uniformity KS p."""
    n = len(scores)
    if n == 0:
        return {"n_rows": 0, "coverage": None}
    k = int(scores["inside"].sum())
    return {
        "n_rows": n,
        "n_models": int(scores["model"].nunique()),
        "n_inside": k,
        "coverage": k / n,
        "nominal": PREDICTIVE_PROB,
        "p_binomial": float(stats.binomtest(k, n, PREDICTIVE_PROB).pvalue),
        "mean_error": float((scores["score"] - scores["predicted_median"]).mean()),
        "share_above": float((scores["pit"] > 1 - (1 - PREDICTIVE_PROB) / 2).mean()),
        "share_below": float((scores["pit"] < (1 - PREDICTIVE_PROB) / 2).mean()),
        "pit_ks_p": float(stats.kstest(scores["pit"], "uniform").pvalue),
        **_beyond_reach(scores),
        "by_format": coverage_by(scores, "format"),
        "by_benchmark": coverage_by(scores, "benchmark"),
    }


# ------------------------------------------------------------------- one refit (a task)
def fit_refit(spec: ModelSpec, data_folder: str, held_out: Sequence[str] = (),
              model_loo: bool = False, seed: int = 0, exact_loo: bool = False,
              log_score: bool = False) -> dict:
    """Fit one refit; predict its held-out models; with ``model_loo`` the per-model ELPD,
    with ``exact_loo`` the held-out model's exact ELPD, with ``log_score`` every held-out
    model's (the leave-future-out log score: interval coverage alone cannot rank two score
    models whose intervals differ in width)."""
    from densing_bayes.data.load import load_data
    from densing_bayes.workflow import fit_data

    data = load_data(data_folder)
    fit_part, held_part = split_models(data, held_out)
    result = fit_data(fit_part, spec, progress=False, predictive=False, baseline=False)
    s = result.summary
    record = {q: s.get(q) for q in REPORTED}
    record.update(prediction_seed=seed,
                  prob_slope_difference_positive=s.get("prob_slope_difference_positive"),
                  diagnostics=s["diagnostics"], n_models=len(result.inputs.models),
                  n_scores=len(result.inputs.score_value), timing=s["timing_seconds"],
                  densities={m: v["density"] for m, v in s.get("models", {}).items()},
                  **{q: s[q] for q in STRUCTURE_TERMS if q in s})
    if held_out:
        scores, models = predict_heldout(result.idata, result.inputs, held_part, spec, seed=seed)
        record["prediction"] = prediction_summary(scores)
        record["heldout_scores"] = scores.to_dict(orient="list")
        record["heldout_models"] = models.to_dict(orient="list")
    if exact_loo:
        record["exact_loo"] = heldout_elpd(result.idata, result.inputs, held_part, spec)
    elif held_out and log_score:
        try:
            record["heldout_elpd"] = heldout_elpd(result.idata, result.inputs, held_part, spec)
        except ValueError as exc:  # rows from a source kind the refit never saw
            record["heldout_elpd"] = {"error": str(exc)}
    if model_loo:
        from densing_bayes.analysis.model_loo import model_loo as loo

        start = time.perf_counter()
        res = loo(with_model_data(result.idata, result.model), spec, MAX_DRAWS)
        record["model_loo"] = {"elpd": res.elpd_total, "se": res.se, "p_loo": res.p_loo,
                               "share_k_good": res.share_k_good, "n_draws": res.n_draws,
                               "per_model": dict(zip(res.models, map(float, res.elpd))),
                               "pareto_k": dict(zip(res.models, map(float, res.pareto_k))),
                               "seconds": time.perf_counter() - start}
    return record


def heldout_elpd(fit_idata, fit_inputs, heldout_data: DensingData, spec: ModelSpec, *,
                 max_draws: int = MAX_DRAWS, seed: int = 0) -> dict:
    """Each held-out model's exact ELPD from a fit without it: log mean over draws of
    p(y_m | theta_s), the model's density integrated over the fitted trend's population at
    its date and size (``model_loo.integrated_model_loglik``, the same integral the PSIS
    estimate uses). Returns the per-model ELPD, its Monte Carlo SE and the rows used.
    ``seed`` draws the level of a lineage the fit has not seen ([trend] lineage_level)."""
    from scipy.special import logsumexp

    from densing_bayes.analysis.model_loo import deviation_scale, integrated_model_loglik
    from densing_bayes.analysis.score_chain import score_chain

    held, usable = _heldout_inputs(fit_inputs, heldout_data, spec)
    if not usable.all():
        raise ValueError(f"{int((~usable).sum())} held-out rows come from a source kind the "
                         "refit never saw: their exact ELPD is not the PSIS estimate's")
    chain = score_chain(_prediction_idata(fit_idata, held), spec.data.d0_tokens, max_draws)
    post = fit_idata.posterior
    scale, skew = deviation_scale(fit_idata, chain.draws, spec.trend, held.model_time)
    f = trend_at(post, spec, np.asarray(held.model_time, float), chain.draws,
                 held.model_log_params)
    level = lineage_level_at(post, chain.draws, held.model_lineage,
                             np.random.default_rng(seed))
    if level is not None:
        f = f + level
    x_n_trend = f + held.model_log_params[None, :] - post.attrs["centre_log_params"]
    loglik = integrated_model_loglik(chain, x_n_trend, scale, skew)  # (S, M)
    n = loglik.shape[0]
    elpd = logsumexp(loglik, axis=0) - math.log(n)
    # delta-method Monte Carlo SE of log mean exp over (thinned, near-independent) draws
    w = np.exp(loglik - loglik.max(axis=0))
    mcse = np.sqrt(np.var(w, axis=0) / n) / np.mean(w, axis=0)
    return {"per_model": dict(zip(held.models, map(float, elpd))),
            "mcse": dict(zip(held.models, map(float, mcse))),
            "n_rows": dict(zip(held.models, map(int, np.bincount(chain.model,
                                                                  minlength=len(held.models))))),
            "n_draws": int(n)}


def log_score_summary(elpd: Mapping) -> dict:
    """The held-out models' log predictive density (``heldout_elpd``): its sum over models
    (``elpd``), the sum's Monte Carlo SE, and each model's term, so that two refits on the
    same held-out models compare model by model (``elpd_difference``)."""
    per_model = {m: float(v) for m, v in elpd["per_model"].items()}
    mcse = elpd.get("mcse") or {}
    return {"elpd": float(sum(per_model.values())),
            "elpd_mcse": float(math.sqrt(sum(float(v) ** 2 for v in mcse.values()))),
            "elpd_per_model": per_model, "elpd_n_draws": elpd.get("n_draws")}


def with_model_data(idata, model):
    """``idata`` with the model's constant and observed data (a fit without predictive draws
    carries neither, and leave-one-model-out reads both)."""
    import xarray as xr
    from pymc.backends.arviz import find_constants, find_observations

    def dataset(values: dict) -> xr.Dataset:
        variables = {}
        for k, v in values.items():
            dims = model.named_vars_to_dims.get(k) or [f"{k}_dim_{i}" for i in range(np.ndim(v))]
            variables[k] = (tuple(dims), np.asarray(v))
        used = {d for dims, _ in variables.values() for d in dims}
        return xr.Dataset(variables, coords={k: list(v) for k, v in model.coords.items()
                                             if v is not None and k in used
                                             and k not in variables})

    constants = dataset(find_constants(model))
    idata = idata.copy()
    if "constant_data" in idata.groups():  # keep what is there (chance)
        idata.constant_data = constants.assign(idata.constant_data.data_vars)
    else:
        idata.add_groups(constant_data=constants)
    if "observed_data" not in idata.groups():
        idata.add_groups(observed_data=dataset(find_observations(model)))
    return idata


# ------------------------------------------------------------------- the job
def run_robustness(spec: ModelSpec, out: Path, *, resume: bool = False, force: bool = False,
                   scheduler: str | None = None, n_workers: int | None = None,
                   progress: bool = True, cutoffs: Sequence[str] = DEFAULT_CUTOFFS,
                   min_family_models: int = MIN_FAMILY_MODELS,
                   structures: Sequence[str] | None = None,
                   future_structures: Sequence[str] = (), exact_loo: bool = True,
                   leave_each_pre: bool = False) -> dict:
    """Run (or resume) the refits into ``out``; write robustness.json and the CSVs.

    The list of refits is not part of the batch's manifest: a resume may add refits (another
    cut-off, structure or lineage threshold), each identified by its name and computed from the
    same spec and data; the outputs describe the refits asked for in this call. With
    ``exact_loo`` a second pass refits without each model whose baseline Pareto k exceeds 0.7
    (it needs the baseline's k, so it resumes the same folder)."""
    from densing_bayes.data.load import load_data
    from densing_bayes.inference.run_io import data_hash

    folder = resources.resolve_data_folder(spec.data.folder)
    refits = robustness_refits(spec, load_data(folder), cutoffs=cutoffs,
                               min_family_models=min_family_models, structures=structures,
                               future_structures=future_structures,
                               leave_each_pre=leave_each_pre)
    manifest = {"job": "robustness", "spec": spec.name, "config_hash": spec.config_hash(),
                "data_folder": str(folder), "data_hash": data_hash(folder)}

    def run(refits: list[Refit], resume: bool, force: bool) -> dict:
        own = [r for r in refits if r.shares is None]  # a shared record is computed once
        seeds = [refit_seed(spec.sampler.seed, r.name) for r in own]
        tasks = [batch.Task(r.task_id, fit_refit,
                            {"spec": r.spec, "data_folder": str(folder),
                             "held_out": list(r.held_out), "model_loo": r.model_loo,
                             "seed": seed, "exact_loo": r.exact_loo,
                             "log_score": r.kind == "future"})
                 for r, seed in zip(own, seeds, strict=True)]
        return batch.run_and_write(
            tasks, out, lambda records, seconds: write_robustness_outputs(
                out, refits, records, spec, data_folder=folder, wall_seconds=seconds),
            manifest=manifest, resume=resume, force=force, scheduler=scheduler,
            n_workers=n_workers, progress=progress, desc="robustness")

    report = run(refits, resume, force)
    base = next((e for e in report["refits"] if e["kind"] == "baseline"), {})
    extra = share_identical_fits(
        exact_loo_refits(spec, (base.get("model_loo") or {}).get("pareto_k") or {}), refits,
        batch.load_records(Path(out)))
    if exact_loo and extra:
        report = run(refits + extra, True, False)
    return report


def refit_seed(seed: int, name: str) -> int:
    """The prediction seed of one refit: a function of the run seed and the refit's name, so
    that adding refits to a batch leaves the others' seeds alone."""
    import zlib

    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def elpd_difference(per_model: Mapping[str, float], baseline: Mapping[str, float]) -> dict:
    """ELPD(refit) - ELPD(baseline) over the models both scored, with the paired SE."""
    common = sorted(set(per_model) & set(baseline))
    d = np.array([per_model[m] - baseline[m] for m in common])
    return {"difference": float(d.sum()), "se": float(math.sqrt(d.size * np.var(d))),
            "n_models": len(common)}


def family_verdict(entry: dict, baseline: dict) -> bool | None:
    """Is the refit's doubling-time median inside the baseline's interval?"""
    ref, mine = baseline.get("doubling_time_days"), entry.get("doubling_time_days")
    if not ref or not mine or mine.get("median") is None:
        return None
    upper = math.inf if ref["upper"] is None else ref["upper"]
    return bool(ref["lower"] <= mine["median"] <= upper)


def write_robustness_outputs(out: Path, refits: Sequence[Refit], records: Mapping[str, dict],
                             spec: ModelSpec, *, data_folder: Path, wall_seconds: float) -> dict:
    """robustness.json (one entry per refit, with its verdict), robustness.csv and the held-out
    score and model tables."""
    out = Path(out)
    base = (records.get("baseline") or {}).get("result") or {}
    base_loo = (base.get("model_loo") or {}).get("per_model", {})
    base_density = base.get("densities", {})
    entries, score_tables, model_tables = [], [], []
    for r in refits:
        record = records[r.task_id]
        result = record["result"] or {}
        entry = {"name": r.name, "kind": r.kind, "description": r.description,
                 "structure": r.structure, "held_out": list(r.held_out),
                 **{q: result.get(q) for q in REPORTED},
                 "prob_slope_difference_positive": result.get("prob_slope_difference_positive"),
                 **{q: result[q] for q in STRUCTURE_TERMS if q in result},
                 "diagnostics": result.get("diagnostics"),
                 "n_models": result.get("n_models"), "n_scores": result.get("n_scores"),
                 "prediction": result.get("prediction"),
                 "status": record["status"], "error": record["error"],
                 "seconds": record.get("seconds")}
        loo = result.get("model_loo")
        if loo:
            entry["model_loo"] = {k: loo[k] for k in ("elpd", "se", "p_loo", "share_k_good",
                                                      "pareto_k") if k in loo}
            if r.kind != "baseline" and base_loo:
                entry["model_loo"]["vs_baseline"] = elpd_difference(loo["per_model"], base_loo)
        if r.kind == "family":
            entry["median_inside_baseline"] = family_verdict(entry, base)
        if r.kind in ("future", "family"):
            p = entry["prediction"] or {}
            entry["coverage_in_band"] = (None if p.get("coverage") is None else
                                         COVERAGE_BAND[0] <= p["coverage"] <= COVERAGE_BAND[1])
        if "heldout_scores" in result:
            scores = _named_formats(pd.DataFrame(result["heldout_scores"]))
            entry["prediction"] = {**(entry["prediction"] or {}), **prediction_summary(scores)}
            score_tables.append(scores.assign(refit=r.name))
            models = pd.DataFrame(result["heldout_models"]).assign(refit=r.name)
            # the full refit's densities are this model's: comparable only under the same model
            same_model = r.spec.model_hash() == spec.model_hash()
            full = models["model"].map(lambda m: (base_density.get(m) or {}).get("median")
                                       if same_model else None).astype(float)
            models["full_fit_density_median"] = full
            models["full_fit_inside"] = ((full >= models["density_lower"])
                                         & (full <= models["density_upper"])).where(full.notna())
            model_tables.append(models)
            if full.notna().any():
                entry["prediction"] = {**(entry["prediction"] or {}),
                                       "density_coverage": float(
                                           models["full_fit_inside"].dropna().mean())}
        if (result.get("heldout_elpd") or {}).get("per_model"):
            entry["prediction"] = {**(entry["prediction"] or {}),
                                   **log_score_summary(result["heldout_elpd"])}
        if result.get("exact_loo"):
            m = r.held_out[0]
            exact = result["exact_loo"]
            entry["exact_loo"] = {"model": m, "elpd": exact["per_model"][m],
                                  "mcse": exact["mcse"][m], "n_rows": exact["n_rows"][m],
                                  "psis_elpd": base_loo.get(m),
                                  "pareto_k": ((base.get("model_loo") or {}).get("pareto_k")
                                               or {}).get(m)}
        entries.append(entry)
    _with_exact_elpd(entries, base_loo)
    report = {
        "spec": spec.name,
        "config_hash": spec.config_hash(),
        "model_hash": spec.model_hash(),
        "data_folder": str(data_folder),
        "sampler": spec.sampler.model_dump(),
        "ci_prob": spec.ci_prob,
        "predictive_prob": PREDICTIVE_PROB,
        "coverage_band": list(COVERAGE_BAND),
        "refits": entries,
        "timing": batch.records_timing(records, wall_seconds),
    }
    batch.write_json_atomic(out / ROBUSTNESS_JSON, report)
    robustness_table(entries).to_csv(out / ROBUSTNESS_CSV, index=False)
    if score_tables:
        pd.concat(score_tables, ignore_index=True).to_csv(out / HELDOUT_SCORES_CSV, index=False)
        pd.concat(model_tables, ignore_index=True).to_csv(out / HELDOUT_MODELS_CSV, index=False)
    return report


def _with_exact_elpd(entries: list[dict], psis: Mapping[str, float]) -> None:
    """The baseline's leave-one-model-out ELPD with every exactly refitted model's PSIS term
    replaced by its exact one (``model_loo.exact``): the models with k > 0.7, their refits,
    the corrected total and SE (the other models' PSIS terms unchanged)."""
    from densing_bayes.analysis.model_loo import PARETO_K_GOOD

    base = next((e for e in entries if e["kind"] == "baseline" and e.get("model_loo")), None)
    if base is None:
        return
    exact = {e["exact_loo"]["model"]: e["exact_loo"] for e in entries
             if e["kind"] == "exact" and e.get("status") == "ok" and e.get("exact_loo")}
    k = base["model_loo"].get("pareto_k") or {}
    high = sorted(m for m, v in k.items() if v > PARETO_K_GOOD)
    per_model = dict(psis)
    if not exact or not per_model:
        base["model_loo"]["exact"] = {"high_k": high, "refitted": sorted(exact)}
        return
    for m, e in exact.items():
        per_model[m] = e["elpd"]
    values = np.array(list(per_model.values()))
    base["model_loo"]["exact"] = {
        "high_k": high, "refitted": sorted(exact),
        "elpd": float(values.sum()), "se": float(math.sqrt(values.size * np.var(values))),
        "change": float(sum(e["elpd"] - psis[m] for m, e in exact.items() if m in psis))}


def _named_formats(scores: pd.DataFrame) -> pd.DataFrame:
    """Format names for records that stored the codes (written before the names were): the
    codes index ``CURVE_FORMATS`` when a data folder has curves in every format, as the
    bundled one does."""
    from densing_bayes.model.inputs import CURVE_FORMATS

    if pd.api.types.is_numeric_dtype(scores["format"]):
        scores = scores.assign(format=[format_name(int(c), CURVE_FORMATS)
                                       for c in scores["format"]])
    return scores


def robustness_table(entries: Sequence[dict]) -> pd.DataFrame:
    """One row per refit: doubling times, slope difference, held-out coverage, ELPD, sampler."""
    rows = []
    for e in entries:
        row = {"refit": e["name"], "kind": e["kind"], "status": e["status"],
               "n_held_out": len(e["held_out"])}
        for q in REPORTED:
            interval = e[q] or {}
            row.update({f"{q}_{k}": interval.get(k) for k in ("median", "lower", "upper")})
        p = e.get("prediction") or {}
        row.update({f"heldout_{k}": p.get(k) for k in ("n_rows", "coverage", "mean_error",
                                                       "density_coverage", "elpd",
                                                       "elpd_mcse")})
        loo = (e.get("model_loo") or {}).get("vs_baseline") or {}
        row.update(elpd_difference=loo.get("difference"), elpd_difference_se=loo.get("se"))
        diag = e["diagnostics"] or {}
        row.update({k: diag.get(k) for k in ("divergences", "max_rhat", "min_ess_bulk",
                                             "passed")})
        rows.append(row)
    return pd.DataFrame(rows)

