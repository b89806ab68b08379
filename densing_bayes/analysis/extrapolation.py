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

For each split the maximum-a-posteriori loss law (the default spec's priors, loss-law rows only)
predicts every held-back final row; the SD per unit distance is
sqrt(sum(max(e^2 - sigma_b^2, 0)) / sum(d^2)), with e the log error, sigma_b the fitted
within-design noise and d the Euclidean distance outside the box in (log N, log D).

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


def map_loss_law(data: DensingData, spec: ModelSpec, sizes) -> tuple[dict, object]:
    """MAP loss-law parameters from the final ladder rows of ``sizes`` (curve rows unused)."""
    import pymc as pm

    from densing_bayes.model.build import _loss_law_block
    from densing_bayes.model.inputs import prepare_inputs

    runs = data.reference_runs
    keep = ~truthy(runs["final"]) | runs["size_label"].isin(sizes)
    inputs = prepare_inputs(dataclasses.replace(data, reference_runs=runs[keep]), spec)
    coords = {k: v for k, v in inputs.coords().items() if k in ("benchmark", "law_row")}
    with pm.Model(coords=coords):
        _loss_law_block(inputs, spec)
        point = pm.find_MAP(progressbar=False, seed=spec.sampler.seed)
    return point, inputs


def split_errors(data: DensingData, spec: ModelSpec, fitted, predicted) -> pd.DataFrame:
    """Log error and distance outside the fitted design of every held-back final row."""
    point, inputs = map_loss_law(data, spec, fitted)
    rows = _final_rc_rows(data)
    rows = rows[rows["size_label"].isin(predicted) & rows["benchmark"].isin(inputs.benchmarks)]
    b = rows["benchmark"].map({k: i for i, k in enumerate(inputs.benchmarks)}).to_numpy()
    x_n = np.log(rows["params"].to_numpy(float)) - inputs.centre_log_params
    x_d = np.log(rows["tokens"].to_numpy(float)) - inputs.centre_log_tokens
    law = (point["E"][b] + point["A"][b] * np.exp(-point["alpha"][b] * x_n)
           + point["B"][b] * np.exp(-point["beta"][b] * x_d))
    box = (inputs.law_x_params.min(), inputs.law_x_params.max(),
           inputs.law_x_tokens.min(), inputs.law_x_tokens.max())
    d_n = np.maximum(box[0] - x_n, 0) + np.maximum(x_n - box[1], 0)
    d_d = np.maximum(box[2] - x_d, 0) + np.maximum(x_d - box[3], 0)
    return pd.DataFrame({"run_id": rows["run_id"].to_numpy(), "benchmark": rows["benchmark"],
                         "log_error": np.log(rows["loss"].to_numpy(float)) - np.log(law),
                         "noise_sd": point["loss_noise"][b], "distance": np.hypot(d_n, d_d)})


def sd_per_distance(errors: pd.DataFrame) -> float:
    """sqrt(sum(max(e^2 - sigma^2, 0)) / sum(d^2)): the error beyond the law's own noise, per
    unit log distance (the random tilt's SD)."""
    excess = np.maximum(errors["log_error"] ** 2 - errors["noise_sd"] ** 2, 0.0)
    return float(np.sqrt(excess.sum() / np.sum(errors["distance"] ** 2)))


def calibrate(data: DensingData, spec: ModelSpec) -> dict:
    """Every split's errors summarised, and the calibrated SD (the larger of the splits)."""
    splits = []
    for name, fitted, predicted in SPLITS:
        errors = split_errors(data, spec, fitted, predicted)
        splits.append({
            "split": name, "rows": int(len(errors)),
            "rms_log_error": float(np.sqrt(np.mean(errors["log_error"] ** 2))),
            "mean_noise_sd": float(errors["noise_sd"].mean()),
            "mean_distance": float(errors["distance"].mean()),
            "sd_per_unit_distance": sd_per_distance(errors),
            "mean_log_error_by_benchmark": errors.groupby("benchmark")["log_error"].mean()
            .round(4).to_dict(),
        })
    return {"splits": splits,
            "calibrated_sd": max(s["sd_per_unit_distance"] for s in splits),
            "rule": "the larger of the splits' SD per unit distance (conservative)",
            "spec_default": spec.loss_law.extrapolation_sd}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="default")
    parser.add_argument("--spec", default="default")
    parser.add_argument("--out", type=Path, default=Path("reports/extrapolation"))
    args = parser.parse_args(argv)
    from densing_bayes import resources

    result = calibrate(load_data(resources.resolve_data_folder(args.data)),
                       load_spec(args.spec))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
