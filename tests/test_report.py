"""The HTML report and its figures.

Fast tests draw every plot function from a synthetic InferenceData (no sampling); one small real
fit of the simulated paper design (module scope, 2 chains x 100 draws) is turned into a report
through the CLI, which is then checked as a reader and a browser would see it: every section,
every image a real PNG, nothing fetched from the network, every figure also on disk.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import arviz as az
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from PIL import Image

from densing_bayes import laws
from densing_bayes.inference.run_io import RunFolderError, load_run
from densing_bayes.model.inputs import ModelInputs
from densing_bayes.model.spec import parse_spec
from densing_bayes.presentation import plots, report
from densing_bayes.presentation.cli import main
from densing_bayes.workflow import fit_to_folder

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ================================================================ a synthetic fitted run
def synthetic_run(*, changepoint: str = "fixed", n_models: int = 24, seed: int = 0):
    """(idata, summary, inputs) shaped like a real run, with draws from known values."""
    rng = np.random.default_rng(seed)
    chains, n_draws = 2, 60
    benchmarks = ["mmlu", "bbh", "math"]
    n_bench = len(benchmarks)
    sizes = np.array([5e6, 3e7, 1e8, 2.5e8, 5e8, 8e8])
    mult = np.array([10.0, 20.0, 40.0])
    law_n = np.repeat(sizes, len(mult))
    law_d = law_n * np.tile(mult, len(sizes))
    centre_n, centre_d = float(np.log(law_n).mean()), float(np.log(law_d).mean())
    law_b = np.repeat(np.arange(n_bench), len(law_n))
    law_n, law_d = np.tile(law_n, n_bench), np.tile(law_d, n_bench)
    xn, xd = np.log(law_n) - centre_n, np.log(law_d) - centre_d
    A, B, alpha, beta = 1.0, 0.6, 0.3, 0.28
    law_loss = (A * np.exp(-alpha * xn) + B * np.exp(-beta * xd)) * np.exp(
        rng.normal(0, 0.01, xn.size))
    curve_b = np.repeat(np.arange(n_bench), 20)
    curve_loss = rng.uniform(0.8, 3.0, curve_b.size)
    chance = np.array([0.25, 0.0, 0.0])
    curve_score = chance[curve_b] + (1 - chance[curve_b]) / (1 + np.exp(4 * (curve_loss - 1.8)))

    models = [f"Model-{i}" for i in range(n_models)]
    models[0], models[5], models[-1] = "Llama-1-7B", "gemma-2-9b", "MiniCPM-3-4B"
    release = (np.datetime64("2021-06-01") + np.sort(rng.integers(0, 1200, n_models))
               .astype("timedelta64[D]"))
    params = 10 ** rng.uniform(9, 11, n_models)
    t = laws.years_since(release)
    shape = (chains, n_draws)

    def scalar(mu, sd):
        return rng.normal(mu, sd, shape)

    def per(mu, sd, n):
        return rng.normal(mu, sd, shape + (n,))

    post = {"trend_intercept": scalar(-2.0, 0.1), "frontier_inefficiency": np.abs(scalar(0.6, 0.1)),
            "frontier_noise": np.abs(scalar(0.2, 0.05)), "loss_log_alpha_mu": scalar(-1.2, 0.1),
            "score_precision_eval": np.abs(scalar(150, 10))}
    if changepoint == "none":
        post["slope"] = scalar(2.2, 0.2)
        f = post["trend_intercept"][..., None] + post["slope"][..., None] * t
    else:
        post["slope_pre"], post["slope_post"] = scalar(1.5, 0.3), scalar(2.6, 0.2)
        f = (post["trend_intercept"][..., None] + post["slope_pre"][..., None] * np.minimum(t, 0)
             + post["slope_post"][..., None] * np.maximum(t, 0))
    log_density = (f - np.abs(rng.normal(0, 0.6, (n_models,)))
                   + rng.normal(0, 0.1, shape + (n_models,)))
    post.update(log_density=log_density, density=np.exp(log_density),
                log_effective_params=log_density + np.log(params),
                effective_params=np.exp(log_density) * params,
                E=np.zeros(shape + (n_bench,)), A=per(A, 0.02, n_bench), B=per(B, 0.02, n_bench),
                alpha=per(alpha, 0.01, n_bench), beta=per(beta, 0.01, n_bench),
                gamma=per(4.0, 0.2, n_bench), midpoint=per(1.8, 0.05, n_bench),
                score_span=1 - chance + per(0, 0.01, n_bench),
                protocol_offset=per(0.3, 0.1, n_bench))
    prior = {k: rng.normal(0, 2.5, (1, 200)) for k in ("trend_intercept", "slope", "slope_pre",
                                                       "slope_post", "loss_log_alpha_mu")
             if k in post}
    prior.update(frontier_inefficiency=rng.gamma(2, 0.5, (1, 200)),
                 frontier_noise=rng.gamma(2, 0.125, (1, 200)))

    score_m = np.repeat(np.arange(n_models), n_bench)
    score_b = np.tile(np.arange(n_bench), n_models)
    score = np.clip(rng.beta(20, 30, score_m.size), 0.01, 0.99)
    obs = {"log_loss_obs": np.log(law_loss), "curve_score_obs": curve_score, "score_obs": score}
    pp = {k: v + rng.normal(0, 0.02, shape + v.shape) for k, v in obs.items()}
    loglik = {"score_obs": rng.normal(1.0, 0.05, shape + score.shape)}
    stats = {"energy": rng.normal(0, 1, shape), "diverging": np.zeros(shape, bool)}
    constant = {"law_benchmark": law_b, "law_x_params": xn, "law_x_tokens": xd,
                "curve_benchmark": curve_b, "curve_loss": curve_loss, "chance": chance,
                "model_time": t, "model_log_params": np.log(params),
                "score_model": score_m, "score_benchmark": score_b}
    dims = {k: ["benchmark"] for k in ("E", "A", "B", "alpha", "beta", "gamma", "midpoint",
                                       "score_span", "protocol_offset", "chance")}
    dims.update({k: ["model"] for k in ("log_density", "density", "log_effective_params",
                                        "effective_params", "model_time", "model_log_params")})
    dims.update({k: ["law_row"] for k in ("log_loss_obs", "law_benchmark", "law_x_params",
                                          "law_x_tokens")})
    dims.update({k: ["curve_row"] for k in ("curve_score_obs", "curve_benchmark", "curve_loss")})
    dims.update({k: ["score_row"] for k in ("score_obs", "score_model", "score_benchmark")})
    idata = az.from_dict(posterior=post, prior=prior, observed_data=obs, posterior_predictive=pp,
                         log_likelihood=loglik, sample_stats=stats, constant_data=constant,
                         coords={"benchmark": benchmarks, "model": models}, dims=dims)
    idata.posterior.attrs.update(centre_log_params=centre_n, centre_log_tokens=centre_d)

    summary = {
        "ci_prob": 0.9,
        "trend": {"kind": "frontier", "changepoint": changepoint,
                  "changepoint_date": "2022-11-30"},
        "models": {m: {"params": float(p), "release_date": str(r)}
                   for m, p, r in zip(models, params, release)},
        "paper_baseline": {"trend": {}, "models": {
            m: {"density": float(np.exp(np.median(log_density[..., i])) * 1.3) if i % 4 else None}
            for i, m in enumerate(models)}},
    }
    inputs = ModelInputs(
        benchmarks=benchmarks, chance=chance, loss_scale=np.ones(n_bench),
        centre_log_params=centre_n, centre_log_tokens=centre_d,
        log_d0_centred=float(np.log(1e12) - centre_d), law_benchmark=law_b, law_x_params=xn,
        law_x_tokens=xd, law_loss=law_loss, law_run=[""] * law_loss.size,
        curve_benchmark=curve_b, curve_loss=curve_loss, curve_score=curve_score,
        models=models, model_log_params=np.log(params), model_time=t, model_release=release,
        score_model=score_m, score_benchmark=score_b, score_source=np.zeros(score.size, int),
        score_value=score, score_raw=score, source_kinds=["unknown"])
    return idata, summary, inputs


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_run()


def _text_boxes(fig):
    """Display-space boxes of the label texts (without their leader lines)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return ax, [Text.get_window_extent(a, renderer) for a in ax.texts
                if isinstance(a, Annotation)]


