"""Open mHealth data points (blood-pressure, body-weight) to reading fields (pure).

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
from rpmpipe.ingest.validation import Fields, convert_weight, number


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
        return interval.get("end_date_time") or interval.get("start_date_time")
    raise DecodeError("missing_field", "effective_time_frame has no date_time")


def openmhealth_fields(item: dict[str, Any]) -> Fields:
    header = _dict(item.get("header"), "header")
    body = _dict(item.get("body"), "body")
    schema = _dict(header.get("schema_id"), "header.schema_id")
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
    raise DecodeError("unknown_type", "Open mHealth schema must be blood-pressure or body-weight")
