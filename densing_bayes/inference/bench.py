"""Sampler benchmark: PyMC's NUTS, nutpie and NumPyro on the same model, side by side.

``densing-bayes bench`` times the default spec on the bundled data and the paper-design spec on
simulated scale-ups (36 -> 1000 evaluated models, 5 and 10 benchmarks) with every sampler, with
the same draws and seeds, alternating samplers within each case (A B C A B C ... for repeats) so
that a change in machine load hits all of them alike. Every fit runs in a fresh subprocess, so
one fit's compiled code, caches in memory and peak memory never pollute another's.

Per case and sampler it reports compile and sampling time separately, wall time (model build +
compile + sampling), min bulk and tail ESS over the sampled parameters
(:func:`densing_bayes.inference.diagnostics.diagnose`), ESS per second (min bulk ESS / wall),
divergences, max R-hat, E-BFMI, peak memory of the fit's process tree, and the ratio of each
sampler's ESS/s to PyMC's default NUTS in the same run. Over the scale-ups it reports the growth
of cost as log-log slopes (wall time and time per gradient evaluation vs evaluated models).

It is a benchmark, not a test: nothing here asserts a time. The JSON (``--out``) is for
machines; the table on stdout for people.

What "compile" means per sampler:

* ``nutpie``: ``nutpie.compile_pymc_model`` (PyTensor rewrites + numba), as in
  :mod:`densing_bayes.inference.sample`;
* ``pymc``: ``pm.init_nuts`` inside ``pm.sample`` (C compilation of logp/dlogp and the
  jitter+adapt_diag_grad initial points); the chains' processes reload the compiled modules
  from PyTensor's cache, which counts as sampling;
* ``numpyro``: every JAX trace, lowering and XLA compilation (JAX's own monitoring events)
  plus PyTensor's JAX transpilation; the rest of ``pm.sample(nuts_sampler="numpyro")`` is
  sampling.

Caches: ``--cache warm`` (default) lets fits share the usual on-disk compile caches (PyTensor's
compiledir, which holds PyMC's C modules and PyTensor's numba cache, and JAX's persistent cache,
:mod:`densing_bayes.inference.compile_cache`), so only the first fit of a sampler on a machine
is cold. ``--cache cold`` gives every fit fresh, empty caches: the first run on a new machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from densing_bayes.inference.compile_cache import CACHE_ENV

#: Samplers ``densing-bayes bench`` knows. ``pymc`` is the project's PyMC backend
#: (:mod:`densing_bayes.inference.sample`: NUTS with ``jitter+adapt_diag_grad``) and the
#: baseline of the ESS/s ratios; ``pymc_default`` is PyMC's NUTS with PyMC's own default
#: initialisation (``jitter+adapt_diag``), not run unless asked for; ``nutpie_diag`` is nutpie
#: with the diagonal metric whatever the spec says (the default until the stored dense metric,
#: :mod:`densing_bayes.inference.metric`), so old and new defaults run side by side.
SAMPLERS = ("pymc", "nutpie", "numpyro", "pymc_default", "nutpie_diag")
DEFAULT_SAMPLERS = ("pymc", "nutpie", "numpyro")
BASELINE = "pymc"

#: Python modules each sampler needs; a sampler with one missing is reported as skipped.
REQUIRED_MODULES = {"pymc": ("pymc",), "nutpie": ("nutpie", "numba"),
                    "numpyro": ("numpyro", "jax"), "pymc_default": ("pymc",),
                    "nutpie_diag": ("nutpie", "numba")}
INSTALL_HINT = {"numpyro": "pip install 'densing_bayes[numpyro]' (jax + numpyro)",
                "nutpie": "pip install nutpie numba", "pymc": "pip install pymc",
                "pymc_default": "pip install pymc", "nutpie_diag": "pip install nutpie numba"}

SCHEMA_VERSION = 1

#: Scale-up grid (evaluated models x benchmarks) of the simulated paper design.
SCALE_MODELS = (36, 100, 300, 1000)
SCALE_BENCHMARKS = (5, 10)
SIM_SEED = 20241205

#: Every per-fit measurement the JSON carries (``None`` when a fit failed or a value is n/a).
METRICS = (
    "build_seconds", "compile_seconds", "sample_seconds", "wall_seconds", "process_seconds",
    "min_ess_bulk", "min_ess_tail", "ess_bulk_per_second", "divergences", "max_rhat",
    "min_bfmi", "mean_tree_steps", "seconds_per_gradient", "peak_rss_mb", "maxrss_self_mb",
    "maxrss_children_mb",
)



# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One data set + spec + sampler settings; every sampler runs it identically."""

    name: str
    spec: str  # bundled spec name or TOML path
    data: str | None = None  # bundled data name or folder; None: simulated (n_models x n_benchmarks)
    n_models: int | None = None
    n_benchmarks: int | None = None
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 20241205

    @property
    def simulated(self) -> bool:
        return self.data is None


