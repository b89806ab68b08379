"""A seeded simulator of the Densing Law paper's design, with a known truth.

The paper's own reference data is not public (``docs``/densing-law-method.md, section 3), so its
five-benchmark design can only be reproduced by simulation. This module generates a complete data
folder in the project's input schema (``densing_bayes.data.schema``) from a *truth* dict whose every
value is written to ``truth.json`` next to the CSVs. It serves parameter-recovery tests,
simulation-based calibration (pass ``truth=draw_truth_from_prior(rng)``) and benchmarks
(``n_models`` / ``n_benchmarks`` scale the design up).

Generative story (design ``"paper"``), one benchmark ``b`` at a time:

1. Loss law  L_b(N, D) = a N^-alpha + b D^-beta + E            (``laws.loss_law``)
2. Sigmoid   S_b(L) = c / (1 + exp(gamma (L - l))) + d           (``laws.score_from_loss``)
3. Reference runs: the paper's 6 sizes x 6 token multipliers observe the loss law (loss-law rows);
   ~12 well-trained checkpoints observe loss and score (curve rows, score given the *recorded*
   loss, as the paper's regression of score on loss and the joint model both read them).
4. Evaluated models: log density on a stochastic frontier with a changepoint at ChatGPT's release,
       log rho_m = intercept + slope_pre min(t, 0) + slope_post max(t, 0) - u_m + v_m,
   u_m ~ HalfNormal(sigma_u) (inefficiency), v_m ~ Normal(0, sigma_v) (noise), t in years;
   effective size N_hat_m = params_m rho_m; true score S_b(L_b(N_hat_m, D0)); reported scores
   are Beta draws around it, with the real tables' gaps and repeated reports.

All randomness flows from ``seed`` through independent named streams (see ``_stream``), so the
same seed gives byte-identical files, and changing one part of the design (say ``n_models``)
leaves the draws of unrelated parts (the reference runs) unchanged.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logit

from densing_bayes import laws, resources
from densing_bayes.data import schema

# --------------------------------------------------------------------------------------------
# The design
# --------------------------------------------------------------------------------------------

#: Designs this simulator knows. Only the paper's for now; the name is recorded in truth.json.
DESIGNS = ("paper",)

#: Parameter counts of the paper's six loss-law reference models (its Table 1).
PAPER_REFERENCE_SIZES = (5_247_232, 31_470_080, 106_196_736, 245_416_960, 476_852_480, 828_225_024)

#: Training tokens of each loss-law reference model, as multiples of its parameter count (Table 1).
PAPER_TOKEN_MULTIPLIERS = (10, 15, 20, 30, 40, 60)

#: Sizes of the well-trained checkpoints that fit the loss -> score sigmoid. The paper fitted it on
#: MiniCPM-3 models below 4B: ten sizes log-spaced from 0.5B to 3.5B.
CURVE_FIT_SIZES = tuple(int(round(n, -6)) for n in np.geomspace(0.5e9, 3.5e9, 10))

#: The two larger checkpoints the paper held out of the sigmoid fit to validate it ("tens of B").
CURVE_HOLDOUT_SIZES = (12_000_000_000, 30_000_000_000)

#: Training tokens per parameter of the curve checkpoints, drawn log-uniformly in this range:
#: well-trained models, from Chinchilla-optimal (20) to over-trained (100).
CURVE_TOKENS_PER_PARAM = (20.0, 100.0)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Fixed facts about a benchmark: chance floor and the paper's evaluation setting.

    ``shots`` and ``n_items`` are None (empty cells) for synthetic benchmarks. ``n_items`` is the
    test-set size, for information only: the simulated score noise is Beta with precision
    ``phi_eval``, not binomial in ``n_items``.
    """

    name: str
    chance: float
    shots: int | None
    n_items: int | None


#: The paper's five benchmarks and settings (MMLU 5-shot, BBH 3-shot CoT, MATH 4-shot CoT,
#: HumanEval 0-shot, MBPP 3-shot CoT). MMLU is 4-way multiple choice (chance 0.25); the others are
#: scored by exact match or execution of generated text (chance 0).
PAPER_BENCHMARKS = (
    BenchmarkSpec("mmlu", 0.25, 5, 14_042),
    BenchmarkSpec("bbh", 0.0, 3, 6_511),
    BenchmarkSpec("math", 0.0, 4, 5_000),
    BenchmarkSpec("humaneval", 0.0, 0, 164),
    BenchmarkSpec("mbpp", 0.0, 3, 500),
)

