"""What the fleet sends: BP and weight readings, batched syncs, care-team activity.

Pure and deterministic: the readings depend only on the fleet (its seed); the wire format
only changes how they are encoded and which reading ids OMH clouds use. ``until`` (the
clock, passed in) drops anything not yet sent at that instant, so a window that ends today
never sends readings from the future.

Adherence profiles (per patient, see ``fleet.py``):

- ``steady``: readings on nearly every day;
- ``fading``: the chance of measuring falls from 95 % to about 25 % across the window;
- ``weekend_gaps``: nothing on Saturdays and Sundays (patient's local calendar);
- ``drop_out``: steady, then nothing from a day 15-45 % into the window (at least two days
  of data), so its first 30-day period usually ends short of 16 days;
- ``store_and_forward``: measures daily but the cellular link is down for 2-4 days at a
  time; the stored readings arrive in one batched sync when it comes back.

Care-team activity per patient and calendar month follows the patient's management tier:
``full`` (>= 20 interactive minutes), ``short`` (10-19 minutes, one call),
``no_interactive`` (reviews and messages only) and ``none``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson

from rpmpipe.simulators.fleet import Device, Fleet, Patient
from rpmpipe.simulators.payloads import FORMATS, SimReading, encode_readings, reading_id_for

WIRE_FORMATS = (*FORMATS, "mixed")
STAFF = ("RN-01", "RN-02", "RN-03", "RN-04")
LB_PER_KG = 2.20462


def after(at: datetime, delta: timedelta) -> datetime:
    """``at`` plus ``delta`` of elapsed time, in ``at``'s zone.

    Plain ``+`` on a zoned datetime is wall-clock arithmetic, which is off by an hour across a
    DST change; device clocks and sends count real seconds.
    """
    zone = at.tzinfo
    return (at.astimezone(UTC) + delta).astimezone(zone)


@dataclass(frozen=True)
class Delivery:
    """One publish of a device (or its cloud): a single reading or a batched sync."""

    send_at: datetime  # UTC
    device_id: str
    fmt: str
    readings: tuple[SimReading, ...]
    batched: bool = False
    batch_style: str = "array"  # "array" or "object" ({"readings": [...]})
    fault: str | None = None
    corrupt: bool = False  # the payload is cut short: not JSON


@dataclass(frozen=True)
class SimActivity:
    activity_id: str
    patient_id: str
    staff_id: str
    started_at: datetime  # patient-local, aware
    minutes: int
    kind: str
    interactive: bool
    program: str = "RPM"
    performer: str = "clinical_staff"

    @property
    def send_at(self) -> datetime:
        """Care-management apps log the entry when the work is done."""
        return after(self.started_at, timedelta(minutes=self.minutes)).astimezone(UTC)

    def payload(self) -> dict[str, object]:
        body: dict[str, object] = {
            "activity_id": self.activity_id,
            "patient_id": self.patient_id,
            "staff_id": self.staff_id,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "minutes": self.minutes,
            "kind": self.kind,
            "interactive": self.interactive,
        }
        if self.program != "RPM":  # left out, an activity is RPM time of clinical staff
            body["program"] = self.program
        if self.performer != "clinical_staff":
            body["performer"] = self.performer
        return body


@dataclass(frozen=True)
class Traffic:
    deliveries: tuple[Delivery, ...]
    activities: tuple[SimActivity, ...]


@dataclass(frozen=True)
class SimMessage:
    """One MQTT publish, in the order the simulator sends them."""

    topic: str
    payload: bytes
    send_at: datetime  # simulated send time, UTC
    kind: str  # reading | batch | activity
    fmt: str  # native | omh | fhir | activity
    device_id: str | None = None
    reading_ids: tuple[str, ...] = ()
    reading_types: tuple[str, ...] = ()
    fault: str | None = None
    qos: int = field(default=1)


def device_formats(fleet: Fleet, fmt: str) -> dict[str, str]:
    """The wire format of each device: ``fmt``, or for ``mixed`` a rotation per device."""
    if fmt not in WIRE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(WIRE_FORMATS)}")
    if fmt != "mixed":
        return {d.device_id: fmt for d in fleet.devices}
    return {d.device_id: FORMATS[i % len(FORMATS)] for i, d in enumerate(fleet.devices)}


def _measure_probability(profile: str, day_no: int, days: int, day: date, drop_day: int) -> float:
    if profile == "fading":
        return 0.95 - 0.7 * day_no / max(days - 1, 1)
    if profile == "weekend_gaps":
        return 0.0 if day.weekday() >= 5 else 0.95
    if profile == "drop_out":
        return 0.95 if day_no < drop_day else 0.0
    return 0.95 if profile == "steady" else 0.9


def _at(day: date, minute_of_day: int, second: int, zone: ZoneInfo) -> datetime:
    hour, minute = divmod(minute_of_day, 60)
    return datetime.combine(day, time(hour, minute, second), tzinfo=zone)


def _active_days(fleet: Fleet, patient: Patient) -> list[date]:
    first = fleet.enrollment_of(patient.patient_id).start_date
    return [first + timedelta(days=k) for k in range((fleet.end - first).days + 1)]


def _patient_readings(fleet: Fleet, patient: Patient, fmt_of: dict[str, str]) -> list[SimReading]:
    rng = random.Random(f"rpmpipe-traffic:{fleet.seed}:{patient.patient_id}")
    zone = ZoneInfo(patient.timezone)
    days = _active_days(fleet, patient)
    drop_day = max(2, int(len(days) * rng.uniform(0.15, 0.45)))
    devices = fleet.devices_of(patient.patient_id)
    systolic0 = min(max(rng.gauss(138, 12), 108), 172)
    diastolic0 = min(max(rng.gauss(systolic0 * 0.6, 5), 62), 104)
    pulse0 = rng.gauss(72, 7)
    trend = rng.gauss(-0.12, 0.08)  # mmHg per day: treatment slowly working, or not
    irregular_p = 0.15 if "I48.91" in patient.icd10_codes else 0.02
    weight0 = min(max(rng.gauss(92, 16), 52), 165)
    drift = rng.gauss(0.0, 0.04)  # kg per day
    counters = {d.device_id: 0 for d in devices}
    out: list[SimReading] = []

    def next_id(device: Device) -> str:
        counters[device.device_id] += 1
        return reading_id_for(
            device.device_id, counters[device.device_id], fmt_of[device.device_id]
        )

    # Every value is drawn whether or not the patient measures, so the random stream (and so
    # every later reading) does not depend on adherence.
    for day_no, day in enumerate(days):
        p = _measure_probability(patient.profile, day_no, len(days), day, drop_day)
        day_shift = rng.gauss(0, 4)
        for device in devices:
            measures = rng.random() < p
            if device.kind == "bp_cuff":
                evening = rng.random() < 0.6
                slots = [(390 + rng.randint(0, 90), 4.0)]  # morning surge
                if evening:
                    slots.append((1170 + rng.randint(0, 120), -3.0))
                for minute_of_day, surge in slots:
                    systolic = systolic0 + trend * day_no + day_shift + surge + rng.gauss(0, 5)
                    diastolic = diastolic0 + 0.5 * (trend * day_no + day_shift) + rng.gauss(0, 3)
                    pulse = pulse0 + rng.gauss(0, 4)
                    irregular = rng.random() < irregular_p
                    second = rng.randint(0, 59)
                    if not measures:
                        continue
                    out.append(
                        SimReading(
                            device_id=device.device_id,
                            patient_id=patient.patient_id,
                            reading_id=next_id(device),
                            type="blood_pressure",
                            measured_at=_at(day, minute_of_day, second, zone),
                            systolic=round(systolic),
                            diastolic=min(round(diastolic), round(systolic) - 20),
                            pulse=round(pulse),
                            irregular_heartbeat=irregular,
                        )
                    )
            else:
                minute_of_day = 360 + rng.randint(0, 60)
                kg = weight0 + drift * day_no + rng.gauss(0, 0.35)
                second = rng.randint(0, 59)
                if not measures:
                    continue
                value = round(kg * LB_PER_KG, 1) if device.unit == "lb" else round(kg, 1)
                out.append(
                    SimReading(
                        device_id=device.device_id,
                        patient_id=patient.patient_id,
                        reading_id=next_id(device),
                        type="body_weight",
                        measured_at=_at(day, minute_of_day, second, zone),
                        weight=value,
                        unit=device.unit,
                    )
                )
    return out


def _deliveries(
    fleet: Fleet,
    patient: Patient,
    readings: list[SimReading],
    fmt_of: dict[str, str],
    device_index: dict[str, int],
) -> list[Delivery]:
    rng = random.Random(f"rpmpipe-delivery:{fleet.seed}:{patient.patient_id}")
    out: list[Delivery] = []
    if patient.profile != "store_and_forward":
        for r in readings:
            latency = timedelta(seconds=rng.randint(3, 120))
            out.append(
                Delivery(
                    after(r.measured_at, latency).astimezone(UTC),
                    r.device_id,
                    fmt_of[r.device_id],
                    (r,),
                )
            )
        return out
    zone = ZoneInfo(patient.timezone)
    days = _active_days(fleet, patient)
    for device in fleet.devices_of(patient.patient_id):
        # The link comes back every 3-5 days around midday; the last sync closes the window.
        syncs: list[datetime] = []
        k = rng.randint(2, 4)
        while k < len(days):
            syncs.append(_at(days[k], 660 + rng.randint(0, 180), rng.randint(0, 59), zone))
            k += rng.randint(3, 5)
        syncs.append(_at(days[-1], 1410, 0, zone))
        style = "array" if device_index[device.device_id] % 2 == 0 else "object"
        pending: list[SimReading] = []
        mine = iter(r for r in readings if r.device_id == device.device_id)
        upcoming = next(mine, None)
        for sync in syncs:
            while upcoming is not None and upcoming.measured_at < sync:
                pending.append(upcoming)
                upcoming = next(mine, None)
            if pending:
                out.append(
                    Delivery(
                        sync.astimezone(UTC),
                        device.device_id,
                        fmt_of[device.device_id],
                        tuple(pending),
                        batched=True,
                        batch_style=style,
                    )
                )
                pending = []
    return out


# (kind, interactive, minutes low, minutes high) per management tier.
_TIER_PLANS: dict[str, tuple[tuple[str, bool, int, int], ...]] = {
    # Interactive minutes alone reach 20, so either way of counting agrees.
    "full": (
        ("data_review", False, 5, 9),
        ("phone_call", True, 11, 15),
        ("video_visit", True, 10, 16),
        ("care_plan_update", False, 4, 8),
        ("secure_message", False, 2, 3),
    ),
    # 10-19 minutes in total, interactive included.
    "short": (("data_review", False, 3, 5), ("phone_call", True, 10, 13)),
    # Time spent, but no real-time two-way contact: not billable for management.
    "no_interactive": (
        ("data_review", False, 8, 12),
        ("care_plan_update", False, 6, 10),
        ("secure_message", False, 2, 4),
    ),
    "none": (),
}


def _month_index(start: date, day: date) -> int:
    return (day.year - start.year) * 12 + day.month - start.month


def _activities(fleet: Fleet, patient: Patient) -> list[SimActivity]:
    rng = random.Random(f"rpmpipe-activity:{fleet.seed}:{patient.patient_id}")
    zone = ZoneInfo(patient.timezone)
    by_month: dict[int, list[date]] = {}
    for day in _active_days(fleet, patient):
        by_month.setdefault(_month_index(fleet.start, day), []).append(day)
    out: list[SimActivity] = []
    number = patient.patient_id.split("-")[-1]
    for month, month_days in sorted(by_month.items()):
        tier = patient.management_tiers[month % len(patient.management_tiers)]
        plan = _TIER_PLANS[tier]
        picks = sorted(rng.choice(month_days) for _ in plan)
        for k, ((kind, interactive, low, high), day) in enumerate(zip(plan, picks, strict=True)):
            started = _at(day, 540 + rng.randint(0, 420), 0, zone)
            out.append(
                SimActivity(
                    activity_id=f"A-{number}-{day:%Y%m}-{k + 1:02d}",
                    patient_id=patient.patient_id,
                    staff_id="MD-01" if kind == "care_plan_update" else rng.choice(STAFF),
                    started_at=started,
                    minutes=rng.randint(low, high),
                    kind=kind,
                    interactive=interactive,
                )
            )
    return out


# Care-management time per month: (program, performer, kind, interactive, low, high) entries.
_CARE_PLANS: dict[str, tuple[tuple[str, str, bool, int, int], ...]] = {
    # Two staff calls and a care-plan review: 20-40 minutes, 99490 and sometimes 99439.
    "CCM": (
        ("clinical_staff", "phone_call", True, 9, 16),
        ("clinical_staff", "data_review", False, 6, 12),
        ("clinical_staff", "care_plan_update", False, 5, 12),
    ),
    # The practitioner's own time: 99424 at 30 minutes.
    "PCM": (
        ("physician", "video_visit", True, 15, 22),
        ("physician", "care_plan_update", False, 10, 16),
    ),
}


def _care_activities(fleet: Fleet, patient: Patient) -> list[SimActivity]:
    """CCM or PCM time of a patient enrolled in one, a few entries each calendar month."""
    out: list[SimActivity] = []
    zone = ZoneInfo(patient.timezone)
    number = patient.patient_id.split("-")[-1]
    for enrollment in fleet.care_programs_of(patient.patient_id):
        rng = random.Random(f"rpmpipe-care:{fleet.seed}:{patient.patient_id}:{enrollment.program}")
        first = max(fleet.start, enrollment.start_date)
        days = [first + timedelta(days=d) for d in range((fleet.end - first).days + 1)]
        by_month: dict[int, list[date]] = {}
        for day in days:
            by_month.setdefault(_month_index(fleet.start, day), []).append(day)
        for month_days in by_month.values():
            plan = _CARE_PLANS[enrollment.program]
            picks = sorted(rng.choice(month_days) for _ in plan)
            for k, ((performer, kind, talk, low, high), day) in enumerate(
                zip(plan, picks, strict=True)
            ):
                out.append(
                    SimActivity(
                        activity_id=f"A-{number}-{day:%Y%m}-{enrollment.program}{k + 1}",
                        patient_id=patient.patient_id,
                        staff_id="MD-01" if performer == "physician" else rng.choice(STAFF),
                        started_at=_at(day, 540 + rng.randint(0, 420), 0, zone),
                        minutes=rng.randint(low, high),
                        kind=kind,
                        interactive=talk,
                        program=enrollment.program,
                        performer=performer,
                    )
                )
    return out


def plan_traffic(fleet: Fleet, fmt: str = "native", until: datetime | None = None) -> Traffic:
    """Every delivery and care activity of the fleet's window, in send order.

    ``until`` (aware) drops what would only be sent after that instant.
    """
    fmt_of = device_formats(fleet, fmt)
    device_index = {d.device_id: i for i, d in enumerate(fleet.devices)}
    deliveries: list[Delivery] = []
    activities: list[SimActivity] = []
    for patient in fleet.patients:
        readings = _patient_readings(fleet, patient, fmt_of)
        deliveries.extend(_deliveries(fleet, patient, readings, fmt_of, device_index))
        activities.extend(_activities(fleet, patient))
        activities.extend(_care_activities(fleet, patient))
    if until is not None:
        deliveries = [d for d in deliveries if d.send_at <= until]
        activities = [a for a in activities if a.send_at <= until]
    deliveries.sort(key=lambda d: d.send_at)
    activities.sort(key=lambda a: a.send_at)
    return Traffic(tuple(deliveries), tuple(activities))


def reading_topic(topic_root: str, device_id: str) -> str:
    return f"{topic_root}/devices/{device_id}/readings"


def to_messages(traffic: Traffic, topic_root: str) -> list[SimMessage]:
    """Encode deliveries and activities into MQTT messages, sorted by simulated send time."""
    keyed: list[tuple[datetime, int, SimMessage]] = []
    for n, d in enumerate(traffic.deliveries):
        payload = encode_readings(d.readings, d.fmt, batched=d.batched, batch_style=d.batch_style)
        if d.corrupt:
            # A truncated upload: what a dropped cellular connection leaves behind.
            payload = payload[: max(1, len(payload) // 2)]
        keyed.append(
            (
                d.send_at,
                n,
                SimMessage(
                    topic=reading_topic(topic_root, d.device_id),
                    payload=payload,
                    send_at=d.send_at,
                    kind="batch" if d.batched else "reading",
                    fmt=d.fmt,
                    device_id=d.device_id,
                    reading_ids=tuple(r.reading_id for r in d.readings),
                    reading_types=tuple(r.type for r in d.readings),
                    fault=d.fault,
                ),
            )
        )
    offset = len(keyed)
    for n, a in enumerate(traffic.activities):
        keyed.append(
            (
                a.send_at,
                offset + n,
                SimMessage(
                    topic=f"{topic_root}/activities",
                    payload=orjson.dumps(a.payload()),
                    send_at=a.send_at,
                    kind="activity",
                    fmt="activity",
                ),
            )
        )
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in keyed]
