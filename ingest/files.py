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

import pyarrow as pa
import pyarrow.parquet as pq

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_sequence = itertools.count()
_sequence_lock = threading.Lock()


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and missing parents with mode 0700."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path


def unique_name(writer_id: str, suffix: str = ".parquet") -> str:
    """A file name no other writer or process produces: writer id, pid, time and sequence."""
    with _sequence_lock:
        seq = next(_sequence)
    safe = _UNSAFE.sub("_", writer_id)[:64] or "writer"
    return f"part-{safe}-{os.getpid()}-{time.time_ns():x}-{seq:06d}{suffix}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(
    table: pa.Table, directory: Path, name: str, *, row_group_size: int | None = None
) -> Path:
    """Write ``table`` to ``directory/name`` atomically and durably; returns the final path."""
    ensure_dir(directory)
    final = directory / name
    tmp = directory / f".tmp-{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(
                table, f, compression="zstd", row_group_size=row_group_size, write_statistics=True
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final


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
