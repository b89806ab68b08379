"""Derive the package's tidy input tables from the unmodified public files in ``shared/datasets``.

Run from the repository root::

    python -m densing_bayes.data.derive --datasets ../shared/datasets --out data

Rules (see data/PROVENANCE.md): every number is copied or computed by a stated rule from a public
file; nothing is imputed or corrected. A missing value stays an empty cell, known problems become
flags or notes, and the only rows left out are those without a loss (a reference row needs one).
Output is deterministic: sorted rows, pandas' default float repr, '\\n' line ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- OLMo ladder
OLMO_SOURCE = "allenai/OLMo-ladder@67a3f44"

#: Non-embedding parameter counts N. 190M-7B: the OLMo PROVENANCE (= OLMo-ladder's MODEL_PARAMS);
#: 3B: MODEL_PARAMS["3.2B"] in allenai/OLMo-ladder src/scaling/utils.py @75e04b0d.
OLMO_PARAMS = {
    "190M": 190354176,
    "370M": 371262464,
    "760M": 758220288,
    "1B": 1279395840,
    "3B": 3169537280,
    "7B": 6887575552,
}

#: Benchmark id -> (OLMo task name, split, accuracy metric). The test split where one exists.
OLMO_TASKS = {
    "hellaswag": ("hellaswag", "val", "len_norm"),
    "arc_challenge": ("arc_challenge", "test", "len_norm"),
    "arc_easy": ("arc_easy", "test", "len_norm"),
    "piqa": ("piqa", "val", "len_norm"),
    "csqa": ("csqa", "val", "len_norm"),
    "siqa": ("socialiqa", "val", "len_norm"),
    "openbookqa": ("openbookqa", "test", "len_norm"),
    "boolq": ("boolq", "val", "acc"),
    "winogrande": ("winogrande", "val", "len_norm"),
}

#: Questions per MMLU test group; MMLU = question-weighted mean of the four groups (sum 14,042).
MMLU_TEST_ITEMS = {"stem": 3018, "humanities": 4705, "social_sciences": 3077, "other": 3242}

LADDER_FILE = re.compile(r"^(?P<size>\d+[MB])-(?P<mult>[\d.]+)xC(?:-rerun)?\.csv$")

#: The OLMo-2 7B files used: the main pre-training run, its annealed final model, and the
#: medium-LR run (peak LR 6e-4, stopped at step 490k, never decayed: curve rows only, no final
#: row). Not used: peteish7_eval_170k-450k.csv (its rows repeat the main file's) and the
#: medlr partial files (their rows are in peteish7_medlr_eval_full.csv).
OLMO_7B_FILES = {"7B": "peteish7_eval_full.csv", "7B-anneal": "peteish7_eval_anneal.csv"}
OLMO_7B_MEDLR_FILE = ("7B-medlr", "peteish7_medlr_eval_full.csv")

#: The last 20% of the main 7B run's steps (and both 7B final models) are held out of every fit:
#: they are the self-consistency check of the bridge (issue 14): a reference-family model whose
#: size is known, scored in MC format, must come back at its own size.
OLMO_7B_HOLDOUT_FROM = 0.8

#: Scoring formats of the reference rows. "rc": the answer text's likelihood (cloze, OLMo's
#: ``rc_5shot``); "mc": options listed in the prompt, the answer letter scored (``mc_5shot``).
#: MC columns: MMLU ``mc_5shot_len_norm`` per group, every other task ``mc_5shot_acc``.
REFERENCE_FORMATS = ("rc", "mc")

REFERENCE_COLUMNS = [
    "run_id", "benchmark", "format", "params", "tokens", "loss", "score", "holdout", "final",
    "step", "size_label", "token_multiplier", "source_file", "source", "run", "tokens_seen",
]


def _bool_text(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, "true", "false")


def _tokens_seen(frame: pd.DataFrame) -> pd.Series:
    """Tokens at each checkpoint: the logged count, else step x batch size (the 7B files lack the
    count; the identity holds exactly in every ladder file that has both)."""
    if "throughput/total_tokens" in frame:
        return frame["throughput/total_tokens"]
    return frame["_step"] * frame["batch_size_in_tokens"]


def _bpb(task: str, split: str) -> str:
    return f"eval/downstream_bpb/{task}_{split}_rc_5shot_bpb"


def _accuracy(task: str, split: str, metric: str, fmt: str = "rc") -> str:
    if fmt == "mc" and not task.startswith("mmlu"):
        metric = "acc"  # OLMo logs MC accuracy as acc (MMLU groups: len_norm)
    return f"eval/downstream/{task}_{split}_{fmt}_5shot_{metric}"


def _mmlu(frame: pd.DataFrame, fmt: str = "rc") -> tuple[np.ndarray, np.ndarray]:
    """Question-weighted mean of the four MMLU test groups, for the bpb and the accuracy.

    Weighting bits-per-byte by questions is an approximation (bpb is per byte of answer).
    The loss is always the RC bpb: the task loss the loss law describes, whatever the format
    of the accuracy beside it.
    """
    weights = np.array(list(MMLU_TEST_ITEMS.values()), dtype=float)
    groups = [f"mmlu_{g}" for g in MMLU_TEST_ITEMS]
    loss = frame[[_bpb(g, "test") for g in groups]].to_numpy(float) @ weights / weights.sum()
    score = frame[[_accuracy(g, "test", "len_norm", fmt) for g in groups]].to_numpy(float)
    return loss, score @ weights / weights.sum()


def _task_table(frame: pd.DataFrame, fmt: str = "rc") -> pd.DataFrame:
    """Long table (row of ``frame``, benchmark, format, loss, score) for the ten ladder
    benchmarks; the loss is the task's RC bpb in both formats."""
    parts = []
    loss, score = _mmlu(frame, fmt)
    parts.append(pd.DataFrame({"row": frame.index, "benchmark": "mmlu", "loss": loss,
                               "score": score}))
    for benchmark, (task, split, metric) in OLMO_TASKS.items():
        parts.append(pd.DataFrame({
            "row": frame.index,
            "benchmark": benchmark,
            "loss": frame[_bpb(task, split)].to_numpy(float),
            "score": frame[_accuracy(task, split, metric, fmt)].to_numpy(float),
        }))
    table = pd.concat(parts, ignore_index=True)
    table["format"] = fmt
    return table


