"""The answer in Markdown (RUN/answer.md and the README's generated block): it states every
check, failures first, never says "pass" above a failed check, and the README's block is the
committed reference run's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densing_bayes.presentation import answer
from densing_bayes.presentation.report import prob_text

ROOT = Path(__file__).resolve().parents[1]


def _record(name, passed, kind="model", caveat=""):
    return {"name": name, "label": f"check {name}", "kind": kind, "value": 1, "nominal": 0,
            "passed": passed, "detail": f"detail of {name}", "caveat": caveat}


def _summary(records, **extra):
    interval = {"median": 159.4, "lower": 128.0, "upper": 203.7}
    return {"spec": "default", "seed": 7, "ci_prob": 0.9, "interval": "equal-tailed",
            "sampler": {"chains": 4, "draws": 3000}, "benchmarks": ["mmlu", "piqa"],
            "trend": {"kind": "frontier", "changepoint_date": "2022-11-30"},
            "doubling_time_days": interval,
            "doubling_time_days_pre": {"median": 425.0, "lower": 214.0, "upper": None},
            "doubling_time_days_by_benchmark": {
                "mmlu": {"median": 112.0, "lower": 95.0, "upper": 133.0},
                "piqa": {"median": 168.0, "lower": 115.0, "upper": 283.0}},
            "slope_difference_per_year": {"median": 1.0, "lower": 0.24, "upper": 1.82},
            "prob_slope_difference_positive": 0.985, "prob_growth": 0.9999,
            "model_checks": records, **extra}


def _groups(text: str) -> dict[str, str]:
    """Each "**Title (n):**" group's items."""
    out, title = {}, None
    for line in text.splitlines():
        if line.startswith("**") and line.endswith(":**") and "(" in line:
            title = line.strip("*:").rsplit(" (", 1)[0]
            out[title] = ""
        elif title and line.startswith("- "):
            out[title] += line + "\n"
    return out


def test_a_failed_check_is_listed_as_failing_with_its_caveat_and_never_as_passing():
    records = [_record("good", True), _record("bad", False, caveat="the bad caveat"),
               _record("later", None)]
    text = answer.answer_markdown(_summary(records), run_label="runs/x")
    assert "**1 of 2 computed checks fail**" in text
    assert "1 more are not computed" in text
    groups = _groups(text)
    assert "check bad" in groups["Fail"] and "check bad" not in groups["Pass"]
    assert "check good" in groups["Pass"] and "check later" in groups["Not computed for this run"]
    assert list(groups) == ["Fail", "Not computed for this run", "Pass"]  # failures first
    caveats = text[text.index("**Caveats that bind**"):text.index("**Fail")]
    assert "- the bad caveat" in caveats


def test_all_checks_passing_says_so_and_lists_no_failure_group():
    text = answer.answer_markdown(_summary([_record("a", True), _record("b", True)]),
                                  run_label="r")
    assert "**All 2 computed checks pass**" in text
    assert "Fail" not in _groups(text) and "Caveats that bind" not in text


def test_a_run_without_checks_does_not_claim_that_they_pass():
    text = answer.answer_markdown(_summary([]), run_label="r")
    assert "**No check was computed for this run**" in text and "pass" not in text.lower()


def test_a_sampler_failure_leads_the_answer():
    records = [_record("sampler:max_rhat", False, kind="sampler"), _record("a", True)]
    text = answer.answer_markdown(_summary(records), run_label="r")
    assert "**The sampler did not converge**" in text.split("\n\n")[1]


def test_the_lead_sentence_carries_every_interval_it_quotes():
    lead = answer.lead_sentence(_summary([]))
    assert "159 days (90% interval 128-204) after 2022-11-30" in lead
    assert "from mmlu 112 days to piqa 168" in lead
    assert "+1.00 e-folds per year (90% interval +0.24 to +1.82), P(> 0) = 0.985" in lead
    assert answer.lead_sentence({"model_checks": []}) is None


def test_probabilities_beyond_three_decimals_are_not_printed_as_certainties():
    assert prob_text(0.9996) == "> 0.999"
    assert prob_text(0.0004) == "< 0.001"
    assert prob_text(0.985) == "= 0.985"
    assert "P(density grows after the changepoint) | > 0.999" in answer.answer_markdown(
        _summary([]), run_label="r")


def test_the_block_is_replaced_between_one_marker_pair_only():
    block = answer.readme_block(_summary([]), "r")
    text = f"intro\n{answer.BEGIN_MARK}\nOLD BLOCK\n{answer.END_MARK}\nrest\n"
    new = answer.replace_block(text, block)
    assert new.startswith("intro\n") and new.endswith("\nrest\n") and "OLD BLOCK" not in new
    assert answer.replace_block(new, block) == new
    with pytest.raises(ValueError, match="no single"):
        answer.replace_block("no markers", block)
    with pytest.raises(ValueError, match="no single"):
        answer.replace_block(text + text, block)


def test_check_mode_exits_1_until_the_block_is_updated(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(_summary([_record("a", False)])))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{answer.BEGIN_MARK}\n{answer.END_MARK}\n")
    assert answer.main([str(run), "--readme", str(readme), "--check"]) == 1
    assert answer.main([str(run), "--readme", str(readme)]) == 0
    assert answer.main([str(run), "--readme", str(readme), "--check"]) == 0
    assert "check a" in readme.read_text()
    assert answer.main([str(tmp_path / "none"), "--readme", str(readme)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert answer.main([str(run)]) == 0 and (run / answer.ANSWER_FILE).is_file()


def test_the_readme_block_is_the_committed_reference_runs_answer():
    """Fails when the reference run is refitted (or its checks re-run) and the README is not
    regenerated: ``python -m densing_bayes.presentation.answer reports/default --readme
    README.md``."""
    summary = json.loads((ROOT / "reports" / "default" / "summary.json").read_text())
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert answer.replace_block(text, answer.readme_block(summary, "reports/default")) == text
