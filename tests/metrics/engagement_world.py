"""Builders for metrics tests (imported by the test modules beside it).

Readings tables, registry snapshots and local times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa

from rpmpipe.metrics.engagement import compute_engagement
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, EngagementRecord
from rpmpipe.settings import RuleSettings

ORG_ZONE = "America/New_York"


class World:
    """One small registry plus readings, built up by a test and then computed."""

    def __init__(self) -> None:
        self.zones: dict[str, str] = {}
        self.assignments: list[Assignment] = []
        self.enrollments: list[Enrollment] = []
        self.rows: list[tuple[str, str, datetime, bool, bool]] = []
        self.activities: list[Activity] = []

    def patient(
        self,
        pid: str,
        zone: str | None = "America/Chicago",
        start: date = date(2026, 3, 1),
        consent: date | None = date(2026, 3, 1),
        end: date | None = None,
        device: str | None = None,
        npi: str = "",
        program: str = "RPM",
    ) -> World:
        if zone is not None:
            self.zones[pid] = zone
        self.enrollments.append(Enrollment(pid, program, start, end, consent, npi))
        self.assign(device or f"D-{pid}", pid, date(2026, 1, 1) if start.year >= 2026 else start)
        return self

    def assign(self, device: str, pid: str, start: date, end: date | None = None) -> World:
        self.assignments.append(Assignment(device, pid, start, end))
        return self

    def zone_of(self, pid: str) -> ZoneInfo:
        return ZoneInfo(self.zones.get(pid, ORG_ZONE))

    def reading(
        self,
        device: str,
        when: datetime,
        kind: str = "blood_pressure",
        manual: bool = False,
        suspect: bool = False,
    ) -> World:
        self.rows.append((device, kind, when, manual, suspect))
        return self

    def daily(self, pid: str, first: date, count: int, hour: int = 12, step: int = 1) -> World:
        """One reading on each of ``count`` local days from ``first`` (every ``step`` days)."""
        for i in range(count):
            day = first + timedelta(days=i * step)
            self.reading(f"D-{pid}", datetime.combine(day, time(hour), self.zone_of(pid)))
        return self

    def activity(
        self,
        pid: str,
        when: datetime,
        minutes: str | int,
        interactive: bool = True,
        kind: str = "phone_call",
        aid: str | None = None,
        staff: str = "S1",
        voided: str | None = None,
    ) -> World:
        aid = aid or f"A{len(self.activities) + 1}"
        self.activities.append(
            Activity(
                aid,
                pid,
                staff,
                when,
                Decimal(str(minutes)),
                kind,
                interactive,
                voided_reason=voided,
            )
        )
        return self

    def table(self, with_flags: bool = True) -> pa.Table:
        cols: dict[str, pa.Array] = {
            "device_id": pa.array([r[0] for r in self.rows], pa.string()),
            "type": pa.array([r[1] for r in self.rows], pa.string()),
            "measured_at": pa.array([r[2] for r in self.rows], pa.timestamp("us", tz="UTC")),
        }
        if with_flags:
            cols["manual_entry"] = pa.array([r[3] for r in self.rows], pa.bool_())
            cols["clock_suspect"] = pa.array([r[4] for r in self.rows], pa.bool_())
        return pa.table(cols)

    def snapshot(self) -> RegistrySnapshot:
        return RegistrySnapshot(dict(self.zones), tuple(self.assignments), tuple(self.enrollments))

    def compute(self, as_of: date, **rules: object) -> list[EngagementRecord]:
        return compute_engagement(
            self.table(),
            self.snapshot(),
            self.activities,
            as_of,
            RuleSettings(**rules),  # type: ignore[arg-type]
            ORG_ZONE,
        )


def of_kind(
    records: Sequence[EngagementRecord], kind: str, pid: str | None = None
) -> list[EngagementRecord]:
    return [r for r in records if r.kind == kind and (pid is None or r.patient_id == pid)]


def codes(record: EngagementRecord) -> list[tuple[str, int]]:
    return [(line.code, line.units) for line in record.lines]


def local(day: date, hour: int, minute: int, zone: str) -> datetime:
    return datetime.combine(day, time(hour, minute), ZoneInfo(zone))


def iso_dates(days: Iterable[date]) -> list[str]:
    return [d.isoformat() for d in days]
