"""The ``densing-bayes`` command.

Every subcommand is a thin layer over a Python function, the fitting ones over the Python API
(:mod:`densing_bayes.api`: ``fit``, ``load``, ``DensingFit``), so everything here can be scripted;
it
turns known failures (bad data, a bad spec, an occupied output folder) into one line per problem
and exit status 2, never a traceback, and logs progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from densing_bayes import __version__

EXIT_OK, EXIT_FAILED_CHECKS, EXIT_BAD_INPUT = 0, 1, 2

log = logging.getLogger("densing_bayes")


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ------------------------------------------------------------------------------ data
def cmd_data_check(args) -> int:
    from densing_bayes import api

    data = api.load_data(args.folder)
    counts = [f"{len(data.reference_runs)} reference rows"]
    if data.has_evaluated_models:
        counts += [f"{len(data.models)} models", f"{len(data.scores)} scores"]
    if data.benchmarks is not None:
        counts.append(f"{len(data.benchmarks)} benchmarks")
    print(f"{data.folder}: OK ({', '.join(counts)})")
    for note in data.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_data_derive(args) -> int:
    import os
    import shutil
    import tempfile

    from densing_bayes.data.derive import derive_all

    # Derived into a staging sibling, then each file replaced atomically: a failure or a kill
    # halfway never leaves a truncated or half-updated data folder.
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.derive-", dir=out.parent))
    try:
        written = derive_all(Path(args.datasets), staging)
        for name in written:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
            print(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EXIT_OK


def cmd_simulate(args) -> int:
    from densing_bayes.data.simulate import simulate_design, write_simulation

    sim = simulate_design(args.design, seed=args.seed, n_models=args.n_models,
                          n_benchmarks=args.n_benchmarks)
    try:
        write_simulation(sim, Path(args.out), force=args.force)
    except FileExistsError as exc:  # the message names the Python keyword; name the flag
        raise UserError(str(exc).replace("force=True", "--force")) from None
    tr = sim.truth["trend"]
    print(f"wrote {args.out}: {len(sim.models)} models, {len(sim.scores)} scores, "
          f"{len(sim.reference_runs)} reference rows; true doubling time "
          f"{tr['doubling_time_days_post']:.1f} days (pre {tr['doubling_time_days_pre']:.1f})")
    return EXIT_OK


# ------------------------------------------------------------------------------ fitting
def _spec_with_flags(args):
    """The spec named on the command line, then its ``--set`` overrides, then the sampler and
    data flags (the more specific flag wins over a ``--set`` of the same setting)."""
    from densing_bayes.model.spec import SpecError, load_spec, merge_settings

    spec = load_spec(args.spec)
    if getattr(args, "set", None):
        try:
            spec = spec.with_overrides(merge_settings(args.set))
        except SpecError as exc:
            raise UserError(f"--set: {exc}") from None
    sampler = {k: getattr(args, k) for k in ("seed", "draws", "tune", "chains", "target_accept",
                                             "backend")
               if getattr(args, k, None) is not None}
    overrides = {"sampler": sampler} if sampler else {}
    if getattr(args, "data", None):
        overrides["data"] = {"folder": str(args.data)}
    return spec.with_overrides(overrides) if overrides else spec


def _report_fit(s: dict, out: Path, strict: bool) -> int:
    print(f"run written to {out}")
    dt = s.get("doubling_time_days")
    if dt:
        def fmt(e):
            if e is None:
                return "n/a"
            up = "unbounded" if e["upper"] is None else f"{e['upper']:.0f}"
            med = "n/a" if e["median"] is None else f"{e['median']:.0f}"
            low = "n/a" if e["lower"] is None else f"{e['lower']:.0f}"
            return f"{med} days ({s['ci_prob']:.0%} CI {low}-{up})"
        print(f"doubling time after the changepoint: {fmt(dt)}; paper: 95 days")
        if s.get("doubling_time_days_pre"):
            print(f"doubling time before: {fmt(s['doubling_time_days_pre'])}")
        for line in _acceleration_lines(s):
            print(line)
    failures = s["diagnostics"]["failures"]
    d = s["diagnostics"]
    def num(value, fmt):  # None: not computable (R-hat of one chain, E-BFMI without energy)
        return "n/a" if value is None else format(value, fmt)
    print(f"diagnostics: {d['divergences']} divergences, max R-hat {num(d['max_rhat'], '.3f')}, "
          f"min ESS bulk/tail {num(d['min_ess_bulk'], '.0f')}/{num(d['min_ess_tail'], '.0f')}, "
          f"min E-BFMI {num(d['min_bfmi'], '.2f')}")
    for line in failures:
        print(f"WARNING: {line}", file=sys.stderr)
    if failures and strict:
        return EXIT_FAILED_CHECKS
    return EXIT_OK


def cmd_fit(args) -> int:
    from densing_bayes import api

    spec = _spec_with_flags(args)
    out = Path(args.out)
    fitted = api.fit(spec, progress=not args.quiet, save_to=out, force=args.force,
                     metric_from=args.metric_from)
    return _report_fit(fitted.summary_dict(), out, args.strict)


def _acceleration_lines(s: dict) -> list[str]:
    """The acceleration as summary.json states it: the slope difference first (finite in
    every draw), then the doubling-time ratio the paper quotes."""
    ci = f"{s['ci_prob']:.0%} CI"
    lines = []
    diff = s.get("slope_difference_per_year")
    if diff and diff.get("median") is not None:
        lines.append(f"acceleration, slope after - before: {diff['median']:+.2f} e-folds per "
                     f"year ({ci} {diff['lower']:+.2f} to {diff['upper']:+.2f}); "
                     f"P(> 0) = {s.get('prob_slope_difference_positive', float('nan')):.3f}")
    ratio = s.get("doubling_time_ratio")
    if ratio:
        def end(v):
            return "unbounded" if v is None else f"{v:.2f}"
        lines.append(f"acceleration, doubling time before / after: {end(ratio['median'])} "
                     f"({ci} {end(ratio['lower'])}-{end(ratio['upper'])}); "
                     f"P(> 1) = {s.get('prob_acceleration', float('nan')):.3f}; paper: about 1.5")
    return lines


def _checks_line(folder: Path) -> str | None:
    """One line for the model checks the report stored in RUN/summary.json: a printed answer
    carries the checks that bind it, not only the sampler's."""
    from densing_bayes.analysis.checks import verdict

    try:
        records = json.loads((Path(folder) / "summary.json").read_text())["model_checks"]
    except (OSError, ValueError, KeyError):
        return None
    v = verdict(records)
    if v["status"] == "passed":
        line = f"model checks: all {v['n_passed']} computed checks passed"
    else:
        line = (f"model checks: {len(v['failed'])} of {v['n']} fail "
                f"({'; '.join(v['failed'])}); read the answer with the report's caveats")
    if v["not_computed"]:
        line += f"; {len(v['not_computed'])} not computed for this run"
    return line