# ================================================================ fast: plot functions
PLOTS = {
    "density_trend": lambda i, s, x: plots.plot_density_trend(idata=i, summary=s),
    "doubling_time": lambda i, s, x: plots.plot_doubling_time(idata=i),
    "effective_size": lambda i, s, x: plots.plot_effective_size(idata=i, summary=s),
    "loss_law": lambda i, s, x: plots.plot_loss_law(idata=i, inputs=x),
    "loss_score": lambda i, s, x: plots.plot_loss_score(idata=i, inputs=x),
    "prior_posterior": lambda i, s, x: plots.plot_prior_posterior(idata=i),
    "ppc": lambda i, s, x: plots.plot_ppc(idata=i),
    "loo_pit": lambda i, s, x: plots.plot_loo_pit(idata=i),
    "benchmark_ppc": lambda i, s, x: plots.plot_benchmark_ppc(idata=i),
    "protocol_offsets": lambda i, s, x: plots.plot_protocol_offsets(idata=i),
    "sensitivity": lambda i, s, x: plots.plot_sensitivity(sensitivity=SENSITIVITY, summary=s),
    "rank": lambda i, s, x: plots.plot_rank(idata=i),
    "energy": lambda i, s, x: plots.plot_energy(idata=i),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_function_returns_a_drawn_figure(synthetic, name):
    fig = PLOTS[name](*synthetic)
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible and any(ax.has_data() for ax in visible)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(PNG_SIGNATURE)


def test_plots_without_a_changepoint():
    idata, summary, inputs = synthetic_run(changepoint="none")
    assert len(plots.plot_doubling_time(idata=idata).axes) >= 1
    data = plots.density_trend_data(idata=idata, summary=summary)
    assert np.all(np.diff(np.log(data["frontier"]["median"])) > 0)  # one positive slope
    plots.plot_density_trend(idata=idata, summary=summary)


def test_density_trend_accepts_an_axes_and_labels_without_overlap(synthetic):
    idata, summary, _ = synthetic
    fig = plots.new_figure(9, 6)
    ax = fig.add_subplot()
    assert plots.plot_density_trend(idata=idata, summary=summary, ax=ax) is fig
    ax, boxes = _text_boxes(fig)
    assert len(boxes) >= 3
    inside = ax.get_window_extent()
    for i, a in enumerate(boxes):
        assert inside.x0 - 1 <= a.x0 and a.x1 <= inside.x1 + 1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def test_paper_models_are_labelled_first(synthetic):
    idata, summary, _ = synthetic
    fig = plots.plot_density_trend(idata=idata, summary=summary)
    labels = [a.get_text() for a in fig.axes[0].texts if isinstance(a, Annotation)]
    assert "Llama-1-7B" in labels


def test_label_placement_leaves_out_what_does_not_fit():
    fig = plots.new_figure(4, 3)
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    labels = [f"label number {i}" for i in range(40)]
    placed = plots.place_labels(ax, [0.5] * 40, [0.5] * 40, labels)
    assert 0 < len(placed) < 40
    boxes = [p.bbox for p in placed]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_trend_curve_is_the_models_broken_line():
    post = az.from_dict(posterior={"trend_intercept": np.full((1, 2), -1.0),
                                   "slope_pre": np.full((1, 2), 1.0),
                                   "slope_post": np.full((1, 2), 3.0)}).posterior
    dates = np.array(["2021-11-30", "2022-11-30", "2023-11-30"], "datetime64[D]")
    f = plots.trend_curve(post, {"changepoint": "fixed", "changepoint_date": "2022-11-30"}, dates)
    years = laws.years_since(dates)
    np.testing.assert_allclose(f[0], [-1 + years[0], -1.0, -1 + 3 * years[2]])
    post = post.assign(frontier_intercept=post["trend_intercept"] + 0.5)  # the frontier's own
    f = plots.trend_curve(post, {"changepoint": "fixed", "changepoint_date": "2022-11-30"}, dates)
    np.testing.assert_allclose(f[0, 1], -0.5)


def test_find_model_ignores_case_and_punctuation():
    names = ["Gemma2-9B", "llama-1-7b", "MiniCPM-3-4B"]
    assert plots.find_model(names, "Llama-1-7B") == "llama-1-7b"
    assert plots.find_model(names, "Gemma-2-9B") == "Gemma2-9B"
    assert plots.find_model(names, "Phi-2") is None


def test_paper_comparison_says_when_a_model_is_absent(synthetic):
    _, summary, _ = synthetic
    summary = {**summary, "models": {k: {**v, "density": {"median": 1.0, "lower": 0.5,
                                                          "upper": 2.0}}
                                     for k, v in summary["models"].items()
                                     if k != "MiniCPM-3-4B"}}
    rows = {r["quantity"]: r for r in report.paper_comparison(summary)}
    assert rows["density of MiniCPM-3-4B"]["posterior"] == "not in this data"
    assert rows["density of gemma-2-9b"]["posterior"] == "1 [0.5, 2]"
    assert rows["density of gemma-2-9b"]["paper"] == "about 3"


SENSITIVITY = {
    "ci_prob": 0.9, "psens_threshold": 0.05,
    "power_scaling": {"slope_post": {"prior": 0.01, "likelihood": 0.3, "flag": "-"},
                      "alpha[mmlu]": {"prior": 0.08, "likelihood": None, "flag": "not computed"}},
    "prior_variants": [
        {"name": "baseline", "kind": "baseline", "description": "the spec as written",
         "doubling_time_days": {"median": 101.0, "lower": 90.0, "upper": 115.0},
         "doubling_time_days_pre": {"median": 150.0, "lower": 120.0, "upper": 200.0},
         "acceleration_ratio": {"median": 1.5, "lower": 1.1, "upper": 2.0},
         "diagnostics": {"divergences": 0, "max_rhat": 1.003, "min_ess_bulk": 900,
                         "passed": True}, "status": "ok", "error": None},
        {"name": "narrow_slopes", "kind": "prior", "description": "overrides slope_post",
         "doubling_time_days": {"median": 104.0, "lower": 92.0, "upper": None},
         "doubling_time_days_pre": None, "acceleration_ratio": None, "diagnostics": None,
         "status": "ok", "error": None},
        {"name": "without_source:own", "kind": "data", "description": "own left out",
         "doubling_time_days": None, "doubling_time_days_pre": None,
         "acceleration_ratio": None, "diagnostics": None, "status": "failed",
         "error": "ValueError: boom"}],
}


def test_sensitivity_forest_marks_unbounded_and_failed_variants(synthetic):
    _, summary, _ = synthetic
    summary = {**summary, "doubling_time_days": {"median": 100, "lower": 90, "upper": 120}}
    table = plots.sensitivity_data(sensitivity=SENSITIVITY, summary=summary)
    after = table[table["quantity"] == "doubling_time_days"].set_index("name")
    assert list(after.index) == ["this fit", "baseline", "narrow_slopes", "without_source:own"]
    assert np.isnan(after.loc["narrow_slopes", "upper"])
    assert np.isnan(after.loc["without_source:own", "median"])
    fig = plots.plot_sensitivity(sensitivity=SENSITIVITY, summary=summary)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "without_source:own (failed)" in ticks
    assert "this spec (short refit)" in ticks  # not "baseline": that is the paper's pipeline
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("unbounded" in t for t in legend)
    assert any("did not converge" in t for t in legend)  # narrow_slopes has no diagnostics


def test_doubling_time_axis_keeps_the_papers_line(synthetic):
    """The paper's 95 days is inside the x range even when every draw is far slower."""
    idata, _, _ = synthetic
    slow = idata.copy()
    slow.posterior["slope_post"] = slow.posterior["slope_post"] * 0 + 0.8  # ~316 days
    fig = plots.plot_doubling_time(idata=slow)
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 95 < hi


def test_baseline_points_do_not_stretch_the_density_axis(synthetic):
    idata, summary, _ = synthetic
    models = dict(summary["paper_baseline"]["models"])
    names = list(models)
    models[names[1]] = {"density": 33749.0}
    models[names[2]] = {"density": 0.0}
    wild = {**summary, "paper_baseline": {"trend": {}, "models": models}}
    ax = plots.plot_density_trend(idata=idata, summary=wild).axes[0]
    post_hi = float(np.exp(idata.posterior["log_density"]).quantile(0.95).max())
    assert ax.get_ylim()[1] < 100 * post_hi
    labels = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert any("defined for" in t and "not drawn" in t for t in labels)


def test_format_count():
    assert plots.format_count(1.3e9) == "1.3B"
    assert plots.format_count(7e9) == "7B"
    assert plots.format_count(45e6) == "45M"


# ================================================================ integration: a real report
def _days(median, lower, upper):
    return {"median": median, "lower": lower, "upper": upper}


#: A stored robustness report (its model hash is set to the run's in the fixture).
ROBUSTNESS = {
    "ci_prob": 0.9, "coverage_band": [0.85, 0.95],
    "refits": [
        {"name": "baseline", "kind": "baseline", "status": "ok", "held_out": [],
         "description": "as written", "diagnostics": {"passed": True},
         "doubling_time_days": _days(160, 128, 204),
         "model_loo": {"elpd": 900.0, "se": 80.0, "p_loo": 50.0, "share_k_good": 0.97}},
        {"name": "future:2024-03-01", "kind": "future", "status": "ok", "held_out": ["a", "b"],
         "description": "later models predicted", "diagnostics": {"passed": True},
         "doubling_time_days": _days(150, 100, None),
         "prediction": {"n_rows": 100, "n_models": 2, "n_inside": 80, "coverage": 0.80,
                        "nominal": 0.9, "mean_error": 0.01, "share_above": 0.15,
                        "share_below": 0.05, "elpd": 172.48, "elpd_mcse": 1.46}},
        {"name": "family:Qwen", "kind": "family", "status": "ok", "held_out": ["q"] * 4,
         "description": "Qwen left out", "diagnostics": {"passed": False},
         "doubling_time_days": _days(210, 150, 300),
         "prediction": {"n_rows": 40, "n_models": 4, "n_inside": 37, "coverage": 0.925,
                        "nominal": 0.9, "mean_error": -0.01, "share_above": 0.05,
                        "share_below": 0.025}},
        {"name": "structure:mean_trend", "kind": "structure", "status": "ok", "held_out": [],
         "description": "mean trend", "diagnostics": {"passed": True},
         "doubling_time_days": _days(140, 100, 200),
         "model_loo": {"elpd": 907.0, "se": 80.0, "p_loo": 50.0, "share_k_good": 0.97,
                       "vs_baseline": {"difference": 7.0, "se": 3.0, "n_models": 24}}},
    ],
}


@pytest.fixture(scope="module")
def report_run(paper_folder, tmp_path_factory):
    spec = parse_spec({"name": "report_test", "loss_law": {"irreducible": False},
                       "sampler": {"draws": 100, "tune": 100, "chains": 2, "seed": 7}})
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    fit_to_folder(spec, run, data_folder=paper_folder, progress=False)
    twin = root / "twin"
    shutil.copytree(run, twin)
    (run / "sensitivity").mkdir()
    (run / "sensitivity" / "sensitivity.json").write_text(json.dumps(SENSITIVITY))
    (run / "robustness").mkdir()
    (run / "robustness" / "robustness.json").write_text(json.dumps(
        {**ROBUSTNESS, "model_hash": spec.model_hash()}))
    assert main(["report", str(run), "--compare", str(twin), "--svg"]) == 0
    html = (run / report.REPORT_FILE).read_text(encoding="utf-8")
    return run, html, twin


def test_report_has_every_section(report_run):
    run, html, _ = report_run
    for anchor, heading in report.SECTIONS:
        assert f'id="{anchor}"' in html, anchor
        assert heading in html
    assert "narrow_slopes" in html and "not run" not in html  # read from RUN/sensitivity
    assert "elpd_diff" in html  # LOO comparison with --compare
    assert "Llama-1-7B" in html  # the paper comparison finds the simulated model
    from densing_bayes.analysis.checks import verdict

    stored = json.loads((run / "summary.json").read_text())["model_checks"]
    status = verdict(stored)["status"]
    assert ('class="ok"' in html) == (status == "passed")  # never green while a check fails
    assert ('class="banner' in html) == (status != "passed")
    markdown = (run / "answer.md").read_text(encoding="utf-8")  # the header in Markdown
    assert ("computed checks pass**" in markdown) == (status == "passed")
    assert all(f"**{r['label']}**" in markdown for r in stored)
    assert 'id="how-sure"' in html and "e-folds per year" in html
    # the Robustness section: one verdict line per check, the refits, their figure
    section = html[html.index('id="robustness"'):html.index('id="reproducibility"')]
    assert "leave-future-out at 2024-03-01" in section and "FAIL" in section  # 80/100
    assert "mean_trend" in section and "+7.0 (SE 3.0)" in section
    assert "log score 172.5 (MCSE 1.5)" in section  # the leave-future-out log score
    assert 'id="fig-robustness"' in html or "robustness.png" in html


def test_embedded_images_are_valid_pngs(report_run):
    _, html, _ = report_run
    payloads = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(payloads) >= 10
    for payload in payloads:
        data = base64.b64decode(payload, validate=True)
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width > 300 and image.height > 200
    assert "could not be drawn" not in html


def test_report_is_self_contained(report_run):
    _, html, _ = report_run
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    for needle in ("http://", "https://", "//cdn", "<link href=", "<link ", "<script src=",
                   "<script", "@import", "url("):
        assert needle not in text.lower(), needle


def test_svg_copies_are_written_only_when_asked_for(report_run):
    _, _, twin = report_run
    html = report.write_report(twin).read_text(encoding="utf-8")
    figures = twin / "figures"
    assert any(figures.glob("*.png")) and not any(figures.glob("*.svg"))
    assert ".svg" not in html  # the captions list only the files that exist


def test_every_figure_is_on_disk_as_png_and_svg_with_svg(report_run):
    run, html, _ = report_run
    keys = re.findall(r'<figure id="fig-([a-z_]+)"', html)
    assert {"density_trend", "doubling_time", "effective_size", "loss_law", "loss_score",
            "prior_posterior", "ppc", "loo_pit", "rank", "energy", "sensitivity"} <= set(keys)
    assert f"figures/{keys[0]}.svg" in html
    for key in keys:
        png, svg = run / "figures" / f"{key}.png", run / "figures" / f"{key}.svg"
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()[:2000]


def test_report_refuses_to_overwrite_without_force(report_run):
    run, _, _ = report_run
    with pytest.raises(RunFolderError, match="exists"):
        report.write_report(run, force=False)


def test_plot_inputs_from_the_run_match_the_data_folder(report_run):
    run, _, _ = report_run
    fitted = load_run(run)
    from_run = report.plot_inputs(fitted)
    from_data = report._inputs_from_data_folder(fitted)  # noqa: SLF001 - the fallback path
    assert from_run.models == from_data.models
    assert from_run.benchmarks == from_data.benchmarks
    for name in ("law_x_params", "law_x_tokens", "curve_loss", "curve_score", "score_model",
                 "score_benchmark", "score_value", "model_log_params", "chance"):
        np.testing.assert_allclose(getattr(from_run, name), getattr(from_data, name),
                                   err_msg=name)


def test_sensitivity_section_says_not_run_without_its_file(report_run):
    _, _, twin = report_run
    assert report.sensitivity_tables(load_run(twin)) is None


def test_holdout_table_scores_held_out_runs_against_predictive_intervals(report_run,
                                                                        paper_folder, tmp_path):
    """A held-out run whose actual scores are the predicted medians sits inside every interval;
    one scoring far above the predictive interval is counted outside."""
    import pandas as pd

    from densing_bayes.analysis.predict import predict_scores

    run, _, _ = report_run
    fitted = load_run(run)
    folder = tmp_path / "data"
    shutil.copytree(paper_folder, folder)
    params, tokens = 7e9, 2e12
    predicted = predict_scores(fitted.idata, params=params, tokens=tokens, ci_prob=0.9,
                               seed=fitted.spec.sampler.seed)
    held = pd.DataFrame({"run_id": "held_7B", "benchmark": predicted["benchmark"],
                         "params": params, "tokens": tokens, "loss": 1.0,
                         "score": predicted["median"], "holdout": "true", "final": "true"})
    wild = held.iloc[:1].assign(run_id="held_wild", score=1.0, params=8e9)
    path = folder / "reference_runs.csv"
    pd.concat([pd.read_csv(path, dtype=str), held, wild]).to_csv(path, index=False)
    fitted.summary["data_folder"] = str(folder)

    table = report.holdout_table(fitted)
    assert table["n"] == len(predicted) + 1
    by_run = {}
    for run_id, _bench, _actual, _interval, inside in table["rows"]:
        by_run.setdefault(run_id, []).append(inside)
    assert by_run["held_7B"] == ["yes"] * len(predicted)
    wild_upper = predict_scores(fitted.idata, params=8e9, tokens=tokens,
                                ci_prob=0.9)["upper"].iloc[0]
    assert by_run["held_wild"] == (["no"] if wild_upper < 1.0 else ["yes"])


def test_sensitivity_from_another_configuration_is_flagged(report_run, tmp_path):
    """A sensitivity analysis stored beside a run refitted under another spec says so."""
    run, html, _ = report_run
    assert "another configuration" not in html  # SENSITIVITY carries no config hash
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    current = load_run(folder).spec.config_hash()
    for analysed, stale in ((current, False), ("0" * 64, True)):
        (folder / "sensitivity" / "sensitivity.json").write_text(
            json.dumps({**SENSITIVITY, "config_hash": analysed}))
        note = report.sensitivity_tables(load_run(folder))["stale"]
        assert (note is not None) == stale
    assert "000000000000" in note and current[:12] in note
    # Newer files carry the model hash, which leaves the sampler out: shorter chains are the
    # same model, another prior is not.
    spec = load_run(folder).spec
    short_chains = spec.with_overrides({"sampler": {"draws": 300, "chains": 2}})
    other_prior = spec.with_overrides({"trend": {"inefficiency": "exponential"}})
    assert short_chains.config_hash() != spec.config_hash()
    for analysed, stale in ((short_chains, False), (other_prior, True)):
        (folder / "sensitivity" / "sensitivity.json").write_text(json.dumps(
            {**SENSITIVITY, "config_hash": analysed.config_hash(),
             "model_hash": analysed.model_hash()}))
        note = report.sensitivity_tables(load_run(folder))["stale"]
        assert (note is not None) == stale
    assert "model hash" in note


def test_refits_of_other_data_are_flagged(report_run, tmp_path):
    """Sensitivity and robustness refits are of the real data: a batch whose manifest names
    another data hash than the run's (a re-derived table under the same spec) must not vouch
    for the run; without the check it passed on the model hash alone."""
    from densing_bayes.analysis import checks

    run, _, _ = report_run
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    fitted = load_run(folder)
    ours = fitted.summary["data_hash"]
    (folder / "sensitivity").mkdir(exist_ok=True)
    (folder / "sensitivity" / "sensitivity.json").write_text(json.dumps(
        {**SENSITIVITY, "config_hash": fitted.spec.config_hash(),
         "model_hash": fitted.spec.model_hash()}))
    for theirs, stale in ((ours, False), ("f" * 64, True)):
        (folder / "sensitivity" / "batch.json").write_text(json.dumps({"data_hash": theirs}))
        note = report.sensitivity_tables(load_run(folder))["stale"]
        assert (note is not None) == stale
    assert "other data" in note and "ffffffffffff" in note and ours[:12] in note
    assert checks.other_data_note(ours, {}) is None  # an older manifest: model hash alone
    assert checks.other_data_note(None, {"data_hash": "f" * 64}) is None


def test_holdout_figure_marks_misses():
    import pandas as pd

    table = pd.DataFrame({"run_id": ["r7B"] * 3, "benchmark": ["a", "b", "c"],
                          "actual": [0.5, 0.9, 0.3], "median": [0.5, 0.7, 0.31],
                          "lower": [0.45, 0.65, 0.25], "upper": [0.55, 0.75, 0.35],
                          "inside": [True, False, True]})
    fig = plots.plot_holdout(table=table)
    ax = fig.axes[0]
    assert "2 of 3" in ax.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "actual score: outside" in labels and "actual score: inside" in labels


def test_effective_size_keeps_the_density_one_line(synthetic):
    idata, summary, _ = synthetic
    fig = plots.plot_effective_size(idata=idata, summary=summary)
    lo, hi = fig.axes[1].get_xlim()
    assert lo < 1.0 < hi


def test_model_names_with_mathtext_are_drawn_as_text():
    """A '$' in a user's model name is text, not mathtext (the reliability review's D13)."""
    idata, summary, inputs = synthetic_run(n_models=6)
    bad = r"Bad$\frac{$Model"
    old = str(idata.posterior["model"].values[0])
    for group in idata.groups():
        data = getattr(idata, group)
        if "model" in data.coords:
            names = [bad if str(m) == old else str(m) for m in data["model"].values]
            setattr(idata, group, data.assign_coords(model=names))
    summary["models"] = {(bad if k == old else k): v for k, v in summary["models"].items()}
    for plot in (plots.plot_density_trend, plots.plot_effective_size):
        fig = plot(idata=idata, summary=summary)
        fig.canvas.draw()  # raises on a mathtext parse error
        texts = [t.get_text() for ax in fig.axes for t in ax.texts + ax.get_yticklabels()]
        assert any(t.startswith(bad) for t in texts)


def test_prior_predictive_check_is_computed_from_the_prior_groups():
    """The prior predictive p-values and the share of prior draws without growth are what the
    prior groups hold (exact on hand-made draws), and a run without them says so."""
    import xarray as xr

    rng = np.random.default_rng(3)
    rep = rng.uniform(0.2, 0.9, size=(1, 40, 6))
    obs = np.full(6, 0.55)
    slope = np.concatenate([np.full(10, -1.0), np.full(30, 2.0)])[None, :]
    idata = az.InferenceData(
        prior=xr.Dataset({"slope_post": (("chain", "draw"), slope)}),
        prior_predictive=xr.Dataset({"score_obs": (("chain", "draw", "score_row"), rep)}),
        observed_data=xr.Dataset({"score_obs": (("score_row",), obs)}),
        posterior=xr.Dataset({"slope_post": (("chain", "draw"), np.full((1, 5), 1.8))}))
    d = plots.prior_predictive_data(idata=idata)
    assert d["scores"]["p_values"]["mean"] == pytest.approx(np.mean(rep[0].mean(1) >= 0.55))
    assert d["scores"]["p_values"]["sd"] == 1.0  # the observed scores have SD 0
    assert d["doubling"]["share_no_growth"] == 0.25
    np.testing.assert_allclose(d["doubling"]["days"], np.log(2) / 2.0 * 365.25)
    assert d["doubling"]["posterior"][1] == pytest.approx(np.log(2) / 1.8 * 365.25)
    fig = plots.plot_prior_predictive(idata=az.InferenceData(prior=idata.prior))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no prior predictive draws" in t for t in texts)


def test_envelope_slope_is_the_line_through_the_running_maximum():
    """Exact on a hand-made set: the envelope keeps each new record, the line runs through the
    records released on or after the changepoint."""
    from densing_bayes.analysis.envelope import EnvelopeCheck, doubling_days, envelope_slope

    start = np.datetime64("2022-11-30")
    days = start + np.array([-100, 0, 10, 20, 30, 40]).astype("timedelta64[D]")
    log_density = np.array([5.0, 0.0, 1.0, 0.5, 2.0, 3.0])  # day -100 is a pre-period record
    # Records after the start: none beat 5.0 ... so only models above 5 count; shift them up.
    assert np.isnan(envelope_slope(days, log_density))
    log_density = np.array([-5.0, 0.0, 1.0, 0.5, 2.0, 3.0])  # envelope: 0, 1, 2, 3 at 0, 10, 30, 40
    t = np.array([0.0, 10.0, 30.0, 40.0])
    expected = np.polyfit(t, [0.0, 1.0, 2.0, 3.0], 1)[0]
    assert envelope_slope(days, log_density) == pytest.approx(expected)
    assert doubling_days(expected) == pytest.approx(np.log(2) / expected)
    check = EnvelopeCheck(latent=np.array([0.02, 0.01]), replicated=np.array([0.015, 0.02]),
                          observed=0.018, model_slope=np.array([0.01, 0.01]))
    assert check.p_value == 0.5 and check.p_value_latent == 0.5


def _line_figure(values):
    from densing_bayes.presentation.plots import new_figure
    fig = new_figure(4, 3)
    fig.add_subplot().plot(values)
    return fig


def _broken_figure():
    raise ValueError("no draws for this figure")


def test_forked_figures_are_the_same_bytes_as_serial_ones(tmp_path, monkeypatch):
    # the slowest figures are handed out first; the result keeps the jobs' order
    monkeypatch.setattr(report, "FIGURE_SECONDS", {"e": 9.0, "d": 5.0})
    # closures over local data, as the report's builders are: the forked processes inherit them
    data = {k: np.cumsum(np.random.default_rng(i).normal(size=50)) for i, k in enumerate("abcde")}
    jobs = [report.FigureJob(k, k.upper(), lambda k=k: _line_figure(data[k])) for k in data]
    jobs.insert(2, report.FigureJob("broken", "Broken", _broken_figure))
    captions = {job.key: f"caption {job.key}" for job in jobs}
    out = {}
    for workers in (1, 3):
        folder = tmp_path / str(workers)
        folder.mkdir()
        out[workers] = report.draw_figures(jobs, captions, folder, workers=workers)
    assert list(out[3]) == list(out[1]) == [job.key for job in jobs]
    for key in data:
        assert out[3][key].png_base64 and out[3][key].png_base64 == out[1][key].png_base64
        assert out[3][key].caption == f"caption {key}" and not out[3][key].error
        assert (tmp_path / "3" / f"{key}.png").read_bytes() == \
            (tmp_path / "1" / f"{key}.png").read_bytes()
    # a figure that fails is reported with its error in either mode, and the rest are drawn
    for workers in (1, 3):
        assert out[workers]["broken"].error == "ValueError: no draws for this figure"
        assert not out[workers]["broken"].png_base64


def _slow_figure():
    import time
    time.sleep(30)
    return _line_figure([0.0, 1.0])


def test_started_figures_run_beside_the_caller_and_stop_when_it_fails(tmp_path):
    """The report draws the posterior's figures while its checks run; a failed check must not
    leave drawing processes behind or wait for them."""
    import time
    jobs = [report.FigureJob(k, k, _slow_figure) for k in "ab"]
    captions = {job.key: job.key for job in jobs}
    start = time.perf_counter()
    wait = report.start_figures(jobs, captions, tmp_path, workers=2)
    assert time.perf_counter() - start < 20  # the caller goes on while they draw
    assert report._FORKED_JOBS  # the processes' jobs stay set until they are collected
    assert wait(cancel=True) == {}
    assert time.perf_counter() - start < 20  # stopped, not waited for
    assert report._FORKED_JOBS == [] and not list(tmp_path.glob("*.png"))


def test_figures_are_drawn_serially_inside_a_daemonic_process(monkeypatch):
    import multiprocessing as mp
    monkeypatch.setattr(mp.current_process(), "daemon", True, raising=False)
    assert report.default_figure_workers() == 1


def _layout_figure():
    """A constrained-layout figure whose layout depends on text, a legend and a colorbar."""
    fig = plots.new_figure(6.0, 3.0)
    left, right = fig.subplots(1, 2)
    left.plot([1, 2, 3], [1e-3, 2e3, 5e5], label="a long legend entry")
    left.set_yscale("log")
    left.set_ylabel("a label that takes room\n(two lines, units)")
    left.legend(loc="upper left")
    image = right.imshow(np.arange(12.0).reshape(3, 4))
    fig.colorbar(image, ax=right, label="value")
    fig.suptitle("title")
    return fig


def test_saved_png_has_savefigs_pixels_in_one_draw(tmp_path, monkeypatch):
    expected = io.BytesIO()
    _layout_figure().savefig(expected, format="png", dpi=report.PNG_DPI)
    draws = []
    original = Figure.draw

    def counting(self, renderer):
        draws.append(renderer)
        return original(self, renderer)

    monkeypatch.setattr(Figure, "draw", counting)
    encoded = report._save_figure(_layout_figure(), "fig", tmp_path)
    assert len(draws) == 1  # savefig draws twice with a layout engine (a dry run first)
    png = base64.b64decode(encoded)
    assert png == (tmp_path / "fig.png").read_bytes()
    with Image.open(io.BytesIO(png)) as ours, Image.open(expected) as theirs:
        assert ours.size == theirs.size
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_score_format_labels_follow_the_row_flags():
    import xarray as xr

    weights = np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.5, 0.5], [0.5, 0.5]]))
    const = xr.Dataset({
        "score_format_log_weight": (("score_row", "format"), weights),
        "score_best": ("score_row", [0, 0, 1, 0]),
        "score_unstated": ("score_row", [0, 0, 0, 1])},
        coords={"format": ["rc", "mc"]})
    assert report.score_format_labels(const) == [
        "cloze (RC)", "multiple choice (MC)", "best of RC/MC", "unstated"]


