"""How far the doubling time moves with the priors and the data.

Three checks, one report (``sensitivity.json``, ``sensitivity.csv``, a forest plot):

* **Power-scaling** (Kallioinen et al. 2024, arXiv:2107.14054; ArviZ ``psens``), no refits:
  raise the prior, or the likelihood, to a power near 1 and measure, by importance weighting
  of the baseline fit's draws, how much each key quantity's posterior moves. Priorsense's
  reading of the two numbers at ArviZ's threshold 0.05: both large is a possible prior-data
  conflict; a large prior and small likelihood sensitivity means the prior, not the data,
  decides that quantity. As in priorsense, only the priors at the top of the hierarchy are
  scaled (free variables whose distribution has no free parents); the population
  distributions of latent effects (per-model log densities, partially pooled per-benchmark
  effects) are model structure, not prior choices.
* **Refits under prior variants**: the spec's ``[variants.*]`` tables (the default spec has wide
  and narrow slopes, an exponential inefficiency scale and low sigmoid ceilings).
* **Refits without part of the data**: without each benchmark (spec override
  ``data.benchmarks``), and without each source of reported scores (the rows of one
  ``source_kind`` removed from scores.csv before fitting).

Every refit is a task of ``densing_bayes.inference.batch`` (resumable, failures recorded). Each
variant is a different PyMC graph (another prior, other dimensions), so no compiled model can
be shared between them: every task pays its own compilation. Workers load the data folder
themselves; with ``--scheduler`` they must see it at the same path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd

from densing_bayes import resources
from densing_bayes.analysis.derived import PAPER_REPORTED
from densing_bayes.data.schema import DensingData
from densing_bayes.inference import batch
from densing_bayes.model.spec import ModelSpec

#: ArviZ's (and priorsense's) threshold on the power-scaling sensitivity (CJS distance per
#: unit log-power): above it, a quantity is called sensitive to the scaled component.
PSENS_THRESHOLD = 0.05

#: The quantities whose power-scaling sensitivity is reported (those present in the fit).
POWER_SCALED = ("slope", "slope_pre", "slope_post", "doubling_time_days",
                "doubling_time_days_pre", "slope_difference", "alpha", "beta",
                "sigmoid_ceiling", "mc_sigmoid_ceiling", "frontier_inefficiency",
                "frontier_noise", "trend_intercept", "protocol_offset")

#: Intervals reported for every variant (summary.json's definitions: equal-tailed, ci_prob).
REPORTED = ("doubling_time_days", "doubling_time_days_pre", "doubling_time_ratio",
            "slope_difference_per_year")

#: What records written before 2026-12-03 hold instead of the doubling-time ratio: the plain
#: slope ratio (after / before, negative where the slope before is), kept under this name.
LEGACY_SLOPE_RATIO = "acceleration_ratio"

SENSITIVITY_JSON = "sensitivity.json"
SENSITIVITY_CSV = "sensitivity.csv"


@dataclass(frozen=True)
class Variant:
    """One refit: a spec, and optionally a source of reported scores to leave out."""

    name: str
    kind: Literal["baseline", "prior", "data"]
    description: str
    spec: ModelSpec
    drop_source: str | None = None

    @property
    def task_id(self) -> str:
        return self.name.replace(":", "-")


# ------------------------------------------------------------------- the variants
def sensitivity_variants(spec: ModelSpec, data: DensingData) -> list[Variant]:
    """Baseline, the spec's prior variants, leave-one-benchmark-out, leave-one-source-out."""
    from densing_bayes.model.inputs import prepare_inputs

    inputs = prepare_inputs(data, spec)
    variants = [Variant("baseline", "baseline", "the spec as written", spec)]
    for name, overrides in spec.variants.items():
        changed = sorted(overrides.get("priors", {})) or sorted(overrides)
        variants.append(Variant(name, "prior", f"overrides {', '.join(changed)}",
                                spec.variant(name)))
    if len(inputs.benchmarks) > 1:
        for bench in inputs.benchmarks:
            kept = [b for b in inputs.benchmarks if b != bench]
            variants.append(Variant(f"without_benchmark:{bench}", "data",
                                    f"benchmark {bench} left out",
                                    spec.with_overrides({"data": {"benchmarks": kept}},
                                                        name=f"{spec.name}:without_{bench}")))
    if len(inputs.source_kinds) > 1:
        for kind in inputs.source_kinds:
            variants.append(Variant(f"without_source:{kind}", "data",
                                    f"scores reported by '{kind}' left out", spec,
                                    drop_source=kind))
    return variants


