"""The I/O edge of metrics: load registry, activities and readings; persist final records."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, Table, delete, or_, select, text, tuple_

from rpmpipe.asof import check_as_of
from rpmpipe.collector import gc_paused
from rpmpipe.errors import RpmpipeError
from rpmpipe.logs import get_logger
from rpmpipe.metrics.blocks import WHOLE_FLEET, PatientBlock, fleet_blocks
from rpmpipe.metrics.care_management import (
    CareFacts,
    CareTable,
    apply_exclusions,
    care_table,
    exclusion_patients,
    hold_in_table,
)
from rpmpipe.metrics.care_sources import (
    care_facts_of,
    driver_day,
    load_activity_columns,
    registry_enrollments,
)
from rpmpipe.metrics.care_table import CareEntries, care_time
from rpmpipe.metrics.csv_bulk import csv_chunks
from rpmpipe.metrics.engagement import (
    SUPPLY_PROGRAMS,
    Prepared,
    prepare,
    render_records,
    supply_periods,
)
from rpmpipe.metrics.management_months import MonthEntries, rpm_management_entries
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.snapshot import Assignment, RegistrySnapshot
from rpmpipe.metrics.sources import reading_batches, readings_present, stored_readings
from rpmpipe.progress import SILENT, Progress
from rpmpipe.records import EngagementRecord, RecordStatus
from rpmpipe.registry.db import make_engine
from rpmpipe.registry.engagement import CONTENT_COLUMNS, KEY_COLUMNS, engagement_row
from rpmpipe.registry.tables import DEVICE_ASSIGNMENTS, ENROLLMENTS, PATIENTS
from rpmpipe.settings import MetricsSettings

if TYPE_CHECKING:
    import pyarrow as pa

log = get_logger("metrics.job")


class ReadingsStoreError(RpmpipeError):
    """The readings store is missing or empty while devices are assigned: most likely a wrong
    data directory. Counting "no readings" then would unbill every period."""


def check_readings_store(settings: MetricsSettings, assignments: int) -> None:
    """Refuse to count when the registry has device assignments and the readings store is
    missing or holds no readings (nothing is computed, persisted or deleted)."""
    if assignments and not readings_present(settings.store.readings_dir):
        raise ReadingsStoreError(
            f"readings directory {settings.store.readings_dir} is missing or holds no readings, "
            f"while the registry has {assignments} device assignments: check "
            "--data-dir / RPMPIPE_DATA_DIR; nothing was computed and no record was changed"
        )


def _assignments(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {DEVICE_ASSIGNMENTS}")).scalar_one())


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the registry stores UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


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


def _fetched(
    cursor: Any, sql: str, where: str = "", params: tuple[str, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (``WHERE where`` when given), fetched a chunk at a time (no list
    of every row)."""
    tables = {
        "p": PATIENTS,
        "a": DEVICE_ASSIGNMENTS,
        "e": ENROLLMENTS,
    }
    text = sql.format(**tables) + (f" WHERE {where.format(**tables)}" if where else "")
    cursor.execute(text, params)
    while chunk := cursor.fetchmany(_FETCH_ROWS):
        yield from chunk


