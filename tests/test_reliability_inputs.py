"""Reliability of what users feed in (docs/reliability.md): data folders, specs and the files
the CLI writes. Every problem is one line with exit 2, never a traceback, never a hang; every
case here was a defect of the reliability review (D2, D6, D7, D9, D11, D12) and fails on 277aa2f.
The fuzz test derives malformed variants of a valid simulated folder."""

import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from densing_bayes.data.load import load_data
from densing_bayes.model.spec import SpecError, parse_spec
from densing_bayes.presentation import cli

REFERENCE_RUNS = """\
run_id,benchmark,params,tokens,loss,score
r1,mmlu,1e9,2e10,2.1,0.3
r2,mmlu,7e9,1.4e11,1.8,0.5
c1,mmlu,,,1.5,0.7
"""
MODELS = """\
model,release_date,params
m1,2023-07-18,7e9
m2,2024-01-02,1.3e10
"""
SCORES = """\
model,benchmark,score
m1,mmlu,0.45
m2,mmlu,0.52
"""


def _folder(tmp_path, reference=REFERENCE_RUNS, models=MODELS, scores=SCORES) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, text in (("reference_runs", reference), ("models", models), ("scores", scores)):
        (folder / f"{name}.csv").write_text(text)
    return folder


def _check(folder, capsys) -> tuple[int, str, str]:
    code = cli.main(["data", "check", str(folder)])
    out, err = capsys.readouterr()
    return code, out, err


# ============================================================== D6: values the fit cannot take
@pytest.mark.parametrize("file,old,new,column", [
    ("reference", "r1,mmlu,1e9", "r1,mmlu,1e400", "params"),
    ("reference", "2.1,0.3", "1e400,0.3", "loss"),
    ("models", "2023-07-18,7e9", "2023-07-18,1e400", "params"),
])
def test_infinity_is_refused_with_file_line_and_column(tmp_path, capsys, file, old, new, column):
    texts = {"reference": REFERENCE_RUNS, "models": MODELS}
    texts[file] = texts[file].replace(old, new)
    code, _, err = _check(_folder(tmp_path, texts["reference"], texts["models"]), capsys)
    assert code == 2 and f"line 2, column '{column}'" in err and "infinity" in err


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1600-01-01", "2262-04-12"])
def test_a_date_pandas_cannot_hold_is_refused_not_a_crash(tmp_path, capsys, day):
    code, _, err = _check(_folder(tmp_path, models=MODELS.replace("2023-07-18", day)), capsys)
    assert code == 2
    assert f"models.csv, line 2, column 'release_date': '{day}' is outside" in err


@pytest.mark.parametrize("change,note", [
    (("models", "2023-07-18,7e9", "2023-07-18,7"), "params below 1e+06 on line 2"),
    (("reference", "r1,mmlu,1e9", "r1,mmlu,7"), "reference_runs.csv: params below"),
    (("models", "2023-07-18", "1990-01-01"), "release_date before 2015-01-01 on line 2"),
    (("models", "2023-07-18", "2031-01-01"), "release_date more than a year ahead"),
    (("reference", "c1,mmlu,,,1.5,0.7\n", "c1,mmlu,,,1.5,0.7\nc1,mmlu,,,1.5,0.7\n"),
     "repeat an earlier row"),
])
def test_implausible_values_pass_with_a_named_note(tmp_path, capsys, change, note):
    texts = {"reference": REFERENCE_RUNS, "models": MODELS}
    file, old, new = change
    texts[file] = texts[file].replace(old, new)
    code, out, _ = _check(_folder(tmp_path, texts["reference"], texts["models"]), capsys)
    assert code == 0 and note in out, out


def test_a_clean_folder_has_no_plausibility_note(tmp_path):
    assert load_data(_folder(tmp_path)).notes == ()


# ============================================================== D11: files that are not files
def test_a_pipe_and_a_device_are_refused_without_hanging(tmp_path):
    folder = _folder(tmp_path)
    (folder / "models.csv").unlink()
    os.mkfifo(folder / "models.csv")
    (folder / "scores.csv").unlink()
    (folder / "scores.csv").symlink_to("/dev/zero")
    result = subprocess.run([sys.executable, "-m", "densing_bayes.presentation.cli", "data",
                             "check", str(folder)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[2])})
    assert result.returncode == 2, result.stderr
    assert "models.csv: is not a regular file" in result.stderr
    assert "scores.csv: is not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


# ============================================================== D7: prior overrides and roles
BETA = {"dist": "Beta", "kwargs": {"alpha": 2.0, "beta": 2.0}}


