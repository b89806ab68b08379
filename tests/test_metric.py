"""The stored dense metric: probit coordinates, whitening, storage and a fit that uses it."""

import logging

import numpy as np
import pymc as pm
import pytensor
import pytest
from pymc.model.transform.optimization import freeze_dims_and_data

from densing_bayes.inference import metric as M
from densing_bayes.inference.sample import sample_model
from densing_bayes.model.spec import SamplerSettings


def _toy(k=7, n=20, y=(0.3, 1.9, 1.2, 0.8)):
    """Conjugate pieces with closed-form posteriors: p | k ~ Beta(2 + k, 2 + n - k) and
    mu | y ~ Normal(sum(y) / (len(y) + 1/100), 1 / sqrt(len(y) + 1/100))."""
    with pm.Model(coords={"obs": np.arange(len(y))}) as model:
        p = pm.Beta("p", 2.0, 2.0)
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Deterministic("twice_mu", 2 * mu)
        pm.Binomial("k", n=n, p=p, observed=k)
        pm.Normal("log_loss_obs", mu, 1.0, observed=np.array(y), dims="obs")
    return model


def test_probit_transform_is_inverse_with_the_normal_log_density_as_jacobian():
    t = M.ProbitTransform()
    y = pytensor.tensor.dvector("y")
    x = np.array([1e-6, 0.02, 0.5, 0.97, 1 - 1e-6])
    forward = pytensor.function([y], t.forward(y))(x)
    assert np.allclose(pytensor.function([y], t.backward(y))(forward), x, rtol=1e-9)
    ys = np.linspace(-4, 4, 9)
    jac = pytensor.function([y], t.log_jac_det(y))(ys)
    from scipy.stats import norm
    assert np.allclose(jac, norm.logpdf(ys))


def test_probit_fractions_leave_the_posterior_unchanged():
    """Same log density of the constrained values: logp_probit(y) - log phi(y) equals
    logp_logodds(u) - log|d sigmoid/du| at the same p."""
    model = _toy()
    probit = M.with_probit_fractions(model)
    assert M.beta_variables(model) == ["p"]
    assert "p_probit__" in [v.name for v in probit.value_vars]
    from scipy.special import logit
    from scipy.stats import norm
    f_probit = probit.compile_logp(jacobian=False)
    f_orig = model.compile_logp(jacobian=False)
    for p in (0.1, 0.45, 0.9):
        a = f_probit({"p_probit__": norm.ppf(p), "mu": 0.3})
        b = f_orig({"p_logodds__": logit(p), "mu": 0.3})
        assert a == pytest.approx(b, rel=1e-7)  # erfc vs scipy round-trip


def test_whitened_log_density_is_the_original_at_mean_plus_chol_z():
    model = freeze_dims_and_data(M.with_probit_fractions(_toy()))
    layout = M.value_layout(model)
    assert sorted(n for n, _ in layout) == ["mu", "p_probit__"]
    white = M.whitened_model(model)
    mean, chol = np.array([0.2, 1.0]), np.array([[0.5, 0.0], [0.3, 0.2]])
    orig_logp = model.compile_logp()
    rng = np.random.default_rng(0)
    with white:
        pm.set_data({M.WHITE_MEAN: mean, M.WHITE_CHOL: chol})
    white_logp = white.compile_logp()
    for _ in range(5):
        z = rng.normal(size=2)
        theta = mean + chol @ z
        point = {name: theta[i] for i, (name, _) in enumerate(layout)}
        assert white_logp({M.WHITE_VAR: z}) == pytest.approx(orig_logp(point), rel=1e-12)
    # with a split map: theta = split(mean + chol z), plus the map's log-Jacobian
    centre, lower, upper = np.array([0.1, -0.4]), np.array([0.7, 1.5]), np.array([1.2, 0.4])
    with white:
        pm.set_data({M.WHITE_CENTRE: centre, M.WHITE_LOWER: lower, M.WHITE_UPPER: upper})
    white_logp = white.compile_logp()
    for _ in range(5):
        z = rng.normal(size=2)
        u = mean + chol @ z
        theta = M.split_forward(u, centre, lower, upper)
        point = {name: theta[i] for i, (name, _) in enumerate(layout)}
        expected = orig_logp(point) + M.split_log_jacobian(u, lower, upper).sum()
        assert white_logp({M.WHITE_VAR: z}) == pytest.approx(expected, rel=1e-12)


