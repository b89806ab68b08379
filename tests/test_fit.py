"""Real MCMC on the simulated paper design: recovery, the run folder, predictions, the CLI.

One fit (module scope) serves every test here; it is small (2 chains x 300 draws) but the
statistics are the point: the truth must sit inside the posterior intervals.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from densing_bayes import __version__
from densing_bayes.analysis.predict import predict_scores
from densing_bayes.inference.run_io import RunFolderError, load_run
from densing_bayes.workflow import fit_to_folder

pytestmark = pytest.mark.integration

#: Recovery is judged with 98% intervals: with a handful of checked quantities, 90% intervals
#: would fail by chance on a sizeable share of seeds even for a perfectly calibrated fit.
RECOVERY_MASS = 0.98


@pytest.fixture(scope="module")
def run(paper_folder, paper_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "paper"
    result = fit_to_folder(paper_spec, out, data_folder=paper_folder, progress=False)
    return out, result


def _inside(draws, truth, mass=RECOVERY_MASS):
    lo, hi = np.quantile(np.asarray(draws).ravel(), [(1 - mass) / 2, (1 + mass) / 2])
    return lo <= truth <= hi, (lo, hi)


def test_geometry_is_clean(run):
    _, result = run
    d = result.diagnostics
    assert d.divergences == 0
    assert d.max_rhat < 1.05  # short chains; the full-size check is in the slow suite


def test_trend_is_recovered(run, paper_sim):
    _, result = run
    truth = paper_sim.truth["trend"]
    post = result.idata.posterior
    for name, key in [("slope_pre", "slope_pre_per_year"), ("slope_post", "slope_post_per_year"),
                      ("frontier_intercept", "intercept")]:
        ok, (lo, hi) = _inside(post[name], truth[key])
        assert ok, f"{name}: truth {truth[key]:.3f} outside [{lo:.3f}, {hi:.3f}]"


def test_effective_sizes_are_recovered(run, paper_sim):
    _, result = run
    post = result.idata.posterior["log_effective_params"]
    covered = [
        _inside(post.sel(model=name), np.log(t["effective_params"]))[0]
        for name, t in paper_sim.truth["models"].items() if name in post["model"].values
    ]
    assert np.mean(covered) >= 0.85, f"only {np.mean(covered):.0%} of effective sizes covered"


def test_loss_exponents_are_recovered(run, paper_sim):
    """At most one of the five exponents outside its 98% interval.

    Requiring all five inside fails a calibrated posterior about 10% of the time (0.98^5); one
    miss or fewer has probability 0.996, so two misses mean the fit is off.
    """
    _, result = run
    post = result.idata.posterior
    misses = []
    for bench, t in paper_sim.truth["benchmarks"].items():
        ok, interval = _inside(post["alpha"].sel(benchmark=bench), t["alpha"])
        if not ok:
            misses.append(f"alpha[{bench}] truth {t['alpha']} outside {interval}")
    assert len(misses) <= 1, "; ".join(misses)


def test_summary_contract(run):
    out, result = run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("ci_prob", "doubling_time_days", "doubling_time_days_pre", "doubling_time_ratio",
                "diagnostics", "models", "paper_baseline"):
        assert key in summary, key
    assert summary["ci_prob"] == 0.9
    assert summary["sampler_metric"] == {}  # the diagonal metric: nothing stored was used
    dt = summary["doubling_time_days"]
    assert dt["lower"] <= dt["median"] <= dt["upper"]
    for key in ("divergences", "max_rhat", "min_ess_bulk", "min_ess_tail", "min_bfmi"):
        assert key in summary["diagnostics"]
    llama = summary["models"]["Llama-1-7B"]
    assert llama["density"]["lower"] < llama["density"]["median"] < llama["density"]["upper"]
    assert summary["paper_baseline"]["trend"]["doubling_time_days"] > 0


def test_run_folder_has_every_group_and_loads_back(run):
    out, _ = run
    loaded = load_run(out)
    groups = set(loaded.idata.groups())
    assert {"posterior", "prior", "posterior_predictive", "log_likelihood", "sample_stats",
            "observed_data"} <= groups
    assert loaded.idata.posterior.attrs["densing_bayes_version"] == __version__
    # the draws reproduce from spec and seed only on the same numerical stack: it is recorded
    from importlib.metadata import version
    stack = json.loads(loaded.idata.posterior.attrs["numerical_stack"])
    assert stack["pymc"] == version("pymc") and stack["nutpie"] == version("nutpie")
    assert loaded.summary["environment"] == stack
    assert "model" in loaded.idata.posterior["density"].dims
    assert (out / "summary.csv").is_file() and (out / "spec.toml").is_file()


def test_load_refuses_a_tampered_spec(run, tmp_path):
    import shutil

    out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    spec_file = copy / "spec.toml"
    spec_file.write_text(spec_file.read_text().replace("seed = 11", "seed = 12"))
    with pytest.raises(RunFolderError, match="config hash"):
        load_run(copy)


def test_prediction_of_a_new_reference_model(run, paper_sim):
    out, _ = run
    table = predict_scores(load_run(out).idata, params=2e9, tokens=4e10)
    assert list(table.columns[:4]) == ["benchmark", "median", "lower", "upper"]
    assert (table["lower"] <= table["median"]).all() and (table["median"] <= table["upper"]).all()
    # The truth's noise-free score of that model should sit inside the predictive interval.
    from densing_bayes import laws

    for _, row in table.iterrows():
        t = paper_sim.truth["benchmarks"][row["benchmark"]]
        loss = laws.loss_law(2e9, 4e10, t["a"], t["alpha"], t["b"], t["beta"], t["E"])
        true = laws.score_from_loss(loss, t["c"], t["gamma"], t["l"], t["d"])
        assert row["lower"] <= true <= row["upper"], row["benchmark"]


def test_refit_refuses_an_occupied_folder(run, paper_spec, paper_folder):
    out, _ = run
    with pytest.raises(RunFolderError, match="--force"):
        fit_to_folder(paper_spec, out, data_folder=paper_folder, progress=False)


def test_refit_from_the_saved_spec_reproduces_the_draws(run, paper_folder):
    """Same data + the run folder's resolved spec and seed -> the same posterior draws."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.workflow import fit_data

    out, result = run
    saved = load_spec(out / "spec.toml")
    again = fit_data(load_data(paper_folder), saved, progress=False, predictive=False,
                     baseline=False)
    for name in ("slope_post", "log_density_deviation", "loss_log_alpha"):
        np.testing.assert_array_equal(again.idata.posterior[name].values,
                                      result.idata.posterior[name].values)


