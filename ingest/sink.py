"""The readings sink: exactly-once, atomic Parquet files under ``<data>/readings/date=.../``.

Exactly-once rests on ``Reading.dedup_key``: a batch drops keys seen earlier in the batch and
keys already stored in the partition. The stored keys of a partition are loaded the first time
a batch touches it and topped up from files that appeared since (another process, a restart,
a compaction), so redelivery after a crash or to another shared-subscription member is caught.

Writers of one store take turns: every batch is checked and written holding an exclusive lock
on ``readings/.write.lock`` (``flock``, released by the kernel if the writer dies), so two
ingest workers of a shared group, or ingest and an import, never both store the same reading.

A reading id names one reading of its device across the whole store, whatever its date:
``readings/_reading_ids.sqlite3`` (hidden from readers by its ``_`` prefix) holds each stored
``(device_id, reading_id)`` with its ``measured_at``. A resend of an id with another time is
refused as conflicting (the caller quarantines it, ``conflicting_duplicate``) rather than stored
under a second date. The index is written after the Parquet file; files it has not seen (a
writer killed in between, a compaction, a store written before the index) are indexed when a
sink opens the store.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rpmpipe.ingest.files import ensure_dir, parquet_files, unique_name, write_parquet_atomic
from rpmpipe.ingest.schema import ReadingColumns, sorted_by_time
from rpmpipe.records import Reading


def partition_name(day: date | str) -> str:
    """The partition directory of a UTC date (or its ISO text)."""
    return f"date={day if isinstance(day, str) else day.isoformat()}"


@dataclass
class _PartitionKeys:
    keys: set[str] = field(default_factory=set)
    files_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A reading whose id its device already used for a reading measured at another time."""

    reading: Reading
    stored_measured_at: datetime
    row: int = -1  # its position in the batch given to ReadingSink.write

    @property
    def reason(self) -> str:
        r = self.reading
        return (
            f"reading id {r.reading_id} of device {r.device_id} is already stored measured at "
            f"{self.stored_measured_at.isoformat()}; this copy says {r.measured_at.isoformat()}"
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int
    duplicates: int
    files: tuple[Path, ...]
    conflicts: tuple[Conflict, ...] = ()


LOCK_NAME = ".write.lock"
INDEX_NAME = "_reading_ids.sqlite3"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_SEP = "\x1f"  # never in an id (ids are checked against A-Z a-z 0-9 _ . : -)


def _key(device_id: str, reading_id: str) -> str:
    return f"{device_id}{_SEP}{reading_id}"


def _micros(t: datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class ReadingIdIndex:
    """``(device_id, reading_id) -> measured_at`` for every stored reading that has an id.

    Use only while holding the store's write lock (one writer at a time).
    """

    def __init__(self, readings_dir: Path) -> None:
        ensure_dir(readings_dir)
        path = readings_dir / INDEX_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # PHI-adjacent: private like the rest
        os.close(fd)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # No fsync of its own: after a crash, rows it lost belong to files it no longer lists,
        # and catch_up() indexes those again from the Parquet files, which are durable.
        self._db.execute("PRAGMA synchronous=OFF")
        # A batch's ids land on pages all over the key order: a page cache of 64 MB and a
        # checkpoint every 10,000 WAL pages (40 MB) instead of SQLite's 2 MB and 1,000 take
        # about a third off an insert once the index outgrows the default cache.
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        # One text key (device id, unit separator, reading id): an IN list on it uses the
        # primary key, where a row-value IN over two columns scans the table.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ids (key TEXT PRIMARY KEY, measured_at INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY) WITHOUT ROWID")
        self.readings_dir = readings_dir

    def close(self) -> None:
        self._db.close()

    def lookup(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
        """The stored ``measured_at`` of each ``(device_id, reading_id)`` that has one."""
        found: dict[tuple[str, str], datetime] = {}
        for i in range(0, len(keys), 500):
            chunk = [_key(d, r) for d, r in keys[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, measured_at FROM ids WHERE key IN ({marks})",  # noqa: S608
                chunk,
            )
            for key, us in rows:
                device_id, _, reading_id = key.partition(_SEP)
                found[(device_id, reading_id)] = _from_micros(us)
        return found

    def add(self, rows: Iterable[tuple[str, str, int]], files: Iterable[str]) -> None:
        """Record ``(device_id, reading_id, measured_at µs)`` rows and the files holding them."""
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO ids VALUES (?, ?)", ((_key(d, r), t) for d, r, t in rows)
            )
            self._db.executemany("INSERT OR IGNORE INTO files VALUES (?)", ((f,) for f in files))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def catch_up(self) -> int:
        """Index the store's files the index has not seen; returns how many."""
        known = {name for (name,) in self._db.execute("SELECT name FROM files")}
        new: list[Path] = []
        for partition in sorted(self.readings_dir.glob("date=*")):
            new.extend(
                p for p in parquet_files(partition) if f"{partition.name}/{p.name}" not in known
            )
        for path in new:
            try:
                table = pq.read_table(path, columns=["device_id", "reading_id", "measured_at"])
            except FileNotFoundError:
                continue  # compacted away meanwhile: its rows are in the merged file
            devices = table.column("device_id").to_pylist()
            ids = table.column("reading_id").to_pylist()
            times = table.column("measured_at").cast("int64").to_pylist()
            rows = [(d, r, t) for d, r, t in zip(devices, ids, times, strict=True) if r]
            self.add(rows, [f"{path.parent.name}/{path.name}"])
        return len(new)


@contextmanager
def store_lock(readings_dir: Path) -> Iterator[None]:
    """Hold the store's write lock (exclusive, across processes) for the block."""
    ensure_dir(readings_dir)
    fd = os.open(readings_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
        self._index: ReadingIdIndex | None = None

    def _ids(self) -> ReadingIdIndex:
        """The reading-id index, caught up with the store on first use (lock held)."""
        if self._index is None:
            self._index = ReadingIdIndex(self.readings_dir)
            self._index.catch_up()
        return self._index

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

    def write(self, readings: Sequence[Reading] | ReadingColumns) -> WriteResult:
        """Store the readings not stored before; one file per touched partition.

        A reading whose id its device already used with another ``measured_at`` is not
        stored: it comes back in :attr:`WriteResult.conflicts`, with its row in the batch.
        """
        columns = readings if isinstance(readings, ReadingColumns) else ReadingColumns.of(readings)
        with self._lock, store_lock(self.readings_dir):
            index = self._ids()
            kept, conflicts = self._without_conflicts(index, columns)
            by_partition: dict[str, list[int]] = {}
            days = columns.day
            for i in kept:
                rows = by_partition.get(days[i])
                if rows is None:
                    by_partition[days[i]] = [i]
                else:
                    rows.append(i)
            keys = columns.dedup_key
            reading_ids, device_ids, times = (
                columns.reading_id,
                columns.device_id,
                columns.measured_at,
            )
            stored = duplicates = 0
            files: list[Path] = []
            indexed: list[tuple[str, str, int]] = []
            table: pa.Table | None = None
            for day, rows in sorted(by_partition.items()):
                partition = partition_name(day)
                known = self._known(partition)
                fresh: list[int] = []
                batch_keys: set[str] = set()
                for i in rows:
                    key = keys[i]
                    if key in known.keys or key in batch_keys:
                        duplicates += 1
                        continue
                    batch_keys.add(key)
                    fresh.append(i)
                if not fresh:
                    continue
                if table is None:
                    table = columns.table()
                part = table if len(fresh) == table.num_rows else table.take(fresh)
                name = unique_name(self.writer_id)
                path = write_parquet_atomic(
                    sorted_by_time(part), self.readings_dir / partition, name
                )
                known.keys |= batch_keys
                known.files_seen.add(name)
                stored += len(fresh)
                files.append(path)
                for i in fresh:
                    reading_id = reading_ids[i]
                    if reading_id:
                        indexed.append((device_ids[i], reading_id, _micros(times[i])))
            if files:
                index.add(indexed, (f"{p.parent.name}/{p.name}" for p in files))
        return WriteResult(stored, duplicates, tuple(files), tuple(conflicts))

    @staticmethod
    def _without_conflicts(
        index: ReadingIdIndex, columns: ReadingColumns
    ) -> tuple[list[int], list[Conflict]]:
        """The rows to store, and the conflicting ones."""
        reading_ids, device_ids, times = columns.reading_id, columns.device_id, columns.measured_at
        keys = list({(device_ids[i], r) for i, r in enumerate(reading_ids) if r})
        if not keys:
            return list(range(len(columns))), []
        stored = index.lookup(keys)
        kept: list[int] = []
        conflicts: list[Conflict] = []
        for i, reading_id in enumerate(reading_ids):
            if reading_id:
                key = (device_ids[i], reading_id)
                first = stored.get(key)
                if first is None:
                    stored[key] = times[i]  # the first of the batch wins
                elif first != times[i]:
                    conflicts.append(Conflict(columns.reading(i), first, i))
                    continue
            kept.append(i)
        return kept, conflicts
