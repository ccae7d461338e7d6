"""Engagement records from plain values: readings, registry snapshot, activities, as-of date.

Counting is vectorised (:mod:`metrics.days`); the supply periods of every episode of RPM and
RTM are one table of columns per program (:mod:`metrics.periods`), and the rules
(:mod:`metrics.rules`, :mod:`metrics.programs`) turn each supply period, management month and
setup episode into one ``EngagementRecord`` with a status, a reason a biller understands
(:mod:`metrics.reasons`), service lines and the evidence behind them. :func:`prepare` (one
scan of the readings, one pass over the activities) is rendered as records here
(:func:`render_records`) and as CSV text (:func:`metrics.csv_bulk.render_csv`).
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np
import pyarrow as pa

from rpmpipe.metrics.care_management import CareTable, SupplyPeriod
from rpmpipe.metrics.care_table import day_of, objects, tuples
from rpmpipe.metrics.days import (
    EPOCH,
    OPEN_END,
    IntArray,
    PatientDays,
    SetAside,
    days_before_consent,
    days_with_data,
    from_day_number,
    patient_days,
    with_self_reported,
)
from rpmpipe.metrics.episodes import Episode, episodes_of
from rpmpipe.metrics.management_months import MonthEntries, management_months
from rpmpipe.metrics.minutes import MonthMinutes
from rpmpipe.metrics.periods import (
    PeriodTable,
    period_table,
    records_of,
)
from rpmpipe.metrics.programs import RPM_SUPPLY, SupplyProgram
from rpmpipe.metrics.reasons import (
    NO_DEVICE,
    management_reason,
    month_open,
    no_device_reason,
    no_supply_reason,
    not_counted_entries,
    not_counted_note,
    outside_enrollment_reason,
    plural,
    with_note,
)
from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.rules import management_lines, rule_set_for
from rpmpipe.metrics.snapshot import Enrollment, RegistrySnapshot
from rpmpipe.records import (
    Activity,
    EngagementRecord,
    Program,
    RecordKind,
    RecordStatus,
    ServiceLine,
)
from rpmpipe.settings import RuleSettings

__all__ = ["NO_DEVICE", "plural"]  # re-exported for callers that word around records
PROGRAM = Program.RPM
SUPPLY_PROGRAMS = (Program.RPM, Program.RTM)  # billed by days with data (supply_programs)
_NO_CONSENT = OPEN_END + 1


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def program_enrollments(snapshot: RegistrySnapshot, program: str) -> list[Enrollment]:
    """A program's enrollments, by patient then start date (positions index this list)."""
    return sorted(
        (e for e in snapshot.enrollments if e.program == program),
        key=lambda e: (e.patient_id, e.start_date),
    )


def rpm_enrollments(snapshot: RegistrySnapshot) -> list[Enrollment]:
    """The RPM enrollments, by patient then start date (positions index this list)."""
    return program_enrollments(snapshot, PROGRAM)


@dataclass
class SupplyPart:
    """One supply program's days, episodes, table of periods, and the days of the episodes
    outside the table."""

    program: SupplyProgram
    found: PatientDays
    episodes: list[Episode]
    table: PeriodTable | None
    as_of: date
    rules: RuleSettings

    def records(self, i: int) -> list[EngagementRecord]:
        """The record of episode ``i`` when it is outside the table (no day with data)."""
        return episode_records(self.episodes[i], self.found, self.as_of, self.program)