def full_cases(draws: int = 1000, tune: int = 1000, chains: int = 4) -> list[Case]:
    """The default spec on the bundled data, then the simulated scale-up grid."""
    common = dict(draws=draws, tune=tune, chains=chains)
    cases = [Case("bundled", "default", data="default", **common)]
    for n_bench in SCALE_BENCHMARKS:
        for n_models in SCALE_MODELS:
            cases.append(Case(f"sim_{n_models}x{n_bench}", "paper_design", n_models=n_models,
                              n_benchmarks=n_bench, **common))
    return cases


def quick_cases() -> list[Case]:
    """One tiny simulated case with tiny draws: proves the harness works (CI, tests)."""
    return [Case("quick_sim_8x2", "paper_design", n_models=8, n_benchmarks=2, draws=40, tune=40,
                 chains=2)]


def select_cases(cases: list[Case], names: Iterable[str] | None) -> list[Case]:
    if not names:
        return cases
    names = list(names)
    known = {c.name: c for c in cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


# ----------------------------------------------------------------------------- pure helpers
def unavailable_reason(sampler: str) -> str | None:
    """Why ``sampler`` cannot run here (a missing module), or None when it can."""
    if sampler not in REQUIRED_MODULES:
        return f"unknown sampler '{sampler}'; known: {list(SAMPLERS)}"
    missing = [m for m in REQUIRED_MODULES[sampler] if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed: {', '.join(missing)} ({INSTALL_HINT[sampler]})"
    return None


def spread(values: Iterable[float | None]) -> dict[str, float | None]:
    """Median, min and max of the finite values (all None when there are none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite),
            "n": len(finite)}


def ess_ratios(ess_per_second: dict[str, Sequence[float | None]],
               baseline: str = BASELINE) -> dict[str, dict[str, float | None]]:
    """Each sampler's ESS/s relative to ``baseline``'s, from per-repeat ESS/s values.

    ``median`` is the ratio of the medians; ``min``/``max`` are the extremes of the ratios of
    paired repeats (repeat r of a sampler against repeat r of the baseline, which ran next to
    it). A sampler without a finite baseline gets None everywhere.
    """
    base = list(ess_per_second.get(baseline, ()))
    base_med = spread(base)["median"]
    out = {}
    for sampler, values in ess_per_second.items():
        med = spread(values)["median"]
        paired = [v / b for v, b in zip(values, base)
                  if v is not None and b is not None and math.isfinite(v) and b > 0]
        out[sampler] = {
            "median": (med / base_med) if med is not None and base_med else None,
            "min": min(paired) if paired else None,
            "max": max(paired) if paired else None,
        }
    return out


def loglog_slope(x: Sequence[float], y: Sequence[float | None]) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than two finite points)."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y)
           if a and b is not None and a > 0 and b > 0 and math.isfinite(b)]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def run_order(cases: Sequence[Case], samplers: Sequence[str], repeats: int):
    """(case, repeat, sampler) in running order: samplers alternate within each repeat."""
    for case in cases:
        for repeat in range(repeats):
            for sampler in samplers:
                yield case, repeat, sampler


def summarise(cases: Sequence[Case], runs: Sequence[dict], samplers: Sequence[str],
              baseline: str = BASELINE) -> list[dict]:
    """Per case and sampler: median/min/max of every metric and the ESS/s ratio."""
    out = []
    for case in cases:
        per = {s: sorted((r for r in runs if r["case"] == case.name and r["sampler"] == s),
                         key=lambda r: r["repeat"]) for s in samplers}
        ok = {s: [r for r in rs if r["status"] == "ok"] for s, rs in per.items()}
        # Pair repeats by index: None where a repeat failed, so pairs stay aligned.
        by_repeat = {s: {r["repeat"]: r for r in rs} for s, rs in ok.items()}
        n_rep = max((r["repeat"] for r in runs if r["case"] == case.name), default=-1) + 1
        ess_s = {s: [by_repeat[s].get(i, {}).get("ess_bulk_per_second") for i in range(n_rep)]
                 for s in samplers}
        ratios = ess_ratios(ess_s, baseline) if baseline in samplers else {}
        for s in samplers:
            if not per[s]:
                continue
            statuses = sorted({r["status"] for r in per[s]})
            entry = {
                "case": case.name, "sampler": s,
                "status": "ok" if ok[s] else statuses[0],
                "n_ok": len(ok[s]), "n_runs": len(per[s]),
                "errors": [r["error"] for r in per[s] if r.get("error")],
                "metrics": {m: spread(r.get(m) for r in ok[s]) for m in METRICS},
                "ess_per_second_ratio_to_" + baseline: ratios.get(
                    s, {"median": None, "min": None, "max": None}),
                "sizes": next((r["sizes"] for r in ok[s] if r.get("sizes")), None),
            }
            out.append(entry)
    return out


def growth(cases: Sequence[Case], summary: Sequence[dict], samplers: Sequence[str]) -> dict:
    """Log-log slopes of cost vs evaluated models (per benchmark count) and vs benchmarks."""
    sims = [c for c in cases if c.simulated]
    med = {(e["case"], e["sampler"]): e["metrics"] for e in summary}
    result: dict = {}
    for s in samplers:
        per_sampler: dict = {"vs_models": {}, "vs_benchmarks": {}}
        for n_bench in sorted({c.n_benchmarks for c in sims}):
            row = sorted((c for c in sims if c.n_benchmarks == n_bench), key=lambda c: c.n_models)
            xs = [c.n_models for c in row]
            entry = {"n_models": xs}
            for metric in ("wall_seconds", "sample_seconds", "seconds_per_gradient",
                           "peak_rss_mb"):
                ys = [med.get((c.name, s), {}).get(metric, {}).get("median") for c in row]
                entry[metric] = ys
                entry[f"slope_{metric}"] = loglog_slope(xs, ys)
            per_sampler["vs_models"][f"{n_bench}_benchmarks"] = entry
        for n_models in sorted({c.n_models for c in sims}):
            row = sorted((c for c in sims if c.n_models == n_models),
                         key=lambda c: c.n_benchmarks)
            xs = [c.n_benchmarks for c in row]
            entry = {"n_benchmarks": xs}
            for metric in ("wall_seconds", "seconds_per_gradient"):
                ys = [med.get((c.name, s), {}).get(metric, {}).get("median") for c in row]
                entry[metric] = ys
                entry[f"slope_{metric}"] = loglog_slope(xs, ys)
            per_sampler["vs_benchmarks"][f"{n_models}_models"] = entry
        result[s] = per_sampler
    return result


# ----------------------------------------------------------------------------- one fit (worker)
def _seconds_per_gradient(idata, sample_seconds: float, draws: int, tune: int,
                          chains: int) -> tuple[float | None, float | None]:
    """Mean leapfrog steps per draw, and sampling seconds per gradient evaluation (approx.).

    Warm-up draws are not stored, so the total is approximated as the posterior draws' mean
    steps x (draws + tune) x chains; chains run in parallel, so it is wall time per gradient
    per core-slot, a cost measure comparable across problem sizes of one sampler.
    """
    stats = idata.sample_stats
    if "n_steps" not in stats:
        return None, None
    steps = float(stats["n_steps"].mean())
    total = steps * (draws + tune) * chains
    return steps, (sample_seconds / total if total > 0 else None)


def _fit_nutpie(model, sampler, seed, metric_key=None):
    """nutpie as the spec says; with ``mass_matrix = "dense"`` the stored metric of this model
    and data (the user's cache, else the bundled one) when there is one."""
    from densing_bayes.inference import sample

    return sample._sample_nutpie(model, sampler, seed, False, metric_key)


def _fit_nutpie_diag(model, sampler, seed, metric_key=None):
    """nutpie with the diagonal metric (the previous default), whatever the spec says."""
    from densing_bayes.inference import sample

    return sample._sample_nutpie(model, sampler.model_copy(update={"mass_matrix": "diag"}),
                                 seed, False)


@contextlib.contextmanager
def _timed_init_nuts():
    """Time PyMC's ``init_nuts`` (its compile step) from outside; yields the list of seconds."""
    import pymc.sampling.mcmc as mcmc

    spent: list[float] = []
    original = mcmc.init_nuts

    def timed_init_nuts(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    mcmc.init_nuts = timed_init_nuts
    try:
        yield spent
    finally:
        mcmc.init_nuts = original


def _fit_pymc(model, sampler, seed, metric_key=None):
    """The production PyMC call, with ``init_nuts`` timed as compilation."""
    from densing_bayes.inference import sample

    with _timed_init_nuts() as spent:
        idata, _, total = sample._sample_pymc(model, sampler, seed, False)
    return idata, sum(spent), total - sum(spent)


def _fit_pymc_default(model, sampler, seed, metric_key=None):
    """PyMC's NUTS with PyMC's own default initialisation (``jitter+adapt_diag``)."""
    import pymc as pm

    start = time.perf_counter()
    with _timed_init_nuts() as spent:
        idata = pm.sample(draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
                          cores=min(sampler.chains, os.cpu_count() or 1), random_seed=seed,
                          target_accept=sampler.target_accept, progressbar=False, model=model,
                          compute_convergence_checks=False)
    total = time.perf_counter() - start
    return idata, sum(spent), total - sum(spent)


def _fit_numpyro(model, sampler, seed, metric_key=None):
    from densing_bayes.inference import sample

    return sample._sample_numpyro(model, sampler, seed, False)


FITTERS: dict[str, Callable] = {"pymc": _fit_pymc, "nutpie": _fit_nutpie,
                                "numpyro": _fit_numpyro, "pymc_default": _fit_pymc_default,
                                "nutpie_diag": _fit_nutpie_diag}


def _maxrss_mb(who) -> float:
    import resource

    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def worker_fit(task: dict) -> dict:
    """Run one fit in this (fresh) process and return its measurements."""
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    from densing_bayes import resources
    from densing_bayes.data.load import load_data
    from densing_bayes.inference.diagnostics import diagnose
    from densing_bayes.inference.sample import _seeds
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec, merge_settings

    spec = load_spec(task["spec"]).with_overrides(merge_settings(task.get("settings", ())))
    spec = spec.with_overrides({
        "data": {"folder": str(task["data"])},
        "sampler": {"draws": task["draws"], "tune": task["tune"], "chains": task["chains"],
                    "seed": task["seed"]},
    })
    data = load_data(resources.resolve_data_folder(spec.data.folder))
    built_at = time.perf_counter()
    inputs = prepare_inputs(data, spec)
    model = build_model(inputs, spec)
    build_s = time.perf_counter() - built_at
    seed = _seeds(spec.sampler.seed)["posterior"]
    from densing_bayes.inference.metric import metric_key

    key = metric_key(spec.model_hash(), inputs)
    idata, compile_s, sample_s = FITTERS[task["sampler"]](model, spec.sampler, seed, key)
    diag = diagnose(idata, [v.name for v in model.free_RVs])
    wall = build_s + compile_s + sample_s
    steps, per_grad = _seconds_per_gradient(idata, sample_s, spec.sampler.draws,
                                            spec.sampler.tune, spec.sampler.chains)
    n_params = int(sum(v.size for v in model.initial_point().values()))
    return {
        "build_seconds": build_s, "compile_seconds": compile_s, "sample_seconds": sample_s,
        "wall_seconds": wall, "process_seconds": time.perf_counter() - start,
        "min_ess_bulk": diag.min_ess_bulk, "min_ess_tail": diag.min_ess_tail,
        "ess_bulk_per_second": diag.min_ess_bulk / wall if wall > 0 else None,
        "divergences": diag.divergences, "max_rhat": diag.max_rhat, "min_bfmi": diag.min_bfmi,
        "worst_rhat_parameter": diag.worst_rhat_parameter,
        "worst_ess_parameter": diag.worst_ess_parameter,
        "mean_tree_steps": steps, "seconds_per_gradient": per_grad,
        "maxrss_self_mb": _maxrss_mb(resource.RUSAGE_SELF),
        "maxrss_children_mb": _maxrss_mb(resource.RUSAGE_CHILDREN),
        "sizes": {"models": len(inputs.models), "benchmarks": len(inputs.benchmarks),
                  "score_rows": int(len(inputs.score_value)),
                  "curve_rows": int(len(inputs.curve_loss)),
                  "law_rows": int(len(inputs.law_loss)),
                  "sampled_values": n_params},
        "free_variables": sorted(v.name for v in model.free_RVs),
    }


# ----------------------------------------------------------------------------- one fit (parent)
class _TreeMemory(threading.Thread):
    """Samples the resident memory of a process and all its children (the fit's true peak)."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self):
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil ships with dask[distributed]
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak / 2**20


def _cache_env(mode: str, scratch: Path) -> dict[str, str]:
    """Environment of a fit's subprocess: fresh caches (cold) or the persistent ones (warm)."""
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    if mode == "cold":
        flags = env.get("PYTENSOR_FLAGS", "")
        env["PYTENSOR_FLAGS"] = ",".join(
            f for f in (flags, f"base_compiledir={scratch / 'pytensor'}") if f)
        env["NUMBA_CACHE_DIR"] = str(scratch / "numba")
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env[CACHE_ENV] = str(scratch / "densing_bayes")  # JAX's persistent cache starts empty
    return env


def run_fit_subprocess(task: dict, *, cache: str = "warm", timeout: float = 3600.0) -> dict:
    """Run ``worker_fit(task)`` in a fresh Python process; add its peak memory."""
    with tempfile.TemporaryDirectory(prefix="densing_bench_") as tmp:
        tmp = Path(tmp)
        task_file, result_file = tmp / "task.json", tmp / "result.json"
        task_file.write_text(json.dumps(task))
        cmd = [sys.executable, "-m", "densing_bayes.inference.bench", "--worker",
               str(task_file), str(result_file)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=_cache_env(cache, tmp), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        memory = _TreeMemory(proc.pid)
        memory.start()
        try:
            _, err = proc.communicate(timeout=timeout)
            status = "ok" if proc.returncode == 0 and result_file.exists() else "error"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            _, err = proc.communicate()
            status = "timeout"
        peak = memory.stop()
        elapsed = time.perf_counter() - started
        result: dict = {m: None for m in METRICS}
        if status == "ok":
            result.update(json.loads(result_file.read_text()))
            result["error"] = None
        else:
            tail = [ln for ln in (err or "").strip().splitlines() if ln.strip()][-3:]
            result["error"] = (f"timed out after {timeout:.0f} s" if status == "timeout"
                               else " | ".join(tail) or f"exit status {proc.returncode}")
        result["status"] = status
        result["peak_rss_mb"] = max(peak, result.get("maxrss_self_mb") or 0.0) or None
        result["subprocess_seconds"] = elapsed
        return result


# ----------------------------------------------------------------------------- the benchmark
def _simulate_folder(case: Case, root: Path) -> Path:
    from densing_bayes.data.simulate import simulate_design, write_simulation

    folder = root / case.name
    if not folder.exists():
        sim = simulate_design("paper", seed=SIM_SEED, n_models=case.n_models,
                              n_benchmarks=case.n_benchmarks)
        write_simulation(sim, folder)
    return folder


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("densing_bayes", "pymc", "pytensor", "nutpie", "numba", "numpyro", "jax",
                 "arviz", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


Runner = Callable[..., dict]


def run_bench(cases: Sequence[Case], samplers: Sequence[str], *, repeats: int = 1,
              cache: str = "warm", timeout: float = 3600.0, runner: Runner | None = None,
              log: Callable[[str], None] | None = None, workdir: Path | None = None,
              quick: bool = False, on_update: Callable[[dict], None] | None = None,
              settings: Sequence[str] = ()) -> dict:
    """Run every (case, sampler) ``repeats`` times and return the report (JSON-ready).

    ``settings`` are spec overrides (``"trend.latent=centred"``, as ``--set``) applied to every
    case's spec, so that one run can compare a model variant with the previous report.

    ``on_update`` receives the partial report after every fit (the CLI rewrites ``--out``
    with it, so an interrupted benchmark keeps what it measured).
    """
    runner = runner or run_fit_subprocess
    log = log or (lambda msg: None)
    skipped = {s: unavailable_reason(s) for s in samplers}
    active = [s for s in samplers if skipped[s] is None]
    for s in samplers:
        if skipped[s]:
            log(f"skipping {s}: {skipped[s]}")
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.mkdtemp(prefix="densing_bench_data_")
        workdir = Path(own_tmp)
    runs = []
    load_start = _loadavg()
    try:
        for case, repeat, sampler in run_order(cases, active, repeats):
            data = case.data if not case.simulated else str(_simulate_folder(case, workdir))
            task = {"case": case.name, "sampler": sampler, "repeat": repeat, "spec": case.spec,
                    "data": data, "draws": case.draws, "tune": case.tune,
                    "chains": case.chains, "seed": case.seed + repeat,
                    "settings": list(settings)}
            log(f"{case.name} repeat {repeat + 1}/{repeats}: {sampler} "
                f"(load {_loadavg()}) ...")
            measured = runner(task, cache=cache, timeout=timeout)
            run = {"case": case.name, "sampler": sampler, "repeat": repeat,
                   "seed": task["seed"], "load_average": _loadavg(), **measured}
            runs.append(run)
            if run["status"] == "ok":
                log(f"  {sampler}: wall {run['wall_seconds']:.1f} s (compile "
                    f"{run['compile_seconds']:.1f}, sample {run['sample_seconds']:.1f}), "
                    f"min ESS {run['min_ess_bulk']:.0f}, {run['divergences']} divergences")
            else:
                log(f"  {sampler}: {run['status']}: {run.get('error')}")
            if on_update:
                on_update(_report(cases, samplers, active, skipped, runs, repeats=repeats,
                                  cache=cache, timeout=timeout, quick=quick,
                                  load_start=load_start, settings=settings))
    finally:
        if own_tmp:
            shutil.rmtree(own_tmp, ignore_errors=True)
    return _report(cases, samplers, active, skipped, runs, repeats=repeats, cache=cache,
                   timeout=timeout, quick=quick, load_start=load_start, settings=settings)


def _report(cases, samplers, active, skipped, runs, *, repeats, cache, timeout, quick,
            load_start, settings=()) -> dict:
    summary = summarise(cases, runs, active)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                 "python": platform.python_version(), "versions": _versions()},
        "load_average": {"start": load_start, "end": _loadavg()},
        "settings": {"quick": quick, "repeats": repeats, "cache": cache,
                     "samplers": list(samplers), "baseline": BASELINE,
                     "order": "samplers alternate within each repeat of a case",
                     "timeout_seconds": timeout, "spec_settings": list(settings)},
        "samplers": {s: ({"status": "skipped", "reason": skipped[s]} if skipped[s]
                         else {"status": "run"}) for s in samplers},
        "cases": [dataclasses.asdict(c) for c in cases],
        "runs": runs,
        "summary": summary,
        "growth": growth(cases, summary, active),
    }


# ----------------------------------------------------------------------------- presentation
def _fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _fmt_spread(s: dict, digits=1) -> str:
    if s["median"] is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} [{_fmt(s['min'], digits)}-{_fmt(s['max'], digits)}]"


def format_table(report: dict) -> str:
    """The report as a plain-text table: medians with [min-max] over repeats."""
    base = report["settings"]["baseline"]
    cols = ["case", "sampler", "compile s", "sample s", "wall s", "ESS bulk", "ESS tail",
            "ESS/s", f"x {base}", "div", "R-hat", "BFMI", "peak MB"]
    rows = []
    for e in report["summary"]:
        m = e["metrics"]
        if e["status"] != "ok":
            rows.append([e["case"], e["sampler"], e["status"]] + [""] * (len(cols) - 3))
            continue
        ratio = e[f"ess_per_second_ratio_to_{base}"]
        rows.append([
            e["case"], e["sampler"], _fmt_spread(m["compile_seconds"]),
            _fmt_spread(m["sample_seconds"]), _fmt_spread(m["wall_seconds"]),
            _fmt_spread(m["min_ess_bulk"], 0), _fmt_spread(m["min_ess_tail"], 0),
            _fmt_spread(m["ess_bulk_per_second"], 2),
            _fmt_spread(ratio | {"n": m["ess_bulk_per_second"]["n"]}, 2),
            _fmt(m["divergences"]["max"], 0), _fmt(m["max_rhat"]["max"], 3),
            _fmt(m["min_bfmi"]["min"], 2), _fmt(m["peak_rss_mb"]["max"], 0),
        ])
    widths = [max(len(str(r[i])) for r in [cols, *rows]) for i in range(len(cols))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    notes = [f"medians over repeats, [min-max] when they differ; div = max over repeats, "
             f"R-hat = max, BFMI = min, peak MB = max; ESS/s = min bulk ESS / wall; "
             f"cache {report['settings']['cache']}; load average "
             f"{report['load_average']['start']} -> {report['load_average']['end']}"]
    if report["settings"].get("spec_settings"):
        notes.append("spec settings: " + ", ".join(report["settings"]["spec_settings"]))
    for s, info in report["samplers"].items():
        if info["status"] == "skipped":
            notes.append(f"{s}: skipped ({info['reason']})")
    for s, g in report.get("growth", {}).items():
        for key, entry in g["vs_models"].items():
            if entry.get("slope_wall_seconds") is not None:
                notes.append(
                    f"{s}, {key.replace('_', ' ')}: log-log slope vs models "
                    f"{entry['n_models'][0]}->{entry['n_models'][-1]}: wall "
                    f"{_fmt(entry['slope_wall_seconds'], 2)}, per gradient "
                    f"{_fmt(entry['slope_seconds_per_gradient'], 2)}, peak memory "
                    f"{_fmt(entry['slope_peak_rss_mb'], 2)}")
    for e in report["summary"]:
        for err in e["errors"]:
            notes.append(f"{e['case']} / {e['sampler']}: {err}")
    return "\n".join(lines + [""] + notes)


def write_report(report: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")


# ----------------------------------------------------------------------------- worker entry
def _worker_main(argv: list[str]) -> int:
    task_file, result_file = Path(argv[0]), Path(argv[1])
    task = json.loads(task_file.read_text())
    result = worker_fit(task)
    result_file.write_text(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through run_fit_subprocess
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:4]))
    print("usage: densing-bayes bench [--quick] [--out FILE] (this module's entry is the worker)",
          file=sys.stderr)
    sys.exit(2)
