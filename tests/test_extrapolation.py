"""The extrapolation tilt's SD: its closed form, and the spec default it calibrates."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from densing_bayes import resources
from densing_bayes.analysis.extrapolation import (SPLITS, benchmark_bootstrap, calibrate,
                                                    held_out_summary, leave_benchmark_out_tilt,
                                                    moment_sd, z_scale_sd,
                                                    predictive_z, sd_per_distance, split_errors)
from densing_bayes.data.load import load_data
from densing_bayes.model.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def test_sd_per_distance_removes_the_laws_own_noise():
    # errors 0.05 at distance 1 and 0.10 at distance 2, noise 0.03: excess^2 = 0.0016 + 0.0091
    errors = pd.DataFrame({"log_error": [0.05, -0.10], "noise_sd": [0.03, 0.03],
                           "distance": [1.0, 2.0]})
    assert sd_per_distance(errors) == pytest.approx(np.sqrt((0.0016 + 0.0091) / 5.0))
    # errors within the noise leave nothing to attribute to extrapolation
    quiet = errors.assign(log_error=[0.01, 0.02])
    assert sd_per_distance(quiet) == 0.0


def test_sd_per_distance_also_removes_the_laws_posterior_uncertainty():
    # the full model already propagates the fitted law's uncertainty: it is not tilt
    errors = pd.DataFrame({"log_error": [0.05, -0.10], "noise_sd": [0.03, 0.03],
                           "law_sd": [0.02, 0.05], "distance": [1.0, 2.0]})
    # excess^2 = 0.0025 - 0.0009 - 0.0004 + 0.01 - 0.0009 - 0.0025
    assert sd_per_distance(errors) == pytest.approx(np.sqrt((0.0012 + 0.0066) / 5.0))


def test_benchmark_bootstrap_resamples_whole_benchmarks():
    errors = pd.DataFrame({"benchmark": ["a", "a", "b"], "log_error": [0.1, 0.1, 0.0],
                           "noise_sd": [0.0, 0.0, 0.0], "distance": [1.0, 1.0, 1.0]})
    boot = benchmark_bootstrap(errors, seed=1, n=2000)
    # each resample is (a, a), (a, b), (b, a) or (b, b): SD 0.1, sqrt(0.02 / 3), 0
    assert set(np.round(boot, 6)) == {0.1, round(np.sqrt(0.02 / 3), 6), 0.0}
    assert np.mean(boot == 0.0) == pytest.approx(0.25, abs=0.04)


def test_split_errors_rows_and_their_uncertainty_with_a_mock_sampler():
    """The held-back rows of each split, with a law SD taken across posterior draws (prior
    draws here: ``mock_sample``, so only the bookkeeping is checked)."""
    from pymc.testing import mock_sample

    data = load_data(resources.resolve_data_folder("default"))
    spec = load_spec("default")
    for (_, fitted, predicted), n_rows in zip(SPLITS, (60, 120)):
        errors, fit = split_errors(data, spec, fitted, predicted, draws=20, chains=2,
                                   sample=mock_sample)
        assert len(errors) == n_rows  # 6 runs of each held-back size x 10 benchmarks
        assert fit["chains"] == 2 and fit["draws"] == 20
        assert (errors["law_sd"] > 0).all() and (errors["noise_sd"] > 0).all()
        assert (errors["distance"] > 0).all()  # every held-back size lies outside the box


def test_the_default_tilt_sd_is_the_committed_calibration():
    """The spec default is the committed calibration's result, by its written rule (the larger
    split, rounded to 3 decimals), and the calibration's fits were clean. The live
    recomputation (4 minutes) is the slow test below."""
    import json

    spec = load_spec("default")
    record = json.loads((ROOT / "reports" / "extrapolation" / "calibration.json").read_text())
    assert [s["rows"] for s in record["splits"]] == [60, 120]  # 6 runs of each size x 10 benchmarks
    assert record["calibrated_sd"] == max(s["sd_per_unit_distance"] for s in record["splits"])
    assert spec.loss_law.extrapolation_sd == round(record["calibrated_sd"], 3)
    for split in record["splits"]:
        assert split["fit"]["divergences"] == 0 and split["fit"]["max_r_hat"] <= 1.01
        low, high = split["sd_per_unit_distance_90"]
        assert low <= split["sd_per_unit_distance"] <= high


@pytest.mark.slow
def test_the_calibration_reproduces_from_the_seed():
    """A fresh calibration gives the committed SD up to Monte Carlo error (the point fit it
    replaced did not: docs/model.md, "Extrapolation tilt")."""
    import json

    record = json.loads((ROOT / "reports" / "extrapolation" / "calibration.json").read_text())
    result = calibrate(load_data(resources.resolve_data_folder("default")), load_spec("default"))
    for live, committed in zip(result["splits"], record["splits"]):
        assert live["sd_per_unit_distance"] == pytest.approx(committed["sd_per_unit_distance"],
                                                             abs=0.001)


def test_predictive_z_adds_noise_law_and_tilt_variances():
    errors = pd.DataFrame({"log_error": [0.05, -0.10], "noise_sd": [0.03, 0.03],
                           "law_sd": [0.04, 0.0], "distance": [1.0, 2.0]})
    z = predictive_z(errors, 0.0)
    assert z == pytest.approx([0.05 / 0.05, -0.10 / 0.03])
    z = predictive_z(errors, np.array([0.0, 0.02]))  # a tilt SD per row
    assert z == pytest.approx([1.0, -0.10 / np.sqrt(0.0009 + 0.0016)])


def test_leave_benchmark_out_tilt_never_uses_the_rows_own_benchmark():
    # benchmark a errs far beyond its noise, b does not: a's rows are judged by b's tilt (0),
    # b's rows by the tilt a alone implies; the larger split's estimate wins, as in the rule
    a = {"benchmark": "a", "noise_sd": 0.0, "law_sd": 0.0, "distance": 1.0}
    b = {"benchmark": "b", "noise_sd": 0.0, "law_sd": 0.0, "distance": 1.0}
    split1 = pd.DataFrame([{**a, "log_error": 0.2}, {**b, "log_error": 0.0}])
    split2 = pd.DataFrame([{**a, "log_error": 0.1}, {**b, "log_error": 0.0}])
    tilt1, tilt2 = leave_benchmark_out_tilt([split1, split2])
    assert tilt1 == pytest.approx([0.0, 0.2]) and tilt2 == pytest.approx([0.0, 0.2])


def test_held_out_summary_counts_coverage_with_and_without_the_tilt():
    errors = pd.DataFrame({"benchmark": ["a"] * 4, "log_error": [0.0, 0.1, -0.1, 0.3],
                           "noise_sd": [0.05] * 4, "law_sd": [0.0] * 4,
                           "distance": [1.0] * 4})
    h = held_out_summary(errors, np.full(4, 0.1), tilt_sd=0.0)
    # predictive SD sqrt(0.05^2 + 0.1^2) = 0.112: |z| 0, 0.89, 0.89, 2.68 against 1.645
    assert h["n"] == 4 and h["inside"] == 3 and h["share_above"] == pytest.approx(0.25)
    # without a tilt the SD is the noise's 0.05: |z| 0, 2, 2, 6
    assert h["inside_without_tilt"] == 1 and h["inside_spec_tilt"] == 1
    assert len(h["pit"]) == 4 and h["pit"][0] == pytest.approx(0.5)


def test_calibrate_records_each_splits_held_out_coverage_with_a_mock_sampler():
    """The record the report's leave-size-out check reads: per split its coverage and rows
    (prior draws here: ``mock_sample``, so only the bookkeeping is checked)."""
    from pymc.testing import mock_sample

    data = load_data(resources.resolve_data_folder("default"))
    result = calibrate(data, load_spec("default"), draws=20, chains=2, sample=mock_sample)
    for split, n_rows in zip(result["splits"], (60, 120)):
        h = split["held_out"]
        assert h["n"] == n_rows == len(split["rows_detail"]["log_error"]) == len(h["pit"])
        assert 0 <= h["inside_without_tilt"] <= h["inside_spec_tilt"] <= n_rows
        assert h["n_benchmarks"] == 10


def test_the_per_row_truncation_overstates_the_tilt_and_the_untruncated_estimators_do_not():
    # two rows at distance 1, noise 0.1: errors 0.12 and 0.0. Per row, the first has excess
    # 0.0044 and the second -0.01, truncated to 0: the rule reports sqrt(0.0044 / 2) > 0
    # although the errors are smaller than the noise on average
    errors = pd.DataFrame({"log_error": [0.12, 0.0], "noise_sd": [0.1, 0.1],
                           "law_sd": [0.0, 0.0], "distance": [1.0, 1.0]})
    assert sd_per_distance(errors) == pytest.approx(np.sqrt(0.0044 / 2))
    assert moment_sd(errors) == 0.0 and z_scale_sd(errors) == 0.0
    # errors beyond the noise: both give the t that accounts for them
    wide = errors.assign(log_error=[0.2, -0.2])  # e^2 = 0.04 = 0.01 + t^2
    assert moment_sd(wide) == pytest.approx(np.sqrt(0.03))
    assert z_scale_sd(wide) == pytest.approx(np.sqrt(0.03), rel=1e-6)