def test_pit_extremes_list_every_score_outside_its_interval(report_run):
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run

    run = load_run(report_run[0])
    ctx = CheckContext.from_run(run)
    pit = np.asarray(ctx.loo_pit)
    table = report.loo_pit_extremes(run, ctx, tail=0.1)
    assert len(table["rows"]) == int(np.sum((pit < 0.1) | (pit > 0.9))) > 0
    assert table["n_high"] == int(np.sum(pit > 0.9))
    assert table["expected"] == f"{pit.size * 0.1:.0f}"
    assert all(float(r["pit"]) > 0.9 for r in table["rows"][:table["n_high"]])


def test_the_loo_pit_is_split_by_format_as_well_as_by_benchmark(report_run):
    """On the corrected tables the cloze rows' PIT sat in the middle (intervals too wide) and
    the multiple-choice rows' in the tails: a shared precision misfit only a split by format
    shows, so the report carries one."""
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run

    run = load_run(report_run[0])
    ctx = CheckContext.from_run(run)
    table = report.loo_pit_table(run, ctx)
    labels = report.score_format_labels(run.idata.constant_data)
    assert {r["group"] for r in table["by_format"]} == set(labels)
    assert sum(r["n"] for r in table["by_format"]) == sum(r["n"] for r in table["rows"]) \
        == len(ctx.loo_pit)
    assert "The same split by the format" in report_run[1]


