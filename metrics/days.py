"""Days with data: distinct local dates per patient with a qualifying reading, vectorised.

Readings arrive as Arrow batches; each batch is reduced to distinct (patient, local date)
pairs at once, so memory grows with patients x days, not with readings. Local dates are
computed per time zone in bulk (Arrow's tz database), never row by row in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.metrics.day_numbers import ZoneClocks
from rpmpipe.metrics.episodes import Episode
from rpmpipe.metrics.snapshot import RegistrySnapshot
from rpmpipe.records import READING_TYPES

EPOCH = date(1970, 1, 1)

# Why a physiologic reading from a device of the patient did not count (evidence for reasons).
# A reading both entered manually and clock-suspect is worded as manual, yet is no
# self-reported day (RTM counts self-reported data, never a clock error).
UNASSIGNED, MANUAL_ENTRY, CLOCK_SUSPECT, MANUAL_AND_SUSPECT = 0, 1, 2, 3
CAUSES = ("unassigned", "manual_entry", "clock_suspect", "manual_entry")
OPEN_END = 2**30  # an open assignment or enrollment, as a day number
_DAY_BITS = 20  # day numbers (days since 1970) fit in 20 bits until the year 4840
_BITMAP_CELLS = 64_000_000  # patients x days; one byte each

# Battery and status messages, or types we do not know, never count as physiologic.
PHYSIOLOGIC_TYPES = pa.array(list(READING_TYPES), pa.string())

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


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
        """Each id's integer (made once per index; read it, do not change it): asked per
        patient, by the records of episodes without consent among others."""
        return self._position

    @cached_property
    def _position(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.ids)}


@dataclass(frozen=True)
class _Slot:
    """The k-th assignment of every device that has at least k+1 assignments."""

    devices: pa.Array
    assignment: IntArray  # position in ``snapshot.assignments``
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
                assignment=sel.astype(np.int64),
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


def _eligible(batch: pa.RecordBatch) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int8]]:
    """Rows that may count, and why the others with a physiologic type do not.

    Returns (physiologic and timed, flag) where flag is 0 for a reading that counts,
    ``MANUAL_ENTRY`` or ``CLOCK_SUSPECT`` for one set aside by its flag (kept as evidence for
    the reason of a record that is not billable). Masks rather than filtered copies: copying
    the device ids of every batch costs more than the lookups it would save.
    """
    kind = batch.column("type")
    if pa.types.is_dictionary(kind.type):
        # Test the few distinct types, not every row (null indices give null: not eligible).
        known = pc.is_in(kind.dictionary.cast(pa.string()), value_set=PHYSIOLOGIC_TYPES)
        mask = known.take(kind.indices)
    else:
        mask = pc.is_in(kind.cast(pa.string()), value_set=PHYSIOLOGIC_TYPES)
    mask = pc.and_(mask, pc.is_valid(batch.column("measured_at")))
    physiologic = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), np.bool_)
    flag = np.zeros(len(physiologic), np.int8)
    # Bits: manual 1, clock-suspect 2 (both: MANUAL_AND_SUSPECT).
    for name, code in (("clock_suspect", CLOCK_SUSPECT), ("manual_entry", MANUAL_ENTRY)):
        col = _column_or_false(batch, name)
        if col is not None and col.true_count:
            flag[np.asarray(col.to_numpy(zero_copy_only=False), np.bool_)] |= code
    return physiologic, flag


def _utc(ts: pa.Array) -> pa.Array:
    """Timestamps as microseconds, UTC; naive columns from other tools are taken as UTC."""
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"measured_at must be a timestamp column, got {ts.type}")
    return pc.cast(ts, pa.timestamp("us", tz="UTC"))


def _device_codes(column: pa.Array) -> tuple[pa.Array, IntArray]:
    """A device-id column as (values, each row's index into them; -1 for a null id).

    A dictionary column (how Parquet stores repeated ids) is looked up through its dictionary,
    so each distinct id is hashed once per batch rather than once per row.
    """
    if pa.types.is_dictionary(column.type):
        codes = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
        return column.dictionary.cast(pa.string()), np.asarray(codes, np.int64)
    return column.cast(pa.string()), np.arange(len(column), dtype=np.int64)


_CAUSE_BITS = 2


class _Pairs(NamedTuple):
    """What one group of batches yields: counted (patient, day) pairs, not yet distinct, and
    readings set aside as packed (assignment, day, cause) keys with their reading counts."""

    patient: IntArray
    day: IntArray
    rejected: IntArray
    rejected_readings: IntArray


def _pack_rejected(assignment: IntArray, day: IntArray, cause: IntArray) -> IntArray:
    return (((assignment << _DAY_BITS) | day) << _CAUSE_BITS) | cause


def _group_devices_and_instants(
    group: list[pa.RecordBatch],
) -> tuple[pa.Array, IntArray, IntArray]:
    """The distinct device ids of some batches, each reading's code into them (-1 for none)
    and each reading's instant in UTC microseconds (0 for none)."""
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
    return devices, np.concatenate(codes), np.concatenate(micros_of)


def _group_pairs(
    group: list[pa.RecordBatch],
    slots: list[_Slot],
    clocks: ZoneClocks,
    first_day: int,
    last_day: int,
) -> _Pairs:
    """(patient, local day) of every qualifying reading of some batches (not yet distinct),
    and the physiologic readings of the patients' devices that were set aside."""
    marks = [_eligible(b) for b in group]
    physiologic = np.concatenate([m[0] for m in marks])
    empty = np.empty(0, np.int64)
    if not physiologic.any():
        return _Pairs(empty, empty, empty, empty)
    flag = np.concatenate([m[1] for m in marks])
    devices, code, micros = _group_devices_and_instants(group)
    patients: list[IntArray] = []
    days: list[IntArray] = []
    rejected: list[IntArray] = []
    # Readings outside their slot's assignment: set aside only if no other assignment of
    # the device claims them (checked after all slots, on these few rows).
    outside: list[tuple[IntArray, IntArray, IntArray]] = []
    positions: list[tuple[_Slot, IntArray]] = []
    matches: list[tuple[_Slot, IntArray, IntArray, IntArray, npt.NDArray[np.bool_]]] = []
    # One reading, one patient: when several assignments of a device claim a reading (their
    # patients' zones differ, so their local dates overlap in instants), the later one wins.
    contested = len(slots) > 1
    best = np.full(len(code), np.iinfo(np.int64).min, np.int64) if contested else None
    for slot in slots:
        found = pc.index_in(devices, value_set=slot.devices)
        if found.null_count == len(found):
            continue
        lookup = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64)
        position = np.where(code >= 0, lookup[code], -1)
        positions.append((slot, position))
        rows = np.flatnonzero(physiologic & (position >= 0))
        take = position[rows]
        zone = slot.zone[take]
        day = clocks.local_days(micros[rows], zone)
        # A reading belongs to the patient the device was lent to on the reading's local date.
        ok = (day >= slot.start[take]) & (day <= slot.end[take])
        matches.append((slot, rows, take, day, ok))
        if best is not None:
            claim = rows[ok]
            best[claim] = np.maximum(best[claim], _rank(slot, take[ok]))
    for slot, rows, take, day, ok in matches:
        window = (day >= first_day) & (day <= last_day)
        if not ok.all():
            away = np.flatnonzero(~ok & window)
            if len(away):
                outside.append((rows[away], slot.assignment[take[away]], day[away]))
        if best is not None:
            ok = ok & (best[rows] == _rank(slot, take))
        counted = ok & window
        why = flag[rows]
        set_aside = why != 0
        if set_aside.any():
            by_flag = counted & set_aside
            rejected.append(
                _pack_rejected(slot.assignment[take[by_flag]], day[by_flag], why[by_flag])
            )
            counted &= ~set_aside
        patients.append(slot.patient[take][counted])
        days.append(day[counted])
    if outside:
        rejected.append(_unclaimed(outside, positions, micros, clocks))
    if not patients and not rejected:
        return _Pairs(empty, empty, empty, empty)
    pairs_patient = np.concatenate(patients) if patients else empty
    pairs_day = np.concatenate(days) if days else empty
    keys = np.concatenate(rejected) if rejected else empty
    if len(keys):
        keys, counts = np.unique(keys, return_counts=True)
        return _Pairs(pairs_patient, pairs_day, keys, counts.astype(np.int64))
    return _Pairs(pairs_patient, pairs_day, empty, empty)


