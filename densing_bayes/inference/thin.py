"""A thinned, compressed copy of a run's posterior that is small enough to commit.

``posterior.nc`` of the reference run is tens of MB and git-ignored, so on a fresh clone
``load``, ``predict`` and ``report`` would need an 11-minute refit. Every saved run therefore
also gets ``posterior_thin.nc`` (about 7 MB for the bundled data at worst, measured on random
draws of the default run's shapes):

* the posterior and sample stats: about :data:`THIN_DRAWS` draws in total (every k-th draw
  of each chain), without the sampler's unconstrained ``*__`` copies;
* the per-row groups (log-likelihood, predictive of scores and loss rows), which are most of
  the bytes: a quarter of those draws (:data:`ROW_DRAWS`), enough for LOO-PIT and the
  predictive-check figures; the prior predictive and the curve-row predictive are dropped
  (the report skips a figure whose data is absent);
* float32 and zlib compression throughout, except the sampler's metric (:data:`EXACT_GROUPS`):
  it is kept in float64 because ``fit --metric-from`` reads it back to reproduce the run's
  draws, and its SHA-256 names the exact covariance (about 0.6 MB for the default model).

Loading falls back to it when ``posterior.nc`` is absent and says so, because intervals from
1000 draws are a little noisier than from the full run.
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np

#: File name of the thinned copy inside a run folder.
THIN_FILE = "posterior_thin.nc"
#: Total posterior draws (over all chains) kept in the thinned copy.
THIN_DRAWS = 1000
#: Total draws kept of the per-row groups (a subset of the posterior's kept draws).
ROW_DRAWS = 250
#: Groups left out of the thinned copy: nothing that loads, predicts or reports needs them.
DROPPED_GROUPS = ("prior_predictive", "warmup_posterior", "warmup_sample_stats")
#: Per-row predictive variables left out (thousands of rows, used only by the curve-row PPC).
DROPPED_VARIABLES = {"posterior_predictive": ("curve_score_obs",)}
#: Groups with one value per data row and draw.
PER_ROW_GROUPS = ("posterior_predictive", "log_likelihood")
#: Groups kept at full precision: the dense metric that whitened the fit (rounded to float32
#: it no longer matches its recorded SHA-256, and the run's draws could not be reproduced).
EXACT_GROUPS = ("sampler_metric",)
#: Posterior attribute marking a thinned copy (value: the draws of the full run).
THINNED_ATTR = "thinned_from_draws"


def _step(chains: int, draws: int, keep: int) -> int:
    return max(1, int(np.ceil(chains * draws / keep)))


def thin_idata(idata: az.InferenceData, max_draws: int = THIN_DRAWS,
               row_draws: int = ROW_DRAWS) -> az.InferenceData:
    """Every k-th draw of each chain: about ``max_draws`` in total, ``row_draws`` per row."""
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    step = _step(chains, draws, max_draws)
    # a multiple of the posterior's step, so the per-row draws are posterior draws kept too
    row_step = step * _step(chains, len(range(0, draws, step)), row_draws)
    groups = {}
    for name in idata.groups():
        if name in DROPPED_GROUPS:
            continue
        group = idata[name]
        if name in DROPPED_VARIABLES:
            group = group.drop_vars([v for v in DROPPED_VARIABLES[name] if v in group])
        if name == "posterior":
            group = group.drop_vars([v for v in group.data_vars if str(v).endswith("__")])
        if "draw" in group.dims and name != "prior":
            group = group.isel(draw=slice(None, None, row_step if name in PER_ROW_GROUPS
                                          else step))
        if name not in EXACT_GROUPS:
            group = group.assign({v: group[v].astype("float32") for v in group.data_vars
                                  if group[v].dtype == np.float64})
        groups[name] = group
    # assign_attrs copies: the full run's posterior must not be marked as thinned
    groups["posterior"] = groups["posterior"].assign_attrs({THINNED_ATTR: int(chains * draws)})
    return az.InferenceData(**groups)


def write_thinned(idata: az.InferenceData, path: Path, max_draws: int = THIN_DRAWS,
                  row_draws: int = ROW_DRAWS) -> Path:
    """Write the thinned copy of ``idata`` to ``path`` with zlib compression."""
    thinned = thin_idata(idata, max_draws, row_draws)
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