@pytest.mark.parametrize("name,override,match", [
    ("loss_noise", {"dist": "Gamma", "kwargs": {"alpha": 2.0, "beta": 40.0}, "dims": ["model"]},
     r"needs dims = \['benchmark'\]"),
    ("loss_noise", {"dist": "Gamma", "kwargs": {"alpha": 2.0, "beta": 40.0}},
     r"needs dims = \['benchmark'\]"),
    ("sigmoid_ceiling", BETA, r"needs dims = \['benchmark'\]"),
    ("slope_post", {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 1.0}, "dims": ["benchmark"]},
     "no dims"),
    ("loss_noise", {**BETA, "dims": ["galaxy"]}, "do not match its role"),
    ("slope_post", {"dist": "CustomDist", "kwargs": {}}, "CustomDist"),
    ("slope_post", {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": -1.0}}, "sigma > 0"),
    ("sigmoid_ceiling", {"dist": "Beta", "kwargs": {"alpha": 0.0, "beta": 2.0},
                         "dims": ["benchmark"]}, "alpha > 0"),
])
def test_a_prior_override_must_fit_its_role(name, override, match):
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "s", "priors": {name: override}})


def test_a_prior_override_with_the_dims_of_its_role_is_accepted():
    spec = parse_spec({"name": "s", "priors": {"sigmoid_ceiling": {**BETA,
                                                                   "dims": ["benchmark"]}}})
    assert spec.prior("sigmoid_ceiling").dims == ("benchmark",)


def test_a_variant_with_a_wrong_prior_is_refused_when_the_spec_loads():
    # variants are validated with the spec itself, before anything is built or sampled
    with pytest.raises(SpecError, match="dims"):
        parse_spec({"name": "s", "variants": {"shared": {"priors": {"sigmoid_ceiling": BETA}}}})


# ============================================================== D2: through the CLI
def test_run_with_a_spec_named_outside_reports_exits_2_and_writes_nothing(tmp_path, capsys,
                                                                          monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "evil.toml").write_text('name = "../../escaped_run"\n')
    assert cli.main(["run", "evil.toml", "--draws", "30", "--tune", "30"]) == 2
    assert "folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.toml", "work"]


