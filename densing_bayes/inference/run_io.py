"""A run folder: what one fit leaves on disk, written atomically and loaded back with checks.

Layout of RUN/:
    posterior.nc    InferenceData (prior, posterior, posterior_predictive, log_likelihood,
                    sample_stats, observed_data, constant_data); attrs carry the package version,
                    the config hash, the data hash and the resolved spec as JSON
    summary.json    the documented contract (README "summary.json")
    summary.csv     the same numbers as a flat table
    spec.toml       the resolved spec (every default written out): refit with it to reproduce
    posterior_thin.nc  ~1000 draws, compressed: committed for reports/default, loaded when
                    posterior.nc is absent (inference/thin.py)

The folder is assembled in a temporary sibling and renamed into place, so a crash never leaves a
half-written run, and an existing run is replaced only with ``force=True``. Replacing a run keeps
what other jobs stored in it (``sensitivity/``, :data:`OTHER_JOBS_OUTPUT`): a refit must not
delete an hour of refits it did not make (the report flags them when they were computed for
another model: ``ModelSpec.model_hash``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import arviz as az

from densing_bayes import __version__
from densing_bayes.inference.thin import THIN_FILE, thin_note, write_thinned
from densing_bayes.model.spec import ModelSpec, load_spec

POSTERIOR_FILE = "posterior.nc"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
SPEC_FILE = "spec.toml"
#: Entries of a run folder written by other commands, carried over when the run is replaced.
OTHER_JOBS_OUTPUT = ("sensitivity",)


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


def check_writable(out: Path, force: bool) -> None:
    """Refuse before any work is done if ``out`` holds something and ``force`` is off."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise RunFolderError(f"{out} already holds a run; pass --force to replace it")


def write_folder_atomically(out: Path, writers: dict[str, Callable[[Path], None]],
                            force: bool, keep: tuple[str, ...] = ()) -> None:
    """Write every file into a temporary sibling, then swap it in for ``out``.

    Entries of an existing ``out`` named in ``keep`` move into the new folder unchanged.
    """
    out = Path(out)
    check_writable(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, write in writers.items():
            write(staging / name)
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            moved = []
            try:
                for name in keep:
                    if (backup / name).exists() and not (staging / name).exists():
                        (backup / name).rename(staging / name)
                        moved.append(name)
                staging.rename(out)
            except BaseException:  # put the old run back as it was
                for name in moved:
                    (staging / name).rename(backup / name)
                if not out.exists():
                    backup.rename(out)
                raise
            shutil.rmtree(backup)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    }
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def save_run(out: Path, idata: az.InferenceData, spec: ModelSpec, summary: dict,
             summary_rows, *, force: bool = False) -> Path:
    """Write a complete run folder (see module docstring)."""
    def write_json(path: Path) -> None:
        path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")

    write_folder_atomically(out, {
        POSTERIOR_FILE: lambda p: idata.to_netcdf(str(p), engine="h5netcdf"),
        SUMMARY_JSON: write_json,
        SUMMARY_CSV: lambda p: summary_rows.to_csv(p, index=False),
        SPEC_FILE: lambda p: p.write_text(spec.to_toml()),
        THIN_FILE: lambda p: write_thinned(idata, p),  # small enough to commit (inference/thin.py)
    }, force, keep=OTHER_JOBS_OUTPUT)
    return Path(out)


def load_run(folder: Path, *, expected_spec: ModelSpec | None = None) -> FittedRun:
    """Load a run folder; refuse a version or configuration that does not match."""
    folder = Path(folder)
    # The full draws if present, else the thinned copy a fresh clone of the reference run has.
    draws_file = next((n for n in (POSTERIOR_FILE, THIN_FILE) if (folder / n).is_file()),
                      POSTERIOR_FILE)
    missing = [n for n in (draws_file, SUMMARY_JSON, SPEC_FILE) if not (folder / n).is_file()]
    if missing:
        spec_arg = folder / SPEC_FILE if (folder / SPEC_FILE).is_file() else "default"
        raise RunFolderError(f"{folder} is not a complete run folder: missing {missing}; refit "
                             f"it with `densing-bayes run {spec_arg} --out {folder} --force` "
                             "(about 11 minutes for the bundled data)")
    idata = az.from_netcdf(str(folder / draws_file), engine="h5netcdf")
    attrs = idata.posterior.attrs
    spec = load_spec(folder / SPEC_FILE)
    if attrs.get("densing_bayes_version") != __version__:
        raise RunFolderError(
            f"{folder} was written by densing_bayes {attrs.get('densing_bayes_version')}, this is "
            f"{__version__}: refit it (densing-bayes fit {folder / SPEC_FILE} ...) to use it")
    if attrs.get("config_hash") != spec.config_hash():
        raise RunFolderError(f"{folder}: {SPEC_FILE} does not match the configuration the "
                             "posterior was sampled under (config hash differs)")
    if expected_spec is not None and expected_spec.config_hash() != spec.config_hash():
        raise RunFolderError(f"{folder} was fitted under another configuration than the spec "
                             "given (config hash differs)")
    summary = json.loads((folder / SUMMARY_JSON).read_text())
    if thin_note(idata):
        summary["notes"] = [*summary.get("notes", []), thin_note(idata)]
    return FittedRun(folder, idata, spec, summary)