def cmd_run(args) -> int:
    from densing_bayes import api

    spec = _spec_with_flags(args)
    out = Path(args.out) if args.out else Path("reports") / spec.name
    fitted = api.fit(spec, progress=not args.quiet, save_to=out, force=args.force,
                     metric_from=args.metric_from)
    code = _report_fit(fitted.summary_dict(), out, args.strict)
    print(f"report written to {fitted.report()}")
    line = _checks_line(out)  # after the report: it reruns the checks with the batches
    if line:
        print(line)
    return code


def cmd_report(args) -> int:
    from densing_bayes import api

    print(f"report written to {api.load(args.run).report(compare=args.compare, svg=args.svg)}")
    line = _checks_line(Path(args.run))
    if line:
        print(line)
    return EXIT_OK


def cmd_predict(args) -> int:
    from densing_bayes import api
    from densing_bayes.inference.run_io import atomic_write_text

    try:
        table = api.load(args.run).predict(params=args.params, tokens=args.tokens,
                                           fmt=args.format)
    except ValueError as exc:  # a format the fit has no curve for
        raise UserError(str(exc)) from None
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise UserError(f"{out} exists; pass --force to overwrite it")
        atomic_write_text(out, table.to_csv(index=False))
        print(f"wrote {out}")
    else:
        print(table.to_csv(index=False), end="")
    return EXIT_OK


