"""Reading the readings dataset (I/O edge): only the needed columns, days and batches.

Works on the ingest layout (``<data>/readings/date=YYYY-MM-DD/*.parquet``) and on any Parquet
dataset with the storage contract's columns written by another tool (with or without the
``date`` partition, timestamps naive-UTC or tz-aware, flags absent or present).

Each reading is read once. A directory holding one file (a compacted day) holds each
``dedup_key`` once: ingest's writers check before they write, and compaction merges without
copies. A directory holding several files (an open day still being written, or a day whose
compaction was killed after writing the merged file and before hiding its inputs) is read
with its ``dedup_key`` and ``received_at`` and keeps the first received copy of each key, so a
reader never sees a reading twice, with any number of ingest workers, at any moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

REQUIRED = ("device_id", "type", "measured_at")
OPTIONAL = ("manual_entry", "clock_suspect")
BATCH_ROWS = 1 << 20


def _visible(path: Path, root: Path) -> bool:
    # Writers keep temp files hidden ("." or "_" prefixes); never read a half-written file.
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _partition_day(name: str) -> date | None:
    try:
        return date.fromisoformat(name.partition("=")[2])
    except ValueError:
        return None


def reading_files(readings_dir: Path, first_day: date, last_day: date) -> list[Path]:
    """Parquet files that may hold readings stored on ``first_day .. last_day``.

    With ``date=`` partitions only the partitions in the window are listed (so old files are
    never even opened); without them, every visible Parquet file.
    """
    if not readings_dir.is_dir():
        return []
    partitions = [p for p in readings_dir.iterdir() if p.is_dir() and p.name.startswith("date=")]
    if partitions:
        roots = []
        for p in partitions:
            day = _partition_day(p.name)
            if day is None or first_day <= day <= last_day:
                roots.append(p)
    else:
        roots = [readings_dir]
    files = (f for r in roots for f in r.rglob("*.parquet") if f.is_file())
    return sorted(f for f in files if _visible(f, readings_dir))


def readings_present(readings_dir: Path) -> bool:
    """True when the readings store holds at least one visible Parquet file (stops at the
    first one found)."""
    if not readings_dir.is_dir():
        return False
    return any(f.is_file() and _visible(f, readings_dir) for f in readings_dir.rglob("*.parquet"))


def stored_readings(readings_dir: Path, first_day: date, last_day: date) -> int:
    """How many rows :func:`reading_batches` reads for the same days, from the files' footers
    (at least as many as it yields: copies in an open day and ``known_at`` drop some)."""
    files = reading_files(readings_dir, first_day - timedelta(days=1), last_day + timedelta(days=1))
    return sum(pq.read_metadata(f).num_rows for f in files)


def _schema(first_file: Path) -> pa.Schema:
    """The projected schema: contract columns, flags always present (absent means False)."""
    found = pq.read_schema(first_file)
    missing = [c for c in REQUIRED if c not in found.names]
    if missing:
        raise ValueError(f"readings file {first_file} lacks columns {missing}")
    measured = found.field("measured_at").type
    return pa.schema(
        [
            # Ids and types repeat: read them as dictionaries (as Parquet stores them).
            ("device_id", pa.dictionary(pa.int32(), pa.string())),
            ("type", pa.dictionary(pa.int32(), pa.string())),
            ("measured_at", measured),
            ("manual_entry", pa.bool_()),
            ("clock_suspect", pa.bool_()),
        ]
    )


def reading_batches(
    readings_dir: Path, first_day: date, last_day: date, known_at: datetime | None = None
) -> Iterator[pa.RecordBatch]:
    """Batches of readings stored on ``first_day - 1 .. last_day + 1`` (only needed columns).

    The partition day is a UTC date; a day of margin on each side covers every zone offset.
    Missing directory or no files: no batches. With ``known_at``, only readings received by
    then (``received_at``): what a run at that time could see.

    Files are read one after the other on the calling thread, a file's batches before the
    next file is opened: the counting keeps up with the decoding on a small machine, and
    what is held at once is one file's batch, not a read-ahead of many files.
    """
    files = reading_files(readings_dir, first_day - timedelta(days=1), last_day + timedelta(days=1))
    if not files:
        return
    schema = _schema(files[0])
    found = pq.read_schema(files[0])
    if known_at is not None and "received_at" not in found.names:
        raise ValueError(f"readings file {files[0]} has no received_at for --known-at")
    by_dir: dict[Path, list[Path]] = {}
    for f in files:
        by_dir.setdefault(f.parent, []).append(f)
    if "dedup_key" in found.names:
        alone = [fs[0] for fs in by_dir.values() if len(fs) == 1]
        shared = [fs for fs in by_dir.values() if len(fs) > 1]
    else:  # another tool's dataset, without ingest's identity column: read as it is
        alone, shared = files, []
    for f in alone:
        yield from _file_batches(f, schema, known_at)
    if shared:
        parquet = ds.ParquetFileFormat(
            read_options=ds.ParquetReadOptions(dictionary_columns=["device_id", "type"])
        )
        known = None
        if known_at is not None:
            received = found.field("received_at").type
            known = ds.field("received_at") <= pa.scalar(known_at, received)
        for group in shared:
            yield from _once_each(group, schema, found, parquet, known)


def _file_batches(
    path: Path, schema: pa.Schema, known_at: datetime | None
) -> Iterator[pa.RecordBatch]:
    """One file's rows in ``schema`` (a column the file lacks is all null, as absent flags
    mean False and an absent id counts for no one), received by ``known_at`` when given."""
    with pq.ParquetFile(path, read_dictionary=["device_id", "type"]) as reader:
        names = set(reader.schema_arrow.names)
        if known_at is not None and "received_at" not in names:
            return  # nothing in this file says when it arrived: not known by then
        columns = [c for c in schema.names if c in names]
        if known_at is not None:
            columns.append("received_at")
        for batch in reader.iter_batches(BATCH_ROWS, columns=columns, use_threads=False):
            if known_at is not None:
                received = batch.column("received_at")
                batch = batch.filter(pc.less_equal(received, pa.scalar(known_at, received.type)))
            if batch.num_rows:
                yield _projected(batch, schema)


def _projected(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns and types."""
    arrays = []
    for field in schema:
        if field.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _once_each(
    files: list[Path],
    schema: pa.Schema,
    found: pa.Schema,
    parquet: ds.ParquetFileFormat,
    known: ds.Expression | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of ``files`` (one directory) once per ``dedup_key``: the first received."""
    extra = [found.field("dedup_key")]
    if "received_at" in found.names:
        extra.append(found.field("received_at"))
    full = pa.schema([*schema, *extra])
    table = ds.dataset([str(f) for f in files], schema=full, format=parquet).to_table(
        columns=full.names, filter=known
    )
    if "received_at" in full.names:
        table = table.sort_by([("received_at", "ascending")])
    table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = table.group_by("dedup_key", use_threads=False).aggregate([("_row", "min")])
    keep = first.column("_row_min")
    if len(keep) != table.num_rows:
        table = table.take(pc.take(keep, pc.sort_indices(keep)))  # first copies, in order
    yield from table.select(schema.names).to_batches(BATCH_ROWS)
