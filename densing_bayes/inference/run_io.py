"""A run folder: what one fit leaves on disk, written atomically and loaded back with checks.

Layout of RUN/:
    posterior.nc    InferenceData (prior, posterior, posterior_predictive, log_likelihood,
                    sample_stats, observed_data, constant_data); attrs carry the package version,
                    the config hash, the data hash and the resolved spec as JSON
    summary.json    the documented contract (README "summary.json")
    summary.csv     the same numbers as a flat table
    spec.toml       the resolved spec (every default written out): refit with it to reproduce
    run.json        the marker: written by densing_bayes, the config hash and the SHA-256 of every
                    file above but spec.toml (whose content the config hash already binds, so a
                    comment added to it is harmless)
    posterior_thin.nc  ~1000 draws, compressed: committed for reports/default, loaded when
                    posterior.nc is absent (inference/thin.py)

The folder is assembled in a temporary sibling and renamed into place, so a crash never leaves a
half-written run. ``force=True`` replaces only a folder that holds a run (``run.json``, or the
files of a run written before the marker existed); any other non-empty folder is refused, since
it holds someone's files. Replacing a run keeps every folder other jobs stored in it
(``sensitivity/``, ``sbc_posterior/``, anything but the report's ``figures/``:
:func:`kept_on_replace`): a refit must not delete hours of refits it did not make (the report
flags them when they were computed for another model: ``ModelSpec.model_hash``).

The swap is recoverable: the old run is renamed to ``.NAME.old`` and deleted only once the new
one is in place. A kill between the renames leaves that backup, which the next write restores
(when NAME is gone) or reports (when both exist); it is never deleted unasked.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import pandas as pd

from densing_bayes import __version__
from densing_bayes.inference.environment import numerical_stack
from densing_bayes.inference.thin import THIN_FILE, thin_note, write_thinned
from densing_bayes.model.spec import ModelSpec, SpecError, load_spec

log = logging.getLogger("densing_bayes")

POSTERIOR_FILE = "posterior.nc"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
SPEC_FILE = "spec.toml"
MARKER_FILE = "run.json"
#: Entries of a run folder written by other commands (a run written before the marker existed
#: may hold them); replacing a run keeps every subfolder but :data:`RUN_OWN_FOLDERS`.
OTHER_JOBS_OUTPUT = ("sensitivity", "sbc", "sbc_bundled", "misspecification", "robustness")
#: Subfolders a run writes itself (the report's figures), replaced with the run.
RUN_OWN_FOLDERS = ("figures",)
#: What a run folder written before the marker existed may hold (legacy runs stay replaceable).
_LEGACY_RUN_ENTRIES = {POSTERIOR_FILE, SUMMARY_JSON, SUMMARY_CSV, SPEC_FILE, "report.html",
                       "figures", *OTHER_JOBS_OUTPUT}
#: Files whose bytes the marker binds (spec.toml is bound by the config hash instead).
_UNCHECKED = {SPEC_FILE, MARKER_FILE}
#: Errors of a full disk or a file-size limit: reported in one line, never a traceback.
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class RunFolderError(RuntimeError):
    """A run folder that cannot be written or loaded as asked."""


@dataclass(frozen=True)
class FittedRun:
    folder: Path
    idata: az.InferenceData
    spec: ModelSpec
    summary: dict


def data_hash(folder: Path) -> str:
    """SHA-256 over the data folder's CSV files (names and bytes), in name order."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.csv")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ what a folder is
def read_marker(folder: Path) -> dict | None:
    """The folder's ``run.json`` if it is one written by this package, else None."""
    try:
        marker = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(marker, dict) and marker.get("written_by") == "densing_bayes":
        return marker
    return None


def holds_run(folder: Path) -> bool:
    """True when ``folder`` holds a run this package wrote (so ``--force`` may replace it)."""
    folder = Path(folder)
    if read_marker(folder) is not None:
        return True
    # Before the marker: a run's own files only. The committed reference report has no
    # posterior.nc (git-ignored), so spec.toml with either posterior.nc or summary.json counts.
    entries = {p.name for p in folder.iterdir()}
    return (SPEC_FILE in entries and bool({POSTERIOR_FILE, SUMMARY_JSON} & entries)
            and entries <= _LEGACY_RUN_ENTRIES)


