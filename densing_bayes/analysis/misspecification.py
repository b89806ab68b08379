"""Coverage of the trend's intervals when the data break the model's assumptions.

SBC (``calibration``) asks whether the fit is calibrated when the model is true. This study
asks how far the intervals of the answer (the doubling time, the slopes, their difference
and the level) stay honest when it is not, in the ways the bundled data suggest it is not
(issue 18; model review sections 2.4, 2.6, 2.8). Each *world* is the default model with one
term added that the default leaves out:

* ``protocol_scale``: reported scores follow the reference curve with their logit slope
  multiplied by a per-benchmark factor k_b ~ LogNormal(0, 0.2) (the harness compresses or
  stretches the curve; the model only shifts it).
* ``extrapolation_in_size``: the loss law's log error grows by a random tilt per benchmark
  (SD 0.035 per unit of log N) below and above the ladder's sizes, where the default model
  reads the law as exact (the law is read at effective sizes: on the reference fit 64 of the
  88 bundled models' posterior median effective sizes lie above the ladder's largest, 3.2B).
* ``pair_errors``: every (model, benchmark) pair carries its own logit error, shared by all its
  reports and formats, SD tau_b ~ Gamma(2, 5) (mean 0.4): what exact duplicates leave once they
  are collapsed, a pair's reports are one evaluation, not independent measurements.
* ``precision_per_benchmark``: each benchmark scatters with its own Beta precision (the
  default prior, drawn independently per benchmark: a spread of about 2.7x per prior SD),
  where a spec that shares one leaves it out (the fits that let them differ found MMLU about
  10-65, PIQA about 1,400-1,700).
* ``protocol_scale_wide``: as ``protocol_scale`` with twice the spread, k_b ~ LogNormal(0,
  0.4): the bundled data put ARC-Easy's factor at 1.71, beyond the fitted prior's 99%.
* ``peaked_errors``: each reported score's precision is multiplied by a Gamma(2, 2) draw (the
  Beta analogue of a Student-t with 4 degrees of freedom, ``score_precision_mixing_df = 4``):
  errors more peaked with heavier tails than one Beta, which is what the bundled data's
  LOO-PIT shows benchmark by benchmark.
* ``well_specified``: the default model itself, the control: its coverage is the nominal
  level up to the sampler's error at the study's reduced draws.

A world whose term the fitted spec already has (the default spec since 2026-12-04 fits a
protocol scale and a precision per benchmark) would be the control twice: such worlds are
left out of a study's default world list, and asking for one by name is an error.

The design is the bundled data's (its models, release dates, sizes, benchmarks, formats and
measurement structure); every simulation draws a truth from the world's prior (the default
priors plus the added term's), data from the world given that truth, and fits the *default*
model. Coverage is therefore the prior-averaged frequency with which the central interval
contains the truth: exactly nominal for the control, whatever the prior; a world whose
coverage falls below it shows by how much that omission makes the intervals too narrow.
Each record also keeps the truth's fractional rank among the posterior draws, so the
coverage of any central interval (and the direction of a bias) can be read off later, and the
world's own parameter values (``simulations.csv``, column ``world_parameters``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from densing_bayes import laws
from densing_bayes.analysis import calibration
from densing_bayes.inference import batch
from densing_bayes.model.spec import ModelSpec

log = logging.getLogger("densing_bayes")

COVERAGE_CSV = "coverage.csv"
RECORDS_CSV = "simulations.csv"
REPORT_JSON = "misspecification.json"
FIGURE = "misspecification_coverage"

#: Central interval whose coverage is the headline (the level the report prints).
NOMINAL = 0.9

#: Where the study's coverage is judged acceptable (issue 18's bar at nominal 0.9).
ACCEPTABLE_COVERAGE = 0.8

#: Fewest simulations of a world for the coverage figure to draw it.
MIN_PLOTTED = 10

#: Trend parameters whose truth is compared with the posterior (the free variables, by name).
TREND_PARAMETERS = ("slope_pre", "slope_post", "trend_intercept")


@dataclass(frozen=True)
class World:
    """A data-generating world: the fitted spec with ``overrides`` applied."""

    name: str
    overrides: dict
    description: str
    #: Variables of the world's model that the fitted model lacks: their true values are kept.
    record: tuple[str, ...] = field(default_factory=tuple)


WORLDS: dict[str, World] = {w.name: w for w in (
    World("well_specified", {}, "the fitted model itself (control)"),
    World("protocol_scale", {"observation": {"protocol_scale": True}},
          "harness scales the logit slope by k_b ~ LogNormal(0, 0.2)", ("protocol_scale",)),
    World("extrapolation_in_size", {"loss_law": {"extrapolation_sd_params": 0.035}},
          "loss-law log error tilts by SD 0.035 per log-N unit beyond the ladder's sizes",
          ("loss_extrapolation_tilt",)),
    World("pair_errors", {"observation": {"score_pair_effect": True}},
          "one logit error per (model, benchmark), SD tau_b ~ Gamma(2, 5)", ("score_pair_sd",)),
    World("precision_per_benchmark",
          {"priors": {"score_precision_eval": {"dist": "LogNormal",
                                               "kwargs": {"mu": math.log(100.0), "sigma": 1.0},
                                               "dims": ["benchmark"]}}},
          "each benchmark its own score precision (default prior, per benchmark)",
          ("score_precision_eval",)),
    World("protocol_scale_wide",
          {"observation": {"protocol_scale": True},
           "priors": {"protocol_scale": {"dist": "LogNormal", "kwargs": {"mu": 0.0, "sigma": 0.4},
                                         "dims": ["benchmark"]}}},
          "harness scales the logit slope by k_b ~ LogNormal(0, 0.4)", ("protocol_scale",)),
    World("peaked_errors", {"observation": {"score_precision_mixing_df": 4.0}},
          "each score's precision times a Gamma(2, 2) draw (a Beta 'Student-t', nu = 4)"),
)}


def world_spec(spec: ModelSpec, world: World) -> ModelSpec:
    """The spec that generates ``world``'s data: the fitted spec plus the world's term."""
    return spec.with_overrides(world.overrides) if world.overrides else spec


def adds_a_term(spec: ModelSpec, world: World) -> bool:
    """Whether ``world`` generates data from another model than ``spec`` fits (the control
    always counts): a world whose term the spec already has is the control twice."""
    return not world.overrides or world_spec(spec, world).config_hash() != spec.config_hash()


def study_worlds(spec: ModelSpec, worlds: Sequence[str] | None = None) -> list[str]:
    """The worlds of a study of ``spec``: the named ones (an error for an unknown one or one
    that adds nothing to ``spec``), else every world that adds a term to it."""
    if worlds is None:
        return [name for name, world in WORLDS.items() if adds_a_term(spec, world)]
    unknown = [w for w in worlds if w not in WORLDS]
    if unknown:
        raise ValueError(f"unknown world(s) {unknown}; choose from {list(WORLDS)}")
    idle = [w for w in worlds if not adds_a_term(spec, WORLDS[w])]
    if idle:
        raise ValueError(f"world(s) {idle} add nothing to spec '{spec.name}' (it already fits "
                         "their term): their study would repeat the well-specified control")
    return list(worlds)


# ------------------------------------------------------------------- the generating model
@dataclass(frozen=True)
class _Generator:
    """A world's compiled prior sampler: parameters, recorded variables, then observed data."""

    prior_fn: Any
    prior_rngs: list
    names: list[str]  # outputs before the data
    data: list[str]  # observed data names (pm.Data), the fitted model's inputs


