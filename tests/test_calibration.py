"""Simulation-based calibration: ranks, thinning, uniformity tests, outputs, and a small real
SBC batch on a LocalCluster."""

import json

import numpy as np
import pandas as pd
import pytest

from densing_bayes.analysis import calibration as sbc
from densing_bayes.model.spec import load_spec

from conftest import SMALL_SAMPLER


def test_uniformity_test_accepts_uniform_ranks():
    rng = np.random.default_rng(1)
    ranks = rng.integers(0, 100, size=300)  # discrete uniform on 0..99: L = 99
    u = sbc.fractional_ranks(ranks, np.full(300, 99), rng)
    assert ((u > 0) & (u < 1)).all()
    result = sbc.uniformity_test(u)
    assert result["uniform"] and result["p_ks"] > 0.05 and result["p_chi2"] > 0.05
    assert result["bins"] == 20


@pytest.mark.parametrize("shape", [(0.5, 0.5), (3.0, 3.0), (2.0, 1.0)],
                         ids=["too-narrow", "too-wide", "biased"])
def test_uniformity_test_rejects_miscalibrated_ranks(shape):
    rng = np.random.default_rng(2)
    ranks = np.floor(rng.beta(*shape, size=300) * 100).clip(0, 99)
    result = sbc.uniformity_test(sbc.fractional_ranks(ranks, np.full(300, 99), rng))
    assert not result["uniform"]
    assert min(result["p_ks"], result["p_chi2"]) < 1e-3


def test_rank_counts_draws_below_and_splits_ties():
    rng = np.random.default_rng(0)
    assert sbc.rank_of(0.5, np.array([0.1, 0.2, 0.9]), rng) == 2
    tied = [sbc.rank_of(np.inf, np.array([1.0, np.inf, np.inf, np.inf]), rng) for _ in range(400)]
    assert set(tied) == {1, 2, 3, 4}


def test_quantities_of_a_truth_and_of_draws_agree():
    truth = {"slope_pre": 1.5, "slope_post": -0.2, "alpha": np.array([0.3, 0.4])}
    q = sbc.rank_quantities(truth, ["mmlu", "bbh"])
    assert q["doubling_time_days_pre"] == pytest.approx(np.log(2) / 1.5 * 365.25, rel=1e-3)
    assert np.isinf(q["doubling_time_days"])  # a falling frontier never doubles
    assert q["doubling_time_ratio"] == 0.0  # doubling before only: infinitely slower after
    assert q["alpha[bbh]"] == 0.4
    draws = sbc.rank_quantities({k: np.stack([np.asarray(v)] * 3) for k, v in truth.items()},
                                ["mmlu", "bbh"])
    assert draws["alpha[mmlu]"].shape == (3,)


def test_the_ranked_ratio_orders_every_case_of_the_two_slopes():
    post = np.array([0.7, 0.7, -0.1, -0.1, 0.3])
    pre = np.array([0.5, -0.5, 0.5, -0.5, 0.3])
    q = sbc.rank_quantities({"slope_pre": pre, "slope_post": post, "alpha": np.zeros((5, 1))},
                            ["mmlu"])
    assert q["doubling_time_ratio"].tolist() == [pytest.approx(1.4), np.inf, 0.0, -1.0, 1.0]
    rng = np.random.default_rng(0)
    # an undefined truth ranks below every defined draw and ties with undefined ones
    assert sbc.rank_of(-1.0, q["doubling_time_ratio"], rng) in (0, 1)


def test_thinning_follows_the_ess():
    rng = np.random.default_rng(3)
    independent = rng.normal(size=(2, 400))
    sticky = np.cumsum(rng.normal(size=(2, 400)), axis=1) * 0.05 + independent * 0.01
    thinned, factor, ess = sbc.thin_to_ess({"a": independent})
    assert factor == 1 and thinned["a"].size == 800
    thinned, factor, ess = sbc.thin_to_ess({"a": independent, "b": sticky})
    assert factor > 5 and thinned["a"].size == pytest.approx(ess, rel=0.5)


