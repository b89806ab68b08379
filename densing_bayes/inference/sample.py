"""Sampling: prior, posterior, posterior predictive and pointwise log-likelihood, all seeded.

The default backend is nutpie: ``densing-bayes bench`` measured 2.1x the ESS per second of
PyMC's NUTS on the bundled model and 2.7-3.5x on the paper design (medians over three seeds),
with 40% of its memory (README "Performance"). PyMC's
NUTS (``jitter+adapt_diag_grad``) and NumPyro (optional extra) are the alternatives. Every random
step takes its own seed derived from the spec's seed, so the same data, spec and seed give the
same InferenceData.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pymc as pm

from densing_bayes.inference import metric as dense_metric
from densing_bayes.inference.compile_cache import cache_dir
from densing_bayes.model.spec import BackendUnavailableError, SamplerSettings

log = logging.getLogger("densing_bayes")

#: Tree depth cap of the whitened sampler (255 leapfrog steps; it needs 31-63 when the stored
#: metric fits): a chain whose adaptation goes wrong costs at most a few times a good one
#: instead of stalling the fit at nutpie's default 1023, and the diagnostics then flag it.
WHITENED_MAX_DEPTH = 8
#: Mixed into the seed of a dense fit's pilot, so that pilot and fit draw independently.
PILOT_SEED_KEY = 7
#: A fit's covariance is stored for the next fit only if its chains agree this well.
METRIC_MAX_RHAT = 1.01

#: Draws of the prior (predictive) group: enough for prior-vs-posterior plots and checks.
PRIOR_DRAWS = 500


@dataclass(frozen=True)
class SamplingTimes:
    compile_seconds: float
    sample_seconds: float
    predictive_seconds: float


def loo_variable(model: pm.Model) -> str:
    """The observation LOO compares models on: evaluated scores, or the curve rows without them.

    Changepoint variants differ only in how they explain evaluated scores, so their pointwise
    log-likelihood is what PSIS-LOO needs; storing it for the thousands of reference rows too
    would only inflate the run folder.
    """
    names = [v.name for v in model.observed_RVs]
    return next(n for n in ("score_obs", "curve_score_obs", "log_loss_obs") if n in names)


def _seeds(seed: int) -> dict[str, int]:
    """Independent child seeds for each random step, from one user-facing seed."""
    children = np.random.SeedSequence(seed).spawn(4)
    keys = ("posterior", "prior", "posterior_predictive", "spare")
    return {k: int(c.generate_state(1)[0]) for k, c in zip(keys, children, strict=True)}


def _nutpie_kwargs(sampler: SamplerSettings, seed: int, progress: bool) -> dict:
    return dict(draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
                cores=min(sampler.chains, os.cpu_count() or 1), seed=seed, save_warmup=False,
                progress_bar=progress, target_accept=sampler.target_accept)


def _sample_nutpie(model: pm.Model, sampler: SamplerSettings, seed: int, progress: bool,
                   metric_key: str | None = None, metric=None):
    import nutpie

    if sampler.mass_matrix == "dense":
        return _sample_nutpie_dense(model, sampler, seed, progress, metric_key, metric)
    if metric is not None:
        raise dense_metric.MetricError(f"a stored metric was given, but the spec's "
                                       f"sampler.mass_matrix is {sampler.mass_matrix!r}, "
                                       "not 'dense'")
    start = time.perf_counter()
    # Freezing turns pm.Data and dims into compile-time constants. Measured side by side on the
    # bundled default model: compile 43 -> 31 s, gradient 654 -> 519 us. (SBC compiles its own
    # unfrozen model, because it swaps each simulation's data into it.)
    compiled = nutpie.compile_pymc_model(model, freeze_model=True)
    compiled_at = time.perf_counter()
    idata = nutpie.sample(compiled, **_nutpie_kwargs(sampler, seed, progress),
                          low_rank_modified_mass_matrix=sampler.mass_matrix == "low_rank")
    return idata, compiled_at - start, time.perf_counter() - compiled_at


def _sample_nutpie_dense(model: pm.Model, sampler: SamplerSettings, seed: int, progress: bool,
                         metric_key: str | None, metric=None):
    """nutpie in coordinates whitened by a stored covariance (:mod:`.metric`), or, without one
    for this model and data, the diagonal metric with the covariance of its draws stored for
    the next fit (only when the fit met its thresholds). ``metric``: this covariance instead
    of the cache's (to refit a saved run draw for draw); it must be of this model and data."""
    import nutpie
    from pymc.model.transform.optimization import freeze_dims_and_data

    start = time.perf_counter()
    frozen = freeze_dims_and_data(dense_metric.with_probit_fractions(model))
    layout = dense_metric.value_layout(frozen)
    dim = dense_metric.layout_size(layout)
    if metric is not None:
        if metric.key != metric_key or not metric.matches(layout):
            raise dense_metric.MetricError(
                f"the stored metric given ({metric.key}) was not made for this model and data "
                f"({metric_key}); refit without it")
        stored = metric
    else:
        stored = dense_metric.load_metric(metric_key) if metric_key else None
    if stored is not None and not stored.matches(layout):
        log.warning("stored metric %s does not match the model's coordinates; diagonal metric",
                    metric_key)
        stored = None
    kwargs = _nutpie_kwargs(sampler, seed, progress)
    pilot = None
    if stored is not None or sampler.pilot_draws > 0:
        compiled = nutpie.compile_pymc_model(dense_metric.whitened_model(frozen),
                                             freeze_model=False)
        compiled_at = time.perf_counter()
        if stored is None:
            stored, pilot = _pilot_metric(compiled, frozen, layout, sampler, seed, progress,
                                          metric_key)
    if stored is None:
        log.info("no stored dense metric for this model and data: diagonal metric this time")
        compiled = nutpie.compile_pymc_model(frozen, freeze_model=False)
        compiled_at = time.perf_counter()
        idata = nutpie.sample(compiled, store_unconstrained=True, **kwargs)
        raw = idata.sample_stats["unconstrained_draw"].values.reshape(-1, dim)
        draws = dense_metric.reorder_nutpie_draws(raw, compiled.shape_info, layout)
        idata.sample_stats = idata.sample_stats.drop_vars(
            [v for v in idata.sample_stats.variables if "unconstrained_draw" in str(v)])
        used = "diag"
    else:
        if pilot is None:
            log.info("dense metric stored from %d draws of an earlier fit (%s)",
                     stored.n_draws, metric_key)
        compiled = compiled.with_data(**stored.data())
        idata = nutpie.sample(compiled, maxdepth=WHITENED_MAX_DEPTH, **kwargs)
        white = idata.posterior[dense_metric.WHITE_VAR]
        draws = dense_metric.unconstrained_from_white(white.values.reshape(-1, dim), stored)
        idata.posterior = dense_metric.drop_white(idata.posterior)
        used = "dense" if pilot is None else "dense_pilot"
    sampled_at = time.perf_counter()
    idata.posterior.attrs["nuts_metric"] = used
    if stored is not None:
        # which covariance whitened this fit: the cache is refreshed after every fit, so the
        # same spec and seed give other draws (of the same posterior) once it has changed
        idata.posterior.attrs.update(nuts_metric_key=metric_key,
                                     nuts_metric_sha256=dense_metric.metric_digest(stored),
                                     nuts_metric_draws=stored.n_draws)
        idata.add_groups({dense_metric.METRIC_GROUP: dense_metric.metric_dataset(stored)},
                         warn_on_custom_groups=False)
    if pilot is not None:
        idata.posterior.attrs.update({f"nuts_pilot_{k}": v for k, v in pilot.items()})
    if metric_key:
        _refresh_metric(idata, model, metric_key, layout, draws)
    return idata, compiled_at - start, sampled_at - compiled_at


