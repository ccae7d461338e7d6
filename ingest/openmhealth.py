"""Open mHealth data points to reading fields (pure).

Schemas read: ``blood-pressure``, ``body-weight``, ``oxygen-saturation`` (unit ``%``),
``blood-glucose`` (``mg/dL`` or ``mmol/L``) and ``heart-rate`` (``beats/min``). A data point
with a ``descriptive_statistic`` (an average, minimum, maximum ... of several measurements) is
``not_a_measurement``; a ``time_interval`` follows the one period rule of
:func:`~rpmpipe.ingest.validation.period_instant` (an instant only when it has just an end,
or its start equals its end; a ``duration`` always spans time).

``{"header": {"id", "schema_id": {"name": "blood-pressure"}, "acquisition_provenance":
{"source_name", "modality": "sensed"|"self-reported"}}, "body": {"systolic_blood_pressure":
{"value", "unit"}, ..., "effective_time_frame": {"date_time"}}}``.

The reading id is ``header.id`` (the OMH header schema's field); ``header.uuid`` is accepted
too, as some producers (and earlier versions of our simulator) send it. Open mHealth has no
device field: the device is the topic's, or ``acquisition_provenance.device_id`` (an rpmpipe
extension, authoritative), or else ``acquisition_provenance.source_name``. OMH defines
``source_name`` as the name of the producing source, not an identity, so it only names the
device where there is no topic (a backfill line); on a device topic it is ignored rather than
compared.
"""

from __future__ import annotations

from typing import Any

from rpmpipe.errors import DecodeError
from rpmpipe.ingest.validation import (
    Fields,
    convert_glucose,
    convert_weight,
    number,
    period_instant,
)

SCHEMAS = ("blood-pressure", "body-weight", "oxygen-saturation", "blood-glucose", "heart-rate")


def is_openmhealth(item: dict[str, Any]) -> bool:
    return isinstance(item.get("header"), dict) and isinstance(item.get("body"), dict)


def _dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError("missing_field", f"the Open mHealth data point has no {name}")
    return value


def _mmhg(body: dict[str, Any], name: str) -> float | None:
    quantity = _dict(body.get(name), f"body.{name}")
    if quantity.get("unit") != "mmHg":
        raise DecodeError("unknown_unit", f"body.{name}.unit must be mmHg")
    return number(quantity.get("value"), name)


def _effective_time(body: dict[str, Any]) -> object:
    frame = _dict(body.get("effective_time_frame"), "body.effective_time_frame")
    if "date_time" in frame:
        return frame["date_time"]
    interval = frame.get("time_interval")
    if isinstance(interval, dict):
        if "duration" in interval:
            raise DecodeError(
                "not_a_measurement",
                "effective_time_frame.time_interval has a duration: a value over an interval "
                "is not a reading on a day",
            )
        return period_instant(
            interval.get("start_date_time"),
            interval.get("end_date_time"),
            "effective_time_frame.time_interval",
        )
    raise DecodeError("missing_field", "effective_time_frame has no date_time")


def _unit_value(body: dict[str, Any], name: str, units: tuple[str, ...]) -> float | None:
    quantity = _dict(body.get(name), f"body.{name}")
    if quantity.get("unit") not in units:
        raise DecodeError("unknown_unit", f"body.{name}.unit must be {' or '.join(units)}")
    return number(quantity.get("value"), name)


def openmhealth_fields(item: dict[str, Any]) -> Fields:
    header = _dict(item.get("header"), "header")
    body = _dict(item.get("body"), "body")
    schema = _dict(header.get("schema_id"), "header.schema_id")
    if "descriptive_statistic" in body:
        raise DecodeError(
            "not_a_measurement",
            "body.descriptive_statistic: a summary of several measurements (average, minimum, "
            "maximum, ...) is not a reading",
        )
    provenance = header.get("acquisition_provenance")
    provenance = provenance if isinstance(provenance, dict) else {}
    reading_id = header.get("id")
    common: dict[str, Any] = {
        "device_id": provenance.get("device_id"),
        "device_hint": provenance.get("source_name"),
        "reading_id": header.get("uuid") if reading_id is None else reading_id,
        "measured_at": _effective_time(body),
        "manual_entry": provenance.get("modality") == "self-reported",
        "source_format": "openmhealth",
    }
    name = schema.get("name")
    if name == "blood-pressure":
        pulse = body.get("heart_rate")
        return Fields(
            type="blood_pressure",
            systolic_mmhg=_mmhg(body, "systolic_blood_pressure"),
            diastolic_mmhg=_mmhg(body, "diastolic_blood_pressure"),
            pulse_bpm=number(pulse.get("value"), "heart_rate") if isinstance(pulse, dict) else None,
            **common,
        )
    if name == "body-weight":
        weight = _dict(body.get("body_weight"), "body.body_weight")
        return Fields(
            type="body_weight",
            weight_kg=convert_weight(weight.get("value"), weight.get("unit")),
            **common,
        )
    if name == "oxygen-saturation":
        return Fields(
            type="spo2", spo2_pct=_unit_value(body, "oxygen_saturation", ("%",)), **common
        )
    if name == "blood-glucose":
        glucose = _dict(body.get("blood_glucose"), "body.blood_glucose")
        return Fields(
            type="blood_glucose",
            glucose_mg_dl=convert_glucose(glucose.get("value"), glucose.get("unit")),
            **common,
        )
    if name == "heart-rate":
        return Fields(
            type="heart_rate",
            pulse_bpm=_unit_value(body, "heart_rate", ("beats/min",)),
            **common,
        )
    raise DecodeError("unknown_type", "Open mHealth schema must be one of " + ", ".join(SCHEMAS))
