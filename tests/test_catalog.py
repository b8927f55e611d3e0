"""The measure catalog: every program names measures that exist, and an organization contracted with
several programs sees each measure once, with all its weights."""
import pytest

from streams.caregaps.catalog import catalog, consolidated, parse_catalog
from streams.caregaps.measures import MeasureError, measures
from streams.codesets import RULES


def test_every_program_names_known_measures_and_every_measure_is_used_somewhere():
    programs = catalog()
    assert {"MEDICARE_STARS", "ACO_SHARED_SAVINGS"} <= set(programs)
    used = {m for p in programs.values() for m in p.weights}
    assert used == set(measures())


def test_a_measure_several_programs_use_appears_once_with_each_weight():
    listed = consolidated(["MEDICARE_STARS", "ACO_SHARED_SAVINGS", "MEDICARE_STARS"])
    ids = [m.measure_id for m in listed]
    assert len(ids) == len(set(ids))
    fmc = next(m for m in listed if m.measure_id == "FMC")
    assert dict(fmc.programs) == {"MEDICARE_STARS": 1.0, "ACO_SHARED_SAVINGS": 2.0} and fmc.total_weight == 3.0
    weights = [m.total_weight for m in listed]
    assert weights == sorted(weights, reverse=True) and {"CBP", "GSD"} == set(ids[:2])  # heaviest first: 3 + 1


def test_a_program_naming_an_unknown_measure_is_refused():
    text = (RULES / "catalog.toml").read_text().replace('"FMC" = 2', '"NOPE" = 2')
    with pytest.raises(MeasureError, match="unknown measure"):
        parse_catalog(text)
    with pytest.raises(KeyError):
        consolidated(["NO_SUCH_PROGRAM"])
