"""Registry reads and writes of the export: records, patients, ledger, control numbers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rpmpipe.billing_export.claims import PatientInfo
from rpmpipe.billing_export.plan import (
    EMPTY_MARKER,
    FinalRecord,
    LedgerState,
    LedgerWrite,
    RecordKey,
    signature,
)
from rpmpipe.billing_export.x12 import ControlNumbers
from rpmpipe.errors import ExportError
from rpmpipe.registry.models import (
    ControlNumber,
    EngagementRow,
    Enrollment,
    ExportLedgerEntry,
    Patient,
)

COUNTERS = ("isa13", "gs06", "st02")
_ISA13_MAX = 999_999_999


@dataclass(frozen=True, slots=True)
class RunStamp:
    """Where a run's ledger rows point: run id, file name and control numbers."""

    run_id: str
    claims_file: str  # where billed lines went
    corrections_file: str  # where correction and void rows were reported
    control: ControlNumbers | None
    exported_at: datetime


def load_final_records(conn: Connection, as_of: date) -> list[FinalRecord]:
    """Every engagement record whose period ended before ``as_of``, with its ordering NPI."""
    enrollments: dict[tuple[str, str], list[tuple[date, date | None, str]]] = {}
    for e in conn.execute(
        select(
            Enrollment.patient_id,
            Enrollment.program,
            Enrollment.start_date,
            Enrollment.end_date,
            Enrollment.ordering_npi,
        )
    ):
        enrollments.setdefault((e.patient_id, e.program), []).append(
            (e.start_date, e.end_date, e.ordering_npi)
        )
    records = []
    rows = conn.execute(
        select(EngagementRow.__table__)
        .where(EngagementRow.period_end < as_of)
        .order_by(EngagementRow.id)
    )
    for row in rows:
        try:
            lines = signature(
                (str(item["code"]), int(item["units"]), date.fromisoformat(item["date_of_service"]))
                for item in json.loads(row.lines_json or "[]")
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(
                f"engagement record {row.id} (patient {row.patient_id}): "
                f"unreadable lines_json ({exc})"
            ) from None
        records.append(
            FinalRecord(
                patient_id=row.patient_id,
                program=row.program,
                kind=row.kind,
                period_start=row.period_start,
                period_end=row.period_end,
                status=row.status,
                rule_set=row.rule_set,
                reason=row.reason or "",
                transmission_days=row.transmission_days or 0,
                interactive_minutes=Decimal(row.interactive_minutes or 0).quantize(Decimal("0.01")),
                management_minutes=Decimal(row.management_minutes or 0).quantize(Decimal("0.01")),
                lines=lines,
                # The record names the enrollment that owns it; rows stored before that
                # carry no NPI and fall back to the enrollment covering the period end.
                rendering_npi=row.ordering_npi
                or _ordering_npi(
                    enrollments.get((row.patient_id, row.program), []), row.period_end
                ),
            )
        )
    return records


def _ordering_npi(spans: Sequence[tuple[date, date | None, str]], day: date) -> str:
    # The enrollment covering the period's last day; else the latest one that started before.
    started = sorted((s for s in spans if s[0] <= day), key=lambda s: s[0])
    for _start, end, npi in reversed(started):
        if end is None or end >= day:
            return npi
    return started[-1][2] if started else ""


def load_patients(conn: Connection, patient_ids: Iterable[str]) -> dict[str, PatientInfo]:
    wanted = set(patient_ids)
    patients = {}
    for p in conn.execute(select(Patient.__table__)):
        if p.patient_id not in wanted:
            continue
        patients[p.patient_id] = PatientInfo(
            patient_id=p.patient_id,
            first_name=p.first_name,
            last_name=p.last_name,
            birth_date=p.birth_date,
            sex=p.sex,
            address1=p.address1,
            city=p.city,
            state=p.state,
            zip=p.zip,
            payer_id=p.payer_id,
            payer_name=p.payer_name,
            member_id=p.member_id,
            icd10=tuple(c.strip() for c in (p.icd10_codes or "").split(";") if c.strip()),
        )
    return patients


def load_ledger(conn: Connection) -> dict[RecordKey, LedgerState]:
    """The latest revision of every exported record."""
    rows: dict[RecordKey, list[Any]] = {}
    e = ExportLedgerEntry
    columns = (
        e.patient_id,
        e.program,
        e.record_kind,
        e.period_start,
        e.period_end,
        e.revision,
        e.claim_id,
        e.line_kind,
        e.code,
        e.units,
        e.date_of_service,
        e.transmission_days,
        e.interactive_minutes,
        e.management_minutes,
    )
    for entry in conn.execute(select(*columns)):
        key = (entry.patient_id, entry.program, entry.record_kind, entry.period_start)
        rows.setdefault(key, []).append(entry)
    states = {}
    for key, entries in rows.items():
        latest = max(e.revision for e in entries)
        current = [e for e in entries if e.revision == latest]
        states[key] = LedgerState(
            revision=latest,
            claim_id=current[0].claim_id,
            line_kind=current[0].line_kind,
            period_end=current[0].period_end,
            transmission_days=current[0].transmission_days or 0,
            interactive_minutes=Decimal(current[0].interactive_minutes or 0).quantize(
                Decimal("0.01")
            ),
            management_minutes=Decimal(current[0].management_minutes or 0).quantize(
                Decimal("0.01")
            ),
            lines=signature(
                (e.code, e.units, e.date_of_service) for e in current if e.code != EMPTY_MARKER
            ),
        )
    return states


def allocate_control_numbers(engine: Engine, transactions: int) -> ControlNumbers:
    """Take the next ISA13 and GS06 and ``transactions`` ST02s, committed at once.

    Numbers taken by a run that later fails are simply skipped: X12 needs them unique and
    increasing, not gapless.
    """
    for _attempt in range(3):
        try:
            with engine.begin() as conn:
                taken = {
                    name: _take(conn, name, transactions if name == "st02" else 1)
                    for name in COUNTERS
                }
            return ControlNumbers(taken["isa13"], taken["gs06"], taken["st02"])
        except IntegrityError:
            continue  # another run created the counter row first; read it again
    raise ExportError("could not allocate X12 control numbers (concurrent exports?)")


def _take(conn: Connection, name: str, count: int) -> int:
    # UPDATE first so the row is locked (PostgreSQL) / the database is write-locked (SQLite)
    # before we read it: two runs can never get the same number.
    result = conn.execute(
        update(ControlNumber)
        .where(ControlNumber.name == name)
        .values(value=ControlNumber.value + count)
    )
    if result.rowcount == 0:
        conn.execute(insert(ControlNumber).values(name=name, value=count))
    value = conn.execute(select(ControlNumber.value).where(ControlNumber.name == name)).scalar_one()
    if value > _ISA13_MAX:
        raise ExportError(
            f"X12 control number {name} passed {_ISA13_MAX}; reset it with the receiver"
        )
    return int(value) - count + 1


def run_is_recorded(engine: Engine, run_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(func.count())
            .select_from(ExportLedgerEntry)
            .where(ExportLedgerEntry.run_id == run_id)
        ).scalar_one()
    return bool(found)


def record_ledger(
    engine: Engine,
    writes: Sequence[LedgerWrite],
    stamp: RunStamp,
    transaction_of: dict[str, int],
) -> None:
    """Insert every line of the run in one transaction (all or nothing).

    The unique constraint on (record, code, revision) turns a concurrent export of the same
    lines into an error here, before the run directory is published.
    """
    control = stamp.control
    rows = [
        {
            "run_id": stamp.run_id,
            "patient_id": w.patient_id,
            "program": w.program,
            "record_kind": w.record_kind,
            "revision": w.revision,
            "code": w.code,
            "units": w.units,
            "charge": w.charge,
            "date_of_service": w.date_of_service,
            "period_start": w.period_start,
            "period_end": w.period_end,
            "line_kind": w.line_kind,
            "claim_id": w.claim_id,
            "file_name": (
                stamp.corrections_file
                if w.line_kind in ("correction", "void")
                else stamp.claims_file
            ),
            "interchange_control": control.interchange if control else 0,
            "group_control": control.group if control else 0,
            "transaction_control": transaction_of.get(w.claim_id, 0) if control else 0,
            "transmission_days": w.transmission_days,
            "interactive_minutes": w.interactive_minutes,
            "management_minutes": w.management_minutes,
            "exported_at": stamp.exported_at,
        }
        for w in writes
    ]
    try:
        with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(ExportLedgerEntry), rows[start : start + 5000])
    except IntegrityError as exc:
        raise ExportError(
            "another export recorded some of these lines first; nothing of this run was recorded"
        ) from exc
