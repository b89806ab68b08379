"""MCMC diagnostics that never pass silently.

ArviZ computes R-hat, bulk/tail ESS and E-BFMI; this module reduces them to the worst value over
every *sampled* parameter (deterministics are functions of those and would only repeat them),
compares them with the spec's thresholds and says, for each miss, what to try.

R-hat compares chains, so with one chain it does not exist: it is reported as unavailable
(``max_rhat`` NaN, ``None`` in summary.json) and listed as a miss, never computed from nothing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import arviz as az
import numpy as np

from densing_bayes.model.spec import Thresholds

ADVICE = {
    "divergences": "divergent transitions bias the posterior: raise [sampler] target_accept "
                   "(e.g. 0.95-0.99) or check the priors of scale parameters near zero",
    "rhat_unavailable": "convergence across chains was not checked: run 2 or more chains",
    "max_rhat": "chains disagree: run more tune/draws, or look for multimodality in rank plots",
    "min_ess_bulk": "too few effective draws for medians: raise [sampler] draws",
    "min_ess_tail": "too few effective draws for interval ends: raise [sampler] draws",
    "min_bfmi": "low E-BFMI: heavy-tailed energy, usually a funnel; consider tighter scale priors",
}


@dataclass(frozen=True)
class Diagnostics:
    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    min_bfmi: float
    worst_rhat_parameter: str
    worst_ess_parameter: str

    def to_dict(self) -> dict:
        return asdict(self)

    def failures(self, thresholds: Thresholds) -> list[str]:
        """One human-readable line per missed threshold, with what to try."""
        rhat_missing = not np.isfinite(self.max_rhat)
        checks = [
            ("divergences", self.divergences > thresholds.max_divergences,
             f"{self.divergences} divergences (allowed {thresholds.max_divergences})"),
            ("rhat_unavailable", rhat_missing, "R-hat unavailable (one chain)"),
            ("max_rhat", not rhat_missing and not self.max_rhat <= thresholds.max_rhat,
             f"max R-hat {self.max_rhat:.4f} > {thresholds.max_rhat} "
             f"({self.worst_rhat_parameter})"),
            ("min_ess_bulk", not self.min_ess_bulk >= thresholds.min_ess,
             f"min bulk ESS {self.min_ess_bulk:.0f} < {thresholds.min_ess:.0f} "
             f"({self.worst_ess_parameter})"),
            ("min_ess_tail", not self.min_ess_tail >= thresholds.min_ess,
             f"min tail ESS {self.min_ess_tail:.0f} < {thresholds.min_ess:.0f}"),
            ("min_bfmi", not self.min_bfmi >= thresholds.min_bfmi,
             f"min E-BFMI {self.min_bfmi:.2f} < {thresholds.min_bfmi}"),
        ]
        return [f"{msg}: {ADVICE[key]}" for key, failed, msg in checks if failed]


def sampled_variables(idata: az.InferenceData, free_names: list[str]) -> list[str]:
    """Posterior variables that the sampler moved (free RVs in their constrained form)."""
    return [v for v in free_names if v in idata.posterior.data_vars]


def _worst(dataset, reducer) -> tuple[float, str]:
    """The worst finite value and its variable; (NaN, "n/a") when none is finite (one chain)."""
    values = {name: float(reducer(da.values)) for name, da in dataset.data_vars.items()
              if np.isfinite(da.values).any()}
    if not values:
        return float("nan"), "n/a"
    name = (max if reducer is np.nanmax else min)(values, key=values.get)
    return values[name], name


def diagnose(idata: az.InferenceData, var_names: list[str]) -> Diagnostics:
    """Worst-case diagnostics over ``var_names`` (the sampled parameters)."""
    post = idata.posterior[var_names]
    if post.sizes.get("chain", 1) < 2:
        rhat, rhat_name = float("nan"), "n/a"
    else:
        rhat, rhat_name = _worst(az.rhat(post), np.nanmax)
    ess_bulk, ess_name = _worst(az.ess(post, method="bulk"), np.nanmin)
    ess_tail, _ = _worst(az.ess(post, method="tail"), np.nanmin)
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in stats else float("nan")
    return Diagnostics(divergences, rhat, ess_bulk, ess_tail, bfmi, rhat_name, ess_name)


#: How many coordinates :func:`divergence_locations` reports per fit.
DIVERGENCE_TOP = 5


def unconstrained_variable(coordinate: str) -> str:
    """The variable an unconstrained coordinate belongs to: nutpie names element i of a
    vector ``name_i`` (``name_i.j`` for a matrix), a scalar by its name alone."""
    return re.sub(r"_\d+(\.\d+)*$", "", coordinate)


#: Family-wise level at which a coordinate's divergence starts count as sitting in a tail.
DIVERGENCE_ALPHA = 0.05


def divergence_locations(idata: az.InferenceData, top: int = DIVERGENCE_TOP) -> list[dict]:
    """Where the divergent trajectories of a fit start, as the coordinates whose starts sit
    furthest into one tail of their own posterior: for each unconstrained coordinate, the
    mean posterior percentile of the starts (0.5 when they sit anywhere), the share of
    starts in its outer 10%, and z, that mean's distance from 0.5 in units of its SD when k
    starts fall anywhere (sqrt(1 / 12k)). ``in_tail``: |z| beyond the Bonferroni bound at
    :data:`DIVERGENCE_ALPHA` over all coordinates, since with hundreds of coordinates some sit
    at an extreme by chance (a fit with 2 divergences can never pass it: |z| <= 2.45). A
    funnel shows as a scale's log at one end and its group's coordinates at the other. The
    starts of one chain are not independent draws, so z is a guide, not a test. Needs
    nutpie's ``store_divergences`` and ``store_unconstrained``; returns [] without them or
    without divergences."""
    from scipy import stats as sps

    stats = idata.sample_stats
    if "divergence_start" not in stats or "unconstrained_draw" not in stats:
        return []
    diverging = np.asarray(stats["diverging"].values, bool).ravel()
    if not diverging.any():
        return []
    names = [str(n) for n in stats["unconstrained_parameter"].values]
    draws = np.sort(np.asarray(stats["unconstrained_draw"].values, float)
                    .reshape(-1, len(names)), axis=0)
    starts = np.asarray(stats["divergence_start"].values, float).reshape(-1, len(names))[diverging]
    k = starts.shape[0]
    bound = float(sps.norm.ppf(1.0 - DIVERGENCE_ALPHA / (2 * len(names))))
    rows = []
    for j, name in enumerate(names):
        pct = np.searchsorted(draws[:, j], starts[:, j]) / draws.shape[0]
        z = (float(pct.mean()) - 0.5) / np.sqrt(1.0 / (12.0 * k))
        rows.append({"coordinate": name, "variable": unconstrained_variable(name),
                     "mean_percentile": float(pct.mean()),
                     "outer_share": float(np.mean((pct < 0.05) | (pct > 0.95))),
                     "z": float(z), "in_tail": bool(abs(z) > bound)})
    rows.sort(key=lambda r: -abs(r["mean_percentile"] - 0.5))
    return rows[:top]
