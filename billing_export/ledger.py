"""Registry reads and writes of the export: records, patients, ledger, control numbers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rpmpipe.billing_export.claims import PatientInfo
from rpmpipe.billing_export.plan import (
    EMPTY_MARKER,
    VOID_CLAIM,
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
    ExportRun,
    Patient,
)

COUNTERS = ("isa13", "gs06", "st02", "claim")
_ISA13_MAX = 999_999_999


@dataclass(frozen=True, slots=True)
class RunStamp:
    """Where a run's ledger rows point: run id, files, control numbers, exports directory."""

    run_id: str
    corrections_file: str  # where correction and void rows were reported
    exported_at: datetime
    exports_dir: str  # the --out directory: recovery finds an unfinished run there
    # per claim id: the .837 that carries it and its interchange's control numbers
    claims_file_of: Mapping[str, str] = field(default_factory=dict)
    control_of: Mapping[str, ControlNumbers] = field(default_factory=dict)
    transaction_of: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Control numbers of each interchange of a run, and the run's first claim number."""

    interchanges: tuple[ControlNumbers, ...]
    first_claim_number: int


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
                episode_start=row.episode_start,
                lines=lines,
                # The record names the enrollment that owns it; rows stored before that
                # carry no NPI and fall back to the enrollment covering the period end.
                rendering_npi=row.ordering_npi
                or ordering_npi(enrollments.get((row.patient_id, row.program), []), row.period_end),
            )
        )
    return records


def ordering_npi(spans: Sequence[tuple[date, date | None, str]], day: date) -> str:
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
        e.payer_claim_control_number,
        e.episode_start,
    )
    return ledger_states(conn.execute(select(*columns)))


def ledger_states(entries: Iterable[Any]) -> dict[RecordKey, LedgerState]:
    """The latest revision of each record among ``entries``: ledger rows, or any values with
    the ledger's column names (the reports read the rows once for several purposes)."""
    rows: dict[RecordKey, list[Any]] = {}
    for entry in entries:
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
                (e.code, e.units, e.date_of_service)
                for e in current
                if e.code != EMPTY_MARKER and e.line_kind != VOID_CLAIM
            ),
            payer_claim_control_number=next(
                (e.payer_claim_control_number for e in current if e.payer_claim_control_number),
                "",
            ),
            episode_start=next((e.episode_start for e in entries if e.episode_start), None),
        )
    return states


def allocate_control_numbers(
    engine: Engine, transactions: Sequence[int], claims: int = 0
) -> Allocation:
    """Take an ISA13 and a GS06 per interchange (``transactions[i]`` ST02s for the i-th) and
    ``claims`` claim numbers (CLM01), committed at once.

    Numbers taken by a run that later fails are simply skipped: X12 needs them unique and
    increasing, and claim ids unique, not gapless.
    """
    for _attempt in range(3):
        try:
            with engine.begin() as conn:
                isa = _take(conn, "isa13", len(transactions))
                gs = _take(conn, "gs06", len(transactions))
                st = _take(conn, "st02", sum(transactions))
                first_claim = _take(conn, "claim", claims) if claims else 0
            interchanges = []
            for i, count in enumerate(transactions):
                interchanges.append(ControlNumbers(isa + i, gs + i, st))
                st += count
            return Allocation(tuple(interchanges), first_claim)
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


def record_ledger(engine: Engine, writes: Sequence[LedgerWrite], stamp: RunStamp) -> None:
    """Insert every line of the run, and the run itself, in one transaction (all or nothing).

    The run row names the exports directory, so an interrupted run is found and finished
    wherever it was written. The unique constraint on (record, code, revision) turns a
    concurrent export of the same lines into an error here, before the run directory is
    published. On SQLite the registry runs with ``synchronous=FULL``: when this returns, the
    rows are on disk, and only then is the run directory published.
    """
    rows = []
    for w in writes:
        control = stamp.control_of.get(w.claim_id)
        sent = w.line_kind not in ("correction", "void")
        rows.append(
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
                    stamp.claims_file_of.get(w.claim_id, "") if sent else stamp.corrections_file
                ),
                "interchange_control": control.interchange if control and sent else 0,
                "group_control": control.group if control and sent else 0,
                "transaction_control": stamp.transaction_of.get(w.claim_id, 0) if sent else 0,
                "transmission_days": w.transmission_days,
                "interactive_minutes": w.interactive_minutes,
                "management_minutes": w.management_minutes,
                "exported_at": stamp.exported_at,
                "line_control_number": w.line_control_number,
                "episode_start": w.episode_start,
            }
        )
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ExportRun).values(
                    run_id=stamp.run_id,
                    exports_dir=stamp.exports_dir,
                    status="recorded",
                    recorded_at=stamp.exported_at,
                )
            )
            for start in range(0, len(rows), 5000):
                conn.execute(insert(ExportLedgerEntry), rows[start : start + 5000])
    except IntegrityError as exc:
        raise ExportError(
            "another export recorded some of these lines first; nothing of this run was recorded"
        ) from exc


def unfinished_runs(engine: Engine) -> list[tuple[str, str]]:
    """(run_id, exports_dir) of every run recorded in the ledger but not yet published."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ExportRun.run_id, ExportRun.exports_dir)
            .where(ExportRun.status == "recorded")
            .order_by(ExportRun.run_id)
        ).all()
    return [(r.run_id, r.exports_dir) for r in rows]


def mark_run(engine: Engine, run_id: str, status: str, at: datetime) -> None:
    """Record that a run was published (its rename is durable) or rolled back."""
    with engine.begin() as conn:
        conn.execute(
            update(ExportRun)
            .where(ExportRun.run_id == run_id)
            .values(status=status, finished_at=at)
        )


def roll_back_run(engine: Engine, run_id: str, at: datetime) -> int:
    """Remove a run's ledger lines (its files were lost before publishing); returns how many."""
    with engine.begin() as conn:
        removed = conn.execute(
            delete(ExportLedgerEntry).where(ExportLedgerEntry.run_id == run_id)
        ).rowcount
        conn.execute(
            update(ExportRun)
            .where(ExportRun.run_id == run_id)
            .values(status="rolled_back", finished_at=at)
        )
    return int(removed or 0)


def run_status(engine: Engine, run_id: str) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(
            select(ExportRun.status).where(ExportRun.run_id == run_id)
        ).scalar_one_or_none()
    return None if value is None else str(value)
