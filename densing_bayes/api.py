"""The Python API: one call to fit, one object to read, plot, save and report.

In the style of pymc-marketing and CausalPy: ``fit`` returns a :class:`DensingFit` that carries
the ``InferenceData`` and answers ``summary()``, ``predict()``, ``plot_*()``, ``save()`` and
``report()``; ``load`` gives the same object back from a run folder. The CLI is a thin layer
over these functions. This module sits on top of every layer; nothing below imports it.

    >>> import densing_bayes as db
    >>> fit = db.fit("default", draws=300, tune=300, chains=2)   # doctest: +SKIP
    >>> fit.summary()                                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from densing_bayes import resources
from densing_bayes.analysis.predict import predict_loss, predict_scores
from densing_bayes.analysis.summary import summary_table
from densing_bayes.data import load as _load
from densing_bayes.data.schema import DensingData
from densing_bayes.inference.run_io import FittedRun, check_writable, load_run, save_run, stamp
from densing_bayes.inference.thin import thin_note
from densing_bayes.model import spec as _spec
from densing_bayes.model.inputs import ModelInputs
from densing_bayes.model.spec import ModelSpec

__all__ = ["DensingFit", "fit", "load", "load_data", "load_spec", "SAMPLER_KEYS"]

log = logging.getLogger("densing_bayes")

#: Keyword arguments of :func:`fit` that override the spec's ``[sampler]`` section.
SAMPLER_KEYS = ("draws", "tune", "chains", "seed", "backend")
#: Rows of :meth:`DensingFit.summary`: the quantities the analysis is about.
KEY_QUANTITIES = ("doubling_time_days", "doubling_time_days_pre", "doubling_time_months",
                  "doubling_time_months_pre", "slope_per_day", "slope_per_day_pre",
                  "slope_difference_per_year", "doubling_time_ratio", "changepoint_shift_days",
                  "effective_params", "density")


def load_data(name_or_path: str | Path | DensingData = "default") -> DensingData:
    """A validated data folder: a bundled name (``"default"``, ``"open_lm"``) or a path.

    Raises :class:`~densing_bayes.data.schema.DataValidationError` listing every problem.
    """
    if isinstance(name_or_path, DensingData):
        return name_or_path
    return _load.load_data(resources.resolve_data_folder(name_or_path))


def load_spec(name_or_path: str | Path | ModelSpec | Mapping = "default") -> ModelSpec:
    """A validated model spec: a bundled name (``"default"``), a TOML path, a dict or a spec."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return _spec.parse_spec(dict(name_or_path))
    return _spec.load_spec(name_or_path)


def _with_sampler(spec: ModelSpec, sampler: Mapping[str, Any]) -> ModelSpec:
    unknown = sorted(set(sampler) - set(SAMPLER_KEYS))
    if unknown:
        raise TypeError(f"fit() got unknown keyword(s) {unknown}; sampler settings are "
                        f"{list(SAMPLER_KEYS)}")
    chosen = {k: v for k, v in sampler.items() if v is not None}
    return spec.with_overrides({"sampler": chosen}) if chosen else spec


def _data_for(spec: ModelSpec, data) -> DensingData:
    """The data argument, or the spec's own data folder; a clear error when it has none here."""
    if data is not None:
        return load_data(data)
    try:
        return load_data(spec.data.folder)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"spec '{spec.name}' needs --data (Python: data=...): its data folder "
            f"'{spec.data.folder}' is not here ({exc}); create one with `densing-bayes simulate "
            "--out FOLDER`, then pass --data FOLDER") from None


def fit(spec: str | Path | ModelSpec | Mapping = "default", data=None, *,
        progress: bool = True, save_to: str | Path | None = None, force: bool = False,
        metric_from: str | Path | None = None, **sampler) -> DensingFit:
    """Fit ``spec`` to ``data`` and return a :class:`DensingFit`.

    ``spec`` and ``data`` are bundled names, paths or objects (``data=None``: the spec's data
    folder). ``draws``, ``tune``, ``chains``, ``seed`` and ``backend`` override the spec's
    sampler. With ``save_to``, an occupied folder is refused *before* sampling (unless
    ``force``) and the run is written there afterwards. ``metric_from``: a run folder whose
    saved dense metric whitens this fit instead of the cache's (same spec, data and seed: the
    same draws).
    """
    from densing_bayes.inference.metric import metric_from_run
    from densing_bayes.workflow import fit_data

    metric = None if metric_from is None else metric_from_run(metric_from)
    spec = _with_sampler(load_spec(spec), sampler)
    if data is not None:  # the saved spec.toml must name the data it was fitted to
        label = str(data) if isinstance(data, (str, Path)) else str(load_data(data).folder)
        if label != spec.data.folder:
            spec = spec.with_overrides({"data": {"folder": label}})
    data = _data_for(spec, data)  # raises DataValidationError before anything is written
    if save_to is not None:
        check_writable(Path(save_to), force)
    result = fit_data(data, spec, progress=progress, metric=metric)
    fitted = DensingFit(result.idata, spec, data=data, summary=result.summary,
                        inputs=result.inputs)
    if save_to is not None:
        fitted.save(save_to, force=force)
    return fitted


