"""How wrong is the loss law where it is extrapolated? Leave-largest-size-out on the ladder.

The evaluated models' effective sizes are read off the reference loss law one to two decades
outside the ladder (and at D0 beyond its largest token count). Nothing in the ladder's own fit
measures the law's error there, so the model carries a random tilt of each benchmark's log law
per unit of log distance outside the design box, with SD ``loss_law.extrapolation_sd``. This
module calibrates that SD the only way the data allow: fit the loss law on the smaller ladder
sizes, predict the held-back larger ones, and compare the log errors with their distances.

Splits (ladder only; the OLMo-2 7B stays a validation target):

* fit 190M-1B, predict the 3B runs;
* fit 190M-760M, predict the 1B and 3B runs.

For each split the loss law (the default spec's priors, loss-law rows only) is sampled by NUTS
and predicts every held-back final row. With e the error of the observed log loss against the
posterior mean of the log law, sigma_b^2 the posterior mean of the within-design noise variance,
v the posterior variance of the log law at that row (the fitted law's own uncertainty, which
the full model already propagates) and d the Euclidean distance outside the box in
(log N, log D), the tilt's SD per unit distance is the moment estimate
sqrt(sum(max(e^2 - sigma_b^2 - v, 0)) / sum(d^2)). A 90% interval comes from resampling the
benchmarks (a tilt is shared by a benchmark's rows, so benchmarks are the independent units).

Why the posterior and not a point fit: until 2026-12-03 each split's law was ``pm.find_MAP``'s
optimum. The MAP of this hierarchical law is degenerate (the exponents' pooling SD can shrink
to 0 while the density grows without bound), so L-BFGS-B stopped wherever its tolerance said,
and the result depended on the numerical stack (0.035 when committed, 0.027 on an identical
package set; docs/model.md, "Extrapolation tilt"). The posterior is well posed and the result
reproducible from the seed up to Monte Carlo error.

The record also tests the rule out of sample: each split's held-back rows are predicted with
the tilt SD recalibrated without the row's own benchmark (``held_out``; the report's
``leave_size_out`` check), and it gives two estimates of the same SD without the rule's per-row
truncation at 0, which biases it upwards (``sd_moment_untruncated``, ``sd_z_scale``). On the
bundled ladder both are far below the rule's (docs/model.md, "Extrapolation tilt").

Run: ``python -m densing_bayes.analysis.extrapolation --out reports/extrapolation``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from densing_bayes.data.load import load_data
from densing_bayes.data.schema import DensingData, truthy
from densing_bayes.model.spec import ModelSpec, load_spec

#: (name, sizes fitted, sizes predicted): the ladder's leave-largest-size-out splits.
SPLITS = (
    ("fit 190M-1B, predict 3B", ("190M", "370M", "760M", "1B"), ("3B",)),
    ("fit 190M-760M, predict 1B and 3B", ("190M", "370M", "760M"), ("1B", "3B")),
)


def _final_rc_rows(data: DensingData) -> pd.DataFrame:
    runs = data.reference_runs
    fmt = (runs["format"].fillna("rc").astype(str) if "format" in runs
           else pd.Series("rc", index=runs.index))
    final = runs[truthy(runs["final"]) & (fmt == "rc") & ~truthy(runs["holdout"])].copy()
    for col in ("params", "tokens", "loss"):
        final[col] = pd.to_numeric(final[col])
    return final


#: NUTS settings of each split's loss-law fit (about 2 minutes a split on 2 cores).
DRAWS, TUNE, CHAINS, TARGET_ACCEPT = 1000, 1000, 4, 0.95
#: Benchmark resamples behind the calibration's interval.
BOOTSTRAP = 4000


def sample_loss_law(data: DensingData, spec: ModelSpec, sizes, *, draws: int = DRAWS,
                    tune: int = TUNE, chains: int = CHAINS, sample=None):
    """Posterior of the loss law from the final ladder rows of ``sizes`` (curve rows unused).

    ``sample`` replaces ``pm.sample`` (tests pass ``pymc.testing.mock_sample``)."""
    import pymc as pm

    from densing_bayes.model.build import _loss_law_block
    from densing_bayes.model.inputs import prepare_inputs

    runs = data.reference_runs
    keep = ~truthy(runs["final"]) | runs["size_label"].isin(sizes)
    inputs = prepare_inputs(dataclasses.replace(data, reference_runs=runs[keep]), spec)
    coords = {k: v for k, v in inputs.coords().items() if k in ("benchmark", "law_row")}
    sample = pm.sample if sample is None else sample
    with pm.Model(coords=coords):
        _loss_law_block(inputs, spec)
        idata = sample(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                       target_accept=TARGET_ACCEPT, random_seed=spec.sampler.seed,
                       progressbar=False, compute_convergence_checks=False)
    return idata, inputs


def _draws(posterior, name: str, index: np.ndarray) -> np.ndarray:
    """(row, draw) values of a per-benchmark variable at each row's benchmark."""
    values = posterior[name].stack(sample=("chain", "draw")).transpose("benchmark", "sample")
    return values.to_numpy()[index]


