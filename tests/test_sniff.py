"""One mistake, one line: a semicolon-separated file or a score column in percent is reported
once with its fix, not once per row."""

import shutil

import pandas as pd
import pytest

from densing_bayes.data.load import load_data
from densing_bayes.data.schema import DataValidationError


@pytest.fixture
def sim_copy(paper_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(paper_folder, folder)
    return folder


def problems(folder) -> list[str]:
    with pytest.raises(DataValidationError) as err:
        load_data(folder)
    return [str(p) for p in err.value.problems]


def test_a_semicolon_file_is_one_problem(sim_copy):
    scores = pd.read_csv(sim_copy / "scores.csv")
    scores.to_csv(sim_copy / "scores.csv", sep=";", index=False)
    found = problems(sim_copy)
    assert len(found) == 1, found
    assert "scores.csv" in found[0] and "semicolon-separated" in found[0]


def test_a_percent_column_is_one_problem(sim_copy):
    scores = pd.read_csv(sim_copy / "scores.csv")
    scores["score"] = (scores["score"] * 100).round(1)
    scores.to_csv(sim_copy / "scores.csv", index=False)
    found = problems(sim_copy)
    assert len(found) == 1, found
    assert "looks like percentages" in found[0] and "divide the whole column by 100" in found[0]


def test_a_few_percentages_are_still_reported_per_row(sim_copy):
    scores = pd.read_csv(sim_copy / "scores.csv")
    scores.loc[:1, "score"] = [57.3, 61.0]
    scores.to_csv(sim_copy / "scores.csv", index=False)
    found = problems(sim_copy)
    assert len(found) == 2 and all("divide percentages by 100" in p for p in found)


def test_a_comma_file_is_not_blamed(paper_folder):
    assert load_data(paper_folder).scores is not None


def test_an_unknown_benchmark_gets_a_spelling_hint(sim_copy):
    scores = pd.read_csv(sim_copy / "scores.csv")
    name = scores.loc[0, "benchmark"]
    scores.loc[0, "benchmark"] = name.upper()
    scores.to_csv(sim_copy / "scores.csv", index=False)
    found = problems(sim_copy)
    assert any(f"'{name.upper()}' is not in" in p and f"did you mean '{name}'" in p
               for p in found), found