def without_source(data: DensingData, source_kind: str) -> DensingData:
    """The data without the score rows of one source kind (empty kinds count as 'unknown',
    the rule of ``densing_bayes.model.inputs``)."""
    scores = data.scores
    kinds = scores["source_kind"].fillna("").astype(str).replace("", "unknown")
    return dataclasses.replace(data, scores=scores[kinds != source_kind])


# ------------------------------------------------------------------- one refit (a task)
def fit_variant(spec: ModelSpec, data_folder: str, drop_source: str | None = None,
                power_scaling: bool = False) -> dict:
    """Fit one variant; with ``power_scaling`` (the baseline) also the psens table."""
    from densing_bayes.data.load import load_data
    from densing_bayes.workflow import fit_data

    data = load_data(data_folder)
    if drop_source is not None:
        data = without_source(data, drop_source)
    result = fit_data(data, spec, progress=False, predictive=power_scaling, baseline=False)
    record = {q: result.summary.get(q) for q in REPORTED}
    record.update(diagnostics=result.summary["diagnostics"],
                  n_models=len(result.inputs.models),
                  n_scores=len(result.inputs.score_value),
                  timing=result.summary["timing_seconds"])
    if power_scaling:
        # A freshly built graph: the sampled one has been through the samplers' and the
        # predictive draws' graph rewrites, after which PyMC could not compile its
        # log-likelihood (AttributeError on a None input, in the first bundled-data run).
        from densing_bayes.model.build import build_model

        model = build_model(result.inputs, spec)
        record["power_scaling"] = power_scaling_table(result.idata, model)
        record["per_prior_power_scaling"] = per_prior_power_scaling(result.idata, model)
    return record


# ------------------------------------------------------------------- power-scaling
def top_level_priors(model) -> list[str]:
    """Free variables whose distribution depends on no other free variable."""
    from pytensor.graph.traversal import ancestors

    free = set(model.free_RVs)
    return [rv.name for rv in model.free_RVs if not free & set(ancestors(rv.owner.inputs))]


#: The answer's quantities whose sensitivity to each prior separately is reported.
#: (The acceleration enters as the slope difference: the doubling-time ratio is infinite in
#: some draws, and the CJS distance of power scaling needs finite draws.)
PER_PRIOR_QUANTITIES = ("doubling_time_days", "doubling_time_days_pre", "slope_difference")


def power_scaling_table(idata: az.InferenceData, model) -> dict[str, dict]:
    """{quantity[element]: {prior, likelihood, flag}} from the fit's draws, no refits.

    The likelihood is the *whole* likelihood (loss-law rows, reference curves and reported
    scores: every observed variable, summed by ArviZ), computed here; the run's own
    ``log_likelihood`` group holds the reported scores only (for LOO). The prior is the joint
    of the top-level priors; ``per_prior_power_scaling`` scales them one at a time.
    """
    scaled = _with_full_likelihood(idata, model)
    names = [q for q in POWER_SCALED if q in scaled.posterior]
    prior = az.psens(scaled, component="prior", var_names=names)
    likelihood = az.psens(scaled, component="likelihood", var_names=names)
    table = {}
    for name in names:
        for label, p, lik in _elements(name, prior[name], likelihood[name]):
            table[label] = {"prior": p, "likelihood": lik, "flag": psens_flag(p, lik)}
    return table


def _with_full_likelihood(idata: az.InferenceData, model) -> az.InferenceData:
    """The posterior with the log prior of every top-level prior and the log-likelihood of
    every observed variable (a new InferenceData; ``idata`` is not changed)."""
    import pymc as pm

    priors = pm.compute_log_prior(idata, var_names=top_level_priors(model), model=model,
                                  progressbar=False, extend_inferencedata=False)
    likelihood = pm.compute_log_likelihood(
        idata, var_names=[rv.name for rv in model.observed_RVs], model=model,
        progressbar=False, extend_inferencedata=False)
    # With extend_inferencedata=False PyMC returns the groups themselves (Datasets).
    def group(result, name):
        return getattr(result, name) if isinstance(result, az.InferenceData) else result

    return az.InferenceData(posterior=idata.posterior, log_prior=group(priors, "log_prior"),
                            log_likelihood=group(likelihood, "log_likelihood"))


