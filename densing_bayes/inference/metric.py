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

Before the linear map, each coordinate passes through a smooth two-piece scale map (the
"split" map, :func:`split_forward`): theta_i = c_i + g_i(u_i), with slope s_lo,i far below the
centre and s_hi,i far above it. Several marginals of this posterior are skewed (the frontier's
inefficiency scale, the ceilings, the irreducible fractions: 46 of 281 coordinates with one
side's 90% half-width 1.3-2.7 times the other's), and a linear map cannot make a skewed
direction isotropic; NUTS then walks its long side in short steps, which limited the tail ESS.
Centre and side scales come from the same earlier fit's draws (the map sends 0 and +-1.645 to
their median and 5% / 95% quantiles), the covariance is then that of u. The map is monotone
and smooth, its log-Jacobian is added to the log density, so again the posterior is unchanged.
A metric stored before the map existed (no split arrays) uses the identity map.

The fractions with Beta priors (ceilings, N-share, irreducible fraction) are sampled on a
probit scale in this mode: same prior and posterior, but Gaussian-like tails in the sampling
coordinates (on the log-odds scale their exponential tails made the whitened sampler diverge).

Store: ``<cache>/metrics/<key>.npz`` (:func:`densing_bayes.inference.compile_cache.cache_dir`),
refreshed after every fit that met its sampler thresholds; the bundled spec's metric for the
bundled data ships in ``models/metrics/`` and, for its key, wins over the cache. The key hashes
the model (spec without sampler settings) and every input array, so a changed model or data set
never reuses a stale metric: it falls back to the diagonal metric and stores the covariance of
that fit for the next one.
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
WHITE_CENTRE = "white_centre"
WHITE_LOWER = "white_scale_lower"
WHITE_UPPER = "white_scale_upper"
#: Quantiles a coordinate's split map sends u = -1.645, 0 and +1.645 to (:func:`split_from_draws`).
SPLIT_QUANTILES = (0.05, 0.5, 0.95)
SPLIT_Z = 1.6448536269514722
#: Smallest side scale (a coordinate that did not move in the draws keeps a usable map).
SPLIT_MIN_SCALE = 1e-6
#: Largest |upper - lower| / (upper + lower) of a split map (the slopes stay >= 0.1 of their
#: mean, so the map stays strictly increasing and well conditioned).
SPLIT_MAX_ASYMMETRY = 0.9
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


#: Input fields added after metrics were stored, filled only for a model that uses them: left
#: out of the key while empty, so that the stored metrics of models without them stay valid.
OPTIONAL_INPUT_FIELDS = ("model_lineage", "lineages")


def metric_key(model_hash: str, inputs) -> str:
    """Key of a stored metric: the model (spec without sampler settings) and every input array."""
    h = hashlib.sha256(model_hash.encode())
    for f in dataclasses.fields(inputs):
        if f.name in OPTIONAL_INPUT_FIELDS and len(getattr(inputs, f.name)) == 0:
            continue
        h.update(f.name.encode())
        _digest_value(getattr(inputs, f.name), h)
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- split map
def split_forward(u, centre, lower, upper, xp=np):
    """theta = centre + s u + d (sqrt(u^2 + 1) - 1), s = (lower + upper) / 2, d = (upper -
    lower) / 2: slope ``lower`` far below 0, ``upper`` far above, centre at u = 0 (``xp=pt``:
    the same as a PyTensor expression)."""
    s, d = 0.5 * (lower + upper), 0.5 * (upper - lower)
    return centre + s * u + d * (xp.sqrt(u * u + 1.0) - 1.0)


def split_log_jacobian(u, lower, upper, xp=np):
    """log d theta / d u per coordinate: log(s + d u / sqrt(u^2 + 1)), between log lower and
    log upper (positive scales make the map strictly increasing)."""
    s, d = 0.5 * (lower + upper), 0.5 * (upper - lower)
    return xp.log(s + d * u / xp.sqrt(u * u + 1.0))


def split_inverse(theta, centre, lower, upper):
    """u from theta in closed form (the root of a quadratic; tested against the forward map)."""
    s, d = 0.5 * (lower + upper), 0.5 * (upper - lower)
    y = np.asarray(theta, float) - centre + d
    return (s * y - d * np.sqrt(y * y + lower * upper)) / (lower * upper)


