"""Model checks ("How sure is this?"): each check's arithmetic on hand-made inputs, the registry,
the verdict, and the report header that must never be green while a check fails."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from densing_bayes.analysis import checks, misspecification


# ============================================================== each check, by hand
def test_heldout_coverage_uses_a_binomial_range():
    # Binomial(20, 0.9): its central 95% range is 15-20 of 20.
    rec = checks.heldout_record(9, 20, 0.9, runs=["olmo-7B-anneal"], bias=0.038)
    assert rec["value"] == pytest.approx(0.45) and rec["nominal"] == 0.9
    assert rec["passed"] is False
    assert "9 of 20" in rec["detail"] and "15-20" in rec["detail"]
    assert "under-predicts" in rec["detail"]
    assert "over-predicts" in checks.heldout_record(9, 20, 0.9, bias=-0.02)["detail"]
    # a mean error inside the tolerance names no direction (the reference run's +0.0004 had
    # printed "+0.000: the model under-predicts")
    small = checks.heldout_record(33, 40, 0.9, bias=0.0004)["detail"]
    assert "+0.0004: no systematic error" in small and "predicts" not in small
    assert checks.heldout_record(15, 20, 0.9)["passed"] is True
    assert checks.heldout_record(14, 20, 0.9)["passed"] is False
    assert checks.heldout_record(20, 20, 0.9)["passed"] is True


def test_heldout_coverage_fails_on_a_systematic_error_beyond_the_tolerance():
    # Issue 18's bar is coverage *and* |mean error| <= 0.015: a candidate fit with 36 of 40
    # inside and +0.0160 had shown a green pass beside "the model under-predicts".
    biased = checks.heldout_record(36, 40, 0.9, bias=0.0160)
    assert biased["passed"] is False
    assert "under-predicts" in biased["detail"] and "coverage in range" in biased["detail"]
    assert checks.heldout_record(36, 40, 0.9, bias=-0.0151)["passed"] is False
    assert checks.heldout_record(36, 40, 0.9, bias=0.0149)["passed"] is True
    # no bias given (a leave-size-out count): coverage alone decides
    assert checks.heldout_record(36, 40, 0.9)["passed"] is True


def test_a_failed_heldout_check_gets_the_caveat_of_its_reason():
    # 2026-12-04: 36 of 40 inside with mean error +0.0154 printed "fall outside their
    # predictive intervals more often than nominal", which the same record's detail contradicted.
    biased = checks.heldout_record(36, 40, 0.9, bias=0.0154)["caveat"]
    assert "about as often as nominal" in biased and "under-predicts by 0.0154" in biased
    assert "more often than nominal" not in biased
    assert "over-predicts by 0.0200" in checks.heldout_record(36, 40, 0.9, bias=-0.02)["caveat"]
    narrow = checks.heldout_record(9, 20, 0.9, bias=0.038)["caveat"]
    assert narrow.startswith("Held-out reference runs fall outside") and "too narrow" in narrow
    wide = checks.heldout_record(40, 40, 0.9, bias=0.0)  # Binomial(40, 0.9) range: 32-39
    assert wide["passed"] is False and "conservative" in wide["caveat"]
    assert checks.heldout_record(36, 40, 0.9, bias=0.001)["caveat"] == ""


def test_the_heldout_detail_shows_each_runs_mean_error():
    # a run's rows share its error: the overall mean can hide one run carrying it
    rec = checks.heldout_record(36, 40, 0.9, bias=0.0154,
                                run_errors={"olmo-7B-step925000": 0.0048, "olmo-7B-anneal": 0.0261})
    assert "by run olmo-7B-anneal +0.0261, olmo-7B-step925000 +0.0048" in rec["detail"]
    assert "by run" not in checks.heldout_record(36, 40, 0.9, bias=0.0154)["detail"]


def test_pareto_k_share():
    k = np.array([0.1, 0.8, 0.2, 0.3])
    rec = checks.pareto_k_record(k, good_k=0.7)
    assert rec["value"] == pytest.approx(0.25) and rec["passed"] is False
    assert "1 of 4" in rec["detail"]
    k = np.zeros(200)
    k[0] = 0.9  # 1 of 200 = 0.5%: within the tolerated 1%
    assert checks.pareto_k_record(k, good_k=0.7)["passed"] is True
    k[1] = k[2] = 0.9  # 3 of 200 = 1.5%
    assert checks.pareto_k_record(k, good_k=0.7)["passed"] is False


def test_pareto_k_detail_names_its_draws_and_a_thinned_copy():
    # a report rendered from the committed thinned copy flagged 59 of 700 scores where the
    # full run's 6,000 draws flagged 19, and nothing said why the two differed
    k = np.array([0.1, 0.8, 0.2, 0.3])
    full = checks.pareto_k_record(k, good_k=0.7, n_draws=6000)["detail"]
    assert "from 6,000 draws" in full and "thinned" not in full
    thin = checks.pareto_k_record(k, good_k=0.58, n_draws=250, thinned_from_draws=6000)
    assert "from 250 draws" in thin["detail"] and "thinned copy of a 6,000-draw run" \
        in thin["detail"]
    assert thin["passed"] is False  # the caveat explains the verdict, it does not change it


def test_loo_pit_detail_names_a_thinned_copy():
    # from the thinned copy 22 PIT values sat above 0.99 where the full run had 17, and the
    # LOO-PIT record, unlike the Pareto-k one, did not say its draws were a thinned copy
    pit = (np.arange(200) + 0.5) / 200
    full = checks.loo_pit_record(pit, n_draws=6000)
    assert "thinned" not in full["detail"]
    thin = checks.loo_pit_record(pit, n_draws=250, thinned_from_draws=6000)
    assert "computed from 250 draws, the committed thinned copy of a 6,000-draw run" \
        in thin["detail"]
    assert thin["passed"] == full["passed"] is True


def test_reachability_without_replicates_allows_no_score_above_the_ceiling():
    reachable = np.array([np.full(100, 0.6), np.full(100, 1.0)])  # chance + span draws
    scores = np.array([0.5, 0.7, 0.65, 0.3, 0.9])
    bench = np.array([0, 0, 0, 1, 1])
    recs = {r["name"]: r for r in checks.reachability_records(["obqa", "mmlu"], reachable,
                                                             scores, bench)}
    assert recs["reachability:obqa"]["value"] == pytest.approx(2 / 3)
    assert recs["reachability:obqa"]["passed"] is False
    assert "2 of 3" in recs["reachability:obqa"]["detail"]
    assert recs["reachability:mmlu"]["value"] == 0.0
    assert recs["reachability:mmlu"]["passed"] is True


def test_reachability_with_replicates_tolerates_noise_but_not_far_excess():
    reachable = np.full((1, 100), 0.6)
    bench = np.zeros(3, int)
    scores = np.array([0.5, 0.62, 0.63])  # 2 above 0.6, barely
    replicated = np.tile([0.55, 0.61, 0.64], (100, 1))  # every replicate: 2 above, max 0.64
    rec = checks.reachability_records(["b"], reachable, scores, bench, replicated)[0]
    assert rec["passed"] is True
    scores = np.array([0.5, 0.62, 0.86])  # the largest is beyond every replicate's maximum
    rec = checks.reachability_records(["b"], reachable, scores, bench, replicated)[0]
    assert rec["passed"] is False and "0.0% of draws" in rec["detail"]


def test_loo_pit_uniform_passes_and_u_shape_fails_as_over_confident():
    n = 400
    uniform = (np.arange(n) + 0.5) / n
    rec = checks.loo_pit_record(uniform)
    assert rec["passed"] is True and rec["value"] == 0
    u_shaped = np.concatenate([np.full(n // 2, 0.02), np.full(n // 2, 0.98)])
    rec = checks.loo_pit_record(u_shaped)
    assert rec["passed"] is False and rec["value"] > 0
    assert "over-confident" in rec["detail"]
    low = np.full(n, 0.1)  # every observation in the low tail: predictions too high
    assert "too high" in checks.loo_pit_record(low)["detail"]


def test_loo_pit_caveat_names_the_direction_of_the_misfit():
    """An under-confident score model must not be reported as one whose intervals are too
    narrow (the old single caveat said so whatever the shape)."""
    n = 400
    u_shaped = np.concatenate([np.full(n // 2, 0.02), np.full(n // 2, 0.98)])
    assert "over-confident" in checks.loo_pit_record(u_shaped)["caveat"]
    central = np.full(n, 0.5)  # every observation at its predictive median: too wide
    rec = checks.loo_pit_record(central)
    assert rec["passed"] is False
    assert "too few values in the tails" in rec["caveat"]
    assert "do not include" not in rec["caveat"]
    assert "too high" in checks.loo_pit_record(np.full(n, 0.1))["caveat"]
    assert checks.loo_pit_record((np.arange(n) + 0.5) / n)["caveat"] == ""


def test_reachability_caveat_says_whether_scores_exceed_or_the_maximum_is_rare():
    reachable = np.full((1, 100), 0.6)
    bench = np.zeros(3, int)
    replicated = np.tile([0.55, 0.61, 0.64], (100, 1))  # 2 above the ceiling, max 0.64
    rare_max = checks.reachability_records(["b"], reachable, np.array([0.5, 0.55, 0.66]),
                                           bench, replicated)[0]
    assert rare_max["passed"] is False and rare_max["value"] == pytest.approx(1 / 3)
    assert rare_max["caveat"] == checks.REACHABILITY_CAVEATS["max"]
    excess = checks.reachability_records(["b"], reachable, np.array([0.61, 0.62, 0.63]),
                                         bench, replicated)[0]
    assert excess["passed"] is False
    assert excess["caveat"] == checks.REACHABILITY_CAVEATS["above"]


def test_loo_pit_band_is_simultaneous():
    lower, upper = checks.loo_pit_band(200)
    grid = checks.LOO_PIT_GRID
    point_lo, point_hi = checks.loo_pit_band(200, prob=0.95)  # same call, same band
    np.testing.assert_array_equal(lower, point_lo)
    # A simultaneous band is wider than the pointwise 95% band at the middle of the grid.
    from scipy import stats
    mid = np.argmin(np.abs(grid - 0.5))
    pw_lo, pw_hi = stats.binom.interval(0.95, 200, 0.5)
    assert upper[mid] - lower[mid] > (pw_hi - pw_lo) / 200


def test_sensitivity_spread_and_failed_refits():
    refits = [
        {"name": "a", "status": "ok", "doubling_time_days": {"median": 100.0},
         "diagnostics": {"passed": True, "max_rhat": 1.001, "min_ess_bulk": 900}},
        {"name": "b", "status": "ok", "doubling_time_days": {"median": 110.0},
         "diagnostics": {"passed": False, "max_rhat": 1.05, "min_ess_bulk": 50}},
        {"name": "c", "status": "ok", "doubling_time_days": {"median": 130.0},
         "diagnostics": {"passed": False, "max_rhat": 1.02, "min_ess_bulk": 120}},
        {"name": "d", "status": "failed", "doubling_time_days": None, "diagnostics": None},
    ]
    main = {"median": 105.0, "lower": 90.0, "upper": 120.0}
    rec = checks.sensitivity_spread_record(refits, main)
    assert rec["value"] == pytest.approx(30.0)  # 130 - 100
    assert rec["passed"] is False and "outside: c" in rec["detail"]
    assert checks.sensitivity_spread_record(refits[:2], main)["passed"] is True
    rec = checks.refits_converged_record(refits, {"chains": 2, "draws": 300})
    assert rec["value"] == 3 and rec["passed"] is False  # b, c, and the failed d
    assert "1.020-1.050" in rec["detail"] and "50-120" in rec["detail"]
    assert checks.refits_converged_record(refits[:1])["passed"] is True


def test_the_spread_does_not_pass_on_unconverged_refits_alone():
    """2026-12-04: the sensitivity batch of the new default held the baseline and one refit
    (without aggregator rows) at R-hat 1.53, and the spread check passed on that refit's median:
    an unconverged median inside the interval is no evidence of robustness (one outside it
    still fails the check: it can only err towards an alarm)."""
    def refit(name, median, converged):
        return {"name": name, "status": "ok", "doubling_time_days": {"median": median},
                "diagnostics": {"passed": converged, "max_rhat": 1.001 if converged else 1.53,
                                "min_ess_bulk": 900 if converged else 7}}
    main = {"median": 219.0, "lower": 173.0, "upper": 289.0}
    rec = checks.sensitivity_spread_record(
        [refit("baseline", 219.0, True), refit("without_source:aggregator", 263.0, False)], main)
    assert rec["passed"] is None
    assert "no refit besides the baseline converged" in rec["detail"]
    assert "263" in rec["detail"]
    rec = checks.sensitivity_spread_record(
        [refit("baseline", 219.0, True), refit("without_source:aggregator", 300.0, False)], main)
    assert rec["passed"] is False and "outside: without_source:aggregator" in rec["detail"]
    rec = checks.sensitivity_spread_record(
        [refit("baseline", 219.0, True), refit("wide_slopes", 230.0, True),
         refit("without_source:aggregator", 263.0, False)], main)
    assert rec["passed"] is True


def test_failed_refits_name_the_refit_and_the_threshold_it_missed():
    # The 2026-12-04 sensitivity batch: the baseline missed only the tail ESS, and the detail
    # quoted its (passing) R-hat and bulk ESS as if they were the reason.
    refits = [
        {"name": "baseline", "status": "ok", "diagnostics": {
            "passed": False, "max_rhat": 1.007, "min_ess_bulk": 616, "min_ess_tail": 310,
            "failures": ["min tail ESS 310 < 400: too few effective draws for interval ends: "
                         "raise [sampler] draws"]}},
        {"name": "without_source:aggregator", "status": "ok",
         "diagnostics": {"passed": True, "max_rhat": 1.008, "min_ess_bulk": 622}},
        {"name": "broken", "status": "failed", "diagnostics": None},
    ]
    detail = checks.refits_converged_record(refits)["detail"]
    assert "baseline: min tail ESS 310 < 400" in detail
    assert "raise [sampler]" not in detail
    assert "broken: did not finish" in detail
    assert "without_source" not in detail


# ============================================================== registry and verdict
class _Thresholds:
    max_rhat, min_ess, max_divergences, min_bfmi = 1.01, 400.0, 0, 0.3


class _Spec:
    diagnostics = _Thresholds()
    ci_prob = 0.9


def test_sampler_records_against_thresholds():
    summary = {"diagnostics": {"divergences": 2, "max_rhat": 1.005, "min_ess_bulk": 350.0,
                               "min_ess_tail": 800.0, "min_bfmi": 0.9}}
    ctx = checks.CheckContext(idata=None, spec=_Spec(), summary=summary)
    recs = {r["name"]: r for r in checks.run_checks(ctx, names=["sampler"])}
    assert recs["sampler:divergences"]["passed"] is False
    assert recs["sampler:max_rhat"]["passed"] is True
    assert recs["sampler:min_ess_bulk"]["passed"] is False
    assert recs["sampler:min_ess_tail"]["passed"] is True
    assert all(r["kind"] == "sampler" for r in recs.values())
    assert checks.verdict(list(recs.values()))["status"] == "sampler_failed"


def test_registry_is_extensible_and_a_raising_check_is_not_a_pass():
    @checks.register("test_extra", kind="model", caveat="extra failed")
    def _extra(ctx):
        return checks.record("test_extra", "an extra check", value=1.0, nominal=0.0,
                             passed=False, detail="one")

    @checks.register("test_broken", kind="model")
    def _broken(ctx):
        raise RuntimeError("boom")

    try:
        ctx = checks.CheckContext(idata=None, spec=_Spec(), summary={})
        recs = {r["name"]: r for r in checks.run_checks(ctx, names=["test_extra",
                                                                    "test_broken"])}
        assert recs["test_extra"]["caveat"] == "extra failed"
        assert recs["test_broken"]["passed"] is None and "boom" in recs["test_broken"]["detail"]
        v = checks.verdict(list(recs.values()))
        assert v["status"] == "checks_failed" and v["failed"] == ["an extra check"]
        assert v["not_computed"] == ["test_broken"]
        assert checks.binding_caveats(list(recs.values())) == ["extra failed"]
    finally:
        checks.CHECKS.pop("test_extra")
        checks.CHECKS.pop("test_broken")


def test_verdict_passes_only_without_failures():
    ok = checks.record("a", "a", value=1, nominal=1, passed=True)
    missing = checks.record("b", "b", passed=None)
    bad = checks.record("c", "c", value=0, nominal=1, passed=False, caveat="c failed")
    assert checks.verdict([ok, missing])["status"] == "passed"
    assert checks.verdict([ok, bad])["status"] == "checks_failed"
    assert ok["caveat"] == "" and bad["caveat"] == "c failed"


# ============================================================== the report's header
def _header(records):
    from densing_bayes.presentation import report

    summary = {"ci_prob": 0.9, "doubling_time_days": {"median": 177, "lower": 149,
                                                      "upper": 215},
               "slope_per_day": {"median": 0.0039, "lower": 0.0032, "upper": 0.0046},
               "trend": {"kind": "frontier", "changepoint": "fixed",
                         "changepoint_date": "2022-11-30"}}
    return report.render_checks_header(records, summary, benchmarks=["mmlu", "piqa"])


def test_header_is_never_green_while_a_check_fails():
    ok = checks.record("sampler:max_rhat", "sampler: largest R-hat", value=1.001,
                       nominal=1.01, passed=True, kind="sampler")
    bad = checks.record("heldout_coverage", "held-out coverage", value=0.45, nominal=0.9,
                        passed=False, caveat="intervals too narrow")
    html = _header([ok, bad])
    assert 'class="ok"' not in html and 'class="banner' in html
    assert "held-out coverage" in html and "intervals too narrow" in html
    assert "e-folds per year" in html  # the estimand is stated
    html = _header([ok])
    assert 'class="ok"' in html


def test_context_loo_equals_arviz_loo():
    """The header's Pareto k and the report's LOO table come from one PSIS pass, with az.loo's
    numbers exactly."""
    import arviz as az

    rng = np.random.default_rng(1)
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 200)),
                                    "theta": rng.normal(size=(2, 200, 3))},
                         log_likelihood={"score_obs": rng.normal(-1, 0.3, (2, 200, 40))},
                         observed_data={"score_obs": rng.uniform(size=40)})
    ctx = checks.CheckContext(idata=idata, spec=_Spec())
    ref = az.loo(idata, var_name="score_obs", pointwise=True)
    ours = ctx.loo
    assert ours["elpd_loo"] == pytest.approx(ref.elpd_loo)
    assert ours["se"] == pytest.approx(ref.se)
    assert ours["p_loo"] == pytest.approx(ref.p_loo)
    np.testing.assert_allclose(ours["pareto_k"], np.asarray(ref.pareto_k))


def test_reachability_uses_the_ceiling_of_each_rows_format():
    from densing_bayes.analysis.checks import reachability_records

    # one benchmark; row 0 is MC (ceiling 0.95), row 1 RC (0.85), row 2 unknown (max: 0.95)
    scores = np.array([0.90, 0.90, 0.97])
    out = reachability_records(["b"], None, scores, np.zeros(3, int),
                               row_ceiling=np.array([0.95, 0.85, 0.95]))
    assert out[0]["value"] == pytest.approx(2 / 3)  # the RC row at 0.90 and the 0.97
    assert out[0]["passed"] is False


def test_anchor_and_offset_checks_read_the_identification_summary():
    from densing_bayes.analysis import checks

    anchor = {"run": "olmo-7B", "format": "mc", "n_scores": 370, "n_checkpoints": 37,
              "true_params": 6.9e9, "effective_params": {"median": 4.4e9, "lower": 3.6e9,
                                                          "upper": 5.5e9},
              "true_inside": False, "log_ratio_median": np.log(4.4 / 6.9),
              "predictive_coverage": 0.79, "predictive_mean_error": -0.01, "ci_prob": 0.9}
    offsets = [{"benchmark": f"b{i}", "prior_z": z} for i, z in
               enumerate([0.1, -2.5, 2.8, 2.2, 0.3, 0.0, 0.5, -0.4, 1.0, 1.9])]
    ctx = checks.CheckContext(idata=None, spec=None, summary={
        "identification": {"anchors": [anchor], "protocol_offsets": offsets}})
    (size,) = checks._anchor_size(ctx)
    (coverage,) = checks._anchor_coverage(ctx)
    assert size["passed"] is False and "6.9e+09 outside" in size["detail"]
    assert coverage["passed"] is False and coverage["nominal"] == 0.9
    far = checks._protocol_offsets(ctx)
    assert far["passed"] is False  # 3 of 10 beyond 2 SD; at most 2 expected at 99%
    assert "b1, b2, b3" in far["detail"]


def test_sbc_record_judges_the_quantities_as_a_family():
    ok = {"uniformity": {"slope_post": {"n": 26, "p_chi2": 0.4, "p_ks": 0.5, "uniform": True},
                         "trend_intercept": {"n": 10, "p_chi2": 0.2, "p_ks": 0.3,
                                             "uniform": True}},
          "sampler": {"chains": 2, "draws": 300},
          "sampler_diagnostics": {"n_fits": 26, "n_with_divergences": 13}}
    rec = checks.sbc_record(ok, "bundled")
    assert rec["passed"] is True and rec["value"] == 0
    assert "10-26 simulations" in rec["detail"] and "little power" in rec["detail"]
    assert "13 of 26 fits had divergences" in rec["detail"]
    assert "no quantity's chi-square or KS rejects" in rec["detail"]
    # alone at 0.05 slope_pre rejects, but 3 x 2 x 0.01 = 0.06: not as one of a family of 3
    chance = {**ok, "uniformity": {**ok["uniformity"],
                                   "slope_pre": {"n": 26, "p_chi2": 0.01, "p_ks": 0.2,
                                                 "uniform": False}}}
    rec = checks.sbc_record(chance, "bundled")
    assert rec["passed"] is True
    assert "chi-square or KS rejects slope_pre (about 0.3 such rejections expected" in rec[
        "detail"]
    assert "smallest adjusted p 0.06 (slope_pre, at the edge: below 0.1)" in rec["detail"]
    # 2 x 3 x 0.00834 = 0.05004 passes, and must not read as "0.05" (the 100-simulation
    # bundled batch's slope before, Holm p 0.0501, once printed so)
    edge = {**ok, "uniformity": {**ok["uniformity"],
                                 "slope_pre": {"n": 26, "p_chi2": 0.00834, "p_ks": 0.2,
                                               "uniform": False}}}
    rec = checks.sbc_record(edge, "bundled")
    assert rec["passed"] is True and "smallest adjusted p 0.05004 (slope_pre" in rec["detail"]
    assert checks.p_beside(0.0499, 0.05) == "0.0499" and checks.p_beside(0.7, 0.05) == "0.7"
    assert "at the edge" not in checks.sbc_record(ok, "bundled")["detail"]
    bad = {**ok, "uniformity": {**ok["uniformity"],
                                "slope_pre": {"n": 26, "p_chi2": 0.001, "p_ks": 0.2,
                                              "uniform": False}}}
    rec = checks.sbc_record(bad, "bundled")
    assert rec["passed"] is False and "(Holm): rejected: slope_pre" in rec["detail"]
    assert rec["value"] == 1
    assert "divergences start" not in rec["detail"]  # an older batch: nothing recorded
    placed = {**bad, "sampler_diagnostics": {
        **ok["sampler_diagnostics"],
        "divergence_variables": {"benchmark_drift_sd_log__": 9, "slope_post": 4, "a": 2, "b": 1}}}
    rec = checks.sbc_record(placed, "bundled")
    assert ("13 of 26 fits had divergences; their divergences start in the tails of "
            "benchmark_drift_sd_log__ (9 fits), slope_post (4 fits), a (2 fits)") in rec["detail"]


def test_posterior_sbc_vouches_only_for_the_posterior_it_drew_its_truths_from(tmp_path):
    import json as _json

    from densing_bayes.inference.run_io import write_folder_atomically
    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    run = tmp_path / "run"
    write_folder_atomically(run, {"posterior_thin.nc": lambda p: p.write_text("draws")}, False)
    sha = _json.loads((run / "run.json").read_text())["sha256"]["posterior_thin.nc"]
    ctx = checks.CheckContext(idata=None, spec=spec, run_folder=run)
    (rec,) = checks.run_checks(ctx, names=["posterior_sbc_uniformity"])
    assert rec["passed"] is None and "--posterior RUN" in rec["detail"]
    (run / "sbc_posterior").mkdir()
    report = {"uniformity": {"slope_post": {"n": 40, "p_chi2": 0.001, "p_ks": 0.5,
                                            "uniform": False}},
              "sampler": {"chains": 1, "draws": 300}, "model_hash": spec.model_hash()}

    def stored(truths):
        (run / "sbc_posterior" / "sbc.json").write_text(
            _json.dumps({**report, **({"truths_from": truths} if truths else {})}))
        (rec,) = checks.run_checks(ctx, names=["posterior_sbc_uniformity"])
        return rec

    assert stored(None)["passed"] is None  # an older batch names no posterior
    rec = stored({"file": "posterior_thin.nc", "sha256": "0" * 64})
    assert rec["passed"] is None and "another fit's" in rec["detail"]
    rec = stored({"file": "posterior_thin.nc", "sha256": sha})
    assert rec["passed"] is False and "Posterior SBC" in rec["label"]
    assert "rejected: slope_post" in rec["detail"] and rec["caveat"]


def test_misspecification_records_judge_each_world_by_its_wilson_interval():
    def row(world, covered, n):
        lo, hi = misspecification.wilson_interval(covered, n)
        return {"world": world, "quantity": "doubling_time_days", "n": n, "covered": covered,
                "coverage": covered / n, "coverage_lower": lo, "coverage_upper": hi,
                "truth_above_interval": n - covered, "truth_below_interval": 0}
    report = {"nominal": 0.9, "sampler": {"chains": 1, "draws": 300},
              "coverage": [row("fine", 44, 50), row("narrow", 35, 50), row("tiny", 0, 3),
                           {**row("fine", 10, 50), "quantity": "trend_intercept"},
                           {**row("fine", 37, 50), "quantity": "slope_difference"}]}
    recs = checks.misspecification_records(report)
    # 3 simulations are not judged, nor the level; the acceleration is
    assert [r["passed"] for r in recs] == [True, False, False]
    assert "acceleration" in recs[2]["label"]
    assert recs[1]["value"] == pytest.approx(0.7) and "35 of 50" in recs[1]["detail"]


def test_misspecified_worlds_cite_the_well_specified_controls_coverage():
    def row(world, covered, quantity="doubling_time_days"):
        lo, hi = misspecification.wilson_interval(covered, 40)
        return {"world": world, "quantity": quantity, "n": 40, "covered": covered,
                "coverage": covered / 40, "coverage_lower": lo, "coverage_upper": hi,
                "truth_above_interval": 0, "truth_below_interval": 40 - covered}
    report = {"nominal": 0.9, "sampler": {"chains": 1, "draws": 300},
              "coverage": [row("well_specified", 34), row("well_specified", 30, "slope_difference"),
                           row("pair_errors", 31), row("pair_errors", 28, "slope_difference")]}
    recs = {(r["label"].rsplit("world ", 1)[1], "acceleration" in r["label"]): r
            for r in checks.misspecification_records(report)}
    assert "control covers 34 of 40 (85%)" in recs[("pair_errors", False)]["detail"]
    assert "control covers 30 of 40 (75%)" in recs[("pair_errors", True)]["detail"]
    assert "control" not in recs[("well_specified", False)]["detail"]


def test_calibration_checks_read_the_batches_beside_the_run(tmp_path):
    import json as _json

    ctx = checks.CheckContext(idata=None, spec=None, run_folder=tmp_path)
    (rec,) = [r for r in checks.run_checks(ctx, names=["sbc_uniformity"])]
    assert rec["passed"] is None and "no SBC batch" in rec["detail"]
    folder = tmp_path / "sbc_bundled"
    folder.mkdir()
    (folder / "batch.json").write_text(_json.dumps({"design": "bundled"}))
    (folder / "sbc.json").write_text(_json.dumps({"uniformity": {
        "slope_post": {"n": 100, "p_chi2": 0.4, "p_ks": 0.5, "uniform": True}},
        "sampler": {"chains": 2, "draws": 300}}))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert rec["passed"] is True and "bundled design" in rec["label"]


def test_a_calibration_batch_without_its_model_hash_does_not_vouch_for_a_run(tmp_path):
    """The bundled SBC of an earlier default carried no model hash and the report showed it as
    passing for the new model; a batch must name the model it calibrated."""
    import json as _json

    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    ctx = checks.CheckContext(idata=None, spec=spec, run_folder=tmp_path)
    folder = tmp_path / "sbc_bundled"
    folder.mkdir()
    (folder / "batch.json").write_text(_json.dumps({"design": "bundled"}))
    report = {"uniformity": {"slope_post": {"n": 100, "p_chi2": 0.4, "p_ks": 0.5,
                                            "uniform": True}},
              "sampler": {"chains": 2, "draws": 300}}
    (folder / "sbc.json").write_text(_json.dumps(report))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert rec["passed"] is None and "model hash" in rec["detail"]
    (folder / "sbc.json").write_text(_json.dumps({**report, "model_hash": spec.model_hash()}))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert rec["passed"] is True


def test_a_batch_simulated_on_another_versions_data_design_does_not_vouch_for_a_run(tmp_path):
    """The bundled-design SBC and misspecification batches recorded no data hash, so after a
    re-derived table the report would have counted them as calibrating the new data's design;
    they now name it, and another one makes them not computed."""
    import json as _json

    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    ctx = checks.CheckContext(idata=None, spec=spec, run_folder=tmp_path,
                              summary={"data_hash": "a" * 64})
    report = {"uniformity": {"slope_post": {"n": 100, "p_chi2": 0.4, "p_ks": 0.5,
                                            "uniform": True}},
              "sampler": {"chains": 2, "draws": 300}, "model_hash": spec.model_hash()}
    folder = tmp_path / "sbc_bundled"
    folder.mkdir()
    (folder / "sbc.json").write_text(_json.dumps(report))
    for manifest, passed in (({"design": "bundled"}, True),  # recorded before the hash: as before
                             ({"design": "bundled", "data_hash": "a" * 64}, True),
                             ({"design": "bundled", "data_hash": "b" * 64}, None)):
        (folder / "batch.json").write_text(_json.dumps(manifest))
        (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
        assert rec["passed"] is passed, manifest
    assert rec["detail"].startswith("computed on other data (data hash bbbbbbbbbbbb) than "
                                     "this run's (aaaaaaaaaaaa): its simulated worlds take "
                                     "their design from other data")
    study = tmp_path / checks.MISSPECIFICATION_FOLDER
    study.mkdir()
    (study / "misspecification.json").write_text(_json.dumps({"model_hash": spec.model_hash()}))
    (study / "batch.json").write_text(_json.dumps({"design": "bundled", "data_hash": "b" * 64}))
    recs = checks.run_checks(ctx, names=["misspecification_coverage"])
    assert [r["passed"] for r in recs] == [None] and "other data" in recs[0]["detail"]


def test_a_batch_without_its_summary_is_called_unfinished_not_missing(tmp_path):
    """A study that is running (or was stopped) has task records and a manifest but no
    summary: the check must say so, not that no study is stored."""
    import json as _json

    from densing_bayes.model.spec import load_spec

    ctx = checks.CheckContext(idata=None, spec=load_spec("default"), run_folder=tmp_path)
    (rec,) = checks.run_checks(ctx, names=["misspecification_coverage"])
    assert rec["passed"] is None and rec["detail"].startswith("no misspecification study")
    study = tmp_path / checks.MISSPECIFICATION_FOLDER
    (study / "tasks").mkdir(parents=True)
    (study / "batch.json").write_text(_json.dumps({"job": "misspecification"}))
    for i in range(3):
        (study / "tasks" / f"well_specified_{i:04d}.json").write_text("{}")
    (rec,) = checks.run_checks(ctx, names=["misspecification_coverage"])
    assert rec["passed"] is None
    assert rec["detail"].startswith("a batch in misspecification/ holds 3 task record(s) and "
                                    "no misspecification.json yet")


def test_loo_pit_by_group_reads_too_wide_and_too_narrow():
    central = np.full(40, 0.5)  # every PIT in the middle: intervals far too wide
    edges = np.r_[np.full(20, 0.01), np.full(20, 0.99)]  # every PIT in a tail: too narrow
    uniform = (np.arange(200) + 0.5) / 200
    no_tails = np.linspace(0.06, 0.94, 60)  # spread, but never in a tail: too wide
    pit = np.r_[central, edges, uniform, no_tails]
    groups = ["a"] * 40 + ["b"] * 40 + ["c"] * 200 + ["d"] * 60
    rows = {r["group"]: r for r in checks.loo_pit_by_group(pit, groups)}
    assert rows["a"]["reading"] == "too wide" and rows["a"]["central"] == 1.0
    assert rows["b"]["reading"] == "too narrow" and rows["b"]["tails"] == 1.0
    assert rows["c"]["reading"] == "consistent"
    assert rows["d"]["reading"] == "too wide" and rows["d"]["tails"] == 0.0
    assert rows["c"]["tails"] == pytest.approx(0.10) and rows["c"]["central"] == pytest.approx(0.5)
    assert rows["b"]["p_tails"] == pytest.approx(
        checks.stats.binomtest(40, 40, 0.10).pvalue)


def test_loo_pit_by_group_reads_a_one_sided_shift_by_a_sign_test():
    """A group whose scores all sit above their predictions' medians is shifted, whatever its
    spread; ties at 0.5 carry no sign, so a group of exact medians is not called shifted."""
    uniform = (np.arange(200) + 0.5) / 200
    high = 0.5 + uniform[:40] / 2  # in (0.5, 0.6): every score above its median
    low = 0.5 - uniform[:40] / 2
    pit = np.r_[uniform, high, low, np.full(30, 0.5)]
    groups = ["u"] * 200 + ["h"] * 40 + ["l"] * 40 + ["t"] * 30
    rows = {r["group"]: r for r in checks.loo_pit_by_group(pit, groups)}
    assert rows["h"]["reading"].endswith(", scores high") and rows["h"]["above"] == 1.0
    assert rows["l"]["reading"].endswith(", scores low") and rows["l"]["above"] == 0.0
    assert rows["h"]["p_above"] == pytest.approx(checks.stats.binomtest(40, 40, 0.5).pvalue)
    assert rows["u"]["reading"] == "consistent" and rows["u"]["p_above"] == pytest.approx(1.0)
    assert "scores" not in rows["t"]["reading"] and rows["t"]["p_above"] == 1.0


# ---------------------------------------------------------------- robustness refits
def _robustness_report():
    def days(median, lower, upper):
        return {"median": median, "lower": lower, "upper": upper}

    ok = {"passed": True}
    return {
        "coverage_band": [0.85, 0.95],
        "refits": [
            {"name": "baseline", "kind": "baseline", "status": "ok", "held_out": [],
             "diagnostics": ok, "doubling_time_days": days(160, 128, 204),
             "model_loo": {"elpd": 900.0, "se": 80.0, "p_loo": 50.0, "share_k_good": 0.93}},
            {"name": "future:2024-03-01", "kind": "future", "status": "ok",
             "held_out": ["a", "b"], "diagnostics": ok, "doubling_time_days": days(150, 100, 250),
             "prediction": {"n_rows": 100, "n_models": 2, "n_inside": 80, "coverage": 0.80,
                            "nominal": 0.9, "mean_error": 0.01, "share_above": 0.15,
                            "share_below": 0.05}},
            {"name": "future:2024-06-01", "kind": "future", "status": "ok",
             "held_out": ["a"], "diagnostics": ok, "doubling_time_days": days(155, 100, 250),
             "prediction": {"n_rows": 100, "n_models": 1, "n_inside": 91, "coverage": 0.91,
                            "nominal": 0.9, "mean_error": 0.0, "share_above": 0.05,
                            "share_below": 0.04}},
            {"name": "family:Qwen", "kind": "family", "status": "ok", "held_out": ["q"] * 24,
             "diagnostics": {"passed": False}, "doubling_time_days": days(210, 150, 300)},
            {"name": "family:Llama", "kind": "family", "status": "ok", "held_out": ["l"] * 16,
             "diagnostics": ok, "doubling_time_days": days(170, 120, 240)},
            {"name": "structure:no_changepoint", "kind": "structure", "status": "ok",
             "held_out": [], "diagnostics": ok, "doubling_time_days": days(300, 200, 400),
             "model_loo": {"vs_baseline": {"difference": -5.0, "se": 3.0, "n_models": 88}}},
            {"name": "structure:mean_trend", "kind": "structure", "status": "ok",
             "held_out": [], "diagnostics": ok, "doubling_time_days": days(140, 100, 200),
             "model_loo": {"vs_baseline": {"difference": 7.0, "se": 3.0, "n_models": 88}}},
        ],
    }


def test_leave_future_out_passes_inside_the_coverage_band_only():
    report = _robustness_report()
    report["refits"].append({**report["refits"][2], "name": "future:2024-06-01:size_covariate",
                             "structure": "size_covariate"})
    recs = checks.leave_future_out_records(report)
    assert [r["passed"] for r in recs] == [False, True]  # the other structure's is not judged
    assert recs[0]["value"] == pytest.approx(0.80) and "80 of 100" in recs[0]["detail"]


def test_leave_one_family_out_fails_when_a_median_leaves_the_interval():
    rec = checks.leave_one_family_out_record(_robustness_report(),
                                             {"median": 160, "lower": 128, "upper": 204})
    assert rec["passed"] is False and rec["value"] == 1
    assert "outside: family:Qwen" in rec["detail"] and "1 of 2 refits missed" in rec["detail"]
    wide = checks.leave_one_family_out_record(_robustness_report(),
                                              {"median": 160, "lower": 128, "upper": None})
    assert wide["passed"] is True


def test_leave_each_pre_out_fails_when_one_model_carries_the_acceleration():
    def diff(median):
        return {"median": median, "lower": median - 0.8, "upper": median + 0.8}

    report = _robustness_report()
    main = {"median": 1.0, "lower": 0.3, "upper": 1.8}
    assert checks.leave_each_pre_out_record(report, main)["passed"] is None  # not run
    report["refits"] += [
        {"name": "pre:GPT-3-175B", "kind": "pre", "status": "ok", "held_out": ["GPT-3-175B"],
         "diagnostics": {"passed": True}, "slope_difference_per_year": diff(1.1),
         "prob_slope_difference_positive": 0.99},
        {"name": "pre:PaLM-540B", "kind": "pre", "status": "ok", "held_out": ["PaLM-540B"],
         "diagnostics": {"passed": True}, "slope_difference_per_year": diff(0.2),
         "prob_slope_difference_positive": 0.7}]
    rec = checks.leave_each_pre_out_record(report, main)
    assert rec["passed"] is False and rec["value"] == 1
    assert "median outside: pre:PaLM-540B" in rec["detail"] and "P(> 0) 0.70" in rec["detail"]
    # median inside, but the interval now includes 0: the claimed sign is lost
    report["refits"][-1]["slope_difference_per_year"] = diff(0.5)
    rec = checks.leave_each_pre_out_record(report, main)
    assert rec["passed"] is False and "includes 0 without: pre:PaLM-540B" in rec["detail"]
    report["refits"][-1]["slope_difference_per_year"] = diff(0.9)
    assert checks.leave_each_pre_out_record(report, main)["passed"] is True
    # where this fit's interval includes 0 itself, only the medians are judged
    loose = {"median": 0.5, "lower": -0.3, "upper": 1.3}
    report["refits"][-1]["slope_difference_per_year"] = diff(0.5)
    assert checks.leave_each_pre_out_record(report, loose)["passed"] is True


def test_trend_structures_fail_when_an_alternative_is_better_by_two_se():
    structures, pareto = checks.trend_structure_records(_robustness_report())
    assert structures["passed"] is False  # mean_trend +7.0 > 2 x 3.0
    assert structures["value"] == pytest.approx(7.0)
    assert "better by more than 2 SE: mean_trend" in structures["detail"]
    assert pareto["passed"] is False and pareto["value"] == pytest.approx(0.93)
    assert "Pareto k" in pareto["caveat"]
    report = _robustness_report()
    report["refits"][-1]["model_loo"]["vs_baseline"]["difference"] = 5.0  # < 2 SE
    assert checks.trend_structure_records(report)[0]["passed"] is True


def test_leave_future_out_says_where_the_misses_are():
    report = _robustness_report()
    report["refits"][1]["prediction"]["by_format"] = {
        "mc": {"n_rows": 59, "coverage": 0.47, "share_above": 0.51, "share_below": 0.02},
        "rc": {"n_rows": 112, "coverage": 0.9, "share_above": 0.05, "share_below": 0.05}}
    detail = checks.leave_future_out_records(report)[0]["detail"]
    assert "below the band: mc 47% of 59 (51% above, 2% below)" in detail
    assert "rc 90%" not in detail


def test_leave_future_out_counts_scores_beyond_the_chains_reach():
    report = _robustness_report()
    report["refits"][1]["prediction"].update(n_above=15, n_above_beyond_reach=11)
    detail = checks.leave_future_out_records(report)[0]["detail"]
    assert "11 of the 15 scores above their intervals exceed the highest mean" in detail
    assert "beyond" not in checks.leave_future_out_records(_robustness_report())[1]["detail"]


def test_model_loo_reliability_names_exact_refits_that_missed_their_thresholds():
    loo = {"elpd": 10.0, "se": 1.0, "share_k_good": 0.5,
           "exact": {"high_k": ["m"], "refitted": ["m"], "elpd": 9.0, "se": 1.0,
                     "change": -1.0}}
    refit = {"name": "exact:m", "diagnostics": {"passed": False}}
    rec = checks.model_loo_reliability_record(loo, [refit])
    assert rec["passed"] is True and "1 of 1 refits missed" in rec["detail"]


def test_loo_pit_band_from_the_disk_cache_equals_the_computed_band(private_cache):
    checks._band.cache_clear()
    fresh = checks.loo_pit_band(123)
    files = list((private_cache / "ecdf_bands").glob("n123_*.npy"))
    assert len(files) == 1
    checks._band.cache_clear()  # the next call must read the file, not the memory cache
    cached = checks.loo_pit_band(123)
    assert np.array_equal(fresh[0], cached[0]) and np.array_equal(fresh[1], cached[1])


@pytest.mark.parametrize("spearman,shift,verdict", [
    (0.94, 0.02, "short chains do not explain the ranks"),
    (0.94, 0.20, "the batch's short chains move its ranks"),
    (0.30, 0.0, "the batch's short chains move its ranks"),
])
def test_sbc_check_reads_longer_fits_of_the_same_simulations(tmp_path, spearman, shift, verdict):
    import json as _json

    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    ctx = checks.CheckContext(idata=None, spec=spec, run_folder=tmp_path)
    sbc_report = {"uniformity": {"slope_pre": {"n": 100, "p_chi2": 0.4, "p_ks": 0.01,
                                               "uniform": False}},
                  "sampler": {"chains": 1, "draws": 300}, "model_hash": spec.model_hash()}
    for name in ("sbc_bundled", "sbc_bundled_long"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "batch.json").write_text(_json.dumps({"design": "bundled"}))
        (tmp_path / name / "sbc.json").write_text(_json.dumps(sbc_report))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert "refitted" not in rec["detail"]  # no comparison yet
    comparison = {"quantities": {"slope_pre": {"n": 11, "spearman": spearman,
                                               "mean_shift": shift, "shift_se": 0.02}},
                  "long_sampler": {"sampler": {"draws": 500, "tune": 1000},
                                   "diagnostics": {"n_fits": 11, "n_with_divergences": 5}}}
    (tmp_path / "sbc_bundled_long" / "comparison.json").write_text(_json.dumps(comparison))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert rec["passed"] is False
    assert "11 of the simulations refitted with 500 draws after 1000 tuning steps" in rec["detail"]
    assert "5 of 11 of them still divergent" in rec["detail"]
    assert rec["detail"].endswith(verdict)
    # a longer batch of another model does not speak for this one
    (tmp_path / "sbc_bundled_long" / "sbc.json").write_text(
        _json.dumps({**sbc_report, "model_hash": "another"}))
    (rec,) = checks.run_checks(ctx, names=["sbc_uniformity"])
    assert "refitted" not in rec["detail"]


def test_the_report_draws_the_sbc_batches_that_vouch_for_the_run(tmp_path):
    """Only batches whose check counts are drawn: a posterior SBC of another fit is not."""
    import json as _json

    import pandas as pd

    from densing_bayes.inference.run_io import write_folder_atomically
    from densing_bayes.model.spec import load_spec
    from densing_bayes.presentation import plots, report

    spec = load_spec("default")
    run = tmp_path / "run"
    write_folder_atomically(run, {"posterior_thin.nc": lambda p: p.write_text("draws")}, False)
    sha = _json.loads((run / "run.json").read_text())["sha256"]["posterior_thin.nc"]
    rng = np.random.default_rng(0)
    tests = {q: {"n": 60, "p_chi2": 0.5, "p_ks": 0.5, "uniform": True}
             for q in plots.SBC_HEADLINE_QUANTITIES}
    for folder, truths, ranks in (("sbc_bundled", None, rng.integers(0, 100, 60)),
                                  ("sbc_posterior", {"file": "posterior_thin.nc",
                                                     "sha256": sha}, np.zeros(60, int))):
        (run / folder).mkdir()
        (run / folder / "batch.json").write_text(_json.dumps({"design": "bundled"}))
        (run / folder / "sbc.json").write_text(_json.dumps(
            {"uniformity": tests, "model_hash": spec.model_hash(),
             "sampler_diagnostics": {"n_fits": 60, "n_with_divergences": 7},
             **({"truths_from": truths} if truths else {})}))
        pd.DataFrame({"status": "ok", "n_draws": 99,
                      **{f"rank_{q}": ranks for q in plots.SBC_HEADLINE_QUANTITIES}}
                     ).to_csv(run / folder / "ranks.csv", index=False)
    ctx = checks.CheckContext(idata=None, spec=spec, run_folder=run)
    batches = report.sbc_rank_batches(ctx)
    assert list(batches) == ["prior SBC", "posterior SBC"]
    assert batches["prior SBC"][1]["family_wise"]["rejected"] == []  # computed when not stored
    fig = plots.plot_sbc_ranks(batches=batches)
    axes = fig.get_axes()
    assert len(axes) == 8 and "slope after the changepoint" in axes[1].get_title()
    assert "prior SBC (7 of 60 divergent), n = 60" in axes[0].get_title()
    # every truth ranked lowest: the ECDF leaves its band, and the panel shows where
    assert len(axes[4].collections) == 2 and not len(axes[0].collections) == 2
    (run / "sbc_posterior" / "sbc.json").write_text(_json.dumps(
        {"uniformity": tests, "model_hash": spec.model_hash(),
         "truths_from": {"file": "posterior_thin.nc", "sha256": "0" * 64}}))
    assert list(report.sbc_rank_batches(ctx)) == ["prior SBC"]


def test_loo_pit_p_value_agrees_with_the_band_and_is_calibrated():
    """The LOO-PIT p-value is the band's own test on a continuous scale: below 0.05 exactly
    when the ECDF leaves the simultaneous 95% band (up to Monte Carlo error), and uniform
    PIT values reject about 5% of the time."""
    n, n_sim = 200, 2000
    lower, upper = checks.loo_pit_band(n)
    grid = checks.LOO_PIT_GRID
    rng = np.random.default_rng(7)
    p_values, outside = [], []
    for _ in range(300):
        pit = np.sort(rng.random(n))
        ecdf = np.searchsorted(pit, grid, side="right") / n
        outside.append(bool(((ecdf < lower) | (ecdf > upper)).any()))
        p_values.append(checks.ecdf_uniformity_p(pit, n_sim=n_sim, seed=1))
    p_values, outside = np.array(p_values), np.array(outside)
    assert np.mean((p_values < 0.05) == outside) >= 0.98
    assert 0.015 <= np.mean(p_values < 0.05) <= 0.095  # binomial(300, 0.05): 99.5% range
    assert np.mean(p_values < 0.5) == pytest.approx(0.5, abs=0.1)
    u_shaped = np.concatenate([np.full(n // 2, 0.02), np.full(n // 2, 0.98)])
    assert checks.ecdf_uniformity_p(u_shaped, n_sim=n_sim, seed=1) == pytest.approx(1 / 2001)


def test_loo_pit_record_states_the_test_p_value():
    n = 400
    uniform = (np.arange(n) + 0.5) / n
    assert "simultaneous test p 1.000" in checks.loo_pit_record(uniform)["detail"]
    u_shaped = np.concatenate([np.full(n // 2, 0.02), np.full(n // 2, 0.98)])
    assert "simultaneous test p < 0.001" in checks.loo_pit_record(u_shaped)["detail"]


def test_loo_pit_names_where_it_leaves_the_band_and_reads_heavy_tails():
    """Bug (2026-12-02): the reference run's PIT leaves its band only at 0.99 (19 scores above
    their 99% predictive quantile where 7 are expected), but the record quoted the largest
    deviation (inside the band, at 0.34) and read the shape as "intervals too wide". A bulk
    that is too concentrated plus an excess of extreme values is a heavy-tailed misfit; the
    record must say where the ECDF leaves the band and read it so."""
    n = 700
    bulk = stats.beta(1.15, 1.15).ppf((np.arange(681) + 0.5) / 681) * 0.99
    pit = np.concatenate([bulk, np.full(19, 0.995)])
    rec = checks.loo_pit_record(pit)
    assert rec["passed"] is False
    assert "leaves it at 0.99: 19 values above 0.99 where 7 are expected" in rec["detail"]
    assert "heavier-tailed" in rec["detail"]
    assert "too few values in the tails" not in rec["caveat"]


def test_loo_pit_tells_a_one_sided_excess_from_heavy_tails_on_both_sides():
    """The reference run's extreme PIT values are one-sided (19 above 0.99, 10 below 0.01,
    7 expected each): the record must say the excess is above the predictions only, not read
    it as a symmetric heavy tail (which is what the precision mixing fitted and failed on)."""
    n = 700
    bulk = stats.beta(1.15, 1.15).ppf((np.arange(674) + 0.5) / 674) * 0.98 + 0.01
    one_sided = np.concatenate([np.full(7, 0.005), bulk, np.full(19, 0.995)])
    rec = checks.loo_pit_record(one_sided)
    assert rec["passed"] is False
    assert "7 values below 0.01 and 19 above 0.99 where 7 each are expected" in rec["detail"]
    assert "far above the predictions only" in rec["detail"]
    assert "far above their predictions" in rec["caveat"] and "one-sided" in rec["caveat"]
    mirrored = checks.loo_pit_record(1.0 - one_sided)
    assert "far below their predictions" in mirrored["caveat"]
    symmetric = stats.beta(1.15, 1.15).ppf((np.arange(662) + 0.5) / 662) * 0.98 + 0.01
    both = np.concatenate([np.full(19, 0.005), symmetric, np.full(19, 0.995)])
    rec = checks.loo_pit_record(both)
    assert rec["passed"] is False and "19 values below 0.01 and 19 above 0.99" in rec["detail"]
    assert "one-sided" not in rec["caveat"] and "one side" not in rec["detail"]
    # the refit on the corrected tables (2026-12-03): the ECDF left its band at 9 bulk points
    # (too few values below 0.22-0.35) besides the extreme excess above 0.99, and the record
    # named only the excess; a bulk too close to the medians is named where it leaves the band
    tight = stats.beta(1.6, 1.6).ppf((np.arange(674) + 0.5) / 674) * 0.98 + 0.01
    rec = checks.loo_pit_record(np.concatenate([np.full(7, 0.005), tight, np.full(19, 0.995)]))
    assert "far above the predictions only" in rec["detail"]
    assert "the bulk closer to the medians than uniform (the ECDF leaves its band there" in rec[
        "detail"]
    assert "bulk closer" not in checks.loo_pit_record(one_sided)["detail"]
    # a bias (every value shifted up) is read as a bias, not as an extreme one-sided excess
    shifted = checks.loo_pit_record(np.clip((np.arange(n) + 0.5) / n + 0.15, 0, 0.9999))
    assert "too low" in shifted["caveat"] and "one-sided" not in shifted["caveat"]


def test_loo_pit_with_a_tight_bulk_and_a_significant_extreme_excess_is_not_called_conservative():
    """Bug (2026-12-04, the reference under the new score model): 16 of 721 PIT values above
    0.99 where 7 are expected (binomial p 0.003) and 8 below 0.01, but the ECDF left its band
    only in the bulk (too few values at 0.18-0.26), so the record read "too few values in the
    tails: under-confident" and its caveat called the misfit conservative for the scores. An
    extreme excess the binomial test rejects is a heavy (here one-sided) tail whether or not
    the ECDF leaves its band at 0.99."""
    rng = np.random.default_rng(0)
    pit = np.concatenate([0.99 + 0.01 * rng.random(16), 0.01 * rng.random(8),
                          0.01 + 0.98 * rng.beta(1.5, 1.5, 697)])
    rec = checks.loo_pit_record(pit)
    assert rec["passed"] is False
    assert "8 values below 0.01 and 16 above 0.99" in rec["detail"]
    assert "conservative" not in rec["caveat"] and "under-confident" not in rec["detail"]
    assert "far above their predictions" in rec["caveat"]
    assert "the bulk closer to the medians than uniform" in rec["detail"]
    # the same bulk without an extreme excess stays what it is: intervals too wide
    calm = np.concatenate([0.99 + 0.01 * rng.random(7), 0.01 * rng.random(7),
                           0.01 + 0.98 * rng.beta(1.5, 1.5, 707)])
    assert "conservative" in checks.loo_pit_record(calm)["caveat"]


def test_extreme_tail_counts_and_their_binomial_p_values():
    pit = np.concatenate([np.full(3, 0.001), np.full(95, 0.5), np.full(2, 0.999)])
    tails = checks.extreme_tails(pit)
    assert (tails["below"], tails["above"], tails["expected"]) == (3, 2, 1.0)
    # P(X >= 3) for X ~ Binomial(100, 0.01), in closed form
    p3 = 1 - sum(math.comb(100, k) * 0.01**k * 0.99**(100 - k) for k in range(3))
    assert tails["p_below"] == pytest.approx(p3, rel=1e-9)


def test_robustness_refits_of_other_data_do_not_vouch_for_the_run(tmp_path):
    """The robustness checks read RUN/robustness: refits of the run's model on other data
    (its manifest's data hash) are not computed for this run; of the same data they are."""
    import json

    from densing_bayes.model.spec import load_spec

    spec = load_spec("default")
    folder = tmp_path / "robustness"
    folder.mkdir()
    (folder / "robustness.json").write_text(json.dumps({"model_hash": spec.model_hash()}))
    ctx = checks.CheckContext(idata=None, spec=spec, summary={"data_hash": "a" * 64},
                              run_folder=tmp_path)
    for theirs, stale in (("a" * 64, False), ("b" * 64, True)):
        (folder / "batch.json").write_text(json.dumps({"data_hash": theirs}))
        rec, report = checks._robustness(ctx, "leave_future_out", "label")
        assert (rec is not None) == stale and (report is None) == stale
    assert rec["passed"] is None and "other data" in rec["detail"]


def test_leave_size_out_record_passes_in_the_binomial_band_and_knows_its_data():
    def calibration(inside, n=60):
        return {"data_hash": "abc", "spec_value": 0.016, "splits": [{
            "split": "fit 190M-1B, predict 3B",
            "held_out": {"prob": 0.9, "n": n, "inside": inside, "inside_spec_tilt": inside,
                         "inside_without_tilt": 20, "share_above": (n - inside) / n,
                         "share_below": 0.0}}]}
    ok = checks.leave_size_out_records(calibration(54), "abc", 0.016)[0]
    assert ok["passed"] is True and "54 of 60" in ok["detail"] and "without a tilt 20" \
        in ok["detail"]
    narrow = checks.leave_size_out_records(calibration(40), "abc", 0.016)[0]
    assert narrow["passed"] is False and "fewer of them than nominal" in narrow["caveat"]
    # too many inside is a failure too, and its caveat says the intervals are too wide
    wide = checks.leave_size_out_records(calibration(60), "abc", 0.016)[0]
    assert wide["passed"] is False and "overstated" in wide["caveat"]
    # another data folder's calibration cannot vouch for this run
    other = checks.leave_size_out_records(calibration(54), "xyz", 0.016)[0]
    assert other["passed"] is None and "other data" in other["detail"]
    # ... unless it read the same ladder: the calibration reads reference_runs.csv alone, so
    # re-derived scores (2026-12-03, the format rules) leave it the run's
    same_ladder = {**calibration(54), "reference_runs_sha256": "f" * 64}
    assert checks.leave_size_out_records(same_ladder, "xyz", 0.016,
                                         run_reference_sha256="f" * 64)[0]["passed"] is True
    assert checks.leave_size_out_records(same_ladder, "xyz", 0.016,
                                         run_reference_sha256="e" * 64)[0]["passed"] is None
    # a run with another tilt SD is told so
    assert "not the calibrated 0.016" in checks.leave_size_out_records(
        calibration(54), "abc", 0.035)[0]["detail"]
    # a calibration stored before the held-out block existed is not computed, not passed
    old = calibration(54)
    del old["splits"][0]["held_out"]
    assert checks.leave_size_out_records(old, "abc")[0]["passed"] is None


def test_an_sbc_rejection_of_a_nuisance_parameter_only_says_so_in_its_caveat():
    """At 79 simulations the posterior SBC of the reference rejected ARC-Challenge's loss
    exponent alone, and the report's caveat said the headline interval "does not mean what it
    says": a caveat must name what was rejected and not implicate the trend it passed."""
    def tests_with(rejected):
        uniform = {"n": 100, "p_chi2": 0.5, "p_ks": 0.6, "uniform": True}
        bad = {"n": 100, "p_chi2": 1e-5, "p_ks": 0.2, "uniform": False}
        return {q: (bad if q == rejected else uniform)
                for q in ("slope_post", "slope_pre", "trend_intercept", "log_likelihood",
                          "alpha[arc_challenge]", "alpha[mmlu]")}
    report = {"uniformity": tests_with("alpha[arc_challenge]"),
              "sampler": {"chains": 1, "draws": 300}}
    rec = checks.sbc_record(report, "posterior", name="posterior_sbc_uniformity")
    assert rec["passed"] is False
    assert "alpha[arc_challenge]" in rec["caveat"]
    assert "slopes" in rec["caveat"] and "pass" in rec["caveat"]
    assert "does not mean what it says" not in rec["caveat"]
    # a rejected trend quantity keeps the registry's caveat (filled in by run_checks)
    rec = checks.sbc_record({**report, "uniformity": tests_with("slope_post")}, "posterior",
                            name="posterior_sbc_uniformity")
    assert rec["passed"] is False and rec["caveat"] == ""


def test_pot_c_combines_order_statistic_p_values_in_closed_form():
    """POT-C (Tesso and Vehtari 2026): the i-th of n sorted PIT values against Beta(i,
    n + 1 - i), two-sided, combined by the Cauchy combination. One value: its own p. Two
    values 0.25 and 0.5: Beta(1, 2) and Beta(2, 1) CDFs 1 - 0.75^2 and 0.5^2 by hand."""
    assert checks.pot_c_test(np.array([0.1]))["p"] == pytest.approx(0.2)
    p1, p2 = 2 * (1 - 0.75**2), 2 * 0.5**2
    statistic = (np.tan((0.5 - p1) * np.pi) + np.tan((0.5 - p2) * np.pi)) / 2
    expected = 0.5 - np.arctan(statistic) / np.pi
    result = checks.pot_c_test(np.array([0.5, 0.25, np.nan]))
    assert result["p"] == pytest.approx(expected) and result["n"] == 2
    assert result["worst_rank"] == 2 and result["worst_pointwise_p"] == pytest.approx(p2)
    with pytest.raises(ValueError, match="at least one finite"):
        checks.pot_c_test(np.array([np.nan]))


def _truncated_pot_c_p(u: np.ndarray) -> float:
    """The truncated combination (only pointwise p below 1/2) of the R reference code."""
    u = np.sort(u)
    rank = np.arange(1, u.size + 1)
    cdf = stats.beta.cdf(u, rank, u.size + 1 - rank)
    p = 2 * np.minimum(cdf, 1 - cdf)
    return float(stats.cauchy.sf(np.mean(np.tan((0.5 - p[p < 0.5]) * np.pi))))


def test_pot_c_is_calibrated_on_uniforms_where_the_truncated_form_is_not():
    """On independent uniforms the shipped (untruncated) combination rejects about 5% at
    0.05; the truncated one, which drops every p above 1/2 and so compares a half-Cauchy
    mean against a Cauchy tail, about twice as often: the reason the check does not use it."""
    rng = np.random.default_rng(11)
    samples = rng.random((1500, 200))
    full = np.array([checks.pot_c_test(u)["p"] for u in samples])
    truncated = np.array([_truncated_pot_c_p(u) for u in samples])
    assert 0.033 <= np.mean(full < 0.05) <= 0.07  # binomial(1500, 0.05): beyond 99.9%
    assert np.mean(truncated < 0.05) >= 0.075


def test_pot_c_rejects_peaked_and_u_shaped_pit_and_the_record_states_it():
    rng = np.random.default_rng(5)
    assert checks.pot_c_test(rng.beta(0.6, 0.6, 721))["p"] < 0.001  # over-confident
    assert checks.pot_c_test(rng.beta(2.0, 2.0, 721))["p"] < 0.001  # under-confident
    n = 400
    uniform = (np.arange(n) + 0.5) / n
    assert checks.pot_c_test(uniform)["p"] > 0.5
    assert f"POT-C test (Tesso and Vehtari 2026) p {checks.pot_c_test(uniform)['p']:.3f}" in \
        checks.loo_pit_record(uniform)["detail"]
    u_shaped = np.concatenate([np.full(n // 2, 0.02), np.full(n // 2, 0.98)])
    assert "POT-C test (Tesso and Vehtari 2026) p < 0.001" in \
        checks.loo_pit_record(u_shaped)["detail"]