_ASSIGNMENT_BITS = 40


def _rank(slot: _Slot, take: IntArray) -> IntArray:
    """Order of assignments of one device: by start date, then registry position."""
    return (slot.start[take] << _ASSIGNMENT_BITS) | slot.assignment[take]


def _unclaimed(
    outside: list[tuple[IntArray, IntArray, IntArray]],
    positions: list[tuple[_Slot, IntArray]],
    micros: IntArray,
    clocks: ZoneClocks,
) -> IntArray:
    """Packed keys of readings (rows, assignment, local day) outside their assignment that no
    assignment of the device covers either: a device lent to someone else that day is not
    this patient's concern."""
    keys: list[IntArray] = []
    for rows, assignment, day in outside:
        claimed = np.zeros(len(rows), np.bool_)
        for slot, position in positions:
            at = position[rows]
            has = np.flatnonzero(at >= 0)
            if not len(has):
                continue
            other = at[has]
            local = clocks.local_days(micros[rows[has]], slot.zone[other])
            claimed[has] |= (local >= slot.start[other]) & (local <= slot.end[other])
        free = ~claimed
        cause = np.full(int(free.sum()), UNASSIGNED, np.int64)
        keys.append(_pack_rejected(assignment[free], day[free], cause))
    return np.concatenate(keys) if keys else np.empty(0, np.int64)


