"""Simulation-based calibration (SBC) of the joint model on the paper's design or a data folder's,
and posterior SBC of a fitted run (``run_posterior_sbc``: truths from the run's posterior, the
real data plus one replicate fitted jointly; Sailynoja et al. 2025, arXiv:2502.03279).

Prior SBC (Talts et al. 2018, arXiv:1804.06788; Modrak et al. 2023, arXiv:2211.02383): draw a
truth from the model's own prior, data from the model given that truth, fit, and record the rank
of the truth among (roughly independent) posterior draws. If the sampler returns the exact
posterior, every rank is uniform, whatever the prior; a skewed, peaked or U-shaped rank
histogram shows bias, over- or under-dispersion.

Choices, and why:

* **The design is the paper's** (``densing_bayes.data.simulate``, seed ``DESIGN_SEED``) or,
  with ``design="bundled"`` (or any data folder), the real data's: its covariates (reference
  sizes and tokens, curve-run losses and formats, release dates, sizes, which scores exist in
  which format, the unknown-format mixture weights, how reports collapse into measurements) are
  fixed, and the model's *prior predictive* replaces every observed value. Truths come from
  exactly the prior the fit uses; the simulator's ``draw_truth_from_prior`` is only "plausible" and would not give uniform ranks.
* **Data must have a finite likelihood.** Under the wide default priors about a quarter of the
  prior draws push some Beta-distributed score to exactly 0 or 1 in floating point. Such a draw
  is redrawn (up to ``MAX_PRIOR_ATTEMPTS``). A rule that looks at the data alone leaves
  p(theta | y) unchanged, so the ranks stay uniform.
* **One compiled model per worker.** The covariates never change, so each worker compiles the
  nutpie model, the prior sampler and the log-likelihood once (``batch.worker_cached``) and
  every simulation swaps its data in with ``with_data``: compilation is about a minute,
  sampling a few seconds.
* **Test quantities**: the slopes before and after the changepoint, the doubling times and the
  doubling-time ratio (the headline's acceleration; undefined draws rank below 0), the level
  (``trend_intercept``, the mean log density at the changepoint),
  the loss-law exponent alpha of every benchmark, when the model has them the drift and
  precision scales and the weakly identified parameters (frontier inefficiency and noise, the
  exponents' hyper-mean, the mean protocol offset), and the joint
  log-likelihood of the simulated data (a data-dependent quantity, which catches errors that
  leave every parameter's marginal ranks uniform; Modrak et al. 2023); posterior SBC also
  ranks its real and replicated halves.
* **Verdict**: one family-wise test over the quantities (``family_wise_uniformity``: Holm,
  each quantity Bonferroni over its chi-square and KS test, the doubling times left out as
  mirrors of the slopes); per-quantity tests at 0.05 would fail a perfect sampler in about
  0.8 of batches. A doubling time is
  infinite when its slope is not positive; ties are broken at random.
* **Thinning**: posterior draws are thinned to about the smallest bulk ESS of the test
  quantities, so that ranks behave like ranks among independent draws.
* **Uniformity**: ranks differ in their range (the thinned draw count varies), so each becomes
  a fractional rank u = (rank + U(0, 1)) / (L + 1), exactly uniform on (0, 1) under
  calibration. Each quantity gets a chi-square test on binned u and a Kolmogorov-Smirnov test,
  and an ECDF-difference plot with simultaneous 95% bands (Sailynoja et al. 2022).

Why not ``simuk`` (0.2.0 is what installs here; it was read, not adopted): it runs simulations
one after another in one process with ``pm.sample``, rebuilds and recompiles the model for every
simulation (``pm.observe``), keeps results in memory only (no per-task record, no resume after a
crash), stops at the first failing fit, ranks free variables only (no derived quantities, no
log-likelihood), does not thin, and its PyMC path calls ``sample_prior_predictive(samples=...)``
and depends on the arviz-base stack. Its core, ranking the prior draw among posterior draws, is
a few lines here; the rest of what this job needs is ``densing_bayes.inference.batch``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from densing_bayes import laws
from densing_bayes.inference import batch
from densing_bayes.model.spec import ModelSpec, SpecError

#: Seed of the simulated paper design whose covariates every simulation shares.
DESIGN_SEED = 1

#: Prior draws tried per simulation until one gives data with a finite likelihood.
MAX_PRIOR_ATTEMPTS = 50

#: Level of the per-quantity uniformity tests (and 1 - the ECDF bands' simultaneous coverage).
UNIFORMITY_ALPHA = 0.05

#: Deterministic variables that are ranked (the loss-law exponent per benchmark; the model
#: samples its logarithm): prior draws and posteriors must carry them besides the free ones.
RANKED_DETERMINISTICS = ("alpha",)

RANKS_CSV = "ranks.csv"
SBC_JSON = "sbc.json"
ECDF_PLOT = "sbc_ecdf"


# ------------------------------------------------------------------- the compiled structure
@dataclass(frozen=True)
class _Structure:
    """Everything one worker compiles once for a (spec, design): model, sampler, prior, loglik."""

    compiled: Any  # nutpie compiled model
    prior_fn: Any  # pytensor function: one joint draw, parameters then observed data
    prior_rngs: list  # its random generators, reseeded per simulation
    params: list[str]  # parameters in prior_fn's outputs (free variables, then deterministics)
    data: list[str]  # observed data in prior_fn's outputs, by pm.Data name
    loglik_fn: Any  # pytensor function: total log-likelihood(free variables, observed data)
    loglik_params: list[str]  # its parameter inputs, in order (untransformed free variables)
    loglik_data: list[str]  # its data inputs, in order
    benchmarks: list[str]
    #: Variables whose last axis is the benchmark (``rank_quantities``' ``per_benchmark``).
    per_benchmark: frozenset = frozenset()


#: Design names: the simulated paper design, or a data folder (bundled name or path) whose
#: covariates are kept; "bundled" is the spec's own data folder.
PAPER_DESIGN = "paper"


def design_folder(design: str, spec: ModelSpec | None = None) -> Path | None:
    """The data folder a data design takes its covariates from (None for the paper's)."""
    if design == PAPER_DESIGN:
        return None
    from densing_bayes.resources import resolve_data_folder

    if design == "bundled":
        design = spec.data.folder if spec is not None else "default"
    return resolve_data_folder(design)


def design_provenance(design: str, spec: ModelSpec | None = None) -> dict:
    """``{"data_hash": ...}`` of a data design's folder ({} for the paper's), for a batch's
    manifest: a batch simulated on one version of the data must neither be resumed on another
    nor vouch for a run fitted to another (the report's checks compare the hashes)."""
    try:
        folder = design_folder(design, spec)
    except FileNotFoundError:  # no such folder: the batch stops at its design with that message
        return {}
    if folder is None:
        return {}
    from densing_bayes.inference.run_io import data_hash

    return {"data_hash": data_hash(folder)}


def design_data(design_seed: int = DESIGN_SEED, design: str = PAPER_DESIGN,
                spec: ModelSpec | None = None):
    """The design as a DensingData (only its covariates matter here): the paper's simulated
    design, or a real data folder ("bundled": the spec's own)."""
    from densing_bayes.data.schema import DensingData
    from densing_bayes.data.simulate import simulate_design

    if design != PAPER_DESIGN:
        from densing_bayes.data.load import load_data

        return load_data(design_folder(design, spec))
    sim = simulate_design("paper", seed=design_seed)
    return DensingData(folder=Path(f"simulated-paper-seed-{design_seed}"),
                       reference_runs=sim.reference_runs, models=sim.models,
                       scores=sim.scores, benchmarks=sim.benchmarks)


def _build_structure(spec: ModelSpec, design_seed: int,
                     design: str = PAPER_DESIGN) -> _Structure:
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.tensor.random.type import RandomGeneratorType

    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    inputs = prepare_inputs(design_data(design_seed, design, spec), spec)
    model = build_model(inputs, spec)

    params = [*model.free_RVs, *(model[name] for name in RANKED_DETERMINISTICS)]
    prior_fn = compile_pymc(inputs=[], outputs=[*params, *model.observed_RVs], random_seed=0)
    return _Structure(
        prior_fn=prior_fn,
        prior_rngs=[v for v in prior_fn.get_shared() if isinstance(v.type, RandomGeneratorType)],
        params=[v.name for v in params],
        benchmarks=list(inputs.benchmarks),
        **_fit_parts(model),
    )


def _fit_parts(model, compile_nutpie: bool = True) -> dict:
    """What fits a model to swapped-in data and scores it: the nutpie model (compiled with its
    data as inputs; None without ``compile_nutpie``, for a caller that samples another
    parameterisation of it), the observed data's names, and the log-likelihood with the
    observed data as inputs (they change with every simulation), on the untransformed
    parameters (what priors and posteriors report)."""
    import nutpie

    return {"compiled": nutpie.compile_pymc_model(model) if compile_nutpie else None,
            "data": [model.rvs_to_values[rv].name for rv in model.observed_RVs],
            "per_benchmark": frozenset(name for name, dims in model.named_vars_to_dims.items()
                                       if dims and dims[-1] == "benchmark"),
            **_loglik_parts(model)}


def _loglik_parts(model) -> dict:
    """The total log-likelihood as a function of the untransformed parameters and the observed
    data (inputs, so that every simulation's data can be scored), with its inputs' names."""
    import pytensor

    params, placeholders, total = loglik_graph(model)
    loglik_fn = pytensor.function([*params, *placeholders], total, on_unused_input="ignore")
    return {"loglik_fn": loglik_fn,
            "loglik_params": [v.name for v in params],
            "loglik_data": [s.name for s in placeholders]}


def loglik_graph(model) -> tuple[list, list, Any]:
    """(parameters, data, total): the total log-likelihood as a graph of the untransformed
    parameters (what priors and posteriors report) and of the observed data as inputs (they
    change with every simulation)."""
    from pymc.model.transform.conditioning import remove_value_transforms
    from pytensor.graph.replace import graph_replace

    umodel = remove_value_transforms(model)
    shared = [umodel.rvs_to_values[rv] for rv in umodel.observed_RVs]
    placeholders = [s.type(s.name) for s in shared]
    total = graph_replace(umodel.logp(vars=umodel.observed_RVs, sum=True),
                          dict(zip(shared, placeholders, strict=True)), strict=False)
    return list(umodel.value_vars), placeholders, total


def structure_key(spec: ModelSpec, design_seed: int, design: str = PAPER_DESIGN) -> str:
    """What makes two simulations share a compiled model: the spec minus sampler settings."""
    structural = spec.resolved().model_dump(
        mode="json", exclude={"name", "description", "sampler", "diagnostics", "ci_prob",
                              "variants"})
    return json.dumps({"spec": structural, "design_seed": design_seed, "design": design},
                      sort_keys=True)


def _loglik(structure: _Structure, params: Mapping[str, Any],
            observed: Mapping[str, np.ndarray]) -> float:
    args = [params[n] for n in structure.loglik_params] + [observed[n]
                                                          for n in structure.loglik_data]
    return float(structure.loglik_fn(*args))


def _prior_draw(structure: _Structure, seed: int) -> tuple[dict, dict, int]:
    """(true parameters, observed data, attempts): the first draw whose data the model can score."""
    from pymc.pytensorf import reseed_rngs

    reseed_rngs(structure.prior_rngs, seed)
    n_params = len(structure.params)
    for attempt in range(1, MAX_PRIOR_ATTEMPTS + 1):
        values = structure.prior_fn()
        params = dict(zip(structure.params, values[:n_params], strict=True))
        observed = dict(zip(structure.data, values[n_params:], strict=True))
        if math.isfinite(_loglik(structure, params, observed)):
            return params, observed, attempt
    raise RuntimeError(f"no prior draw in {MAX_PRIOR_ATTEMPTS} gave data with a finite "
                       "likelihood (scores at exactly 0 or 1)")


# ------------------------------------------------------------------- test quantities and ranks
#: Ranked when the spec has them: the spread of the benchmarks' drift (it trades against the
#: common slope) and the precision factor of unstated formats (it sets how much the 600
#: transcribed scores weigh).
OPTIONAL_RANKED = ("benchmark_drift_sd", "score_precision_unstated")

#: Ranked when the model has them: the weakly identified parameters the reviews asked SBC to
#: check (the frontier's inefficiency and noise scales; the hyper-mean of the loss-law
#: exponents, which 8 of 10 exponents' high mean ranks point at), and the mean protocol offset
#: over the benchmarks (the direction that trades against the level).
WEAKLY_IDENTIFIED_RANKED = ("frontier_inefficiency", "frontier_noise", "loss_log_alpha_mu")

#: Ranked quantities that mirror another's ranks (a doubling time is ln 2 / slope, a decreasing
#: map, except that every slope <= 0 ties at +inf): tested and drawn, but left out of the
#: family-wise verdict, where they would count the slope's evidence twice.
MIRRORED_RANKED = {"doubling_time_days_pre": "slope_pre", "doubling_time_days": "slope_post"}

#: Ranked by the mean of their logarithms over the benchmarks (one quantity each, so that the
#: family-wise test keeps its power for the trend): the protocol scales and the Beta precisions
#: of the evaluated scores, the default score model's terms added in issue 18 (a shared
#: precision is ranked as its own logarithm).
LOG_MEAN_RANKED = ("protocol_scale", "score_precision_eval")

#: The ranked quantities the answer is read from (the trend's slopes and level, the doubling
#: times and their ratio) and the log-likelihoods, which test the joint posterior as a whole;
#: the other ranked quantities are nuisance parameters of the loss law or the score model.
ANSWER_RANKED = ("slope", "slope_pre", "slope_post", "doubling_time_days",
                 "doubling_time_days_pre", "doubling_time_ratio", "trend_intercept")


def is_answer_quantity(name: str) -> bool:
    """True for a quantity the answer is read from, or a log-likelihood (``ANSWER_RANKED``)."""
    return name in ANSWER_RANKED or name.startswith("log_likelihood")


def rank_quantities(values: Mapping[str, Any], benchmarks: list[str],
                    per_benchmark: Collection[str] = ()) -> dict[str, np.ndarray]:
    """The ranked quantities from parameter values (a truth, or arrays of draws).

    A doubling time is +inf where its slope is not positive: the density never doubles.
    ``per_benchmark``: the variables whose last axis is the benchmark (a truth and its draws
    differ in their leading axes, so the shape alone cannot tell a shared value from one per
    benchmark).
    """
    def doubling_days(slope):
        slope = np.asarray(slope, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(slope > 0, math.log(2.0) / slope * laws.DAYS_PER_YEAR, np.inf)

    out: dict[str, np.ndarray] = {}
    if "slope" in values:
        out["slope"] = np.asarray(values["slope"], dtype=float)
        out["doubling_time_days"] = doubling_days(values["slope"])
    else:
        pre = np.asarray(values["slope_pre"], dtype=float)
        post = np.asarray(values["slope_post"], dtype=float)
        out.update(slope_pre=pre, slope_post=post, doubling_time_days_pre=doubling_days(pre),
                   doubling_time_days=doubling_days(post),
                   doubling_time_ratio=rankable_ratio(post, pre))
    if "trend_intercept" in values:  # the level: what the protocol offsets trade against
        out["trend_intercept"] = np.asarray(values["trend_intercept"], dtype=float)
    for name in (*OPTIONAL_RANKED, *WEAKLY_IDENTIFIED_RANKED):
        if name in values and name in per_benchmark:  # one per benchmark: their log-mean
            out[f"{name}_log_mean"] = np.log(np.asarray(values[name], dtype=float)).mean(-1)
        elif name in values:
            out[name] = np.asarray(values[name], dtype=float)
    if "protocol_offset" in values:
        out["protocol_offset_mean"] = np.asarray(values["protocol_offset"], float).mean(-1)
    for name in LOG_MEAN_RANKED:
        if name in values:
            logs = np.log(np.asarray(values[name], dtype=float))
            out[f"{name}_log_mean"] = logs.mean(-1) if name in per_benchmark else logs
    alpha = np.asarray(values["alpha"], dtype=float)
    for i, name in enumerate(benchmarks):
        out[f"alpha[{name}]"] = alpha[..., i]
    return out


def rankable_ratio(slope_post, slope_pre) -> np.ndarray:
    """The doubling-time ratio (``laws.doubling_time_ratio``, on [0, +inf]) with its undefined
    value (neither slope positive) placed at -1, below every defined one. Any fixed total order
    of a function of the parameters is a valid SBC test quantity; NaN has no order, so ranks
    against it would be wrong. (Batches written before 2026-12-03 ranked the plain slope ratio
    under the name ``acceleration_ratio``.)"""
    ratio = laws.doubling_time_ratio(slope_post, slope_pre)
    return np.where(np.isnan(ratio), -1.0, ratio)


def thin_to_ess(draws: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, float]:
    """Thin (chain, draw) arrays by a common factor so that about min-ESS draws remain.

    The ESS is the smallest bulk ESS among the quantities with finite draws (a doubling time
    is a monotone map of its slope and has the same rank-based ESS). Returns the flattened
    thinned draws, the thinning factor and that ESS.
    """
    finite = [v for v in draws.values() if np.isfinite(v).all()]
    ess = min(float(az.ess(np.asarray(v))) for v in finite)
    n_chains, n_draws = next(iter(draws.values())).shape
    factor = max(1, math.ceil(n_chains * n_draws / max(ess, 1.0)))
    return {k: v[:, ::factor].ravel() for k, v in draws.items()}, factor, ess


def rank_of(truth: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Number of draws below the truth, ties split at random (discrete or infinite values)."""
    below = int(np.sum(draws < truth))
    return below + int(rng.integers(0, int(np.sum(draws == truth)) + 1))


# ------------------------------------------------------------------- one simulation (a task)
def task_seeds(seed: int) -> tuple[int, int, int]:
    """(data, sampler, tie-breaking) seeds of one simulation, children of its task seed."""
    a, b, c = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))
    return a, b, c


def fit_simulated(structure: _Structure, observed: Mapping[str, np.ndarray], spec: ModelSpec,
                  seed: int):
    """Fit the compiled model to one simulated data set (one core; the batch runs tasks in
    parallel): (InferenceData, sampling seconds). ``mass_matrix = "dense"`` samples with the
    diagonal metric here: a simulated data set has no stored covariance of its own."""
    import nutpie

    start = time.perf_counter()
    s = spec.sampler
    idata = nutpie.sample(structure.compiled.with_data(**observed), draws=s.draws, tune=s.tune,
                          chains=s.chains, cores=1, seed=seed, progress_bar=False,
                          target_accept=s.target_accept, save_warmup=False,
                          low_rank_modified_mass_matrix=s.mass_matrix == "low_rank",
                          # where divergences start (:func:`divergence_locations`)
                          store_divergences=True, store_unconstrained=True)
    return idata, time.perf_counter() - start


def fit_whitened(structure: _Structure, metric, observed: Mapping[str, np.ndarray],
                 spec: ModelSpec, seed: int):
    """Fit a whitened compiled model (``structure.compiled``, of
    :func:`~densing_bayes.inference.metric.whitened_model`) to one data set in ``metric``'s
    coordinates (one core): (InferenceData with the model's own variables, sampling seconds).
    The tree depth is capped as in the main fit, so a bad adaptation shows as a slow, flagged
    fit instead of stalling the batch."""
    import nutpie

    from densing_bayes.inference import metric as dense_metric
    from densing_bayes.inference.sample import WHITENED_MAX_DEPTH

    start = time.perf_counter()
    s = spec.sampler
    model = structure.compiled.with_data(**metric.data(), **observed)
    idata = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=1,
                          seed=seed, progress_bar=False, target_accept=s.target_accept,
                          save_warmup=False, maxdepth=WHITENED_MAX_DEPTH)
    idata.posterior = dense_metric.drop_white(idata.posterior)
    return idata, time.perf_counter() - start


def fit_diagnostics(idata, min_ess_bulk: float, max_rhat: float | None) -> dict:
    """A simulated fit's diagnostics for its task record: divergences and where they start,
    leapfrog steps per draw (the geometry's cost), the ranked quantities' ESS and R-hat."""
    from densing_bayes.inference.diagnostics import divergence_locations

    stats = idata.sample_stats
    return {"divergences": int(stats["diverging"].sum()),
            "divergence_locations": divergence_locations(idata),
            "mean_leapfrog_steps": float(stats["n_steps"].mean()) if "n_steps" in stats
            else None,
            "min_ess_bulk": min_ess_bulk, "max_rhat": max_rhat}


def simulate_and_rank(spec: ModelSpec, design_seed: int, sim_id: int, seed: int,
                      design: str = PAPER_DESIGN) -> dict:
    """One SBC simulation: prior draw -> simulated data -> fit -> ranks (a batch task)."""
    start = time.perf_counter()
    structure, build_seconds = batch.worker_cached(
        structure_key(spec, design_seed, design),
        lambda: _build_structure(spec, design_seed, design))
    prior_seed, sampler_seed, tie_seed = task_seeds(seed)
    truth, observed, attempts = _prior_draw(structure, prior_seed)
    idata, sample_seconds = fit_simulated(structure, observed, spec, sampler_seed)
    return _ranked_record(structure, truth, observed, idata, sim_id=sim_id, seed=seed,
                          tie_seed=tie_seed, attempts=attempts, build_seconds=build_seconds,
                          sample_seconds=sample_seconds, start=start)


def _ranked_record(structure: _Structure, truth: Mapping[str, Any],
                   observed: Mapping[str, np.ndarray], idata, *, sim_id: int, seed: int,
                   tie_seed: int, attempts: int, build_seconds: float, sample_seconds: float,
                   start: float, extra: Callable[[Mapping], dict] | None = None) -> dict:
    """A simulation's task record: the truth's ranks among the thinned posterior draws of
    every test quantity, the truths, the fit's diagnostics and the timings. ``extra``: more
    scalar quantities of a parameter set (the truth, each draw), ranked like the others."""
    draws = _posterior_quantities(structure, idata, observed, extra)
    thinned, factor, ess = thin_to_ess(draws)
    true_values = {**rank_quantities(truth, structure.benchmarks, structure.per_benchmark),
                   "log_likelihood": _loglik(structure, truth, observed),
                   **(extra(truth) if extra else {})}
    rng = np.random.default_rng(tie_seed)
    return {
        "sim_id": sim_id,
        "seed": seed,
        "n_draws": int(next(iter(thinned.values())).size),
        "thin": factor,
        "ranks": {q: rank_of(float(true_values[q]), thinned[q], rng) for q in draws},
        "truth": {q: float(v) for q, v in true_values.items()},
        "prior_attempts": attempts,
        "diagnostics": fit_diagnostics(idata, ess, max(float(az.rhat(v))
                                                       for v in draws.values()
                                                       if np.isfinite(v).all())),
        "timing": {"build_seconds": build_seconds, "sample_seconds": sample_seconds,
                   "total_seconds": time.perf_counter() - start},
    }


def _posterior_quantities(structure: _Structure, idata, observed,
                          extra: Callable[[Mapping], dict] | None = None
                          ) -> dict[str, np.ndarray]:
    """(chain, draw) arrays of every test quantity, the log-likelihood and ``extra``'s
    quantities included."""
    post = idata.posterior
    values = {name: post[name].values
              for name in [*structure.loglik_params, *RANKED_DETERMINISTICS]}
    draws = rank_quantities(values, structure.benchmarks, structure.per_benchmark)
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    scalars: dict[str, np.ndarray] = {}
    for c in range(n_chains):
        for d in range(n_draws):
            point = {k: v[c, d] for k, v in values.items()}
            found = {"log_likelihood": _loglik(structure, point, observed),
                     **(extra(point) if extra else {})}
            for name, value in found.items():
                scalars.setdefault(name, np.empty((n_chains, n_draws)))[c, d] = value
    return {**draws, **scalars}


# ------------------------------------------------------------------- posterior SBC
@dataclass(frozen=True)
class _PosteriorStructure:
    """What one worker compiles once for posterior SBC of a run: the joint model of the real
    data and one replicate (fitted), and the single model's forward draw of a replicate."""

    fit: _Structure  # the joint model; its prior fields are unused
    forward_fn: Any  # pytensor function: free variables -> one replicate of the observed data
    forward_rngs: list  # its random generators, reseeded per simulation
    free: list[str]  # forward_fn's inputs, by name
    real: dict  # the real observed data, by pm.Data name
    truths: dict  # the run's thinned posterior draws (draw, ...) of the free and ranked variables
    single_loglik: Any  # the log-likelihood of one copy of the data (real or replicate)
    metric: Any = None  # the run's stored metric (StoredMetric) whitening the joint fits, or None


#: The ``design`` recorded for posterior SBC batches (the design is the run's own data).
POSTERIOR_DESIGN = "posterior"


def forward_replicate(model) -> tuple[Any, list, list[str]]:
    """(function, its random generators, its inputs' names): one replicate of every observed
    variable of ``model`` (in ``model.observed_RVs`` order) given the free variables the data
    depend on. Posterior SBC draws each simulation's replicate with it."""
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.random.type import RandomGeneratorType

    # the free variables the data depend on, each replaced by an input, all at once (a
    # hyper-parameter drops out once its children are given, so some inputs go unused)
    upstream = set(ancestors(model.observed_RVs))
    stand_ins = {rv: rv.type(name=rv.name) for rv in model.free_RVs if rv in upstream}
    replicate = clone_replace(model.observed_RVs, replace=stand_ins)
    fn = compile_pymc(inputs=list(stand_ins.values()), outputs=replicate, random_seed=0,
                      on_unused_input="ignore")
    rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
    return fn, rngs, [v.name for v in stand_ins.values()]


def _build_posterior_structure(spec: ModelSpec, run_folder: Path) -> _PosteriorStructure:
    import nutpie
    from pymc.model.transform.optimization import freeze_dims_and_data

    from densing_bayes.inference import metric as dense_metric
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs, replicate_rows

    post = posterior_sbc_draws(spec, run_folder)
    inputs = prepare_inputs(design_data(design="bundled", spec=spec), spec)
    single = build_model(inputs, spec)
    forward_fn, forward_rngs, free = forward_replicate(single)
    data = [single.rvs_to_values[rv].name for rv in single.observed_RVs]
    names = [*(rv.name for rv in single.free_RVs), *RANKED_DETERMINISTICS]
    stacked = post.stack(sample=("chain", "draw"))
    truths = {n: np.moveaxis(stacked[n].values, -1, 0) for n in names}
    joint = build_model(replicate_rows(inputs, 2), spec)
    metric = joint_fit_metric(spec, run_folder)
    parts = _fit_parts(joint, compile_nutpie=metric is None)
    if metric is not None:
        # the joint model in the run's whitened coordinates, its observed data kept swappable
        white = freeze_dims_and_data(dense_metric.with_probit_fractions(joint), data=[])
        if not metric.matches(dense_metric.value_layout(white)):
            raise SpecError(f"the stored metric of {run_folder} does not fit its model's "
                            "coordinates; refit the run")
        parts["compiled"] = nutpie.compile_pymc_model(dense_metric.whitened_model(white),
                                                      freeze_model=False)
    return _PosteriorStructure(
        fit=_Structure(prior_fn=None, prior_rngs=[], params=names,
                       benchmarks=list(inputs.benchmarks), **parts),
        forward_fn=forward_fn,
        forward_rngs=forward_rngs,
        free=free,
        real={n: np.asarray(single[n].get_value()) for n in data},
        truths=truths,
        single_loglik=SimpleNamespace(**_loglik_parts(single)),
        metric=metric)


def joint_fit_metric(spec: ModelSpec, run_folder: Path):
    """The metric that whitens posterior SBC's joint fits: the run's own (the covariance that
    whitened its fit, :func:`~densing_bayes.inference.metric.metric_from_run`) when the spec
    samples with a dense metric and the run has one, else None (the diagonal metric).

    Why: the joint posterior of the real data and one replicate is the run's posterior,
    narrowed and moved by the replicate, so the run's metric fits it nearly as well as it
    fits the run. With the diagonal metric a joint fit needed about 200 leapfrog steps per
    draw and, in 300 + 300 iterations, did not always reach the truth's tail in its slowest
    direction (a benchmark's loss-law exponent against its N-share): two of the fits that
    ranked OpenBookQA's exponent at 0, refitted 3.3 times longer, ranked it at 0.11 and 0.01
    (docs/model.md). Whitened, a joint fit takes about 31 steps per draw and a fifth of the
    time. The rank test stays valid: the metric is fixed before any simulation and only
    tunes NUTS."""
    from densing_bayes.inference import metric as dense_metric

    if spec.sampler.mass_matrix != "dense":
        return None
    try:
        return dense_metric.metric_from_run(run_folder)
    except dense_metric.MetricError:
        return None


def joint_fit_metric_record(spec: ModelSpec, run_folder: Path) -> str:
    """What whitened a posterior SBC batch's joint fits: the run's metric's SHA-256, or
    "diagonal". It is in the batch manifest, so a batch is never resumed under the other."""
    from densing_bayes.inference import metric as dense_metric

    metric = joint_fit_metric(spec, run_folder)
    return "diagonal" if metric is None else dense_metric.metric_digest(metric)


def posterior_sbc_draws(spec: ModelSpec, run_folder: Path):
    """The posterior draws posterior SBC takes its truths from: the run's thinned copy (it is
    what a clone of the repository has, so a batch is reproducible anywhere), or its full
    draws when it has no thinned copy. Refuses a run of another model than ``spec``'s."""
    from densing_bayes.inference.run_io import load_run
    from densing_bayes.inference.thin import THIN_FILE

    run = load_run(Path(run_folder))
    if run.spec.model_hash() != spec.model_hash():
        raise SpecError(f"posterior SBC refits the model of {run_folder}; the spec given is "
                        "another model (use the run's spec.toml, with sampler settings only)")
    source = posterior_sbc_source(run_folder)
    return (az.from_netcdf(source) if source.name == THIN_FILE else run.idata).posterior


def posterior_sbc_source(run_folder: Path) -> Path:
    """The file of the run the truths are drawn from (its thinned copy when it has one)."""
    from densing_bayes.inference.run_io import POSTERIOR_FILE
    from densing_bayes.inference.thin import THIN_FILE

    thin = Path(run_folder) / THIN_FILE
    return thin if thin.is_file() else Path(run_folder) / POSTERIOR_FILE


def truths_record(run_folder: Path) -> dict:
    """Which posterior a posterior-SBC batch drew its truths from (file name and SHA-256), so
    the report can tell a batch of this run's posterior from one of an earlier fit of it."""
    from densing_bayes.inference.run_io import file_sha256

    source = posterior_sbc_source(run_folder)
    return {"file": source.name, "sha256": file_sha256(source)}


def _posterior_draw(structure: _PosteriorStructure, seed: int) -> tuple[dict, dict, int]:
    """(truth, observed, attempts): a draw of the run's posterior and the real data followed by
    one replicate given it. When the replicate's likelihood is not finite, the truth and the
    replicate are drawn again together: a rule on the data alone then leaves the posterior of
    the accepted pairs unchanged. Redrawing only the replicate would weight each truth by
    1 / P(accept | truth), so its ranks would no longer be uniform."""
    from pymc.pytensorf import reseed_rngs

    rng = np.random.default_rng(seed)
    n_truths = next(iter(structure.truths.values())).shape[0]
    reseed_rngs(structure.forward_rngs, seed)
    for attempt in range(1, MAX_PRIOR_ATTEMPTS + 1):
        index = int(rng.integers(n_truths))
        truth = {n: v[index] for n, v in structure.truths.items()}
        replicate = structure.forward_fn(*[truth[n] for n in structure.free])
        observed = {n: np.concatenate([real, np.asarray(r)])
                    for (n, real), r in zip(structure.real.items(), replicate, strict=True)}
        if math.isfinite(_loglik(structure.fit, truth, observed)):
            return truth, observed, attempt
    raise RuntimeError(f"no replicate in {MAX_PRIOR_ATTEMPTS} gave data with a finite "
                       "likelihood (scores at exactly 0 or 1)")


def posterior_simulate_and_rank(spec: ModelSpec, run_folder: str, sim_id: int,
                                seed: int) -> dict:
    """One posterior SBC simulation: posterior draw -> replicate -> joint fit -> ranks."""
    start = time.perf_counter()
    key = json.dumps({"posterior_sbc": str(Path(run_folder).resolve()),
                      "spec": json.loads(structure_key(spec, 0, POSTERIOR_DESIGN))})
    structure, build_seconds = batch.worker_cached(
        key, lambda: _build_posterior_structure(spec, Path(run_folder)))
    draw_seed, sampler_seed, tie_seed = task_seeds(seed)
    truth, observed, attempts = _posterior_draw(structure, draw_seed)
    if structure.metric is None:
        idata, sample_seconds = fit_simulated(structure.fit, observed, spec, sampler_seed)
    else:
        idata, sample_seconds = fit_whitened(structure.fit, structure.metric, observed, spec,
                                             sampler_seed)
    return _ranked_record(structure.fit, truth, observed, idata, sim_id=sim_id, seed=seed,
                          tie_seed=tie_seed, attempts=attempts, build_seconds=build_seconds,
                          sample_seconds=sample_seconds, start=start,
                          extra=lambda point: split_log_likelihood(structure, point, observed))


def split_log_likelihood(structure: _PosteriorStructure, params: Mapping[str, Any],
                         observed: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The joint log-likelihood's two halves: of the real data and of the replicate. Ranked
    apart, they say which side a low joint rank comes from: truths that fit the real data
    worse than the fit's draws (the run's posterior is wider than the exact one) or draws
    that fit the replicate better than its truth (the fit is too concentrated)."""
    real = {n: v[:len(structure.real[n])] for n, v in observed.items()}
    replicate = {n: v[len(structure.real[n]):] for n, v in observed.items()}
    return {"log_likelihood_real": _loglik(structure.single_loglik, params, real),
            "log_likelihood_replicate": _loglik(structure.single_loglik, params, replicate)}


def run_posterior_sbc(spec: ModelSpec, run_folder: Path, n_simulations: int, out: Path, *,
                      resume: bool = False, force: bool = False, scheduler: str | None = None,
                      n_workers: int | None = None, progress: bool = True,
                      only: Sequence[int] | None = None) -> dict:
    """Posterior SBC of a fitted run (Sailynoja et al. 2025, arXiv:2502.03279): truths are
    draws of the run's posterior, each simulation's data are the run's real data plus one
    replicate drawn given the truth, and the model is fitted to both. The truth is then a
    draw of the joint posterior, so its ranks are uniform when the computation is right for
    data like the real ones, where the answer is read; prior SBC checks it over the whole
    prior, in worlds far from them."""
    check_simulation_batch(spec, n_simulations, "posterior SBC")
    posterior_sbc_draws(spec, run_folder)  # refuse another model before a folder is touched
    tasks = _simulation_tasks(spec, n_simulations, only, posterior_simulate_and_rank,
                              {"run_folder": str(run_folder)})
    manifest = {"job": "sbc", "spec": spec.name, "config_hash": spec.config_hash(),
                "design": POSTERIOR_DESIGN, "posterior_of": str(run_folder),
                "joint_fit_metric": joint_fit_metric_record(spec, run_folder)}
    start = time.perf_counter()
    records = batch.run_batch(tasks, out, manifest=manifest, resume=resume, force=force,
                              scheduler=scheduler, n_workers=n_workers, progress=progress,
                              desc="posterior sbc")
    return write_sbc_outputs(out, records, spec, wall_seconds=time.perf_counter() - start,
                             extra={"posterior_of": str(run_folder),
                                    "truths_from": truths_record(run_folder),
                                    "joint_fit_metric": manifest["joint_fit_metric"]},
                             title="Posterior SBC")


# ------------------------------------------------------------------- uniformity
def fractional_ranks(ranks: np.ndarray, n_draws: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """u = (rank + U(0,1)) / (L + 1): exactly Uniform(0, 1) when rank is uniform on 0..L."""
    ranks, n_draws = np.asarray(ranks, float), np.asarray(n_draws, float)
    return (ranks + rng.uniform(size=ranks.shape)) / (n_draws + 1.0)


def uniformity_test(u: np.ndarray, alpha: float = UNIFORMITY_ALPHA) -> dict:
    """Chi-square on binned fractional ranks (>= 5 expected per bin) and Kolmogorov-Smirnov.

    ``uniform`` is True when neither test rejects at ``alpha``. Over many quantities, expect
    about alpha x 2 x (number of quantities) false alarms even under perfect calibration.
    """
    u = np.asarray(u, dtype=float)
    bins = int(np.clip(u.size // 5, 2, 20))
    counts, _ = np.histogram(u, bins=bins, range=(0.0, 1.0))
    p_chi2 = float(stats.chisquare(counts).pvalue)
    p_ks = float(stats.kstest(u, "uniform").pvalue)
    return {"n": int(u.size), "bins": bins, "p_chi2": p_chi2, "p_ks": p_ks,
            "uniform": bool(min(p_chi2, p_ks) >= alpha)}


def family_wise_uniformity(tests: Mapping[str, dict], alpha: float = UNIFORMITY_ALPHA) -> dict:
    """One verdict over the ranked quantities (a doubling time only when its slope is not
    ranked: :data:`MIRRORED_RANKED`), with the family-wise error held at ``alpha``.

    Each quantity's p is Bonferroni over its two tests, 2 x min(p_chi2, p_ks); the quantities'
    p are then Holm-adjusted. Per-quantity tests at 0.05 over 19 quantities reject some
    quantity in about 0.8 of batches of a perfect sampler (measured with the rank dependence of
    the bundled batch: docs/experiments/sbc_multiplicity.py), so "none rejected" could not be
    the bar; this rule rejects a perfect sampler at about ``alpha``.
    """
    p = {q: min(1.0, 2.0 * min(t["p_chi2"], t["p_ks"])) for q, t in tests.items()
         if MIRRORED_RANKED.get(q) not in tests}
    order = sorted(p, key=p.get)
    adjusted, running = {}, 0.0
    for i, q in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[q]))
        adjusted[q] = running
    return {"method": "holm over quantities of 2 x min(p_chi2, p_ks)", "alpha": alpha,
            "adjusted_p": adjusted, "rejected": [q for q in order if adjusted[q] < alpha]}


# ------------------------------------------------------------------- the job
def simulation_seeds(seed: int, n: int) -> list[int]:
    """Seed of simulation i: child i of the run seed, the same whatever n (runs can grow)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def check_simulation_batch(spec: ModelSpec, n_simulations: int, job: str) -> None:
    """Refuse a batch this job cannot run, before any folder is touched."""
    if spec.sampler.backend != "nutpie":
        raise SpecError(f"{job} swaps each simulation's data into one compiled nutpie model; "
                        f"the {spec.sampler.backend!r} backend is not supported here")
    if n_simulations < 1:
        raise ValueError(f"--simulations must be at least 1, got {n_simulations}")


def sbc_tasks(spec: ModelSpec, n_simulations: int, *, only: Sequence[int] | None = None,
              design_seed: int = DESIGN_SEED, design: str = PAPER_DESIGN) -> list[batch.Task]:
    """The batch's tasks: simulations 0..n-1, or only the ids in ``only``, each with the seed
    it has in the full batch (so a batch of some ids with longer chains refits the same data)."""
    return _simulation_tasks(spec, n_simulations, only, simulate_and_rank,
                             {"design_seed": design_seed, "design": design})


def _simulation_tasks(spec: ModelSpec, n_simulations: int, only: Sequence[int] | None,
                      function, kwargs: Mapping[str, Any]) -> list[batch.Task]:
    """Tasks ``function(spec=, sim_id=, seed=, **kwargs)`` for simulations 0..n-1 or the ids in
    ``only``, each with the seed it has in the full batch."""
    ids = list(range(n_simulations)) if only is None else sorted(set(only))
    if any(not 0 <= i < n_simulations for i in ids):
        raise ValueError(f"simulation ids must lie in 0..{n_simulations - 1}, got {ids}")
    seeds = simulation_seeds(spec.sampler.seed, n_simulations)
    return [batch.Task(f"sim_{i:05d}", function,
                       {"spec": spec, "sim_id": i, "seed": seeds[i], **kwargs})
            for i in ids]


def run_sbc(spec: ModelSpec, n_simulations: int, out: Path, *, resume: bool = False,
            force: bool = False, scheduler: str | None = None, n_workers: int | None = None,
            progress: bool = True, design_seed: int = DESIGN_SEED,
            design: str = PAPER_DESIGN, only: Sequence[int] | None = None) -> dict:
    """Run (or resume) an SBC batch into ``out``; write ranks.csv, sbc.json and the ECDF plots.
    ``only``: run just these simulation ids of the n (:func:`sbc_tasks`)."""
    check_simulation_batch(spec, n_simulations, "SBC")
    tasks = sbc_tasks(spec, n_simulations, only=only, design_seed=design_seed, design=design)
    # The number of simulations is not part of the manifest: a resume may add simulations.
    manifest = {"job": "sbc", "spec": spec.name, "config_hash": spec.config_hash(),
                "design_seed": design_seed, "design": design,
                **design_provenance(design, spec)}
    start = time.perf_counter()
    records = batch.run_batch(tasks, out, manifest=manifest, resume=resume, force=force,
                              scheduler=scheduler, n_workers=n_workers, progress=progress,
                              desc="sbc")
    return write_sbc_outputs(out, records, spec, wall_seconds=time.perf_counter() - start)


def ranks_table(records: Mapping[str, dict]) -> pd.DataFrame:
    """One row per simulation: id, seed, status, thinned draw count, the fit's divergences and
    minimum bulk ESS (to read the ranks of weak fits apart), one rank per quantity."""
    rows = []
    for task_id, record in records.items():
        result = record["result"] or {}
        diagnostics = result.get("diagnostics") or {}
        row = {"sim_id": int(task_id.split("_")[1]), "seed": result.get("seed"),
               "status": record["status"], "n_draws": result.get("n_draws"),
               "thin": result.get("thin"), "error": record["error"],
               "divergences": diagnostics.get("divergences"),
               "min_ess_bulk": diagnostics.get("min_ess_bulk")}
        row.update({f"rank_{q}": r for q, r in result.get("ranks", {}).items()})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("sim_id", kind="stable")
    return table.astype({c: "Int64" for c in table.columns
                         if c.startswith("rank_") or c in ("n_draws", "thin", "seed",
                                                          "divergences")})


def write_sbc_outputs(out: Path, records: Mapping[str, dict], spec: ModelSpec, *,
                      wall_seconds: float, extra: Mapping[str, Any] | None = None,
                      title: str = "SBC") -> dict:
    """ranks.csv, sbc.json (uniformity per quantity, timings, and ``extra``'s fields) and the
    ECDF-difference plots."""
    out = Path(out)
    table = ranks_table(records)
    table.to_csv(out / RANKS_CSV, index=False)
    ok = table[table["status"] == "ok"]
    quantities = [c.removeprefix("rank_") for c in table.columns if c.startswith("rank_")]
    rng = np.random.default_rng(spec.sampler.seed)
    # A quantity added to the ranks after a batch began is ranked in the later simulations only.
    fractional = {}
    for q in quantities:
        ranked = ok[ok[f"rank_{q}"].notna()]
        fractional[q] = fractional_ranks(ranked[f"rank_{q}"].to_numpy(float),
                                         ranked["n_draws"].to_numpy(float), rng)
    uniformity = {q: uniformity_test(u) for q, u in fractional.items() if u.size}
    report = {
        "spec": spec.name,
        "config_hash": spec.config_hash(),
        "model_hash": spec.model_hash(),
        "sampler": spec.sampler.model_dump(),
        "n_simulations": len(table),
        "n_ok": len(ok),
        "n_failed": int((table["status"] != "ok").sum()),
        "failures": {f"sim_{r.sim_id:05d}": r.error for r in table.itertuples()
                     if r.status != "ok"},
        "uniformity_alpha": UNIFORMITY_ALPHA,
        "uniformity": uniformity,
        "family_wise": family_wise_uniformity(uniformity),
        "sampler_diagnostics": sampler_diagnostics(records, spec),
        "divergent_vs_clean": divergent_vs_clean(table),
        "timing": compile_reuse_timing(records, wall_seconds),
        **(extra or {}),
    }
    batch.write_json_atomic(out / SBC_JSON, report)
    if len(ok):
        plot_ecdf_differences(fractional, out / ECDF_PLOT, title=title)
    return report


def sampler_diagnostics(records: Mapping[str, dict], spec: ModelSpec) -> dict:
    """How many fits missed the spec's thresholds. Prior draws reach corners of the parameter
    space the bundled data never visit, so this says where the sampler struggles; the ranks
    keep every fit (dropping the hard ones would bias them)."""
    diags = [r["result"]["diagnostics"] for r in records.values() if r["status"] == "ok"]
    if not diags:
        return {}
    t = spec.diagnostics
    # one chain has no R-hat (None): those fits are not counted as missing it
    rhats = [d["max_rhat"] for d in diags if d.get("max_rhat") is not None]
    return {
        "n_fits": len(diags),
        "n_with_divergences": sum(d["divergences"] > t.max_divergences for d in diags),
        "n_rhat_above": sum(r > t.max_rhat for r in rhats),
        "n_rhat_computed": len(rhats),
        "n_ess_bulk_below": sum(d["min_ess_bulk"] < t.min_ess for d in diags),
        "median_max_rhat": float(np.median(rhats)) if rhats else None,
        "median_min_ess_bulk": float(np.median([d["min_ess_bulk"] for d in diags])),
        "divergence_variables": divergence_variables(diags),
        # the divergent fits whose records can place their divergences (older ones cannot)
        "n_divergent_fits_placed": sum(
            d["divergences"] > 0 and all("in_tail" in row
                                         for row in d.get("divergence_locations") or [{}])
            for d in diags),
        "thresholds": t.model_dump(),
    }


def divergence_variables(diags: Sequence[Mapping]) -> dict[str, int]:
    """Across the divergent fits that recorded where their divergences start, how many have
    each variable among their coordinates whose starts sit in a tail beyond chance
    (``in_tail``; most frequent first): a variable in most of them is where the geometry
    breaks. Fits with few divergences cannot place them and count for nothing."""
    counts: dict[str, int] = {}
    for d in diags:
        for name in {row["variable"] for row in d.get("divergence_locations") or []
                     if row.get("in_tail")}:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def compile_reuse_timing(records: Mapping[str, dict], wall_seconds: float) -> dict:
    """What reusing compiled models saved: the compile time actually paid vs. one per fit."""
    timings = [r["result"]["timing"] for r in records.values() if r["status"] == "ok"]
    builds = [t["build_seconds"] for t in timings if t["build_seconds"] > 0]
    if not builds:
        return {"wall_seconds": wall_seconds}
    task_seconds = sum(t["total_seconds"] for t in timings)
    without_reuse = task_seconds + (len(timings) - len(builds)) * float(np.mean(builds))
    return {
        "wall_seconds": wall_seconds,
        "n_fits": len(timings),
        "n_compiles": len(builds),
        "compile_seconds_mean": float(np.mean(builds)),
        "sample_seconds_mean": float(np.mean([t["sample_seconds"] for t in timings])),
        "task_seconds_total": task_seconds,
        "task_seconds_without_reuse": without_reuse,
        "saved_fraction": 1.0 - task_seconds / without_reuse,
    }


# ------------------------------------------------------------------- sampler error in the ranks
#: Fewest fits in each group for the divergent-vs-clean comparison of a quantity.
MIN_FITS_PER_GROUP = 5


def divergent_vs_clean(table: pd.DataFrame) -> dict:
    """Do the fits with divergences rank the truth differently from the clean ones?

    Per quantity: the two groups' sizes and mean midpoint ranks, and the two-sided
    Mann-Whitney p-value of their difference. Whether a fit diverges depends on its data (and
    the sampler's seed), not on the truth given the data, so under a correct computation both
    groups' ranks are uniform; a small p says the divergent fits' posteriors are where the
    ranks go wrong, a large one with a failing quantity says the failure is not theirs.
    Empty when either group has fewer than ``MIN_FITS_PER_GROUP`` fits (or no record says).
    """
    if "divergences" not in table.columns:
        return {}
    ok = table[(table["status"] == "ok") & table["divergences"].notna()]
    divergent = set(ok.loc[ok["divergences"].astype(int) > 0, "sim_id"])
    ranks = midpoint_ranks(ok)
    out = {}
    for q in ranks.columns:
        u = ranks[q].dropna()
        bad = u[u.index.isin(divergent)]
        good = u[~u.index.isin(divergent)]
        if min(len(bad), len(good)) < MIN_FITS_PER_GROUP:
            continue
        out[q] = {"n_divergent": len(bad), "n_clean": len(good),
                  "mean_rank_divergent": float(bad.mean()),
                  "mean_rank_clean": float(good.mean()),
                  "p_mannwhitney": float(stats.mannwhitneyu(bad, good).pvalue)}
    return out


def midpoint_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """(rank + 1/2) / (L + 1) per simulation (rows, by sim_id) and quantity (columns): the
    fractional rank without its random tie-breaking, so that two batches compare exactly."""
    ok = table[table["status"] == "ok"].set_index("sim_id")
    ranks = ok[[c for c in ok.columns if c.startswith("rank_")]].astype(float)
    ranks.columns = [c.removeprefix("rank_") for c in ranks.columns]
    return (ranks + 0.5).div(ok["n_draws"].astype(float) + 1.0, axis=0)


def compare_rank_batches(short: pd.DataFrame, long: pd.DataFrame) -> dict:
    """The same simulations (same seeds: same truths and data) ranked by two batches that differ
    only in the sampler's effort: per quantity, the mean rank of each, the mean paired shift
    (long - short) with its standard error, and the rank correlation.

    Why: a batch of short fits that rejects uniformity cannot say whether the model or the
    sampler is at fault. If longer fits of the same data move the ranks systematically, the
    short fits' sampler error was in the ranks; if they agree up to Monte Carlo noise, it was not.
    """
    a, b = midpoint_ranks(short), midpoint_ranks(long)
    sims = a.index.intersection(b.index)
    out = {}
    for q in a.columns.intersection(b.columns):
        pair = pd.DataFrame({"short": a.loc[sims, q], "long": b.loc[sims, q]}).dropna()
        n = len(pair)
        if n < 2:
            continue
        shift = pair["long"] - pair["short"]
        out[q] = {"n": n,
                  "mean_rank_short": float(pair["short"].mean()),
                  "mean_rank_long": float(pair["long"].mean()),
                  "mean_shift": float(shift.mean()),
                  "shift_se": float(shift.std(ddof=1) / math.sqrt(n)),
                  "mean_abs_shift": float(shift.abs().mean()),
                  "spearman": float(stats.spearmanr(pair["short"], pair["long"]).statistic)}
    return out


def main(argv: list[str] | None = None) -> None:
    """python -m densing_bayes.analysis.calibration compare SHORT LONG [--out FILE]"""
    import argparse

    parser = argparse.ArgumentParser(description="Compare two SBC batches of the same "
                                     "simulations that differ in the sampler's effort.")
    parser.add_argument("command", choices=["compare"])
    parser.add_argument("short", type=Path, help="SBC folder of the shorter fits")
    parser.add_argument("long", type=Path, help="SBC folder of the longer fits")
    parser.add_argument("--out", type=Path, help="write the comparison here as JSON")
    args = parser.parse_args(argv)
    tables = [pd.read_csv(folder / RANKS_CSV) for folder in (args.short, args.long)]
    result = {"short": str(args.short), "long": str(args.long),
              "quantities": compare_rank_batches(*tables)}
    for folder, key in ((args.short, "short_sampler"), (args.long, "long_sampler")):
        report = json.loads((folder / SBC_JSON).read_text())
        result[key] = {"sampler": report["sampler"],
                       "diagnostics": report.get("sampler_diagnostics", {})}
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        batch.write_json_atomic(args.out, result)
    print(text, end="")


def plot_ecdf_differences(fractional: Mapping[str, np.ndarray], path: Path,
                          title: str = "SBC") -> None:
    """ECDF minus the uniform CDF of each quantity's fractional ranks, simultaneous 95% band.

    Inside the band everywhere: consistent with calibration. A curve above zero throughout
    means ranks pile up low (the posterior sits above the truth), below zero the reverse; a
    curve that rises above zero and then falls below it means ranks crowd both ends (the
    posterior is too narrow), the mirror image a posterior that is too wide.

    The band is ArviZ's "optimized" simultaneous band, asked for by name: for 200 or more
    simulations ``confidence_bands=True`` picks the "simulated" band, which ArviZ 0.23 draws
    from one repeated random sample when given a seed (a band narrower than the pointwise one).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [q for q, u in fractional.items() if u.size]
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False,
                             sharex=True, layout="constrained")
    grid = np.linspace(0.0, 1.0, 101)
    for ax, name in zip(axes.flat, names, strict=False):
        az.plot_ecdf(fractional[name], cdf=stats.uniform.cdf, difference=True,
                     confidence_bands="optimized", ci_prob=1 - UNIFORMITY_ALPHA,
                     eval_points=grid, ax=ax, plot_kwargs={"color": "#0072B2"},
                     fill_kwargs={"color": "#999999", "alpha": 0.35})
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_title(f"{name} (n={fractional[name].size})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank of the truth")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF - uniform CDF")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    n = max(fractional[q].size for q in names)
    fig.suptitle(f"{title}: rank ECDF differences, {n} simulations (grey: simultaneous "
                 f"{1 - UNIFORMITY_ALPHA:.0%} band of each panel, not of all panels together)")
    for suffix in (".png", ".svg"):
        fig.savefig(Path(path).with_suffix(suffix), dpi=150)
    plt.close(fig)


if __name__ == "__main__":
    main()
