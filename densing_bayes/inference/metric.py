"""A dense NUTS metric from an earlier fit of the same model and data ("stored dense metric").

Why: the default model's posterior is badly conditioned (condition number about 1e4; its
narrowest directions lie inside single benchmarks' loss laws). NUTS with a diagonal metric
needs about 159 leapfrog steps per draw on it. nutpie adapts only diagonal (or low-rank, which
stalled chains here) metrics, and every cold-start dense adaptation failed on this model
(docs/performance.md), so the dense metric is *reused*: the posterior covariance Sigma = L L'
of a previous fit of the same model and data is stored, and the next fit samples
z with theta = mu + L z, where theta are the model's unconstrained coordinates. The map is
linear, so its Jacobian is a constant and the posterior is unchanged; in z the posterior is
close to isotropic and NUTS needs 35-50 steps per draw (measured in docs/performance.md).

The fractions with Beta priors (ceilings, N-share, irreducible fraction) are sampled on a
probit scale in this mode: same prior and posterior, but Gaussian-like tails in the sampling
coordinates (on the log-odds scale their exponential tails made the whitened sampler diverge).

Store: ``<cache>/metrics/<key>.npz`` (:func:`densing_bayes.inference.compile_cache.cache_dir`),
refreshed after every fit that met its sampler thresholds; the bundled spec's metric for the
bundled data ships in ``models/metrics/``. The key hashes the model (spec without sampler
settings) and every input array, so a changed model or data set never reuses a stale metric:
it falls back to the diagonal metric and stores the covariance of that fit for the next one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.logprob.transforms import Transform
from pymc.model.transform.conditioning import change_value_transforms
from pytensor.graph.replace import graph_replace

from densing_bayes import resources
from densing_bayes.inference.compile_cache import cache_dir

log = logging.getLogger("densing_bayes")

#: Names of the whitened model's own variables (dropped from the returned posterior).
WHITE_VAR = "z_white"
WHITE_MEAN = "white_mean"
WHITE_CHOL = "white_chol"
#: Shrinkage of the sample covariance towards a small diagonal, Stan's rule (n / (n + 5)).
SHRINK_DRAWS = 5.0
SHRINK_DIAG = 1e-3
#: A covariance is stored only from at least this many draws per unconstrained dimension.
MIN_DRAWS_PER_DIM = 2
#: Most metrics kept in the user's cache (about 0.6 MB each for the default model); batch
#: refits each have their own key, so the oldest are removed beyond this.
MAX_CACHED_METRICS = 20


class ProbitTransform(Transform):
    """(0, 1) <-> R through the standard normal CDF; log |d Phi / d y| = log phi(y)."""

    name = "probit"

    def forward(self, value, *inputs):
        return pt.sqrt(2.0) * pt.erfinv(2.0 * value - 1.0)

    def backward(self, value, *inputs):
        return 0.5 * pt.erfc(-value / pt.sqrt(2.0))

    def log_jac_det(self, value, *inputs):
        return -0.5 * pt.square(value) - 0.5 * np.log(2.0 * np.pi)


def beta_variables(model: pm.Model) -> list[str]:
    """Free variables with a Beta prior (the fractions sampled on the probit scale)."""
    return [rv.name for rv in model.free_RVs if type(rv.owner.op).__name__.startswith("Beta")]


def with_probit_fractions(model: pm.Model) -> pm.Model:
    """The same model with every Beta-prior fraction sampled on the probit scale."""
    names = beta_variables(model)
    return change_value_transforms(model, {n: ProbitTransform() for n in names}) if names \
        else model


def value_layout(model: pm.Model) -> list[tuple[str, tuple[int, ...]]]:
    """Name and shape of each unconstrained block, in the order of the stored vectors."""
    point = model.initial_point()
    return [(name, tuple(np.shape(value))) for name, value in point.items()]


def layout_size(layout) -> int:
    return int(sum(int(np.prod(shape)) for _, shape in layout))


# ----------------------------------------------------------------------------- the key
def _digest_value(value, h) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            # float32: the last bits of a float64 computed from the same CSV can differ between
            # NumPy builds, and a key must not; a covariance does not care about 1e-7.
            value = value.astype(np.float32)
        h.update(str((value.dtype.str, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _digest_value(item, h)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


def metric_key(model_hash: str, inputs) -> str:
    """Key of a stored metric: the model (spec without sampler settings) and every input array."""
    h = hashlib.sha256(model_hash.encode())
    for f in dataclasses.fields(inputs):
        h.update(f.name.encode())
        _digest_value(getattr(inputs, f.name), h)
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class StoredMetric:
    key: str
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    mean: np.ndarray
    cov: np.ndarray
    n_draws: int

    def matches(self, layout) -> bool:
        return (list(self.names) == [n for n, _ in layout]
                and [tuple(s) for s in self.shapes] == [tuple(s) for _, s in layout])

    @property
    def chol(self) -> np.ndarray:
        return np.linalg.cholesky(self.cov)


def metric_digest(metric: StoredMetric) -> str:
    """SHA-256 of a metric's mean and covariance: names the exact whitening a fit used."""
    h = hashlib.sha256()
    for a in (metric.mean, metric.cov):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


