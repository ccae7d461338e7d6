"""The I/O edge of metrics: load registry, activities and readings; persist final records."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, Table, delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from rpmpipe.asof import check_as_of
from rpmpipe.errors import RpmpipeError
from rpmpipe.logs import get_logger
from rpmpipe.metrics.care_management import (
    CareFacts,
    CareTable,
    apply_exclusions,
    care_table,
    exclusion_patients,
    hold_in_table,
)
from rpmpipe.metrics.care_sources import care_facts_of, load_activity_columns
from rpmpipe.metrics.care_table import CareEntries, care_time, rpm_management_activities
from rpmpipe.metrics.csv_bulk import csv_chunks
from rpmpipe.metrics.engagement import (
    SUPPLY_PROGRAMS,
    Prepared,
    prepare,
    render_records,
    supply_periods,
)
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.metrics.sources import reading_batches, readings_present, stored_readings
from rpmpipe.progress import SILENT, Progress
from rpmpipe.records import Activity, EngagementRecord, RecordStatus
from rpmpipe.registry.engagement import CONTENT_COLUMNS, KEY_COLUMNS, engagement_row
from rpmpipe.registry.models import DeviceAssignment, EngagementRow, Patient
from rpmpipe.registry.models import Enrollment as EnrollmentRow
from rpmpipe.settings import MetricsSettings

if TYPE_CHECKING:
    import pyarrow as pa

log = get_logger("metrics.job")


class ReadingsStoreError(RpmpipeError):
    """The readings store is missing or empty while devices are assigned: most likely a wrong
    data directory. Counting "no readings" then would unbill every period."""


def check_readings_store(settings: MetricsSettings, snapshot: RegistrySnapshot) -> None:
    """Refuse to count when the registry has device assignments and the readings store is
    missing or holds no readings (nothing is computed, persisted or deleted)."""
    if snapshot.assignments and not readings_present(settings.store.readings_dir):
        raise ReadingsStoreError(
            f"readings directory {settings.store.readings_dir} is missing or holds no readings, "
            f"while the registry has {len(snapshot.assignments)} device assignments: check "
            "--data-dir / RPMPIPE_DATA_DIR; nothing was computed and no record was changed"
        )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the registry stores UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _day(value: date | str | None) -> date | None:
    # Plain driver rows: SQLite hands dates back as ISO text, PostgreSQL as dates.
    if value is None or isinstance(value, date):
        return value
    return _iso_day(value)


@cache
def _iso_day(text: str) -> date:
    # The registry repeats a few hundred distinct dates over hundreds of thousands of rows.
    return date.fromisoformat(text)


def load_registry_snapshot(engine: Engine) -> RegistrySnapshot:
    """Patients' zones, device assignments and enrollments, as plain values.

    Read through the driver without ORM rows: the registry may hold hundreds of thousands
    of patients and this runs on every metrics call.
    """
    return load_registry(engine)[0]


_FETCH_ROWS = 20_000
_PATIENTS = "SELECT patient_id, timezone, icd10_codes, qmb, payer_id FROM {p}"
_ASSIGNMENTS = "SELECT device_id, patient_id, start_date, end_date FROM {a}"
_ENROLLMENTS = (
    "SELECT patient_id, program, start_date, end_date, consent_date, ordering_npi FROM {e}"
)


def _fetched(cursor: Any, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql``, fetched a chunk at a time (no list of every row)."""
    cursor.execute(
        sql.format(
            p=Patient.__tablename__,
            a=DeviceAssignment.__tablename__,
            e=EnrollmentRow.__tablename__,
        )
    )
    while chunk := cursor.fetchmany(_FETCH_ROWS):
        yield from chunk


def load_registry(engine: Engine) -> tuple[RegistrySnapshot, CareFacts]:
    """The registry snapshot and the care programs' facts, from one read of the patients and
    enrollments (both need them; reading them twice held two copies of every row).

    Through the driver's cursor: plain tuples, no Row objects for hundreds of thousands of
    lines. Zones, programs, practitioners and a patient's id repeat over the rows: each is
    held once (``text``), shared by the snapshot and the facts.
    """
    texts: dict[str, str] = {}
    text = texts.setdefault
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            patients = [
                (text(pid, pid), tz, codes, None if qmb is None else bool(qmb), payer)
                for pid, tz, codes, qmb, payer in _fetched(cursor, _PATIENTS)
            ]
            assignments = tuple(
                Assignment(d, text(pid, pid), _day(s) or date.min, _day(end))
                for d, pid, s, end in _fetched(cursor, _ASSIGNMENTS)
            )
            enrollment_rows = [
                (text(pid, pid), text(prog, prog), _day(s), _day(end), _day(c), npi)
                for pid, prog, s, end, c, npi in _fetched(cursor, _ENROLLMENTS)
            ]
        finally:
            cursor.close()
    # An empty zone (allowed by imports) means the organisation's: left out here, so every
    # reader falls back to it (RegistrySnapshot.zone_of).
    zones = {pid: text(z, z) for pid, tz, *_ in patients if tz and (z := tz.strip())}
    enrollments = tuple(
        Enrollment(pid, prog, s or date.min, end, c, text(npi, npi) if npi else "")
        for pid, prog, s, end, c, npi in enrollment_rows
    )
    facts = care_facts_of(engine, patients, enrollment_rows, texts)
    return RegistrySnapshot(zones, assignments, enrollments), facts


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk work.

    A run builds hundreds of thousands of small, acyclic objects (dates, records, tuples);
    the collector would rescan them again and again (a third of the run time at 100k
    patients). Reference counting still frees them; the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compute(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    known_at: datetime | None = None,
    progress: Progress = SILENT,
) -> list[EngagementRecord]:
    """All engagement records as of ``as_of`` from the registry and the readings dataset.

    ``known_at`` reproduces what a run at that time knew: readings received by then, and
    activities that had started by then (the registry does not keep when they arrived).
    ``progress`` hears each step, and the readings scanned out of those stored.
    """
    with gc_paused():
        return _compute(settings, engine, as_of, known_at, progress)


