"""Specs: bundled ones load, problems are reported together, the hash survives a round trip."""

import pytest

from densing_bayes.model.priors import DEFAULT_PRIORS
from densing_bayes.model.spec import (SpecError, bundled_spec_names, load_spec, merge_settings,
                                      parse_spec)

BUNDLED = ["default", "paper_design", "no_changepoint", "unknown_changepoint", "mean_trend",
           "mmlu_only"]


def test_bundled_specs_are_listed_and_load():
    assert set(BUNDLED) <= set(bundled_spec_names())
    for name in BUNDLED:
        spec = load_spec(name)
        assert spec.name == name


def test_variants_of_default_cover_the_sensitivity_issue():
    spec = load_spec("default")
    assert {"wide_slopes", "narrow_slopes", "exponential_inefficiency", "low_ceilings"} <= set(
        spec.variants)
    wide = spec.variant("wide_slopes")
    assert wide.prior("slope_post").parameters["sigma"] == 5.0
    assert wide.config_hash() != spec.config_hash()


def test_resolved_spec_round_trips_through_toml_with_the_same_hash(tmp_path):
    spec = load_spec("default")
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    again = load_spec(path)
    assert again.config_hash() == spec.config_hash()
    assert set(again.priors) == set(DEFAULT_PRIORS)


def test_hash_changes_with_seed_and_prior():
    spec = load_spec("default")
    assert spec.with_overrides({"sampler": {"seed": 1}}).config_hash() != spec.config_hash()
    other = spec.with_overrides(
        {"priors": {"slope_pre": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 1.0}}}})
    assert other.config_hash() != spec.config_hash()


def test_mass_matrix_choice_is_validated_and_hashed():
    spec = load_spec("default")
    low_rank = spec.with_overrides({"sampler": {"mass_matrix": "low_rank"}})
    assert low_rank.sampler.mass_matrix == "low_rank"
    assert low_rank.config_hash() != spec.with_overrides(
        {"sampler": {"mass_matrix": "diag"}}).config_hash()
    with pytest.raises(SpecError, match="sampler.mass_matrix"):
        parse_spec({"name": "x", "sampler": {"mass_matrix": "full"}}, origin="bad.toml")


def test_every_problem_is_reported_at_once():
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "x", "trend": {"changepoint": "sometimes"},
                    "sampler": {"draws": -5}, "surprise": 1}, origin="bad.toml")
    text = str(err.value)
    assert "trend.changepoint" in text and "sampler.draws" in text and "surprise" in text
    assert text.count("bad.toml") == 3


def test_unknown_prior_name_is_refused():
    with pytest.raises(SpecError, match="unknown prior"):
        parse_spec({"name": "x", "priors": {"slop": {"dist": "Normal"}}})


def test_missing_spec_names_the_bundled_ones():
    with pytest.raises(SpecError, match="bundled"):
        load_spec("no_such_spec")


def test_every_default_prior_is_documented():
    for name, entry in DEFAULT_PRIORS.items():
        assert len(entry.doc) > 20, name


def test_command_line_settings_become_nested_overrides():
    import datetime as dt

    merged = merge_settings(["trend.latent=centred", "sampler.draws=200",
                             "trend.changepoint_date=2023-01-01", 'sampler.mass_matrix="low_rank"'])
    assert merged == {"trend": {"latent": "centred", "changepoint_date": dt.date(2023, 1, 1)},
                      "sampler": {"draws": 200, "mass_matrix": "low_rank"}}
    spec = load_spec("paper_design").with_overrides(merged)
    assert spec.trend.latent == "centred" and spec.sampler.draws == 200
    assert spec.config_hash() != load_spec("paper_design").config_hash()
    with pytest.raises(SpecError, match="SECTION.KEY=VALUE"):
        merge_settings(["trend.latent"])
    with pytest.raises(SpecError, match="trend.latent"):
        load_spec("paper_design").with_overrides(merge_settings(["trend.latent=sideways"]))


def test_an_inefficiency_trend_needs_a_frontier():
    spec = load_spec("default")
    assert spec.with_overrides({"trend": {"inefficiency_trend": True}}).config_hash() \
        != spec.config_hash()
    with pytest.raises(SpecError, match="inefficiency_trend needs kind = 'frontier'"):
        spec.with_overrides({"trend": {"inefficiency_trend": True, "kind": "mean"}})


def test_settings_added_later_keep_the_hash_of_runs_saved_before_them():
    """A saved run is loaded only if its spec hashes as when it was sampled: a setting added
    since (`pilot_draws`, `mc_precision`) at its 'off' value must not enter the hash (the
    committed reference run was sampled before both existed)."""
    import json
    from pathlib import Path

    run = Path(__file__).resolve().parents[1] / "reports" / "default"
    spec = load_spec(run / "spec.toml")
    saved = json.loads((run / "summary.json").read_text())["config_hash"]
    assert spec.sampler.pilot_draws == 0 and not spec.observation.mc_precision
    assert spec.config_hash() == saved
    piloted = spec.with_overrides({"sampler": {"pilot_draws": 150}})
    assert piloted.config_hash() != saved and piloted.model_hash() == spec.model_hash()
    assert spec.with_overrides({"observation": {"mc_precision": True}}).model_hash() \
        != spec.model_hash()
