"""Shared fixtures: seeded simulated data (session-wide, built once) and small specs."""

from pathlib import Path

import pytest

from densing_bayes.data.schema import DensingData
from densing_bayes.data.simulate import simulate_design, write_simulation
from densing_bayes.model.spec import parse_spec

#: Sampler settings for tests that need real MCMC but not publication-size posteriors.
SMALL_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "seed": 11}


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
    return parse_spec({"name": "paper_test", "loss_law": {"irreducible": False},
                       "sampler": SMALL_SAMPLER})
