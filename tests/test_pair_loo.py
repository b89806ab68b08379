"""Integrated LOO of reported scores (pair effect integrated out): exact values, consistency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import expit

from densing_bayes.analysis.pair_loo import (ScoreDraws, conditional_log_likelihood,
                                             integrated_loo_terms, score_draws)

from conftest import prior_draws_as_fit


def _draws(share=0.05):
    """Two draws; pair 0 has two reports, pair 1 one; one format, chance 0.25."""
    logit = np.array([[[0.2], [0.2], [-0.4]], [[0.5], [0.5], [0.0]]])
    return ScoreDraws(logit=logit, span=np.full(logit.shape, 0.7),
                      chance=np.full(3, 0.25), log_weight=np.zeros((3, 1)),
                      precision=np.array([[150.0] * 3, [90.0] * 3]),
                      outlier_share=np.array([share, share]),
                      pair_sd=np.array([[0.3] * 3, [0.5] * 3]),
                      pair_effect=np.zeros((2, 3)), pair=np.array([0, 0, 1]),
                      y=np.array([0.62, 0.55, 0.5]), draws=np.arange(2))


def _density(d, s, i, e):
    mean = 0.25 + 0.7 * expit(d.logit[s, i, 0] + e)
    phi = d.precision[s, i]
    share = d.outlier_share[s]
    return (1 - share) * stats.beta.pdf(d.y[i], mean * phi, (1 - mean) * phi) + share


def test_integrated_terms_equal_quadrature_of_the_pair_effect():
    d = _draws()
    loglik, cdf = integrated_loo_terms(d)
    for s in range(2):
        tau = d.pair_sd[s, 0]
        prior = lambda e: stats.norm.pdf(e, 0, tau)
        # row 0 given row 1 of its pair
        num = integrate.quad(lambda e: _density(d, s, 0, e) * _density(d, s, 1, e) * prior(e),
                             -6 * tau, 6 * tau)[0]
        den = integrate.quad(lambda e: _density(d, s, 1, e) * prior(e), -6 * tau, 6 * tau)[0]
        assert loglik[s, 0] == pytest.approx(np.log(num / den), abs=1e-4)
        # the singleton pair: its marginal likelihood
        alone = integrate.quad(lambda e: _density(d, s, 2, e) * prior(e), -6 * tau, 6 * tau)[0]
        assert loglik[s, 2] == pytest.approx(np.log(alone), abs=1e-4)

        def row_cdf(e):
            mean = 0.25 + 0.7 * expit(d.logit[s, 2, 0] + e)
            phi = d.precision[s, 2]
            return ((1 - d.outlier_share[s]) * stats.beta.cdf(d.y[2], mean * phi,
                                                                 (1 - mean) * phi)
                    + d.outlier_share[s] * d.y[2])
        expected = integrate.quad(lambda e: row_cdf(e) * prior(e), -6 * tau, 6 * tau)[0]
        assert cdf[s, 2] == pytest.approx(expected, abs=1e-4)


def test_without_outliers_the_terms_stay_finite():
    loglik, cdf = integrated_loo_terms(_draws(share=0.0))
    assert np.isfinite(loglik).all() and ((cdf > 0) & (cdf < 1)).all()


def test_the_numpy_score_likelihood_is_the_models(paper_data, paper_spec):
    """score_draws recomputes the model's score_obs mean; at the sampled pair effects its
    log-likelihood must equal PyMC's pointwise log-likelihood of the same draws."""
    spec = paper_spec.model_copy(update={"observation": paper_spec.observation.model_copy(
        update={"score_pair_effect": True, "score_outliers": True})})
    idata, _ = prior_draws_as_fit(paper_data, spec, draws=30, seed=3)
    d = score_draws(idata, spec.data.d0_tokens)
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[d.draws]
    np.testing.assert_allclose(conditional_log_likelihood(d), expected, rtol=1e-7, atol=1e-7)
