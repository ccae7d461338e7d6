"""Days with data: distinct local dates per patient with a qualifying reading, vectorised.

Readings arrive as Arrow batches; each batch is reduced to distinct (patient, local date)
pairs at once, so memory grows with patients x days, not with readings. Local dates are
computed per time zone in bulk (Arrow's tz database), never row by row in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from metrics.snapshot import RegistrySnapshot
from rpmpipe.records import READING_TYPES

EPOCH = date(1970, 1, 1)
OPEN_END = 2**30  # an open assignment or enrollment, as a day number
_DAY_BITS = 20  # day numbers (days since 1970) fit in 20 bits until the year 4840
_BITMAP_CELLS = 64_000_000  # patients x days; one byte each

# Battery and status messages, or types we do not know, never count as physiologic.
PHYSIOLOGIC_TYPES = pa.array(list(READING_TYPES), pa.string())

IntArray = npt.NDArray[np.int64]


def day_number(day: date) -> int:
    return (day - EPOCH).days


def from_day_number(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


@dataclass(frozen=True)
class PatientIndex:
    """Patient ids <-> dense integers, with each patient's zone."""

    ids: tuple[str, ...]
    zones: tuple[str, ...]

    @classmethod
    def of(cls, snapshot: RegistrySnapshot, org_zone: str) -> PatientIndex:
        ids = set(snapshot.patient_zones)
        ids.update(a.patient_id for a in snapshot.assignments)
        ids.update(e.patient_id for e in snapshot.enrollments)
        ordered = tuple(sorted(ids))
        return cls(ordered, tuple(snapshot.zone_of(p, org_zone) for p in ordered))

    def position(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.ids)}


@dataclass(frozen=True)
class _Slot:
    """The k-th assignment of every device that has at least k+1 assignments."""

    devices: pa.Array
    patient: IntArray
    zone: IntArray
    start: IntArray
    end: IntArray


def _assignment_slots(
    snapshot: RegistrySnapshot, index: PatientIndex, zones: list[str]
) -> list[_Slot]:
    pos = index.position()
    zone_pos = {z: i for i, z in enumerate(zones)}
    by_device: dict[str, list[tuple[int, int, int, int]]] = {}
    for a in snapshot.assignments:
        p = pos[a.patient_id]
        end = OPEN_END if a.end_date is None else day_number(a.end_date)
        by_device.setdefault(a.device_id, []).append(
            (day_number(a.start_date), end, p, zone_pos[index.zones[p]])
        )
    slots: list[_Slot] = []
    k = 0
    while True:
        rows = [(d, v[k]) for d, v in by_device.items() if len(v) > k]
        if not rows:
            return slots
        slots.append(
            _Slot(
                devices=pa.array([d for d, _ in rows], pa.string()),
                start=np.array([r[0] for _, r in rows], np.int64),
                end=np.array([r[1] for _, r in rows], np.int64),
                patient=np.array([r[2] for _, r in rows], np.int64),
                zone=np.array([r[3] for _, r in rows], np.int64),
            )
        )
        k += 1


def _column_or_false(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    if name not in batch.schema.names:
        return None
    return pc.fill_null(batch.column(name).cast(pa.bool_()), False)


def _eligible(batch: pa.RecordBatch) -> npt.NDArray[np.bool_]:
    """Rows that may count: physiologic, device-transmitted, trustworthy clock, timed.

    A mask rather than a filtered copy: copying the device ids of every batch costs more
    than the lookups it would save.
    """
    mask = pc.is_in(batch.column("type").cast(pa.string()), value_set=PHYSIOLOGIC_TYPES)
    for flag in ("manual_entry", "clock_suspect"):
        col = _column_or_false(batch, flag)
        if col is not None:
            mask = pc.and_(mask, pc.invert(col))
    mask = pc.and_(mask, pc.is_valid(batch.column("measured_at")))
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), np.bool_)


def _utc(ts: pa.Array) -> pa.Array:
    """Timestamps as microseconds, UTC; naive columns from other tools are taken as UTC."""
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"measured_at must be a timestamp column, got {ts.type}")
    return pc.cast(ts, pa.timestamp("us", tz="UTC"))


_QUARTER_HOUR_US = 15 * 60 * 10**6
_DAY_US = 86400 * 10**6


