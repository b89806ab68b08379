"""The misspecification study: worlds, interval bookkeeping, coverage, and a small real batch."""

import json
import math

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from densing_bayes import laws
from densing_bayes.analysis import misspecification as ms
from densing_bayes.model.build import build_model
from densing_bayes.model.inputs import prepare_inputs
from densing_bayes.model.spec import OPT_IN_TERMS, load_spec

from conftest import SMALL_SAMPLER


def test_wilson_interval_closed_form_and_edges():
    # 45 of 50 at 95%: the Wilson score interval's closed form, computed by hand
    z = stats.norm.ppf(0.975)
    p, n = 0.9, 50
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert ms.wilson_interval(45, 50) == pytest.approx((centre - half, centre + half))
    assert ms.wilson_interval(0, 7)[0] == 0.0 and ms.wilson_interval(7, 7)[1] == 1.0
    assert all(math.isnan(x) for x in ms.wilson_interval(0, 0))


def test_interval_record_places_the_truth():
    rng = np.random.default_rng(0)
    draws = np.arange(1000.0)
    inside = ms.interval_record(500.5, draws, rng)
    assert inside["covered"] and inside["rank_fraction"] == pytest.approx(0.501)
    assert (inside["lower"], inside["upper"]) == (49.0, 949.0)  # order statistics
    low = ms.interval_record(-1.0, draws, rng)
    assert not low["covered"] and low["rank_fraction"] == 0.0
    # Doubling times are +inf where the slope is not positive: still ordered, no NaN.
    days = np.where(np.arange(100) < 30, np.inf, np.arange(100.0))
    rec = ms.interval_record(math.inf, days, rng)
    assert rec["upper"] == math.inf and rec["covered"]
    assert 0.7 <= rec["rank_fraction"] <= 1.0


def test_trend_quantities_are_the_closed_forms():
    q = ms.trend_quantities({"slope_pre": np.array([0.5, -0.1]),
                             "slope_post": np.array([2.0, 0.0]),
                             "trend_intercept": np.array([0.3, 0.3])})
    assert q["doubling_time_days"][0] == pytest.approx(math.log(2) / 2.0 * laws.DAYS_PER_YEAR)
    assert q["doubling_time_days"][1] == math.inf and q["doubling_time_days_pre"][1] == math.inf
    np.testing.assert_allclose(q["slope_difference"], [1.5, 0.1])


def test_coverage_counts_and_sides():
    rows = []
    for i in range(20):  # truths 0..19 against the interval [2, 15]
        rows.append({"task_id": f"w_{i:04d}", "world": "w", "status": "ok", "quantity": "q",
                     "truth": float(i), "lower": 2.0, "upper": 15.0,
                     "covered": 2 <= i <= 15, "rank_fraction": i / 20})
    rows.append({"task_id": "w_0099", "world": "w", "status": "failed", "error": "boom"})
    table = ms.coverage_table(pd.DataFrame(rows))
    (row,) = table.to_dict(orient="records")
    assert (row["n"], row["covered"]) == (20, 14)
    assert (row["truth_below_interval"], row["truth_above_interval"]) == (2, 4)
    assert row["coverage"] == pytest.approx(0.7)


def test_each_world_adds_only_its_term(paper_data, paper_spec):
    """A world's generating model is the fitted model plus the recorded variables, and it
    generates the same observed data names the fitted model reads."""
    fitted = build_model(prepare_inputs(paper_data, paper_spec), paper_spec)
    free = {v.name for v in fitted.free_RVs}
    for world in ms.WORLDS.values():
        spec = ms.world_spec(paper_spec, world)
        model = build_model(prepare_inputs(paper_data, spec), spec)
        for name in world.record:
            assert name in model.named_vars, (world.name, name)
        added = {v.name for v in model.free_RVs} - free
        if world.name == "extrapolation_in_size":  # the same tilt, in more directions
            assert len(model.coords["extrapolation"]) > len(
                fitted.coords.get("extrapolation", ())), world.name
        elif world.name in ("well_specified", "precision_per_benchmark", "peaked_errors"):
            assert not added, world.name
        else:
            assert added, world.name
        assert ({model.rvs_to_values[r].name for r in model.observed_RVs}
                == {fitted.rvs_to_values[r].name for r in fitted.observed_RVs})


