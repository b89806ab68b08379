"""Score formats: the written rule that classifies reported scores, and the curves they use."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import pytensor.tensor as pt
from scipy import stats

from densing_bayes.data.derive import _inherit_formats, harness_spread, score_format
from densing_bayes.model.build import format_mixture_logp
from densing_bayes.model.inputs import format_weights

from conftest import prior_draws_as_fit


@pytest.mark.parametrize("benchmark, notes, shots, expected", [
    ("gsm8k", "5-shot", 5, "gen"),
    ("mmlu", "5-shot", 5, "mc"),
    ("mmlu", "", pd.NA, "mc"),
    ("arc_challenge", "acc_char (MMLU-style choice likelihood)", pd.NA, "mc"),
    # a CoT prompt scored by choice likelihood is MC (Llama 3.1's CSQA)
    ("csqa", "acc_char (7-shot CoT prompt, choice-likelihood per eval_details.md)", 7, "mc"),
    ("mmlu", "5-shot CoT", 5, "gen"),
    ("mmlu", "CoT not stated", 5, "mc"),
    ("hellaswag", "UltraEval ...; for multiple-choice tasks the higher of PPL-scoring and "
     "direct-generation scoring is reported", pd.NA, "best"),
    ("winogrande", "partial scoring", pd.NA, "rc"),
    ("arc_challenge", "Open LLM Leaderboard v1 protocol (lm-eval-harness; ARC-C 25-shot)", 25,
     "rc"),
    ("piqa", "Table 20; 0-shot accuracy", 0, "rc"),
    ("boolq", "", 0, "rc"),
    ("arc_challenge", "25-shot", 25, "unknown"),
    # a source-level note about other benchmarks' settings does not make a 25-shot row 0-shot
    # (the Qwen2 blog's "HumanEval/MBPP via EvalPlus 0-shot": 61 rows were read as cloze)
    ("arc_challenge", "Qwen team evaluation (Qwen2 blog); HumanEval/MBPP via EvalPlus 0-shot",
     25, "unknown"),
    ("winogrande", "Qwen team evaluation (Qwen2 blog); HumanEval/MBPP via EvalPlus 0-shot", 5,
     "unknown"),
    ("piqa", "0-shot accuracy", pd.NA, "rc"),  # shots not stated: the notes decide
    # perplexity scoring does not say whether the options are shown (Kimi K2's re-evaluations)
    ("arc_challenge", "Moonshot evaluation of base models under identical settings; "
     "perplexity-based", 0, "unknown"),
    ("hellaswag", "Qwen team evaluation of base models (Qwen2.5 blog)", pd.NA, "unknown"),
])
def test_score_format_rule(benchmark, notes, shots, expected):
    fmt, rule = score_format(benchmark, notes, shots)
    assert fmt == expected
    assert rule  # every classification names the rule that made it


def _rows(**columns):
    return pd.DataFrame(columns)


@pytest.mark.parametrize("kinds, rules, expected, copy_rule", [
    # an aggregator's transcription (Epoch AI) of a classified row; MMLU keeps its own rule
    (["own", "aggregator", "aggregator", "aggregator"], ["0-shot", "", "", "MMLU's standard"],
     ["rc", "rc", "unknown", "mc"], "aggregator copy of a classified row"),
    # any other report of unstated format: the same number from two reports is one evaluation
    # (45 values on the ten benchmarks entered twice, stated and unknown, until 2026-12-03)
    (["own", "other", "other", "own"], ["0-shot", "format not stated", "format not stated",
                                        "0-shot"],
     ["rc", "rc", "unknown", "rc"], "copy of a classified row (same model, benchmark, score)"),
])
def test_a_copy_of_a_classified_row_takes_its_format(kinds, rules, expected, copy_rule):
    last_benchmark = "mmlu" if kinds[-1] == "aggregator" else "piqa"
    scores = _rows(model=["m"] * 4, benchmark=["piqa"] * 3 + [last_benchmark],
                   score=[0.7, 0.7, 0.71, 0.5 if last_benchmark == "mmlu" else 0.7],
                   source_kind=kinds, format=["rc", "unknown", "unknown", expected[3]],
                   format_rule=rules)
    out = _inherit_formats(scores.copy())
    assert list(out["format"]) == expected
    assert out.loc[1, "format_rule"] == copy_rule


def test_two_classified_rows_that_disagree_decide_no_copy():
    scores = _rows(model=["m"] * 3, benchmark=["piqa"] * 3, score=[0.7, 0.7, 0.7],
                   source_kind=["own", "other", "own"], format=["rc", "unknown", "mc"],
                   format_rule=["0-shot", "format not stated", "acc_char"])
    assert _inherit_formats(scores.copy())["format"].tolist() == ["rc", "unknown", "mc"]


def test_bundled_scores_carry_a_format_for_every_row():
    scores = pd.read_csv("data/default/scores.csv")
    assert set(scores["format"]) <= {"mc", "rc", "gen", "best", "unknown"}
    assert scores["format_rule"].notna().all()
    # MMLU reports are multiple choice unless their notes say otherwise
    mmlu = scores[scores["benchmark"] == "mmlu"]
    assert (mmlu["format"] == "mc").mean() > 0.9


def test_harness_spread_is_the_pairwise_sd_over_root_two():
    chance = pd.Series({"piqa": 0.5})
    z = np.array([0.0, 1.0])  # logits above chance of two distinct reports
    score = 0.5 + 0.5 / (1 + np.exp(-z))
    scores = _rows(model=["m", "m", "m"], benchmark=["piqa"] * 3, format=["rc"] * 3,
                   score=[score[0], score[1], score[1]])  # an exact copy counts once
    out = harness_spread(scores, chance)
    assert out["triples"] == 1 and out["differences"] == 1
    assert out["sd_per_report"] == pytest.approx(0.0)  # one difference: SD 0
    scores = _rows(model=["a", "a", "b", "b"], benchmark=["piqa"] * 4, format=["rc"] * 4,
                   score=[score[0], score[1], score[1], score[0]])
    out = harness_spread(scores, chance)
    assert out["sd_difference"] == pytest.approx(1.0, rel=1e-3)  # differences -1 and +1
    assert out["sd_per_report"] == pytest.approx(1.0 / np.sqrt(2), rel=1e-3)


def test_format_weights_are_laplace_shares_of_stated_formats():
    scores = _rows(benchmark=["a", "a", "a", "b"], format=["mc", "mc", "rc", "unknown"])
    w = format_weights(scores, ["a", "b", "c"], {("a", "mc"), ("b", "mc")})
    np.testing.assert_allclose(w, [3 / 5, 1 / 2, 0.0])


def test_format_mixture_logp_matches_scipy():
    y = np.array([0.3, 0.8, 0.6])
    mean = np.array([[0.4, 0.7], [0.5, 0.9], [0.55, 0.65]])
    phi = 50.0
    log_w = np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.25, 0.75]]))
    log_w = np.maximum(log_w, -700.0)
    from scipy.special import gammaln
    got = format_mixture_logp(y, mean, log_w, np.float64(phi), np.float64(gammaln(phi))).eval()
    dens = stats.beta.pdf(y[:, None], mean * phi, (1 - mean) * phi)
    expected = np.log([dens[0, 0], dens[1, 1], 0.25 * dens[2, 0] + 0.75 * dens[2, 1]])
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_best_of_two_rows_take_the_larger_curve(bundled_prior_fit_best):
    """A "best" row's log-likelihood is its stated-RC twin's where the RC curve's score is the
    larger and its stated-MC twin's where the MC curve's is, draw by draw."""
    ll, means = bundled_prior_fit_best
    best, rc, mc = ll
    mean_rc, mean_mc = means
    expected = np.where(mean_rc >= mean_mc, rc, mc)
    np.testing.assert_allclose(best, expected, rtol=1e-9, atol=1e-9)
    assert (mean_rc > mean_mc).any() and (mean_mc > mean_rc).any()  # both branches tested


@pytest.fixture(scope="module")
def bundled_prior_fit_best():
    """Prior draws of the default model on the bundled data with every "best" row entered
    three times: as best, as stated RC and as stated MC."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    data = load_data(bundled_data_folder("default"))
    scores = data.scores
    stated = scores[scores["format"].isin(["rc", "mc"])].set_index(["model", "benchmark"]).index
    best = scores[(scores["format"] == "best")
                  & ~scores.set_index(["model", "benchmark"]).index.isin(stated)]
    assert len(best) > 10  # pairs whose twins are alone in their format
    # same value, three formats: copies in different stated formats stay apart
    twins = [best.assign(format=f) for f in ("rc", "mc")]
    data = dataclasses.replace(data, scores=pd.concat([data.scores, *twins], ignore_index=True))
    # stated and unstated rows share one precision here: only the curve's mean differs
    spec = load_spec("default").with_overrides({"observation": {"unstated_precision": False}})
    idata, inputs = prior_draws_as_fit(data, spec, draws=6, seed=3)
    ll = idata.log_likelihood["score_obs"].stack(sample=("chain", "draw")).transpose(
        "sample", ...).values
    rows = {}
    for f, code in (("best", -2), ("rc", 0), ("mc", 1)):
        idx = np.flatnonzero(inputs.score_format == code)
        keys = [(inputs.score_model[i], inputs.score_benchmark[i]) for i in idx]
        rows[f] = dict(zip(keys, idx))
    midx = {m: i for i, m in enumerate(inputs.models)}
    bidx = {b: i for i, b in enumerate(inputs.benchmarks)}
    keys = sorted({(midx[m], bidx[b]) for m, b in zip(best["model"], best["benchmark"])
                   if m in midx})
    pick = {f: [rows[f][k] for k in keys] for f in rows}
    # curve means of each format at the sampled densities
    from densing_bayes.analysis.score_chain import score_chain

    chain = score_chain(idata, spec.data.d0_tokens)
    logit = chain.logit(chain.sampled_x_n(idata))
    mean = chain.chance[:, None] + chain.span * (1 / (1 + np.exp(-logit)))
    i = pick["best"]
    return ((ll[:, i], ll[:, pick["rc"]], ll[:, pick["mc"]]),
            (mean[:, i, 0], mean[:, i, 1]))