def _build_generator(spec: ModelSpec, world: World, design: str) -> _Generator:
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.tensor.random.type import RandomGeneratorType

    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    gen_spec = world_spec(spec, world)
    inputs = prepare_inputs(calibration.design_data(design=design, spec=gen_spec), gen_spec)
    model = build_model(inputs, gen_spec)
    outputs = [model[n] for n in (*TREND_PARAMETERS, *world.record)]
    fn = compile_pymc(inputs=[], outputs=[*outputs, *model.observed_RVs], random_seed=0)
    return _Generator(
        prior_fn=fn,
        prior_rngs=[v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)],
        names=[v.name for v in outputs],
        data=[model.rvs_to_values[rv].name for rv in model.observed_RVs])


def _valid(observed: Mapping[str, np.ndarray]) -> bool:
    """Data the fitted model can score: finite, and every score strictly inside (0, 1)."""
    for name, value in observed.items():
        value = np.asarray(value, float)
        if not np.isfinite(value).all():
            return False
        if name != "law_log_loss" and ((value <= 0).any() or (value >= 1).any()):
            return False
    return True


def draw_world(generator: _Generator, seed: int) -> tuple[dict, dict, int]:
    """(truth, observed data, attempts): the first prior draw whose data are valid (a rule on
    the data alone, as in SBC, so it leaves the posterior unchanged)."""
    from pymc.pytensorf import reseed_rngs

    reseed_rngs(generator.prior_rngs, seed)
    n = len(generator.names)
    for attempt in range(1, calibration.MAX_PRIOR_ATTEMPTS + 1):
        values = generator.prior_fn()
        observed = dict(zip(generator.data, values[n:], strict=True))
        if _valid(observed):
            return dict(zip(generator.names, values[:n], strict=True)), observed, attempt
    raise RuntimeError(f"no prior draw in {calibration.MAX_PRIOR_ATTEMPTS} gave valid data")


