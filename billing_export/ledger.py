"""Registry reads and writes of the export: records, patients, ledger, control numbers."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from rpmpipe.billing_export.claims import PatientInfo
from rpmpipe.billing_export.plan import (
    EMPTY_MARKER,
    VOID_CLAIM,
    LedgerState,
    LedgerWrite,
    signature,
)
from rpmpipe.billing_export.x12 import ControlNumbers
from rpmpipe.errors import ExportError, RegistryRecordError
from rpmpipe.progress import SILENT, Progress
from rpmpipe.records import REVIEW_LINE_KINDS, FinalRecord, LineSig, RecordKey, RecordStatus
from rpmpipe.registry.engagement import record_of
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
BILLABLE = RecordStatus.BILLABLE  # the engagement status whose lines are billed

# Per record: its lines as the registry stores them (``lines_json``, "" when the record is not
# billable) and the billed lines they say. The ledger keeps the text with each revision whose
# lines it equals, so a later run sees an unchanged record by comparing texts in the database.
StoredLines = Mapping[RecordKey, tuple[str, LineSig]]


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


def _named_rows(result: Any, name: str) -> Iterator[Any]:
    """The rows of ``result`` as named tuples: read by column name, a SQLAlchemy row costs
    about ten times what a named tuple does."""
    return map(cast(Any, namedtuple(name, result.keys()))._make, result)


def load_final_records(
    conn: Connection, as_of: date, stored: dict[RecordKey, tuple[str, LineSig]] | None = None
) -> list[FinalRecord]:
    """Every engagement record whose period ended before ``as_of``, with its ordering NPI.

    ``stored``, when given, receives each record's stored lines (see :data:`StoredLines`).
    """
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
    er = EngagementRow
    table = EngagementRow.__table__
    result = conn.execute(
        # Not the evidence: the audit and the run's evidence read it for the lines they need.
        # Nor when the record was computed, which the export never reads.
        select(*(c for c in table.c if c.name not in ("evidence_json", "as_of", "computed_at")))
        .where(er.period_end < as_of)
        .order_by(er.id)
    )
    for row in _named_rows(result, "EngagementRecordRow"):
        # The record names the enrollment that owns it; rows stored before that carry no NPI
        # and fall back to the enrollment covering the period end.
        npi = row.ordering_npi or ordering_npi(
            enrollments.get((row.patient_id, row.program), []), row.period_end
        )
        try:
            record = record_of(row, FinalRecord, rendering_npi=npi)
        except RegistryRecordError as exc:
            raise ExportError(str(exc), **exc.fields) from None
        if stored is not None:
            stored[record.key] = (_stored_text(row.status, row.lines_json), record.billed_lines)
        records.append(record)
    return records


def _stored_text(status: str, lines_json: str | None) -> str:
    # As _stored_text_sql computes it in the database.
    if status != BILLABLE:
        return ""
    return lines_json if lines_json is not None else "[]"


def _stored_text_sql() -> ColumnElement[str]:
    e = EngagementRow.__table__.c
    return case((e.status == BILLABLE, func.coalesce(e.lines_json, "[]")), else_="")


def nothing_to_export(conn: Connection, as_of: date) -> bool:
    """True when an export as of ``as_of`` has certainly nothing to do, decided in one query
    over the indexes, without reading records or patients: no billable final record is
    missing from the ledger, every final record in the ledger still stores the lines its
    latest revision was written from, and no record with billed lines has vanished.

    False means "maybe": the run compares every record (a record whose ledger rows predate
    ``record_lines``, or whose text changed but not its lines, takes that path too).
    """
    e = EngagementRow.__table__.c
    lg = ExportLedgerEntry.__table__.alias("lg")
    newer = ExportLedgerEntry.__table__.alias("newer")

    def ledger_key_is(patient: Any, program: Any, kind: Any, start: Any) -> ColumnElement[bool]:
        return and_(
            lg.c.patient_id == patient,
            lg.c.program == program,
            lg.c.record_kind == kind,
            lg.c.period_start == start,
        )

    latest = lg.c.revision == (
        select(func.max(newer.c.revision))
        .where(
            newer.c.patient_id == lg.c.patient_id,
            newer.c.program == lg.c.program,
            newer.c.record_kind == lg.c.record_kind,
            newer.c.period_start == lg.c.period_start,
        )
        .scalar_subquery()
    )
    in_ledger = ledger_key_is(e.patient_id, e.program, e.kind, e.period_start)
    new = select(literal(1)).where(
        e.period_end < as_of, e.status == BILLABLE, ~exists().where(in_ledger)
    )
    # One pass over the latest revisions, each with its final record if there is one.
    final = lg.outerjoin(EngagementRow.__table__, and_(in_ledger, e.period_end < as_of))
    changed_or_vanished = (
        select(literal(1))
        .select_from(final)
        .where(
            latest,
            or_(
                and_(
                    e.id.is_not(None),
                    or_(lg.c.record_lines.is_(None), lg.c.record_lines != _stored_text_sql()),
                ),
                and_(
                    e.id.is_(None),
                    lg.c.period_end < as_of,
                    lg.c.code != EMPTY_MARKER,
                    lg.c.line_kind != VOID_CLAIM,
                ),
            ),
        )
    )
    something = conn.execute(select(or_(new.exists(), changed_or_vanished.exists())))
    return not something.scalar_one()


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
    result = conn.execute(select(Patient.__table__))
    for p in _named_rows(result, "PatientRow"):
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


def record_ledger(
    engine: Engine,
    writes: Sequence[LedgerWrite],
    stamp: RunStamp,
    stored: StoredLines | None = None,
    progress: Progress = SILENT,
) -> None:
    """Insert every line of the run, and the run itself, in one transaction (all or nothing).

    The run row names the exports directory, so an interrupted run is found and finished
    wherever it was written. The unique constraint on (record, code, revision) turns a
    concurrent export of the same lines into an error here, before the run directory is
    published. On SQLite the registry runs with ``synchronous=FULL``: when this returns, the
    rows are on disk, and only then is the run directory published.

    ``stored`` (the records' stored lines, read with them) gives each revision its
    ``record_lines``: the text, when the lines it says are the lines written. ``progress``
    hears the rows inserted.
    """
    progress.step("recording the lines in the ledger", len(writes))
    record_lines = _record_lines(writes, stored or {})
    no_control = ControlNumbers(0, 0, 0)
    sent = [w.line_kind not in REVIEW_LINE_KINDS for w in writes]
    controls = [
        (stamp.control_of.get(w.claim_id) or no_control) if s else no_control
        for w, s in zip(writes, sent, strict=True)
    ]
    n = len(writes)
    columns: dict[str, list[Any]] = {
        "run_id": [stamp.run_id] * n,
        "patient_id": [w.patient_id for w in writes],
        "program": [w.program for w in writes],
        "record_kind": [w.record_kind for w in writes],
        "revision": [w.revision for w in writes],
        "code": [w.code for w in writes],
        "units": [w.units for w in writes],
        "charge": [w.charge for w in writes],
        "date_of_service": [w.date_of_service for w in writes],
        "period_start": [w.period_start for w in writes],
        "period_end": [w.period_end for w in writes],
        "line_kind": [w.line_kind for w in writes],
        "claim_id": [w.claim_id for w in writes],
        "file_name": [
            stamp.claims_file_of.get(w.claim_id, "") if s else stamp.corrections_file
            for w, s in zip(writes, sent, strict=True)
        ],
        "interchange_control": [c.interchange for c in controls],
        "group_control": [c.group for c in controls],
        "transaction_control": [
            stamp.transaction_of.get(w.claim_id, 0) if s else 0
            for w, s in zip(writes, sent, strict=True)
        ],
        "transmission_days": [w.transmission_days for w in writes],
        "interactive_minutes": [w.interactive_minutes for w in writes],
        "management_minutes": [w.management_minutes for w in writes],
        "exported_at": [stamp.exported_at] * n,
        "line_control_number": [w.line_control_number for w in writes],
        "episode_start": [w.episode_start for w in writes],
        "record_lines": [
            record_lines[(w.patient_id, w.program, w.record_kind, w.period_start, w.revision)]
            for w in writes
        ],
    }
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
            insert_columns(conn, cast(Table, ExportLedgerEntry.__table__), columns, progress)
    except IntegrityError as exc:
        raise ExportError(
            "another export recorded some of these lines first; nothing of this run was recorded"
        ) from exc


def insert_columns(
    conn: Connection,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    progress: Progress = SILENT,
    chunk: int = 5000,
) -> None:
    """Insert the rows whose values are ``columns`` (name to values, all of one length)
    with the driver's executemany, in chunks.

    The statement is compiled once and each column's bind processor (the conversion
    SQLAlchemy applies to a value for this dialect) is taken once, so a row costs the
    driver's work and one conversion per value, not SQLAlchemy's per-row parameter build;
    a column's conversion is done once per distinct value (a run's rows share a few dates,
    amounts and one timestamp).
    """
    names = list(columns)
    count = len(columns[names[0]]) if names else 0
    if not count:
        return
    dialect = conn.dialect
    compiled = insert(table).compile(dialect=dialect, column_keys=names)
    positional = compiled.positional
    order = list(compiled.positiontup or ()) if positional else names
    convert = [
        _converted(table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in order
    ]
    for start in range(0, count, chunk):
        part = [
            fn(list(columns[name][start : start + chunk]))
            for name, fn in zip(order, convert, strict=True)
        ]
        if positional:
            params: list[Any] = list(zip(*part, strict=True))
        else:
            params = [dict(zip(order, values, strict=True)) for values in zip(*part, strict=True)]
        conn.exec_driver_sql(compiled.string, params)
        progress.advance(len(params))


def _converted(fn: Callable[[Any], Any] | None) -> Callable[[list[Any]], list[Any]]:
    """The values of a column as the driver takes them: ``fn`` applied once per distinct
    value (by type and value, so 1 and True stay apart) and reused for its repeats."""
    if fn is None:
        return lambda values: values
    seen: dict[tuple[type, Any], Any] = {}

    def convert(values: list[Any]) -> list[Any]:
        out = []
        for value in values:
            key = (value.__class__, value)
            try:
                out.append(seen[key])
            except KeyError:
                out.append(seen.setdefault(key, fn(value)))
            except TypeError:  # unhashable: converted each time
                out.append(fn(value))
        return out

    return convert


def _record_lines(
    writes: Sequence[LedgerWrite], stored: StoredLines
) -> dict[tuple[str, str, str, date, int], str | None]:
    """Per (record, revision) written: "" when the revision has no lines (any record that is
    not billable matches it), the record's stored text when it says exactly the lines
    written, else None (unknown: the record is compared line by line next time)."""
    lines: dict[tuple[str, str, str, date, int], list[tuple[str, int, date]]] = {}
    for w in writes:
        found = lines.setdefault(
            (w.patient_id, w.program, w.record_kind, w.period_start, w.revision), []
        )
        if w.code != EMPTY_MARKER and w.line_kind != VOID_CLAIM:
            found.append((w.code, w.units, w.date_of_service))
    out: dict[tuple[str, str, str, date, int], str | None] = {}
    for key, written in lines.items():
        sig = signature(written)
        text = stored.get(key[:4])
        out[key] = "" if not sig else (text[0] if text is not None and text[1] == sig else None)
    return out


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
