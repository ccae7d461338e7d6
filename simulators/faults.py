"""What real device fleets get wrong, injected on purpose, with a manifest of every fault.

``inject_faults`` is pure and deterministic (seeded). It takes clean ``Traffic`` and returns
traffic with faults plus a ``FaultManifest`` naming, for each fault, its kind, topic, device
and reading ids, and what the pipeline is expected to do with it. About one fault of each
kind per ten patients (at least one, when the traffic has a reading to build it on):

=====================  ==================================================  =========================
kind                   what is sent                                        expected
=====================  ==================================================  =========================
duplicate              the same message again, 20 s to 3 h later           stored once
late_sync              a reading arriving 2-5 days after it was measured   stored, counts its day
out_of_order           three readings of a device arriving newest first    stored
clock_skew             an extra reading whose ``measured_at`` is 12-36 h   stored, clock_suspect,
                       past the horizon (device clock set wrong)           not counted
malformed_json         a truncated payload                                 quarantined
naive_timestamp        ``measured_at`` without offset                      quarantined
diastolic_ge_systolic  diastolic above systolic                            quarantined
unknown_unit           a weight in unit ``st``                             quarantined
unregistered_device    readings from a device id not in the registry       not counted
burst                  25 readings of one device within two minutes        stored, the day once
=====================  ==================================================  =========================

The clock skew is large on purpose. The horizon is ``until`` (the CLI passes the start of the
current UTC day, so that a seed gives the same messages all day), else the last send time of
the traffic; the skewed reading's ``measured_at`` lies 36-60 hours past it. A replay at
``--speed max`` delivers at wall-clock "now", less than 24 hours past the horizon, so the
pipeline receives it at least 12 hours before its ``measured_at``: far more than the
10-minute tolerance. A window far in the past replayed today does not show the skew.
Injected readings have their own reading ids (sequence numbers from 90001), so they never
collide with the clean readings.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from rpmpipe.simulators.fleet import Fleet
from rpmpipe.simulators.payloads import SimReading, reading_id_for
from rpmpipe.simulators.traffic import Delivery, Traffic, after, reading_topic

FAULT_KINDS = (
    "duplicate",
    "late_sync",
    "out_of_order",
    "clock_skew",
    "malformed_json",
    "naive_timestamp",
    "diastolic_ge_systolic",
    "unknown_unit",
    "unregistered_device",
    "burst",
)

EXPECTED = {
    "duplicate": "stored once (dedup by reading_id)",
    "late_sync": "stored; counts on the day it was measured",
    "out_of_order": "stored; arrival order does not matter",
    "clock_skew": "stored with clock_suspect; not counted",
    "malformed_json": "quarantined (bad JSON)",
    "naive_timestamp": "quarantined (timestamp without offset)",
    "diastolic_ge_systolic": "quarantined (diastolic >= systolic)",
    "unknown_unit": "quarantined (unknown unit)",
    "unregistered_device": "not counted (device not in registry)",
    "burst": "stored; the day counts once",
}

BURST_SIZE = 25
_FAULT_SEQUENCE_START = 90001


@dataclass(frozen=True)
class InjectedFault:
    kind: str
    topic: str
    device_id: str
    reading_ids: tuple[str, ...]
    detail: str

    @property
    def expected(self) -> str:
        return EXPECTED[self.kind]


@dataclass(frozen=True)
class FaultManifest:
    seed: int
    faults: tuple[InjectedFault, ...]

    def counts(self) -> dict[str, int]:
        out = {kind: 0 for kind in FAULT_KINDS}
        for f in self.faults:
            out[f.kind] += 1
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "seed": self.seed,
                "counts": self.counts(),
                "faults": [
                    {
                        "kind": f.kind,
                        "topic": f.topic,
                        "device_id": f.device_id,
                        "reading_ids": list(f.reading_ids),
                        "expected": f.expected,
                        "detail": f.detail,
                    }
                    for f in self.faults
                ],
            },
            option=orjson.OPT_INDENT_2,
        )


class _Ids:
    """Fresh reading ids for injected readings, per device."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, device_id: str, fmt: str) -> str:
        n = self._next.get(device_id, _FAULT_SEQUENCE_START)
        self._next[device_id] = n + 1
        return reading_id_for(device_id, n, fmt)