def split_errors(data: DensingData, spec: ModelSpec, fitted, predicted,
                 **sample_kwargs) -> tuple[pd.DataFrame, dict]:
    """Log error, noise and law variance, and distance outside the fitted design of every
    held-back final row; and the split fit's sampler diagnostics."""
    idata, inputs = sample_loss_law(data, spec, fitted, **sample_kwargs)
    rows = _final_rc_rows(data)
    rows = rows[rows["size_label"].isin(predicted) & rows["benchmark"].isin(inputs.benchmarks)]
    b = rows["benchmark"].map({k: i for i, k in enumerate(inputs.benchmarks)}).to_numpy()
    x_n = (np.log(rows["params"].to_numpy(float)) - inputs.centre_log_params)[:, None]
    x_d = (np.log(rows["tokens"].to_numpy(float)) - inputs.centre_log_tokens)[:, None]
    post = idata.posterior
    log_law = np.log(_draws(post, "E", b)
                     + _draws(post, "A", b) * np.exp(-_draws(post, "alpha", b) * x_n)
                     + _draws(post, "B", b) * np.exp(-_draws(post, "beta", b) * x_d))
    box = (inputs.law_x_params.min(), inputs.law_x_params.max(),
           inputs.law_x_tokens.min(), inputs.law_x_tokens.max())
    d_n = np.maximum(box[0] - x_n[:, 0], 0) + np.maximum(x_n[:, 0] - box[1], 0)
    d_d = np.maximum(box[2] - x_d[:, 0], 0) + np.maximum(x_d[:, 0] - box[3], 0)
    errors = pd.DataFrame({
        "run_id": rows["run_id"].to_numpy(), "benchmark": rows["benchmark"].to_numpy(),
        "log_error": np.log(rows["loss"].to_numpy(float)) - log_law.mean(axis=1),
        "noise_sd": np.sqrt((_draws(post, "loss_noise", b) ** 2).mean(axis=1)),
        "law_sd": log_law.std(axis=1), "distance": np.hypot(d_n, d_d)})
    return errors, _fit_diagnostics(idata)


def _fit_diagnostics(idata) -> dict:
    import arviz as az

    out = {"chains": int(idata.posterior.sizes["chain"]),
           "draws": int(idata.posterior.sizes["draw"])}
    if "sample_stats" in idata and "diverging" in idata.sample_stats:
        out["divergences"] = int(idata.sample_stats["diverging"].sum())
    if out["chains"] > 1 and out["draws"] >= 4:
        names = ["alpha", "beta", "E", "A", "B", "loss_noise"]
        out["max_r_hat"] = float(max(az.rhat(idata, var_names=names)[n].max() for n in names))
        out["min_ess_bulk"] = float(min(az.ess(idata, var_names=names)[n].min() for n in names))
    return out


def _excess(errors: pd.DataFrame) -> np.ndarray:
    """max(e^2 - sigma^2 - v, 0) per row: squared error beyond noise and law uncertainty."""
    law_var = errors["law_sd"] ** 2 if "law_sd" in errors else 0.0
    return np.maximum(errors["log_error"] ** 2 - errors["noise_sd"] ** 2 - law_var, 0.0)


