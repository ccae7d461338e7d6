"""A synthetic RPM fleet: patients, devices, assignments, enrollments and adherence profiles.

Pure and deterministic: the same ``(patients, start, days, seed)`` gives the same fleet. The
names, addresses and member ids are made up (no real person); member ids follow the Medicare
Beneficiary Identifier layout so downstream claim code sees realistic values.

Fleet shape (chosen so that a demo of a handful of patients already shows every case):

- adherence profiles rotate ``steady, fading, weekend_gaps, drop_out, store_and_forward, ...``
  so the first five patients cover all five;
- every patient has a BP cuff; patients with heart failure or obesity (and patient 1) also
  have a scale, shown in lb or kg;
- time zones rotate over the seven US zones for the first seven patients, then are weighted
  towards the populous ones;
- every tenth patient (P-000009, P-000019, ...) has no consent on file (not billable), and
  every ninth (P-000005, P-000014, ...) enrolls a third of the way into the window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cached_property

from rpmpipe.settings import npi_check_digit

PROFILES = ("steady", "fading", "weekend_gaps", "drop_out", "store_and_forward")
# Rotation of profiles: steady is the most common behaviour of a real fleet.
_PROFILE_ROTATION = (
    "steady",
    "fading",
    "weekend_gaps",
    "drop_out",
    "store_and_forward",
    "steady",
    "steady",
    "fading",
)

MANAGEMENT_TIERS = ("full", "short", "no_interactive", "none")

PAYER_ID = "MEDICARE"
PAYER_NAME = "MEDICARE PART B"

# (zone, weight, [(city, state, zip prefix)])
_ZONES: tuple[tuple[str, int, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "America/New_York",
        40,
        (
            ("New York", "NY", "100"),
            ("Boston", "MA", "021"),
            ("Atlanta", "GA", "303"),
            ("Miami", "FL", "331"),
        ),
    ),
    (
        "America/Chicago",
        25,
        (("Chicago", "IL", "606"), ("Houston", "TX", "770"), ("Minneapolis", "MN", "554")),
    ),
    ("America/Denver", 8, (("Denver", "CO", "802"), ("Salt Lake City", "UT", "841"))),
    ("America/Phoenix", 6, (("Phoenix", "AZ", "850"), ("Tucson", "AZ", "857"))),
    (
        "America/Los_Angeles",
        17,
        (("Los Angeles", "CA", "900"), ("Seattle", "WA", "981"), ("Portland", "OR", "972")),
    ),
    ("America/Anchorage", 2, (("Anchorage", "AK", "995"),)),
    ("Pacific/Honolulu", 2, (("Honolulu", "HI", "968"),)),
)

_FIRST_F = (
    "Mary",
    "Patricia",
    "Linda",
    "Barbara",
    "Elizabeth",
    "Susan",
    "Dorothy",
    "Carol",
    "Ruth",
    "Sharon",
    "Joan",
    "Gloria",
    "Evelyn",
    "Frances",
    "Janet",
    "Alice",
)
_FIRST_M = (
    "James",
    "Robert",
    "John",
    "Michael",
    "William",
    "David",
    "Richard",
    "Charles",
    "Joseph",
    "Thomas",
    "George",
    "Donald",
    "Kenneth",
    "Ronald",
    "Harold",
    "Walter",
)
_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Young",
    "Walker",
    "Hall",
    "Allen",
    "King",
    "Nguyen",
    "Kealoha",
)
_STREETS = (
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Lincoln",
    "Jackson",
    "River",
    "Meadow",
)
_STREET_KINDS = ("St", "Ave", "Rd", "Dr", "Ln", "Blvd")
_BP_MODELS = ("Omron HEM-9200T", "A&D UA-651BLE", "Withings BPM Connect", "Transtek TMB-2092-G")
_SCALE_MODELS = ("Withings Body+", "A&D UC-352BLE", "Transtek GBS-2104-G")
# Medicare Beneficiary Identifier letters exclude S, L, O, I, B, Z.
_MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"


@dataclass(frozen=True)
class Patient:
    patient_id: str
    mrn: str
    first_name: str
    last_name: str
    birth_date: date
    sex: str
    address1: str
    city: str
    state: str
    zip: str
    timezone: str
    payer_id: str
    payer_name: str
    member_id: str
    icd10_codes: tuple[str, ...]
    profile: str  # one of PROFILES
    management_tiers: tuple[str, ...]  # rotation of MANAGEMENT_TIERS, one per calendar month


@dataclass(frozen=True)
class Device:
    device_id: str
    kind: str  # bp_cuff | scale
    model: str
    unit: str  # display unit of a scale ("lb" or "kg"); "mmHg" for cuffs


@dataclass(frozen=True)
class Assignment:
    device_id: str
    patient_id: str
    start_date: date
    end_date: date | None


@dataclass(frozen=True)
class Enrollment:
    patient_id: str
    program: str
    start_date: date
    end_date: date | None
    consent_date: date | None
    ordering_npi: str


@dataclass(frozen=True)
class CarePlan:
    patient_id: str
    program: str
    established_on: date
    shared_with_patient_on: date


@dataclass(frozen=True)
class Fleet:
    seed: int
    start: date
    days: int
    patients: tuple[Patient, ...]
    devices: tuple[Device, ...]
    assignments: tuple[Assignment, ...]
    enrollments: tuple[Enrollment, ...]  # every program's; one RPM enrollment per patient
    care_plans: tuple[CarePlan, ...] = ()

    @property
    def end(self) -> date:
        """The last simulated day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)

    # Lookups are indexed once per fleet: traffic for thousands of patients asks a lot.
    @cached_property
    def _by_patient(self) -> dict[str, tuple[Patient, Enrollment, tuple[Device, ...]]]:
        devices = {d.device_id: d for d in self.devices}
        owned: dict[str, list[Device]] = {}
        for a in self.assignments:
            owned.setdefault(a.patient_id, []).append(devices[a.device_id])
        enrollment = {e.patient_id: e for e in self.enrollments if e.program == "RPM"}
        return {
            p.patient_id: (p, enrollment[p.patient_id], tuple(owned.get(p.patient_id, ())))
            for p in self.patients
        }

    @cached_property
    def _owner(self) -> dict[str, str]:
        return {a.device_id: a.patient_id for a in self.assignments}

    def patient(self, patient_id: str) -> Patient:
        return self._by_patient[patient_id][0]

    def devices_of(self, patient_id: str) -> tuple[Device, ...]:
        return self._by_patient[patient_id][2]

    def enrollment_of(self, patient_id: str) -> Enrollment:
        """The patient's RPM enrollment."""
        return self._by_patient[patient_id][1]

    def care_programs_of(self, patient_id: str) -> tuple[Enrollment, ...]:
        """The patient's enrollments in programs other than RPM (CCM, PCM)."""
        return tuple(
            e for e in self.enrollments if e.patient_id == patient_id and e.program != "RPM"
        )

    def patient_of_device(self, device_id: str) -> Patient:
        return self.patient(self._owner[device_id])

    def registry_rows(self) -> dict[str, list[dict[str, str]]]:
        """Rows with exactly the contract's CSV columns, for ``import_rows(engine, kind, rows)``.

        Kinds in dependency order: patients, devices, assignments, enrollments, care plans.
        """
        return {
            "patients": [
                {
                    "patient_id": p.patient_id,
                    "mrn": p.mrn,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "birth_date": p.birth_date.isoformat(),
                    "sex": p.sex,
                    "address1": p.address1,
                    "city": p.city,
                    "state": p.state,
                    "zip": p.zip,
                    "timezone": p.timezone,
                    "payer_id": p.payer_id,
                    "payer_name": p.payer_name,
                    "member_id": p.member_id,
                    "icd10_codes": ";".join(p.icd10_codes),
                }
                for p in self.patients
            ],
            "devices": [
                {"device_id": d.device_id, "kind": d.kind, "model": d.model} for d in self.devices
            ],
            "assignments": [
                {
                    "device_id": a.device_id,
                    "patient_id": a.patient_id,
                    "start_date": a.start_date.isoformat(),
                    "end_date": _iso_or_empty(a.end_date),
                }
                for a in self.assignments
            ],
            "enrollments": [
                {
                    "patient_id": e.patient_id,
                    "program": e.program,
                    "start_date": e.start_date.isoformat(),
                    "end_date": _iso_or_empty(e.end_date),
                    "consent_date": _iso_or_empty(e.consent_date),
                    "ordering_npi": e.ordering_npi,
                }
                for e in self.enrollments
            ],
            "care-plans": [
                {
                    "patient_id": c.patient_id,
                    "program": c.program,
                    "established_on": c.established_on.isoformat(),
                    "revised_on": "",
                    "shared_with_patient_on": c.shared_with_patient_on.isoformat(),
                }
                for c in self.care_plans
            ],
        }