# ------------------------------------------------------------------------------ benchmark
def cmd_bench(args) -> int:
    from densing_bayes.inference import bench
    from densing_bayes.inference.run_io import atomic_write_text
    from densing_bayes.model.spec import SpecError, load_spec, merge_settings

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = sorted(set(samplers) - set(bench.SAMPLERS))
    if unknown:
        raise UserError(f"unknown sampler(s) {unknown}; known: {list(bench.SAMPLERS)}")
    if args.out and Path(args.out).exists() and not args.force:
        raise UserError(f"{args.out} exists; pass --force to overwrite it")
    if args.quick:
        cases = bench.quick_cases()
    else:
        cases = bench.full_cases(**{k: getattr(args, k) for k in ("draws", "tune", "chains")
                                    if getattr(args, k) is not None})
    try:
        cases = bench.select_cases(cases, args.cases.split(",") if args.cases else None)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        for case in cases:  # every case's spec must accept the settings before anything runs
            load_spec(case.spec).with_overrides(merge_settings(args.set))
    except SpecError as exc:
        raise UserError(f"--set: {exc}") from None
    repeats = 1 if args.quick and args.repeats is None else (args.repeats or 3)
    def save(partial):  # atomically: a kill mid-write must not truncate hours of results
        if args.out:
            atomic_write_text(Path(args.out), json.dumps(partial, indent=2, default=float) + "\n")

    report = bench.run_bench(cases, samplers, repeats=repeats, cache=args.cache,
                             timeout=args.timeout, quick=args.quick, log=log.info,
                             on_update=save, settings=args.set)
    if args.out:
        save(report)
        log.info("wrote %s", args.out)
    print(bench.format_table(report))
    return EXIT_OK


# ------------------------------------------------------------------------------ batches
def _batch_options(args) -> dict:
    return {"resume": args.resume, "force": args.force, "scheduler": args.scheduler,
            "n_workers": args.workers, "progress": not args.quiet}


