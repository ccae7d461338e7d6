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

from rpmpipe.metrics.days import (
    EPOCH,
    OPEN_END,
    IntArray,
    PatientDays,
    SetAside,
    day_number,
    from_day_number,
    patient_days,
)
from rpmpipe.metrics.episodes import Episode, episodes_of
from rpmpipe.metrics.minutes import MonthMinutes, monthly_minutes
from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.rules import RuleSet, Tier, management_lines, rule_set_for, supply_code
from rpmpipe.metrics.snapshot import Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, EngagementRecord, ServiceLine
from rpmpipe.settings import RuleSettings

PROGRAM = "RPM"
_NO_CONSENT = OPEN_END + 1


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Period(NamedTuple):
    # A tuple, not a frozen dataclass: hundreds of thousands are made per run.
    start: date
    end: date
    days: tuple[date, ...]


def rpm_enrollments(snapshot: RegistrySnapshot) -> list[Enrollment]:
    """The RPM enrollments, by patient then start date (positions index this list)."""
    return sorted(
        (e for e in snapshot.enrollments if e.program == PROGRAM),
        key=lambda e: (e.patient_id, e.start_date),
    )


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
    enrollments = rpm_enrollments(snapshot)
    episodes = episodes_of(enrollments, rules.episode_gap_days)
    days_of = episode_days(found, enrollments, episodes)
    months = management_records(activities, snapshot, as_of, org_zone, rules, episodes)
    records: list[EngagementRecord] = []
    by_patient: dict[str, list[int]] = {}
    for i, episode in enumerate(episodes):
        by_patient.setdefault(episode.patient_id, []).append(i)
    for pid in sorted(by_patient.keys() | months.keys()):
        for i in by_patient.get(pid, ()):
            records.extend(episode_records(episodes[i], days_of.get(i), found, as_of, rules))
        records.extend(months.pop(pid, ()))
    return records


def episode_records(
    episode: Episode,
    days: EpisodeDays | None,
    found: PatientDays,
    as_of: date,
    rules: RuleSettings,
) -> list[EngagementRecord]:
    """Setup and supply records of one episode (shared by both paths)."""
    return supply_and_setup(
        episode,
        days.dates if days is not None else (),
        as_of,
        rules,
        found.set_aside.get(episode.patient_id, ()),
        days_before_consent(found, episode, as_of),
        days.owners if days is not None else (),
        found,
    )


def management_records(
    activities: Iterable[Activity],
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    rules: RuleSettings,
    episodes: Sequence[Episode],
) -> dict[str, list[EngagementRecord]]:
    """Each patient's management months (every month with time entries), by patient."""
    episode_of: dict[int, Episode] = {}
    for episode in episodes:
        for e in episode.enrollments:
            episode_of[id(e)] = episode
    months: dict[str, list[EngagementRecord]] = {}
    for m in monthly_minutes(
        activities,
        snapshot,
        as_of,
        org_zone,
        PROGRAM,
        rules.secure_message_interactive,
        Decimal(rules.max_activity_minutes),
    ):
        owner = episode_of.get(id(m.enrollment)) if m.enrollment is not None else None
        months.setdefault(m.patient_id, []).append(management(m, as_of, rules, owner))
    return months


# --- days per episode ------------------------------------------------------------------------


class EpisodeDays(NamedTuple):
    """An episode's sorted local dates with data and, for each, the enrollment (object)
    whose coverage counted it (empty when the episode has one enrollment)."""

    dates: tuple[date, ...]
    owners: tuple[Enrollment, ...]


def episode_days(
    found: PatientDays, enrollments: Sequence[Enrollment], episodes: Sequence[Episode]
) -> dict[int, EpisodeDays]:
    """For each episode (by position), the sorted local dates it counts."""
    ep, day = episode_day_numbers(found, enrollments)
    return episode_days_of(ep, day, enrollments, episodes)


