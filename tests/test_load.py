"""Tests of densing_bayes.data.load: one test per class of problem, and what valid folders give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from densing_bayes.data.load import format_problems, load_data
from densing_bayes.data.schema import DataValidationError, Problem

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "default"

REFERENCE_RUNS = """\
run_id,benchmark,params,tokens,loss,score,holdout
r1,mmlu,1e9,2e10,2.1,0.3,false
r2,mmlu,7e9,1.4e11,1.8,0.5,TRUE
c1,mmlu,,,1.5,0.7,
r1,arc,1e9,2e10,2.0,,0
"""
MODELS = """\
model,release_date,params,family,notes
m1,2023-07-18,7e9,llama,first
m2,,1.3e10,mistral,
"""
SCORES = """\
model,benchmark,score,source,shots
m1,mmlu,0.45,paper,5
m2,arc,0.6,,0
m2,mmlu,0.52,leaderboard,
"""
BENCHMARKS = """\
benchmark,chance,n_items
mmlu,0.25,14042
arc,0.25,
"""
VALID = {"reference_runs.csv": REFERENCE_RUNS, "models.csv": MODELS, "scores.csv": SCORES,
         "benchmarks.csv": BENCHMARKS}


@pytest.fixture
def make_folder(tmp_path):
    """Write a data folder: the valid files, some replaced (text or bytes) or left out (None)."""

    def make(**files: str | bytes | None) -> Path:
        folder = tmp_path / "data"
        folder.mkdir()
        contents = {**VALID, **{f"{stem}.csv": text for stem, text in files.items()}}
        for name, content in contents.items():
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
            elif content is not None:
                (folder / name).write_text(content, encoding="utf-8")
        return folder

    return make


def problems_of(folder: Path, match: str) -> list[Problem]:
    with pytest.raises(DataValidationError, match=match) as info:
        load_data(folder)
    return info.value.problems


def only(problems: list[Problem], file: str, row: int | None = None,
         column: str | None = None) -> Problem:
    """The single problem found, checked to be located at (file, row, column)."""
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.file, problem.row, problem.column) == (file, row, column)
    return problem


# ----------------------------------------------------------------------------------------------
# Valid folders


def test_valid_folder_types_columns_and_keeps_extra_columns(make_folder):
    data = load_data(make_folder())
    runs, models, scores = data.reference_runs, data.models, data.scores
    benchmarks = data.benchmarks
    assert list(runs.columns) == ["run_id", "benchmark", "params", "tokens", "loss", "score",
                                  "holdout"]
    for frame, column in [(runs, "params"), (runs, "tokens"), (runs, "loss"), (runs, "score"),
                          (models, "params"), (scores, "score"), (scores, "shots"),
                          (benchmarks, "chance"), (benchmarks, "n_items")]:
        assert frame[column].dtype == np.float64, column
    assert runs["params"].isna().tolist() == [False, False, True, False]
    assert runs["holdout"].dtype == bool
    assert runs["holdout"].tolist() == [False, True, False, False]
    assert models["release_date"].dtype == "datetime64[ns]"
    assert models["release_date"].iloc[0] == pd.Timestamp("2023-07-18")
    assert pd.isna(models["release_date"].iloc[1])
    assert pd.api.types.is_string_dtype(runs["run_id"])
    assert runs["run_id"].tolist() == ["r1", "r2", "c1", "r1"]  # row order kept
    assert models["notes"].tolist() == ["first", ""]  # extra column kept as read
    assert scores["shots"].tolist()[:2] == [5.0, 0.0]  # 0-shot is a valid shot count
    assert data.has_evaluated_models and data.notes == ()


def test_reference_only_folder_is_valid(make_folder):
    data = load_data(make_folder(models=None, scores=None, benchmarks=None))
    assert data.models is None and data.scores is None and data.benchmarks is None
    assert len(data.reference_runs) == 4 and not data.has_evaluated_models


def test_whitespace_byte_order_mark_and_blank_lines_are_tolerated(make_folder):
    text = "\ufeff run_id , benchmark,params,tokens,loss,score\n\n r1 , mmlu ,1e9,2e10, 2.1 ,0.3\n"
    data = load_data(make_folder(reference_runs=text, benchmarks=None))
    runs = data.reference_runs
    assert list(runs.columns) == ["run_id", "benchmark", "params", "tokens", "loss", "score"]
    assert (runs["run_id"].iloc[0], runs["loss"].iloc[0]) == ("r1", 2.1)


def test_validation_does_not_modify_or_create_files(make_folder):
    def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}

    folder = make_folder(scores=SCORES + "m1,mmlu,45,paper,5\n")
    before = snapshot(folder)
    with pytest.raises(DataValidationError):
        load_data(folder)
    assert snapshot(folder) == before
    (folder / "scores.csv").write_text(SCORES)
    before = snapshot(folder)
    load_data(folder)
    assert snapshot(folder) == before


@pytest.mark.skipif(not any(DEFAULT_DATA.glob("*.csv")), reason="data/default is not there yet")
def test_default_data_folder_loads():
    data = load_data(DEFAULT_DATA)
    assert len(data.reference_runs) > 0


# ----------------------------------------------------------------------------------------------
# Folder and files


def test_numeric_columns_parsed_at_once_equal_the_cell_by_cell_parse(monkeypatch):
    """The vectorised path gives the same values, bit for bit, as the per-cell parsers it
    stands in for (which still name every bad cell: the tests below)."""
    import densing_bayes.data.load as load

    fast = load_data(DEFAULT_DATA)
    monkeypatch.setattr(load, "_parse_column_at_once", lambda text, column: None)
    slow = load_data(DEFAULT_DATA)
    for name in ("reference_runs", "models", "scores", "benchmarks"):
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(slow, name),
                                      check_exact=True)


@pytest.mark.parametrize("cells, kind, nullable, parsed", [
    (["1e9", "7E9", ".5", "+3.0"], "positive", False, [1e9, 7e9, 0.5, 3.0]),
    (["0.3", "", "1"], "fraction", True, [0.3, np.nan, 1.0]),
    (["0.3", "", "1"], "fraction", False, None),  # an empty required cell: named per cell
    (["0.3", "1.2"], "fraction", False, None),  # outside [0, 1]
    (["0", "2"], "positive", False, None),  # 0 is not positive
    (["1e999"], "nonnegative", False, None),  # infinity
    (["7 B"], "count", False, None),  # not a number
    (["a", ""], "text", False, None),  # an empty required cell
    (["true", "", "FALSE", "1", "0"], "bool", True, [True, False, False, True, False]),
    (["yes"], "bool", True, None),  # not a true/false word
    (["2023-01-01"], "date", False, None),  # dates stay cell by cell
])
def test_parse_at_once_declines_whatever_the_cell_parsers_would_flag(cells, kind,
                                                                         nullable, parsed):
    from densing_bayes.data.load import _parse_column_at_once
    from densing_bayes.data.schema import Column

    column = Column("x", kind, nullable=nullable)
    out = _parse_column_at_once(pd.Series(cells, dtype=object), column)
    if parsed is None:
        assert out is None
    else:
        np.testing.assert_array_equal(out.to_numpy(), parsed)


def test_folder_that_does_not_exist(tmp_path):
    only(problems_of(tmp_path / "nope", "does not exist"), str(tmp_path / "nope"))


def test_folder_that_is_a_file(tmp_path):
    path = tmp_path / "reference_runs.csv"
    path.write_text(REFERENCE_RUNS)
    only(problems_of(path, "is not a directory"), str(path))


def test_missing_reference_runs(make_folder):
    only(problems_of(make_folder(reference_runs=None), "required file is missing"),
         "reference_runs.csv")


@pytest.mark.parametrize("present, missing", [("models", "scores"), ("scores", "models")])
def test_models_and_scores_come_together(make_folder, present, missing):
    folder = make_folder(**{missing: None})
    problem = only(problems_of(folder, f"{present}.csv is present"), f"{missing}.csv")
    assert "come together" in problem.message


@pytest.mark.parametrize("stem", ["reference_runs", "models", "scores", "benchmarks"])
def test_zero_byte_file(make_folder, stem):
    only(problems_of(make_folder(**{stem: ""}), "file is empty"), f"{stem}.csv")


@pytest.mark.parametrize("stem", ["reference_runs", "models", "scores"])
def test_header_only_file(make_folder, stem):
    header = VALID[f"{stem}.csv"].splitlines()[0] + "\n"
    only(problems_of(make_folder(**{stem: header}), "header line but no data rows"),
         f"{stem}.csv", row=1)


def test_binary_file_with_nul_bytes(make_folder):
    content = b"run_id,benchmark\nr1,mmlu\n\x00\x01\x02"
    problem = only(problems_of(make_folder(reference_runs=content), "not a UTF-8 CSV text file"),
                   "reference_runs.csv", row=3)
    assert "NUL" in problem.message


def test_invalid_utf8_bytes(make_folder):
    content = MODELS.replace("llama", "llam\u00e9").encode("latin-1")
    problem = only(problems_of(make_folder(models=content), "not a UTF-8 CSV text file"),
                   "models.csv", row=2)
    assert "0xe9" in problem.message


def test_ragged_rows_are_all_reported_and_other_rows_still_checked(make_folder):
    text = REFERENCE_RUNS + "r3,mmlu,1e9,2e10,2.0,0.3,false,extra\nr4,mmlu,1e9\nr5,arc,,,-2,0.3,\n"
    problems = problems_of(make_folder(reference_runs=text), "fields but the header has 7")
    assert [(p.file, p.row, p.column) for p in problems] == [("reference_runs.csv", 6, None),
                                                             ("reference_runs.csv", 7, None),
                                                             ("reference_runs.csv", 8, "loss")]
    assert "quote values that contain commas" in problems[0].message


def test_unclosed_quote_is_explained(make_folder):
    text = BENCHMARKS + 'gsm8k,"0,0\nmath,0,5000\n'
    only(problems_of(make_folder(benchmarks=text), "quote .* is not closed"), "benchmarks.csv",
         row=4)


def test_repeated_or_unnamed_header_column(make_folder):
    text = "benchmark,chance,chance,\nmmlu,0.25,0.25,\n"
    problems = problems_of(make_folder(benchmarks=text), "more than once|no column name")
    assert [(p.row, p.column) for p in problems] == [(1, "chance"), (1, None)]


def test_missing_required_column_lists_the_columns_found(make_folder):
    text = REFERENCE_RUNS.replace(",loss,", ",Loss,")
    problem = only(problems_of(make_folder(reference_runs=text), "required column is missing"),
                   "reference_runs.csv", row=1, column="loss")
    assert "run_id, benchmark, params, tokens, Loss, score, holdout" in problem.message


# ----------------------------------------------------------------------------------------------
# Cells


def test_empty_cell_in_required_column(make_folder):
    text = SCORES.replace("m2,arc,0.6", "m2,arc,")
    only(problems_of(make_folder(scores=text), "empty cell; 'score' needs a value"),
         "scores.csv", row=3, column="score")


def test_non_numeric_value_is_shown(make_folder):
    text = MODELS.replace("7e9", "7B")
    only(problems_of(make_folder(models=text), "'7B' is not a number"), "models.csv", row=2,
         column="params")


@pytest.mark.parametrize("stem, old, new, column, row", [
    ("reference_runs", "r2,mmlu,7e9", "r2,mmlu,0", "params", 3),
    ("reference_runs", "1.4e11", "-1.4e11", "tokens", 3),
    ("reference_runs", "2.1", "0.0", "loss", 2),
    ("benchmarks", "14042", "-5", "n_items", 2),
])
def test_zero_or_negative_count(make_folder, stem, old, new, column, row):
    text = VALID[f"{stem}.csv"].replace(old, new, 1)
    only(problems_of(make_folder(**{stem: text}), f"{column} must be greater than 0"),
         f"{stem}.csv", row=row, column=column)


def test_percentage_score_says_divide_by_100(make_folder):
    text = SCORES.replace("0.45", "45")
    only(problems_of(make_folder(scores=text),
                     r"scores are fractions in \[0, 1\]; divide percentages by 100"),
         "scores.csv", row=2, column="score")


def test_score_far_outside_unit_interval(make_folder):
    text = REFERENCE_RUNS.replace("0.3,false", "-0.3,false")
    problem = only(problems_of(make_folder(reference_runs=text), r"outside \[0, 1\]"),
                   "reference_runs.csv", row=2, column="score")
    assert "percentages" not in problem.message


def test_chance_outside_unit_interval(make_folder):
    text = BENCHMARKS.replace("arc,0.25", "arc,1.25")
    only(problems_of(make_folder(benchmarks=text), r"'1.25' is outside \[0, 1\]"),
         "benchmarks.csv", row=3, column="chance")


@pytest.mark.parametrize("bad_date", ["2023-02-30", "23/02/2023", "2023-7-18"])
def test_impossible_or_malformed_date(make_folder, bad_date):
    text = MODELS.replace("2023-07-18", bad_date)
    only(problems_of(make_folder(models=text),
                     "release_date must be an existing date written YYYY-MM-DD"),
         "models.csv", row=2, column="release_date")


def test_boolean_columns_reject_other_words(make_folder):
    text = REFERENCE_RUNS.replace("TRUE", "yes")
    only(problems_of(make_folder(reference_runs=text), "'yes' is not true/false"),
         "reference_runs.csv", row=3, column="holdout")


def test_reference_row_with_only_one_of_params_and_tokens(make_folder):
    text = REFERENCE_RUNS.replace("r2,mmlu,7e9,1.4e11", "r2,mmlu,7e9,")
    only(problems_of(make_folder(reference_runs=text), "params is given but tokens is empty"),
         "reference_runs.csv", row=3, column="tokens")


def test_reference_row_with_neither_params_tokens_nor_score(make_folder):
    text = REFERENCE_RUNS.replace("c1,mmlu,,,1.5,0.7,", "c1,mmlu,,,1.5,,")
    only(problems_of(make_folder(reference_runs=text), "informs nothing"),
         "reference_runs.csv", row=4, column="score")


# ----------------------------------------------------------------------------------------------
# Across files


def test_duplicate_model_names_both_lines(make_folder):
    text = MODELS + "m1,2023-08-01,7e9,llama,\n"
    only(problems_of(make_folder(models=text), "model 'm1' is listed on lines 2 and 4"),
         "models.csv", row=4, column="model")


def test_duplicate_benchmark(make_folder):
    text = BENCHMARKS + "mmlu,0.25,100\n"
    only(problems_of(make_folder(benchmarks=text), "benchmark 'mmlu' is listed on lines 2 and 4"),
         "benchmarks.csv", row=4, column="benchmark")


def test_scores_naming_an_unknown_model(make_folder):
    text = SCORES + "m3,mmlu,0.5,,\nm3,arc,0.5,,\n"
    only(problems_of(make_folder(scores=text), "model 'm3' is not in models.csv"
                                               r" \(on lines 5 and 6\)"),
         "scores.csv", row=5, column="model")


@pytest.mark.parametrize("stem, row", [("reference_runs", 6), ("scores", 5)])
def test_benchmark_missing_from_benchmarks_csv(make_folder, stem, row):
    line = {"reference_runs": "r1,bbh,1e9,2e10,2.0,0.4,\n", "scores": "m1,bbh,0.4,,\n"}[stem]
    only(problems_of(make_folder(**{stem: VALID[f"{stem}.csv"] + line}),
                     "benchmark 'bbh' is not in benchmarks.csv"),
         f"{stem}.csv", row=row, column="benchmark")


def test_scores_without_reference_runs_are_a_note_without_benchmarks_csv(make_folder):
    text = SCORES + "m1,bbh,0.4,,\nm2,math,0.1,,\nm2,bbh,0.5,,\n"
    data = load_data(make_folder(scores=text, benchmarks=None))
    assert data.notes == ("scores.csv: 3 rows on benchmarks without reference runs (bbh, math) "
                          "are kept but cannot enter the model",)
    assert len(data.scores) == 6


def test_listed_benchmark_with_scores_but_no_reference_runs_is_a_note(make_folder):
    data = load_data(make_folder(scores=SCORES + "m1,gsm8k,0.4,,\n",
                                 benchmarks=BENCHMARKS + "gsm8k,0,1319\n"))
    assert data.notes == ("scores.csv: 1 row on benchmarks without reference runs (gsm8k) is "
                          "kept but cannot enter the model",)


# ----------------------------------------------------------------------------------------------
# Reporting


def test_every_problem_in_the_folder_is_reported_at_once(make_folder):
    folder = make_folder(models=MODELS.replace("2023-07-18", "2023-02-30"),
                         scores=SCORES.replace("0.45", "45").replace("0.6", "x"))
    problems = problems_of(folder, "release_date")
    assert sorted((p.file, p.row, p.column) for p in problems) == [
        ("models.csv", 2, "release_date"), ("scores.csv", 2, "score"), ("scores.csv", 3, "score")]


def test_format_problems_one_sorted_line_per_problem():
    err = DataValidationError([Problem("scores.csv", "b", "score", 7), Problem("models.csv", "a"),
                               Problem("scores.csv", "c", "score", 3)])
    assert format_problems(err).splitlines() == [
        "models.csv: a", "scores.csv, line 3, column 'score': c",
        "scores.csv, line 7, column 'score': b"]
