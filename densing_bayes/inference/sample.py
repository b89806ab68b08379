"""Sampling: prior, posterior, posterior predictive and pointwise log-likelihood, all seeded.

The default backend is nutpie: ``densing-bayes bench`` measured 2.1x the ESS per second of
PyMC's NUTS on the bundled model and 2.7-3.5x on the paper design (medians over three seeds),
with 40% of its memory (README "Performance"). PyMC's
NUTS (``jitter+adapt_diag_grad``) and NumPyro (optional extra) are the alternatives. Every random
step takes its own seed derived from the spec's seed, so the same data, spec and seed give the
same InferenceData.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm

from densing_bayes.model.spec import BackendUnavailableError, SamplerSettings

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


def _sample_nutpie(model: pm.Model, sampler: SamplerSettings, seed: int, progress: bool):
    import nutpie

    start = time.perf_counter()
    # Freezing turns pm.Data and dims into compile-time constants. Measured side by side on the
    # bundled default model: compile 43 -> 31 s, gradient 654 -> 519 us. (SBC compiles its own
    # unfrozen model, because it swaps each simulation's data into it.)
    compiled = nutpie.compile_pymc_model(model, freeze_model=True)
    compiled_at = time.perf_counter()
    idata = nutpie.sample(
        compiled, draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
        cores=min(sampler.chains, os.cpu_count() or 1), seed=seed, save_warmup=False,
        progress_bar=progress, target_accept=sampler.target_accept,
        low_rank_modified_mass_matrix=sampler.mass_matrix == "low_rank",
    )
    return idata, compiled_at - start, time.perf_counter() - compiled_at


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
                 predictive: bool = True) -> tuple[az.InferenceData, SamplingTimes]:
    """Posterior (+ prior, posterior predictive and log-likelihood when ``predictive``)."""
    seeds = _seeds(sampler.seed)
    sample = SAMPLE_FUNCTIONS[sampler.backend]
    idata, compile_s, sample_s = sample(model, sampler, seeds["posterior"], progress)
    start = time.perf_counter()
    if predictive:
        with model:
            idata.extend(pm.sample_prior_predictive(draws=PRIOR_DRAWS,
                                                    random_seed=seeds["prior"]))
            pm.sample_posterior_predictive(idata, random_seed=seeds["posterior_predictive"],
                                           extend_inferencedata=True, progressbar=False)
            pm.compute_log_likelihood(idata, var_names=[loo_variable(model)], progressbar=False)
        # Predictive draws are for plots and checks: float32 halves the run folder's size.
        idata.posterior_predictive = idata.posterior_predictive.astype("float32")
    return idata, SamplingTimes(compile_s, sample_s, time.perf_counter() - start)