def test_score_source_labels_name_each_rows_source_kind():
    """Each score row is labelled with the source kind its index points at; a run without
    the record gives no labels (and the report no split)."""
    import xarray as xr

    const = xr.Dataset({"score_source": ("score_row", np.array([2, 0, 1, 1, 2]))})
    posterior = xr.Dataset(coords={"source_kind": ["aggregator", "harness", "own"]})
    assert report.score_source_labels(const, posterior) == \
        ["own", "aggregator", "harness", "harness", "own"]
    assert report.score_source_labels(const, xr.Dataset()) == []
    assert report.score_source_labels(xr.Dataset(), posterior) == []


def test_the_loo_pit_is_split_by_source_kind_on_the_reference_run():
    """The reference run's measurements come from five source kinds (harness runs, the
    developers' own reports, aggregators, other papers, mixed): every row lands in its kind's
    row of the split, and the counts add up to the measurements."""
    import types
    from pathlib import Path

    import arviz as az

    thin = Path(__file__).resolve().parents[1] / "reports" / "default" / "posterior_thin.nc"
    idata = az.from_netcdf(thin)
    n = idata.constant_data["score_source"].size
    pit = (np.arange(n) + 0.5) / n
    table = report.loo_pit_table(types.SimpleNamespace(idata=idata),
                                 types.SimpleNamespace(loo_pit=pit))
    labels = report.score_source_labels(idata.constant_data, idata.posterior)
    counts = {r["group"]: r["n"] for r in table["by_source"]}
    assert counts == {k: labels.count(k) for k in set(labels)}
    assert set(counts) == {str(k) for k in idata.posterior["source_kind"].values}
    assert sum(counts.values()) == n