def split_from_draws(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, lower, upper) of each column such that the map sends u = 0, -1.645 and
    +1.645 to the median and the 5% and 95% quantiles of the draws (so the mapped draws have
    a symmetric 90% interval, like a standard normal's). Solved exactly: s = (q95 - q05) /
    (2 * 1.645), d = (q95 + q05 - 2 q50) / (2 (sqrt(1.645^2 + 1) - 1)); |d| is capped at
    ``SPLIT_MAX_ASYMMETRY`` s (sides more unequal than about 3.4 : 1) to keep the map
    increasing."""
    lo, mid, hi = np.quantile(np.asarray(draws, float), SPLIT_QUANTILES, axis=0)
    s = np.maximum((hi - lo) / (2.0 * SPLIT_Z), SPLIT_MIN_SCALE)
    d = (hi + lo - 2.0 * mid) / (2.0 * (np.sqrt(SPLIT_Z ** 2 + 1.0) - 1.0))
    d = np.clip(d, -SPLIT_MAX_ASYMMETRY * s, SPLIT_MAX_ASYMMETRY * s)
    return mid, s - d, s + d


# ----------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class StoredMetric:
    """Mean and covariance of u, with theta = split map of u (identity when the split arrays
    are None: metrics stored before the map existed)."""
    key: str
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    mean: np.ndarray
    cov: np.ndarray
    n_draws: int
    centre: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def matches(self, layout) -> bool:
        return (list(self.names) == [n for n, _ in layout]
                and [tuple(s) for s in self.shapes] == [tuple(s) for _, s in layout])

    @property
    def chol(self) -> np.ndarray:
        return np.linalg.cholesky(self.cov)

    @property
    def has_split(self) -> bool:
        return self.centre is not None

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, lower, upper); the identity map's (0, 1, 1) without stored ones."""
        if self.has_split:
            return (np.asarray(self.centre, float), np.asarray(self.lower, float),
                    np.asarray(self.upper, float))
        dim = len(self.mean)
        return np.zeros(dim), np.ones(dim), np.ones(dim)

    def data(self) -> dict[str, np.ndarray]:
        """The whitened model's data for this metric (:func:`whitened_model`)."""
        centre, lower, upper = self.split()
        return {WHITE_MEAN: np.asarray(self.mean, float), WHITE_CHOL: self.chol,
                WHITE_CENTRE: centre, WHITE_LOWER: lower, WHITE_UPPER: upper}


SPLIT_FIELDS = ("centre", "lower", "upper")


def identity_data(start: np.ndarray) -> dict[str, np.ndarray]:
    """Whitened-model data that make z = theta - start (the diagonal fit of a pilot)."""
    dim = len(start)
    return {WHITE_MEAN: np.asarray(start, float), WHITE_CHOL: np.eye(dim),
            WHITE_CENTRE: np.zeros(dim), WHITE_LOWER: np.ones(dim), WHITE_UPPER: np.ones(dim)}


def metric_digest(metric: StoredMetric) -> str:
    """SHA-256 of a metric's mean and covariance (and split map, when it has one): names the
    exact whitening a fit used. Without a split map the digest is the one metrics had before
    the map existed, so saved runs still verify."""
    h = hashlib.sha256()
    arrays = [metric.mean, metric.cov]
    if metric.has_split:
        arrays += [getattr(metric, f) for f in SPLIT_FIELDS]
    for a in arrays:
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
    split = ({f: (dims[:1], np.asarray(getattr(metric, f), float)) for f in SPLIT_FIELDS}
             if metric.has_split else {})
    return xr.Dataset({"mean": (dims[:1], np.asarray(metric.mean, float)),
                       "cov": (dims, np.asarray(metric.cov, float)), **split},
                      attrs={"key": metric.key, "n_draws": int(metric.n_draws),
                             "sha256": metric_digest(metric),
                             "layout": json.dumps([[n, list(s)] for n, s in
                                                   zip(metric.names, metric.shapes,
                                                       strict=True)])})


#: Where a run keeps the metric that whitened it: the full posterior, else its thinned copy
#: (the one committed for the reference run, which keeps the metric at full precision).
RUN_METRIC_FILES = ("posterior.nc", "posterior_thin.nc")


def metric_from_run(folder: str | Path) -> StoredMetric:
    """The metric that whitened the run in ``folder`` (``METRIC_GROUP`` of its posterior.nc,
    or of posterior_thin.nc when only the thinned copy is there, as in a fresh checkout of the
    reference run); MetricError naming the file when the run has none or it is damaged."""
    folder = Path(folder)
    path = next((folder / name for name in RUN_METRIC_FILES if (folder / name).is_file()), None)
    if path is None:
        raise MetricError(f"{folder / RUN_METRIC_FILES[0]}: no such file (a run folder written "
                         "by fit or run, with its full posterior or its thinned copy)")
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
                          ds["cov"].values, int(ds.attrs["n_draws"]),
                          **{f: ds[f].values for f in SPLIT_FIELDS if f in ds})
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
    split = {f: getattr(metric, f) for f in SPLIT_FIELDS} if metric.has_split else {}
    np.savez_compressed(tmp, mean=metric.mean, cov=metric.cov, n_draws=metric.n_draws,
                        layout=json.dumps([[n, list(s)] for n, s in
                                           zip(metric.names, metric.shapes, strict=True)]),
                        **split)
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
    """The shipped metric for ``key``, else the user's cached one, else None.

    Why the shipped one first: it is the covariance that whitened the committed reference, so
    `run default` gives the same draws whatever the machine fitted before. With the cache first,
    a sensitivity batch's baseline refit (same model and data, so the same key) refreshed the
    cache and the next `run default` whitened with that covariance and drew other draws of the
    same posterior (2026-12-04). Keys without a shipped metric (other specs, user data) use the
    cache, refreshed by every clean fit."""
    for folder in (bundled_metrics_dir(), cache_metrics_dir()):
        path = metric_path(key, folder)
        if not path.is_file():
            continue
        try:
            with np.load(path) as d:
                layout = json.loads(str(d["layout"]))
                metric = StoredMetric(key, tuple(n for n, _ in layout),
                                      tuple(tuple(s) for _, s in layout), d["mean"], d["cov"],
                                      int(d["n_draws"]),
                                      **{f: d[f] for f in SPLIT_FIELDS if f in d.files})
            np.linalg.cholesky(metric.cov)
            return metric
        except (OSError, ValueError, KeyError, np.linalg.LinAlgError) as exc:
            log.warning("stored metric %s unusable (%s); ignoring it", path, exc)
    return None