class _ZoneClock:
    """UTC microseconds -> local day numbers for one zone over a window, in numpy.

    The UTC offset is tabulated per quarter hour of the window (time-zone transitions fall on
    quarter hours); a quarter hour whose two ends disagree is converted exactly by Arrow.
    Rows outside the window get -1 (they lie more than a day outside the days we count).
    """

    def __init__(self, zone: str, first_day: int, last_day: int) -> None:
        self.zone = zone
        self.base = (first_day - 2) * _DAY_US
        buckets = (last_day - first_day + 5) * 96
        self.buckets = buckets
        edges = self.base + np.arange(buckets + 1, dtype=np.int64) * _QUARTER_HOUR_US
        offset = self._offsets(edges)
        self.offset = offset[:-1]
        # The offset just before the next edge; differs from the start only at a transition.
        before_next = self._offsets(edges[1:] - 1)
        self.exact = before_next != self.offset

    def _offsets(self, micros: IntArray) -> IntArray:
        stamps = pa.array(micros, pa.timestamp("us", tz=self.zone))
        local = pc.cast(pc.local_timestamp(stamps), pa.int64()).to_numpy()
        return np.asarray(local - micros, np.int64)

    def local_days(self, micros: IntArray) -> IntArray:
        bucket = (micros - self.base) // _QUARTER_HOUR_US
        inside = (bucket >= 0) & (bucket < self.buckets)
        b = np.where(inside, bucket, 0)
        days = np.where(inside, (micros + self.offset[b]) // _DAY_US, -1)
        odd = inside & self.exact[b]
        if odd.any():
            stamps = pa.array(micros[odd], pa.timestamp("us", tz=self.zone))
            local = pc.cast(pc.cast(pc.local_timestamp(stamps), pa.date32()), pa.int32())
            days[odd] = local.to_numpy()
        return days


def _batch_pairs(
    batch: pa.RecordBatch,
    slots: list[_Slot],
    clocks: list[_ZoneClock],
    first_day: int,
    last_day: int,
) -> tuple[IntArray, IntArray]:
    """(patient, local day) of every qualifying reading of one batch (not yet distinct)."""
    eligible = _eligible(batch)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if not eligible.any():
        return empty
    devices = batch.column("device_id").cast(pa.string())
    stamps = pc.cast(_utc(batch.column("measured_at")), pa.int64())
    micros = np.asarray(pc.fill_null(stamps, 0).to_numpy(zero_copy_only=False), np.int64)
    patients: list[IntArray] = []
    days: list[IntArray] = []
    for slot in slots:
        found = pc.index_in(devices, value_set=slot.devices)
        if found.null_count == len(found):
            continue
        position = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64)
        rows = np.flatnonzero(eligible & (position >= 0))
        take = position[rows]
        zone = slot.zone[take]
        day = np.empty(len(rows), np.int64)
        # One bulk conversion per zone, on that zone's rows only.
        for z in np.unique(zone):
            sel = zone == z
            day[sel] = clocks[int(z)].local_days(micros[rows[sel]])
        # A reading belongs to the patient the device was lent to on the reading's local date.
        ok = (day >= slot.start[take]) & (day <= slot.end[take])
        ok &= (day >= first_day) & (day <= last_day)
        patients.append(slot.patient[take][ok])
        days.append(day[ok])
    if not patients:
        return empty
    return np.concatenate(patients), np.concatenate(days)


@dataclass(frozen=True)
class PatientDays:
    """Distinct days with data, sorted by patient then day (parallel arrays)."""

    index: PatientIndex
    patient: IntArray
    day: IntArray


_WORK_ROWS = 1 << 18


def _rebatched(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Batches of about ``_WORK_ROWS`` rows: the device lookup table is built once per batch,
    so many small files (one per day) would pay for it again and again."""
    buffer: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if buffer and batch.schema != buffer[0].schema:
            yield from _combined(buffer)
            buffer, rows = [], 0
        buffer.append(batch)
        rows += batch.num_rows
        if rows >= _WORK_ROWS:
            yield from _combined(buffer)
            buffer, rows = [], 0
    if buffer:
        yield from _combined(buffer)


def _combined(buffer: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from pa.Table.from_batches(buffer).combine_chunks().to_batches()


def patient_days(
    readings: pa.Table | Iterable[pa.RecordBatch],
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    first_day: date | None = None,
) -> PatientDays:
    """Distinct local dates per patient with a qualifying reading from an assigned device.

    Consent and enrollment are applied later (per episode); this step handles reading type,
    manual entries, clock-suspect readings, device assignment and the patient's zone, and
    ignores days after ``as_of`` and before ``first_day`` (default: the earliest enrollment
    start, before which nothing can count).
    """
    index = PatientIndex.of(snapshot, org_zone)
    zones = sorted(set(index.zones))
    slots = _assignment_slots(snapshot, index, zones)
    batches = readings.to_batches() if isinstance(readings, pa.Table) else readings
    if first_day is None:
        starts = [e.start_date for e in snapshot.enrollments]
        first_day = min(starts) if starts else as_of
    first, last = day_number(first_day), day_number(as_of)
    span = max(0, last - first + 1)
    n_patients = len(index.ids)
    clocks = [_ZoneClock(z, first, last) for z in zones] if span else []
    # Distinct pairs: a patient x day bitmap when it is small (no hashing, no sorting),
    # otherwise sorted unique keys compacted as they grow.
    bitmap = (
        np.zeros(n_patients * span, np.bool_) if 0 < n_patients * span <= _BITMAP_CELLS else None
    )
    found: list[IntArray] = []
    pending = 0
    for batch in _rebatched(batches):
        if batch.num_rows == 0 or not slots or span == 0:
            continue
        patient, day = _batch_pairs(batch, slots, clocks, first, last)
        if bitmap is not None:
            bitmap[patient * span + (day - first)] = True
            continue
        found.append(np.unique((patient << _DAY_BITS) | day))
        pending += len(found[-1])
        if pending > 4_000_000 and len(found) > 1:
            found = [np.unique(np.concatenate(found))]
            pending = len(found[0])
    if bitmap is not None:
        cells = np.flatnonzero(bitmap)
        return PatientDays(index, cells // span, cells % span + first)
    keys = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return PatientDays(index, keys >> _DAY_BITS, keys & ((1 << _DAY_BITS) - 1))