def test_the_report_prints_the_source_split_with_more_than_one_kind(report_run):
    """The simulated paper design records its reports' source kinds: the report prints the
    split, one row per kind present."""
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run

    run = load_run(report_run[0])
    table = report.loo_pit_table(run, CheckContext.from_run(run))
    kinds = set(report.score_source_labels(run.idata.constant_data, run.idata.posterior))
    assert len(kinds) > 1
    assert {r["group"] for r in table["by_source"]} == kinds
    assert "The same split by who produced the score" in report_run[1]


def test_one_source_kind_gives_no_source_split():
    """A run whose scores all come from one kind gets no one-row "split"."""
    import types

    import xarray as xr

    const = xr.Dataset({"score_source": ("score_row", np.zeros(6, int)),
                        "score_benchmark": ("score_row", np.array([0, 1, 0, 1, 0, 1])),
                        "score_format_log_weight": (("score_row", "format"), np.zeros((6, 1)))},
                       coords={"format": ["rc"]})
    posterior = xr.Dataset(coords={"source_kind": ["harness"], "benchmark": ["a", "b"]})
    idata = types.SimpleNamespace(constant_data=const, posterior=posterior,
                                  groups=lambda: ["posterior", "constant_data"])
    table = report.loo_pit_table(types.SimpleNamespace(idata=idata),
                                 types.SimpleNamespace(loo_pit=np.linspace(0.05, 0.95, 6)))
    assert table["by_source"] == []
    assert len(table["rows"]) == 2


