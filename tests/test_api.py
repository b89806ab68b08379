"""The Python API as a user meets it: the documented quick start runs, a saved run reloads
(from the thinned copy too), predictions and summaries have the documented shape."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import densing_bayes as db
from densing_bayes.inference.run_io import POSTERIOR_FILE, RunFolderError
from densing_bayes.inference.thin import THIN_FILE
from densing_bayes.model.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
MARKERS = re.compile(r"<!-- quickstart -->\s*```python\n(.*?)```\s*<!-- /quickstart -->", re.S)
#: Tiny sampler settings: these tests check plumbing, not statistics.
TINY = {"draws": 30, "tune": 30, "chains": 2, "seed": 5}
#: How the quick start is shrunk for the test: (text in the snippet, replacement).
#: Every pattern must occur exactly once, so a changed snippet fails here instead of running big.
QUICKSTART_SHRINK = (
    ('db.load_data("default")', "db.load_data(SIM_FOLDER)"),
    ('db.fit("default", ', 'db.fit("paper_design", '),
    ("draws=300, tune=300, chains=2", "draws=30, tune=30, chains=2"),
)


def quickstart_snippets() -> dict[str, str]:
    """The quick start of docs/python-api.md, and of README.md once it embeds one."""
    found = {}
    for name in ("docs/python-api.md", "README.md"):
        path = ROOT / name
        if path.is_file():
            for i, code in enumerate(MARKERS.findall(path.read_text())):
                found[f"{name}#{i}"] = code
    return found


def test_the_docs_have_a_quickstart_between_markers():
    assert "docs/python-api.md#0" in quickstart_snippets()


# ------------------------------------------------------------------ no sampling
def test_bundled_names_work_in_python():
    data = db.load_data("default")
    assert len(data.reference_runs) > 1000 and data.has_evaluated_models
    assert db.load_spec("default").name == "default"
    assert db.load_spec({"name": "from_dict"}).name == "from_dict"


def test_public_names_are_exported():
    assert {"fit", "load", "load_data", "load_spec", "DensingFit"} <= set(dir(db))


def test_fit_refuses_unknown_keywords_before_sampling(paper_folder):
    with pytest.raises(TypeError, match="sampler settings are"):
        db.fit("paper_design", paper_folder, draw=10)


def test_a_spec_without_its_data_names_the_remedy():
    with pytest.raises(FileNotFoundError, match="simulate"):
        db.fit("paper_design")


def test_a_bad_sampler_value_is_a_spec_error(paper_folder):
    with pytest.raises(SpecError):
        db.fit("paper_design", paper_folder, chains=0)


def test_a_run_without_draws_names_the_refit_command(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(RunFolderError, match="densing-bayes run"):
        db.load(tmp_path)


# ------------------------------------------------------------------ real (tiny) MCMC
@pytest.fixture(scope="module")
def saved_run(paper_folder, tmp_path_factory):
    """A tiny fit saved to a run folder, then its posterior.nc deleted: a fresh clone's view."""
    folder = tmp_path_factory.mktemp("api") / "run"
    fitted = db.fit("paper_design", paper_folder, progress=False, save_to=folder, **TINY)
    assert (folder / THIN_FILE).is_file() and (folder / POSTERIOR_FILE).is_file()
    full_summary = fitted.summary()
    (folder / POSTERIOR_FILE).unlink()
    return folder, fitted, full_summary


@pytest.mark.integration
def test_load_summary_and_predict_fall_back_to_the_thinned_copy(saved_run):
    folder, fitted, full_summary = saved_run
    loaded = db.load(folder)
    assert loaded.thinned and not fitted.thinned
    assert loaded.spec.data.folder == str(fitted.data.folder)  # refitting spec.toml finds it
    table = loaded.summary()
    assert list(table.columns) == ["quantity", "model", "median", "lower", "upper", "ci_prob"]
    dt = table.set_index("quantity").loc["doubling_time_days"]
    assert 0 < dt["lower"] <= dt["median"] <= dt["upper"]
    # summary.json is the full run's: the thinned copy changes the draws, not the summary
    pd.testing.assert_frame_equal(table, full_summary)
    assert "thinned" in table.attrs["note"]
    assert {"density", "effective_params"} <= set(table["quantity"])
    pred = loaded.predict(params=2e9, tokens=4e10)
    assert list(pred["benchmark"]) == list(fitted.idata.posterior.coords["benchmark"].values)
    assert ((pred["lower"] <= pred["median"]) & (pred["median"] <= pred["upper"])).all()
    assert pred[["lower", "upper"]].apply(lambda c: c.between(0, 1)).all().all()
    # the thinned copy predicts what the full draws predict, up to Monte Carlo noise
    full = fitted.predict(params=2e9, tokens=4e10)
    assert np.allclose(pred["median"], full["median"], atol=0.05)


