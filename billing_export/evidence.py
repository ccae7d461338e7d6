"""The evidence behind every exported claim line, frozen with the run that billed it.

Per line (keyed by its line control number): the dates with data and the reading ids and
devices behind each date, the care activities (start, minutes, kind, performer, staff,
interactive, goals reviewed, PRO, note), the consent date, enrollment and ordering NPI, the
rule set and the rpmpipe version. Written once per run as ``evidence.parquet`` (read back by
appeals) and ``evidence.csv`` (one row per fact, for people); the run's manifest hashes both
and no later run touches them.

The engagement record already names its dates and activity ids (the metrics stage decided
which counted); this module only looks up what stands behind them: the readings of the
patient's assigned devices on those local dates, and the activity rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe import __version__
from rpmpipe.records import READING_TYPES

EVIDENCE_PARQUET = "evidence.parquet"
EVIDENCE_CSV = "evidence.csv"


@dataclass(frozen=True, slots=True)
class DayEvidence:
    """One date with data (patient's zone) and the readings behind it."""

    day: date
    reading_ids: tuple[str, ...]
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActivityEvidence:
    """One care activity counted for the line (a time-log entry or a contact)."""

    activity_id: str
    started_at: datetime
    minutes: Decimal
    kind: str
    staff_id: str
    interactive: bool
    performer: str = ""
    goals_reviewed: tuple[str, ...] = ()
    pro_instrument: str = ""
    pro_score: Decimal | None = None
    note_ref: str = ""


@dataclass(frozen=True, slots=True)
class LineEvidence:
    """Everything that stood behind one billed line when it was exported."""

    line_control_number: str
    claim_id: str
    line_no: int
    run_id: str
    patient_id: str
    program: str
    record_kind: str
    code: str
    units: int
    charge: Decimal
    date_of_service: date
    period_start: date
    period_end: date
    rule_set: str
    transmission_days: int
    interactive_minutes: Decimal
    ordering_npi: str
    consent_date: date | None
    enrollment_start: date | None
    enrollment_end: date | None
    days: tuple[DayEvidence, ...] = ()
    activities: tuple[ActivityEvidence, ...] = ()
    # Other activities of the period that document engagement (goals reviewed, PROs) without
    # being counted for this line (e.g. a questionnaire, or time of another program).
    documentation: tuple[ActivityEvidence, ...] = ()
    rpmpipe_version: str = __version__

    @property
    def interactive_contacts(self) -> tuple[ActivityEvidence, ...]:
        return tuple(a for a in self.activities if a.interactive)

    @property
    def minutes(self) -> Decimal:
        return sum((a.minutes for a in self.activities), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class EnrollmentSpan:
    start: date
    end: date | None
    consent_date: date | None
    ordering_npi: str


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """What the engagement record names: its dates with data (ISO text, as stored: the
    export keeps them in Arrow) and its activity ids."""

    dates: tuple[str, ...]
    activity_ids: tuple[str, ...]


def record_evidence(evidence_json: str) -> RecordEvidence:
    """The engagement record's stored evidence (``{"dates": [...], "activity_ids": [...]}``)."""
    doc = orjson.loads(evidence_json or "{}")
    return RecordEvidence(
        tuple(doc.get("dates", [])),
        tuple(map(str, doc.get("activity_ids", []))),
    )


def enrollment_for(spans: Sequence[EnrollmentSpan], day: date) -> EnrollmentSpan | None:
    """The enrollment covering ``day``, else the latest that started before it."""
    started = sorted((s for s in spans if s.start <= day), key=lambda s: s.start)
    for span in reversed(started):
        if span.end is None or span.end >= day:
            return span
    return started[-1] if started else None


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What stands behind one engagement record: its days, activities and enrollment."""

    days: tuple[DayEvidence, ...]
    activities: tuple[ActivityEvidence, ...]
    enrollment: EnrollmentSpan | None
    care_plan_on: date | None = None  # the care plan on file for the period (CCM, PCM, APCM)
    # Every activity of the patient in the period (any program): where PROs and goal
    # reviews are looked for; ``activities`` are the ones the record counted.
    period_activities: tuple[ActivityEvidence, ...] = ()
    zone: str = "UTC"  # the patient's zone: activity dates are local dates
    # (dates with data, dates with readings behind them) when the run keeps the days
    # themselves in Arrow (``evidence_days.RecordDays``) and ``days`` is left empty.
    day_counts: tuple[int, int] | None = None

    @property
    def every_day_read(self) -> bool:
        """The record names dates with data, and readings stand behind each of them."""
        if self.day_counts is not None:
            dates, read = self.day_counts
            return dates > 0 and read == dates
        return bool(self.days) and all(d.reading_ids for d in self.days)


RecordKey = tuple[str, str, str, date]


def record_facts(
    keys: Iterable[tuple[RecordKey, date]],
    records: Mapping[RecordKey, RecordEvidence],
    enrollments: Mapping[tuple[str, str], Sequence[EnrollmentSpan]],
    activities: Mapping[str, ActivityEvidence],
    day_counts: Callable[[RecordKey], tuple[int, int]],
    patient_activities: Mapping[str, Sequence[ActivityEvidence]] | None = None,
    zones: Mapping[str, str] | None = None,
    care_plans: Mapping[tuple[str, str], Sequence[date]] | None = None,
) -> dict[RecordKey, RecordFacts]:
    """The facts of each (record key, period end) (pure: every lookup is passed in; the
    days themselves stay in Arrow, ``day_counts`` gives each record's counts of them)."""
    out = {}
    zone_of: dict[str, ZoneInfo] = {}
    no_evidence = RecordEvidence((), ())
    # Each patient's activities with their local dates, once per patient; the activities of
    # a period once per (patient, period), shared by the period's records.
    dated: dict[str, list[tuple[date, ActivityEvidence]]] = {}
    periods: dict[tuple[str, date, date], tuple[ActivityEvidence, ...]] = {}
    for key, period_end in keys:
        patient_id, program = key[0], key[1]
        name = (zones or {}).get(patient_id) or "UTC"
        zone = zone_of.get(name) or zone_of.setdefault(name, ZoneInfo(name))
        in_period = periods.get((patient_id, key[3], period_end))
        if in_period is None:
            local = dated.get(patient_id)
            if local is None:
                local = dated[patient_id] = [
                    (a.started_at.astimezone(zone).date(), a)
                    for a in (patient_activities or {}).get(patient_id, ())
                ]
            in_period = periods[(patient_id, key[3], period_end)] = tuple(
                a for day, a in local if key[3] <= day <= period_end
            )
        found = records.get(key, no_evidence)
        out[key] = RecordFacts(
            days=(),
            activities=tuple(activities[a] for a in found.activity_ids if a in activities),
            enrollment=enrollment_for(enrollments.get((patient_id, program), ()), period_end),
            period_activities=in_period,
            zone=str(zone),
            care_plan_on=_care_plan_on((care_plans or {}).get((patient_id, program)), period_end),
            day_counts=day_counts(key),
        )
    return out


def _care_plan_on(established: Sequence[date] | None, period_end: date) -> date | None:
    """The latest care plan established by the period end (most records have none)."""
    if not established:
        return None
    return max((d for d in established if d <= period_end), default=None)


def documentation_of(f: RecordFacts) -> tuple[ActivityEvidence, ...]:
    counted = {a.activity_id for a in f.activities}
    return tuple(
        a
        for a in f.period_activities
        if a.activity_id not in counted and (a.goals_reviewed or a.pro_instrument)
    )


def facts_of(line: LineEvidence, zone: str) -> RecordFacts:
    """The facts a frozen evidence line holds, for auditing it again later."""
    span = (
        EnrollmentSpan(
            line.enrollment_start, line.enrollment_end, line.consent_date, line.ordering_npi
        )
        if line.enrollment_start is not None
        else None
    )
    return RecordFacts(
        days=line.days,
        activities=line.activities,
        enrollment=span,
        period_activities=(*line.activities, *line.documentation),
        zone=zone,
    )


# --- readings behind the dates (I/O) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssignmentSpan:
    device_id: str
    patient_id: str
    start: date
    end: date | None


def readings_by_day(
    readings_dir: Path,
    wanted: Mapping[str, set[date]],
    assignments: Iterable[AssignmentSpan],
    zones: Mapping[str, str],
) -> dict[tuple[str, date], tuple[list[str], list[str]]]:
    """(reading ids, device ids) per (patient, local date) of ``wanted`` (see
    :func:`reading_rows`; the export keeps the same rows in Arrow, :func:`day_table`)."""
    wanted_days = pa.table(
        {
            "patient_id": pa.array([p for p, ds_ in wanted.items() for _ in ds_], pa.string()),
            "day": pa.array([d for ds_ in wanted.values() for d in ds_], pa.date32()),
        }
    )
    found = reading_rows(readings_dir, wanted_days, assignments, zones)
    result: dict[tuple[str, date], tuple[list[str], list[str]]] = {}
    patient_ids = found["patient_id"].to_pylist()
    found_days = found["day"].to_pylist()
    found_ids = found["id"].to_pylist()
    found_devices = found["device_id"].to_pylist()
    current: tuple[str, date] | None = None
    ids_of: list[str] = []
    devices_of: list[str] = []
    for n, patient_id in enumerate(patient_ids):
        key = (patient_id, found_days[n])
        if key != current:
            current = key
            ids_of, devices_of = result.setdefault(key, ([], []))
        ids_of.append(found_ids[n])
        devices_of.append(found_devices[n])
    return result


READING_ROWS_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()),
        ("day", pa.date32()),
        ("id", pa.string()),
        ("device_id", pa.string()),
    ]
)


