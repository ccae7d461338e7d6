"""FHIR R4 Observations (alone, or in Bundles such as PHD gateway uploads) to reading fields.

Pure. What is read (README "File formats" lists the same):

- codes, LOINC (``http://loinc.org``) or IEEE 11073 MDC (``urn:iso:std:iso:11073:10101``):
  blood pressure panel 85354-9, 55284-4, MDC 150020, with components systolic 8480-6 /
  MDC 150021 and diastolic 8462-4 / MDC 150022 found by code in any order (a mean
  component, 8478-0 / MDC 150023, is ignored; heart rate as a component is kept); heart rate
  8867-4, MDC 149546, 147842, 149530; body weight 29463-7, MDC 188736; SpO2 59408-5, 2708-6,
  MDC 150456; glucose 2339-0, 2345-7, 41653-7, 14743-9, 15074-8, 14749-6, MDC 160184,
  160196, 160368.
- status final, amended, corrected or preliminary (a device's interim value is still a
  measurement taken on that day); registered ("no result yet") and the rest are refused.
- a statistic (LOINC 96607-7, 96608-5, 96609-3: means) or a value over an interval is
  ``not_a_measurement``; see :func:`~rpmpipe.ingest.validation.period_instant`.
- the device: ``Observation.device`` as ``Device/<id>``, a Bundle entry (``urn:uuid:`` or
  any ``fullUrl``), a contained resource (``#id``), or a DeviceMetric (its ``source``); a
  Device resource names the device by its serial number, identifiers or id, each tried
  against the registry (``resolve_device``) when the caller gives one.
- context entries of a Bundle (Patient, Device, DeviceMetric, Provenance, ...) and
  Observations about a device (a PHD coincident time stamp) are read, never quarantined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpmpipe.errors import DecodeError
from rpmpipe.ingest.validation import (
    Fields,
    convert_glucose,
    convert_weight,
    number,
    period_instant,
)

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"

# Codes are keyed as the LOINC code itself, or "mdc:<code>" for IEEE 11073 MDC codes.
BP_PANEL = frozenset({"85354-9", "55284-4", "mdc:150020"})
SYSTOLIC = ("8480-6", "mdc:150021")
DIASTOLIC = ("8462-4", "mdc:150022")
HEART_RATE = frozenset({"8867-4", "mdc:149546", "mdc:147842", "mdc:149530"})
BODY_WEIGHT = frozenset({"29463-7", "mdc:188736"})
SPO2 = frozenset({"59408-5", "2708-6", "mdc:150456"})
GLUCOSE = frozenset(
    {
        "2339-0",
        "2345-7",
        "41653-7",
        "14743-9",
        "15074-8",
        "14749-6",
        "mdc:160184",
        "mdc:160196",
        "mdc:160368",
    }
)
# Means over several measurements (US Core / CardX average blood pressure).
STATISTICS = frozenset({"96607-7", "96608-5", "96609-3"})
# PHD coincident time stamps: the device's clock, not a measurement of the patient.
DEVICE_CLOCK = frozenset({"mdc:67975", "mdc:68226", "mdc:67983", "mdc:68072"})

ACCEPTED_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})
# Bundle entries that give context (who, which device, where from) rather than readings.
CONTEXT_RESOURCES = frozenset(
    {
        "Patient",
        "Device",
        "DeviceMetric",
        "Provenance",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "RelatedPerson",
        "Location",
        "MessageHeader",
    }
)
_PULSE_UNITS = frozenset({"/min", "beats/minute", "bpm", "{beats}/min", "{beat}/min"})

ResolveDevice = Callable[[str], str | None]
Resources = dict[str, dict[str, Any]]


def is_fhir(item: dict[str, Any]) -> bool:
    return "resourceType" in item


@dataclass(frozen=True, slots=True)
class BundleParts:
    """A Bundle split for decoding: entries that may be readings, and what they refer to."""

    items: list[object]  # the resources of the entries that may be readings
    entries: list[object]  # the entry of each item, as sent (with its fullUrl)
    resources: Resources  # every resource by fullUrl and by Type/id
    devices: list[dict[str, Any]]  # the Device and DeviceMetric entries


def bundle_items(bundle: dict[str, Any]) -> BundleParts:
    """Split a Bundle; context entries (:data:`CONTEXT_RESOURCES`, and Observations about a
    device) are not items: they are read only to resolve references."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise DecodeError("missing_field", "the FHIR Bundle has no entry array")
    resources: Resources = {}
    devices: list[dict[str, Any]] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            resources[full_url] = resource
        kind, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(kind, str) and isinstance(rid, str):
            resources.setdefault(f"{kind}/{rid}", resource)
        if kind in ("Device", "DeviceMetric"):
            devices.append(entry)
    parts = BundleParts([], [], resources, devices)
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and _is_context(resource, resources):
            continue
        parts.items.append(resource)
        parts.entries.append(entry)
    return parts