@dataclass(frozen=True)
class _Inputs:
    """What both renderings start from: the registry, and care time counted once."""

    snapshot: RegistrySnapshot
    facts: CareFacts
    entries: CareEntries
    rpm_activities: list[Activity]


def _inputs(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    known_at: datetime | None = None,
    progress: Progress = SILENT,
) -> _Inputs:
    progress.step("reading the registry")
    snapshot, facts = load_registry(engine)
    check_readings_store(settings, snapshot)
    progress.step("reading care activities")
    acts = load_activity_columns(engine, known_at)
    rules = settings.rules
    progress.step("counting care time", len(acts.at))
    time = care_time(
        acts,
        facts.enrollments,
        facts.zones,
        settings.organization_timezone,
        as_of,
        rules.max_activity_minutes,
        rules.secure_message_interactive,
    )
    progress.advance(len(acts.at))
    progress.step("placing care time in programs and months")
    return _Inputs(snapshot, facts, time.entries, rpm_management_activities(acts, time))


def _scanned(
    settings: MetricsSettings,
    first_day: date,
    as_of: date,
    known_at: datetime | None,
    progress: Progress,
) -> Iterator[pa.RecordBatch]:
    """The readings batches, reported as readings scanned out of those stored; when the
    scan is over, the counting step begins."""
    total = (
        stored_readings(settings.store.readings_dir, first_day, as_of) if progress.live else None
    )
    progress.step("scanning readings", total)
    for batch in reading_batches(settings.store.readings_dir, first_day, as_of, known_at):
        yield batch
        progress.advance(batch.num_rows)
    progress.step("counting days and periods")


def _prepared(
    settings: MetricsSettings,
    inputs: _Inputs,
    as_of: date,
    known_at: datetime | None = None,
    progress: Progress = SILENT,
) -> Prepared | None:
    """The one scan of the readings for the supply programs' table (None: no enrollment of
    RPM or RTM)."""
    starts = [e.start_date for e in inputs.snapshot.enrollments if e.program in SUPPLY_PROGRAMS]
    if not starts:
        return None
    batches = _scanned(settings, min(starts), as_of, known_at, progress)
    return prepare(
        batches,
        inputs.snapshot,
        inputs.rpm_activities,
        as_of,
        settings.rules,
        settings.organization_timezone,
    )


def _care(
    settings: MetricsSettings,
    inputs: _Inputs,
    work: Prepared | None,
    as_of: date,
    progress: Progress = SILENT,
) -> CareTable:
    """The other programs' table (99091 on the RPM supply periods of the table)."""
    progress.step("counting care-management months")
    entries = inputs.entries
    with_99091 = set(entries.patient_id[entries.interpretation()].tolist())
    periods = supply_periods(work, with_99091) if work is not None and with_99091 else {}
    return care_table(
        entries,
        inputs.facts,
        as_of,
        settings.rules,
        settings.organization_timezone,
        periods,
    )


def _log_computed(as_of: date, records: int, billable: int, pending: int) -> None:
    log.info(
        "engagement_computed",
        as_of=as_of.isoformat(),
        records=records,
        billable=billable,
        pending=pending,
    )


def _compute(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    known_at: datetime | None = None,
    progress: Progress = SILENT,
) -> list[EngagementRecord]:
    inputs = _inputs(settings, engine, as_of, known_at, progress)
    work = _prepared(settings, inputs, as_of, known_at, progress)
    table = _care(settings, inputs, work, as_of, progress)
    # The supply programs' records (grouped by patient), then the other programs' (by
    # patient and program).
    progress.step("building the engagement records")
    supply = render_records(work) if work is not None else []
    del work  # the table's columns are not needed once rendered
    care = table.records()
    progress.step("applying the exclusions between programs")
    records = apply_exclusions(
        [*supply, *care],
        inputs.facts,
        settings.payers_allowing_99091,
        exclusion_patients(inputs.facts, table),
    )
    _log_computed(
        as_of,
        len(records),
        sum(r.status == RecordStatus.BILLABLE for r in records),
        sum(r.status == RecordStatus.PENDING for r in records),
    )
    return records


