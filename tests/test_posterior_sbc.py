"""Posterior SBC (Sailynoja et al. 2025): the replicated design, the joint model of the real
data and a replicate, and a small batch of the real job."""

import dataclasses

import numpy as np
import pytest

from densing_bayes.analysis import calibration as cal
from densing_bayes.model.build import build_model
from densing_bayes.model.inputs import ROW_FIELDS, ModelInputs, prepare_inputs, replicate_rows
from densing_bayes.model.spec import load_spec


@pytest.fixture(scope="module")
def bundled_inputs():
    spec = load_spec("default")
    return spec, prepare_inputs(cal.design_data(design="bundled", spec=spec), spec)


def test_row_fields_are_exactly_the_per_row_fields(bundled_inputs):
    """A per-row field left out of ROW_FIELDS would pair a replicate's rows with the wrong
    covariates; this fails when ModelInputs gains one."""
    _, inputs = bundled_inputs
    rows = {len(inputs.law_loss), len(inputs.curve_loss), len(inputs.score_value)}
    per_row = set()
    for f in dataclasses.fields(ModelInputs):
        value = getattr(inputs, f.name)
        if isinstance(value, (list, np.ndarray)) and len(value) in rows:
            per_row.add(f.name)
    assert per_row <= set(ROW_FIELDS)
    for name in ROW_FIELDS:  # the listed ones have a row's length (or are unused: empty)
        assert len(getattr(inputs, name)) in rows | {0}, name


def test_replicated_rows_repeat_the_design(bundled_inputs):
    _, inputs = bundled_inputs
    twice = replicate_rows(inputs, 2)
    n = len(inputs.score_value)
    assert len(twice.score_value) == 2 * n and twice.models == inputs.models
    np.testing.assert_array_equal(twice.score_model[n:], inputs.score_model)
    np.testing.assert_array_equal(twice.score_format_log_weight[n:],
                                  inputs.score_format_log_weight)
    assert twice.law_run[len(inputs.law_run):] == inputs.law_run
    with pytest.raises(ValueError, match="at least 1"):
        replicate_rows(inputs, 0)


@pytest.mark.integration
def test_the_doubled_model_adds_the_replicates_likelihood_exactly(bundled_inputs):
    """With the replicate equal to the data, the joint log density is the single model's plus
    its log-likelihood once more (same parameters, same latents, rows counted twice)."""
    spec, inputs = bundled_inputs
    single = build_model(inputs, spec)
    double = build_model(replicate_rows(inputs, 2), spec)
    assert [v.name for v in single.free_RVs] == [v.name for v in double.free_RVs]
    point = single.initial_point()
    logp = single.compile_logp()(point)
    loglik = single.compile_logp(vars=single.observed_RVs)(point)
    assert double.compile_logp()(point) == pytest.approx(logp + loglik, rel=1e-9)


@pytest.fixture(scope="module")
def paper_run(paper_folder, tmp_path_factory):
    """A small fit of the paper design, saved as a run folder."""
    import densing_bayes as db

    folder = tmp_path_factory.mktemp("psbc") / "run"
    db.fit("paper_design", paper_folder, progress=False, save_to=folder,
           draws=100, tune=100, chains=2, seed=3)
    return folder


