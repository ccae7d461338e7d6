"""Quarantine: payloads that could not become readings, kept with their reason, never dropped.

``<data>/quarantine/*.parquet`` (flat: the set is small and read whole). ``quarantine_id`` is a
hash of topic and payload, so a redelivered bad message is recorded once. A payload larger than
the store's ``max_payload_bytes`` (``broker.message_size_limit``) is never kept whole: its first
:data:`KEPT_BYTES` bytes are, with the whole payload's size and SHA-256, so a flood of huge
payloads cannot fill the data disk.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rpmpipe.ingest.files import parquet_files, unique_name, write_parquet_atomic
from rpmpipe.ingest.schema import QUARANTINE_SCHEMA


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    topic: str
    payload: bytes
    reason_code: str
    reason: str
    received_at: datetime
    source: str = "mqtt"  # mqtt, backfill or replay

    @property
    def quarantine_id(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.topic.encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
        digest.update(self.payload)
        return digest.hexdigest()[:32]


# What is kept of an oversized payload (enough to see what it was).
KEPT_BYTES = 4096


def quarantine_table(
    entries: Sequence[QuarantineEntry], max_payload_bytes: int | None = None
) -> pa.Table:
    """The entries as a table; payloads over ``max_payload_bytes`` are cut to their start."""

    def oversized(e: QuarantineEntry) -> bool:
        return max_payload_bytes is not None and len(e.payload) > max_payload_bytes

    return pa.Table.from_pydict(
        {
            "quarantine_id": [e.quarantine_id for e in entries],
            "topic": [e.topic for e in entries],
            "payload": [e.payload[:KEPT_BYTES] if oversized(e) else e.payload for e in entries],
            "reason_code": [e.reason_code for e in entries],
            "reason": [e.reason for e in entries],
            "received_at": [e.received_at for e in entries],
            "source": [e.source for e in entries],
            "last_reason_code": [None] * len(entries),
            "last_reason": [None] * len(entries),
            "payload_size": [len(e.payload) if oversized(e) else None for e in entries],
            "payload_sha256": [
                hashlib.sha256(e.payload).hexdigest() if oversized(e) else None for e in entries
            ],
        },
        schema=QUARANTINE_SCHEMA,
    )


def read_quarantine(directory: Path) -> pa.Table:
    """Every quarantine record, one row per quarantine_id (first occurrence kept)."""
    tables = []
    for path in parquet_files(directory):
        try:
            t = pq.read_table(path, schema=QUARANTINE_SCHEMA)
        except FileNotFoundError:
            continue
        tables.append(t.append_column("file", pa.array([path.name] * t.num_rows, pa.string())))
    if not tables:
        empty = QUARANTINE_SCHEMA.empty_table()
        return empty.append_column("file", pa.array([], pa.string()))
    table = pa.concat_tables(tables)
    ids = table.column("quarantine_id").to_pylist()
    seen: set[str] = set()
    keep = []
    for i, qid in enumerate(ids):
        if qid not in seen:
            seen.add(qid)
            keep.append(i)
    return table.take(keep) if len(keep) != len(ids) else table


class QuarantineStore:
    """Appends quarantine records once per quarantine_id, atomically and durably."""

    def __init__(
        self, directory: Path, writer_id: str, max_payload_bytes: int | None = None
    ) -> None:
        self.directory = directory
        self.writer_id = writer_id
        self.max_payload_bytes = max_payload_bytes
        self._ids: set[str] = set()
        self._files_seen: set[str] = set()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        new = [p for p in parquet_files(self.directory) if p.name not in self._files_seen]
        for path in new:
            try:
                column = pq.read_table(path, columns=["quarantine_id"]).column("quarantine_id")
            except FileNotFoundError:
                continue
            self._ids.update(column.to_pylist())
            self._files_seen.add(path.name)

    def add(self, entries: Iterable[QuarantineEntry]) -> int:
        """Record the entries not yet quarantined; returns how many were new."""
        with self._lock:
            self._refresh()
            fresh: list[QuarantineEntry] = []
            for e in entries:
                qid = e.quarantine_id
                if qid not in self._ids:
                    self._ids.add(qid)
                    fresh.append(e)
            if not fresh:
                return 0
            name = unique_name(self.writer_id)
            try:
                table = quarantine_table(fresh, self.max_payload_bytes)
                write_parquet_atomic(table, self.directory, name)
            except BaseException:
                self._ids.difference_update(e.quarantine_id for e in fresh)
                raise
            self._files_seen.add(name)
            return len(fresh)

    def remove(self, quarantine_ids: set[str], latest_reasons: dict[str, tuple[str, str]]) -> int:
        """Drop ``quarantine_ids``; record ``latest_reasons`` (id → (code, sentence)) as the
        latest failed attempt. The first reason (``reason_code``, ``reason``) is never changed.

        Each affected file is rewritten first and the old one removed after, so a crash in
        between leaves a duplicate record (collapsed by :func:`read_quarantine`), never a loss.
        """
        removed = 0
        with self._lock:
            for path in parquet_files(self.directory):
                try:
                    table = pq.read_table(path, schema=QUARANTINE_SCHEMA)
                except FileNotFoundError:
                    continue
                ids = table.column("quarantine_id").to_pylist()
                codes = table.column("last_reason_code").to_pylist()
                reasons = table.column("last_reason").to_pylist()
                changed = [
                    i
                    for i, qid in enumerate(ids)
                    if qid in latest_reasons and latest_reasons[qid] != (codes[i], reasons[i])
                ]
                if not changed and not any(i in quarantine_ids for i in ids):
                    continue
                for i in changed:
                    codes[i], reasons[i] = latest_reasons[ids[i]]
                if changed:
                    table = table.set_column(
                        table.schema.get_field_index("last_reason_code"),
                        "last_reason_code",
                        pa.array(codes, pa.string()),
                    ).set_column(
                        table.schema.get_field_index("last_reason"),
                        "last_reason",
                        pa.array(reasons, pa.string()),
                    )
                keep = [i for i, qid in enumerate(ids) if qid not in quarantine_ids]
                removed += len(ids) - len(keep)
                kept = table.take(pa.array(keep, type=pa.int64()))  # typed: keep may be empty
                if kept.num_rows:
                    name = unique_name(self.writer_id)
                    write_parquet_atomic(kept, self.directory, name)
                    self._files_seen.add(name)
                os.unlink(path)
                self._files_seen.discard(path.name)
            self._ids.difference_update(quarantine_ids)
        return removed