def test_worlds_the_default_spec_already_fits_are_left_out():
    """Since 2026-12-04 the default fits a protocol scale and a precision per benchmark: those
    two worlds would repeat the control, so a study of it leaves them out by default and
    refuses them by name; the paper's design spec (without either term) keeps them."""
    default = load_spec("default")
    assert ms.study_worlds(default) == ["well_specified", "extrapolation_in_size",
                                        "pair_errors", "protocol_scale_wide", "peaked_errors"]
    with pytest.raises(ValueError, match=r"add nothing to spec 'default'.*control"):
        ms.study_worlds(default, ["well_specified", "protocol_scale"])
    assert ms.study_worlds(load_spec("paper_design")) == list(ms.WORLDS)
    wide = ms.world_spec(default, ms.WORLDS["protocol_scale_wide"])
    assert wide.prior("protocol_scale").parameters["sigma"] == 0.4


def test_peaked_errors_world_draws_valid_scores(paper_data, paper_spec):
    """The precision-mixing world generates every observed array the fitted model reads,
    each valid (scores strictly inside (0, 1))."""
    generator = ms._build_generator(paper_spec, ms.WORLDS["peaked_errors"], "paper")
    truth, observed, _ = ms.draw_world(generator, 3)
    fitted = build_model(prepare_inputs(paper_data, paper_spec), paper_spec)
    assert set(observed) == {fitted.rvs_to_values[r].name for r in fitted.observed_RVs}
    assert ms._valid(observed) and set(truth) >= {"slope_pre", "slope_post"}


def test_protocol_scale_multiplies_the_curves_slope(paper_data, paper_spec):
    """Scores under a protocol scale k are the scores of a curve whose slope is k times
    steeper: the likelihood of the score rows agrees exactly."""
    inputs = prepare_inputs(paper_data, paper_spec)
    plain = build_model(inputs, paper_spec)
    scaled_spec = paper_spec.with_overrides({"observation": {"protocol_scale": True}})
    scaled = build_model(inputs, scaled_spec)
    point = plain.initial_point(random_seed=1)
    k = np.linspace(0.7, 1.4, len(inputs.benchmarks))
    steeper = dict(point)
    steeper["sigmoid_log_slope"] = point["sigmoid_log_slope"] + np.log(k)
    scaled_point = {**point, "protocol_scale_log__": np.log(k)}
    logp_plain = plain.compile_logp(vars=[plain["score_obs"]])(steeper)
    logp_scaled = scaled.compile_logp(vars=[scaled["score_obs"]])(scaled_point)
    assert logp_scaled == pytest.approx(logp_plain, rel=1e-10)
    unit = scaled.compile_logp(vars=[scaled["score_obs"]])(
        {**point, "protocol_scale_log__": np.zeros(len(k))})
    assert unit == pytest.approx(plain.compile_logp(vars=[plain["score_obs"]])(point),
                                 rel=1e-12)


def _widened(name: str) -> dict:
    """The default prior of ``name`` with its first numeric parameter multiplied by 1.5."""
    from densing_bayes.model.priors import DEFAULT_PRIORS

    d = DEFAULT_PRIORS[name].prior.to_dict()
    key = next(k for k, v in d["kwargs"].items() if isinstance(v, (int, float)))
    d["kwargs"][key] = 1.5 * d["kwargs"][key] + 0.1
    return d


@pytest.mark.parametrize("term", sorted(OPT_IN_TERMS))
def test_an_opt_in_term_that_is_off_leaves_the_hash_alone(term):
    (section, flag), priors = term, OPT_IN_TERMS[term]
    spec = load_spec("default").with_overrides({section: {flag: False}})
    for name in priors:
        assert spec.with_overrides({"priors": {name: _widened(name)}}).config_hash() \
            == spec.config_hash()
    on = spec.with_overrides({section: {flag: True}})
    assert on.config_hash() != spec.config_hash()
    for name in priors:
        assert on.with_overrides({"priors": {name: _widened(name)}}).config_hash() \
            != on.config_hash()


def test_unknown_world_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown world"):
        ms.run_misspecification(load_spec("default"), 1, tmp_path / "m", worlds=["nope"])
    assert not (tmp_path / "m").exists()


def test_simulation_seeds_depend_on_world_and_index_only():
    a = ms.simulation_seed(5, "pair_errors", 3)
    assert a == ms.simulation_seed(5, "pair_errors", 3)
    assert len({a, ms.simulation_seed(5, "pair_errors", 4),
                ms.simulation_seed(5, "protocol_scale", 3),
                ms.simulation_seed(6, "pair_errors", 3)}) == 4


