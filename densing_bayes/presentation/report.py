"""``densing-bayes report RUN``: one self-contained HTML report of a fitted run.

Writes ``RUN/report.html`` (figures embedded as base64 PNG; no external URL, stylesheet or
script, so it opens offline and prints) and every figure as PNG and SVG in ``RUN/figures/``.
Everything comes from the run folder: ``posterior.nc`` (draws, observed and constant data),
``summary.json`` (dates, sizes, the paper baseline, diagnostics, reproducibility facts),
``spec.toml`` and, when present, ``sensitivity/sensitivity.json``. Per-row covariates are read
from the posterior's ``constant_data`` group; only when a run lacks them is the data folder named
in summary.json re-read (:func:`plot_inputs`).

Python API: :func:`write_report` (the whole report), :func:`plot_inputs` (the covariates every
plot function in :mod:`densing_bayes.presentation.plots` takes as ``inputs``), and the table
builders used by the report (:func:`paper_comparison`, :func:`diagnostics_table`,
:func:`loo_tables`, :func:`sensitivity_tables`).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path

import arviz as az
import matplotlib
import numpy as np
import pandas as pd

from densing_bayes import __version__
from densing_bayes.analysis import checks as model_checks
from densing_bayes.analysis.calibration import family_wise_uniformity
from densing_bayes.analysis.derived import PAPER_REPORTED
from densing_bayes.analysis.envelope import envelope_check
from densing_bayes.inference.environment import describe as describe_stack
from densing_bayes.inference.run_io import FittedRun, RunFolderError, data_hash, load_run
from densing_bayes.model.build import KEY_PARAMETERS
from densing_bayes.model.inputs import ModelInputs
from densing_bayes.model.spec import ModelSpec
from densing_bayes.presentation import plots

log = logging.getLogger("densing_bayes")

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
SENSITIVITY_FILE = Path("sensitivity") / "sensitivity.json"
TEMPLATE = "report.html.j2"
CHECKS_TEMPLATE = "checks_header.html.j2"

#: Resolution of the PNGs (embedded and on disk): 10-inch figures are 1100 px wide.
PNG_DPI = 110

#: At most this many processes draw the figures (the report has 17; on 2 cores they took 8.8 s
#: against 14.3 s serially, and more cores gain little against the serial loading and checks).
MAX_FIGURE_WORKERS = 4
#: Seconds each figure took to draw on the reference run (16,000 draws, 2 cores, 2026-12-01):
#: only their order matters, longest drawn first; a figure not listed counts as 1 s.
FIGURE_SECONDS = {"loss_law": 5.1, "rank": 4.2, "ppc": 3.9, "benchmark_ppc": 3.5,
                  "energy": 2.8, "effective_size": 2.6, "prior_posterior": 2.5,
                  "envelope": 1.8, "loss_score": 1.7, "density_trend": 1.1,
                  "doubling_time": 0.9, "prior_predictive": 0.9, "protocol_offsets": 0.2,
                  "loo_pit": 0.2, "holdout": 0.2}

#: The report's sections, in order: (anchor id, heading). Tests check that every one is present.
SECTIONS = (
    ("density-law", "1. The Densing Law with uncertainty"),
    ("doubling-time", "2. Doubling time and acceleration"),
    ("effective-size", "3. Effective size and density per model"),
    ("loss-law", "4. Loss law per benchmark"),
    ("loss-score", "5. Loss to score per benchmark"),
    ("checks", "6. Model checks"),
    ("diagnostics", "7. Sampler diagnostics"),
    ("paper-comparison", "8. The paper beside this fit"),
    ("sensitivity", "9. Prior sensitivity"),
    ("robustness", "10. Robustness"),
    ("reproducibility", "11. Reproducibility"),
)


# ============================================================================== plot inputs
_LAW_VARS = ("law_benchmark", "law_x_params", "law_x_tokens")
_CURVE_VARS = ("curve_benchmark", "curve_loss")
_MODEL_VARS = ("model_log_params", "model_time", "score_model", "score_benchmark")


def plot_inputs(run: FittedRun) -> ModelInputs:
    """The per-row covariates the plots need, as a :class:`ModelInputs`.

    Read from the run's ``constant_data`` and ``observed_data`` (what the model was fitted
    to); only if those lack a variable, the data folder named in summary.json is re-read and
    passed through ``prepare_inputs`` under the run's spec (with a warning if its data hash no
    longer matches the run's).
    """
    idata = run.idata
    groups = set(idata.groups())
    cd = idata.constant_data if "constant_data" in groups else None
    obs = idata.observed_data if "observed_data" in groups else None
    attrs = idata.posterior.attrs
    has_models = "model" in idata.posterior.coords and bool(run.summary.get("models"))
    needed = _LAW_VARS + _CURVE_VARS + ("chance",) + (_MODEL_VARS if has_models else ())
    if (cd is not None and obs is not None and all(v in cd for v in needed)
            and all(k in attrs for k in ("centre_log_params", "centre_log_tokens"))
            and all(v in obs for v in ("log_loss_obs", "curve_score_obs"))
            and (not has_models or "score_obs" in obs)):
        return _inputs_from_run(run)
    return _inputs_from_data_folder(run)


def _inputs_from_run(run: FittedRun) -> ModelInputs:
    idata, spec = run.idata, run.spec
    cd, obs, post = idata.constant_data, idata.observed_data, idata.posterior
    benchmarks = [str(b) for b in post.coords["benchmark"].values]
    law_benchmark = cd["law_benchmark"].values.astype(int)
    law_loss = np.exp(obs["log_loss_obs"].values.astype(float))
    loss_scale = np.array([np.median(law_loss[law_benchmark == i]) if (law_benchmark == i).any()
                           else np.nan for i in range(len(benchmarks))])
    centre_n = float(post.attrs["centre_log_params"])
    centre_d = float(post.attrs["centre_log_tokens"])
    common = dict(
        benchmarks=benchmarks,
        chance=np.asarray(cd["chance"].sel(benchmark=benchmarks).values, float),
        loss_scale=loss_scale,
        centre_log_params=centre_n,
        centre_log_tokens=centre_d,
        log_d0_centred=float(np.log(spec.data.d0_tokens) - centre_d),
        law_benchmark=law_benchmark,
        law_x_params=cd["law_x_params"].values.astype(float),
        law_x_tokens=cd["law_x_tokens"].values.astype(float),
        law_loss=law_loss,
        law_run=[""] * len(law_loss),
        curve_benchmark=cd["curve_benchmark"].values.astype(int),
        curve_loss=cd["curve_loss"].values.astype(float),
        curve_score=obs["curve_score_obs"].values.astype(float),
    )
    if "model" not in post.coords or "score_obs" not in obs:
        return ModelInputs(**common)
    models = [str(m) for m in post.coords["model"].values]
    entries = run.summary.get("models") or {}
    origin = np.datetime64(spec.trend.changepoint_date, "D")
    time = cd["model_time"].values.astype(float)
    release = np.array([np.datetime64(entries[m]["release_date"], "D") if m in entries
                        else origin + np.timedelta64(int(round(t * 365.25)), "D")
                        for m, t in zip(models, time)], "datetime64[D]")
    kinds = ([str(k) for k in post.coords["source_kind"].values]
             if "source_kind" in post.coords else ["unknown"])
    score = obs["score_obs"].values.astype(float)
    return ModelInputs(
        **common,
        models=models,
        model_log_params=cd["model_log_params"].values.astype(float),
        model_time=time,
        model_release=release,
        model_lineage=(cd["model_lineage"].values.astype(int) if "model_lineage" in cd
                       else np.zeros(0, int)),
        lineages=([str(v) for v in post.coords["lineage"].values] if "lineage" in post.coords
                  else []),
        score_model=cd["score_model"].values.astype(int),
        score_benchmark=cd["score_benchmark"].values.astype(int),
        score_source=(cd["score_source"].values.astype(int) if "score_source" in cd
                      else np.zeros(len(score), int)),
        score_value=score,
        score_raw=score,  # the run stores the squeezed value; it differs only at 0 and 1
        source_kinds=kinds,
        notes=tuple(run.summary.get("notes") or ()),
    )


def _inputs_from_data_folder(run: FittedRun) -> ModelInputs:
    from densing_bayes.data.load import load_data
    from densing_bayes.model.inputs import prepare_inputs

    folder = Path(run.summary.get("data_folder")
                  or run.idata.posterior.attrs.get("data_folder", ""))
    if not folder.is_dir():
        raise RunFolderError(f"{run.folder}: the posterior lacks the covariates the plots need "
                             f"and the data folder '{folder}' named in summary.json is gone")
    log.info("report: re-reading covariates from the data folder %s", folder)
    if run.summary.get("data_hash") and data_hash(folder) != run.summary["data_hash"]:
        log.warning("report: %s changed since the fit (data hash differs); plots of the data "
                    "may not match the posterior", folder)
    return prepare_inputs(load_data(folder), run.spec)


# ============================================================================== formatting
def _num(x, digits: int = 3) -> str:
    """A number for a table: significant digits, thousands separators, '-' for missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _count(x) -> str:
    return plots.format_count(float(x)) if x is not None else "-"