#: Synthetic benchmarks beyond the paper's five alternate multiple-choice (chance 0.25) and
#: generative (chance 0), mirroring the paper's mix; their law parameters come from
#: ``PRIOR_RANGES`` through a fixed seed, so ``default_truth`` stays deterministic.
SYNTHETIC_CHANCES = (0.25, 0.0)
SYNTHETIC_BENCHMARK_SEED = 20241205

#: Values of the paper's ``paper_role`` column that select its evaluated models: the 29 models of
#: Figures 1 and 4, and the 8 pre-ChatGPT models that only appear in Figure 4.
PAPER_ROLES = ("fig1+fig4", "fig4")

#: Synthetic evaluated models (when ``n_models`` exceeds the paper's list) are jittered copies of
#: the paper's dated models: a parent drawn uniformly, its release date moved uniformly by up to
#: this many days (kept within the paper's span) and its log parameter count by a normal draw of
#: this sd. Copies keep the paper's joint spread of (date, size): early models were large and
#: late ones small, which keeps effective sizes inside the range the benchmarks can measure.
#: (Independent uniform dates and sizes put half of 300 models at effective sizes below 1e9,
#: at chance level on every benchmark, so a scale-up measured data with no information.)
SYNTHETIC_DATE_JITTER_DAYS = 90
SYNTHETIC_LOG_PARAMS_JITTER = 0.5

#: Fraction of (model, benchmark) pairs with no reported score: real tables have gaps.
MISSING_FRACTION = 0.10

#: Fraction of reported pairs with a second, independent report (source_kind "other"): real
#: tables often hold a developer's number and someone else's re-evaluation.
REPEAT_FRACTION = 0.20

#: Beta means are kept within [floor, 1 - floor] when drawing any score. Scores are reported to
#: 0.1%, so a smaller mean is indistinguishable from zero in any real table; the floor also keeps
#: the Beta shape mean * phi >= 0.1 for every plausible precision, so a draw is never exactly 0 or
#: 1 in floating point. Only generative scores of the weakest models reach it (GPT-3-era models on
#: HumanEval, say); an SBC study should know that the data there are Beta(floor), not Beta(S).
SCORE_MEAN_FLOOR = 1e-3

# --------------------------------------------------------------------------------------------
# The documented default truth
# --------------------------------------------------------------------------------------------

#: Window of effective sizes (at D0) that real evaluated models occupy; every sigmoid is placed so
#: that this window spans most of its range. It anchors the prior draws and the defaults alike.
REAL_EFFECTIVE_RANGE = (1.0e9, 4.0e11)

#: Density frontier defaults. The slopes are the paper's 0.0048 (before ChatGPT) and 0.0073 (after)
#: per day, in per-year units (doubling times ~144 and ~95 days, acceleration ~1.5). The
#: intercept (log density on the frontier at 2022-11-30) puts Llama-1-7B's frontier density at
#: 0.09 (< 0.1) and late-2024 frontier models at 3-6, the expected inefficiency (0.48) bringing
#: the best of them to about 3, as the paper reports.
DEFAULT_TREND = {
    "intercept": -3.0,
    "slope_pre_per_year": 0.0048 * laws.DAYS_PER_YEAR,
    "slope_post_per_year": 0.0073 * laws.DAYS_PER_YEAR,
    "sigma_u": 0.6,
    "sigma_v": 0.2,
}

