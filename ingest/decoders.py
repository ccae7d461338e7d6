"""Payload bytes to readings, or to reasons for quarantine (pure, never raises).

A payload is one item, a JSON array of items, an object with a ``readings`` array (native
batched sync) or a FHIR Bundle. Each item is a native reading, an Open mHealth data point or
a FHIR Observation. A bad item is rejected on its own; the good ones of the batch are kept.
JSON that is none of these (a vendor API response, a webhook body) is
``unsupported_format``. MQTT ingest, ``import readings`` and ``quarantine replay`` all decode
through :func:`decode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from rpmpipe.errors import DecodeError
from rpmpipe.ingest.fhir import (
    BundleParts,
    ResolveDevice,
    Resources,
    bundle_items,
    is_fhir,
    observation_fields,
)
from rpmpipe.ingest.openmhealth import is_openmhealth, openmhealth_fields
from rpmpipe.ingest.schema import ReadingColumns
from rpmpipe.ingest.validation import (
    DEVICE_RE,
    EARLIEST,
    ID_RE,
    RANGES,
    REQUIRED,
    Fields,
    check_device_id,
    convert_glucose,
    convert_weight,
    make_reading,
)
from rpmpipe.records import Reading

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_ITEMS = 10_000
MAX_EXTRA_BYTES = 16 * 1024
MAX_EXTRA_DEPTH = 8

ACCEPTED_FORMATS = (
    "a native reading, an Open mHealth data point, or a FHIR R4 Observation or Bundle"
)

NATIVE_FIELDS = frozenset(
    {
        "device_id",
        "reading_id",
        "measured_at",
        "type",
        "systolic_mmhg",
        "diastolic_mmhg",
        "pulse_bpm",
        "weight",
        "unit",
        "weight_kg",
        "spo2_pct",
        "glucose",
        "glucose_unit",
        "glucose_mg_dl",
        "irregular_heartbeat",
        "manual_entry",
    }
)


@dataclass(frozen=True, slots=True)
class Reject:
    """One payload or batch item that cannot be stored, with why."""

    code: str
    reason: str
    item: bytes  # the original payload, or the item of a batch re-serialised on its own


@dataclass(frozen=True, slots=True)
class Decoded:
    readings: tuple[Reading, ...]
    rejects: tuple[Reject, ...]


def decode(
    topic_device_id: str | None,
    payload: bytes,
    received_at: datetime,
    clock_skew: timedelta = timedelta(minutes=10),
    resolve_device: ResolveDevice | None = None,
) -> Decoded:
    """Decode one MQTT payload (or one backfill line); hostile input yields rejects.

    ``resolve_device`` maps an identifier a FHIR Device carries (device id, serial number)
    to the registered device id, or None; without it the first identifier is taken as is.
    """
    try:
        return _decode(topic_device_id, payload, received_at, clock_skew, resolve_device)
    except DecodeError as exc:
        return Decoded((), (Reject(exc.code, exc.detail, payload),))
    except Exception:  # noqa: BLE001 - the decoder must never take ingest down
        return Decoded((), (Reject("decoder_error", "the payload could not be decoded", payload),))


def _decode(
    topic_device_id: str | None,
    payload: bytes,
    received_at: datetime,
    clock_skew: timedelta,
    resolve_device: ResolveDevice | None,
) -> Decoded:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("too_large", f"the payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    if topic_device_id is not None:
        check_device_id(topic_device_id)
    doc = load_json(payload, "the payload is not valid UTF-8 JSON (NaN and Infinity are refused)")
    defaults: dict[str, Any] = {}
    bundle: BundleParts | None = None
    resources: Resources | None = None
    if isinstance(doc, list):
        items: list[object] = doc
    elif isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        bundle = bundle_items(doc)
        resources = bundle.resources
        items = bundle.items
    elif isinstance(doc, dict) and "readings" in doc:
        if not isinstance(doc["readings"], list):
            raise DecodeError("bad_value", "readings must be an array")
        items = doc["readings"]
        if "device_id" in doc:
            defaults["device_id"] = doc["device_id"]
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise DecodeError(
            "unsupported_format",
            f"the payload is not a JSON object or array; rpmpipe reads {ACCEPTED_FORMATS}",
        )
    if not items:
        raise DecodeError("empty_batch", "the payload holds no readings")
    if len(items) > MAX_ITEMS:
        raise DecodeError("too_many_items", f"a batch holds more than {MAX_ITEMS} readings")
    if len(items) == 1 and items[0] is doc:
        # The common case, one reading per message: no per-item bookkeeping.
        reading = _reading(
            doc, defaults, None, resolve_device, topic_device_id, received_at, clock_skew
        )
        return Decoded((reading,), ())
    readings: list[Reading] = []
    rejects: list[Reject] = []
    kept_devices: list[dict[str, Any]] | None = None
    for index, item in enumerate(items):
        try:
            readings.append(
                _reading(
                    item,
                    defaults,
                    resources,
                    resolve_device,
                    topic_device_id,
                    received_at,
                    clock_skew,
                )
            )
        except DecodeError as exc:
            where = f"item {index + 1} of {len(items)}"
            if bundle is None:
                raw = item_bytes(item)
            else:
                if kept_devices is None:  # decided once per payload, at its first reject
                    small = len(item_bytes(bundle.devices)) <= MAX_CONTEXT_BYTES
                    kept_devices = bundle.devices if small else []
                raw = _bundle_item(bundle, index, kept_devices)
            rejects.append(Reject(exc.code, f"{where}: {exc.detail}", raw))
    return Decoded(tuple(readings), tuple(rejects))


def decode_into(
    columns: ReadingColumns,
    topic_device_id: str | None,
    payload: bytes,
    received_at: datetime,
    clock_skew: timedelta = timedelta(minutes=10),
    resolve_device: ResolveDevice | None = None,
) -> tuple[Reject, ...]:
    """:func:`decode`, appending the readings to ``columns``; returns the rejects.

    A single native reading on a device topic, what most devices send, takes
    :func:`native_fast`; everything else, and every payload the fast path does not accept,
    goes through :func:`decode`, so rejects and their reasons are always the general
    decoder's.
    """
    if topic_device_id is not None and native_fast(
        columns, topic_device_id, payload, received_at, clock_skew
    ):
        return ()
    decoded = decode(topic_device_id, payload, received_at, clock_skew, resolve_device)
    for reading in decoded.readings:
        columns.add(reading)
    return decoded.rejects


_BOUNDS = tuple(RANGES[name] for name in ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm"))
_WEIGHT_BOUNDS = RANGES["weight_kg"]
_SPO2_BOUNDS = RANGES["spo2_pct"]
_GLUCOSE_BOUNDS = RANGES["glucose_mg_dl"]
_REQUIRED_INDEX = {
    kind: tuple(
        (
            "systolic_mmhg",
            "diastolic_mmhg",
            "pulse_bpm",
            "weight_kg",
            "spo2_pct",
            "glucose_mg_dl",
        ).index(name)
        for name in names
    )
    for kind, names in REQUIRED.items()
}


def _in_range(value: object, bounds: tuple[float, float]) -> float | None:
    """``value`` as a float when it is a JSON number within ``bounds``; else None."""
    kind = type(value)
    if kind is not float and kind is not int:  # bool is neither (type(True) is bool)
        return None
    number = float(value)  # type: ignore[arg-type]
    low, high = bounds
    return number if low <= number <= high else None  # NaN fails both comparisons


def native_fast(
    columns: ReadingColumns,
    device_id: str,
    payload: bytes,
    received_at: datetime,
    clock_skew: timedelta,
) -> bool:
    """Append the readings of a valid native payload to ``columns`` and say True.

    A payload is one native reading, an array of them or a ``{"readings": [...]}`` sync
    (with the sync's ``device_id``). False (``columns`` untouched) for anything else: another
    format, an unknown field, a value the general decoder would refuse in any item, or any
    doubt. The caller then decodes the payload with :func:`decode`, which gives the same
    readings for whatever this accepts (``tests/ingest/test_decoders_fast.py`` pins that)
    and the reject reasons.
    """
    if len(payload) > MAX_PAYLOAD_BYTES or not DEVICE_RE.fullmatch(device_id):
        return False
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if type(doc) is dict and "readings" not in doc:
        return _native_item(columns, device_id, doc, received_at, clock_skew)
    defaults: dict[str, Any] | None = None
    if type(doc) is dict:
        if not doc.keys() <= _SYNC_FIELDS:
            return False
        items = doc["readings"]
        if "device_id" in doc:
            defaults = {"device_id": doc["device_id"]}
    else:
        items = doc
    if type(items) is not list or not 0 < len(items) <= MAX_ITEMS:
        return False
    before = len(columns)
    for item in items:
        if type(item) is not dict:
            ok = False
        else:
            ok = _native_item(
                columns,
                device_id,
                {**defaults, **item} if defaults else item,
                received_at,
                clock_skew,
            )
        if not ok:
            columns.truncate(before)
            return False
    return True


# The keys of a native batched sync object (anything else: the general decoder's).
_SYNC_FIELDS = frozenset({"readings", "device_id"})


def _native_item(
    columns: ReadingColumns,
    device_id: str,
    doc: Any,
    received_at: datetime,
    clock_skew: timedelta,
) -> bool:
    """:func:`native_fast` for one parsed item (with its sync's defaults merged in)."""
    if type(doc) is not dict or not doc.keys() <= NATIVE_FIELDS:
        return False
    get = doc.get
    named = get("device_id")
    if named is not None and named != device_id:
        return False
    reading_id = get("reading_id")
    if reading_id is not None and not (type(reading_id) is str and ID_RE.fullmatch(reading_id)):
        return False
    kind = get("type")
    if type(kind) is not str or kind not in _REQUIRED_INDEX:
        return False
    text = get("measured_at")
    if type(text) is not str or len(text) > 40:
        return False
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.utcoffset() is None:
            return False  # a naive time
        measured_at = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    if measured_at < EARLIEST:
        return False
    weight = get("weight_kg")
    if weight is None and get("weight") is not None:
        try:
            weight = convert_weight(doc["weight"], get("unit"))
        except DecodeError:
            return False
    glucose = get("glucose_mg_dl")
    if glucose is None and get("glucose") is not None:
        try:
            glucose = convert_glucose(doc["glucose"], get("glucose_unit", get("unit")))
        except DecodeError:
            return False
    values: list[float | None] = []
    for raw, bounds in (
        (get("systolic_mmhg"), _BOUNDS[0]),
        (get("diastolic_mmhg"), _BOUNDS[1]),
        (get("pulse_bpm"), _BOUNDS[2]),
        (weight, _WEIGHT_BOUNDS),
        (get("spo2_pct"), _SPO2_BOUNDS),
        (glucose, _GLUCOSE_BOUNDS),
    ):
        if raw is None:
            values.append(None)
            continue
        value = _in_range(raw, bounds)
        if value is None:
            return False
        values.append(value)
    for index in _REQUIRED_INDEX[kind]:
        if values[index] is None:
            return False
    systolic, diastolic, pulse, weight_kg, spo2, glucose_mg_dl = values
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        return False
    manual = get("manual_entry", False)
    irregular = get("irregular_heartbeat")
    if not (manual is False or manual is True or manual is None):
        return False
    if not (irregular is None or irregular is True or irregular is False):
        return False
    columns.reading_id.append(reading_id)
    columns.device_id.append(device_id)
    columns.type.append(kind)
    columns.measured_at.append(measured_at)
    columns.received_at.append(received_at)
    columns.manual_entry.append(manual is True)
    columns.source_format.append("native")
    columns.systolic_mmhg.append(systolic)
    columns.diastolic_mmhg.append(diastolic)
    columns.pulse_bpm.append(pulse)
    columns.weight_kg.append(weight_kg)
    columns.spo2_pct.append(spo2)
    columns.glucose_mg_dl.append(glucose_mg_dl)
    columns.irregular_heartbeat.append(irregular)
    columns.clock_suspect.append(measured_at > received_at + clock_skew)
    columns.extra.append(None)
    columns.dedup_key.append(
        f"id:{device_id}:{reading_id}"
        if reading_id
        else f"dtm:{device_id}|{kind}|{measured_at.isoformat()}"
    )
    columns.day.append(measured_at.date().isoformat())
    return True


# orjson refuses documents nested deeper than this (it guards its own stack).
MAX_JSON_DEPTH = 1024


def load_json(payload: bytes, bad_json_reason: str) -> Any:
    """The parsed payload; DecodeError ``too_deep`` or ``bad_json`` (with the given sentence)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        text = str(exc).lower()
        if "depth" in text or "recursion" in text:
            raise DecodeError(
                "too_deep",
                f"the JSON nests arrays or objects more than {MAX_JSON_DEPTH} levels deep",
            ) from None
        raise DecodeError("bad_json", bad_json_reason) from None


# A rejected Bundle entry is kept as a Bundle of itself and the Bundle's Device and
# DeviceMetric entries, so that a replay resolves its device as the first decode did; when
# those entries are larger than this, the entry is kept alone (quarantine stays bounded).
MAX_CONTEXT_BYTES = 64 * 1024


def _bundle_item(bundle: BundleParts, index: int, devices: list[dict[str, Any]]) -> bytes:
    entry = bundle.entries[index]
    if not isinstance(entry, dict) or not devices:
        return item_bytes(bundle.items[index])
    return item_bytes({"resourceType": "Bundle", "type": "collection", "entry": [*devices, entry]})


def _reading(
    item: object,
    defaults: dict[str, Any],
    resources: Resources | None,
    resolve_device: ResolveDevice | None,
    topic_device_id: str | None,
    received_at: datetime,
    clock_skew: timedelta,
) -> Reading:
    fields = _fields(item, defaults, resources, resolve_device)
    if topic_device_id is not None:
        if fields.device_id is None:
            fields.device_id = topic_device_id
        elif fields.device_id != topic_device_id:
            raise DecodeError(
                "device_mismatch", "the payload's device_id differs from the topic's device"
            )
    elif fields.device_id is None:
        fields.device_id = fields.device_hint
    return make_reading(fields, received_at, clock_skew)


def item_bytes(item: object) -> bytes:
    try:
        return orjson.dumps(item)
    except (orjson.JSONEncodeError, TypeError):
        return b"<unserialisable item>"


def _fields(
    item: object,
    defaults: dict[str, Any],
    resources: Resources | None,
    resolve_device: ResolveDevice | None,
) -> Fields:
    if not isinstance(item, dict):
        raise DecodeError(
            "unsupported_format", f"an item is not a JSON object; rpmpipe reads {ACCEPTED_FORMATS}"
        )
    if is_fhir(item):
        return observation_fields(item, resources, resolve_device)
    if is_openmhealth(item):
        return openmhealth_fields(item)
    if "type" not in item and "measured_at" not in item:
        # Neither of the native reading's own fields: some other JSON (a vendor API
        # response, a webhook body), not a native reading with fields missing.
        raise DecodeError(
            "unsupported_format",
            f"the JSON is not a reading in a format rpmpipe reads: {ACCEPTED_FORMATS}",
        )
    return native_fields({**defaults, **item} if defaults else item)


def native_fields(item: dict[str, Any]) -> Fields:
    """Fields of the native payload of ARCHITECTURE.md; unknown keys are kept as ``extra``."""
    weight_kg = item.get("weight_kg")
    if weight_kg is None and item.get("weight") is not None:
        weight_kg = convert_weight(item["weight"], item.get("unit"))
    glucose = item.get("glucose_mg_dl")
    if glucose is None and item.get("glucose") is not None:
        glucose = convert_glucose(item["glucose"], item.get("glucose_unit", item.get("unit")))
    unknown = (
        None
        if item.keys() <= NATIVE_FIELDS
        else {k: v for k, v in item.items() if k not in NATIVE_FIELDS}
    )
    return Fields(
        device_id=item.get("device_id"),
        reading_id=item.get("reading_id"),
        measured_at=item.get("measured_at"),
        type=item.get("type"),
        manual_entry=item.get("manual_entry", False),
        systolic_mmhg=item.get("systolic_mmhg"),
        diastolic_mmhg=item.get("diastolic_mmhg"),
        pulse_bpm=item.get("pulse_bpm"),
        weight_kg=weight_kg,
        spo2_pct=item.get("spo2_pct"),
        glucose_mg_dl=glucose,
        irregular_heartbeat=item.get("irregular_heartbeat"),
        extra=_extra(unknown) if unknown else None,
    )


def _depth(value: object, limit: int) -> int:
    if limit <= 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def _extra(unknown: dict[str, Any]) -> str:
    if _depth(unknown, MAX_EXTRA_DEPTH + 1) > MAX_EXTRA_DEPTH:
        raise DecodeError("too_deep", f"extra fields nest deeper than {MAX_EXTRA_DEPTH} levels")
    text = orjson.dumps(unknown, option=orjson.OPT_SORT_KEYS)
    if len(text) > MAX_EXTRA_BYTES:
        raise DecodeError("too_large", f"extra fields exceed {MAX_EXTRA_BYTES} bytes")
    return text.decode()
