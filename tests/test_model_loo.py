"""Leave-one-model-out: the score chain against PyMC, the integral against quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from densing_bayes.analysis import model_loo as ml
from densing_bayes.analysis.score_chain import score_chain

from conftest import prior_draws_as_fit


@pytest.fixture(scope="module")
def prior_fit(paper_data, paper_spec):
    """Prior draws of the paper design's default-style model dressed as a fit."""
    spec = paper_spec.with_overrides({"observation": {"protocol_scale": True}})
    idata, _ = prior_draws_as_fit(paper_data, spec, draws=20, seed=5, prior_predictive=True)
    return idata, spec


@pytest.fixture(scope="module")
def trend_prior_fit(paper_data, paper_spec):
    """The same with an inefficiency scale that changes over time: each model's deviation
    from the trend has a scale and skew of its own."""
    spec = paper_spec.with_overrides({"trend": {"inefficiency_trend": True}})
    idata, _ = prior_draws_as_fit(paper_data, spec, draws=20, seed=5, prior_predictive=True)
    return idata, spec


def test_the_score_chain_is_the_models_likelihood(prior_fit):
    """At the sampled densities the NumPy chain reproduces PyMC's pointwise log-likelihood
    (protocol scale, source offsets and the format mixture included)."""
    idata, spec = prior_fit
    chain = score_chain(idata, spec.data.d0_tokens)
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-7, atol=1e-7)


@pytest.fixture(scope="module")
def bundled_prior_fit():
    """Prior draws on the bundled data, with benchmark drift and loadings, MC drift, a tilt above the
    ladder only, precisions of their own for unstated and for stated multiple-choice rows and
    broad tails: best-of-two-protocol rows, unknown formats, both drifts, the one-sided tilt,
    those precisions and the tails' scale mixture all enter the chain."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    spec = load_spec("default").with_overrides({"trend": {"benchmark_drift": True,
                                                           "benchmark_loading": True},
                                                 "loss_law": {"extrapolation_sd_params_above":
                                                              0.035},
                                                 "observation": {"unstated_precision": True,
                                                                 "mc_precision": True,
                                                                 "score_broad_tails": True,
                                                                 "mc_drift": True}})
    idata, inputs = prior_draws_as_fit(load_data(bundled_data_folder("default")), spec,
                                       draws=8, seed=7)
    assert inputs.score_best.any()
    return idata, spec


def test_the_score_chain_has_drift_and_best_of_two_rows(bundled_prior_fit):
    idata, spec = bundled_prior_fit
    chain = score_chain(idata, spec.data.d0_tokens)
    assert chain.x_shift is not None and chain.best.sum() > 0 and chain.broad is not None
    # loadings differ across benchmarks and their logs sum to zero (they move no common level)
    assert chain.loading is not None and np.ptp(chain.loading) > 0
    loading = idata.posterior["benchmark_loading"].values
    np.testing.assert_allclose(np.log(loading).sum(axis=-1), 0.0, atol=1e-9)
    assert chain.format_shift is not None and np.ptp(chain.format_shift) > 0
    assert [chain.columns] == [[1, 3]]  # params_above and tokens_above
    # stated cloze, stated multiple-choice and unstated rows: three precisions, in the ratios
    # the two factors set
    const, post = idata.constant_data, idata.posterior
    mc = const["score_stated_mc"].values == 1
    unstated = const["score_unstated"].values == 1
    assert mc.sum() > 0 and not (mc & unstated).any()
    s = chain.draws[0]
    phi = post["score_precision_eval"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values[s]
    f_mc = post["score_precision_mc"].stack(sample=("chain", "draw")).values[s]
    f_un = post["score_precision_unstated"].stack(sample=("chain", "draw")).values[s]
    if phi.ndim:  # a precision per benchmark (the default since 2026-12-04): each row's own
        phi = phi[const["score_benchmark"].values.astype(int)]
    else:
        phi = np.full(mc.shape, phi)
    np.testing.assert_allclose(chain.precision[0][~mc & ~unstated], phi[~mc & ~unstated])
    np.testing.assert_allclose(chain.precision[0][mc], phi[mc] * f_mc)
    np.testing.assert_allclose(chain.precision[0][unstated], phi[unstated] * f_un)
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-6, atol=1e-6)


def test_the_score_chain_carries_a_precision_that_changes_with_size(paper_data, paper_spec):
    """With [observation] size_precision each row's precision is phi_b exp(zeta (log N_m -
    mean log N)), and the NumPy chain reproduces PyMC's log-likelihood with it."""
    spec = paper_spec.with_overrides({"observation": {"size_precision": True}})
    idata, _ = prior_draws_as_fit(paper_data, spec, draws=10, seed=11, prior_predictive=True)
    chain = score_chain(idata, spec.data.d0_tokens)
    post, const = idata.posterior, idata.constant_data
    s = chain.draws[0]
    zeta = post["score_precision_size_slope"].stack(sample=("chain", "draw")).values[s]
    phi = post["score_precision_eval"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values[s]
    b = const["score_benchmark"].values.astype(int)
    log_n = const["model_log_params"].values[const["score_model"].values.astype(int)]
    phi = phi[b] if phi.ndim else np.full(b.shape, phi)
    expected_phi = phi * np.exp(zeta * (log_n - const["model_log_params"].values.mean()))
    assert abs(zeta) > 1e-3 and np.ptp(np.log(expected_phi / phi)) > 0.1
    np.testing.assert_allclose(chain.precision[0], expected_phi, rtol=1e-10)
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-7, atol=1e-7)


