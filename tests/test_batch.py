"""The batch runner: records on disk, failures isolated, refusal of occupied folders, resume
after a kill (a real SIGKILL of a batch running in a subprocess)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from densing_bayes.inference import batch


def square(x: int) -> dict:
    return {"square": x * x}


def fail_on_three(x: int) -> dict:
    if x == 3:
        raise ValueError("three is not allowed")
    return {"value": x}


def _tasks(function, n):
    return [batch.Task(f"task_{i}", function, {"x": i}) for i in range(n)]


def _run(tasks, out, **kwargs):
    return batch.run_batch(tasks, out, manifest={"job": "test"}, n_workers=2,
                           processes=False, progress=False, **kwargs)


def test_every_task_is_recorded_on_disk(tmp_path):
    records = _run(_tasks(square, 4), tmp_path / "out")
    assert [r["result"]["square"] for r in records.values()] == [0, 1, 4, 9]
    on_disk = batch.load_records(tmp_path / "out")
    assert set(on_disk) == {f"task_{i}" for i in range(4)}
    assert all(r["status"] == "ok" and r["error"] is None for r in on_disk.values())
    assert not list((tmp_path / "out" / batch.TASKS_DIR).glob(".*.tmp"))
    # each record names the stack that reproduces its draws
    from importlib.metadata import version
    assert all(r["environment"]["numpy"] == version("numpy") for r in on_disk.values())


def test_a_failing_task_is_recorded_and_the_others_finish(tmp_path):
    records = _run(_tasks(fail_on_three, 6), tmp_path / "out")
    failed = records["task_3"]
    assert failed["status"] == "failed"
    assert failed["error"] == "ValueError: three is not allowed"
    assert "fail_on_three" in failed["traceback"]
    assert [r["status"] for k, r in records.items() if k != "task_3"] == ["ok"] * 5


def test_occupied_folder_is_refused_without_resume_or_force(tmp_path):
    out = tmp_path / "out"
    _run(_tasks(square, 2), out)
    with pytest.raises(batch.BatchFolderError, match="--resume.*--force"):
        _run(_tasks(square, 2), out)
    records = _run(_tasks(square, 3), out, force=True)
    assert len(records) == 3


def test_resume_refuses_a_different_batch(tmp_path):
    out = tmp_path / "out"
    _run(_tasks(square, 2), out)
    with pytest.raises(batch.BatchFolderError, match="different batch"):
        batch.run_batch(_tasks(square, 2), out, manifest={"job": "other"}, resume=True,
                        processes=False, progress=False)


def test_a_manifest_recorded_before_the_data_hash_resumes_and_keeps_its_form(tmp_path):
    """Batches started before manifests named their design's data hash resume as before, and
    the folder's manifest is not rewritten to claim a hash it never recorded; once recorded,
    another data hash refuses the resume."""
    out = tmp_path / "out"
    legacy = {"job": "sbc", "design": "bundled"}
    batch.run_batch(_tasks(square, 2), out, manifest=legacy, processes=False, progress=False)
    newer = {**legacy, "data_hash": "a" * 64}
    records = batch.run_batch(_tasks(square, 3), out, manifest=newer, resume=True,
                              processes=False, progress=False)
    assert len(records) == 3
    assert json.loads((out / batch.MANIFEST_FILE).read_text()) == legacy
    fresh = tmp_path / "fresh"
    batch.run_batch(_tasks(square, 2), fresh, manifest=newer, processes=False, progress=False)
    with pytest.raises(batch.BatchFolderError, match="data_hash"):
        batch.run_batch(_tasks(square, 2), fresh, manifest={**legacy, "data_hash": "b" * 64},
                        resume=True, processes=False, progress=False)
    assert json.loads((fresh / batch.MANIFEST_FILE).read_text()) == newer


def test_resume_runs_only_missing_tasks(tmp_path):
    out = tmp_path / "out"
    _run(_tasks(square, 2), out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / batch.TASKS_DIR).iterdir()}
    records = _run(_tasks(square, 4), out, resume=True)
    assert len(records) == 4
    after = {p.name: p.stat().st_mtime_ns for p in (out / batch.TASKS_DIR).iterdir()}
    assert all(after[name] == mtime for name, mtime in before.items())


def test_worker_cache_builds_once():
    calls = []
    key = ("test_worker_cache_builds_once", os.getpid())
    first, built = batch.worker_cached(key, lambda: calls.append(1) or "compiled")
    second, reused = batch.worker_cached(key, lambda: calls.append(1) or "again")
    assert (first, second, len(calls)) == ("compiled", "compiled", 1)
    assert built >= 0.0 and reused == 0.0


def test_json_records_have_no_nan(tmp_path):
    batch.write_json_atomic(tmp_path / "r.json", {"x": float("nan"), "y": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": [None, 1.0]}


# A batch of slow tasks in its own process; each task logs its execution before working.
KILLABLE_BATCH = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from densing_bayes.inference import batch

    LOG = Path(sys.argv[2])

    def slow(i):
        with LOG.open("a") as fh:
            fh.write(f"task_{i} {os.getpid()}\\n")
        time.sleep(0.8)
        return {"i": i}

    if __name__ == "__main__":
        tasks = [batch.Task(f"task_{i}", slow, {"i": i}) for i in range(6)]
        batch.run_batch(tasks, Path(sys.argv[1]), manifest={"job": "killable"},
                        resume=sys.argv[3] == "resume", n_workers=1, processes=False,
                        progress=False)
""")