def kept_on_replace(out: Path) -> tuple[str, ...]:
    """What replacing the run in ``out`` carries over: every subfolder the run did not write
    (:data:`OTHER_JOBS_OUTPUT` among them). A list of known names let `run --force` delete
    ``sbc_posterior/`` (hours of fits) because nobody had added its name."""
    out = Path(out)
    found = {p.name for p in out.iterdir() if p.is_dir()} if out.is_dir() else set()
    return tuple(sorted(found - set(RUN_OWN_FOLDERS)))


def _backup_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.staging-"


def check_writable(out: Path, force: bool) -> None:
    """Refuse before any work is done: a folder that is not a run, or a run without ``force``.

    Also settles what an interrupted replacement left: a backup ``.NAME.old`` is moved back when
    NAME is missing, and reported when both exist (never deleted here).
    """
    out = Path(out)
    here = Path.cwd().resolve()
    resolved = out.resolve()
    if out.name in ("", ".", "..") or resolved == here or resolved in here.parents:
        raise RunFolderError(f"{out} is the current folder or one above it; name a run folder "
                             "inside it, e.g. --out runs/my_fit")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    _recover_backup(out)
    if not out.exists() or not any(out.iterdir()):
        return
    if not holds_run(out):
        found = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise RunFolderError(f"{out} holds files that are not a densing_bayes run ({found}, ...); "
                             "--force replaces only run folders, so choose another --out")
    if not force:
        raise RunFolderError(f"{out} already holds a run; pass --force to replace it")


def _recover_backup(out: Path) -> None:
    backup = _backup_of(out)
    if not backup.is_dir():
        return
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        backup.rename(out)
        log.warning("restored %s from %s, left by an interrupted replacement", out, backup)
        return
    raise RunFolderError(f"{backup} holds the run that an interrupted replacement of {out} moved "
                         f"aside; check both, then delete one of them (nothing was written)")


def clean_stale_staging(out: Path) -> list[Path]:
    """Delete staging folders of ``out`` whose writer process is gone; return them.

    A staging folder only ever holds this package's own new output (the old run's files stay in
    the run or its backup), so deleting one whose writer died loses nothing.
    """
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    pattern = re.compile(re.escape(_staging_prefix(out)) + r"(\d+)-[^/]*\.tmp")
    for path in out.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d staging folder(s) left by interrupted writes of %s", len(removed), out)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ writing
