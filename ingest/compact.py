"""``rpmpipe compact``: merge the small files of closed days into one file per day.

Exactly-once holds through compaction: rows are de-duplicated on ``dedup_key`` while merging.
Readers never miss a row: the merged file is added to the partition (atomically) before any
small file goes, and the small files are only *retired* (listed in the partition's hidden
``.retired`` file) and deleted by a later run once a grace period has passed. By then every
listing that still shows a small file also shows the merged one, so a reader that lists a
directory and opens its files a moment later never loses rows. During the grace period a
reader may see rows twice; ``dedup_key`` tells them apart, and distinct-day counts are
unaffected. (A directory swap would hide rows from readers that list by path and then stat
each file, as pyarrow datasets do.)
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.files import fsync_dir, parquet_files, unique_name, write_parquet_atomic
from ingest.schema import READINGS_SCHEMA
from rpmpipe.files import write_private
from rpmpipe.logs import get_logger

log = get_logger(__name__)

ROW_GROUP_SIZE = 128 * 1024
RETIRED = ".retired"


@dataclass(frozen=True)
class CompactSummary:
    partitions: int
    files_before: int
    files_after: int  # live files (retired ones awaiting deletion not counted)
    rows: int
    duplicates_removed: int
    files_deleted: int  # retired files past the grace period


def merge_tables(paths: list[Path]) -> tuple[pa.Table, int]:
    """The rows of ``paths`` once per dedup_key (earliest received kept), sorted by time."""
    table = pa.concat_tables([pq.read_table(p, schema=READINGS_SCHEMA) for p in paths])
    table = table.sort_by([("received_at", "ascending")])
    keys = table.column("dedup_key").to_pylist()
    seen: set[str] = set()
    keep = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    merged = table.take(pa.array(keep, pa.int64())) if len(keep) != len(keys) else table
    order = pc.sort_indices(merged, [("measured_at", "ascending"), ("dedup_key", "ascending")])
    return merged.take(order), len(keys) - len(keep)


def _read_retired(partition: Path) -> dict[str, float]:
    try:
        data = orjson.loads((partition / RETIRED).read_bytes())
    except FileNotFoundError:
        return {}
    return {str(k): float(v) for k, v in data.items()}


def _write_retired(partition: Path, retired: dict[str, float]) -> None:
    path = partition / RETIRED
    if not retired:
        path.unlink(missing_ok=True)
        return
    write_private(path, orjson.dumps(retired, option=orjson.OPT_SORT_KEYS))


def _compact_partition(
    partition: Path, grace_seconds: float, now: float
) -> tuple[int, int, int, int]:
    """(live files before, live files after, duplicates removed, retired files deleted)."""
    retired = _read_retired(partition)
    deleted = 0
    for name, retired_at in list(retired.items()):
        if now - retired_at >= grace_seconds:
            (partition / name).unlink(missing_ok=True)
            del retired[name]
            deleted += 1
    if deleted:
        fsync_dir(partition)
        _write_retired(partition, retired)
    inputs = [p for p in parquet_files(partition) if p.name not in retired]
    if len(inputs) < 2:
        return len(inputs), len(inputs), 0, deleted
    merged, dropped = merge_tables(inputs)
    write_parquet_atomic(merged, partition, unique_name("compact"), row_group_size=ROW_GROUP_SIZE)
    retired.update({p.name: now for p in inputs})
    _write_retired(partition, retired)
    if grace_seconds <= 0:  # no reader to protect: delete right away
        for p in inputs:
            p.unlink(missing_ok=True)
            deleted += 1
        fsync_dir(partition)
        _write_retired(partition, {})
    return len(inputs), 1, dropped, deleted


def compact(
    readings_dir: Path, before: date, *, grace_seconds: float = 600.0, now: float | None = None
) -> CompactSummary:
    """Compact every ``date=`` partition strictly before ``before`` that has several files.

    Small files replaced by a merge are deleted by the first run ``grace_seconds`` later.
    """
    if not readings_dir.exists():
        return CompactSummary(0, 0, 0, 0, 0, 0)
    clock = time.time() if now is None else now
    fd = os.open(readings_dir / ".compact.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    partitions = files_before = files_after = rows = dropped = deleted = 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one compactor at a time
        for partition in sorted(readings_dir.glob("date=*")):
            try:
                day = date.fromisoformat(partition.name.removeprefix("date="))
            except ValueError:
                continue
            if day >= before or not partition.is_dir():
                continue
            n_before, n_after, n_dropped, n_deleted = _compact_partition(
                partition, grace_seconds, clock
            )
            if n_before >= 2:
                partitions += 1
                rows += sum(
                    pq.ParquetFile(p).metadata.num_rows
                    for p in parquet_files(partition)
                    if p.name not in _read_retired(partition)
                )
            files_before += n_before
            files_after += n_after
            dropped += n_dropped
            deleted += n_deleted
    finally:
        os.close(fd)
    summary = CompactSummary(partitions, files_before, files_after, rows, dropped, deleted)
    log.info(
        "compacted",
        partitions=partitions,
        files_before=files_before,
        files_after=files_after,
        rows=rows,
        duplicates_removed=dropped,
        retired_files_deleted=deleted,
    )
    return summary
