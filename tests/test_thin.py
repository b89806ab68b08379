"""The committed thinned copy: small, loadable, and honest about being thinned."""

import arviz as az
import numpy as np
import xarray as xr

from densing_bayes.inference.thin import (EXACT_GROUPS, THIN_FILE, thin_idata, thin_note,
                                          write_thinned)


def fake_idata(chains=4, draws=1500, rows=300):
    rng = np.random.default_rng(0)
    post = xr.Dataset({"alpha": (("chain", "draw"), rng.normal(size=(chains, draws))),
                       "alpha_log__": (("chain", "draw"), rng.normal(size=(chains, draws)))},
                      coords={"chain": range(chains), "draw": range(draws)})
    rows_ds = xr.Dataset({"score_obs": (("chain", "draw", "score_row"),
                                        rng.normal(size=(chains, draws, rows)))},
                         coords={"chain": range(chains), "draw": range(draws)})
    return az.InferenceData(posterior=post, log_likelihood=rows_ds,
                            posterior_predictive=rows_ds.copy(),
                            prior_predictive=rows_ds.isel(chain=[0]))


def test_thinning_keeps_about_the_asked_draws_and_marks_the_copy():
    full = fake_idata()
    thin = thin_idata(full, max_draws=1000, row_draws=250)
    kept = thin.posterior.sizes["chain"] * thin.posterior.sizes["draw"]
    rows = thin.log_likelihood.sizes["chain"] * thin.log_likelihood.sizes["draw"]
    assert 900 <= kept <= 1000 and 200 <= rows <= 260  # ceil per chain: "about"
    # per-row draws are posterior draws that were kept, so they line up with the posterior
    assert set(thin.log_likelihood["draw"].values) <= set(thin.posterior["draw"].values)
    assert "prior_predictive" not in thin.groups() and "alpha_log__" not in thin.posterior
    assert thin.posterior["alpha"].dtype == np.float32
    assert thin_note(thin) and "6000" in thin_note(thin)
    assert thin_note(full) is None  # the full run is not marked


def test_the_written_copy_is_smaller_and_loads(tmp_path):
    full = fake_idata()
    full.to_netcdf(str(tmp_path / "full.nc"), engine="h5netcdf")
    write_thinned(full, tmp_path / THIN_FILE)
    assert (tmp_path / THIN_FILE).stat().st_size < (tmp_path / "full.nc").stat().st_size / 8
    back = az.from_netcdf(str(tmp_path / THIN_FILE), engine="h5netcdf")
    assert thin_note(back) is not None


def test_the_thinned_copy_keeps_the_runs_metric_exactly(tmp_path):
    """`fit --metric-from` on a fresh checkout reads the metric from the thinned copy: rounded
    to float32 it failed its SHA-256 check and the reference draws could not be reproduced."""
    from densing_bayes.inference import metric as M

    assert M.METRIC_GROUP in EXACT_GROUPS
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    m = M.StoredMetric("k", ("a",), ((5,),), rng.normal(size=5), a @ a.T + np.eye(5), 400)
    idata = az.InferenceData(posterior=xr.Dataset(
        {"a": (("chain", "draw", "i"), rng.normal(size=(2, 50, 5)))}))
    idata.add_groups({M.METRIC_GROUP: M.metric_dataset(m)}, warn_on_custom_groups=False)
    write_thinned(idata, tmp_path / THIN_FILE, max_draws=20)
    back = M.metric_from_run(tmp_path)
    assert M.metric_digest(back) == M.metric_digest(m)
    assert az.from_netcdf(str(tmp_path / THIN_FILE)).posterior["a"].dtype == np.float32
