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
    """Store what forward predictions need beside the draws: centring and chance levels."""
    for name in CENTRE_ATTRS:
        idata.posterior.attrs[name] = float(getattr(inputs, name))
    chance = xr.Dataset({"chance": ("benchmark", np.asarray(inputs.chance))},
                        coords={"benchmark": inputs.benchmarks})
    if "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.assign(chance=chance["chance"])
    else:
        idata.add_groups(constant_data=chance)


def mean_score(posterior, chance, params: float, tokens: float) -> xr.DataArray:
    """Posterior draws of the expected score of a (params, tokens) reference model."""
    x_n = np.log(params) - posterior.attrs["centre_log_params"]
    x_d = np.log(tokens) - posterior.attrs["centre_log_tokens"]
    loss = (posterior["E"] + posterior["A"] * np.exp(-posterior["alpha"] * x_n)
            + posterior["B"] * np.exp(-posterior["beta"] * x_d))
    logit = -posterior["gamma"] * (loss - posterior["midpoint"])
    score = chance + posterior["score_span"] / (1.0 + np.exp(-logit))
    return score.transpose(*posterior["gamma"].dims)


def predict_scores(idata, *, params: float, tokens: float, ci_prob: float = 0.9,
                   seed: int = 0) -> pd.DataFrame:
    """Median and equal-tailed ``ci_prob`` predictive interval of the score per benchmark."""
    if params <= 0 or tokens <= 0:
        raise ValueError("params and tokens must be positive counts")
    post = idata.posterior
    mean = mean_score(post, idata.constant_data["chance"], params, tokens)
    phi = post["score_precision_ref"]
    rng = np.random.default_rng(seed)
    m, p = xr.broadcast(mean, phi)
    m, p = m.transpose(*mean.dims).values, p.transpose(*mean.dims).values
    draws = rng.beta(np.clip(m * p, 1e-12, None), np.clip((1 - m) * p, 1e-12, None))
    flat = draws.reshape(-1, draws.shape[-1])
    q = np.quantile(flat, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
    return pd.DataFrame({"benchmark": mean["benchmark"].values, "median": q[1],
                         "lower": q[0], "upper": q[2], "ci_prob": ci_prob})


def mean_loss(posterior, params: float, tokens: float) -> xr.DataArray:
    """Posterior draws of the loss-law loss of a (params, tokens) reference model."""
    x_n = np.log(params) - posterior.attrs["centre_log_params"]
    x_d = np.log(tokens) - posterior.attrs["centre_log_tokens"]
    loss = (posterior["E"] + posterior["A"] * np.exp(-posterior["alpha"] * x_n)
            + posterior["B"] * np.exp(-posterior["beta"] * x_d))
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