def _pilot_metric(compiled, frozen: pm.Model, layout, sampler: SamplerSettings, seed: int,
                  progress: bool, metric_key: str | None):
    """(covariance of a short diagonal-metric pilot, its statistics), or (None, None).

    Why: cold-start dense adaptation failed on this model every way it was tried, but a dense
    metric taken from a diagonal fit's draws works, and even a short pilot's covariance removes
    most of the posterior's bad conditioning (docs/performance.md). The pilot runs the whitened
    model with the identity (z = theta - the model's initial point), which is the diagonal
    fit, so the model compiles once; the whitened fit then only swaps in mean and Cholesky
    factor. At least 2 draws per coordinate over the chains, or the covariance is singular.
    """
    import nutpie

    dim = dense_metric.layout_size(layout)
    point = frozen.initial_point()
    start = np.concatenate([np.ravel(point[name]) for name, _ in layout]).astype(float)
    draws = max(sampler.pilot_draws,
                math.ceil(dense_metric.MIN_DRAWS_PER_DIM * dim / sampler.chains))
    log.info("no stored dense metric for this model and data: a diagonal pilot of %d x %d "
             "draws estimates one", sampler.chains, draws)
    kwargs = _nutpie_kwargs(sampler, seed, progress) | {"draws": draws}
    kwargs["seed"] = int(np.random.SeedSequence([seed, PILOT_SEED_KEY]).generate_state(1)[0])
    began = time.perf_counter()
    identity = compiled.with_data(**dense_metric.identity_data(start))
    idata = nutpie.sample(identity, maxdepth=WHITENED_MAX_DEPTH, **kwargs)
    z = idata.posterior[dense_metric.WHITE_VAR].values.reshape(-1, dim)
    metric = dense_metric.metric_from_draws(metric_key or "pilot", layout, start + z)
    stats = {"draws": int(draws), "seconds": round(time.perf_counter() - began, 2),
             "divergences": int(idata.sample_stats["diverging"].sum()),
             "mean_tree_steps": float(idata.sample_stats["n_steps"].mean())}
    if metric is None:
        log.warning("the pilot's draws gave no covariance; diagonal metric this time")
        return None, None
    log.info("pilot: %d divergences, %.0f steps per draw, %.0f s", stats["divergences"],
             stats["mean_tree_steps"], stats["seconds"])
    return metric, stats


