"""Every reason a biller reads, worded in one place (pure).

Records of every path and program take their ``reason`` from here: supply periods and setup
(RPM), management months, readings and time entries that did not count, and the months of
the other programs (:mod:`metrics.care_management`). Each function words one situation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from functools import cache

from rpmpipe.metrics.days import SetAside
from rpmpipe.metrics.programs import (
    PHYSICIAN,
    CareMinutes,
    CarePlanState,
    ProgramRules,
    TimeOutcome,
)
from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.rules import RuleSet, Tier, supply_code
from rpmpipe.records import ServiceLine, billed_text

NO_DEVICE = "no device assigned to the patient this month"
MOST_NOTES = 3
_WHY = {
    "unassigned": "it was not assigned to this patient",
    "manual_entry": "entered manually",
    "clock_suspect": "timed over 10 minutes after receipt (clock error)",
}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def with_note(reason: str, note: str) -> str:
    return f"{reason}; {note}" if note else reason


def month_open(end: date, reason: str) -> str:
    """The reason of a month (or period) not over yet."""
    return f"month open until {end.isoformat()}: {reason}"


# --- supply periods and setup ----------------------------------------------------------------


@cache
def supply_reason(rs: RuleSet, days: int, code: str | None) -> str:
    full, name = rs.supply_full_days, rs.supply_full_code
    text = f"{plural(days, 'day')} with data"
    if code is None:
        if rs.supply_min_days < full:
            return (
                f"{text}, {rs.supply_min_days} needed for the short supply code, {full} for {name}"
            )
        return f"{text}, {full} needed for {name}"
    if days < full:
        return f"{text}, {full} needed for {name} (billed {code})"
    return f"{text} (billed {code})"


@cache
def pending_supply_reason(rs: RuleSet, days: int, end: date, still: int) -> str:
    """The reason of an open supply period with ``days`` so far and ``still`` days possible."""
    full = rs.supply_full_days
    code = supply_code(rs, days)
    text = f"period open until {end.isoformat()}: {plural(days, 'day')} with data so far, "
    if days >= full:
        return f"{text}{code} reached"
    # A short supply code already earned (99445 in CY2026) is worth telling the biller.
    reached = f"{code} reached; " if code else ""
    return f"{text}{reached}{full} needed for {rs.supply_full_code}; {still} days still possible"


def setup_billed_reason(rs: RuleSet, days: int) -> str:
    return (
        f"first supply period with {rs.setup_min_days}+ days ({plural(days, 'day')}), "
        "billed once per episode"
    )


def setup_pending_reason(end: date) -> str:
    return f"setup qualifies; billed with the supply period ending {end.isoformat()}"


def setup_not_yet_reason(rs: RuleSet) -> str:
    return f"no supply period has reached {rs.setup_min_days} days with data yet"


def no_supply_reason(consent: date | None, ended: bool, start: date, would_count: int) -> str:
    """The reason of an episode with no qualifying readings (or no consent)."""
    if consent is None:
        reason = "no consent on file"
        if would_count:
            reason += (
                f": {plural(would_count, 'day')} with data would count once consent is on file"
            )
        return reason
    if ended:
        return "no qualifying readings during the enrollment"
    return f"no qualifying readings since the enrollment start {start.isoformat()}"


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
    (2026-09-03 to 2026-09-22)"; empty when nothing was set aside."""
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
    more = len(notes) - MOST_NOTES
    shown = ", ".join(notes[:MOST_NOTES])
    return f"not counted: {shown}" + (f", and {more} more" if more > 0 else "")


# --- management months -----------------------------------------------------------------------


@cache
def _lowest_tier(rs: RuleSet) -> Tier:
    return min(rs.management_tiers, key=lambda t: t.minimum)


@cache
def _top_tier(rs: RuleSet) -> Tier:
    return max(rs.management_tiers, key=lambda t: t.minimum)


