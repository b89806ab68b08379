"""Is the level of the effective sizes identified by data? Three checks with known answers.

* **Anchors** (self-consistency with known truth): a reference-family run whose size N is
  known, held out of the loss law and of the curves, and scored in another format than the
  ladder's (MC), must come back at its own size. For every posterior draw the anchor's log
  effective size at its own token counts gets a grid posterior (flat in log N over
  ``ANCHOR_GRID``) from its held-out scores alone: the fitted chain (loss law, the MC curve
  bridged by the other 7B checkpoints, their precision) is taken as given, so the anchor cannot
  feed back into the fit ("cut" posterior). One draw of log N per posterior draw gives the
  anchor's marginal posterior. Alongside: the posterior predictive interval of each held-out
  score at the true (N, D), and how many of them it covers.
* (Reachability of the reported scores is a model check: ``analysis/checks.py``.)
* **Protocol offsets**: each benchmark's residual offset with its prior z-score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betaln, expit

from densing_bayes.analysis.predict import format_curve, has_run_effects
from densing_bayes.data.schema import DensingData, truthy

#: Grid of log N (natural log of parameters) for the anchors' cut posterior: 1e6 to 1e14,
#: far wider than any plausible answer, so the flat prior never binds.
ANCHOR_GRID = np.linspace(np.log(1e6), np.log(1e14), 321)

#: Posterior draws used (evenly thinned): the anchors' numbers are summaries of ~1000 draws.
MAX_DRAWS = 1000



def _flat_draws(da, max_draws: int = MAX_DRAWS) -> np.ndarray:
    """(draw, ...) array of a posterior variable, evenly thinned to at most ``max_draws``."""
    values = da.stack(sample=("chain", "draw")).transpose("sample", ...).values
    step = max(1, int(np.ceil(len(values) / max_draws)))
    return values[::step]


def anchor_rows(data: DensingData, fmt: str = "mc") -> pd.DataFrame:
    """Held-out rows of runs whose size is known (a final row with params), in format ``fmt``:
    run, benchmark, params (the run's N), tokens (tokens seen at that checkpoint), score."""
    runs = data.reference_runs
    if "holdout" not in runs or "run" not in runs:
        return pd.DataFrame(columns=["run", "benchmark", "params", "tokens", "score"])
    fmt_col = (runs["format"].fillna("rc").astype(str).str.lower() if "format" in runs
               else pd.Series("rc", index=runs.index))
    held = runs[truthy(runs["holdout"]) & (fmt_col == fmt) & runs["score"].notna()
                & runs["loss"].notna()]
    sizes = (runs.assign(params=pd.to_numeric(runs["params"], errors="coerce"))
             .dropna(subset=["params"]).groupby("run")["params"].first())
    held = held[held["run"].isin(sizes.index)]
    seen = (pd.to_numeric(held["tokens_seen"], errors="coerce") if "tokens_seen" in held
            else pd.Series(np.nan, index=held.index))
    tokens = pd.to_numeric(held["tokens"], errors="coerce").fillna(seen)
    out = pd.DataFrame({"run": held["run"], "run_id": held["run_id"],
                        "benchmark": held["benchmark"], "params": held["run"].map(sizes),
                        "tokens": tokens, "score": pd.to_numeric(held["score"])})
    return out[out["tokens"].notna() & (out["tokens"] > 0)].reset_index(drop=True)


def _chain(idata, benchmarks, fmt, seed: int = 0):
    """Thinned draws (draw, benchmark) of the loss law and the ``fmt`` curve."""
    post = idata.posterior
    pick = {"benchmark": benchmarks}
    law = {k: _flat_draws(post[k].sel(pick)) for k in ("E", "A", "B", "alpha", "beta")}
    if "loss_extrapolation_tilt" in post and "design_box" in post.attrs:
        from densing_bayes.model.build import EXTRAPOLATION_DIRECTIONS

        tilt = post["loss_extrapolation_tilt"]
        law["tilt"] = _flat_draws(tilt.sel(pick))  # (draw, benchmark, direction)
        law["box"] = np.asarray(post.attrs["design_box"], float)
        law["columns"] = np.array([EXTRAPOLATION_DIRECTIONS.index(str(d))
                                   for d in tilt["extrapolation"].values])
    gamma, midpoint, span, phi = (_flat_draws(x.sel(pick)) for x in format_curve(post, fmt))
    chance = idata.constant_data["chance"].sel(pick).values
    if has_run_effects(post, fmt):
        # The anchor is judged as a model the fit has not seen: a new run of the family, with
        # a fresh run effect per (draw, benchmark) shared by all its checkpoints.
        sd = _flat_draws(post["curve_run_sd"].sel(format=fmt, drop=True))
        law["effect"] = sd[:, None] * np.random.default_rng(seed).standard_normal(
            (len(sd), len(benchmarks)))
    return law, gamma, midpoint, span, phi, chance


def _mean_score(law, gamma, midpoint, span, chance, x_n, x_d, b):
    """Expected score (draw, ..., row) at centred log sizes ``x_n`` (draw, ..., row), with the
    loss law's extrapolation tilt where the fit has one."""
    loss = (law["E"][..., b] + law["A"][..., b] * np.exp(-law["alpha"][..., b] * x_n)
            + law["B"][..., b] * np.exp(-law["beta"][..., b] * x_d))
    if "tilt" in law:
        from densing_bayes.model.build import outside_distances

        x_n, x_d = np.broadcast_arrays(x_n, x_d)
        distance = outside_distances(x_n, x_d, law["box"], xp=np)[..., law["columns"]]
        tilt = law["tilt"][..., b, :]  # (draw, [1,] row, direction)
        loss = loss * np.exp(np.sum(distance * tilt, axis=-1))
    effect = law["effect"][..., b] if "effect" in law else 0.0
    return chance[b] + span[..., b] * expit(-gamma[..., b] * (loss - midpoint[..., b]) + effect)


def _beta_logpdf(y, mean, phi):
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    a, b = mean * phi, (1 - mean) * phi
    return (a - 1) * np.log(y) + (b - 1) * np.log1p(-y) - betaln(a, b)


def anchor_check(idata, data: DensingData, *, fmt: str = "mc", ci_prob: float = 0.9,
                 seed: int = 0) -> list[dict]:
    """Per anchor run: its effective size from its held-out ``fmt`` scores against its true N,
    and the predictive coverage of those scores at the true (N, D)."""
    rows = anchor_rows(data, fmt)
    post = idata.posterior
    if rows.empty or ("format" in post["gamma"].dims and fmt not in post["format"].values):
        return []
    modelled = list(post["benchmark"].values)
    rows = rows[rows["benchmark"].isin(modelled)]
    benchmarks = sorted(set(rows["benchmark"]))
    law, gamma, midpoint, span, phi, chance = _chain(idata, benchmarks, fmt, seed)
    c_n, c_d = post.attrs["centre_log_params"], post.attrs["centre_log_tokens"]
    rng = np.random.default_rng(seed)
    lo, hi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    out = []
    for run, group in rows.groupby("run"):
        b = group["benchmark"].map({k: i for i, k in enumerate(benchmarks)}).to_numpy()
        x_d = np.log(group["tokens"].to_numpy(float)) - c_d
        y = np.clip(group["score"].to_numpy(float), 1e-4, 1 - 1e-4)
        true_log_n = float(np.log(group["params"].iloc[0]))
        # Cut posterior of log N on the grid, one sample per draw.
        samples = np.empty(len(gamma))
        for start in range(0, len(gamma), 20):  # 20 draws x grid x rows x 4 fit in memory
            sl = slice(start, start + 20)
            part = {k: (v if k in ("box", "columns") else v[sl][:, None])
                    for k, v in law.items()}
            x_n = (ANCHOR_GRID - c_n)[None, :, None]
            mean = _mean_score(part,
                               gamma[sl][:, None, :], midpoint[sl][:, None, :],
                               span[sl][:, None, :], chance, x_n, x_d[None, None, :], b)
            loglik = _beta_logpdf(y[None, None, :], mean, phi[sl][:, None, b]).sum(-1)
            weight = np.exp(loglik - loglik.max(axis=1, keepdims=True))
            cdf = np.cumsum(weight, axis=1)
            cdf /= cdf[:, -1:]
            pick = (rng.random(len(cdf))[:, None] > cdf).sum(axis=1)
            samples[sl] = ANCHOR_GRID[np.minimum(pick, len(ANCHOR_GRID) - 1)]
        # Predictive check of the held-out scores at the true size.
        mean = _mean_score(law, gamma, midpoint, span, chance,
                           np.full(len(b), true_log_n - c_n)[None, :], x_d[None, :], b)
        m = np.clip(mean, 1e-6, 1 - 1e-6)
        pred = rng.beta(m * phi[:, b], (1 - m) * phi[:, b])
        lower, upper = np.quantile(pred, [lo, hi], axis=0)
        inside = (y >= lower) & (y <= upper)
        q = np.quantile(samples, [lo, 0.5, hi])
        out.append({
            "run": run, "format": fmt, "n_scores": int(len(group)),
            "n_checkpoints": int(group["run_id"].nunique()),
            "true_params": float(np.exp(true_log_n)),
            "log_effective_params": {"median": float(q[1]), "lower": float(q[0]),
                                     "upper": float(q[2])},
            "effective_params": {"median": float(np.exp(q[1])), "lower": float(np.exp(q[0])),
                                 "upper": float(np.exp(q[2]))},
            "true_inside": bool(q[0] <= true_log_n <= q[2]),
            "log_ratio_median": float(q[1] - true_log_n),
            "predictive_coverage": float(inside.mean()),
            "predictive_mean_error": float(np.mean(y - np.median(pred, axis=0))),
            "ci_prob": ci_prob,
            "grid": "flat prior on log N over [1e6, 1e14]; chain taken as given (cut)",
        })
    return out


def protocol_offsets(idata, prior_sigma: float) -> list[dict]:
    """Each benchmark's residual protocol offset (posterior median, 90% interval) and the
    median's prior z-score (median / prior SD; the prior is centred at 0)."""
    post = idata.posterior
    if "protocol_offset" not in post:
        return []
    q = post["protocol_offset"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw"))
    return [{"benchmark": str(b), "median": float(q.sel(quantile=0.5, benchmark=b)),
             "lower": float(q.sel(quantile=0.05, benchmark=b)),
             "upper": float(q.sel(quantile=0.95, benchmark=b)),
             "prior_sd": prior_sigma,
             "prior_z": float(q.sel(quantile=0.5, benchmark=b)) / prior_sigma}
            for b in post["benchmark"].values]


def identification_summary(idata, inputs, spec, data: DensingData | None) -> dict:
    """The ``identification`` section of summary.json: anchors, reachability, offsets."""
    if not inputs.has_evaluated_models:
        return {}
    prior = spec.prior("protocol_offset")
    sigma = float(prior.parameters.get("sigma", float("nan")))
    return {
        "anchors": anchor_check(idata, data, ci_prob=spec.ci_prob) if data is not None else [],
        "protocol_offsets": protocol_offsets(idata, sigma),
        "format_mc_weight": dict(zip(inputs.benchmarks, map(float, inputs.mc_weight))),
    }
