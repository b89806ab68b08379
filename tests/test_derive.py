"""The derived tables in data/: reproducible from the public files, and true to their rules."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from densing_bayes.data.derive import MMLU_TEST_ITEMS, OLMO_PARAMS, OLMO_TASKS, derive_all
from densing_bayes.data.load import load_data

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DATASETS = ROOT.parent / "shared" / "datasets"
LADDER = DATASETS / "olmo-ladder" / "ladder-runs"
LADDER_BENCHMARKS = {"mmlu", *OLMO_TASKS}
TABLES = [
    "default/reference_runs.csv", "default/models.csv", "default/scores.csv",
    "default/benchmarks.csv", "open_lm/reference_runs.csv", "open_lm/benchmarks.csv",
]

needs_datasets = pytest.mark.skipif(
    not DATASETS.is_dir(), reason=f"public source files not found at {DATASETS}")


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return _read("default/reference_runs.csv")


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return _read("default/scores.csv")


@needs_datasets
def test_rederived_tables_are_byte_identical(tmp_path):
    written = derive_all(DATASETS, tmp_path)
    assert sorted(written) == sorted(TABLES)
    for name in TABLES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


# ----------------------------------------------------------------------------- schema
@pytest.mark.parametrize("folder", ["default", "open_lm"])
def test_folders_pass_the_input_validator(folder):
    data = load_data(DATA / folder)
    assert data.has_evaluated_models == (folder == "default")
    assert data.benchmarks is not None


# ----------------------------------------------------------------------------- evaluated models
def test_all_models_and_score_rows_are_kept(scores):
    models = _read("default/models.csv")
    assert len(models) == 90 and models["model"].is_unique
    assert len(scores) == 2125
    assert set(scores["model"]) == set(models["model"])


def test_scores_are_fractions_of_the_reported_percent(scores):
    value = scores["score"].astype(float)
    assert value.between(0, 1).all()
    np.testing.assert_allclose(value * 100, scores["score_reported"].astype(float), rtol=1e-12)


def test_exactly_one_preferred_row_per_model_and_benchmark(scores):
    preferred = scores["preferred"] == "true"
    per_pair = preferred.groupby([scores["model"], scores["benchmark"]]).sum()
    assert (per_pair == 1).all()


def test_preferred_rows_follow_the_source_order(scores):
    """An own report beats any other source whenever the pair has one."""
    has_own = scores.groupby(["model", "benchmark"])["source_kind"].transform(
        lambda kinds: (kinds == "own").any())
    chosen = scores[(scores["preferred"] == "true") & has_own]
    assert (chosen["source_kind"] == "own").all()


def test_flags_mark_the_documented_problems():
    flags = _read("default/models.csv").set_index("model")["flags"].str.split(";")
    assert "chat_only" in flags["MiniCPM-3-4B"]
    assert "no_release_date" in flags["StableLM-Zephyr-3B"]
    assert {"not_base", "non_embedding_params"} <= set(flags["MiniCPM-1-2.4B"])
    assert "moe_total_params" in flags["Mixtral-8x7B"]


# ----------------------------------------------------------------------------- OLMo ladder
def test_ladder_benchmarks_present_everywhere(runs, scores):
    benchmarks = set(_read("default/benchmarks.csv")["benchmark"])
    assert set(runs["benchmark"]) == LADDER_BENCHMARKS
    assert LADDER_BENCHMARKS <= benchmarks
    assert set(scores["benchmark"]) <= benchmarks


def test_holdout_rows_are_the_last_fifth_of_the_7b_run_and_its_anneal(runs):
    held = runs["holdout"] == "true"
    assert (runs.loc[held, "size_label"] == "7B").all()
    main = runs["run"] == "olmo-7B"
    steps = pd.to_numeric(runs.loc[main, "step"])
    assert (held[main] == (steps > 0.8 * steps.max())).all()
    assert held[runs["run"] == "olmo-7B-anneal"].all()
    assert not held[runs["run"] == "olmo-7B-medlr"].any()
    # 37 checkpoints (745k..925k) + the anneal, 10 benchmarks, 2 formats
    assert held.sum() == 38 * 10 * 2


def test_ladder_rows_are_rc_and_the_7b_runs_carry_both_formats(runs):
    assert set(runs.loc[runs["size_label"] != "7B", "format"]) == {"rc"}
    per_run = runs[runs["size_label"] == "7B"].groupby(["run", "format"]).size().unstack()
    assert list(per_run.columns) == ["mc", "rc"]
    assert (per_run["mc"] == per_run["rc"]).all()
    # the loss is the RC task loss in both formats' rows
    pair = runs[runs["size_label"] == "7B"].pivot_table(
        index=["run_id", "benchmark"], columns="format", values="loss", aggfunc="first")
    assert (pair["mc"] == pair["rc"]).all()


def test_final_rows_carry_params_and_tokens_and_the_others_none(runs):
    final = runs["final"] == "true"
    assert ((runs["params"] != "") & (runs["tokens"] != ""))[final].all()
    assert ((runs["params"] == "") & (runs["tokens"] == ""))[~final].all()
    per_run = runs[final].groupby(["run", "format"])["benchmark"].agg(["size", "nunique"])
    assert (per_run["size"] == len(LADDER_BENCHMARKS)).all()
    assert (per_run["nunique"] == len(LADDER_BENCHMARKS)).all()
    # the medium-LR run stopped before its schedule ended: no loss-law row
    assert not final[runs["run"] == "olmo-7B-medlr"].any()


def test_params_are_the_sourced_counts(runs):
    final = runs[runs["final"] == "true"]
    expected = final["size_label"].map(lambda size: str(OLMO_PARAMS[size]))
    assert (final["params"] == expected).all()


@needs_datasets
def test_mmlu_is_the_question_weighted_mean_of_the_test_groups(runs):
    with open(LADDER / "190M-1xC.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    total = sum(MMLU_TEST_ITEMS.values())
    assert total == 14042

    def weighted(kind: str, suffix: str) -> float:
        return sum(n * float(last[f"eval/{kind}/mmlu_{group}_test_rc_5shot_{suffix}"])
                   for group, n in MMLU_TEST_ITEMS.items()) / total

    row = runs[(runs["run_id"] == f"olmo-190M-1xC-step{last['_step']}")
               & (runs["benchmark"] == "mmlu")].squeeze()
    assert float(row["loss"]) == pytest.approx(weighted("downstream_bpb", "bpb"), rel=1e-12)
    assert float(row["score"]) == pytest.approx(weighted("downstream", "len_norm"), rel=1e-12)
    assert int(row["tokens"]) == int(float(last["throughput/total_tokens"]))


@needs_datasets
def test_ladder_flops_per_token_match_the_sizes_whose_params_are_used():
    """The files' FLOPs per token equal OLMo-ladder's MODEL_FLOPS for the size label, which
    confirms that e.g. the 3B files are the model whose N is MODEL_PARAMS['3.2B']."""
    model_flops = {"190M": 1903391232, "370M": 3443922944, "760M": 6373843968,
                   "1B": 10109071360, "3B": 22970355200}
    for path in sorted(LADDER.glob("[0-9]*xC*.csv")):
        last = pd.read_csv(path).iloc[-1]
        per_token = last["throughput/total_training_Gflops"] * 1e9 / last["throughput/total_tokens"]
        assert per_token == pytest.approx(model_flops[path.name.split("-")[0]], rel=1e-9)


# ----------------------------------------------------------------------------- open_lm
def test_open_lm_runs_use_one_c4_loss_per_run_and_known_benchmarks():
    runs = _read("open_lm/reference_runs.csv")
    assert runs["run_id"].nunique() == 104
    assert (runs.groupby("run_id")["loss"].nunique() == 1).all()
    assert runs["val_data"].str.contains("/c4_val/").all()
    assert set(runs["benchmark"]) == set(_read("open_lm/benchmarks.csv")["benchmark"])