@dataclass
class Prepared:
    """What both renderings start from: the supply programs' parts and RPM's management
    months."""

    parts: list[SupplyPart]
    months: CareTable  # RPM's management months, by patient then month
    as_of: date
    rules: RuleSettings
    month_rows: dict[str, tuple[int, int]] = field(init=False)  # each patient's rows

    def __post_init__(self) -> None:
        pids = self.months.patient.tolist()
        self.month_rows = {}
        for i, pid in enumerate(pids):
            a, _ = self.month_rows.get(pid, (i, i))
            self.month_rows[pid] = (a, i + 1)

    def by_patient(self) -> Iterator[tuple[str, tuple[Sequence[int], ...]]]:
        """Patients in order with each part's episodes (by index); patients with months only
        too (made as they are read: one small tuple at a time)."""
        per_part: list[dict[str, list[int]]] = []
        for part in self.parts:
            found: dict[str, list[int]] = {}
            for i, episode in enumerate(part.episodes):
                found.setdefault(episode.patient_id, []).append(i)
            per_part.append(found)
        patients = set(self.month_rows)
        for found in per_part:
            patients.update(found)
        none: tuple[int, ...] = ()
        for pid in sorted(patients):
            yield pid, tuple(found.get(pid, none) for found in per_part)


def supply_programs(rules: RuleSettings) -> tuple[SupplyProgram, ...]:
    """The programs billed by days with data: RPM, then RTM (its codes by the modality)."""
    return (RPM_SUPPLY, SupplyProgram(SUPPLY_PROGRAMS[1], rules.rtm_modality))


def supply_part(
    found: PatientDays,
    program: SupplyProgram,
    enrollments: Sequence[Enrollment],
    episodes: list[Episode],
    as_of: date,
    rules: RuleSettings,
) -> SupplyPart:
    """One program's episodes (of ``enrollments``, by patient then start): every episode with
    a day with data goes into the table (the others have one record each,
    :func:`episode_records`)."""
    if program.counts_self_reported and enrollments:
        found = with_self_reported(found)
    counted_by, day = episode_day_numbers(found, enrollments)
    # Each day's episode (by its first enrollment's position): the enrollment that counted
    # it, the same array when every episode has one enrollment (no copy of the per-day rows).
    first_of = np.arange(len(enrollments), dtype=np.int64)
    several = False
    for episode in episodes:
        if len(episode.positions) > 1:
            first_of[list(episode.positions)] = episode.positions[0]
            several = True
    ep = first_of[counted_by] if several and len(counted_by) else counted_by
    if several and len(ep) > 1 and not _days_ascend(ep, day):
        order = np.lexsort((day, ep))
        ep, day, counted_by = ep[order], day[order], counted_by[order]
    episode_of = {e.positions[0]: e for e in episodes}
    table = period_table(ep, day, counted_by, enrollments, episode_of, as_of, rules, found, program)
    return SupplyPart(program, found, episodes, table, as_of, rules)


def prepare(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    activities: Iterable[Activity] | MonthEntries,
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
) -> Prepared:
    """One scan of the readings and one pass over the activities (RPM's time entries, as
    activities or already as columns), for every supply program."""
    found = patient_days(readings, snapshot, as_of, org_zone)
    programs = supply_programs(rules)
    enrollments = [program_enrollments(snapshot, p.program) for p in programs]
    episodes = [episodes_of(e, rules.episode_gap_days) for e in enrollments]
    # The months first: their counting's passing objects are gone before the tables are built.
    months = management_records(activities, snapshot, as_of, org_zone, rules, episodes[0])
    parts = [
        supply_part(found, p, e, ep, as_of, rules)
        for p, e, ep in zip(programs, enrollments, episodes, strict=True)
    ]
    return Prepared(parts, months, as_of, rules)


def compute_engagement(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    activities: Iterable[Activity],
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
) -> list[EngagementRecord]:
    """Every RPM engagement record and RTM's setup and supply records as of ``as_of`` (data
    through the end of that local day).

    Records are grouped by patient: each RPM episode's setup and supply periods in order,
    the RPM management months, then the RTM episodes. A record is final when ``as_of`` is
    past its last day; before that it is ``pending``.
    """
    work = prepare(readings, snapshot, activities, as_of, rules, org_zone)
    return render_records(work)


