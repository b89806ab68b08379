"""Derived summaries of the trend: closed-form values on constructed draws."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr

from densing_bayes import laws
from densing_bayes.analysis.derived import (add_derived, quantiles_keeping_infinity,
                                            trend_summary)
from densing_bayes.model.spec import load_spec


def _idata(post, pre, drift=None):
    """Posterior with one chain of the given slope draws (and drifts, draw x benchmark)."""
    data = {"slope_post": (("chain", "draw"), np.asarray(post, float)[None]),
            "slope_pre": (("chain", "draw"), np.asarray(pre, float)[None])}
    coords = {}
    if drift is not None:
        data["benchmark_drift"] = (("chain", "draw", "benchmark"), np.asarray(drift)[None])
        coords["benchmark"] = ["mmlu", "piqa"]
    return az.InferenceData(posterior=xr.Dataset(data, coords=coords))


def test_slope_difference_and_its_probability_are_draw_by_draw():
    post, pre = np.linspace(1.0, 2.0, 101), np.linspace(1.5, 0.5, 101)
    out = trend_summary(_idata(post, pre), load_spec("default"))
    diff = post - pre  # -0.5 .. +1.5, median +0.5
    assert out["slope_difference_per_year"]["median"] == pytest.approx(np.median(diff))
    assert out["slope_difference_per_year"]["lower"] == pytest.approx(np.quantile(diff, 0.05))
    assert out["prob_slope_difference_positive"] == pytest.approx(np.mean(diff > 0))
    assert "doubling_time_days_by_benchmark" not in out


def test_the_doubling_time_ratio_in_every_case_of_the_two_slopes():
    post = np.array([0.7, 0.7, -0.1, -0.1, 0.0])
    pre = np.array([0.5, -0.5, 0.5, -0.5, 0.0])
    ratio = laws.doubling_time_ratio(post, pre)
    assert ratio[0] == pytest.approx(1.4)  # both double: T_pre / T_post = slope ratio
    assert ratio[1] == np.inf  # doubles after, never before: not the slope ratio's -1.4
    assert ratio[2] == 0.0  # doubles before only
    assert np.isnan(ratio[3]) and np.isnan(ratio[4])  # neither doubles
    days = laws.doubling_time_days(np.array([0.7, 0.5]))
    assert ratio[0] == pytest.approx(days[1] / days[0])


def test_quantiles_keep_infinity_and_equal_numpy_between_finite_draws():
    finite = np.random.default_rng(1).normal(size=999)
    probs = [0.05, 0.5, 0.95]
    assert quantiles_keeping_infinity(finite, probs) == pytest.approx(np.quantile(finite, probs))
    # 101 draws, the top 10 infinite: the 95% quantile (position 95) needs an infinite draw,
    # the 5% and 50% ones do not; NaN draws are left out
    draws = np.concatenate([np.arange(91.0), np.full(10, np.inf), [np.nan] * 7])
    q = quantiles_keeping_infinity(draws, probs)
    assert q[0] == 5.0 and q[1] == 50.0 and q[2] == np.inf
    # between the largest finite draw (90) and the first infinite one: infinite, not NaN
    assert quantiles_keeping_infinity(draws, [90.5 / 100]) == np.inf
    assert quantiles_keeping_infinity(draws, [0.9]) == 90.0


def test_the_summary_and_posterior_carry_the_doubling_time_ratio():
    # 100 draws: 80 both positive (ratio 2), 15 only after positive (+inf), 5 neither
    post = np.r_[np.full(80, 1.0), np.full(15, 0.5), np.full(5, -0.1)]
    pre = np.r_[np.full(80, 0.5), np.full(15, -0.2), np.full(5, -0.3)]
    idata = _idata(post, pre)
    out = trend_summary(idata, load_spec("default"))
    assert out["doubling_time_ratio"] == {"median": 2.0, "lower": 2.0, "upper": None}
    assert out["prob_acceleration"] == pytest.approx(0.95)  # ratio > 1 incl. the +inf draws
    assert out["prob_doubling_time_ratio_undefined"] == pytest.approx(0.05)
    assert out["prob_slope_pre_positive"] == pytest.approx(0.80)
    idata.posterior["trend_intercept"] = idata.posterior["slope_post"] * 0.0
    add_derived(idata, load_spec("default"))
    stored = idata.posterior["doubling_time_ratio"].values.ravel()
    assert np.isinf(stored[80:95]).all() and np.isnan(stored[95:]).all()
    assert idata.posterior["slope_difference"].values.ravel()[0] == pytest.approx(0.5)
    assert "acceleration_ratio" not in idata.posterior


def test_each_benchmark_doubles_at_the_slope_plus_its_drift():
    n = 201
    post = np.full(n, 1.0)
    drift = np.column_stack([np.full(n, 0.5), np.linspace(-1.5, -0.5, n)])  # mmlu, piqa
    out = trend_summary(_idata(post, np.full(n, 0.5), drift), load_spec("default"))
    days = math.log(2) * laws.DAYS_PER_YEAR
    mmlu = out["doubling_time_days_by_benchmark"]["mmlu"]
    assert mmlu["median"] == pytest.approx(days / 1.5) and mmlu["upper"] == pytest.approx(days / 1.5)
    # piqa's slope 1 + kappa runs from -0.5 to +0.5: the median is 0, so it never doubles
    piqa = out["doubling_time_days_by_benchmark"]["piqa"]
    assert piqa["median"] is None and piqa["upper"] is None
    assert piqa["lower"] == pytest.approx(days / np.quantile(1 + drift[:, 1], 0.95))
    assert out["benchmark_drift_per_year"]["mmlu"]["median"] == pytest.approx(0.5)


def test_the_mean_grows_slower_than_the_frontier_when_the_spread_widens():
    """sigma_u(t) = sigma_u exp(psi t): the mean lies sqrt(2/pi) sigma_u(t) below the
    frontier, so over [0, T] its average slope is slope_post - sqrt(2/pi) sigma_u
    (exp(psi T) - 1) / T; with psi = 0 the two coincide."""
    n = 101
    post = np.full(n, 1.0)
    idata = _idata(post, np.full(n, 0.5))
    psi = np.linspace(-0.2, 0.6, n)
    idata.posterior["inefficiency_trend"] = (("chain", "draw"), psi[None])
    idata.posterior["frontier_inefficiency"] = (("chain", "draw"), np.full((1, n), 0.8))
    idata.add_groups(constant_data=xr.Dataset({"model_time": ("model", [-2.0, 0.3, 2.0])}))
    out = trend_summary(idata, load_spec("default"))
    mean_at = lambda t, p: -math.sqrt(2 / math.pi) * 0.8 * math.exp(p * t) + 1.0 * t  # noqa: E731
    med = float(np.median(psi))  # 0.2
    expected = (mean_at(2.0, med) - mean_at(0.0, med)) / 2.0
    assert out["mean_slope_span_years"] == 2.0
    assert out["mean_slope_post_per_year"]["median"] == pytest.approx(expected, rel=1e-9)
    assert out["inefficiency_trend_per_year"]["median"] == pytest.approx(med)
    assert out["mean_doubling_time_days"]["median"] == pytest.approx(
        math.log(2) / expected * laws.DAYS_PER_YEAR, rel=1e-9)
    # no change in spread: the mean's slope is the frontier's
    idata.posterior["inefficiency_trend"] = (("chain", "draw"), np.zeros((1, n)))
    flat = trend_summary(idata, load_spec("default"))
    assert flat["mean_slope_post_per_year"]["median"] == pytest.approx(1.0)


def test_the_mean_slope_uses_the_times_given_when_the_fit_has_no_constant_data():
    n = 11
    idata = _idata(np.full(n, 1.0), np.full(n, 0.5))
    idata.posterior["inefficiency_trend"] = (("chain", "draw"), np.full((1, n), 0.3))
    idata.posterior["frontier_inefficiency"] = (("chain", "draw"), np.full((1, n), 0.8))
    bare = trend_summary(idata, load_spec("default"))
    assert "mean_slope_post_per_year" not in bare and "inefficiency_trend_per_year" in bare
    out = trend_summary(idata, load_spec("default"), model_time=np.array([-1.0, 1.5]))
    assert out["mean_slope_span_years"] == 1.5
    assert out["mean_slope_post_per_year"]["median"] == pytest.approx(
        1.0 - math.sqrt(2 / math.pi) * 0.8 * math.expm1(0.3 * 1.5) / 1.5)


def test_refreshing_a_saved_run_replaces_the_slope_ratio_without_refitting(tmp_path,
                                                                            paper_folder):
    """A run fitted before the doubling-time ratio existed gets it from its own draws; the
    retired slope ratio leaves summary.json and the checksums stay true (the run loads)."""
    import json

    import pandas as pd

    from densing_bayes.inference import run_io
    from densing_bayes.model.spec import parse_spec
    from densing_bayes.workflow import refresh_trend_summary

    spec = parse_spec({"name": "small", "sampler": {"draws": 100, "chains": 1}})
    post = np.r_[np.full(90, 1.0), np.full(10, 0.5)]
    pre = np.r_[np.full(90, 0.5), np.full(10, -0.5)]  # old slope ratio -1 in 10 draws
    idata = az.from_dict(posterior={"slope_post": post[None], "slope_pre": pre[None]})
    run_io.stamp(idata, spec, paper_folder)
    old = {"data_folder": str(paper_folder), "ci_prob": 0.9,
           "doubling_time_days": {"median": 1.0, "lower": 1.0, "upper": 1.0},
           "acceleration_ratio": {"median": 2.0, "lower": -1.0, "upper": 2.0},
           "prob_faster_after": 0.9, "models": {},
           "paper_baseline": {"trend": {"slope_per_day_pre": 0.004, "slope_per_day_post": 0.007,
                                        "acceleration_ratio": 1.75}}}
    out = run_io.save_run(tmp_path / "run", idata, spec, old,
                          pd.DataFrame({"quantity": ["acceleration_ratio"], "median": [2.0]}))
    refresh_trend_summary(out)
    new = json.loads((out / "summary.json").read_text())
    assert "acceleration_ratio" not in new and "prob_faster_after" not in new
    assert new["doubling_time_ratio"] == {"median": 2.0, "lower": 2.0, "upper": None}
    assert new["prob_acceleration"] == pytest.approx(1.0)
    assert new["paper_baseline"]["trend"] == {"slope_per_day_pre": 0.004,
                                              "slope_per_day_post": 0.007,
                                              "doubling_time_ratio": pytest.approx(1.75)}
    table = pd.read_csv(out / "summary.csv")
    assert "doubling_time_ratio" in set(table["quantity"])
    run_io.load_run(out)  # the marker's checksums were updated with the files


def test_lineage_level_summary_orders_lineages_by_their_level():
    import xarray as xr

    from densing_bayes.analysis.derived import lineage_level_summary

    rng = np.random.default_rng(5)
    n = 4000
    level = rng.normal(0.0, 0.1, (1, n, 3)) + np.array([-0.4, 0.8, 0.1])
    post = xr.Dataset({"lineage_level": (("chain", "draw", "lineage"), level),
                       "lineage_level_sd": (("chain", "draw"), np.full((1, n), 0.6))},
                      coords={"lineage": ["Falcon", "Qwen", "Llama"]})
    out = lineage_level_summary(post, 0.9)
    assert list(out["lineage_level"]) == ["Qwen", "Llama", "Falcon"]
    assert out["lineage_level"]["Qwen"]["median"] == pytest.approx(0.8, abs=0.01)
    assert out["lineage_level"]["Falcon"]["upper"] == pytest.approx(-0.4 + 1.645 * 0.1,
                                                                     abs=0.02)
    assert out["lineage_level_sd"]["median"] == pytest.approx(0.6)


def test_lineage_profile_summary_lists_the_offsets_whose_interval_excludes_zero():
    import xarray as xr

    from densing_bayes.analysis.derived import lineage_profile_summary

    rng = np.random.default_rng(3)
    n = 4000
    omega = rng.normal(0.0, 0.1, (1, n, 2, 3))
    omega[..., 0, 1] += 1.0  # Qwen reads MMLU 1 e-fold larger
    omega[..., 1, 2] -= 0.5  # Falcon reads BoolQ smaller
    post = xr.Dataset(
        {"lineage_profile": (("chain", "draw", "lineage", "benchmark"), omega),
         "lineage_profile_sd": (("chain", "draw"), np.full((1, n), 0.4))},
        coords={"lineage": ["Qwen", "Falcon"], "benchmark": ["arc", "mmlu", "boolq"]})
    out = lineage_profile_summary(post, 0.9)
    assert [(c["lineage"], c["benchmark"]) for c in out["lineage_profile_nonzero"]] == \
        [("Qwen", "mmlu"), ("Falcon", "boolq")]
    assert out["lineage_profile_nonzero"][0]["median"] == pytest.approx(1.0, abs=0.01)
    assert out["lineage_profile_sd"]["median"] == pytest.approx(0.4)
