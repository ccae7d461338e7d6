"""The I/O edge of the care-management programs: their registry facts and care time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, select

from rpmpipe.metrics.blocks import WHOLE_FLEET, PatientBlock
from rpmpipe.metrics.care_management import CareFacts
from rpmpipe.metrics.care_table import ActivityColumns, IntArray, objects
from rpmpipe.metrics.minutes import micros
from rpmpipe.metrics.programs import CarePlanVersion
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import Activity
from rpmpipe.registry.tables import CARE_ACTIVITIES, CARE_PLANS

_FETCH_ROWS = 10_000


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@cache
def _iso_day(text: str) -> date:
    # The registry repeats a few hundred distinct dates over hundreds of thousands of rows:
    # each is parsed once, and every row holds the same date object.
    return date.fromisoformat(text)


def driver_day(value: date | str | None) -> date | None:
    """A date column as the driver hands it back: ISO text on SQLite, a date on PostgreSQL."""
    if value is None or isinstance(value, date):
        return value
    return _iso_day(value)


_PLANS = (
    "SELECT patient_id, program, established_on, revised_on, shared_with_patient_on FROM {t} "
    "WHERE {where} ORDER BY patient_id, program, version_on"
)


def load_care_facts(engine: Engine) -> CareFacts:
    """Every program's enrollments, the patients' zones, diagnoses, QMB status, payer and
    care plans."""
    from rpmpipe.registry.models import Enrollment as EnrollmentRow
    from rpmpipe.registry.models import Patient

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
        rows = conn.execute(
            select(
                EnrollmentRow.patient_id,
                EnrollmentRow.program,
                EnrollmentRow.start_date,
                EnrollmentRow.end_date,
                EnrollmentRow.consent_date,
                EnrollmentRow.ordering_npi,
            )
        ).all()
    # Each repeated text and date held once, as the metrics job holds them.
    texts: dict[str, str] = {}
    days: dict[date, date] = {}
    text = texts.setdefault

    def day(value: date | None) -> date | None:
        return None if value is None else days.setdefault(value, value)

    return care_facts_of(engine, patients, registry_enrollments(rows, text, day), texts)


def registry_enrollments(
    rows: Iterable[Sequence[Any]],
    text: Callable[[str, str], str],
    day: Callable[[Any], date | None],
) -> tuple[Enrollment, ...]:
    """Enrollment rows (patient, program, start, end, consent, NPI) as values: each text
    through ``text`` and each date through ``day`` (one object per repeated value)."""
    return tuple(
        Enrollment(
            text(pid, pid),
            text(program, program),
            day(start) or date.min,
            day(end),
            day(consent),
            text(npi, npi) if npi else "",
        )
        for pid, program, start, end, consent, npi in rows
    )


def care_facts_of(
    engine: Engine,
    patients: Sequence[tuple[str, str | None, str, bool | None, str]],
    enrollments: Sequence[Enrollment],
    texts: dict[str, str] | None = None,
    block: PatientBlock = WHOLE_FLEET,
) -> CareFacts:
    """:func:`load_care_facts` from patient rows (id, zone, ICD-10 codes, QMB, payer) and
    the enrollments already read (the metrics job reads the registry once for both its
    snapshot and these facts, which share the enrollments); the care plans of ``block``'s
    patients are read here. ``texts`` holds each repeated text once, shared with the
    caller's."""
    where, params = block.where(engine, "patient_id")
    sql = _PLANS.format(t=CARE_PLANS, where=where)
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            plans = cursor.fetchall()
        finally:
            cursor.close()
    # A fleet repeats a few zones, codes, programs and practitioners across every patient:
    # each is held once, not once per row.
    texts = {} if texts is None else texts
    codes_of: dict[str, tuple[str, ...]] = {}
    text = texts.setdefault

    def codes(value: str) -> tuple[str, ...]:
        found = codes_of.get(value)
        if found is None:
            found = codes_of[value] = tuple(text(c, c) for c in value.split(";"))
        return found

    care_plans: dict[tuple[str, str], tuple[CarePlanVersion, ...]] = {}
    for pid, program, established, revised, shared in plans:
        version = CarePlanVersion(
            driver_day(established) or date.min, driver_day(revised), driver_day(shared)
        )
        key = (text(pid, pid), text(program, program))
        care_plans[key] = (*care_plans.get(key, ()), version)
    return CareFacts(
        enrollments=tuple(enrollments),
        zones={
            text(pid, pid): text(z, z) for pid, tz, _, _, _ in patients if tz and (z := tz.strip())
        },
        icd10={text(pid, pid): codes(c) for pid, _, c, _, _ in patients},
        qmb={text(pid, pid): qmb for pid, _, _, qmb, _ in patients},
        care_plans=care_plans,
        payer_of={text(pid, pid): text(payer, payer) for pid, _, _, _, payer in patients},
    )


