"""The seeded simulator of the paper's design: determinism, consistency with its truth, shape.

Most tests run against a small stand-in for the bundled table of evaluated models (written to a
temporary folder), so they test the simulator and not a data file curated elsewhere; one test
runs the real bundled table when it is present.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from densing_bayes import laws
from densing_bayes.data import schema, simulate

#: The real table's lookup, kept before the autouse fixture replaces it.
BUNDLED_TABLE = simulate.paper_models_table

#: A few of the paper's models (real names, dates, sizes), one undated, one not in the paper.
STAND_IN_MODELS = """model,family,release_date,params,paper_role
GPT-3-175B,GPT-3,2020-05-28,175000000000,fig4
PaLM-540B,PaLM,2022-04-04,540350000000,fig4
Llama-1-7B,Llama-1,2023-02-24,6700000000,fig1+fig4
Mistral-7B,Mistral,2023-09-27,7300000000,fig1+fig4
Gemma2-9B,Gemma-2,2024-06-24,9242164736,fig1+fig4
Llama-3.1-405B,Llama-3.1,2024-07-23,405000000000,fig1+fig4
MiniCPM-3-4B,MiniCPM,2024-09-05,4000000000,fig1+fig4
StableLM-Zephyr-3B,StableLM,,2795443200,fig1+fig4
Qwen2-7B,Qwen2,2024-06-07,7610000000,not in paper
"""
N_DATED_PAPER_MODELS = 7


@pytest.fixture(autouse=True)
def stand_in_models_table(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "stand_in_models.csv"
    path.write_text(STAND_IN_MODELS)
    monkeypatch.setattr(simulate, "paper_models_table", lambda: path)


@pytest.fixture
def sim():
    return simulate.simulate_design(seed=11)


def _all_tables_equal(one, two):
    for name, frame in one.tables().items():
        pd.testing.assert_frame_equal(frame, two.tables()[name])


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_identical_frames_and_truth():
    one, two = simulate.simulate_design(seed=3), simulate.simulate_design(seed=3)
    _all_tables_equal(one, two)
    assert one.truth == two.truth


def test_same_seed_gives_byte_identical_files(tmp_path):
    for folder in ("a", "b"):
        simulate.write_simulation(simulate.simulate_design(seed=5), tmp_path / folder)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([s.filename for s in schema.ALL_FILES] + [simulate.TRUTH_FILENAME])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seeds_differ():
    one, two = simulate.simulate_design(seed=1), simulate.simulate_design(seed=2)
    assert not np.allclose(one.reference_runs["loss"], two.reference_runs["loss"])
    assert one.truth["models"] != two.truth["models"]


def test_an_earlier_simulations_truth_can_seed_a_new_one():
    earlier = simulate.simulate_design(seed=1, n_models=3)
    later = simulate.simulate_design(seed=2, truth=earlier.truth)
    assert later.truth["seed"] == 2
    assert len(later.truth["models"]) == N_DATED_PAPER_MODELS
    assert later.truth["benchmarks"] == earlier.truth["benchmarks"]


def test_caller_truth_is_not_mutated():
    truth = simulate.default_truth()
    before = json.dumps(truth)
    simulate.simulate_design(seed=1, truth=truth)
    assert json.dumps(truth) == before


# ---------------------------------------------------------------------------------------------
# The data agree with the truth


def test_model_truth_follows_the_frontier_and_the_laws(sim):
    truth = sim.truth
    trend = truth["trend"]
    for name, model in truth["models"].items():
        t = laws.years_since(model["release_date"], origin=truth["changepoint"])
        frontier = (trend["intercept"] + trend["slope_pre_per_year"] * min(t, 0.0)
                    + trend["slope_post_per_year"] * max(t, 0.0))
        assert model["u"] >= 0
        assert model["log_density"] == pytest.approx(frontier - model["u"] + model["v"])
        assert model["effective_params"] == pytest.approx(
            model["params"] * np.exp(model["log_density"]), rel=1e-12)
        for bench, law in truth["benchmarks"].items():
            loss = laws.loss_law(model["effective_params"], truth["d0_tokens"], law["a"],
                                 law["alpha"], law["b"], law["beta"], law["E"])
            expected = laws.score_from_loss(loss, law["c"], law["gamma"], law["l"], law["d"])
            assert model["true_scores"][bench] == pytest.approx(float(expected), rel=1e-12)


def test_effective_params_invert_back_from_the_true_scores(sim):
    """The simulator's chain and the paper's inversion (laws.effective_params) agree."""
    model = sim.truth["models"]["Mistral-7B"]
    law = sim.truth["benchmarks"]["mmlu"]
    keys = ("a", "alpha", "b", "beta", "c", "gamma", "l", "d", "E")
    recovered = laws.effective_params(model["true_scores"]["mmlu"], **{k: law[k] for k in keys})
    assert float(recovered) == pytest.approx(model["effective_params"], rel=1e-6)


def test_observed_scores_scatter_around_the_true_means(sim):
    means = np.array([sim.truth["models"][m]["true_scores"][b]
                      for m, b in zip(sim.scores["model"], sim.scores["benchmark"])])
    residual = sim.scores["score"].to_numpy() - means
    assert abs(residual.mean()) < 0.02
    assert 0.005 < residual.std() < 0.05  # Beta precision 200: sd <= 0.035


def test_reference_losses_follow_the_loss_law_with_one_percent_noise(sim):
    law_rows = sim.reference_runs[sim.reference_runs["final"] == "true"]
    log_ratio = [np.log(row.loss / laws.loss_law(row.params, row.tokens, **_loss_args(
        sim.truth["benchmarks"][row.benchmark]))) for row in law_rows.itertuples()]
    assert abs(np.mean(log_ratio)) < 0.005
    assert np.std(log_ratio) == pytest.approx(0.01, rel=0.3)


def test_curve_rows_follow_the_truth_of_their_checkpoint(sim):
    curve = sim.reference_runs[sim.reference_runs["final"] == "false"]
    for row in curve.itertuples():
        run = sim.truth["curve_runs"][row.run_id]
        law = sim.truth["benchmarks"][row.benchmark]
        true_loss = laws.loss_law(run["params"], run["tokens"], **_loss_args(law))
        assert abs(np.log(row.loss / true_loss)) < 5 * law["sigma_loss"]
        mean = laws.score_from_loss(row.loss, law["c"], law["gamma"], law["l"], law["d"])
        assert abs(row.score - mean) < 0.15


def _loss_args(law):
    return {k: law[k] for k in ("a", "alpha", "b", "beta", "E")}


# ---------------------------------------------------------------------------------------------
# Shape of the design


def test_tables_have_the_schema_columns(sim):
    for file_schema in schema.ALL_FILES:
        frame = sim.tables()[file_schema.filename]
        assert set(file_schema.required_columns) <= set(frame.columns)
    assert list(sim.models.columns) == ["model", "release_date", "params", "family", "paper_role"]
    assert list(sim.scores.columns) == ["model", "benchmark", "score", "source", "source_kind",
                                        "shots", "n_items"]


def test_paper_six_by_six_loss_law_design(sim):
    law_rows = sim.reference_runs[sim.reference_runs["final"] == "true"]
    assert law_rows["score"].isna().all()
    runs = law_rows.drop_duplicates("run_id")
    assert len(runs) == 36
    assert set(runs["params"]) == set(simulate.PAPER_REFERENCE_SIZES)
    assert set(runs["tokens"] / runs["params"]) == set(simulate.PAPER_TOKEN_MULTIPLIERS)
    assert len(law_rows) == 36 * 5
    assert (law_rows.groupby("run_id")["benchmark"].nunique() == 5).all()


def test_curve_checkpoints_fit_below_4b_and_hold_out_two_larger(sim):
    curve = sim.reference_runs[sim.reference_runs["final"] == "false"]
    assert curve["params"].isna().all() and curve["tokens"].isna().all()
    assert curve["score"].notna().all()
    checkpoints = sim.truth["curve_runs"]
    assert len(checkpoints) == 12
    for run_id, run in checkpoints.items():
        assert (run["params"] > 4e9) == run["holdout"]
        assert 20 <= run["tokens"] / run["params"] <= 100
        flags = set(curve.loc[curve["run_id"] == run_id, "holdout"])
        assert flags == {"true" if run["holdout"] else "false"}
    assert sum(run["holdout"] for run in checkpoints.values()) == 2


def test_scores_are_strictly_inside_the_unit_interval(sim):
    curve_scores = sim.reference_runs["score"].dropna()
    for scores in (sim.scores["score"], curve_scores):
        assert ((scores > 0) & (scores < 1)).all()


def test_scores_have_gaps_and_repeats(sim):
    pairs = sim.scores.groupby(["model", "benchmark"]).size()
    n_possible = len(sim.models) * len(sim.benchmarks)
    assert 0 < n_possible - len(pairs) == round(simulate.MISSING_FRACTION * n_possible)
    repeated = pairs[pairs > 1]
    assert len(repeated) == round(simulate.REPEAT_FRACTION * len(pairs))
    assert (pairs <= 2).all()
    assert (sim.scores["source_kind"] == "other").sum() == len(repeated)
    assert set(sim.scores["model"]) == set(sim.models["model"])  # nobody loses every score


def test_undated_and_non_paper_models_are_left_out(sim):
    assert sim.truth["dropped_models"] == ["StableLM-Zephyr-3B"]
    assert len(sim.models) == N_DATED_PAPER_MODELS
    assert "Qwen2-7B" not in set(sim.models["model"])
    assert list(sim.truth["models"]) == list(sim.models["model"])


def test_benchmarks_table_has_the_paper_chance_levels(sim):
    chance = dict(zip(sim.benchmarks["benchmark"], sim.benchmarks["chance"]))
    assert chance == {"mmlu": 0.25, "bbh": 0.0, "math": 0.0, "humaneval": 0.0, "mbpp": 0.0}


# ---------------------------------------------------------------------------------------------
# Default truth and prior draws


def test_default_doubling_times_are_the_papers():
    trend = simulate.default_truth()["trend"]
    assert trend["doubling_time_days_post"] == pytest.approx(95, abs=0.5)
    assert trend["doubling_time_days_pre"] == pytest.approx(144, abs=0.5)
    assert trend["doubling_time_ratio"] == pytest.approx(0.0073 / 0.0048)


def test_default_frontier_matches_the_papers_density_landmarks():
    trend = simulate.default_truth()["trend"]

    def frontier(date):
        t = laws.years_since(date)
        return trend["intercept"] + trend["slope_post_per_year"] * t

    assert np.exp(frontier("2023-02-24")) < 0.1  # Llama-1
    assert 2 < np.exp(frontier("2024-06-24")) < 7  # Gemma-2-9B, before its inefficiency


@pytest.mark.parametrize("truth", [
    simulate.default_truth(n_benchmarks=8),
    simulate.draw_truth_from_prior(np.random.default_rng(0), n_benchmarks=8),
], ids=["default", "prior"])
def test_truth_is_plausible(truth):
    """Exponents in 0.2-0.5, reference losses of order 0.5-3 nats, informative sigmoids."""
    low, high = simulate.REAL_EFFECTIVE_RANGE
    d0 = truth["d0_tokens"]
    for law in truth["benchmarks"].values():
        assert 0.2 <= law["alpha"] <= 0.5 and 0.2 <= law["beta"] <= 0.5
        args = _loss_args(law)
        smallest = simulate.PAPER_REFERENCE_SIZES[0]
        largest = simulate.PAPER_REFERENCE_SIZES[-1]
        assert laws.loss_law(smallest, 10 * smallest, **args) < 6
        assert laws.loss_law(largest, 60 * largest, **args) > 0.5
        fraction = [(laws.score_from_loss(laws.loss_law(n, d0, **args), law["c"], law["gamma"],
                                          law["l"], law["d"]) - law["d"]) / law["c"]
                    for n in (low, high)]
        assert fraction[0] <= 0.3 and fraction[1] >= 0.6
        assert law["c"] == pytest.approx((1 - law["d"]) * law["ceiling"])
        assert 0.8 <= law["ceiling"] <= 1.0


def test_prior_truth_has_the_default_structure_and_simulates():
    drawn = simulate.draw_truth_from_prior(np.random.default_rng(1))
    default = simulate.default_truth()
    assert drawn.keys() == default.keys()
    assert drawn["trend"].keys() == default["trend"].keys()
    assert drawn["benchmarks"].keys() == default["benchmarks"].keys()
    for name in default["benchmarks"]:
        assert drawn["benchmarks"][name].keys() == default["benchmarks"][name].keys()
    sim = simulate.simulate_design(seed=1, truth=drawn)
    assert sim.truth["trend"] == drawn["trend"]


def test_default_truth_is_deterministic_for_synthetic_benchmarks():
    assert simulate.default_truth(n_benchmarks=7) == simulate.default_truth(n_benchmarks=7)
    assert list(simulate.default_truth(n_benchmarks=3)["benchmarks"]) == ["mmlu", "bbh", "math"]


def test_unknown_design_is_refused():
    with pytest.raises(ValueError, match="unknown design"):
        simulate.simulate_design("nature", seed=1)


# ---------------------------------------------------------------------------------------------
# Scale-ups and subsets


def test_scale_up_to_300_models_and_10_benchmarks():
    sim = simulate.simulate_design(seed=2, n_models=300, n_benchmarks=10)
    assert len(sim.models) == 300
    assert list(sim.benchmarks["benchmark"][5:]) == [f"synth_{k}" for k in range(6, 11)]
    synthetic = sim.models[sim.models["paper_role"] == "synthetic"]
    assert len(synthetic) == 300 - N_DATED_PAPER_MODELS
    assert synthetic["model"].iloc[0] == "synth_model_0001"
    paper = sim.models[sim.models["paper_role"] != "synthetic"]
    assert synthetic["release_date"].between(paper["release_date"].min(),
                                             paper["release_date"].max()).all()
    # jittered copies of the paper's models: sizes near theirs, and early models still large
    log_params = np.log(synthetic["params"].astype(float))
    assert log_params.between(np.log(paper["params"].min()) - 3.0,
                              np.log(paper["params"].max()) + 3.0).all()
    early = synthetic["release_date"] < "2022-11-30"
    assert log_params[early].median() > log_params[~early].median() + np.log(5)
    # ... so their effective sizes stay where the paper's are, not at chance-level scores
    log_eff = np.log10([sim.truth["models"][m]["effective_params"] for m in sim.models["model"]])
    is_synth = (sim.models["paper_role"] == "synthetic").to_numpy()
    assert np.quantile(log_eff[is_synth], 0.05) > log_eff[~is_synth].min() - 1.0
    assert set(sim.scores["benchmark"]) == set(sim.benchmarks["benchmark"])
    assert len(sim.reference_runs) == (36 + 12) * 10


def test_fewer_models_take_a_seeded_subset():
    one = simulate.simulate_design(seed=4, n_models=3)
    assert len(one.models) == 3
    assert set(one.models["paper_role"]) <= set(simulate.PAPER_ROLES)
    _all_tables_equal(one, simulate.simulate_design(seed=4, n_models=3))


def test_the_reference_runs_do_not_depend_on_the_number_of_models():
    """Independent random streams: scaling the evaluated models leaves the reference runs alone."""
    small = simulate.simulate_design(seed=6, n_models=3)
    large = simulate.simulate_design(seed=6, n_models=50)
    pd.testing.assert_frame_equal(small.reference_runs, large.reference_runs)


# ---------------------------------------------------------------------------------------------
# Writing


def test_write_refuses_a_non_empty_folder_without_force(tmp_path, sim):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        simulate.write_simulation(sim, tmp_path)
    simulate.write_simulation(sim, tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / simulate.TRUTH_FILENAME).read_text()) == sim.truth


def test_write_creates_the_folder_and_leaves_no_temporary_files(tmp_path, sim):
    out = tmp_path / "new" / "sim"
    simulate.write_simulation(sim, out)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([s.filename for s in schema.ALL_FILES] + [simulate.TRUTH_FILENAME])
    models = pd.read_csv(out / "models.csv")
    assert list(models["model"]) == list(sim.models["model"])


def test_written_simulation_loads_without_error(tmp_path, sim):
    load = pytest.importorskip("densing_bayes.data.load")
    simulate.write_simulation(sim, tmp_path)
    data = load.load_data(tmp_path)
    assert data.has_evaluated_models
    assert len(data.reference_runs) == len(sim.reference_runs)
    assert data.notes == ()


def test_bundled_table_gives_the_papers_29_plus_8_models(monkeypatch):
    try:
        table = BUNDLED_TABLE()
    except FileNotFoundError:
        table = None
    if table is None or not table.exists():
        pytest.skip("the bundled models table is not present yet")
    monkeypatch.setattr(simulate, "paper_models_table", BUNDLED_TABLE)
    sim = simulate.simulate_design(seed=1)
    assert len(sim.models) + len(sim.truth["dropped_models"]) == 29 + 8
    assert set(sim.models["paper_role"]) == set(simulate.PAPER_ROLES)
    assert {"Llama-1-7B", "GPT-3-175B", "PaLM-540B"} <= set(sim.models["model"])


def test_benchmark_drift_shifts_only_its_benchmark_by_exp_kappa_t():
    from densing_bayes import laws
    from densing_bayes.data.simulate import _true_score, default_truth, simulate_design

    truth = default_truth("paper")
    plain = simulate_design("paper", seed=3, truth=truth)
    truth["benchmarks"]["mmlu"]["drift_per_year"] = 0.5
    drift = simulate_design("paper", seed=3, truth=truth)
    law = drift.truth["benchmarks"]["mmlu"]
    for name, m in drift.truth["models"].items():
        t = laws.years_since(np.array([m["release_date"]], dtype=str), origin=truth["changepoint"])
        expected = _true_score(m["effective_params"] * np.exp(0.5 * t), law, truth["d0_tokens"])
        assert m["true_scores"]["mmlu"] == pytest.approx(float(expected[0]))
        assert m["true_scores"]["bbh"] == plain.truth["models"][name]["true_scores"]["bbh"]
        assert m["effective_params"] == plain.truth["models"][name]["effective_params"]