class MetricError(ValueError):
    """A stored metric that was asked for but cannot be used (one line for the user)."""


#: The InferenceData group (saved in the run's posterior.nc) that holds the covariance which
#: whitened a fit. The cache is refreshed after every fit, so without it a run's draws could
#: not be reproduced from its saved spec and seed; ``fit --metric-from RUN`` reuses it.
METRIC_GROUP = "sampler_metric"


def metric_dataset(metric: StoredMetric) -> xr.Dataset:
    """A metric as a dataset of its own (one InferenceData group)."""
    dims = ("unconstrained", "unconstrained_bis")
    return xr.Dataset({"mean": (dims[:1], np.asarray(metric.mean, float)),
                       "cov": (dims, np.asarray(metric.cov, float))},
                      attrs={"key": metric.key, "n_draws": int(metric.n_draws),
                             "sha256": metric_digest(metric),
                             "layout": json.dumps([[n, list(s)] for n, s in
                                                   zip(metric.names, metric.shapes,
                                                       strict=True)])})


def metric_from_run(folder: str | Path) -> StoredMetric:
    """The metric that whitened the run in ``folder`` (its posterior.nc's ``METRIC_GROUP``);
    MetricError naming the file when the run has none or it is damaged."""
    path = Path(folder) / "posterior.nc"
    if not path.is_file():
        raise MetricError(f"{path}: no such file (a run folder written by fit or run, with its "
                         "full posterior)")
    try:
        with xr.open_dataset(path, group=METRIC_GROUP, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, KeyError, ValueError) as exc:
        raise MetricError(f"{path}: no {METRIC_GROUP} group (the run was not whitened by a "
                         f"stored covariance, or was written before runs kept it): {exc}") \
            from None
    layout = json.loads(str(ds.attrs["layout"]))
    metric = StoredMetric(str(ds.attrs["key"]), tuple(n for n, _ in layout),
                          tuple(tuple(s) for _, s in layout), ds["mean"].values,
                          ds["cov"].values, int(ds.attrs["n_draws"]))
    if metric_digest(metric) != ds.attrs.get("sha256"):
        raise MetricError(f"{path}: the stored metric does not match its SHA-256")
    return metric


def cache_metrics_dir() -> Path:
    return cache_dir() / "metrics"


def bundled_metrics_dir() -> Path:
    return resources.specs_dir() / "metrics"


def metric_path(key: str, folder: Path | None = None) -> Path:
    return (folder or cache_metrics_dir()) / f"{key}.npz"


def save_metric(metric: StoredMetric, folder: Path | None = None) -> Path:
    path = metric_path(metric.key, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, mean=metric.mean, cov=metric.cov, n_draws=metric.n_draws,
                        layout=json.dumps([[n, list(s)] for n, s in
                                           zip(metric.names, metric.shapes, strict=True)]))
    tmp.replace(path)
    if folder is None:
        _prune_cache(path.parent)
    return path


def _prune_cache(folder: Path) -> None:
    """Keep the newest MAX_CACHED_METRICS. Batch workers share the cache, so a file may vanish
    between listing and reading its time: pruning is best effort and never fails a fit."""
    aged = []
    for path in folder.glob("*.npz"):
        try:
            aged.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for _, old in sorted(aged, reverse=True)[MAX_CACHED_METRICS:]:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass


def load_metric(key: str) -> StoredMetric | None:
    """The user's cached metric for ``key``, else the bundled one, else None."""
    for folder in (cache_metrics_dir(), bundled_metrics_dir()):
        path = metric_path(key, folder)
        if not path.is_file():
            continue
        try:
            with np.load(path) as d:
                layout = json.loads(str(d["layout"]))
                metric = StoredMetric(key, tuple(n for n, _ in layout),
                                      tuple(tuple(s) for _, s in layout), d["mean"], d["cov"],
                                      int(d["n_draws"]))
            np.linalg.cholesky(metric.cov)
            return metric
        except (OSError, ValueError, KeyError, np.linalg.LinAlgError) as exc:
            log.warning("stored metric %s unusable (%s); ignoring it", path, exc)
    return None


