"""Engagement records of the programs beside RPM's days: CCM, PCM, BHI and RTM time, APCM
months and 99091 interpretation periods (pure).

Inputs are plain values: every program's enrollments, the patients' diagnoses, QMB status and
care plans, and the care time (counted once across programs, :mod:`metrics.care_time`). The
codes come from the rule sets of :mod:`metrics.programs`; the exclusions between programs,
RPM's records included, from :mod:`metrics.conflicts`.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from rpmpipe.metrics.care_time import (
    ProgramMonth,
    TimeEntry,
    counted_minutes,
    is_interpretation,
    program_months,
)
from rpmpipe.metrics.conflicts import Claim, held_reasons
from rpmpipe.metrics.programs import (
    CareMinutes,
    CarePlanVersion,
    ProgramRules,
    care_plan_state,
    chronic_conditions,
    has_behavioral_diagnosis,
    interpretation_line,
    monthly_level,
    program_rules_for,
    time_lines,
)
from rpmpipe.metrics.reasons import (
    eligibility_reason,
    held_reason,
    interpretation_before_data_reason,
    interpretation_reason,
    level_reason,
    month_open,
    period_open,
    time_reason,
)
from rpmpipe.records import EngagementRecord, Program, RecordKind, RecordStatus, ServiceLine
from rpmpipe.settings import RuleSettings

TIME_PROGRAMS = (Program.CCM, Program.PCM, Program.BHI, Program.RTM)
MONTH_KIND = RecordKind.TREATMENT_MANAGEMENT
INTERPRETATION_KIND = RecordKind.DATA_INTERPRETATION
INTERPRETATION_DAYS = 30


@dataclass(frozen=True, slots=True)
class ProgramEnrollment:
    """An enrollment of any program, with the practitioner who bills it."""

    patient_id: str
    program: str
    start_date: date
    end_date: date | None
    consent_date: date | None
    ordering_npi: str

    def covers(self, day: date) -> bool:
        """Inside the enrollment, with consent on file by then."""
        return (
            self.start_date <= day
            and (self.end_date is None or day <= self.end_date)
            and self.consent_date is not None
            and self.consent_date <= day
        )


@dataclass(frozen=True)
class CareFacts:
    """What the programs need of the registry, as plain values."""

    enrollments: tuple[ProgramEnrollment, ...] = ()
    zones: Mapping[str, str] = field(default_factory=dict)
    icd10: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    qmb: Mapping[str, bool | None] = field(default_factory=dict)
    care_plans: Mapping[tuple[str, str], tuple[CarePlanVersion, ...]] = field(default_factory=dict)
    payer_of: Mapping[str, str] = field(default_factory=dict)

    def zone_of(self, patient_id: str, org_zone: str) -> str:
        return self.zones.get(patient_id) or org_zone

    def enrollments_of(self) -> dict[tuple[str, str], list[ProgramEnrollment]]:
        found: dict[tuple[str, str], list[ProgramEnrollment]] = {}
        for e in sorted(self.enrollments, key=lambda x: (x.patient_id, x.program, x.start_date)):
            found.setdefault((e.patient_id, e.program), []).append(e)
        return found


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _owner(
    enrollments: Sequence[ProgramEnrollment], first: date, last: date
) -> ProgramEnrollment | None:
    """The latest-starting enrollment with a day inside ``first .. last``."""
    found = [
        e
        for e in enrollments
        if e.start_date <= last and (e.end_date is None or e.end_date >= first)
    ]
    return max(found, key=lambda e: e.start_date) if found else None


def _dos(e: ProgramEnrollment, end: date) -> date:
    """A date of service never falls after the enrollment's end."""
    return end if e.end_date is None or e.end_date >= end else e.end_date