# ------------------------------------------------------------------- quantities
def trend_quantities(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The answer's quantities from trend parameters (a truth, or arrays of draws).

    The doubling times are monotone (decreasing) maps of the slopes, +inf where a slope is not
    positive, so their central intervals cover exactly when the slopes' do.
    """
    pre = np.asarray(values["slope_pre"], float)
    post = np.asarray(values["slope_post"], float)
    with np.errstate(divide="ignore"):
        def days(slope):
            return np.where(slope > 0, math.log(2.0) / slope * laws.DAYS_PER_YEAR, np.inf)
        return {"doubling_time_days": days(post), "doubling_time_days_pre": days(pre),
                "slope_post": post, "slope_pre": pre, "slope_difference": post - pre,
                "trend_intercept": np.asarray(values["trend_intercept"], float)}


#: Each doubling time is ln 2 / its slope for a positive slope, +inf otherwise.
DOUBLING_SLOPES = {"doubling_time_days": "slope_post", "doubling_time_days_pre": "slope_pre"}


def doubling_from_slopes(quantities: Mapping[str, dict]) -> dict[str, dict]:
    """The quantities with each doubling time's coverage, sides and rank taken from its slope.

    A doubling time's central interval is the image of its slope's, so it covers exactly when
    the slope's does, and the truth lies above the doubling time's interval exactly when the
    true slope lies below the slope's. Judged on the doubling times themselves it is not: every
    slope <= 0 maps to +inf, so a truth with a negative slope was 'covered' by any interval
    reaching +inf, however far the slope's interval missed it (the prior puts half its mass on
    negative slopes; 2026-11-30, 74 simulations of the study: 42 true slopes after <= 0, and 8
    truths missed by the slope's interval were counted as covered, 7 more for the slope
    before)."""
    out = {q: dict(r) for q, r in quantities.items()}
    for q, slope in DOUBLING_SLOPES.items():
        if q in out and slope in out:
            s = out[slope]
            out[q].update(covered=bool(s["covered"]), truth_above=bool(s["truth"] < s["lower"]),
                          truth_below=bool(s["truth"] > s["upper"]),
                          rank_fraction=1.0 - float(s["rank_fraction"]))
    return out


def interval_record(truth: float, draws: np.ndarray, rng: np.random.Generator,
                    level: float = NOMINAL) -> dict:
    """Where the truth falls among the draws: the central interval, whether it covers, the
    fractional rank (ties split at random) and the posterior median."""
    draws = np.asarray(draws, float).ravel()
    # Order statistics, not interpolation: a doubling time is +inf where its slope is <= 0.
    lo, med, hi = np.quantile(draws, [(1 - level) / 2, 0.5, (1 + level) / 2],
                              method="inverted_cdf")
    below = np.sum(draws < truth) + rng.integers(0, int(np.sum(draws == truth)) + 1)
    return {"truth": float(truth), "median": float(med), "lower": float(lo),
            "upper": float(hi), "covered": bool(lo <= truth <= hi),
            "rank_fraction": float(below / draws.size)}


def _summarise(value) -> Any:
    value = np.asarray(value, float)
    if value.size <= 40:
        return value.round(6).tolist()
    return {"mean": float(value.mean()), "sd": float(value.std()),
            "min": float(value.min()), "max": float(value.max())}


# ------------------------------------------------------------------- one simulation (a task)
def simulate_and_fit(spec: ModelSpec, world_name: str, sim_id: int, seed: int,
                     design: str = "bundled") -> dict:
    """One simulation: a world's prior draw -> its data -> the default model's fit -> where
    each truth falls in its posterior (a batch task)."""
    start = time.perf_counter()
    world = WORLDS[world_name]
    fit, fit_build = batch.worker_cached(
        calibration.structure_key(spec, calibration.DESIGN_SEED, design),
        lambda: calibration._build_structure(spec, calibration.DESIGN_SEED, design))
    generator, gen_build = batch.worker_cached(
        ("misspec-world", world.name, calibration.structure_key(spec, 0, design)),
        lambda: _build_generator(spec, world, design))
    if set(generator.data) != set(fit.data):
        raise RuntimeError(f"world {world.name} generates {sorted(generator.data)}, the fit "
                           f"reads {sorted(fit.data)}")
    world_seed, sampler_seed, tie_seed = calibration.task_seeds(seed)
    truth, observed, attempts = draw_world(generator, world_seed)
    idata, sample_seconds = calibration.fit_simulated(fit, observed, spec, sampler_seed)

    post = idata.posterior
    draws = trend_quantities({n: post[n].values for n in TREND_PARAMETERS})
    truths = trend_quantities(truth)
    rng = np.random.default_rng(tie_seed)
    # Split-chain R-hat also for a single chain: its halves are compared.
    finite = [v if v.shape[0] > 1 else v[:, : v.shape[1] // 2 * 2].reshape(2, -1)
              for v in draws.values() if np.isfinite(v).all()]
    return {
        "world": world.name,
        "sim_id": sim_id,
        "seed": seed,
        "quantities": doubling_from_slopes(
            {q: interval_record(float(truths[q]), draws[q], rng) for q in draws}),
        "world_parameters": {n: _summarise(truth[n]) for n in world.record},
        "prior_attempts": attempts,
        "diagnostics": calibration.fit_diagnostics(
            idata, min(float(az.ess(v)) for v in finite), max(float(az.rhat(v)) for v in finite)),
        "timing": {"build_seconds": fit_build + gen_build, "sample_seconds": sample_seconds,
                   "total_seconds": time.perf_counter() - start},
    }


# ------------------------------------------------------------------- summaries
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (SciPy's)."""
    if n == 0:
        return (float("nan"), float("nan"))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def simulations_table(records: Mapping[str, dict]) -> pd.DataFrame:
    """One row per (simulation, quantity): truth, interval, covered, rank fraction."""
    rows = []
    for task_id, record in records.items():
        result = record.get("result") or {}
        if record["status"] != "ok":
            rows.append({"task_id": task_id, "world": task_id.rsplit("_", 1)[0],
                         "status": record["status"], "error": record["error"]})
            continue
        d = result["diagnostics"]
        world = json.dumps(result["world_parameters"], sort_keys=True)
        # records stored before doubling times were judged by their slopes are judged so here
        for q, r in doubling_from_slopes(result["quantities"]).items():
            r = {"truth_above": _gt(r["truth"], r["upper"]),
                 "truth_below": _gt(r["lower"], r["truth"]), **r}
            rows.append({"task_id": task_id, "world": result["world"], "status": "ok",
                         "sim_id": result["sim_id"], "quantity": q, **r,
                         "divergences": d["divergences"], "max_rhat": d["max_rhat"],
                         "min_ess_bulk": d["min_ess_bulk"], "world_parameters": world})
    return pd.DataFrame(rows)