def reading_rows(
    readings_dir: Path,
    wanted_days: pa.Table,
    assignments: Iterable[AssignmentSpan],
    zones: Mapping[str, str],
) -> pa.Table:
    """The readings behind each (patient_id, day) row of ``wanted_days`` (local dates): one
    row per reading and patient (``READING_ROWS_SCHEMA``), sorted by patient, day, reading id
    and device.

    A reading stands behind a date when it is physiologic, transmitted (not manual, clock
    not suspect), from a device assigned to the patient on that local date, and measured on
    that date in the patient's zone. Its id is the reading id, else its dedup key. Hidden
    files (dot or underscore names) are never read.
    """
    none = READING_ROWS_SCHEMA.empty_table()
    if not readings_dir.is_dir() or wanted_days.num_rows == 0:
        return none
    patients = set(pc.unique(wanted_days["patient_id"]).to_pylist())
    by_device: dict[str, list[AssignmentSpan]] = {}
    for a in assignments:
        if a.patient_id in patients:
            by_device.setdefault(a.device_id, []).append(a)
    if not by_device:
        return none
    bounds = pc.min_max(wanted_days["day"]).as_py()
    table = _transmitted(readings_dir, bounds["min"], bounds["max"], sorted(by_device))
    if table is None:
        return none
    # Columnar from here: each reading joined to the assignments of its device, its local
    # date in that patient's zone, kept when inside the assignment and a wanted date.
    spans = [a for spans_ in by_device.values() for a in spans_]
    joined = _identified(table).join(_assigned(spans, zones), "device_id", join_type="inner")
    if joined.num_rows == 0:
        return none
    found = _on_assigned_dates(joined)
    wanted = wanted_days.select(["patient_id", "day"]).group_by(["patient_id", "day"]).aggregate([])
    found = found.join(wanted, ["patient_id", "day"], join_type="inner")
    # In reading id order within each (patient, date), as the evidence lists them.
    found = found.sort_by([(c, "ascending") for c in ("patient_id", "day", "id", "device_id")])
    return found.select(READING_ROWS_SCHEMA.names).cast(READING_ROWS_SCHEMA)


