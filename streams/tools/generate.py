"""A synthetic population and its HIE ADT feed, deterministic by seed.

Members have realistic ages and sexes, belong to provider organizations through a selected PCP
(some have none), and visit hospitals: ED visits with A08 update storms, some admitted from the ED,
elective admissions with transfers, resent messages and cancelled registrations, in roughly the
proportions an HIE feed shows.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from streams.models import EligibilitySpan, Provider

GIVEN_F = ["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "MARIA", "SUSAN", "DOROTHY", "LISA", "NANCY",
           "KAREN", "BETTY", "HELEN", "SANDRA", "DONNA", "CAROL", "ROSA", "AISHA", "MEI", "FATIMA"]
GIVEN_M = ["JAMES", "JOHN", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS", "CHARLES",
           "CARLOS", "JOSE", "WEI", "AHMED", "DANIEL", "PAUL", "MARK", "DONALD", "GEORGE", "KENNETH"]
FAMILY = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
          "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "NGUYEN",
          "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "CLARK", "LEWIS", "ROBINSON", "WALKER", "KIM"]
ORG_NAMES = ["Lakeside Primary Care IPA", "Riverbend Medical Group", "North County ACO", "Harbor Family Physicians",
             "Summit Health Partners", "Prairie Community PHO", "Eastgate Internal Medicine", "Valley Care Network"]
HOSPITALS = [("LAKEMICHMC", "Lake Michigan Medical Center"), ("STMARYS", "St. Mary's Hospital"),
             ("COUNTYGEN", "County General Hospital"), ("RIVERVIEW", "Riverview Regional")]
# (age band low, high, weight): roughly a Medicare Advantage + commercial mix
AGE_BANDS = [(0, 17, 0.12), (18, 44, 0.28), (45, 64, 0.27), (65, 74, 0.19), (75, 84, 0.10), (85, 99, 0.04)]
ED_DIAGNOSES = [("R07.9", "Chest pain, unspecified"), ("R10.9", "Unspecified abdominal pain"),
                ("J18.9", "Pneumonia, unspecified organism"), ("S52.501A", "Fracture of lower end of radius"),
                ("I50.9", "Heart failure, unspecified"), ("J44.1", "COPD with acute exacerbation"),
                ("E11.65", "Type 2 diabetes with hyperglycemia"), ("R55", "Syncope and collapse")]
DISPOSITIONS = ["01", "01", "01", "06", "03"]  # home, home, home, home health, SNF


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str
    tin: str
    pcp_npis: tuple[str, ...]


@dataclass(frozen=True)
class Member:
    member_id: str
    family_name: str
    given_name: str
    birth_date: dt.date
    sex: str
    organization_id: str | None
    pcp_npi: str | None


@dataclass(frozen=True)
class Population:
    organizations: list[Organization]
    members: list[Member]


def npi(rng: random.Random) -> str:
    """A 10-digit NPI with a valid Luhn check digit (computed with the 80840 prefix, as CMS does)."""
    body = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    digits = [int(d) for d in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def population(seed: int, members: int, today: dt.date | None = None) -> Population:
    rng = random.Random(seed)
    today = today or dt.date.today()
    n_orgs = min(len(ORG_NAMES), max(2, members // 250))
    orgs = [Organization(f"ORG{i + 1:03d}", ORG_NAMES[i], "".join(str(rng.randrange(10)) for _ in range(9)),
                         tuple(npi(rng) for _ in range(rng.randint(3, 12)))) for i in range(n_orgs)]
    people = []
    for i in range(members):
        low, high, _ = rng.choices(AGE_BANDS, weights=[b[2] for b in AGE_BANDS])[0]
        age = rng.randint(low, high)
        birth = today - dt.timedelta(days=age * 365 + rng.randrange(365))
        sex = rng.choice("FM")
        # About one member in seven has no selected PCP, so no organization receives their alerts.
        org = rng.choice(orgs) if rng.random() > 0.15 else None
        people.append(Member(
            member_id=f"M{seed % 1000:03d}{i:07d}", family_name=rng.choice(FAMILY),
            given_name=rng.choice(GIVEN_F if sex == "F" else GIVEN_M), birth_date=birth, sex=sex,
            organization_id=org.organization_id if org else None,
            pcp_npi=rng.choice(org.pcp_npis) if org else None))
    return Population(orgs, people)


PAYER = "GAPSTREAM HEALTH PLAN"


def eligibility(pop: Population, today: dt.date | None = None) -> list[EligibilitySpan]:
    """One open coverage span per member: Medicare Advantage from 65, else commercial or Medicaid.
    The member-selected PCP is recorded on the span, as plans do."""
    rng = random.Random(len(pop.members))
    today = today or dt.date.today()
    spans = []
    for m in pop.members:
        age = (today - m.birth_date).days // 365
        line = "MEDICARE_ADVANTAGE" if age >= 65 else ("MEDICAID" if rng.random() < 0.25 else "COMMERCIAL")
        start = dt.date(today.year - rng.randint(0, 4), rng.choice([1, 1, 1, 4, 7, 10]), 1)
        spans.append(EligibilitySpan(member_id=m.member_id, payer=PAYER, product_line=line,
                                     coverage_start=start.isoformat(), birth_date=m.birth_date.isoformat(), sex=m.sex,
                                     selected_pcp_npi=m.pcp_npi, received_at_ms=0))
    return spans


def providers(pop: Population) -> list[Provider]:
    rng = random.Random(len(pop.organizations))
    return [Provider(npi=n, name=f"Dr. {rng.choice(GIVEN_F + GIVEN_M).title()} {rng.choice(FAMILY).title()}",
                     role="PRIMARY_CARE_PHYSICIAN", taxonomy="207Q00000X", tin=o.tin, organization_id=o.organization_id)
            for o in pop.organizations for n in o.pcp_npis]


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S") + t.strftime("%z")


class AdtFeed:
    """HL7 v2.5.1 ADT messages of generated visits, numbered per feed."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.messages: list[str] = []
        self._seq = 0

    def message(self, event: str, member: Member, facility: str, visit: str, patient_class: str, at: dt.datetime,
                diagnosis: tuple[str, str] | None = None, discharged: dt.datetime | None = None,
                disposition: str = "", admitted: dt.datetime | None = None) -> str:
        self._seq += 1
        control_id = f"{facility}{self._seq:09d}"
        segments = [
            f"MSH|^~\\&|ADT|{facility}|HIE|GAPSTREAM|{_ts(at)}||ADT^{event}^ADT_{event}|{control_id}|P|2.5.1",
            f"EVN|{event}|{_ts(at)}",
            f"PID|1||{member.member_id}^^^PLAN^MB||{member.family_name}^{member.given_name}||"
            f"{member.birth_date:%Y%m%d}|{member.sex}",
            f"PV1|1|{patient_class}|{'ED' if patient_class == 'E' else 'MED'}^^^{facility}|"
            f"{'E' if patient_class == 'E' else 'R'}||||||{'EMR' if patient_class == 'E' else 'MED'}|||||||||"
            f"{visit}|||||||||||||||||{disposition}||||||||{_ts(admitted or at)}|"
            f"{_ts(discharged) if discharged else ''}",
        ]
        if diagnosis:
            segments.append(f"DG1|1||{diagnosis[0]}^{diagnosis[1]}^I10||{_ts(at)}|W")
        text = "\r".join(segments)
        self.messages.append(text)
        return text

    def resend(self, text: str) -> None:
        self.messages.append(text)