def inside_entries(
    entries: Iterable[TimeEntry], facts: CareFacts, as_of: date, org_zone: str
) -> list[TimeEntry]:
    """The activities that take time: inside an enrollment of their program with consent,
    on or before ``as_of`` in the patient's zone. :func:`trim_across_programs` then gives
    each its own share; RPM's counting takes its share of that list too."""
    by_key = facts.enrollments_of()
    zones: dict[str, ZoneInfo] = {}
    inside = []
    for e in entries:
        name = facts.zone_of(e.patient_id, org_zone)
        zone = zones.get(name) or zones.setdefault(name, ZoneInfo(name))
        day = e.started_at.astimezone(zone).date()
        if day <= as_of and any(x.covers(day) for x in by_key.get((e.patient_id, e.program), ())):
            inside.append(e)
    return inside


@dataclass(frozen=True, slots=True)
class _Month:
    """One program month of one patient, with what decides its codes."""

    enrollment: ProgramEnrollment
    month: date
    time: ProgramMonth


@lru_cache(maxsize=1 << 14)
def _conditions(codes: tuple[str, ...], non_chronic_chapters: str) -> tuple[int, bool]:
    """(chronic conditions, a behavioural diagnosis) of a patient's codes (they repeat)."""
    return chronic_conditions(codes, non_chronic_chapters), has_behavioral_diagnosis(codes)


def _eligibility(
    rs: ProgramRules, m: _Month, facts: CareFacts, rules: RuleSettings
) -> tuple[str | None, int, bool]:
    """(why not eligible or None, chronic conditions, care plan changed this month)."""
    pid = m.enrollment.patient_id
    codes = tuple(facts.icd10.get(pid, ()))
    plans = care_plan_state(
        facts.care_plans.get((pid, m.enrollment.program), ()), m.month, month_end(m.month)
    )
    chronic, behavioral = _conditions(codes, rules.non_chronic_icd10_chapters)
    why = eligibility_reason(rs, chronic, behavioral, plans)
    return why, chronic, plans.changed_this_month


def _month_outcome(
    rs: ProgramRules, m: _Month, dos: date, facts: CareFacts, rules: RuleSettings
) -> tuple[tuple[ServiceLine, ...], str]:
    why, chronic, changed = _eligibility(rs, m, facts, rules)
    if why is not None:
        return (), why
    if rs.levels:
        qmb = facts.qmb.get(m.enrollment.patient_id)
        code = monthly_level(rs, chronic, qmb)
        lines = () if code is None else (ServiceLine(code, 1, dos),)
        return lines, level_reason(chronic, qmb, code)
    t = m.time
    return _time_outcome(
        rs,
        t.minutes,
        t.interactive_communications,
        changed,
        dos,
        (rules.max_99439_units, rules.max_99458_units),
    )


@lru_cache(maxsize=1 << 14)
def _time_outcome(
    rs: ProgramRules,
    minutes: CareMinutes,
    talks: int,
    changed: bool,
    dos: date,
    caps: tuple[int, int],
) -> tuple[tuple[ServiceLine, ...], str]:
    """A month's time lines and reason: a pure function of values that repeat across
    patients."""
    limits = {"max_99439_units": caps[0], "max_99458_units": caps[1]}
    outcome = time_lines(rs, minutes, talks, changed, dos, limits)
    return outcome.lines, time_reason(rs, minutes, talks, outcome)


def month_record(
    m: _Month, facts: CareFacts, as_of: date, rules: RuleSettings
) -> EngagementRecord | None:
    """The record of one program month (None when no rule set covers it)."""
    end = month_end(m.month)
    dos = _dos(m.enrollment, end)
    rs = program_rules_for(m.enrollment.program, dos)
    if rs is None:
        return None
    lines, reason = _month_outcome(rs, m, dos, facts, rules)
    final = as_of > end
    if not final:
        lines, reason = (), month_open(end, reason)
    return EngagementRecord(
        patient_id=m.enrollment.patient_id,
        program=m.enrollment.program,
        kind=MONTH_KIND,
        period_start=m.month,
        period_end=end,
        status=(RecordStatus.BILLABLE if lines else RecordStatus.NOT_BILLABLE)
        if final
        else RecordStatus.PENDING,
        reason=reason,
        rule_set=rs.name,
        interactive_minutes=m.time.interactive_minutes,
        interactive_communications=m.time.interactive_communications,
        lines=lines,
        evidence_activity_ids=tuple(sorted(m.time.activity_ids)),
        management_minutes=m.time.minutes.total,
        ordering_npi=m.enrollment.ordering_npi,
        episode_start=m.enrollment.start_date,
    )