def render_records(work: Prepared, only: Collection[str] | None = None) -> list[EngagementRecord]:
    """The records rendering of :func:`prepare` (``rpmpipe metrics --format json``), of every
    patient or ``only`` those."""
    keep = None if only is None else set(only)
    by_patient = [(pid, e) for pid, e in work.by_patient() if keep is None or pid in keep]
    in_table: list[dict[int, list[EngagementRecord]]] = []
    for k, part in enumerate(work.parts):
        wanted = None
        if keep is not None:
            wanted = {part.episodes[i].positions[0] for _, e in by_patient for i in e[k]}
        in_table.append(records_of(part.table, wanted) if part.table is not None else {})
    records: list[EngagementRecord] = []
    for pid, per_part in by_patient:
        for k, (part, indexes) in enumerate(zip(work.parts, per_part, strict=True)):
            for i in indexes:
                rows = in_table[k].get(part.episodes[i].positions[0])
                records.extend(rows if rows is not None else part.records(i))
            if k == 0 and pid in work.month_rows:
                records.extend(work.months.records(range(*work.month_rows[pid])))
    return records


def supply_periods(
    work: Prepared, patient_ids: Collection[str], program: str = PROGRAM
) -> dict[str, list[SupplyPeriod]]:
    """The supply periods of ``program`` of the given patients (few: those with 99091 time),
    in order, each with the enrollment that bills it."""
    part = next(p for p in work.parts if p.program.program == program)
    wanted = set(patient_ids)
    out: dict[str, list[SupplyPeriod]] = {}
    t = part.table
    if t is None:
        return out
    # Episodes without a day with data are not in the table: no period has started.
    for e, pos in enumerate(t.episode_at.tolist()):
        episode = t.episode_of[pos]
        if episode.patient_id not in wanted:
            continue
        npi = episode.enrollments[0].ordering_npi
        found = out.setdefault(episode.patient_id, [])
        for k in range(int(t.period_off[e]), int(t.period_off[e + 1])):
            start, end = from_day_number(int(t.start[k])), from_day_number(int(t.end[k]))
            found.append(SupplyPeriod(start, end, t.npi.get(k, npi), episode.start_date))
    return out


def episode_records(
    episode: Episode,
    found: PatientDays,
    as_of: date,
    program: SupplyProgram = RPM_SUPPLY,
) -> list[EngagementRecord]:
    """The one record of an episode outside the table (without consent or without a day
    with data); none before the episode starts."""
    if as_of < episode.start_date:
        return []
    last = as_of if episode.end_date is None else min(as_of, episode.end_date)
    return [
        no_data_record(
            episode,
            as_of,
            last,
            found.set_aside.get(episode.patient_id, ()),
            days_before_consent(found, episode, as_of),
            found,
            program,
        )
    ]


def management_records(
    activities: Iterable[Activity] | MonthEntries,
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    rules: RuleSettings,
    episodes: Sequence[Episode],
) -> CareTable:
    """RPM's management months (every patient-month with time entries) as rows of a table,
    by patient then month."""
    episode_of: dict[int, Episode] = {}
    for episode in episodes:
        for e in episode.enrollments:
            episode_of[id(e)] = episode
    entries = (
        activities if isinstance(activities, MonthEntries) else MonthEntries.of(list(activities))
    )
    months = management_months(
        entries,
        snapshot,
        as_of,
        org_zone,
        PROGRAM,
        rules.secure_message_interactive,
        Decimal(rules.max_activity_minutes),
    )
    return management_table(months, as_of, rules, episode_of)


# --- days per episode ------------------------------------------------------------------------


def _days_ascend(ep: IntArray, day: IntArray) -> bool:
    same = ep[1:] == ep[:-1]
    return bool(np.all(day[1:][same] > day[:-1][same]))