#: Per-benchmark loss law and sigmoid defaults (E = 0: the paper's law has no irreducible term).
#: Chosen as follows, and checked by the tests:
#: * alpha, beta in 0.22-0.32 (Chinchilla-like); larger exponents cannot keep losses of order
#:   0.5-3 nats over the five decades from 5M-parameter reference runs to 400B effective sizes;
#: * a, b set so the N-term is 0.55-0.8 nats at N = 1e9 and the D-term 0.04-0.08 nats at D0:
#:   reference losses span about 3.0-3.6 (smallest run) to 0.7-1.0 (largest) nats;
#: * gamma, l set so the fraction of the sigmoid's range reached at REAL_EFFECTIVE_RANGE is
#:   (15%, 90%) for MMLU, (25%, 90%) BBH, (4%, 65%) MATH, (10%, 75%) HumanEval, (20%, 88%) MBPP,
#:   roughly the fractions Llama-1-7B (density < 0.1) and Llama-3.1-405B reach in the real tables:
#:   MATH and HumanEval stay lower, as they do there;
#: * ceiling (share of the above-chance range a perfect model reaches) 0.85-0.95: label noise.
DEFAULT_BENCHMARK_LAWS = {
    "mmlu": dict(a=107.0, alpha=0.25, b=115.0, beta=0.28, gamma=8.42, l=0.446, ceiling=0.90),
    "bbh": dict(a=182.0, alpha=0.28, b=239.0, beta=0.30, gamma=7.37, l=0.461, ceiling=0.95),
    "math": dict(a=76.4, alpha=0.22, b=80.0, beta=0.25, gamma=6.48, l=0.390, ceiling=0.90),
    "humaneval": dict(a=276.0, alpha=0.30, b=277.0, beta=0.32, gamma=7.17, l=0.284, ceiling=0.95),
    "mbpp": dict(a=131.0, alpha=0.26, b=199.0, beta=0.30, gamma=7.15, l=0.455, ceiling=0.85),
}

#: Observation noise defaults, the same for every benchmark: about 1% multiplicative loss noise;
#: Beta precision 300 for the reference checkpoints (one lab, one harness: sd ~ 0.03 at 0.5) and
#: 200 for reported scores of evaluated models (several labs and harnesses: sd ~ 0.035 at 0.5).
DEFAULT_NOISE = {"phi_ref": 300.0, "phi_eval": 200.0, "sigma_loss": 0.01}

#: Ranges of ``draw_truth_from_prior`` (uniform; ``log`` marks log-uniform). They bracket the
#: defaults and keep every draw plausible in the same sense: doubling times from about 17 months
#: to 2 months, Chinchilla-like exponents, losses of order 0.5-3 nats, sigmoids spanning most of
#: their range over REAL_EFFECTIVE_RANGE. For exact SBC, draw from the inference model's own prior
#: instead; these ranges only promise that the simulated world looks like the real one.
PRIOR_RANGES = {
    "intercept": (-4.0, -2.0),
    "slope_pre_per_year": (0.5, 4.0),
    "slope_post_per_year": (0.5, 4.0),
    "sigma_u": (0.3, 1.0),
    "sigma_v": (0.1, 0.4),
    "alpha": (0.2, 0.35),
    "beta": (0.2, 0.35),
    "n_term_at_1e9": (0.45, 0.8),  # nats: a * 1e9^-alpha
    "d_term_at_d0": (0.03, 0.08),  # nats: b * D0^-beta
    "fraction_at_low": (0.03, 0.30),  # sigmoid fraction reached at REAL_EFFECTIVE_RANGE[0]
    "fraction_at_high": (0.60, 0.92),  # ... and at REAL_EFFECTIVE_RANGE[1]
    "ceiling": (0.8, 1.0),
    "phi_ref": (150.0, 600.0),  # log
    "phi_eval": (100.0, 400.0),  # log
    "sigma_loss": (0.005, 0.02),
}
_LOG_UNIFORM = ("phi_ref", "phi_eval")


