"""The engagement CSV in bulk: the CSV rendering of :func:`metrics.engagement.prepare`.

The supply and setup rows of the table of periods (:mod:`metrics.periods`), nearly all the
rows of a large fleet, are formatted as Arrow strings without a record object per row; the
other rows (episodes outside the table, management months) are the record rendering's own
records, formatted by the same formatter. ``tests/metrics/test_metrics_csv_bulk.py`` checks
that both renderings agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np
import pyarrow as pa

from rpmpipe.metrics.engagement import episode_records, prepare
from rpmpipe.metrics.periods import STATUSES, csv_of
from rpmpipe.metrics.report import CsvRows
from rpmpipe.metrics.snapshot import RegistrySnapshot
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
    """The CSV lines (no header) of :func:`metrics.engagement.compute_engagement`'s records,
    in the same order, as UTF-8 pieces to write one after the other; and the number of
    records per status."""
    counts = {"billable": 0, "pending": 0, "not_billable": 0}
    fmt = CsvRows()
    work = prepare(readings, snapshot, activities, as_of, rules, org_zone)
    text = memoryview(b"")
    byte_at: dict[int, tuple[int, int]] = {}  # enrollment position -> its rows' bytes
    if work.table is not None:
        rows, per_episode, by_status = csv_of(work.table, fmt)
        for name, n in zip(STATUSES, by_status.tolist(), strict=True):
            counts[name] += int(n)
        text = memoryview(rows.buffers()[2] or b"")
        wide = np.int64 if pa.types.is_large_string(rows.type) else np.int32
        offsets = np.frombuffer(rows.buffers()[1], wide)[rows.offset : rows.offset + len(rows) + 1]
        bounds = offsets[np.r_[0, np.cumsum(per_episode)]].tolist()
        for e, pos in enumerate(work.table.episode_at.tolist()):
            byte_at[pos] = (bounds[e], bounds[e + 1])
    pieces: list[bytes | memoryview] = []
    run: list[int] = []  # [start, end] of the current run of contiguous table text

    def flush() -> None:
        if run:
            pieces.append(text[run[0] : run[1]])
            run.clear()

    def emit(records: Iterable[EngagementRecord]) -> None:
        flush()
        out = []
        for r in records:
            counts[r.status] += 1
            out.append(fmt.row(r))
        pieces.append("".join(out).encode())

    for pid, indexes in work.by_patient():
        for i in indexes:
            episode = work.episodes[i]
            span = byte_at.get(episode.positions[0])
            if span is not None:
                if not run:
                    run[:] = [span[0], span[1]]
                run[1] = span[1]
                continue
            emit(episode_records(episode, work.rest.get(i), work.found, as_of, rules))
        if pid in work.months:
            emit(work.months.pop(pid))
    flush()
    return pieces, counts
