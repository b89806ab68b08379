"""The identification checks: exact distances, a known-size anchor recovered, reachability."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from densing_bayes.analysis.identification import anchor_check, protocol_offsets
from densing_bayes.analysis.predict import extrapolation_factor
from densing_bayes.data.schema import DensingData
from densing_bayes.model.build import outside_distances

BOX = (-1.0, 1.0, -2.0, 2.0)


def test_outside_distances_are_zero_inside_and_linear_outside():
    x_n = np.array([0.0, -3.0, 2.5])
    x_d = np.array([0.0, 3.0, -2.5])
    d = outside_distances(x_n, x_d, BOX, xp=np)
    np.testing.assert_allclose(d, [[0, 0, 0, 0], [2.0, 0, 0, 1.0], [0, 1.5, 0.5, 0]])


def _posterior(n_draws=200, seed=0, tilt_sd=0.0):
    """A fake two-benchmark posterior: loss law, RC and MC curves, offsets, all known."""
    rng = np.random.default_rng(seed)
    bench = ["b1", "b2"]
    shape = (1, n_draws, 2)
    def var(value, jitter=0.0):
        return (("chain", "draw", "benchmark"),
                np.full(shape, value) * (1 + jitter * rng.standard_normal(shape)))
    post = xr.Dataset({
        "E": var(0.3, 0.01), "A": var(0.4, 0.01), "B": var(0.3, 0.01),
        "alpha": var(0.35, 0.01), "beta": var(0.3, 0.01),
        "gamma": (("chain", "draw", "format", "benchmark"),
                  np.stack([np.full(shape, 8.0), np.full(shape, 12.0)], axis=2)),
        "midpoint": (("chain", "draw", "format", "benchmark"),
                     np.stack([np.full(shape, 1.0), np.full(shape, 0.9)], axis=2)),
        "score_span": (("chain", "draw", "format", "benchmark"),
                       np.stack([np.full(shape, 0.6), np.full(shape, 0.7)], axis=2)
                       * np.array([1.0, 0.6])),
        "score_precision_ref": var(300.0), "mc_score_precision_ref": var(300.0),
        "protocol_offset": var(0.15),
        "loss_extrapolation_tilt": (("chain", "draw", "benchmark", "extrapolation"),
                                    tilt_sd * rng.standard_normal((1, n_draws, 2, 4))),
    }, coords={"chain": [0], "draw": np.arange(n_draws), "benchmark": bench,
               "format": ["rc", "mc"],
               "extrapolation": ["params_below", "params_above", "tokens_below",
                                 "tokens_above"]})
    post.attrs.update(centre_log_params=np.log(1e9), centre_log_tokens=np.log(1e11),
                      design_box=list(BOX))
    const = xr.Dataset({"chance": ("benchmark", [0.25, 0.5])}, coords={"benchmark": bench})
    return az.InferenceData(posterior=post, constant_data=const)


def _anchor_data(idata, true_n, tokens, seed=1):
    """Held-out MC rows of a run of size ``true_n``, simulated from the fake chain itself."""
    rng = np.random.default_rng(seed)
    post = idata.posterior
    rows = []
    for t in tokens:
        for bi, b in enumerate(["b1", "b2"]):
            x_n = np.log(true_n) - post.attrs["centre_log_params"]
            x_d = np.log(t) - post.attrs["centre_log_tokens"]
            loss = float(0.3 + 0.4 * np.exp(-0.35 * x_n) + 0.3 * np.exp(-0.3 * x_d))
            mean = [0.25, 0.5][bi] + [0.7, 0.42][bi] / (1 + np.exp(12.0 * (loss - 0.9)))
            rows.append({"run_id": f"r-{t}", "run": "r", "benchmark": b, "format": "mc",
                         "holdout": "true", "final": "false", "params": np.nan,
                         "tokens": np.nan, "tokens_seen": t, "loss": loss,
                         "score": rng.beta(mean * 300, (1 - mean) * 300)})
    rows.append({"run_id": "r-final", "run": "r", "benchmark": "b1", "format": "rc",
                 "holdout": "true", "final": "true", "params": true_n, "tokens": tokens[-1],
                 "tokens_seen": tokens[-1], "loss": 0.5, "score": 0.5})
    return DensingData(folder="fake", reference_runs=pd.DataFrame(rows))


def test_anchor_of_known_size_comes_back_at_its_size():
    idata = _posterior()
    data = _anchor_data(idata, true_n=3e9, tokens=[2e11, 4e11, 8e11, 1.6e12])
    (result,) = anchor_check(idata, data, fmt="mc")
    assert result["run"] == "r" and result["n_scores"] == 8
    assert result["true_inside"]
    assert abs(result["log_ratio_median"]) < 0.3
    assert result["predictive_coverage"] >= 0.75


def test_anchor_interval_widens_with_the_extrapolation_tilt():
    data_args = dict(true_n=3e9, tokens=[2e11, 4e11, 8e11, 1.6e12])
    narrow = anchor_check(_posterior(), _anchor_data(_posterior(), **data_args))[0]
    wide = anchor_check(_posterior(tilt_sd=0.05), _anchor_data(_posterior(), **data_args))[0]
    width = lambda r: r["log_effective_params"]["upper"] - r["log_effective_params"]["lower"]
    assert width(wide) > 1.2 * width(narrow)  # 0.1 and 0.8 log units outside the box


def test_extrapolation_factor_is_one_inside_the_box():
    idata = _posterior(tilt_sd=0.1)
    inside = extrapolation_factor(idata.posterior, 0.0, 0.0)
    np.testing.assert_allclose(inside, 1.0)
    outside = extrapolation_factor(idata.posterior, 3.0, 0.0)  # 2 units above in log N
    tilt = idata.posterior["loss_extrapolation_tilt"].sel(extrapolation="params_above")
    np.testing.assert_allclose(outside, np.exp(2.0 * tilt))


def test_protocol_offsets_report_the_prior_z_score():
    (b1, b2) = protocol_offsets(_posterior(), prior_sigma=0.3)
    assert b1["median"] == pytest.approx(0.15)
    assert b1["prior_z"] == pytest.approx(0.5)


def test_holdout_rows_are_predicted_through_their_own_formats_curve():
    from densing_bayes.analysis.holdout import validate_holdout
    from densing_bayes.analysis.predict import predict_scores

    idata = _posterior()
    rows = []
    for fmt in ("rc", "mc"):
        pred = predict_scores(idata, params=2e9, tokens=5e11, fmt=fmt)
        rows += [{"run_id": "r", "run": "r", "benchmark": b, "format": fmt, "holdout": "true",
                  "final": "true", "params": 2e9, "tokens": 5e11, "loss": 1.0, "score": m}
                 for b, m in zip(pred["benchmark"], pred["median"])]
    table = validate_holdout(idata, DensingData(folder="fake",
                                                reference_runs=pd.DataFrame(rows)))
    assert len(table) == 4 and table["inside"].all()
    assert set(table["format"]) == {"rc", "mc"}
    assert table["abs_error"].max() < 0.02


def test_predictions_name_their_format_and_refuse_a_missing_curve():
    from densing_bayes.analysis.predict import predict_scores

    idata = _posterior()
    rc = predict_scores(idata, params=2e9, tokens=5e11)
    mc = predict_scores(idata, params=2e9, tokens=5e11, fmt="mc")
    assert set(rc["format"]) == {"rc"} and set(mc["format"]) == {"mc"}
    assert not np.allclose(rc["median"], mc["median"])  # two curves, two answers
    only_rc = az.InferenceData(posterior=idata.posterior.sel(format=["rc"]),
                               constant_data=idata.constant_data)
    with pytest.raises(ValueError, match=r"no 'mc' curve; it has \['rc'\]"):
        predict_scores(only_rc, params=2e9, tokens=5e11, fmt="mc")


def test_predicted_loss_carries_the_extrapolation_tilt_the_scores_use():
    """Bug (issue 18): predict_loss left out the tilt that mean_score applies, so the loss and
    score predictions of one (N, D) outside the ladder disagreed."""
    from densing_bayes.analysis.predict import mean_loss

    idata = _posterior(tilt_sd=0.1)
    post = idata.posterior
    tokens = 1e11 * np.exp(4.0)  # 2 log units above the box in D
    law = (post["E"] + post["A"] * np.exp(-post["alpha"] * 0.0)
           + post["B"] * np.exp(-post["beta"] * 4.0))
    tilt = post["loss_extrapolation_tilt"].sel(extrapolation="tokens_above")
    np.testing.assert_allclose(mean_loss(post, 1e9, tokens), law * np.exp(2.0 * tilt))


def _with_run_effects(idata, sd=0.5, fitted=1.0):
    """Add run effects: run 'r' fitted on b1 in rc with effect ``fitted``."""
    post = idata.posterior
    n = post.sizes["draw"]
    post["curve_run_sd"] = (("chain", "draw", "format"), np.full((1, n, 2), sd))
    post["curve_run_effect"] = (("chain", "draw", "curve_group"), np.full((1, n, 1), fitted))
    post.coords["curve_group"] = ["r|b1|rc"]  # the mc curve has no run effects
    return idata


def test_a_fitted_run_keeps_its_effect_and_a_new_run_draws_one():
    from scipy.special import expit

    from densing_bayes.analysis.predict import mean_score

    idata = _with_run_effects(_posterior())
    post, chance = idata.posterior, idata.constant_data["chance"]
    base = mean_score(_posterior().posterior, chance, 1e9, 1e11, "rc")
    same = mean_score(post, chance, 1e9, 1e11, "rc", run="r")
    # b1 in rc continues the fitted run: its logit moves by exactly the fitted effect 1.0
    logit = np.log((base.sel(benchmark="b1") - 0.25) / (0.25 + 0.6 - base.sel(benchmark="b1")))
    np.testing.assert_allclose(same.sel(benchmark="b1"), 0.25 + 0.6 * expit(logit + 1.0),
                               rtol=1e-9)
    # b2 was not fitted for this run: a fresh effect per draw, SD 0.5, centred on the curve
    fresh = mean_score(post, chance, 1e9, 1e11, "rc", run="r").sel(benchmark="b2")
    assert float(fresh.std()) > 0.01 and float(base.sel(benchmark="b2").std()) < 0.005
    assert abs(float(fresh.median() - base.sel(benchmark="b2").median())) < 0.02
    # a format without run effects (too few runs) predicts from its curve alone
    mc = mean_score(post, chance, 1e9, 1e11, "mc", run="r")
    np.testing.assert_allclose(mc, mean_score(_posterior().posterior, chance, 1e9, 1e11, "mc"))
