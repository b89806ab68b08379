"""Tests of densing_bayes.analysis.baseline: the paper's least-squares pipeline.

Noise-free synthetic data generated with ``laws`` must be recovered (fits to 1e-3 relative,
effective sizes and trend slopes essentially exactly); scores without a finite inverse must stay
NaN with a reason; the envelope and the trend are checked on hand-made examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from densing_bayes import laws
from densing_bayes.analysis.baseline import (
    ABOVE_CEILING,
    BELOW_ASYMPTOTE,
    BELOW_FLOOR,
    LLAMA1_RELEASE,
    NO_FIT,
    fit_density_trend,
    fit_loss_law,
    run_baseline,
    running_max_envelope,
)
from densing_bayes.data.schema import DensingData

# The paper's reference design (Table 1) and MMLU-like true laws.
SIZES = np.array([5_247_232, 31_470_080, 106_196_736, 245_416_960, 476_852_480, 828_225_024])
TOKENS_PER_PARAM = np.array([10, 15, 20, 30, 40, 60])
LOSS_LAW = {"a": 107.0, "alpha": 0.25, "b": 115.0, "beta": 0.28}
SIGMOID = {"c": 0.675, "gamma": 8.42, "l": 0.446, "d": 0.25}
CURVE_LOSSES = np.linspace(0.25, 0.75, 12)
BENCH = "mmlu"


def reference_runs(E: float = 0.0) -> pd.DataFrame:
    """Noise-free loss-law rows (the 6 x 6 design) and curve-only rows (loss and score)."""
    N, multiplier = (grid.ravel() for grid in np.meshgrid(SIZES, TOKENS_PER_PARAM))
    law_rows = pd.DataFrame({
        "run_id": [f"r{k}" for k in range(len(N))], "benchmark": BENCH,
        "params": N.astype(float), "tokens": (N * multiplier).astype(float),
        "loss": laws.loss_law(N, N * multiplier, **LOSS_LAW, E=E), "score": np.nan,
    })
    curve_rows = pd.DataFrame({
        "run_id": [f"c{k}" for k in range(len(CURVE_LOSSES))], "benchmark": BENCH,
        "params": np.nan, "tokens": np.nan, "loss": CURVE_LOSSES,
        "score": laws.score_from_loss(CURVE_LOSSES, **SIGMOID),
    })
    return pd.concat([law_rows, curve_rows], ignore_index=True)


def true_score(effective_params: float) -> float:
    """The score a model of effective size ``effective_params`` gets under the true laws at D0."""
    return float(laws.score_from_loss(laws.loss_law(effective_params, laws.D0_TOKENS, **LOSS_LAW),
                                      **SIGMOID))


def make_data(models: pd.DataFrame, scores: pd.DataFrame, runs: pd.DataFrame | None = None,
              chance: float | None = SIGMOID["d"]) -> DensingData:
    models = models.assign(release_date=pd.to_datetime(models["release_date"]))
    benchmarks = (None if chance is None
                  else pd.DataFrame({"benchmark": [BENCH], "chance": [chance]}))
    return DensingData(folder=Path("."), reference_runs=reference_runs() if runs is None else runs,
                       models=models, scores=scores, benchmarks=benchmarks)


def one_model() -> pd.DataFrame:
    return pd.DataFrame({"model": ["m"], "release_date": ["2024-01-01"], "params": [7e9]})


def single_model_data(score: float, **kwargs) -> DensingData:
    scores = pd.DataFrame({"model": ["m"], "benchmark": [BENCH], "score": [score]})
    return make_data(one_model(), scores, **kwargs)


def assert_recovered(fitted: pd.Series, truth: dict, rtol: float = 1e-3) -> None:
    for key, value in truth.items():
        assert fitted[key] == pytest.approx(value, rel=rtol), key


@pytest.fixture(scope="module")
def known_size_result():
    """A model whose score was generated from N = 3e9 at D0, fitted through the whole pipeline."""
    return run_baseline(single_model_data(true_score(3e9)))


# ----------------------------------------------------------------------------------------------
# Fits


def test_loss_law_and_sigmoid_are_recovered_from_noise_free_data(known_size_result):
    assert_recovered(known_size_result.loss_law.loc[BENCH], LOSS_LAW)
    assert_recovered(known_size_result.sigmoid.loc[BENCH], SIGMOID)
    assert known_size_result.loss_law.loc[BENCH, "E"] == 0.0
    assert known_size_result.loss_law.loc[BENCH, "r2"] == pytest.approx(1.0, abs=1e-9)
    assert known_size_result.sigmoid.loc[BENCH, "d_fixed"]


def test_irreducible_loss_is_recovered_when_asked_for():
    runs = reference_runs(E=0.4)
    law_rows = runs[runs["params"].notna()]
    fit = fit_loss_law(law_rows["params"], law_rows["tokens"], law_rows["loss"], irreducible=True)
    assert_recovered(pd.Series(fit), {**LOSS_LAW, "E": 0.4})


def test_sigmoid_floor_is_fitted_without_a_chance_level():
    result = run_baseline(single_model_data(true_score(3e9), chance=None))
    assert not result.sigmoid.loc[BENCH, "d_fixed"]
    assert_recovered(result.sigmoid.loc[BENCH], SIGMOID)


def test_holdout_rows_are_kept_out_of_the_fits():
    runs = reference_runs()
    wild = runs.iloc[[0, len(runs) - 1]].assign(loss=[9.0, 0.1], score=[np.nan, 0.0],
                                                run_id=["h1", "h2"])
    runs = pd.concat([runs.assign(holdout="false"), wild.assign(holdout="true")],
                     ignore_index=True)
    result = run_baseline(single_model_data(true_score(3e9), runs=runs))
    assert_recovered(result.loss_law.loc[BENCH], LOSS_LAW)
    assert_recovered(result.sigmoid.loc[BENCH], SIGMOID)
    assert any("2 hold-out rows" in note for note in result.notes)


# ----------------------------------------------------------------------------------------------
# Inversion


def test_effective_params_are_exact_for_a_known_size(known_size_result):
    row = known_size_result.per_benchmark.iloc[0]
    assert row["effective_params"] == pytest.approx(3e9, rel=1e-6)
    assert pd.isna(row["reason"])
    model = known_size_result.effective.loc["m"]
    assert model["density"] == pytest.approx(3e9 / 7e9, rel=1e-6)
    assert model["n_benchmarks_used"] == 1
    assert model["n_scores_outside_range"] == 0


@pytest.mark.parametrize("score, reason", [
    (SIGMOID["c"] + SIGMOID["d"] + 0.01, ABOVE_CEILING),
    (SIGMOID["d"], BELOW_FLOOR),
    (SIGMOID["c"] + SIGMOID["d"] - 1e-6, BELOW_ASYMPTOTE),  # loss -1.2, asymptote +0.05
])
def test_scores_without_a_finite_inverse_are_nan_with_a_reason(score, reason):
    result = run_baseline(single_model_data(score))
    row = result.per_benchmark.iloc[0]
    assert np.isnan(row["effective_params"])
    assert row["reason"] == reason
    model = result.effective.loc["m"]
    assert np.isnan(model["density"])
    assert model["n_scores_outside_range"] == 1
    assert model["trend_exclusion"] == "no finite effective size"
    assert result.trend["excluded_models"] == ["m"]


def test_scores_on_a_benchmark_without_reference_runs_have_no_fit():
    scores = pd.DataFrame({"model": ["m", "m"], "benchmark": [BENCH, "gsm8k"],
                           "score": [true_score(3e9), 0.5]})
    result = run_baseline(make_data(one_model(), scores))
    per_benchmark = result.per_benchmark.set_index("benchmark")
    assert per_benchmark.loc["gsm8k", "reason"] == NO_FIT
    assert per_benchmark.loc[BENCH, "effective_params"] == pytest.approx(3e9, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Score rows


def repeated_scores(**extra) -> pd.DataFrame:
    return pd.DataFrame({"model": ["m", "m"], "benchmark": [BENCH, BENCH],
                         "score": [true_score(1e9), true_score(3e9)], **extra})


@pytest.mark.parametrize("preferred", [["false", "true"], [False, True]])
def test_preferred_row_is_used_whether_text_or_bool(preferred):
    result = run_baseline(make_data(one_model(), repeated_scores(preferred=preferred)))
    assert result.per_benchmark["effective_params"].tolist() == pytest.approx([3e9], rel=1e-6)


def test_without_a_preferred_column_the_first_row_is_used_and_noted():
    result = run_baseline(make_data(one_model(), repeated_scores()))
    assert result.per_benchmark["effective_params"].tolist() == pytest.approx([1e9], rel=1e-6)
    assert any("no 'preferred' column" in note for note in result.notes)


def test_mean_option_averages_the_rows_of_a_pair():
    result = run_baseline(make_data(one_model(), repeated_scores()), score_rows="mean")
    assert result.per_benchmark["score"].tolist() == pytest.approx(
        [(true_score(1e9) + true_score(3e9)) / 2])


def test_unknown_score_rows_option_is_refused():
    with pytest.raises(ValueError, match="score_rows"):
        run_baseline(single_model_data(0.5), score_rows="median")


# ----------------------------------------------------------------------------------------------
# Envelope and trend


def test_running_max_envelope_keeps_only_new_records():
    dates = pd.to_datetime(["2023-01-01", "2023-02-01", "2023-03-01", "2023-03-01",
                            "2023-04-01", "2023-05-01", "2023-06-01"])
    density = [0.5, 0.4, 0.9, 0.7, 0.9, 1.2, 1.2]
    # 0.4 is below the record; of the two same-day models only the larger counts; 0.9 and the
    # second 1.2 equal an earlier record without exceeding it.
    expected = [True, False, True, False, False, True, False]
    assert running_max_envelope(dates, density).tolist() == expected
    shuffled = [6, 2, 0, 5, 3, 1, 4]
    assert running_max_envelope(dates[shuffled], np.array(density)[shuffled]).tolist() == [
        expected[k] for k in shuffled]


def envelope_example(slope_pre: float, slope_post: float) -> pd.DataFrame:
    """Envelope points on a broken line through Llama-1's date, plus dominated points below it."""
    frontier_days = np.array([-900, -600, -300, 100, 300, 500, 700])
    log_density = np.where(frontier_days < 0, slope_pre, slope_post) * frontier_days - 1.0
    dominated_days = np.array([-500, 200, 600])
    dominated = np.interp(dominated_days, frontier_days, log_density) - 1.0
    days = np.concatenate([frontier_days, dominated_days])
    return pd.DataFrame({
        "release_date": (LLAMA1_RELEASE + days.astype("timedelta64[D]")).astype("datetime64[ns]"),
        "density": np.exp(np.concatenate([log_density, dominated])),
    }, index=[f"f{k}" for k in range(7)] + ["d0", "d1", "d2"])


