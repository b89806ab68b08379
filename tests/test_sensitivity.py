"""Sensitivity analysis: the variants, power-scaling flags, the report from records, and a
small real run (baseline + one prior variant) on a LocalCluster."""

import json

import pandas as pd
import pytest

from densing_bayes import resources
from densing_bayes.analysis import sensitivity as sens
from densing_bayes.data.load import load_data
from densing_bayes.data.simulate import simulate_design, write_simulation
from densing_bayes.model.build import build_model
from densing_bayes.model.inputs import prepare_inputs
from densing_bayes.model.spec import load_spec, parse_spec

from conftest import SMALL_SAMPLER


@pytest.fixture(scope="module")
def default_data():
    return load_data(resources.bundled_data_folder("default"))


def test_variants_of_the_default_spec(default_data):
    spec = load_spec("default")
    variants = sens.sensitivity_variants(spec, default_data)
    by_kind = {kind: [v for v in variants if v.kind == kind]
               for kind in ("baseline", "prior", "data")}
    assert [v.name for v in by_kind["baseline"]] == ["baseline"]
    assert {v.name for v in by_kind["prior"]} == {
        "wide_slopes", "narrow_slopes", "exponential_inefficiency",
        "halfnormal_inefficiency_scale", "low_ceilings", "protocol_offset_tight",
        "protocol_offset_wide", "wide_trend_intercept", "d0_300B", "d0_5T",
        "wide_exponent_hyperprior", "no_benchmark_drift", "shared_precision"}
    assert not next(v for v in variants
                    if v.name == "no_benchmark_drift").spec.trend.benchmark_drift
    # the default reads each benchmark's scores with its own precision and logit-slope factor;
    # the shared_precision variant is the score model the default had before 2026-12-04
    assert spec.observation.protocol_scale
    assert spec.prior("score_precision_eval").dims == ("benchmark",)
    shared = next(v for v in variants if v.name == "shared_precision").spec
    assert not shared.observation.protocol_scale
    assert not shared.prior("score_precision_eval").dims
    wide = next(v for v in variants if v.name == "wide_slopes")
    assert wide.spec.prior("slope_post").parameters["sigma"] == 5.0
    tight = next(v for v in variants if v.name == "protocol_offset_tight")
    assert tight.spec.prior("protocol_offset").parameters["sigma"] == 0.15
    assert next(v for v in variants if v.name == "d0_5T").spec.data.d0_tokens == 5e12
    benchmarks = prepare_inputs(default_data, spec).benchmarks
    without_mmlu = next(v for v in variants if v.name == "without_benchmark:mmlu")
    assert set(without_mmlu.spec.data.benchmarks) == set(benchmarks) - {"mmlu"}
    sources = {v.drop_source for v in by_kind["data"] if v.drop_source}
    assert {"own", "aggregator", "harness", "other"} <= sources
    assert len({v.task_id for v in variants}) == len(variants)


def test_without_source_drops_only_that_source(default_data):
    kept = sens.without_source(default_data, "aggregator").scores
    assert "aggregator" not in set(kept["source_kind"])
    assert len(kept) == len(default_data.scores) - (
        default_data.scores["source_kind"] == "aggregator").sum()


@pytest.mark.parametrize("prior, likelihood, flag", [
    (0.01, 0.2, "-"),
    (0.08, 0.2, "potential prior-data conflict"),
    (0.08, 0.01, "potential strong prior / weak likelihood"),
    (None, 0.2, "not computed"),
])
def test_power_scaling_flags(prior, likelihood, flag):
    assert sens.psens_flag(prior, likelihood) == flag


def test_only_top_level_priors_are_power_scaled(paper_data, paper_spec):
    model = build_model(prepare_inputs(paper_data, paper_spec), paper_spec)
    scaled = set(sens.top_level_priors(model))
    assert {"slope_pre", "slope_post", "frontier_inefficiency", "loss_log_alpha_mu",
            "sigmoid_ceiling"} <= scaled
    # population distributions of latent effects are structure, not prior choices
    assert not {"log_density_deviation", "loss_log_alpha", "sigmoid_log_slope"} & scaled