def test_a_whitened_model_keeps_unfrozen_data_swappable():
    """Posterior SBC fits one compiled whitened model to each simulation's data: data left
    unfrozen keep their names in the whitened model, and swapping them changes its density
    exactly as it changes the original's (before, the whitened model baked them in)."""
    with pm.Model() as source:
        y = pm.Data("y", np.array([0.3, 1.9, 1.2]))
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("obs", mu, 1.0, observed=y)
    model = freeze_dims_and_data(source, data=[])
    white = M.whitened_model(model)
    assert "y" in {d.name for d in white.data_vars}
    mean, chol = np.array([0.4]), np.array([[0.7]])
    new_y = np.array([5.0, -2.0, 8.5])
    with white:
        pm.set_data({M.WHITE_MEAN: mean, M.WHITE_CHOL: chol, "y": new_y})
    with model:
        pm.set_data({"y": new_y})
    white_logp, orig_logp = white.compile_logp(), model.compile_logp()
    for z in (-1.3, 0.0, 2.2):
        theta = mean[0] + chol[0, 0] * z
        assert white_logp({M.WHITE_VAR: np.array([z])}) == pytest.approx(
            orig_logp({"mu": theta}), rel=1e-12)
    # a frozen model's data stay constants: the whitened model has only the metric's
    frozen = M.whitened_model(freeze_dims_and_data(source))
    assert {d.name for d in frozen.data_vars} == {M.WHITE_MEAN, M.WHITE_CHOL, M.WHITE_CENTRE,
                                                   M.WHITE_LOWER, M.WHITE_UPPER}


def test_split_map_is_monotone_inverts_in_closed_form_and_has_its_side_slopes():
    centre, lower, upper = np.array([0.5, -1.0, 2.0]), np.array([0.3, 2.0, 1.0]), \
        np.array([0.9, 0.5, 1.0])
    u = np.linspace(-30, 30, 2001)[:, None]
    theta = M.split_forward(u, centre, lower, upper)
    assert np.all(np.diff(theta, axis=0) > 0)
    np.testing.assert_allclose(M.split_inverse(theta, centre, lower, upper), u + 0 * theta,
                               atol=1e-9)
    np.testing.assert_allclose(M.split_forward(np.zeros(3), centre, lower, upper), centre)
    # far out the slope is the side's scale; the log-Jacobian is the derivative's log
    slope = np.diff(theta, axis=0) / np.diff(u, axis=0)
    np.testing.assert_allclose(slope[0], lower, rtol=1e-3)
    np.testing.assert_allclose(slope[-1], upper, rtol=1e-3)
    mid = 0.5 * (u[1:] + u[:-1])
    np.testing.assert_allclose(np.exp(M.split_log_jacobian(mid, lower, upper)), slope,
                               rtol=1e-4)  # central difference, step 0.03
    # equal sides: a plain affine map
    np.testing.assert_allclose(M.split_forward(u, 1.0, 2.0, 2.0), 1.0 + 2.0 * u)


def test_split_map_from_skewed_draws_makes_them_symmetric():
    """A skew-normal coordinate (the shape of the frontier inefficiency's log): the side
    scales differ, and the mapped draws have equal 90% half-widths about the median."""
    from scipy import stats

    draws = stats.skewnorm(-6.0, loc=1.0, scale=2.0).rvs(size=(20000, 1), random_state=3)
    m = M.metric_from_draws("k", [("a", ())], draws)
    assert m.has_split and m.lower[0] > 1.8 * m.upper[0]
    u = M.split_inverse(draws, *m.split())
    np.testing.assert_allclose(np.quantile(u, [0.05, 0.5, 0.95]), [-M.SPLIT_Z, 0, M.SPLIT_Z],
                               atol=1e-9)
    assert abs(stats.skew(u[:, 0])) < 0.25 * abs(stats.skew(draws[:, 0]))
    np.testing.assert_allclose(M.unconstrained_from_white(
        np.linalg.solve(m.chol, (u - m.mean).T).T, m), draws, atol=1e-8)


