"""Many independent fits as Dask tasks, in a batch folder that survives kills, crashes and
failing fits.

The sensitivity analysis and simulation-based calibration are each dozens to hundreds of
independent fits. They run as tasks on a dask.distributed cluster: a ``LocalCluster`` by default
(one single-threaded worker process per core, so fits do not fight over cores), or an existing
cluster given by its scheduler address. The batch folder holds

    OUT/batch.json        what the batch computes (job, configuration); a resume must match it
    OUT/tasks/<id>.json   one record per finished task: status "ok" with its result, or
                          "failed" with the error and traceback

Guarantees:

* a task's record is written the moment the client learns it finished, atomically (temporary
  file + ``os.replace``), so a kill never leaves half a record and never loses a finished one;
* ``resume=True`` runs only the tasks without a record (a failed task is a record: its failure
  is a result, since the same seed fails the same way; delete its file to retry it);
* a task that raises, or whose worker dies, is recorded as failed and the batch goes on;
* without ``resume`` a non-empty folder is refused unless ``force``, which first removes the
  records of the earlier batch (and nothing else).

Records are written by the client, not the workers, so a remote cluster needs no shared disk.

Compilation is most of a small fit's time (nutpie's compile of the joint model: about a minute;
sampling a small posterior: seconds), so ``worker_cached`` keeps compiled objects per worker
process, keyed by model structure: every later task with that structure only swaps its data in.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("densing_bayes")

MANIFEST_FILE = "batch.json"
TASKS_DIR = "tasks"


class BatchFolderError(RuntimeError):
    """A batch folder that cannot be used as asked (occupied, or a different batch)."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(**kwargs)`` returns a JSON-able dict.

    ``function`` must be importable by the workers (a module-level function); ``task_id`` names
    the record file, so it is unique within a batch and safe as a file name.
    """

    task_id: str
    function: Callable[..., dict]
    kwargs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- worker side
_WORKER_CACHE: dict[Hashable, Any] = {}
_WORKER_CACHE_LOCK = threading.Lock()


def worker_cached(key: Hashable, build: Callable[[], Any]) -> tuple[Any, float]:
    """The object cached under ``key`` in this process, built on first use.

    Returns the object and the seconds spent building it in this call (0.0 when reused), so a
    task can report what the cache saved. The lock keeps two threads of one worker from
    compiling the same model twice.
    """
    with _WORKER_CACHE_LOCK:
        if key in _WORKER_CACHE:
            return _WORKER_CACHE[key], 0.0
        start = time.perf_counter()
        _WORKER_CACHE[key] = build()
        return _WORKER_CACHE[key], time.perf_counter() - start


def _execute(function: Callable[..., dict], kwargs: dict, task_id: str) -> dict:
    """Run one task on a worker; an exception becomes a failed record instead of an error."""
    started = time.time()
    record = {"task_id": task_id, "status": "ok", "error": None, "traceback": None,
              "result": None, "worker": f"{socket.gethostname()}:{os.getpid()}",
              "started": _iso(started)}
    try:
        record["result"] = function(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of one fit must not stop the batch
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    record.update(finished=_iso(time.time()), seconds=time.time() - started)
    return record


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------- the folder
def prepare_folder(out: Path, manifest: dict, *, resume: bool, force: bool) -> Path:
    """Check ``out`` against the run mode, then write the manifest.

    A resume must match the existing manifest: records of another configuration (other draws,
    another spec) must never be mixed into one result.
    """
    out = Path(out)
    existing = out / MANIFEST_FILE
    if resume and existing.is_file():
        previous = json.loads(existing.read_text(encoding="utf-8"))
        if previous != _jsonable(manifest):
            raise BatchFolderError(
                f"{out} holds a different batch ({_differences(previous, manifest)}); "
                "resume it with the same settings, or start a new folder")
    elif out.exists() and any(out.iterdir()) and not resume:
        if not force:
            raise BatchFolderError(f"{out} is not empty; pass --resume to continue the batch "
                                   "in it, or --force to start it again")
        shutil.rmtree(out / TASKS_DIR, ignore_errors=True)
    (out / TASKS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MANIFEST_FILE, manifest)
    return out


def _differences(previous: dict, manifest: dict) -> str:
    current = _jsonable(manifest)
    keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in keys)


def load_records(out: Path) -> dict[str, dict]:
    """Every task record in the batch folder, by task id."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted((Path(out) / TASKS_DIR).glob("*.json"))}


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(obj), fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------- running
@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None,
                processes: bool = True) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new LocalCluster.

    The local cluster has one single-threaded worker per core (``n_workers`` overrides), its
    HTTP endpoints on a free port (never a collision with another user's 8787) and quiet logs.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                      processes=processes, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_batch(tasks: Sequence[Task], out: Path, *, manifest: dict, resume: bool = False,
              force: bool = False, scheduler: str | None = None, n_workers: int | None = None,
              processes: bool = True, progress: bool = True, desc: str = "fits") -> dict[str, dict]:
    """Run the tasks without a record in ``out``; return every record, in task order."""
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique within a batch")
    out = prepare_folder(out, manifest, resume=resume, force=force)
    done = load_records(out)
    todo = [task for task in tasks if task.task_id not in done]
    if done and todo:
        log.info("resuming: %d of %d tasks already recorded", len(tasks) - len(todo), len(tasks))
    if todo:
        with dask_client(scheduler, n_workers, processes) as client:
            done.update(_run_on(client, todo, out, len(tasks), progress, desc))
    return {task_id: done[task_id] for task_id in ids if task_id in done}


def _run_on(client, tasks: Sequence[Task], out: Path, total: int, progress: bool,
            desc: str) -> dict[str, dict]:
    """Submit the tasks, record each the moment it finishes, keep the progress bar current."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = {client.submit(_execute, t.function, t.kwargs, t.task_id, pure=False,
                             key=f"{desc}-{t.task_id}-{token}"): t.task_id for t in tasks}
    records, failed = {}, 0
    with tqdm(total=total, initial=total - len(tasks), desc=desc, unit="task",
              disable=not progress) as bar:
        _show(bar, client, futures, failed)
        for future in as_completed(futures):
            task_id = futures.pop(future)
            record = _collect(future, task_id)
            write_json_atomic(out / TASKS_DIR / f"{task_id}.json", record)
            records[task_id] = record
            failed += record["status"] == "failed"
            if record["status"] == "failed":
                log.warning("task %s failed: %s", task_id, record["error"])
            bar.update()
            _show(bar, client, futures, failed)
    return records


def _collect(future, task_id: str) -> dict:
    """The task's own record, or a failed record when the cluster lost it (worker killed)."""
    if future.status == "finished":
        return future.result()
    exc = future.exception()
    return {"task_id": task_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "traceback": None, "result": None, "worker": None, "started": None,
            "finished": _iso(time.time()), "seconds": None}


def _show(bar, client, pending: dict, failed: int) -> None:
    """done / running / queued / failed on the bar.

    The scheduler hands a worker more tasks than it has threads; a worker executes at most
    one task per thread, so "running" counts that many and the rest are "queued".
    """
    keys = {future.key for future in pending}
    threads = client.nthreads()
    running = 0
    for worker, tasks in client.processing().items():
        ours = sum(key in keys for key in tasks)
        running += min(ours, threads.get(worker, 1))
    queued = len(keys) - running
    bar.set_postfix_str(f"running {running}, queued {queued}, failed {failed}", refresh=True)