def test_killed_batch_resumes_with_only_the_missing_tasks(tmp_path):
    script, out, log = tmp_path / "killable.py", tmp_path / "out", tmp_path / "executions.log"
    script.write_text(KILLABLE_BATCH)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log), "fresh"],
                            start_new_session=True)
    tasks_dir = out / batch.TASKS_DIR
    deadline = time.monotonic() + 60
    while not (tasks_dir.is_dir() and list(tasks_dir.glob("task_*.json"))):
        assert proc.poll() is None and time.monotonic() < deadline, "batch never recorded"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole batch: client, scheduler and worker
    proc.wait()
    survivors = {p.name: p.read_bytes() for p in tasks_dir.glob("task_*.json")}
    assert 1 <= len(survivors) < 6

    resumed = subprocess.run([sys.executable, str(script), str(out), str(log), "resume"],
                             timeout=120)
    assert resumed.returncode == 0
    records = batch.load_records(out)
    assert set(records) == {f"task_{i}" for i in range(6)}
    for name, content in survivors.items():  # finished before the kill: untouched
        assert (tasks_dir / name).read_bytes() == content
    executions = Counter(line.split()[0] for line in log.read_text().splitlines())
    done_before = {name.removesuffix(".json") for name in survivors}
    assert all(executions[t] == 1 for t in done_before)  # never run again
    assert set(executions) == set(records)
    # Only the task running at the moment of the kill may have started twice.
    assert sum(n - 1 for n in executions.values()) <= 1


def test_progress_counts_only_what_workers_can_execute():
    """Two single-threaded workers holding 3 + 1 of our tasks run 2 of them; 3 wait."""

    class Future:
        def __init__(self, key):
            self.key = key

    class Client:
        def nthreads(self):
            return {"w1": 1, "w2": 1}

        def processing(self):
            return {"w1": ("a", "b", "c"), "w2": ("d", "someone-else's")}

    class Bar:
        text = None

        def set_postfix_str(self, text, refresh=True):
            self.text = text

    bar = Bar()
    batch._show(bar, Client(), {Future(k): None for k in "abcde"}, failed=1)
    assert bar.text == "running 2, queued 3, failed 1"


def test_a_resumed_batch_reports_what_its_records_cost_not_only_its_own_wall_time():
    """A resume that only summarises earlier records ran for milliseconds: robustness.json of
    2026-12-05 said 0.006 s for a 46-minute batch. The timing now also sums the records'
    seconds and spans their first start to their last finish (a failed record without a
    start or seconds is skipped)."""
    from densing_bayes.inference.batch import records_timing

    records = {
        "a": {"seconds": 1231.5, "started": "2026-12-05T07:55:35.865+00:00",
              "finished": "2026-12-05T08:16:07.492+00:00"},
        "b": {"seconds": 760.0, "started": "2026-12-05T08:29:17.533+00:00",
              "finished": "2026-12-05T08:41:57.475+00:00"},
        "c": {"seconds": None, "started": None, "finished": "2026-12-05T08:42:00.000+00:00"},
    }
    timing = records_timing(records, 0.006)
    assert timing == {"wall_seconds": 0.006, "task_seconds": 1991.5,
                      "first_started": "2026-12-05T07:55:35.865+00:00",
                      "last_finished": "2026-12-05T08:42:00.000+00:00"}
    assert records_timing({}, 1.0)["first_started"] is None