def test_metric_from_draws_shrinks_towards_the_diagonal_and_refuses_too_few_draws():
    rng = np.random.default_rng(1)
    draws = rng.multivariate_normal([1.0, -2.0], [[1.0, 0.8], [0.8, 2.0]], size=4000)
    layout = [("a", ()), ("b", ())]
    m = M.metric_from_draws("k", layout, draws, split=False)
    assert not m.has_split
    n = len(draws)
    expected = n / (n + 5) * np.cov(draws.T) + 1e-3 * 5 / (n + 5) * np.eye(2)
    assert np.allclose(m.cov, expected) and np.allclose(m.mean, draws.mean(0))
    assert M.metric_from_draws("k", layout, draws[:3]) is None
    bad = draws.copy()
    bad[0, 0] = np.nan
    assert M.metric_from_draws("k", layout, bad) is None


def test_metric_key_changes_with_any_input_array_or_the_model():
    from dataclasses import dataclass, field

    @dataclass
    class Inputs:
        x: np.ndarray
        names: list = field(default_factory=lambda: ["a", "b"])

    base = M.metric_key("model", Inputs(np.arange(3.0)))
    assert base == M.metric_key("model", Inputs(np.arange(3.0)))
    assert base != M.metric_key("model", Inputs(np.array([0.0, 1.0, 2.5])))
    assert base != M.metric_key("model", Inputs(np.arange(3.0), ["a", "c"]))
    assert base != M.metric_key("other model", Inputs(np.arange(3.0)))


def test_stored_metric_round_trips_and_a_corrupt_file_is_ignored(private_cache, caplog):
    layout = [("a", (2,)), ("b", ())]
    m = M.StoredMetric("roundtrip", ("a", "b"), ((2,), ()), np.arange(3.0), np.eye(3) * 2, 10)
    M.save_metric(m)
    back = M.load_metric("roundtrip")
    assert back.matches(layout) and np.allclose(back.cov, m.cov) and back.n_draws == 10
    assert not back.has_split and np.array_equal(back.split()[1], np.ones(3))
    split = M.StoredMetric("split", ("a", "b"), ((2,), ()), np.arange(3.0), np.eye(3), 10,
                           np.zeros(3), np.full(3, 0.5), np.full(3, 2.0))
    M.save_metric(split)
    again = M.load_metric("split")
    assert again.has_split and M.metric_digest(again) == M.metric_digest(split)
    assert M.metric_digest(split) != M.metric_digest(
        M.StoredMetric("split", ("a", "b"), ((2,), ()), np.arange(3.0), np.eye(3), 10))
    assert not back.matches([("a", (3,)), ("b", ())])
    M.metric_path("corrupt").write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING, logger="densing_bayes"):
        assert M.load_metric("corrupt") is None
    assert "unusable" in caplog.text


