"""FHIR R4 Observations (and Bundles of them) to reading fields (pure).

LOINC codes understood: 85354-9 blood pressure panel (components 8480-6 systolic,
8462-4 diastolic, optional 8867-4 heart rate), 8867-4 heart rate, 29463-7 body weight.
The device is ``Observation.device`` (``{"reference": "Device/ID"}`` or an identifier).
"""

from __future__ import annotations

from typing import Any

from rpmpipe.errors import DecodeError
from rpmpipe.ingest.validation import Fields, convert_weight, number

LOINC = "http://loinc.org"
BP_PANEL, SYSTOLIC, DIASTOLIC, HEART_RATE, BODY_WEIGHT = (
    "85354-9",
    "8480-6",
    "8462-4",
    "8867-4",
    "29463-7",
)
_ACCEPTED_STATUS = ("final", "amended", "corrected", "preliminary", "registered")
_PULSE_UNITS = ("/min", "beats/minute", "bpm", "{beats}/min")


def is_fhir(item: dict[str, Any]) -> bool:
    return "resourceType" in item


def bundle_resources(bundle: dict[str, Any]) -> list[object]:
    """The resources of a Bundle's entries (non-Observations are left to the caller)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise DecodeError("missing_field", "the FHIR Bundle has no entry array")
    return [e.get("resource") if isinstance(e, dict) else None for e in entries]


def _loinc_codes(concept: object) -> set[str]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return set()
    return {
        c["code"]
        for c in concept["coding"]
        if isinstance(c, dict) and c.get("system") == LOINC and isinstance(c.get("code"), str)
    }


def _quantity(holder: dict[str, Any], what: str) -> tuple[object, str | None]:
    q = holder.get("valueQuantity")
    if not isinstance(q, dict):
        raise DecodeError("missing_field", f"{what} has no valueQuantity")
    unit = q.get("code") if isinstance(q.get("code"), str) else q.get("unit")
    return q.get("value"), unit if isinstance(unit, str) else None


def _pressure(holder: dict[str, Any], what: str) -> float | None:
    value, unit = _quantity(holder, what)
    if unit not in ("mm[Hg]", "mmHg"):
        raise DecodeError("unknown_unit", f"{what} unit must be mm[Hg]")
    return number(value, what)


def _pulse(holder: dict[str, Any]) -> float | None:
    value, unit = _quantity(holder, "heart rate")
    if unit not in _PULSE_UNITS:
        raise DecodeError("unknown_unit", "heart rate unit must be /min")
    return number(value, "heart rate")


def _device_id(obs: dict[str, Any]) -> object:
    device = obs.get("device")
    if not isinstance(device, dict):
        return None
    ref = device.get("reference")
    if isinstance(ref, str) and ref.startswith("Device/"):
        return ref.removeprefix("Device/")
    ident = device.get("identifier")
    if isinstance(ident, dict):
        return ident.get("value")
    if ref is not None:
        raise DecodeError("bad_identifier", "Observation.device.reference must be Device/<id>")
    return None


def _effective(obs: dict[str, Any]) -> object:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in obs:
            return obs[key]
    period = obs.get("effectivePeriod")
    if isinstance(period, dict):
        return period.get("start")
    raise DecodeError("missing_field", "the Observation has no effectiveDateTime")


def observation_fields(obs: dict[str, Any]) -> Fields:
    if obs.get("resourceType") != "Observation":
        raise DecodeError("unsupported_format", "a FHIR resource that is not an Observation")
    if obs.get("status") not in _ACCEPTED_STATUS:
        raise DecodeError(
            "bad_status", "Observation.status must be final, amended, corrected or preliminary"
        )
    reading_id = obs.get("id")
    if reading_id is None and isinstance(obs.get("identifier"), list) and obs["identifier"]:
        first = obs["identifier"][0]
        reading_id = first.get("value") if isinstance(first, dict) else None
    common: dict[str, Any] = {
        "device_id": _device_id(obs),
        "reading_id": reading_id,
        "measured_at": _effective(obs),
        "source_format": "fhir",
    }
    codes = _loinc_codes(obs.get("code"))
    if BP_PANEL in codes:
        parts: dict[str, dict[str, Any]] = {}
        for comp in obs.get("component") or []:
            if isinstance(comp, dict):
                for code in _loinc_codes(comp.get("code")):
                    parts.setdefault(code, comp)
        if SYSTOLIC not in parts or DIASTOLIC not in parts:
            raise DecodeError("missing_field", "the blood pressure panel lacks 8480-6 or 8462-4")
        return Fields(
            type="blood_pressure",
            systolic_mmhg=_pressure(parts[SYSTOLIC], "systolic"),
            diastolic_mmhg=_pressure(parts[DIASTOLIC], "diastolic"),
            pulse_bpm=_pulse(parts[HEART_RATE]) if HEART_RATE in parts else None,
            **common,
        )
    if HEART_RATE in codes:
        return Fields(type="heart_rate", pulse_bpm=_pulse(obs), **common)
    if BODY_WEIGHT in codes:
        value, unit = _quantity(obs, "body weight")
        return Fields(type="body_weight", weight_kg=convert_weight(value, unit), **common)
    raise DecodeError("unknown_type", "Observation code is not LOINC 85354-9, 8867-4 or 29463-7")
