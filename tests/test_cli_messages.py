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
