"""Durable, private files under the data dir: 0700 directories, 0600 files, atomic renames.

Readers never see a half-written Parquet file: it is written under a dot-name (which pyarrow
datasets and DuckDB globs of ``*.parquet`` skip), fsynced, renamed, and the directory fsynced.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rpmpipe.files import atomic_write, fsync_dir, private_dir

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ensure_dir",
    "fsync_dir",
    "parquet_files",
    "remove_stale_temp_files",
    "unique_name",
    "write_parquet_atomic",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_sequence = itertools.count()
_sequence_lock = threading.Lock()


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and missing parents with mode 0700."""
    return private_dir(path)


def unique_name(writer_id: str, suffix: str = ".parquet") -> str:
    """A file name no other writer or process produces: writer id, pid, time and sequence."""
    with _sequence_lock:
        seq = next(_sequence)
    safe = _UNSAFE.sub("_", writer_id)[:64] or "writer"
    return f"part-{safe}-{os.getpid()}-{time.time_ns():x}-{seq:06d}{suffix}"


def write_parquet_atomic(
    table: pa.Table, directory: Path, name: str, *, row_group_size: int | None = None
) -> Path:
    """Write ``table`` to ``directory/name`` atomically and durably; returns the final path."""
    import pyarrow.parquet as pq  # here: ingest connects to the broker before loading pyarrow

    ensure_dir(directory)
    return atomic_write(
        directory / name,
        lambda f: pq.write_table(
            table, f, compression="zstd", row_group_size=row_group_size, write_statistics=True
        ),
    )


def parquet_files(directory: Path) -> list[Path]:
    """The finished Parquet files of a directory (temp files excluded), sorted by name."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [
        directory / n
        for n in sorted(names)
        if n.endswith(".parquet") and not n.startswith((".", "_"))
    ]


# A temp file this old is no write in progress (a write takes well under a second).
STALE_TEMP_SECONDS = 600.0
_TEMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
_WRITER_PID = re.compile(r"\.part-.+?-(\d+)-[0-9a-f]+-\d{6}\.parquet\.")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # called at start-up, before this process writes: an earlier life's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(root: Path, now: float | None = None) -> int:
    """Delete temp files left under ``root`` by a killed writer; returns how many.

    A temp file is left behind when a writer is killed between creating it and renaming it.
    One whose writer process is gone, or older than :data:`STALE_TEMP_SECONDS`, is removed;
    one of a live writer (another ingest process of a shared group) is left alone. Call it at
    start-up, before this process writes (a file named with this pid is an earlier life's).
    """
    clock = time.time() if now is None else now
    removed = 0
    try:
        dirs = [root, *(p for p in root.iterdir() if p.is_dir())]
    except FileNotFoundError:
        return 0
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for n in names:
            if not _TEMP.fullmatch(n):
                continue
            path = directory / n
            m = _WRITER_PID.match(n)
            try:
                old = clock - path.stat().st_mtime >= STALE_TEMP_SECONDS
            except FileNotFoundError:
                continue
            if old or (m is not None and not _pid_alive(int(m.group(1)))):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