def management_reason(
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
    billed = billed_text(lines)
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


# --- care time entries of RPM's management months ------------------------------------------

NO_CONSENT = "no consent on file"
NO_ENTRY_COUNTS = "no time entry counts this month"
NO_ENROLLMENT = "no RPM enrollment on the entry's date"


def entry_voided(voided_reason: str) -> str:
    return f"voided: {voided_reason}"


def entry_held_for_review(minutes: Decimal, most: Decimal) -> str:
    return (
        f"held for review: {format_minutes(minutes)} minutes in one entry, over the "
        f"{format_minutes(most)} allowed"
    )


def entry_duplicate(original: str) -> str:
    return f"exact duplicate of {original}"


def entry_impossible_start(started: str, earliest: date, latest: date) -> str:
    """A start no month can hold (``latest`` the last possible day)."""
    return f"impossible start {started} (outside {earliest.isoformat()} to {latest.isoformat()})"


def entry_before_consent(consent: date) -> str:
    return f"before consent on {consent.isoformat()}"


def outside_enrollment_reason(blocked: str, minutes: str) -> str:
    """Time outside a consented enrollment: what would count, and why it does not."""
    if blocked == NO_CONSENT:
        return f"no consent on file: {minutes} would count once consent is on file"
    return f"{blocked} ({minutes} not counted)"


def no_device_reason(minutes: str) -> str:
    return f"{NO_DEVICE} ({minutes}; management presumes monitoring)"


def not_counted_entries(not_counted: Sequence[tuple[str, str]]) -> str:
    """Time entries left out of a month, with why (a duplicate, voided, held for review)."""
    if not not_counted:
        return ""
    shown = ", ".join(f"{aid} ({why})" for aid, why in not_counted[:MOST_NOTES])
    more = len(not_counted) - MOST_NOTES
    return f"not counted: {shown}" + (f", and {more} more" if more > 0 else "")


# --- the other programs ----------------------------------------------------------------------


def eligibility_reason(
    rs: ProgramRules, chronic: int, behavioral: bool, care_plan: CarePlanState
) -> str | None:
    """Why the patient cannot bill the program this month, or None when eligible."""
    need = rs.eligibility
    if chronic < need.min_chronic:
        word = "condition" if need.min_chronic == 1 else "conditions"
        return (
            f"{chronic} chronic condition(s) on file, {rs.program} needs "
            f"{need.min_chronic} or more chronic {word}"
        )
    if need.needs_behavioral_diagnosis and not behavioral:
        return f"no behavioral health diagnosis (ICD-10 chapter F) on file for {rs.program}"
    if need.needs_care_plan and not care_plan.on_file:
        return f"no {rs.program} care plan established and shared with the patient by month end"
    return None


def time_reason(
    rs: ProgramRules,
    minutes: CareMinutes,
    interactive_communications: int,
    outcome: TimeOutcome,
) -> str:
    """What a biller reads for a month of program time: what was billed or what is missing."""
    text = f"{format_minutes(minutes.total)} minutes of {rs.program} time"
    if outcome.lines:
        return f"{text} (billed {billed_text(outcome.lines)})"
    needs_talk = [t for t in rs.tracks if t.needs_interactive]
    if needs_talk and len(needs_talk) == len(rs.tracks) and interactive_communications < 1:
        return f"{text}, no interactive communication this month"
    wants = []
    for track in rs.tracks:
        low = track.lowest
        who = "physician/QHP " if track.performers == PHYSICIAN else ""
        extra = (
            ", care plan established or revised this month" if track.needs_care_plan_change else ""
        )
        wants.append(f"{format_minutes(low.minimum)} {who}minutes for {low.code}{extra}")
    return f"{text}, " + "; ".join(wants) + " needed"


def level_reason(chronic: int, qmb: bool | None, code: str | None) -> str:
    """An APCM month: the level its chronic conditions and QMB status give."""
    qmb_text = "not on file" if qmb is None else ("yes" if qmb else "no")
    text = f"{chronic} chronic condition(s), QMB status {qmb_text}"
    return f"{text} (billed {code})" if code else f"{text}: no APCM level applies"


def interpretation_reason(minutes: Decimal, billed: bool) -> str:
    """A 30-day period of 99091 data interpretation."""
    text = f"{format_minutes(minutes)} physician/QHP minutes of data interpretation"
    return f"{text} (billed 99091)" if billed else f"{text}, 30 needed for 99091"


def interpretation_before_data_reason(minutes: Decimal, first_period: date | None) -> str:
    """Data-interpretation time before the first day with data: no 30-day period holds it."""
    text = f"{format_minutes(minutes)} physician/QHP minutes of data interpretation"
    if first_period is None:
        return f"{text} before any qualifying reading: no 30-day period has started"
    return (
        f"{text} before the first 30-day period (from {first_period.isoformat()}, the first "
        "day with data): not billable"
    )


def period_open(end: date, reason: str) -> str:
    return f"period open until {end.isoformat()}: {reason}"


def held_reason(why: str, reason: str) -> str:
    """A record an exclusion between programs holds: why, then what it would have billed."""
    return f"held: {why}; {reason}"


def bundled_into(program: str, code: str, month: date) -> str:
    return (
        f"{program} is bundled into APCM {code} billed by the same practitioner for {month:%Y-%m}"
    )


def never_together(
    pair: tuple[str, str], words: str, program: str, enrolled: date, other: str, since: date
) -> str:
    return (
        f"{pair[0]} and {pair[1]} are never billed for one patient {words}: "
        f"{program} (enrolled {enrolled.isoformat()}) is held for "
        f"{other} (enrolled {since.isoformat()})"
    )


def not_with_99457(start: date, end: date) -> str:
    return (
        f"99091 is not billed with 99457 ({start.isoformat()} to {end.isoformat()}) for this "
        "payer (setting billing.payers.<payer>.bill_99091_with_99457)"
    )