def disk_full_message(exc: BaseException, where: Path) -> str | None:
    """One line for a full disk or a file-size limit, else None."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL or "No space left on device" in text:
        first = text.splitlines()[0][:120] if text else type(exc).__name__
        return f"no space left to write {where} ({first}); nothing was replaced"
    return None


def write_folder_atomically(out: Path, writers: dict[str, Callable[[Path], None]],
                            force: bool,
                            keep: tuple[str, ...] | Callable[[Path], tuple[str, ...]] = (),
                            marker: dict | None = None) -> None:
    """Write every file into a temporary sibling, then swap it in for ``out``.

    Entries of an existing ``out`` named in ``keep`` move into the new folder unchanged
    (``keep`` may be a function of ``out``, called once a killed swap's backup is restored). The
    marker (``run.json``, with ``marker``'s entries and each file's SHA-256) is written last.
    """
    out = Path(out)
    check_writable(out, force)
    if callable(keep):
        keep = keep(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-",
                                    suffix=".tmp", dir=out.parent))
    staging.chmod(out.parent.stat().st_mode & 0o777)  # mkdtemp's 0700 would hide the run
    try:
        try:
            for name, write in writers.items():
                write(staging / name)
            _write_marker(staging, marker or {})
        except (OSError, RuntimeError) as exc:
            message = disk_full_message(exc, out)
            if message:
                raise RunFolderError(message) from None
            raise
        _swap_in(staging, out, keep)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_marker(staging: Path, extra: dict) -> None:
    files = {p.name: file_sha256(p) for p in sorted(staging.iterdir())
             if p.is_file() and p.name not in _UNCHECKED}
    content = {"written_by": "densing_bayes", "densing_bayes_version": __version__, **extra,
               "sha256": files}
    _write_synced(staging / MARKER_FILE, json.dumps(content, indent=2, sort_keys=True) + "\n")
    _fsync_folder(staging)


def _swap_in(staging: Path, out: Path, keep: tuple[str, ...]) -> None:
    """``staging`` becomes ``out``; the old run stays in ``.NAME.old`` until then."""
    if not out.exists():
        staging.rename(out)
        return
    backup = _backup_of(out)
    out.rename(backup)
    try:
        staging.rename(out)
    except BaseException:  # put the old run back as it was
        if not out.exists():
            backup.rename(out)
        raise
    for name in keep:  # after the swap: a kill here leaves them in the backup, not in staging
        if (backup / name).exists() and not (out / name).exists():
            (backup / name).rename(out / name)
    shutil.rmtree(backup)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600: summary.json and sbc.json are for readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_summary(folder: Path, summary: dict, table: pd.DataFrame | None = None) -> None:
    """Rewrite RUN/summary.json (and summary.csv, given its ``table``) and their checksums in
    the marker, for additions this package makes after the fit (the report's model checks see
    the sensitivity analysis, which the fit could not). The folder is verified first, so a
    tampered run is never re-blessed."""
    folder = Path(folder)
    marker = verify_run_files(folder)
    atomic_write_text(folder / SUMMARY_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    marker["sha256"][SUMMARY_JSON] = file_sha256(folder / SUMMARY_JSON)
    if table is not None:
        atomic_write_text(folder / SUMMARY_CSV, table.to_csv(index=False))
        marker["sha256"][SUMMARY_CSV] = file_sha256(folder / SUMMARY_CSV)
    atomic_write_text(folder / MARKER_FILE, json.dumps(marker, indent=2, sort_keys=True) + "\n")


def stamp(idata: az.InferenceData, spec: ModelSpec, data_folder: Path) -> az.InferenceData:
    """Attributes that make a run reproducible and checkable."""
    resolved = spec.resolved()
    attrs = {
        "densing_bayes_version": __version__,
        "config_hash": spec.config_hash(),
        "data_hash": data_hash(data_folder),
        "data_folder": str(data_folder),
        "spec_json": json.dumps(resolved.to_dict(), sort_keys=True),
        "seed": spec.sampler.seed,
        # the same seed gives the same draws only on the same stack (inference.environment)
        "numerical_stack": json.dumps(numerical_stack(), sort_keys=True),
    }
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def check_free_space(out: Path, idata: az.InferenceData, margin: float = 1.2) -> None:
    """Refuse before writing when the posterior cannot fit on the disk.

    HDF5 running out of space mid-write can crash the interpreter at exit, so a write that will
    not fit is refused up front with one line.
    """
    needed = int(sum(idata[g].nbytes for g in idata.groups()) * margin) + (1 << 20)
    parent = Path(out).parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise RunFolderError(f"not enough free space to write {out}: about {needed / 1e6:.0f} MB "
                             f"needed, {free / 1e6:.0f} MB free; nothing was replaced")


def save_run(out: Path, idata: az.InferenceData, spec: ModelSpec, summary: dict,
             summary_rows, *, force: bool = False) -> Path:
    """Write a complete run folder (see module docstring)."""
    def write_json(path: Path) -> None:
        _write_synced(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")

    check_free_space(out, idata)
    write_folder_atomically(out, {
        POSTERIOR_FILE: lambda p: idata.to_netcdf(str(p), engine="h5netcdf"),
        SUMMARY_JSON: write_json,
        SUMMARY_CSV: lambda p: summary_rows.to_csv(p, index=False),
        SPEC_FILE: lambda p: _write_synced(p, spec.to_toml()),
        THIN_FILE: lambda p: write_thinned(idata, p),  # small enough to commit (inference/thin.py)
    }, force, keep=kept_on_replace, marker={"kind": "run", "config_hash": spec.config_hash()})
    return Path(out)


# ------------------------------------------------------------------------------ loading
def verify_run_files(folder: Path) -> dict:
    """The marker, after checking every file it lists against its SHA-256."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise RunFolderError(f"{folder} has no readable {MARKER_FILE} (not a run folder, or one "
                             "written before runs carried checksums): refit it")
    sums = marker.get("sha256")
    if (not isinstance(sums, dict) or SUMMARY_JSON not in sums
            or not {POSTERIOR_FILE, THIN_FILE} & set(sums)):
        raise RunFolderError(f"{folder / MARKER_FILE} lists no checksums for the run's files: "
                             "refit it")
    for name, expected in sorted(sums.items()):
        path = folder / name
        if (name == POSTERIOR_FILE and not path.exists() and THIN_FILE in sums
                and (folder / THIN_FILE).is_file()):
            continue  # the full draws are not committed; the thinned copy stands in, checked
        if "/" in name or name.startswith(".") or not path.is_file():
            raise RunFolderError(f"{folder}: {name} is missing; the run folder is incomplete")
        if file_sha256(path) != expected:
            raise RunFolderError(f"{folder}: {name} was changed after the run was written "
                                 "(checksum differs); restore it or refit")
    return marker


def _external_data(path: Path) -> str | None:
    """A dataset of the HDF5 file that reads its bytes from elsewhere (external storage or a
    virtual dataset), or None. Such a dataset makes a crafted posterior.nc read local files."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            found.append(name)

    with h5py.File(path, "r") as fh:
        fh.visititems(visit)
    return found[0] if found else None


def load_run(folder: Path, *, expected_spec: ModelSpec | None = None) -> FittedRun:
    """Load a run folder; refuse a version, configuration or file content that does not match."""
    folder = Path(folder)
    # The full draws if present, else the thinned copy a fresh clone of the reference run has.
    draws_file = next((n for n in (POSTERIOR_FILE, THIN_FILE) if (folder / n).is_file()),
                      POSTERIOR_FILE)
    missing = [n for n in (draws_file, SUMMARY_JSON, SPEC_FILE) if not (folder / n).is_file()]
    if missing:
        spec_arg = folder / SPEC_FILE if (folder / SPEC_FILE).is_file() else "default"
        raise RunFolderError(f"{folder} is not a complete run folder: missing {missing}; refit "
                             f"it with `densing-bayes run {spec_arg} --out {folder} --force`")
    marker = verify_run_files(folder)
    try:
        external = _external_data(folder / draws_file)
        if external is not None:
            raise RunFolderError(f"{folder / draws_file}: dataset '{external}' reads its "
                                 "data from other files (HDF5 external or virtual storage); "
                                 "this package never writes that, so it is refused")
        idata = az.from_netcdf(str(folder / draws_file), engine="h5netcdf")
    except RunFolderError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/xarray raise OSError, ValueError, KeyError...
        raise RunFolderError(f"{folder / draws_file} cannot be read "
                             f"({type(exc).__name__}: {str(exc)[:120]}); refit the run") from None
    attrs = idata.posterior.attrs
    try:
        spec = load_spec(folder / SPEC_FILE)
    except SpecError as exc:
        raise RunFolderError(f"{folder / SPEC_FILE} is not a valid spec: "
                             f"{str(exc).splitlines()[0]}") from None
    if attrs.get("densing_bayes_version") != __version__:
        raise RunFolderError(
            f"{folder} was written by densing_bayes {attrs.get('densing_bayes_version')}, this is "
            f"{__version__}: refit it (densing-bayes fit {folder / SPEC_FILE} ...) to use it")
    if attrs.get("config_hash") != spec.config_hash() or \
            marker.get("config_hash") != spec.config_hash():
        raise RunFolderError(f"{folder}: {SPEC_FILE} does not match the configuration the "
                             "posterior was sampled under (config hash differs)")
    if expected_spec is not None and expected_spec.config_hash() != spec.config_hash():
        raise RunFolderError(f"{folder} was fitted under another configuration than the spec "
                             "given (config hash differs)")
    try:
        summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{folder / SUMMARY_JSON} cannot be read ({exc}); refit the run") \
            from None
    if thin_note(idata):
        summary["notes"] = [*summary.get("notes", []), thin_note(idata)]
    return FittedRun(folder, idata, spec, summary)