def test_the_unstated_rows_factor_can_be_one_per_benchmark():
    """With ``score_precision_unstated`` given dims = ["benchmark"], each unstated row's
    precision is phi_b times its own benchmark's factor (stated rows keep phi_b), in PyMC's
    likelihood and in the NumPy chain alike."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    spec = load_spec("default").with_overrides({"priors": {"score_precision_unstated": {
        "dist": "LogNormal", "kwargs": {"mu": 0.0, "sigma": 1.0}, "dims": ["benchmark"]}}})
    idata, _ = prior_draws_as_fit(load_data(bundled_data_folder("default")), spec, draws=4,
                                  seed=3)
    chain = score_chain(idata, spec.data.d0_tokens)
    post, const = idata.posterior, idata.constant_data
    s = chain.draws[0]
    factor = post["score_precision_unstated"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values[s]
    phi = post["score_precision_eval"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values[s]
    b = const["score_benchmark"].values.astype(int)
    unstated = const["score_unstated"].values == 1
    assert factor.shape == (10,) and np.ptp(np.log(factor)) > 0.1 and unstated.any()
    np.testing.assert_allclose(chain.precision[0], np.where(unstated, phi[b] * factor[b],
                                                            phi[b]))
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-6, atol=1e-6)


def test_the_score_chain_carries_a_precision_per_source_kind(paper_data, paper_spec):
    """With [observation] source_precision each row's precision is phi_b exp(lambda_k), the
    log factors summing to zero over the source kinds, and the NumPy chain reproduces PyMC's
    log-likelihood with it."""
    spec = paper_spec.with_overrides({"observation": {"source_precision": True}})
    idata, _ = prior_draws_as_fit(paper_data, spec, draws=10, seed=12, prior_predictive=True)
    post, const = idata.posterior, idata.constant_data
    log_factor = post["score_precision_source_log"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values
    if log_factor.shape[1] < 2:
        pytest.skip("the simulated data have one source kind")
    np.testing.assert_allclose(log_factor.sum(axis=1), 0.0, atol=1e-9)  # zero-sum
    chain = score_chain(idata, spec.data.d0_tokens)
    s = chain.draws[0]
    phi = post["score_precision_eval"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values[s]
    b = const["score_benchmark"].values.astype(int)
    k = const["score_source"].values.astype(int)
    phi = phi[b] if phi.ndim else np.full(b.shape, phi)
    expected_phi = phi * np.exp(log_factor[s][k])
    assert np.ptp(np.log(expected_phi / phi)) > 0.1
    np.testing.assert_allclose(chain.precision[0], expected_phi, rtol=1e-10)
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-7, atol=1e-7)


def test_trend_is_density_minus_deviation(prior_fit):
    idata, spec = prior_fit
    index = np.arange(5)
    scale, skew = ml.deviation_scale(idata, index, spec.trend)
    f = ml.trend_at_models(idata, index, scale)
    post = idata.posterior
    su = post["frontier_inefficiency"].values[0, :5]
    sv = post["frontier_noise"].values[0, :5]
    np.testing.assert_allclose(scale[:, 0], np.hypot(su, sv))
    np.testing.assert_allclose(skew[:, 0], -su / sv)
    np.testing.assert_allclose(f + post["log_density_deviation"].values[0, :5],
                               post["log_density"].values[0, :5])


def test_deviation_scale_changes_with_time(trend_prior_fit, paper_data):
    """sigma_u(t) = sigma_u exp(psi t) per model (closed form), and PyMC's density of each
    deviation is the skew-normal with that scale and skew."""
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    idata, spec = trend_prior_fit
    post = idata.posterior
    index = np.arange(4)
    time = idata.constant_data["model_time"].values
    scale, skew = ml.deviation_scale(idata, index, spec.trend)
    su = post["frontier_inefficiency"].values[0, :4, None] * np.exp(
        post["inefficiency_trend"].values[0, :4, None] * time[None, :])
    sv = post["frontier_noise"].values[0, :4, None]
    assert scale.shape == (4, time.size) and np.ptp(scale[0]) > 0
    np.testing.assert_allclose(scale, np.hypot(su, sv))
    np.testing.assert_allclose(skew, -su / sv)
    # held-out models: the scale at the times asked for (t = 0: sigma_u itself)
    other, _ = ml.deviation_scale(idata, index, spec.trend, time=np.array([0.0, 2.0]))
    np.testing.assert_allclose(other[:, 0], np.hypot(post["frontier_inefficiency"].values[0, :4],
                                                     post["frontier_noise"].values[0, :4]))
    model = build_model(prepare_inputs(paper_data, spec), spec)
    dev = model["log_density_deviation"]
    logp = model.compile_logp(vars=[dev], jacobian=False, sum=False)
    for s in range(2):
        point = model.initial_point()
        point.update(frontier_inefficiency_log__=np.log(post["frontier_inefficiency"].values[0, s]),
                     frontier_noise_log__=np.log(post["frontier_noise"].values[0, s]),
                     inefficiency_trend=post["inefficiency_trend"].values[0, s],
                     log_density_deviation=post["log_density_deviation"].values[0, s])
        d = post["log_density_deviation"].values[0, s]
        expected = stats.skewnorm.logpdf(d / scale[s], skew[s]) - np.log(scale[s])
        np.testing.assert_allclose(logp(point)[0], expected, rtol=1e-6, atol=1e-7)


def test_integrated_likelihood_equals_quadrature_with_a_changing_scale(trend_prior_fit):
    test_integrated_likelihood_equals_quadrature(trend_prior_fit)


def test_integrated_likelihood_equals_quadrature(prior_fit):
    """log p(y_m | theta_s) on the refined grid against adaptive quadrature of the same
    integrand, with each draw's scores simulated from that draw (a likelihood as sharp as a
    real model's, not the mismatch of prior draws against fixed data)."""
    import dataclasses

    idata, spec = prior_fit
    chain = score_chain(idata, spec.data.d0_tokens, max_draws=3)
    index = chain.draws
    scale, skew = ml.deviation_scale(idata, index, spec.trend)
    trend = ml.trend_at_models(idata, index, scale)
    log_params = np.asarray(idata.constant_data["model_log_params"].values, float)
    x_n_trend = trend + log_params - idata.posterior.attrs["centre_log_params"]
    replicated = idata.prior_predictive["score_obs"].stack(sample=("chain", "draw"))
    replicated = np.clip(replicated.transpose("sample", ...).values[index], 1e-4, 1 - 1e-4)
    m = int(np.bincount(chain.model).argmax())  # the model with the most scores
    rows = chain.model == m
    for s in range(len(index)):
        own = dataclasses.replace(chain, y=replicated[s])
        got = ml.integrated_model_loglik(own, x_n_trend, scale, skew)

        def rows_loglik(r, own=own, s=s):
            x_n = np.full((len(index), 1, own.y.size), x_n_trend[s, m] + r)
            ll, _, _ = own.loglik(own.logit(x_n))
            return ll[s, 0, rows].sum()

        sc = float(np.broadcast_to(scale, x_n_trend.shape)[s, m])
        sk = float(np.broadcast_to(skew, x_n_trend.shape)[s, m])
        peak = max(np.linspace(-9, 5, 2000) * sc, key=rows_loglik)
        top = rows_loglik(peak)
        value, _ = integrate.quad(
            lambda r: np.exp(rows_loglik(r) - top) * stats.skewnorm.pdf(r / sc, sk) / sc,
            -9 * sc, 5 * sc, points=[peak], limit=400)
        assert got[s, m] == pytest.approx(np.log(value) + top, abs=1e-3)