def test_broad_tails_are_a_scale_mixture_of_betas():
    from scipy.special import gammaln

    from densing_bayes.model.build import broad_score_logp

    y = np.array([0.3, 0.8, 0.6])
    mean = np.array([[0.4, 0.7], [0.5, 0.9], [0.55, 0.65]])
    log_w = np.maximum(np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.25, 0.75]])), -700.0)
    phi, share, factor = 80.0, 0.2, 0.25
    got = broad_score_logp(y, mean, log_w, np.float64(phi), np.float64(gammaln(phi)),
                           np.float64(share), np.float64(factor)).eval()

    def mix(p):
        dens = stats.beta.pdf(y[:, None], mean * p, (1 - mean) * p)
        return np.array([dens[0, 0], dens[1, 1], 0.25 * dens[2, 0] + 0.75 * dens[2, 1]])

    expected = np.log((1 - share) * mix(phi) + share * mix(phi * factor))
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_precision_mixing_is_an_equal_weight_scale_mixture_of_betas():
    """[observation] score_precision_mixing_df: the likelihood is the mean over the K Gamma
    mid-quantile multipliers of the format mixture at precision phi * w_k (closed form)."""
    from densing_bayes.model.build import mixed_precision_logp, precision_mixing_nodes

    y = np.array([0.3, 0.8, 0.6])
    mean = np.array([[0.4, 0.7], [0.5, 0.9], [0.55, 0.65]])
    log_w = np.maximum(np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.25, 0.75]])), -700.0)
    phi = np.array([80.0, 120.0, 40.0])
    nodes = precision_mixing_nodes(4.0)
    assert len(nodes) == 12 and np.mean(nodes) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(nodes, stats.gamma.ppf((np.arange(12) + 0.5) / 12, 2.0,
                                                      scale=0.5))
    got = mixed_precision_logp(y, mean, log_w, phi, nodes).eval()

    def mix(p):
        dens = stats.beta.pdf(y[:, None], mean * p[:, None], (1 - mean) * p[:, None])
        return np.array([dens[0, 0], dens[1, 1], 0.25 * dens[2, 0] + 0.75 * dens[2, 1]])

    expected = np.log(np.mean([mix(phi * w) for w in nodes], axis=0))
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # 1e-300 weights vs exp(-700)
    # one node at 1 is the plain format mixture
    from scipy.special import gammaln
    one = mixed_precision_logp(y, mean, log_w, phi, np.array([1.0])).eval()
    plain = np.array([format_mixture_logp(y[i:i + 1], mean[i:i + 1], log_w[i:i + 1],
                                          np.float64(phi[i]), np.float64(gammaln(phi[i]))
                                          ).eval()[0] for i in range(3)])
    np.testing.assert_allclose(one, plain, rtol=1e-10)