@pytest.mark.slow  # end-to-end batch run: minutes of compiling and sampling (run with -m slow)
def test_small_study_on_a_local_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(ms, "MIN_PLOTTED", 1)  # draw the one-simulation worlds here
    spec = load_spec("paper_design").with_overrides(
        {"sampler": {**SMALL_SAMPLER, "draws": 60, "tune": 60, "chains": 1}})
    out = tmp_path / "misspec"
    report = ms.run_misspecification(spec, 1, out, worlds=["well_specified", "protocol_scale"],
                                     design="paper", n_workers=1, progress=False)
    table = pd.read_csv(out / ms.RECORDS_CSV)
    assert (table["status"] == "ok").all(), table.get("error")
    assert set(table["world"]) == {"well_specified", "protocol_scale"}
    assert set(table["quantity"]) >= {"doubling_time_days", "slope_difference",
                                      "trend_intercept"}
    assert table["rank_fraction"].between(0, 1).all()
    saved = json.loads((out / ms.REPORT_JSON).read_text())
    assert saved["worlds"]["protocol_scale"]["n_ok"] == 1
    coverage = pd.read_csv(out / ms.COVERAGE_CSV)
    assert (coverage["n"] == 1).all()
    assert (out / (ms.FIGURE + ".png")).stat().st_size > 0
    record = json.loads(next((out / "tasks").glob("protocol_scale_*.json")).read_text())
    scale = record["result"]["world_parameters"]["protocol_scale"]
    assert len(scale) == 5 and all(s > 0 for s in scale)
    assert report["sampler_diagnostics"]["n_fits"] == 2


def test_coverage_figure_leaves_out_worlds_with_few_simulations(tmp_path):
    rows = []
    for world, n in (("big", 12), ("small", 2)):
        for i in range(n):
            rows.append({"task_id": f"{world}_{i:04d}", "world": world, "status": "ok",
                         "quantity": "doubling_time_days", "truth": 1.0, "lower": 0.0,
                         "upper": 2.0, "covered": True, "rank_fraction": 0.5})
    table = pd.DataFrame(rows)
    ms.plot_coverage(ms.coverage_table(table), table, tmp_path / "fig")
    assert (tmp_path / "fig.png").stat().st_size > 0
    only_small = table[table["world"] == "small"]
    ms.plot_coverage(ms.coverage_table(only_small), only_small, tmp_path / "none")
    assert not (tmp_path / "none.png").exists()


def test_a_doubling_time_is_judged_by_its_slope():
    """A true slope of -2 missed by the slope's interval [-1.5, -0.5] maps to a doubling time
    of +inf, which an interval reaching +inf 'covers': the doubling time must count as missed,
    with the truth above its interval (it never doubles), as the slope's lies below."""
    rng = np.random.default_rng(1)
    slopes = np.linspace(-1.5, -0.5, 1001)
    q = ms.trend_quantities({"slope_pre": slopes, "slope_post": slopes,
                             "trend_intercept": np.zeros_like(slopes)})
    truth = ms.trend_quantities({"slope_pre": -2.0, "slope_post": 0.5, "trend_intercept": 0.0})
    raw = {k: ms.interval_record(float(truth[k]), q[k], rng) for k in q}
    assert raw["doubling_time_days_pre"]["covered"]  # the defect: +inf inside [+inf, +inf]
    fixed = ms.doubling_from_slopes(raw)
    assert not fixed["doubling_time_days_pre"]["covered"]
    assert fixed["doubling_time_days_pre"]["truth_above"]
    assert not fixed["doubling_time_days"]["covered"]  # 0.5 above every slope draw
    assert fixed["doubling_time_days"]["truth_below"]
    assert fixed["doubling_time_days"]["rank_fraction"] == 0.0  # every draw slower
    assert fixed["doubling_time_days_pre"]["rank_fraction"] == 1.0
    record = {"status": "ok", "error": None,
              "result": {"world": "w", "sim_id": 0, "quantities": raw,
                         "diagnostics": {"divergences": 0, "max_rhat": 1.0,
                                         "min_ess_bulk": 400.0},
                         "world_parameters": {}}}
    table = ms.coverage_table(ms.simulations_table({"w_0000": record})).set_index("quantity")
    assert table.loc["doubling_time_days_pre", "covered"] == 0
    assert table.loc["doubling_time_days_pre", "truth_above_interval"] == 1
    assert table.loc["slope_pre", "truth_below_interval"] == 1