@dataclass(frozen=True, slots=True)
class SetAside:
    """Physiologic readings of one device of a patient on one local day that did not count
    (``cause``: one of ``CAUSES``), on a day nothing else counted for that patient."""

    day: date
    cause: str
    device_id: str
    readings: int
    self_reported: bool = False  # entered manually (not clock-suspect): counts for RTM


@dataclass(frozen=True)
class PatientDays:
    """Distinct days with data, sorted by patient then day (parallel arrays), and per patient
    the readings set aside on days without data (sorted by day), for the reasons."""

    index: PatientIndex
    patient: Int32Array
    day: Int32Array
    set_aside: Mapping[str, tuple[SetAside, ...]] = field(default_factory=dict)

    @staticmethod
    def key(patient: int, day: int) -> int:
        return (patient << _DAY_BITS) | day

    @cached_property
    def keys(self) -> IntArray:
        """(patient, day) packed into sorted integers, for range look-ups (made on demand)."""
        return (self.patient.astype(np.int64) << _DAY_BITS) | self.day


def distinct(keys: IntArray) -> IntArray:
    """The distinct values of ``keys``, sorted.

    By a sort: ``numpy.unique`` without its optional outputs hashes since NumPy 2.3, which
    on millions of day keys is about 70 times slower than sorting them (5-7 s against 0.07 s
    for 4.7M keys)."""
    out = np.sort(keys, kind="stable")  # runs already in order are merged, not sorted again
    if len(out) > 1:
        out = out[np.r_[True, out[1:] != out[:-1]]]
    return out


