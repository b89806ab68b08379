"""Where the bundled specs (``models/``) and data folders (``data/``) live.

In a source checkout or an editable install they are the repository's top-level folders; in a
wheel they are shipped inside the package as ``densing_bayes/_bundled`` (symlinks in the
repository, copied by the build). Everything that looks up a bundled name goes through here.
"""

from __future__ import annotations

import difflib
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _bundled_root(kind: str) -> Path:
    inside = _PACKAGE_DIR / "_bundled" / kind
    if inside.is_dir():
        return inside
    return _PACKAGE_DIR.parent / kind


def specs_dir() -> Path:
    """Folder of the bundled model specifications (TOML)."""
    return _bundled_root("models")


def data_dir() -> Path:
    """Folder of the bundled curated data folders."""
    return _bundled_root("data")


def bundled_data_folder(name: str = "default") -> Path:
    """A bundled data folder by name, e.g. ``default`` (OLMo ladder + evaluated models)."""
    folder = data_dir() / name
    if not folder.is_dir():
        available = sorted(p.name for p in data_dir().iterdir() if p.is_dir())
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise FileNotFoundError(f"no bundled data folder '{name}'{hint}; available: {available}")
    return folder


def resolve_data_folder(name_or_path: str | Path) -> Path:
    """A path if it exists, else the bundled data folder of that name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path} is a file, not a data folder; pass the folder that "
                                f"holds it: {path.parent}")
    if isinstance(name_or_path, str) and "/" not in name_or_path:
        return bundled_data_folder(name_or_path)
    raise FileNotFoundError(f"data folder {path} does not exist")