def episode_days_of(
    ep: IntArray, day: IntArray, enrollments: Sequence[Enrollment], episodes: Sequence[Episode]
) -> dict[int, EpisodeDays]:
    """:func:`episode_days` from (enrollment position, day number) pairs."""
    if len(ep) == 0:
        return {}
    episode_at = np.empty(len(enrollments), np.int64)
    for i, episode in enumerate(episodes):
        episode_at[list(episode.positions)] = i
    owner = ep
    ep = episode_at[ep]
    if len(ep) > 1 and not bool(np.all(ep[1:] >= ep[:-1]) and _days_ascend(ep, day)):
        order = np.lexsort((day, ep))
        ep, day, owner = ep[order], day[order], owner[order]
    lo = int(day.min())
    lut = np.array([from_day_number(lo + i) for i in range(int(day.max()) - lo + 1)], dtype=object)
    dates = lut[day - lo]
    cuts = np.flatnonzero(ep[1:] != ep[:-1]) + 1
    starts: IntArray = np.concatenate(([0], cuts))
    ends: IntArray = np.concatenate((cuts, [len(ep)]))
    out: dict[int, EpisodeDays] = {}
    for e, s, t in zip(ep[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
        episode = episodes[e]
        owners: tuple[Enrollment, ...] = ()
        if len(episode.enrollments) > 1:
            owners = tuple(enrollments[i] for i in owner[s:t].tolist())
        out[e] = EpisodeDays(tuple(dates[s:t]), owners)
    return out


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


def _periods(
    days: tuple[date, ...], last: date, mode: str, period_days: int, episode: Episode
) -> list[_Period]:
    """Back-to-back periods from the first day with data, up to the one holding ``last``.

    A period the end of the episode's enrollment cuts short ends (and is dated) on that end.
    """
    periods: list[_Period] = []
    start = days[0].replace(day=1) if mode == "calendar_month" else days[0]
    length = timedelta(days=period_days - 1)
    one = timedelta(days=1)
    i = 0
    while start <= last:
        end = month_end(start) if mode == "calendar_month" else start + length
        j = bisect_right(days, end, lo=i)
        periods.append(_Period(start, episode.covering_end(start, end), days[i:j]))
        i = j
        start = end + one
    return periods


SUPPLY_DOS_SPACING = timedelta(days=30)


def _supply_dos(period: _Period, rules: RuleSettings) -> date:
    if rules.supply_date_of_service == "last_reading_day" and period.days:
        return period.days[-1]
    return period.end


def spaced_supply_dos(dos: date, prior: date | None, period_end: date) -> date:
    """A supply line's date of service at least 30 days after the patient's previous one.

    NGS: "the date of service for each instance thereafter would be 30 days from the prior
    date of billing". With ``last_reading_day`` the last reading of a period can come early
    (March 30, then April 10); the date then moves to 30 days after the prior one, which in
    back-to-back 30-day periods is never after the period's end. Both paths use this.
    """
    if prior is None:
        return dos
    return min(max(dos, prior + SUPPLY_DOS_SPACING), period_end)


def _forecast(
    period: _Period, end_date: date | None, as_of: date, full_days: int
) -> dict[str, object]:
    """Days so far, days still possible, and whether the full supply code is within reach.

    ``at_risk``: the full code is not yet earned and the pace so far, kept up to the end of
    the period, falls short of it.
    """
    last_possible = period.end
    if end_date is not None:
        last_possible = min(last_possible, end_date)
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
def pending_supply_reason(rs: RuleSet, days: int, end: date, still: int) -> str:
    """The reason of an open supply period with ``days`` so far and ``still`` days possible
    (both paths word it here)."""
    full = rs.supply_full_days
    code = supply_code(rs, days)
    text = f"period open until {end.isoformat()}: {plural(days, 'day')} with data so far, "
    if days >= full:
        return f"{text}{code} reached"
    # A short supply code already earned (99445 in CY2026) is worth telling the biller.
    reached = f"{code} reached; " if code else ""
    return f"{text}{reached}{full} needed for 99454; {still} days still possible"


_WHY = {
    "unassigned": "it was not assigned to this patient",
    "manual_entry": "entered manually",
    "clock_suspect": "timed over 10 minutes after receipt (clock error)",
}
_MOST_NOTES = 3


def _dates_text(days: Sequence[date]) -> str:
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} to {days[-1].isoformat()}"


def not_counted_note(
    set_aside: Sequence[SetAside],
    first: date,
    last: date,
    before_consent: Sequence[date] = (),
    consent: date | None = None,
) -> str:
    """Why readings of the patient's devices on ``first .. last`` did not count, with counts
    and dates, e.g. "20 readings from BP-R6 on 20 days it was not assigned to this patient
    (2026-09-03 to 2026-09-22)"; empty when nothing was set aside. Shared by both paths."""
    groups: dict[tuple[str, str], tuple[int, list[date]]] = {}
    for s in set_aside:
        if first <= s.day <= last:
            n, days = groups.get((s.cause, s.device_id), (0, []))
            if not days or days[-1] != s.day:
                days.append(s.day)
            groups[(s.cause, s.device_id)] = (n + s.readings, days)
    notes = []
    for (cause, device), (n, days) in sorted(groups.items(), key=lambda g: g[1][1][0]):
        reading = plural(n, "reading")
        on = plural(len(days), "day")
        if cause == "unassigned":
            text = f"{reading} from {device} on {on} {_WHY[cause]}"
        else:
            text = f"{reading} from {device} {_WHY[cause]} on {on}"
        notes.append(f"{text} ({_dates_text(days)})")
    inside = [d for d in before_consent if first <= d <= last]
    if inside and consent is not None:
        notes.insert(
            0,
            f"readings on {plural(len(inside), 'day')} before consent on "
            f"{consent.isoformat()} ({_dates_text(inside)})",
        )
    if not notes:
        return ""
    more = len(notes) - _MOST_NOTES
    shown = ", ".join(notes[:_MOST_NOTES])
    return f"not counted: {shown}" + (f", and {more} more" if more > 0 else "")


def with_note(reason: str, note: str) -> str:
    return f"{reason}; {note}" if note else reason


def days_before_consent(found: PatientDays, episode: Episode, as_of: date) -> list[date]:
    """Days with data of the patient inside the episode but before its consent date."""
    consent = episode.consent_date
    if consent is None or consent <= episode.start_date:
        return []
    hi = min(consent - timedelta(days=1), as_of)
    if episode.end_date is not None:
        hi = min(hi, episode.end_date)
    return days_with_data(found, episode.patient_id, episode.start_date, hi)


def days_with_data(found: PatientDays, patient_id: str, first: date, last: date) -> list[date]:
    """The patient's days with data (from assigned devices) on ``first .. last``."""
    if len(found.day) == 0 or last < first:
        return []
    at = found.index.position().get(patient_id)
    if at is None:
        return []
    keys = found.keys
    lo_key, hi_key = found.key(at, day_number(first)), found.key(at, day_number(last))
    a, b = np.searchsorted(keys, [lo_key, hi_key + 1])
    return [from_day_number(int(d)) for d in found.day[a:b].tolist()]


@cache
def supply_reason(rs: RuleSet, days: int, code: str | None) -> str:
    full = rs.supply_full_days
    text = f"{plural(days, 'day')} with data"
    if code is None:
        if rs.supply_min_days < full:
            return (
                f"{text}, {rs.supply_min_days} needed for the short supply code, {full} for 99454"
            )
        return f"{text}, {full} needed for 99454"
    if days < full:
        return f"{text}, {full} needed for 99454 (billed {code})"
    return f"{text} (billed {code})"


def _owner(
    episode: Episode, period: _Period, owners: tuple[Enrollment, ...], at: int
) -> Enrollment:
    """The enrollment a period is billed under: the one that counted most of its days (the
    later one on a tie), else the one running at its end."""
    if not owners or not period.days:
        return episode.enrollment_on(period.end)
    tally: dict[int, int] = {}
    order: dict[int, Enrollment] = {}
    for e in owners[at : at + len(period.days)]:
        tally[id(e)] = tally.get(id(e), 0) + 1
        order[id(e)] = e
    return max(order.values(), key=lambda e: (tally[id(e)], e.start_date))


def supply_and_setup(
    episode: Episode,
    days: tuple[date, ...],
    as_of: date,
    rules: RuleSettings,
    set_aside: Sequence[SetAside] = (),
    before_consent: Sequence[date] = (),
    owners: tuple[Enrollment, ...] = (),
    found: PatientDays | None = None,
) -> list[EngagementRecord]:
    """Setup and supply records of one episode of care from its days with data (``owners``:
    the enrollment that counted each day, when the episode has several)."""
    if as_of < episode.start_date:
        return []
    end_date = episode.end_date
    last = as_of if end_date is None else min(as_of, end_date)
    pid = episode.patient_id
    first = episode.enrollments[0]
    if episode.consent_date is None or not days:
        ended = end_date is not None and end_date < as_of
        would: list[date] = []
        if episode.consent_date is None:
            reason = "no consent on file"
            if found is not None:
                would = days_with_data(found, pid, episode.start_date, last)
            if would:
                reason += (
                    f": {plural(len(would), 'day')} with data would count once consent is on file"
                )
        elif ended:
            reason = "no qualifying readings during the enrollment"
        else:
            since = episode.start_date.isoformat()
            reason = f"no qualifying readings since the enrollment start {since}"
        if episode.consent_date is not None:
            reason = with_note(
                reason,
                not_counted_note(
                    set_aside, episode.start_date, last, before_consent, episode.consent_date
                ),
            )
        rs = rule_set_for(PROGRAM, last)
        return [
            EngagementRecord(
                patient_id=pid,
                program=PROGRAM,
                kind="device_supply",
                period_start=episode.start_date,
                period_end=last,
                status="not_billable" if episode.consent_date is None or ended else "pending",
                reason=reason,
                rule_set=rs.name,
                transmission_days=len(would),
                evidence_dates=tuple(would),
                ordering_npi=episode.enrollment_on(last).ordering_npi,
                episode_start=episode.start_date,
            )
        ]
    records: list[EngagementRecord] = []
    setup: EngagementRecord | None = None
    probe_rs = rule_set_for(PROGRAM, days[0])
    at = 0
    prior: date | None = None  # the previous supply line's date of service
    for period in _periods(days, last, rules.supply_period, probe_rs.period_days, episode):
        dos = _supply_dos(period, rules)
        n = len(period.days)
        if supply_code(rule_set_for(PROGRAM, dos), n):
            dos = spaced_supply_dos(dos, prior, period.end)
        rs = rule_set_for(PROGRAM, dos)
        code = supply_code(rs, n)
        if code:
            prior = dos
        final = as_of > period.end
        npi = _owner(episode, period, owners, at).ordering_npi
        at += n
        forecast = None
        if final:
            status = "billable" if code else "not_billable"
            reason = supply_reason(rs, n, code)
            lines: tuple[ServiceLine, ...] = (ServiceLine(code, 1, dos),) if code else ()
        else:
            status = "pending"
            forecast = _forecast(period, end_date, as_of, rs.supply_full_days)
            lines = ()
            still = forecast["days_still_possible"]
            assert isinstance(still, int)
            reason = pending_supply_reason(rs, n, period.end, still)
        if (
            status != "billable"
            and n < rs.supply_full_days  # an open period with 99454 reached lacks nothing
            and (set_aside or (before_consent and not records))
        ):
            # The first period also answers for the days between the enrollment start and
            # its first day with data (readings then may be why it started late).
            noted_from = episode.start_date if not records else period.start
            note = not_counted_note(
                set_aside, noted_from, period.end, before_consent, episode.consent_date
            )
            reason = with_note(reason, note)
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
                ordering_npi=npi,
                episode_start=episode.start_date,
            )
        )
        # Setup goes with the first period that bills a supply code: never alone.
        if setup is None and n >= rs.setup_min_days and code is not None:
            setup = _setup_record(pid, period, rs, dos, final, npi, episode.start_date)
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
            ordering_npi=current.ordering_npi or first.ordering_npi,
            episode_start=episode.start_date,
        )
    return [setup, *records]


