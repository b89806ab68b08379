"""Derived summaries of the trend: closed-form values on constructed draws."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr

from densing_bayes import laws
from densing_bayes.analysis.derived import trend_summary
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