def test_precision_mixing_replicates_have_heavier_tails_than_the_beta():
    """Its random draws are the same mixture: at one mean and precision, the replicates'
    variance is the mixture's, E_w[m(1 - m) / (1 + phi w)], above the Beta's."""
    from densing_bayes.model.build import _mixed_precision_random, precision_mixing_nodes

    rng = np.random.default_rng(0)
    n, m, phi = 200_000, 0.7, 60.0
    nodes = precision_mixing_nodes(4.0)
    draws = _mixed_precision_random(np.full((n, 1), m), np.zeros((n, 1)), np.full(n, phi),
                                    nodes, rng=rng)
    expected = np.mean(m * (1 - m) / (1 + phi * nodes))
    assert np.var(draws) == pytest.approx(expected, rel=0.02)
    assert expected > 1.2 * m * (1 - m) / (1 + phi)
    # PyMC hands the nodes over with a batch axis of 1 (a fit's prior predictive crashed on
    # "Output size (700,) is not compatible with broadcast dimensions of inputs (1, 700)")
    rows = 700
    draws = _mixed_precision_random(np.full((rows, 2), m), np.zeros((rows, 2)),
                                    np.full(rows, phi), nodes[None, :], rng=rng, size=(rows,))
    assert draws.shape == (rows,)


