"""How often does an SBC verdict fail a perfect sampler? Per-quantity rule against family-wise.

A batch ranks 19 quantities and tests each with a chi-square and a KS test. Under exact
calibration each quantity's fractional ranks are uniform, but the quantities are not
independent (a doubling time is a function of its slope; the exponents share a hyper-prior).
This script keeps that dependence: it takes the normal scores of a stored batch's fractional
ranks (simulations that rank every quantity), estimates their correlation, and draws batches
of uniform ranks with that correlation (a Gaussian copula). Each simulated batch is judged by

* the per-quantity rule (the report's verdict up to 2026-12-01): fail when any quantity's
  chi-square or KS p is below 0.05 (``calibration.uniformity_test``'s ``uniform``);
* the family-wise rule (from 2026-12-01): fail when Holm over the quantities, each p being
  2 x min(p_chi2, p_ks), rejects any (``calibration.family_wise_uniformity``);

and the number of quantities rejected alone is counted, so that a batch's count can be read
against its distribution under exact calibration (many mild rejections are evidence the
family-wise rule, built to find one bad quantity, does not weigh).

Used for docs/model.md, "One verdict over 19 quantities"::

    python docs/experiments/sbc_multiplicity.py reports/default/sbc_bundled \\
        docs/experiments/sbc_multiplicity_2026-12-01.json --batches 2000
"""
import argparse
import json

import numpy as np
import pandas as pd
from scipy import stats

from densing_bayes.analysis import calibration as cal


def copula_correlation(folder: str, seed: int) -> tuple[list[str], np.ndarray, int]:
    """Quantity names, the correlation of their rank normal scores, and the rows used."""
    table = pd.read_csv(f"{folder}/{cal.RANKS_CSV}")
    table = table[table["status"] == "ok"]
    columns = [c for c in table.columns if c.startswith("rank_")]
    complete = table.dropna(subset=columns)
    rng = np.random.default_rng(seed)
    u = np.column_stack([cal.fractional_ranks(complete[c].to_numpy(float),
                                              complete["n_draws"].to_numpy(float), rng)
                         for c in columns])
    return ([c.removeprefix("rank_") for c in columns],
            np.corrcoef(stats.norm.ppf(u), rowvar=False), len(complete))


def false_alarms(names: list[str], corr: np.ndarray, n_sims: int, n_batches: int,
                 rng: np.random.Generator) -> dict:
    """Share of perfect-sampler batches each rule fails, with a binomial standard error."""
    root = np.linalg.cholesky(corr + 1e-9 * np.eye(len(names)))
    per_quantity = family = 0
    counts = np.zeros(len(names) + 1, int)  # batches by how many quantities reject alone
    for _ in range(n_batches):
        u = stats.norm.cdf(rng.standard_normal((n_sims, len(names))) @ root.T)
        tests = {q: cal.uniformity_test(u[:, j]) for j, q in enumerate(names)}
        alone = sum(not t["uniform"] for t in tests.values())
        counts[alone] += 1
        per_quantity += alone > 0
        family += bool(cal.family_wise_uniformity(tests)["rejected"])

    def share(k):
        p = k / n_batches
        return {"share": p, "se": float(np.sqrt(p * (1 - p) / n_batches))}
    at_least = np.cumsum(counts[::-1])[::-1] / n_batches
    return {"simulations": n_sims, "per_quantity_rule": share(per_quantity),
            "family_wise_rule": share(family),
            "mean_rejected_alone": float(np.arange(counts.size) @ counts / n_batches),
            "p_at_least_k_rejected_alone": {k: float(at_least[k]) for k in range(1, 9)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", help="an SBC folder with ranks.csv")
    parser.add_argument("out", help="JSON to write")
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--simulations", default="16,50,100")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    names, corr, rows = copula_correlation(args.batch, args.seed)
    rng = np.random.default_rng(args.seed)
    results = [false_alarms(names, corr, int(n), args.batches, rng)
               for n in args.simulations.split(",")]
    off = corr[~np.eye(len(names), dtype=bool)]
    out = {"batch": args.batch, "quantities": names, "rows_for_correlation": rows,
           "largest_abs_correlation": float(np.abs(off).max()),
           "alpha": cal.UNIFORMITY_ALPHA, "batches": args.batches, "seed": args.seed,
           "results": results}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    for r in results:
        print(f"{r['simulations']:4d} simulations: per-quantity rule fails "
              f"{r['per_quantity_rule']['share']:.3f}, family-wise "
              f"{r['family_wise_rule']['share']:.3f} of perfect batches; quantities rejected "
              f"alone: mean {r['mean_rejected_alone']:.2f}, P(>= 4) "
              f"{r['p_at_least_k_rejected_alone'][4]:.3f}, P(>= 5) "
              f"{r['p_at_least_k_rejected_alone'][5]:.3f}")


if __name__ == "__main__":
    main()
