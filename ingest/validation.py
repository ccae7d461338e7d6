"""Turning loosely typed payload fields into a validated :class:`Reading` (pure).

Every decoder funnels into :func:`make_reading`, so the physiologic ranges, the time zone
rule, the identifier rules and the clock-skew flag are applied the same way to every format.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rpmpipe.errors import DecodeError
from rpmpipe.records import EARLIEST_DATA_TIME, READING_TYPES, Reading

# Identifiers end up in logs, Parquet and file listings: a conservative alphabet keeps
# path-like ("../x"), control and whitespace characters out.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
DEVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")

# Plausible physiologic ranges (inclusive). Outside them the value is a device or typing error.
RANGES: dict[str, tuple[float, float]] = {
    "systolic_mmhg": (50.0, 300.0),
    "diastolic_mmhg": (20.0, 200.0),
    "pulse_bpm": (20.0, 300.0),
    "weight_kg": (0.5, 500.0),
    "spo2_pct": (50.0, 100.0),
    "glucose_mg_dl": (10.0, 1000.0),
}

# The measurement each type must carry.
REQUIRED: dict[str, tuple[str, ...]] = {
    "blood_pressure": ("systolic_mmhg", "diastolic_mmhg"),
    "body_weight": ("weight_kg",),
    "spo2": ("spo2_pct",),
    "blood_glucose": ("glucose_mg_dl",),
    "heart_rate": ("pulse_bpm",),
}

# Keys are lower case (units are matched case-insensitively): UCUM codes (kg, g, [lb_av],
# [oz_av], [stone_av]) and the plain names native and Open mHealth payloads use.
_LB = 0.45359237
WEIGHT_TO_KG = {
    "kg": 1.0,
    "g": 0.001,
    "lb": _LB,
    "lbs": _LB,
    "[lb_av]": _LB,
    "oz": _LB / 16,
    "[oz_av]": _LB / 16,
    "[stone_av]": _LB * 14,
}
GLUCOSE_TO_MG_DL = {"mg/dl": 1.0, "mmol/l": 18.0156}

# Readings before this are not from a connected device of ours.
EARLIEST = EARLIEST_DATA_TIME

# A date alone (FHIR allows YYYY, YYYY-MM and YYYY-MM-DD where a dateTime is expected).
_DATE_ONLY_RE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?|\d{8}")


@dataclass(slots=True)
class Fields:
    """What a decoder extracted from one item, before validation.

    A transient builder, not a stored value: left unfrozen because it is built once per
    message on the hot path, where frozen ``__init__`` costs show.
    """

    device_id: object
    type: object
    measured_at: object
    reading_id: object = None
    manual_entry: object = False
    source_format: str = "native"
    systolic_mmhg: object = None
    diastolic_mmhg: object = None
    pulse_bpm: object = None
    weight_kg: object = None
    spo2_pct: object = None
    glucose_mg_dl: object = None
    irregular_heartbeat: object = None
    extra: str | None = None
    # A device named by a field that is not an identity (Open mHealth source_name): used as
    # the device only when neither the payload's device_id nor a topic names one.
    device_hint: object = None


def check_device_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise DecodeError("missing_field", "the reading has no device_id")
    if not DEVICE_RE.fullmatch(value):
        raise DecodeError(
            "bad_identifier", "device_id holds characters outside A-Z a-z 0-9 _ . : -"
        )
    return value


def check_reading_id(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise DecodeError(
            "bad_identifier", "reading_id holds characters outside A-Z a-z 0-9 _ . : -"
        )
    return value


def parse_time(value: object, name: str = "measured_at") -> datetime:
    """An ISO 8601 time with an offset or ``Z``; a naive time is refused."""
    if not isinstance(value, str) or not value:
        raise DecodeError("missing_field", f"the reading has no {name}")
    if len(value) > 40:
        raise DecodeError("bad_time", f"{name} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        if _DATE_ONLY_RE.fullmatch(value):
            raise _date_only(name) from None
        raise DecodeError("bad_time", f"{name} is not an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if _DATE_ONLY_RE.fullmatch(value):
            raise _date_only(name)
        raise DecodeError("naive_time", f"{name} has no time zone offset (Z or +hh:mm)")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise DecodeError("bad_time", f"{name} is out of range") from None
    if utc < EARLIEST:
        raise DecodeError("bad_time", f"{name} is before 2000-01-01")
    return utc


def _date_only(name: str) -> DecodeError:
    return DecodeError(
        "naive_time",
        f"{name} is a date without a time of day and UTC offset: a day without a zone cannot "
        "be placed in the patient's day",
    )


def period_instant(start: object, end: object, name: str) -> object:
    """The time of a reading given as a period (FHIR effectivePeriod, OMH time_interval).

    The one rule for both formats: a period is an instant when it has only an end, or when
    its start and end are the same instant; the reading is timed at that instant (the end).
    A period that spans time, or has no end, is a value over an interval, not a measurement
    on a day: ``not_a_measurement``.
    """
    if end is None:
        if start is None:
            raise DecodeError("missing_field", f"{name} has neither start nor end")
        raise DecodeError("not_a_measurement", f"{name} has a start but no end: it is not a moment")
    if start is None or start == end:
        return end
    if parse_time(start, f"{name} start") != parse_time(end, f"{name} end"):
        raise DecodeError(
            "not_a_measurement",
            f"{name} spans time (start differs from end): a value over an interval is not a "
            "reading on a day",
        )
    return end


def number(value: object, name: str) -> float | None:
    """A finite number or None; booleans and strings are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError("bad_value", f"{name} is not a number")
    result = float(value)
    if not math.isfinite(result):
        raise DecodeError("bad_value", f"{name} is not a finite number")
    return result


