"""The engagement CSV in bulk: the same rows as :func:`metrics.engagement.compute_engagement`.

Supply and setup rows, nearly all the rows of a large fleet, are computed as Arrow arrays and
formatted without a record object per row; only the distinct combinations of rule set, days,
dates and status are worded in Python, by the same reason functions the record path uses.
Management months and episodes without data go through the record path itself.
``tests/metrics/test_metrics_csv_bulk.py`` holds both paths to byte-identical output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.csv_cells import csv_field
from rpmpipe.metrics.days import (
    OPEN_END,
    IntArray,
    PatientDays,
    day_number,
    from_day_number,
    patient_days,
)
from rpmpipe.metrics.engagement import (
    PROGRAM,
    EpisodeDays,
    compute_engagement,
    days_before_consent,
    episode_day_numbers,
    episode_days_of,
    episode_records,
    management_records,
    not_counted_note,
    pending_supply_reason,
    plural,
    rpm_enrollments,
    spaced_supply_dos,
    supply_reason,
    with_note,
)
from rpmpipe.metrics.episodes import Episode, episodes_of
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.rules import RuleSet, rule_set_for, supply_code
from rpmpipe.metrics.snapshot import Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, EngagementRecord
from rpmpipe.settings import RuleSettings


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
    enrollments = rpm_enrollments(snapshot)
    episodes = episodes_of(enrollments, rules.episode_gap_days)
    ep, day = episode_day_numbers(found, enrollments)
    months = management_records(activities, snapshot, as_of, org_zone, rules, episodes)
    # The bulk covers episodes of one open enrollment (nearly all); the others (several
    # enrollments, or an end date that may cut periods short) go through the record path.
    bulk_ok = np.zeros(len(enrollments), np.bool_)
    for episode in episodes:
        if len(episode.enrollments) == 1 and episode.enrollments[0].end_date is None:
            bulk_ok[episode.positions[0]] = True
    keep = bulk_ok[ep] if len(ep) else np.zeros(0, np.bool_)
    if bool(keep.all()):
        rest: dict[int, EpisodeDays] = {}
    else:
        rest = episode_days_of(ep[~keep], day[~keep], enrollments, episodes)
        ep, day = ep[keep], day[keep]
    bulk, per_enrollment = _supply_rows(ep, day, enrollments, as_of, rules, fmt, counts, found)
    # Byte range of each enrollment's bulk rows in the Arrow text (enrollment order).
    text = memoryview(bulk.buffers()[2] or b"")
    wide = np.int64 if pa.types.is_large_string(bulk.type) else np.int32
    row_bytes = np.frombuffer(bulk.buffers()[1], wide)[bulk.offset : bulk.offset + len(bulk) + 1]
    byte_at = row_bytes[np.r_[0, np.cumsum(per_enrollment)]].tolist()
    pieces: list[bytes | memoryview] = []
    run = -1  # start of the current run of contiguous bulk text
    run_end = -1

    def flush() -> None:
        nonlocal run
        if run >= 0:
            pieces.append(text[run:run_end])
            run = -1

    def emit(records: Iterable[EngagementRecord]) -> None:
        flush()
        rows = []
        for r in records:
            counts[r.status] += 1
            rows.append(fmt.row(r))
        pieces.append("".join(rows).encode())

    by_patient: dict[str, list[int]] = {}
    for i, episode in enumerate(episodes):
        by_patient.setdefault(episode.patient_id, []).append(i)
    for pid in sorted(by_patient.keys() | months.keys()):
        for i in by_patient.get(pid, ()):
            episode = episodes[i]
            at = episode.positions[0]
            if bulk_ok[at] and byte_at[at + 1] > byte_at[at]:
                if run < 0:
                    run = byte_at[at]
                run_end = byte_at[at + 1]
                continue
            emit(episode_records(episode, rest.get(i), found, as_of, rules))
        if pid in months:
            emit(months.pop(pid))
    flush()
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
    found: PatientDays,
) -> tuple[pa.Array, IntArray]:
    """Setup and supply CSV rows of every episode with counted days (rolling periods).

    Returns the rows, one element per supply period, episode after episode, each episode's
    setup row in front of its first period's; and the number of elements of each enrollment
    (by position; 0 for an episode without days). Mirrors :func:`supply_and_setup` exactly;
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
        dos = _spaced(dos, owner, n, p_end)
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
    inverse_code = inverse.reshape(-1)
    code_at = pa.array(inverse_code)
    code_text = pa.array([c or "" for c in code_of], pa.string()).take(code_at)
    has_code = np.array([c is not None for c in code_of], np.bool_)[inverse.reshape(-1)]
    setup_min = np.array([rs.setup_min_days for rs in sets], np.int64)
    # Setup goes with the first period that bills a supply code: never alone.
    qualifies = np.flatnonzero((n >= setup_min[rs_id]) & has_code)
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
            table.append(reason_index(supply_reason(rs, days, supply_code(rs, days))))
        reason[final_at] = np.asarray(table, np.int64)[inverse.reshape(-1)]
    full_days = np.array([rs.supply_full_days for rs in sets], np.int64)
    pending_at = np.flatnonzero(~final)
    if len(pending_at):
        # Pending wording depends on (rule set, days, period end, days still possible).
        rs_p, n_p, end_p = rs_id[pending_at], n[pending_at], p_end[pending_at]
        remaining = np.maximum(0, np.minimum(end_p, enr_end[owner[pending_at]]) - today)
        remaining = np.where(n_p >= full_days[rs_p], -1, remaining)
        combos, inverse = _distinct(rs_p, n_p, end_p, remaining)
        table = [
            reason_index(pending_supply_reason(sets[r], days, from_day_number(end), still))
            for r, days, end, still in combos
        ]
        reason[pending_at] = np.asarray(table, np.int64)[inverse]
    # Rows not billable of patients with readings set aside, and first periods of episodes
    # whose consent came after their start: say why readings did not count (few rows;
    # worded one by one by the record path's function).
    set_aside = found.set_aside
    episode_list = [enrollments[i] for i in episodes.tolist()]
    noted = np.array([e.patient_id in set_aside for e in episode_list], np.bool_)
    late_consent = np.array(
        [e.consent_date is not None and e.consent_date > e.start_date for e in episode_list],
        np.bool_,
    )
    is_first = np.zeros(len(n), np.bool_)
    is_first[period_off[:-1]] = True
    candidates = (status != 0) & (n < full_days[rs_id])
    candidates &= noted[owner] | (late_consent[owner] & is_first)
    for at in np.flatnonzero(candidates).tolist():
        enrollment = episode_list[owner[at]]
        first_period = bool(is_first[at])
        # As in supply_and_setup: the first period answers from the enrollment start.
        note = not_counted_note(
            set_aside.get(enrollment.patient_id, ()),
            enrollment.start_date if first_period else from_day_number(int(p_start[at])),
            from_day_number(int(p_end[at])),
            days_before_consent(found, Episode(enrollment.patient_id, (enrollment,), ()), as_of)
            if first_period
            else (),
            enrollment.consent_date,
        )
        if note:
            base = (
                pending_supply_reason(
                    sets[rs_id[at]],
                    int(n[at]),
                    from_day_number(int(p_end[at])),
                    int(max(0, min(p_end[at], enr_end[owner[at]]) - today)),
                )
                if not final[at]
                else supply_reason(sets[rs_id[at]], int(n[at]), code_of[inverse_code[at]])
            )
            reason[at] = reason_index(with_note(base, note))
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
    # _setup_record and supply_and_setup.
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
                f"({plural(days, 'day')}), billed once per episode"
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
        "0,0,0",  # no minutes or communications on supply rows
        supply_lines,
        pa.array(reason_texts, pa.string()).take(pa.array(reason)),
        evidence,
        "\n",
        ",",
    )
    per_enrollment = np.zeros(len(enrollments), np.int64)
    per_enrollment[episodes] = np.diff(period_off)
    return supply, per_enrollment


def _spaced(dos: np.ndarray, owner: np.ndarray, n: np.ndarray, p_end: np.ndarray) -> np.ndarray:
    """Supply dates of service at least 30 days apart per episode (``spaced_supply_dos``):
    a sequential rule, so a loop, run only under ``last_reading_day``."""
    out = dos.copy()
    prior: date | None = None
    last_owner = -1
    for i in range(len(out)):
        if int(owner[i]) != last_owner:
            last_owner, prior = int(owner[i]), None
        base = from_day_number(int(out[i]))
        days = int(n[i])
        if supply_code(rule_set_for(PROGRAM, base), days):
            base = spaced_supply_dos(base, prior, from_day_number(int(p_end[i])))
            out[i] = day_number(base)
        if supply_code(rule_set_for(PROGRAM, base), days):
            prior = base
    return out
