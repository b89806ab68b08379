"""The extrapolation tilt's SD: its closed form, and the spec default it calibrates."""

from pathlib import Path

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
def test_the_default_tilt_sd_is_the_committed_calibration():
    """The spec default is the committed calibration's result, by its written rule (the larger
    split). The live recomputation is not compared: ``map_loss_law``'s L-BFGS-B stops short on
    the hierarchical loss law, whose MAP is degenerate (the exponents' SD can shrink to 0), so
    its result depends on the numerical stack: 0.0349 for the larger split on the stack that
    committed it, 0.0269 on 2026-12-02's machine with the same package versions; on that
    split BFGS stops 90 higher in log posterior and Powell 4,570 higher, all three with the
    exponents pooled to one value (docs/model.md, "Extrapolation tilt"). Recalibrating on a
    well-posed estimate changes the default model and is left open."""
    import json

    spec = load_spec("default")
    root = Path(__file__).resolve().parent.parent
    record = json.loads((root / "reports" / "extrapolation" / "calibration.json").read_text())
    assert [s["rows"] for s in record["splits"]] == [60, 120]  # 6 runs of each size x 10 benchmarks
    assert record["calibrated_sd"] == max(s["sd_per_unit_distance"] for s in record["splits"])
    assert record["calibrated_sd"] == pytest.approx(spec.loss_law.extrapolation_sd, abs=0.001)
    result = calibrate(load_data(resources.resolve_data_folder("default")), spec)
    assert [s["rows"] for s in result["splits"]] == [60, 120]
    assert all(0.0 < s["sd_per_unit_distance"] < 0.1 for s in result["splits"])