def test_one_tail_model_at_a_time_and_the_switch_off_keeps_the_hash():
    from densing_bayes.data.load import load_data
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    spec = load_spec("default")
    off = spec.with_overrides({"observation": {"score_precision_mixing_df": None}})
    assert off.model_hash() == spec.model_hash()  # saved runs keep their hash
    on = spec.with_overrides({"observation": {"score_precision_mixing_df": 4.0}})
    assert on.model_hash() != spec.model_hash()
    both = on.with_overrides({"observation": {"score_outliers": True}})
    inputs = prepare_inputs(load_data(bundled_data_folder("default")), both)
    with pytest.raises(ValueError, match="tail models"):
        build_model(inputs, both)
    model = build_model(prepare_inputs(load_data(bundled_data_folder("default")), on), on)
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_precision_mixing_in_the_model_is_pointwise_and_one_node_is_the_beta(monkeypatch):
    """Bug (2026-12-02): inside the model PyMC hands the nodes over as (1, K), and the logp
    broadcast them into a (2,)-shaped log-likelihood: a 35-minute fit sampled a wrong model.
    In the model the log-likelihood must be one value per score row, and with a single node
    at 1 the same values as the plain Beta model's at the same point."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model import build
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    data = load_data(bundled_data_folder("default"))
    plain_spec = load_spec("default")
    mixed_spec = plain_spec.with_overrides({"observation": {"score_precision_mixing_df": 4.0}})

    def pointwise(spec):
        model = build.build_model(prepare_inputs(data, spec), spec)
        fn = model.compile_logp(vars=[model["score_obs"]], sum=False)
        return np.asarray(fn(model.initial_point())[0])

    plain = pointwise(plain_spec)
    mixed = pointwise(mixed_spec)
    assert mixed.shape == plain.shape == (_n_measurements(),)  # one term per measurement
    assert not np.allclose(mixed, plain)
    monkeypatch.setattr(build, "precision_mixing_nodes", lambda df, k=1: np.array([1.0]))
    np.testing.assert_allclose(pointwise(mixed_spec), plain, rtol=1e-9)


def test_favourable_protocol_mixture_is_two_betas_one_shifted_up():
    """[observation] score_favourable: closed form of the likelihood, and replicates drawn
    from the same mixture (the share of draws around the shifted mean)."""
    from scipy.special import gammaln

    from densing_bayes.model.build import _favourable_score_random, favourable_score_logp

    y = np.array([0.3, 0.8, 0.6])
    mean = np.array([[0.4, 0.7], [0.5, 0.9], [0.55, 0.65]])
    up = np.array([[0.5, 0.8], [0.6, 0.95], [0.62, 0.7]])
    log_w = np.maximum(np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.25, 0.75]])), -700.0)
    phi, share = 80.0, 0.15
    got = favourable_score_logp(y, mean, up, log_w, np.float64(phi), np.float64(gammaln(phi)),
                                np.float64(share)).eval()

    def mix(m):
        dens = stats.beta.pdf(y[:, None], m * phi, (1 - m) * phi)
        return np.array([dens[0, 0], dens[1, 1], 0.25 * dens[2, 0] + 0.75 * dens[2, 1]])

    np.testing.assert_allclose(got, np.log((1 - share) * mix(mean) + share * mix(up)),
                               rtol=1e-8)
    rng = np.random.default_rng(1)
    n = 200_000
    draws = _favourable_score_random(np.full((n, 1), 0.5), np.full((n, 1), 0.8),
                                     np.zeros((n, 1)), np.full(n, 400.0), None,
                                     np.float64(share), rng=rng)
    assert np.mean(draws > 0.65) == pytest.approx(share, abs=0.005)
    assert np.mean(draws) == pytest.approx(0.5 + share * 0.3, abs=0.002)


def _tail_switch_pointwise(flag: str, other: str):
    """For the tail model ``flag`` on the bundled data: checks that switched off it leaves
    the default's hash, switched on it changes it, and with the tail model ``other`` it is
    refused; returns a function (spec, **values) -> the pointwise log-likelihood of the score
    rows at the initial point (with ``values`` replaced), and the spec with ``flag`` on."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model import build
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    data = load_data(bundled_data_folder("default"))
    plain_spec = load_spec("default")
    off = plain_spec.with_overrides({"observation": {flag: False}})
    assert off.model_hash() == plain_spec.model_hash()
    spec = plain_spec.with_overrides({"observation": {flag: True}})
    assert spec.model_hash() != plain_spec.model_hash()
    both = spec.with_overrides({"observation": {other: True}})
    with pytest.raises(ValueError, match="tail models"):
        build.build_model(prepare_inputs(data, both), both)

    def pointwise(s, **values):
        model = build.build_model(prepare_inputs(data, s), s)
        point = {**model.initial_point(), **values}
        fn = model.compile_logp(vars=[model["score_obs"]], sum=False)
        return np.asarray(fn(point)[0])

    return pointwise, plain_spec, spec