def format_interval(entry: dict | None, ci_prob: float, fmt: Callable = _num,
                    unbounded: str = "unbounded") -> str:
    """'median [lower, upper]' of a summary.json interval; a null end is 'unbounded'."""
    if not entry or entry.get("median") is None:
        return "-"
    lo = fmt(entry["lower"]) if entry.get("lower") is not None else unbounded
    hi = fmt(entry["upper"]) if entry.get("upper") is not None else unbounded
    return f"{fmt(entry['median'])} [{lo}, {hi}]"


# ============================================================================== tables
def paper_comparison(summary: dict) -> list[dict[str, str]]:
    """The paper's published numbers beside the paper's method on this data (point) and this
    fit's posterior (median [equal-tailed interval])."""
    ci = summary.get("ci_prob", plots.CI_PROB)
    base = summary.get("paper_baseline") or {}
    trend = base.get("trend") or {}
    has_cp = summary.get("doubling_time_days_pre") is not None
    after = "after the changepoint" if has_cp else "(whole period, no changepoint)"
    rows = [
        {"quantity": f"doubling time {after} (days)", "paper": "95 (3.3 months)",
         "baseline": _num(trend.get("doubling_time_days_post" if has_cp else
                                    "doubling_time_days")),
         "posterior": format_interval(summary.get("doubling_time_days"), ci)},
        {"quantity": f"slope of ln density {after} (per day)", "paper": "0.0073",
         "baseline": _num(trend.get("slope_per_day_post" if has_cp else "slope_per_day")),
         "posterior": format_interval(summary.get("slope_per_day"), ci)},
        {"quantity": "slope of ln density before the changepoint (per day)",
         "paper": "0.0048 (MMLU, with pre-ChatGPT models)",
         "baseline": _num(trend.get("slope_per_day_pre")),
         "posterior": format_interval(summary.get("slope_per_day_pre"), ci)
         if has_cp else "no changepoint in this spec"},
        {"quantity": "doubling time before the changepoint (days)",
         "paper": f"{math.log(2) / PAPER_REPORTED['slope_per_day_pre']:.0f} (ln 2 / 0.0048)",
         "baseline": _num(trend.get("doubling_time_days_pre")),
         "posterior": format_interval(summary.get("doubling_time_days_pre"), ci)
         if has_cp else "no changepoint in this spec"},
        {"quantity": "acceleration: doubling time before / after",
         "paper": f"{PAPER_REPORTED['doubling_time_ratio']:.2f} ('about 50%')",
         "baseline": _num(trend.get("doubling_time_ratio")),
         "posterior": (format_interval(summary.get("doubling_time_ratio"), ci)
                       + f"; P(ratio > 1) = {summary['prob_acceleration']:.3f}")
         if has_cp and summary.get("doubling_time_ratio") else
         "not in this run (fitted before the ratio was redefined)" if has_cp
         else "no changepoint in this spec"},
    ]
    models = summary.get("models") or {}
    base_models = base.get("models") or {}
    for wanted, paper in (("Llama-1-7B", "< 0.1"), ("Gemma2-9B", "about 3"),
                          ("MiniCPM-3-4B", "about 3")):
        name = plots.find_model(models, wanted)
        if name is None:
            rows.append({"quantity": f"density of {wanted}", "paper": paper,
                         "baseline": "not in this data", "posterior": "not in this data"})
            continue
        b = (base_models.get(name) or {}).get("density")
        rows.append({"quantity": f"density of {name}", "paper": paper,
                     "baseline": _num(b) if b is not None else "no finite inverse",
                     "posterior": format_interval(models[name].get("density"), ci)})
    return rows


def diagnostics_table(run: FittedRun) -> list[dict[str, object]]:
    """R-hat, bulk and tail ESS and MCSE of the key parameters, with median and interval;
    ``fails`` marks a row that misses the spec's thresholds."""
    post = run.idata.posterior
    names = [n for n in KEY_PARAMETERS if n in post]
    if not names:
        return []
    ci = run.summary.get("ci_prob", plots.CI_PROB)
    table = az.summary(run.idata, var_names=names, kind="diagnostics", round_to="none")
    th = run.spec.diagnostics
    rows = []
    for label, row in table.iterrows():
        name, _, index = str(label).partition("[")
        da = post[name]
        if index:
            other = [d for d in da.dims if d not in ("chain", "draw")]
            keys = index.rstrip("]").split(", ")
            da = da.sel(dict(zip(other, keys)))
        q = np.quantile(da.values.ravel(), [(1 - ci) / 2, 0.5, (1 + ci) / 2])
        fails = {"r_hat": not row["r_hat"] <= th.max_rhat,
                 "ess_bulk": not row["ess_bulk"] >= th.min_ess,
                 "ess_tail": not row["ess_tail"] >= th.min_ess}
        rows.append({"parameter": str(label), "median": _num(q[1]),
                     "interval": f"[{_num(q[0])}, {_num(q[2])}]",
                     "r_hat": f"{row['r_hat']:.3f}", "ess_bulk": f"{row['ess_bulk']:.0f}",
                     "ess_tail": f"{row['ess_tail']:.0f}", "mcse_mean": _num(row["mcse_mean"]),
                     "mcse_sd": _num(row["mcse_sd"]), "fails": any(fails.values()),
                     "failed": [k for k, v in fails.items() if v]})
    return rows


@dataclass
class LooTables:
    single: list[dict[str, str]] = field(default_factory=list)
    compare: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    k_threshold: str = "0.70"


def _run_label(run: FittedRun) -> str:
    trend = run.summary.get("trend") or {}
    return (f"{run.folder.name} ({run.summary.get('spec', run.spec.name)}, "
            f"changepoint {trend.get('changepoint', '?')})")


def loo_tables(run: FittedRun, others: Sequence[FittedRun] = (),
               var_name: str = "score_obs",
               ctx: model_checks.CheckContext | None = None) -> LooTables:
    """PSIS-LOO of ``var_name`` for this run and, with other runs fitted to the same
    observations, an ``az.compare`` table. ``ctx``: the checks' context, whose PSIS weights
    give the single-run numbers (the same Pareto k as the header's check, no second pass)."""
    out = LooTables()
    if "log_likelihood" not in run.idata.groups() or var_name not in run.idata.log_likelihood:
        out.notes.append(f"this run has no pointwise log-likelihood of {var_name}: no LOO")
        return out
    if ctx is not None and ctx.var_name == var_name:
        loo = ctx.loo
    else:
        elpd = az.loo(run.idata, var_name=var_name, pointwise=True)
        loo = {"elpd_loo": elpd.elpd_loo, "se": elpd.se, "p_loo": elpd.p_loo,
               "pareto_k": np.asarray(elpd.pareto_k),
               "good_k": float(getattr(elpd, "good_k", 0.7))}  # min(1 - 1/log10(S), 0.7)
    k, good_k = np.asarray(loo["pareto_k"]), loo["good_k"]
    out.k_threshold = f"{good_k:.2f}"
    out.single.append({"elpd_loo": _num(loo["elpd_loo"], 5), "se": _num(loo["se"]),
                       "p_loo": _num(loo["p_loo"]), "n": str(k.size),
                       "k_high": f"{int((k > good_k).sum())} ({(k > good_k).mean():.1%})"})
    if not others:
        out.notes.append("one run only: pass other changepoint variants fitted to the same data "
                         "(densing-bayes report RUN --compare RUN2 RUN3) for a comparison")
        return out
    observed = run.idata.observed_data[var_name].values
    compared = {_run_label(run): run.idata}
    for other in others:
        idata = other.idata
        if ("log_likelihood" not in idata.groups() or var_name not in idata.log_likelihood):
            out.notes.append(f"{other.folder}: no log-likelihood of {var_name}; left out")
            continue
        obs = idata.observed_data[var_name].values
        if obs.shape != observed.shape or not np.allclose(obs, observed):
            out.notes.append(f"{other.folder}: fitted to other {var_name} observations "
                             f"({obs.size} vs {observed.size}); LOO is not comparable, left out")
            continue
        compared[_run_label(other)] = idata
    if len(compared) < 2:
        return out
    table = az.compare(compared, var_name=var_name)
    for name, row in table.iterrows():
        out.compare.append({"run": str(name), "rank": str(int(row["rank"])),
                            "elpd_loo": _num(row["elpd_loo"], 5), "p_loo": _num(row["p_loo"]),
                            "elpd_diff": _num(row["elpd_diff"]), "dse": _num(row["dse"]),
                            "weight": f"{row['weight']:.2f}",
                            "warning": "yes" if row["warning"] else "no"})
    return out


def _cell(value, ci: float = plots.CI_PROB) -> str:
    if isinstance(value, dict) and "median" in value:
        return format_interval(value, ci)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v, ci) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_cell(v, ci)}" for k, v in value.items())
    return "-" if value is None else str(value)


def _diagnostics_cell(diag) -> str:
    if not isinstance(diag, dict):
        return "-"
    parts = ["passed" if diag.get("passed") else "FAILED"]
    if diag.get("divergences") is not None:
        parts.append(f"{diag['divergences']} div.")
    if diag.get("max_rhat") is not None:
        parts.append(f"R-hat {diag['max_rhat']:.3f}")
    if diag.get("min_ess_bulk") is not None:
        parts.append(f"ESS {diag['min_ess_bulk']:.0f}")
    return ", ".join(parts)