def _ladder_file_rows(path: Path, run: str, size: str, multiplier: float | None,
                      holdout: bool | float, formats: tuple[str, ...] = ("rc",),
                      has_final: bool = True) -> pd.DataFrame:
    """Rows for one file: its last checkpoint is final (params, tokens); the others are
    curve-only (params and tokens empty, the tokens seen kept in ``tokens_seen``).

    ``holdout``: True/False for every row, or a fraction q: the final row and the checkpoints
    after q of the file's last step are held out. ``has_final=False``: a run stopped before its
    schedule ended has no final (loss-law) row.
    """
    frame = pd.read_csv(path, engine="python")  # Python float(): exact in every pandas version
    tokens_seen = _tokens_seen(frame)
    if not np.array_equal(tokens_seen, tokens_seen.round()):
        raise ValueError(f"{path.name}: non-integral token counts")
    step = frame["_step"] if "_step" in frame else pd.Series(pd.NA, index=frame.index)
    final = (frame.index == frame.index[-1]) & has_final
    if isinstance(holdout, bool):
        held = np.full(len(frame), holdout)
    else:
        held = final | (step.to_numpy(float) > holdout * step.max())
    rows = pd.concat([_task_table(frame, fmt) for fmt in formats], ignore_index=True)
    at = rows["row"].to_numpy()
    rows["run"] = f"olmo-{run}"
    rows["step"] = pd.array(step.to_numpy()[at], dtype="Int64")
    rows["run_id"] = [f"olmo-{run}-step{s}" if s is not pd.NA else f"olmo-{run}"
                      for s in rows["step"]]
    rows["final"] = _bool_text(final[at])
    rows["holdout"] = _bool_text(held[at])
    rows["tokens_seen"] = pd.array(tokens_seen.to_numpy()[at].astype(np.int64), dtype="Int64")
    rows["tokens"] = rows["tokens_seen"].where(final[at])
    rows["params"] = pd.Series(OLMO_PARAMS[size], index=rows.index, dtype="Int64").where(final[at])
    rows["size_label"] = size
    rows["token_multiplier"] = multiplier
    rows["source_file"] = f"ladder-runs/{path.name}"
    rows["source"] = OLMO_SOURCE
    return rows


