"""The engagement CSV in bulk: the CSV rendering of :func:`metrics.engagement.prepare`.

The supply and setup rows of the table of periods (:mod:`metrics.periods`), nearly all the
rows of a large fleet, are formatted as Arrow strings without a record object per row; the
other rows (episodes without a day with data, management months, patients an exclusion
between programs changed) are the record rendering's own records, formatted by the same
formatter. ``tests/metrics/test_metrics_csv_bulk.py`` checks
that both renderings agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

import numpy as np
import pyarrow as pa

from rpmpipe.metrics.engagement import Prepared, SupplyPart, prepare
from rpmpipe.metrics.periods import STATUSES, csv_of
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
    replaced = replaced or {}
    counts: dict[str, int] = {s: 0 for s in RecordStatus}
    fmt = CsvRows()
    spans = [_table_text(part, fmt, counts) for part in work.parts]
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

    for pid, per_part in work.by_patient():
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
            if k == 0 and pid in work.months:
                emit(work.months[pid])
    flush()
    return pieces, counts


def _table_text(
    part: SupplyPart, fmt: CsvRows, counts: dict[str, int]
) -> tuple[memoryview, dict[int, tuple[int, int]]]:
    """The CSV text of a part's table, and each episode's rows' bytes in it (by the
    enrollment position of the episode); ``counts`` gets the table's rows by status."""
    if part.table is None:
        return memoryview(b""), {}
    rows, per_episode, by_status = csv_of(part.table, fmt)
    for name, n in zip(STATUSES, by_status.tolist(), strict=True):
        counts[name] += int(n)
    text = memoryview(rows.buffers()[2] or b"")
    wide = np.int64 if pa.types.is_large_string(rows.type) else np.int32
    offsets = np.frombuffer(rows.buffers()[1], wide)[rows.offset : rows.offset + len(rows) + 1]
    bounds = offsets[np.r_[0, np.cumsum(per_episode)]].tolist()
    return text, {
        pos: (bounds[e], bounds[e + 1]) for e, pos in enumerate(part.table.episode_at.tolist())
    }