def test_size_bands_have_exact_edges():
    """Each band holds its lower edge and stops short of the next one."""
    labels = report.size_band_labels(np.log([1.1e9, 2.99e9, 3e9, 9.9e9, 1e10, 7e10, 1e11, 4e11]))
    assert labels == ["under 3B", "under 3B", "3B to 10B", "3B to 10B", "10B to 30B",
                      "30B to 100B", "100B and over", "100B and over"]


def test_the_loo_pit_is_split_by_model_size(report_run):
    """Every score row falls in the band of its model's actual size, bands in size order, and
    the report prints the split."""
    from densing_bayes.analysis.checks import CheckContext
    from densing_bayes.inference.run_io import load_run

    run = load_run(report_run[0])
    ctx = CheckContext.from_run(run)
    table = report.loo_pit_table(run, ctx)
    const = run.idata.constant_data
    log_params = np.asarray(const["model_log_params"].values)[
        np.asarray(const["score_model"].values, int)]
    expected = report.size_band_labels(log_params)
    order = [label for _, label in report.SIZE_BANDS]
    assert [r["group"] for r in table["by_size"]] == [b for b in order if b in expected]
    assert {r["group"]: r["n"] for r in table["by_size"]} == \
        {b: expected.count(b) for b in set(expected)}
    assert "The same split by the model's actual size" in report_run[1]


