"""The 'distinct' score rows: exact copies of one reported number enter once (issue 18)."""

from __future__ import annotations

import pandas as pd
import pytest

from densing_bayes.model.inputs import collapse_copies


def _rows(*rows):
    return pd.DataFrame(rows, columns=["model", "benchmark", "score", "format", "source"])


def test_exact_copies_collapse_to_one_row_that_lists_its_sources():
    scores = _rows(("m", "b", 0.5, "mc", "paper"), ("m", "b", 0.5, "unknown", "aggregator"),
                   ("m", "b", 0.6, "unknown", "leaderboard"))
    notes: list[str] = []
    out = collapse_copies(scores, notes)
    assert len(out) == 2
    first = out.iloc[0]
    assert first["format"] == "mc"  # the unknown copy is a transcription of the stated report
    assert first["copies"] == 2 and first["sources"] == "paper | aggregator"
    assert out.iloc[1]["copies"] == 1 and out.iloc[1]["format"] == "unknown"
    assert "3 rows are 2 distinct reported values" in notes[0]


def test_two_stated_formats_with_one_value_stay_two_measurements():
    scores = _rows(("m", "b", 0.5, "mc", "s1"), ("m", "b", 0.5, "rc", "s2"),
                   ("m", "b", 0.5, "unknown", "s3"))
    out = collapse_copies(scores, [])
    assert sorted(out["format"]) == ["mc", "rc"]
    assert list(out["copies"]) == [2, 2]  # the unknown copy could be either


def test_same_value_on_other_models_or_benchmarks_is_not_a_copy():
    scores = _rows(("m", "b", 0.5, "rc", "s"), ("m2", "b", 0.5, "rc", "s"),
                   ("m", "b2", 0.5, "rc", "s"))
    assert len(collapse_copies(scores, [])) == 3


def test_pair_mean_is_one_measurement_per_model_benchmark_and_format():
    from densing_bayes.model.inputs import pair_means

    scores = _rows(("m", "b", 0.5, "mc", "paper"), ("m", "b", 0.5, "unknown", "aggregator"),
                   ("m", "b", 0.6, "mc", "leaderboard"), ("m", "b", 0.3, "rc", "harness"),
                   ("m2", "b", 0.4, "unknown", "x"))
    scores["source_kind"] = ["own", "aggregator", "harness", "harness", "own"]
    notes: list[str] = []
    out = pair_means(collapse_copies(scores, notes), notes)
    mc = out[(out["model"] == "m") & (out["format"] == "mc")].iloc[0]
    assert mc["score"] == pytest.approx(0.55)  # mean of the distinct values 0.5 and 0.6
    assert mc["reports"] == 2 and mc["copies"] == 3
    assert mc["sources"] == "paper | aggregator | leaderboard"
    assert mc["source_kind"] == "mixed"
    rc = out[(out["model"] == "m") & (out["format"] == "rc")].iloc[0]
    assert rc["score"] == 0.3 and rc["reports"] == 1 and rc["source_kind"] == "harness"
    assert len(out) == 3
    assert "4 distinct reported values are 3" in notes[-1]
