"""Reliability promises (docs/reliability.md): never lose a user's files, never write outside
the folder named, never a traceback for a problem the user can fix. One test per defect of the
reliability review (docs/reviews/reliability-review.md, D1-D12); each fails on the code the
review was made on (277aa2f)."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from densing_bayes.inference import batch, run_io
from densing_bayes.inference.diagnostics import diagnose
from densing_bayes.inference.run_io import RunFolderError, write_folder_atomically
from densing_bayes.model.spec import SpecError, load_spec, parse_spec
from densing_bayes.presentation import cli


def _files(**contents):
    return {name: (lambda p, text=text: p.write_text(text)) for name, text in contents.items()}


def _user_folder(path: Path) -> Path:
    (path / "thesis").mkdir(parents=True)
    (path / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    (path / "notes.txt").write_text("my notes")
    return path


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ============================================================== D1: --force only replaces runs
def test_force_refuses_a_folder_that_is_not_a_run(tmp_path):
    user = _user_folder(tmp_path / "project")
    before = _snapshot(user)
    with pytest.raises(RunFolderError, match="not a densing_bayes run") as err:
        write_folder_atomically(user, _files(**{"posterior.nc": "x"}), force=True)
    assert "\n" not in str(err.value)
    assert _snapshot(user) == before


def test_without_force_a_user_folder_is_not_called_a_run(tmp_path):
    user = _user_folder(tmp_path / "project")
    with pytest.raises(RunFolderError) as err:
        run_io.check_writable(user, force=False)
    assert "already holds a run" not in str(err.value)


def test_force_refuses_the_current_folder_and_its_parents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (Path("."), Path(".."), tmp_path):
        with pytest.raises(RunFolderError, match="current folder"):
            run_io.check_writable(out, force=True)


def test_force_still_replaces_a_run(tmp_path):
    out = tmp_path / "run"
    write_folder_atomically(out, _files(**{"posterior.nc": "old"}), force=False)
    write_folder_atomically(out, _files(**{"posterior.nc": "new"}), force=True)
    assert (out / "posterior.nc").read_text() == "new"
    assert run_io.read_marker(out)["sha256"]["posterior.nc"] == run_io.file_sha256(
        out / "posterior.nc")


@pytest.mark.parametrize("entries", [
    ("posterior.nc", "spec.toml", "summary.json", "summary.csv", "report.html", "figures"),
    ("spec.toml", "summary.json", "summary.csv", "report.html", "figures", "sensitivity"),
])
def test_a_run_written_before_the_marker_is_still_replaceable(tmp_path, entries):
    """Runs of earlier versions, and the committed reference report (its posterior.nc is
    git-ignored), have no run.json: `run --force` on a fresh clone must still work."""
    out = tmp_path / "default"
    out.mkdir()
    for name in entries:
        (out / name).mkdir() if "." not in name else (out / name).write_text("x")
    run_io.check_writable(out, force=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a densing_bayes run"):
        run_io.check_writable(out, force=True)


def test_cli_fit_force_on_a_user_folder_exits_2_before_sampling(tmp_path, paper_folder, capsys):
    user = _user_folder(tmp_path / "project")
    before = _snapshot(user)
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[sampler]\ndraws = 30\ntune = 30\nchains = 1\n')
    start = time.perf_counter()
    code = cli.main(["fit", str(spec), "--data", str(paper_folder), "--out", str(user),
                     "--force", "--quiet"])
    assert code == 2 and time.perf_counter() - start < 30
    assert "not a densing_bayes run" in capsys.readouterr().err
    assert _snapshot(user) == before


# ============================================================== D8: a recoverable swap
def _interrupted_swap(tmp_path) -> Path:
    """A run with sensitivity/ whose replacement was killed between the two renames."""
    out = tmp_path / "run"
    write_folder_atomically(out, _files(**{"posterior.nc": "old"}), force=False)
    (out / "sensitivity").mkdir()
    (out / "sensitivity" / "sensitivity.json").write_text('{"refits": 12}')
    out.rename(tmp_path / ".run.old")  # what the kill left: no run at out, the old one aside
    return out


def test_a_backup_left_by_a_killed_swap_is_restored_not_destroyed(tmp_path):
    out = _interrupted_swap(tmp_path)
    with pytest.raises(RunFolderError, match="already holds a run"):  # restored, so occupied
        write_folder_atomically(out, _files(**{"posterior.nc": "new"}), force=False)
    assert (out / "posterior.nc").read_text() == "old"
    write_folder_atomically(out, _files(**{"posterior.nc": "new"}), force=True,
                            keep=run_io.OTHER_JOBS_OUTPUT)
    assert (out / "posterior.nc").read_text() == "new"
    assert (out / "sensitivity" / "sensitivity.json").read_text() == '{"refits": 12}'


def test_a_backup_beside_a_run_is_reported_and_kept(tmp_path):
    _interrupted_swap(tmp_path)  # the old run is in .run.old ...
    out = tmp_path / "run"  # ... and the new one made it into place
    write_folder_atomically(tmp_path / "new", _files(**{"posterior.nc": "new"}), force=False)
    (tmp_path / "new").rename(out)
    with pytest.raises(RunFolderError, match=r"\.run\.old"):
        write_folder_atomically(out, _files(**{"posterior.nc": "new"}), force=True)
    assert (tmp_path / ".run.old" / "sensitivity" / "sensitivity.json").is_file()


def test_stale_staging_folders_are_cleaned_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".run.staging-{dead}-abc.tmp"
    live = tmp_path / f".run.staging-{os.getpid()}-def.tmp"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "posterior.nc").write_bytes(b"x" * 1000)
    write_folder_atomically(tmp_path / "run", _files(**{"posterior.nc": "new"}), force=False)
    assert not stale.exists() and live.exists()


def test_a_full_disk_is_one_line_and_the_old_run_is_kept(tmp_path):
    out = tmp_path / "run"
    write_folder_atomically(out, _files(**{"posterior.nc": "old"}), force=False)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunFolderError, match="no space left") as err:
        write_folder_atomically(out, {"posterior.nc": full}, force=True)
    assert "\n" not in str(err.value)
    assert (out / "posterior.nc").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_posterior_that_cannot_fit_on_disk_is_refused_before_writing(tmp_path, monkeypatch):
    idata = az.from_dict(posterior={"x": np.zeros((1, 1000))})
    usage = type("Usage", (), {"total": 10, "used": 0, "free": 10})
    monkeypatch.setattr(run_io.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(RunFolderError, match="not enough free space"):
        run_io.check_free_space(tmp_path / "run", idata)


# ============================================================== D10: load_run integrity
@pytest.fixture
def small_run(tmp_path, paper_folder):
    spec = parse_spec({"name": "small", "sampler": {"draws": 10, "chains": 2}})
    idata = az.from_dict(posterior={"slope_post": np.random.default_rng(0).normal(size=(2, 10))})
    run_io.stamp(idata, spec, paper_folder)
    summary = {"doubling_time_days": {"median": 97.5}}
    out = run_io.save_run(tmp_path / "run", idata, spec, summary,
                          pd.DataFrame({"quantity": ["doubling"], "median": [97.5]}))
    return out


def test_replacing_a_run_keeps_every_folder_another_job_stored_in_it(small_run):
    """`run --force` deleted RUN/sbc_posterior (hours of posterior-SBC fits): the run kept only
    a list of known folder names, and nobody had added the new job's."""
    idata = az.from_dict(posterior={"slope_post": np.zeros((2, 10))})
    spec = parse_spec({"name": "small", "sampler": {"draws": 10, "chains": 2}})
    for name in ("sbc_posterior", "a_folder_of_my_own"):
        (small_run / name / "tasks").mkdir(parents=True)
        (small_run / name / "tasks" / "sim_00000.json").write_text('{"status": "ok"}')
    (small_run / "figures").mkdir()
    (small_run / "figures" / "old_figure.png").write_text("stale")
    run_io.save_run(small_run, idata, spec, {"doubling_time_days": {"median": 1.0}},
                    pd.DataFrame({"quantity": ["doubling"], "median": [1.0]}), force=True)
    assert json.loads((small_run / "summary.json").read_text())["doubling_time_days"] == {
        "median": 1.0}
    for name in ("sbc_posterior", "a_folder_of_my_own"):
        assert (small_run / name / "tasks" / "sim_00000.json").read_text() == '{"status": "ok"}'
    assert not (small_run / "figures").exists()  # the run's own report figures are replaced


