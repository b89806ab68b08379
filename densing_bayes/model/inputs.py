"""From a validated data folder to the arrays the joint model consumes.

This is where every modelling decision about *which rows enter the likelihood* is made, once,
and each row left out is counted in a note (never silently dropped):

* benchmarks: those with both loss-law rows (params, tokens, loss) and curve rows (loss,
  score) in the reference family; a spec may restrict them further;
* evaluated models: those with a release date, not excluded by flag, with at least one score on
  a modelled benchmark;
* scores: every reported row (repeated measurements), or the preferred row per pair.

It also fixes the data-derived constants the priors are scaled by (documented in README):
``centre_log_params`` / ``centre_log_tokens`` (mean log N and log D over loss-law rows: the
reference design's centre) and ``loss_scale`` (median loss-law loss per benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from densing_bayes import laws
from densing_bayes.data.lineage import model_lineages
from densing_bayes.data.schema import DensingData, truthy
from densing_bayes.model.spec import ModelSpec

#: Scoring formats a reference curve can have, in the order of the model's ``format`` dim:
#: "rc" (cloze: the answer text's likelihood, the reference family's own protocol) and "mc"
#: (options in the prompt, the answer letter scored). A reported score may also be "unknown"
#: (marginalised over the formats with curves), "best" (the higher of two protocols' scores was
#: reported: mapped through the larger of the benchmark's curves) or "gen" (generated answers:
#: no curve, not fitted).
CURVE_FORMATS = ("rc", "mc")
SCORE_FORMAT_CODES = {"rc": 0, "mc": 1, "unknown": -1, "best": -2}

#: Floor of the log-weight of a format a reported row cannot have (exp(-700) ~ 1e-304: zero in
#: the mixture, but finite so that gradients stay finite).
IMPOSSIBLE_LOG_WEIGHT = -700.0

#: Item count used to squeeze scores of 0 or 1 into the open interval the Beta likelihood
#: needs, y' = (y (n - 1) + 0.5) / n (Smithson & Verkuilen 2006), when n_items is unknown.
DEFAULT_SQUEEZE_ITEMS = 1000.0



class ModelInputError(ValueError):
    """Data and spec that cannot make a model (e.g. no benchmark with reference curves)."""


@dataclass(frozen=True)
class ModelInputs:
    benchmarks: list[str]
    chance: np.ndarray  # (benchmark,)
    loss_scale: np.ndarray  # (benchmark,) median loss-law loss
    centre_log_params: float
    centre_log_tokens: float
    log_d0_centred: float  # log D0 - centre_log_tokens
    # loss-law rows
    law_benchmark: np.ndarray
    law_x_params: np.ndarray  # log N - centre
    law_x_tokens: np.ndarray  # log D - centre
    law_loss: np.ndarray
    law_run: list[str]
    # curve rows
    curve_benchmark: np.ndarray
    curve_loss: np.ndarray
    curve_score: np.ndarray  # squeezed into (0, 1)
    curve_format: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # index in formats
    formats: tuple[str, ...] = ("rc",)
    #: (run, benchmark, format) group of each curve row, and the groups' labels and formats:
    #: the checkpoints of one run share one run effect per benchmark and format.
    curve_group: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    curve_groups: list[str] = field(default_factory=list)
    curve_group_format: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    curve_group_benchmark: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    # evaluated models
    models: list[str] = field(default_factory=list)
    model_log_params: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model_time: np.ndarray = field(default_factory=lambda: np.zeros(0))  # years since changepoint
    model_release: np.ndarray = field(default_factory=lambda: np.zeros(0, "datetime64[D]"))
    #: each model's lineage (index into ``lineages``: data/lineage.py's rule on its family)
    model_lineage: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    lineages: list[str] = field(default_factory=list)
    score_model: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    score_benchmark: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    score_source: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    score_value: np.ndarray = field(default_factory=lambda: np.zeros(0))  # squeezed
    score_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # as reported
    score_format: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # -1/-2: unknown/best
    #: rows whose reported value is the higher of two protocols' scores ("best"): their mean is
    #: the larger of the formats' curves, entered in the first format column.
    score_best: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: log P(format) per score row and format (rows, formats): 0 / IMPOSSIBLE_LOG_WEIGHT for a
    #: stated format (and, in its first column, for a "best" row), the benchmark's format
    #: shares for an unknown one.
    score_format_log_weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    #: P(mc) of an unknown-format row, per benchmark (see ``format_weights``).
    mc_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source_kinds: list[str] = field(default_factory=list)
    #: (model, benchmark) pair of each score row and the pairs' labels "model|benchmark".
    score_pair: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    pairs: list[str] = field(default_factory=list)
    pair_benchmark: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    #: how many reported rows each score row stands for (> 1: exact copies collapsed), and
    #: their sources joined by " | ".
    score_copies: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    score_sources: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    @property
    def has_evaluated_models(self) -> bool:
        return len(self.models) > 0

    def coords(self) -> dict[str, list]:
        coords: dict[str, list] = {
            "benchmark": list(self.benchmarks),
            "law_row": list(range(len(self.law_loss))),
            "curve_row": list(range(len(self.curve_loss))),
        }
        if len(self.curve_groups):
            coords["curve_group"] = list(self.curve_groups)
        if self.has_evaluated_models:
            coords["model"] = list(self.models)
            coords["score_obs"] = list(range(len(self.score_value)))
            coords["source_kind"] = list(self.source_kinds)
            if len(self.lineages):
                coords["lineage"] = list(self.lineages)
            if len(self.pairs):
                coords["pair"] = list(self.pairs)
        coords["format"] = list(self.formats)
        return coords


#: Fields of :class:`ModelInputs` with one entry per observation row (loss-law, curve and
#: score rows); everything else describes benchmarks, formats, models, groups or pairs.
ROW_FIELDS = ("law_benchmark", "law_x_params", "law_x_tokens", "law_loss", "law_run",
              "curve_benchmark", "curve_loss", "curve_score", "curve_format", "curve_group",
              "score_model", "score_benchmark", "score_source", "score_value", "score_raw",
              "score_format", "score_best", "score_format_log_weight", "score_pair",
              "score_copies", "score_sources")


def replicate_rows(inputs: ModelInputs, copies: int) -> ModelInputs:
    """The same design with every observation row repeated ``copies`` times (copy k's rows
    follow copy k - 1's), sharing the benchmarks, models, groups and pairs: a model of these
    inputs has the same parameters and latents, and ``copies`` data sets of the same shape.
    Posterior SBC fits the real data and one simulated replicate jointly this way."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    updates = {}
    for name in ROW_FIELDS:
        value = getattr(inputs, name)
        updates[name] = (list(value) * copies if isinstance(value, list)
                         else np.concatenate([np.asarray(value)] * copies, axis=0))
    return replace(inputs, **updates)


def squeeze_scores(score: np.ndarray, n_items: np.ndarray | None = None) -> np.ndarray:
    """Map [0, 1] into (0, 1) by the Smithson-Verkuilen rule; values inside barely move."""
    n = np.full(score.shape, DEFAULT_SQUEEZE_ITEMS) if n_items is None else np.asarray(n_items)
    n = np.where(np.isfinite(n) & (n > 1), n, DEFAULT_SQUEEZE_ITEMS)
    return (score * (n - 1.0) + 0.5) / n


def _reference_rows(data: DensingData, spec: ModelSpec, notes: list[str]):
    runs = data.reference_runs
    if spec.data.exclude_holdout and "holdout" in runs:
        held = truthy(runs["holdout"])
        if held.any():
            notes.append(f"reference_runs.csv: {int(held.sum())} hold-out rows "
                         f"({runs.loc[held, 'run_id'].nunique()} runs) kept out of the fit")
        runs = runs[~held]
    fmt = reference_formats(runs)
    unknown = ~fmt.isin(CURVE_FORMATS)
    if unknown.any():
        notes.append(f"reference_runs.csv: {int(unknown.sum())} rows with a format other than "
                     f"{list(CURVE_FORMATS)} are not used")
    runs = runs.assign(format=fmt)[~unknown]
    # One loss-law row per (run, benchmark): the loss is the same in every format's row.
    law = runs[runs["params"].notna() & runs["tokens"].notna() & runs["loss"].notna()
               & (runs["format"] == "rc")]
    if "score" not in runs:  # a loss-law table: no score column at all
        return law, runs.iloc[:0].assign(score=np.nan)
    curve = runs[runs["loss"].notna() & runs["score"].notna()]
    return law, curve


def reference_formats(runs: pd.DataFrame) -> pd.Series:
    """Format of every reference row: the ``format`` column, "rc" where absent or empty (the
    reference family's own cloze protocol, what a folder without the column has always meant)."""
    if "format" not in runs:
        return pd.Series("rc", index=runs.index)
    return runs["format"].fillna("").astype(str).str.strip().str.lower().replace("", "rc")


def _choose_benchmarks(law, curve, data, spec, notes) -> list[str]:
    usable = sorted(set(law["benchmark"]) & set(curve["benchmark"]))
    for name, frame in (("loss-law", law), ("curve", curve)):
        missing = sorted((set(law["benchmark"]) | set(curve["benchmark"])) - set(frame["benchmark"]))
        if missing:
            notes.append(f"benchmarks without {name} rows are not modelled: {missing}")
    if spec.data.benchmarks:
        unknown = sorted(set(spec.data.benchmarks) - set(usable))
        if unknown:
            raise ModelInputError(f"spec asks for benchmarks {unknown} that have no reference loss-law "
                             f"and curve rows in {data.folder}; usable: {usable}")
        usable = [b for b in usable if b in spec.data.benchmarks]
    if not usable:
        raise ModelInputError(f"{data.folder}: no benchmark has both loss-law rows (params, tokens, "
                         "loss) and curve rows (loss, score); nothing to fit")
    return usable


def thin_curve_rows(curve: pd.DataFrame, max_rows: int, notes: list[str]) -> pd.DataFrame:
    """At most ``max_rows`` curve rows per benchmark, evenly spaced in loss order.

    Deterministic (no random subsample, so fits stay reproducible) and range-preserving: the
    lowest and highest losses are always kept, so the sigmoid sees its whole observed span.
    """
    if max_rows <= 0:
        return curve
    kept = []
    for _, rows in curve.groupby(["benchmark", "format"], sort=False):
        if len(rows) > max_rows:
            order = rows.sort_values(["loss", "run_id"], kind="stable")
            picks = np.unique(np.round(np.linspace(0, len(order) - 1, max_rows)).astype(int))
            rows = order.iloc[picks]
        kept.append(rows)
    thinned = pd.concat(kept).sort_index()
    if len(thinned) < len(curve):
        notes.append(f"curve rows thinned to at most {max_rows} per benchmark and format, "
                     "evenly spaced in "
                     f"loss: {len(thinned)} of {len(curve)} used ([data] max_curve_rows)")
    return thinned


def _chance(benchmarks: list[str], data: DensingData, curve: pd.DataFrame, notes) -> np.ndarray:
    """Chance level per benchmark from benchmarks.csv; without it, 0 (no floor), with a note."""
    if data.benchmarks is not None:
        table = data.benchmarks.set_index("benchmark")["chance"]
        return np.array([float(table.get(b, 0.0)) for b in benchmarks])
    notes.append("no benchmarks.csv: sigmoid floors set to 0 (chance unknown)")
    return np.zeros(len(benchmarks))


def _score_formats(scores, curve_formats, benchmarks, notes):
    """Each reported row's format: stated ("rc"/"mc"), "unknown" (marginalised), "best" (the
    larger of the curves), or left out.

    Without a ``format`` column every row is taken to be in the reference protocol ("rc"), as
    before formats existed. "gen" rows (generated answers), rows whose format has no reference
    curve for their benchmark, and "best" rows of a benchmark without a curve in every format
    (the better of two protocols needs both) are left out with a note: no curve can map them.
    """
    fmt = (scores["format"].fillna("").astype(str).str.strip().str.lower().replace("", "unknown")
           if "format" in scores else pd.Series("rc", index=scores.index))
    formats = {f for _, f in curve_formats}
    has_curve = pd.Series([(b, f) in curve_formats if f != "best"
                           else len(formats) > 1 and all((b, g) in curve_formats for g in formats)
                           for b, f in zip(scores["benchmark"], fmt)], index=scores.index)
    usable = has_curve | (fmt == "unknown")
    for label, dropped in (("generated-answer ('gen')", fmt == "gen"),
                           ("a format without a reference curve", ~usable & (fmt != "gen"))):
        if dropped.any():
            notes.append(f"scores.csv: {int(dropped.sum())} rows in {label} format are not "
                         "used: no reference curve maps them")
    return scores.assign(format=fmt)[usable]


def format_weights(scores: pd.DataFrame, benchmarks: list[str], curve_formats) -> np.ndarray:
    """P(mc) of an unknown-format row of each benchmark: the share of MC among the benchmark's
    stated-format rows, with one pseudo-row of each (Laplace's rule: 1/2 with no stated row);
    0 where the benchmark has no MC curve."""
    weights = []
    for b in benchmarks:
        stated = scores.loc[scores["benchmark"] == b, "format"]
        n_mc, n_rc = int((stated == "mc").sum()), int((stated == "rc").sum())
        weights.append((n_mc + 1) / (n_mc + n_rc + 2) if (b, "mc") in curve_formats else 0.0)
    return np.array(weights)


def stated_mc_rows(inputs: ModelInputs) -> np.ndarray:
    """1 for a score row whose source states the multiple-choice format, else 0 (int8)."""
    if "mc" not in inputs.formats:
        return np.zeros(len(inputs.score_format), "int8")
    return (np.asarray(inputs.score_format) == list(inputs.formats).index("mc")).astype("int8")


def format_log_weights(code: np.ndarray, score_bidx: np.ndarray, mc_weight: np.ndarray,
                       formats: tuple[str, ...]) -> np.ndarray:
    """(row, format) log P(format): 0 for a stated format, the benchmark's MC share for an
    unstated one, all mass on the first column for a best-of-two row (the model takes the
    larger curve there). A function of its own because held-out rows are weighted with the
    shares of the rows the model was fitted to (``analysis/robustness.py``)."""
    fidx = {f: i for i, f in enumerate(formats)}
    log_weight = np.full((len(code), len(formats)), IMPOSSIBLE_LOG_WEIGHT)
    unknown = code == -1
    for f, i in fidx.items():
        log_weight[code == i, i] = 0.0
        share = mc_weight[score_bidx] if f == "mc" else 1.0 - mc_weight[score_bidx]
        log_weight[unknown, i] = np.log(np.maximum(share[unknown], 1e-300))
    log_weight[code == SCORE_FORMAT_CODES["best"], 0] = 0.0
    return np.maximum(log_weight, IMPOSSIBLE_LOG_WEIGHT)


def _reported_decimals(text: str) -> int | None:
    """Digits after the decimal point of a reported number's text ("87.8" -> 1, "89" -> 0),
    None when the text is not a plain decimal number."""
    text = str(text).strip()
    body = text.lstrip("+-")
    whole, _, frac = body.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit():
        return None
    return len(frac)


def match_rounded_copies(scores: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Give an unstated-format report the score of the stated report it transcribes at lower
    precision, so that :func:`collapse_copies` treats the two as one measurement.

    The rule: an ``unknown``-format row is a transcription of a stated (``rc``/``mc``/
    ``best``) row of the same (model, benchmark) when the stated row was printed more finely
    (its last digit is worth less, in fraction units, than the unstated row's) and the two
    differ by at most half a unit of the unstated row's last digit. A row that matches two
    different stated values is left alone (it transcribes neither for sure). Needs the
    ``score_reported`` column (the score as its source printed it, in percent or as a
    fraction); without it the table is returned unchanged."""
    if scores.empty or "score_reported" not in scores:
        return scores
    frame = scores.copy()
    reported = frame["score_reported"].astype(str)
    value = pd.to_numeric(reported, errors="coerce")
    # the worth of the printed last digit, in the fraction units of ``score``
    resolution = (10.0 ** -reported.map(_reported_decimals).astype(float)
                  * frame["score"] / value)
    changed = 0
    for _, group in frame.groupby(["model", "benchmark"], sort=False):
        stated = group.index[group["format"] != "unknown"]
        for i in group.index[group["format"] == "unknown"]:
            if not np.isfinite(resolution[i]):
                continue
            hits = {float(frame.at[j, "score"]) for j in stated
                    if resolution[j] < resolution[i]
                    and abs(frame.at[j, "score"] - frame.at[i, "score"])
                    <= 0.5 * resolution[i] * (1 + 1e-9)}
            if len(hits) == 1 and frame.at[i, "score"] not in hits:
                frame.at[i, "score"] = hits.pop()
                changed += 1
    if changed:
        notes.append(f"scores.csv: {changed} unstated-format reports transcribe a stated report "
                     "of the same (model, benchmark) at lower precision and collapse into it "
                     "([data] rounded_copies)")
    return frame


def collapse_copies(scores: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per distinct reported value of a (model, benchmark), by a written rule.

    Rows of one (model, benchmark) with the same score are copies of one measurement (an
    aggregator transcribing the developer's number is the common case) and enter once
    (with ``[data] rounded_copies``, :func:`match_rounded_copies` first gives a transcription
    at lower precision the score it transcribes):

    * their stated formats (rc / mc) are collected; an ``unknown`` copy takes the stated format
      when exactly one is stated (it is a transcription of that report);
    * if two stated formats report the same value, one row per stated format is kept (two
      protocols that happen to agree are two measurements);
    * the kept row is the first in file order (its source kind and metadata), with
      ``copies`` = how many rows it stands for and ``sources`` = their sources, " | "-joined.
    """
    if scores.empty:
        return scores.assign(copies=pd.Series(dtype=int), sources=pd.Series(dtype=str))
    source = (scores["source"].fillna("").astype(str) if "source" in scores
              else pd.Series("", index=scores.index))
    frame = scores.reset_index(drop=True)
    source = source.reset_index(drop=True)
    picks, formats, copies, sources = [], [], [], []
    for _, group in frame.groupby(["model", "benchmark", "score"], sort=False):
        stated = sorted(set(group["format"]) - {"unknown"})
        for fmt in (stated if stated else ["unknown"]):
            members = group.index[group["format"].isin([fmt, "unknown"])]
            picks.append(members[0])
            formats.append(fmt)
            copies.append(len(members))
            sources.append(" | ".join(dict.fromkeys(source[members])))
    order = np.argsort(picks, kind="stable")
    out = frame.loc[np.asarray(picks)[order]].assign(
        format=np.asarray(formats, object)[order], copies=np.asarray(copies, int)[order],
        sources=np.asarray(sources, object)[order])
    if len(out) < len(scores):
        notes.append(f"scores.csv: {len(scores)} rows are {len(out)} distinct reported values: "
                     f"{len(scores) - len(out)} exact copies of another row's score for the same "
                     "(model, benchmark) enter once ([data] score_rows)")
    return out


def pair_means(scores: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per (model, benchmark, format): the mean of its distinct reported values.

    Distinct reports of one pair differ by harness details, and all of them measure the same
    model on the same benchmark: as separate rows they are pseudo-replicates that the
    likelihood would count as independent evidence about the model's size. Their mean is one
    measurement per pair; the per-benchmark precision then describes how far a pair's score
    sits from the chain's prediction. ``reports``: how many distinct values were averaged,
    ``copies``: how many reported rows they stand for; ``source_kind`` is "mixed" when the
    reports come from different kinds of source. Unknown-format reports of a pair are averaged
    together (an assumption: they share one format)."""
    if scores.empty:
        return scores.assign(reports=pd.Series(dtype=int))
    frame = scores.reset_index(drop=True)
    if "copies" not in frame:
        frame = frame.assign(copies=1)
    if "sources" not in frame:
        frame = frame.assign(sources=frame["source"].fillna("").astype(str)
                             if "source" in frame else "")
    keys = ["model", "benchmark", "format"]
    grouped = frame.groupby(keys, sort=False)
    first = grouped.head(1).set_index(keys)
    first["score"] = grouped["score"].mean()
    first["reports"] = grouped.size()
    first["copies"] = grouped["copies"].sum()
    first["sources"] = grouped["sources"].agg(lambda s: " | ".join(dict.fromkeys(
        " | ".join(s).split(" | "))))
    if "source_kind" in frame:
        kinds = grouped["source_kind"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else "mixed")
        first["source_kind"] = kinds
    if "n_items" in frame:
        first["n_items"] = grouped["n_items"].first()
    out = first.reset_index()[list(frame.columns) + ["reports"]]
    if len(out) < len(frame):
        notes.append(f"scores: {len(frame)} distinct reported values are {len(out)} (model, "
                     "benchmark, format) measurements, each the mean of its pair's reports "
                     "([data] score_rows = 'pair_mean')")
    return out


#: A format's reference curve gets run effects only with at least this many runs: with two
#: (the OLMo-2 7B main and medium-LR runs, the MC bridge) the run SD is not identified.
RUN_EFFECT_MIN_RUNS = 3


def curve_run_groups(curve: pd.DataFrame, benchmarks: list[str], formats) -> tuple:
    """(group index per curve row, group labels, group format index, group benchmark index):
    one group per (run, benchmark, format). The run is the ``run`` column (all checkpoints of
    one training run), else ``run_id``. Rows of a format with fewer than
    ``RUN_EFFECT_MIN_RUNS`` runs get index len(groups): no run effect."""
    run = (curve["run"] if "run" in curve else curve["run_id"]).astype(str)
    runs_per_format = run.groupby(curve["format"]).nunique()
    eligible = curve["format"].map(runs_per_format).fillna(0).to_numpy() >= RUN_EFFECT_MIN_RUNS
    label = run + "|" + curve["benchmark"].astype(str) + "|" + curve["format"].astype(str)
    groups = list(dict.fromkeys(label[eligible]))
    index = {g: i for i, g in enumerate(groups)}
    index.update({g: len(groups) for g in set(label[~eligible])})
    fidx = {f: i for i, f in enumerate(formats)}
    bidx = {b: i for i, b in enumerate(benchmarks)}
    parts = [g.rsplit("|", 2) for g in groups]
    return (label.map(index).to_numpy(int), groups,
            np.array([fidx[p[2]] for p in parts], int), np.array([bidx[p[1]] for p in parts], int))


def _evaluated(data, spec, benchmarks, notes, curve_formats):
    models = data.models.copy()
    scores = data.scores.copy()
    if spec.data.exclude_flags and "flags" in models:
        flagged = models["flags"].fillna("").astype(str).apply(
            lambda s: bool(set(s.split(";")) & set(spec.data.exclude_flags)))
        if flagged.any():
            notes.append(f"models excluded by flags {list(spec.data.exclude_flags)}: "
                         f"{sorted(models.loc[flagged, 'model'])}")
        models = models[~flagged]
    undated = models["release_date"].isna()
    if undated.any():
        notes.append(f"models without a release date are not fitted: "
                     f"{sorted(models.loc[undated, 'model'])}")
        models = models[~undated]
    off_benchmark = ~scores["benchmark"].isin(benchmarks)
    # Benchmarks absent from reference_runs.csv are already reported by the loader.
    unmodelled = off_benchmark & scores["benchmark"].isin(data.reference_runs["benchmark"])
    if unmodelled.any():
        notes.append(f"scores.csv: {int(unmodelled.sum())} rows on benchmarks the model leaves "
                     f"out are not used ({sorted(scores.loc[unmodelled, 'benchmark'].unique())})")
    scores = scores[~off_benchmark & scores["model"].isin(models["model"])]
    if spec.data.score_rows == "preferred":
        if "preferred" in scores:
            scores = scores[truthy(scores["preferred"])]
        else:
            notes.append("scores.csv has no 'preferred' column: the first row per pair is used")
            scores = scores.drop_duplicates(["model", "benchmark"], keep="first")
    scores = _score_formats(scores, curve_formats, benchmarks, notes)
    if spec.data.score_rows in ("distinct", "pair_mean"):
        if spec.data.rounded_copies:
            scores = match_rounded_copies(scores, notes)
        scores = collapse_copies(scores, notes)
    if spec.data.score_rows == "pair_mean":
        scores = pair_means(scores, notes)
    scored = models["model"].isin(scores["model"])
    if (~scored).any():
        notes.append(f"models without a score on a modelled benchmark are not fitted: "
                     f"{sorted(models.loc[~scored, 'model'])}")
    return models[scored].sort_values(["release_date", "model"]), scores


def prepare_inputs(data: DensingData, spec: ModelSpec) -> ModelInputs:
    """All arrays, index maps, centring constants and notes for ``build_model``."""
    notes: list[str] = list(data.notes)
    law, curve = _reference_rows(data, spec, notes)
    # --- the loss law alone (no curve rows, no evaluated models): a Chinchilla-style fit
    law_alone = curve.empty and not data.has_evaluated_models
    if law_alone:
        notes.append("no curve rows (loss, score) and no evaluated models: the loss law is "
                     "fitted alone")
    benchmarks = _choose_benchmarks(law, law if law_alone else curve, data, spec, notes)
    # ---
    bidx = {b: i for i, b in enumerate(benchmarks)}
    law = law[law["benchmark"].isin(benchmarks)]
    curve = curve if law_alone else thin_curve_rows(curve[curve["benchmark"].isin(benchmarks)],
                                                    spec.data.max_curve_rows, notes)
    formats = tuple(f for f in CURVE_FORMATS if f in set(curve["format"]))
    fidx = {f: i for i, f in enumerate(formats)}

    log_n, log_d = np.log(law["params"].to_numpy(float)), np.log(law["tokens"].to_numpy(float))
    centre_n, centre_d = float(log_n.mean()), float(log_d.mean())
    loss_scale = law.groupby("benchmark")["loss"].median().reindex(benchmarks).to_numpy(float)
    common = dict(
        benchmarks=benchmarks,
        chance=_chance(benchmarks, data, curve, notes),
        loss_scale=loss_scale,
        centre_log_params=centre_n,
        centre_log_tokens=centre_d,
        log_d0_centred=float(np.log(spec.data.d0_tokens) - centre_d),
        law_benchmark=law["benchmark"].map(bidx).to_numpy(int),
        law_x_params=log_n - centre_n,
        law_x_tokens=log_d - centre_d,
        law_loss=law["loss"].to_numpy(float),
        law_run=law["run_id"].astype(str).tolist(),
        curve_benchmark=curve["benchmark"].map(bidx).to_numpy(int),
        curve_loss=curve["loss"].to_numpy(float),
        curve_score=squeeze_scores(curve["score"].to_numpy(float)),
        curve_format=curve["format"].map(fidx).to_numpy(int),
        formats=formats,
    )
    if not law_alone:
        group, groups, group_format, group_bench = curve_run_groups(curve, benchmarks, formats)
        if groups:
            common.update(curve_group=group, curve_groups=groups,
                          curve_group_format=group_format, curve_group_benchmark=group_bench)
        else:
            notes.append(f"no scoring format has {RUN_EFFECT_MIN_RUNS} or more reference runs: "
                         "no run effects")
    if not data.has_evaluated_models:
        return ModelInputs(**common, notes=tuple(notes))

    curve_formats = set(zip(curve["benchmark"], curve["format"]))
    models, scores = _evaluated(data, spec, benchmarks, notes, curve_formats)
    if models.empty:
        notes.append("no evaluated model can be fitted: the two-step chain is fitted alone")
        return ModelInputs(**common, notes=tuple(notes))
    midx = {m: i for i, m in enumerate(models["model"])}
    kinds = (scores["source_kind"].fillna("").astype(str).replace("", "unknown")
             if "source_kind" in scores else pd.Series("unknown", index=scores.index))
    source_kinds = sorted(kinds.unique())
    n_items = scores["n_items"].to_numpy(float) if "n_items" in scores else None
    release = models["release_date"].to_numpy("datetime64[D]")
    score_bidx = scores["benchmark"].map(bidx).to_numpy(int)
    mc_weight = format_weights(scores, benchmarks, curve_formats)
    code = scores["format"].map(lambda f: fidx.get(f, SCORE_FORMAT_CODES.get(f, -1))).to_numpy(int)
    log_weight = format_log_weights(code, score_bidx, mc_weight, formats)
    best = code == SCORE_FORMAT_CODES["best"]
    pair_label = scores["model"].astype(str) + "|" + scores["benchmark"].astype(str)
    pairs = list(dict.fromkeys(pair_label))
    # Only a model that reads lineages carries them: the stored metric's key hashes every
    # input array, so an unused one would orphan the metrics of models without the term.
    model_lineage = (model_lineages(models)
                     if spec.trend.lineage_profile or spec.trend.lineage_level
                     else pd.Series([], dtype=str))
    lineages = sorted(model_lineage.unique())
    copies = (scores["copies"].to_numpy(int) if "copies" in scores
              else np.ones(len(scores), int))
    sources = (scores["sources"].astype(str).tolist() if "sources" in scores
               else (scores["source"].fillna("").astype(str).tolist() if "source" in scores
                     else [""] * len(scores)))
    return ModelInputs(
        **common,
        models=models["model"].astype(str).tolist(),
        model_log_params=np.log(models["params"].to_numpy(float)),
        model_time=laws.years_since(release, np.datetime64(spec.trend.changepoint_date, "D")),
        model_release=release,
        model_lineage=model_lineage.map({name: i for i, name in enumerate(lineages)})
        .to_numpy(int) if len(lineages) else np.zeros(0, int),
        lineages=lineages,
        score_model=scores["model"].map(midx).to_numpy(int),
        score_benchmark=score_bidx,
        score_source=kinds.map({k: i for i, k in enumerate(source_kinds)}).to_numpy(int),
        score_value=squeeze_scores(scores["score"].to_numpy(float), n_items),
        score_raw=scores["score"].to_numpy(float),
        score_format=code,
        score_best=best,
        score_format_log_weight=log_weight,
        mc_weight=mc_weight,
        source_kinds=source_kinds,
        score_pair=pair_label.map({p: i for i, p in enumerate(pairs)}).to_numpy(int),
        pairs=pairs,
        pair_benchmark=np.array([bidx[p.rsplit("|", 1)[1]] for p in pairs], int),
        score_copies=copies,
        score_sources=sources,
        notes=tuple(notes),
    )
