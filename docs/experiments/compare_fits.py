"""Compare one fit of a candidate model with the default fit, on the checks issue 18 asks about.

Both runs must be fitted to the same data (``densing-bayes fit ... --out DIR``) and, for the
candidate, reported once (``densing-bayes report DIR``), so that its summary holds its model
checks. Writes one JSON record: PSIS-LOO of the 700 score measurements (``az.compare``), each
run's timing, sampler diagnostics, doubling times, the held-out / LOO-PIT / Pareto k checks,
the LOO-PIT counts in the extreme and 15% tails, every score with a LOO-PIT beyond 0.01 /
0.99 in either run, and any benchmark loadings. Used for docs/model.md, "Observation model"
(the benchmark-loading fit of 2026-12-02):

    python docs/experiments/compare_fits.py OUT.json /tmp/loading_fit benchmark_loading \\
        --baseline reports/default \\
        --command "densing-bayes fit default --out DIR --set trend.benchmark_loading=true \\
                   --draws 1000 --tune 1000"
"""
import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

CHECKS = ("heldout_coverage", "loo_pit", "pareto_k", "anchor_size:olmo-7B", "protocol_offsets")
TREND = ("doubling_time_days", "doubling_time_days_pre", "doubling_time_ratio",
         "slope_difference_per_year", "prob_slope_difference_positive")


def pointwise_elpd(ctx) -> np.ndarray:
    """Each score's PSIS-LOO elpd from the checks' context: with a (model, benchmark) effect
    the pair's effect is integrated out (``analysis.pair_loo``), which ``az.compare`` on the
    stored log-likelihood would not do."""
    from scipy.special import logsumexp

    log_weights = ctx.psis[0]
    return logsumexp(log_weights + ctx.log_likelihood, axis=0)


def run_record(folder: Path) -> tuple[dict, object, np.ndarray, np.ndarray]:
    """A run's numbers, its InferenceData, its LOO-PIT values and its pointwise elpd."""
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run

    summary = json.loads((folder / "summary.json").read_text())
    run = load_run(folder)
    ctx = CheckContext(idata=run.idata, spec=run.spec)
    pit = np.asarray(ctx.loo_pit, float)
    checks = {r["name"]: {"passed": r["passed"], "detail": r["detail"]}
              for r in summary["model_checks"] if r["name"] in CHECKS}
    record = {"config_hash": summary["config_hash"], "timing_seconds": summary["timing_seconds"],
              "diagnostics": summary["diagnostics"], **{k: summary.get(k) for k in TREND},
              "checks": checks,
              "pit_counts": {"below_0.01": int((pit < 0.01).sum()),
                             "above_0.99": int((pit > 0.99).sum()),
                             "below_0.15": int((pit < 0.15).sum()),
                             "above_0.85": int((pit > 0.85).sum()), "n": int(pit.size)}}
    if summary.get("benchmark_loading"):
        record["benchmark_loading"] = summary["benchmark_loading"]
    if "lineage_profile" in run.idata.posterior:  # from the draws: older summaries lack it
        from densing_bayes.analysis.derived import lineage_profile_summary

        record.update(lineage_profile_summary(run.idata.posterior, summary.get("ci_prob", 0.9)))
    if "score_pair_sd" in run.idata.posterior:  # the pair effect's SD, per benchmark or one
        sd = run.idata.posterior["score_pair_sd"]
        q = sd.quantile([0.05, 0.5, 0.95], dim=("chain", "draw"))
        record["score_pair_sd"] = (
            {str(b): [round(float(v), 4) for v in q.sel(benchmark=b).values]
             for b in sd["benchmark"].values} if "benchmark" in sd.dims
            else [round(float(v), 4) for v in q.values])
    record["pit_by_format"] = pit_by_format(run.idata, pit)
    return record, run.idata, pit, pointwise_elpd(ctx)


def pit_by_format(idata, pit: np.ndarray) -> list[dict]:
    """The LOO-PIT's share in the two 5% tails and in [0.25, 0.75] per scoring format (the
    report's table): a shared precision too low for one format and too high for another."""
    from densing_bayes.analysis.checks import loo_pit_by_group
    from densing_bayes.presentation.report import score_format_labels

    return loo_pit_by_group(pit, score_format_labels(idata.constant_data))


def extreme_rows(idata, pits: dict[str, np.ndarray], tail: float = 0.01) -> list[dict]:
    """Scores whose LOO-PIT lies beyond ``tail`` in any run, with every run's PIT."""
    const, post = idata.constant_data, idata.posterior
    models = [str(m) for m in post["model"].values]
    benchmarks = [str(b) for b in post["benchmark"].values]
    score = np.asarray(idata.observed_data["score_obs"].values, float)
    extreme = np.zeros(score.size, bool)
    for pit in pits.values():
        extreme |= (pit < tail) | (pit > 1.0 - tail)
    return [{"model": models[int(const["score_model"].values[i])],
             "benchmark": benchmarks[int(const["score_benchmark"].values[i])],
             "score": round(float(score[i]), 4),
             **{f"pit_{k}": round(float(p[i]), 5) for k, p in pits.items()}}
            for i in np.flatnonzero(extreme)]


def main() -> None:
    import arviz as az

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("label")
    parser.add_argument("--baseline", type=Path, default=Path("reports/default"))
    parser.add_argument("--command", required=True, help="how the candidate was fitted")
    parser.add_argument("--what", help="what the candidate is (default: the label)")
    args = parser.parse_args()

    from densing_bayes.analysis.pair_loo import has_pair_effect

    records, idatas, pits, pointwise = {}, {}, {}, {}
    for label, folder in ((args.label, args.candidate), ("default", args.baseline)):
        records[label], idatas[label], pits[label], pointwise[label] = run_record(folder)
    same_rows = len({p.size for p in pits.values()}) == 1
    elpd, extreme = None, None
    if same_rows and any(has_pair_effect(i) for i in idatas.values()):
        # az.compare would condition on the sampled pair effects: compare the integrated
        # pointwise elpds instead (difference and its SE as az.compare computes them)
        diff = pointwise[args.label] - pointwise["default"]
        elpd = {label: {"elpd_loo": float(p.sum()), "se": float(np.sqrt(p.size * np.var(p)))}
                for label, p in pointwise.items()}
        elpd[args.label].update(elpd_diff=float(diff.sum()),
                                dse=float(np.sqrt(diff.size * np.var(diff))),
                                note="candidate minus default; pair effects integrated")
        extreme = extreme_rows(idatas["default"], pits)
    elif same_rows:  # ELPD and row-by-row PITs compare only on the same measurements
        compare = az.compare(idatas, var_name="score_obs")
        elpd = {label: {k: float(compare.loc[label, k])
                        for k in ("elpd_loo", "p_loo", "elpd_diff", "dse", "weight")}
                for label in compare.index}
        extreme = extreme_rows(idatas["default"], pits)
    spec = (args.candidate / "spec.toml").read_text()
    out = {"what": args.what or f"the default spec with {args.label}, fitted once to the "
                                "bundled data",
           "command": args.command, "date": dt.date.today().isoformat(),
           "compared_with": str(args.baseline), "elpd_compare": elpd, "runs": records,
           "extreme_pit_rows": extreme}
    if not same_rows:
        out["note"] = ("the runs fit different measurements (other data), so their ELPDs and "
                       "row-by-row PITs are not compared")
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".spec.toml").write_text(spec)
    print(json.dumps(elpd or out["note"], indent=1))


if __name__ == "__main__":
    main()
