"""``rpmpipe compact``: merge the small files of closed days into one file per day.

Exactly-once holds through compaction: rows are de-duplicated on ``dedup_key`` while merging.
The order of a partition's compaction, and what a crash at each step leaves:

1. The merged file is written under a temp dot-name, fsynced, renamed to its ``*.parquet``
   name and the directory fsynced. A crash before the rename leaves nothing visible.
2. After ``settle_seconds`` (0.2 s by default), each merged-away file is *hidden*: renamed
   to ``.<name>.retired-<unix seconds>``, which pyarrow datasets, DuckDB and Spark
   ``*.parquet`` globs and :func:`parquet_files` all skip; then the directory is fsynced.
   Between steps 1 and 2 (the settle pause, or until the next run after a crash there) a
   reader listing the partition sees those rows twice; the next compaction merges the
   visible files again and de-duplicates, so nothing is lost or stored twice. The merged
   file is durable before any old name goes.
3. A later run deletes hidden files older than the grace period. Until then a reader that
   already opened a merged-away file keeps reading it (POSIX keeps renamed files readable
   through open handles).

Why the settle pause: a pyarrow dataset lists a directory and then stats each entry,
silently skipping entries that vanished in between. A reader whose listing predates the
merged file and whose stat follows the hiding would miss rows without an error; the pause
makes that need a stall of ``settle_seconds`` inside one directory listing. A reader that
opens a listed file later than that gets ``FileNotFoundError`` (loud, retryable).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rpmpipe.ingest.files import fsync_dir, parquet_files, unique_name, write_parquet_atomic
from rpmpipe.ingest.schema import READINGS_SCHEMA
from rpmpipe.logs import get_logger

log = get_logger(__name__)

ROW_GROUP_SIZE = 128 * 1024
LEGACY_MANIFEST = ".retired"
_HIDDEN = re.compile(r"\..+\.parquet\.retired-(\d+)")


@dataclass(frozen=True)
class CompactSummary:
    partitions: int
    files_before: int
    files_after: int  # visible files (hidden merged-away ones awaiting deletion not counted)
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


def hidden_name(name: str, retired_at: float) -> str:
    """The hidden name a merged-away file is renamed to (no ``.parquet`` suffix, dot prefix)."""
    return f".{name}.retired-{int(retired_at)}"


def _retired_files(partition: Path) -> list[tuple[Path, float]]:
    """Hidden merged-away files of ``partition`` with the time they were retired."""
    try:
        names = os.listdir(partition)
    except FileNotFoundError:
        return []
    found = []
    for n in sorted(names):
        m = _HIDDEN.fullmatch(n)
        if m:
            found.append((partition / n, float(m.group(1))))
    return found


def _compact_partition(
    partition: Path, grace_seconds: float, now: float, settle_seconds: float
) -> tuple[int, int, int, int]:
    """(live files before, live files after, duplicates removed, retired files deleted)."""
    # An earlier layout listed merged-away files in a ".retired" manifest but left them
    # visible; dropping the manifest makes them ordinary inputs, which the merge de-duplicates.
    (partition / LEGACY_MANIFEST).unlink(missing_ok=True)
    deleted = 0
    for path, retired_at in _retired_files(partition):
        if now - retired_at >= grace_seconds:
            path.unlink(missing_ok=True)
            deleted += 1
    if deleted:
        fsync_dir(partition)
    inputs = parquet_files(partition)
    if len(inputs) < 2:
        return len(inputs), len(inputs), 0, deleted
    merged, dropped = merge_tables(inputs)
    # Step 1: the merged file is durable and visible before any input disappears.
    write_parquet_atomic(merged, partition, unique_name("compact"), row_group_size=ROW_GROUP_SIZE)
    # Step 2: hide the inputs (delete them when no grace period is wanted), after a pause
    # that lets directory listings begun before the merged file appeared finish.
    if settle_seconds > 0:
        time.sleep(settle_seconds)
    for p in inputs:
        if grace_seconds <= 0:
            p.unlink(missing_ok=True)
            deleted += 1
        else:
            os.rename(p, p.with_name(hidden_name(p.name, now)))
    fsync_dir(partition)
    return len(inputs), 1, dropped, deleted


def _closed(partition: Path, before: date) -> bool:
    """A ``date=`` directory of a day strictly before ``before``."""
    try:
        day = date.fromisoformat(partition.name.removeprefix("date="))
    except ValueError:
        return False
    return day < before and partition.is_dir()


def compact(
    readings_dir: Path,
    before: date,
    *,
    grace_seconds: float = 600.0,
    now: float | None = None,
    settle_seconds: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
) -> CompactSummary:
    """Compact every ``date=`` partition strictly before ``before`` that has several files.

    Small files replaced by a merge are hidden (see the module notes) and deleted by the first run
    ``grace_seconds`` later (at once when ``grace_seconds`` <= 0). ``progress(done, total)``
    hears each partition as it is done (a terminal's bar).
    """
    if not readings_dir.exists():
        return CompactSummary(0, 0, 0, 0, 0, 0)
    clock = time.time() if now is None else now
    fd = os.open(readings_dir / ".compact.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    partitions = files_before = files_after = rows = dropped = deleted = 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one compactor at a time
        due = [p for p in sorted(readings_dir.glob("date=*")) if _closed(p, before)]
        for done, partition in enumerate(due, start=1):
            if progress is not None:
                progress(done - 1, len(due))
            n_before, n_after, n_dropped, n_deleted = _compact_partition(
                partition, grace_seconds, clock, settle_seconds
            )
            if n_before >= 2:
                partitions += 1
                rows += sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files(partition))
            files_before += n_before
            files_after += n_after
            dropped += n_dropped
            deleted += n_deleted
        if progress is not None:
            progress(len(due), len(due))
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
