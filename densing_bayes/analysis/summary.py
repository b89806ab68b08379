"""summary.json and summary.csv: the contract that scripts rely on (documented in README).

Keys that are always present: ``ci_prob``, ``interval``, ``doubling_time_days``,
``doubling_time_days_pre``, ``doubling_time_ratio`` (each ``{median, lower, upper}``, or null
without a changepoint), ``diagnostics``, ``models``, ``paper_baseline``, ``paper_reported``,
``model_checks`` (records of :mod:`densing_bayes.analysis.checks`).
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pandas as pd

from densing_bayes import __version__
from densing_bayes.analysis import checks, derived
from densing_bayes.analysis.identification import identification_summary
from densing_bayes.inference.diagnostics import Diagnostics
from densing_bayes.inference.environment import numerical_stack
from densing_bayes.model.inputs import ModelInputs
from densing_bayes.model.spec import ModelSpec


def _clean(obj):
    """JSON-safe: NaN and infinities become null (JSON has no NaN), NumPy scalars become floats."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def baseline_summary(baseline) -> dict:
    """The paper's least-squares pipeline on the same data: its point doubling time and densities."""
    if baseline is None:
        return None
    eff = baseline.effective
    models = {}
    for name, row in eff.iterrows():
        models[str(name)] = {"effective_params": row.get("effective_params"),
                             "density": row.get("density")}
    return {"trend": dict(baseline.trend), "models": models}


def build_summary(idata: az.InferenceData, inputs: ModelInputs, spec: ModelSpec,
                  diagnostics: Diagnostics, *, baseline=None, timing: dict | None = None,
                  data_folder: str = "", data_hash: str = "", data=None) -> dict:
    ci = spec.ci_prob
    summary = {
        "package_version": __version__,
        "spec": spec.name,
        "config_hash": spec.config_hash(),
        "data_folder": data_folder,
        "data_hash": data_hash,
        "seed": spec.sampler.seed,
        # the same spec and seed give the same draws only on the same numerical stack
        "environment": numerical_stack(),
        "sampler": spec.sampler.model_dump(),
        # the metric nutpie used with mass_matrix = "dense" (diag, or the stored covariance's
        # key and SHA-256): part of what reproduces the draws, not only the posterior
        # (kind "dense_pilot": the covariance of this fit's own diagonal pilot, pilot_* its
        # draws per chain, seconds, divergences and steps per draw)
        "sampler_metric": {k.removeprefix("nuts_metric_") if k != "nuts_metric" else "kind": v
                           for k, v in idata.posterior.attrs.items()
                           if k.startswith("nuts_metric")}
        | {k.removeprefix("nuts_"): v for k, v in idata.posterior.attrs.items()
           if k.startswith("nuts_pilot_")},
        "ci_prob": ci,
        "interval": "equal-tailed",
        "trend": spec.trend.model_dump(mode="json"),
        "diagnostics": {**diagnostics.to_dict(),
                        "passed": not diagnostics.failures(spec.diagnostics),
                        "failures": diagnostics.failures(spec.diagnostics)},
        "timing_seconds": timing or {},
        "notes": list(inputs.notes),
        "paper_reported": derived.PAPER_REPORTED,
        "paper_baseline": baseline_summary(baseline),
    }
    if inputs.has_evaluated_models:
        summary.update(derived.trend_summary(idata, spec, model_time=inputs.model_time))
        summary["models"] = derived.model_summary(idata, inputs, ci)
    else:
        summary.update({k: None for k in ("doubling_time_days", "doubling_time_days_pre",
                                          "doubling_time_ratio")})
        summary["models"] = {}
    summary["benchmarks"] = derived.benchmark_summary(idata, inputs, ci)
    summary["identification"] = identification_summary(idata, inputs, spec, data)
    # "How sure is this?": sampler and model checks (analysis/checks.py; the report re-runs
    # them with the sensitivity analysis once it exists).
    summary["model_checks"] = checks.run_checks(checks.CheckContext(
        idata=idata, spec=spec, summary=_clean(summary), data_folder=data_folder or None))
    return _clean(summary)


def summary_table(summary: dict) -> pd.DataFrame:
    """Flat view of summary.json: one row per quantity with median and interval."""
    rows = []

    def add(quantity, entry, model="", benchmark=""):
        if isinstance(entry, dict) and "median" in entry:
            rows.append({"quantity": quantity, "model": model, "benchmark": benchmark,
                         "median": entry["median"], "lower": entry["lower"],
                         "upper": entry["upper"]})

    for key in ("doubling_time_days", "doubling_time_days_pre", "doubling_time_months",
                "doubling_time_months_pre", "slope_per_day", "slope_per_day_pre",
                "doubling_time_ratio", "slope_difference_per_year", "changepoint_shift_days"):
        add(key, summary.get(key))
    for bench, entry in (summary.get("doubling_time_days_by_benchmark") or {}).items():
        add("doubling_time_days", entry, benchmark=bench)
    for bench, entry in (summary.get("benchmark_drift_per_year") or {}).items():
        add("benchmark_drift_per_year", entry, benchmark=bench)
    for bench, entry in (summary.get("benchmark_loading") or {}).items():
        add("benchmark_loading", entry, benchmark=bench)
    for name, entry in summary.get("models", {}).items():
        add("effective_params", entry["effective_params"], model=name)
        add("density", entry["density"], model=name)
    for bench, params in summary.get("benchmarks", {}).items():
        for key, entry in params.items():
            add(key, entry, benchmark=bench)
    table = pd.DataFrame(rows, columns=["quantity", "model", "benchmark", "median", "lower",
                                        "upper"])
    table.insert(3, "ci_prob", summary["ci_prob"])
    return table