def _months_of(
    entries: Sequence[TimeEntry],
    counted: Mapping[str, Decimal],
    facts: CareFacts,
    as_of: date,
    zone_of: Callable[[str], str],
) -> list[_Month]:
    """Program months with time (CCM, PCM, BHI, RTM), and every enrolled month of APCM."""
    by_key = facts.enrollments_of()
    months: list[_Month] = []
    for (pid, program, month), time in program_months(entries, zone_of, counted).items():
        if program not in TIME_PROGRAMS:
            continue
        owner = _owner(by_key.get((pid, program), ()), month, month_end(month))
        if owner is not None:
            months.append(_Month(owner, month, time))
    for (_pid, program), enrollments in by_key.items():
        if program != Program.APCM:
            continue
        for e in enrollments:
            months.extend(_Month(e, m, ProgramMonth()) for m in _apcm_months(e, as_of))
    return months


def _apcm_months(e: ProgramEnrollment, as_of: date) -> Iterable[date]:
    """Months of an APCM enrollment with consent on file, up to the as-of month."""
    if e.consent_date is None:
        return
    first = max(e.start_date, e.consent_date).replace(day=1)
    last = as_of if e.end_date is None else min(as_of, e.end_date)
    month = first
    while month <= last:
        yield month
        month = month_end(month) + timedelta(days=1)


class SupplyPeriod(NamedTuple):
    """A 30-day period of a patient's RPM episode (from its first day with data, back to
    back; :mod:`metrics.periods`), with the enrollment that bills it."""

    start: date
    end: date
    ordering_npi: str
    episode_start: date


def _period_of(periods: Sequence[SupplyPeriod], day: date) -> SupplyPeriod | None:
    at = bisect_right([p.start for p in periods], day) - 1
    return periods[at] if at >= 0 and day <= periods[at].end else None


def interpretation_records(
    entries: Sequence[TimeEntry],
    counted: Mapping[str, Decimal],
    as_of: date,
    zone_of: Callable[[str], str],
    periods: Mapping[str, Sequence[SupplyPeriod]],
) -> list[EngagementRecord]:
    """99091 per 30-day period of the patient's RPM episode (the supply periods: the first
    starts on the first day with data), for the physician's data-review time. Time on a day
    no period holds (before the first day with data) is said on one record per patient."""
    sums: dict[tuple[str, SupplyPeriod | None], tuple[Decimal, list[str]]] = {}
    first_day: dict[str, date] = {}
    for e in entries:
        if not is_interpretation(e):
            continue
        day = e.started_at.astimezone(ZoneInfo(zone_of(e.patient_id))).date()
        period = _period_of(periods.get(e.patient_id, ()), day)
        if period is None:
            first_day[e.patient_id] = min(day, first_day.get(e.patient_id, day))
        minutes, ids = sums.get((e.patient_id, period), (Decimal(0), []))
        sums[(e.patient_id, period)] = (minutes + counted[e.activity_id], [*ids, e.activity_id])
    out = []
    for (pid, period), (minutes, ids) in sums.items():
        if period is None:
            held = periods.get(pid, ())
            out.append(_before_data_record(pid, first_day[pid], held, minutes, ids, as_of))
        else:
            out.append(_interpretation_record(pid, period, minutes, ids, as_of))
    return out