def _drop_missing_loss(rows: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = rows["loss"].isna()
    if missing.any():
        log.warning("%s: %d rows without a loss left out", where, int(missing.sum()))
    return rows[~missing]


def derive_reference_runs(ladder_dir: Path) -> pd.DataFrame:
    """OLMo ladder runs (190M-3B, all multipliers, reruns as separate runs) + the held-out 7B."""
    parts = []
    for path in sorted(ladder_dir.glob("*.csv")):
        match = LADDER_FILE.match(path.name)
        if match:
            run = path.name.removesuffix(".csv")
            parts.append(_ladder_file_rows(path, run, match["size"], float(match["mult"]), False))
    parts.append(_ladder_file_rows(ladder_dir / OLMO_7B_FILES["7B"], "7B", "7B", None,
                                   OLMO_7B_HOLDOUT_FROM, REFERENCE_FORMATS))
    parts.append(_ladder_file_rows(ladder_dir / OLMO_7B_FILES["7B-anneal"], "7B-anneal", "7B",
                                   None, True, REFERENCE_FORMATS))
    run, name = OLMO_7B_MEDLR_FILE
    parts.append(_ladder_file_rows(ladder_dir / name, run, "7B", None, False, REFERENCE_FORMATS,
                                   has_final=False))
    rows = _drop_missing_loss(pd.concat(parts, ignore_index=True), "OLMo ladder")
    rows = rows.sort_values(["run", "step", "benchmark", "format"], na_position="last")
    return rows[REFERENCE_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------- evaluated models
MODEL_COLUMNS = [
    "model", "release_date", "params", "family", "training_tokens", "flags", "paper_role",
    "model_type", "params_note", "source_release", "source_params", "source_tokens", "notes",
]

#: Flags that evaluated-models/PROVENANCE.md states by listing the models.
LISTED_FLAGS = {
    # "Known gaps": dates that are proxies
    "proxy_date": {
        "Gemma-3-1B", "Gemma-3-4B", "Gemma-3-12B", "Gemma-3-27B", "Gemma2-2B",
        "Llama-3.1-Minitron-4B", "Falcon-40B", "Phi-1-1.3B",
    },
    # "Known gaps": token counts that are "up to" or approximate (Llama 3.x, Qwen2.5, Llama 4)
    "approx_tokens": {
        "Llama-3-8B", "Llama-3-70B", "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B",
        "Llama-3.2-1B", "Llama-3.2-3B", "Llama-4-Scout-17B-16E", "Llama-4-Maverick-17B-128E",
        "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-3B", "Qwen2.5-7B", "Qwen2.5-14B",
        "Qwen2.5-32B", "Qwen2.5-72B",
    },
    # "Conflicts": token-count conflicts between sources
    "tokens_conflict": {"Gemma-2B", "OPT-66B", "Llama-3.1-405B"},
    # "Conflicts": parameter counts that differ between sources
    "params_conflict": {"Qwen2-7B", "Mistral-7B"},
}


def _model_flags(row: pd.Series) -> str:
    """Machine-readable tags: read off a documented column, or listed in the PROVENANCE."""
    model_type, params_note = row["model_type"], row["params_note"]
    rules = {
        "no_release_date": row["release_date"] == "",
        "chat_only": "only the chat model is public" in model_type,
        # PROVENANCE "Not base models": aligned, code-finetuned, and MiniCPM-1 (SFT data in decay)
        "not_base": not model_type.startswith("base") or "SFT" in model_type,
        "not_open_weights": "not open" in model_type,
        "distilled": "distilled" in model_type,
        "moe_total_params": "MoE" in params_note,
        "nominal_params": params_note.startswith("nominal"),
        "non_embedding_params": "NON-EMBEDDING" in params_note,
        "assumed_checkpoint": "assumed" in row["notes"],
    }
    rules.update({flag: row["model"] in models for flag, models in LISTED_FLAGS.items()})
    return ";".join(flag for flag, hit in rules.items() if hit)


def derive_models(models_csv: Path) -> pd.DataFrame:
    """All evaluated models, values copied as text (no float round trip), plus flags."""
    models = pd.read_csv(models_csv, dtype=str, keep_default_na=False)
    models["flags"] = models.apply(_model_flags, axis=1)
    models["paper_role"] = models["densing_paper_role"]
    return models[MODEL_COLUMNS].sort_values("model").reset_index(drop=True)


SOURCE_KINDS = {
    "own report/model card": "own",
    "own report via third-party transcription": "own",
    "other developer's report (re-evaluation or citation)": "other",
    "other developer's report via third-party transcription": "other",
    "aggregator transcription (Epoch AI) of": "aggregator",
    "third-party harness run (ObsScaling)": "harness",
    "third-party page (unverified)": "third_party",
}

#: The Densing paper's settings; a row matching them is preferred within its source class.
PAPER_SHOTS = {"mmlu": 5, "bbh": 3, "math": 4, "humaneval": 0, "mbpp": 3}

#: Models without an own report whose Densing-paper values came from the MiniCPM report.
MINICPM_REPORT_MODELS = {
    "TinyLlama-1.1B", "StableLM-Zephyr-3B", "Phi-2-2.7B", "Falcon-40B", "MPT-30B",
}
MINICPM_REPORT = "Hu et al. 2024, MiniCPM"

SOURCE_RANK = {"own": 0, "minicpm_report": 1, "other": 2, "harness": 3, "aggregator": 4,
               "third_party": 5}

SCORE_COLUMNS = [
    "model", "benchmark", "score", "format", "format_rule", "shots", "source", "source_kind",
    "source_url", "provenance", "setting_notes", "cot", "preferred", "score_reported",
    "shots_reported", "source_not_before", "source_line",
]

#: Benchmarks whose reported scores can be cloze (rc) or multiple-choice (mc); other benchmarks
#: (MATH, GSM8K, BBH, HumanEval, MBPP) are generative by definition.
CHOICE_BENCHMARKS = {"mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "siqa",
                     "openbookqa", "boolq", "winogrande"}

#: Words in a row's setting notes that state the scoring format (checked in this order).
MC_WORDS = ("acc_char", "MMLU-style", "choice-based", "choice-likelihood")
BEST_OF_TWO_WORDS = ("higher of PPL-scoring and direct-generation",)
RC_WORDS = ("partial scoring", "cloze")
#: Scoring named without saying whether the prompt lists the options: a perplexity-scored
#: choice task can be cloze or multiple choice (Kimi K2's re-evaluations score 0.94-0.96 on
#: ARC-Challenge at 0 shots, where no cloze score of the ladder comes near).
UNSTATED_OPTION_WORDS = ("perplexity-based",)
HARNESS_WORDS = ("lm-eval", "Open LLM Leaderboard", "HuggingFace H6", "LM Evaluation Harness",
                 "acc_norm", "GPT4All")


def score_format(benchmark: str, notes: str, shots) -> tuple[str, str]:
    """(format, rule) of one reported score, by the first rule that applies (data/PROVENANCE.md).

    Formats: "mc" (options in the prompt, the answer letter scored), "rc" (cloze: the answer
    text's likelihood), "gen" (generated answer: CoT, or a generative benchmark), "best" (the
    higher of two protocols' scores was reported: the model takes the larger of the RC and MC
    curves), "unknown".
    Aggregator rows are classified afterwards (``_inherit_formats``).
    """
    if benchmark not in CHOICE_BENCHMARKS:
        return "gen", "generative benchmark"
    for word in MC_WORDS:  # before CoT: a CoT prompt scored by choice likelihood is MC
        if word in notes:
            return "mc", f"notes say '{word}'"
    if re.search(r"\bCoT\b", notes) and "CoT not stated" not in notes:
        return "gen", "CoT stated"
    for word in BEST_OF_TWO_WORDS:
        if word in notes:
            return "best", "notes: best of two protocols reported"
    for word in RC_WORDS:
        if word in notes:
            return "rc", f"notes say '{word}'"
    if benchmark == "mmlu":
        return "mc", "MMLU's standard protocol (answer letter)"
    for word in HARNESS_WORDS:
        if word in notes:
            return "rc", f"harness default for this task (notes: '{word}')"
    for word in UNSTATED_OPTION_WORDS:
        if word in notes:
            return "unknown", f"notes say '{word}': whether the options were shown is not stated"
    # A row's own shot count decides; notes are read only where it is missing, since a
    # source's notes can describe other benchmarks' settings ("HumanEval/MBPP ... 0-shot").
    zero_shot = (shots == 0) if not pd.isna(shots) else bool(re.search(r"\b0-shot\b", notes))
    if zero_shot:
        return "rc", "0-shot on a choice task (LLaMA-style cloze protocol)"
    return "unknown", "format not stated"


def harness_spread(scores: pd.DataFrame, chance: pd.Series) -> dict:
    """How far reports of the same (model, benchmark, format) from different sources differ,
    on the logit scale of the score above chance: the data behind the residual protocol
    offset's prior scale (the model's ``protocol_offset`` prior).

    Distinct reported values per triple (exact copies count once); every pair of them gives a
    difference; one report's harness shift has SD = SD(difference) / sqrt(2).
    """
    rows = scores[scores["format"].isin(["mc", "rc"])]
    floor = rows["benchmark"].map(chance)
    above = ((rows["score"] - floor) / (1 - floor)).clip(0.005, 0.995)
    rows = rows.assign(z=np.log(above / (1 - above)))
    diffs, triples = [], 0
    for _, group in rows.groupby(["model", "benchmark", "format"]):
        z = group.drop_duplicates("score")["z"].to_numpy()
        if len(z) > 1:
            triples += 1
            i, j = np.triu_indices(len(z), 1)
            diffs.append(z[i] - z[j])
    diffs = np.concatenate(diffs) if diffs else np.zeros(0)
    return {"triples": triples, "differences": int(len(diffs)),
            "sd_difference": float(diffs.std()) if len(diffs) else float("nan"),
            "sd_per_report": float(diffs.std() / np.sqrt(2)) if len(diffs) else float("nan")}


def _inherit_formats(scores: pd.DataFrame) -> pd.DataFrame:
    """A row of unstated format that repeats a classified row's (model, benchmark, score)
    exactly is a transcription of the same evaluation and takes its format: an aggregator's
    row, or another report that names no protocol (a paper's table quoting a model card).
    Other aggregator rows stay unknown (MMLU rows keep MMLU's standard-protocol rule)."""
    classified = ["mc", "rc", "best"]
    known = scores[(scores["source_kind"] != "aggregator") & scores["format"].isin(classified)]
    lookup = (known.groupby(["model", "benchmark", "score"])["format"]
              .agg(lambda f: f.iloc[0] if f.nunique() == 1 else "unknown"))

    def copied(rows: pd.Series) -> pd.Series:
        keys = pd.MultiIndex.from_frame(scores.loc[rows, ["model", "benchmark", "score"]])
        return pd.Series(lookup.reindex(keys).to_numpy(), index=scores.index[rows])

    agg = (scores["source_kind"] == "aggregator") & (scores["benchmark"] != "mmlu")
    inherited = copied(agg)
    hit = inherited.isin(classified)
    scores.loc[agg, "format"] = np.where(hit, inherited, "unknown")
    scores.loc[agg, "format_rule"] = np.where(
        hit, "aggregator copy of a classified row", "aggregator row, format not stated")
    unstated = (scores["source_kind"] != "aggregator") & (scores["format"] == "unknown")
    inherited = copied(unstated)
    hit = inherited[inherited.isin(classified)]
    scores.loc[hit.index, "format"] = hit
    scores.loc[hit.index, "format_rule"] = "copy of a classified row (same model, benchmark, score)"
    gen = agg & ~scores["benchmark"].isin(CHOICE_BENCHMARKS)
    scores.loc[gen, ["format", "format_rule"]] = ["gen", "generative benchmark"]
    return scores


def _source_kind(provenance: str) -> str:
    prefix = provenance.split(":")[0]
    if prefix not in SOURCE_KINDS:
        raise ValueError(f"unmapped provenance value: {provenance!r}")
    return SOURCE_KINDS[prefix]


def _fraction(percent: str) -> float:
    """Percent as printed -> fraction, in decimal arithmetic so 35.1 becomes 0.351 exactly."""
    return float(Decimal(percent) / 100)


def _shots(reported: pd.Series) -> pd.Series:
    """'5' and '5-shot' -> 5; 'few' and empty -> missing (the raw text stays in shots_reported)."""
    number = reported.str.extract(r"^(\d+)(?:-shot)?$", expand=False)
    return pd.to_numeric(number).astype("Int64")


def _cot(notes: str) -> str:
    """'true' if the setting notes say CoT, '' if they say it is not stated or say nothing."""
    if "CoT not stated" in notes:
        return ""
    return "true" if re.search(r"\bCoT\b", notes) else ""


def _source_not_before(scores: pd.DataFrame, models: pd.DataFrame) -> pd.Series:
    """Latest release date among the models a source reports: the source cannot be older.

    Used only to order sources by recency when breaking ties.
    """
    release = scores["model"].map(models.set_index("model")["release_date"]).replace("", pd.NA)
    return release.groupby(scores["source"]).transform("max").fillna("")


def _preference_order(scores: pd.DataFrame) -> pd.DataFrame:
    """Sort keys of the default selection rule, lowest first (see data/PROVENANCE.md)."""
    minicpm = (scores["source"].str.startswith(MINICPM_REPORT)
               & scores["model"].isin(MINICPM_REPORT_MODELS) & (scores["source_kind"] == "other"))
    rank = scores["source_kind"].where(~minicpm, "minicpm_report").map(SOURCE_RANK)
    wanted = scores["benchmark"].map(PAPER_SHOTS).astype("Int64")
    off_setting = (scores["shots"] != wanted).fillna(True) & wanted.notna()
    cot_unstated = (scores["benchmark"] == "bbh") & (scores["cot"] != "true")
    return pd.DataFrame({
        "rank": rank, "off_setting": off_setting, "cot_unstated": cot_unstated,
        "date": scores["source_not_before"], "source": scores["source"],
        "line": scores["source_line"],
    })


def _mark_preferred(scores: pd.DataFrame) -> pd.Series:
    """Exactly one 'true' per (model, benchmark): the first row under the preference order."""
    keys = _preference_order(scores)
    order = keys.sort_values(["rank", "off_setting", "cot_unstated", "date", "source", "line"],
                             ascending=[True, True, True, False, True, True]).index
    first = scores.loc[order].drop_duplicates(["model", "benchmark"]).index
    return pd.Series(_bool_text(scores.index.isin(first)), index=scores.index)


def derive_scores(scores_csv: Path, models: pd.DataFrame) -> pd.DataFrame:
    """Every reported score as a fraction, with its source class, CoT marker and preferred row."""
    raw = pd.read_csv(scores_csv, dtype=str, keep_default_na=False)
    scores = pd.DataFrame({
        "model": raw["model"],
        "benchmark": raw["benchmark"],
        "score": raw["score"].map(_fraction),
        "shots": _shots(raw["shots"]),
        "source": raw["source_title"],
        "source_kind": raw["provenance"].map(_source_kind),
        "source_url": raw["source_url"],
        "provenance": raw["provenance"],
        "setting_notes": raw["setting_notes"],
        "cot": raw["setting_notes"].map(_cot),
        "score_reported": raw["score"],
        "shots_reported": raw["shots"],
        "source_line": raw.index + 2,  # line in the source file; the header is line 1
    })
    scores["source_not_before"] = _source_not_before(scores, models)
    scores["preferred"] = _mark_preferred(scores)
    classified = [score_format(b, n, s) for b, n, s in
                  zip(scores["benchmark"], scores["setting_notes"], scores["shots"])]
    scores["format"] = [f for f, _ in classified]
    scores["format_rule"] = [r for _, r in classified]
    scores = _inherit_formats(scores)
    scores = scores.sort_values(["model", "benchmark", "source_line"])
    return scores[SCORE_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------- benchmarks
#: benchmark -> (chance, format, why that chance). Properties of the benchmark formats.
BENCHMARK_FORMATS = {
    "mmlu": (0.25, "multiple choice, 4 options", "1 of 4 answer letters"),
    "arc_challenge": (0.25, "multiple choice, 4 options", "1 of 4 options (a few have 3 or 5)"),
    "arc_easy": (0.25, "multiple choice, 4 options", "1 of 4 options (a few have 3 or 5)"),
    "hellaswag": (0.25, "multiple choice, 4 endings", "1 of 4 endings"),
    "openbookqa": (0.25, "multiple choice, 4 options", "1 of 4 options"),
    "piqa": (0.5, "2 solutions", "1 of 2 solutions"),
    "winogrande": (0.5, "2 options (fill the blank)", "1 of 2 options"),
    "boolq": (0.5, "yes/no", "1 of 2 answers"),
    "csqa": (0.2, "multiple choice, 5 options", "1 of 5 options"),
    "siqa": (1 / 3, "multiple choice, 3 options", "1 of 3 options"),
    "math": (0.0, "generative, exact answer", "free-form answer: guessing scores 0"),
    "gsm8k": (0.0, "generative, exact answer", "free-form answer: guessing scores 0"),
    "bbh": (0.0, "generative, exact answer", "free-form answers (most tasks): counted as 0"),
    "humaneval": (0.0, "code generation, pass@1", "generated code: guessing scores 0"),
    "mbpp": (0.0, "code generation, pass@1", "generated code: guessing scores 0"),
}

#: Our benchmark id -> task name in open-lm-scaling/eval_metadata.csv, whose '#datapoints' gives
#: n_items. ARC-Challenge is absent on purpose: the file gives it ARC-Easy's 2,376 (test: 1,172).
N_ITEMS_SOURCE = {
    "mmlu": "mmlu", "hellaswag": "hellaswag", "arc_easy": "arc_easy", "piqa": "piqa",
    "winogrande": "winogrande", "boolq": "boolq", "openbookqa": "openbook_qa",
    "csqa": "commonsense_qa", "siqa": "siqa", "gsm8k": "gsm8k",
}

OPEN_LM_SOURCE = "mlfoundations/scaling@79adc26"


def _eval_metadata(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).set_index("Eval Task")


def derive_default_benchmarks(metadata_csv: Path) -> pd.DataFrame:
    """Chance level and, where a shared file states it, the item count of every benchmark."""
    metadata = _eval_metadata(metadata_csv)
    rows = []
    for benchmark, (chance, fmt, why) in BENCHMARK_FORMATS.items():
        task = N_ITEMS_SOURCE.get(benchmark)
        n_items = metadata.loc[task, "#datapoints"] if task else pd.NA
        source = f"chance: {why}"
        if task:
            source += (f"; n_items: {OPEN_LM_SOURCE} exp_data/eval_metadata.csv "
                       f"'#datapoints' of {task}")
        if benchmark in OLMO_TASKS or benchmark == "mmlu":
            source += f"; reference runs: OLMo {_olmo_columns_note(benchmark)}"
        rows.append({"benchmark": benchmark, "chance": chance, "n_items": n_items,
                     "format": fmt, "source": source})
    table = pd.DataFrame(rows)
    table["n_items"] = table["n_items"].astype("Int64")
    return table.sort_values("benchmark").reset_index(drop=True)


def _olmo_columns_note(benchmark: str) -> str:
    if benchmark == "mmlu":
        return ("mmlu_{stem,humanities,social_sciences,other}_test rc_5shot bpb/len_norm, "
                "weighted 3018/4705/3077/3242")
    task, split, metric = OLMO_TASKS[benchmark]
    return f"{task}_{split} rc_5shot bpb/{metric}"


# ----------------------------------------------------------------------------- open_lm
#: open_lm task names that are the same datasets as our ids; the other tasks keep their names.
OPEN_LM_IDS = {"commonsense_qa": "csqa", "openbook_qa": "openbookqa"}
OPEN_LM_VAL_DATA = "training/eval_data/c4_val/shard-{0000000..0000010}.tar"

#: Known problems in eval_metadata.csv, recorded, not corrected.
OPEN_LM_METADATA_NOTES = {
    "siqa": "random baseline 50 as stated, although Social IQa has 3 options (1/3)",
    "commonsense_qa": "random baseline 25 as stated, although CommonsenseQA has 5 options (1/5)",
    "arc_challenge": "#datapoints 2376 as stated; it is ARC-Easy's test size (ARC-Challenge: 1172)",
}

OPEN_LM_RUN_COLUMNS = [
    "run_id", "benchmark", "params", "tokens", "loss", "score", "final", "dataset", "val_data",
    "source", "eval_task", "params_no_embed", "token_multiplier",
]


def _open_lm_run(model_json: Path) -> dict:
    """Hyperparameters and the c4_val loss of one run."""
    model = json.loads(model_json.read_text())
    (c4,) = [r for r in model["results"] if r["val_data"] == [OPEN_LM_VAL_DATA]]
    hyper = model["hyperparameters"]
    return {"run_id": model["name"], "params": hyper["params"], "tokens": hyper["tokens"],
            "params_no_embed": hyper["params_no_embed"],
            "token_multiplier": hyper["chinchilla_multiplier"], "dataset": model["dataset_name"],
            "loss": c4["loss"], "val_data": OPEN_LM_VAL_DATA}


def derive_open_lm_runs(open_lm_dir: Path) -> pd.DataFrame:
    """One row per (run, ICL task): the run's C4 validation loss and its task accuracy."""
    rows = []
    for model_json in sorted((open_lm_dir / "models").glob("*.json")):
        run = _open_lm_run(model_json)
        eval_json = open_lm_dir / "evals" / f"evaluation_{run['run_id']}_heavy.json"
        if not eval_json.exists():
            log.warning("open_lm: %s has no heavy eval; left out", run["run_id"])
            continue
        icl = json.loads(eval_json.read_text())["eval_metrics"]["icl"]
        source = (f"{OPEN_LM_SOURCE} exp_data/models/{model_json.name}; "
                  f"exp_data/evals/{eval_json.name}")
        for task, score in icl.items():
            rows.append({**run, "benchmark": OPEN_LM_IDS.get(task, task), "eval_task": task,
                         "score": score, "final": "true", "source": source})
    table = _drop_missing_loss(pd.DataFrame(rows), "open_lm")
    table = table.sort_values(["run_id", "benchmark"])
    return table[OPEN_LM_RUN_COLUMNS].reset_index(drop=True)


def derive_open_lm_benchmarks(metadata_csv: Path, tasks: set[str]) -> pd.DataFrame:
    """Chance = the file's 'Random baseline' (percent) / 100, for every task present."""
    metadata = _eval_metadata(metadata_csv).loc[sorted(tasks)]
    table = pd.DataFrame({
        "benchmark": [OPEN_LM_IDS.get(t, t) for t in metadata.index],
        "chance": [_fraction(str(v)) for v in metadata["Random baseline"]],
        "n_items": metadata["#datapoints"].astype("Int64").to_numpy(),
        "shots": metadata["#shots"].to_numpy(),
        "task_type": metadata["Task Type"].to_numpy(),
        "eval_task": metadata.index,
        "notes": [OPEN_LM_METADATA_NOTES.get(t, "") for t in metadata.index],
        "source": f"{OPEN_LM_SOURCE} exp_data/eval_metadata.csv",
    })
    return table.sort_values("benchmark").reset_index(drop=True)


# ----------------------------------------------------------------------------- driver
def _write(table: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, lineterminator="\n")
    return path


def derive_all(datasets_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write every derived table under ``out_dir``; return {relative name: path}."""
    datasets_dir, out_dir = Path(datasets_dir), Path(out_dir)
    evaluated = datasets_dir / "evaluated-models"
    metadata = datasets_dir / "open-lm-scaling" / "eval_metadata.csv"
    models = derive_models(evaluated / "models.csv")
    open_lm = derive_open_lm_runs(datasets_dir / "open-lm-scaling")
    ladder = datasets_dir / "olmo-ladder" / "ladder-runs"
    tables = {
        "default/reference_runs.csv": derive_reference_runs(ladder),
        "default/models.csv": models,
        "default/scores.csv": derive_scores(evaluated / "scores.csv", models),
        "default/benchmarks.csv": derive_default_benchmarks(metadata),
        "open_lm/reference_runs.csv": open_lm,
        "open_lm/benchmarks.csv": derive_open_lm_benchmarks(metadata, set(open_lm["eval_task"])),
    }
    written = {}
    for name, table in tables.items():
        written[name] = _write(table, out_dir / name)
        log.info("%s: %d rows", name, len(table))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"),
                        help="folder holding olmo-ladder/, open-lm-scaling/, evaluated-models/")
    parser.add_argument("--out", type=Path, default=Path("data"), help="output data folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    derive_all(args.datasets, args.out)


if __name__ == "__main__":
    main()