def _stale_note(stored: dict, spec: ModelSpec, folder: Path | None = None,
                run_data_hash: str | None = None) -> str | None:
    """Say so when a stored analysis was computed for another model than the run's, or (its
    manifest ``folder/batch.json`` says) on other data.

    Compared by model hash (sampler settings left out: the analysis refits with shorter
    chains by design); files written before it existed carry only the config hash.
    """
    key, current = (("model_hash", spec.model_hash()) if "model_hash" in stored
                    else ("config_hash", spec.config_hash()))
    analysed = stored.get(key)
    if analysed is None or analysed == current:
        manifest = folder / "batch.json" if folder is not None else None
        if manifest is None or not manifest.is_file():
            return None
        other = model_checks.other_data_note(run_data_hash, json.loads(manifest.read_text()))
        return f"This analysis was {other}." if other else None
    label = key.replace("_", " ")
    return (f"This analysis was computed under another configuration ({label} "
            f"{analysed[:12]}) than this run ({current[:12]}): its refits are not this fit's. "
            f"Re-run densing-bayes sensitivity to refresh it.")


ROBUSTNESS_FILE = Path("robustness") / "robustness.json"

#: Checks gathered in the Robustness section, one verdict line each, in this order.
ROBUSTNESS_CHECKS = ("leave_future_out", "leave_one_family_out", "leave_each_pre_out",
                     "trend_structures",
                     "model_loo_pareto_k", "sensitivity_spread", "sbc_uniformity",
                     "posterior_sbc_uniformity",
                     "misspecification_coverage")


#: Row names of the SBC figure, by the check that reads the batch.
SBC_BATCH_NAMES = {"sbc_uniformity": "prior SBC", "posterior_sbc_uniformity": "posterior SBC"}


def sbc_rank_batches(ctx) -> dict[str, tuple[pd.DataFrame, dict]]:
    """(ranks.csv, sbc.json) of each SBC batch whose check vouches for this run, by row name
    of the figure; a stale batch is not drawn, as its check is not counted. The family-wise
    p-values are recomputed from the stored tests, as the check does, so the figure and the
    check agree whatever rule wrote the batch."""
    out = {}
    for check, folder in model_checks.calibration_batch_folders(ctx).items():
        ranks = folder / "ranks.csv"
        if ranks.is_file():
            report = json.loads((folder / "sbc.json").read_text())
            report["family_wise"] = family_wise_uniformity(report.get("uniformity") or {})
            out[SBC_BATCH_NAMES[check]] = (pd.read_csv(ranks), report)
    return out


def robustness_tables(run: FittedRun, records: Sequence[dict]) -> dict:
    """The Robustness section: one verdict line per check that tests the trend out of sample
    or under other choices (from the report's checks, so the two cannot disagree), and the
    refits of ``RUN/robustness/robustness.json`` when stored."""
    order = {name: i for i, name in enumerate(ROBUSTNESS_CHECKS)}
    lines = sorted((r for r in records if r.get("name") in order),
                   key=lambda r: order[r["name"]])
    out = {"lines": [{"label": r["label"], "detail": r.get("detail", ""),
                      "status": {True: "pass", False: "FAIL", None: "not computed"}[
                          r.get("passed")]} for r in lines],
           "path": str(ROBUSTNESS_FILE), "raw": None, "rows": [], "stale": None}
    path = run.folder / ROBUSTNESS_FILE
    if not path.is_file():
        return out
    data = json.loads(path.read_text())
    ci = float(data.get("ci_prob", run.summary.get("ci_prob", plots.CI_PROB)))
    out.update(raw=data, stale=_stale_note(data, run.spec, path.parent,
                                           run.summary.get("data_hash")), ci=f"{ci:.0%}")
    for e in data.get("refits") or []:
        p = e.get("prediction") or {}
        loo = e.get("model_loo") or {}
        status = str(e.get("status", "ok")) + (f": {e['error']}" if e.get("error") else "")
        out["rows"].append([
            e["name"], e.get("description", ""),
            _cell(e.get("doubling_time_days"), ci), _cell(e.get("slope_difference_per_year"), ci),
            (f"{p['n_inside']}/{p['n_rows']} ({p['coverage']:.0%}), error "
             f"{p['mean_error']:+.3f}" if p.get("n_rows") else "-")
            + (f"; log score {p['elpd']:.1f} (MCSE {p['elpd_mcse']:.1f})"
               if p.get("elpd") is not None else ""),
            _elpd_cell(loo, e.get("exact_loo")),
            _diagnostics_cell(e.get("diagnostics")), status])
    return out


def _elpd_cell(loo: dict, exact: dict | None) -> str:
    """A refit's leave-one-model-out cell: the difference to this spec, the baseline's total
    (and its exactly corrected value), or one left-out model's exact ELPD beside its PSIS one."""
    if exact:
        psis = exact.get("psis_elpd")
        return (f"{exact['model']}: exact {exact['elpd']:.1f} (MCSE {exact['mcse']:.1f})"
                + (f", PSIS {psis:.1f} at k {exact['pareto_k']:.2f}" if psis is not None
                   and exact.get("pareto_k") is not None else ""))
    vs = loo.get("vs_baseline")
    if vs:
        return f"{vs['difference']:+.1f} (SE {vs['se']:.1f})"
    if not loo:
        return "-"
    fixed = loo.get("exact") or {}
    return (f"{loo['elpd']:.1f} (SE {loo['se']:.1f})"
            + (f"; with {len(fixed['refitted'])} exact refits {fixed['elpd']:.1f} "
               f"(SE {fixed['se']:.1f})" if fixed.get("elpd") is not None else ""))


def sensitivity_tables(run: FittedRun) -> dict | None:
    """The sensitivity analysis stored beside the run (``RUN/sensitivity/sensitivity.json``,
    written by ``densing-bayes sensitivity``) as tables; None when it was not run."""
    path = run.folder / SENSITIVITY_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    ci = float(data.get("ci_prob", run.summary.get("ci_prob", plots.CI_PROB)))
    out = {"path": str(SENSITIVITY_FILE), "raw": data, "ci": f"{ci:.0%}", "tables": [],
           "stale": _stale_note(data, run.spec, path.parent, run.summary.get("data_hash"))}
    ps = data.get("power_scaling")
    if isinstance(ps, dict) and ps:
        rows = []
        for quantity, entry in ps.items():
            entry = entry if isinstance(entry, dict) else {"value": entry}
            flag = entry.get("flag", entry.get("diagnosis", "-"))
            prior = entry.get("prior")
            rows.append((-(prior if isinstance(prior, (int, float)) else -1.0),
                         [str(quantity), _cell(prior), _cell(entry.get("likelihood")),
                          _cell(flag)]))
        rows = [r for _, r in sorted(rows, key=lambda t: t[0])]  # most prior-sensitive first
        flagged = sum(r[3] not in ("-", "", "not computed") for r in rows)
        threshold = data.get("psens_threshold")
        out["tables"].append({
            "title": "Power-scaling sensitivity (no refits)",
            "columns": ["quantity", "prior", "likelihood", "diagnosis"], "rows": rows,
            "note": "ArviZ psens: how far each posterior moves when the prior, or the "
                    "likelihood, is raised to a power near 1"
                    + (f"; above {threshold} a quantity counts as sensitive"
                       if threshold is not None else "")
                    + f". {flagged} of {len(rows)} quantities are flagged; sorted by prior "
                      "sensitivity, largest first. A flag says the prior still moves that "
                      "posterior (prior and likelihood both matter), not that the fit is wrong: "
                      "the refits below show how far the headline moves under other priors."})
    variants = data.get("prior_variants")
    if isinstance(variants, list) and variants:
        rows = []
        for v in variants:
            v = v if isinstance(v, dict) else {}
            status = str(v.get("status", "ok"))
            if v.get("error"):
                status += f": {v['error']}"
            rows.append([str(v.get("name", "?")), str(v.get("kind", "")),
                         str(v.get("description", "")),
                         _cell(v.get("doubling_time_days"), ci),
                         _cell(v.get("doubling_time_days_pre"), ci),
                         _ratio_cell(v, ci),
                         _diagnostics_cell(v.get("diagnostics")), status])
        out["tables"].append({
            "title": "Refits under prior and data variants",
            "columns": ["variant", "kind", "what changes", "doubling time after (days)",
                        "doubling time before (days)", "doubling time before / after",
                        "diagnostics",
                        "status"],
            "rows": rows,
            "note": f"Median [{ci:.0%} equal-tailed interval] of each refit; 'unbounded': the "
                    "slope's interval reaches 0. Refits recorded before 2026-12-03 stored "
                    "the plain slope ratio (after / before; negative where the slope before "
                    "is), not the doubling-time ratio: it is shown marked 'slope ratio' until "
                    "the refit is rerun." + _sampler_note(data.get("sampler"))})
    return out


def _ratio_cell(variant: dict, ci: float) -> str:
    """The doubling-time ratio of a refit, or the slope ratio an older record holds, named."""
    if variant.get("doubling_time_ratio"):
        return _cell(variant["doubling_time_ratio"], ci)
    legacy = variant.get("slope_ratio_legacy") or variant.get("acceleration_ratio")
    return f"slope ratio {_cell(legacy, ci)}" if legacy else "-"


