"""One fit, end to end: data folder + spec -> validated inputs -> PyMC model -> draws ->
diagnostics -> derived quantities and the paper's baseline -> a run folder.

This is the only module below the Python API that touches every layer; the API
(:mod:`densing_bayes.api`, which the CLI calls) and the batch jobs call it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import pymc as pm

from densing_bayes import laws, resources
from densing_bayes.analysis import derived
from densing_bayes.analysis.baseline import run_baseline
from densing_bayes.analysis.predict import attach_constants
from densing_bayes.analysis.summary import build_summary, summary_table
from densing_bayes.data.load import load_data
from densing_bayes.data.schema import DensingData
from densing_bayes.inference.diagnostics import Diagnostics, diagnose
from densing_bayes.inference.metric import metric_key
from densing_bayes.inference.run_io import (check_writable, data_hash, load_run, save_run, stamp,
                                           update_summary)
from densing_bayes.inference.sample import sample_model
from densing_bayes.model.build import build_model
from densing_bayes.model.inputs import ModelInputs, prepare_inputs
from densing_bayes.model.spec import ModelSpec

log = logging.getLogger("densing_bayes")


@dataclass(frozen=True)
class FitResult:
    idata: az.InferenceData
    inputs: ModelInputs
    model: pm.Model
    diagnostics: Diagnostics
    summary: dict


def fit_data(data: DensingData, spec: ModelSpec, *, progress: bool = True,
             predictive: bool = True, baseline: bool = True, metric=None) -> FitResult:
    """Fit ``spec`` to an already validated data set (used by the CLI, tests and batches).
    ``metric``: the stored covariance to whiten with (a saved run's, to refit it draw for
    draw) instead of the cache's."""
    start = time.perf_counter()
    inputs = prepare_inputs(data, spec)
    for note in inputs.notes:
        log.info("note: %s", note)
    model = build_model(inputs, spec)
    log.info("sampling %d chains x %d draws with %s (seed %d)", spec.sampler.chains,
             spec.sampler.draws, spec.sampler.backend, spec.sampler.seed)
    idata, times = sample_model(model, spec.sampler, progress=progress, predictive=predictive,
                                metric_key=metric_key(spec.model_hash(), inputs),
                                metric=metric)
    diagnostics = diagnose(idata, [v.name for v in model.free_RVs])
    attach_constants(idata, inputs)
    derived.add_derived(idata, spec)
    base = None
    if baseline and data.has_evaluated_models:
        base = run_baseline(data, d0_tokens=spec.data.d0_tokens,
                            irreducible=spec.loss_law.irreducible,
                            exclude_holdout=spec.data.exclude_holdout)
    timing = {"compile": times.compile_seconds, "sample": times.sample_seconds,
              "predictive": times.predictive_seconds, "total": time.perf_counter() - start}
    summary = build_summary(idata, inputs, spec, diagnostics, baseline=base, timing=timing,
                            data_folder=str(data.folder), data_hash=data_hash(data.folder),
                            data=data)
    return FitResult(idata, inputs, model, diagnostics, summary)


def fit_to_folder(spec: ModelSpec, out: Path, *, data_folder: str | Path | None = None,
                  force: bool = False, progress: bool = True) -> FitResult:
    """Validate the data, refuse an occupied ``out`` before sampling, fit, write the run."""
    folder = resources.resolve_data_folder(data_folder or spec.data.folder)
    data = load_data(folder)  # raises DataValidationError before anything is written
    check_writable(Path(out), force)
    result = fit_data(data, spec, progress=progress)
    stamp(result.idata, spec, folder)
    save_run(out, result.idata, spec, result.summary, summary_table(result.summary), force=force)
    return result


#: Keys of summary.json that earlier versions wrote and this one no longer does: the plain
#: slope ratio (replaced on 2026-12-03 by ``doubling_time_ratio``) and its sign-safe
#: probability (now ``prob_acceleration`` itself).
RETIRED_TREND_KEYS = ("acceleration_ratio", "prob_faster_after")


def refresh_trend_summary(run_folder: str | Path) -> dict:
    """Recompute summary.json's doubling-time block from a saved run's own draws under this
    version's definitions, and summary.csv with it: no refit, same draws, so a definition
    change (the doubling-time ratio) reaches an existing run. The posterior files are not
    rewritten; derived variables inside them stay as the fit stored them."""
    import json

    from densing_bayes.analysis.summary import _clean

    run = load_run(Path(run_folder))
    path = Path(run_folder) / "summary.json"
    stored = json.loads(path.read_text())
    if stored.get("doubling_time_days") is None:  # no evaluated models: nothing to recompute
        return stored
    data = load_data(resources.resolve_data_folder(stored["data_folder"]))
    inputs = prepare_inputs(data, run.spec)
    for key in RETIRED_TREND_KEYS:
        stored.pop(key, None)
    stored.update(_clean(derived.trend_summary(run.idata, run.spec,
                                               model_time=inputs.model_time)))
    # the paper's point pipeline: the same definition from its stored slopes
    trend = (stored.get("paper_baseline") or {}).get("trend")
    if trend and "acceleration_ratio" in trend:
        trend.pop("acceleration_ratio")
        pre, post = trend.get("slope_per_day_pre"), trend.get("slope_per_day_post")
        ratio = None if pre is None or post is None else float(
            laws.doubling_time_ratio(post, pre))
        trend["doubling_time_ratio"] = ratio if ratio is not None and math.isfinite(ratio) \
            else None
    update_summary(run_folder, stored, summary_table(stored))
    return stored
