"""Benchmark drift is recovered from data simulated with it (real MCMC, paper design).

The simulator gives each benchmark a drift kappa_b (its reading of the effective size grows as
exp(kappa_b t), the kappa_b summing to zero); the model with ``[trend] benchmark_drift`` must
find each kappa_b and keep the common slope.
"""

import numpy as np
import pytest

from densing_bayes.data.schema import DensingData
from densing_bayes.data.simulate import default_truth, simulate_design
from densing_bayes.model.spec import parse_spec
from densing_bayes.workflow import fit_data

from conftest import SMALL_SAMPLER

pytestmark = pytest.mark.integration

DRIFT = {"mmlu": 0.8, "bbh": -0.8, "math": 0.4, "humaneval": -0.4, "mbpp": 0.0}
RECOVERY_MASS = 0.98


@pytest.fixture(scope="module")
def drift_fit(tmp_path_factory):
    truth = default_truth("paper")
    for name, kappa in DRIFT.items():
        truth["benchmarks"][name]["drift_per_year"] = kappa
    sim = simulate_design("paper", seed=4, truth=truth)
    data = DensingData(folder=tmp_path_factory.mktemp("drift"),
                       reference_runs=sim.reference_runs, models=sim.models,
                       scores=sim.scores, benchmarks=sim.benchmarks)
    spec = parse_spec({"name": "drift_test", "loss_law": {"irreducible": False},
                       "trend": {"benchmark_drift": True}, "sampler": SMALL_SAMPLER})
    result = fit_data(data, spec, progress=False, predictive=False, baseline=False)
    return result, sim


def test_each_benchmarks_drift_is_recovered(drift_fit):
    result, _ = drift_fit
    assert result.diagnostics.divergences == 0
    kappa = result.idata.posterior["benchmark_drift"]
    for name, truth in DRIFT.items():
        draws = kappa.sel(benchmark=name).values.ravel()
        lo, hi = np.quantile(draws, [(1 - RECOVERY_MASS) / 2, (1 + RECOVERY_MASS) / 2])
        assert lo <= truth <= hi, f"{name}: truth {truth} outside [{lo:.2f}, {hi:.2f}]"
    # the large drifts are found, with their signs
    assert (kappa.sel(benchmark="mmlu") > 0).mean() > 0.95
    assert (kappa.sel(benchmark="bbh") < 0).mean() > 0.95


def test_the_common_slope_survives_the_drift(drift_fit):
    result, sim = drift_fit
    truth = sim.truth["trend"]["slope_post_per_year"]
    draws = result.idata.posterior["slope_post"].values.ravel()
    lo, hi = np.quantile(draws, [(1 - RECOVERY_MASS) / 2, (1 + RECOVERY_MASS) / 2])
    assert lo <= truth <= hi, f"slope_post {truth:.2f} outside [{lo:.2f}, {hi:.2f}]"