def _sampler_note(sampler) -> str:
    """How the refits were sampled (often fewer draws than the run itself)."""
    if not isinstance(sampler, dict) or "draws" not in sampler:
        return ""
    return (f" Refits sampled with {sampler.get('backend', '?')}, {sampler.get('chains')} "
            f"chains x {sampler['draws']} draws ({sampler.get('tune')} tuning), seed "
            f"{sampler.get('seed')}.")


def holdout_table(run: FittedRun, ctx: model_checks.CheckContext | None = None) -> dict | None:
    """Held-out reference runs (the OLMo 7B) against the fit's posterior predictive intervals.

    None when the data folder is gone or holds no hold-out rows; the fit never saw these rows
    (``data.exclude_holdout``), so this is an out-of-sample check of the chain. ``ctx``: the
    checks' context, whose cached predictions are reused.
    """
    ctx = ctx or model_checks.CheckContext.from_run(run)
    table = ctx.holdout
    ci = ctx.ci_prob
    if table is None:
        return None
    rows = [[str(r.run_id), str(r.benchmark), f"{r.actual:.3f}",
             f"{r.median:.3f} [{r.lower:.3f}, {r.upper:.3f}]", "yes" if r.inside else "no"]
            for r in table.itertuples()]
    return {"rows": rows, "ci": f"{ci:.0%}", "n": len(table), "inside": int(table["inside"].sum()),
            "mae": f"{table['abs_error'].mean():.3f}",
            "bias": f"{table['error'].mean():+.3f}"}


#: Bands of a model's actual parameter count for the LOO-PIT's size split: (lower edge in
#: parameters, label). On the reference run the scores of models under 3B scatter more than
#: their predictions allow, and 61% of those of models of 100B and over lie above their
#: predictions' medians (sign test p 0.05).
SIZE_BANDS = ((0.0, "under 3B"), (3e9, "3B to 10B"), (1e10, "10B to 30B"),
              (3e10, "30B to 100B"), (1e11, "100B and over"))


def size_band_labels(log_params) -> list[str]:
    """The ``SIZE_BANDS`` label of each natural-log parameter count."""
    edges = np.log([lower for lower, _ in SIZE_BANDS[1:]])
    return [SIZE_BANDS[int(i)][1] for i in np.searchsorted(edges, np.asarray(log_params, float),
                                                            side="right")]


def loo_pit_table(run: FittedRun, ctx: model_checks.CheckContext) -> dict | None:
    """The LOO-PIT split by benchmark, by scoring format, by the model's size and by who
    produced the score (``checks.loo_pit_by_group``), or None without it: a shared score
    precision that fits one format and not another shows as "too wide" in one row of the
    format table and "too narrow" in another; a misfit that grows with size (the
    extrapolation the held-out runs test) shows in the size table; a harness run measured the
    way the reference curves were beside an aggregator's transcription shows in the source
    table (docs/model.md, "Pairs measured in more than one format")."""
    const = run.idata.constant_data if "constant_data" in run.idata.groups() else {}
    if "score_benchmark" not in const:
        return None
    try:
        pit = ctx.loo_pit
    except LookupError:
        return None
    names = [str(b) for b in run.idata.posterior["benchmark"].values]
    splits = {"benchmark": [names[i] for i in np.asarray(const["score_benchmark"].values, int)],
              "format": score_format_labels(const)}
    if "score_model" in const and "model_log_params" in const:
        log_params = np.asarray(const["model_log_params"].values, float)
        splits["size"] = size_band_labels(log_params[np.asarray(const["score_model"].values,
                                                                int)])
    sources = score_source_labels(const, run.idata.posterior)
    if len(set(sources)) > 1:
        splits["source"] = sources
    band_order = {label: i for i, (_, label) in enumerate(SIZE_BANDS)}

    def shown(rows, key):
        order = ((lambda r: band_order[r["group"]]) if key == "size"
                 else (lambda r: -r["central"]))
        return [{**r, "tails": f"{r['tails']:.2f}", "central": f"{r['central']:.2f}",
                 "above": f"{r['above']:.2f}", "p_tails": f"{r['p_tails']:.2g}",
                 "p_central": f"{r['p_central']:.2g}", "p_above": f"{r['p_above']:.2g}"}
                for r in sorted(rows, key=order)]

    tables = {key: shown(model_checks.loo_pit_by_group(pit, groups), key)
              for key, groups in splits.items() if len(groups) == len(pit)}
    return {"tail": f"{model_checks.PIT_TAIL:g}", "nominal_tails": f"{2 * model_checks.PIT_TAIL:.2f}",
            "rows": tables["benchmark"], "by_format": tables.get("format", []),
            "by_size": tables.get("size", []), "by_source": tables.get("source", [])}


def score_source_labels(const, posterior) -> list[str]:
    """Who produced each score row (the ``source_kind`` of its reports: a harness run, the
    developer's own report, an aggregator's transcription; "mixed" when a measurement's
    reports come from more than one kind), or [] when the run does not record it."""
    if "score_source" not in const or "source_kind" not in posterior.coords:
        return []
    kinds = [str(k) for k in posterior["source_kind"].values]
    return [kinds[int(i)] for i in np.asarray(const["score_source"].values, int)]


#: PIT values below it or above 1 minus it are listed one by one (the LOO-PIT check's band
#: is left at 0.99 on the reference run: those scores are the misfit).
PIT_EXTREME_TAIL = 0.01


def score_format_labels(const) -> list[str]:
    """The format each score row was read in: 'best of RC/MC' (best-of-two rows), 'unstated'
    (marginalised over the formats), else the one stated format (weight 1)."""
    formats = [str(f) for f in const["score_format_log_weight"]["format"].values]
    weights = np.exp(np.asarray(const["score_format_log_weight"].values, float))
    best = np.asarray(const["score_best"].values, bool) if "score_best" in const else \
        np.zeros(len(weights), bool)
    unstated = np.asarray(const["score_unstated"].values, bool) if "score_unstated" in const \
        else np.zeros(len(weights), bool)
    names = {"rc": "cloze (RC)", "mc": "multiple choice (MC)"}
    return ["best of RC/MC" if b else "unstated" if u else names.get(formats[int(np.argmax(w))],
                                                                     formats[int(np.argmax(w))])
            for w, b, u in zip(weights, best, unstated, strict=True)]


def loo_pit_extremes(run: FittedRun, ctx: model_checks.CheckContext,
                     tail: float = PIT_EXTREME_TAIL) -> dict | None:
    """The scores whose LOO-PIT is below ``tail`` or above 1 - ``tail`` (outside their central
    1 - 2 tail LOO predictive interval), one row each, with how many a calibrated model gives."""
    const = run.idata.constant_data if "constant_data" in run.idata.groups() else {}
    if "score_benchmark" not in const or "score_model" not in const:
        return None
    try:
        pit = np.asarray(ctx.loo_pit, float)
    except LookupError:
        return None
    post = run.idata.posterior
    models = [str(m) for m in post["model"].values]
    benchmarks = [str(b) for b in post["benchmark"].values]
    score = np.asarray(run.idata.observed_data[ctx.var_name].values, float)
    median = None
    if "posterior_predictive" in run.idata.groups() and \
            ctx.var_name in run.idata.posterior_predictive:
        median = run.idata.posterior_predictive[ctx.var_name].median(("chain", "draw")).values
    formats = score_format_labels(const)
    rows = []
    for i in np.flatnonzero((pit < tail) | (pit > 1.0 - tail)):
        rows.append({"model": models[int(const["score_model"].values[i])],
                     "benchmark": benchmarks[int(const["score_benchmark"].values[i])],
                     "format": formats[i], "score": f"{score[i]:.3f}",
                     "median": "" if median is None else f"{float(median[i]):.3f}",
                     "pit": f"{pit[i]:.4f}", "high": bool(pit[i] > 0.5)})
    rows.sort(key=lambda r: (not r["high"], r["benchmark"], r["model"]))
    n_high = sum(r["high"] for r in rows)
    return {"tail": f"{tail:g}", "upper": f"{1 - tail:g}", "n": pit.size, "rows": rows,
            "n_high": n_high, "n_low": len(rows) - n_high, "expected": f"{pit.size * tail:.0f}"}


# ============================================================================== figures
@dataclass
class FigureOut:
    key: str
    title: str
    caption: str
    png_base64: str = ""
    error: str = ""
    svg: bool = False


