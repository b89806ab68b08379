"""Do a (model, benchmark) pair's measurements share an error? The default says no.

With ``score_rows = "pair_mean"`` the default fits one measurement per (model, benchmark,
format), each with its own Beta error around the chain's prediction: a model's cloze report
and its unstated-format report of the same benchmark are independent given the model's
effective size. If instead a pair carries an error its reports share (the misspecification
study's ``pair_errors`` world, where the acceleration's interval covers 0.74), their LOO-PIT
values correlate. This script measures that on a fitted run:

* the intraclass correlation (one-way ANOVA estimator) of probit(LOO-PIT) within pairs that
  have two or more measurements (different formats);
* the same within models across benchmarks, for contrast: a model's latent density is shared
  by all its rows, and each row's LOO prediction leans on the others, so under the default's
  own assumptions both ICCs are at or below zero;
* for the pairs measured both in cloze and in an unstated format, the correlation of their
  probit-PITs by how far apart the two measurements are (a transcription at lower precision
  differs by rounding only), and where the PITs of pairs 0.005 apart or less fall;
* the LOO-PIT's central and tail shares by the kind of source that reported the measurement;
* a permutation null for the within-pair ICC: probit-PITs shuffled across models within each
  (benchmark, format) cell, which keeps every cell's PIT distribution and breaks any pairing.
  It centres at or above the model's own null (no leaning), so its p-value is conservative.

Used for docs/results.md (2026-12-05, morning)::

    python docs/experiments/pair_residual_correlation.py reports/default \\
        docs/experiments/pair_residual_correlation_2026-12-05.json --permutations 2000
"""
import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def icc(z: np.ndarray, group: np.ndarray) -> tuple[float, float, int]:
    """One-way ANOVA intraclass correlation of ``z`` by ``group`` (groups of one dropped),
    its F statistic and the number of groups."""
    frame = pd.DataFrame({"z": z, "g": group})
    size = frame.groupby("g")["z"].transform("size")
    frame = frame[size > 1]
    k = frame.groupby("g").size()
    n, m = len(frame), len(k)
    n0 = (n - (k**2).sum() / n) / (m - 1)
    means = frame.groupby("g")["z"].mean()
    msb = float((k * (means - frame["z"].mean()) ** 2).sum() / (m - 1))
    msw = float(((frame["z"] - frame["g"].map(means)) ** 2).sum() / (n - m))
    return (msb - msw) / (msb + (n0 - 1) * msw), msb / msw, m