def test_power_scaling_uses_every_likelihood_term_and_scales_each_prior_alone(paper_data,
                                                                              paper_spec):
    import arviz as az
    import pymc as pm

    from densing_bayes.analysis import derived
    from densing_bayes.analysis.predict import attach_constants

    inputs = prepare_inputs(paper_data, paper_spec)
    model = build_model(inputs, paper_spec)
    with model:  # prior draws stand in for posterior draws: the plumbing is the point
        idata = az.InferenceData(posterior=pm.sample_prior_predictive(
            draws=100, random_seed=1).prior)
    attach_constants(idata, inputs)
    derived.add_derived(idata, paper_spec)
    full = sens._with_full_likelihood(idata, model)
    assert set(full.log_likelihood.data_vars) == {"log_loss_obs", "curve_score_obs", "score_obs"}
    per = sens.per_prior_power_scaling(idata, model)
    assert set(per) == set(sens.top_level_priors(model))
    assert set(per["slope_post"]) == {"doubling_time_days", "doubling_time_days_pre",
                                      "slope_difference"}


def _interval(median, lower, upper):
    return {"median": median, "lower": lower, "upper": upper}


def test_report_from_records(tmp_path, paper_spec):
    variants = [sens.Variant("baseline", "baseline", "as written", paper_spec),
                sens.Variant("narrow", "prior", "overrides slope_post", paper_spec),
                sens.Variant("without_source:own", "data", "no own", paper_spec, "own")]
    ok = {"doubling_time_days": _interval(100.0, 90.0, 115.0),
          "doubling_time_days_pre": _interval(300.0, 150.0, None),  # unbounded
          "doubling_time_ratio": _interval(3.0, 1.2, 6.0),
          "diagnostics": {"divergences": 0, "max_rhat": 1.01, "min_ess_bulk": 300.0,
                          "passed": True},
          "power_scaling": {"slope_post": {"prior": 0.01, "likelihood": 0.1, "flag": "-"}}}
    records = {"baseline": {"status": "ok", "error": None, "result": ok, "seconds": 10.0},
               "narrow": {"status": "ok", "error": None, "result": ok, "seconds": 9.0},
               "without_source-own": {"status": "failed", "error": "ValueError: no data",
                                      "result": None, "seconds": 1.0}}
    report = sens.write_sensitivity_outputs(tmp_path, variants, records, paper_spec,
                                            data_folder=tmp_path, wall_seconds=20.0)

    saved = json.loads((tmp_path / sens.SENSITIVITY_JSON).read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["model_hash"] == paper_spec.model_hash()  # what the report checks it against
    assert saved["power_scaling"]["slope_post"]["flag"] == "-"
    entries = {e["name"]: e for e in saved["prior_variants"]}
    assert entries["baseline"]["kind"] == "baseline"
    assert entries["narrow"]["doubling_time_days_pre"]["upper"] is None
    failed = entries["without_source:own"]
    assert (failed["status"], failed["error"], failed["doubling_time_days"]) == (
        "failed", "ValueError: no data", None)
    table = pd.read_csv(tmp_path / sens.SENSITIVITY_CSV)
    assert list(table["variant"]) == ["baseline", "narrow", "without_source:own"]
    assert table.loc[0, "doubling_time_days_median"] == 100.0
    # the forest plot is the report's (one implementation): the analysis draws none
    assert not list(tmp_path.glob("sensitivity_forest.*"))


@pytest.fixture(scope="module")
def one_benchmark_folder(tmp_path_factory):
    """One benchmark and one source kind: no data variants, so the run is baseline + 1 prior."""
    sim = simulate_design("paper", seed=2, n_models=20, n_benchmarks=1)
    sim.scores["source_kind"] = "own"
    folder = tmp_path_factory.mktemp("one_benchmark")
    write_simulation(sim, folder, force=True)
    return folder


@pytest.mark.slow  # end-to-end batch run: minutes of compiling and sampling (run with -m slow)
def test_small_sensitivity_run_on_a_local_cluster(tmp_path, one_benchmark_folder):
    spec = parse_spec({
        "name": "small", "loss_law": {"irreducible": False},
        "data": {"folder": str(one_benchmark_folder)},
        "sampler": {**SMALL_SAMPLER, "draws": 100, "tune": 100},
        "variants": {"wide_slopes": {"priors": {
            "slope_post": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 5.0}}}}},
    })
    report = sens.run_sensitivity(spec, tmp_path / "sens", n_workers=2, progress=False)

    entries = report["prior_variants"]
    assert [(e["name"], e["kind"], e["status"]) for e in entries] == [
        ("baseline", "baseline", "ok"), ("wide_slopes", "prior", "ok")]
    assert all(e["doubling_time_days"]["median"] > 0 for e in entries)
    assert {"slope_post", "doubling_time_days", "alpha[mmlu]",
            "frontier_inefficiency"} <= set(report["power_scaling"])
    assert all(v["prior"] is None or v["prior"] >= 0 for v in report["power_scaling"].values())
    assert (tmp_path / "sens" / sens.SENSITIVITY_CSV).is_file()


