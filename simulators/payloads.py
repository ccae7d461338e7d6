"""How a simulated reading looks on the wire: native, Open mHealth or FHIR R4 JSON.

Pure functions from a ``SimReading`` to JSON-able dicts and payload bytes. What each format
carries (the ingest decoders read exactly this):

native (the contract's payload)::

    {"device_id", "reading_id", "measured_at", "type": "blood_pressure",
     "systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "irregular_heartbeat"?}
    {"device_id", "reading_id", "measured_at", "type": "body_weight", "weight", "unit": "lb"|"kg"}

omh (Open mHealth data point; ``reading_id`` is the header's ``id``, a UUID, as the OMH
header schema requires)::

    {"header": {"id": reading_id,
                "schema_id": {"namespace": "omh", "name": "blood-pressure"|"body-weight",
                              "version": "3.0"|"2.0"},
                "source_creation_date_time": measured_at,
                "acquisition_provenance": {"source_name": device_id, "modality": "sensed"}},
     "body": {"systolic_blood_pressure": {"value", "unit": "mmHg"},
              "diastolic_blood_pressure": {"value", "unit": "mmHg"},
              "heart_rate": {"value", "unit": "beats/min"},       # extra field, kept by ingest
              "irregular_heartbeat": true,                           # extra field, only when set
              "effective_time_frame": {"date_time": measured_at}}}
    body-weight body: {"body_weight": {"value", "unit": "kg"|"lb"}, "effective_time_frame": ...}

fhir (R4 Observation; ``id`` and ``identifier[0].value`` are the reading id; the device id is in
``device.identifier.value`` and ``device.reference`` = ``Device/<id>``)::

    blood pressure: code LOINC 85354-9, components 8480-6 systolic, 8462-4 diastolic and
    8867-4 heart rate (valueQuantity mm[Hg] / {beats}/min), effectiveDateTime = measured_at;
    an irregular heartbeat adds extension {"url": IRREGULAR_HEARTBEAT_URL, "valueBoolean": true}.
    body weight: code LOINC 29463-7, valueQuantity {"value", "unit": "kg"|"lb",
    "system": "http://unitsofmeasure.org", "code": "kg"|"[lb_av]"}.

A batched sync (store-and-forward) is a JSON array of the format's items, or an object
``{"readings": [...]}`` (native adds ``"device_id"`` to that object).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

FORMATS = ("native", "omh", "fhir")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
IRREGULAR_HEARTBEAT_URL = "urn:rpmpipe:fhir:irregular-heartbeat"
READING_ID_SYSTEM = "urn:rpmpipe:reading-id"
# Namespace of the UUIDs that OMH-speaking device clouds use as reading ids.
_OMH_NAMESPACE = uuid.UUID("6f1c6c1e-5b2a-4f8e-9a57-2d1c1b0e7a11")

# FHIR/UCUM codes for the display units the simulator emits; an unknown unit keeps its text.
_UCUM_WEIGHT = {"kg": "kg", "lb": "[lb_av]"}


@dataclass(frozen=True)
class SimReading:
    """One measurement as the device recorded it (``measured_at`` is device-local time).

    Fault injection builds deliberately bad readings too (a naive ``measured_at``, diastolic
    above systolic, a unit nobody knows), so this type does not validate.
    """

    device_id: str
    patient_id: str
    reading_id: str
    type: str  # blood_pressure | body_weight
    measured_at: datetime
    systolic: int | None = None
    diastolic: int | None = None
    pulse: int | None = None
    irregular_heartbeat: bool = False
    weight: float | None = None
    unit: str | None = None


def reading_id_for(device_id: str, number: int, fmt: str) -> str:
    """The id a device cloud of ``fmt`` gives the device's ``number``-th reading."""
    native = f"{device_id}-{number:05d}"
    if fmt == "omh":
        return str(uuid.uuid5(_OMH_NAMESPACE, native))
    return native