@pytest.mark.integration
def test_cli_predict_reads_the_thinned_copy_and_human_sizes(saved_run):
    folder = saved_run[0]
    result = subprocess.run([sys.executable, "-m", "densing_bayes.presentation.cli", "predict",
                             str(folder), "--params", "2B", "--tokens", "40B"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(__import__("io").StringIO(result.stdout))
    assert list(table.columns[:4]) == ["benchmark", "median", "lower", "upper"]
    assert len(table) == saved_run[1].idata.posterior.sizes["benchmark"]


@pytest.mark.integration
def test_plots_return_figures(saved_run):
    from matplotlib.figure import Figure

    loaded = db.load(saved_run[0])
    for name in ("plot_density_trend", "plot_doubling_time", "plot_loss_law", "plot_energy"):
        assert isinstance(getattr(loaded, name)(), Figure), name


@pytest.mark.integration
@pytest.mark.parametrize("source", sorted(quickstart_snippets()))
def test_quickstart_runs(source, paper_folder, tmp_path, monkeypatch):
    code = quickstart_snippets()[source]
    if 'db.load("reports/default")' in code:
        # loads the committed reference run (its thinned posterior): no fit, runs as written
        monkeypatch.chdir(Path(__file__).resolve().parents[1])
        namespace = {}
        exec(compile(code, source, "exec"), namespace)
        assert "doubling_time_days" in set(namespace["fit"].summary()["quantity"])
        return
    for old, new in QUICKSTART_SHRINK:
        assert code.count(old) == 1, f"{source}: quick start no longer contains {old!r}"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace = {"SIM_FOLDER": str(paper_folder)}
    exec(compile(code, source, "exec"), namespace)
    assert (tmp_path / "runs" / "first" / "summary.json").is_file()
    assert "doubling_time_days" in set(namespace["fit"].summary()["quantity"])


@pytest.mark.integration
def test_the_loss_law_alone(paper_sim, tmp_path):
    """A folder of (params, tokens, loss) rows fits a loss law and predicts the loss."""
    runs = paper_sim.reference_runs
    runs = runs[runs["params"].notna()][["run_id", "benchmark", "params", "tokens", "loss"]]
    folder = tmp_path / "law"
    folder.mkdir()
    runs.to_csv(folder / "reference_runs.csv", index=False)
    fitted = db.fit("paper_design", folder, progress=False, **TINY)
    assert not fitted.has_models and "gamma" not in fitted.idata.posterior
    assert set(fitted.summary()["quantity"]) >= {"alpha", "beta", "a", "b"}
    small, large = (fitted.predict(params=n, tokens=20 * n) for n in (1e8, 1e10))
    assert (small["quantity"] == "loss").all()
    assert (large["median"] < small["median"]).all()  # more compute, lower loss
    assert ((small["lower"] < small["median"]) & (small["median"] < small["upper"])).all()
    html = fitted.report(tmp_path / "run").read_text()
    assert "could not be drawn" not in html  # no figure asks for the sigmoid it lacks


@pytest.mark.integration
def test_report_of_a_loaded_run_reads_the_folder_once(saved_run, tmp_path, monkeypatch):
    import shutil

    from densing_bayes import api
    from densing_bayes.inference.run_io import load_run
    from densing_bayes.presentation import report

    folder = shutil.copytree(saved_run[0], tmp_path / "run")
    reads, rendered = [], []

    def counting_load(path):
        reads.append(Path(path))
        return load_run(path)

    def fake_render(run, **_):
        rendered.append(run)
        return "<html></html>"

    monkeypatch.setattr(api, "load_run", counting_load)
    monkeypatch.setattr(report, "load_run", counting_load)
    monkeypatch.setattr(report, "render_report", fake_render)
    loaded = db.load(folder)
    assert loaded.report().read_text() == "<html></html>"
    assert len(reads) == 1 and rendered[0].idata is loaded.idata
    # changed since it was loaded: the report reads what is on disk, not the changed draws
    loaded.idata = loaded.idata.sel(draw=slice(0, 5))
    loaded.report()
    assert len(reads) == 2 and rendered[1].idata is not loaded.idata