def test_simulation_seeds_do_not_depend_on_the_count():
    assert sbc.simulation_seeds(7, 3) == sbc.simulation_seeds(7, 10)[:3]
    assert len(set(sbc.simulation_seeds(7, 50))) == 50


def _fake_record(i, rng, status="ok"):
    if status != "ok":
        return {"status": "failed", "error": "RuntimeError: boom", "result": None}
    quantities = ["slope_pre", "slope_post", "log_likelihood"]
    timing = {"build_seconds": 60.0 if i == 0 else 0.0, "sample_seconds": 5.0,
              "total_seconds": 65.0 if i == 0 else 5.5}
    return {"status": "ok", "error": None, "result": {
        "sim_id": i, "seed": 100 + i, "n_draws": 50, "thin": 8,
        "ranks": {q: int(rng.integers(0, 51)) for q in quantities}, "timing": timing,
        "diagnostics": {"divergences": 3 if i % 10 == 1 else 0,
                        "max_rhat": 1.05 if i % 4 == 0 else 1.001,
                        "min_ess_bulk": 300.0 if i % 5 == 0 else 800.0}}}


def test_family_wise_verdict_is_holm_over_each_quantitys_two_tests():
    tests = {"a": {"p_chi2": 0.01, "p_ks": 0.5}, "b": {"p_chi2": 0.3, "p_ks": 0.02},
             "c": {"p_chi2": 0.9, "p_ks": 0.3}}
    result = sbc.family_wise_uniformity(tests)
    # p = 2 min: 0.02, 0.04, 0.6; Holm: 3 x 0.02, max(0.06, 2 x 0.04), max(0.08, 0.6)
    assert result["adjusted_p"] == pytest.approx({"a": 0.06, "b": 0.08, "c": 0.6})
    assert result["rejected"] == []  # each rejects alone at 0.05, not as a family of 3
    tests["a"]["p_ks"] = 0.001
    assert sbc.family_wise_uniformity(tests)["rejected"] == ["a"]  # 3 x 0.002 = 0.006
    # a doubling time mirrors its slope's ranks: one member of the family, not two
    mirrored = {"slope_post": {"p_chi2": 0.01, "p_ks": 0.5},
                "doubling_time_days": {"p_chi2": 0.01, "p_ks": 0.5}}
    assert sbc.family_wise_uniformity(mirrored)["adjusted_p"] == pytest.approx(
        {"slope_post": 0.02})
    alone = {"doubling_time_days": {"p_chi2": 0.01, "p_ks": 0.5}}
    assert sbc.family_wise_uniformity(alone)["rejected"] == ["doubling_time_days"]


