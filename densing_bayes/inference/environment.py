"""The numerical stack a fit ran on, recorded with every run and batch record.

MCMC trajectories are chaotic: a gradient that differs in its last bit (another NumPy, PyTensor,
numba or nutpie release, another CPU's vector instructions) sends the same seed down another
path, so the same spec and seed give the same *draws* only on the same stack; on another one
they give other draws of the same posterior. Measured 2026-11-30: the misspecification study's
first fits, rerun with the committed spec and seeds in a new environment, drew the same
simulated data but posterior medians up to 6 days apart, with the same coverage verdicts; in
one environment a rerun in a separate process gave bitwise the same draws.
"""
from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

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
    return out


def describe(stack: dict[str, str] | None) -> str:
    """One line for a report: 'Python 3.11.7, numpy 2.4.6, ...'."""
    if not stack:
        return "-"
    return ", ".join(f"{'Python' if k == 'python' else k} {v}" for k, v in stack.items()
                     if k != "machine") + (f" ({stack['machine']})" if "machine" in stack else "")