def utc_span(low: date, high: date) -> tuple[datetime, datetime]:
    """The UTC instants [from, to) that hold every instant of the local dates ``low ..
    high`` in any zone: a day's margin before, two after (a local date is at most a day
    away from its UTC date)."""
    return (
        datetime.combine(low - timedelta(days=1), time(), UTC),
        datetime.combine(high + timedelta(days=2), time(), UTC),
    )


def _transmitted(readings_dir: Path, low: date, high: date, devices: list[str]) -> pa.Table | None:
    """The physiologic readings of ``devices`` that may fall on local dates ``low .. high``,
    neither manual nor clock-suspect (None: there are none)."""
    first, last = utc_span(low, high)
    import pyarrow.dataset as ds  # here: importing it loads pandas, which exports never need

    files = _reading_files(readings_dir, low - timedelta(days=1), high + timedelta(days=1))
    if not files:
        return None
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    names = set(dataset.schema.names)
    columns = [c for c in _READING_COLUMNS if c in names]
    measured = ds.field("measured_at")
    condition = (
        ds.field("device_id").isin(devices)
        & (measured >= pa.scalar(first, pa.timestamp("us", "UTC")))
        & (measured < pa.scalar(last, pa.timestamp("us", "UTC")))
        & ds.field("type").isin(list(READING_TYPES))
    )
    table = dataset.to_table(columns=columns, filter=condition)
    for flag in ("manual_entry", "clock_suspect"):
        if flag in table.column_names:
            table = _kept(table, pc.invert(pc.fill_null(table[flag], False)))
    return table if table.num_rows else None