def test_replacing_a_run_keeps_the_sensitivity_analysis_stored_in_it(tmp_path):
    """--force replaces the fit's own files, not the refits another command stored beside it."""
    from densing_bayes.inference.run_io import write_folder_atomically

    out = tmp_path / "run"
    write_folder_atomically(out, {"posterior.nc": lambda p: p.write_text("old draws"),
                                  "report.html": lambda p: p.write_text("old report")}, False)
    (out / "sensitivity").mkdir()
    (out / "sensitivity" / "sensitivity.json").write_text("{\"refits\": 12}")
    with pytest.raises(RunFolderError, match="--force"):
        write_folder_atomically(out, {"posterior.nc": lambda p: p.write_text("new")}, False,
                                keep=("sensitivity",))
    write_folder_atomically(out, {"posterior.nc": lambda p: p.write_text("new draws")}, True,
                            keep=("sensitivity",))
    assert (out / "posterior.nc").read_text() == "new draws"
    assert not (out / "report.html").exists()  # the old run's own output is replaced
    assert (out / "sensitivity" / "sensitivity.json").read_text() == "{\"refits\": 12}"
    assert not list(tmp_path.glob(".run.*"))  # no staging or backup folder left behind


def test_a_failed_replacement_leaves_the_old_run_whole(tmp_path, monkeypatch):
    from densing_bayes.inference import run_io

    out = tmp_path / "run"
    run_io.write_folder_atomically(out, {"posterior.nc": lambda p: p.write_text("old")}, False)
    (out / "sensitivity").mkdir()
    (out / "sensitivity" / "sensitivity.json").write_text("{}")
    real_rename = Path.rename
    failures = []

    def failing_rename(self, target):  # the new folder's swap into place fails, once
        if Path(target) == out and not failures:
            failures.append(self)
            raise OSError("disk full")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        run_io.write_folder_atomically(out, {"posterior.nc": lambda p: p.write_text("new")},
                                       True, keep=("sensitivity",))
    monkeypatch.undo()
    assert failures and (out / "posterior.nc").read_text() == "old"
    assert (out / "sensitivity" / "sensitivity.json").is_file()


def test_every_batch_the_checks_read_beside_a_run_survives_its_replacement():
    """`run --force` deleted reports/default/sbc_bundled and misspecification (an hour each):
    every folder the calibration checks read beside a run is another job's output."""
    from densing_bayes.analysis import checks
    from densing_bayes.inference.run_io import RUN_OWN_FOLDERS

    read_beside = {*checks.SBC_FOLDERS, checks.POSTERIOR_SBC_FOLDER,
                   checks.MISSPECIFICATION_FOLDER, "sensitivity"}
    assert not read_beside & set(RUN_OWN_FOLDERS)  # every other subfolder is kept