def test_favourable_protocol_in_the_model_is_pointwise_and_vanishes_with_its_share():
    """In the model the mixture gives one log-likelihood per score row, the same as the plain
    Beta's when its share goes to zero; it is one tail model (not with another), and off it
    leaves saved runs' hash."""
    pointwise, plain_spec, spec = _tail_switch_pointwise("score_favourable", "score_outliers")
    plain = pointwise(plain_spec)
    vanishing = pointwise(spec, score_favourable_share_logodds__=np.float64(-200.0))
    present = pointwise(spec, score_favourable_share_logodds__=np.float64(-1.0))
    assert vanishing.shape == plain.shape == (_n_measurements(),)
    np.testing.assert_allclose(vanishing, plain, rtol=1e-9, atol=1e-9)
    assert not np.allclose(present, plain)


def test_skewed_scores_are_an_exgaussian_on_the_logit_with_the_betas_logit_moments():
    """[observation] score_skewed: the density is the exponentially modified Gaussian of
    logit(y) (scipy's exponnorm) times the logit's Jacobian, centred on the Beta's logit mean
    with its logit SD; replicates come from it (mean, upper tail); as the shift's scale goes to
    0 it approaches the Beta it matches; and one model's conflicting reports give its
    prediction one mode, where the favourable mixture gives two or more."""
    from scipy.special import digamma, expit, logit, polygamma

    from densing_bayes.model.build import (_skewed_score_random, favourable_score_logp,
                                           skewed_score_logp)

    y = np.array([0.3, 0.8, 0.6])
    mean = np.array([[0.4, 0.7], [0.5, 0.9], [0.55, 0.65]])
    log_w = np.maximum(np.log(np.array([[1.0, 1e-300], [1e-300, 1.0], [0.25, 0.75]])), -700.0)
    phi, xi = 80.0, 0.4
    got = skewed_score_logp(y, mean, log_w, np.float64(phi), np.float64(xi)).eval()

    def dens(m, scale):
        c = digamma(m * phi) - digamma((1 - m) * phi)
        s = np.sqrt(polygamma(1, m * phi) + polygamma(1, (1 - m) * phi))
        z = logit(y)[:, None]
        return stats.exponnorm.pdf(z, scale / s, loc=c - scale, scale=s) / (y * (1 - y))[:, None]

    d = dens(mean, xi)
    want = np.log([d[0, 0], d[1, 1], 0.25 * d[2, 0] + 0.75 * d[2, 1]])
    np.testing.assert_allclose(got, want, rtol=1e-6)

    # xi -> 0: the logit-normal with the Beta's logit moments, within 1% of the Beta itself
    tiny = skewed_score_logp(y, mean[:, :1], np.zeros((3, 1)), np.float64(400.0),
                             np.float64(1e-4)).eval()
    beta = stats.beta.logpdf(y, mean[:, 0] * 400, (1 - mean[:, 0]) * 400)
    near = np.abs(y - mean[:, 0]) < 0.06
    np.testing.assert_allclose(np.exp(tiny[near]), np.exp(beta[near]), rtol=0.02)

    # replicates: mean logit error 0, and the upper tail the exponential puts there
    rng = np.random.default_rng(3)
    n = 400_000
    draws = _skewed_score_random(np.full((n, 1), 0.6), np.zeros((n, 1)), np.full(n, 200.0),
                                 np.float64(0.5), rng=rng)
    c = digamma(120.0) - digamma(80.0)
    s = np.sqrt(polygamma(1, 120.0) + polygamma(1, 80.0))
    assert np.mean(logit(draws)) == pytest.approx(c, abs=0.003)
    for q in (1.0, 2.0):
        want_tail = stats.exponnorm.sf(c + q, 0.5 / s, loc=c - 0.5, scale=s)
        assert np.mean(logit(draws) > c + q) == pytest.approx(want_tail, rel=0.05)

    # one model's conflicting reports: the joint likelihood of its prediction has one mode
    # under the skewed error and more than one under the favourable mixture
    grid = expit(np.linspace(-2.0, 4.0, 601))

    def modes(f):
        return int(((f[1:-1] > f[:-2]) & (f[1:-1] > f[2:])).sum())

    # each density compiled once (a .eval() per call compiled 108 graphs: 90 s)
    import pytensor
    import pytensor.tensor as pt

    value, prec, scale_ = pt.dvector("value"), pt.dscalar("precision"), pt.dscalar("scale")
    column = grid[:, None]
    none = np.zeros((grid.size, 1))
    mix_logp = pytensor.function([value, prec], favourable_score_logp(
        value, column, expit(logit(grid) + 2.0)[:, None], none, prec, pt.gammaln(prec),
        np.float64(0.04)))
    skew_logp = pytensor.function([value, prec, scale_],
                                  skewed_score_logp(value, column, none, prec, scale_))
    for precision in (40.0, 100.0, 300.0):
        for reports in ([0.5, 0.8, 0.8], [0.5, 0.75], [0.4, 0.6, 0.8, 0.8]):
            mix = sum(mix_logp(np.full(grid.size, v), precision) for v in reports)
            assert modes(mix) >= 2
            for scale in (0.2, 0.5, 1.0):
                skewed = sum(skew_logp(np.full(grid.size, v), precision, scale) for v in reports)
                assert modes(skewed) == 1, (precision, reports, scale)