@dataclass(frozen=True)
class SimulatedData:
    """One simulated data folder: the four input tables (schema columns) and the full truth."""

    reference_runs: pd.DataFrame
    models: pd.DataFrame
    scores: pd.DataFrame
    benchmarks: pd.DataFrame
    truth: dict

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables keyed by their schema file name."""
        return {
            schema.REFERENCE_RUNS.filename: self.reference_runs,
            schema.MODELS.filename: self.models,
            schema.SCORES.filename: self.scores,
            schema.BENCHMARKS.filename: self.benchmarks,
        }


# --------------------------------------------------------------------------------------------
# Truths
# --------------------------------------------------------------------------------------------


def default_truth(design: str = "paper", n_benchmarks: int = 5) -> dict:
    """The documented true values of ``design``: frontier trend and per-benchmark laws.

    The first five benchmarks are the paper's (fewer take the first ones); further ones are
    synthetic, drawn from ``PRIOR_RANGES`` with a fixed seed per benchmark so this stays a pure
    function. The model-level draws (u, v, densities) are made by ``simulate_design``.
    """
    _check_design(design)
    specs = _benchmark_specs(n_benchmarks)
    benchmarks = {}
    for k, spec in enumerate(specs):
        if spec.name in DEFAULT_BENCHMARK_LAWS:
            law = _benchmark_law(**DEFAULT_BENCHMARK_LAWS[spec.name], E=0.0, chance=spec.chance)
        else:
            rng = np.random.default_rng([SYNTHETIC_BENCHMARK_SEED, k])
            law = _draw_benchmark_law(rng, spec.chance)
        benchmarks[spec.name] = {**law, **DEFAULT_NOISE}
    return _truth_skeleton(_trend(**DEFAULT_TREND), benchmarks)


def draw_truth_from_prior(rng: np.random.Generator, n_benchmarks: int = 5) -> dict:
    """A random but plausible truth (same structure as ``default_truth``) for SBC-style studies.

    Every value is drawn from ``PRIOR_RANGES``; benchmark names and chance floors are the
    design's, so the result can be passed straight to ``simulate_design(truth=...)``.
    """
    trend = _trend(**{key: _uniform(rng, key) for key in DEFAULT_TREND})
    benchmarks = {}
    for spec in _benchmark_specs(n_benchmarks):
        noise = {key: _uniform(rng, key) for key in DEFAULT_NOISE}
        benchmarks[spec.name] = {**_draw_benchmark_law(rng, spec.chance), **noise}
    return _truth_skeleton(trend, benchmarks)


def _truth_skeleton(trend: dict, benchmarks: dict) -> dict:
    return {
        "d0_tokens": laws.D0_TOKENS,
        "changepoint": str(laws.CHATGPT_RELEASE),
        "trend": trend,
        "benchmarks": benchmarks,
    }


def _trend(intercept, slope_pre_per_year, slope_post_per_year, sigma_u, sigma_v) -> dict:
    """The frontier parameters plus the quantities the paper reports (derived, never free)."""
    return {
        "intercept": float(intercept),
        "slope_pre_per_year": float(slope_pre_per_year),
        "slope_post_per_year": float(slope_post_per_year),
        "sigma_u": float(sigma_u),
        "sigma_v": float(sigma_v),
        "doubling_time_days_pre": _doubling_days(slope_pre_per_year),
        "doubling_time_days_post": _doubling_days(slope_post_per_year),
        # T_before / T_after (laws.doubling_time_ratio); None where it is not finite
        "doubling_time_ratio": _finite_or_none(laws.doubling_time_ratio(slope_post_per_year,
                                                                         slope_pre_per_year)),
    }


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _doubling_days(slope_per_year: float) -> float | None:
    """``laws.doubling_time_days`` as a JSON-safe value: None where no doubling time exists."""
    days = float(laws.doubling_time_days(slope_per_year))
    return None if np.isnan(days) else days


def _benchmark_law(a, alpha, b, beta, E, gamma, l, ceiling, chance) -> dict:
    """Loss law and sigmoid of one benchmark; d is the chance floor and c = (1 - d) * ceiling."""
    return {
        "a": float(a), "alpha": float(alpha), "b": float(b), "beta": float(beta), "E": float(E),
        "c": float((1.0 - chance) * ceiling), "gamma": float(gamma), "l": float(l),
        "d": float(chance), "ceiling": float(ceiling),
    }


def _draw_benchmark_law(rng: np.random.Generator, chance: float) -> dict:
    """Random loss law and sigmoid within ``PRIOR_RANGES`` (E = 0, as in the paper's law).

    a and b are drawn through the size of their terms at real scales (an N-term of so many nats
    at N = 1e9, a D-term at D0) rather than directly: a alone is meaningless without alpha. The
    sigmoid is then placed through two fractions of its range at the ends of
    REAL_EFFECTIVE_RANGE, which is what keeps the evaluated models' scores informative.
    """
    alpha, beta = _uniform(rng, "alpha"), _uniform(rng, "beta")
    a = _uniform(rng, "n_term_at_1e9") * REAL_EFFECTIVE_RANGE[0] ** alpha
    b = _uniform(rng, "d_term_at_d0") * laws.D0_TOKENS**beta
    loss_low, loss_high = laws.loss_law(REAL_EFFECTIVE_RANGE, laws.D0_TOKENS, a, alpha, b, beta)
    gamma, l = _sigmoid_through(loss_low, loss_high, _uniform(rng, "fraction_at_low"),
                                _uniform(rng, "fraction_at_high"))
    return _benchmark_law(a, alpha, b, beta, 0.0, gamma, l, _uniform(rng, "ceiling"), chance)


def _sigmoid_through(loss_low, loss_high, fraction_low, fraction_high) -> tuple[float, float]:
    """(gamma, l) of the sigmoid whose share of its range is ``fraction_*`` at ``loss_*``.

    The fraction 1 / (1 + exp(gamma (L - l))) has logit -gamma (L - l): two points fix the line.
    ``loss_low`` belongs to the smaller model, so it is the larger loss.
    """
    gamma = (logit(fraction_high) - logit(fraction_low)) / (loss_low - loss_high)
    return float(gamma), float(loss_low + logit(fraction_low) / gamma)


def _uniform(rng: np.random.Generator, key: str) -> float:
    low, high = PRIOR_RANGES[key]
    if key in _LOG_UNIFORM:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def _benchmark_specs(n_benchmarks: int) -> list[BenchmarkSpec]:
    """The paper's benchmarks, then synthetic ``synth_6``, ``synth_7``, ... (``n_benchmarks``)."""
    if n_benchmarks < 1:
        raise ValueError(f"n_benchmarks must be at least 1, got {n_benchmarks}")
    specs = list(PAPER_BENCHMARKS[:n_benchmarks])
    for k in range(len(PAPER_BENCHMARKS), n_benchmarks):
        specs.append(BenchmarkSpec(f"synth_{k + 1}", SYNTHETIC_CHANCES[k % 2], None, None))
    return specs


def _check_design(design: str) -> None:
    if design not in DESIGNS:
        raise ValueError(f"unknown design '{design}'; known designs: {list(DESIGNS)}")


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def simulate_design(design: str = "paper", *, seed: int, n_models: int | None = None,
                    n_benchmarks: int = 5, truth: dict | None = None) -> SimulatedData:
    """Simulate one data folder of ``design`` from ``truth`` (``default_truth`` if None).

    ``n_benchmarks`` only shapes the default truth: a given truth brings its own benchmarks
    (only its primary parts are read, see ``_primary``). ``n_models`` None takes every dated
    model of the paper's list; fewer take a seeded subset, more add synthetic models. The
    returned truth adds the seed, the model-level draws and noise-free scores, the curve
    checkpoints' sizes, and the models dropped for lack of a release date.
    """
    _check_design(design)
    given = truth if truth is not None else default_truth(design, n_benchmarks)
    truth = {"design": design, "seed": int(seed), **_primary(given)}
    benchmark_laws = truth["benchmarks"]

    models, dropped = _evaluated_models(_stream(seed, "models"), n_models)
    model_truth = _model_truth(_stream(seed, "frontier"), models, truth)
    loss_law_rows = _loss_law_runs(_stream(seed, "loss_law_runs"), benchmark_laws)
    curve_rows, curve_truth = _curve_runs(_stream(seed, "curve_runs"), benchmark_laws)
    scores = _scores(_stream(seed, "scores"), model_truth, benchmark_laws)

    truth.update(models=model_truth, dropped_models=dropped, curve_runs=curve_truth)
    return SimulatedData(
        reference_runs=pd.concat([loss_law_rows, curve_rows], ignore_index=True),
        models=models,
        scores=scores,
        benchmarks=_benchmarks_table(benchmark_laws),
        truth=truth,
    )


#: Named random streams: each part of the simulation draws from its own stream seeded by
#: (seed, stream id), so parts do not shift each other's draws.
_STREAMS = {"models": 1, "frontier": 2, "loss_law_runs": 3, "curve_runs": 4, "scores": 5}


def _stream(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAMS[name]])