def test_a_runs_metric_round_trips_and_bad_runs_get_one_line(tmp_path):
    import arviz as az
    import xarray as xr

    m = M.StoredMetric("k", ("a", "b"), ((2,), ()), np.arange(3.0),
                       np.eye(3) + 0.1, 40, np.ones(3), np.full(3, 0.3), np.full(3, 0.6))
    idata = az.InferenceData(posterior=xr.Dataset({"a": (("chain", "draw"), np.zeros((1, 2)))}))
    idata.add_groups({M.METRIC_GROUP: M.metric_dataset(m)}, warn_on_custom_groups=False)
    idata.to_netcdf(str(tmp_path / "posterior.nc"), engine="h5netcdf")
    back = M.metric_from_run(tmp_path)
    assert M.metric_digest(back) == M.metric_digest(m) and back.matches([("a", (2,)), ("b", ())])
    assert back.key == "k" and back.n_draws == 40 and np.allclose(back.upper, 0.6)
    with pytest.raises(M.MetricError, match="no such file"):
        M.metric_from_run(tmp_path / "nowhere")
    plain = tmp_path / "plain"
    plain.mkdir()
    az.InferenceData(posterior=idata.posterior).to_netcdf(str(plain / "posterior.nc"),
                                                         engine="h5netcdf")
    with pytest.raises(M.MetricError, match="no sampler_metric group"):
        M.metric_from_run(plain)


def test_a_runs_metric_is_read_from_its_thinned_copy_when_the_full_posterior_is_absent(tmp_path):
    """A fresh checkout of the reference run has only posterior_thin.nc: `--metric-from` must
    still find the metric that whitened it, or the committed draws cannot be reproduced (the
    shipped metric and the user's cache move on with every fit)."""
    import arviz as az
    import xarray as xr

    m = M.StoredMetric("k", ("a",), ((3,),), np.arange(3.0), np.eye(3) + 0.2, 40)
    idata = az.InferenceData(posterior=xr.Dataset({"a": (("chain", "draw"), np.zeros((1, 2)))}))
    idata.add_groups({M.METRIC_GROUP: M.metric_dataset(m)}, warn_on_custom_groups=False)
    idata.to_netcdf(str(tmp_path / "posterior_thin.nc"), engine="h5netcdf")
    assert M.metric_digest(M.metric_from_run(tmp_path)) == M.metric_digest(m)
    # the full posterior, when present, is the one read
    other = M.StoredMetric("k", ("a",), ((3,),), np.zeros(3), np.eye(3), 40)
    full = az.InferenceData(posterior=idata.posterior)
    full.add_groups({M.METRIC_GROUP: M.metric_dataset(other)}, warn_on_custom_groups=False)
    full.to_netcdf(str(tmp_path / "posterior.nc"), engine="h5netcdf")
    assert M.metric_digest(M.metric_from_run(tmp_path)) == M.metric_digest(other)


@pytest.mark.integration
def test_dense_mode_stores_then_uses_the_metric_and_recovers_the_closed_form_posterior(
        private_cache, tmp_path):
    model = _toy()
    settings = SamplerSettings(draws=1000, tune=500, chains=2, seed=3, mass_matrix="dense")
    first, _ = sample_model(model, settings, progress=False, predictive=False,
                            metric_key="toy-dense")
    assert first.posterior.attrs["nuts_metric"] == "diag"
    whitening = M.load_metric("toy-dense")
    assert whitening is not None
    second, _ = sample_model(model, settings, progress=False, predictive=True,
                             metric_key="toy-dense")
    assert second.posterior.attrs["nuts_metric"] == "dense"
    assert second.posterior.attrs["nuts_metric_key"] == "toy-dense"
    # the covariance that whitened the fit (the cache holds a refreshed one afterwards)
    assert second.posterior.attrs["nuts_metric_sha256"] == M.metric_digest(whitening)
    assert "nuts_metric_key" not in first.posterior.attrs
    post = second.posterior
    assert M.WHITE_VAR not in post and set(post["twice_mu"].dims) == {"chain", "draw"}
    assert "log_likelihood" in second.groups()  # the original model scores these draws
    k, n, y = 7, 20, np.array([0.3, 1.9, 1.2, 0.8])
    p_mean = (2 + k) / (4 + n)
    prec = len(y) + 1 / 100
    import arviz as az

    for name, truth, sd in (("p", p_mean, np.sqrt(p_mean * (1 - p_mean) / (5 + n))),
                            ("mu", y.sum() / prec, 1 / np.sqrt(prec))):
        draws = post[name]
        mcse = float(draws.std()) / np.sqrt(float(az.ess(post[[name]])[name]))
        assert abs(float(draws.mean()) - truth) < 5 * mcse + 1e-3
        assert float(draws.std()) == pytest.approx(sd, rel=0.1)
    assert np.allclose(post["twice_mu"], 2 * post["mu"])
    # The cache now holds the second fit's covariance: the same spec and seed whiten with it
    # and give other draws. The run keeps the one it used, and refits draw for draw with it.
    assert M.metric_digest(M.load_metric("toy-dense")) != M.metric_digest(whitening)
    second.to_netcdf(str(tmp_path / "posterior.nc"), engine="h5netcdf")
    saved = M.metric_from_run(tmp_path)
    assert M.metric_digest(saved) == M.metric_digest(whitening)
    again, _ = sample_model(model, settings, progress=False, predictive=False,
                            metric_key="toy-dense", metric=saved)
    np.testing.assert_array_equal(again.posterior["mu"].values, post["mu"].values)
    cached, _ = sample_model(model, settings, progress=False, predictive=False,
                             metric_key="toy-dense")
    assert not np.array_equal(cached.posterior["mu"].values, post["mu"].values)
    with pytest.raises(M.MetricError, match="not made for this model and data"):
        sample_model(model, settings, progress=False, predictive=False,
                     metric_key="another model", metric=saved)