def episode_day_numbers(
    found: PatientDays, enrollments: Sequence[Enrollment]
) -> tuple[IntArray, IntArray]:
    """(enrollment position, day number) of every counted day, sorted by enrollment then day."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if len(found.day) == 0 or not enrollments:
        return empty
    pos = found.index.position()
    n_patients = len(found.index.ids)
    # Enrollments are sorted by patient: each one's rank within its patient picks its slot,
    # and slot k (every patient's k-th enrollment) is matched in a few vector passes.
    owner = np.array([pos[e.patient_id] for e in enrollments], np.int64)
    # Ordinals, then shifted to day numbers in bulk (cheaper than date arithmetic per row).
    epoch = EPOCH.toordinal()
    open_end, no_consent = OPEN_END + epoch, _NO_CONSENT + epoch
    e_start = np.array([e.start_date.toordinal() for e in enrollments], np.int64) - epoch
    e_end = (
        np.array(
            [open_end if e.end_date is None else e.end_date.toordinal() for e in enrollments],
            np.int64,
        )
        - epoch
    )
    e_consent = (
        np.array(
            [
                no_consent if e.consent_date is None else e.consent_date.toordinal()
                for e in enrollments
            ],
            np.int64,
        )
        - epoch
    )
    first_of_owner = np.r_[0, np.flatnonzero(owner[1:] != owner[:-1]) + 1]
    rank = np.arange(len(owner)) - np.repeat(
        first_of_owner, np.diff(np.r_[first_of_owner, len(owner)])
    )
    pt = found.patient
    d = found.day
    episode = np.full(len(d), -1, np.int64)
    for k in range(int(rank.max()) + 1):
        which = np.flatnonzero(rank == k)
        ids = np.full(n_patients, -1, np.int64)
        start = np.zeros(n_patients, np.int64)
        end = np.zeros(n_patients, np.int64)
        consent = np.full(n_patients, _NO_CONSENT, np.int64)
        ids[owner[which]] = which
        start[owner[which]] = e_start[which]
        end[owner[which]] = e_end[which]
        consent[owner[which]] = e_consent[which]
        # In place, one gather per bound: these arrays hold every patient-day.
        low = np.maximum(start, consent)
        owned = ids[pt]
        hit = owned >= 0
        hit &= d >= low[pt]
        hit &= d <= end[pt]
        if k:
            hit &= episode == -1
        episode[hit] = owned[hit]
    keep = episode >= 0
    ep = episode[keep]
    day = found.day[keep].astype(np.int64)  # the table computes in 64 bits
    if len(ep) == 0:
        return empty
    # Pairs come sorted by patient and day; with one enrollment per patient (the usual case)
    # episodes are then already in order and the sort is skipped.
    if len(ep) > 1 and not bool(np.all(ep[1:] >= ep[:-1])):
        order = np.lexsort((day, ep))
        ep, day = ep[order], day[order]
    return ep, day


# --- an episode without data ----------------------------------------------------------------


def no_data_record(
    episode: Episode,
    as_of: date,
    last: date,
    set_aside: Sequence[SetAside],
    before_consent: Sequence[date],
    found: PatientDays | None,
    program: SupplyProgram,
) -> EngagementRecord:
    """The one record of an episode without consent or without a day with data."""
    end_date = episode.end_date
    ended = end_date is not None and end_date < as_of
    would: list[date] = []
    if episode.consent_date is None and found is not None:
        would = days_with_data(found, episode.patient_id, episode.start_date, last)
    reason = no_supply_reason(episode.consent_date, ended, episode.start_date, len(would))
    if episode.consent_date is not None:
        note = not_counted_note(
            set_aside, episode.start_date, last, before_consent, episode.consent_date
        )
        reason = with_note(reason, note)
    return EngagementRecord(
        patient_id=episode.patient_id,
        program=program.program,
        kind=RecordKind.DEVICE_SUPPLY,
        period_start=episode.start_date,
        period_end=last,
        status=RecordStatus.NOT_BILLABLE
        if episode.consent_date is None or ended
        else RecordStatus.PENDING,
        reason=reason,
        rule_set=program.rule_set(last).name,
        transmission_days=len(would),
        evidence_dates=tuple(would),
        ordering_npi=episode.enrollment_on(last).ordering_npi,
        episode_start=episode.start_date,
    )


# --- management months -----------------------------------------------------------------------


def _management_outcome(
    case: tuple[str, Decimal, int, date, bool], cap: int
) -> tuple[str, str, str, tuple[ServiceLine, ...]]:
    """(rule set name, status, reason, lines) of a month: a pure function of its case (why
    it does not count, if so; minutes, communications, end, final), which repeats across
    patients (equal minutes give equal text whatever their scale)."""
    blocked, minutes, communications, end, final = case
    rs = rule_set_for(PROGRAM, end)
    if blocked:
        said = f"{format_minutes(minutes)} minutes with " + plural(
            communications, "interactive communication"
        )
        reason = (
            no_device_reason(said)
            if blocked == NO_DEVICE
            else outside_enrollment_reason(blocked, said)
        )
        status = RecordStatus.NOT_BILLABLE if final else RecordStatus.PENDING
        return rs.name, status, reason if final else month_open(end, reason), ()
    lines = management_lines(rs, minutes, communications, end, cap)
    if final:
        status = RecordStatus.BILLABLE if lines else RecordStatus.NOT_BILLABLE
        return rs.name, status, management_reason(rs, minutes, communications, lines, cap), lines
    so_far = management_reason(rs, minutes, communications, lines, cap, "so far")
    return rs.name, RecordStatus.PENDING, month_open(end, so_far), ()


def _month_case(
    m: MonthMinutes, as_of: date, episode: Episode | None
) -> tuple[tuple[str, Decimal, int, date, bool], str, int]:
    """A month's case (what decides its outcome), its ordering NPI and episode start."""
    end = month_end(m.month)
    if episode is not None:
        end = episode.covering_end(m.month, end)
    blocked = ""
    if m.enrollment is None and m.activity_ids:
        blocked = m.blocked  # time outside a consented enrollment: what would count
    elif not m.device_assigned and m.activity_ids:
        blocked = NO_DEVICE
    owner = m.enrollment
    if owner is None and episode is not None:
        owner = episode.enrollment_on(end)
    case = (blocked, m.minutes, m.interactive_communications, end, as_of > end)
    start = day_of(episode.start_date) if episode is not None else -1
    return case, owner.ordering_npi if owner is not None else "", start