_READING_COLUMNS = (
    "reading_id",
    "dedup_key",
    "device_id",
    "type",
    "measured_at",
    "manual_entry",
    "clock_suspect",
)


def _identified(table: pa.Table) -> pa.Table:
    """Each reading's device, instant (UTC) and id: the reading id, else its dedup key."""
    empty = pa.nulls(table.num_rows, pa.string())
    reading_id = table["reading_id"] if "reading_id" in table.column_names else empty
    dedup_key = table["dedup_key"] if "dedup_key" in table.column_names else empty
    ids = pc.if_else(
        pc.fill_null(pc.not_equal(reading_id, ""), False),
        reading_id,
        pc.if_else(pc.fill_null(pc.not_equal(dedup_key, ""), False), dedup_key, pa.scalar("")),
    )
    measured = table["measured_at"]
    if measured.type.tz is None:
        measured = measured.cast(pa.timestamp("us", "UTC"))
    return pa.table(
        {
            "device_id": table["device_id"].cast(pa.string()),
            "at": measured,
            "id": ids.cast(pa.string()),
        }
    )


def _assigned(spans: list[AssignmentSpan], zones: Mapping[str, str]) -> pa.Table:
    """The assignments as a table, each with its patient's zone."""
    return pa.table(
        {
            "device_id": pa.array([a.device_id for a in spans], pa.string()),
            "patient_id": pa.array([a.patient_id for a in spans], pa.string()),
            "start": pa.array([a.start for a in spans], pa.date32()),
            "end": pa.array([a.end for a in spans], pa.date32()),
            "zone": pa.array([zones.get(a.patient_id) or "UTC" for a in spans], pa.string()),
        }
    )


def _on_assigned_dates(joined: pa.Table) -> pa.Table:
    """(patient, local date, id, device) of each joined reading whose local date, in its
    patient's zone, lies inside the assignment."""
    parts = []
    zone_names = pc.unique(joined["zone"]).to_pylist()
    for zone in zone_names:
        part = joined if len(zone_names) == 1 else joined.filter(pc.equal(joined["zone"], zone))
        local = pc.local_timestamp(part["at"].cast(pa.timestamp("us", zone))).cast(pa.date32())
        inside = pc.and_(
            pc.greater_equal(local, part["start"]),
            pc.fill_null(pc.less_equal(local, part["end"]), True),
        )
        rows = {
            "patient_id": part["patient_id"],
            "day": local,
            "id": part["id"],
            "device_id": part["device_id"],
        }
        parts.append(_kept(pa.table(rows), inside))
    return pa.concat_tables(parts)


def _kept(table: pa.Table, keep: pa.ChunkedArray | pa.Array) -> pa.Table:
    """The rows of ``table`` where ``keep`` is true: the table itself when that is every row
    (a filter copies every column)."""
    if pc.all(keep, skip_nulls=False).as_py() is True:
        return table
    return table.filter(keep)


