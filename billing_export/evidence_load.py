"""Registry and readings reads behind the evidence of a run's claims (I/O edge)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select

from rpmpipe.billing_export.claims import Claim
from rpmpipe.billing_export.evidence import (
    ActivityEvidence,
    AssignmentSpan,
    EnrollmentSpan,
    RecordEvidence,
    RecordFacts,
    RecordKey,
    record_evidence,
    record_facts,
    utc_span,
)
from rpmpipe.billing_export.evidence_days import RecordDays, record_days
from rpmpipe.registry.models import (
    CareActivity,
    CarePlan,
    DeviceAssignment,
    EngagementRow,
    Enrollment,
    Patient,
)

_CHUNK = 5000
_MOST_WINDOWS = 24  # disjoint time windows of activities read in one statement
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What stands behind a run's records: each record's facts (what the audit checks) and
    the days with data of all of them, in Arrow (what the evidence files freeze)."""

    records: Mapping[RecordKey, RecordFacts]
    days: RecordDays

    def merged(self, other: RunFacts) -> RunFacts:
        """These facts and ``other``'s (records this run read later)."""
        return RunFacts({**self.records, **other.records}, self.days.merged(other.days))


def collect_facts(
    engine: Engine, readings_dir: Path, keys: Iterable[tuple[RecordKey, date]]
) -> dict[RecordKey, RecordFacts]:
    """The facts behind each (record key, period end), as the registry and readings hold them."""
    return dict(collect_run_facts(engine, readings_dir, keys).records)


def collect_run_facts(
    engine: Engine, readings_dir: Path, keys: Iterable[tuple[RecordKey, date]]
) -> RunFacts:
    """The facts behind each (record key, period end) and the days with data behind them."""
    wanted_keys = dict(keys)
    patients = sorted({k[0] for k in wanted_keys})
    records: dict[RecordKey, RecordEvidence] = {}
    enrollments: dict[tuple[str, str], list[EnrollmentSpan]] = {}
    assignments: list[AssignmentSpan] = []
    zones: dict[str, str] = {}
    care_plans: dict[tuple[str, str], list[date]] = {}
    with engine.connect() as conn:
        of_patients = _PatientRows(conn, patients)
        e = EngagementRow
        starts = sorted({k[3] for k in wanted_keys})
        for row in of_patients.rows(
            select(e.patient_id, e.program, e.kind, e.period_start, e.evidence_json).where(
                e.period_start.in_(starts)
            ),
            e.patient_id,
        ):
            key = (row[0], row[1], row[2], row[3])
            if key in wanted_keys:
                records[key] = record_evidence(row[4])
        da = DeviceAssignment
        for row in of_patients.rows(
            select(da.device_id, da.patient_id, da.start_date, da.end_date).order_by(da.id),
            da.patient_id,
        ):
            assignments.append(AssignmentSpan(row[0], row[1], row[2], row[3]))
        for row in of_patients.rows(
            select(Patient.patient_id, Patient.timezone), Patient.patient_id
        ):
            zones[row[0]] = row[1]
        # The readings behind the records' dates are scanned on a thread while the other
        # registry rows are read here: the scan is Arrow's work, which leaves the
        # interpreter free.
        named = list(records)
        with ThreadPoolExecutor(1, thread_name_prefix="rpmpipe-days") as pool:
            scanned = pool.submit(
                record_days,
                named,
                [records[k].dates for k in named],
                readings_dir,
                assignments,
                zones,
            )
            en = Enrollment
            for row in of_patients.rows(
                select(
                    en.patient_id,
                    en.program,
                    en.start_date,
                    en.end_date,
                    en.consent_date,
                    en.ordering_npi,
                ).order_by(en.id),
                en.patient_id,
            ):
                enrollments.setdefault((row[0], row[1]), []).append(
                    EnrollmentSpan(row[2], row[3], row[4], row[5])
                )
            cp = CarePlan
            for row in of_patients.rows(
                select(cp.patient_id, cp.program, cp.established_on), cp.patient_id
            ):
                care_plans.setdefault((row[0], row[1]), []).append(row[2])
            by_patient = _patient_activities(
                of_patients, [(k[3], end) for k, end in wanted_keys.items()]
            )
            # The counted activities are nearly always the patient's own, in the period:
            # taken from the rows just read, and only the others read by id.
            activities = {a.activity_id: a for acts in by_patient.values() for a in acts}
            missing = sorted(
                {a for r in records.values() for a in r.activity_ids if a not in activities}
            )
            activities.update(load_activity_evidence(conn, missing))
            days = scanned.result()
    facts = record_facts(
        wanted_keys.items(),
        records,
        enrollments,
        activities,
        days.counts,
        by_patient,
        zones,
        care_plans,
    )
    return RunFacts(facts, days)