def test_bundled_default_ships_the_metric_of_its_own_model_and_data():
    """Changing the default spec's model or the bundled data without refreshing
    models/metrics/ would silently fall back to the slow diagonal metric: refresh it with
    ``python -m densing_bayes.inference.metric`` after a fit of the default spec."""
    from densing_bayes import api
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    spec, data = api.load_spec("default"), api.load_data("default")
    assert spec.sampler.mass_matrix == "dense"
    inputs = prepare_inputs(data, spec)
    key = M.metric_key(spec.model_hash(), inputs)
    path = M.metric_path(key, M.bundled_metrics_dir())
    assert path.is_file(), f"no bundled metric {path.name} for the default spec and data"
    stored = M.load_metric(key)
    model = freeze_dims_and_data(M.with_probit_fractions(build_model(inputs, spec)))
    assert stored.matches(M.value_layout(model))
    assert stored.n_draws >= 4000


def test_the_shipped_metric_is_the_one_that_whitened_the_committed_reference():
    """A fresh checkout's `densing-bayes run` whitens with the shipped metric: unless it is
    the one the committed reference recorded, the README's numbers come from draws nobody can
    reproduce (2026-12-02: the reference had used a cached metric that was never shipped)."""
    import json
    from pathlib import Path

    reference = Path(__file__).resolve().parents[1] / "reports" / "default" / "summary.json"
    summary = json.loads(reference.read_text())
    recorded = summary["sampler_metric"]
    path = M.metric_path(recorded["key"], M.bundled_metrics_dir())
    assert path.is_file(), f"the reference's metric {path.name} is not shipped"
    with np.load(path) as d:
        shipped = M.StoredMetric(recorded["key"], (), (), d["mean"], d["cov"], int(d["n_draws"]),
                                 **{f: d[f] for f in M.SPLIT_FIELDS if f in d.files})
    assert M.metric_digest(shipped) == recorded["sha256"]


def test_a_shipped_metric_wins_over_the_cache_for_its_key(private_cache, tmp_path, monkeypatch):
    """2026-12-04: a sensitivity baseline refit (same model and data, so the same key) refreshed
    the cache, and the next `run default` whitened with that covariance instead of the shipped
    one the committed reference recorded: other draws from the same spec and seed. The shipped
    metric must win for its key; other keys still come from the cache."""
    shipped_dir = tmp_path / "shipped"
    monkeypatch.setattr(M, "bundled_metrics_dir", lambda: shipped_dir)
    shipped = M.StoredMetric("reference", ("a",), ((2,),), np.zeros(2), np.eye(2), 4000)
    M.save_metric(shipped, shipped_dir)
    refreshed = M.StoredMetric("reference", ("a",), ((2,),), np.ones(2), 3 * np.eye(2), 2000)
    M.save_metric(refreshed)  # the user's cache, as a later fit of the same key leaves it
    M.save_metric(M.StoredMetric("user data", ("a",), ((2,),), np.ones(2), 2 * np.eye(2), 800))
    assert M.metric_digest(M.load_metric("reference")) == M.metric_digest(shipped)
    assert M.load_metric("user data").n_draws == 800
    assert M.load_metric("nothing stored") is None


