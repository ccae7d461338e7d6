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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from rpmpipe.csv_cells import csv_field
from rpmpipe.metrics.care_table import (
    MICROS_PER_MINUTE,
    BoolArray,
    CareEntries,
    IntArray,
    ObjArray,
    counted_hundredths,
    date_of,
    day_of,
    enrollment_columns,
    entries_of,
    latest_overlapping,
    month_end_of_day,
    month_groups,
    objects,
    sorted_codes,
    tuples,
)
from rpmpipe.metrics.care_time import TimeEntry, is_interpretation
from rpmpipe.metrics.conflicts import EXCLUSIVE_PROGRAMS, Claim, held_reasons
from rpmpipe.metrics.periods import distinct_rows
from rpmpipe.metrics.programs import (
    CareMinutes,
    CarePlanState,
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
from rpmpipe.metrics.report import CsvRows, format_minutes
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import EngagementRecord, Program, RecordKind, RecordStatus, ServiceLine
from rpmpipe.settings import RuleSettings

TIME_PROGRAMS = (Program.CCM, Program.PCM, Program.BHI, Program.RTM)
MONTH_KIND = RecordKind.TREATMENT_MANAGEMENT
INTERPRETATION_KIND = RecordKind.DATA_INTERPRETATION
INTERPRETATION_DAYS = 30


@dataclass(frozen=True)
class CareFacts:
    """What the programs need of the registry, as plain values."""

    enrollments: tuple[Enrollment, ...] = ()
    zones: Mapping[str, str] = field(default_factory=dict)
    icd10: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    qmb: Mapping[str, bool | None] = field(default_factory=dict)
    care_plans: Mapping[tuple[str, str], tuple[CarePlanVersion, ...]] = field(default_factory=dict)
    payer_of: Mapping[str, str] = field(default_factory=dict)

    def zone_of(self, patient_id: str, org_zone: str) -> str:
        return self.zones.get(patient_id) or org_zone

    def enrollments_of(self) -> dict[tuple[str, str], list[Enrollment]]:
        found: dict[tuple[str, str], list[Enrollment]] = {}
        for e in sorted(self.enrollments, key=lambda x: (x.patient_id, x.program, x.start_date)):
            found.setdefault((e.patient_id, e.program), []).append(e)
        return found


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _owner(enrollments: Sequence[Enrollment], first: date, last: date) -> Enrollment | None:
    """The latest-starting enrollment with a day inside ``first .. last``."""
    found = [
        e
        for e in enrollments
        if e.start_date <= last and (e.end_date is None or e.end_date >= first)
    ]
    return max(found, key=lambda e: e.start_date) if found else None


def _dos(e: Enrollment, end: date) -> date:
    """A date of service never falls after the enrollment's end."""
    return end if e.end_date is None or e.end_date >= end else e.end_date


@lru_cache(maxsize=1 << 14)
def _conditions(codes: tuple[str, ...], non_chronic_chapters: str) -> tuple[int, bool]:
    """(chronic conditions, a behavioural diagnosis) of a patient's codes (they repeat)."""
    return chronic_conditions(codes, non_chronic_chapters), has_behavioral_diagnosis(codes)


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


class _Case(NamedTuple):
    """What decides a program month's codes (one value per distinct combination)."""

    rs: ProgramRules
    chronic: int
    behavioral: bool
    on_file: bool
    changed: bool
    qmb: bool | None
    minutes: CareMinutes
    talks: int
    dos: date
    end: date
    final: bool


def month_outcome(case: _Case, caps: tuple[int, int]) -> tuple[str, tuple[ServiceLine, ...], str]:
    """(status, lines, reason) of a program month."""
    rs = case.rs
    plans = CarePlanState(case.on_file, case.changed)
    why = eligibility_reason(rs, case.chronic, case.behavioral, plans)
    lines: tuple[ServiceLine, ...]
    if why is not None:
        lines, reason = (), why
    elif rs.levels:
        code = monthly_level(rs, case.chronic, case.qmb)
        lines = () if code is None else (ServiceLine(code, 1, case.dos),)
        reason = level_reason(case.chronic, case.qmb, code)
    else:
        talks = case.talks
        lines, reason = _time_outcome(rs, case.minutes, talks, case.changed, case.dos, caps)
    if not case.final:
        return RecordStatus.PENDING, (), month_open(case.end, reason)
    return (RecordStatus.BILLABLE if lines else RecordStatus.NOT_BILLABLE), lines, reason


@dataclass
class CareTable:
    """The care-management rows as columns: program months (CCM, PCM, BHI, RTM time, APCM)
    and 99091 periods, one row each, sorted by patient, program, kind and start.

    Day numbers for dates (``episode_start`` -1: none); minutes by performer in hundredths;
    ``minutes`` and ``interactive_minutes`` the record's figures; ``lines`` each row's
    service lines (code, units, date of service), empty unless final and billed.
    """

    patient: ObjArray
    program: ObjArray
    kind: ObjArray
    start: IntArray
    end: IntArray
    staff: IntArray  # clinical_staff minutes, hundredths
    physician: IntArray  # physician/QHP minutes, hundredths
    minutes: ObjArray  # Decimal
    interactive_minutes: ObjArray  # Decimal
    communications: IntArray
    dos: IntArray
    rule_set: ObjArray
    final: BoolArray
    status: ObjArray
    reason: ObjArray
    lines: ObjArray  # tuple[ServiceLine, ...]
    activity_ids: ObjArray  # tuple[str, ...], sorted
    npi: ObjArray
    episode_start: IntArray
    not_counted: ObjArray  # tuple[tuple[str, str], ...]: entries left out, with why

    def take(self, rows: IntArray) -> CareTable:
        return CareTable(**{k: v[rows] for k, v in vars(self).items()})

    def __len__(self) -> int:
        return len(self.start)

    def record(self, i: int, dates: _Dates) -> EngagementRecord:
        """Row ``i`` as a record."""
        episode = int(self.episode_start[i])
        return EngagementRecord(
            patient_id=self.patient[i],
            program=self.program[i],
            kind=self.kind[i],
            period_start=dates[int(self.start[i])],
            period_end=dates[int(self.end[i])],
            status=self.status[i],
            reason=self.reason[i],
            rule_set=self.rule_set[i],
            interactive_minutes=self.interactive_minutes[i],
            interactive_communications=int(self.communications[i]),
            lines=self.lines[i],
            evidence_activity_ids=self.activity_ids[i],
            management_minutes=self.minutes[i],
            ordering_npi=self.npi[i],
            episode_start=dates[episode] if episode >= 0 else None,
            activities_not_counted=self.not_counted[i],
        )

    def records(self, rows: Iterable[int] | None = None) -> list[EngagementRecord]:
        """The records rendering of the table (of every row, or of ``rows``)."""
        dates = _Dates()
        return [self.record(i, dates) for i in (range(len(self)) if rows is None else rows)]

    def csv_text(self, fmt: CsvRows) -> str:
        """The CSV rendering of the table: the lines of :meth:`records`, byte for byte."""
        return "".join(self.csv_lines(fmt))

    def csv_lines(self, fmt: CsvRows) -> list[str]:
        """Each row's CSV line (with its newline), in order."""
        iso = {d: fmt.iso[date_of(d)] for d in np.unique(np.r_[self.start, self.end]).tolist()}
        minutes: dict[Decimal, str] = {}
        out = []
        for pid, prog, kind, s, e, status, rs, m, im, n, lines, reason, ids in zip(
            self.patient.tolist(),
            self.program.tolist(),
            self.kind.tolist(),
            self.start.tolist(),
            self.end.tolist(),
            self.status.tolist(),
            self.rule_set.tolist(),
            self.minutes.tolist(),
            self.interactive_minutes.tolist(),
            self.communications.tolist(),
            self.lines.tolist(),
            self.reason.tolist(),
            self.activity_ids.tolist(),
            strict=True,
        ):
            text = " ".join(map(fmt.line_text.__getitem__, lines)) if lines else ""
            mt = minutes.get(m) or minutes.setdefault(m, format_minutes(m) if m else "0")
            it = minutes.get(im) or minutes.setdefault(im, format_minutes(im) if im else "0")
            cell = csv_field(";".join(ids)) if ids else ""
            out.append(
                f"{fmt.patient(pid)},{csv_field(prog)},{kind},{iso[s]},{iso[e]},{status},{rs},0,"
                f"{mt},{it},{n},{text},{fmt.reason(reason)},,{cell}\n"
            )
        return out


class _Dates(dict[int, date]):
    """Dates of day numbers, each made once."""

    def __missing__(self, n: int) -> date:
        found = self[n] = date_of(n)
        return found


@dataclass
class _Rows:
    """Program months before their rules: who, which month, the time that counts."""

    patient: ObjArray
    program: ObjArray
    month: IntArray  # first day
    dos: IntArray  # the month's end, or the owning enrollment's when it ends first
    staff: IntArray  # hundredths
    physician: IntArray
    interactive: IntArray  # hundredths of interactive entries
    talks: IntArray
    activity_ids: ObjArray
    npi: ObjArray
    episode_start: IntArray

    def take(self, rows: IntArray) -> _Rows:
        return _Rows(**{k: v[rows] for k, v in vars(self).items()})


def _concat(parts: Sequence[_Rows]) -> _Rows:
    return _Rows(**{k: np.concatenate([vars(p)[k] for p in parts]) for k in vars(parts[0])})


def _owned(
    patient: ObjArray, program: ObjArray, lo: IntArray, hi: IntArray, facts: CareFacts
) -> tuple[IntArray, ObjArray, IntArray]:
    """Per query: the day the owning enrollment (the latest-starting one of the patient's
    program with a day inside ``lo .. hi``) ends, or -1 when none owns it; its ordering NPI
    and its start."""
    names, pcode = sorted_codes(patient)
    programs, prog = sorted_codes(program)
    cols = enrollment_columns(
        facts.enrollments,
        {p: k for k, p in enumerate(names)},
        {p: k for k, p in enumerate(programs)},
    )
    at = latest_overlapping(cols, pcode * len(programs) + prog, lo, hi)
    found = at >= 0
    if not found.any():  # no enrollment of these programs at all
        return at, objects([""] * len(at)), at
    at_or_first = np.where(found, at, 0)
    npi = objects([facts.enrollments[r].ordering_npi for r in cols.row[at_or_first].tolist()])
    return (
        np.where(found, cols.end[at_or_first], -1),
        npi,
        np.where(found, cols.start[at_or_first], -1),
    )


def _time_rows(entries: CareEntries, facts: CareFacts, org_zone: str) -> _Rows:
    """The months with time of CCM, PCM, BHI and RTM (:func:`month_groups`), under the
    enrollment that owns the month."""
    timed = np.array([p in TIME_PROGRAMS for p in entries.program.tolist()], np.bool_)
    g = month_groups(entries.take(np.flatnonzero(timed)), lambda p: facts.zone_of(p, org_zone))
    month_end = month_end_of_day(g.month)
    end, npi, since = _owned(g.patient, g.program, g.month, month_end, facts)
    rows = _Rows(
        g.patient,
        g.program,
        g.month,
        np.where((end < 0) | (end >= month_end), month_end, end),
        g.staff,
        g.physician,
        g.interactive,
        g.talks,
        g.activity_ids,
        npi,
        since,
    )
    return rows.take(np.flatnonzero(end >= 0))


def _apcm_rows(facts: CareFacts, as_of: date) -> _Rows:
    """Every month of an APCM enrollment with consent on file, up to the as-of month."""
    apcm = [e for e in facts.enrollments if e.program == Program.APCM]
    apcm.sort(key=lambda e: (e.patient_id, e.start_date))
    found = [(e, m) for e in apcm for m in _apcm_months(e, as_of)]
    zero = np.zeros(len(found), np.int64)
    return _Rows(
        objects([e.patient_id for e, _ in found]),
        objects([e.program for e, _ in found]),
        np.array([day_of(m) for _, m in found], np.int64),
        np.array([day_of(_dos(e, month_end(m))) for e, m in found], np.int64),
        zero,
        zero,
        zero,
        zero,
        objects([() for _ in found]),
        objects([e.ordering_npi for e, _ in found]),
        np.array([day_of(e.start_date) for e, _ in found], np.int64),
    )


def _profiles(
    rows: _Rows, facts: CareFacts, rules: RuleSettings
) -> tuple[list[tuple[int, bool, bool | None]], IntArray]:
    """The distinct (chronic conditions, behavioural diagnosis, QMB) of the rows' patients,
    and each row's index among them."""
    names, pcode = sorted_codes(rows.patient)
    chapters = rules.non_chronic_icd10_chapters
    seen: dict[tuple[int, bool, bool | None], int] = {}
    of_patient = [
        seen.setdefault(
            (*_conditions(tuple(facts.icd10.get(p, ())), chapters), facts.qmb.get(p)), len(seen)
        )
        for p in names
    ]
    return list(seen), np.array(of_patient, np.int64)[pcode]


def _cases(rows: _Rows, facts: CareFacts, rules: RuleSettings, as_of: date) -> list[_Case | None]:
    """Each row's case (None when no rule set covers its date of service), worked out once
    per distinct combination of the values that decide it."""
    profiles, profile = _profiles(rows, facts, rules)
    programs, prog = sorted_codes(rows.program)
    plan_ids: dict[tuple[CarePlanVersion, ...], int] = {(): 0}
    plan_of = {k: plan_ids.setdefault(v, len(plan_ids)) for k, v in facts.care_plans.items()}
    pairs = zip(rows.patient.tolist(), rows.program.tolist(), strict=True)
    plan = np.array([plan_of.get(k, 0) for k in pairs], np.int64)
    plans = list(plan_ids)
    keys = (profile, prog, plan, rows.month, rows.dos, rows.staff, rows.physician, rows.talks)
    combos, at = distinct_rows(*keys) if len(rows.month) else ([], np.zeros(0, np.int64))
    cases: list[_Case | None] = []
    for pr, g, pl, month, dos, staff, phys, talks in combos:
        rs = program_rules_for(programs[g], date_of(dos))
        if rs is None:
            cases.append(None)
            continue
        first = date_of(month)
        last = month_end(first)
        state = care_plan_state(plans[pl], first, last)
        chronic, behavioral, qmb = profiles[pr]
        minutes = CareMinutes(counted_hundredths(staff), counted_hundredths(phys))
        on_file, changed = state.on_file, state.changed_this_month
        cases.append(
            _Case(
                rs,
                chronic,
                behavioral,
                on_file,
                changed,
                qmb,
                minutes,
                talks,
                date_of(dos),
                last,
                as_of > last,
            )
        )
    return [cases[k] for k in at.tolist()]


def _month_table(rows: _Rows, facts: CareFacts, rules: RuleSettings, as_of: date) -> CareTable:
    """The program months with their rules applied (rows no rule set covers left out)."""
    found = _cases(rows, facts, rules, as_of)
    rows = rows.take(np.flatnonzero(np.array([c is not None for c in found], np.bool_)))
    cases = [c for c in found if c is not None]
    caps = (rules.max_99439_units, rules.max_99458_units)
    outcomes: dict[_Case, tuple[str, tuple[ServiceLine, ...], str]] = {}
    done = [outcomes.get(c) or outcomes.setdefault(c, month_outcome(c, caps)) for c in cases]
    n = len(cases)
    return CareTable(
        patient=rows.patient,
        program=rows.program,
        kind=objects([MONTH_KIND] * n),
        start=rows.month,
        end=month_end_of_day(rows.month) if n else np.zeros(0, np.int64),
        staff=rows.staff,
        physician=rows.physician,
        minutes=objects([c.minutes.total for c in cases]),
        interactive_minutes=objects(
            [counted_hundredths(int(h)) for h in rows.interactive.tolist()]
        ),
        communications=rows.talks,
        dos=rows.dos,
        rule_set=objects([c.rs.name for c in cases]),
        final=np.array([c.final for c in cases], np.bool_),
        status=objects([d[0] for d in done]),
        reason=objects([d[2] for d in done]),
        lines=objects([d[1] for d in done]),
        activity_ids=rows.activity_ids,
        npi=rows.npi,
        episode_start=rows.episode_start,
        not_counted=tuples([()] * n),
    )


def _table_of(records: Sequence[EngagementRecord]) -> CareTable:
    """Records computed one by one (99091 periods: few) as table rows."""
    days = [(day_of(r.period_start), day_of(r.period_end)) for r in records]
    zero = np.zeros(len(records), np.int64)
    return CareTable(
        patient=objects([r.patient_id for r in records]),
        program=objects([r.program for r in records]),
        kind=objects([r.kind for r in records]),
        start=np.array([s for s, _ in days], np.int64),
        end=np.array([e for _, e in days], np.int64),
        staff=zero,
        physician=np.array([int(r.management_minutes * 100) for r in records], np.int64),
        minutes=objects([r.management_minutes for r in records]),
        interactive_minutes=objects([r.interactive_minutes for r in records]),
        communications=zero,
        dos=np.array(
            [
                day_of(r.lines[0].date_of_service) if r.lines else e
                for r, (_, e) in zip(records, days, strict=True)
            ],
            np.int64,
        ),
        rule_set=objects([r.rule_set for r in records]),
        final=np.array([r.status != RecordStatus.PENDING for r in records], np.bool_),
        status=objects([r.status for r in records]),
        reason=objects([r.reason for r in records]),
        lines=objects([r.lines for r in records]),
        activity_ids=objects([r.evidence_activity_ids for r in records]),
        npi=objects([r.ordering_npi for r in records]),
        episode_start=np.array(
            [-1 if r.episode_start is None else day_of(r.episode_start) for r in records], np.int64
        ),
        not_counted=tuples([r.activities_not_counted for r in records]),
    )


def _apcm_months(e: Enrollment, as_of: date) -> Iterable[date]:
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


def _concat_tables(parts: Sequence[CareTable]) -> CareTable:
    return CareTable(**{k: np.concatenate([vars(p)[k] for p in parts]) for k in vars(parts[0])})


def care_table(
    entries: CareEntries,
    facts: CareFacts,
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
    periods: Mapping[str, Sequence[SupplyPeriod]],
) -> CareTable:
    """The table of CCM, PCM, BHI, RTM time months, APCM months and 99091 periods as of
    ``as_of`` (``periods``: the RPM supply periods of the patients with 99091 time), sorted
    by patient, program, kind and start."""
    rows = _concat([_time_rows(entries, facts, org_zone), _apcm_rows(facts, as_of)])
    months = _month_table(rows, facts, rules, as_of)
    interp = np.flatnonzero(entries.interpretation()).tolist()
    counted = {
        entries.activity_id[i]: Decimal(int(entries.counted[i])) / MICROS_PER_MINUTE for i in interp
    }

    def zone_of(pid: str) -> str:
        return facts.zone_of(pid, org_zone)

    items = [entries.entry(i) for i in interp]
    extra = _table_of(interpretation_records(items, counted, as_of, zone_of, periods))
    table = _concat_tables([months, extra])
    _, pcode = sorted_codes(table.patient)
    _, prog = sorted_codes(table.program)
    _, kind = sorted_codes(table.kind)
    return table.take(np.lexsort((table.start, kind, prog, pcode)))


def compute_care_management(
    entries: Sequence[TimeEntry],
    facts: CareFacts,
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
    periods: Mapping[str, Sequence[SupplyPeriod]],
) -> list[EngagementRecord]:
    """Records of CCM, PCM, BHI, RTM time, APCM months and 99091 periods as of ``as_of``:
    the records rendering of :func:`care_table`.

    ``entries`` are the entries that take time (:func:`metrics.care_table.care_time`:
    inside an enrollment of their program with consent), trimmed across programs (every
    program's, RPM's too, so no other program holds RPM's time)."""
    return care_table(entries_of(entries), facts, as_of, rules, org_zone, periods).records()


def exclusion_patients(facts: CareFacts, table: CareTable) -> set[str]:
    """The patients an exclusion between programs can touch: enrolled in two programs of a
    pair :mod:`metrics.conflicts` never bills together, or with a 99091 line (held beside
    99457). Every other patient's records stand as computed."""
    programs: dict[str, set[str]] = {}
    for e in facts.enrollments:
        programs.setdefault(e.patient_id, set()).add(e.program)
    found = {p for p, mine in programs.items() if any(pair <= mine for pair in EXCLUSIVE_PROGRAMS)}
    interpretation = np.flatnonzero(table.kind == INTERPRETATION_KIND).tolist()
    found.update(table.patient[i] for i in interpretation if table.lines[i])
    return found


def hold_in_table(
    table: CareTable,
    supply: Sequence[EngagementRecord],
    facts: CareFacts,
    payers_allowing_99091: frozenset[str],
    patients: Collection[str],
) -> list[EngagementRecord]:
    """Apply the exclusions between programs to ``patients``: their rows of ``table`` are
    held in place, and their supply-program records (``supply``) come back held."""
    wanted = set(patients)
    rows = [i for i, p in enumerate(table.patient.tolist()) if p in wanted]
    held = apply_exclusions([*supply, *table.records(rows)], facts, payers_allowing_99091)
    for i, r in zip(rows, held[len(supply) :], strict=True):
        table.status[i], table.lines[i], table.reason[i] = r.status, r.lines, r.reason
    return held[: len(supply)]


def apply_exclusions(
    records: Sequence[EngagementRecord],
    facts: CareFacts,
    payers_allowing_99091: frozenset[str],
    patients: Collection[str] | None = None,
) -> list[EngagementRecord]:
    """Every record, with those the exclusions between programs hold turned not billable
    (their lines removed, the reason saying why); only ``patients``' when given (those of
    :func:`exclusion_patients`: no other patient's records can be held)."""
    by_key = facts.enrollments_of()
    out = list(records)
    by_patient: dict[str, list[int]] = {}
    for i, r in enumerate(out):
        if r.lines and (patients is None or r.patient_id in patients):
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