def test_density_trend_recovers_a_known_slope_and_doubling_time():
    models = envelope_example(0.007, 0.007)
    trend = fit_density_trend(models["release_date"], models["density"])
    assert trend["frontier_models"] == [f"f{k}" for k in range(7)]
    assert trend["slope_per_day"] == pytest.approx(0.007, rel=1e-12)
    assert trend["intercept"] == pytest.approx(-1.0, rel=1e-12)
    assert trend["r2"] == pytest.approx(1.0)
    assert trend["doubling_time_days"] == pytest.approx(np.log(2) / 0.007, rel=1e-12)


def test_pre_and_post_chatgpt_lines_are_fitted_separately():
    models = envelope_example(0.004, 0.007)
    trend = fit_density_trend(models["release_date"], models["density"])
    # Llama-1's date minus 300 days is 2022-04-30: three envelope points before ChatGPT.
    assert trend["slope_per_day_pre"] == pytest.approx(0.004, rel=1e-12)
    assert trend["slope_per_day_post"] == pytest.approx(0.007, rel=1e-12)
    assert trend["doubling_time_days_post"] == pytest.approx(np.log(2) / 0.007, rel=1e-12)
    assert trend["doubling_time_ratio"] == pytest.approx(0.007 / 0.004, rel=1e-12)