def _primary(truth: dict) -> dict:
    """The parts of ``truth`` a simulation starts from, copied, with derived values recomputed.

    Derived values (c from d and the ceiling; doubling times and acceleration from the slopes)
    are recomputed so they cannot contradict the primary ones. Anything else, such as an earlier
    simulation's seed and model-level draws, is left behind: those belong to this simulation.
    """
    benchmarks = copy.deepcopy(truth["benchmarks"])
    for bench in benchmarks.values():
        bench["c"] = (1.0 - bench["d"]) * bench["ceiling"]
    return {
        "d0_tokens": float(truth["d0_tokens"]),
        "changepoint": str(truth["changepoint"]),
        "trend": _trend(**{key: truth["trend"][key] for key in DEFAULT_TREND}),
        "benchmarks": benchmarks,
    }


def paper_models_table() -> Path:
    """The bundled table of evaluated models (names, release dates, params, ``paper_role``)."""
    return resources.bundled_data_folder("default") / schema.MODELS.filename


def _evaluated_models(rng: np.random.Generator,
                      n_models: int | None) -> tuple[pd.DataFrame, list[str]]:
    """The paper's dated models, subset or extended to ``n_models``; and the undated ones' names.

    Undated models cannot be placed on the time axis of the trend, so they are left out (the
    real analysis must do the same), and their names recorded.
    """
    table = pd.read_csv(paper_models_table(), dtype={"release_date": str})
    table = table[table["paper_role"].isin(PAPER_ROLES)]
    undated = table["release_date"].isna()
    paper = table.loc[~undated, ["model", "release_date", "params", "family", "paper_role"]]
    paper = paper.reset_index(drop=True)
    if n_models is not None and n_models < 1:
        raise ValueError(f"n_models must be at least 1, got {n_models}")
    if n_models is None or n_models == len(paper):
        models = paper
    elif n_models < len(paper):
        models = paper.iloc[np.sort(rng.choice(len(paper), size=n_models, replace=False))]
    else:
        models = pd.concat([paper, _synthetic_models(rng, paper, n_models - len(paper))])
    models = models.reset_index(drop=True).astype({"params": "Int64"})
    return models, table.loc[undated, "model"].tolist()


