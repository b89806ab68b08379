"""Posterior predictive scores of a new reference-family model (N parameters, D tokens).

The prediction runs the fitted chain forward: loss law at (N, D), sigmoid, then the Beta
observation noise of reference-family scores, one predictive draw per posterior draw. It is the
check the OLMo ladder paper makes (predict a larger model from smaller ones) and the one our
closing notes report for the held-out 7B run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

#: Names of the attributes a fitted posterior carries for forward predictions.
CENTRE_ATTRS = ("centre_log_params", "centre_log_tokens")


def attach_constants(idata, inputs) -> None:
    """Store what forward predictions need beside the draws: centring, the design box (for the
    extrapolation tilt) and chance levels."""
    from densing_bayes.model.build import design_box

    for name in CENTRE_ATTRS:
        idata.posterior.attrs[name] = float(getattr(inputs, name))
    idata.posterior.attrs["design_box"] = list(design_box(inputs))
    chance = xr.Dataset({"chance": ("benchmark", np.asarray(inputs.chance))},
                        coords={"benchmark": inputs.benchmarks})
    if "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.assign(chance=chance["chance"])
    else:
        idata.add_groups(constant_data=chance)


def format_curve(posterior, fmt: str = "rc"):
    """(gamma, midpoint, span, precision) of one scoring format's curve, per benchmark."""
    names = ("gamma", "midpoint", "score_span")
    if "format" in posterior["gamma"].dims:
        if fmt not in posterior["format"].values:
            raise ValueError(f"the fit has no '{fmt}' curve; it has "
                             f"{[str(f) for f in posterior['format'].values]}")
        curve = [posterior[n].sel(format=fmt, drop=True) for n in names]
    elif fmt != "rc":
        raise ValueError(f"the fit has no '{fmt}' curve; it has ['rc']")
    else:
        curve = [posterior[n] for n in names]
    precision = posterior["score_precision_ref" if fmt == "rc" else f"{fmt}_score_precision_ref"]
    return (*curve, precision)


def extrapolation_factor(posterior, x_n, x_d):
    """exp(tilt . distance outside the design box): 1 inside the box or without the term.

    The tilts of a benchmark are shared by every point it is extrapolated to, so predictions at
    the same (N, D) from one draw agree; across draws they carry the law's extrapolation error.
    """
    from densing_bayes.model.build import outside_distances

    if "loss_extrapolation_tilt" not in posterior or "design_box" not in posterior.attrs:
        return 1.0
    from densing_bayes.model.build import EXTRAPOLATION_DIRECTIONS

    distance = outside_distances(np.asarray(x_n, float), np.asarray(x_d, float),
                                 posterior.attrs["design_box"], xp=np)
    tilt = posterior["loss_extrapolation_tilt"]
    distance = xr.DataArray(distance, dims=["extrapolation"],
                            coords={"extrapolation": list(EXTRAPOLATION_DIRECTIONS)})
    return np.exp((tilt * distance.sel(extrapolation=tilt["extrapolation"].values))
                  .sum("extrapolation"))


def has_run_effects(posterior, fmt: str) -> bool:
    """Whether the fit gave the ``fmt`` curve run effects (formats with too few runs have none,
    and their ``curve_run_sd`` is only its prior)."""
    return ("curve_run_effect" in posterior and "curve_group" in posterior.coords
            and any(str(g).endswith(f"|{fmt}") for g in posterior["curve_group"].values))


def run_effect(posterior, fmt: str, run: str | None, seed: int = 0):
    """Logit-scale run effect per benchmark for a prediction in format ``fmt``: the fitted
    effect of ``run`` where the fit saw that run on the benchmark (its later checkpoints are
    the same run), otherwise a fresh draw from Normal(0, curve_run_sd[fmt]) per posterior draw
    (a new run of the family). 0 for a fit without run effects."""
    if not has_run_effects(posterior, fmt):
        return 0.0
    sd = posterior["curve_run_sd"].sel(format=fmt, drop=True)
    benchmarks = [str(b) for b in posterior["benchmark"].values]
    rng = np.random.default_rng(seed + 7919)
    fresh = sd * xr.DataArray(rng.standard_normal((*sd.shape, len(benchmarks))),
                              dims=(*sd.dims, "benchmark"), coords={"benchmark": benchmarks})
    if run is None:
        return fresh
    groups = [str(g) for g in posterior["curve_group"].values]
    fitted = fresh.copy()
    for b in benchmarks:
        label = f"{run}|{b}|{fmt}"
        if label in groups:
            fitted.loc[{"benchmark": b}] = posterior["curve_run_effect"].sel(curve_group=label,
                                                                             drop=True)
    return fitted