def test_one_sided_split_gives_none_on_the_thin_side():
    models = envelope_example(0.004, 0.007).drop(index=["f0", "f1", "d0"])
    trend = fit_density_trend(models["release_date"], models["density"])
    assert trend["slope_per_day_pre"] is None
    assert trend["doubling_time_days_pre"] is None
    assert trend["doubling_time_ratio"] is None
    assert trend["slope_per_day_post"] == pytest.approx(0.007, rel=1e-12)


def test_whole_pipeline_recovers_a_constructed_density_trend():
    models = envelope_example(0.006, 0.006)
    params = np.geomspace(2e9, 8e9, len(models))
    # Effective sizes 2e8..6e12: scores 0.26..0.88, inside the curve's range (0.25, 0.925).
    effective_params = models["density"].to_numpy() * params * 50
    table = pd.DataFrame({"model": models.index, "release_date": models["release_date"],
                          "params": params})
    table.loc[len(table)] = ["undated", pd.NaT, 7e9]
    scores = pd.DataFrame({"model": [*models.index, "undated"], "benchmark": BENCH,
                           "score": [true_score(n) for n in effective_params] + [true_score(3e9)]})
    result = run_baseline(make_data(table.reset_index(drop=True), scores))
    assert result.trend["frontier_models"] == [f"f{k}" for k in range(7)]
    assert result.trend["slope_per_day"] == pytest.approx(0.006, rel=1e-6)
    assert result.trend["excluded_models"] == ["undated"]
    assert result.effective.loc["undated", "trend_exclusion"] == "no release date"
    assert result.effective["on_envelope"].sum() == 7
