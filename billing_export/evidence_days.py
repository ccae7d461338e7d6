"""The days with data behind a run's records, kept in Arrow from the readings to the files.

A supply record names its dates with data (the metrics stage decided which counted); behind
each date stand the readings of the patient's assigned devices on it. At 100k patients that is
millions of (record, date) pairs: they are never Python objects here. Each (patient, date)
with readings is one row of a day table (its reading ids and devices as lists), each record's
dates are a list of indices into it, and the evidence files take their days column and their
day rows from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.billing_export.evidence import (
    DAY_STRUCT,
    AssignmentSpan,
    RecordKey,
    reading_rows,
)


@dataclass(frozen=True, slots=True)
class RecordDays:
    """The dates with data of each record and the readings behind each date.

    ``days[i]`` is the list of the i-th record's dates (in the record's order), each with
    the ids of the readings behind it (in id order) and its devices (distinct, sorted); a
    date without readings has empty lists. ``dates[i]`` counts the i-th record's dates and
    ``read[i]`` those that have readings (in NumPy: an Arrow offset read per record cost more
    than the audit's checks of it).
    """

    index: Mapping[RecordKey, int]
    days: pa.ListArray  # list<DAY_STRUCT>, one per record
    read: np.ndarray  # dates with readings, per record
    dates: np.ndarray  # dates, per record

    def counts(self, key: RecordKey) -> tuple[int, int]:
        """(dates, dates with readings) of the record, (0, 0) when it names none."""
        at = self.index.get(key)
        if at is None:
            return (0, 0)
        return (int(self.dates[at]), int(self.read[at]))

    def merged(self, other: RecordDays) -> RecordDays:
        """These records' days and ``other``'s."""
        n = len(self.index)
        index = {**self.index, **{k: n + at for k, at in other.index.items()}}
        days = pa.concat_arrays([self.days.slice(0, n), other.days])
        return RecordDays(
            index,
            days,
            np.concatenate([self.read[:n], other.read]),
            np.concatenate([self.dates[:n], other.dates]),
        )

    def of(self, keys: Sequence[RecordKey]) -> pa.ListArray:
        """The days column of ``keys`` (a record the run did not read has no days)."""
        empty = len(self.index)  # the last row of ``days`` is an empty list
        picks = pa.array([self.index.get(k, empty) for k in keys], pa.int64())
        return self.days.take(picks)


def record_days(
    keys: Sequence[RecordKey],
    dates: Sequence[Sequence[str]],
    readings_dir: Path,
    assignments: Iterable[AssignmentSpan],
    zones: Mapping[str, str],
) -> RecordDays:
    """The days of the records ``keys``, whose dates with data are ``dates`` (ISO text, as
    the records store them), with the readings behind each from ``readings_dir``."""
    lengths = np.fromiter((len(d) for d in dates), np.int64, len(dates))
    offsets = np.zeros(len(keys) + 2, np.int64)  # one more record: the empty one
    np.cumsum(lengths, out=offsets[1 : len(keys) + 1])
    offsets[-1] = offsets[-2]
    owner = np.repeat(np.arange(len(keys)), lengths)
    day = _dates(pa.array([d for ds_ in dates for d in ds_], pa.string()))
    patient = pa.array([k[0] for k in keys], pa.string()).take(pa.array(owner))
    wanted = pa.table({"patient_id": patient, "day": day})
    table = day_table(reading_rows(readings_dir, wanted, assignments, zones))
    # Each (record, date) to its row of the day table, or to the empty row after it.
    rows = pa.table({"patient_id": table["patient_id"], "day": table["day"]}).append_column(
        "row", pa.array(np.arange(table.num_rows), pa.int64())
    )
    flat = wanted.append_column("at", pa.array(np.arange(wanted.num_rows), pa.int64()))
    matched = flat.join(rows, ["patient_id", "day"], join_type="inner")
    row_of = np.full(wanted.num_rows, table.num_rows, np.int64)
    row_of[matched["at"].to_numpy()] = matched["row"].to_numpy()
    found = row_of < table.num_rows
    read = np.bincount(owner[found], minlength=len(keys) + 1)
    empty = pa.array([[]], pa.list_(pa.string()))
    ids = pa.concat_arrays([table["reading_ids"].combine_chunks(), empty])
    devices = pa.concat_arrays([table["device_ids"].combine_chunks(), empty])
    picks = pa.array(row_of, pa.int64())
    values = pa.StructArray.from_arrays(
        [day, ids.take(picks), devices.take(picks)], fields=list(DAY_STRUCT)
    )
    days = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)
    return RecordDays({k: n for n, k in enumerate(keys)}, days, read, np.diff(offsets))


def _dates(text: pa.Array) -> pa.Array:
    """ISO dates as date32, as ``date.fromisoformat`` reads them."""
    try:
        return pc.cast(text, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        from datetime import date

        return pa.array([date.fromisoformat(t) for t in text.to_pylist()], pa.date32())


def day_table(found: pa.Table) -> pa.Table:
    """One row per (patient_id, day) of :func:`reading_rows`' rows: its reading ids (in the
    rows' order) and its devices (distinct, sorted)."""
    starts = _group_starts(found, ("patient_id", "day"))
    offsets = pa.array(np.append(starts, found.num_rows), pa.int32())
    ids = pa.ListArray.from_arrays(offsets, found["id"].combine_chunks())
    by_device = found.sort_by(
        [("patient_id", "ascending"), ("day", "ascending"), ("device_id", "ascending")]
    )
    distinct = by_device.take(
        pa.array(_group_starts(by_device, ("patient_id", "day", "device_id")))
    )
    device_starts = _group_starts(distinct, ("patient_id", "day"))
    device_offsets = pa.array(np.append(device_starts, distinct.num_rows), pa.int32())
    devices = pa.ListArray.from_arrays(device_offsets, distinct["device_id"].combine_chunks())
    keys = found.take(pa.array(starts))
    return pa.table(
        {
            "patient_id": keys["patient_id"],
            "day": keys["day"],
            "reading_ids": ids,
            "device_ids": devices,
        }
    )


def _group_starts(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """Row numbers where a run of equal ``keys`` starts (the table is sorted by them)."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.zeros(n, np.bool_)
    new[0] = True
    for key in keys:
        column = table[key].combine_chunks()
        differs = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        new[1:] |= differs.to_numpy(zero_copy_only=False)
    return np.flatnonzero(new)