def _batch_exit(report_path: Path, failed: list[str]) -> int:
    print(f"report written to {report_path}")
    if failed:
        print(f"WARNING: {len(failed)} task(s) failed (recorded with their errors): "
              f"{', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    return EXIT_OK


def _days(interval: dict | None) -> str:
    """A doubling-time interval as 'median days (lower-upper)'; None when the fit failed."""
    if not interval or interval["median"] is None:
        return "n/a"
    upper = "unbounded" if interval["upper"] is None else f"{interval['upper']:.0f}"
    return f"{interval['median']:.0f} days ({interval['lower']:.0f}-{upper})"


def cmd_sensitivity(args) -> int:
    from densing_bayes.analysis.sensitivity import SENSITIVITY_JSON, run_sensitivity
    from densing_bayes.inference.batch import BatchFolderError

    spec = _spec_with_flags(args)
    out = Path(args.out) if args.out else Path("reports") / spec.name / "sensitivity"
    only = [p.strip() for p in args.variants.split(",") if p.strip()] if args.variants else None
    try:
        report = run_sensitivity(spec, out, only=only, **_batch_options(args))
    except (BatchFolderError, ValueError) as exc:
        raise UserError(str(exc)) from None
    for entry in report["prior_variants"]:
        print(f"{entry['name']:<40} {_days(entry['doubling_time_days'])}")
    failed = [e["name"] for e in report["prior_variants"] if e["status"] != "ok"]
    return _batch_exit(out / SENSITIVITY_JSON, failed)


def cmd_robustness(args) -> int:
    from densing_bayes.analysis.robustness import ROBUSTNESS_JSON, run_robustness
    from densing_bayes.inference.batch import BatchFolderError

    spec = _spec_with_flags(args)
    out = Path(args.out) if args.out else Path("reports") / spec.name / "robustness"
    cutoffs = [c.strip() for c in args.cutoffs.split(",") if c.strip()]
    structures = ([s.strip() for s in args.structures.split(",") if s.strip()]
                  if args.structures is not None else None)
    try:
        future = [s.strip() for s in args.future_structures.split(",") if s.strip()]
        report = run_robustness(spec, out, cutoffs=cutoffs, structures=structures,
                                future_structures=future,
                                min_family_models=args.min_family_models,
                                exact_loo=not args.no_exact_loo,
                                leave_each_pre=args.leave_each_pre, **_batch_options(args))
    except (BatchFolderError, ValueError) as exc:
        raise UserError(str(exc)) from None
    for e in report["refits"]:
        p = e.get("prediction") or {}
        held = (f"  held-out scores inside 90%: {p['n_inside']}/{p['n_rows']}"
                if p.get("n_rows") else "")
        diff = e.get("slope_difference_per_year") or {}
        slope = (f"  slope after - before {diff['median']:+.2f}/year "
                 f"({diff['lower']:+.2f} to {diff['upper']:+.2f})"
                 if e["kind"] == "pre" and diff.get("median") is not None else "")
        print(f"{e['name']:<32} {_days(e['doubling_time_days'])}{slope}{held}")
    failed = [e["name"] for e in report["refits"] if e["status"] != "ok"]
    return _batch_exit(out / ROBUSTNESS_JSON, failed)


def cmd_sbc(args) -> int:
    from densing_bayes.analysis.calibration import SBC_JSON, run_posterior_sbc, run_sbc
    from densing_bayes.inference.batch import BatchFolderError
    from densing_bayes.inference.run_io import RunFolderError
    from densing_bayes.model.spec import SpecError

    if args.posterior:
        if args.design != "paper":
            raise UserError("--posterior: the design is the run's own data; leave out --design")
        run_spec = Path(args.posterior) / "spec.toml"
        if args.spec is None and not run_spec.is_file():
            raise UserError(f"--posterior: {args.posterior} is not a run folder (no spec.toml)")
        args.spec = args.spec or str(run_spec)
    else:
        args.spec = args.spec or "paper_design"
    spec = _spec_with_flags(args)
    default_out = "sbc_posterior" if args.posterior else "sbc"
    out = Path(args.out) if args.out else Path("reports") / spec.name / default_out
    if args.only and max(args.only) >= args.simulations:
        raise UserError(f"--only: simulation ids must lie in 0..{args.simulations - 1}, got "
                        f"{max(args.only)}")
    try:
        if args.posterior:
            report = run_posterior_sbc(spec, Path(args.posterior), args.simulations, out,
                                       only=args.only, **_batch_options(args))
        else:
            report = run_sbc(spec, args.simulations, out, design=args.design, only=args.only,
                             **_batch_options(args))
    except (BatchFolderError, RunFolderError, SpecError) as exc:
        raise UserError(str(exc)) from None
    print(uniformity_table(report))
    return _batch_exit(out / SBC_JSON, list(report["failures"]))


def uniformity_table(report: dict) -> str:
    """Each quantity's tests and Holm-adjusted p, then the family-wise verdict: over 19
    quantities a test below 0.05 alone is expected about twice by chance."""
    family = report.get("family_wise") or {}
    adjusted = family.get("adjusted_p") or {}
    lines = []
    for quantity, test in report["uniformity"].items():
        alone = "" if test["uniform"] else "  (p < 0.05 alone)"
        holm = adjusted.get(quantity)
        lines.append(f"{quantity:<32} chi2 p={test['p_chi2']:.3f}  KS p={test['p_ks']:.3f}"
                     + (f"  Holm p={holm:.3f}" if holm is not None else "") + alone)
    if family:
        rejected = family["rejected"]
        lines.append(f"family-wise at {family['alpha']:g} over {len(adjusted)} quantities: "
                     + (f"NOT uniform: {', '.join(rejected)}" if rejected
                        else "no quantity rejected"))
    return "\n".join(lines)


def cmd_misspec(args) -> int:
    from densing_bayes.analysis.misspecification import REPORT_JSON, run_misspecification
    from densing_bayes.inference.batch import BatchFolderError

    spec = _spec_with_flags(args)
    out = Path(args.out) if args.out else Path("reports") / spec.name / "misspecification"
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()] if args.worlds else None
    try:
        report = run_misspecification(spec, args.simulations, out, worlds=worlds,
                                      design=args.design, **_batch_options(args))
    except (BatchFolderError, ValueError) as exc:
        raise UserError(str(exc)) from None
    for row in report["coverage"]:
        if row["quantity"] == "doubling_time_days":
            print(f"{row['world']:<26} 90% interval of the doubling time covers "
                  f"{row['covered']}/{row['n']} = {row['coverage']:.2f} "
                  f"[{row['coverage_lower']:.2f}, {row['coverage_upper']:.2f}]")
    failed = [w for w, v in report["worlds"].items() if v["n_failed"]]
    return _batch_exit(out / REPORT_JSON, failed)


