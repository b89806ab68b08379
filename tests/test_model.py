"""The PyMC model's structure, and agreement of its centred laws with the paper's equations."""

import arviz as az
import numpy as np
import pymc as pm
import pytest

from densing_bayes import laws
from densing_bayes.analysis.derived import natural_parameters
from densing_bayes.analysis.predict import attach_constants, extrapolation_factor, mean_score
from densing_bayes.model.build import build_model, loss_law_centred
from densing_bayes.model.inputs import prepare_inputs


@pytest.fixture(scope="module")
def built(paper_data, paper_spec):
    inputs = prepare_inputs(paper_data, paper_spec)
    return inputs, build_model(inputs, paper_spec)


@pytest.fixture(scope="module")
def prior_draws(built):
    inputs, model = built
    idata = pm.sample_prior_predictive(draws=50, model=model, random_seed=3)
    fake = az.InferenceData(posterior=idata.prior)
    attach_constants(fake, inputs)
    return fake, idata


def test_inputs_follow_the_design(built, paper_sim):
    inputs, _ = built
    assert inputs.benchmarks == sorted(["mmlu", "bbh", "math", "humaneval", "mbpp"])
    assert len(inputs.law_loss) == 6 * 6 * 5  # Table 1 sizes x multipliers x benchmarks
    assert len(inputs.models) == len(paper_sim.models)
    assert abs(inputs.law_x_params.mean()) < 1e-12  # centred at the design centre
    assert np.all((inputs.score_value > 0) & (inputs.score_value < 1))
    assert any("hold-out" in n for n in inputs.notes)


def test_every_variable_has_dims(built):
    _, model = built
    for var in model.free_RVs + model.deterministics + model.observed_RVs:
        if var.ndim > 0:
            assert model.named_vars_to_dims.get(var.name), var.name
    assert list(model.coords["benchmark"]) == built[0].benchmarks


def test_centred_law_is_the_papers_law(built, prior_draws):
    inputs, _ = built
    fake, _ = prior_draws
    nat = natural_parameters(fake, inputs)
    post = fake.posterior
    n, d = 3.3e8, 6.6e9
    centred = loss_law_centred(np.log(n) - inputs.centre_log_params,
                               np.log(d) - inputs.centre_log_tokens,
                               post["E"].values, post["A"].values, post["B"].values,
                               post["alpha"].values, post["beta"].values).eval()
    paper = laws.loss_law(n, d, nat["a"].values, nat["alpha"].values, nat["b"].values,
                          nat["beta"].values, nat["E"].values)
    np.testing.assert_allclose(centred, paper, rtol=1e-9)


def test_forward_prediction_is_the_papers_chain(built, prior_draws):
    inputs, _ = built
    fake, _ = prior_draws
    nat = {k: v.values for k, v in natural_parameters(fake, inputs).items()}
    n, d = 2e9, 4e11
    # (2e9, 4e11) lies outside the simulated ladder: the law carries its extrapolation tilt
    x_n, x_d = np.log(n) - inputs.centre_log_params, np.log(d) - inputs.centre_log_tokens
    tilt = np.asarray(extrapolation_factor(fake.posterior, x_n, x_d))
    assert not np.allclose(tilt, 1.0)
    expected = laws.score_from_loss(
        laws.loss_law(n, d, nat["a"], nat["alpha"], nat["b"], nat["beta"], nat["E"]) * tilt,
        nat["c"], nat["gamma"], nat["l"], nat["d"])
    got = mean_score(fake.posterior, fake.constant_data["chance"], n, d).values
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_prior_predictive_respects_the_score_scale(prior_draws):
    _, idata = prior_draws
    scores = idata.prior_predictive["score_obs"].values
    assert np.all((scores >= 0) & (scores <= 1))
    assert idata.prior["sigmoid_ceiling"].values.max() <= 1


@pytest.mark.parametrize("changepoint,kind,present,absent", [
    ("none", "frontier", {"slope"}, {"slope_pre", "slope_post", "changepoint_shift"}),
    ("fixed", "frontier", {"slope_pre", "slope_post"}, {"slope", "changepoint_shift"}),
    ("unknown", "frontier", {"changepoint_shift"}, {"slope"}),
    ("fixed", "mean", {"trend_noise"}, {"frontier_inefficiency"}),
])
def test_trend_variants(paper_data, paper_spec, changepoint, kind, present, absent):
    spec = paper_spec.with_overrides({"trend": {"changepoint": changepoint, "kind": kind}})
    model = build_model(prepare_inputs(paper_data, spec), spec)
    names = set(model.named_vars)
    assert present <= names
    assert not (absent & names)