def _iso_or_empty(value: date | None) -> str:
    return value.isoformat() if value is not None else ""


# Ordering practitioners of the simulated clinic, by NPI, as billing.rendering_providers
# expects them ("LAST, FIRST"), so the demo's claims can name their rendering provider.
ORDERING_PROVIDERS = {
    base + npi_check_digit(base): name
    for base, name in (
        ("104567890", "RIVERA, ANA"),
        ("198765432", "OKAFOR, DANIEL"),
        ("155512345", "LINDQVIST, MARIA"),
    )
}
_ORDERING_NPIS = tuple(ORDERING_PROVIDERS)


def _mbi(rng: random.Random) -> str:
    alnum = _MBI_LETTERS + "0123456789"
    layout = ("C", "A", "N*", "D", "A", "N*", "D", "A", "A", "D", "D")
    out = []
    for slot in layout:
        if slot == "C":
            out.append(rng.choice("123456789"))
        elif slot == "A":
            out.append(rng.choice(_MBI_LETTERS))
        elif slot == "N*":
            out.append(rng.choice(alnum))
        else:
            out.append(rng.choice("0123456789"))
    return "".join(out)


def _street(rng: random.Random) -> str:
    return f"{rng.randint(10, 9899)} {rng.choice(_STREETS)} {rng.choice(_STREET_KINDS)}"