class _PatientRows:
    """The rows of some patients from a table: by one pass over the table that keeps theirs
    when they are more than half the registry's patients (a list of thousands of ids costs
    the database more than reading the rows it leaves out), else by chunks of ids."""

    def __init__(self, conn: Connection, patients: Sequence[str]):
        self.conn = conn
        self.patients = patients
        registered = conn.execute(select(func.count()).select_from(Patient)).scalar_one()
        self.scan = 2 * len(patients) > registered

    def rows(self, statement: Select[*tuple[Any, ...]], patient_id: Any) -> Iterator[Any]:
        """The rows of ``statement`` whose ``patient_id`` column is one of the patients."""
        if self.scan:
            wanted = set(self.patients)
            yield from (
                row
                for row in self.conn.execute(statement.add_columns(patient_id))
                if row[-1] in wanted
            )
            return
        for start in range(0, len(self.patients), _CHUNK):
            chunk = self.patients[start : start + _CHUNK]
            yield from self.conn.execute(statement.where(patient_id.in_(chunk)))


def _patient_activities(
    of_patients: _PatientRows, periods: Iterable[tuple[date, date]]
) -> dict[str, list[ActivityEvidence]]:
    """Every activity of the patients that may fall in one of the ``periods`` (first and
    last local date): a late correction of last winter's record reads last winter's
    activities, not the whole year between it and this month's records."""
    out: dict[str, list[ActivityEvidence]] = {}
    windows = activity_windows(periods)
    if not windows:
        return out
    c = CareActivity
    within = or_(*(and_(c.started_at >= lo, c.started_at < hi) for lo, hi in windows))
    rows = of_patients.rows(select(*_ACTIVITY_COLUMNS).where(within), c.patient_id)
    for row in rows:
        out.setdefault(row[1], []).append(_activity(row))
    return out


def activity_windows(
    periods: Iterable[tuple[date, date]], most: int = _MOST_WINDOWS
) -> list[tuple[datetime, datetime]]:
    """The UTC instants [from, to) that hold every local date of the ``periods`` (each
    period's :func:`utc_span`), as at most ``most`` disjoint windows in order: overlapping
    ones merged, then, when there are more, the ones nearest each other joined across their
    gap."""
    spans = sorted({utc_span(first, last) for first, last in periods})
    merged: list[list[datetime]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > most:
        gaps = sorted(range(1, len(merged)), key=lambda n: merged[n][0] - merged[n - 1][1])
        splits = sorted(gaps[len(gaps) - (most - 1) :])  # the widest gaps stay gaps
        bounds = [0, *splits, len(merged)]
        merged = [
            [merged[a][0], merged[b - 1][1]] for a, b in zip(bounds, bounds[1:], strict=False)
        ]
    return [(lo, hi) for lo, hi in merged]


def collect_evidence(
    engine: Engine,
    readings_dir: Path,
    claims: Sequence[Claim],
    known: RunFacts | None = None,
) -> RunFacts:
    """The facts behind every line of ``claims``, as the registry and readings hold them now.

    ``known`` are facts this run already read (for the documentation audit): only the other
    records' facts are read here.
    """
    seen = known.records if known is not None else {}
    keys = {
        cl.line.record_key: cl.line.period_end
        for c in claims
        for cl in c.lines
        if cl.line.record_key not in seen
    }
    if known is None:
        return collect_run_facts(engine, readings_dir, keys.items())
    if not keys:
        return known
    return known.merged(collect_run_facts(engine, readings_dir, keys.items()))


def load_activity_evidence(
    conn: object, activity_ids: Sequence[str]
) -> dict[str, ActivityEvidence]:
    """The activity rows behind ``activity_ids``."""

    assert isinstance(conn, Connection)
    c = CareActivity
    found: dict[str, ActivityEvidence] = {}
    for start in range(0, len(activity_ids), _CHUNK):
        for row in conn.execute(
            select(*_ACTIVITY_COLUMNS).where(
                c.activity_id.in_(activity_ids[start : start + _CHUNK])
            )
        ):
            found[row[0]] = _activity(row)
    return found


_ACTIVITY_COLUMNS = (
    CareActivity.activity_id,
    CareActivity.patient_id,
    CareActivity.started_at,
    CareActivity.minutes,
    CareActivity.kind,
    CareActivity.staff_id,
    CareActivity.interactive,
    CareActivity.performer,
    CareActivity.goals_reviewed,
    CareActivity.pro_instrument,
    CareActivity.pro_score,
    CareActivity.note_ref,
)


def _activity(row: Any) -> ActivityEvidence:
    """The evidence of an activity row of :data:`_ACTIVITY_COLUMNS`."""
    (_id, _patient, started_at, minutes, kind, staff_id, interactive, performer) = row[:8]
    goals, pro_instrument, pro_score, note_ref = row[8:12]
    return ActivityEvidence(
        activity_id=_id,
        started_at=started_at,
        minutes=Decimal(minutes).quantize(CENT),
        kind=kind,
        staff_id=staff_id,
        interactive=bool(interactive),
        performer=str(performer or ""),
        goals_reviewed=tuple(filter(None, (goals or "").split(";"))),
        pro_instrument=pro_instrument or "",
        pro_score=None if pro_score is None else Decimal(pro_score),
        note_ref=note_ref or "",
    )