def _block_filters(engine: Engine, block: PatientBlock) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The conditions (and parameters) that select a block's patients, the assignments of
    their devices, and their enrollments; none for the whole fleet.

    A block's readings are placed by every assignment of the devices its patients ever had,
    other patients' included (a reading two patients' assignments cover counts for
    neither); those patients' records are another block's."""
    if block == WHOLE_FLEET:
        return (("", ()),) * 3
    mine, params = block.where(engine, "patient_id")
    devices = f"device_id IN (SELECT device_id FROM {{a}} WHERE {mine})"
    return ((mine, params), (devices, params), (mine, params))


_IN_LIST = 500


def _zones_of(cursor: Any, engine: Engine, ids: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(patient, zone) of ``ids`` (a few: the other patients of a block's devices)."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    for i in range(0, len(ids), _IN_LIST):
        part = tuple(ids[i : i + _IN_LIST])
        where = f"patient_id IN ({', '.join([mark] * len(part))})"
        yield from _fetched(cursor, "SELECT patient_id, timezone FROM {p}", where, part)


def load_registry(
    engine: Engine, block: PatientBlock = WHOLE_FLEET
) -> tuple[RegistrySnapshot, CareFacts]:
    """The registry snapshot and the care programs' facts, from one read of the patients and
    enrollments (both need them; reading them twice held two copies of every row); of the
    whole fleet, or of one block of patients.

    Through the driver's cursor: plain tuples, no Row objects for hundreds of thousands of
    lines. Zones, programs, practitioners and a patient's id repeat over the rows: each is
    held once (``text``), shared by the snapshot and the facts.
    """
    texts: dict[str, str] = {}
    text = texts.setdefault
    of_patients, of_assignments, of_enrollments = _block_filters(engine, block)
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            patients = [
                (text(pid, pid), tz, codes, None if qmb is None else bool(qmb), payer)
                for pid, tz, codes, qmb, payer in _fetched(cursor, _PATIENTS, *of_patients)
            ]
            assignments = tuple(
                Assignment(d, text(pid, pid), driver_day(s) or date.min, driver_day(end))
                for d, pid, s, end in _fetched(cursor, _ASSIGNMENTS, *of_assignments)
            )
            # One value per enrollment, shared by the snapshot and the programs' facts.
            enrollments = registry_enrollments(
                _fetched(cursor, _ENROLLMENTS, *of_enrollments), text, driver_day
            )
            others = sorted({a.patient_id for a in assignments if not block.holds(a.patient_id)})
            shared = list(_zones_of(cursor, engine, others)) if others else []
        finally:
            cursor.close()
    # An empty zone (allowed by imports) means the organisation's: left out here, so every
    # reader falls back to it (RegistrySnapshot.zone_of).
    zones = {pid: text(z, z) for pid, tz, _, _, _ in patients if tz and (z := tz.strip())}
    zones.update((pid, text(z, z)) for pid, tz in shared if tz and (z := tz.strip()))
    facts = care_facts_of(engine, patients, enrollments, texts, block)
    return RegistrySnapshot(zones, assignments, enrollments), facts


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
    rpm_entries: MonthEntries


def _inputs(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    known_at: datetime | None = None,
    progress: Progress = SILENT,
    block: PatientBlock = WHOLE_FLEET,
) -> _Inputs:
    progress.step("reading the registry")
    snapshot, facts = load_registry(engine, block)
    if block == WHOLE_FLEET:  # a block's run is checked for the whole fleet before it starts
        check_readings_store(settings, len(snapshot.assignments))
    progress.step("reading care activities")
    acts = load_activity_columns(engine, known_at, block)
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
    return _Inputs(snapshot, facts, time.entries, rpm_management_entries(acts, time))


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
        inputs.rpm_entries,
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
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    progress: Progress = SILENT,
    workers: int | None = None,
) -> Iterator[bytes | memoryview]:
    """The CSV lines (no header; UTF-8 pieces to write in order) of :func:`compute`'s
    records, byte for byte: the CSV rendering of the same table of periods, without a record
    object for the bulk of the rows (``rpmpipe metrics --format csv``). The few patients an
    exclusion between programs touches are rendered from their records, exclusions applied.

    Everything is counted before this returns (a wrong readings store raises here); the
    rows are rendered as the pieces are taken, a block of patients at a time, so the text
    of a run is written as it is made and never held whole.

    A large fleet is counted by ``workers`` processes (default: the CPUs this process may
    use, at most four) in blocks of patients (:mod:`rpmpipe.metrics.blocks`; more blocks
    than workers when a block would be larger than its cap, so memory does not grow with
    the fleet); each block's rows go to a private spool, and the pieces are the spools in
    order."""
    parts = _workers() if workers is None else workers
    blocks = fleet_blocks(engine, parts)
    if len(blocks) > 1:
        check_readings_store(settings, _assignments(engine))
        return _spooled_csv(settings, engine, as_of, blocks, parts, progress)
    counted = _counted(settings, engine, as_of, progress)
    return _logged(_supply_pieces(counted, progress), _care_pieces(counted), as_of, counted.counts)


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return min(cpus, _MAX_WORKERS)


_MAX_WORKERS = 4


@dataclass
class _Counted:
    """A block's tables, counted and with its exclusions applied, ready to render; the
    statuses of the rows rendered so far."""

    work: Prepared | None
    replaced: dict[str, list[EngagementRecord]]
    care: CareTable
    counts: dict[str, int]


def _counted(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    progress: Progress = SILENT,
    block: PatientBlock = WHOLE_FLEET,
) -> _Counted:
    with gc_paused():
        inputs = _inputs(settings, engine, as_of, progress=progress, block=block)
        work = _prepared(settings, inputs, as_of, progress=progress)
        table = _care(settings, inputs, work, as_of, progress)
        clash = exclusion_patients(inputs.facts, table)
        progress.step("applying the exclusions between programs")
        supply = render_records(work, clash) if clash and work is not None else []
        held = hold_in_table(table, supply, inputs.facts, settings.payers_allowing_99091, clash)
    replaced: dict[str, list[EngagementRecord]] = {}
    for r in held:
        replaced.setdefault(r.patient_id, []).append(r)
    return _Counted(work, replaced, table, {s: 0 for s in RecordStatus})


_CSV_ROWS = 20_000


def _supply_pieces(counted: _Counted, progress: Progress = SILENT) -> Iterator[bytes | memoryview]:
    """The supply programs' rows, a block of patients at a time."""
    with gc_paused():
        progress.step("writing the CSV rows")
        work, counted.work = counted.work, None  # its columns are not needed once rendered
        if work is not None:
            yield from csv_chunks(work, counted.counts, counted.replaced)