def _is_context(resource: dict[str, Any], resources: Resources) -> bool:
    kind = resource.get("resourceType")
    if isinstance(kind, str) and kind in CONTEXT_RESOURCES:
        return True
    if kind != "Observation":
        return False
    if not _codes(resource.get("code")).isdisjoint(DEVICE_CLOCK):
        return True
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        return False
    target = _lookup(ref, resource, resources)
    if target is not None:
        return target.get("resourceType") in ("Device", "DeviceMetric")
    return _ref_type(ref) in ("Device", "DeviceMetric")


def _codes(concept: object) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return set()
    found: set[str] = set()
    for c in codings:
        if isinstance(c, dict) and isinstance(code := c.get("code"), str):
            system = c.get("system")
            if system == LOINC:
                found.add(code)
            elif system == MDC:
                found.add("mdc:" + code)
    return found


def _quantity(holder: dict[str, Any], what: str) -> tuple[object, str | None]:
    """Value and unit; the UCUM code is the unit when there is one (``unit`` is display text)."""
    q = holder.get("valueQuantity")
    if not isinstance(q, dict):
        raise DecodeError("missing_field", f"{what} has no valueQuantity")
    code = q.get("code")
    if isinstance(code, str) and q.get("system", UCUM) == UCUM:
        return q.get("value"), code
    unit = q.get("unit")
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


def _percent(holder: dict[str, Any]) -> float | None:
    value, unit = _quantity(holder, "oxygen saturation")
    if unit != "%":
        raise DecodeError("unknown_unit", "oxygen saturation unit must be %")
    return number(value, "oxygen saturation")


def _ref_type(ref: str) -> str:
    """``Device`` for ``Device/x`` or ``https://host/fhir/Device/x``; else ``""``."""
    head, sep, _ = ref.rpartition("/")
    return head.rpartition("/")[2] if sep else ""


def _lookup(ref: str, obs: dict[str, Any], resources: Resources | None) -> dict[str, Any] | None:
    if ref.startswith("#"):
        contained = obs.get("contained")
        if isinstance(contained, list):
            for resource in contained:
                if isinstance(resource, dict) and resource.get("id") == ref[1:]:
                    return resource
        return None
    if not resources:
        return None
    found = resources.get(ref)
    if found is None and "://" in ref:  # an absolute URL of a resource listed as Type/id
        parts = ref.rsplit("/", 2)
        found = resources.get("/".join(parts[-2:])) if len(parts) == 3 else None
    return found


def _device_id(
    obs: dict[str, Any], resources: Resources | None, resolve: ResolveDevice | None
) -> object:
    device = obs.get("device")
    if not isinstance(device, dict):
        return None
    ref = device.get("reference")
    if isinstance(ref, str) and ref:
        if resources is None and ref.startswith("Device/"):  # the common case, kept quick
            rid = ref[7:]
            return (resolve(rid) if resolve else None) or rid
        return _referenced_device(ref, obs, resources, resolve, hops=2)
    ident = device.get("identifier")
    if isinstance(ident, dict) and isinstance(value := ident.get("value"), str):
        return (resolve(value) if resolve else None) or value
    if ref is not None:
        raise DecodeError("bad_identifier", "Observation.device.reference is not a string")
    return None


def _referenced_device(
    ref: str,
    obs: dict[str, Any],
    resources: Resources | None,
    resolve: ResolveDevice | None,
    hops: int,
) -> str:
    target = _lookup(ref, obs, resources)
    if target is None:
        if _ref_type(ref) == "Device":
            rid = ref.rpartition("/")[2]
            return (resolve(rid) if resolve else None) or rid
        if ref.startswith("#"):
            raise DecodeError(
                "bad_identifier", "Observation.device names a contained resource that is absent"
            )
        if _ref_type(ref) == "DeviceMetric":
            raise DecodeError(
                "bad_identifier",
                "Observation.device is a DeviceMetric that is not in the Bundle, so its "
                "source device is unknown",
            )
        raise DecodeError(
            "bad_identifier",
            "Observation.device must be Device/<id>, a Bundle entry, a contained #id or a "
            "DeviceMetric",
        )
    kind = target.get("resourceType")
    if kind == "Device":
        return _device_of(target, resolve)
    if kind == "DeviceMetric" and hops > 0:
        for key in ("source", "parent"):
            link = target.get(key)
            source = link.get("reference") if isinstance(link, dict) else None
            if isinstance(source, str) and source:
                return _referenced_device(source, obs, resources, resolve, hops - 1)
        raise DecodeError("missing_field", "the DeviceMetric has no source device")
    raise DecodeError("bad_identifier", "Observation.device does not lead to a Device")


