"""Attribution methods, read from ``streams/rules/attribution/``."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache, cached_property

from streams.codesets import RULES, CodeSet, codeset, in_any, rule_files

RULE_NAMES = ("member_selected_pcp", "plurality")
MEASURES = ("visits", "allowed_amount")
TIE_BREAKS = ("most_recent_visit", "npi")


class MethodError(ValueError):
    """A method file that the engine cannot evaluate."""


@dataclass(frozen=True)
class Step:
    rule: str
    eligible_roles: tuple[str, ...] = ()
    measure: str = "visits"
    codeset: CodeSet | None = None
    lookback_months: int = 24
    role_tiers: tuple[tuple[str, ...], ...] = ()
    tie_break: tuple[str, ...] = ("most_recent_visit", "npi")

    @cached_property
    def tier_of(self) -> dict[str, int]:
        """Role → index of its tier (0 is considered first)."""
        return {role: i for i, tier in enumerate(self.role_tiers) for role in tier}


@dataclass(frozen=True)
class Method:
    id: str
    version: str
    title: str
    description: str
    steps: tuple[Step, ...]


def _step(raw: dict, where: str) -> Step:
    rule = raw.get("rule")
    if rule not in RULE_NAMES:
        raise MethodError(f"{where}: unknown rule {rule!r} (known: {', '.join(RULE_NAMES)})")
    if rule == "member_selected_pcp":
        return Step(rule=rule, eligible_roles=tuple(raw.get("eligible_roles", ())))
    if raw.get("measure") not in MEASURES:
        raise MethodError(f"{where}: measure must be one of {', '.join(MEASURES)}")
    unknown = set(raw.get("tie_break", ())) - set(TIE_BREAKS)
    if unknown:
        raise MethodError(f"{where}: unknown tie-break {sorted(unknown)}")
    return Step(rule=rule, measure=raw["measure"], codeset=codeset(raw["codeset"]),
                lookback_months=int(raw["lookback_months"]),
                role_tiers=tuple(tuple(t) for t in raw["role_tiers"]),
                tie_break=tuple(raw.get("tie_break", ("most_recent_visit", "npi"))))


def parse_method(text: str, where: str = "method") -> Method:
    data = tomllib.loads(text)
    steps = tuple(_step(s, f"{where} step {i + 1}") for i, s in enumerate(data.get("steps", [])))
    if not steps:
        raise MethodError(f"{where}: no steps")
    return Method(id=data["id"], version=data["version"], title=data["title"],
                  description=data.get("description", "").strip(), steps=steps)


@cache
def methods() -> dict[str, Method]:
    return rule_files("attribution/methods", parse_method, MethodError)


@cache
def _programs() -> dict[str, str]:
    return tomllib.loads((RULES / "attribution" / "programs.toml").read_text())["programs"]


def counted(code: str | None) -> bool:
    """Whether some method counts services with this code: a claim with none cannot move an
    attribution."""
    return in_any(_counted_codesets(), code)


@cache
def _counted_codesets() -> frozenset[str]:
    return frozenset(s.codeset.id for m in methods().values() for s in m.steps if s.codeset)


def method_for(payer: str, product_line: str) -> Method:
    """The method in force for a payer program: "PAYER/PRODUCT_LINE" first, then "PRODUCT_LINE"."""
    programs = _programs()
    method_id = programs.get(f"{payer}/{product_line}") or programs.get(product_line)
    if method_id is None:
        raise MethodError(f"no attribution method for program {payer}/{product_line}")
    return methods()[method_id]