def metric_from_draws(key: str, layout, draws: np.ndarray) -> StoredMetric | None:
    """Mean and shrunk covariance of unconstrained draws (draws x dim), or None if too few."""
    draws = np.asarray(draws, float)
    n, dim = draws.shape
    if n < MIN_DRAWS_PER_DIM * dim or not np.all(np.isfinite(draws)):
        return None
    cov = np.cov(draws, rowvar=False)
    cov = n / (n + SHRINK_DRAWS) * cov + SHRINK_DIAG * SHRINK_DRAWS / (n + SHRINK_DRAWS) \
        * np.eye(dim)
    return StoredMetric(key, tuple(n_ for n_, _ in layout), tuple(s for _, s in layout),
                        draws.mean(axis=0), cov, n)


# ----------------------------------------------------------------------------- whitening
def whitened_model(model: pm.Model) -> pm.Model:
    """``model`` sampled in z, theta = white_mean + white_chol @ z (constant Jacobian).

    ``model`` must have its data frozen (:func:`pymc.model.transform.optimization.freeze_dims_and_data`):
    the only data of the returned model are ``white_mean`` and ``white_chol``, which
    ``CompiledModel.with_data`` swaps without recompiling. Every free variable and deterministic
    of ``model`` is a deterministic of the returned one, under the same name and dims, so the
    posterior looks the same to everything downstream.
    """
    layout = value_layout(model)
    dim = layout_size(layout)
    values = {v.name: v for v in model.value_vars}
    outputs = model.unobserved_value_vars
    coords = {k: v for k, v in model.coords.items() if v is not None}
    with pm.Model(coords=coords) as white:
        for name, vals in model.coords.items():
            if vals is None:
                white.add_coord(name, length=int(model.dim_lengths[name].eval()))
        mean = pm.Data(WHITE_MEAN, np.zeros(dim))
        chol = pm.Data(WHITE_CHOL, np.eye(dim))
        z = pm.Flat(WHITE_VAR, shape=dim)
        theta = mean + pt.dot(chol, z)
        replace, start = {}, 0
        for name, shape in layout:
            size = int(np.prod(shape))
            replace[values[name]] = (theta[start:start + size].reshape(shape) if shape
                                     else theta[start])
            start += size
        logp, *expanded = graph_replace([model.logp()] + outputs, replace, strict=False)
        pm.Potential("whitened_logp", logp)
        for out, var in zip(expanded, outputs, strict=True):
            pm.Deterministic(var.name, out, dims=model.named_vars_to_dims.get(var.name))
    return white


def unconstrained_from_white(z: np.ndarray, metric: StoredMetric) -> np.ndarray:
    """theta draws (draws x dim) from z draws (draws x dim)."""
    return metric.mean + z @ metric.chol.T


def reorder_nutpie_draws(unconstrained: np.ndarray, shape_info, layout) -> np.ndarray:
    """nutpie's ``unconstrained_draw`` columns (its own block order) in ``layout`` order."""
    slices = dict(zip(shape_info[0], shape_info[1], strict=True))
    return np.concatenate([unconstrained[:, slices[name]] for name, _ in layout], axis=1)


# ----------------------------------------------------------------------------- shipping
def bundle_metric(spec_name: str = "default") -> Path:
    """Copy the cached metric of a bundled spec on its bundled data into ``models/metrics/``
    (after a fit of that spec has refreshed the cache). Only the default spec ships one, so
    metrics of other keys (an older model or data set) are removed."""
    import shutil

    from densing_bayes.data.load import load_data
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.spec import load_spec

    spec = load_spec(resources.specs_dir() / f"{spec_name}.toml")
    inputs = prepare_inputs(load_data(resources.resolve_data_folder(spec.data.folder)), spec)
    key = metric_key(spec.model_hash(), inputs)
    source = metric_path(key)
    if not source.is_file():
        raise FileNotFoundError(f"no cached metric {source}: fit the '{spec_name}' spec first")
    target_dir = bundled_metrics_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = metric_path(key, target_dir)
    for old in target_dir.glob("*.npz"):
        if old != target:
            old.unlink()
    shutil.copyfile(source, target)
    return target


if __name__ == "__main__":  # python -m densing_bayes.inference.metric [SPEC]
    import sys

    print(bundle_metric(*(sys.argv[1:2] or ["default"])))
