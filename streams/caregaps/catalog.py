"""The measure catalog (``streams/rules/catalog.toml``): which payer programs use which measures
with what weight, and one de-duplicated list for an organization contracted with several."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache

from streams.caregaps.measures import MeasureError, measures
from streams.codesets import RULES


@dataclass(frozen=True)
class Program:
    id: str
    title: str
    product_lines: tuple[str, ...]
    source: str
    weights: dict[str, float]


@dataclass(frozen=True)
class MeasuredOn:
    """One measure of the consolidated list, with every program that uses it."""
    measure_id: str
    title: str
    programs: tuple[tuple[str, float], ...]  # (program id, weight)

    @property
    def total_weight(self) -> float:
        return sum(weight for _, weight in self.programs)


def parse_catalog(text: str, where: str = "catalog.toml") -> dict[str, Program]:
    known = measures()
    programs = {}
    for program_id, raw in tomllib.loads(text).get("programs", {}).items():
        unknown = sorted(set(raw["weights"]) - set(known))
        if unknown:
            raise MeasureError(f"{where}: program {program_id} names unknown measure(s) {', '.join(unknown)}")
        programs[program_id] = Program(program_id, raw["title"], tuple(raw["product_lines"]), raw["source"],
                                       {m: float(w) for m, w in raw["weights"].items()})
    return programs


@cache
def catalog() -> dict[str, Program]:
    return parse_catalog((RULES / "catalog.toml").read_text())


def consolidated(program_ids: list[str], programs: dict[str, Program] | None = None) -> list[MeasuredOn]:
    """Each measure the programs use, once, heaviest first; unknown program ids raise KeyError."""
    programs = programs if programs is not None else catalog()
    by_measure: dict[str, list[tuple[str, float]]] = {}
    for program_id in dict.fromkeys(program_ids):
        for measure_id, weight in programs[program_id].weights.items():
            by_measure.setdefault(measure_id, []).append((program_id, weight))
    found = [MeasuredOn(m, measures()[m].title, tuple(uses)) for m, uses in by_measure.items()]
    return sorted(found, key=lambda m: (-m.total_weight, m.measure_id))
