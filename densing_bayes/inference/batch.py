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
  records of the earlier batch (and nothing else); ``--force`` and ``--resume`` both refuse a
  folder that holds no ``batch.json`` (it is not a batch this package wrote);
* one batch at a time per folder: ``OUT/.lock`` (created with O_EXCL, holding pid and host) is
  taken before anything in the folder changes, and a second batch refuses while it is held. A
  lock whose process is dead (same host) is stale and taken over;
* a remote scheduler is connected to before anything in the folder changes, so an unreachable
  one costs a few seconds and no records;
* record file names are derived from task ids (names with characters other than letters,
  digits, ``_ . -`` get a hash suffix), so a benchmark called ``mmlu/stem`` or a variant called
  ``../x`` never becomes a path; the record itself carries the task id.

Records are written by the client, not the workers, so a remote cluster needs no shared disk.

Security: the local cluster listens on 127.0.0.1 only and has no dashboard unless asked
(``dashboard=True``, also on 127.0.0.1). Dask runs pickled code, so whoever can reach a
scheduler can run code as its workers' user: ``scheduler=ADDRESS`` trusts that cluster fully, and
a cluster reachable beyond one's own machine should use Dask's TLS and authentication
(``distributed.security.Security``, the ``distributed.comm.tls.*`` settings, ``tls://``
addresses; docs: distributed.dask.org "TLS/SSL").

Compilation is most of a small fit's time (nutpie's compile of the joint model: about a minute;
sampling a small posterior: seconds), so ``worker_cached`` keeps compiled objects per worker
process, keyed by model structure: every later task with that structure only swaps its data in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from densing_bayes.inference.environment import numerical_stack

log = logging.getLogger("densing_bayes")

MANIFEST_FILE = "batch.json"
TASKS_DIR = "tasks"
LOCK_FILE = ".lock"
#: Seconds to wait for a remote scheduler before giving up with one line.
CONNECT_TIMEOUT = 10.0
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class BatchFolderError(RuntimeError):
    """A batch that cannot run as asked: occupied, another batch, locked, or no scheduler."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(**kwargs)`` returns a JSON-able dict.

    ``function`` must be importable by the workers (a module-level function); ``task_id`` is
    unique within a batch and names its record file through :func:`record_filename`.
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
              "started": _iso(started),
              # what reproduces this record's draws besides its seed (inference.environment)
              "environment": numerical_stack()}
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
def record_filename(task_id: str) -> str:
    """The record file of a task: its id when that is a safe file name, else a slug + hash."""
    if _SAFE_ID.fullmatch(task_id) and ".." not in task_id:
        return f"{task_id}.json"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task_id).strip("._")[:60] or "task"
    digest = hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}.json"


def _entries(out: Path) -> list[str]:
    """What the folder holds besides the lock (an empty ``tasks/`` counts as nothing)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE
                  and not (p.name == TASKS_DIR and p.is_dir() and not any(p.iterdir())))


#: Manifest keys added after batches were first written (the data hash of a data design,
#: 2026-12-03). A folder whose manifest predates a key resumes as before and keeps its own
#: manifest: nothing claims a fact (which data it simulated) that it did not record.
LATER_MANIFEST_KEYS = ("data_hash",)


def _as_recorded(previous: dict, manifest: dict) -> dict:
    """``manifest`` without the later keys that ``previous`` (the folder's) did not record."""
    current = _jsonable(manifest)
    return {k: v for k, v in current.items()
            if k in previous or k not in LATER_MANIFEST_KEYS}


def check_folder(out: Path, manifest: dict, *, resume: bool, force: bool) -> dict:
    """Refuse, changing nothing, a folder the batch must not use (see the module docstring);
    return the manifest the folder is to hold (on a resume, in the form it was recorded)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchFolderError(f"{out} exists and is not a folder")
    entries = _entries(out)
    if not entries:
        return manifest
    existing = out / MANIFEST_FILE
    if not existing.is_file():
        raise BatchFolderError(
            f"{out} holds files but no {MANIFEST_FILE}, so it is not a batch folder "
            f"({', '.join(entries[:3])}, ...); choose another --out")
    try:
        previous = json.loads(existing.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict):
        raise BatchFolderError(f"{existing} is not a readable batch manifest; "
                               "move the folder away or choose another --out")
    if resume:
        recorded = _as_recorded(previous, manifest)
        if previous != recorded:
            raise BatchFolderError(
                f"{out} holds a different batch ({_differences(previous, recorded)}); "
                "resume it with the same settings, or start a new folder")
        return recorded
    if not force:
        raise BatchFolderError(f"{out} is not empty; pass --resume to continue the batch "
                               "in it, or --force to start it again")
    return manifest


def prepare_folder(out: Path, manifest: dict, *, resume: bool, force: bool) -> Path:
    """Check ``out`` against the run mode, then write the manifest (call under the lock).

    A resume must match the existing manifest: records of another configuration (other draws,
    another spec) must never be mixed into one result.
    """
    out = Path(out)
    manifest = check_folder(out, manifest, resume=resume, force=force)
    if force and not resume:
        shutil.rmtree(out / TASKS_DIR, ignore_errors=True)
    (out / TASKS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MANIFEST_FILE, manifest)
    return out


@contextmanager
def folder_lock(out: Path) -> Iterator[Path]:
    """Hold ``OUT/.lock`` for the duration; refuse when another live batch holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_FILE
    content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                          "started": _iso(time.time())})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is None:  # stale: its process is gone
                lock.unlink(missing_ok=True)
                log.warning("removed the stale lock of a batch that is no longer running "
                            "in %s", out)
                continue
            raise BatchFolderError(
                f"{out} is in use by another batch (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); wait for it to finish, "
                f"or delete {lock} if that process is gone") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        break
    else:
        raise BatchFolderError(f"{out}: could not take {lock}; another batch is starting")
    try:
        yield out
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict | None:
    """Who holds the lock, or None when it is stale (its process is dead on this host)."""
    from densing_bayes.inference.run_io import pid_alive

    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # Being written right now, or garbage: garbage older than a minute is stale.
        try:
            return None if time.time() - lock.stat().st_mtime > 60 else {}
        except OSError:
            return None
    if not isinstance(holder, dict):
        return None
    if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", 0))):
        return None
    return holder