def test_reference_only_folder_builds_the_chain_alone(paper_data, paper_spec):
    from densing_bayes.data.schema import DensingData

    ref_only = DensingData(folder=paper_data.folder, reference_runs=paper_data.reference_runs,
                           benchmarks=paper_data.benchmarks)
    model = build_model(prepare_inputs(ref_only, paper_spec), paper_spec)
    assert "log_density" not in model.named_vars
    assert "curve_score_obs" in model.named_vars


def test_spec_can_restrict_benchmarks(paper_data, paper_spec):
    spec = paper_spec.with_overrides({"data": {"benchmarks": ["mmlu", "bbh"]}})
    assert prepare_inputs(paper_data, spec).benchmarks == ["bbh", "mmlu"]
    bad = paper_spec.with_overrides({"data": {"benchmarks": ["hellaswag"]}})
    with pytest.raises(ValueError, match="hellaswag"):
        prepare_inputs(paper_data, bad)


@pytest.mark.parametrize("inefficiency,mean_u", [
    ("half_normal", lambda s: s * np.sqrt(2 / np.pi)),
    ("exponential", lambda s: s),
])
@pytest.mark.parametrize("latent", ["non_centred", "deviation", "centred"])
def test_models_sit_mean_u_below_the_frontier(paper_data, paper_spec, inefficiency, mean_u,
                                              latent):
    """Prior check of the marginalised frontier: E[f(t) - r] = E[u] for either distribution."""
    spec = paper_spec.with_overrides({"trend": {"inefficiency": inefficiency, "latent": latent}})
    inputs = prepare_inputs(paper_data, spec)
    model = build_model(inputs, spec)
    prior = pm.sample_prior_predictive(draws=2000, model=model, random_seed=5).prior
    t = inputs.model_time
    f = (prior["frontier_intercept"].values[..., None]
         + prior["slope_pre"].values[..., None] * np.minimum(t, 0)
         + prior["slope_post"].values[..., None] * np.maximum(t, 0))
    gap = f - prior["log_density"].values
    expected = mean_u(prior["frontier_inefficiency"].values)[..., None]
    assert np.mean(gap - expected) == pytest.approx(0.0, abs=0.05)
    assert np.mean(gap) > 0


# The default spec's coordinates (frontier, half-normal, deviation) run by default; the other
# five compile two models each (minutes in a clean clone) and run with -m slow.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize("kind,inefficiency,latent", [
    ("frontier", "half_normal", "deviation"),
    pytest.param("frontier", "half_normal", "centred", marks=_SLOW),
    pytest.param("frontier", "exponential", "deviation", marks=_SLOW),
    pytest.param("frontier", "exponential", "centred", marks=_SLOW),
    pytest.param("mean", "half_normal", "deviation", marks=_SLOW),
    pytest.param("mean", "half_normal", "centred", marks=_SLOW),
])
def test_latent_coordinates_are_the_same_model(paper_data, paper_spec, kind, inefficiency,
                                               latent):
    """trend.latent only moves the sampler's coordinates: at the same log densities the joint
    log densities differ by exactly the Jacobian of r = f + scale * z."""
    trend = {"kind": kind, "inefficiency": inefficiency}
    non_centred_spec = paper_spec.with_overrides({"trend": {**trend, "latent": "non_centred"}})
    other_spec = paper_spec.with_overrides({"trend": {**trend, "latent": latent}})
    inputs = prepare_inputs(paper_data, non_centred_spec)
    non_centred = build_model(inputs, non_centred_spec)
    other = build_model(inputs, other_spec)
    sampled = "log_density" if latent == "centred" else "log_density_deviation"
    assert other.named_vars_to_dims[sampled] == ("model",)
    assert "log_density_std" not in other.named_vars

    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in non_centred.initial_point().items()}
    names = ["frontier_inefficiency", "frontier_noise"] if kind == "frontier" else ["trend_noise"]
    outputs = non_centred.replace_rvs_by_values([non_centred[n] for n in ["log_density", *names]])
    log_density, *scales = non_centred.compile_fn(outputs, inputs=non_centred.value_vars,
                                                  on_unused_input="ignore")(point)
    if kind == "mean":
        signed_scale = scales[0]
    elif inefficiency == "half_normal":
        signed_scale = np.hypot(*scales)
    else:
        signed_scale = -scales[1]  # r = f - sigma_v z
    z = point["log_density_std"]
    other_point = {k: v for k, v in point.items() if k != "log_density_std"}
    other_point[sampled] = log_density if latent == "centred" else signed_scale * z
    assert set(other_point) == set(other.initial_point())
    jacobian = len(z) * np.log(abs(signed_scale))
    logp_non_centred = non_centred.compile_logp()(point)
    assert other.compile_logp()(other_point) == pytest.approx(logp_non_centred - jacobian,
                                                              rel=1e-10)


