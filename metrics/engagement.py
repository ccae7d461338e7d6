"""Engagement records from plain values: readings, registry snapshot, activities, as-of date.

Counting is vectorised (:mod:`metrics.days`); the rules (:mod:`metrics.rules`) then turn
each supply period, management month and setup episode into one ``EngagementRecord`` with a
status, a reason a biller understands, service lines and the evidence behind them.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metrics.days import (
    EPOCH,
    OPEN_END,
    IntArray,
    PatientDays,
    day_number,
    from_day_number,
    patient_days,
)
from metrics.minutes import MonthMinutes, monthly_minutes
from metrics.report import CsvRows, csv_field, format_minutes
from metrics.rules import RuleSet, Tier, management_lines, rule_set_for, supply_code
from metrics.snapshot import Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, EngagementRecord, ServiceLine
from rpmpipe.settings import RuleSettings

PROGRAM = "RPM"
_NO_CONSENT = OPEN_END + 1


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Period(NamedTuple):
    # A tuple, not a frozen dataclass: hundreds of thousands are made per run.
    start: date
    end: date
    days: tuple[date, ...]


def compute_engagement(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    activities: Iterable[Activity],
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
) -> list[EngagementRecord]:
    """Every RPM engagement record as of ``as_of`` (data through the end of that local day).

    Records are grouped by patient: each episode's setup and supply periods in order, then
    the management months. A record is final when ``as_of`` is past its last day; before
    that it is ``pending``.
    """
    found = patient_days(readings, snapshot, as_of, org_zone)
    enrollments = sorted(
        (e for e in snapshot.enrollments if e.program == PROGRAM),
        key=lambda e: (e.patient_id, e.start_date),
    )
    days_of = _episode_days(found, enrollments)
    months: dict[str, list[EngagementRecord]] = {}
    for m in monthly_minutes(
        activities, snapshot, as_of, org_zone, PROGRAM, rules.secure_message_interactive
    ):
        months.setdefault(m.patient_id, []).append(_management(m, as_of, rules))
    # Enrollments are in patient order, so records come out sorted without a global sort:
    # per patient, setup and supply per episode, then the management months.
    records: list[EngagementRecord] = []
    for i, enrollment in enumerate(enrollments):
        records.extend(_supply_and_setup(enrollment, days_of.get(i, ()), as_of, rules))
        last_of_patient = (
            i + 1 == len(enrollments) or enrollments[i + 1].patient_id != enrollment.patient_id
        )
        if last_of_patient:
            records.extend(months.pop(enrollment.patient_id, ()))
    return records


# --- days per episode ------------------------------------------------------------------------


def _episode_days(
    found: PatientDays, enrollments: Sequence[Enrollment]
) -> dict[int, tuple[date, ...]]:
    """For each enrollment (by position), the sorted local dates it counts."""
    ep, day = _episode_day_numbers(found, enrollments)
    if len(ep) == 0:
        return {}
    lo = int(day.min())
    lut = np.array([from_day_number(lo + i) for i in range(int(day.max()) - lo + 1)], dtype=object)
    dates = lut[day - lo]
    cuts = np.flatnonzero(ep[1:] != ep[:-1]) + 1
    starts: IntArray = np.concatenate(([0], cuts))
    ends: IntArray = np.concatenate((cuts, [len(ep)]))
    return {
        int(e): tuple(dates[s:t])
        for e, s, t in zip(ep[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)
    }


def _episode_day_numbers(
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
    day = found.day[keep]
    if len(ep) == 0:
        return empty
    # Pairs come sorted by patient and day; with one enrollment per patient (the usual case)
    # episodes are then already in order and the sort is skipped.
    if len(ep) > 1 and not bool(np.all(ep[1:] >= ep[:-1])):
        order = np.lexsort((day, ep))
        ep, day = ep[order], day[order]
    return ep, day


# --- supply periods and setup ----------------------------------------------------------------


def _periods(days: tuple[date, ...], last: date, mode: str, period_days: int) -> list[_Period]:
    """Back-to-back periods from the first day with data, up to the one holding ``last``."""
    periods: list[_Period] = []
    start = days[0].replace(day=1) if mode == "calendar_month" else days[0]
    length = timedelta(days=period_days - 1)
    one = timedelta(days=1)
    i = 0
    while start <= last:
        end = month_end(start) if mode == "calendar_month" else start + length
        j = bisect_right(days, end, lo=i)
        periods.append(_Period(start, end, days[i:j]))
        i = j
        start = end + one
    return periods


def _supply_dos(period: _Period, rules: RuleSettings) -> date:
    if rules.supply_date_of_service == "last_reading_day" and period.days:
        return period.days[-1]
    return period.end


def _forecast(
    period: _Period, enrollment: Enrollment, as_of: date, full_days: int
) -> dict[str, object]:
    """Days so far, days still possible, and whether the full supply code is within reach.

    ``at_risk``: the full code is not yet earned and the pace so far, kept up to the end of
    the period, falls short of it.
    """
    last_possible = period.end
    if enrollment.end_date is not None:
        last_possible = min(last_possible, enrollment.end_date)
    so_far = len(period.days)
    remaining = (last_possible - as_of).days
    if remaining < 0:
        remaining = 0
    elapsed = ((as_of if as_of < last_possible else last_possible) - period.start).days + 1
    if elapsed < 1:
        elapsed = 1
    projected = so_far + so_far / elapsed * remaining
    return {
        "days_so_far": so_far,
        "days_still_possible": remaining,
        "can_reach_16": so_far + remaining >= full_days,
        "at_risk": so_far < full_days and projected < full_days,
    }


@cache
def _supply_reason(rs: RuleSet, days: int, code: str | None) -> str:
    full = rs.supply_full_days
    text = f"{_plural(days, 'day')} with data"
    if code is None:
        if rs.supply_min_days < full:
            return (
                f"{text}, {rs.supply_min_days} needed for the short supply code, {full} for 99454"
            )
        return f"{text}, {full} needed for 99454"
    if days < full:
        return f"{text}, {full} needed for 99454 (billed {code})"
    return f"{text} (billed {code})"


def _supply_and_setup(
    enrollment: Enrollment, days: tuple[date, ...], as_of: date, rules: RuleSettings
) -> list[EngagementRecord]:
    if as_of < enrollment.start_date:
        return []
    last = as_of if enrollment.end_date is None else min(as_of, enrollment.end_date)
    pid = enrollment.patient_id
    if enrollment.consent_date is None or not days:
        ended = enrollment.end_date is not None and enrollment.end_date < as_of
        if enrollment.consent_date is None:
            reason = "no consent on file"
        elif ended:
            reason = "no qualifying readings during the enrollment"
        else:
            since = enrollment.start_date.isoformat()
            reason = f"no qualifying readings since the enrollment start {since}"
        rs = rule_set_for(PROGRAM, last)
        return [
            EngagementRecord(
                patient_id=pid,
                program=PROGRAM,
                kind="device_supply",
                period_start=enrollment.start_date,
                period_end=last,
                status="not_billable" if enrollment.consent_date is None or ended else "pending",
                reason=reason,
                rule_set=rs.name,
            )
        ]
    records: list[EngagementRecord] = []
    setup: EngagementRecord | None = None
    probe_rs = rule_set_for(PROGRAM, days[0])
    for period in _periods(days, last, rules.supply_period, probe_rs.period_days):
        dos = _supply_dos(period, rules)
        rs = rule_set_for(PROGRAM, dos)
        n = len(period.days)
        code = supply_code(rs, n)
        final = as_of > period.end
        forecast = None
        if final:
            status = "billable" if code else "not_billable"
            reason = _supply_reason(rs, n, code)
            lines: tuple[ServiceLine, ...] = (ServiceLine(code, 1, dos),) if code else ()
        else:
            status = "pending"
            forecast = _forecast(period, enrollment, as_of, rs.supply_full_days)
            lines = ()
            full = rs.supply_full_days
            reason = (
                f"period open until {period.end.isoformat()}: {_plural(n, 'day')} with data so far, "
                + (
                    "99454 reached"
                    if n >= full
                    else f"{full} needed for 99454; {forecast['days_still_possible']} days still possible"
                )
            )
        records.append(
            EngagementRecord(
                patient_id=pid,
                program=PROGRAM,
                kind="device_supply",
                period_start=period.start,
                period_end=period.end,
                status=status,
                reason=reason,
                rule_set=rs.name,
                transmission_days=n,
                lines=lines,
                evidence_dates=period.days,
                forecast=forecast,
            )
        )
        if setup is None and n >= rs.setup_min_days:
            setup = _setup_record(pid, period, rs, dos, final)
    if setup is None:
        # No period has qualified yet: say so on the latest period.
        current = records[-1]
        rs = rule_set_for(PROGRAM, current.period_end)
        ended = current.status != "pending"
        setup = EngagementRecord(
            patient_id=pid,
            program=PROGRAM,
            kind="setup",
            period_start=current.period_start,
            period_end=current.period_end,
            status="not_billable" if ended else "pending",
            reason=f"no supply period has reached {rs.setup_min_days} days with data yet",
            rule_set=rs.name,
            transmission_days=current.transmission_days,
            evidence_dates=current.evidence_dates,
        )
    return [setup, *records]


def _setup_record(
    pid: str, period: _Period, rs: RuleSet, dos: date, final: bool
) -> EngagementRecord:
    n = len(period.days)
    return EngagementRecord(
        patient_id=pid,
        program=PROGRAM,
        kind="setup",
        period_start=period.start,
        period_end=period.end,
        status="billable" if final else "pending",
        reason=(
            f"first supply period with {rs.setup_min_days}+ days ({_plural(n, 'day')}), "
            "billed once per episode"
            if final
            else f"setup qualifies; billed with the supply period ending {period.end.isoformat()}"
        ),
        rule_set=rs.name,
        transmission_days=n,
        lines=(ServiceLine(rs.setup_code, 1, dos),) if final else (),
        evidence_dates=period.days,
    )


# --- management months -----------------------------------------------------------------------


@cache
def _lowest_tier(rs: RuleSet) -> Tier:
    return min(rs.management_tiers, key=lambda t: t.minimum)


@cache
def _top_tier(rs: RuleSet) -> Tier:
    return max(rs.management_tiers, key=lambda t: t.minimum)


def _management_reason(
    rs: RuleSet,
    minutes: Decimal,
    communications: int,
    lines: tuple[ServiceLine, ...],
    cap: int,
    verb: str = "billed",
) -> str:
    text = f"{format_minutes(minutes)} minutes"
    if rs.requires_interactive and communications == 0:
        return f"{text}, no interactive communication this month"
    if not lines:
        lowest = _lowest_tier(rs)
        return f"{text}, {format_minutes(lowest.minimum)} needed for {lowest.code}"
    billed = " + ".join(
        line.code if line.units == 1 else f"{line.units}x {line.code}" for line in lines
    )
    top = _top_tier(rs)
    comms = _plural(communications, "interactive communication")
    if lines[0].code != top.code:
        needed = format_minutes(top.minimum)
        return f"{text} with {comms}, {needed} needed for {top.code} ({verb} {billed})"
    add = rs.add_on
    if add is not None and cap >= 0:
        uncapped = int((minutes - top.minimum) // add.step)
        if uncapped > cap:
            return f"{text} with {comms} ({verb} {billed}; {add.code} capped at {cap} units)"
    return f"{text} with {comms} ({verb} {billed})"


@lru_cache(maxsize=1 << 14)
def _management_outcome(
    minutes: Decimal, communications: int, end: date, final: bool, cap: int
) -> tuple[str, str, str, tuple[ServiceLine, ...]]:
    """(rule set name, status, reason, lines) of a month: a pure function of these values,
    which repeat across patients (equal minutes give equal text whatever their scale)."""
    rs = rule_set_for(PROGRAM, end)
    lines = management_lines(rs, minutes, communications, end, cap)
    if final:
        status = "billable" if lines else "not_billable"
        reason = _management_reason(rs, minutes, communications, lines, cap)
    else:
        status = "pending"
        so_far = _management_reason(rs, minutes, communications, lines, cap, "so far")
        reason = f"month open until {end.isoformat()}: {so_far}"
        lines = ()
    return rs.name, status, reason, lines


def _management(m: MonthMinutes, as_of: date, rules: RuleSettings) -> EngagementRecord:
    end = month_end(m.month)
    rule_set, status, reason, lines = _management_outcome(
        m.minutes, m.interactive_communications, end, as_of > end, rules.max_99458_units
    )
    return EngagementRecord(
        patient_id=m.patient_id,
        program=PROGRAM,
        kind="treatment_management",
        period_start=m.month,
        period_end=end,
        status=status,
        reason=reason,
        rule_set=rule_set,
        interactive_minutes=m.minutes,
        interactive_communications=m.interactive_communications,
        lines=lines,
        evidence_activity_ids=m.activity_ids,
    )


# --- CSV in bulk -----------------------------------------------------------------------------


def compute_engagement_csv(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    activities: Iterable[Activity],
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
) -> tuple[list[bytes | memoryview], dict[str, int]]:
    """The CSV lines (no header) of :func:`compute_engagement`'s records, byte for byte and in
    the same order, as UTF-8 pieces to write one after the other; and the number of records
    per status.

    Supply and setup rows of episodes with data (the bulk: several per patient) are worked
    out as arrays and formatted by Arrow; building one ``EngagementRecord`` per row and
    reading it back cost more than the rules themselves. Every other record (episodes
    without data, management months) goes through the record path and the same formatter.
    """
    counts = {"billable": 0, "pending": 0, "not_billable": 0}
    fmt = CsvRows()
    if rules.supply_period != "rolling_30":
        # Calendar-month periods are rare in practice: the record path formats them.
        records = compute_engagement(readings, snapshot, activities, as_of, rules, org_zone)
        for r in records:
            counts[r.status] += 1
        return ["".join(map(fmt.row, records)).encode()], counts
    found = patient_days(readings, snapshot, as_of, org_zone)
    enrollments = sorted(
        (e for e in snapshot.enrollments if e.program == PROGRAM),
        key=lambda e: (e.patient_id, e.start_date),
    )
    ep, day = _episode_day_numbers(found, enrollments)
    months: dict[str, list[EngagementRecord]] = {}
    for m in monthly_minutes(
        activities, snapshot, as_of, org_zone, PROGRAM, rules.secure_message_interactive
    ):
        months.setdefault(m.patient_id, []).append(_management(m, as_of, rules))
    bulk, per_enrollment = _supply_rows(ep, day, enrollments, as_of, rules, fmt, counts)
    # Byte range of each enrollment's bulk rows in the Arrow text (enrollment order).
    text = memoryview(bulk.buffers()[2] or b"")
    wide = np.int64 if pa.types.is_large_string(bulk.type) else np.int32
    row_bytes = np.frombuffer(bulk.buffers()[1], wide)[bulk.offset : bulk.offset + len(bulk) + 1]
    byte_at = row_bytes[np.r_[0, np.cumsum(per_enrollment)]].tolist()
    pieces: list[bytes | memoryview] = []
    run = -1  # start of the current run of contiguous bulk text
    for i, enrollment in enumerate(enrollments):
        if byte_at[i + 1] > byte_at[i]:
            if run < 0:
                run = byte_at[i]
        else:
            if run >= 0:
                pieces.append(text[run : byte_at[i]])
                run = -1
            rows = []
            for r in _supply_and_setup(enrollment, (), as_of, rules):
                counts[r.status] += 1
                rows.append(fmt.row(r))
            pieces.append("".join(rows).encode())
        last_of_patient = (
            i + 1 == len(enrollments) or enrollments[i + 1].patient_id != enrollment.patient_id
        )
        if last_of_patient and enrollment.patient_id in months:
            if run >= 0:
                pieces.append(text[run : byte_at[i + 1]])
                run = -1
            rows = []
            for r in months.pop(enrollment.patient_id):
                counts[r.status] += 1
                rows.append(fmt.row(r))
            pieces.append("".join(rows).encode())
    if run >= 0:
        pieces.append(text[run : byte_at[-1]])
    return pieces, counts


def _distinct(*columns: IntArray) -> tuple[list[tuple[int, ...]], IntArray]:
    """The distinct rows of parallel integer columns (as tuples) and each row's index among
    them: wording is worked out once per distinct combination, not once per row."""
    # Pack the columns into one integer key (they span small ranges), so that np.unique
    # sorts plain integers rather than rows.
    lows = [int(c.min()) for c in columns]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(columns, lows, strict=True)]
    if float(np.prod(np.array(spans, np.float64))) >= 2.0**62:
        rows, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        return [tuple(r) for r in rows.tolist()], inverse.reshape(-1)
    key = np.zeros(len(columns[0]), np.int64)
    for c, lo, span in zip(columns, lows, spans, strict=True):
        key = key * span + (c - lo)
    distinct, inverse = np.unique(key, return_inverse=True)
    combos = []
    for k in distinct.tolist():
        values = []
        for lo, span in zip(reversed(lows), reversed(spans), strict=True):
            k, v = divmod(k, span)
            values.append(v + lo)
        combos.append(tuple(reversed(values)))
    return combos, inverse.reshape(-1)


class _RuleSetIds:
    """Rule sets by date of service for arrays of day numbers (each distinct day looked up once)."""

    def __init__(self) -> None:
        self.sets: list[RuleSet] = []

    def of(self, days: IntArray) -> IntArray:
        if len(days) == 0:
            return np.empty(0, np.int64)
        distinct, inverse = np.unique(days, return_inverse=True)
        ids = []
        for d in distinct.tolist():
            rs = rule_set_for(PROGRAM, from_day_number(d))
            if rs not in self.sets:
                self.sets.append(rs)
            ids.append(self.sets.index(rs))
        return np.asarray(ids, np.int64)[inverse.reshape(-1)]


def _supply_rows(
    ep: IntArray,
    day: IntArray,
    enrollments: Sequence[Enrollment],
    as_of: date,
    rules: RuleSettings,
    fmt: CsvRows,
    counts: dict[str, int],
) -> tuple[pa.Array, IntArray]:
    """Setup and supply CSV rows of every episode with counted days (rolling periods).

    Returns the rows, one element per supply period, episode after episode, each episode's
    setup row in front of its first period's; and the number of elements of each enrollment
    (by position; 0 for an episode without days). Mirrors :func:`_supply_and_setup` exactly;
    a test compares the two on varied worlds.
    """
    if len(ep) == 0:
        return pa.array([], pa.string()), np.zeros(len(enrollments), np.int64)
    first = np.r_[0, np.flatnonzero(ep[1:] != ep[:-1]) + 1]
    episodes = ep[first]
    n_ep = len(episodes)
    anchor = day[first]
    ends = [enrollments[i].end_date for i in episodes.tolist()]
    enr_end = np.array([OPEN_END if e is None else day_number(e) for e in ends], np.int64)
    today = day_number(as_of)
    last = np.minimum(today, enr_end)
    rule_sets = _RuleSetIds()
    # The first day with data picks the period length (as in _periods).
    probe = rule_sets.of(anchor)
    length = np.array([rs.period_days for rs in rule_sets.sets], np.int64)[probe]
    n_periods = (last - anchor) // length + 1
    period_off = np.r_[0, np.cumsum(n_periods)]
    owner = np.repeat(np.arange(n_ep), n_periods)
    k = np.arange(int(period_off[-1])) - period_off[owner]
    p_start = anchor[owner] + k * length[owner]
    p_end = p_start + length[owner] - 1
    # In place on the per-day arrays (millions of rows): repeats rather than gathers.
    days_of_episode = np.diff(np.r_[first, len(ep)])
    period_of_day = day - np.repeat(anchor, days_of_episode)
    if bool(np.all(length == length[0])):
        period_of_day //= int(length[0])
    else:
        period_of_day //= np.repeat(length, days_of_episode)
    period_of_day += np.repeat(period_off[:-1], days_of_episode)
    n = np.bincount(period_of_day, minlength=len(p_start))
    day_off = np.r_[0, np.cumsum(n)]
    if rules.supply_date_of_service == "last_reading_day":
        dos = np.where(n > 0, day[np.maximum(day_off[1:] - 1, 0)], p_end)
    else:
        dos = p_end
    rs_id = rule_sets.of(dos)
    sets = rule_sets.sets
    final = today > p_end
    # Supply code per (rule set, days): few distinct pairs.
    key = rs_id * (int(n.max()) + 1) + n
    distinct, inverse = np.unique(key, return_inverse=True)
    width = int(n.max()) + 1
    code_of = [supply_code(sets[int(c) // width], int(c) % width) for c in distinct.tolist()]
    code_at = pa.array(inverse.reshape(-1))
    code_text = pa.array([c or "" for c in code_of], pa.string()).take(code_at)
    has_code = np.array([c is not None for c in code_of], np.bool_)[inverse.reshape(-1)]
    setup_min = np.array([rs.setup_min_days for rs in sets], np.int64)
    qualifies = np.flatnonzero(n >= setup_min[rs_id])
    setup_at = np.full(n_ep, -1, np.int64)
    if len(qualifies):
        owners, firsts = np.unique(owner[qualifies], return_index=True)
        setup_at[owners] = qualifies[firsts]

    lo = int(min(anchor.min(), day.min()))
    hi = int(max(p_end.max(), dos.max()))
    iso_list = [fmt.iso[from_day_number(d)] for d in range(lo, hi + 1)]
    iso = pa.array(iso_list, pa.string())
    evidence = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array(day_off, pa.int64()), iso.take(pa.array(day - lo))),
        ";",
    )
    n_text = pc.cast(pa.array(n), pa.string())
    period_starts = iso.take(pa.array(p_start - lo))
    period_ends = iso.take(pa.array(p_end - lo))
    dos_iso = iso.take(pa.array(dos - lo))

    # Supply rows. Final ones: status, reason and line follow from (rule set, days, code), a
    # few distinct combinations; pending ones (at most one per episode) are worded one by one.
    status = np.where(final, np.where(has_code, 0, 1), 2)
    statuses = pa.array(["billable", "not_billable", "pending"], pa.string())
    reason_texts: list[str] = []
    reason_at: dict[str, int] = {}

    def reason_index(text: str) -> int:
        at = reason_at.get(text)
        if at is None:
            at = reason_at[text] = len(reason_texts)
            reason_texts.append(fmt.reason(text))
        return at

    reason = np.empty(len(n), np.int64)
    final_at = np.flatnonzero(final)
    if len(final_at):
        fkey = rs_id[final_at] * width + n[final_at]
        distinct, inverse = np.unique(fkey, return_inverse=True)
        table = []
        for c in distinct.tolist():
            rs, days = sets[c // width], c % width
            table.append(reason_index(_supply_reason(rs, days, supply_code(rs, days))))
        reason[final_at] = np.asarray(table, np.int64)[inverse.reshape(-1)]
    pending_at = np.flatnonzero(~final)
    if len(pending_at):
        # Pending wording depends on (rule set, days, period end, days still possible).
        full_days = np.array([rs.supply_full_days for rs in sets], np.int64)
        rs_p, n_p, end_p = rs_id[pending_at], n[pending_at], p_end[pending_at]
        remaining = np.maximum(0, np.minimum(end_p, enr_end[owner[pending_at]]) - today)
        remaining = np.where(n_p >= full_days[rs_p], -1, remaining)
        combos, inverse = _distinct(rs_p, n_p, end_p, remaining)
        table = []
        for r, days, end, still in combos:
            full = sets[r].supply_full_days
            tail = (
                "99454 reached"
                if days >= full
                else f"{full} needed for 99454; {still} days still possible"
            )
            table.append(
                reason_index(
                    f"period open until {iso_list[end - lo]}: {_plural(days, 'day')} "
                    f"with data so far, {tail}"
                )
            )
        reason[pending_at] = np.asarray(table, np.int64)[inverse]
    supply_lines = pc.if_else(
        pa.array(final & has_code),
        pc.binary_join_element_wise(code_text, dos_iso, "x1@"),
        "",
    )
    patients = pa.array(
        [fmt.patient(enrollments[i].patient_id) for i in episodes.tolist()], pa.string()
    )
    names = pa.array([rs.name for rs in sets], pa.string())
    program = csv_field(PROGRAM)
    supply_names = names.take(pa.array(rs_id))
    status_counts = np.bincount(status, minlength=3)

    # Setup rows: the first period that qualifies, or else the latest one, worded as in
    # _setup_record and _supply_and_setup.
    last_period = period_off[1:] - 1
    chosen = np.where(setup_at >= 0, setup_at, last_period)
    latest_rs = rule_sets.of(p_end[last_period])
    sets = rule_sets.sets
    names = pa.array([rs.name for rs in sets], pa.string())
    qualified = setup_at >= 0
    chosen_final = final[chosen]
    case = np.where(qualified, np.where(chosen_final, 0, 1), np.where(chosen_final, 2, 3))
    rs_setup = np.where(qualified, rs_id[chosen], latest_rs)
    combos, inverse = _distinct(case, rs_setup, n[chosen], p_end[chosen], dos[chosen])
    status_of: list[int] = []
    lines_of: list[str] = []
    reason_of: list[int] = []
    for c, r, days, end, served in combos:
        rs = sets[r]
        if c == 0:
            status_of.append(0)
            text = (
                f"first supply period with {rs.setup_min_days}+ days "
                f"({_plural(days, 'day')}), billed once per episode"
            )
            lines_of.append(f"{rs.setup_code}x1@{iso_list[served - lo]}")
        elif c == 1:
            status_of.append(2)
            text = f"setup qualifies; billed with the supply period ending {iso_list[end - lo]}"
            lines_of.append("")
        else:
            # No period has qualified yet: said on the latest period.
            status_of.append(1 if c == 2 else 2)
            text = f"no supply period has reached {rs.setup_min_days} days with data yet"
            lines_of.append("")
        reason_of.append(reason_index(text))
    at = pa.array(inverse)
    setup_status = np.asarray(status_of, np.int64)[inverse]
    picked = pa.array(chosen)
    setup = pc.binary_join_element_wise(
        patients,
        program,
        "setup",
        period_starts.take(picked),
        period_ends.take(picked),
        statuses.take(pa.array(setup_status)),
        names.take(pa.array(rs_setup)),
        n_text.take(picked),
        "0",
        "0",
        pa.array(lines_of, pa.string()).take(at),
        pa.array(reason_texts, pa.string()).take(
            pa.array(np.asarray(reason_of, np.int64)[inverse])
        ),
        evidence.take(picked),
        "\n",
        ",",
    )
    status_counts += np.bincount(setup_status, minlength=3)
    counts["billable"] += int(status_counts[0])
    counts["not_billable"] += int(status_counts[1])
    counts["pending"] += int(status_counts[2])

    # Each episode's setup row goes in front of its first supply row (with the patient id,
    # the row's first field), so the rows come out in order without reordering the text.
    setup_lead = pc.binary_join_element_wise(setup, patients, "")
    lead_at = n_ep + owner
    lead_at[period_off[:-1]] = np.arange(n_ep)
    leading = pa.concat_arrays([setup_lead, patients]).take(pa.array(lead_at))
    supply = pc.binary_join_element_wise(
        leading,
        f"{program},device_supply",
        period_starts,
        period_ends,
        statuses.take(pa.array(status)),
        supply_names,
        n_text,
        "0,0",  # no minutes or communications on supply rows
        supply_lines,
        pa.array(reason_texts, pa.string()).take(pa.array(reason)),
        evidence,
        "\n",
        ",",
    )
    per_enrollment = np.zeros(len(enrollments), np.int64)
    per_enrollment[episodes] = np.diff(period_off)
    return supply, per_enrollment