def test_outputs_from_records(tmp_path):
    rng = np.random.default_rng(4)
    records = {f"sim_{i:05d}": _fake_record(i, rng, "failed" if i == 2 else "ok")
               for i in range(40)}
    spec = load_spec("paper_design")
    report = sbc.write_sbc_outputs(tmp_path, records, spec, wall_seconds=100.0)

    table = pd.read_csv(tmp_path / sbc.RANKS_CSV)
    assert list(table.columns[:5]) == ["sim_id", "seed", "status", "n_draws", "thin"]
    ok = table["status"] == "ok"
    assert table.loc[ok, "divergences"].notna().all() and table.loc[ok, "min_ess_bulk"].gt(0).all()
    assert table.loc[table["sim_id"] == 1, "divergences"].item() > 0  # sims 1, 11, 21, 31
    assert {"rank_slope_pre", "rank_log_likelihood"} <= set(table.columns)
    assert len(table) == 40 and (table["status"] == "failed").sum() == 1
    saved = json.loads((tmp_path / sbc.SBC_JSON).read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["n_ok"] == 39 and saved["failures"] == {"sim_00002": "RuntimeError: boom"}
    assert set(saved["uniformity"]) == {"slope_pre", "slope_post", "log_likelihood"}
    assert set(saved["family_wise"]["adjusted_p"]) == set(saved["uniformity"])
    diag = saved["sampler_diagnostics"]  # 39 fits: sims 0..39 except 2
    assert diag["n_fits"] == 39
    assert diag["n_with_divergences"] == 4  # sims 1, 11, 21, 31
    assert diag["n_rhat_above"] == 10 and diag["n_ess_bulk_below"] == 8
    assert saved["divergent_vs_clean"] == {}  # 4 divergent fits: too few to compare
    timing = saved["timing"]
    assert timing["n_compiles"] == 1
    paid = 65.0 + 38 * 5.5  # one compile, 39 samplings
    assert timing["task_seconds_without_reuse"] == pytest.approx(paid + 38 * 60.0)
    assert timing["saved_fraction"] == pytest.approx(1 - paid / (paid + 38 * 60.0))
    assert (tmp_path / "sbc_ecdf.png").stat().st_size > 0
    assert (tmp_path / "sbc_ecdf.svg").stat().st_size > 0


@pytest.mark.integration
def test_small_sbc_on_a_local_cluster(tmp_path):
    spec = load_spec("paper_design").with_overrides(
        {"sampler": {**SMALL_SAMPLER, "draws": 100, "tune": 100}})
    report = sbc.run_sbc(spec, 3, tmp_path / "sbc", n_workers=1, progress=False)

    table = pd.read_csv(tmp_path / "sbc" / sbc.RANKS_CSV)
    assert len(table) == 3 and (table["status"] == "ok").all(), table.get("error")
    ranks = table.filter(like="rank_")
    assert {"rank_slope_pre", "rank_doubling_time_days", "rank_alpha[mmlu]",
            "rank_log_likelihood"} <= set(ranks.columns)
    assert (ranks >= 0).all().all() and ranks.le(table["n_draws"], axis=0).all().all()
    # Every task records where its divergences start (a list, empty without divergences)
    # and its leapfrog steps per draw.
    for path in sorted((tmp_path / "sbc" / "tasks").glob("*.json")):
        diag = json.loads(path.read_text())["result"]["diagnostics"]
        assert isinstance(diag["divergence_locations"], list)
        assert len(diag["divergence_locations"]) <= 5
        assert (diag["divergences"] == 0) == (diag["divergence_locations"] == [])
        assert diag["mean_leapfrog_steps"] >= 1
    assert "divergence_variables" in report["sampler_diagnostics"]
    # One worker compiled once; the other simulations swapped their data in.
    assert report["timing"]["n_compiles"] == 1 and report["timing"]["n_fits"] == 3
    assert (tmp_path / "sbc" / "sbc_ecdf.png").is_file()


def test_the_bundled_design_keeps_the_real_covariates():
    """SBC on the bundled data's design (issue 18): the real models, dates, sizes, benchmarks
    and formats; only the observed values are replaced by prior predictive draws."""
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    data = sbc.design_data(design="bundled", spec=spec)
    inputs = prepare_inputs(data, spec)
    assert len(inputs.models) == 88 and len(inputs.benchmarks) == 10
    assert set(inputs.formats) == {"rc", "mc"}
    key = sbc.structure_key(spec, 1, "bundled")
    assert key != sbc.structure_key(spec, 1, "paper")


def test_a_quantity_added_mid_batch_is_tested_on_the_simulations_that_rank_it(tmp_path):
    """The level was added to the SBC ranks after a batch began: the earlier records have no
    rank for it, and its uniformity test counts only the later ones (no NaN ranks)."""
    rng = np.random.default_rng(5)
    records = {}
    for i in range(30):
        record = _fake_record(i, rng)
        if i >= 10:
            record["result"]["ranks"]["trend_intercept"] = int(rng.integers(0, 51))
        records[f"sim_{i:05d}"] = record
    report = sbc.write_sbc_outputs(tmp_path, records, load_spec("paper_design"),
                                   wall_seconds=1.0)
    assert report["uniformity"]["trend_intercept"]["n"] == 20
    assert report["uniformity"]["slope_pre"]["n"] == 30
    table = pd.read_csv(tmp_path / sbc.RANKS_CSV)
    assert table["rank_trend_intercept"].isna().sum() == 10


def test_the_weakly_identified_parameters_are_ranked_when_present():
    values = {"slope_pre": np.zeros((1, 2)), "slope_post": np.ones((1, 2)),
              "alpha": np.ones((1, 2, 2)), "frontier_inefficiency": np.full((1, 2), 0.3),
              "loss_log_alpha_mu": np.full((1, 2), -1.0),
              "protocol_offset": np.array([[[0.1, 0.3], [0.2, -0.2]]])}
    q = sbc.rank_quantities(values, ["a", "b"])
    assert q["protocol_offset_mean"] == pytest.approx(np.array([[0.2, 0.0]]))
    assert q["frontier_inefficiency"].shape == (1, 2) and "frontier_noise" not in q
    assert q["loss_log_alpha_mu"] == pytest.approx(np.full((1, 2), -1.0))


def test_an_unstated_factor_per_benchmark_is_ranked_by_its_log_mean():
    values = {"slope_pre": 0.1, "slope_post": 0.5, "alpha": np.array([0.3, 0.2]),
              "score_precision_unstated": np.array([0.5, 2.0])}
    q = sbc.rank_quantities(values, ["a", "b"], per_benchmark={"score_precision_unstated"})
    assert "score_precision_unstated" not in q
    assert q["score_precision_unstated_log_mean"] == pytest.approx(0.0)


def test_the_level_is_ranked():
    values = {"slope_pre": 0.1, "slope_post": 0.5, "trend_intercept": -0.4,
              "alpha": np.array([0.3, 0.2])}
    q = sbc.rank_quantities(values, ["a", "b"])
    assert q["trend_intercept"] == pytest.approx(-0.4)


def test_the_default_terms_scales_are_ranked_when_present():
    values = {"slope_pre": 0.1, "slope_post": 0.5, "alpha": np.array([0.3, 0.2]),
              "benchmark_drift_sd": 0.4, "score_precision_unstated": 0.6}
    q = sbc.rank_quantities(values, ["a", "b"])
    assert q["benchmark_drift_sd"] == pytest.approx(0.4)
    assert q["score_precision_unstated"] == pytest.approx(0.6)
    assert "benchmark_drift_sd" not in sbc.rank_quantities(
        {k: v for k, v in values.items() if k != "benchmark_drift_sd"}, ["a", "b"])


def test_sampler_diagnostics_of_one_chain_fits_have_no_rhat():
    """An SBC batch run with --chains 1 crashed writing its outputs: R-hat is None there."""
    from densing_bayes.analysis.calibration import sampler_diagnostics
    from densing_bayes.model.spec import load_spec

    def rec(rhat, ess):
        return {"status": "ok", "result": {"diagnostics": {
            "divergences": 0, "max_rhat": rhat, "min_ess_bulk": ess}}}

    out = sampler_diagnostics({"a": rec(None, 300.0), "b": rec(1.02, 500.0)},
                              load_spec("default"))
    assert out["n_fits"] == 2 and out["n_rhat_computed"] == 1 and out["n_rhat_above"] == 1
    assert out["median_max_rhat"] == 1.02 and out["n_ess_bulk_below"] == 1
    none = sampler_diagnostics({"a": rec(None, 300.0)}, load_spec("default"))
    assert none["median_max_rhat"] is None and none["n_rhat_above"] == 0


def test_divergent_fits_name_the_variables_where_their_divergences_start():
    from densing_bayes.analysis.calibration import sampler_diagnostics

    def rec(divergences, variables):
        where = [{"coordinate": f"{v}_0", "variable": v, "mean_percentile": 0.01,
                  "outer_share": 1.0, "z": -4.0, "in_tail": True} for v in variables]
        where.append({"coordinate": "chance_0", "variable": "chance", "mean_percentile": 0.2,
                      "outer_share": 0.5, "z": -1.0, "in_tail": False})  # not counted
        return {"status": "ok", "result": {"diagnostics": {
            "divergences": divergences, "max_rhat": None, "min_ess_bulk": 100.0,
            "divergence_locations": where}}}

    records = {"a": rec(3, ["drift_sd_log__", "slope_post"]), "b": rec(1, ["drift_sd_log__"]),
               "c": rec(0, []), "d": {"status": "ok", "result": {"diagnostics": {
                   "divergences": 0, "max_rhat": None, "min_ess_bulk": 90.0}}}}  # older record
    out = sampler_diagnostics(records, load_spec("default"))
    assert out["divergence_variables"] == {"drift_sd_log__": 2, "slope_post": 1}
    assert list(out["divergence_variables"]) == ["drift_sd_log__", "slope_post"]
    assert out["n_divergent_fits_placed"] == 2  # a and b; c has none, d is an older record


def _ranks_table(ranks, n_draws, status=None):
    n = len(ranks)
    return pd.DataFrame({"sim_id": range(n), "status": status or ["ok"] * n,
                         "n_draws": n_draws, "rank_q": ranks})


def test_midpoint_ranks_are_exact_fractional_ranks():
    table = _ranks_table([0, 9, 4], [9, 9, 4])
    u = sbc.midpoint_ranks(table)["q"].to_numpy()
    np.testing.assert_allclose(u, [0.05, 0.95, 0.9])


def test_paired_rank_shift_of_two_batches():
    short = _ranks_table([1, 3, 5, 7], [9, 9, 9, 9])
    long = _ranks_table([3, 5, 7, 9, 0], [9, 9, 9, 9, 9])  # sim 4 only in the long batch
    result = sbc.compare_rank_batches(short, long)["q"]
    assert result["n"] == 4
    assert result["mean_shift"] == pytest.approx(0.2)  # every rank +2 of 10 positions
    assert result["shift_se"] == pytest.approx(0.0, abs=1e-12)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["mean_rank_short"] == pytest.approx(0.45)  # (1, 3, 5, 7) + 1/2, over 10
    assert result["mean_rank_long"] - result["mean_rank_short"] == pytest.approx(0.2)


def test_failed_simulations_are_not_compared():
    short = _ranks_table([1, 3, 5], [9, 9, 9], status=["ok", "failed", "ok"])
    long = _ranks_table([1, 3, 5], [9, 9, 9])
    assert sbc.compare_rank_batches(short, long)["q"]["n"] == 2


def test_compare_command_writes_the_paired_shifts(tmp_path, capsys):
    for name, ranks in (("short", [1, 3, 5]), ("long", [2, 4, 6])):
        folder = tmp_path / name
        folder.mkdir()
        _ranks_table(ranks, [9, 9, 9]).to_csv(folder / sbc.RANKS_CSV, index=False)
        (folder / sbc.SBC_JSON).write_text(json.dumps({"sampler": {"draws": len(name)}}))
    out = tmp_path / "comparison.json"
    sbc.main(["compare", str(tmp_path / "short"), str(tmp_path / "long"), "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["quantities"]["q"]["mean_shift"] == pytest.approx(0.1)
    assert written["long_sampler"]["sampler"] == {"draws": 4}
    assert json.loads(capsys.readouterr().out) == written


def test_a_batch_of_some_ids_keeps_their_seeds_in_the_full_batch():
    spec = load_spec("default")
    full = sbc.sbc_tasks(spec, 40)
    some = sbc.sbc_tasks(spec, 40, only=[31, 0, 23, 0])
    assert [t.task_id for t in some] == ["sim_00000", "sim_00023", "sim_00031"]
    by_id = {t.task_id: t.kwargs["seed"] for t in full}
    assert all(t.kwargs["seed"] == by_id[t.task_id] for t in some)
    with pytest.raises(ValueError, match="0..39"):
        sbc.sbc_tasks(spec, 40, only=[40])


def test_divergent_fits_ranked_apart_from_clean_ones():
    # 8 divergent fits that all put the truth high, 12 clean ones spread evenly
    ranks = [90, 92, 94, 95, 96, 97, 98, 99] + list(range(4, 100, 8))
    table = _ranks_table(ranks, [99] * 20)
    table["divergences"] = [3] * 8 + [0] * 12
    out = sbc.divergent_vs_clean(table)["q"]
    assert (out["n_divergent"], out["n_clean"]) == (8, 12)
    assert out["mean_rank_divergent"] == pytest.approx((sum(ranks[:8]) / 8 + 0.5) / 100)
    assert out["p_mannwhitney"] < 0.001
    # the same ranks in both groups: nothing sets the divergent fits apart
    table["rank_q"] = list(range(4, 100, 12)) + list(range(4, 100, 8))
    assert sbc.divergent_vs_clean(table)["q"]["p_mannwhitney"] > 0.5
    # too few divergent fits to compare, or records without divergence counts
    table["divergences"] = [3] * 4 + [0] * 16
    assert sbc.divergent_vs_clean(table) == {}
    assert sbc.divergent_vs_clean(table.drop(columns="divergences")) == {}


def test_the_sbc_command_prints_the_family_wise_verdict_under_the_quantities():
    from densing_bayes.presentation.cli import uniformity_table

    tests = {"slope_pre": {"p_chi2": 0.01, "p_ks": 0.3, "uniform": False},
             "slope_post": {"p_chi2": 0.5, "p_ks": 0.6, "uniform": True}}
    text = uniformity_table({"uniformity": tests,
                             "family_wise": sbc.family_wise_uniformity(tests)})
    lines = text.splitlines()
    assert lines[0].endswith("Holm p=0.040  (p < 0.05 alone)")  # 2 x 2 x 0.01
    assert lines[-1] == "family-wise at 0.05 over 2 quantities: NOT uniform: slope_pre"
    tests["slope_pre"]["p_chi2"] = 0.02
    text = uniformity_table({"uniformity": tests,
                             "family_wise": sbc.family_wise_uniformity(tests)})
    assert text.splitlines()[-1].endswith("no quantity rejected")


def test_a_data_designs_batches_record_the_data_hash_of_their_design():
    from densing_bayes.inference.run_io import data_hash
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import resolve_data_folder

    spec = load_spec("default")
    assert sbc.design_provenance(sbc.PAPER_DESIGN, spec) == {}
    assert sbc.design_provenance("bundled", spec) == {
        "data_hash": data_hash(resolve_data_folder(spec.data.folder))}


def test_the_protocol_scales_and_the_precisions_are_ranked_by_their_log_mean():
    """The default's protocol scales and per-benchmark precisions are ranked as the mean of
    their logarithms over the benchmarks (one quantity each, so the family-wise test keeps its
    power for the trend); a shared precision is ranked as its own logarithm."""
    values = {"slope_pre": np.zeros((1, 2)), "slope_post": np.ones((1, 2)),
              "alpha": np.ones((1, 2, 2)),
              "protocol_scale": np.array([[[2.0, 0.5], [np.e, np.e]]]),
              "score_precision_eval": np.array([[[100.0, 1.0], [np.e, 1.0]]])}
    q = sbc.rank_quantities(values, ["a", "b"],
                            per_benchmark={"protocol_scale", "score_precision_eval"})
    assert q["protocol_scale_log_mean"] == pytest.approx(np.array([[0.0, 1.0]]))
    assert q["score_precision_eval_log_mean"] == pytest.approx(
        np.array([[np.log(10.0), 0.5]]))
    shared = sbc.rank_quantities({**values, "score_precision_eval": np.full((1, 2), np.e)},
                                 ["a", "b"], per_benchmark={"protocol_scale"})
    assert shared["score_precision_eval_log_mean"] == pytest.approx(np.ones((1, 2)))
    # a truth (no sample dimensions) gives the same quantity as its draws
    truth = sbc.rank_quantities({k: v[0, 0] for k, v in values.items()}, ["a", "b"],
                                per_benchmark={"protocol_scale", "score_precision_eval"})
    assert truth["score_precision_eval_log_mean"] == pytest.approx(np.log(10.0))
