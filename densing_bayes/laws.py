"""Closed-form pieces of the Densing Law chain, in the paper's own parameterisation.

These are the exact equations of Xiao et al. (2024), section 2 of
``docs``/densing-law-method.md, written once with NumPy so that the simulator, the paper's
least-squares baseline, the tests and the posterior post-processing all share one definition.
The PyMC model uses a centred re-parameterisation of the same laws (``densing_bayes.model``);
a test checks that both agree at the same parameter values.

Conventions
-----------
* ``N`` parameters and ``D`` training tokens are plain counts (not billions).
* Loss law:  L(N, D) = a N^-alpha + b D^-beta + E           (E = 0 is the paper's law)
* Sigmoid:   S(L) = c / (1 + exp(gamma (L - l))) + d        (gamma > 0: score falls as loss rises)
* Inverses return NaN where no finite inverse exists (a score outside the open interval
  (d, c + d), or a loss at or below the asymptote E + b D0^-beta): the caller decides what a
  missing inverse means, nothing is clipped here.
"""

from __future__ import annotations

import numpy as np

#: The paper's fixed data budget for effective sizes: 1T tokens.
D0_TOKENS = 1.0e12

#: ChatGPT's public release, the changepoint of the density trend.
CHATGPT_RELEASE = np.datetime64("2022-11-30")

#: Days per year used to convert slopes (Julian year, 365.25 days).
DAYS_PER_YEAR = 365.25


def loss_law(N, D, a, alpha, b, beta, E=0.0):
    """Expected conditional loss of a reference model with ``N`` parameters and ``D`` tokens."""
    N = np.asarray(N, dtype=float)
    D = np.asarray(D, dtype=float)
    return a * N ** (-alpha) + b * D ** (-beta) + E


def score_from_loss(L, c, gamma, l, d):
    """Benchmark score predicted from loss by the paper's decreasing sigmoid."""
    L = np.asarray(L, dtype=float)
    # exp(gamma (L - l)) written through logaddexp to stay finite for large losses.
    return c * np.exp(-np.logaddexp(0.0, gamma * (L - l))) + d


def loss_from_score(S, c, gamma, l, d):
    """Invert the sigmoid: the loss at which the benchmark's curve reaches score ``S``.

    Defined only for d < S < c + d; NaN elsewhere.
    """
    S = np.asarray(S, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (S > d) & (S < c + d)
        ratio = np.where(inside, c / (S - d) - 1.0, np.nan)
        return np.where(inside, l + np.log(ratio) / gamma, np.nan)


def params_from_loss(L, a, alpha, b, beta, E=0.0, D=D0_TOKENS):
    """Invert the loss law in N at a fixed data budget ``D`` (the paper's D0 = 1T tokens).

    Defined only where L exceeds the asymptote E + b D^-beta that no model size can beat at
    that data budget; NaN elsewhere.
    """
    L = np.asarray(L, dtype=float)
    excess = L - b * np.asarray(D, dtype=float) ** (-beta) - E
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(excess > 0, (excess / a) ** (-1.0 / alpha), np.nan)


def effective_params(S, *, a, alpha, b, beta, c, gamma, l, d, E=0.0, D=D0_TOKENS):
    """Effective parameter size N_hat(S): the reference-family size that scores ``S`` at ``D``."""
    return params_from_loss(loss_from_score(S, c, gamma, l, d), a, alpha, b, beta, E=E, D=D)


def doubling_time_days(slope_per_year):
    """Doubling time (days) of a quantity whose natural log grows ``slope_per_year`` per year.

    Negative or zero slopes have no doubling time: NaN, never a negative "doubling".
    """
    slope = np.asarray(slope_per_year, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(slope > 0, np.log(2.0) / slope * DAYS_PER_YEAR, np.nan)


def doubling_time_ratio(slope_after, slope_before):
    """How many times faster density doubles after the changepoint than before: T_before /
    T_after, on the extended half-line [0, +inf].

    Where both slopes are positive it is slope_after / slope_before (the paper's "about 50%
    faster" is 0.0073 / 0.0048). Where only the slope after is positive the density doubled
    after and never before: +inf, a faster doubling, not a negative number. Where only the
    slope before is positive: 0. Where neither is, no doubling time exists on either side and
    the ratio is undefined (NaN). So ratio > 1 exactly when slope_after > max(slope_before, 0).
    The plain slope ratio is negative when the slope before is, and a faster "after" then
    reads as a deceleration; that is why this is the headline's acceleration ratio.
    """
    after = np.asarray(slope_after, dtype=float)
    before = np.asarray(slope_before, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        both = after / before
    return np.select([(after > 0) & (before > 0), after > 0, before > 0],
                     [both, np.inf, 0.0], default=np.nan)


def years_since(dates, origin=CHATGPT_RELEASE):
    """Signed time in years between ``dates`` and ``origin`` (ChatGPT's release by default)."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    return (dates - np.datetime64(origin, "D")).astype(float) / DAYS_PER_YEAR
