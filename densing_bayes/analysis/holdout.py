"""Predict held-out reference runs (e.g. the OLMo 7B) from a fit that never saw them.

The OLMo ladder paper's own test: fit the chain on small models, predict a larger one. For every
hold-out run's final checkpoint (params, tokens and score present) this gives the posterior
predictive interval of its score and where the actual score falls in it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from densing_bayes.analysis.predict import predict_scores
from densing_bayes.data.schema import DensingData, truthy


def holdout_rows(data: DensingData) -> pd.DataFrame:
    """Final hold-out checkpoints with params, tokens and score, one row per benchmark and
    scoring format (``format``: "rc" where the column is absent or empty)."""
    runs = data.reference_runs
    if "holdout" not in runs:
        return runs.iloc[0:0].assign(format=pd.Series(dtype=str))
    held = runs[truthy(runs["holdout"]) & runs["params"].notna() & runs["tokens"].notna()
                & runs["score"].notna()]
    fmt = (held["format"].fillna("").astype(str).str.lower().replace("", "rc")
           if "format" in held else pd.Series("rc", index=held.index))
    return held.assign(format=fmt)


def validate_holdout(idata, data: DensingData, *, ci_prob: float = 0.9,
                     seed: int = 0) -> pd.DataFrame:
    """Actual vs predicted score of every hold-out checkpoint: interval, coverage, PIT-like rank."""
    rows = []
    held = holdout_rows(data)
    post = idata.posterior
    modelled = set(post["benchmark"].values)
    fitted = (set(post["format"].values) if "format" in post.get("gamma", post).dims
              else {"rc"})
    held = held[held["format"].isin(fitted)]
    if "run" not in held:
        held = held.assign(run=held["run_id"])
    for (run_id, run, params, tokens, fmt), group in held.groupby(
            ["run_id", "run", "params", "tokens", "format"]):
        # The run's own fitted effect where its earlier checkpoints were fitted (the 7B main
        # run); a fresh run effect otherwise (the anneal, a run of its own).
        table = predict_scores(idata, params=params, tokens=tokens, ci_prob=ci_prob, seed=seed,
                               fmt=fmt, run=str(run))
        merged = table.merge(group[["benchmark", "score"]], on="benchmark")
        for _, r in merged[merged["benchmark"].isin(modelled)].iterrows():
            rows.append({"run_id": run_id, "format": fmt, "params": params, "tokens": tokens,
                         "benchmark": r["benchmark"], "actual": r["score"],
                         "median": r["median"], "lower": r["lower"], "upper": r["upper"],
                         "inside": bool(r["lower"] <= r["score"] <= r["upper"]),
                         "error": r["score"] - r["median"]})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["abs_error"] = np.abs(out["error"])
    return out