def _time(value: datetime) -> str:
    # A naive value (a fault) renders without an offset, which is exactly the fault.
    return value.isoformat(timespec="seconds")


def native_item(r: SimReading) -> dict[str, Any]:
    item: dict[str, Any] = {
        "device_id": r.device_id,
        "reading_id": r.reading_id,
        "measured_at": _time(r.measured_at),
        "type": r.type,
    }
    if r.type == "blood_pressure":
        item.update(systolic_mmhg=r.systolic, diastolic_mmhg=r.diastolic, pulse_bpm=r.pulse)
        if r.irregular_heartbeat:
            item["irregular_heartbeat"] = True
    else:
        item.update(weight=r.weight, unit=r.unit)
    return item


def omh_item(r: SimReading) -> dict[str, Any]:
    when = _time(r.measured_at)
    if r.type == "blood_pressure":
        name, version = "blood-pressure", "3.0"
        body: dict[str, Any] = {
            "systolic_blood_pressure": {"value": r.systolic, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": r.diastolic, "unit": "mmHg"},
            "heart_rate": {"value": r.pulse, "unit": "beats/min"},
            "effective_time_frame": {"date_time": when},
        }
        if r.irregular_heartbeat:
            body["irregular_heartbeat"] = True
    else:
        name, version = "body-weight", "2.0"
        body = {
            "body_weight": {"value": r.weight, "unit": r.unit},
            "effective_time_frame": {"date_time": when},
        }
    return {
        "header": {
            "id": r.reading_id,
            "schema_id": {"namespace": "omh", "name": name, "version": version},
            "source_creation_date_time": when,
            "acquisition_provenance": {"source_name": r.device_id, "modality": "sensed"},
        },
        "body": body,
    }


def _coding(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


def fhir_item(r: SimReading) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": r.reading_id,
        "identifier": [{"system": READING_ID_SYSTEM, "value": r.reading_id}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "effectiveDateTime": _time(r.measured_at),
        "device": {"reference": f"Device/{r.device_id}", "identifier": {"value": r.device_id}},
    }
    if r.type == "blood_pressure":
        obs["code"] = _coding("85354-9", "Blood pressure panel with all children optional")
        obs["component"] = [
            {
                "code": _coding("8480-6", "Systolic blood pressure"),
                "valueQuantity": {
                    "value": r.systolic,
                    "unit": "mmHg",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            },
            {
                "code": _coding("8462-4", "Diastolic blood pressure"),
                "valueQuantity": {
                    "value": r.diastolic,
                    "unit": "mmHg",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            },
            {
                "code": _coding("8867-4", "Heart rate"),
                "valueQuantity": {
                    "value": r.pulse,
                    "unit": "beats/minute",
                    "system": UCUM,
                    "code": "/min",
                },
            },
        ]
        if r.irregular_heartbeat:
            obs["extension"] = [{"url": IRREGULAR_HEARTBEAT_URL, "valueBoolean": True}]
    else:
        unit = r.unit or ""
        obs["code"] = _coding("29463-7", "Body weight")
        obs["valueQuantity"] = {
            "value": r.weight,
            "unit": unit,
            "system": UCUM,
            "code": _UCUM_WEIGHT.get(unit, unit),
        }
    return obs


_ITEM = {"native": native_item, "omh": omh_item, "fhir": fhir_item}


def encode_readings(
    readings: tuple[SimReading, ...], fmt: str, *, batched: bool, batch_style: str = "array"
) -> bytes:
    """Payload bytes of one message: a single item, or a batched sync of all ``readings``."""
    items = [_ITEM[fmt](r) for r in readings]
    if not batched:
        if len(items) != 1:
            raise ValueError("an unbatched message carries exactly one reading")
        return orjson.dumps(items[0])
    if batch_style == "array":
        return orjson.dumps(items)
    wrapper: dict[str, Any] = {"readings": items}
    if fmt == "native":
        wrapper = {"device_id": readings[0].device_id, **wrapper}
    return orjson.dumps(wrapper)
