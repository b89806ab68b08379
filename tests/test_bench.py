"""The benchmark harness works: schema, ratios, growth, skipped samplers. No timing assertions:
``densing-bayes bench`` measures, it never judges a time."""

import json
import math

import pytest

from densing_bayes.inference import bench
from densing_bayes.presentation.cli import main


def fake_runner(ess_per_second: dict[str, float]):
    """A stand-in for the subprocess fit: canned numbers, wall time linear in the models."""
    calls = []

    def run(task, *, cache, timeout):
        calls.append(task)
        n = int(task["case"].split("_")[1].split("x")[0]) if task["case"].startswith("sim") else 10
        wall = 0.1 * n
        result = {m: 1.0 for m in bench.METRICS}
        result.update(status="ok", error=None, wall_seconds=wall, compile_seconds=wall / 4,
                      sample_seconds=wall / 2, build_seconds=wall / 4,
                      ess_bulk_per_second=ess_per_second[task["sampler"]] * (1 + task["repeat"]),
                      min_ess_bulk=100.0 * (1 + task["repeat"]),
                      seconds_per_gradient=1e-5 * n, peak_rss_mb=100.0 + n,
                      divergences=task["repeat"], max_rhat=1.001 + 0.001 * task["repeat"],
                      sizes={"models": n, "benchmarks": 5})
        return result

    run.calls = calls
    return run