def _save_figure(fig, key: str, folder: Path, svg: bool = False) -> str:
    """Write ``key``.png (and ``key``.svg when ``svg``) into ``folder``; return the PNG as
    base64. SVG is opt-in: it draws every figure a second time (6 s of a 20 s report)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    # One draw on an Agg canvas instead of ``savefig``: with a layout engine, savefig first
    # draws the whole figure with rendering disabled to settle the layout, then draws it again,
    # solving the constrained layout twice. The pixels are the same (tested); the reference
    # report's figures took 0.80 of savefig's time.
    fig.set_dpi(PNG_DPI)
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    png = buf.getvalue()
    (folder / f"{key}.png").write_bytes(png)
    if not svg:
        return base64.b64encode(png).decode("ascii")
    if fig.get_layout_engine() is not None:  # the layout is settled: don't solve it again
        fig.set_layout_engine("none")
    fig.savefig(folder / f"{key}.svg", format="svg", metadata={"Date": None})
    return base64.b64encode(png).decode("ascii")


@dataclass
class FigureJob:
    """One figure to draw: its key, title and a builder returning a matplotlib Figure."""
    key: str
    title: str
    build: Callable


def _draw(job: FigureJob, caption: str, folder: Path, svg: bool = False) -> FigureOut:
    start = time.perf_counter()
    out = FigureOut(job.key, job.title, caption)
    try:
        fig = job.build()
        out.png_base64 = _save_figure(fig, job.key, folder, svg)
        out.svg = svg
        log.info("report: drew %s in %.1f s", job.key, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a failed figure is reported, not fatal
        log.warning("report: figure %s failed: %s", job.key, exc)
        out.error = f"{type(exc).__name__}: {exc}"
    return out


#: The figures a forked drawing process works through (set just before the fork, so each
#: child inherits the builders and the posterior they close over without pickling them).
_FORKED_JOBS: list[tuple[FigureJob, str, Path, bool]] = []


def _draw_forked(index: int) -> FigureOut:
    return _draw(*_FORKED_JOBS[index])


def default_figure_workers() -> int:
    """Processes that draw the report's figures: one per available core, at most
    ``MAX_FIGURE_WORKERS``; 1 where forking is not possible (no ``fork`` start method, or
    inside a daemonic process such as a Dask or multiprocessing worker)."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods() or mp.current_process().daemon:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_FIGURE_WORKERS))


def start_figures(jobs: Sequence[FigureJob], captions: dict[str, str], folder: Path, *,
                  svg: bool = False, workers: int | None = None
                  ) -> Callable[..., dict[str, FigureOut]]:
    """Start drawing every figure; return ``wait(cancel=False)``, which returns them by key.

    With more than one worker the figures are drawn in forked processes (matplotlib is
    single-threaded and the figures are independent: on 2 cores the reference report's took
    0.62 of their serial time) while the caller goes on, so that the report's model checks run
    beside them; ``wait(cancel=True)`` stops the processes (the caller failed). With one
    worker they are drawn here, at once. The PNGs are the same bytes either way (tested)."""
    args = [(job, captions[job.key], folder, svg) for job in jobs]
    workers = default_figure_workers() if workers is None else workers
    if workers <= 1 or len(args) <= 1:
        drawn = {job.key: _draw(*a) for job, a in zip(jobs, args, strict=True)}
        return lambda cancel=False: drawn
    import multiprocessing as mp
    global _FORKED_JOBS
    _FORKED_JOBS = args
    # longest first (the classic LPT rule): a slow figure left to the end would keep one
    # process busy while the others idle
    order = sorted(range(len(args)), key=lambda i: -FIGURE_SECONDS.get(jobs[i].key, 1.0))
    try:
        pool = mp.get_context("fork").Pool(min(workers, len(args)))
        # chunksize 1: the next figure goes to whichever process is free
        pending = pool.map_async(_draw_forked, order, chunksize=1)
    except BaseException:
        _FORKED_JOBS = []
        raise

    def wait(cancel: bool = False) -> dict[str, FigureOut]:
        global _FORKED_JOBS
        try:
            if cancel:
                pool.terminate()
                return {}
            drawn = pending.get()
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            _FORKED_JOBS = []
        by_index = dict(zip(order, drawn, strict=True))
        return {by_index[i].key: by_index[i] for i in range(len(args))}
    return wait


def draw_figures(jobs: Sequence[FigureJob], captions: dict[str, str], folder: Path, *,
                 svg: bool = False, workers: int | None = None) -> dict[str, FigureOut]:
    """Draw every figure and return them by key (:func:`start_figures`, then wait)."""
    return start_figures(jobs, captions, folder, svg=svg, workers=workers)()


