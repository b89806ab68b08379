"""Shared fixtures: seeded simulated data (session-wide, built once) and small specs."""

import os
from pathlib import Path

import pytest

from densing_bayes.data.schema import DensingData
from densing_bayes.data.simulate import simulate_design, write_simulation
from densing_bayes.model.spec import parse_spec

#: Sampler settings for tests that need real MCMC but not publication-size posteriors.
SMALL_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "seed": 11}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests neither read nor write the user's caches (stored dense metrics, JAX cache)."""
    folder = tmp_path_factory.mktemp("densing_cache")
    old = os.environ.get("DENSING_BAYES_CACHE")
    os.environ["DENSING_BAYES_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("DENSING_BAYES_CACHE", None)
    else:
        os.environ["DENSING_BAYES_CACHE"] = old


@pytest.fixture(scope="session")
def paper_sim():
    """The paper's design, seed 1: 36 models, 5 benchmarks, known truth."""
    return simulate_design("paper", seed=1)


@pytest.fixture(scope="session")
def paper_data(paper_sim) -> DensingData:
    return DensingData(folder=Path("simulated"), reference_runs=paper_sim.reference_runs,
                       models=paper_sim.models, scores=paper_sim.scores,
                       benchmarks=paper_sim.benchmarks)


@pytest.fixture(scope="session")
def paper_folder(paper_sim, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("paper_sim")
    write_simulation(paper_sim, folder, force=True)
    return folder


@pytest.fixture(scope="session")
def paper_spec():
    return parse_spec({"name": "paper_test",
                       # the paper design's tilt (models/paper_design.toml)
                       "loss_law": {"irreducible": False, "extrapolation_sd": 0.035},
                       "sampler": SMALL_SAMPLER})


def prior_draws_as_fit(data, spec, draws: int, seed: int, prior_predictive: bool = False):
    """(idata, inputs): prior draws of ``spec`` on ``data`` dressed as a fit (posterior =
    prior, constant data attached, pointwise log-likelihood of the scores), for tests that
    compare a NumPy likelihood with PyMC's on draws where the statistics are not the point."""
    import arviz as az
    import pymc as pm

    from densing_bayes.analysis.predict import attach_constants
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs

    inputs = prepare_inputs(data, spec)
    model = build_model(inputs, spec)
    with model:
        prior = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    groups = {"posterior": prior.prior, "observed_data": prior.observed_data,
              "constant_data": prior.constant_data}
    if prior_predictive:
        groups["prior_predictive"] = prior.prior_predictive
    idata = az.InferenceData(**groups)
    attach_constants(idata, inputs)
    with model:
        pm.compute_log_likelihood(idata, var_names=["score_obs"], progressbar=False)
    return idata, inputs
