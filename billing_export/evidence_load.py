"""Registry and readings reads behind the evidence of a run's claims (I/O edge)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

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
        for start in range(0, len(patients), _CHUNK):
            chunk = patients[start : start + _CHUNK]
            e = EngagementRow
            for row in conn.execute(
                select(e.patient_id, e.program, e.kind, e.period_start, e.evidence_json).where(
                    e.patient_id.in_(chunk)
                )
            ):
                key = (row.patient_id, row.program, row.kind, row.period_start)
                if key in wanted_keys:
                    records[key] = record_evidence(row.evidence_json)
            for en in conn.execute(
                select(Enrollment.__table__).where(Enrollment.patient_id.in_(chunk))
            ):
                enrollments.setdefault((en.patient_id, en.program), []).append(
                    EnrollmentSpan(en.start_date, en.end_date, en.consent_date, en.ordering_npi)
                )
            for a in conn.execute(
                select(DeviceAssignment.__table__).where(DeviceAssignment.patient_id.in_(chunk))
            ):
                assignments.append(
                    AssignmentSpan(a.device_id, a.patient_id, a.start_date, a.end_date)
                )
            for p in conn.execute(
                select(Patient.patient_id, Patient.timezone).where(Patient.patient_id.in_(chunk))
            ):
                zones[p.patient_id] = p.timezone
            for cp in conn.execute(
                select(CarePlan.patient_id, CarePlan.program, CarePlan.established_on).where(
                    CarePlan.patient_id.in_(chunk)
                )
            ):
                care_plans.setdefault((cp.patient_id, cp.program), []).append(cp.established_on)
        activity_ids = sorted({a for r in records.values() for a in r.activity_ids})
        activities = load_activity_evidence(conn, activity_ids)
        by_patient = _patient_activities(
            conn, patients, [k[3] for k in wanted_keys], wanted_keys.values()
        )
    named = list(records)
    days = record_days(named, [records[k].dates for k in named], readings_dir, assignments, zones)
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


def _patient_activities(
    conn: Connection, patients: Sequence[str], starts: Iterable[date], ends: Iterable[date]
) -> dict[str, list[ActivityEvidence]]:
    """Every activity of ``patients`` between the earliest period start and latest end."""
    first, last = min(starts, default=None), max(ends, default=None)
    out: dict[str, list[ActivityEvidence]] = {}
    if first is None or last is None:
        return out
    lo = datetime.combine(first - timedelta(days=1), time(), UTC)
    hi = datetime.combine(last + timedelta(days=2), time(), UTC)
    c = CareActivity
    for start in range(0, len(patients), _CHUNK):
        rows = conn.execute(
            select(c.__table__).where(
                c.patient_id.in_(patients[start : start + _CHUNK]),
                c.started_at >= lo,
                c.started_at < hi,
            )
        )
        for row in rows:
            out.setdefault(row.patient_id, []).append(_activity(row))
    return out


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
            select(c.__table__).where(c.activity_id.in_(activity_ids[start : start + _CHUNK]))
        ):
            found[row.activity_id] = _activity(row)
    return found


def _activity(row: Any) -> ActivityEvidence:
    return ActivityEvidence(
        activity_id=row.activity_id,
        started_at=row.started_at,
        minutes=Decimal(row.minutes).quantize(Decimal("0.01")),
        kind=row.kind,
        staff_id=row.staff_id,
        interactive=bool(row.interactive),
        performer=str(getattr(row, "performer", "") or ""),
        goals_reviewed=tuple(g for g in (row.goals_reviewed or "").split(";") if g),
        pro_instrument=row.pro_instrument or "",
        pro_score=None if row.pro_score is None else Decimal(row.pro_score),
        note_ref=row.note_ref or "",
    )
