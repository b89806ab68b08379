"""A thinned, compressed copy of a run's posterior that is small enough to commit.

``posterior.nc`` of the reference run is tens of MB and git-ignored, so on a fresh clone
``load``, ``predict`` and ``report`` would need an 11-minute refit. Every saved run therefore
also gets ``posterior_thin.nc``: about :data:`THIN_DRAWS` draws in total, per-row groups stored
as float32, the prior predictive and the curve-row predictive dropped (the report's figures
skip what is absent), zlib-compressed. Loading falls back to it when ``posterior.nc`` is absent
and says so, because intervals from 1000 draws are a little noisier than from the full run.
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np

#: File name of the thinned copy inside a run folder.
THIN_FILE = "posterior_thin.nc"
#: Total posterior draws (over all chains) kept in the thinned copy.
THIN_DRAWS = 1000
#: Groups left out of the thinned copy: nothing that loads, predicts or reports needs them.
DROPPED_GROUPS = ("prior_predictive", "warmup_posterior", "warmup_sample_stats")
#: Per-row predictive variables left out (thousands of rows, used only by the curve-row PPC).
DROPPED_VARIABLES = {"posterior_predictive": ("curve_score_obs",)}
#: Groups with one value per data row and draw: float32 halves them at no cost to a check.
PER_ROW_GROUPS = ("posterior_predictive", "log_likelihood")
#: Posterior attribute marking a thinned copy (value: the draws of the full run).
THINNED_ATTR = "thinned_from_draws"


def thin_idata(idata: az.InferenceData, max_draws: int = THIN_DRAWS) -> az.InferenceData:
    """Every k-th draw of each chain so that about ``max_draws`` remain in total."""
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    step = max(1, int(np.ceil(chains * draws / max_draws)))
    groups = {}
    for name in idata.groups():
        if name in DROPPED_GROUPS:
            continue
        group = idata[name]
        if name in DROPPED_VARIABLES:
            group = group.drop_vars([v for v in DROPPED_VARIABLES[name] if v in group])
        if name in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive"):
            group = group.isel(draw=slice(None, None, step))
        if name in PER_ROW_GROUPS:
            group = group.assign({v: group[v].astype("float32") for v in group.data_vars
                                  if group[v].dtype == np.float64})
        groups[name] = group
    # assign_attrs copies: the full run's posterior must not be marked as thinned
    groups["posterior"] = groups["posterior"].assign_attrs({THINNED_ATTR: int(chains * draws)})
    return az.InferenceData(**groups)


def write_thinned(idata: az.InferenceData, path: Path, max_draws: int = THIN_DRAWS) -> Path:
    """Write the thinned copy of ``idata`` to ``path`` with zlib compression."""
    thinned = thin_idata(idata, max_draws)
    thinned.to_netcdf(str(path), engine="h5netcdf", compress=True)
    return Path(path)


def thinned_from(idata: az.InferenceData) -> int | None:
    """Draws of the full run if ``idata`` is a thinned copy, else None."""
    value = idata.posterior.attrs.get(THINNED_ATTR)
    return None if value is None else int(value)


def thin_note(idata: az.InferenceData) -> str | None:
    """One line for summaries and reports when the draws come from the thinned copy."""
    full = thinned_from(idata)
    if full is None:
        return None
    kept = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    return (f"posterior: thinned copy {THIN_FILE} ({kept} of {full} draws); intervals are a "
            "little noisier than the full run's; refit with `densing-bayes run` for all draws")