def _synthetic_models(rng: np.random.Generator, paper: pd.DataFrame, count: int) -> pd.DataFrame:
    """``count`` made-up models, each a jittered copy of a paper model (see the constants)."""
    parents = rng.integers(0, len(paper), size=count)
    dates = paper["release_date"].to_numpy("datetime64[D]")
    shift = rng.integers(-SYNTHETIC_DATE_JITTER_DAYS, SYNTHETIC_DATE_JITTER_DAYS + 1, size=count)
    release = np.clip(dates[parents] + shift, dates.min(), dates.max())
    log_params = (np.log(paper["params"].to_numpy(float))[parents]
                  + rng.normal(0.0, SYNTHETIC_LOG_PARAMS_JITTER, size=count))
    return pd.DataFrame({
        "model": [f"synth_model_{i:04d}" for i in range(1, count + 1)],
        "release_date": np.datetime_as_string(release, unit="D"),
        "params": np.round(np.exp(log_params)).astype(np.int64),
        "family": "synthetic",
        "paper_role": "synthetic",
    })


def _model_truth(rng: np.random.Generator, models: pd.DataFrame, truth: dict) -> dict:
    """Frontier draws, densities, effective sizes and noise-free scores of every model."""
    trend = truth["trend"]
    t = laws.years_since(models["release_date"].to_numpy(str), origin=truth["changepoint"])
    frontier = (trend["intercept"] + trend["slope_pre_per_year"] * np.minimum(t, 0.0)
                + trend["slope_post_per_year"] * np.maximum(t, 0.0))
    u = np.abs(rng.normal(0.0, trend["sigma_u"], size=len(models)))
    v = rng.normal(0.0, trend["sigma_v"], size=len(models))
    log_density = frontier - u + v
    params = models["params"].to_numpy(float)
    effective = params * np.exp(log_density)
    # Benchmark drift (the model's [trend] benchmark_drift): benchmark b reads the effective
    # size as N_eff exp(kappa_b t); absent from a truth, kappa_b = 0.
    true_scores = {name: _true_score(effective * np.exp(law.get("drift_per_year", 0.0) * t),
                                     law, truth["d0_tokens"])
                   for name, law in truth["benchmarks"].items()}
    return {
        name: {
            "params": int(params[i]),
            "release_date": models["release_date"].iloc[i],
            "log_density": float(log_density[i]),
            "effective_params": float(effective[i]),
            "u": float(u[i]),
            "v": float(v[i]),
            "true_scores": {bench: float(scores[i]) for bench, scores in true_scores.items()},
        }
        for i, name in enumerate(models["model"])
    }