def _fake_record(world: str, sim_id: int, slope_post: float, rng) -> dict:
    draws = ms.trend_quantities({"slope_pre": rng.normal(0.3, 0.4, 300),
                                 "slope_post": rng.normal(slope_post, 0.3, 300),
                                 "trend_intercept": rng.normal(0, 1, 300)})
    truth = ms.trend_quantities({"slope_pre": -0.2, "slope_post": 1.0, "trend_intercept": 0.1})
    return {"task_id": f"{world}_{sim_id:04d}", "status": "ok", "error": None,
            "result": {"world": world, "sim_id": sim_id, "seed": 5,
                       "quantities": ms.doubling_from_slopes(
                           {q: ms.interval_record(float(truth[q]), draws[q], rng)
                            for q in draws}),
                       "world_parameters": {"tilt": [0.1, -0.2]}, "prior_attempts": 1,
                       "diagnostics": {"divergences": sim_id % 2, "max_rhat": 1.01,
                                       "min_ess_bulk": 150.0 + sim_id},
                       "timing": {"sample_seconds": 80.0}}}


def test_lost_records_are_restored_from_the_written_table_and_give_the_same_tables(tmp_path):
    """Task records were git-ignored and lost with a checkout; the committed table carries
    what the coverage, the checks and the figure read, so --resume can continue from it."""
    rng = np.random.default_rng(3)
    records = {f"w_{i:04d}": _fake_record("well_specified", i, s, rng)
               for i, s in enumerate([1.0, -0.5, 0.9, 2.5])}
    records["w_0004"] = {"task_id": "well_specified_0004", "status": "failed",
                         "error": "RuntimeError: no valid draw", "result": None}
    # as stored on disk: JSON has no infinity, a doubling time that never comes is null
    records = {r["task_id"]: ms.batch._jsonable(r) for r in records.values()}
    spec = load_spec("paper_design")
    first = tmp_path / "first"
    first.mkdir()
    ms.write_outputs(first, records, spec, worlds=["well_specified"], wall_seconds=1.0)
    assert ms.restore_records(first, spec.config_hash()) == 5  # no tasks/ folder: all rebuilt
    restored = ms.batch.load_records(first)
    assert set(restored) == set(records) and restored["well_specified_0004"]["status"] == "failed"
    second = tmp_path / "second"
    second.mkdir()
    report = ms.write_outputs(second, restored, spec, worlds=["well_specified"],
                              wall_seconds=1.0)
    for name in (ms.RECORDS_CSV, ms.COVERAGE_CSV):
        pd.testing.assert_frame_equal(pd.read_csv(first / name), pd.read_csv(second / name))
    assert report["restored_records"] == 5 and report["timing"]["sample_seconds_mean"] is None
    # a record already on disk is kept, not overwritten by the table's version
    assert ms.restore_records(first, spec.config_hash()) == 0


def test_a_table_of_another_configuration_is_not_restored(tmp_path):
    """After --force the previous study's simulations.csv stays until the new study writes its
    own: a resume of the stopped new study must not adopt the old configuration's fits."""
    rng = np.random.default_rng(4)
    records = {f"well_specified_{i:04d}": ms.batch._jsonable(
        _fake_record("well_specified", i, s, rng)) for i, s in enumerate([1.0, -0.5])}
    records = {r["task_id"]: r for r in records.values()}
    old_spec = load_spec("paper_design")
    new_spec = old_spec.with_overrides({"sampler": {"draws": old_spec.sampler.draws + 1}})
    assert new_spec.config_hash() != old_spec.config_hash()
    ms.write_outputs(tmp_path, records, old_spec, worlds=["well_specified"], wall_seconds=1.0)
    assert ms.restore_records(tmp_path, new_spec.config_hash()) == 0
    assert not ms.batch.load_records(tmp_path)
    (tmp_path / ms.REPORT_JSON).unlink()  # no record of what the table was written under
    assert ms.restore_records(tmp_path, old_spec.config_hash()) == 0


def test_a_resume_restores_only_into_its_own_study(tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    (out / "batch.json").write_text(json.dumps({"job": "sbc"}))
    (out / ms.RECORDS_CSV).write_text("task_id,world,status\n")
    spec = load_spec("paper_design")
    with pytest.raises(ms.batch.BatchFolderError, match="different batch"):
        ms.run_misspecification(spec, 1, out, worlds=["well_specified"], resume=True,
                                progress=False)
    assert not (out / "tasks").exists()