def flag(value: object, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise DecodeError("bad_value", f"{name} is not true or false")


def convert_weight(value: object, unit: object) -> float | None:
    amount = number(value, "weight")
    if amount is None:
        return None
    if not isinstance(unit, str) or unit.lower() not in WEIGHT_TO_KG:
        raise DecodeError(
            "unknown_unit", "weight unit must be kg, g, lb, oz, [lb_av], [oz_av] or [stone_av]"
        )
    return round(amount * WEIGHT_TO_KG[unit.lower()], 3)


def convert_glucose(value: object, unit: object) -> float | None:
    amount = number(value, "glucose")
    if amount is None:
        return None
    if not isinstance(unit, str) or unit.lower() not in GLUCOSE_TO_MG_DL:
        raise DecodeError("unknown_unit", "glucose unit must be mg/dL or mmol/L")
    return round(amount * GLUCOSE_TO_MG_DL[unit.lower()], 1)


_RANGE_ITEMS = tuple(RANGES.items())


def make_reading(f: Fields, received_at: datetime, clock_skew: timedelta) -> Reading:
    """Validate ``f`` and build the stored reading; raises :class:`DecodeError`."""
    device_id = f.device_id
    if not (isinstance(device_id, str) and DEVICE_RE.fullmatch(device_id)):
        device_id = check_device_id(device_id)  # raises with the precise reason
    reading_id = f.reading_id
    if not (reading_id is None or (isinstance(reading_id, str) and ID_RE.fullmatch(reading_id))):
        reading_id = check_reading_id(reading_id)
    kind = f.type
    if not isinstance(kind, str) or kind not in REQUIRED:
        if not isinstance(kind, str) or not kind:
            raise DecodeError("missing_field", "the reading has no type")
        raise DecodeError("unknown_type", "type is not one of " + ", ".join(READING_TYPES))
    measured_at = parse_time(f.measured_at)
    values: dict[str, float | None] = {}
    for name, (low, high) in _RANGE_ITEMS:
        raw = getattr(f, name)
        if raw is None:
            values[name] = None
            continue
        value = number(raw, name)
        assert value is not None
        if not low <= value <= high:
            raise DecodeError(
                "implausible_value",
                f"{name} {value:g} is outside the plausible range {low:g}-{high:g}",
            )
        values[name] = value
    for name in REQUIRED[kind]:
        if values[name] is None:
            raise DecodeError("missing_field", f"a {kind} reading needs {name}")
    systolic, diastolic = values["systolic_mmhg"], values["diastolic_mmhg"]
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        raise DecodeError("implausible_value", "diastolic_mmhg is not below systolic_mmhg")
    manual = f.manual_entry
    if manual is not False:
        manual = flag(manual, "manual_entry")
    irregular = f.irregular_heartbeat
    if irregular is not None:
        irregular = flag(irregular, "irregular_heartbeat")
    return Reading(
        device_id=device_id,
        type=kind,
        measured_at=measured_at,
        received_at=received_at,
        reading_id=reading_id or None,
        manual_entry=bool(manual),
        source_format=f.source_format,
        irregular_heartbeat=irregular,
        clock_suspect=measured_at > received_at + clock_skew,
        extra=f.extra,
        **values,
    )