def load(run_folder: str | Path) -> DensingFit:
    """A saved run folder as a :class:`DensingFit` (the thinned copy if posterior.nc is absent)."""
    run = load_run(Path(run_folder))
    fit = DensingFit(run.idata, run.spec, summary=run.summary, folder=run.folder)
    fit._loaded = run  # what report() may reuse instead of reading the folder again
    return fit


class DensingFit:
    """A fitted model: the draws (``idata``), the spec, the data and everything derived.

    Plot methods return a matplotlib ``Figure`` that is not attached to pyplot: in a notebook
    make it the cell's last value (or ``display(fig)``); in a script, ``fig.savefig(...)``.
    """

    def __init__(self, idata: az.InferenceData, spec: ModelSpec, *,
                 data: DensingData | None = None, summary: dict | None = None,
                 inputs: ModelInputs | None = None, folder: Path | None = None):
        self.idata = idata
        self.spec = spec
        self._data = data
        self._summary = summary
        self._inputs = inputs
        self.folder = None if folder is None else Path(folder)
        self._loaded: FittedRun | None = None

    def __repr__(self) -> str:
        dt = (self._summary or {}).get("doubling_time_days") or {}
        median = dt.get("median")
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        answer = f", doubling time {median:.0f} days" if median else ""
        return f"DensingFit(spec={self.spec.name!r}{answer}{where})"

    # ------------------------------------------------------------------ what was fitted
    @property
    def data(self) -> DensingData | None:
        """The data fitted; for a loaded run, re-read from the folder named in summary.json."""
        if self._data is None and self.folder is not None:
            folder = Path(self.summary_dict().get("data_folder") or "")
            if folder.is_dir():
                self._data = _load.load_data(folder)
        return self._data

    @property
    def inputs(self) -> ModelInputs:
        """The per-row covariates the model saw (rebuilt from the run for a loaded fit)."""
        if self._inputs is None:
            from densing_bayes.presentation.report import plot_inputs

            self._inputs = plot_inputs(FittedRun(self.folder or Path("."), self.idata,
                                                 self.spec, self.summary_dict()))
        return self._inputs

    @property
    def has_models(self) -> bool:
        """Whether evaluated models (so a density trend) were fitted, not the loss law alone."""
        return "log_density" in self.idata.posterior

    @property
    def thinned(self) -> bool:
        """True when the draws come from the committed thinned copy (posterior_thin.nc)."""
        return thin_note(self.idata) is not None

    # ------------------------------------------------------------------ numbers
    def summary_dict(self) -> dict:
        """The summary.json contract (README "summary.json") as a dict."""
        if self._summary is None:
            raise ValueError("this fit has no summary; make it with densing_bayes.fit or .load")
        return self._summary

    def summary(self) -> pd.DataFrame:
        """Key quantities with median, lower, upper and ci_prob (equal-tailed interval).

        Doubling times after/before the changepoint, slopes, the acceleration ratio and each
        evaluated model's effective size and density; for the loss law alone, the per-benchmark
        loss-law parameters. A doubling time unbounded above (some draws do not grow) has
        ``upper = inf``. ``attrs["note"]`` says when the draws are the thinned copy.
        """
        table = summary_table(self.summary_dict())
        if self.has_models:
            table = table[table["quantity"].isin(KEY_QUANTITIES)].drop(columns="benchmark")
        else:
            table = table[table["benchmark"] != ""].drop(columns="model")
        table = table[[c for c in table.columns if c != "ci_prob"] + ["ci_prob"]].copy()
        # summary.json writes an interval unbounded above (draws with no growth) as null
        unbounded = (table["quantity"].str.startswith("doubling_time") & table["upper"].isna()
                     & table["median"].notna())
        table.loc[unbounded, "upper"] = np.inf
        table = table.reset_index(drop=True)
        note = thin_note(self.idata)
        if note:
            table.attrs["note"] = note
        return table

    def predict(self, *, params: float, tokens: float, ci_prob: float | None = None,
                seed: int | None = None, fmt: str = "rc") -> pd.DataFrame:
        """Posterior predictive per benchmark of a new reference-family model (N, D).

        Scores, in scoring format ``fmt`` ("rc": cloze, the reference family's protocol; "mc":
        multiple choice, when the fit has that curve), when the sigmoid was fitted; the loss
        itself when the loss law was fitted alone.
        """
        ci_prob = self.spec.ci_prob if ci_prob is None else ci_prob
        seed = self.spec.sampler.seed if seed is None else seed
        if "gamma" in self.idata.posterior:
            return predict_scores(self.idata, params=params, tokens=tokens, ci_prob=ci_prob,
                                  seed=seed, fmt=fmt)
        return predict_loss(self.idata, params=params, tokens=tokens, ci_prob=ci_prob, seed=seed)

    # ------------------------------------------------------------------ figures
    @property
    def _ci(self) -> float:
        return float(self.summary_dict().get("ci_prob", self.spec.ci_prob))

    def _needs_models(self, what: str) -> None:
        if not self.has_models:
            raise ValueError(f"{what} needs evaluated models; this fit is the loss law alone")

    def plot_density_trend(self, **kwargs):
        """Figure 1: density of every model against release date, with the fitted frontier."""
        from densing_bayes.presentation import plots

        self._needs_models("plot_density_trend")
        return plots.plot_density_trend(idata=self.idata, summary=self.summary_dict(),
                                        ci_prob=self._ci, **kwargs)

    def plot_doubling_time(self):
        """Figure 2: posterior of the doubling time (and acceleration) beside the paper's."""
        from densing_bayes.presentation import plots

        self._needs_models("plot_doubling_time")
        return plots.plot_doubling_time(idata=self.idata, ci_prob=self._ci)

    def plot_effective_size(self):
        """Figure 3: effective size and density per model (forest plot)."""
        from densing_bayes.presentation import plots

        self._needs_models("plot_effective_size")
        return plots.plot_effective_size(idata=self.idata, summary=self.summary_dict(),
                                         ci_prob=self._ci)

    def plot_loss_law(self):
        """The fitted loss law per benchmark against the reference runs."""
        from densing_bayes.presentation import plots

        return plots.plot_loss_law(idata=self.idata, inputs=self.inputs, ci_prob=self._ci)

    def plot_loss_score(self):
        """The fitted loss-to-score sigmoid per benchmark."""
        from densing_bayes.presentation import plots

        if "gamma" not in self.idata.posterior:
            raise ValueError("plot_loss_score needs curve rows (loss, score); this fit has none")
        return plots.plot_loss_score(idata=self.idata, inputs=self.inputs, ci_prob=self._ci)

    def plot_ppc(self):
        """Posterior predictive checks of every observed variable present."""
        from densing_bayes.presentation import plots

        return plots.plot_ppc(idata=self.idata, ci_prob=self._ci, seed=self.spec.sampler.seed)

    def plot_prior_posterior(self, var_names=None):
        """Prior against posterior of the key parameters."""
        from densing_bayes.presentation import plots

        return plots.plot_prior_posterior(idata=self.idata, var_names=var_names)

    def plot_loo_pit(self):
        """LOO-PIT of the evaluated-model scores (calibration)."""
        from densing_bayes.analysis.checks import CheckContext
        from densing_bayes.presentation import plots

        self._needs_models("plot_loo_pit")
        # the checks' LOO-PIT: with pair effects, the pair's effect is integrated out
        context = CheckContext(idata=self.idata, spec=self.spec, summary=self.summary_dict())
        return plots.plot_loo_pit(pit=context.loo_pit, var_name="score_obs", ci_prob=self._ci)

    def plot_rank(self, var_names=None):
        """Rank plots (mixing) of the trend parameters, or of ``var_names``."""
        from densing_bayes.presentation import plots

        names = var_names or plots.trend_parameters(self.idata.posterior) or ["alpha", "beta"]
        return plots.plot_rank(idata=self.idata, var_names=names)

    def plot_energy(self):
        """Energy plot and E-BFMI of the sampler."""
        from densing_bayes.presentation import plots

        return plots.plot_energy(idata=self.idata)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path, *, force: bool = False) -> Path:
        """Write a run folder (posterior.nc, posterior_thin.nc, summary.json/.csv, spec.toml).

        An occupied folder is replaced only with ``force=True``.
        """
        folder = Path(folder)
        if self.folder is not None and self.folder.resolve() == folder.resolve():
            return folder  # already there: rewriting it would only risk the draws
        data_folder = (self._data.folder if self._data is not None
                       else Path(self.summary_dict().get("data_folder") or "."))
        stamp(self.idata, self.spec, data_folder)
        save_run(folder, self.idata, self.spec, self.summary_dict(),
                 summary_table(self.summary_dict()), force=force)
        self.folder = folder
        return folder

    def report(self, folder: str | Path | None = None, *, force: bool = False,
               compare=(), svg: bool = False) -> Path:
        """Write the HTML report into ``folder`` (saving the fit there first) or the fit's folder.

        Returns the path of report.html. ``force`` replaces an occupied folder when saving;
        ``compare``: other run folders on the same data for the LOO comparison; ``svg``: also
        write each figure as SVG beside its PNG.
        """
        from densing_bayes.presentation.report import write_report

        if folder is not None:
            self.save(folder, force=force)
        if self.folder is None:
            raise ValueError("this fit is not saved: call report(folder) or save(folder) first")
        loaded = self._loaded
        if loaded is not None and not (loaded.idata is self.idata and loaded.spec is self.spec
                                       and Path(loaded.folder) == self.folder):
            loaded = None  # changed since it was loaded: the report reads the folder
        return write_report(self.folder, compare=[Path(c) for c in compare], svg=svg,
                            run=loaded)