def mean_score(posterior, chance, params: float, tokens: float, fmt: str = "rc",
               run: str | None = None, seed: int = 0) -> xr.DataArray:
    """Posterior draws of the expected score of a (params, tokens) reference model, scored in
    format ``fmt`` ("rc": the reference family's cloze protocol; "mc": multiple choice), with
    the run effect of ``run`` if the fit saw it, else of a new run (``run_effect``)."""
    gamma, midpoint, span, _ = format_curve(posterior, fmt)
    loss = mean_loss(posterior, params, tokens)
    logit = -gamma * (loss - midpoint) + run_effect(posterior, fmt, run, seed)
    score = chance + span / (1.0 + np.exp(-logit))
    return score.transpose(*gamma.dims)


def predict_scores(idata, *, params: float, tokens: float, ci_prob: float = 0.9,
                   seed: int = 0, fmt: str = "rc", run: str | None = None) -> pd.DataFrame:
    """Median and equal-tailed ``ci_prob`` predictive interval of the score per benchmark.

    ``run``: the reference run the prediction continues (its fitted run effect is used where
    the fit saw it); None predicts a new run (a fresh run effect per draw)."""
    if params <= 0 or tokens <= 0:
        raise ValueError("params and tokens must be positive counts")
    post = idata.posterior
    mean = mean_score(post, idata.constant_data["chance"], params, tokens, fmt, run=run,
                      seed=seed)
    phi = format_curve(post, fmt)[3]
    rng = np.random.default_rng(seed)
    m, p = xr.broadcast(mean, phi)
    m, p = m.transpose(*mean.dims).values, p.transpose(*mean.dims).values
    draws = rng.beta(np.clip(m * p, 1e-12, None), np.clip((1 - m) * p, 1e-12, None))
    flat = draws.reshape(-1, draws.shape[-1])
    q = np.quantile(flat, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
    return pd.DataFrame({"benchmark": mean["benchmark"].values, "median": q[1],
                         "lower": q[0], "upper": q[2], "ci_prob": ci_prob, "format": fmt})


def mean_loss(posterior, params: float, tokens: float) -> xr.DataArray:
    """Posterior draws of the loss-law loss of a (params, tokens) reference model, with the
    law's extrapolation tilt where (params, tokens) lies outside the ladder's design (the same
    loss the scores are predicted from)."""
    x_n = np.log(params) - posterior.attrs["centre_log_params"]
    x_d = np.log(tokens) - posterior.attrs["centre_log_tokens"]
    loss = (posterior["E"] + posterior["A"] * np.exp(-posterior["alpha"] * x_n)
            + posterior["B"] * np.exp(-posterior["beta"] * x_d)) * extrapolation_factor(
                posterior, x_n, x_d)
    return loss.transpose(*posterior["alpha"].dims)


def predict_loss(idata, *, params: float, tokens: float, ci_prob: float = 0.9,
                 seed: int = 0) -> pd.DataFrame:
    """Median and ``ci_prob`` predictive interval of the loss per benchmark (loss law alone).

    One draw of the fitted log-normal noise per posterior draw, as in the loss-law likelihood.
    """
    if params <= 0 or tokens <= 0:
        raise ValueError("params and tokens must be positive counts")
    post = idata.posterior
    loss = mean_loss(post, params, tokens)
    m, s = xr.broadcast(loss, post["loss_noise"])
    m, s = m.transpose(*loss.dims).values, s.transpose(*loss.dims).values
    draws = np.exp(np.random.default_rng(seed).normal(np.log(m), s))
    flat = draws.reshape(-1, draws.shape[-1])
    q = np.quantile(flat, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
    return pd.DataFrame({"benchmark": loss["benchmark"].values, "quantity": "loss",
                         "median": q[1], "lower": q[0], "upper": q[2], "ci_prob": ci_prob})