def _true_loss(N, D, law: dict):
    return laws.loss_law(N, D, law["a"], law["alpha"], law["b"], law["beta"], law["E"])


def _true_score_of_loss(loss, law: dict):
    return laws.score_from_loss(loss, law["c"], law["gamma"], law["l"], law["d"])


def _true_score(N, law: dict, d0_tokens: float):
    return _true_score_of_loss(_true_loss(N, d0_tokens, law), law)


def _observed_loss(rng: np.random.Generator, loss, law: dict):
    """Loss times log-normal noise: a test-set loss is uncertain relative to its size, and > 0."""
    loss = np.asarray(loss, dtype=float)
    return loss * np.exp(rng.normal(0.0, law["sigma_loss"], size=loss.shape))


def _observed_score(rng: np.random.Generator, mean, precision: float):
    """Beta(mean, precision) draws, the mean kept within SCORE_MEAN_FLOOR of 0 and 1.

    Raises if a draw lands on 0 or 1 anyway: the schema allows it, the Beta likelihood does not.
    """
    mean = np.clip(np.asarray(mean, dtype=float), SCORE_MEAN_FLOOR, 1.0 - SCORE_MEAN_FLOOR)
    score = rng.beta(mean * precision, (1.0 - mean) * precision)
    if np.any((score <= 0.0) | (score >= 1.0)):
        raise RuntimeError("a simulated score fell on 0 or 1; raise SCORE_MEAN_FLOOR")
    return score


def _loss_law_runs(rng: np.random.Generator, benchmark_laws: dict) -> pd.DataFrame:
    """The paper's 6 x 6 loss-law runs: one row per (run, benchmark), loss only (no score)."""
    rows = []
    for params in PAPER_REFERENCE_SIZES:
        for multiplier in PAPER_TOKEN_MULTIPLIERS:
            tokens = multiplier * params
            for name, law in benchmark_laws.items():
                rows.append({
                    "run_id": f"law_{params / 1e6:.0f}M_{multiplier}x",
                    "benchmark": name,
                    "params": params,
                    "tokens": tokens,
                    "loss": float(_observed_loss(rng, _true_loss(params, tokens, law), law)),
                    "score": np.nan,
                    "holdout": "false",
                    "final": "true",
                })
    return _reference_frame(rows)


def _curve_runs(rng: np.random.Generator, benchmark_laws: dict) -> tuple[pd.DataFrame, dict]:
    """Well-trained checkpoints observing (loss, score): the data of the sigmoid fit.

    Their size and token count stay in the truth only: the paper used these models for the
    loss -> score map alone, so the rows carry no params/tokens and do not inform the loss law.
    The score is drawn around the sigmoid of the *recorded* loss, i.e. a regression of score on
    measured loss, which is how the paper fitted it and how the joint model reads these rows.
    """
    sizes = [(n, False) for n in CURVE_FIT_SIZES] + [(n, True) for n in CURVE_HOLDOUT_SIZES]
    log_tpp = rng.uniform(*np.log(CURVE_TOKENS_PER_PARAM), size=len(sizes))
    rows, checkpoints = [], {}
    for (params, holdout), tokens_per_param in zip(sizes, np.exp(log_tpp)):
        run_id = f"curve_{params / 1e9:.2f}B"
        tokens = int(round(params * tokens_per_param))
        checkpoints[run_id] = {"params": params, "tokens": tokens, "holdout": holdout}
        for name, law in benchmark_laws.items():
            loss = float(_observed_loss(rng, _true_loss(params, tokens, law), law))
            rows.append({
                "run_id": run_id,
                "benchmark": name,
                "params": pd.NA,
                "tokens": pd.NA,
                "loss": loss,
                "score": float(_observed_score(rng, _true_score_of_loss(loss, law),
                                               law["phi_ref"])),
                "holdout": "true" if holdout else "false",
                "final": "false",
            })
    return _reference_frame(rows), checkpoints