def _interpretation_record(
    pid: str, period: SupplyPeriod, minutes: Decimal, ids: Sequence[str], as_of: date
) -> EngagementRecord:
    start, end = period.start, period.end
    rs = program_rules_for(Program.RPM, end)
    assert rs is not None  # RPM has rules for every date
    outcome = interpretation_line(rs, minutes, end)
    final = as_of > end
    reason = interpretation_reason(minutes, bool(outcome.lines))
    if not final:
        reason = period_open(end, reason)
    lines = outcome.lines if final else ()
    return EngagementRecord(
        patient_id=pid,
        program=Program.RPM,
        kind=INTERPRETATION_KIND,
        period_start=start,
        period_end=end,
        status=(RecordStatus.BILLABLE if lines else RecordStatus.NOT_BILLABLE)
        if final
        else RecordStatus.PENDING,
        reason=reason,
        rule_set=rs.name,
        lines=lines,
        evidence_activity_ids=tuple(sorted(ids)),
        management_minutes=minutes,
        ordering_npi=period.ordering_npi,
        episode_start=period.episode_start,
    )


def _before_data_record(
    pid: str,
    first: date,
    periods: Sequence[SupplyPeriod],
    minutes: Decimal,
    ids: Sequence[str],
    as_of: date,
) -> EngagementRecord:
    """Interpretation time before the patient's first day with data: no 30-day period holds
    it, so it never bills (final once a period has started after it)."""
    later = [p for p in periods if p.start > first]
    end = later[0].start - timedelta(days=1) if later else as_of
    rs = program_rules_for(Program.RPM, end)
    assert rs is not None
    return EngagementRecord(
        patient_id=pid,
        program=Program.RPM,
        kind=INTERPRETATION_KIND,
        period_start=first,
        period_end=end,
        status=RecordStatus.NOT_BILLABLE if later else RecordStatus.PENDING,
        reason=interpretation_before_data_reason(minutes, later[0].start if later else None),
        rule_set=rs.name,
        evidence_activity_ids=tuple(sorted(ids)),
        management_minutes=minutes,
        ordering_npi=later[0].ordering_npi if later else "",
        episode_start=later[0].episode_start if later else None,
    )


def compute_care_management(
    entries: Sequence[TimeEntry],
    facts: CareFacts,
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
    periods: Mapping[str, Sequence[SupplyPeriod]],
) -> list[EngagementRecord]:
    """Records of CCM, PCM, BHI, RTM time, APCM months and 99091 periods as of ``as_of``
    (``periods``: the RPM supply periods of the patients with 99091 time).

    ``entries`` are :func:`inside_entries` after :func:`trim_across_programs` (every
    program's, RPM's too, so no other program holds RPM's time)."""

    def zone_of(pid: str) -> str:
        return facts.zone_of(pid, org_zone)

    counted = counted_minutes(entries)
    records = [
        r
        for m in _months_of(entries, counted, facts, as_of, zone_of)
        if (r := month_record(m, facts, as_of, rules)) is not None
    ]
    records.extend(interpretation_records(entries, counted, as_of, zone_of, periods))
    return sorted(records, key=lambda r: (r.patient_id, r.program, r.kind, r.period_start))


def apply_exclusions(
    records: Sequence[EngagementRecord], facts: CareFacts, payers_allowing_99091: frozenset[str]
) -> list[EngagementRecord]:
    """Every record, with those the exclusions between programs hold turned not billable
    (their lines removed, the reason saying why)."""
    by_key = facts.enrollments_of()
    out = list(records)
    by_patient: dict[str, list[int]] = {}
    for i, r in enumerate(out):
        if r.lines:
            by_patient.setdefault(r.patient_id, []).append(i)
    for pid, indexes in by_patient.items():
        claims = []
        for i in indexes:
            r = out[i]
            owner = _owner(by_key.get((pid, r.program), ()), r.period_start, r.period_end)
            claims.append(
                Claim(
                    r.program,
                    r.period_start,
                    r.period_end,
                    owner.ordering_npi if owner else "",
                    owner.start_date if owner else r.period_start,
                    frozenset(line.code for line in r.lines),
                )
            )
        allow = facts.payer_of.get(pid, "") in payers_allowing_99091
        for k, why in held_reasons(claims, allow).items():
            r = out[indexes[k]]
            out[indexes[k]] = replace(
                r, status=RecordStatus.NOT_BILLABLE, lines=(), reason=held_reason(why, r.reason)
            )
    return out
