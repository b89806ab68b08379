"""The command line as a user meets it: exit codes, messages, nothing written on failure."""

import json
import subprocess
import sys

import pytest

from densing_bayes.presentation.cli import main


def run_cli(*args):
    """The installed entry point in a subprocess: proves there is no traceback on bad input."""
    return subprocess.run([sys.executable, "-m", "densing_bayes.presentation.cli", *args],
                          capture_output=True, text=True, timeout=300)


def test_data_check_accepts_the_bundled_folders(capsys):
    assert main(["data", "check", "default"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["data", "check", "open_lm"]) == 0


def test_data_check_accepts_a_simulated_folder(paper_folder, capsys):
    assert main(["data", "check", str(paper_folder)]) == 0


def test_data_check_reports_every_problem_without_traceback(tmp_path):
    (tmp_path / "reference_runs.csv").write_text(
        "run_id,benchmark,params,tokens,loss,score\n"
        "r1,mmlu,1e9,2e10,0.9,57.3\n"
        "r2,mmlu,-5,2e10,abc,0.4\n")
    (tmp_path / "models.csv").write_text("model,release_date,params\nm1,2023-02-30,7e9\n")
    result = run_cli("data", "check", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    err = result.stderr
    assert "divide percentages by 100" in err
    assert "reference_runs.csv, line 3, column 'params'" in err
    assert "column 'loss'" in err and "abc" in err
    assert "YYYY-MM-DD" in err
    assert "scores.csv" in err  # models.csv without scores.csv


def test_simulate_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--design", "paper", "--seed", "3", "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 3
    before = (out / "scores.csv").read_bytes()
    assert main(["simulate", "--design", "paper", "--seed", "4", "--out", str(out)]) == 2
    assert (out / "scores.csv").read_bytes() == before
    assert main(["simulate", "--design", "paper", "--seed", "4", "--out", str(out),
                 "--force"]) == 0


def test_fit_on_bad_data_writes_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "reference_runs.csv").write_text("run_id,benchmark\n")
    out = tmp_path / "run"
    result = run_cli("fit", "default", "--data", str(tmp_path / "data"), "--out", str(out))
    assert result.returncode == 2
    assert "nothing was written" in result.stderr
    assert not out.exists()


def test_fit_refuses_an_occupied_folder_before_sampling(paper_folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run_cli("fit", "paper_design", "--data", str(paper_folder), "--out", str(out))
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"


def test_unknown_spec_is_a_clear_error():
    result = run_cli("fit", "nonexistent_spec", "--out", "/tmp/never")
    assert result.returncode == 2
    assert "bundled" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["run", "fit", "predict", "simulate", "data"])
def test_every_subcommand_has_help(command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0


def test_target_accept_reaches_the_spec_and_out_of_range_is_one_line(capsys):
    """Raising NUTS's target acceptance is the first remedy for divergences (the diagnostics'
    advice says so); batch commands take it like the other sampler settings."""
    from densing_bayes.presentation.cli import _spec_with_flags, build_parser

    args = build_parser().parse_args(["sbc", "default", "--simulations", "3",
                                      "--target-accept", "0.97"])
    spec = _spec_with_flags(args)
    from densing_bayes.model.spec import load_spec

    assert spec.sampler.target_accept == 0.97
    assert spec.sampler.draws == load_spec("default").sampler.draws  # the other settings kept
    default = _spec_with_flags(build_parser().parse_args(["sbc", "default", "--simulations", "3"]))
    assert default.sampler.target_accept == load_spec("default").sampler.target_accept
    for bad in ("1.2", "0", "high"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["fit", "default", "--out", "x", "--target-accept", bad])
        assert exc.value.code == 2
        assert "strictly between 0 and 1" in capsys.readouterr().err


def test_set_overrides_any_setting_and_a_flag_wins_over_it(capsys):
    """--set on fit, run and the batch commands (the review's CLI item; only bench had it)."""
    from densing_bayes.presentation.cli import _spec_with_flags, build_parser

    args = build_parser().parse_args(["run", "default", "--set", "trend.latent=centred",
                                      "--set", "sampler.draws=200", "--draws", "300"])
    spec = _spec_with_flags(args)
    assert spec.trend.latent == "centred" and spec.sampler.draws == 300
    assert main(["fit", "default", "--out", "unused", "--set", "trend.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set:") and "no_such_key" in err