def _device_of(device: dict[str, Any], resolve: ResolveDevice | None) -> str:
    """A Device resource's registered id: its serial number, identifiers or id, in that order."""
    candidates: list[str] = []
    serial = device.get("serialNumber")
    if isinstance(serial, str) and serial:
        candidates.append(serial)
    identifiers = device.get("identifier")
    if isinstance(identifiers, list):
        for ident in identifiers:
            if isinstance(ident, dict) and isinstance(v := ident.get("value"), str) and v:
                candidates.append(v)
    rid = device.get("id")
    if isinstance(rid, str) and rid:
        candidates.append(rid)
    if not candidates:
        raise DecodeError("missing_field", "the Device has no serial number, identifier or id")
    if resolve is None:
        return candidates[0]
    for candidate in candidates:
        registered = resolve(candidate)
        if registered is not None:
            return registered
    raise DecodeError(
        "unknown_device",
        "no serial number, identifier or id of the Observation's Device is registered "
        "(import devices: serial_number)",
    )


def _effective(obs: dict[str, Any]) -> object:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in obs:
            return obs[key]
    period = obs.get("effectivePeriod")
    if isinstance(period, dict):
        return period_instant(period.get("start"), period.get("end"), "effectivePeriod")
    raise DecodeError("missing_field", "the Observation has no effectiveDateTime")


def observation_fields(
    obs: dict[str, Any],
    resources: Resources | None = None,
    resolve_device: ResolveDevice | None = None,
) -> Fields:
    """Reading fields of one Observation; ``resources`` are its Bundle's, by reference."""
    if obs.get("resourceType") != "Observation":
        raise DecodeError(
            "unsupported_format",
            "a FHIR resource that is not an Observation (rpmpipe reads Observations and "
            "Bundles of them)",
        )
    status = obs.get("status")
    if not isinstance(status, str) or status not in ACCEPTED_STATUS:
        if status == "registered":
            raise DecodeError(
                "bad_status", "Observation.status is registered: there is no result yet"
            )
        raise DecodeError(
            "bad_status", "Observation.status must be final, amended, corrected or preliminary"
        )
    codes = _codes(obs.get("code"))
    components = obs.get("component")
    parts: dict[str, dict[str, Any]] = {}
    if isinstance(components, list):
        for comp in components:
            if isinstance(comp, dict):
                for code in _codes(comp.get("code")):
                    parts.setdefault(code, comp)
    if not (codes.isdisjoint(STATISTICS) and STATISTICS.isdisjoint(parts)):
        raise DecodeError(
            "not_a_measurement",
            "the Observation is a statistic (a mean of several measurements), not a reading",
        )
    reading_id = obs.get("id")
    if reading_id is None and isinstance(obs.get("identifier"), list) and obs["identifier"]:
        first = obs["identifier"][0]
        reading_id = first.get("value") if isinstance(first, dict) else None
    common: dict[str, Any] = {
        "device_id": _device_id(obs, resources, resolve_device),
        "reading_id": reading_id,
        "measured_at": _effective(obs),
        "source_format": "fhir",
    }
    if not codes.isdisjoint(BP_PANEL):
        # Component dicts are never empty (they hold their code), so ``or`` picks the first.
        systolic = parts.get(SYSTOLIC[0]) or parts.get(SYSTOLIC[1])
        diastolic = parts.get(DIASTOLIC[0]) or parts.get(DIASTOLIC[1])
        if systolic is None or diastolic is None:
            raise DecodeError(
                "missing_field",
                "the blood pressure panel lacks a systolic (8480-6) or diastolic (8462-4) "
                "component",
            )
        pulse = (
            parts.get("8867-4")
            or parts.get("mdc:149546")
            or parts.get("mdc:147842")
            or parts.get("mdc:149530")
        )
        return Fields(
            type="blood_pressure",
            systolic_mmhg=_pressure(systolic, "systolic"),
            diastolic_mmhg=_pressure(diastolic, "diastolic"),
            pulse_bpm=_pulse(pulse) if pulse is not None else None,
            **common,
        )
    if not codes.isdisjoint(HEART_RATE):
        return Fields(type="heart_rate", pulse_bpm=_pulse(obs), **common)
    if not codes.isdisjoint(BODY_WEIGHT):
        value, unit = _quantity(obs, "body weight")
        return Fields(type="body_weight", weight_kg=convert_weight(value, unit), **common)
    if not codes.isdisjoint(SPO2):
        return Fields(type="spo2", spo2_pct=_percent(obs), **common)
    if not codes.isdisjoint(GLUCOSE):
        value, unit = _quantity(obs, "glucose")
        return Fields(type="blood_glucose", glucose_mg_dl=convert_glucose(value, unit), **common)
    raise DecodeError(
        "unknown_type",
        "the Observation's code is not one rpmpipe reads (blood pressure, heart rate, body "
        "weight, SpO2 or glucose; README lists the LOINC and MDC codes)",
    )
