"""The readings sink: exactly-once, atomic Parquet files under ``<data>/readings/date=.../``.

Exactly-once rests on ``Reading.dedup_key``: a batch drops keys seen earlier in the batch and
keys already stored in the partition. The stored keys of a partition are loaded the first time
a batch touches it and topped up from files that appeared since (another process, a restart,
a compaction), so redelivery after a crash or to another shared-subscription member is caught.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from pathlib import Path

import pyarrow.parquet as pq

from rpmpipe.ingest.files import parquet_files, unique_name, write_parquet_atomic
from rpmpipe.ingest.schema import readings_table
from rpmpipe.records import Reading


def partition_name(day: date) -> str:
    return f"date={day.isoformat()}"


@dataclass
class _PartitionKeys:
    keys: set[str] = field(default_factory=set)
    files_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int
    duplicates: int
    files: tuple[Path, ...]


def read_keys(paths: Iterable[Path], vanished: set[str] | None = None) -> set[str]:
    """The dedup keys stored in ``paths``; names of files that vanished meanwhile (compacted
    away between listing and reading) are skipped and added to ``vanished``."""
    keys: set[str] = set()
    for path in paths:
        try:
            column = pq.read_table(path, columns=["dedup_key"]).column("dedup_key")
        except FileNotFoundError:
            if vanished is not None:
                vanished.add(path.name)
            continue
        keys.update(column.to_pylist())
    return keys


class ReadingSink:
    """Writes batches of readings once each. One instance per process (not thread-safe across)."""

    def __init__(
        self, readings_dir: Path, writer_id: str, *, max_cached_partitions: int = 400
    ) -> None:
        self.readings_dir = readings_dir
        self.writer_id = writer_id
        self._max = max_cached_partitions
        self._cache: OrderedDict[str, _PartitionKeys] = OrderedDict()
        self._lock = threading.Lock()

    def _known(self, partition: str) -> _PartitionKeys:
        entry = self._cache.get(partition)
        if entry is None:
            entry = _PartitionKeys()
            self._cache[partition] = entry
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(partition)
        while True:
            files = parquet_files(self.readings_dir / partition)
            new = [p for p in files if p.name not in entry.files_seen]
            if not new:
                return entry
            vanished: set[str] = set()
            entry.keys |= read_keys(new, vanished)
            entry.files_seen.update(p.name for p in new if p.name not in vanished)
            if not vanished:
                return entry
            # A file was compacted away after the listing: compaction makes the merged file
            # visible before it hides the inputs, so listing again finds the vanished keys.

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Store the readings not stored before; one file per touched partition."""
        by_partition: dict[str, list[Reading]] = {}
        for r in readings:
            by_partition.setdefault(
                partition_name(r.measured_at.astimezone(UTC).date()), []
            ).append(r)
        stored = duplicates = 0
        files: list[Path] = []
        with self._lock:
            for partition, rows in sorted(by_partition.items()):
                known = self._known(partition)
                fresh: list[Reading] = []
                fresh_keys: list[str] = []
                batch_keys: set[str] = set()
                for r in rows:
                    key = r.dedup_key
                    if key in known.keys or key in batch_keys:
                        duplicates += 1
                        continue
                    batch_keys.add(key)
                    fresh.append(r)
                    fresh_keys.append(key)
                if not fresh:
                    continue
                name = unique_name(self.writer_id)
                path = write_parquet_atomic(
                    readings_table(fresh, fresh_keys), self.readings_dir / partition, name
                )
                known.keys |= batch_keys
                known.files_seen.add(name)
                stored += len(fresh)
                files.append(path)
        return WriteResult(stored, duplicates, tuple(files))
