"""The Arrow schemas of the readings and quarantine datasets, and rows to tables (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from rpmpipe.records import Reading

UTC_US = pa.timestamp("us", tz="UTC")

READINGS_SCHEMA = pa.schema(
    [
        pa.field("reading_id", pa.string()),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("measured_at", UTC_US, nullable=False),
        pa.field("received_at", UTC_US, nullable=False),
        pa.field("manual_entry", pa.bool_(), nullable=False),
        pa.field("source_format", pa.string(), nullable=False),
        pa.field("systolic_mmhg", pa.float64()),
        pa.field("diastolic_mmhg", pa.float64()),
        pa.field("pulse_bpm", pa.float64()),
        pa.field("weight_kg", pa.float64()),
        pa.field("spo2_pct", pa.float64()),
        pa.field("glucose_mg_dl", pa.float64()),
        pa.field("irregular_heartbeat", pa.bool_()),
        pa.field("clock_suspect", pa.bool_(), nullable=False),
        pa.field("dedup_key", pa.string(), nullable=False),
        pa.field("extra", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("quarantine_id", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("received_at", UTC_US, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        # What the latest ``quarantine replay`` attempt failed with, when it still failed;
        # reason_code/reason always keep the first failure. Null in files written before.
        pa.field("last_reason_code", pa.string()),
        pa.field("last_reason", pa.string()),
        # Set when only the first bytes of an oversized payload are kept: the whole payload's
        # size and SHA-256 (hex). Null when ``payload`` is whole (and in older files).
        pa.field("payload_size", pa.int64()),
        pa.field("payload_sha256", pa.string()),
    ]
)

_MEASUREMENTS = (
    "systolic_mmhg",
    "diastolic_mmhg",
    "pulse_bpm",
    "weight_kg",
    "spo2_pct",
    "glucose_mg_dl",
)


def readings_table(
    readings: Sequence[Reading], dedup_keys: Sequence[str] | None = None
) -> pa.Table:
    """Readings as an Arrow table in :data:`READINGS_SCHEMA`, sorted by measured time.

    ``dedup_keys`` (parallel to ``readings``) saves recomputing keys the caller already has.
    """
    keys = [r.dedup_key for r in readings] if dedup_keys is None else dedup_keys
    order = sorted(range(len(readings)), key=lambda i: readings[i].measured_at)
    rows = [readings[i] for i in order]
    columns: dict[str, list[object]] = {
        "reading_id": [r.reading_id for r in rows],
        "device_id": [r.device_id for r in rows],
        "type": [r.type for r in rows],
        "measured_at": [r.measured_at for r in rows],
        "received_at": [r.received_at for r in rows],
        "manual_entry": [r.manual_entry for r in rows],
        "source_format": [r.source_format for r in rows],
        **{name: [getattr(r, name) for r in rows] for name in _MEASUREMENTS},
        "irregular_heartbeat": [r.irregular_heartbeat for r in rows],
        "clock_suspect": [r.clock_suspect for r in rows],
        "dedup_key": [keys[i] for i in order],
        "extra": [r.extra for r in rows],
    }
    return pa.Table.from_pydict(columns, schema=READINGS_SCHEMA)