def sd_per_distance(errors: pd.DataFrame) -> float:
    """sqrt(sum(max(e^2 - sigma^2 - v, 0)) / sum(d^2)): the error beyond the law's own noise
    and its posterior uncertainty, per unit log distance (the random tilt's SD)."""
    return float(np.sqrt(_excess(errors).sum() / np.sum(errors["distance"] ** 2)))


def moment_sd(errors: pd.DataFrame) -> float:
    """sqrt(max(sum(e^2 - sigma^2 - v), 0) / sum(d^2)): the method-of-moments estimate with the
    truncation at 0 applied once, to the sum. :func:`sd_per_distance` truncates every row
    before summing, and E max(X, 0) > max(E X, 0): rows whose error is smaller than the law's
    noise add nothing instead of pulling the estimate down, so it is biased upwards."""
    law_var = errors["law_sd"] ** 2 if "law_sd" in errors else 0.0
    excess = float(np.sum(errors["log_error"] ** 2 - errors["noise_sd"] ** 2 - law_var))
    return float(np.sqrt(max(excess, 0.0) / np.sum(errors["distance"] ** 2)))


def z_scale_sd(errors: pd.DataFrame, upper: float = 1.0) -> float:
    """The tilt SD t at which the rows' squared predictive z-scores average 1 (a Paule-Mandel
    type estimate): each row weighted by its own predictive variance, so one benchmark with a
    loose law (BoolQ's noise is the largest) does not dominate the sum. 0 when the errors are
    no larger than the law's noise and uncertainty already allow."""
    from scipy.optimize import brentq

    def excess(t: float) -> float:
        return float(np.mean(predictive_z(errors, t) ** 2) - 1.0)

    if excess(0.0) <= 0:
        return 0.0
    return float(brentq(excess, 0.0, upper)) if excess(upper) < 0 else upper


def benchmark_bootstrap(errors: pd.DataFrame, seed: int, n: int = BOOTSTRAP) -> np.ndarray:
    """``sd_per_distance`` over ``n`` resamples of the benchmarks, with replacement."""
    frame = pd.DataFrame({"benchmark": errors["benchmark"], "excess": _excess(errors),
                          "d2": errors["distance"] ** 2}).groupby("benchmark").sum()
    pick = np.random.default_rng(seed).integers(0, len(frame), size=(n, len(frame)))
    return np.sqrt(frame["excess"].to_numpy()[pick].sum(1) / frame["d2"].to_numpy()[pick].sum(1))


#: Nominal probability of the held-out sizes' predictive intervals.
HELD_OUT_PROB = 0.9
#: Per-row columns stored in the calibration record, so its held-out check needs no refit.
ROW_COLUMNS = ("benchmark", "run_id", "log_error", "noise_sd", "law_sd", "distance")


def predictive_z(errors: pd.DataFrame, tilt_sd) -> np.ndarray:
    """Each held-back row's log error in units of its predictive SD: the law's noise, its
    posterior uncertainty and a tilt of SD ``tilt_sd`` per unit distance (a scalar or one value
    per row). Normal on the log scale, as the full model's loss rows are."""
    law_var = errors["law_sd"] ** 2 if "law_sd" in errors else 0.0
    var = (errors["noise_sd"] ** 2 + law_var
           + (np.asarray(tilt_sd, float) * errors["distance"]) ** 2)
    return (errors["log_error"] / np.sqrt(var)).to_numpy(float)


def leave_benchmark_out_tilt(split_rows: list[pd.DataFrame]) -> list[np.ndarray]:
    """For every row of every split, the tilt SD calibrated by the written rule (the larger of
    the splits' moment estimates) without the row's own benchmark. A tilt is shared by a
    benchmark's rows, so benchmarks are the units the calibration can be tested out of sample
    on; the SD the spec uses was calibrated on all of them."""
    benchmarks = sorted(set().union(*(set(e["benchmark"]) for e in split_rows)))
    left_out = {b: max(sd_per_distance(e[e["benchmark"] != b]) for e in split_rows)
                for b in benchmarks}
    return [e["benchmark"].map(left_out).to_numpy(float) for e in split_rows]