# ------------------------------------------------------------------------------ parser
#: Size suffixes accepted by counts, as the package prints them ("7B" parameters, "2T" tokens).
COUNT_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def _positive_float(text: str) -> float:
    """A positive count: a number (7e9) or a number with a size suffix (7B, 70M, 1.5T)."""
    number, scale = text.strip(), 1.0
    if number[-1:].upper() in COUNT_SUFFIXES:
        number, scale = number[:-1], COUNT_SUFFIXES[number[-1].upper()]
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; write e.g. 7e9 or 7B (suffixes K, M, B, T)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive count")
    return value


def _id_list(text: str) -> list[int]:
    """'0,1,23-31' -> [0, 1, 23, ..., 31]."""
    ids: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        bad_last = bool(last) and (not last.isdigit() or int(last) < int(first or 0))
        if not first.isdigit() or bad_last:
            raise argparse.ArgumentTypeError(f"{text!r}: ids are whole numbers or ranges a-b, "
                                             "comma-separated (e.g. 0,1,23-31)")
        ids.extend(range(int(first), int(last or first) + 1))
    return ids


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return int(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number strictly between 0 and 1")
    return value


def _sampler_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="random seed (default: the spec's)")
    p.add_argument("--draws", type=int, help="posterior draws per chain")
    p.add_argument("--tune", type=int, help="tuning steps per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--target-accept", type=_probability, metavar="P",
                   help="NUTS target acceptance rate, 0 < P < 1 (default: the spec's; "
                   "raising it shortens the steps where divergences occur)")
    p.add_argument("--backend", choices=["nutpie", "pymc", "numpyro"],
                   help="NUTS implementation (numpyro needs densing_bayes[numpyro])")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a setting of the spec (repeatable), e.g. "
                   "--set trend.latent=centred --set sampler.target_accept=0.95")