def adt_feed(pop: Population, seed: int, visits: int, start: dt.datetime | None = None,
             ed_share: float = 0.6) -> list[str]:
    """``visits`` encounters as HL7 v2.5.1 ADT messages, in arrival order (visits interleave):
    ``ed_share`` of them ED visits, the others elective or direct admissions."""
    rng = random.Random(seed + 1)
    start = start or dt.datetime.now(dt.UTC).replace(microsecond=0)
    encounters: list[list[str]] = []
    for v in range(visits):
        member = rng.choice(pop.members)
        facility = rng.choice(HOSPITALS)[0]
        visit = f"V{seed % 100:02d}{v:08d}"
        feed = AdtFeed(random.Random(rng.random()))
        feed._seq = v * 100
        t = start + dt.timedelta(minutes=rng.randrange(0, 24 * 60))
        if rng.random() < ed_share:
            dx = rng.choice(ED_DIAGNOSES)
            first = feed.message("A04", member, facility, visit, "E", t, dx)
            for _ in range(rng.choice([0, 1, 1, 2, 3, 8])):  # A08 storms are common
                t += dt.timedelta(minutes=rng.randint(1, 20))
                feed.message("A08", member, facility, visit, "E", t, dx)
            if rng.random() < 0.05:
                feed.resend(first)  # the HIE resent the registration
            if rng.random() < 0.15:  # admitted from the ED
                t += dt.timedelta(hours=rng.randint(1, 6))
                feed.message("A06", member, facility, visit, "I", t, dx)
                t += dt.timedelta(days=rng.randint(1, 6))
                feed.message("A03", member, facility, visit, "I", t, dx, discharged=t,
                             disposition=rng.choice(DISPOSITIONS))
            elif rng.random() < 0.9:
                t += dt.timedelta(hours=rng.randint(1, 8))
                feed.message("A03", member, facility, visit, "E", t, dx, discharged=t, disposition="01")
        else:  # an elective or direct admission
            admitted = t
            first = feed.message("A01", member, facility, visit, "I", t)
            if rng.random() < 0.04:
                feed.message("A11", member, facility, visit, "I", t + dt.timedelta(minutes=5))
            else:
                if rng.random() < 0.3:
                    t += dt.timedelta(days=1)
                    feed.message("A02", member, facility, visit, "I", t, admitted=admitted)
                if rng.random() < 0.05:
                    feed.resend(first)
                t += dt.timedelta(days=rng.randint(1, 7))
                feed.message("A03", member, facility, visit, "I", t, discharged=t, admitted=admitted,
                             disposition=rng.choice(DISPOSITIONS))
        encounters.append(feed.messages)
    # Interleave encounters the way a live feed does, keeping each encounter's own order.
    order = [i for i, msgs in enumerate(encounters) for _ in msgs]
    rng.shuffle(order)
    cursors = [0] * len(encounters)
    out = []
    for i in order:
        out.append(encounters[i][cursors[i]])
        cursors[i] += 1
    return out


def ed_visits(feed: list[str]) -> set[tuple[str, str]]:
    """(facility, visit) of every ED presentation in a feed: what the pipeline should alert on."""
    found = set()
    for text in feed:
        segments = {s[:3]: s.split("|") for s in text.split("\r")}
        if segments["PV1"][2] == "E" and segments["MSH"][8].split("^")[1] in ("A04", "A01", "A03"):
            found.add((segments["MSH"][3], segments["PV1"][19]))
    return found