def _reading_files(root: Path, first: date, last: date) -> list[Path]:
    """Visible Parquet files of the ``date=`` partitions from ``first`` to ``last`` (UTC
    measured dates), or every visible file when the dataset is not partitioned by date."""
    partitions = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("date=")]
    if partitions:
        roots = []
        for p in partitions:
            try:
                day = date.fromisoformat(p.name.partition("=")[2])
            except ValueError:
                continue
            if first <= day <= last:
                roots.append(p)
    else:
        roots = [root]
    found = (f for r in roots for f in r.rglob("*.parquet") if f.is_file())
    return sorted(
        f
        for f in found
        if not any(part.startswith((".", "_")) for part in f.relative_to(root).parts)
    )


# --- Parquet and CSV --------------------------------------------------------------------

DAY_STRUCT = pa.struct(
    [
        ("day", pa.date32()),
        ("reading_ids", pa.list_(pa.string())),
        ("device_ids", pa.list_(pa.string())),
    ]
)
ACTIVITY_STRUCT = pa.struct(
    [
        ("activity_id", pa.string()),
        ("started_at", pa.timestamp("us", "UTC")),
        ("minutes", pa.decimal128(8, 2)),
        ("kind", pa.string()),
        ("performer", pa.string()),
        ("staff_id", pa.string()),
        ("interactive", pa.bool_()),
        ("goals_reviewed", pa.list_(pa.string())),
        ("pro_instrument", pa.string()),
        ("pro_score", pa.decimal128(8, 2)),
        ("note_ref", pa.string()),
    ]
)
EVIDENCE_SCHEMA = pa.schema(
    [
        ("line_control_number", pa.string()),
        ("claim_id", pa.string()),
        ("line_no", pa.int32()),
        ("run_id", pa.string()),
        ("patient_id", pa.string()),
        ("program", pa.string()),
        ("record_kind", pa.string()),
        ("code", pa.string()),
        ("units", pa.int32()),
        ("charge", pa.decimal128(10, 2)),
        ("date_of_service", pa.date32()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("rule_set", pa.string()),
        ("transmission_days", pa.int32()),
        ("interactive_minutes", pa.decimal128(8, 2)),
        ("ordering_npi", pa.string()),
        ("consent_date", pa.date32()),
        ("enrollment_start", pa.date32()),
        ("enrollment_end", pa.date32()),
        ("days", pa.list_(DAY_STRUCT)),
        ("activities", pa.list_(ACTIVITY_STRUCT)),
        ("documentation", pa.list_(ACTIVITY_STRUCT)),
        ("rpmpipe_version", pa.string()),
    ]
)


def cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.01"))


def _activity_row(a: ActivityEvidence) -> dict[str, Any]:
    return {
        "activity_id": a.activity_id,
        "started_at": a.started_at.astimezone(UTC),
        "minutes": cents(a.minutes),
        "kind": a.kind,
        "performer": a.performer,
        "staff_id": a.staff_id,
        "interactive": a.interactive,
        "goals_reviewed": list(a.goals_reviewed),
        "pro_instrument": a.pro_instrument,
        "pro_score": cents(a.pro_score),
        "note_ref": a.note_ref,
    }


def _activity_value(a: dict[str, Any]) -> ActivityEvidence:
    return ActivityEvidence(
        activity_id=a["activity_id"],
        started_at=a["started_at"],
        minutes=a["minutes"],
        kind=a["kind"],
        staff_id=a["staff_id"],
        interactive=a["interactive"],
        performer=a["performer"],
        goals_reviewed=tuple(a["goals_reviewed"]),
        pro_instrument=a["pro_instrument"],
        pro_score=a["pro_score"],
        note_ref=a["note_ref"],
    )


def evidence_table(lines: Sequence[LineEvidence]) -> pa.Table:
    """The ``evidence.parquet`` table of ``lines``, built column by column (the days of all
    lines are flat arrays with offsets, not one Python mapping per day)."""
    day_offsets, id_offsets, device_offsets = [0], [0], [0]
    days: list[date] = []
    ids: list[str] = []
    devices: list[str] = []
    for e in lines:
        for d in e.days:
            days.append(d.day)
            ids.extend(d.reading_ids)
            id_offsets.append(len(ids))
            devices.extend(d.device_ids)
            device_offsets.append(len(devices))
        day_offsets.append(len(days))
    day_values = pa.StructArray.from_arrays(
        [
            pa.array(days, pa.date32()),
            pa.ListArray.from_arrays(pa.array(id_offsets, pa.int32()), pa.array(ids, pa.string())),
            pa.ListArray.from_arrays(
                pa.array(device_offsets, pa.int32()), pa.array(devices, pa.string())
            ),
        ],
        fields=list(DAY_STRUCT),
    )

    def activities(pick: str) -> pa.Array:
        offsets = [0]
        rows: list[dict[str, Any]] = []
        for e in lines:
            rows.extend(_activity_row(a) for a in getattr(e, pick))
            offsets.append(len(rows))
        return pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(rows, ACTIVITY_STRUCT)
        )

    def column(name: str, value: Callable[[LineEvidence], Any]) -> pa.Array:
        return pa.array([value(e) for e in lines], EVIDENCE_SCHEMA.field(name).type)

    columns = [
        column("line_control_number", lambda e: e.line_control_number),
        column("claim_id", lambda e: e.claim_id),
        column("line_no", lambda e: e.line_no),
        column("run_id", lambda e: e.run_id),
        column("patient_id", lambda e: e.patient_id),
        column("program", lambda e: e.program),
        column("record_kind", lambda e: e.record_kind),
        column("code", lambda e: e.code),
        column("units", lambda e: e.units),
        column("charge", lambda e: cents(e.charge)),
        column("date_of_service", lambda e: e.date_of_service),
        column("period_start", lambda e: e.period_start),
        column("period_end", lambda e: e.period_end),
        column("rule_set", lambda e: e.rule_set),
        column("transmission_days", lambda e: e.transmission_days),
        column("interactive_minutes", lambda e: cents(e.interactive_minutes)),
        column("ordering_npi", lambda e: e.ordering_npi),
        column("consent_date", lambda e: e.consent_date),
        column("enrollment_start", lambda e: e.enrollment_start),
        column("enrollment_end", lambda e: e.enrollment_end),
        pa.ListArray.from_arrays(pa.array(day_offsets, pa.int32()), day_values),
        activities("activities"),
        activities("documentation"),
        column("rpmpipe_version", lambda e: e.rpmpipe_version),
    ]
    return pa.Table.from_arrays(columns, schema=EVIDENCE_SCHEMA)