def _batch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler of an existing cluster (default: a local cluster on "
                   "127.0.0.1); trusted fully, as Dask runs pickled code: use tls:// with "
                   "Dask's TLS settings beyond your machine (docs/reliability.md)")
    p.add_argument("--workers", type=int, help="local cluster size (default: one per core)")
    p.add_argument("--resume", action="store_true", help="continue a batch: run only the "
                   "tasks without a result in --out")
    p.add_argument("--force", action="store_true", help="start again in a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densing-bayes",
        description="Bayesian Densing Law: how fast does LLM capability density grow?")
    parser.add_argument("--version", action="version", version=f"densing_bayes {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="fit a spec on the bundled data into reports/<spec>/")
    p.add_argument("spec", nargs="?", default="default", help="bundled spec name or TOML path")
    p.add_argument("--out", help="run folder (default reports/<spec name>)")
    p.add_argument("--data", help="data folder (default: the spec's)")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--strict", action="store_true", help="exit 1 if a diagnostic fails")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--metric-from", metavar="RUN",
                   help="whiten with the dense metric saved in RUN's posterior.nc (or its "
                        "thinned copy) instead of the cache's: with RUN's spec and seed, RUN's "
                        "draws again")
    _sampler_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("fit", help="fit a spec to a data folder into a run folder")
    p.add_argument("spec", nargs="?", default="default", help="bundled spec name or TOML path")
    p.add_argument("--data", help="data folder or bundled data name (default: the spec's)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--strict", action="store_true", help="exit 1 if a diagnostic fails")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--metric-from", metavar="RUN",
                   help="whiten with the dense metric saved in RUN's posterior.nc (or its "
                        "thinned copy) instead of the cache's: with RUN's spec and seed, RUN's "
                        "draws again")
    _sampler_flags(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="posterior predictive scores (or, for the loss law "
                       "alone, the loss) of a new reference model")
    p.add_argument("run", help="a run folder written by fit or run")
    p.add_argument("--params", type=_positive_float, required=True,
                   help="parameter count N, e.g. 7e9 or 7B")
    p.add_argument("--tokens", type=_positive_float, required=True,
                   help="training tokens D, e.g. 2e12 or 2T")
    p.add_argument("--format", choices=("rc", "mc"), default="rc",
                   help="scoring format of the predicted scores: rc (cloze, the reference "
                        "family's protocol; default) or mc (multiple choice, if the fit has that "
                        "curve)")
    p.add_argument("--out", help="CSV file to write (default: print)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="write RUN/report.html and RUN/figures/ for a run folder")
    p.add_argument("run", help="a run folder written by fit or run")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN",
                   help="other runs on the same data (e.g. changepoint variants) for LOO")
    p.add_argument("--svg", action="store_true",
                   help="also write every figure as SVG (vector, for papers; adds about 6 s)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("simulate", help="write a simulated data folder with its truth")
    p.add_argument("--design", default="paper", choices=["paper"])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n-models", type=int, default=None, help="scale up the evaluated models")
    p.add_argument("--n-benchmarks", type=int, default=5)
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("bench", help="time PyMC, nutpie and NumPyro side by side on the model")
    p.add_argument("--out", help="JSON report to write (the table goes to stdout)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quick", action="store_true", help="one tiny case, tiny draws (CI)")
    p.add_argument("--repeats", type=int, help="runs per case and sampler (default 3; quick 1)")
    p.add_argument("--samplers", default="pymc,nutpie,numpyro",
                   help="comma-separated, run alternately (also: pymc_default, PyMC's own "
                   "init); absent ones are reported as skipped")
    p.add_argument("--cases", help="comma-separated case names (default: all; e.g. bundled,"
                   "sim_36x5,sim_1000x10)")
    p.add_argument("--cache", choices=["warm", "cold"], default="warm",
                   help="warm: share the on-disk compile caches; cold: fresh caches per fit")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per fit")
    p.add_argument("--draws", type=int, help="posterior draws per chain (default 1000)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (default 1000)")
    p.add_argument("--chains", type=int, help="number of chains (default 4)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a setting of every case's spec (repeatable), e.g. "
                   "--set trend.latent=centred --set sampler.mass_matrix=low_rank")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sensitivity", help="refits under prior and data variants, "
                       "power-scaling sensitivity (Dask batch)")
    p.add_argument("spec", nargs="?", default="default", help="bundled spec name or TOML path")
    p.add_argument("--data", help="data folder or bundled data name (default: the spec's)")
    p.add_argument("--out", help="batch folder (default reports/<spec name>/sensitivity)")
    p.add_argument("--variants", metavar="PATTERN[,PATTERN...]",
                   help="refit only the baseline and the variants matching these shell-style "
                        "patterns, in this order (e.g. 'protocol_offset_*,without_benchmark:*')")
    _batch_flags(p)
    _sampler_flags(p)
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("robustness", help="leave-future-out, leave-one-family-out and trend-"
                       "structure refits: held-out coverage and model-level LOO (Dask batch)")
    p.add_argument("spec", nargs="?", default="default", help="bundled spec name or TOML path")
    p.add_argument("--data", help="data folder or bundled data name (default: the spec's)")
    p.add_argument("--out", help="batch folder (default reports/<spec name>/robustness)")
    p.add_argument("--cutoffs", default="2024-03-01,2024-06-01", metavar="DATE[,DATE...]",
                   help="leave-future-out cut-off dates: fit the models released before, "
                        "predict those released on or after (default %(default)s)")
    p.add_argument("--min-family-models", type=int, default=5,
                   help="leave out each lineage with at least this many models (default 5)")
    p.add_argument("--structures", metavar="NAME[,NAME...]",
                   help="trend structures to refit on the full data (default: no_changepoint,"
                        "unknown_changepoint,mean_trend; '' for none; also size_covariate, "
                        "inefficiency_trend, lineage_profile)")
    p.add_argument("--future-structures", default="", metavar="NAME[,NAME...]",
                   help="also refit each cut-off's leave-future-out under these structures "
                        "(e.g. size_covariate): which structure predicts later models")
    p.add_argument("--leave-each-pre", action="store_true",
                   help="also refit without each model released before the changepoint: "
                        "the slope before and the acceleration with each left out")
    p.add_argument("--no-exact-loo", action="store_true",
                   help="skip the second pass that refits without each model whose "
                        "leave-one-model-out Pareto k exceeds 0.7 (its exact ELPD)")
    _batch_flags(p)
    _sampler_flags(p)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("sbc", help="simulation-based calibration on the paper's design or "
                       "the bundled data's (Dask batch)")
    p.add_argument("spec", nargs="?", default=None,
                   help="bundled spec name or TOML path (default paper_design; with "
                   "--posterior, the run's spec.toml)")
    p.add_argument("--simulations", type=_positive_int, required=True,
                   help="number of simulations")
    p.add_argument("--out", help="batch folder (default reports/<spec name>/sbc, or "
                   "sbc_posterior with --posterior)")
    p.add_argument("--posterior", metavar="RUN",
                   help="posterior SBC of a fitted run: truths are draws of RUN's posterior "
                   "(its thinned copy), each simulation fits RUN's data plus one replicate "
                   "drawn given the truth (Sailynoja et al. 2025)")
    p.add_argument("--design", default="paper",
                   help="'paper' (the simulated paper design), 'bundled' (the spec's own data "
                   "folder: its models, dates, sizes, benchmarks and formats) or a data folder")
    p.add_argument("--only", type=_id_list, metavar="IDS",
                   help="run only these of the simulations (e.g. 0,1,23-31), each with its seed "
                   "in the full batch: refit some of a batch's data sets with other sampler "
                   "settings into another --out")
    _batch_flags(p)
    _sampler_flags(p)
    p.set_defaults(func=cmd_sbc)

    p = sub.add_parser("misspec", help="coverage of the doubling time's interval in simulated "
                       "worlds that break the model's assumptions (Dask batch)")
    p.add_argument("spec", nargs="?", default="default", help="bundled spec name or TOML path")
    p.add_argument("--simulations", type=_positive_int, required=True,
                   help="simulations per world")
    p.add_argument("--worlds", metavar="NAME[,NAME...]",
                   help="worlds to simulate (default: all; see docs/model.md)")
    p.add_argument("--design", default="bundled",
                   help="'bundled' (the spec's data folder) or 'paper' or a data folder")
    p.add_argument("--out", help="batch folder (default reports/<spec name>/misspecification)")
    _batch_flags(p)
    _sampler_flags(p)
    p.set_defaults(func=cmd_misspec)

    p = sub.add_parser("data", help="check or derive data folders")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("check", help="validate a data folder (a path or bundled name)")
    q.add_argument("folder")
    q.set_defaults(func=cmd_data_check)
    q = data_sub.add_parser("derive", help="re-derive the bundled tables from ../shared/datasets")
    q.add_argument("--datasets", default="../shared/datasets")
    q.add_argument("--out", default="data")
    q.set_defaults(func=cmd_data_derive)
    return parser


