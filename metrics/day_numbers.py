"""Dates as day numbers (days since 1970) and UTC instants as patient-local day numbers (pure).

Every stage of the metrics counts in day numbers: readings' days with data, care time's
months, enrollments and device assignments. An instant's local day is found by
:class:`ZoneClocks`: the UTC offset of each zone tabulated per quarter hour over the days
that matter, so a column of instants is converted in a few numpy passes whatever the zones
of its rows; the quarter hours in which a zone's offset changes (time-zone transitions fall on
quarter hours) are converted exactly by Arrow's tz database.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

IntArray = npt.NDArray[np.int64]

DAY_US = 86_400 * 10**6
_QUARTER_HOUR_US = 15 * 60 * 10**6


class ZoneClock:
    """UTC microseconds -> local day numbers for one zone over a window, in numpy.

    The UTC offset is tabulated per quarter hour of the window (``first_day`` - 2 to
    ``last_day`` + 3, in UTC); a quarter hour whose two ends disagree is converted exactly by
    Arrow. Rows outside the window get -1 (they lie more than a day outside its days).
    """

    def __init__(self, zone: str, first_day: int, last_day: int) -> None:
        self.zone = zone
        self.base = (first_day - 2) * DAY_US
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
        days = np.where(inside, (micros + self.offset[b]) // DAY_US, -1)
        odd = inside & self.exact[b]
        if odd.any():
            stamps = pa.array(micros[odd], pa.timestamp("us", tz=self.zone))
            local = pc.cast(pc.cast(pc.local_timestamp(stamps), pa.date32()), pa.int32())
            days[odd] = local.to_numpy()
        return days


class ZoneClocks:
    """Every zone's clock stacked: one gather converts a column whatever the zones of its
    rows (rather than one masked pass over the column per zone)."""

    def __init__(self, clocks: Sequence[ZoneClock]) -> None:
        self.clocks = list(clocks)
        self.base = clocks[0].base
        self.buckets = clocks[0].buckets
        self.offset = np.concatenate([c.offset for c in clocks])
        self.exact = np.concatenate([c.exact for c in clocks])

    @classmethod
    def of(cls, zones: Sequence[str], first_day: int, last_day: int) -> ZoneClocks:
        """The clocks of ``zones`` (IANA names; a row's zone is its index here) over
        ``first_day .. last_day``."""
        return cls([ZoneClock(z, first_day, last_day) for z in zones])

    def local_days(self, micros: IntArray, zone: IntArray) -> IntArray:
        """Each instant's local day number in its row's zone (-1 outside the window)."""
        bucket = (micros - self.base) // _QUARTER_HOUR_US
        inside = (bucket >= 0) & (bucket < self.buckets)
        cell = zone * self.buckets + np.where(inside, bucket, 0)
        days = np.where(inside, (micros + self.offset[cell]) // DAY_US, -1)
        odd = inside & self.exact[cell]
        if odd.any():
            for z in np.unique(zone[odd]).tolist():
                sel = odd & (zone == z)
                days[sel] = self.clocks[z].local_days(micros[sel])
        return days


def local_days(at: IntArray, patient: IntArray, zones: Sequence[str]) -> IntArray:
    """Day numbers of UTC microseconds ``at`` in the zone of each row's patient (``patient``:
    an index into ``zones``, each patient's IANA zone name), over the instants' own days."""
    if not len(at):
        return np.empty(0, np.int64)
    names = sorted(set(zones))
    code = {z: k for k, z in enumerate(names)}
    zone = np.array([code[z] for z in zones], np.int64)[patient]
    first, last = int(at.min()) // DAY_US, int(at.max()) // DAY_US
    return ZoneClocks.of(names, first, last).local_days(at, zone)
