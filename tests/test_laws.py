"""Exact values of the closed-form pieces: loss law, sigmoid, their inverses at D0."""

import math

import numpy as np
import pytest

from densing_bayes import laws

LAW = dict(a=400.0, alpha=0.3, b=460.0, beta=0.28)
CURVE = dict(c=0.7, gamma=8.0, l=0.65, d=0.25)


def test_loss_law_by_hand():
    # 400 * 1e9^-0.3 + 460 * 1e12^-0.28 + 0.1, written out term by term.
    expected = 400.0 * 10 ** (-2.7) + 460.0 * 10 ** (-3.36) + 0.1
    assert laws.loss_law(1e9, 1e12, **LAW, E=0.1) == pytest.approx(expected, rel=1e-14)


def test_sigmoid_midpoint_floor_and_ceiling():
    assert laws.score_from_loss(CURVE["l"], **CURVE) == pytest.approx(0.25 + 0.35, rel=1e-14)
    assert laws.score_from_loss(1e6, **CURVE) == pytest.approx(CURVE["d"], abs=1e-12)
    assert laws.score_from_loss(-1e6, **CURVE) == pytest.approx(CURVE["c"] + CURVE["d"], abs=1e-12)


def test_sigmoid_decreases_in_loss():
    losses = np.linspace(0.1, 2.0, 50)
    assert np.all(np.diff(laws.score_from_loss(losses, **CURVE)) < 0)


def test_sigmoid_inverse_by_hand():
    # S = 0.6 -> c/(S-d) - 1 = 0.7/0.35 - 1 = 1 -> ln 1 = 0 -> L = l
    assert laws.loss_from_score(0.6, **CURVE) == pytest.approx(CURVE["l"], rel=1e-14)
    # S = 0.25 + 0.7/3 -> c/(S-d) - 1 = 2 -> L = l + ln2/gamma
    s = 0.25 + 0.7 / 3
    assert laws.loss_from_score(s, **CURVE) == pytest.approx(0.65 + math.log(2) / 8, rel=1e-12)


def test_round_trips():
    losses = np.linspace(0.2, 1.5, 20)
    back = laws.loss_from_score(laws.score_from_loss(losses, **CURVE), **CURVE)
    np.testing.assert_allclose(back, losses, rtol=1e-9)
    sizes = np.geomspace(1e8, 1e12, 20)
    loss = laws.loss_law(sizes, laws.D0_TOKENS, **LAW)
    np.testing.assert_allclose(laws.params_from_loss(loss, **LAW), sizes, rtol=1e-9)


def test_effective_params_composes_both_inverses():
    n = 7e9
    score = laws.score_from_loss(laws.loss_law(n, laws.D0_TOKENS, **LAW, E=0.05), **CURVE)
    assert laws.effective_params(score, **LAW, **CURVE, E=0.05) == pytest.approx(n, rel=1e-8)


@pytest.mark.parametrize("score", [0.25, 0.1, 0.95, 1.0])
def test_scores_outside_the_curve_have_no_inverse(score):
    assert np.isnan(laws.loss_from_score(score, **CURVE))


def test_loss_below_asymptote_has_no_inverse():
    asymptote = LAW["b"] * laws.D0_TOKENS ** (-LAW["beta"]) + 0.05
    assert np.isnan(laws.params_from_loss(asymptote - 0.01, **LAW, E=0.05))
    assert np.isfinite(laws.params_from_loss(asymptote + 0.01, **LAW, E=0.05))


def test_doubling_time():
    assert laws.doubling_time_days(0.0073 * laws.DAYS_PER_YEAR) == pytest.approx(94.95, abs=0.01)
    assert np.isnan(laws.doubling_time_days(0.0))
    assert np.isnan(laws.doubling_time_days(-1.0))


def test_years_since_changepoint():
    assert laws.years_since(np.datetime64("2022-11-30")) == 0.0
    assert laws.years_since(np.datetime64("2023-11-30")) == pytest.approx(365 / 365.25)
    assert laws.years_since(np.datetime64("2021-11-30")) < 0
