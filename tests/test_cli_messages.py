"""The CLI's answers to common mistakes name the fix (review: report-and-ux-review.md, sec. 4)."""

import pytest

from densing_bayes.presentation.cli import _positive_float, main


def test_a_spec_without_its_data_says_it_needs_data(capsys, tmp_path):
    assert main(["run", "paper_design", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "needs --data" in err and "densing-bayes simulate" in err
    assert not (tmp_path / "never").exists()


def test_a_file_given_as_data_folder_names_its_folder(paper_folder, capsys):
    assert main(["data", "check", str(paper_folder / "scores.csv")]) == 2
    assert f"is a file, not a data folder; pass the folder that holds it: {paper_folder}" in \
        capsys.readouterr().err


def test_simulate_names_the_force_flag(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["simulate", "--seed", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "force=True" not in err


@pytest.mark.parametrize("text, value", [("7e9", 7e9), ("7B", 7e9), ("70M", 7e7),
                                         ("1.5T", 1.5e12), ("2t", 2e12), ("300k", 3e5)])
def test_sizes_accept_suffixes(text, value):
    assert _positive_float(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["7X", "B", "-7B", "0"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(Exception, match="number|positive"):
        _positive_float(text)


def test_data_check_does_not_claim_it_would_have_written(tmp_path, capsys):
    (tmp_path / "reference_runs.csv").write_text("run_id,benchmark,params,tokens,loss\n"
                                                 "r1,mmlu,-5,2e10,0.9\n")
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s) found." in err and "nothing was written" not in err


def test_a_misspelt_bundled_data_name_gets_a_hint(capsys):
    assert main(["data", "check", "defualt"]) == 2
    assert "did you mean 'default'?" in capsys.readouterr().err


def test_a_run_without_a_saved_metric_is_refused_before_sampling(tmp_path, capsys):
    assert main(["fit", "default", "--out", str(tmp_path / "never"),
                 "--metric-from", str(tmp_path / "no_run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "posterior.nc: no such file" in err[0]
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("text, ids", [("0,1,23-25", [0, 1, 23, 24, 25]), ("7", [7]),
                                       (" 3 , 5-5", [3, 5])])
def test_sbc_only_reads_ids_and_ranges(text, ids):
    from densing_bayes.presentation.cli import _id_list

    assert _id_list(text) == ids


@pytest.mark.parametrize("text", ["a", "3-1", "1,,2", "-3", "2-x"])
def test_sbc_only_refuses_what_is_not_ids(text):
    import argparse

    from densing_bayes.presentation.cli import _id_list

    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
        _id_list(text)


def test_sbc_ids_beyond_the_batch_are_one_clear_line(tmp_path, capsys):
    assert main(["sbc", "default", "--design", "bundled", "--simulations", "10", "--only",
                 "3,12", "--out", str(tmp_path / "never")]) == 2
    assert "simulation ids must lie in 0..9" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_the_printed_answer_carries_the_acceleration_and_the_model_checks(tmp_path):
    """`run` printed the doubling time with the sampler's diagnostics only; the model checks
    that bind it (7 failing on the reference run) were in the report alone."""
    import json as _json

    from densing_bayes.presentation import cli as _cli

    summary = {"ci_prob": 0.9,
               "slope_difference_per_year": {"median": 1.0, "lower": 0.25, "upper": 1.83},
               "prob_slope_difference_positive": 0.984,
               "doubling_time_ratio": {"median": 2.7, "lower": 1.23, "upper": None},
               "prob_acceleration": 0.984}
    lines = _cli._acceleration_lines(summary)
    assert lines[0].startswith("acceleration, slope after - before: +1.00 e-folds per year "
                               "(90% CI +0.25 to +1.83); P(> 0) = 0.984")
    assert "2.70 (90% CI 1.23-unbounded); P(> 1) = 0.984" in lines[1]
    records = [{"label": "sampler: divergent transitions", "kind": "sampler", "passed": True},
               {"label": "LOO-PIT inside its band", "kind": "model", "passed": False},
               {"label": "Pareto k", "kind": "model", "passed": False},
               {"label": "SBC", "kind": "calibration", "passed": None}]
    (tmp_path / "summary.json").write_text(_json.dumps({"model_checks": records}))
    line = _cli._checks_line(tmp_path)
    assert line == ("model checks: 2 of 4 fail (LOO-PIT inside its band; Pareto k); read the "
                    "answer with the report's caveats; 1 not computed for this run")
    for r in records:
        r["passed"] = True
    (tmp_path / "summary.json").write_text(_json.dumps({"model_checks": records}))
    assert _cli._checks_line(tmp_path) == "model checks: all 4 computed checks passed"
    assert _cli._checks_line(tmp_path / "missing") is None
