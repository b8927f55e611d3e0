"""What an organization may see of a member's attribution: the numbers behind a decision, but not
who the member's other providers are. Which other practices a member sees is itself health data
(a psychiatrist, a substance-use clinic); an organization needs to know why the member is its
patient, and how close the competition is, to accept or dispute it. The plan sees everything.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

OTHER_PROVIDER, OTHER_ORGANIZATION = "another provider", "another organization"
_NPI = re.compile(r"(?<!\d)\d{10}(?!\d)")


def explanation_for(explanation: Mapping[str, Any], organization_id: str,
                    other_organizations: Collection[str] = ()) -> dict[str, Any]:
    """An explanation (``Decision.to_dict``) as ``organization_id`` may see it: candidates of other
    organizations, or of none known, keep their numbers and rank but lose their NPI and
    organization, also where the text of a step or the reason names them or one of
    ``other_organizations`` (those the caller knows the member had)."""
    candidates = explanation.get("candidates") or []
    own = [c for c in candidates if c.get("organization_id") == organization_id]
    others = {c["organization_id"] for c in candidates if c.get("organization_id")} | set(other_organizations)
    if explanation.get("organization_id"):  # the one decided for, a selected PCP's say, need not be a candidate
        others.add(explanation["organization_id"])
    hide = scrubber({c["npi"] for c in own}, others - {organization_id})
    shown: dict[str, Any] = {
        **explanation, "unknown_npis": [], "reason": hide(explanation.get("reason") or ""),
        "steps": [hide(step) for step in explanation.get("steps") or []],
        "candidates": [c if c in own else {**c, "npi": None, "organization_id": None, "note": hide(c.get("note", ""))}
                       for c in candidates]}
    if shown.get("organization_id") not in (None, organization_id):  # decided for someone else since
        shown["organization_id"], shown["npi"] = OTHER_ORGANIZATION, None
    return shown


def scrubber(own_npis: Collection[str], other_organizations: Collection[str] = ()) -> Callable[[str], str]:
    """Hides in a text every NPI but the organization's own, and the other organizations named
    (whole identifiers only, longest first: hiding ORG1 must not leave ORG10 half-named)."""
    patterns = [re.compile(rf"(?<![\w-]){re.escape(org)}(?![\w-])")
                for org in sorted(other_organizations, key=len, reverse=True) if org]

    def hide(text: str) -> str:
        text = _NPI.sub(lambda m: m.group() if m.group() in own_npis else OTHER_PROVIDER, text)
        for pattern in patterns:
            text = pattern.sub(OTHER_ORGANIZATION, text)
        return text
    return hide
