"""Attribution lists of an organization: a FHIR R4 Group in the Da Vinci ATR shape, and CSV.

Each member carries its change against the last published version of the list: new, changed
(another attributed provider), nochange, or dropped (listed inactive, so the organization sees
who left).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition"


@dataclass(frozen=True)
class Entry:
    member_id: str
    npi: str | None
    since: str | None
    change: str  # new | changed | nochange | dropped


def entries(current: Iterable[tuple[str, str | None, str]], previous: dict[str, str | None]) -> list[Entry]:
    """``current``: (member_id, npi, since) of members attributed now; ``previous``: member → npi as published."""
    found = []
    now = {m: (npi, since) for m, npi, since in current}
    for member_id, (npi, since) in sorted(now.items()):
        if member_id not in previous:
            change = "new"
        else:
            change = "nochange" if previous[member_id] == npi else "changed"
        found.append(Entry(member_id, npi, since, change))
    for member_id in sorted(set(previous) - set(now)):
        found.append(Entry(member_id, previous[member_id], None, "dropped"))
    return found


def fhir_group(organization_id: str, list_entries: list[Entry], as_of: str) -> dict:
    members = []
    for e in list_entries:
        extension = [{"url": f"{ATR}/ext-changeType", "valueCode": e.change}]
        if e.npi:
            extension.append({"url": f"{ATR}/ext-attributedProvider",
                              "valueReference": {"reference": f"Practitioner/{e.npi}"}})
        member = {"extension": extension, "entity": {"reference": f"Patient/{e.member_id}"},
                  "inactive": e.change == "dropped"}
        if e.since:
            member["period"] = {"start": e.since}
        members.append(member)
    return {
        "resourceType": "Group",
        "id": f"attribution-{organization_id}".replace(":", "-")[:64],
        "meta": {"lastUpdated": as_of},
        "extension": [{"url": f"{ATR}/ext-attributionListStatus", "valueCode": "draft"}],
        "identifier": [{"system": "urn:gapstream:organization", "value": organization_id}],
        "active": True,
        "type": "person",
        "actual": True,
        "name": f"Attribution list of {organization_id}",
        "managingEntity": {"reference": f"Organization/{organization_id}"},
        "quantity": sum(1 for e in list_entries if e.change != "dropped"),
        "member": members,
    }


def csv_text(list_entries: list[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["member_id", "attributed_npi", "since", "change"])
    for e in list_entries:
        writer.writerow([e.member_id, e.npi or "", e.since or "", e.change])
    return out.getvalue()
