"""Avro schemas of every message gapstream puts on a topic, one ``.avsc`` file per named record.

A file may refer to a record of another file by its full name (``org.gapstream.Patient``);
:func:`load` inlines the definition so that each top-level schema is standalone, which is what a
schema registry and a fingerprint need.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".avsc"))


@cache
def _raw(name: str) -> dict:
    return json.loads(resources.files(__name__).joinpath(f"{name}.avsc").read_text())


@cache
def _by_full_name() -> dict[str, str]:
    return {f"{_raw(n)['namespace']}.{_raw(n)['name']}": n for n in names()}


@cache
def _load(name: str) -> str:
    defined: set[str] = set()

    def inline(node):
        if isinstance(node, str):
            if node in _by_full_name() and node not in defined:
                return inline(copy.deepcopy(_raw(_by_full_name()[node])))
            return node
        if isinstance(node, list):
            return [inline(n) for n in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                defined.add(f"{node.get('namespace', 'org.gapstream')}.{node['name']}")
            return {k: inline(v) if k in ("type", "items", "values", "fields") else v for k, v in node.items()}
        return node

    return json.dumps(inline(copy.deepcopy(_raw(name))))


def load(name: str) -> dict:
    """The standalone schema ``name`` (file stem, e.g. ``"adt_event"``) as JSON data."""
    return json.loads(_load(name))