def test_skewed_scores_in_the_model_are_pointwise_and_one_tail_model():
    """In the model the skewed error gives one log-likelihood per score row, near the Beta's
    for a small scale; it excludes the other tail models, and off it leaves saved runs' hash."""
    pointwise, plain_spec, spec = _tail_switch_pointwise("score_skewed", "score_favourable")
    plain = pointwise(plain_spec)
    small = pointwise(spec, score_skew_scale_log__=np.float64(np.log(1e-3)))
    large = pointwise(spec, score_skew_scale_log__=np.float64(np.log(0.8)))
    assert small.shape == plain.shape == (_n_measurements(),)
    near = plain > 0.0   # rows near their prediction (far out the logit-normal's tail differs)
    assert near.sum() > 50
    assert np.median(np.abs(small - plain)[near]) < 0.05
    assert np.median(np.abs(large - plain)[near]) > 0.1


def test_elementary_digamma_and_trigamma_match_scipy():
    """The skewed error's logit moments use series that compile natively (PyTensor's own
    digamma and trigamma fall back to Numba's object mode): equal to scipy's to 1e-8."""
    from scipy.special import digamma, polygamma

    from densing_bayes.model.build import _digamma, _trigamma

    x = np.array([0.05, 0.5, 1.0, 3.0, 10.0, 100.0, 1e4])
    tensor = pt.as_tensor(x)
    np.testing.assert_allclose(_digamma(tensor).eval(), digamma(x), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(_trigamma(tensor).eval(), polygamma(1, x), rtol=1e-8)


def _n_measurements() -> int:
    """The bundled data's (model, benchmark, format) measurements under the default spec."""
    from densing_bayes.data.load import load_data
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec
    from densing_bayes.resources import bundled_data_folder

    return len(prepare_inputs(load_data(bundled_data_folder("default")),
                              load_spec("default")).score_model)