def _ours_or_warning(record: logging.LogRecord) -> bool:
    """Our INFO messages, but libraries' (dask's worker chatter, ...) only from WARNING up."""
    return record.levelno >= logging.WARNING or record.name.startswith("densing_bayes")


def main(argv: list[str] | None = None) -> int:
    from densing_bayes.data.schema import DataValidationError
    from densing_bayes.inference.metric import MetricError
    from densing_bayes.inference.run_io import RunFolderError
    from densing_bayes.model.inputs import ModelInputError
    from densing_bayes.model.spec import SpecError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="densing-bayes: %(message)s", stream=sys.stderr)
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ours_or_warning)
        # pip-installed PyTensor warns that it found no BLAS; the model has no matrix products
        # that would use one, so the warning only alarms users.
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    try:
        return args.func(args)
    except DataValidationError as err:
        from densing_bayes.data.load import format_problems

        print(format_problems(err), file=sys.stderr)
        checked_only = args.command == "data"  # `data check` never writes anything anyway
        print(f"{len(err.problems)} problem(s) found" + ("." if checked_only
              else "; nothing was written."), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SpecError, UserError, FileNotFoundError, ModelInputError, RunFolderError,
            MetricError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # a full disk or a file-size limit: one line, not a traceback
        from densing_bayes.inference.run_io import DISK_FULL

        if err.errno not in DISK_FULL:
            raise
        print(f"error: no space left on device ({err}); nothing was replaced", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