#: The per-quantity fields of a record, as simulations.csv holds them.
_QUANTITY_FIELDS = ("truth", "median", "lower", "upper", "covered", "rank_fraction",
                    "truth_above", "truth_below")


def records_from_table(table: pd.DataFrame) -> dict[str, dict]:
    """Task records rebuilt from a written simulations.csv, for a batch folder whose
    ``tasks/`` records were lost (they were git-ignored until 2026-11-30 and did not survive a
    new checkout). Everything the tables, the checks and the figure read is in the table; the
    timings and prior attempts are not, and the record says it was restored."""
    def value(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    records: dict[str, dict] = {}
    for task_id, g in table.groupby("task_id", sort=False):
        first = g.iloc[0]
        if first["status"] != "ok":
            records[task_id] = {"task_id": task_id, "status": first["status"],
                                "error": value(first.get("error")), "result": None,
                                "restored_from": RECORDS_CSV}
            continue
        quantities = {str(r["quantity"]): {f: value(r[f]) for f in _QUANTITY_FIELDS}
                      for _, r in g.iterrows()}
        for q in quantities.values():
            for flag in ("covered", "truth_above", "truth_below"):
                q[flag] = bool(q[flag])
        world, sim_id = str(first["world"]), int(first["sim_id"])
        records[task_id] = {
            "task_id": task_id, "status": "ok", "error": None, "restored_from": RECORDS_CSV,
            "result": {"world": world, "sim_id": sim_id, "seed": None,
                       "quantities": quantities,
                       "world_parameters": json.loads(first["world_parameters"]),
                       "prior_attempts": None,
                       "diagnostics": {"divergences": int(first["divergences"]),
                                       "min_ess_bulk": float(first["min_ess_bulk"]),
                                       "max_rhat": float(first["max_rhat"])},
                       "timing": None}}
    return records


def restore_records(out: Path, config_hash: str) -> int:
    """Write ``out/tasks/`` records from ``out/simulations.csv`` for every task without one
    (``--resume`` then continues the study); return how many were restored.

    Only a table written under ``config_hash`` (the one in ``misspecification.json`` beside
    it): after ``--force`` the folder still holds the previous study's outputs until the new
    one writes its own, and a resume of a stopped new study must not adopt the old fits."""
    out = Path(out)
    table_path = out / RECORDS_CSV
    if not table_path.is_file():
        return 0
    try:
        written_under = json.loads((out / REPORT_JSON).read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        written_under = None
    if written_under != config_hash:
        log.info("%s was written under another configuration (or its %s is missing): no "
                 "records restored from it", table_path, REPORT_JSON)
        return 0
    have = batch.load_records(out)
    restored = {k: r for k, r in records_from_table(pd.read_csv(table_path)).items()
                if k not in have}
    (out / batch.TASKS_DIR).mkdir(exist_ok=True)
    for task_id, record in restored.items():
        batch.write_json_atomic(out / batch.TASKS_DIR / batch.record_filename(task_id), record)
    return len(restored)


def _gt(a, b) -> bool:
    """a > b for stored values, where None stands for +inf (JSON has no infinity)."""
    a = math.inf if a is None else float(a)
    b = math.inf if b is None else float(b)
    return bool(a > b)


def coverage_table(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage of the central ``NOMINAL`` interval per (world, quantity), with a Wilson 95%
    interval, and how many truths fell above / below it (which side the intervals miss on)."""
    ok = table[table["status"] == "ok"]
    rows = []
    for (world, quantity), g in ok.groupby(["world", "quantity"], sort=False):
        inside = int(g["covered"].sum())
        n = len(g)
        w = wilson_interval(inside, n)
        rows.append({"world": world, "quantity": quantity, "level": NOMINAL, "n": n,
                     "covered": inside, "coverage": inside / n,
                     "coverage_lower": w[0], "coverage_upper": w[1],
                     "truth_above_interval": int(_side(g, "above").sum()),
                     "truth_below_interval": int(_side(g, "below").sum())})
    return pd.DataFrame(rows)


def _side(g: pd.DataFrame, side: str) -> pd.Series:
    """Truths above (below) the interval: the stored flag, else from the numbers."""
    column = f"truth_{side}"
    if column in g:
        return g[column].astype(bool)
    return g["truth"] > g["upper"] if side == "above" else g["truth"] < g["lower"]


def write_outputs(out: Path, records: Mapping[str, dict], spec: ModelSpec, *,
                  worlds: Sequence[str], wall_seconds: float) -> dict:
    """simulations.csv, coverage.csv, misspecification.json and the coverage figure."""
    out = Path(out)
    table = simulations_table(records)
    table.to_csv(out / RECORDS_CSV, index=False)
    coverage = coverage_table(table) if "quantity" in table else pd.DataFrame()
    coverage.to_csv(out / COVERAGE_CSV, index=False)
    ok = [r["result"] for r in records.values() if r["status"] == "ok"]
    report = {
        "spec": spec.name,
        "config_hash": spec.config_hash(),
        "model_hash": spec.model_hash(),
        "sampler": spec.sampler.model_dump(),
        "nominal": NOMINAL,
        "acceptable_coverage": ACCEPTABLE_COVERAGE,
        "worlds": {w: {"description": WORLDS[w].description, "overrides": WORLDS[w].overrides,
                       "n_ok": sum(r["world"] == w for r in ok),
                       "n_failed": sum(1 for k, r in records.items()
                                       if r["status"] != "ok" and k.rsplit("_", 1)[0] == w)}
                   for w in worlds},
        "coverage": coverage.to_dict(orient="records"),
        "sampler_diagnostics": {
            "n_fits": len(ok),
            "n_with_divergences": sum(r["diagnostics"]["divergences"] > 0 for r in ok),
            "median_min_ess_bulk": float(np.median([r["diagnostics"]["min_ess_bulk"]
                                                    for r in ok])) if ok else None,
            "median_max_rhat": float(np.median([r["diagnostics"]["max_rhat"]
                                                for r in ok])) if ok else None},
        "timing": {"wall_seconds": wall_seconds,
                   # restored records carry no timing
                   "sample_seconds_mean": float(np.mean(timed)) if (timed := [
                       r["timing"]["sample_seconds"] for r in ok if r.get("timing")]) else None},
        "restored_records": sum(1 for r in records.values() if r.get("restored_from")),
    }
    batch.write_json_atomic(out / REPORT_JSON, report)
    if len(coverage):
        plot_coverage(coverage, table, out / FIGURE)
    return report


def plot_coverage(coverage: pd.DataFrame, table: pd.DataFrame, path: Path) -> None:
    """Left: coverage of the 90% interval per world (Wilson 95% bars; nominal and the 0.8 bar
    marked) for the doubling time, the slope difference and the level. Right: where the
    truth fell among the posterior draws for the doubling time after the changepoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("doubling_time_days", "slope_difference", "trend_intercept")
    labels = {"doubling_time_days": "doubling time after", "slope_difference":
              "slope after - before", "trend_intercept": "level (trend intercept)"}
    # A world with a handful of simulations would draw bars as wide as the axis: left out.
    sizes = coverage.groupby("world", sort=False)["n"].max()
    worlds = [w for w in dict.fromkeys(coverage["world"]) if sizes[w] >= MIN_PLOTTED]
    left_out = [f"{w} (n={sizes[w]})" for w in sizes.index if sizes[w] < MIN_PLOTTED]
    if not worlds:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 0.55 * len(worlds) + 2.6),
                                  layout="constrained", gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(worlds))
    colours = {"doubling_time_days": "#0072B2", "slope_difference": "#E69F00",
               "trend_intercept": "#009E73"}
    for j, q in enumerate(shown):
        c = coverage[coverage["quantity"] == q].set_index("world").reindex(worlds)
        yy = y + (j - 1) * 0.22
        ax.errorbar(c["coverage"], yy, xerr=[c["coverage"] - c["coverage_lower"],
                                             c["coverage_upper"] - c["coverage"]],
                    fmt="o", color=colours[q], label=labels[q], capsize=2)
        if q == "doubling_time_days":
            for yi, (cov, n) in zip(yy, zip(c["coverage"], c["n"], strict=True), strict=True):
                if np.isfinite(cov):
                    ax.annotate(f"{cov:.2f} (n={int(n)})", (cov, yi), xytext=(6, 4),
                                textcoords="offset points", fontsize=8)
    ax.axvline(NOMINAL, color="black", lw=1, label=f"nominal {NOMINAL:.0%}")
    ax.axvline(ACCEPTABLE_COVERAGE, color="grey", lw=1, ls="--",
               label=f"issue's bar {ACCEPTABLE_COVERAGE:.0%}")
    ax.set_yticks(y, worlds)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("share of simulations whose truth lies in the 90% interval "
                  "(bars: Wilson 95%)")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Coverage of the default model's 90% intervals, per simulated world"
                 + (f"\n(not drawn, too few simulations: {', '.join(left_out)})"
                    if left_out else ""), fontsize=10)

    ok = table[(table["status"] == "ok") & (table["quantity"] == "doubling_time_days")]
    for i, w in enumerate(worlds):
        u = ok.loc[ok["world"] == w, "rank_fraction"].to_numpy(float)
        ax2.scatter(u, np.full(u.size, i) + np.random.default_rng(i).uniform(-0.25, 0.25,
                                                                            u.size),
                    s=8, color="#0072B2", alpha=0.7)
    ax2.axvspan(0, (1 - NOMINAL) / 2, color="#D55E00", alpha=0.15)
    ax2.axvspan((1 + NOMINAL) / 2, 1, color="#D55E00", alpha=0.15)
    ax2.set_yticks(y, [""] * len(worlds))
    ax2.invert_yaxis()
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of posterior draws below the true doubling time\n"
                   "(shaded: outside the 90% interval)")
    ax2.set_title("Where the true doubling time fell")
    for suffix in (".png", ".svg"):
        fig.savefig(Path(path).with_suffix(suffix), dpi=130)
    plt.close(fig)