def test_model_loo_gives_one_elpd_and_k_per_model(prior_fit):
    idata, spec = prior_fit
    res = ml.model_loo(idata, spec)
    n_models = idata.posterior.sizes["model"]
    assert res.elpd.shape == res.pareto_k.shape == (n_models,)
    assert res.elpd_total == pytest.approx(res.elpd.sum())
    assert np.isfinite(res.elpd).all() and res.n_rows.sum() == idata.observed_data.sizes[
        "score_row"]


def test_pair_effects_are_refused(prior_fit):
    idata, spec = prior_fit
    fake = idata.copy()
    fake.posterior["score_pair_effect"] = fake.posterior["slope_post"]
    with pytest.raises(NotImplementedError, match="pair effects"):
        ml.model_loo(fake, spec)



def test_the_loss_score_figure_puts_each_model_at_the_models_loss(bundled_prior_fit):
    """Bug (2026-12-02): the loss -> score figure placed the reported scores at a loss without
    the loss law's extrapolation tilt (the default spec tilts every model's loss at D0, beyond
    the ladder's tokens), so the points were not where the model reads them. Through the RC
    curve and the row's shift, the figure's losses must give the score chain's logits (which
    reproduce PyMC's likelihood), loadings and drift included."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.presentation.plots import evaluated_loss_draws
    from densing_bayes.resources import bundled_data_folder

    idata, spec = bundled_prior_fit
    inputs = prepare_inputs(load_data(bundled_data_folder("default")), spec)
    chain = score_chain(idata, spec.data.d0_tokens)
    loss = evaluated_loss_draws(idata=idata, inputs=inputs, max_draws=None)[chain.draws]
    rows = loss[:, np.asarray(inputs.score_model), np.asarray(inputs.score_benchmark)]
    rc = list(idata.posterior["gamma"]["format"].values).index("rc")
    scale = chain.scale if chain.scale is not None else 1.0  # the reported scores' slope factor
    logit = -chain.gamma[..., rc] * (rows - chain.midpoint[..., rc]) * scale + chain.shift
    np.testing.assert_allclose(logit, chain.logit(chain.sampled_x_n(idata))[..., rc],
                               rtol=1e-9, atol=1e-9)


def test_the_loss_score_figures_reported_curve_has_the_protocol_scale(bundled_prior_fit):
    """Bug (2026-12-04): the loss -> score figure drew the reported scores' curve as the
    reference curve shifted by the protocol offset only; with [observation] protocol_scale (the
    default since 2026-12-04; ARC-Easy's factor 1.71) their logit slope is k_b times the
    reference's, so the drawn curve was not the one the model fits the reported scores to."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.presentation.plots import draws, loss_score_data
    from densing_bayes.resources import bundled_data_folder

    idata, spec = bundled_prior_fit
    assert spec.observation.protocol_scale
    inputs = prepare_inputs(load_data(bundled_data_folder("default")), spec)
    curves = loss_score_data(idata=idata, inputs=inputs)["curves"]
    post = idata.posterior.sel(format="rc")
    gamma, mid, span, delta, k = (draws(post, v) for v in (
        "gamma", "midpoint", "score_span", "protocol_offset", "protocol_scale"))
    for bi, b in enumerate(inputs.benchmarks):
        rows = curves[curves["benchmark"] == b]
        grid = rows["loss"].to_numpy()
        logit = -gamma[:, bi, None] * (grid - mid[:, bi, None]) * k[:, bi, None] \
            + delta[:, bi, None]
        expected = np.median(inputs.chance[bi] + span[:, bi, None] / (1 + np.exp(-logit)),
                             axis=0)
        np.testing.assert_allclose(rows["eval_median"].to_numpy(), expected, rtol=1e-9)


@pytest.mark.parametrize("tail", ["score_skewed", "score_favourable"])
def test_the_score_chain_carries_the_one_sided_tail_models(tail):
    """With the skewed error or the favourable mixture the NumPy chain (model-level LOO,
    held-out prediction) is still the model's likelihood, not the plain Beta's."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    spec = load_spec("default").with_overrides({"observation": {tail: True}})
    idata, _ = prior_draws_as_fit(load_data(bundled_data_folder("default")), spec, draws=6,
                                  seed=11)
    chain = score_chain(idata, spec.data.d0_tokens)
    assert (chain.skew is not None) == (tail == "score_skewed")
    assert (chain.favourable is not None) == (tail == "score_favourable")
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-6, atol=1e-6)


def test_the_score_chain_carries_the_lineage_profile():
    """With [trend] lineage_profile the NumPy chain is still the model's likelihood; each
    lineage's offsets sum to zero over benchmarks; models of one lineage share them."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    spec = load_spec("default").with_overrides({"trend": {"lineage_profile": True}})
    idata, inputs = prior_draws_as_fit(load_data(bundled_data_folder("default")), spec,
                                       draws=6, seed=13)
    omega = idata.posterior["lineage_profile"]
    assert omega.dims[2:] == ("lineage", "benchmark") and omega.sizes["lineage"] > 10
    np.testing.assert_allclose(omega.sum("benchmark").values, 0.0, atol=1e-9)
    chain = score_chain(idata, spec.data.d0_tokens)
    ll, _, _ = chain.loglik(chain.logit(chain.sampled_x_n(idata)))
    expected = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw"))
    expected = expected.transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(ll, expected, rtol=1e-6, atol=1e-6)
    # the drift is zero at the changepoint: what is left of x_shift there is the profile
    qwen = inputs.lineages.index("Qwen")
    rows = np.flatnonzero(inputs.model_lineage[inputs.score_model] == qwen)
    b = inputs.score_benchmark[rows]
    drift = idata.posterior["benchmark_drift"].stack(sample=("chain", "draw")).values.T
    time = inputs.model_time[inputs.score_model[rows]]
    profile = chain.x_shift[:, rows] - drift[chain.draws][:, b] * time
    flat = omega.stack(sample=("chain", "draw")).transpose("sample", ...).values[chain.draws]
    np.testing.assert_allclose(profile, flat[:, qwen, b], atol=1e-9)


def test_a_lineage_the_fit_has_not_seen_gets_a_zero_sum_profile_of_the_learnt_scale():
    """Held-out families: a profile drawn per (draw, new lineage), centred over benchmarks,
    shared by the lineage's models, with the SD the fit learnt."""
    import xarray as xr

    from densing_bayes.analysis.score_chain import lineage_profile_rows

    n_draws, n_bench = 4000, 10
    sd = np.full((1, n_draws), 0.7)
    post = xr.Dataset({
        "lineage_profile": (("chain", "draw", "lineage", "benchmark"),
                            np.ones((1, n_draws, 2, n_bench))),
        "lineage_profile_sd": (("chain", "draw"), sd)})
    # models: 0 of seen lineage 1, 1 and 2 of one new lineage, 3 of another new one
    const = xr.Dataset({"model_lineage": (("model",), np.array([1, -1, -1, -2]))})
    model = np.array([0, 1, 2, 3, 1] + [1] * (n_bench - 1))
    b = np.array([0, 3, 3, 3] + list(range(n_bench)))
    rows = lineage_profile_rows(post, const, np.arange(n_draws), model, b)
    assert (rows[:, 0] == 1.0).all()
    np.testing.assert_array_equal(rows[:, 1], rows[:, 2])  # one lineage, one profile
    assert np.corrcoef(rows[:, 1], rows[:, 3])[0, 1] < 0.1  # two lineages, two profiles
    np.testing.assert_allclose(rows[:, 4:].sum(axis=1), 0.0, atol=1e-9)  # zero-sum
    # the zero-sum normal's marginal SD: sd * sqrt(1 - 1/B)
    assert abs(rows[:, 4].std() - 0.7 * np.sqrt(1 - 1 / n_bench)) < 0.03


def test_the_protocol_figure_shows_the_scales_beside_the_offsets(bundled_prior_fit):
    """With [observation] protocol_scale (the default since 2026-12-04) the report showed the
    offsets but not the scales, 6 of 10 of which exclude 1 on the bundled data: the figure
    has a second panel, on a log axis, with the scales' posterior medians."""
    from densing_bayes.presentation.plots import (draws, plot_protocol_offsets,
                                                  protocol_offsets_data)

    idata, spec = bundled_prior_fit
    table = protocol_offsets_data(idata=idata)
    scales = table[(table["variable"] == "protocol_scale") & (table["series"] == "posterior")]
    k = draws(idata.posterior, "protocol_scale")
    np.testing.assert_allclose(scales["median"].to_numpy(), np.median(k, axis=0))
    assert list(scales["row"]) == [str(b) for b in idata.posterior["benchmark"].values]
    fig = plot_protocol_offsets(idata=idata)
    assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "log"
    without = idata.copy()
    del without.posterior["protocol_scale"]
    assert len(plot_protocol_offsets(idata=without).axes) == 1