def _setup_record(
    pid: str,
    period: _Period,
    rs: RuleSet,
    dos: date,
    final: bool,
    npi: str,
    episode_start: date,
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
            f"first supply period with {rs.setup_min_days}+ days ({plural(n, 'day')}), "
            "billed once per episode"
            if final
            else f"setup qualifies; billed with the supply period ending {period.end.isoformat()}"
        ),
        rule_set=rs.name,
        transmission_days=n,
        lines=(ServiceLine(rs.setup_code, 1, dos),) if final else (),
        evidence_dates=period.days,
        ordering_npi=npi,
        episode_start=episode_start,
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
    comms = plural(communications, "interactive communication")
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


NO_DEVICE = "no device assigned to the patient this month"


def _not_counted_activities(m: MonthMinutes) -> str:
    if not m.not_counted:
        return ""
    shown = ", ".join(f"{aid} ({why})" for aid, why in m.not_counted[:_MOST_NOTES])
    more = len(m.not_counted) - _MOST_NOTES
    return f"not counted: {shown}" + (f", and {more} more" if more > 0 else "")


def management(
    m: MonthMinutes, as_of: date, rules: RuleSettings, episode: Episode | None = None
) -> EngagementRecord:
    """The record of one patient-month of care time: billed when the time counts, else not
    billable with why (no consent, no enrollment, no device that month)."""
    end = month_end(m.month)
    if episode is not None:
        end = episode.covering_end(m.month, end)
    final = as_of > end
    comms = plural(m.interactive_communications, "interactive communication")
    minutes = f"{format_minutes(m.minutes)} minutes with {comms}"
    lines: tuple[ServiceLine, ...] = ()
    if m.enrollment is None and m.activity_ids:
        # Time outside a consented enrollment: what would count, and why it does not.
        rule_set = rule_set_for(PROGRAM, end).name
        if m.blocked == "no consent on file":
            reason = f"no consent on file: {minutes} would count once consent is on file"
        else:
            reason = f"{m.blocked} ({minutes} not counted)"
        status = "not_billable" if final else "pending"
    elif not m.device_assigned and m.activity_ids:
        rule_set = rule_set_for(PROGRAM, end).name
        reason = f"{NO_DEVICE} ({minutes}; management presumes monitoring)"
        status = "not_billable" if final else "pending"
    else:
        rule_set, status, reason, lines = _management_outcome(
            m.minutes, m.interactive_communications, end, final, rules.max_99458_units
        )
    if status == "pending" and not reason.startswith("month open"):
        reason = f"month open until {end.isoformat()}: {reason}"
    reason = with_note(reason, _not_counted_activities(m))
    owner = m.enrollment
    if owner is None and episode is not None:
        owner = episode.enrollment_on(end)
    return EngagementRecord(
        patient_id=m.patient_id,
        program=PROGRAM,
        kind="treatment_management",
        period_start=m.month,
        period_end=end,
        status=status,
        reason=reason,
        rule_set=rule_set,
        interactive_minutes=m.interactive_minutes,
        interactive_communications=m.interactive_communications,
        lines=lines,
        evidence_activity_ids=m.activity_ids,
        management_minutes=m.minutes,
        ordering_npi=owner.ordering_npi if owner is not None else "",
        episode_start=episode.start_date if episode is not None else None,
        activities_not_counted=m.not_counted,
    )