def _differences(previous: dict, manifest: dict) -> str:
    current = _jsonable(manifest)
    keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in keys)


def load_records(out: Path) -> dict[str, dict]:
    """Every task record in the batch folder, by task id (read from the record).

    An empty or unreadable record (what a power loss can leave) is skipped with a warning, so
    its task runs again on resume.
    """
    records = {}
    for path in sorted((Path(out) / TASKS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("task_id"), str):
            log.warning("record %s is empty or unreadable; its task will run again", path)
            continue
        records[record["task_id"]] = record
    return records


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    from densing_bayes.inference.run_io import atomic_write_text

    atomic_write_text(Path(path), json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


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
                processes: bool = True, dashboard: bool = False) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new LocalCluster.

    The local cluster has one single-threaded worker per core (``n_workers`` overrides), listens
    on 127.0.0.1 only, and serves no dashboard unless ``dashboard`` (then on 127.0.0.1, a free
    port). A remote ``scheduler`` is the caller's explicit choice: see the module docstring on
    what that trusts.
    """
    if scheduler:
        with connect(scheduler) as client:
            yield client
        return
    import dask
    from distributed import Client, LocalCluster

    # Threads in one process talk in-process (no socket at all); processes over loopback TCP.
    network = {"host": "127.0.0.1"} if processes else {}
    # The scheduler always runs an HTTP server (without an address: port 8787, and ":0" means
    # every interface); so it gets loopback and a free port, and without the dashboard only
    # its health route (no worker logs, call stacks or metrics).
    routes = {} if dashboard else {"distributed.scheduler.http.routes": ["distributed.http.health"]}
    with dask.config.set(routes), \
            LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                         processes=processes, **network, dashboard_address="127.0.0.1:0",
                         scheduler_kwargs={"dashboard": dashboard},
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def connect(scheduler: str, timeout: float | None = None):
    """A client of the scheduler at ``scheduler``, or one BatchFolderError line within
    ``timeout`` seconds (default :data:`CONNECT_TIMEOUT`)."""
    from distributed import Client

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise BatchFolderError(f"cannot reach the Dask scheduler at {scheduler} within "
                               f"{timeout:g} s ({type(exc).__name__}); check the address, or "
                               "leave out --scheduler to use a local cluster; nothing was "
                               "changed") from None


def run_batch(tasks: Sequence[Task], out: Path, *, manifest: dict, resume: bool = False,
              force: bool = False, scheduler: str | None = None, n_workers: int | None = None,
              processes: bool = True, progress: bool = True, desc: str = "fits",
              dashboard: bool = False) -> dict[str, dict]:
    """Run the tasks without a record in ``out``; return every record, in task order.

    Order matters for what a failure leaves: the folder is checked, then the scheduler is
    reached, then the lock taken, and only then are old records removed.
    """
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique within a batch")
    files = [record_filename(i) for i in ids]
    if len(set(files)) != len(files):
        raise ValueError("task ids must map to distinct record files")
    check_folder(out, manifest, resume=resume, force=force)
    with ExitStack() as stack:
        client = stack.enter_context(connect(scheduler)) if scheduler else None
        stack.enter_context(folder_lock(out))
        out = prepare_folder(out, manifest, resume=resume, force=force)
        done = load_records(out)
        todo = [task for task in tasks if task.task_id not in done]
        if done and todo:
            log.info("resuming: %d of %d tasks already recorded", len(tasks) - len(todo),
                     len(tasks))
        if todo:
            if client is None:
                client = stack.enter_context(
                    dask_client(None, n_workers, processes, dashboard=dashboard))
            done.update(_run_on(client, todo, out, len(tasks), progress, desc))
    return {task_id: done[task_id] for task_id in ids if task_id in done}


def records_timing(records: Mapping[str, dict], wall_seconds: float) -> dict:
    """A batch's timing from its records, old and new: ``wall_seconds`` is this invocation's
    (a resume that only summarises takes milliseconds), so the records' own times say what the
    batch cost: the sum of their seconds and the span from the first start to the last
    finish (ISO strings; None where no record has one)."""
    seconds = [r["seconds"] for r in records.values() if r.get("seconds") is not None]
    started = [r["started"] for r in records.values() if r.get("started")]
    finished = [r["finished"] for r in records.values() if r.get("finished")]
    return {"wall_seconds": wall_seconds, "task_seconds": float(sum(seconds)),
            "first_started": min(started) if started else None,
            "last_finished": max(finished) if finished else None}


def run_and_write(tasks: Sequence[Task], out: Path, write: Callable[[dict, float], dict], *,
                  manifest: dict, **options) -> dict:
    """``run_batch``, then ``write(records, wall_seconds)``: what every batch job ends with
    (its report from all records, old and new)."""
    start = time.perf_counter()
    records = run_batch(tasks, out, manifest=manifest, **options)
    return write(records, time.perf_counter() - start)


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
            write_json_atomic(out / TASKS_DIR / record_filename(task_id), record)
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
