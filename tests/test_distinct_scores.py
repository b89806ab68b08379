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


def _reported(*rows):
    """Rows with the score as its source printed it (``score_reported``)."""
    frame = pd.DataFrame(rows, columns=["model", "benchmark", "score_reported", "format",
                                        "source"])
    value = frame["score_reported"].astype(float)
    frame["score"] = value / 100.0 if (value > 1).all() else value
    return frame


def test_a_transcription_at_lower_precision_collapses_into_the_stated_report():
    from densing_bayes.model.inputs import match_rounded_copies

    scores = _reported(("m", "b", "87.89", "rc", "harness"), ("m", "b", "87.9", "unknown", "agg"),
                       ("m", "b", "89", "unknown", "paper"))
    notes: list[str] = []
    out = collapse_copies(match_rounded_copies(scores, notes), notes)
    assert len(out) == 2  # 87.9 transcribes 87.89; 89 is another report
    rc = out[out["format"] == "rc"].iloc[0]
    assert rc["score"] == pytest.approx(0.8789) and rc["copies"] == 2
    assert rc["sources"] == "harness | agg"
    assert "1 unstated-format reports transcribe" in notes[0]


@pytest.mark.parametrize(("stated", "unstated", "copy"), [
    ("61.95", "61.9", True),   # exactly half a unit: either rounding direction is a copy
    ("61.95", "62.0", True),
    ("87.89", "87.8", False),  # 0.09 apart: two reports
    ("87.8", "87.9", False),   # same precision: two reports that differ
    ("0.8789", "87.9", True),  # a fraction transcribed as a percentage
    ("88.89", "89", True),
    ("0.88", "88.4", False),   # the stated report printed more coarsely: not its source
])
def test_the_rounding_rule(stated, unstated, copy):
    from densing_bayes.model.inputs import match_rounded_copies

    scores = pd.DataFrame({"model": "m", "benchmark": "b", "format": ["rc", "unknown"],
                           "source": ["s1", "s2"], "score_reported": [stated, unstated]})
    scores["score"] = [float(stated) / (100.0 if float(stated) > 1 else 1.0),
                       float(unstated) / (100.0 if float(unstated) > 1 else 1.0)]
    out = match_rounded_copies(scores, [])
    assert bool(out["score"].iloc[1] == scores["score"].iloc[0]) is copy
    assert out["score"].iloc[0] == scores["score"].iloc[0]  # the stated report is untouched


def test_a_report_that_matches_two_stated_values_is_left_alone():
    from densing_bayes.model.inputs import match_rounded_copies

    scores = _reported(("m", "b", "87.86", "rc", "s1"), ("m", "b", "87.94", "mc", "s2"),
                       ("m", "b", "87.9", "unknown", "s3"))
    out = match_rounded_copies(scores, [])
    assert out["score"].iloc[2] == pytest.approx(0.879)


def test_without_the_reported_text_only_exact_copies_collapse():
    from densing_bayes.model.inputs import match_rounded_copies

    scores = _rows(("m", "b", 0.8789, "rc", "s1"), ("m", "b", 0.879, "unknown", "s2"))
    out = match_rounded_copies(scores, [])
    assert out.equals(scores)


def test_the_option_reaches_the_model_inputs_of_the_bundled_data():
    from densing_bayes.api import load_data
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec

    data = load_data("default")
    spec = load_spec("default")
    plain = prepare_inputs(data, spec)
    rounded = prepare_inputs(data, spec.with_overrides({"data": {"rounded_copies": True}}))
    assert len(rounded.score_value) < len(plain.score_value)
    assert any("transcribe a stated report" in n for n in rounded.notes)
    assert not any("transcribe a stated report" in n for n in plain.notes)
