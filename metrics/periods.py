"""A supply program's periods (RPM, RTM) as one table of columns, and its two renderings
(records, CSV text).

One row per period (30 days, or a calendar month) of every episode of care with a day with
data (one enrollment or several, open or ended), computed once as arrays: episode, start,
end, days with data, date of service, rule set, code, status (final or pending), reason,
billing NPI; and per episode the setup row (the first period that bills a supply code, else
the latest one). :func:`records_of` turns the table into ``EngagementRecord`` values and
:func:`csv_of` into the CSV text of the same records, so ``rpmpipe metrics --format json``
and ``--format csv`` are two renderings of one computation. An episode without a day with
data has one record (:func:`metrics.engagement.episode_records`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.csv_cells import csv_field
from rpmpipe.metrics.days import (
    OPEN_END,
    IntArray,
    PatientDays,
    day_number,
    days_before_consent,
    from_day_number,
)
from rpmpipe.metrics.episodes import Episode
from rpmpipe.metrics.programs import SupplyProgram
from rpmpipe.metrics.reasons import (
    not_counted_note,
    pending_supply_reason,
    setup_billed_reason,
    setup_not_yet_reason,
    setup_pending_reason,
    supply_reason,
    with_note,
)
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.rules import RuleSet, supply_code
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import EngagementRecord, RecordKind, RecordStatus, ServiceLine, line_infix
from rpmpipe.settings import RuleSettings

STATUSES = (
    RecordStatus.BILLABLE,
    RecordStatus.NOT_BILLABLE,
    RecordStatus.PENDING,
)  # the table's status codes 0, 1, 2
BoolArray = npt.NDArray[np.bool_]


def supply_forecast(
    start: date, end: date, so_far: int, end_date: date | None, as_of: date, full_days: int
) -> dict[str, object]:
    """Days so far, days still possible, and whether the full supply code is within reach.

    ``at_risk``: the full code is not yet earned and the pace so far, kept up to the end of
    the period, falls short of it.
    """
    last_possible = end if end_date is None else min(end, end_date)
    remaining = max(0, (last_possible - as_of).days)
    elapsed = max(1, ((as_of if as_of < last_possible else last_possible) - start).days + 1)
    projected = so_far + so_far / elapsed * remaining
    return {
        "days_so_far": so_far,
        "days_still_possible": remaining,
        "can_reach_16": so_far + remaining >= full_days,
        "at_risk": so_far < full_days and projected < full_days,
    }


SUPPLY_DOS_SPACING = timedelta(days=30)


def spaced_supply_dos(dos: date, prior: date | None, period_end: date) -> date:
    """A supply line's date of service at least 30 days after the patient's previous one.

    NGS: "the date of service for each instance thereafter would be 30 days from the prior
    date of billing". With ``last_reading_day`` the last reading of a period can come early
    (March 30, then April 10); the date then moves to 30 days after the prior one, which in
    back-to-back 30-day periods is never after the period's end. Both renderings use this.
    """
    if prior is None:
        return dos
    return min(max(dos, prior + SUPPLY_DOS_SPACING), period_end)


def _spaced(
    program: SupplyProgram, dos: IntArray, owner: IntArray, n: IntArray, p_end: IntArray
) -> IntArray:
    """Supply dates of service at least 30 days apart per episode (:func:`spaced_supply_dos`):
    a sequential rule, so a loop, run only under ``last_reading_day``."""
    out = dos.copy()
    prior: date | None = None
    last_owner = -1
    for i in range(len(out)):
        if int(owner[i]) != last_owner:
            last_owner, prior = int(owner[i]), None
        base = from_day_number(int(out[i]))
        days = int(n[i])
        if supply_code(program.rule_set(base), days):
            base = spaced_supply_dos(base, prior, from_day_number(int(p_end[i])))
            out[i] = day_number(base)
        if supply_code(program.rule_set(base), days):
            prior = base
    return out


class RuleSetIds:
    """Rule sets by date of service for arrays of day numbers (each distinct day looked up once)."""

    def __init__(self, program: SupplyProgram) -> None:
        self.program = program
        self.sets: list[RuleSet] = []

    def of(self, days: IntArray) -> IntArray:
        if len(days) == 0:
            return np.empty(0, np.int64)
        distinct, inverse = np.unique(days, return_inverse=True)
        ids = []
        for d in distinct.tolist():
            rs = self.program.rule_set(from_day_number(d))
            if rs not in self.sets:
                self.sets.append(rs)
            ids.append(self.sets.index(rs))
        return np.asarray(ids, np.int64)[inverse.reshape(-1)]


def distinct_rows(*columns: IntArray) -> tuple[list[tuple[int, ...]], IntArray]:
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


@dataclass
class PeriodTable:
    """Supply periods (one row each) and setup rows (one per episode) as columns.

    Day numbers throughout; ``day[day_off[i]:day_off[i + 1]]`` are period ``i``'s days with
    data; ``reasons`` holds each distinct wording once, ``reason`` indexes it.
    """

    program: SupplyProgram
    enrollments: Sequence[Enrollment]
    episode_of: Mapping[int, Episode]  # by the position of its first enrollment
    as_of: date
    episode_at: IntArray  # enrollment position of each episode (its first enrollment's)
    several: IntArray  # the episodes of several enrollments
    enr_end: IntArray  # each episode's last day (OPEN_END when open)
    period_off: IntArray  # first period of each episode (and the total at the end)
    owner: IntArray  # episode of each period
    start: IntArray
    end: IntArray
    days: IntArray  # days with data in the period
    dos: IntArray
    day: IntArray
    day_off: IntArray
    rule_sets: list[RuleSet]
    rs_id: IntArray
    final: BoolArray
    codes: list[str | None]  # distinct supply codes
    code_at: IntArray  # each period's index in ``codes``
    status: IntArray  # index in STATUSES
    reasons: list[str]
    reason: IntArray
    setup_period: IntArray  # per episode: the period its setup row stands on
    setup_status: IntArray
    setup_rs: IntArray
    setup_reason: IntArray
    setup_billed: BoolArray  # the setup line goes out (with the period's date of service)
    setup_qualified: BoolArray  # a period has qualified for setup (billed once final)
    npi: dict[int, str]  # period -> billing enrollment's NPI, where it is not the first's

    def reason_index(self, text: str, seen: dict[str, int]) -> int:
        at = seen.get(text)
        if at is None:
            at = seen[text] = len(self.reasons)
            self.reasons.append(text)
        return at


def _month_index(days: IntArray) -> IntArray:
    """Months since 1970-01 of day numbers."""
    return np.asarray(days.astype("datetime64[D]").astype("datetime64[M]"), np.int64)


def _month_start(months: IntArray) -> IntArray:
    """The day number of the first day of each month (months since 1970-01)."""
    return np.asarray(months.astype("datetime64[M]").astype("datetime64[D]"), np.int64)


class _Bounds(NamedTuple):
    period_off: IntArray  # first period of each episode (and the total at the end)
    owner: IntArray  # episode of each period
    start: IntArray
    end: IntArray  # not yet cut at the enrollment's end
    period_of_day: IntArray  # each day's period


def _period_bounds(
    day: IntArray, first: IntArray, last: IntArray, mode: str, rule_sets: RuleSetIds
) -> _Bounds:
    """The periods of every episode (days sorted by episode then day; ``first``: each
    episode's first day's index). Rolling periods start on the first day with data, calendar
    months on the first of its month; each day's period by arithmetic, in place on the
    per-day arrays (millions of rows: repeats rather than gathers)."""
    anchor = day[first]
    days_of_episode = np.diff(np.r_[first, len(day)])
    if mode == "calendar_month":
        first_month = _month_index(anchor)
        n_periods = _month_index(last) - first_month + 1
        period_of_day = _month_index(day) - np.repeat(first_month, days_of_episode)
    else:
        # The first day with data picks the period length (as in _periods of the episodes).
        probe = rule_sets.of(anchor)
        length = np.array([rs.period_days for rs in rule_sets.sets], np.int64)[probe]
        n_periods = (last - anchor) // length + 1
        period_of_day = day - np.repeat(anchor, days_of_episode)
        if bool(np.all(length == length[0])):
            period_of_day //= int(length[0])
        else:
            period_of_day //= np.repeat(length, days_of_episode)
    period_off = np.r_[0, np.cumsum(n_periods)]
    period_of_day += np.repeat(period_off[:-1], days_of_episode)
    owner = np.repeat(np.arange(len(anchor)), n_periods)
    k = np.arange(int(period_off[-1])) - period_off[owner]
    if mode == "calendar_month":
        month = first_month[owner] + k
        start, end = _month_start(month), _month_start(month + 1) - 1
    else:
        start = anchor[owner] + k * length[owner]
        end = start + length[owner] - 1
    return _Bounds(period_off, owner, start, end, period_of_day)


def _cut_in_gaps(
    p_end: IntArray,
    p_start: IntArray,
    period_off: IntArray,
    episodes: Sequence[Episode],
    at: Sequence[int],
) -> None:
    """Periods of episodes of several enrollments (``episodes``, the table's episodes ``at``)
    end (and are dated) on the end of the enrollment that was running when no enrollment
    covers their end (few periods, in place)."""
    for episode, e in zip(episodes, at, strict=True):
        for i in range(int(period_off[e]), int(period_off[e + 1])):
            start, end = from_day_number(int(p_start[i])), from_day_number(int(p_end[i]))
            p_end[i] = day_number(episode.covering_end(start, end))


def _billing_npi(t: PeriodTable, counted_by: IntArray) -> dict[int, str]:
    """The NPI of each period of an episode of several enrollments: the enrollment that
    counted most of its days (the later one on a tie), else the one running at its end."""
    out: dict[int, str] = {}
    for e in t.several.tolist():
        episode = t.episode_of[int(t.episode_at[e])]
        for i in range(int(t.period_off[e]), int(t.period_off[e + 1])):
            owners = counted_by[t.day_off[i] : t.day_off[i + 1]].tolist()
            if not owners:
                chosen = episode.enrollment_on(from_day_number(int(t.end[i])))
            else:
                tally = {k: owners.count(k) for k in dict.fromkeys(owners)}
                best = max(tally, key=lambda k: (tally[k], t.enrollments[k].start_date))
                chosen = t.enrollments[best]
            out[i] = chosen.ordering_npi
    return out


def _layout(
    ep: IntArray,
    day: IntArray,
    episode_of: Mapping[int, Episode],
    as_of: date,
    rules: RuleSettings,
    rule_sets: RuleSetIds,
) -> dict[str, IntArray]:
    """Periods back to back from each episode's first day with data, up to the as-of date
    (and the enrollment's end, which also cuts the last period short)."""
    first = np.r_[0, np.flatnonzero(ep[1:] != ep[:-1]) + 1]
    episodes = ep[first]
    ends: list[date | None] = []
    several: list[int] = []  # episodes of several enrollments (few)
    for e, pos in enumerate(episodes.tolist()):
        episode = episode_of[pos]
        if len(episode.enrollments) > 1:
            several.append(e)
            ends.append(episode.end_date)
        else:
            ends.append(episode.enrollments[0].end_date)
    enr_end = np.array([OPEN_END if e is None else day_number(e) for e in ends], np.int64)
    last = np.minimum(day_number(as_of), enr_end)
    bounds = _period_bounds(day, first, last, rules.supply_period, rule_sets)
    period_off, owner, p_start, period_of_day = (
        bounds.period_off,
        bounds.owner,
        bounds.start,
        bounds.period_of_day,
    )
    p_end = np.minimum(bounds.end, enr_end[owner])
    _cut_in_gaps(
        p_end, p_start, bounds.period_off, [episode_of[episodes[e]] for e in several], several
    )
    n = np.bincount(period_of_day, minlength=len(p_start))
    day_off = np.r_[0, np.cumsum(n)]
    if rules.supply_date_of_service == "last_reading_day":
        dos = np.where(n > 0, day[np.maximum(day_off[1:] - 1, 0)], p_end)
        dos = _spaced(rule_sets.program, dos, owner, n, p_end)
    else:
        dos = p_end
    return {
        "episode_at": episodes,
        "several": np.asarray(several, np.int64),
        "enr_end": enr_end,
        "period_off": period_off,
        "owner": owner,
        "start": p_start,
        "end": p_end,
        "days": n,
        "dos": dos,
        "day_off": day_off,
    }


def _supply_wording(t: PeriodTable, seen: dict[str, int]) -> None:
    """Each period's reason: final ones by (rule set, days), few distinct pairs; pending ones
    (at most one per episode) by (rule set, days, end, days still possible)."""
    sets, width = t.rule_sets, int(t.days.max()) + 1
    final_at = np.flatnonzero(t.final)
    if len(final_at):
        distinct, inverse = np.unique(
            t.rs_id[final_at] * width + t.days[final_at], return_inverse=True
        )
        table = []
        for c in distinct.tolist():
            rs, days = sets[c // width], c % width
            table.append(t.reason_index(supply_reason(rs, days, supply_code(rs, days)), seen))
        t.reason[final_at] = np.asarray(table, np.int64)[inverse.reshape(-1)]
    full_days = np.array([rs.supply_full_days for rs in sets], np.int64)
    pending_at = np.flatnonzero(~t.final)
    if len(pending_at):
        rs_p, n_p, end_p = t.rs_id[pending_at], t.days[pending_at], t.end[pending_at]
        today = day_number(t.as_of)
        remaining = np.maximum(0, np.minimum(end_p, t.enr_end[t.owner[pending_at]]) - today)
        remaining = np.where(n_p >= full_days[rs_p], -1, remaining)
        combos, inverse = distinct_rows(rs_p, n_p, end_p, remaining)
        table = [
            t.reason_index(pending_supply_reason(sets[r], d, from_day_number(e), still), seen)
            for r, d, e, still in combos
        ]
        t.reason[pending_at] = np.asarray(table, np.int64)[inverse]


def _notes(t: PeriodTable, found: PatientDays, seen: dict[str, int]) -> None:
    """Periods not billable of patients with readings set aside, and first periods of
    episodes whose consent came after their start, say why readings did not count (few rows,
    worded one by one)."""
    set_aside = found.set_aside
    episode_list = [t.episode_of[i] for i in t.episode_at.tolist()]
    noted = np.array([e.patient_id in set_aside for e in episode_list], np.bool_)
    late_consent = np.array(
        [e.consent_date is not None and e.consent_date > e.start_date for e in episode_list],
        np.bool_,
    )
    is_first = np.zeros(len(t.days), np.bool_)
    is_first[t.period_off[:-1]] = True
    full_days = np.array([rs.supply_full_days for rs in t.rule_sets], np.int64)
    candidates = (t.status != 0) & (t.days < full_days[t.rs_id])
    candidates &= noted[t.owner] | (late_consent[t.owner] & is_first)
    today = day_number(t.as_of)
    for at in np.flatnonzero(candidates).tolist():
        episode = episode_list[t.owner[at]]
        first_period = bool(is_first[at])
        start, end = from_day_number(int(t.start[at])), from_day_number(int(t.end[at]))
        # The first period answers from the enrollment start (readings then may be why it
        # started late).
        note = not_counted_note(
            set_aside.get(episode.patient_id, ()),
            episode.start_date if first_period else start,
            end,
            days_before_consent(found, episode, t.as_of) if first_period else (),
            episode.consent_date,
        )
        if not note:
            continue
        rs, n = t.rule_sets[t.rs_id[at]], int(t.days[at])
        if t.final[at]:
            base = supply_reason(rs, n, t.codes[t.code_at[at]])
        else:
            still = int(max(0, min(t.end[at], t.enr_end[t.owner[at]]) - today))
            base = pending_supply_reason(rs, n, end, still)
        t.reason[at] = t.reason_index(with_note(base, note), seen)


def _setup(t: PeriodTable, rule_sets: RuleSetIds, seen: dict[str, int]) -> None:
    """Setup rows: the first period that bills a supply code with enough days (setup never
    goes alone), else the latest period, saying none has qualified yet."""
    has_code = np.array([c is not None for c in t.codes], np.bool_)[t.code_at]
    setup_min = np.array([rs.setup_min_days for rs in t.rule_sets], np.int64)
    qualifies = np.flatnonzero((t.days >= setup_min[t.rs_id]) & has_code)
    n_ep = len(t.episode_at)
    setup_at = np.full(n_ep, -1, np.int64)
    if len(qualifies):
        owners, firsts = np.unique(t.owner[qualifies], return_index=True)
        setup_at[owners] = qualifies[firsts]
    last_period = t.period_off[1:] - 1
    chosen = np.where(setup_at >= 0, setup_at, last_period)
    latest_rs = rule_sets.of(t.end[last_period])
    t.rule_sets = rule_sets.sets
    qualified = setup_at >= 0
    chosen_final = t.final[chosen]
    case = np.where(qualified, np.where(chosen_final, 0, 1), np.where(chosen_final, 2, 3))
    rs_setup = np.where(qualified, t.rs_id[chosen], latest_rs)
    combos, inverse = distinct_rows(case, rs_setup, t.days[chosen], t.end[chosen])
    status_of: list[int] = []
    reason_of: list[int] = []
    for c, r, days, end in combos:
        rs = t.rule_sets[r]
        if c == 0:
            text = setup_billed_reason(rs, days)
        elif c == 1:
            text = setup_pending_reason(from_day_number(end))
        else:
            text = setup_not_yet_reason(rs)
        status_of.append((0, 2, 1, 2)[c])
        reason_of.append(t.reason_index(text, seen))
    t.setup_period = chosen
    t.setup_status = np.asarray(status_of, np.int64)[inverse]
    t.setup_rs = rs_setup
    t.setup_reason = np.asarray(reason_of, np.int64)[inverse]
    t.setup_billed = case == 0
    t.setup_qualified = qualified


def period_table(
    ep: IntArray,
    day: IntArray,
    counted_by: IntArray,
    enrollments: Sequence[Enrollment],
    episode_of: Mapping[int, Episode],
    as_of: date,
    rules: RuleSettings,
    found: PatientDays,
    program: SupplyProgram,
) -> PeriodTable | None:
    """The table of every episode with counted days, from (episode, day number) pairs sorted
    by episode then day (an episode by the position of its first enrollment, ``episode_of``),
    and the enrollment position that counted each day (``counted_by``)."""
    if len(ep) == 0:
        return None
    rule_sets = RuleSetIds(program)
    cols = _layout(ep, day, episode_of, as_of, rules, rule_sets)
    rs_id = rule_sets.of(cols["dos"])
    n = cols["days"]
    width = int(n.max()) + 1
    distinct, inverse = np.unique(rs_id * width + n, return_inverse=True)
    sets = rule_sets.sets
    codes = [supply_code(sets[int(c) // width], int(c) % width) for c in distinct.tolist()]
    code_at = inverse.reshape(-1)
    has_code = np.array([c is not None for c in codes], np.bool_)[code_at]
    final = day_number(as_of) > cols["end"]
    empty = np.empty(0, np.int64)
    t = PeriodTable(
        program=program,
        enrollments=enrollments,
        episode_of=episode_of,
        as_of=as_of,
        day=day,
        rule_sets=sets,
        rs_id=rs_id,
        final=final,
        codes=codes,
        code_at=code_at,
        status=np.where(final, np.where(has_code, 0, 1), 2),
        reasons=[],
        reason=np.empty(len(n), np.int64),
        setup_period=empty,
        setup_status=empty,
        setup_rs=empty,
        setup_reason=empty,
        setup_billed=np.empty(0, np.bool_),
        setup_qualified=np.empty(0, np.bool_),
        npi={},
        **cols,
    )
    t.npi = _billing_npi(t, counted_by)
    seen: dict[str, int] = {}
    _supply_wording(t, seen)
    _notes(t, found, seen)
    _setup(t, rule_sets, seen)
    return t


# --- rendering: records ----------------------------------------------------------------------


def records_of(
    t: PeriodTable, only: Collection[int] | None = None
) -> dict[int, list[EngagementRecord]]:
    """Each episode's setup and supply records, by the enrollment position of the episode
    (of every episode, or ``only`` those positions)."""
    lo = int(min(t.start.min(), t.day.min()))
    hi = int(max(t.end.max(), t.dos.max()))
    dates = [from_day_number(d) for d in range(lo, hi + 1)]
    names = [rs.name for rs in t.rule_sets]
    out: dict[int, list[EngagementRecord]] = {}
    for e, pos in enumerate(t.episode_at.tolist()):
        if only is not None and pos not in only:
            continue
        episode = t.episode_of[pos]
        first, stop = int(t.period_off[e]), int(t.period_off[e + 1])
        supply = [_supply_record(t, i, episode, dates, lo, names) for i in range(first, stop)]
        chosen = supply[int(t.setup_period[e]) - first]
        setup_npi = chosen.ordering_npi
        if not t.setup_qualified[e]:  # said on the latest period, under its NPI or the first's
            setup_npi = setup_npi or episode.enrollments[0].ordering_npi
        setup_dos = dates[int(t.dos[t.setup_period[e]]) - lo]
        setup_rs = t.rule_sets[int(t.setup_rs[e])]
        out[pos] = [
            EngagementRecord(
                patient_id=episode.patient_id,
                program=t.program.program,
                kind=RecordKind.SETUP,
                period_start=chosen.period_start,
                period_end=chosen.period_end,
                status=STATUSES[int(t.setup_status[e])],
                reason=t.reasons[int(t.setup_reason[e])],
                rule_set=setup_rs.name,
                transmission_days=chosen.transmission_days,
                lines=(ServiceLine(setup_rs.setup_code, 1, setup_dos),)
                if t.setup_billed[e]
                else (),
                evidence_dates=chosen.evidence_dates,
                ordering_npi=setup_npi,
                episode_start=episode.start_date,
            ),
            *supply,
        ]
    return out


def _supply_record(
    t: PeriodTable,
    i: int,
    episode: Episode,
    dates: list[date],
    lo: int,
    names: list[str],
) -> EngagementRecord:
    start, end = dates[int(t.start[i]) - lo], dates[int(t.end[i]) - lo]
    n = int(t.days[i])
    code = t.codes[int(t.code_at[i])]
    final = bool(t.final[i])
    rs = t.rule_sets[int(t.rs_id[i])]
    lines = (ServiceLine(code, 1, dates[int(t.dos[i]) - lo]),) if final and code else ()
    evidence = tuple(dates[d - lo] for d in t.day[t.day_off[i] : t.day_off[i + 1]].tolist())
    forecast = None
    if not final:
        forecast = supply_forecast(start, end, n, episode.end_date, t.as_of, rs.supply_full_days)
    return EngagementRecord(
        patient_id=episode.patient_id,
        program=t.program.program,
        kind=RecordKind.DEVICE_SUPPLY,
        period_start=start,
        period_end=end,
        status=STATUSES[int(t.status[i])],
        reason=t.reasons[int(t.reason[i])],
        rule_set=names[int(t.rs_id[i])],
        transmission_days=n,
        lines=lines,
        evidence_dates=evidence,
        forecast=forecast,
        ordering_npi=t.npi.get(i, episode.enrollments[0].ordering_npi),
        episode_start=episode.start_date,
    )


# --- rendering: CSV text ---------------------------------------------------------------------


# Between a line's code and its date of service in ServiceLine's text form, for one unit
# ("x1@"): the CSV ``lines`` cell written a column at a time.
_X1 = line_infix(1)


def csv_of(t: PeriodTable, fmt: CsvRows) -> tuple[pa.Array, IntArray, IntArray]:
    """The CSV lines of :func:`records_of`'s records, as Arrow strings: one element per
    period, each episode's setup line in front of its first period's; the number of elements
    of each episode; and the count of rows per status (as STATUSES)."""
    lo = int(min(t.start.min(), t.day.min()))
    hi = int(max(t.end.max(), t.dos.max()))
    iso = pa.array([fmt.iso[from_day_number(d)] for d in range(lo, hi + 1)], pa.string())
    evidence = pc.binary_join(
        pa.LargeListArray.from_arrays(
            pa.array(t.day_off, pa.int64()), iso.take(pa.array(t.day - lo))
        ),
        ";",
    )
    starts, ends = iso.take(pa.array(t.start - lo)), iso.take(pa.array(t.end - lo))
    dos_iso = iso.take(pa.array(t.dos - lo))
    n_text = pc.cast(pa.array(t.days), pa.string())
    statuses = pa.array(STATUSES, pa.string())
    reasons = pa.array([fmt.reason(r) for r in t.reasons], pa.string())
    names = pa.array([rs.name for rs in t.rule_sets], pa.string())
    code_text = pa.array([c or "" for c in t.codes], pa.string()).take(pa.array(t.code_at))
    has_code = np.array([c is not None for c in t.codes], np.bool_)[t.code_at]
    supply_lines = pc.if_else(
        pa.array(t.final & has_code), pc.binary_join_element_wise(code_text, dos_iso, _X1), ""
    )
    patients = pa.array(
        [fmt.patient(t.episode_of[i].patient_id) for i in t.episode_at.tolist()], pa.string()
    )
    program = csv_field(t.program.program)
    setup_codes = pa.array([rs.setup_code for rs in t.rule_sets], pa.string())
    picked = pa.array(t.setup_period)
    setup_lines = pc.if_else(
        pa.array(t.setup_billed),
        pc.binary_join_element_wise(
            setup_codes.take(pa.array(t.setup_rs)), dos_iso.take(picked), _X1
        ),
        "",
    )
    setup = pc.binary_join_element_wise(
        patients,
        program,
        RecordKind.SETUP,
        starts.take(picked),
        ends.take(picked),
        statuses.take(pa.array(t.setup_status)),
        names.take(pa.array(t.setup_rs)),
        n_text.take(picked),
        "0",
        "0",
        "0",
        setup_lines,
        reasons.take(pa.array(t.setup_reason)),
        evidence.take(picked),
        "\n",
        ",",
    )
    # Each episode's setup row goes in front of its first supply row (with the patient id,
    # the row's first field), so the rows come out in order without reordering the text.
    n_ep = len(t.episode_at)
    lead_at = n_ep + t.owner
    lead_at[t.period_off[:-1]] = np.arange(n_ep)
    leading = pa.concat_arrays([pc.binary_join_element_wise(setup, patients, ""), patients]).take(
        pa.array(lead_at)
    )
    rows = pc.binary_join_element_wise(
        leading,
        f"{program},device_supply",
        starts,
        ends,
        statuses.take(pa.array(t.status)),
        names.take(pa.array(t.rs_id)),
        n_text,
        "0,0,0",  # no minutes or communications on supply rows
        supply_lines,
        reasons.take(pa.array(t.reason)),
        evidence,
        "\n",
        ",",
    )
    counts = np.bincount(t.status, minlength=3) + np.bincount(t.setup_status, minlength=3)
    return rows, np.diff(t.period_off), counts