def _refresh_metric(idata, model: pm.Model, key: str, layout, draws: np.ndarray) -> None:
    """Store this fit's covariance for the next fit of the same model and data, if the fit
    met the sampler thresholds a covariance is worth trusting after (no divergence, R-hat)."""
    divergent = int(idata.sample_stats["diverging"].sum())
    free = [rv.name for rv in model.free_RVs if rv.name in idata.posterior]
    rhat = float(az.rhat(idata.posterior[free]).to_array().max()) if idata.posterior.sizes[
        "chain"] > 1 else np.inf
    if divergent or not rhat <= METRIC_MAX_RHAT:
        log.info("dense metric not stored: %d divergences, max R-hat %.3f", divergent, rhat)
        return
    new = dense_metric.metric_from_draws(key, layout, draws)
    if new is None:
        log.info("dense metric not stored: %d draws for %d coordinates", len(draws),
                 draws.shape[1])
        return
    try:
        path = dense_metric.save_metric(new)
        log.info("dense metric stored in %s (%d draws)", path, new.n_draws)
    except OSError as exc:  # a read-only cache costs speed next time, never the fit
        log.warning("dense metric not stored (%s)", exc)


def _sample_pymc(model: pm.Model, sampler: SamplerSettings, seed: int, progress: bool):
    start = time.perf_counter()
    idata = pm.sample(
        draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
        cores=min(sampler.chains, os.cpu_count() or 1), random_seed=seed,
        target_accept=sampler.target_accept, init="jitter+adapt_diag_grad",
        progressbar=progress, model=model, compute_convergence_checks=False,
    )
    # PyMC's compile time is inside pm.sample and not separable from the outside.
    return idata, 0.0, time.perf_counter() - start