def management_table(
    months: Sequence[MonthMinutes],
    as_of: date,
    rules: RuleSettings,
    episode_of: dict[int, Episode],
) -> CareTable:
    """The management months as table rows: the rules applied once per distinct case."""
    cases = [
        _month_case(m, as_of, episode_of.get(id(m.enrollment)) if m.enrollment else None)
        for m in months
    ]
    outcomes: dict[
        tuple[str, Decimal, int, date, bool], tuple[str, str, str, tuple[ServiceLine, ...]]
    ] = {}
    cap = rules.max_99458_units
    done = [
        outcomes.get(c) or outcomes.setdefault(c, _management_outcome(c, cap)) for c, _, _ in cases
    ]
    reasons = [
        with_note(d[2], not_counted_entries(m.not_counted))
        for d, m in zip(done, months, strict=True)
    ]
    n = len(months)
    minutes = [m.minutes for m in months]
    return CareTable(
        patient=objects([m.patient_id for m in months]),
        program=objects([PROGRAM] * n),
        kind=objects([RecordKind.TREATMENT_MANAGEMENT] * n),
        start=np.array([day_of(m.month) for m in months], np.int64),
        end=np.array([day_of(c[0][3]) for c in cases], np.int64),
        staff=np.array([int(x * 100) for x in minutes], np.int64),
        physician=np.zeros(n, np.int64),
        minutes=objects(minutes),
        interactive_minutes=objects([m.interactive_minutes for m in months]),
        communications=np.array([m.interactive_communications for m in months], np.int64),
        dos=np.array([day_of(c[0][3]) for c in cases], np.int64),
        rule_set=objects([d[0] for d in done]),
        final=np.array([c[0][4] for c in cases], np.bool_),
        status=objects([d[1] for d in done]),
        reason=objects(reasons),
        lines=tuples([d[3] for d in done]),
        activity_ids=tuples([m.activity_ids for m in months]),
        npi=objects([c[1] for c in cases]),
        episode_start=np.array([c[2] for c in cases], np.int64),
        not_counted=tuples([m.not_counted for m in months]),
    )