# ============================================================== D9: through the CLI
def test_sensitivity_with_an_unreachable_scheduler_exits_2_and_keeps_records(
        tmp_path, capsys, monkeypatch, paper_folder):
    from densing_bayes.inference import batch

    out = tmp_path / "sens"
    (out / batch.TASKS_DIR).mkdir(parents=True)
    (out / batch.MANIFEST_FILE).write_text('{"job": "sensitivity"}')
    (out / batch.TASKS_DIR / "baseline.json").write_text('{"task_id": "baseline"}')
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 1.0)
    code = cli.main(["sensitivity", "paper_design", "--data", str(paper_folder), "--out",
                     str(out), "--force", "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err and "Traceback" not in err
    assert (out / batch.TASKS_DIR / "baseline.json").is_file()


# ============================================================== D12: whole files or old files
def test_data_derive_leaves_the_old_tables_when_it_fails(tmp_path, monkeypatch):
    from densing_bayes.data import derive

    out = tmp_path / "data"
    (out / "default").mkdir(parents=True)
    (out / "default" / "models.csv").write_text("model\nold\n")

    def half_then_fail(datasets, out_dir):
        target = Path(out_dir) / "default" / "models.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("model\nnew, but the next table fails\n")
        raise RuntimeError("datasets changed under us")

    monkeypatch.setattr(derive, "derive_all", half_then_fail)
    with pytest.raises(RuntimeError):
        cli.main(["data", "derive", "--datasets", str(tmp_path), "--out", str(out)])
    assert (out / "default" / "models.csv").read_text() == "model\nold\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging left


def test_bench_out_is_never_rewritten_in_place(tmp_path, monkeypatch, capsys):
    from densing_bayes.inference import bench

    out = tmp_path / "bench.json"
    in_place = []
    real_write_text = Path.write_text

    def watch_write_text(self, *args, **kwargs):
        if Path(self) == out:
            in_place.append("write_text")
        return real_write_text(self, *args, **kwargs)

    def fake_run_bench(cases, samplers, on_update, **kwargs):
        report = {"cases": [], "step": 1}
        on_update(report)
        on_update({**report, "step": 2})
        return {**report, "step": 3}

    monkeypatch.setattr(Path, "write_text", watch_write_text)
    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(bench, "format_table", lambda report: "table")
    assert cli.main(["bench", "--quick", "--samplers", "pymc", "--out", str(out)]) == 0
    assert in_place == [] and json.loads(out.read_text())["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


# ============================================================== fuzz: data check never crashes
BAD_CELLS = ["", " ", "1e400", "-1e400", "-1", "0", "nan", "inf", "NaN", "7B", "53%", "1,5",
             "9999-12-31", "0001-01-01", "1600-01-01", "2023-02-30", "30/11/2023", "1e-400",
             "TRUE", "maybe", "\u0667e9", "x" * 5000, "<b>bbh</b>", "../../x", "mmlu/stem",
             "'; DROP TABLE", "\"", "2023-07-18T00:00", "0x10", "1_000"]


def _rows(path: Path) -> list[list[str]] | None:
    """The rows of a file another mutation left as parseable CSV with data, else None."""
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if len(rows) < 2 or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        return None
    return rows


def _write_rows(path: Path, rows) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _mutate(folder: Path, rng: random.Random, kind: str) -> str:
    """Break ``folder`` in one way; return a description for the failure message."""
    files = sorted(p for p in folder.glob("*.csv") if p.is_file())
    if not files:
        return "no file left"
    path = rng.choice(files)
    if kind in ("date", "cell", "drop_column", "rename_header", "ragged") and \
            _rows(folder / "models.csv" if kind == "date" else path) is None:
        kind = "bytes"  # an earlier mutation broke the file's CSV: break its bytes instead
    if kind == "date":  # the column whose conversion used to crash data check itself
        path = folder / "models.csv"
        rows = _rows(path)
        if "release_date" not in rows[0] or len(rows) < 2:
            return "models.csv without release dates"
        column = rows[0].index("release_date")
        r = rng.randrange(1, len(rows))
        rows[r][column] = rng.choice(["9999-12-31", "0001-01-01", "1600-01-01", "2262-04-12",
                                      "1677-09-21", "1990-01-01", "2031-01-01"])
        _write_rows(path, rows)
        return f"models.csv line {r + 1} release_date = {rows[r][column]}"
    if kind == "cell":
        rows = _rows(path)
        r, c = rng.randrange(1, len(rows)), rng.randrange(len(rows[0]))
        rows[r][c] = rng.choice(BAD_CELLS)
        _write_rows(path, rows)
        return f"{path.name} line {r + 1} column {rows[0][c]} = {rows[r][c][:20]!r}"
    if kind == "drop_column":
        rows = _rows(path)
        c = rng.randrange(len(rows[0]))
        _write_rows(path, [row[:c] + row[c + 1:] for row in rows])
        return f"{path.name} without column {c}"
    if kind == "rename_header":
        rows = _rows(path)
        rows[0][rng.randrange(len(rows[0]))] = rng.choice(["", rows[0][0], "MODEL", "x y"])
        _write_rows(path, rows)
        return f"{path.name} header {rows[0]}"
    if kind == "ragged":
        rows = _rows(path)
        r = rng.randrange(1, len(rows))
        rows[r] = rows[r][:-1] if rng.random() < 0.5 else rows[r] + ["extra"]
        _write_rows(path, rows)
        return f"{path.name} ragged line {r + 1}"
    data = path.read_bytes() or b"\n"
    if kind == "truncate":
        path.write_bytes(data[:rng.randrange(len(data))])
    elif kind == "bytes":
        at = rng.randrange(len(data))
        path.write_bytes(data[:at] + rng.choice([b"\x00", b"\xff\xfe", b"\"", b"\r", b"\n\n,"])
                         + data[at:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "delete":
        path.unlink()
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "duplicate_row":
        lines = data.split(b"\n")
        at = rng.randrange(1, len(lines))
        path.write_bytes(b"\n".join(lines[:at + 1] + lines[at:at + 1] + lines[at + 1:]))
    return f"{path.name}: {kind}"


KINDS = ["cell"] * 6 + ["date", "date", "drop_column", "rename_header", "ragged", "truncate",
                        "bytes", "empty", "delete", "folder", "duplicate_row"]


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    """A small simulated data folder (a few models, reference curves thinned) to break."""
    from densing_bayes.data.simulate import simulate_design, write_simulation

    folder = tmp_path_factory.mktemp("fuzz_base")
    write_simulation(simulate_design("paper", seed=3, n_benchmarks=2), folder, force=True)
    runs = folder / "reference_runs.csv"
    lines = runs.read_text().splitlines()
    runs.write_text("\n".join(lines[:1] + lines[1::25]) + "\n")
    load_data(folder)  # the base is valid
    return folder


def test_fuzz_data_check_never_raises(small_folder, tmp_path, capsys):
    rng = random.Random(16)
    outcomes = []
    for i in range(80):
        folder = tmp_path / f"v{i:02d}"
        shutil.copytree(small_folder, folder)
        what = [_mutate(folder, rng, rng.choice(KINDS)) for _ in range(rng.choice([1, 1, 2]))]
        try:
            code = cli.main(["data", "check", str(folder)])
        except BaseException as exc:  # noqa: BLE001 - the point is that nothing escapes
            pytest.fail(f"variant {i} ({what}) raised {type(exc).__name__}: {exc}")
        _, err = capsys.readouterr()
        assert code in (0, 2), (i, what, err)
        assert "Traceback" not in err
        outcomes.append(code)
    assert outcomes.count(2) >= 50  # the variants really are malformed


def test_a_file_over_the_size_limit_and_a_broken_link_are_named(tmp_path, capsys, monkeypatch):
    from densing_bayes.data import load

    folder = _folder(tmp_path)
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 60)
    (folder / "benchmarks.csv").symlink_to(tmp_path / "nowhere.csv")
    code, _, err = _check(folder, capsys)
    assert code == 2
    assert "reference_runs.csv: is 0 MB, more than" in err
    assert "benchmarks.csv: cannot be read (No such file or directory)" in err