def main() -> None:
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run
    from densing_bayes.presentation.report import score_format_labels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20241205)
    args = parser.parse_args()

    run = load_run(args.run)
    pit = np.asarray(CheckContext(idata=run.idata, spec=run.spec).loo_pit, float)
    const = run.idata.constant_data
    model = np.asarray(const["score_model"].values, int)
    bench = np.asarray(const["score_benchmark"].values, int)
    fmt = np.asarray(score_format_labels(const))
    z = stats.norm.ppf(np.clip(pit, 1e-4, 1 - 1e-4))
    pair = model * (bench.max() + 1) + bench

    pair_icc, pair_f, n_pairs = icc(z, pair)
    # within models across benchmarks: one row per pair (its mean), so that the pairs' own
    # correlation does not enter the contrast
    per_pair = pd.DataFrame({"z": z, "pair": pair, "model": model}).groupby("pair").agg(
        z=("z", "mean"), model=("model", "first"))
    model_icc, model_f, n_models = icc(per_pair["z"].to_numpy(), per_pair["model"].to_numpy())

    rng = np.random.default_rng(args.seed)
    cells = pd.Series(np.arange(z.size)).groupby([bench, fmt]).apply(np.asarray).tolist()
    null = np.empty(args.permutations)
    for i in range(args.permutations):
        shuffled = z.copy()
        for rows in cells:
            shuffled[rows] = z[rng.permutation(rows)]
        null[i] = icc(shuffled, pair)[0]
    multi = pd.Series(pair).map(pd.Series(pair).value_counts()) > 1
    combos = (pd.DataFrame({"pair": pair[multi], "fmt": fmt[multi]}).groupby("pair")["fmt"]
              .apply(lambda s: " + ".join(sorted(s))).value_counts())
    # cloze + unstated pairs by how far apart their two measurements are: a transcription at
    # lower precision differs by rounding only, two evaluations by more
    y = np.asarray(run.idata.observed_data["score_obs"].values, float)
    frame = pd.DataFrame({"pair": pair, "fmt": fmt, "y": y, "z": z})
    wide_y = frame.pivot_table(index="pair", columns="fmt", values="y")
    wide_z = frame.pivot_table(index="pair", columns="fmt", values="z")
    both = wide_y[["cloze (RC)", "unstated"]].dropna().index
    gap = (wide_y.loc[both, "cloze (RC)"] - wide_y.loc[both, "unstated"]).abs()
    by_gap = []
    for lo, hi in ((0.0, 0.005), (0.005, 0.02), (0.02, 1.0)):
        rows = gap.index[((gap >= lo) if lo == 0 else (gap > lo)) & (gap <= hi)]
        corr = (float(np.corrcoef(wide_z.loc[rows, "cloze (RC)"],
                                  wide_z.loc[rows, "unstated"])[0, 1]) if len(rows) > 2 else None)
        by_gap.append({"gap_above": lo, "gap_at_most": hi, "pairs": int(len(rows)),
                       "probit_pit_correlation": corr})
    # where those near-copies put their PITs: central half (nominal 0.5), two 5% tails (0.1)
    near = set(gap.index[gap <= 0.005])
    shares = []
    for label in ("cloze (RC)", "unstated"):
        rows = frame[frame["fmt"] == label]
        for has_copy in (True, False):
            sub = np.asarray(pit)[rows.index[rows["pair"].isin(near) == has_copy]]
            shares.append({"format": label, "near_copy_in_pair": has_copy, "n": int(sub.size),
                           "central_half": float(np.mean((sub > 0.25) & (sub < 0.75))),
                           "tails_5pct": float(np.mean((sub < 0.05) | (sub > 0.95)))})
    # and by who reported the measurement (the source-kind dim of the source offsets)
    kinds = np.asarray([str(k) for k in run.idata.posterior["source_kind"].values])
    kind = kinds[np.asarray(const["score_source"].values, int)]
    by_kind = []
    for label in dict.fromkeys(sorted(kind)):
        sub = np.asarray(pit)[kind == label]
        by_kind.append({"source_kind": label, "n": int(sub.size),
                        "central_half": float(np.mean((sub > 0.25) & (sub < 0.75))),
                        "tails_5pct": float(np.mean((sub < 0.05) | (sub > 0.95))),
                        "p_central": float(stats.binomtest(
                            int(np.sum((sub > 0.25) & (sub < 0.75))), sub.size, 0.5).pvalue)})
    near_rows = pd.Series(pair).isin(near).to_numpy()
    near_kinds = (pd.DataFrame({"fmt": fmt[near_rows], "kind": kind[near_rows]})
                  .value_counts().sort_index())
    out = {
        "what": "intraclass correlation of probit(LOO-PIT) within (model, benchmark) pairs "
                "measured in more than one format, against a permutation null and against the "
                "within-model ICC across benchmarks",
        "run": str(args.run), "date": dt.date.today().isoformat(),
        "config_hash": run.summary.get("config_hash"),
        "command": f"python docs/experiments/pair_residual_correlation.py {args.run} "
                   f"{args.out} --permutations {args.permutations} --seed {args.seed}",
        "n_measurements": int(z.size),
        "within_pair": {"icc": pair_icc, "f": pair_f, "pairs": n_pairs,
                        "measurements": int(multi.sum()),
                        "f_test_p": float(stats.f.sf(pair_f, n_pairs - 1,
                                                     int(multi.sum()) - n_pairs)),
                        "permutation_null_mean": float(null.mean()),
                        "permutation_null_sd": float(null.std()),
                        "permutation_p": float((1 + np.sum(null >= pair_icc))
                                               / (1 + null.size)),
                        "format_combinations": {k: int(v) for k, v in combos.items()}},
        "cloze_and_unstated_pairs_by_gap": by_gap,
        "pit_shares_by_near_copy": shares,
        "pit_shares_by_source_kind": by_kind,
        "near_copy_source_kinds": {f"{f} / {k}": int(n) for (f, k), n in near_kinds.items()},
        "within_model_across_benchmarks": {"icc": model_icc, "f": model_f, "models": n_models},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