def _captions(run: FittedRun, ci: float, has_models: bool = True) -> dict[str, str]:
    p = f"{ci:.0%}"
    trend = run.summary.get("trend") or {}
    kind = trend.get("kind", "frontier")
    cp = trend.get("changepoint", "fixed")
    cp_text = {
        "fixed": f"The dotted vertical line is the changepoint, fixed at "
                 f"{trend.get('changepoint_date')}.",
        "unknown": f"The changepoint's date is uncertain: the solid vertical line is its "
                   f"posterior median and the shaded span its {p} equal-tailed credible "
                   f"interval (its prior is centred on {trend.get('changepoint_date')}, dotted).",
        "none": "This spec has no changepoint; the dotted line only marks ChatGPT's release.",
    }[cp]
    curve = ("the posterior frontier exp f(t) (the density an efficient model reaches at "
             "release date t)" if kind == "frontier" else "the posterior mean trend exp f(t)")
    return {
        "density_trend": (
            f"Capability density (effective / actual parameters, log scale) of each evaluated "
            f"model against its release date. Dots: posterior medians; grey bars: {p} "
            f"equal-tailed credible intervals (parameter uncertainty of each model's density). "
            f"Blue line: {curve}, with 50% and {p} equal-tailed credible bands of f(t) (parameter "
            f"uncertainty of the curve, not a predictive interval for new models). {cp_text} "
            f"Hollow green squares: point densities of the paper's least-squares pipeline run on "
            f"the same data, drawn only where that pipeline gives a finite, positive density "
            f"inside the posterior's range (its inversions explode near a sigmoid's ceiling; "
            f"the legend says for how many models it is defined). Upper left: the headline "
            f"numbers. Dashed black: the paper's published slope (0.0073 per day, doubling "
            f"in 95 days). Its intercept is not comparable (the paper's reference family is not "
            f"public), so the line is anchored, by us, to pass through the posterior median "
            f"frontier at Llama-1's release (2023-02-24): only its slope carries the paper's "
            f"information. Labels: the models the paper names, then those on the running maximum "
            f"of posterior medians, as many as fit without overlapping."),
        "doubling_time": (
            f"Left: posterior densities (Gaussian kernel estimates of the draws) of the frontier's "
            f"doubling time ln 2 / slope, in days (months on the top axis); shaded: the {p} "
            f"equal-tailed credible interval, dashed coloured line: the median. Draws with a "
            f"non-positive slope have no doubling time and are left out (their share is given "
            f"when not zero; the legend's intervals count them as never doubling, as the "
            f"summary does); the x axis is cut at 1.6 times the largest interval end (or the "
            f"99.5th percentile, if smaller). Vertical dashed lines: "
            f"the paper's values. Right: the acceleration, slope after minus slope before the "
            f"changepoint in e-folds of density per year, with its {p} equal-tailed credible "
            f"interval shaded and the posterior probability that it exceeds 0 (faster growth "
            f"after ChatGPT's release); the doubling-time ratio (before / after; infinite in draws "
            f"where density doubles after but not before) is printed beside it."),
        "effective_size": (
            f"Per model, newest at the top (release month in brackets). Left: effective parameter "
            f"size (the size a reference-family model trained on D0 tokens needs to match the "
            f"model's scores), with the actual size as a red cross. Right: density = effective / "
            f"actual size; the dashed line is density 1 (the reference family). Thin bars: {p}, "
            f"thick bars: 50% equal-tailed credible intervals (parameter uncertainty); dots: "
            f"posterior medians; hollow squares: the paper's point pipeline, drawn only where it "
            f"gives a finite, positive value inside the posterior's range. Log x axes, ticks "
            f"on top and bottom. Absolute densities are relative to the reference family, with "
            f"each reported score read through the curve of its scoring format (cloze or "
            f"multiple choice) and the residual protocol offsets of section 5."),
        "loss_law": (
            f"Each reference run's loss against its training compute "
            f"6ND (log-log axes), one colour per model size N. Lines: posterior median of the "
            f"expected loss along each size's range of training tokens; bands: {p} equal-tailed "
            f"credible bands of the expected loss (parameter uncertainty only: the observation "
            f"noise is checked in section 6)."),
        "loss_score": (
            f"Grey: the reference family's (loss, score) rows that entered the fit. Blue: "
            f"posterior median of the fitted sigmoid with its {p} equal-tailed credible band "
            f"(parameter uncertainty of the expected score). Dotted: chance."
            + (" Orange dots: each reported score of an evaluated model, placed at the "
               "posterior median loss the loss law gives the model at its effective size and D0 "
               "tokens. Reported scores follow other protocols than the reference family's "
               "evaluation; the model absorbs this as a per-benchmark protocol offset (and, "
               "where the spec has [observation] protocol_scale, as in the default, a factor on "
               "the curve's logit slope), and the red dashed curve is the sigmoid with them "
               "(posterior median): the orange dots should scatter around it, not around the "
               "blue curve." if has_models
               else "")),
        "envelope": (
            "The paper's number and this model's are different statistics. Blue: the posterior "
            "of this model's answer, the doubling time of the frontier's location (and of the "
            "mean log density). Green: the paper's statistic (a least-squares line through the "
            "running maximum of log density over release date, points released after "
            "2022-11-30) computed on the bundled models' own posterior densities, one value per "
            "draw. Grey: the same statistic for replicated models at the same release dates, "
            "their densities drawn from the fitted frontier and its scatter (the posterior "
            "predictive distribution of the envelope slope). An envelope rises faster than the "
            "frontier's location when more models are released later, because the maximum of "
            "more draws sits closer to the frontier. Orange: the envelope slope of the paper's "
            "point pipeline run on these data; noisy point densities inflate a running maximum, "
            "so a value far left of the grey histogram says the point pipeline's envelope is "
            "steeper than anything the fitted frontier produces. Dashed: the paper's published "
            "value, on its own models and benchmarks. Doubling times outside 20-1,000 days are "
            "drawn at the edges."),
        "prior_predictive": (
            "What the priors alone say, before any score is seen (500 joint prior draws of "
            "every parameter and of the data; the run's prior_predictive group). Left: the "
            "reported-score measurements the priors produce (grey) against the observed ones "
            "(blue outline). Middle: mean and SD of all measurements per prior draw (grey) and "
            "observed (star), with prior predictive p-values. Right: the doubling time after "
            "the changepoint the slope prior implies (grey, growing draws, log scale, clipped to "
            "10-100,000 days; the share "
            "of draws in which density never doubles is in the title), the posterior's "
            f"{ci:.0%} interval (blue band) and the paper's value (orange). Read it as a "
            "referee would: a star outside the grey cloud (p-value near 0 or 1) means the "
            "priors cannot produce data like these; a blue band in the grey histogram's far "
            "tail, or a narrow grey histogram, means the prior, not the data, places the "
            "answer."),
        "prior_posterior": (
            "Prior (grey) against posterior (blue) of the key scalar parameters: kernel density "
            "estimates of prior draws and posterior draws, each scaled to its own maximum so both "
            "shapes are visible (the areas are not comparable). 'sd post/prior' is the ratio of "
            "posterior to prior standard deviation: near 1 means the data say little about that "
            "parameter. 'median at z prior sd': where the posterior median sits in the prior "
            "(its distance from the prior mean in prior standard deviations); at 2 or more the "
            "title is red: the data pull that parameter into the prior's tail (a prior-data "
            "conflict in location, which the width ratio does not show). Exponents and the "
            "sigmoid slope are shown through their pooled means (e^mu)."),
        "ppc": (
            f"Posterior predictive checks of the three likelihood terms. Top: the empirical "
            f"CDF of the observations (black) against those of {plots.PPC_REPLICATES} "
            f"replicated data sets, each one posterior draw's predictive sample (blue); a "
            f"calibrated model puts the black line inside the blue bundle. Bottom: each observation against its posterior "
            f"predictive median, with {p} equal-tailed posterior predictive intervals (include "
            f"observation noise; at most {plots.PPC_MAX_INTERVALS} drawn, evenly spread); the "
            f"text gives the share of all observations inside their interval (about {p} if "
            f"calibrated). Section 6 also shows this per benchmark."),
        "loo_pit": (
            f"LOO-PIT of the evaluated models' scores: for each score, the probability that a "
            f"replicate from its leave-one-out posterior predictive distribution falls below the "
            f"observed value. If the model is calibrated these values are uniform, and the curve "
            f"(their ECDF minus the uniform CDF) stays near 0. Shaded: a simultaneous "
            f"{model_checks.LOO_PIT_BAND_PROB:.0%} band for the whole curve (ArviZ's optimised "
            f"ECDF band on a fixed grid of {model_checks.LOO_PIT_GRID.size} points): a "
            f"calibrated model's curve leaves it anywhere with probability "
            f"{1 - model_checks.LOO_PIT_BAND_PROB:.0%}, so a point outside (red) is a failed "
            f"check, reported in the header. Over-confident predictions (too many observations "
            f"in the tails of their predictive distributions) give a curve above zero at small "
            f"values and below zero at large ones; under-confident ones the reverse; a curve "
            f"mostly on one side of zero means predictions biased up or down."),
        "benchmark_ppc": (
            f"Posterior predictive check of the reported scores, one panel per benchmark: the "
            f"histogram of the reported scores (black steps) against the median (blue) and the "
            f"{p} band per bin (shaded) of the same histogram over replicated data sets drawn "
            f"from the posterior predictive distribution. Titles: the share of the benchmark's "
            f"scores inside their {p} posterior predictive intervals (red when more than 5 "
            f"points below nominal). Scores piled where the replicates have none (e.g. above "
            f"the highest score the model can reach there) are misfit the pooled checks hide."),
        "protocol_offsets": (
            f"Protocol offsets delta_b (per benchmark) and source offsets eta_k (per source "
            f"kind) on the logit scale of the expected score: the posterior (median, 50% and "
            f"{p} equal-tailed intervals) against the prior ({p} interval, grey bar). delta_b "
            f"moves the sigmoid of reported scores relative to the reference family's "
            f"evaluation; a posterior at the edge of its prior means the prior, not the data, "
            f"locates the absolute density level. An offset on the logit scale cannot raise a "
            f"benchmark's ceiling (chance + span). Right panel (with [observation] "
            f"protocol_scale, as in the default): the factor k_b on the reported scores' logit "
            f"slope, log scale, 1 = the reference curve's shape; an interval that excludes 1 "
            f"means the benchmark's reported scores rise faster (k_b > 1) or slower with the "
            f"task loss than the reference family's scores do."),
        "holdout": (
            f"Reference runs kept out of the fit (larger than every fitted run), predicted "
            f"from their size and training tokens through the fitted loss law and sigmoid: "
            f"per benchmark and run, the posterior predictive median and {p} equal-tailed "
            f"predictive interval of the score (includes observation noise), and the actual "
            f"score (diamond; red when outside). Misses on one side mean a biased "
            f"extrapolation; misses on both sides, intervals that are too narrow. The rows of "
            f"one run share its prediction error, so they are not independent checks."),
        "rank": (
            "Rank plots of the trend parameters: the ranks of all draws pooled over chains, "
            "histogrammed per chain. With good mixing every chain's bars are uniform (inside the "
            "dashed band); a chain that sits high or low did not explore the same region."),
        "energy": (
            "Energy plot: the marginal energy distribution and the distribution of energy changes "
            "between successive draws (centred). If the transition distribution is much narrower "
            "than the marginal one the sampler explores heavy tails poorly; E-BFMI per chain "
            "(legend) below 0.3 is a warning."),
        "sbc_ranks": (
            "Simulation-based calibration of the quantities the headline is read from: for "
            "each simulation, the rank of the true value among the fit's (thinned) posterior "
            "draws, as a fraction (rank + 1/2) / (draws + 1); the curve is the ECDF of these "
            "fractions minus the uniform CDF, and the band the simultaneous 95% band of a "
            "uniform sample's ECDF, for each panel alone (red dots: where the ECDF leaves "
            "it). Prior SBC draws the truths from the prior, on the bundled data's "
            "design; posterior SBC draws them from this run's posterior and fits the real "
            "data with one replicate drawn given them. A curve above zero: the truth ranks "
            "low (the posterior sits above it); below: ranks high; rising then falling: "
            "ranks crowd both ends (intervals too narrow). KS p is the quantity's own test; "
            "Holm p is adjusted over the ranked quantities (the doubling times, mirrors of "
            "the slopes, left out), each Bonferroni over its two tests: the basis of the SBC "
            "checks' verdicts."),
        "robustness": (
            f"Left: the doubling time after the changepoint (median, printed, and {p}% "
            f"interval; log scale) refitted without the models released after a cut-off "
            f"(triangles), without one lineage of models (squares), or under another trend "
            f"structure (diamonds), against this fit's {p}% interval (grey band); hollow "
            f"markers and dashed lines: refits that missed their sampler thresholds. Right: "
            f"the share of the left-out models' reported scores inside their 90% posterior "
            f"predictive intervals, predicted from their sizes and release dates alone (their "
            f"densities drawn from the fitted trend's population), with a Wilson 95% interval "
            f"and the count; the shaded band is the coverage called honest. For trend "
            f"structures, the leave-one-model-out ELPD difference to this spec (positive: "
            f"the structure predicts unseen models better)."),
        "sensitivity": (
            f"Doubling time of the frontier density after (blue circles) and before (orange "
            f"squares) the changepoint under each variant of the sensitivity analysis (other "
            f"priors; a benchmark or a source of scores left out), beside this fit (top): "
            f"posterior medians with equal-tailed credible intervals as stored by the analysis "
            f"({p} for this fit; an arrow: unbounded above, the slope's interval reaches 0). Log "
            f"x axis. The dashed line is the paper's 95 days. Refits use the sensitivity "
            f"analysis' own sampler settings; refits that failed their diagnostics are hollow, "
            f"dashed and paler (indicative only). 'this spec (short refit)' is this spec "
            f"refitted with those settings."),
    }


