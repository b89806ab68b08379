"""The extrapolation tilt's SD: its closed form, and the spec default it calibrates."""

import numpy as np
import pandas as pd
import pytest

from densing_bayes import resources
from densing_bayes.analysis.extrapolation import calibrate, sd_per_distance
from densing_bayes.data.load import load_data
from densing_bayes.model.spec import load_spec


def test_sd_per_distance_removes_the_laws_own_noise():
    # errors 0.05 at distance 1 and 0.10 at distance 2, noise 0.03: excess^2 = 0.0016 + 0.0091
    errors = pd.DataFrame({"log_error": [0.05, -0.10], "noise_sd": [0.03, 0.03],
                           "distance": [1.0, 2.0]})
    assert sd_per_distance(errors) == pytest.approx(np.sqrt((0.0016 + 0.0091) / 5.0))
    # errors within the noise leave nothing to attribute to extrapolation
    quiet = errors.assign(log_error=[0.01, 0.02])
    assert sd_per_distance(quiet) == 0.0


@pytest.mark.integration
def test_the_default_tilt_sd_is_the_ladders_calibration():
    spec = load_spec("default")
    result = calibrate(load_data(resources.resolve_data_folder("default")), spec)
    assert [s["rows"] for s in result["splits"]] == [60, 120]  # 6 runs of each size x 10 benchmarks
    assert result["calibrated_sd"] == pytest.approx(spec.loss_law.extrapolation_sd, abs=0.001)