# ------------------------------------------------------------------- the job
def simulation_seed(seed: int, world: str, i: int) -> int:
    """Seed of simulation i of a world: fixed by (run seed, world, i), whatever else runs."""
    key = [seed, *world.encode(), i]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def run_misspecification(spec: ModelSpec, n_per_world: int, out: Path, *,
                         worlds: Sequence[str] | None = None, design: str = "bundled",
                         resume: bool = False, force: bool = False,
                         scheduler: str | None = None, n_workers: int | None = None,
                         progress: bool = True) -> dict:
    """Run (or resume) the study into ``out``: ``n_per_world`` simulations per world."""
    calibration.check_simulation_batch(spec, n_per_world, "The misspecification study")
    worlds = study_worlds(spec, worlds)
    # Interleaved by simulation index, so a stopped batch leaves every world with about the
    # same number of simulations.
    tasks = [batch.Task(f"{w}_{i:04d}", simulate_and_fit,
                        {"spec": spec, "world_name": w, "sim_id": i,
                         "seed": simulation_seed(spec.sampler.seed, w, i), "design": design})
             for i in range(n_per_world) for w in worlds]
    manifest = {"job": "misspecification", "spec": spec.name,
                "config_hash": spec.config_hash(), "design": design,
                **calibration.design_provenance(design, spec)}
    start = time.perf_counter()
    if resume:
        # only into this study's own folder: the manifest must match before anything is written
        batch.check_folder(Path(out), manifest, resume=True, force=False)
        restored = restore_records(out, spec.config_hash())
        if restored:
            log.info("restored %d task records from %s", restored, Path(out) / RECORDS_CSV)
    records = batch.run_batch(tasks, out, manifest=manifest, resume=resume, force=force,
                              scheduler=scheduler, n_workers=n_workers, progress=progress,
                              desc="misspecification")
    # A resumed folder may hold worlds or simulations this call did not ask for: keep them.
    records = {**batch.load_records(Path(out)), **records}
    present = [w for w in WORLDS if any(k.rsplit("_", 1)[0] == w for k in records)]
    return write_outputs(out, records, spec, worlds=present,
                         wall_seconds=time.perf_counter() - start)
