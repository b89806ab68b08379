"""The numerical stack a fit ran on, recorded with every run and batch record.

MCMC trajectories are chaotic: a gradient that differs in its last bit (another NumPy, PyTensor,
numba or nutpie release, another CPU's vector instructions) sends the same seed down another
path, so the same spec and seed give the same *draws* only on the same stack; on another one
they give other draws of the same posterior. Measured 2026-11-30: the misspecification study's
first fits, rerun with the committed spec and seeds in a new environment, drew the same
simulated data but posterior medians up to 6 days apart, with the same coverage verdicts; in
one environment a rerun in a separate process gave bitwise the same draws.

The package's version number does not change with every commit, and a commit that rewrites an
expression of the model without changing it (the same model hash) also sends a seed down
another path: measured 2026-12-01, the bundled-design SBC's first simulation, refitted with
its seed a day and several commits later, gave other ranks (ESS 104 against 38); refitted
twice on one commit, the same draws. So the stack names the package's git commit too.
"""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

#: Distributions whose versions decide the draws (the model's graph, its compiled gradient,
#: the sampler) or the summaries (ArviZ, SciPy).
STACK = ("densing_bayes", "numpy", "scipy", "pytensor", "pymc", "nutpie", "numba", "arviz")


@lru_cache(maxsize=1)
def numerical_stack() -> dict[str, str]:
    """Python, the machine and the version of each distribution in ``STACK`` ("not installed"
    when absent)."""
    out = {"python": platform.python_version(),
           "machine": f"{platform.system()} {platform.machine()}"}
    for name in STACK:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["densing_bayes_commit"] = source_commit()
    return out


def source_commit(package_dir: Path | None = None) -> str:
    """The git commit the package's code comes from, with "-dirty" when its files differ from
    it; "unknown" when the package is not a tracked file of a git checkout (an installed
    wheel, or a virtual environment that happens to sit inside someone's repository). Read
    from the checkout when first asked in a process: a commit made while a long batch runs
    is not the code its workers loaded, so commit between batches."""
    here = Path(package_dir) if package_dir else Path(__file__).resolve().parents[1]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True,
                              timeout=10, check=False)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return "unknown"
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def describe(stack: dict[str, str] | None) -> str:
    """One line for a report: 'Python 3.11.7, numpy 2.4.6, ...'."""
    if not stack:
        return "-"
    return ", ".join(f"{'Python' if k == 'python' else k} {v}" for k, v in stack.items()
                     if k != "machine") + (f" ({stack['machine']})" if "machine" in stack else "")
