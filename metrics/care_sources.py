"""The I/O edge of the care-management programs: their registry facts and care time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from rpmpipe.metrics.care_management import CareFacts, ProgramEnrollment
from rpmpipe.metrics.programs import CarePlanVersion
from rpmpipe.records import Activity
from rpmpipe.registry.models import CareActivity, CarePlan, Enrollment, Patient

_FETCH_ROWS = 10_000


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _day(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def load_care_facts(engine: Engine) -> CareFacts:
    """Every program's enrollments, the patients' zones, diagnoses, QMB status, payer and
    care plans."""
    with engine.connect() as conn:
        patients = conn.execute(
            select(
                Patient.patient_id,
                Patient.timezone,
                Patient.icd10_codes,
                Patient.qmb,
                Patient.payer_id,
            )
        ).all()
        enrollments = conn.execute(
            select(
                Enrollment.patient_id,
                Enrollment.program,
                Enrollment.start_date,
                Enrollment.end_date,
                Enrollment.consent_date,
                Enrollment.ordering_npi,
            )
        ).all()
    return care_facts_of(engine, patients, enrollments)


def care_facts_of(
    engine: Engine,
    patients: Sequence[tuple[str, str | None, str, bool | None, str]],
    enrollments: Iterable[
        tuple[str, str, date | str | None, date | str | None, date | str | None, str]
    ],
    texts: dict[str, str] | None = None,
) -> CareFacts:
    """:func:`load_care_facts` from patient rows (id, zone, ICD-10 codes, QMB, payer) and
    enrollment rows (patient, program, start, end, consent, NPI) already read (the metrics
    job reads the registry once for both its snapshot and these facts); the care plans are
    read here. ``texts`` holds each repeated text once, shared with the caller's."""
    with engine.connect() as conn:
        plans = conn.execute(
            select(
                CarePlan.patient_id,
                CarePlan.program,
                CarePlan.established_on,
                CarePlan.revised_on,
                CarePlan.shared_with_patient_on,
            ).order_by(CarePlan.patient_id, CarePlan.program, CarePlan.version_on)
        ).all()
    # A fleet repeats a few zones, codes, programs, practitioners and dates across every
    # patient: each is held once, not once per row.
    texts = {} if texts is None else texts
    days: dict[date, date] = {}
    codes_of: dict[str, tuple[str, ...]] = {}
    text = texts.setdefault

    def day(value: date | str | None) -> date | None:
        found = _day(value)
        return None if found is None else days.setdefault(found, found)

    def codes(value: str) -> tuple[str, ...]:
        found = codes_of.get(value)
        if found is None:
            found = codes_of[value] = tuple(text(c, c) for c in value.split(";"))
        return found

    care_plans: dict[tuple[str, str], tuple[CarePlanVersion, ...]] = {}
    for pid, program, established, revised, shared in plans:
        version = CarePlanVersion(day(established) or date.min, day(revised), day(shared))
        care_plans[(pid, program)] = (*care_plans.get((pid, program), ()), version)
    return CareFacts(
        enrollments=tuple(
            ProgramEnrollment(
                text(pid, pid), text(prog, prog), day(s) or date.min, day(e), day(c), text(npi, npi)
            )
            for pid, prog, s, e, c, npi in enrollments
        ),
        zones={text(pid, pid): text(z, z) for pid, tz, *_ in patients if tz and (z := tz.strip())},
        icd10={text(pid, pid): codes(c) for pid, _, c, *_ in patients},
        qmb={text(pid, pid): qmb for pid, _, _, qmb, _ in patients},
        care_plans=care_plans,
        payer_of={text(pid, pid): text(payer, payer) for pid, *_, payer in patients},
    )


def load_all_activities(engine: Engine) -> list[Activity]:
    """Care activities of every program (each counts for its own program only).

    Rows are turned into activities as they are fetched, not all held first, and the values
    that repeat across hundreds of thousands of entries (patient, staff, kind, program,
    performer, minutes) are kept once each instead of once per row.
    """
    return list(iter_activities(engine))


def iter_activities(engine: Engine, texts: dict[str, str] | None = None) -> Iterator[Activity]:
    """:func:`load_all_activities` one at a time, as the rows are fetched (a caller that
    keeps few of them holds no list of all); ``texts`` holds each repeated text once,
    shared with the caller's."""
    texts = {} if texts is None else texts
    numbers: dict[str, Decimal] = {}  # by text: 7 and 7.00 are equal but print apart
    once = texts.setdefault
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                CareActivity.activity_id,
                CareActivity.patient_id,
                CareActivity.staff_id,
                CareActivity.started_at,
                CareActivity.minutes,
                CareActivity.kind,
                CareActivity.interactive,
                CareActivity.program,
                CareActivity.performer,
                CareActivity.voided_reason,
            )
        )
        for chunk in rows.partitions(_FETCH_ROWS):
            for aid, pid, staff, at, m, kind, talk, prog, who, void in chunk:
                text = str(m)
                number = numbers.get(text)
                if number is None:
                    number = numbers[text] = Decimal(m)
                yield (
                    Activity(
                        aid,
                        once(pid, pid),
                        once(staff, staff),
                        _aware(at),
                        number,
                        once(kind, kind),
                        bool(talk),
                        once(prog, prog),
                        once(who, who),
                        void,
                    )
                )