def test_another_model_than_the_runs_is_refused(paper_run, tmp_path):
    from densing_bayes.inference.run_io import load_run
    from densing_bayes.model.spec import SpecError

    spec = load_run(paper_run).spec.with_overrides(
        {"priors": {"slope_post": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 1.0}}}})
    with pytest.raises(SpecError, match="another model"):
        cal.run_posterior_sbc(spec, paper_run, 2, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_replicate_the_model_cannot_score_redraws_the_truth_with_it():
    """Redrawing only the replicate weights each truth by 1 / P(accept | truth), so its ranks
    are not uniform; here truths 0-8 can never give a finite likelihood, and the old rule
    tried the same truth 50 times and gave up."""
    from types import SimpleNamespace

    truths = {"mu": np.array([0.0] * 9 + [1.0])}
    fit = SimpleNamespace(loglik_params=["mu"], loglik_data=["y"],
                          loglik_fn=lambda mu, y: 0.0 if mu == 1.0 else -np.inf)
    structure = SimpleNamespace(fit=fit, truths=truths, free=["mu"], forward_rngs=[],
                                forward_fn=lambda mu: [np.array([mu])],
                                real={"y": np.array([5.0])})
    truth, observed, attempts = cal._posterior_draw(structure, seed=3)
    assert truth["mu"] == 1.0 and attempts > 1
    assert observed["y"].tolist() == [5.0, 1.0]  # the real data, then the replicate


def test_joint_fits_are_whitened_by_the_runs_own_metric(paper_run):
    """A dense-metric spec whitens posterior SBC's joint fits with the run's recorded metric
    (the committed reference's, as its summary names it); a diagonal spec, or a run without
    a metric, keeps the diagonal metric. Which one is in the batch manifest, so a batch is
    never resumed under the other."""
    import json
    from pathlib import Path

    from densing_bayes.inference import metric as M
    from densing_bayes.inference.run_io import load_run

    reference = Path(__file__).resolve().parents[1] / "reports" / "default"
    spec = load_spec("default")
    recorded = json.loads((reference / "summary.json").read_text())["sampler_metric"]
    metric = cal.joint_fit_metric(spec, reference)
    assert M.metric_digest(metric) == recorded["sha256"]
    assert cal.joint_fit_metric_record(spec, reference) == recorded["sha256"]
    diagonal = spec.with_overrides({"sampler": {"mass_matrix": "diag"}})
    assert cal.joint_fit_metric(diagonal, reference) is None
    assert cal.joint_fit_metric_record(diagonal, reference) == "diagonal"
    # the small paper fit was not whitened: it has no metric to give
    assert cal.joint_fit_metric_record(load_run(paper_run).spec.with_overrides(
        {"sampler": {"mass_matrix": "dense"}}), paper_run) == "diagonal"


@pytest.mark.slow  # end-to-end batch run: minutes of compiling and sampling (run with -m slow)
def test_small_posterior_sbc_batch(paper_run, tmp_path):
    import json

    import pandas as pd

    from densing_bayes.inference.run_io import load_run

    spec = load_run(paper_run).spec.with_overrides(
        {"sampler": {"draws": 60, "tune": 60, "chains": 1, "seed": 4}})
    report = cal.run_posterior_sbc(spec, paper_run, 2, tmp_path / "psbc", n_workers=1,
                                   progress=False)
    table = pd.read_csv(tmp_path / "psbc" / cal.RANKS_CSV)
    assert len(table) == 2 and (table["status"] == "ok").all(), table.get("error")
    ranks = table.filter(like="rank_")
    assert {"rank_slope_post", "rank_alpha[mmlu]", "rank_log_likelihood"} <= set(ranks.columns)
    assert (ranks >= 0).all().all() and ranks.le(table["n_draws"], axis=0).all().all()
    assert report["posterior_of"] == str(paper_run)
    assert json.loads((tmp_path / "psbc" / cal.SBC_JSON).read_text())["posterior_of"]
    from densing_bayes.inference.run_io import file_sha256
    from densing_bayes.inference.thin import THIN_FILE

    assert report["truths_from"] == {"file": THIN_FILE,
                                     "sha256": file_sha256(paper_run / THIN_FILE)}
    # every truth is one of the run's thinned posterior draws
    draws = cal.posterior_sbc_draws(spec, paper_run)["slope_post"].values.ravel()
    for path in sorted((tmp_path / "psbc" / "tasks").glob("*.json")):
        result = json.loads(path.read_text())["result"]
        truth = result["truth"]
        assert np.min(np.abs(draws - truth["slope_post"])) < 1e-12
        # the joint log-likelihood is exactly its real half plus its replicate half
        assert truth["log_likelihood"] == pytest.approx(
            truth["log_likelihood_real"] + truth["log_likelihood_replicate"], rel=1e-9)
        assert {"log_likelihood_real", "log_likelihood_replicate"} <= set(result["ranks"])
    assert report["timing"]["n_compiles"] == 1


@pytest.mark.slow  # a whitened fit and a two-simulation batch: minutes (run with -m slow)
def test_a_whitened_posterior_sbc_batch_refits_in_the_runs_coordinates(paper_folder,
                                                                       tmp_path):
    """A run whitened by a dense metric (here a pilot's) gives posterior SBC a metric: the
    batch records its SHA-256, every joint fit is clean, and its draws carry the model's own
    variables (the whitened coordinates are dropped), so the ranks are of the same
    quantities as a diagonal batch's."""
    import json

    import pandas as pd

    import densing_bayes as db
    from densing_bayes.inference import metric as M
    from densing_bayes.inference.run_io import load_run

    spec = load_spec("paper_design").with_overrides(
        {"sampler": {"mass_matrix": "dense", "pilot_draws": 100}})
    run = tmp_path / "run"
    db.fit(spec, paper_folder, progress=False, save_to=run, draws=100, tune=100, chains=2,
           seed=3)
    metric = M.metric_from_run(run)
    small = load_run(run).spec.with_overrides(
        {"sampler": {"draws": 60, "tune": 60, "chains": 1, "seed": 4}})
    report = cal.run_posterior_sbc(small, run, 2, tmp_path / "psbc", n_workers=1,
                                   progress=False)
    assert report["joint_fit_metric"] == M.metric_digest(metric)
    manifest = json.loads((tmp_path / "psbc" / "batch.json").read_text())
    assert manifest["joint_fit_metric"] == M.metric_digest(metric)
    table = pd.read_csv(tmp_path / "psbc" / cal.RANKS_CSV)
    assert len(table) == 2 and (table["status"] == "ok").all(), table.get("error")
    assert {"rank_slope_post", "rank_alpha[mmlu]", "rank_log_likelihood"} <= set(table)
    ranks = table.filter(like="rank_")
    assert (ranks >= 0).all().all() and ranks.le(table["n_draws"], axis=0).all().all()


@pytest.mark.parametrize("extra, message", [
    ([], "is not a run folder"),
    (["--design", "bundled"], "leave out --design"),
])
def test_posterior_flag_errors_are_one_line(tmp_path, capsys, extra, message):
    from densing_bayes.presentation.cli import main

    code = main(["sbc", "--posterior", str(tmp_path / "no_run"), "--simulations", "2",
                 "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_replicates_are_draws_of_the_likelihood_the_fit_scores(bundled_inputs):
    """Posterior SBC's ranks are uniform only if each replicate is drawn from the density the
    joint fit scores it with. Score identity: for y ~ p(y | theta),
    E[d/dtheta log p(y | theta)] = 0 in every coordinate. With 300 replicates (posterior
    SBC's own forward function) at one draw of the committed reference posterior, each
    coordinate's mean score over its standard error is about N(0, 1); a random function that
    differs from its log-density (a wrong precision, format or ceiling) moves its parameters'
    z far beyond 5. Measured 2026-12-02, while the OpenBookQA exponent's ranks were flagged:
    largest |z| 3.3 over the 270 coordinates the likelihood touches; scored at a precision 20%
    off, 21.7 from 50 replicates."""
    from pathlib import Path

    import pytensor
    import pytensor.tensor as pt
    from pymc.pytensorf import reseed_rngs

    spec, inputs = bundled_inputs
    single = build_model(inputs, spec)
    forward, rngs, free = cal.forward_replicate(single)
    params, data, loglik = cal.loglik_graph(single)
    score = pytensor.function([*params, *data],
                              pt.grad(loglik, params, disconnected_inputs="ignore"),
                              on_unused_input="ignore")
    reference = Path(__file__).resolve().parents[1] / "reports" / "default"
    stacked = cal.posterior_sbc_draws(spec, reference).stack(sample=("chain", "draw"))
    truth = {v.name: stacked[v.name].values[..., 123] for v in single.free_RVs}
    names = [single.rvs_to_values[rv].name for rv in single.observed_RVs]

    def scores(at: dict, seeds) -> np.ndarray:
        """Scores at ``at`` of replicates drawn given the truth, one row per seed."""
        rows = []
        for seed in seeds:
            reseed_rngs(rngs, seed)
            replicate = dict(zip(names, forward(*[truth[n] for n in free]), strict=True))
            grads = score(*[at[p.name] for p in params], *[replicate[d.name] for d in data])
            rows.append(np.concatenate([np.ravel(g) for g in grads]))
        return np.array(rows)

    right = scores(truth, range(300))
    informed = right.std(axis=0) > 0  # hyper-parameters the likelihood does not touch: 0

    def z_scores(rows: np.ndarray) -> np.ndarray:
        return rows.mean(axis=0)[informed] / (rows.std(axis=0, ddof=1)[informed]
                                              / np.sqrt(len(rows)))

    assert informed.sum() > 200
    z = z_scores(right)
    assert np.max(np.abs(z)) < 5.0, np.argsort(-np.abs(z))[:5]
    # and it can fail: scored at a precision 20% off, the replicates' precision moves
    wrong = {**truth, "score_precision_eval": truth["score_precision_eval"] * 1.2}
    assert np.max(np.abs(z_scores(scores(wrong, range(1000, 1050))))) > 5.0
