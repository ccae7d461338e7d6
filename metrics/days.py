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
        zones = snapshot.patient_zones
        return cls(ordered, tuple(zones.get(p) or org_zone for p in ordered))

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
    """Slot k holds every device's k-th assignment (in registry order), as arrays."""
    assignments = snapshot.assignments
    if not assignments:
        return []
    pos = index.position()
    zone_pos = {z: i for i, z in enumerate(zones)}
    patient_zone = np.array([zone_pos[z] for z in index.zones], np.int64)
    epoch = EPOCH.toordinal()
    open_end = OPEN_END + epoch
    patient = np.array([pos[a.patient_id] for a in assignments], np.int64)
    start = np.array([a.start_date.toordinal() for a in assignments], np.int64) - epoch
    end = (
        np.array(
            [open_end if a.end_date is None else a.end_date.toordinal() for a in assignments],
            np.int64,
        )
        - epoch
    )
    devices = pa.array([a.device_id for a in assignments], pa.string())
    code = np.asarray(pc.dictionary_encode(devices).indices.to_numpy(), np.int64)
    # Rank of each assignment among its device's, keeping registry order (stable sort).
    order = np.argsort(code, kind="stable")
    grouped = code[order]
    firsts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    rank = np.empty(len(code), np.int64)
    rank[order] = np.arange(len(code)) - np.repeat(firsts, np.diff(np.r_[firsts, len(code)]))
    slots: list[_Slot] = []
    for k in range(int(rank.max()) + 1):
        sel = np.flatnonzero(rank == k)
        slots.append(
            _Slot(
                devices=devices.take(pa.array(sel)),
                patient=patient[sel],
                zone=patient_zone[patient[sel]],
                start=start[sel],
                end=end[sel],
            )
        )
    return slots


def _column_or_false(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    if name not in batch.schema.names:
        return None
    return pc.fill_null(batch.column(name).cast(pa.bool_()), False)


def _eligible(batch: pa.RecordBatch) -> npt.NDArray[np.bool_]:
    """Rows that may count: physiologic, device-transmitted, trustworthy clock, timed.

    A mask rather than a filtered copy: copying the device ids of every batch costs more
    than the lookups it would save.
    """
    kind = batch.column("type")
    if pa.types.is_dictionary(kind.type):
        # Test the few distinct types, not every row (null indices give null: not eligible).
        known = pc.is_in(kind.dictionary.cast(pa.string()), value_set=PHYSIOLOGIC_TYPES)
        mask = known.take(kind.indices)
    else:
        mask = pc.is_in(kind.cast(pa.string()), value_set=PHYSIOLOGIC_TYPES)
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


class _ZoneClocks:
    """Every zone's clock stacked: one gather converts a batch whatever the zones of its rows
    (rather than one masked pass over the batch per zone)."""

    def __init__(self, clocks: list[_ZoneClock]) -> None:
        self.clocks = clocks
        self.base = clocks[0].base
        self.buckets = clocks[0].buckets
        self.offset = np.concatenate([c.offset for c in clocks])
        self.exact = np.concatenate([c.exact for c in clocks])

    def local_days(self, micros: IntArray, zone: IntArray) -> IntArray:
        bucket = (micros - self.base) // _QUARTER_HOUR_US
        inside = (bucket >= 0) & (bucket < self.buckets)
        cell = zone * self.buckets + np.where(inside, bucket, 0)
        days = np.where(inside, (micros + self.offset[cell]) // _DAY_US, -1)
        odd = inside & self.exact[cell]
        if odd.any():
            for z in np.unique(zone[odd]).tolist():
                sel = odd & (zone == z)
                days[sel] = self.clocks[z].local_days(micros[sel])
        return days


def _device_codes(column: pa.Array) -> tuple[pa.Array, IntArray]:
    """A device-id column as (values, each row's index into them; -1 for a null id).

    A dictionary column (how Parquet stores repeated ids) is looked up through its dictionary,
    so each distinct id is hashed once per batch rather than once per row.
    """
    if pa.types.is_dictionary(column.type):
        codes = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
        return column.dictionary.cast(pa.string()), np.asarray(codes, np.int64)
    return column.cast(pa.string()), np.arange(len(column), dtype=np.int64)


def _group_pairs(
    group: list[pa.RecordBatch],
    slots: list[_Slot],
    clocks: _ZoneClocks,
    first_day: int,
    last_day: int,
) -> tuple[IntArray, IntArray]:
    """(patient, local day) of every qualifying reading of some batches (not yet distinct)."""
    eligible = np.concatenate([_eligible(b) for b in group])
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if not eligible.any():
        return empty
    values: list[pa.Array] = []
    codes: list[IntArray] = []
    micros_of: list[IntArray] = []
    base = 0
    for batch in group:
        v, c = _device_codes(batch.column("device_id"))
        values.append(v)
        codes.append(np.where(c >= 0, c + base, -1))
        base += len(v)
        stamps = pc.cast(_utc(batch.column("measured_at")), pa.int64())
        micros_of.append(
            np.asarray(pc.fill_null(stamps, 0).to_numpy(zero_copy_only=False), np.int64)
        )
    # One device lookup for the whole group: building the lookup table is the costly part.
    devices = pa.concat_arrays(values) if len(values) > 1 else values[0]
    code = np.concatenate(codes)
    micros = np.concatenate(micros_of)
    patients: list[IntArray] = []
    days: list[IntArray] = []
    for slot in slots:
        found = pc.index_in(devices, value_set=slot.devices)
        if found.null_count == len(found):
            continue
        lookup = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64)
        position = np.where(code >= 0, lookup[code], -1)
        rows = np.flatnonzero(eligible & (position >= 0))
        take = position[rows]
        zone = slot.zone[take]
        day = clocks.local_days(micros[rows], zone)
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


def _grouped(batches: Iterable[pa.RecordBatch]) -> Iterator[list[pa.RecordBatch]]:
    """Batches in groups of about ``_WORK_ROWS`` rows: the device lookup table is built once
    per group, so many small files (one per day) do not pay for it again and again. The
    batches are not copied together."""
    group: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        group.append(batch)
        rows += batch.num_rows
        if rows >= _WORK_ROWS:
            yield group
            group, rows = [], 0
    if group:
        yield group


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
    clocks = _ZoneClocks([_ZoneClock(z, first, last) for z in zones]) if span and zones else None
    # Distinct pairs: a patient x day bitmap when it is small (no hashing, no sorting),
    # otherwise sorted unique keys compacted as they grow.
    bitmap = (
        np.zeros(n_patients * span, np.bool_) if 0 < n_patients * span <= _BITMAP_CELLS else None
    )
    found: list[IntArray] = []
    pending = 0
    for group in _grouped(batches):
        if not slots or clocks is None:
            continue
        patient, day = _group_pairs(group, slots, clocks, first, last)
        if bitmap is not None:
            bitmap[patient * span + (day - first)] = True
            continue
        found.append(np.unique((patient << _DAY_BITS) | day))
        pending += len(found[-1])
        if pending > 4_000_000 and len(found) > 1:
            found = [np.unique(np.concatenate(found))]
            pending = len(found[0])
    if bitmap is not None:
        patient, day = np.divmod(np.flatnonzero(bitmap), span)
        day += first
        return PatientDays(index, patient, day)
    keys = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return PatientDays(index, keys >> _DAY_BITS, keys & ((1 << _DAY_BITS) - 1))