def inject_faults(
    traffic: Traffic, fleet: Fleet, topic_root: str, until: datetime | None = None
) -> tuple[Traffic, FaultManifest]:
    """``traffic`` with every fault kind injected, and the manifest of what was injected."""
    rng = random.Random(f"rpmpipe-faults:{fleet.seed}")
    per_kind = max(1, len(fleet.patients) // 10)
    ids = _Ids()
    deliveries = list(traffic.deliveries)
    added: list[Delivery] = []
    faults: list[InjectedFault] = []
    horizon = until or max((d.send_at for d in deliveries), default=None)

    def clamp(value: datetime) -> datetime:
        return min(value, horizon) if horizon is not None else value

    def note(kind: str, device_id: str, reading_ids: tuple[str, ...], detail: str) -> None:
        faults.append(
            InjectedFault(
                kind, reading_topic(topic_root, device_id), device_id, reading_ids, detail
            )
        )

    # Faults on clean single-reading deliveries never share a delivery, so each is traceable.
    singles = [i for i, d in enumerate(deliveries) if not d.batched and d.fault is None]
    rng.shuffle(singles)
    used: set[int] = set()

    def take(
        predicate: Callable[[Delivery], bool] | None = None, count: int = per_kind
    ) -> list[int]:
        picked = []
        for i in singles:
            if i in used or (predicate is not None and not predicate(deliveries[i])):
                continue
            picked.append(i)
            used.add(i)
            if len(picked) == count:
                break
        return picked

    for i in take():
        d = deliveries[i]
        delay = timedelta(seconds=rng.randint(20, 3 * 3600))
        added.append(dataclasses.replace(d, send_at=clamp(d.send_at + delay), fault="duplicate"))
        note("duplicate", d.device_id, _ids_of(d), f"resent {int(delay.total_seconds())} s later")

    if deliveries:
        middle = deliveries[0].send_at + (deliveries[-1].send_at - deliveries[0].send_at) / 2
        for i in take(lambda d: d.send_at < middle):
            d = deliveries[i]
            lag = timedelta(days=rng.randint(2, 5), minutes=rng.randint(0, 600))
            deliveries[i] = dataclasses.replace(
                d, send_at=clamp(d.send_at + lag), fault="late_sync"
            )
            note("late_sync", d.device_id, _ids_of(d), f"arrives {lag} after measurement")

    runs: dict[str, list[int]] = {}
    for i, d in enumerate(deliveries):
        if not d.batched:
            runs.setdefault(d.device_id, []).append(i)
    order = sorted(runs)
    rng.shuffle(order)
    for _ in range(per_kind):
        triple = _consecutive_triple(runs, order, set(singles) - used)
        if triple is None:
            break
        first, second, third = (deliveries[i] for i in triple)
        used.update(triple)
        deliveries[triple[1]] = dataclasses.replace(
            second, send_at=third.send_at + timedelta(seconds=5), fault="out_of_order"
        )
        deliveries[triple[0]] = dataclasses.replace(
            first, send_at=third.send_at + timedelta(seconds=10), fault="out_of_order"
        )
        note(
            "out_of_order",
            first.device_id,
            _ids_of(third) + _ids_of(second) + _ids_of(first),
            "reading ids listed in arrival order (newest first)",
        )

    # Late in the window, and ahead of the horizon itself: see the module docstring.
    late = deliveries[int(len(deliveries) * 0.8)].send_at if deliveries else None
    for i in take(
        lambda d: d.readings[0].type == "blood_pressure" and (late is None or d.send_at >= late)
    ):
        d = deliveries[i]
        assert horizon is not None
        skew = (horizon - d.send_at) + timedelta(
            hours=rng.randint(36, 60), minutes=rng.randint(0, 59)
        )
        r = _fresh(
            d.readings[0],
            ids(d.device_id, d.fmt),
            measured_at=after(d.readings[0].measured_at, skew),
        )
        added.append(
            dataclasses.replace(
                d, send_at=d.send_at + timedelta(seconds=30), readings=(r,), fault="clock_skew"
            )
        )
        note("clock_skew", d.device_id, (r.reading_id,), f"device clock {skew} ahead")

    malformed: tuple[tuple[str, str], ...] = (
        ("malformed_json", ""),
        ("naive_timestamp", ""),
        ("diastolic_ge_systolic", "blood_pressure"),
        ("unknown_unit", "body_weight"),
    )
    for kind, needs in malformed:
        for i in take(_of_type(needs)):
            d = deliveries[i]
            base = d.readings[0]
            rid = ids(d.device_id, d.fmt)
            corrupt = False
            if kind == "malformed_json":
                r, corrupt = _fresh(base, rid), True
            elif kind == "naive_timestamp":
                r = _fresh(base, rid, measured_at=base.measured_at.replace(tzinfo=None))
            elif kind == "diastolic_ge_systolic":
                r = _fresh(base, rid, diastolic=(base.systolic or 120) + 6)
            else:
                kg = (base.weight or 0) / (2.20462 if base.unit == "lb" else 1)
                r = _fresh(base, rid, weight=round(kg / 6.35029, 1), unit="st")
            added.append(
                dataclasses.replace(
                    d,
                    send_at=d.send_at + timedelta(seconds=60),
                    readings=(r,),
                    corrupt=corrupt,
                    fault=kind,
                )
            )
            note(kind, d.device_id, (rid,), "extra message beside the clean reading")

    for n, i in enumerate(take(count=max(1, per_kind // 2))):
        d = deliveries[i]
        stranger = f"{d.device_id[:2]}-9{n:05d}"
        base = d.readings[0]
        rids = []
        # Going back in time keeps every send before the horizon.
        for day in range(3):
            back = timedelta(days=2 - day)
            rid = reading_id_for(stranger, day + 1, "native")
            rids.append(rid)
            r = dataclasses.replace(
                base,
                device_id=stranger,
                patient_id="",
                reading_id=rid,
                measured_at=after(base.measured_at, -back),
            )
            added.append(
                Delivery(d.send_at - back, stranger, "native", (r,), fault="unregistered_device")
            )
        note("unregistered_device", stranger, tuple(rids), "device id not in the registry")

    for i in take(lambda d: d.readings[0].type == "blood_pressure", count=1):
        d = deliveries[i]
        base = d.readings[0]
        rids = []
        for k in range(BURST_SIZE):
            step = timedelta(seconds=4 * (k + 1))
            r = _fresh(
                base,
                ids(d.device_id, d.fmt),
                measured_at=after(base.measured_at, step),
                systolic=(base.systolic or 120) + rng.randint(-6, 6),
            )
            rids.append(r.reading_id)
            added.append(
                dataclasses.replace(d, send_at=d.send_at + step, readings=(r,), fault="burst")
            )
        note("burst", d.device_id, tuple(rids), f"{BURST_SIZE} readings within two minutes")

    added = [dataclasses.replace(d, send_at=clamp(d.send_at)) for d in added]
    merged = sorted(deliveries + added, key=lambda d: d.send_at)
    return Traffic(tuple(merged), traffic.activities), FaultManifest(fleet.seed, tuple(faults))


def _of_type(reading_type: str) -> Callable[[Delivery], bool] | None:
    if not reading_type:
        return None
    return lambda d: d.readings[0].type == reading_type


def _ids_of(d: Delivery) -> tuple[str, ...]:
    return tuple(r.reading_id for r in d.readings)


def _fresh(base: SimReading, reading_id: str, **changes: object) -> SimReading:
    return dataclasses.replace(base, reading_id=reading_id, **changes)  # type: ignore[arg-type]


def _consecutive_triple(
    runs: dict[str, list[int]], devices: list[str], free: set[int]
) -> tuple[int, int, int] | None:
    """Three consecutive free single deliveries of one device (in send order)."""
    for device_id in devices:
        run = runs[device_id]
        for a in range(len(run) // 2, len(run) - 2):
            triple = (run[a], run[a + 1], run[a + 2])
            if all(i in free for i in triple):
                return triple
    return None