def test_the_estimand_names_the_terms_that_change_what_a_density_is():
    """Benchmark drift and loadings change what 'the density' of a model means (the
    benchmarks' mean reading): the estimand must say so when, and only when, they are on."""
    base = {"trend": {"kind": "frontier", "changepoint_date": "2022-11-30"},
            "doubling_time_days_pre": {"median": 400.0}}
    plain = report.estimand_text(base, ["mmlu", "piqa"])
    assert "after the changepoint 2022-11-30" in plain and "(2: mmlu, piqa)" in plain
    assert "drift" not in plain and "loading" not in plain
    both = report.estimand_text({**base, "doubling_time_days_by_benchmark": {"mmlu": {}},
                                 "benchmark_loading": {"mmlu": {}}}, ["mmlu", "piqa"])
    assert "With benchmark drift" in both and "With benchmark loadings" in both


def test_spec_changes_name_every_model_setting_that_differs_from_the_bundled_spec():
    """A run fitted with --set keeps its spec's name: the report lists what differs from the
    bundled spec of that name (model settings only; sampler settings are in the
    reproducibility table), and nothing when the model is the bundled one."""
    from densing_bayes.model.spec import load_spec

    default = load_spec("default")
    assert report.spec_changes(default) == []
    assert report.spec_changes(default.with_overrides({"sampler": {"draws": 10}})) == []
    changed = default.with_overrides({
        "observation": {"score_skewed": True},
        "priors": {"slope_post": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 5.0}}}})
    assert report.spec_changes(changed) == ["observation.score_skewed: False -> True",
                                            "priors.slope_post.kwargs.sigma: 2.5 -> 5.0"]
    assert report.spec_changes(changed.with_overrides({}, name="not_bundled")) == []


def test_a_changed_spec_is_named_under_the_title(report_run, monkeypatch):
    _, _, twin = report_run
    monkeypatch.setattr(report, "spec_changes",
                        lambda spec: ["observation.score_skewed: False -> True"])
    html = report.write_report(twin).read_text(encoding="utf-8")
    header = html[:html.index("</header>")]
    assert "(changed)</h1>" in header
    assert "not the bundled spec" in header
    assert "<code>observation.score_skewed: False -&gt; True</code>" in header


def test_a_refit_recorded_before_the_ratio_changed_shows_its_slope_ratio_by_name():
    from densing_bayes.presentation.report import _ratio_cell

    new = {"doubling_time_ratio": {"median": 2.7, "lower": 1.2, "upper": None}}
    assert _ratio_cell(new, 0.9) == "2.7 [1.2, unbounded]"
    old = {"acceleration_ratio": {"median": 2.5, "lower": -5.8, "upper": 11.8}}
    assert _ratio_cell(old, 0.9).startswith("slope ratio 2.5 [-5.8")
    assert _ratio_cell({"slope_ratio_legacy": old["acceleration_ratio"]}, 0.9).startswith(
        "slope ratio")
    assert _ratio_cell({}, 0.9) == "-"