def per_prior_power_scaling(idata: az.InferenceData, model,
                            quantities: Sequence[str] = PER_PRIOR_QUANTITIES) -> dict[str, dict]:
    """{prior: {quantity: sensitivity}}: each top-level prior power-scaled alone (priorsense's
    per-prior analysis), so the table says *which* prior moves the answer."""
    scaled = _with_full_likelihood(idata, model)
    names = [q for q in quantities if q in scaled.posterior]
    table = {}
    for prior_name in top_level_priors(model):
        values = az.psens(scaled, component="prior", component_var_names=[prior_name],
                          var_names=names)
        table[prior_name] = {q: (float(values[q]) if math.isfinite(float(values[q])) else None)
                             for q in names}
    return table


def _elements(name: str, prior, likelihood) -> Iterator[tuple[str, float | None, float | None]]:
    """(label, prior value, likelihood value) per element; a NaN (e.g. a doubling time in draws
    whose slope is not positive) becomes None."""
    def value(x) -> float | None:
        x = float(x)
        return x if math.isfinite(x) else None

    if prior.ndim == 0:
        yield name, value(prior), value(likelihood)
        return
    for index in np.ndindex(prior.shape):
        coords = [str(prior[dim].values[i]) for dim, i in zip(prior.dims, index, strict=True)]
        yield (f"{name}[{','.join(coords)}]", value(prior.values[index]),
               value(likelihood.values[index]))


def psens_flag(prior: float | None, likelihood: float | None,
               threshold: float = PSENS_THRESHOLD) -> str:
    """Priorsense's diagnosis of one quantity (its wording; '-' means nothing to report)."""
    if prior is None or likelihood is None:
        return "not computed"
    if prior >= threshold and likelihood >= threshold:
        return "potential prior-data conflict"
    if prior >= threshold:
        return "potential strong prior / weak likelihood"
    return "-"


# ------------------------------------------------------------------- the job
def select_variants(variants: Sequence[Variant], patterns: Sequence[str] | None
                    ) -> list[Variant]:
    """The baseline and the variants whose name matches one of ``patterns`` (shell-style, e.g.
    ``without_benchmark:*``), in the order of the patterns; all of them without patterns.

    A full analysis of the bundled data is ~30 refits; a subset answers one question (for
    example "does the residual protocol prior move the doubling time?") in a fraction of that.
    """
    if not patterns:
        return list(variants)
    import fnmatch

    chosen = [v for v in variants if v.kind == "baseline"]
    for pattern in patterns:
        hits = [v for v in variants if fnmatch.fnmatchcase(v.name, pattern) and v not in chosen]
        if not hits and not any(fnmatch.fnmatchcase(v.name, pattern) for v in variants):
            names = ", ".join(v.name for v in variants)
            raise ValueError(f"no sensitivity variant matches '{pattern}'; variants: {names}")
        chosen.extend(hits)
    return chosen


def run_sensitivity(spec: ModelSpec, out: Path, *, resume: bool = False, force: bool = False,
                    scheduler: str | None = None, n_workers: int | None = None,
                    progress: bool = True, only: Sequence[str] | None = None) -> dict:
    """Run (or resume) the refits into ``out`` (all variants, or the baseline and those matching
    ``only``); write the JSON and the CSV.

    The list of variants is not part of the batch's manifest (as in ``run_robustness``): a
    variant's task is fixed by the spec, the data and its name, so a resume may add variants to
    a folder or write the outputs for a subset of those already fitted; the outputs describe the
    variants asked for in this call."""
    from densing_bayes.data.load import load_data
    from densing_bayes.inference.run_io import data_hash

    folder = resources.resolve_data_folder(spec.data.folder)
    variants = select_variants(sensitivity_variants(spec, load_data(folder)), only)
    tasks = [batch.Task(v.task_id, fit_variant,
                        {"spec": v.spec, "data_folder": str(folder), "drop_source": v.drop_source,
                         "power_scaling": v.kind == "baseline"})
             for v in variants]
    manifest = {"job": "sensitivity", "spec": spec.name, "config_hash": spec.config_hash(),
                "data_folder": str(folder), "data_hash": data_hash(folder)}
    return batch.run_and_write(
        tasks, out, lambda records, seconds: write_sensitivity_outputs(
            out, variants, records, spec, data_folder=folder, wall_seconds=seconds),
        manifest=manifest, resume=resume, force=force, scheduler=scheduler,
        n_workers=n_workers, progress=progress, desc="sensitivity")


