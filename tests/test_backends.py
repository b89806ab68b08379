"""Sampler backends: every one selectable in the spec and on the command line, a clear error
when one is not installed, and the optional NumPyro backend reproducible from its seed."""

import sys

import numpy as np
import pytest

from densing_bayes.inference.sample import sample_model
from densing_bayes.model.build import build_model
from densing_bayes.model.inputs import prepare_inputs
from densing_bayes.model.spec import BackendUnavailableError, SpecError, parse_spec
from densing_bayes.presentation.cli import main


@pytest.mark.parametrize("backend", ["nutpie", "pymc", "numpyro"])
def test_spec_accepts_every_backend(backend):
    assert parse_spec({"name": "b", "sampler": {"backend": backend}}).sampler.backend == backend


def test_spec_rejects_an_unknown_backend():
    with pytest.raises(SpecError, match="backend"):
        parse_spec({"name": "b", "sampler": {"backend": "stan"}})


@pytest.fixture
def without_numpyro(monkeypatch):
    """Make ``import numpyro`` fail as on a machine without the optional extra."""
    monkeypatch.setitem(sys.modules, "numpyro", None)


def test_missing_numpyro_names_the_extra(without_numpyro, paper_data, paper_spec):
    spec = paper_spec.model_copy(update={"sampler": paper_spec.sampler.model_copy(
        update={"backend": "numpyro"})})
    model = build_model(prepare_inputs(paper_data, spec), spec)
    with pytest.raises(BackendUnavailableError, match=r"densing_bayes\[numpyro\]"):
        sample_model(model, spec.sampler, progress=False, predictive=False)


def test_cli_reports_a_missing_backend_and_writes_nothing(without_numpyro, paper_folder,
                                                          tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", "paper_design", "--data", str(paper_folder), "--out", str(out),
                 "--backend", "numpyro", "--draws", "10", "--tune", "10", "--quiet"])
    assert code == 2
    assert "densing_bayes[numpyro]" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
def test_numpyro_fit_is_reproducible_from_its_seed(paper_data, paper_spec):
    pytest.importorskip("numpyro")
    pytest.importorskip("jax")
    sampler = paper_spec.sampler.model_copy(update={"backend": "numpyro", "draws": 50,
                                                    "tune": 50, "chains": 2})
    spec = paper_spec.model_copy(update={"sampler": sampler})
    model = build_model(prepare_inputs(paper_data, spec), spec)
    first, times = sample_model(model, sampler, progress=False, predictive=False)
    second, _ = sample_model(model, sampler, progress=False, predictive=False)
    assert first.posterior.sizes["chain"] == 2 and first.posterior.sizes["draw"] == 50
    np.testing.assert_array_equal(first.posterior["slope_post"].values,
                                  second.posterior["slope_post"].values)
    assert times.compile_seconds > 0 and times.sample_seconds > 0


def test_a_failing_predictive_step_keeps_the_posterior_draws(monkeypatch, private_cache):
    """Bug (2026-12-01): a shape error in the predictive step threw away a 33-minute sampling.
    The draws must survive in the cache, and the error must say where."""
    import arviz as az
    import pymc as pm

    from densing_bayes.inference import sample as S
    from densing_bayes.model.spec import SamplerSettings

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("log_loss_obs", mu, 1.0, observed=np.array([0.2, -0.1, 0.4]))

    def broken(*args, **kwargs):
        raise ValueError("shapes (1, 12) and (700,) do not broadcast")

    monkeypatch.setattr(S, "_add_predictive", broken)
    settings = SamplerSettings(backend="pymc", draws=30, tune=30, chains=1, seed=11)
    with pytest.raises(S.PredictiveStepError, match="do not broadcast") as caught:
        sample_model(model, settings, progress=False, predictive=True)
    kept = list((private_cache / "kept_posteriors").glob("posterior_seed11_*.nc"))
    assert len(kept) == 1 and str(kept[0]) in str(caught.value)
    saved = az.from_netcdf(str(kept[0]))
    assert saved.posterior["mu"].shape == (1, 30)
    assert np.isfinite(saved.posterior["mu"].values).all() and "sample_stats" in saved.groups()