def _sample_numpyro(model: pm.Model, sampler: SamplerSettings, seed: int, progress: bool):
    """``pm.sample(nuts_sampler="numpyro")`` with JAX's persistent compile cache on
    (:mod:`densing_bayes.inference.compile_cache`).

    Compile time is every JAX trace, lowering and XLA compilation (JAX's own monitoring
    events) plus PyTensor's JAX transpilation before the sampler starts.
    """
    try:
        import pymc.sampling.jax  # noqa: F401  (sets XLA's host device count before jax loads)
        import jax
        import jax.monitoring
        import numpyro  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"sampler backend 'numpyro' needs jax and numpyro ({exc}); install them with "
            "pip install 'densing_bayes[numpyro]'") from exc

    from densing_bayes.inference.compile_cache import enable_jax_cache

    enable_jax_cache()
    compile_events = ("/jax/core/compile/jaxpr_trace_duration",
                      "/jax/core/compile/jaxpr_to_mlir_module_duration",
                      "/jax/core/compile/backend_compile_duration")
    spent: list[float] = []

    def listener(event, duration, **_):
        if event in compile_events:
            spent.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    start = time.perf_counter()
    try:
        idata = pm.sample(draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
                          random_seed=seed, target_accept=sampler.target_accept,
                          nuts_sampler="numpyro", progressbar=progress, model=model,
                          compute_convergence_checks=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    total = time.perf_counter() - start
    before = total - float(idata.posterior.attrs.get("sampling_time", total))
    compile_s = min(total, max(before, 0.0) + sum(spent))
    return idata, compile_s, total - compile_s


SAMPLE_FUNCTIONS = {"nutpie": _sample_nutpie, "pymc": _sample_pymc, "numpyro": _sample_numpyro}


def sample_model(model: pm.Model, sampler: SamplerSettings, *, progress: bool = True,
                 predictive: bool = True, metric_key: str | None = None, metric=None,
                 ) -> tuple[az.InferenceData, SamplingTimes]:
    """Posterior (+ prior, posterior predictive and log-likelihood when ``predictive``).

    ``metric_key`` (:func:`.metric.metric_key`) names the stored dense metric of this model and
    data for ``mass_matrix = "dense"``; without it that mode samples with the diagonal metric.
    ``metric`` (a :class:`.metric.StoredMetric`, e.g. a saved run's): whiten with it instead.
    """
    seeds = _seeds(sampler.seed)
    if sampler.backend == "nutpie":
        idata, compile_s, sample_s = _sample_nutpie(model, sampler, seeds["posterior"],
                                                    progress, metric_key, metric)
    elif metric is not None:
        raise dense_metric.MetricError("a stored metric whitens nutpie fits only (backend = "
                                       "'nutpie')")
    else:
        idata, compile_s, sample_s = SAMPLE_FUNCTIONS[sampler.backend](
            model, sampler, seeds["posterior"], progress)
    start = time.perf_counter()
    if predictive:
        try:
            _add_predictive(model, idata, seeds)
        except Exception as exc:
            kept = keep_posterior(idata, sampler.seed)
            raise PredictiveStepError(
                f"the predictive step failed after sampling ({type(exc).__name__}: {exc}); the "
                f"posterior draws are kept in {kept} (arviz.from_netcdf reads them)") from exc
    return idata, SamplingTimes(compile_s, sample_s, time.perf_counter() - start)


class PredictiveStepError(RuntimeError):
    """The prior/posterior predictive or log-likelihood step failed after a finished sampling."""


def _add_predictive(model: pm.Model, idata: az.InferenceData, seeds: dict[str, int]) -> None:
    with model:
        idata.extend(pm.sample_prior_predictive(draws=PRIOR_DRAWS, random_seed=seeds["prior"]))
        pm.sample_posterior_predictive(idata, random_seed=seeds["posterior_predictive"],
                                       extend_inferencedata=True, progressbar=False)
        pm.compute_log_likelihood(idata, var_names=[loo_variable(model)], progressbar=False)
    # Predictive draws are for plots and checks: float32 halves the run folder's size.
    idata.posterior_predictive = idata.posterior_predictive.astype("float32")


def keep_posterior(idata: az.InferenceData, seed: int) -> Path:
    """Write the posterior and sampler statistics to the user's cache, so that a crash after a
    long sampling (the predictive step runs model code the sampler never touched) does not
    lose the draws. Returns the file written."""
    folder = cache_dir() / "kept_posteriors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"posterior_seed{seed}_{time.strftime('%Y%m%dT%H%M%S')}_{os.getpid()}.nc"
    groups = [g for g in ("posterior", "sample_stats") if g in idata.groups()]
    az.InferenceData(**{g: idata[g] for g in groups}).to_netcdf(str(path))
    log.error("posterior draws kept in %s", path)
    return path