def test_the_cache_keeps_only_the_newest_metrics(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(M, "MAX_CACHED_METRICS", 3)
    for i in range(5):
        path = M.save_metric(M.StoredMetric(f"prune{i}", ("a",), ((),), np.zeros(1),
                                            np.eye(1), 10), tmp_path)
        os.utime(path, (1000 + i, 1000 + i))
    M._prune_cache(tmp_path)
    left = {p.stem for p in tmp_path.glob("*.npz")}
    assert left == {"prune2", "prune3", "prune4"}


@pytest.mark.slow  # two real fits of a closed-form posterior; the stored-metric path is tested by default
def test_a_pilot_whitens_a_cold_dense_fit_and_keeps_the_closed_form_posterior(private_cache):
    """Without a stored covariance, `pilot_draws` runs a short diagonal pilot and whitens the
    fit with its covariance: a correlated Gaussian (correlation 0.99, closed form) then needs
    far fewer leapfrog steps per draw than the pilot, and the posterior is unchanged."""
    cov = np.array([[1.0, 0.99 * 3.0], [0.99 * 3.0, 9.0]])
    with pm.Model() as model:
        pm.MvNormal("x", mu=np.array([1.0, -2.0]), cov=cov)
    settings = SamplerSettings(draws=1000, tune=400, chains=2, seed=11, mass_matrix="dense",
                               pilot_draws=100)
    idata, _ = sample_model(model, settings, progress=False, predictive=False,
                            metric_key="toy-pilot")
    attrs = idata.posterior.attrs
    assert attrs["nuts_metric"] == "dense_pilot" and attrs["nuts_pilot_draws"] == 100
    steps = float(idata.sample_stats["n_steps"].mean())
    assert steps < attrs["nuts_pilot_mean_tree_steps"] / 2
    x = idata.posterior["x"].values.reshape(-1, 2)
    import arviz as az

    ess = float(az.ess(idata.posterior)["x"].min())
    mcse = np.sqrt(np.diag(cov) / ess)
    assert np.all(np.abs(x.mean(axis=0) - [1.0, -2.0]) < 5 * mcse)
    np.testing.assert_allclose(np.cov(x, rowvar=False), cov, rtol=0.15)
    # the pilot's covariance is what whitened the fit; the fit's own is stored for the next
    assert M.load_metric("toy-pilot").n_draws == 2000
    # pilot_draws = 0: the old cold start, the whole fit on the diagonal metric
    cold, _ = sample_model(model, settings.model_copy(update={"pilot_draws": 0}),
                           progress=False, predictive=False, metric_key=None)
    assert cold.posterior.attrs["nuts_metric"] == "diag"


def test_an_unused_lineage_field_leaves_the_metric_key_alone():
    """The lineage fields were added to the inputs after metrics were stored: empty (a model
    without [trend] lineage_profile) they must not change the key, filled they must."""
    from dataclasses import replace

    import numpy as np

    from densing_bayes import resources
    from densing_bayes.data.load import load_data
    from densing_bayes.inference.metric import load_metric, metric_key
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    inputs = prepare_inputs(load_data(resources.resolve_data_folder("default")), spec)
    assert len(inputs.lineages) == 0
    key = metric_key(spec.model_hash(), inputs)
    assert load_metric(key) is not None  # the shipped metric of the reference
    filled = replace(inputs, lineages=["Qwen"], model_lineage=np.zeros(len(inputs.models), int))
    assert metric_key(spec.model_hash(), filled) != key