def metric_from_draws(key: str, layout, draws: np.ndarray, *, split: bool = True
                      ) -> StoredMetric | None:
    """Split map of unconstrained draws (draws x dim) and the mean and shrunk covariance of
    the draws mapped back through it (u), or None if too few. ``split=False``: the identity
    map, mean and covariance of the draws themselves."""
    draws = np.asarray(draws, float)
    n, dim = draws.shape
    if n < MIN_DRAWS_PER_DIM * dim or not np.all(np.isfinite(draws)):
        return None
    pieces = {}
    if split:
        centre, lower, upper = split_from_draws(draws)
        pieces = {"centre": centre, "lower": lower, "upper": upper}
        draws = split_inverse(draws, centre, lower, upper)
    cov = np.cov(draws, rowvar=False)
    cov = n / (n + SHRINK_DRAWS) * cov + SHRINK_DIAG * SHRINK_DRAWS / (n + SHRINK_DRAWS) \
        * np.eye(dim)
    return StoredMetric(key, tuple(n_ for n_, _ in layout), tuple(s for _, s in layout),
                        draws.mean(axis=0), cov, n, **pieces)


# ----------------------------------------------------------------------------- whitening
def whitened_model(model: pm.Model) -> pm.Model:
    """``model`` sampled in z: u = white_mean + white_chol @ z, theta = split map of u
    (:func:`split_forward`), with the map's log-Jacobian added (the linear part's is constant).

    ``model`` must have its dims frozen
    (:func:`pymc.model.transform.optimization.freeze_dims_and_data`).
    The returned model's data are the metric's (:meth:`StoredMetric.data`; they default to the
    identity) and any data ``model`` kept unfrozen, under their own names: ``with_data`` of the
    compiled model swaps both without recompiling (posterior SBC refits one compiled model to
    each simulation's data this way). Every free variable and deterministic of ``model`` is a
    deterministic of the returned one, under the same name and dims, so the posterior looks
    the same to everything downstream.
    """
    from pytensor.compile.sharedvalue import SharedVariable

    layout = value_layout(model)
    dim = layout_size(layout)
    values = {v.name: v for v in model.value_vars}
    outputs = model.unobserved_value_vars
    coords = {k: v for k, v in model.coords.items() if v is not None}
    kept_data = [d for d in model.data_vars if isinstance(d, SharedVariable)]
    with pm.Model(coords=coords) as white:
        for name, vals in model.coords.items():
            if vals is None:
                white.add_coord(name, length=int(model.dim_lengths[name].eval()))
        replace = {d: pm.Data(d.name, d.get_value()) for d in kept_data}
        mean = pm.Data(WHITE_MEAN, np.zeros(dim))
        chol = pm.Data(WHITE_CHOL, np.eye(dim))
        centre = pm.Data(WHITE_CENTRE, np.zeros(dim))
        lower = pm.Data(WHITE_LOWER, np.ones(dim))
        upper = pm.Data(WHITE_UPPER, np.ones(dim))
        z = pm.Flat(WHITE_VAR, shape=dim)
        u = mean + pt.dot(chol, z)
        theta = split_forward(u, centre, lower, upper, xp=pt)
        start = 0
        for name, shape in layout:
            size = int(np.prod(shape))
            replace[values[name]] = (theta[start:start + size].reshape(shape) if shape
                                     else theta[start])
            start += size
        logp, *expanded = graph_replace([model.logp()] + outputs, replace, strict=False)
        pm.Potential("whitened_logp", logp + pt.sum(split_log_jacobian(u, lower, upper, xp=pt)))
        for out, var in zip(expanded, outputs, strict=True):
            pm.Deterministic(var.name, out, dims=model.named_vars_to_dims.get(var.name))
    return white


def drop_white(posterior: xr.Dataset) -> xr.Dataset:
    """A whitened fit's posterior without its sampling coordinates z (and their dimension):
    what is left are the model's own variables, under their names."""
    white = posterior[WHITE_VAR]
    return posterior.drop_vars([WHITE_VAR, *[d for d in white.dims
                                             if d not in ("chain", "draw")]])


def unconstrained_from_white(z: np.ndarray, metric: StoredMetric) -> np.ndarray:
    """theta draws (draws x dim) from z draws (draws x dim)."""
    return split_forward(metric.mean + z @ metric.chol.T, *metric.split())


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
