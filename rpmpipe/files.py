"""Private, durable files: 0700 directories, 0600 files, atomic renames.

Every file rpmpipe writes under the data dir or an export dir goes through here: a temp file in
the same directory (so the rename is atomic), fsynced, renamed over the target, and the
directory fsynced, so that after a crash the file is either the old one or the complete new one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def private_dir(path: Path) -> Path:
    """Create ``path`` and each missing parent with mode 0700; tighten ``path`` if it exists."""
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
    os.chmod(path, 0o700)  # an existing directory may have been created looser
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, produce: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` (mode 0600) through ``produce(file)``; readers never see it half written.

    The temp file is a dot-name, which pyarrow datasets and ``*.parquet`` globs skip.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            produce(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, mode 0600."""
    return atomic_write(path, lambda f: f.write(data))