def _zone(index: int, rng: random.Random) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    if index < len(_ZONES):
        zone, _weight, cities = _ZONES[index]
        return zone, cities
    zone, _weight, cities = rng.choices(_ZONES, weights=[z[1] for z in _ZONES])[0]
    return zone, cities


def _icd10(index: int, rng: random.Random) -> tuple[str, ...]:
    codes = ["I10"]
    if index == 0 or rng.random() < 0.3:
        codes.append("I50.9")
    if rng.random() < 0.35:
        codes.append("E66.9")
    if rng.random() < 0.25:
        codes.append("E11.9")
    if rng.random() < 0.15:
        codes.append("I48.91")
    return tuple(codes)


def build_fleet(patients: int, start: date, days: int, seed: int) -> Fleet:
    """A deterministic fleet of ``patients`` enrolled for ``days`` days from ``start``."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    rng = random.Random(f"rpmpipe-fleet:{seed}")
    people: list[Patient] = []
    devices: list[Device] = []
    assignments: list[Assignment] = []
    enrollments: list[Enrollment] = []
    care_plans: list[CarePlan] = []
    scale_no = 0
    for i in range(patients):
        number = i + 1
        patient_id = f"P-{number:06d}"
        sex = rng.choice("FM")
        first = rng.choice(_FIRST_F if sex == "F" else _FIRST_M)
        last = rng.choice(_LAST)
        age_days = rng.randint(65 * 365, 92 * 365)
        zone, cities = _zone(i, rng)
        city, state, zip_prefix = rng.choice(cities)
        codes = _icd10(i, rng)
        program = _care_program(i)
        if program == "CCM" and len(codes) < 2:
            codes += ("E78.5",)  # CCM patients have two or more chronic conditions
        tier_offset = i % len(MANAGEMENT_TIERS)
        tiers = MANAGEMENT_TIERS[tier_offset:] + MANAGEMENT_TIERS[:tier_offset]
        people.append(
            Patient(
                patient_id=patient_id,
                mrn=f"MRN{rng.randint(1_000_000, 9_999_999)}",
                first_name=first,
                last_name=last,
                birth_date=start - timedelta(days=age_days),
                sex=sex,
                address1=_street(rng),
                city=city,
                state=state,
                zip=f"{zip_prefix}{rng.randint(0, 99):02d}",
                timezone=zone,
                payer_id=PAYER_ID,
                payer_name=PAYER_NAME,
                member_id=_mbi(rng),
                icd10_codes=codes,
                profile=_PROFILE_ROTATION[i % len(_PROFILE_ROTATION)],
                management_tiers=tiers,
            )
        )
        # A few patients join part-way through the window: a new enrollee's first period.
        enrolled = start + timedelta(days=days // 3) if i % 9 == 4 and days >= 6 else start
        no_consent = i % 10 == 8
        enrollments.append(
            Enrollment(
                patient_id=patient_id,
                program="RPM",
                start_date=enrolled,
                end_date=None,
                consent_date=None if no_consent else enrolled - timedelta(days=rng.randint(0, 7)),
                ordering_npi=_ORDERING_NPIS[i % len(_ORDERING_NPIS)],
            )
        )
        rpm = enrollments[-1]
        if program and rpm.consent_date is not None:
            # Care management beside RPM, by the same practitioner, from the same day.
            enrollments.append(replace(rpm, program=program))
            care_plans.append(CarePlan(patient_id, program, enrolled, enrolled + timedelta(days=1)))
        cuff = Device(f"BP-{number:06d}", "bp_cuff", rng.choice(_BP_MODELS), "mmHg")
        devices.append(cuff)
        assignments.append(Assignment(cuff.device_id, patient_id, enrolled, None))
        if i == 1 or "I50.9" in codes or "E66.9" in codes:
            scale_no += 1
            # Scales show the unit the patient set up; alternate so any fleet has both.
            unit = "kg" if scale_no % 2 == 0 else "lb"
            scale = Device(f"SC-{number:06d}", "scale", rng.choice(_SCALE_MODELS), unit)
            devices.append(scale)
            assignments.append(Assignment(scale.device_id, patient_id, enrolled, None))
    return Fleet(
        seed,
        start,
        days,
        tuple(people),
        tuple(devices),
        tuple(assignments),
        tuple(enrollments),
        tuple(care_plans),
    )


def _care_program(index: int) -> str:
    """Every third patient is also in CCM, every ninth (of the others) in PCM."""
    if index % 3 == 1:
        return "CCM"
    if index % 9 == 5:
        return "PCM"
    return ""
