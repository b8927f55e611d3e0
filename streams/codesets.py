"""Named code sets from ``streams/rules/codesets/``: the codes a rule counts, with their source;
and the loading of every other rules folder (methods, measures, cohorts), one file per rule."""
from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Protocol, TypeVar

RULES = Path(__file__).with_name("rules")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


def rule_files(folder: str, parse: Callable[[str, str], T], error: type[ValueError]) -> dict[str, T]:
    """Every ``*.toml`` of a rules folder, parsed (text, file name), by id; a second file with an id
    already defined is refused, since only one of them could be in force."""
    found: dict[str, T] = {}
    for path in sorted((RULES / folder).glob("*.toml")):
        rule = parse(path.read_text(), path.name)
        if rule.id in found:
            raise error(f"{path.name}: id {rule.id} is already defined by another file")
        found[rule.id] = rule
    return found


@dataclass(frozen=True)
class CodeSet:
    id: str
    version: str
    title: str
    source: str
    codes: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    # Named groups of code prefixes: {"heart_failure": ("I50",)} holds I50.9 and I5022. Written
    # without dots; codes are compared without them. They are ICD-10-CM diagnosis categories unless
    # the file says ``groups_hold = "procedures"`` (screening modalities by CPT prefix); codes and
    # ranges are always CPT/HCPCS procedures.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    groups_hold: str = "diagnoses"
    # Answers already given, by code as sent: rules ask about the same few thousand codes for every
    # claim line. Per set, so a lookup hashes the code alone, not the set's groups or ranges.
    _groups_found: dict[str, str | None] = field(default_factory=dict, init=False, compare=False, repr=False)
    _ranges_found: dict[str, bool] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __hash__(self) -> int:
        # A set is named by id and version; hashing its codes on every lookup keyed by it was a
        # measurable share of evaluating a member.
        return hash((self.id, self.version))

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, str) or not code:
            return False
        return code in self.codes or self._in_ranges(code) or self.group_of(code) is not None

    def has_diagnosis(self, code: str | None) -> bool:
        """Whether an ICD-10-CM code of a claim or visit is one of the set's diagnoses."""
        return bool(code) and self.groups_hold == "diagnoses" and self.group_of(code) is not None

    def has_procedure(self, code: str | None) -> bool:
        """Whether a CPT/HCPCS code of a claim line is one of the set's procedures (a device code
        such as C1889 is not the C18 colon cancer category)."""
        if not code:
            return False
        return code in self.codes or self._in_ranges(code) or (
            self.groups_hold == "procedures" and self.group_of(code) is not None)

    def group_of(self, code: str) -> str | None:
        """The group whose prefix the code starts with, if any."""
        if not self.groups:
            return None
        try:
            return self._groups_found[code]
        except KeyError:
            plain = code.replace(".", "").upper()
            found = next((name for name, prefixes in self.groups if plain.startswith(prefixes)), None)
            return _remember(self._groups_found, code, found)

    def _in_ranges(self, code: str) -> bool:
        # CPT/HCPCS ranges compare as strings of equal length ("99213" lies in 99201-99215).
        if not self.ranges:
            return False
        try:
            return self._ranges_found[code]
        except KeyError:
            found = any(len(code) == len(lo) and lo <= code <= hi for lo, hi in self.ranges)
            return _remember(self._ranges_found, code, found)


V = TypeVar("V")
REMEMBERED = 65536  # answers kept per set: bounded, since feeds send codes valid or not


def _remember(answers: dict[str, V], code: str, found: V) -> V:
    if len(answers) >= REMEMBERED:
        answers.clear()
    answers[code] = found
    return found


@lru_cache(maxsize=65536)
def in_any(names: frozenset[str], code: str | None) -> bool:
    """Whether the code is in any of the named code sets. Cached: rules ask it of every claim line,
    and a feed repeats a few thousand codes."""
    return any(code in codeset(name) for name in names)


class UnknownCodeSet(KeyError):
    pass


@cache
def codeset(name: str) -> CodeSet:
    path = RULES / "codesets" / f"{name}.toml"
    if not path.exists():
        raise UnknownCodeSet(f"no code set {name!r} in {path.parent}")
    data = tomllib.loads(path.read_text())
    codes = set(data.get("codes", []))
    if "codes_file" in data:  # long lists (NDCs) as a one-column CSV with a header, next to the file
        codes.update(line.strip() for line in (path.parent / data["codes_file"]).read_text().splitlines()[1:]
                     if line.strip())
    return CodeSet(id=data["id"], version=data["version"], title=data["title"], source=data["source"].strip(),
                   codes=frozenset(codes), ranges=tuple(tuple(r) for r in data.get("ranges", [])),
                   groups=tuple((name, tuple(prefixes)) for name, prefixes in data.get("groups", {}).items()),
                   groups_hold=data.get("groups_hold", "diagnoses"))
