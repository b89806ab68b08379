"""Where divergences start (inference.diagnostics.divergence_locations)."""

import arviz as az
import numpy as np
import pytest

from densing_bayes.inference.diagnostics import divergence_locations, unconstrained_variable


def _idata(draws, diverging, starts, names):
    n = draws.shape[0]
    stats = {"unconstrained_draw": draws[None], "diverging": diverging[None],
             "divergence_start": starts[None]}
    return az.from_dict(sample_stats=stats,
                        coords={"unconstrained_parameter": names},
                        dims={"unconstrained_draw": ["unconstrained_parameter"],
                              "divergence_start": ["unconstrained_parameter"]})


def test_the_coordinate_whose_divergences_start_in_a_tail_comes_first():
    rng = np.random.default_rng(0)
    n, names = 400, ["scale_log__", "group_0", "group_1"]
    draws = rng.normal(size=(n, 3))
    diverging = np.zeros(n, bool)
    diverging[:20] = True
    starts = np.full((n, 3), np.nan)
    starts[:20] = np.column_stack([np.full(20, -10.0),  # below every draw of the scale
                                   rng.normal(size=20), rng.normal(size=20)])
    rows = divergence_locations(_idata(draws, diverging, starts, names), top=2)
    assert [r["coordinate"] for r in rows][0] == "scale_log__"
    assert rows[0]["mean_percentile"] == 0.0 and rows[0]["outer_share"] == 1.0
    assert rows[0]["variable"] == "scale_log__" and rows[1]["variable"] == "group"
    assert len(rows) == 2
    # 20 starts all below every draw: z = -0.5 / sqrt(1 / 240), beyond the bound for 3
    # coordinates; a group coordinate's starts fall anywhere
    assert rows[0]["z"] == pytest.approx(-0.5 * np.sqrt(240)) and rows[0]["in_tail"]
    assert not rows[1]["in_tail"]


def test_two_divergences_can_never_place_a_coordinate_in_a_tail():
    n, names = 400, [f"c_{i}" for i in range(50)]
    draws = np.random.default_rng(1).normal(size=(n, 50))
    diverging = np.zeros(n, bool)
    diverging[:2] = True
    starts = np.full((n, 50), np.nan)
    starts[:2] = -10.0  # as extreme as can be, in every coordinate
    rows = divergence_locations(_idata(draws, diverging, starts, names))
    assert rows[0]["mean_percentile"] == 0.0 and not any(r["in_tail"] for r in rows)


def test_no_divergences_or_no_stored_starts_give_nothing():
    n = 50
    draws = np.zeros((n, 1))
    none = _idata(draws, np.zeros(n, bool), np.full((n, 1), np.nan), ["a"])
    assert divergence_locations(none) == []
    bare = az.from_dict(sample_stats={"diverging": np.ones((1, n), bool)})
    assert divergence_locations(bare) == []


@pytest.mark.parametrize("name, variable", [("slope_post", "slope_post"),
                                            ("loss_log_alpha_3", "loss_log_alpha"),
                                            ("loss_extrapolation_z_2.0", "loss_extrapolation_z"),
                                            ("loss_n_share_logodds___7", "loss_n_share_logodds__")])
def test_coordinates_map_to_their_variable(name, variable):
    assert unconstrained_variable(name) == variable


@pytest.mark.integration
def test_neals_funnel_diverges_at_the_neck():
    """A real sampler on the textbook funnel: divergences start where the log scale is small."""
    import nutpie
    import pymc as pm

    with pm.Model() as funnel:
        v = pm.Normal("v", 0.0, 3.0)
        pm.Normal("x", 0.0, pm.math.exp(v / 2), shape=6)
    idata = nutpie.sample(nutpie.compile_pymc_model(funnel), draws=600, tune=300, chains=1,
                          seed=3, progress_bar=False, store_divergences=True,
                          store_unconstrained=True)
    assert int(idata.sample_stats["diverging"].sum()) > 0
    rows = divergence_locations(idata, top=1)
    assert rows[0]["variable"] == "v" and rows[0]["mean_percentile"] < 0.2