def evidence_from_table(table: pa.Table) -> list[LineEvidence]:
    """LineEvidence values back from an ``evidence.parquet`` table."""
    out = []
    for r in table.to_pylist():
        out.append(
            LineEvidence(
                line_control_number=r["line_control_number"],
                claim_id=r["claim_id"],
                line_no=r["line_no"],
                run_id=r["run_id"],
                patient_id=r["patient_id"],
                program=r["program"],
                record_kind=r["record_kind"],
                code=r["code"],
                units=r["units"],
                charge=r["charge"],
                date_of_service=r["date_of_service"],
                period_start=r["period_start"],
                period_end=r["period_end"],
                rule_set=r["rule_set"],
                transmission_days=r["transmission_days"],
                interactive_minutes=r["interactive_minutes"],
                ordering_npi=r["ordering_npi"],
                consent_date=r["consent_date"],
                enrollment_start=r["enrollment_start"],
                enrollment_end=r["enrollment_end"],
                days=tuple(
                    DayEvidence(d["day"], tuple(d["reading_ids"]), tuple(d["device_ids"]))
                    for d in r["days"]
                ),
                activities=tuple(_activity_value(a) for a in r["activities"]),
                documentation=tuple(_activity_value(a) for a in r["documentation"]),
                rpmpipe_version=r["rpmpipe_version"],
            )
        )
    return out


EVIDENCE_CSV_COLUMNS = (
    "line_control_number",
    "claim_id",
    "line_no",
    "patient_id",
    "code",
    "date_of_service",
    "fact",
    "date",
    "time",
    "detail",
    "ids",
)