def _unpacked(keys: IntArray) -> tuple[Int32Array, Int32Array]:
    """Packed (patient, day) keys as their two columns, 32 bits each: a fleet's days with
    data are millions of rows, held for the whole run."""
    patient = (keys >> _DAY_BITS).astype(np.int32)
    day = (keys & ((1 << _DAY_BITS) - 1)).astype(np.int32)
    return patient, day


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

    Physiologic readings of a patient's devices set aside on a day without data (manual,
    clock-suspect, or on a day no assignment of the device covers) come back in
    ``set_aside``, for the reasons of records that are not billable. They are few, so this
    costs little: no second pass over the readings.
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
    clocks = ZoneClocks.of(zones, first, last) if span and zones else None
    # Distinct pairs: a patient x day bitmap when it is small (no hashing, no sorting),
    # otherwise sorted unique keys compacted as they grow.
    bitmap = (
        np.zeros(n_patients * span, np.bool_) if 0 < n_patients * span <= _BITMAP_CELLS else None
    )
    found: list[IntArray] = []
    rejected: list[IntArray] = []
    rejected_readings: list[IntArray] = []
    pending = 0
    for group in _grouped(batches):
        if not slots or clocks is None:
            continue
        pairs = _group_pairs(group, slots, clocks, first, last)
        if len(pairs.rejected):
            rejected.append(pairs.rejected)
            rejected_readings.append(pairs.rejected_readings)
        if bitmap is not None:
            bitmap[pairs.patient * span + (pairs.day - first)] = True
            continue
        found.append(distinct((pairs.patient << _DAY_BITS) | pairs.day))
        pending += len(found[-1])
        if pending > 4_000_000 and len(found) > 1:
            found = [distinct(np.concatenate(found))]
            pending = len(found[0])
    if bitmap is not None:
        cells = np.flatnonzero(bitmap)
        patient = (cells // span).astype(np.int32)
        cells %= span
        cells += first
        day = cells.astype(np.int32)
        del cells
        counted_keys = None
    else:
        counted_keys = distinct(np.concatenate(found)) if found else np.empty(0, np.int64)
        patient, day = _unpacked(counted_keys)
    set_aside = _set_aside(
        rejected, rejected_readings, snapshot, index, bitmap, counted_keys, first, span
    )
    return PatientDays(index, patient, day, set_aside)


def _set_aside(
    rejected: list[IntArray],
    readings: list[IntArray],
    snapshot: RegistrySnapshot,
    index: PatientIndex,
    bitmap: npt.NDArray[np.bool_] | None,
    counted_keys: IntArray | None,
    first: int,
    span: int,
) -> dict[str, tuple[SetAside, ...]]:
    """Set-aside readings per patient, summed over groups, without the days that counted
    anyway (a reading that did not count is no reason when the day has data)."""
    if not rejected:
        return {}
    keys = np.concatenate(rejected)
    counts = np.concatenate(readings)
    keys, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=counts).astype(np.int64)
    cause = keys & ((1 << _CAUSE_BITS) - 1)
    day = (keys >> _CAUSE_BITS) & ((1 << _DAY_BITS) - 1)
    assignment = keys >> (_CAUSE_BITS + _DAY_BITS)
    assignments = snapshot.assignments
    pos = index.position()
    patient = np.array([pos[assignments[i].patient_id] for i in assignment.tolist()], np.int64)
    if bitmap is not None:
        counted = bitmap[patient * span + (day - first)]
    else:
        assert counted_keys is not None
        probe = (patient << _DAY_BITS) | day
        at = np.searchsorted(counted_keys, probe)
        at = np.minimum(at, max(len(counted_keys) - 1, 0))
        counted = counted_keys[at] == probe if len(counted_keys) else np.zeros(len(probe), np.bool_)
    out: dict[str, list[SetAside]] = {}
    for a, d, c, n in zip(
        assignment[~counted].tolist(),
        day[~counted].tolist(),
        cause[~counted].tolist(),
        counts[~counted].tolist(),
        strict=True,
    ):
        held = assignments[a]
        out.setdefault(held.patient_id, []).append(
            SetAside(from_day_number(d), CAUSES[c], held.device_id, n, c == MANUAL_ENTRY)
        )
    return {
        p: tuple(sorted(v, key=lambda x: (x.day, x.cause, x.device_id))) for p, v in out.items()
    }


def with_self_reported(found: PatientDays) -> PatientDays:
    """The days with data of a program that counts self-reported data (RTM): a day with a
    manual entry from an assigned device counts too, and is then no reason of a record."""
    pos = found.index.position()
    extra = [
        (pos[pid], day_number(s.day))
        for pid, held in found.set_aside.items()
        for s in held
        if s.self_reported
    ]
    if not extra:
        return found
    keys = distinct(
        np.concatenate([found.keys, np.array([found.key(p, d) for p, d in extra], np.int64)])
    )
    patient, day = _unpacked(keys)
    counted = {(found.index.ids[p], d) for p, d in extra}
    set_aside = {
        pid: kept
        for pid, held in found.set_aside.items()
        if (kept := tuple(s for s in held if (pid, day_number(s.day)) not in counted))
    }
    return PatientDays(found.index, patient, day, set_aside)


def days_with_data(found: PatientDays, patient_id: str, first: date, last: date) -> list[date]:
    """The patient's days with data (from assigned devices) on ``first .. last``."""
    if len(found.day) == 0 or last < first:
        return []
    at = found.index.position().get(patient_id)
    if at is None:
        return []
    keys = found.keys
    lo_key, hi_key = found.key(at, day_number(first)), found.key(at, day_number(last))
    a, b = np.searchsorted(keys, [lo_key, hi_key + 1])
    return [from_day_number(int(d)) for d in found.day[a:b].tolist()]


def days_before_consent(found: PatientDays, episode: Episode, as_of: date) -> list[date]:
    """Days with data of the patient inside the episode but before its consent date."""
    consent = episode.consent_date
    if consent is None or consent <= episode.start_date:
        return []
    hi = min(consent - timedelta(days=1), as_of)
    if episode.end_date is not None:
        hi = min(hi, episode.end_date)
    return days_with_data(found, episode.patient_id, episode.start_date, hi)
