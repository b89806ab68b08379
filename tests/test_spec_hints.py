"""Spec mistakes name the fix: spelling hints, and variants checked when the spec loads."""

import pytest

from densing_bayes.model.spec import SpecError, load_spec, parse_spec


@pytest.mark.parametrize("raw, hint", [
    ({"priors": {"slope_psot": {"distribution": "Normal"}}}, "did you mean 'slope_post'"),
    ({"sampler": {"draw": 500}}, "sampler.draw: Extra inputs are not permitted (did you mean "
                                 "'draws'?)"),
    ({"trnd": {"kind": "mean"}}, "did you mean 'trend'"),
])
def test_unknown_names_get_a_spelling_hint(raw, hint):
    with pytest.raises(SpecError, match="did you mean") as err:
        parse_spec({"name": "t", **raw})
    assert hint in str(err.value)
    assert "Value error," not in str(err.value)


def test_a_bad_variant_is_refused_when_the_spec_loads(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[variants.wide.priors.slope_psot]\ndistribution = "Normal"\n')
    with pytest.raises(SpecError, match=r"variants\.wide: priors: .*did you mean 'slope_post'"):
        load_spec(path)


def test_bundled_variants_still_load():
    spec = load_spec("default")
    assert all(spec.variant(name).name == f"default:{name}" for name in spec.variants)


def test_a_misspelt_spec_name_gets_a_hint():
    with pytest.raises(SpecError, match="did you mean 'default'"):
        load_spec("defualt")
