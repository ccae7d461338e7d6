"""The engagement CSV in bulk: the CSV rendering of :func:`metrics.engagement.prepare`.

The supply and setup rows of the table of periods (:mod:`metrics.periods`), nearly all the
rows of a large fleet, are formatted as Arrow strings without a record object per row; RPM's
management months are the lines of their table
(:meth:`metrics.care_management.CareTable.csv_lines`); the other rows (episodes without a
day with data, patients an exclusion between programs changed) are the record rendering's
own records, formatted by the same formatter. ``tests/metrics/test_metrics_csv_bulk.py``
checks that both renderings agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date

import numpy as np
import pyarrow as pa

from rpmpipe.metrics.engagement import Prepared, SupplyPart, prepare
from rpmpipe.metrics.periods import STATUSES, PeriodTable, csv_of
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.snapshot import RegistrySnapshot
from rpmpipe.records import Activity, EngagementRecord, RecordStatus
from rpmpipe.settings import RuleSettings


def compute_engagement_csv(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    activities: Iterable[Activity],
    as_of: date,
    rules: RuleSettings,
    org_zone: str,
) -> tuple[list[bytes | memoryview], dict[str, int]]:
    """The CSV lines (no header) of :func:`metrics.engagement.compute_engagement`'s records,
    in the same order, as UTF-8 pieces to write one after the other; and the number of
    records per status."""
    return render_csv(prepare(readings, snapshot, activities, as_of, rules, org_zone))


def render_csv(
    work: Prepared, replaced: Mapping[str, Sequence[EngagementRecord]] | None = None
) -> tuple[list[bytes | memoryview], dict[str, int]]:
    """The CSV rendering of :func:`metrics.engagement.prepare`: the lines (no header) of
    :func:`metrics.engagement.render_records`'s records, in the same order, as UTF-8 pieces,
    and the number of records per status. ``replaced``: patients whose records are given
    (an exclusion between programs changed them), written in place of theirs."""
    counts: dict[str, int] = {s: 0 for s in RecordStatus}
    return list(csv_chunks(work, counts, replaced)), counts


# Patients whose rows are rendered at once: the text of a run is made, and can be written,
# a block at a time (a few MB), never whole.
BLOCK_PATIENTS = 16_384


def csv_chunks(
    work: Prepared,
    counts: dict[str, int],
    replaced: Mapping[str, Sequence[EngagementRecord]] | None = None,
) -> Iterator[bytes | memoryview]:
    """:func:`render_csv`'s pieces as they are rendered, ``BLOCK_PATIENTS`` patients at a
    time (``counts`` gets each record's status as its row is made)."""
    replaced = replaced or {}
    fmt = CsvRows()
    block: list[tuple[str, tuple[Sequence[int], ...]]] = []
    for patient in work.by_patient():
        block.append(patient)
        if len(block) == BLOCK_PATIENTS:
            yield from _block_pieces(work, block, replaced, fmt, counts)
            block = []
    if block:
        yield from _block_pieces(work, block, replaced, fmt, counts)


def _block_pieces(
    work: Prepared,
    block: Sequence[tuple[str, tuple[Sequence[int], ...]]],
    replaced: Mapping[str, Sequence[EngagementRecord]],
    fmt: CsvRows,
    counts: dict[str, int],
) -> list[bytes | memoryview]:
    """The pieces of some patients in order (each part's table episodes of these patients
    are one run of the table: the table and the patients are both in patient order)."""
    spans = [
        _table_text(_block_table(part, [i for _, e in block for i in e[k]]), fmt, counts)
        for k, part in enumerate(work.parts)
    ]
    pieces: list[bytes | memoryview] = []
    run: list[int] = []  # [part, start, end] of the current run of contiguous table text

    def flush() -> None:
        if run:
            pieces.append(spans[run[0]][0][run[1] : run[2]])
            run.clear()

    def emit(records: Iterable[EngagementRecord]) -> None:
        flush()
        out = []
        for r in records:
            counts[r.status] += 1
            out.append(fmt.row(r))
        pieces.append("".join(out).encode())

    months_at, months = _month_lines(work, [pid for pid, _ in block], fmt)
    for pid, per_part in block:
        if pid in replaced:
            emit(replaced[pid])
            continue
        for k, (part, indexes) in enumerate(zip(work.parts, per_part, strict=True)):
            for i in indexes:
                span = spans[k][1].get(part.episodes[i].positions[0])
                if span is None:
                    emit(part.records(i))
                elif run and run[0] == k and run[2] == span[0]:
                    run[2] = span[1]
                else:
                    flush()
                    run[:] = [k, span[0], span[1]]
            if k == 0 and pid in work.month_rows:
                flush()
                a, b = work.month_rows[pid]
                for status in work.months.status[a:b].tolist():
                    counts[status] += 1
                pieces.append("".join(months[a - months_at : b - months_at]).encode())
    flush()
    return pieces


def _month_lines(work: Prepared, patients: Sequence[str], fmt: CsvRows) -> tuple[int, list[str]]:
    """The CSV lines of the management months of these patients (in patient order: one run
    of the table of months), and the table row of the first line."""
    spans = [work.month_rows[p] for p in patients if p in work.month_rows]
    if not spans:
        return 0, []
    a, b = spans[0][0], spans[-1][1]
    return a, work.months.take(np.arange(a, b)).csv_lines(fmt)


def _block_table(part: SupplyPart, episodes: Sequence[int]) -> PeriodTable | None:
    """The rows of ``part``'s table of the given episodes (indexes into ``part.episodes``,
    in order): the table's episodes from the first one's to the last one's."""
    t = part.table
    if t is None or not episodes:
        return None
    first = part.episodes[episodes[0]].positions[0]
    last = part.episodes[episodes[-1]].positions[0]
    e0 = int(np.searchsorted(t.episode_at, first, side="left"))
    e1 = int(np.searchsorted(t.episode_at, last, side="right"))
    return _episode_rows(t, e0, e1) if e0 < e1 else None


# The table's columns with a value per episode, and with one per period (the others hold
# positions, made relative by _episode_rows).
_PER_EPISODE = (
    "episode_at",
    "enr_end",
    "setup_status",
    "setup_rs",
    "setup_reason",
    "setup_billed",
    "setup_qualified",
)
_PER_PERIOD = ("start", "end", "days", "dos", "rs_id", "final", "code_at", "status", "reason")


def _episode_rows(t: PeriodTable, e0: int, e1: int) -> PeriodTable:
    """The table of episodes ``e0 .. e1 - 1`` of ``t`` alone: their periods, setup rows
    and days (views of ``t``'s columns, positions made relative)."""
    p0, p1 = int(t.period_off[e0]), int(t.period_off[e1])
    d0, d1 = int(t.day_off[p0]), int(t.day_off[p1])
    several = t.several[(t.several >= e0) & (t.several < e1)] - e0
    return replace(
        t,
        **{name: getattr(t, name)[e0:e1] for name in _PER_EPISODE},
        **{name: getattr(t, name)[p0:p1] for name in _PER_PERIOD},
        several=several,
        period_off=t.period_off[e0 : e1 + 1] - p0,
        owner=t.owner[p0:p1] - e0,
        setup_period=t.setup_period[e0:e1] - p0,
        day=t.day[d0:d1],
        day_off=t.day_off[p0 : p1 + 1] - d0,
        npi={k - p0: v for k, v in t.npi.items() if p0 <= k < p1},
    )


def _table_text(
    table: PeriodTable | None, fmt: CsvRows, counts: dict[str, int]
) -> tuple[memoryview, dict[int, tuple[int, int]]]:
    """The CSV text of a table, and each episode's rows' bytes in it (by the enrollment
    position of the episode); ``counts`` gets the table's rows by status."""
    if table is None:
        return memoryview(b""), {}
    rows, per_episode, by_status = csv_of(table, fmt)
    for name, n in zip(STATUSES, by_status.tolist(), strict=True):
        counts[name] += int(n)
    text = memoryview(rows.buffers()[2] or b"")
    wide = np.int64 if pa.types.is_large_string(rows.type) else np.int32
    offsets = np.frombuffer(rows.buffers()[1], wide)[rows.offset : rows.offset + len(rows) + 1]
    bounds = offsets[np.r_[0, np.cumsum(per_episode)]].tolist()
    return text, {
        pos: (bounds[e], bounds[e + 1]) for e, pos in enumerate(table.episode_at.tolist())
    }