def prob_text(p) -> str:
    """A posterior probability with its comparison: "= 0.985", and "> 0.999" / "< 0.001"
    where three decimals would print a certainty that a finite number of draws cannot give."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "= -"
    p = float(p)
    if p > 0.999:
        return "> 0.999"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}"


def _headline(summary: dict) -> list[tuple[str, str]]:
    ci = summary.get("ci_prob", plots.CI_PROB)
    if summary.get("doubling_time_days") is None:
        return [("doubling time", "not estimated: this run has no evaluated models")]
    has_cp = summary.get("doubling_time_days_pre") is not None

    def days(key):
        return format_interval(summary.get(key), ci, lambda v: f"{v:.0f}")

    months = format_interval(summary.get("doubling_time_months"), ci, lambda v: f"{v:.1f}")
    rows = [("doubling time after the changepoint" if has_cp else "doubling time",
             f"{days('doubling_time_days')} days = {months} months "
             "(paper: 95 days, 3.3 months)")]
    slope = summary.get("slope_per_day")
    if isinstance(slope, dict) and slope.get("median") is not None:
        per_year = {k: (None if v is None else v * 365.25) for k, v in slope.items()}
        rows.append(("slope after the changepoint" if has_cp else "slope",
                     format_interval(per_year, ci, lambda v: f"{v:.2f}")
                     + " e-folds per year (ln density per year)"))
    if has_cp:
        rows.append(("doubling time before the changepoint",
                     f"{days('doubling_time_days_pre')} days"))
        diff = summary.get("slope_difference_per_year")
        if diff:
            rows.append(("acceleration: slope after - slope before",
                         format_interval(diff, ci, lambda v: f"{v:+.2f}") + " e-folds per year; "
                         f"P(> 0) {prob_text(summary.get('prob_slope_difference_positive'))}"))
        if summary.get("doubling_time_ratio"):
            ratio = format_interval(summary["doubling_time_ratio"], ci, lambda v: f"{v:.2f}")
            prob = summary.get("prob_acceleration")
            rows.append(("acceleration: doubling time before / after (infinite where density "
                         "doubled after but not before)",
                         f"{ratio}; P(ratio > 1) {prob_text(prob)}"))
    by_bench = summary.get("doubling_time_days_by_benchmark") or {}
    if by_bench:
        order = sorted(by_bench, key=lambda b: by_bench[b].get("median") or math.inf)
        rows.append(("doubling time after, as each benchmark reads it (days; fastest first)",
                     "; ".join(f"{b} {format_interval(by_bench[b], ci, lambda v: f'{v:.0f}')}"
                               for b in order)))
    if summary.get("prob_growth") is not None:
        rows.append(("P(density grows after the changepoint)" if has_cp
                     else "P(density grows)", prob_text(summary["prob_growth"])))
    if summary.get("changepoint_shift_days"):
        rows.append(("changepoint shift from its prior centre",
                     f"{days('changepoint_shift_days')} days"))
    return rows


def _reproducibility(run: FittedRun) -> list[tuple[str, str]]:
    s = run.summary
    sampler = s.get("sampler") or {}
    timing = s.get("timing_seconds") or {}
    sampler_text = ", ".join(f"{k} {v}" for k, v in sampler.items()) or "-"
    timing_text = ", ".join(f"{k} {float(v):.1f} s" for k, v in timing.items()
                            if v is not None) or "-"
    attrs = run.idata.posterior.attrs
    return [
        ("densing_bayes version (fit / report)",
         f"{s.get('package_version', '-')} / {__version__}"),
        ("spec", str(s.get("spec", run.spec.name))),
        ("config hash", str(s.get("config_hash", "-"))),
        ("data folder", str(s.get("data_folder", "-"))),
        ("data hash", str(s.get("data_hash", "-"))),
        ("seed", str(s.get("seed", "-"))),
        ("sampler", sampler_text),
        ("run time", timing_text),
        ("ArviZ (fit)", str(attrs.get("arviz_version", "-"))),
        ("numerical stack (fit; the same seed gives the same draws only on this stack)",
         describe_stack(s.get("environment"))),
        ("posterior created", str(attrs.get("created_at", "-"))),
        ("report written", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("report environment", f"Python {platform.python_version()}, matplotlib "
                               f"{matplotlib.__version__}, ArviZ {az.__version__}"),
        ("refit with", f"densing-bayes fit {run.folder / 'spec.toml'} --data "
                       f"{s.get('data_folder', 'DATA')} --out NEW_RUN"),
    ]


def _template(name: str = TEMPLATE):
    import jinja2

    def load(template_name: str) -> str:
        return (importlib_resources.files("densing_bayes.presentation") / "templates"
                / template_name).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    return env.get_template(name)


# ============================================================================== how sure is this?
#: Caveats that bind whatever the checks say.
STANDING_CAVEATS = (
    "Absolute densities are relative to the reference family (an OLMo-architecture model "
    "trained on D0 tokens) after mapping each reported score through the curve of its scoring "
    "format; formats no rule could state are a mixture, and the residual protocol offsets "
    "(section 5) and the MC bridge from one 7B run carry the rest of the level.",
    "Effective sizes far below or above the ladder's 190M-3.2B are read off the power law as "
    "if it held there: the loss law's extrapolation error is modelled in the token direction "
    "only.",
    "The paper's 95 days is the slope of a running-maximum envelope through point estimates; "
    "this fit's is the slope of a stochastic frontier through every model's posterior.",
)


def estimand_text(summary: dict, benchmarks: Sequence[str]) -> str:
    """What the headline number estimates, in one paragraph."""
    trend = summary.get("trend") or {}
    frontier = trend.get("kind", "frontier") == "frontier"
    has_cp = summary.get("doubling_time_days_pre") is not None
    what = ("the slope of the frontier of log density over release date (the density an "
            "efficient model reaches when released at date t); because the inefficiency "
            "scale does not change over time, this equals the slope of the mean log density"
            if frontier else "the slope of the mean log density over release date")
    when = (f", after the changepoint {trend.get('changepoint_date', '')}" if has_cp else "")
    names = ", ".join(benchmarks)
    drift = ""
    if summary.get("doubling_time_days_by_benchmark"):
        drift = (" With benchmark drift, each benchmark reads the models' effective sizes "
                 "growing at its own rate (slope + kappa_b, the kappa_b summing to zero), so "
                 "the density here is the benchmarks' equal-weight mean of log effective size "
                 "per parameter, and a benchmark set weighted towards MMLU-like benchmarks "
                 "would give a shorter doubling time (per-benchmark doubling times above).")
    if summary.get("benchmark_loading"):
        drift += (" With benchmark loadings, each benchmark also reads log effective size "
                  "stretched or compressed about the models' mean size (lambda_b, log loadings "
                  "summing to zero), so a model's density is the benchmarks' mean reading "
                  "(loadings in summary.json).")
    return (f"Estimand: {what}{when}, in e-folds per year (natural-log units of density per "
            f"year), reported as the doubling time ln 2 / slope. It is conditional on the "
            f"reference family (the loss-to-score chain fitted to this data folder's "
            f"reference runs) and on this benchmark set ({len(benchmarks)}: {names}).{drift}")


def checks_header_context(records: Sequence[dict], summary: dict,
                          benchmarks: Sequence[str]) -> dict:
    """What the "How sure is this?" header shows: verdict, headline, estimand, caveats, the
    checks table (failed first within each kind)."""
    v = model_checks.verdict(list(records))
    order = {k: i for i, k in enumerate(model_checks.KINDS)}
    rows = sorted(records, key=lambda r: (order.get(r.get("kind"), 9),
                                          {False: 0, None: 1, True: 2}[r.get("passed")]))
    return {
        "verdict": v,
        "check_rows": [{**r, "value_text": _check_value(r.get("value")),
                        "nominal_text": _check_value(r.get("nominal")),
                        "status": {True: "pass", False: "FAIL", None: "not computed"}[
                            r.get("passed")]} for r in rows],
        "headline": _headline(summary),
        "estimand": estimand_text(summary, benchmarks),
        "binding": model_checks.binding_caveats(list(records)),
        "standing": list(STANDING_CAVEATS),
        "caveats": model_checks.binding_caveats(list(records)) + list(STANDING_CAVEATS),
    }


def _check_value(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return _num(x, 4)
    return str(x)


def render_checks_header(records: Sequence[dict], summary: dict,
                         benchmarks: Sequence[str]) -> str:
    """The "How sure is this?" header alone (HTML), as the report shows it."""
    return _template(CHECKS_TEMPLATE).render(**checks_header_context(records, summary,
                                                                     benchmarks))


def update_stored_checks(run: FittedRun, records: list[dict]) -> None:
    """Write ``records`` into RUN/summary.json's ``model_checks`` when they differ from the
    stored ones (the report sees the sensitivity analysis, which the fit could not)."""
    if run.summary.get("model_checks") == records:
        return
    from densing_bayes.inference.run_io import update_summary

    path = Path(run.folder) / "summary.json"
    stored = json.loads(path.read_text())
    stored["model_checks"] = records
    update_summary(run.folder, stored)  # keeps run.json's checksum of summary.json true
    run.summary["model_checks"] = records


def _use_agg() -> None:
    """Headless: use Agg unless the caller already chose a backend through pyplot."""
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


# ============================================================================== the report
def write_report(run_folder: Path, *, force: bool = True,
                 compare: Sequence[Path] = (), svg: bool = False,
                 run: FittedRun | None = None) -> Path:
    """Write ``run_folder/report.html``, ``run_folder/figures/*.png`` (and ``*.svg`` with
    ``svg``) and ``run_folder/answer.md`` (the header in Markdown); return the HTML path.

    ``compare``: other run folders (changepoint variants fitted to the same data) for the LOO
    comparison. With ``force=False`` an existing report is not replaced. ``run``: the run
    already loaded from ``run_folder`` (:func:`load_run`), so that it is not read twice.
    """
    _use_agg()
    run_folder = Path(run_folder)
    out = run_folder / REPORT_FILE
    if out.exists() and not force:
        raise RunFolderError(f"{out} exists; pass --force to replace it")
    if run is None:
        log.info("report: loading %s", run_folder)
        run = load_run(run_folder)
    elif Path(run.folder).resolve() != run_folder.resolve():
        raise ValueError(f"the run given was loaded from {run.folder}, not {run_folder}")
    others = []
    compare_notes = []
    for folder in compare:
        try:
            others.append(load_run(Path(folder)))
        except (RunFolderError, OSError, ValueError) as exc:
            compare_notes.append(f"{folder}: not compared ({exc})")
    html = render_report(run, others=others, extra_notes=compare_notes,
                         figures_folder=run_folder / FIGURES_DIR, svg=svg)
    tmp = out.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    log.info("report: wrote %s", out)
    from densing_bayes.presentation.answer import write_answer

    write_answer(run_folder, run.summary)  # the header in Markdown, from the checks just stored
    return out


#: Spec sections that change the model (the sampler's and the checks' settings are in the
#: reproducibility table, the variants are the sensitivity analysis's).
MODEL_SECTIONS = ("data", "loss_law", "observation", "trend", "priors")


def spec_changes(spec) -> list[str]:
    """Each model setting where ``spec`` differs from the bundled spec of the same name, as
    "key: bundled -> this run": a run fitted with ``--set`` keeps its spec's name, which the
    report's title shows, and a reader must not take the changed model for the named one.
    Empty when the name is no bundled spec's or the model is the same."""
    from densing_bayes.model.spec import bundled_spec_names, load_spec

    if spec.name not in bundled_spec_names():
        return []
    named = load_spec(spec.name)
    if named.model_hash() == spec.model_hash():
        return []

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    before, after = (flat({k: s.resolved().to_dict()[k] for k in MODEL_SECTIONS})
                     for s in (named, spec))
    return [f"{k}: {before.get(k, '-')} -> {after.get(k, '-')}"
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


def spec_has_deviation(idata) -> bool:
    """Whether the envelope check can run: latent densities sampled as deviations."""
    return "log_density_deviation" in idata.posterior and "model" in idata.posterior.dims


def render_report(run: FittedRun, *, others: Sequence[FittedRun] = (),
                  extra_notes: Sequence[str] = (), figures_folder: Path,
                  svg: bool = False, figure_workers: int | None = None) -> str:
    """The report's HTML for ``run``; figures are also written into ``figures_folder``, drawn
    by ``figure_workers`` processes (default: ``default_figure_workers()``)."""
    summary, idata = run.summary, run.idata
    ci = float(summary.get("ci_prob", plots.CI_PROB))
    if figures_folder.exists():
        shutil.rmtree(figures_folder)
    figures_folder.mkdir(parents=True)
    inputs = plot_inputs(run)
    has_models = inputs.has_evaluated_models and "log_density" in idata.posterior
    captions = _captions(run, ci, has_models)
    sens = sensitivity_tables(run)
    jobs: list[FigureJob] = []
    draw = lambda key, title, build: jobs.append(FigureJob(key, title, build))  # noqa: E731
    # The figures of the posterior first: they are drawn while the model checks run, so none
    # of them may use the checks' context (those are added below, after the checks).
    if has_models:
        draw("density_trend", "Density against release date",
             lambda: plots.plot_density_trend(idata=idata, summary=summary, ci_prob=ci))
        draw("doubling_time", "Doubling time and acceleration",
             lambda: plots.plot_doubling_time(idata=idata, ci_prob=ci))
        if spec_has_deviation(idata):
            draw("envelope", "Frontier slope against the paper's envelope slope",
                 lambda: plots.plot_envelope_check(
                     check=envelope_check(idata, summary, run.spec, seed=run.spec.sampler.seed),
                     paper_days=(summary.get("paper_reported") or {}).get(
                         "doubling_time_days"), ci_prob=ci))
        draw("effective_size", "Effective size and density per model",
             lambda: plots.plot_effective_size(idata=idata, summary=summary, ci_prob=ci))
    draw("loss_law", "Loss law per benchmark",
         lambda: plots.plot_loss_law(idata=idata, inputs=inputs, ci_prob=ci))
    if "gamma" in idata.posterior:  # absent when the loss law was fitted alone
        draw("loss_score", "Loss to score per benchmark",
             lambda: plots.plot_loss_score(idata=idata, inputs=inputs, ci_prob=ci))
    if has_models and "protocol_offset" in idata.posterior:
        draw("protocol_offsets", "Protocol and source offsets",
             lambda: plots.plot_protocol_offsets(idata=idata, ci_prob=ci))
    draw("prior_posterior", "Prior against posterior",
         lambda: plots.plot_prior_posterior(idata=idata))
    if has_models:
        draw("prior_predictive", "Prior predictive check on the outcome scale",
             lambda: plots.plot_prior_predictive(
                 idata=idata, paper_days=(summary.get("paper_reported") or {}).get(
                     "doubling_time_days")))
    draw("ppc", "Posterior predictive checks",
         lambda: plots.plot_ppc(idata=idata, ci_prob=ci, seed=run.spec.sampler.seed))
    if has_models and "posterior_predictive" in idata.groups() \
            and "score_obs" in idata.posterior_predictive:
        draw("benchmark_ppc", "Posterior predictive check per benchmark",
             lambda: plots.plot_benchmark_ppc(idata=idata, ci_prob=ci))
    draw("rank", "Rank plots of the trend parameters" if has_models else "Rank plots",
         lambda: plots.plot_rank(idata=idata, var_names=plots.trend_parameters(idata.posterior)
                                 or ["alpha", "beta"]))
    draw("energy", "Energy and E-BFMI", lambda: plots.plot_energy(idata=idata))
    if sens is not None and has_models:
        draw("sensitivity", "Sensitivity of the doubling time to priors and data",
             lambda: plots.plot_sensitivity(sensitivity=sens["raw"], summary=summary))
    log.info("report: drawing %d figures beside the model checks", len(jobs))
    wait = start_figures(jobs, captions, figures_folder, svg=svg, workers=figure_workers)
    try:
        log.info("report: model checks")
        ctx = model_checks.CheckContext.from_run(
            run, sensitivity=sens["raw"] if sens is not None else {},
            sensitivity_note=sens["stale"] if sens is not None else None)
        records = model_checks.run_checks(ctx)
        update_stored_checks(run, records)
        late: list[FigureJob] = []
        draw = lambda key, title, build: late.append(FigureJob(key, title, build))  # noqa: E731
        if has_models:
            draw("loo_pit", "LOO-PIT of evaluated-model scores",
                 lambda: plots.plot_loo_pit(pit=ctx.loo_pit, var_name="score_obs", ci_prob=ci))
        if has_models and ctx.holdout is not None:
            draw("holdout", "Held-out reference runs against their predictive intervals",
                 lambda: plots.plot_holdout(table=ctx.holdout, ci_prob=ci))
        log.info("report: tables")
        loo = loo_tables(run, others, ctx=ctx) if has_models else LooTables(
            notes=["no evaluated models: no LOO of score_obs"])
        loo.notes.extend(extra_notes)
        robust = robustness_tables(run, records)
        if robust["raw"] is not None and has_models:
            draw("robustness", "Out-of-sample refits: doubling time and held-out coverage",
                 lambda: plots.plot_robustness(report=robust["raw"], summary=summary))
        sbc_batches = sbc_rank_batches(ctx)
        if sbc_batches:
            draw("sbc_ranks", "Simulation-based calibration of the headline quantities",
                 lambda: plots.plot_sbc_ranks(batches=sbc_batches))
        # the figures of the checks (small) are drawn here while the processes finish
        log.info("report: drawing %d figures of the checks", len(late))
        figs = draw_figures(late, captions, figures_folder, svg=svg, workers=1)
    except BaseException:
        wait(cancel=True)
        raise
    figs = {**wait(), **figs}
    diag = summary.get("diagnostics") or {}
    bfmi = (np.atleast_1d(az.bfmi(idata)).tolist()
            if "energy" in idata.sample_stats else [])
    changes = spec_changes(run.spec)
    context = {
        "title": f"Densing Law, Bayesian: {summary.get('spec', run.spec.name)}"
                 + (" (changed)" if changes else ""),
        "spec_changes": changes,
        "run_folder": str(run.folder),
        "spec_description": run.spec.description,
        "sections": SECTIONS,
        "ci": f"{ci:.0%}",
        **checks_header_context(records, summary, inputs.benchmarks),
        "has_models": has_models,
        "n_models": len(summary.get("models") or {}),
        "n_benchmarks": len(inputs.benchmarks),
        "n_scores": int(len(inputs.score_value)),
        "score_unit": {"pair_mean": "score measurements (each the mean of one model's distinct "
                                    "reports on one benchmark in one format)",
                       "distinct": "distinct reported scores"}.get(
                           getattr(run.spec.data, "score_rows", "all"), "reported scores"),
        "figures": figs,
        "diagnostics": diag,
        "diag_passed": bool(diag.get("passed", True)),
        "diag_failures": diag.get("failures") or [],
        "bfmi": [f"{b:.2f}" for b in bfmi],
        "diag_table": diagnostics_table(run),
        "thresholds": run.spec.diagnostics.model_dump(),
        "paper_rows": paper_comparison(summary),
        "loo": loo,
        "sensitivity": sens,
        "robustness": robust,
        "holdout": holdout_table(run, ctx),
        "pit_table": loo_pit_table(run, ctx) if has_models else None,
        "pit_extremes": loo_pit_extremes(run, ctx) if has_models else None,
        "notes": summary.get("notes") or [],
        "repro": _reproducibility(run),
        "baseline_trend": (summary.get("paper_baseline") or {}).get("trend") or {},
    }
    return _template().render(**context)