def _reference_frame(rows: list[dict]) -> pd.DataFrame:
    columns = [c.name for c in schema.REFERENCE_RUNS.columns]
    return pd.DataFrame(rows, columns=columns).astype({"params": "Int64", "tokens": "Int64"})


def _scores(rng: np.random.Generator, model_truth: dict, benchmark_laws: dict) -> pd.DataFrame:
    """Reported scores with the real tables' gaps and repeated reports.

    Each model keeps one randomly chosen benchmark for sure (a model with no score at all would
    carry no information and the real table has none); MISSING_FRACTION of all pairs are dropped
    from the rest. REPEAT_FRACTION of the kept pairs get a second, independent report. ``shots``
    is the paper's setting; ``n_items`` stays empty because the simulated noise is not binomial.
    """
    names, benches = list(model_truth), list(benchmark_laws)
    pairs = pd.MultiIndex.from_product([range(len(names)), range(len(benches))]).to_frame(
        index=False, name=["m", "b"])
    kept_for_sure = rng.integers(len(benches), size=len(names))
    droppable = np.flatnonzero(pairs["b"].to_numpy() != kept_for_sure[pairs["m"].to_numpy()])
    n_drop = min(int(round(MISSING_FRACTION * len(pairs))), len(droppable))
    kept = pairs.drop(index=rng.choice(droppable, size=n_drop, replace=False))
    n_repeat = int(round(REPEAT_FRACTION * len(kept)))
    repeats = kept.iloc[np.sort(rng.choice(len(kept), size=n_repeat, replace=False))]
    reports = pd.concat([kept.assign(report=0), repeats.assign(report=1)]).sort_values(
        ["m", "b", "report"], kind="stable")

    model = np.array(names)[reports["m"].to_numpy()]
    benchmark = np.array(benches)[reports["b"].to_numpy()]
    mean = np.array([model_truth[m]["true_scores"][b] for m, b in zip(model, benchmark)])
    phi = np.array([benchmark_laws[b]["phi_eval"] for b in benchmark])
    repeat = reports["report"].to_numpy() == 1
    return pd.DataFrame({
        "model": model,
        "benchmark": benchmark,
        "score": _observed_score(rng, mean, phi),
        "source": np.where(repeat, "simulated re-evaluation", "simulated developer report"),
        "source_kind": np.where(repeat, "other", "own"),
        "shots": _setting(benchmark, "shots"),
        "n_items": pd.array([None] * len(model), dtype="Int64"),
    })


def _benchmarks_table(benchmark_laws: dict) -> pd.DataFrame:
    names = list(benchmark_laws)
    return pd.DataFrame({
        "benchmark": names,
        "chance": [benchmark_laws[b]["d"] for b in names],
        "n_items": _setting(names, "n_items"),
    })


def _setting(benchmarks, field: str) -> pd.array:
    """A ``BenchmarkSpec`` field per benchmark name; empty for benchmarks not in the paper."""
    specs = {spec.name: spec for spec in PAPER_BENCHMARKS}
    values = [getattr(specs[b], field) if b in specs else None for b in benchmarks]
    return pd.array(values, dtype="Int64")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

#: Name of the file that stores the truth next to the simulated CSVs.
TRUTH_FILENAME = "truth.json"


def write_simulation(sim: SimulatedData, out_dir: Path, *, force: bool = False) -> None:
    """Write the four CSVs and ``truth.json`` into ``out_dir``, each file atomically.

    A non-empty ``out_dir`` is refused unless ``force`` (then only these five files are
    replaced), so a simulation never silently mixes with or overwrites other data. Each file is
    written to a temporary file in ``out_dir`` and moved into place with ``os.replace``, so a
    reader never sees a half-written file. Output is deterministic: same simulation, same bytes.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(f"{out_dir} is not empty; refusing to write a simulation into it "
                              "(use an empty or new folder, or force=True to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, frame in sim.tables().items():
        _write_atomic(out_dir / filename, frame.to_csv(index=False, lineterminator="\n"))
    _write_atomic(out_dir / TRUTH_FILENAME, json.dumps(sim.truth, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