def test_ess_ratios_are_computed_from_given_numbers():
    ratios = bench.ess_ratios({"pymc": [2.0, 4.0, 3.0], "nutpie": [20.0, 20.0, 60.0],
                               "numpyro": [None, None, None]})
    assert ratios["pymc"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert ratios["nutpie"]["median"] == pytest.approx(20.0 / 3.0)  # median 20 / median 3
    assert ratios["nutpie"]["min"] == pytest.approx(5.0)  # repeat 2: 20 / 4
    assert ratios["nutpie"]["max"] == pytest.approx(20.0)  # repeat 3: 60 / 3
    assert ratios["numpyro"] == {"median": None, "min": None, "max": None}
    # no usable baseline: no ratio at all, never a division by zero
    assert bench.ess_ratios({"pymc": [0.0], "nutpie": [5.0]})["nutpie"]["median"] is None


def test_spread_and_loglog_slope():
    assert bench.spread([3.0, None, 1.0, float("nan"), 2.0]) == {
        "median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert bench.spread([None])["median"] is None
    xs = [36, 100, 300, 1000]
    assert bench.loglog_slope(xs, [2.0 * x for x in xs]) == pytest.approx(1.0)
    assert bench.loglog_slope(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert bench.loglog_slope([36], [1.0]) is None


def test_samplers_alternate_within_each_repeat():
    case = bench.quick_cases()[0]
    order = [(r, s) for _, r, s in bench.run_order([case], ["a", "b", "c"], 2)]
    assert order == [(0, "a"), (0, "b"), (0, "c"), (1, "a"), (1, "b"), (1, "c")]


def test_cases_cover_the_bundled_data_and_the_scale_up_grid():
    cases = {c.name: c for c in bench.full_cases()}
    assert cases["bundled"].data == "default" and cases["bundled"].spec == "default"
    assert {(c.n_models, c.n_benchmarks) for c in cases.values() if c.simulated} == {
        (m, b) for m in (36, 100, 300, 1000) for b in (5, 10)}
    assert all((c.draws, c.tune, c.chains) == (1000, 1000, 4) for c in cases.values())
    with pytest.raises(ValueError, match="unknown bench case"):
        bench.select_cases(list(cases.values()), ["sim_7x7"])


def test_report_schema_ratios_growth_and_skipped_sampler(monkeypatch, tmp_path):
    monkeypatch.setitem(bench.REQUIRED_MODULES, "numpyro", ("no_such_module_for_bench",))
    cases = bench.select_cases(bench.full_cases(draws=10, tune=10, chains=2),
                               ["sim_36x5", "sim_1000x5"])
    runner = fake_runner({"pymc": 2.0, "nutpie": 30.0})
    report = bench.run_bench(cases, ["pymc", "nutpie", "numpyro"], repeats=2, runner=runner,
                             workdir=tmp_path)
    # numpyro is reported as skipped, with the reason, and never run
    assert report["samplers"]["numpyro"]["status"] == "skipped"
    assert "no_such_module_for_bench" in report["samplers"]["numpyro"]["reason"]
    assert {t["sampler"] for t in runner.calls} == {"pymc", "nutpie"}
    # same draws and seeds for every sampler of a repeat; alternating order
    assert [(t["case"], t["repeat"], t["sampler"]) for t in runner.calls[:4]] == [
        ("sim_36x5", 0, "pymc"), ("sim_36x5", 0, "nutpie"),
        ("sim_36x5", 1, "pymc"), ("sim_36x5", 1, "nutpie")]
    assert runner.calls[0]["seed"] == runner.calls[1]["seed"] != runner.calls[2]["seed"]
    assert all(t["draws"] == 10 and t["chains"] == 2 for t in runner.calls)

    for key in ("schema_version", "created", "host", "load_average", "settings", "samplers",
                "cases", "runs", "summary", "growth"):
        assert key in report
    assert len(report["runs"]) == 2 * 2 * 2
    for run in report["runs"]:
        assert set(bench.METRICS) <= set(run)
        assert {"case", "sampler", "repeat", "seed", "status"} <= set(run)
    entry = {(e["case"], e["sampler"]): e for e in report["summary"]}
    nutpie = entry[("sim_36x5", "nutpie")]
    assert set(nutpie["metrics"]) == set(bench.METRICS)
    assert nutpie["metrics"]["divergences"] == {"median": 0.5, "min": 0.0, "max": 1.0, "n": 2}
    # ESS/s pymc 2, 4 and nutpie 30, 60: ratio of medians 15, both pairs 15
    assert nutpie["ess_per_second_ratio_to_pymc"] == pytest.approx(
        {"median": 15.0, "min": 15.0, "max": 15.0})
    assert entry[("sim_36x5", "pymc")]["ess_per_second_ratio_to_pymc"]["median"] == 1.0
    # wall time linear in models -> slope 1; memory 136 -> 1100 MB
    growth = report["growth"]["nutpie"]["vs_models"]["5_benchmarks"]
    assert growth["n_models"] == [36, 1000]
    assert growth["slope_wall_seconds"] == pytest.approx(1.0)
    assert growth["slope_seconds_per_gradient"] == pytest.approx(1.0)

    json.loads(json.dumps(report, default=float))  # JSON-ready
    table = bench.format_table(report)
    assert "numpyro: skipped" in table and "sim_1000x5" in table and "15.00" in table
    assert "150 [100-200]" in table  # min bulk ESS: median [min-max] over the two repeats


def test_failed_fits_are_reported_not_raised(tmp_path):
    def failing(task, *, cache, timeout):
        out = {m: None for m in bench.METRICS}
        out.update(status="error", error="boom")
        return out

    cases = bench.quick_cases()
    report = bench.run_bench(cases, ["pymc"], runner=failing, workdir=tmp_path)
    (entry,) = report["summary"]
    assert entry["status"] == "error" and entry["errors"] == ["boom"]
    assert entry["metrics"]["wall_seconds"]["median"] is None
    assert "boom" in bench.format_table(report)


def test_cli_rejects_unknown_samplers_and_cases(capsys):
    assert main(["bench", "--quick", "--samplers", "pymc,stan"]) == 2
    assert "unknown sampler" in capsys.readouterr().err
    assert main(["bench", "--quick", "--cases", "nope"]) == 2
    assert main(["bench", "--quick", "--set", "trend.latent=sideways"]) == 2
    assert "trend.latent" in capsys.readouterr().err
    assert main(["bench", "--quick", "--set", "latent"]) == 2
    assert "SECTION.KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow  # end-to-end batch run: minutes of compiling and sampling (run with -m slow)
def test_quick_bench_runs_a_real_fit_and_writes_the_schema(tmp_path, monkeypatch, capsys):
    """One real (tiny) PyMC fit in a subprocess; numpyro forced absent to show the skip."""
    monkeypatch.setitem(bench.REQUIRED_MODULES, "numpyro", ("no_such_module_for_bench",))
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--samplers", "pymc,numpyro", "--out", str(out),
                 "--set", "trend.latent=centred"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["spec_settings"] == ["trend.latent=centred"]
    assert report["settings"]["quick"] is True and report["settings"]["repeats"] == 1
    assert report["samplers"]["numpyro"]["status"] == "skipped"
    (run,) = report["runs"]
    assert run["status"] == "ok", run["error"]
    for metric in ("build_seconds", "compile_seconds", "sample_seconds", "wall_seconds",
                   "min_ess_bulk", "min_ess_tail", "ess_bulk_per_second", "divergences",
                   "max_rhat", "min_bfmi", "peak_rss_mb", "maxrss_self_mb"):
        assert run[metric] is not None and math.isfinite(run[metric]), metric
    assert run["wall_seconds"] == pytest.approx(
        run["build_seconds"] + run["compile_seconds"] + run["sample_seconds"])
    assert run["ess_bulk_per_second"] == pytest.approx(run["min_ess_bulk"] / run["wall_seconds"])
    assert run["sizes"]["models"] == 8 and run["sizes"]["benchmarks"] == 2
    assert "log_density" in run["free_variables"]  # the --set override reached the worker
    assert "log_density_std" not in run["free_variables"]
    (entry,) = report["summary"]
    assert entry["ess_per_second_ratio_to_pymc"]["median"] == pytest.approx(1.0)
    assert "quick_sim_8x2" in capsys.readouterr().out