def compute_csv(
    settings: MetricsSettings, engine: Engine, as_of: date, progress: Progress = SILENT
) -> Iterator[bytes | memoryview]:
    """The CSV lines (no header; UTF-8 pieces to write in order) of :func:`compute`'s
    records, byte for byte: the CSV rendering of the same table of periods, without a record
    object for the bulk of the rows (``rpmpipe metrics --format csv``). The few patients an
    exclusion between programs touches are rendered from their records, exclusions applied.

    Everything is counted before this returns (a wrong readings store raises here); the
    rows are rendered as the pieces are taken, a block of patients at a time, so the text
    of a run is written as it is made and never held whole."""
    with gc_paused():
        inputs = _inputs(settings, engine, as_of, progress=progress)
        work = _prepared(settings, inputs, as_of, progress=progress)
        table = _care(settings, inputs, work, as_of, progress)
        clash = exclusion_patients(inputs.facts, table)
        progress.step("applying the exclusions between programs")
        supply = render_records(work, clash) if clash and work is not None else []
        held = hold_in_table(table, supply, inputs.facts, settings.payers_allowing_99091, clash)
    replaced: dict[str, list[EngagementRecord]] = {}
    for r in held:
        replaced.setdefault(r.patient_id, []).append(r)
    return _csv_pieces(work, replaced, table, as_of, progress)


_CSV_ROWS = 20_000


def _csv_pieces(
    work: Prepared | None,
    replaced: dict[str, list[EngagementRecord]],
    care: CareTable,
    as_of: date,
    progress: Progress,
) -> Iterator[bytes | memoryview]:
    """The supply programs' rows a block of patients at a time, then the other programs'
    rows in chunks; the run's counts are logged once the last piece is taken."""
    counts: dict[str, int] = {s: 0 for s in RecordStatus}
    with gc_paused():
        progress.step("writing the CSV rows")
        if work is not None:
            yield from csv_chunks(work, counts, replaced)
        del work  # the table's columns are not needed once rendered
        fmt = CsvRows()
        for i in range(0, len(care), _CSV_ROWS):
            chunk = care.take(np.arange(i, min(i + _CSV_ROWS, len(care))))
            for status in chunk.status.tolist():
                counts[status] += 1
            yield chunk.csv_text(fmt).encode()
    _log_computed(
        as_of, sum(counts.values()), counts[RecordStatus.BILLABLE], counts[RecordStatus.PENDING]
    )


_UPSERT_ROWS = 5000


def persist_final(
    engine: Engine,
    records: Sequence[EngagementRecord],
    as_of: date,
    now: datetime,
    progress: Progress = SILENT,
) -> int:
    """Upsert the final records (returns their number); unchanged rows are left untouched.

    A rerun for the same as-of date therefore changes nothing. Rows for periods ended before
    ``as_of`` that the computation no longer produces (the registry changed) are removed, so
    the export never reads a stale period.
    """
    final = [r for r in records if r.period_end < as_of]
    progress.step("saving the final records", len(final))
    table = EngagementRow.__table__
    assert isinstance(table, Table)
    dialect = engine.dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise NotImplementedError(f"engagement upsert on {dialect}")
    with engine.begin() as conn:
        existing = {
            tuple(r): None
            for r in conn.execute(
                select(*(table.c[k] for k in KEY_COLUMNS)).where(table.c.period_end < as_of)
            )
        }
        keep = {(r.patient_id, r.program, r.kind, r.period_start) for r in final}
        stale = [k for k in existing if k not in keep]
        for i in range(0, len(stale), 500):
            conn.execute(
                delete(table).where(
                    tuple_(*(table.c[k] for k in KEY_COLUMNS)).in_(stale[i : i + 500])
                )
            )
        # Each batch's rows are made as it is inserted: no list of every row's dict and JSON.
        for i in range(0, len(final), _UPSERT_ROWS):
            rows = [engagement_row(r, as_of, now) for r in final[i : i + _UPSERT_ROWS]]
            stmt = insert(table)
            differs = [table.c[c].is_distinct_from(stmt.excluded[c]) for c in CONTENT_COLUMNS]
            stmt = stmt.on_conflict_do_update(
                index_elements=list(KEY_COLUMNS),
                set_={c: stmt.excluded[c] for c in (*CONTENT_COLUMNS, "as_of", "computed_at")},
                where=or_(*differs),
            )
            conn.execute(stmt, rows)
            progress.advance(len(rows))
    log.info(
        "engagement_persisted", as_of=as_of.isoformat(), final=len(final), stale_removed=len(stale)
    )
    return len(final)


def compute_and_persist(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    now: datetime,
    progress: Progress = SILENT,
) -> list[EngagementRecord]:
    """Compute every record as of ``as_of`` and upsert the final ones (idempotent).

    Raises :class:`rpmpipe.errors.AsOfError` (before any work) when ``as_of`` is after today
    at ``now`` in the organisation's zone.
    """
    check_as_of(as_of, settings.org_zone, now)
    records = compute(settings, engine, as_of, progress=progress)
    persist_final(engine, records, as_of, now, progress)
    return records