def test_lean_beta_likelihood_is_pymcs_beta():
    """The hand-written Beta(mean, precision) log density equals scipy's and PyMC's, row by row."""
    from pytensor.tensor import gammaln
    from scipy import stats

    from densing_bayes.model.build import beta_mean_precision_logp

    rng = np.random.default_rng(11)
    value = np.concatenate([rng.uniform(1e-4, 1 - 1e-4, 200), [1e-6, 0.5, 1 - 1e-6]])
    mean = np.concatenate([rng.uniform(1e-6, 1 - 1e-6, 200), [1e-6, 0.5, 1 - 1e-6]])
    precision = np.exp(rng.uniform(np.log(0.5), np.log(1e4), value.size))
    ours = beta_mean_precision_logp(value, mean, precision,
                                    gammaln(precision)).eval()
    alpha, beta = mean * precision, (1 - mean) * precision
    np.testing.assert_allclose(ours, stats.beta.logpdf(value, alpha, beta), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours, pm.logp(pm.Beta.dist(alpha, beta), value).eval(),
                               rtol=1e-9, atol=1e-9)


def test_score_likelihood_draws_have_beta_moments():
    """Predictive score draws come from Beta(mean, precision): check both moments."""
    from densing_bayes.model.build import _beta_random

    mean, precision = 0.3, 40.0
    draws = _beta_random(mean, precision, 0.0, rng=np.random.default_rng(5), size=40_000)
    assert abs(draws.mean() - mean) < 0.003
    assert abs(draws.var() - mean * (1 - mean) / (precision + 1)) < 2e-4


def test_drift_coordinates_are_the_same_model(paper_data, paper_spec):
    """trend.drift_coordinates only moves the sampler's coordinates: kappa = sd * z, so at the
    same drift rates the centred joint log density is the non-centred one minus the Jacobian
    (n - 1) log sd of the (n - 1)-dimensional zero-sum space."""
    drift = {"benchmark_drift": True}
    non_centred_spec = paper_spec.with_overrides({"trend": drift})
    centred_spec = paper_spec.with_overrides({"trend": {**drift, "drift_coordinates": "centred"}})
    assert centred_spec.model_hash() != non_centred_spec.model_hash()
    inputs = prepare_inputs(paper_data, non_centred_spec)
    non_centred = build_model(inputs, non_centred_spec)
    centred = build_model(inputs, centred_spec)
    assert "benchmark_drift" in {rv.name for rv in centred.free_RVs}
    assert "benchmark_drift_std" not in centred.named_vars

    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in non_centred.initial_point().items()}
    sd = float(np.exp(point["benchmark_drift_sd_log__"]))
    z_value = point.pop("benchmark_drift_std_zerosum__")  # the zero-sum transform is linear
    centred_point = {**point, "benchmark_drift_zerosum__": sd * z_value}
    assert set(centred_point) == set(centred.initial_point())
    jacobian = z_value.size * np.log(sd)
    assert centred.compile_logp()(centred_point) == pytest.approx(
        non_centred.compile_logp()({**point, "benchmark_drift_std_zerosum__": z_value})
        - jacobian, rel=1e-10)


def test_centred_drift_refuses_another_drift_prior(paper_data, paper_spec):
    from densing_bayes.model.spec import SpecError

    spec = paper_spec.with_overrides({
        "trend": {"benchmark_drift": True, "drift_coordinates": "centred"},
        "priors": {"benchmark_drift_std": {"dist": "ZeroSumNormal", "kwargs": {"sigma": 2.0},
                                           "dims": ["benchmark"]}}})
    with pytest.raises(SpecError, match="drift_coordinates"):
        build_model(prepare_inputs(paper_data, spec), spec)