def _care_pieces(counted: _Counted) -> Iterator[bytes]:
    """The other programs' rows, in chunks."""
    with gc_paused():
        care, fmt = counted.care, CsvRows()
        for i in range(0, len(care), _CSV_ROWS):
            chunk = care.take(np.arange(i, min(i + _CSV_ROWS, len(care))))
            for status in chunk.status.tolist():
                counted.counts[status] += 1
            yield chunk.csv_text(fmt).encode()


def _logged(
    supply: Iterable[bytes | memoryview],
    care: Iterable[bytes | memoryview],
    as_of: date,
    *counts: dict[str, int],
) -> Iterator[bytes | memoryview]:
    """The supply rows, then the other programs' rows; the run's counts are logged once the
    last piece is taken."""
    yield from supply
    yield from care
    total = {s: sum(c[s] for c in counts) for s in RecordStatus}
    _log_computed(
        as_of, sum(total.values()), total[RecordStatus.BILLABLE], total[RecordStatus.PENDING]
    )


_SPOOL_PIECE = 1 << 20


def _spooled_csv(
    settings: MetricsSettings,
    engine: Engine,
    as_of: date,
    blocks: Sequence[PatientBlock],
    workers: int,
    progress: Progress,
) -> Iterator[bytes | memoryview]:
    """The pieces of :func:`compute_csv`, each block counted and rendered by one of
    ``workers`` processes (a block at a time each) into two spools (its supply rows, its
    other rows): the first block's supply rows, the second's, ..., then the first block's
    other rows, and so on, which is a single run's order (blocks are ranges of patient ids,
    and each part is in id order)."""
    workers = max(1, min(workers, len(blocks)))
    progress.step(f"counting {len(blocks)} blocks of patients, {workers} at a time")
    spool = Path(tempfile.mkdtemp(prefix="rpmpipe-metrics-"))  # 0700, the rows are PHI
    try:
        url = engine.url.render_as_string(hide_password=False)
        names = [(spool / f"{k}.supply", spool / f"{k}.care") for k in range(len(blocks))]
        context = multiprocessing.get_context("fork")
        # What this process holds (its modules, settings) is left out of the workers'
        # collections: they would scan it, and touch (copy) the pages they share with it.
        gc.freeze()
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [
                    pool.submit(_spool_block, settings, url, as_of, block, *paths)
                    for block, paths in zip(blocks, names, strict=True)
                ]
                counts = [f.result() for f in futures]
        finally:
            gc.unfreeze()
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    progress.step("writing the CSV rows")
    return _unspooled(spool, names, as_of, counts)


def _unspooled(
    spool: Path, names: Sequence[tuple[Path, Path]], as_of: date, counts: list[dict[str, int]]
) -> Iterator[bytes | memoryview]:
    try:
        yield from _logged(
            _read_all(n for n, _ in names), _read_all(n for _, n in names), as_of, *counts
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _read_all(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as f:
            while piece := f.read(_SPOOL_PIECE):
                yield piece


def _spool_block(
    settings: MetricsSettings,
    url: str,
    as_of: date,
    block: PatientBlock,
    supply_path: Path,
    care_path: Path,
) -> dict[str, int]:
    """In a worker process: count ``block`` and write its rows to the two spools (0600);
    returns the statuses of its rows.

    The collector stays paused from the counting to the last row written: resumed between
    the two, it would first scan every object the counting made and still holds (the
    tables the rows are rendered from), a few tenths of a second a block for nothing."""
    with gc_paused():
        engine = make_engine(url)
        try:
            counted = _counted(settings, engine, as_of, block=block)
        finally:
            engine.dispose()
        for path, pieces in (
            (supply_path, _supply_pieces(counted)),
            (care_path, _care_pieces(counted)),
        ):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
                for piece in pieces:
                    out.write(piece)
        return counted.counts


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
    # Imported here: the CSV run saves nothing, and the ORM's models and PostgreSQL's
    # dialect would be a third of the imports a run pays before it forks its workers.
    from rpmpipe.registry.models import EngagementRow

    table = EngagementRow.__table__
    assert isinstance(table, Table)
    dialect = engine.dialect.name
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
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