def held_out_summary(errors: pd.DataFrame, tilt_sd_cv: np.ndarray, tilt_sd: float,
                     prob: float = HELD_OUT_PROB) -> dict:
    """Coverage of the held-back sizes' central ``prob`` predictive intervals: with the tilt
    calibrated without the row's benchmark (the out-of-sample test), with the spec's tilt
    (calibrated on these rows: partly by construction) and with none (why the tilt exists);
    and the PIT values of the out-of-sample version."""
    from scipy import stats

    half = stats.norm.ppf(0.5 + prob / 2)
    z_cv = predictive_z(errors, tilt_sd_cv)
    pit = stats.norm.cdf(z_cv)
    return {"prob": prob, "n": int(len(errors)),
            "n_benchmarks": int(errors["benchmark"].nunique()),
            "inside": int(np.sum(np.abs(z_cv) <= half)),
            "inside_spec_tilt": int(np.sum(np.abs(predictive_z(errors, tilt_sd)) <= half)),
            "inside_without_tilt": int(np.sum(np.abs(predictive_z(errors, 0.0)) <= half)),
            "share_above": float(np.mean(z_cv > half)),
            "share_below": float(np.mean(z_cv < -half)),
            "mean_pit": float(pit.mean()),
            "pit": [round(float(v), 4) for v in pit]}


def calibrate(data: DensingData, spec: ModelSpec, **sample_kwargs) -> dict:
    """Every split's errors summarised, the calibrated SD (the larger of the splits), and each
    split's held-out coverage with the SD calibrated without the row's benchmark."""
    splits, split_rows = [], []
    for name, fitted, predicted in SPLITS:
        errors, diagnostics = split_errors(data, spec, fitted, predicted, **sample_kwargs)
        split_rows.append(errors)
        boot = benchmark_bootstrap(errors, spec.sampler.seed)
        splits.append({
            "split": name, "rows": int(len(errors)), "fit": diagnostics,
            "rms_log_error": float(np.sqrt(np.mean(errors["log_error"] ** 2))),
            "mean_noise_sd": float(errors["noise_sd"].mean()),
            "mean_law_sd": float(errors["law_sd"].mean()),
            "mean_distance": float(errors["distance"].mean()),
            "sd_per_unit_distance": sd_per_distance(errors),
            "sd_per_unit_distance_90": [float(q) for q in np.quantile(boot, [0.05, 0.95])],
            # the same data by two estimators without the per-row truncation (diagnostics: the
            # spec's rule is the one above)
            "sd_moment_untruncated": moment_sd(errors),
            "sd_z_scale": z_scale_sd(errors),
            "mean_log_error_by_benchmark": errors.groupby("benchmark")["log_error"].mean()
            .round(4).to_dict(),
        })
    calibrated = max(s["sd_per_unit_distance"] for s in splits)
    for split, errors, tilt_cv in zip(splits, split_rows,
                                      leave_benchmark_out_tilt(split_rows)):
        split["held_out"] = held_out_summary(errors, tilt_cv, calibrated)
        split["rows_detail"] = {c: [v if isinstance(v, str) else round(float(v), 6)
                                    for v in errors[c]] for c in ROW_COLUMNS}
    return {"estimator": "posterior of the law (NUTS, seed = spec.sampler.seed); moment "
                         "estimate beyond noise and law uncertainty; 90% from resampled "
                         "benchmarks",
            "splits": splits, "calibrated_sd": calibrated,
            "rule": "the larger of the splits' SD per unit distance (conservative), rounded "
                    "to 3 decimals for the spec",
            "spec_value": round(calibrated, 3),
            "spec_default": spec.loss_law.extrapolation_sd}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="default")
    parser.add_argument("--spec", default="default")
    parser.add_argument("--out", type=Path, default=Path("reports/extrapolation"))
    args = parser.parse_args(argv)
    from densing_bayes import resources

    from densing_bayes.inference.run_io import data_hash, file_sha256

    folder = resources.resolve_data_folder(args.data)
    result = calibrate(load_data(folder), load_spec(args.spec))
    result["data_hash"] = data_hash(folder)
    # the one table it reads: a run on the same ladder with other scores is still its run
    result["reference_runs_sha256"] = file_sha256(folder / "reference_runs.csv")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