def test_atomically_written_files_are_readable_by_others_like_the_rest_of_a_run(tmp_path):
    """summary.json, run.json, sbc.json and every task record came out 0600 (mkstemp's mode)
    beside a 0644 report.html: on a shared machine a colleague could open the report but not
    the numbers behind it."""
    path = run_io.atomic_write_text(tmp_path / "summary.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o644


def test_an_untouched_run_loads(small_run):
    assert run_io.load_run(small_run).summary["doubling_time_days"]["median"] == 97.5


def test_an_edited_summary_is_refused(small_run):
    path = small_run / "summary.json"
    path.write_text(path.read_text().replace("97.5", "1.0"))
    with pytest.raises(RunFolderError, match="summary.json was changed"):
        run_io.load_run(small_run)


@pytest.mark.parametrize("damage", ["truncate", "text"])
def test_a_corrupt_posterior_is_refused_with_exit_2(small_run, damage, capsys):
    path = small_run / "posterior.nc"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_text("not a netcdf file")
    with pytest.raises(RunFolderError):
        run_io.load_run(small_run)
    code = cli.main(["predict", str(small_run), "--params", "1e9", "--tokens", "1e10"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_corrupt_posterior_with_a_matching_checksum_is_still_one_line(small_run):
    (small_run / "posterior.nc").write_text("not a netcdf file")
    marker = json.loads((small_run / "run.json").read_text())
    marker["sha256"]["posterior.nc"] = run_io.file_sha256(small_run / "posterior.nc")
    (small_run / "run.json").write_text(json.dumps(marker))
    with pytest.raises(RunFolderError, match="cannot be read"):
        run_io.load_run(small_run)


def test_a_posterior_reading_other_files_is_refused(small_run, tmp_path):
    """HDF5 external storage let a crafted posterior.nc return the bytes of a local file."""
    import h5py

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    path = small_run / "posterior.nc"
    with h5py.File(path, "a") as fh:
        group = fh["posterior"]
        attrs = dict(group["slope_post"].attrs)
        shape = group["slope_post"].shape
        del group["slope_post"]
        group.create_dataset("slope_post", shape=shape, dtype="u1",
                             external=[(str(secret), 0, int(np.prod(shape)))])
        group["slope_post"].attrs.update({k: v for k, v in attrs.items()
                                          if k != "DIMENSION_LIST"})
    marker = json.loads((small_run / "run.json").read_text())
    marker["sha256"]["posterior.nc"] = run_io.file_sha256(path)
    (small_run / "run.json").write_text(json.dumps(marker))
    with pytest.raises(RunFolderError, match="other files"):
        run_io.load_run(small_run)


def test_invalid_summary_json_is_refused(small_run):
    (small_run / "summary.json").write_text("{not json")
    with pytest.raises(RunFolderError):
        run_io.load_run(small_run)


# ============================================================== D3: one chain
def _idata(chains: int) -> az.InferenceData:
    rng = np.random.default_rng(1)
    return az.from_dict(posterior={"a": rng.normal(size=(chains, 50)),
                                   "b": rng.normal(size=(chains, 50, 3))},
                        sample_stats={"diverging": np.zeros((chains, 50), bool),
                                      "energy": rng.normal(size=(chains, 50))})


def test_one_chain_reports_rhat_unavailable_instead_of_crashing():
    from densing_bayes.model.spec import Thresholds

    diag = diagnose(_idata(1), ["a", "b"])
    assert np.isnan(diag.max_rhat) and diag.worst_rhat_parameter == "n/a"
    assert diag.min_ess_bulk > 0
    assert any("R-hat unavailable" in line for line in diag.failures(Thresholds()))
    assert not any("R-hat unavailable" in line for line in
                   diagnose(_idata(2), ["a", "b"]).failures(Thresholds()))


# ============================================================== D2: names never become paths
@pytest.mark.parametrize("name", ["../../escaped_run", "/tmp/absolute", ".hidden", "a/b", "a\\b",
                                  ""])
def test_a_spec_name_that_is_not_a_folder_name_is_refused(tmp_path, name):
    spec = tmp_path / "s.toml"
    spec.write_text(f"name = {json.dumps(name)}\n")
    with pytest.raises(SpecError, match="folder name"):
        load_spec(spec)


def test_a_variant_name_that_is_not_a_folder_name_is_refused(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "ok"\n[variants."../../../escaped_record".trend]\nkind = "mean"\n')
    with pytest.raises(SpecError, match="variant name"):
        load_spec(spec)


def _square(x: int) -> dict:
    return {"square": x * x}


def _run(tasks, out, **kwargs):
    return batch.run_batch(tasks, out, manifest={"job": "test"}, n_workers=1,
                           processes=False, progress=False, **kwargs)


def test_task_ids_with_separators_stay_inside_tasks(tmp_path):
    ids = ["without_benchmark-mmlu/stem", "../../../escaped_record", "/abs", "ok_id"]
    out = tmp_path / "deep" / "out"
    records = _run([batch.Task(i, _square, {"x": n}) for n, i in enumerate(ids)], out)
    assert list(records) == ids and all(r["status"] == "ok" for r in records.values())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent in (out, out / batch.TASKS_DIR) for p in written), written
    assert set(batch.load_records(out)) == set(ids)
    again = _run([batch.Task(i, _square, {"x": n}) for n, i in enumerate(ids)], out, resume=True)
    assert again == records  # resume finds them all: nothing ran twice


# ============================================================== D5: batch folders and locks
def test_force_refuses_a_folder_that_is_not_a_batch(tmp_path):
    user = _user_folder(tmp_path / "project")
    before = _snapshot(user)
    for mode in ({"force": True}, {"resume": True}):
        with pytest.raises(batch.BatchFolderError, match="not a batch folder"):
            _run([batch.Task("t", _square, {"x": 1})], user, **mode)
    assert _snapshot(user) == before


def test_resume_without_a_manifest_does_not_adopt_old_records(tmp_path):
    out = tmp_path / "out"
    _run([batch.Task("t", _square, {"x": 1})], out)
    (out / batch.MANIFEST_FILE).unlink()
    with pytest.raises(batch.BatchFolderError, match="no batch.json"):
        _run([batch.Task("t", _square, {"x": 1})], out, resume=True)


def test_a_held_lock_refuses_force_and_resume(tmp_path):
    out = tmp_path / "out"
    _run([batch.Task("t", _square, {"x": 1})], out)
    before = _snapshot(out)
    with batch.folder_lock(out):  # another batch, alive (this process), holds the folder
        for mode in ({"force": True}, {"resume": True}):
            with pytest.raises(batch.BatchFolderError, match="in use by another batch"):
                _run([batch.Task("t", _square, {"x": 2}), batch.Task("u", _square, {"x": 3})],
                     out, **mode)
        assert _snapshot(out) == {**before, batch.LOCK_FILE: (out / batch.LOCK_FILE).read_bytes()}
    assert not (out / batch.LOCK_FILE).exists()


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import socket
    (out / batch.LOCK_FILE).write_text(json.dumps({"pid": int(dead),
                                                   "host": socket.gethostname()}))
    records = _run([batch.Task("t", _square, {"x": 4})], out)
    assert records["t"]["result"] == {"square": 16}
    assert not (out / batch.LOCK_FILE).exists()


def test_an_empty_record_is_run_again_not_a_crash(tmp_path):
    out = tmp_path / "out"
    _run([batch.Task("t", _square, {"x": 5})], out)
    (out / batch.TASKS_DIR / "t.json").write_text("")
    records = _run([batch.Task("t", _square, {"x": 5})], out, resume=True)
    assert records["t"]["result"] == {"square": 25}


# ============================================================== D9: an unreachable scheduler
def test_an_unreachable_scheduler_is_one_line_fast_and_deletes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _run([batch.Task(f"t{i}", _square, {"x": i}) for i in range(3)], out)
    before = _snapshot(out)
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 1.0)
    start = time.perf_counter()
    with pytest.raises(batch.BatchFolderError, match="cannot reach the Dask scheduler") as err:
        batch.run_batch([batch.Task("t0", _square, {"x": 0})], out, manifest={"job": "test"},
                        force=True, scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.perf_counter() - start < 15
    assert "\n" not in str(err.value)
    assert _snapshot(out) == before


# ============================================================== D4: Dask on loopback only
def _http_status(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_local_cluster_listens_on_loopback_and_serves_no_dashboard():
    with batch.dask_client(n_workers=1, processes=True) as client:
        info = client.scheduler_info()
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        http = client.cluster.scheduler.http_server
        bound = {s.getsockname()[0] for s in http._sockets.values()}
        assert bound == {"127.0.0.1"}, bound
        port = info["services"]["dashboard"]
        assert _http_status(port, "/health") == 200
        for page in ("/info/main/workers.html", "/json/identity.json", "/metrics"):
            assert _http_status(port, page) == 404, page


@pytest.mark.integration
def test_cli_fit_with_one_chain_writes_the_run(tmp_path, capsys):
    """A real fit (1 chain x 30 draws): the run is written and loads; R-hat says n/a."""
    from densing_bayes.data.simulate import simulate_design, write_simulation

    data = tmp_path / "sim"
    write_simulation(simulate_design("paper", seed=3, n_benchmarks=2), data, force=True)
    out = tmp_path / "run"
    code = cli.main(["fit", "paper_design", "--data", str(data), "--out", str(out), "--chains",
                     "1", "--draws", "30", "--tune", "30", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "max R-hat n/a" in printed.out and "R-hat unavailable" in printed.err
    loaded = run_io.load_run(out)
    assert loaded.summary["diagnostics"]["max_rhat"] is None
    assert loaded.idata.posterior.sizes["chain"] == 1


# A slow batch in its own process, as a second user's batch on the same folder would be.
SLOW_BATCH = """
import sys, time
from pathlib import Path
from densing_bayes.inference import batch

def slow(i):
    time.sleep(0.5)
    return {"i": i}

if __name__ == "__main__":
    tasks = [batch.Task(f"t{i}", slow, {"i": i}) for i in range(8)]
    batch.run_batch(tasks, Path(sys.argv[1]), manifest={"job": "A"}, n_workers=1,
                    processes=False, progress=False)
"""


def test_a_second_batch_is_refused_while_another_process_runs_one(tmp_path):
    script, out = tmp_path / "slow.py", tmp_path / "out"
    script.write_text(SLOW_BATCH)
    env = {**os.environ, "PYTHONPATH": str(Path(batch.__file__).parents[2])}
    first = subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not list((out / batch.TASKS_DIR).glob("*.json")) and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first batch ended before the test could start"
        tasks = [batch.Task(f"t{i}", _square, {"x": i}) for i in range(8)]
        for mode, manifest in (({"force": True}, {"job": "B"}), ({"resume": True}, {"job": "A"})):
            with pytest.raises(batch.BatchFolderError, match="in use by another batch"):
                batch.run_batch(tasks, out, manifest=manifest, n_workers=1, processes=False,
                                progress=False, **mode)
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    records = batch.load_records(out)
    assert len(records) == 8 and all(r["result"] == {"i": int(k[1:])} for k, r in records.items())
    assert json.loads((out / batch.MANIFEST_FILE).read_text()) == {"job": "A"}