def variant_entry(variant: Variant, record: Mapping) -> dict:
    """One element of ``prior_variants``: the variant, its intervals, diagnostics and status."""
    result = record["result"] or {}
    return {"name": variant.name, "kind": variant.kind, "description": variant.description,
            **{q: result.get(q) for q in REPORTED},
            **({"slope_ratio_legacy": result[LEGACY_SLOPE_RATIO]}
               if LEGACY_SLOPE_RATIO in result else {}),
            "diagnostics": result.get("diagnostics"),
            "status": record["status"], "error": record["error"]}


def write_sensitivity_outputs(out: Path, variants: Sequence[Variant], records: Mapping[str, dict],
                              spec: ModelSpec, *, data_folder: Path, wall_seconds: float) -> dict:
    """sensitivity.json and sensitivity.csv (the report draws the forest plot: one
    implementation, ``presentation/plots.py::plot_sensitivity``)."""
    out = Path(out)
    entries = [variant_entry(v, records[v.task_id]) for v in variants]
    baseline = records["baseline"]["result"] or {}
    report = {
        "spec": spec.name,
        "config_hash": spec.config_hash(),
        "model_hash": spec.model_hash(),
        "data_folder": str(data_folder),
        "sampler": spec.sampler.model_dump(),
        "ci_prob": spec.ci_prob,
        "interval": "equal-tailed",
        "psens_threshold": PSENS_THRESHOLD,
        "power_scaling": baseline.get("power_scaling", {}),
        "per_prior_power_scaling": baseline.get("per_prior_power_scaling", {}),
        "prior_variants": entries,
        "timing": {"wall_seconds": wall_seconds,
                   "fit_seconds": {v.name: records[v.task_id]["seconds"] for v in variants}},
    }
    batch.write_json_atomic(out / SENSITIVITY_JSON, report)
    sensitivity_table(entries).to_csv(out / SENSITIVITY_CSV, index=False)
    return report


def sensitivity_table(entries: Sequence[dict]) -> pd.DataFrame:
    """One row per variant: the three intervals, the sampler's diagnostics, status."""
    rows = []
    for e in entries:
        row = {"variant": e["name"], "kind": e["kind"], "status": e["status"]}
        for q in (*REPORTED, "slope_ratio_legacy"):
            interval = e.get(q) or {}
            row.update({f"{q}_{k}": interval.get(k) for k in ("median", "lower", "upper")})
        diag = e["diagnostics"] or {}
        row.update({k: diag.get(k) for k in ("divergences", "max_rhat", "min_ess_bulk",
                                             "passed")})
        row["error"] = e["error"]
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------- power scaling of a run
MAIN_POWER_SCALING_JSON = "power_scaling_main_fit.json"


def power_scaling_of_run(run_folder: Path) -> dict:
    """Joint and per-prior power scaling on a run's own draws (thousands, where the
    sensitivity job's baseline refit has hundreds: psens on 600 draws is noisy), written to
    RUN/sensitivity/power_scaling_main_fit.json."""
    from densing_bayes.data.load import load_data
    from densing_bayes.inference.run_io import atomic_write_text, load_run
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    from densing_bayes.analysis.derived import add_derived

    run = load_run(Path(run_folder))
    add_derived(run.idata, run.spec)  # this version's derived quantities (the slope difference)
    data = load_data(resources.resolve_data_folder(run.summary["data_folder"]))
    model = build_model(prepare_inputs(data, run.spec), run.spec)
    result = {"run": str(run_folder), "draws": int(run.idata.posterior.sizes["chain"]
                                                   * run.idata.posterior.sizes["draw"]),
              "psens_threshold": PSENS_THRESHOLD,
              "power_scaling": power_scaling_table(run.idata, model),
              "per_prior_power_scaling": per_prior_power_scaling(run.idata, model)}
    import json

    atomic_write_text(Path(run_folder) / "sensitivity" / MAIN_POWER_SCALING_JSON,
                      json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":  # python -m densing_bayes.analysis.sensitivity RUN
    import sys

    out = power_scaling_of_run(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/default"))
    print({k: v for k, v in out["power_scaling"].items() if k.startswith("doubling")})