def test_a_subset_of_variants_keeps_the_baseline_and_the_pattern_order(default_data):
    variants = sens.sensitivity_variants(load_spec("default"), default_data)
    chosen = sens.select_variants(variants, ["protocol_offset_*", "without_benchmark:*"])
    names = [v.name for v in chosen]
    assert names[:3] == ["baseline", "protocol_offset_tight", "protocol_offset_wide"]
    assert len(names) == 3 + 10 and all(n.startswith("without_benchmark:") for n in names[3:])
    assert sens.select_variants(variants, None) == variants
    with pytest.raises(ValueError, match="no sensitivity variant matches 'nope'"):
        sens.select_variants(variants, ["nope"])


def _stand_in_fit(spec, data_folder, drop_source=None, power_scaling=False):
    """What ``fit_variant`` records, without sampling: the batch bookkeeping is under test."""
    interval = _interval(150.0, 120.0, 200.0)
    return {"doubling_time_days": interval, "doubling_time_days_pre": interval,
            "doubling_time_ratio": _interval(1.0, 0.5, 2.0),
            "diagnostics": {"divergences": 0, "max_rhat": 1.0, "min_ess_bulk": 500.0,
                            "passed": True}}


def test_a_resume_can_add_variants_or_write_a_subset(tmp_path, monkeypatch, paper_spec):
    """A stopped batch is finished on the variants already fitted, and a later resume adds
    variants without refitting the others (the variant list is not in the manifest)."""
    run_and_write = sens.batch.run_and_write
    monkeypatch.setattr(sens, "fit_variant", _stand_in_fit)
    monkeypatch.setattr(sens.batch, "run_and_write",
                        lambda *a, **k: run_and_write(*a, processes=False, **k))
    spec = paper_spec.model_copy(update={"variants": {
        "wide": {"priors": {"slope_post": {"dist": "Normal", "kwargs": {"mu": 0.0,
                                                                         "sigma": 5.0}}}},
        "narrow": {"priors": {"slope_post": {"dist": "Normal", "kwargs": {"mu": 0.0,
                                                                           "sigma": 0.5}}}}}})
    out = tmp_path / "sens"

    def names(report):
        return [e["name"] for e in report["prior_variants"]]

    first = sens.run_sensitivity(spec, out, only=["wide"], n_workers=1, progress=False)
    assert names(first) == ["baseline", "wide"]
    fitted = {p.name: p.stat().st_mtime_ns for p in (out / "tasks").iterdir()}

    more = sens.run_sensitivity(spec, out, only=["wide", "narrow"], resume=True, n_workers=1,
                                progress=False)
    assert names(more) == ["baseline", "wide", "narrow"]
    assert all((out / "tasks" / name).stat().st_mtime_ns == ns for name, ns in fitted.items())

    subset = sens.run_sensitivity(spec, out, only=["narrow"], resume=True, n_workers=1,
                                  progress=False)
    assert names(subset) == ["baseline", "narrow"]
    saved = json.loads((out / sens.SENSITIVITY_JSON).read_text())
    assert [e["name"] for e in saved["prior_variants"]] == ["baseline", "narrow"]
    with pytest.raises(sens.batch.BatchFolderError, match="not empty"):
        sens.run_sensitivity(spec, out, only=["narrow"], n_workers=1, progress=False)
