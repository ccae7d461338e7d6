"""A reference of the supply periods, one episode at a time in plain Python (tests only).

The table of periods (:mod:`metrics.periods`) is the one implementation rpmpipe runs; this is
the per-episode loop it replaced, kept as an independent oracle: the table must give, episode
by episode, exactly these records (tests/metrics/test_metrics_periods.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np

from rpmpipe.metrics.days import (
    IntArray,
    PatientDays,
    SetAside,
    days_before_consent,
    from_day_number,
)
from rpmpipe.metrics.engagement import month_end, no_data_record
from rpmpipe.metrics.episodes import Episode
from rpmpipe.metrics.periods import spaced_supply_dos, supply_forecast
from rpmpipe.metrics.programs import RPM_SUPPLY, SupplyProgram
from rpmpipe.metrics.reasons import (
    not_counted_note,
    pending_supply_reason,
    setup_billed_reason,
    setup_not_yet_reason,
    setup_pending_reason,
    supply_reason,
    with_note,
)
from rpmpipe.metrics.rules import RuleSet, supply_code
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import EngagementRecord, ServiceLine
from rpmpipe.settings import RuleSettings


def _days_ascend(ep: IntArray, day: IntArray) -> bool:
    same = ep[1:] == ep[:-1]
    return bool(np.all(day[1:][same] > day[:-1][same]))


class _Period(NamedTuple):
    # A tuple, not a frozen dataclass: hundreds of thousands are made per run.
    start: date
    end: date
    days: tuple[date, ...]


class EpisodeDays(NamedTuple):
    """An episode's sorted local dates with data and, for each, the enrollment (object)
    whose coverage counted it (empty when the episode has one enrollment)."""

    dates: tuple[date, ...]
    owners: tuple[Enrollment, ...]


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


def _supply_dos(period: _Period, rules: RuleSettings) -> date:
    if rules.supply_date_of_service == "last_reading_day" and period.days:
        return period.days[-1]
    return period.end


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
    program: SupplyProgram = RPM_SUPPLY,
) -> list[EngagementRecord]:
    """Setup and supply records of one episode of care from its days with data (``owners``:
    the enrollment that counted each day, when the episode has several)."""
    if as_of < episode.start_date:
        return []
    end_date = episode.end_date
    last = as_of if end_date is None else min(as_of, end_date)
    if episode.consent_date is None or not days:
        return [no_data_record(episode, as_of, last, set_aside, before_consent, found, program)]
    records: list[EngagementRecord] = []
    setup: EngagementRecord | None = None
    probe_rs = program.rule_set(days[0])
    at = 0
    prior: date | None = None  # the previous supply line's date of service
    for period in _periods(days, last, rules.supply_period, probe_rs.period_days, episode):
        dos = _supply_dos(period, rules)
        n = len(period.days)
        if supply_code(program.rule_set(dos), n):
            dos = spaced_supply_dos(dos, prior, period.end)
        rs = program.rule_set(dos)
        if supply_code(rs, n):
            prior = dos
        npi = _owner(episode, period, owners, at).ordering_npi
        at += n
        record = _period_record(episode, period, rs, dos, npi, as_of)
        if (
            record.status != "billable"
            and n < rs.supply_full_days  # an open period with 99454 reached lacks nothing
            and (set_aside or (before_consent and not records))
        ):
            # The first period also answers for the days between the enrollment start and
            # its first day with data (readings then may be why it started late).
            noted_from = episode.start_date if not records else period.start
            note = not_counted_note(
                set_aside, noted_from, period.end, before_consent, episode.consent_date
            )
            record = replace(record, reason=with_note(record.reason, note))
        records.append(record)
        # Setup goes with the first period that bills a supply code: never alone.
        if setup is None and n >= rs.setup_min_days and supply_code(rs, n) is not None:
            final = as_of > period.end
            setup = _setup_record(
                episode.patient_id, period, rs, dos, final, npi, episode.start_date
            )
    return [setup or _setup_not_yet(episode, records[-1], program), *records]


def _period_record(
    episode: Episode, period: _Period, rs: RuleSet, dos: date, npi: str, as_of: date
) -> EngagementRecord:
    """A supply period's record: billed when over and a code is earned, else why not."""
    n = len(period.days)
    code = supply_code(rs, n)
    forecast = None
    lines: tuple[ServiceLine, ...] = ()
    if as_of > period.end:
        status = "billable" if code else "not_billable"
        reason = supply_reason(rs, n, code)
        lines = (ServiceLine(code, 1, dos),) if code else ()
    else:
        status = "pending"
        forecast = supply_forecast(
            period.start, period.end, n, episode.end_date, as_of, rs.supply_full_days
        )
        still = forecast["days_still_possible"]
        assert isinstance(still, int)
        reason = pending_supply_reason(rs, n, period.end, still)
    return EngagementRecord(
        patient_id=episode.patient_id,
        program=rs.program,
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


def _setup_not_yet(
    episode: Episode, current: EngagementRecord, program: SupplyProgram
) -> EngagementRecord:
    """No period has qualified for setup yet: said on the latest period."""
    rs = program.rule_set(current.period_end)
    return EngagementRecord(
        patient_id=episode.patient_id,
        program=program.program,
        kind="setup",
        period_start=current.period_start,
        period_end=current.period_end,
        status="not_billable" if current.status != "pending" else "pending",
        reason=setup_not_yet_reason(rs),
        rule_set=rs.name,
        transmission_days=current.transmission_days,
        evidence_dates=current.evidence_dates,
        ordering_npi=current.ordering_npi or episode.enrollments[0].ordering_npi,
        episode_start=episode.start_date,
    )


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
        program=rs.program,
        kind="setup",
        period_start=period.start,
        period_end=period.end,
        status="billable" if final else "pending",
        reason=setup_billed_reason(rs, n) if final else setup_pending_reason(period.end),
        rule_set=rs.name,
        transmission_days=n,
        lines=(ServiceLine(rs.setup_code, 1, dos),) if final else (),
        evidence_dates=period.days,
        ordering_npi=npi,
        episode_start=episode_start,
    )


def episode_records(
    episode: Episode,
    days: EpisodeDays | None,
    found: PatientDays,
    as_of: date,
    rules: RuleSettings,
    program: SupplyProgram = RPM_SUPPLY,
) -> list[EngagementRecord]:
    """Setup and supply records of one episode."""
    return supply_and_setup(
        episode,
        days.dates if days is not None else (),
        as_of,
        rules,
        found.set_aside.get(episode.patient_id, ()),
        days_before_consent(found, episode, as_of),
        days.owners if days is not None else (),
        found,
        program,
    )
