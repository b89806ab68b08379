"""Full-size checks (excluded from the default run; `pytest -m slow`).

The geometry requirement of the joint model: 4 chains x 1000 draws on the bundled data and on
the simulated paper design give 0 divergences, R-hat <= 1.01 and bulk/tail ESS >= 400 for every
sampled parameter.
"""

import pytest

from densing_bayes.data.load import load_data
from densing_bayes.model.spec import load_spec
from densing_bayes.resources import bundled_data_folder
from densing_bayes.workflow import fit_data

pytestmark = pytest.mark.slow


def _assert_thresholds(result, spec):
    failures = result.diagnostics.failures(spec.diagnostics)
    assert not failures, "\n".join(failures)


def test_default_spec_on_bundled_data_meets_thresholds():
    spec = load_spec("default")
    result = fit_data(load_data(bundled_data_folder("default")), spec, progress=False)
    _assert_thresholds(result, spec)


def test_paper_design_meets_thresholds(paper_data):
    spec = load_spec("paper_design")
    result = fit_data(paper_data, spec, progress=False)
    _assert_thresholds(result, spec)