_ACTIVITY_COLUMNS = (
    "activity_id",
    "patient_id",
    "staff_id",
    "started_at",
    "minutes",
    "kind",
    "interactive",
    "program",
    "performer",
    "voided_reason",
)
_REPEATED = frozenset({1, 2, 5, 7, 8})  # patient, staff, kind, program, performer


def _instants(values: list[Any]) -> IntArray:
    """Microseconds since 1970 of the driver's start times: ISO text on SQLite (UTC, no
    zone), aware datetimes on PostgreSQL."""
    if not values:
        return np.zeros(0, np.int64)
    if isinstance(values[0], str):
        stamps = pc.cast(pa.array(values, pa.string()), pa.timestamp("us"))
    else:
        stamps = pa.array([_aware(v) for v in values], pa.timestamp("us", tz="UTC"))
    return np.asarray(pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False), np.int64)


def _hundredths(values: list[Any]) -> IntArray:
    """Stored minutes (two decimals) as whole hundredths."""
    if any(isinstance(v, Decimal) for v in values):
        return np.array([int(Decimal(v).scaleb(2)) for v in values], np.int64)
    return np.rint(np.array(values, np.float64) * 100).astype(np.int64)


def load_activity_columns(
    engine: Engine, known_at: datetime | None = None, block: PatientBlock = WHOLE_FLEET
) -> ActivityColumns:
    """Care activities of every program as columns, read through the driver in chunks
    (no object per row); with ``known_at``, those that had started by then; of ``block``'s
    patients."""
    table = CARE_ACTIVITIES
    parts: list[list[Any]] = [[] for _ in _ACTIVITY_COLUMNS]
    # Patient, staff, kind, program and performer repeat over every row: each chunk's are
    # held once as they are fetched, so the copies of a whole fleet's rows never pile up.
    seen: dict[Any, Any] = {}
    once = seen.setdefault
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            where, params = block.where(engine, "patient_id")
            cursor.execute(
                f"SELECT {', '.join(_ACTIVITY_COLUMNS)} FROM {table} WHERE {where}",  # noqa: S608
                params,
            )
            while chunk := cursor.fetchmany(_FETCH_ROWS):
                for k, values in enumerate(zip(*chunk, strict=True)):
                    parts[k].extend([once(v, v) for v in values] if k in _REPEATED else values)
        finally:
            cursor.close()
    aid, pid, staff, at, minutes, kind, talk, prog, who, void = parts
    cols = ActivityColumns(
        objects(aid),
        objects(pid),
        objects(staff),
        _instants(at),
        _hundredths(minutes),
        objects(kind),
        np.array(talk, np.bool_).reshape(-1),
        objects(prog),
        objects(who),
        objects(void),
    )
    if known_at is not None:
        cols = cols.take(cols.at <= micros(known_at))
    return cols


def load_all_activities(engine: Engine) -> list[Activity]:
    """Care activities of every program as values (each counts for its own program only):
    :func:`load_activity_columns`, one activity per row."""
    cols = load_activity_columns(engine)
    return cols.activities(np.arange(len(cols.at)))
