"""The Arrow schemas of the readings and quarantine datasets, and rows to tables (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

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


def readings_table(
    readings: Sequence[Reading], dedup_keys: Sequence[str] | None = None
) -> pa.Table:
    """Readings as an Arrow table in :data:`READINGS_SCHEMA`, sorted by measured time.

    ``dedup_keys`` (parallel to ``readings``) saves recomputing keys the caller already has.
    """
    columns = ReadingColumns.of(readings, dedup_keys)
    return sorted_by_time(columns.table())


class ReadingColumns:
    """A batch of readings as column lists (a builder on the ingest hot path, not a value).

    The MQTT fast path for native payloads appends to the lists directly; readings of the
    general decoders join with :meth:`add`. ``dedup_key`` and ``day`` (the UTC date of
    ``measured_at``, ISO text: the partition) run parallel to the columns.
    """

    __slots__ = (
        "clock_suspect",
        "day",
        "dedup_key",
        "device_id",
        "diastolic_mmhg",
        "extra",
        "glucose_mg_dl",
        "irregular_heartbeat",
        "manual_entry",
        "measured_at",
        "pulse_bpm",
        "reading_id",
        "received_at",
        "source_format",
        "spo2_pct",
        "systolic_mmhg",
        "type",
        "weight_kg",
    )

    def __init__(self) -> None:
        self.reading_id: list[str | None] = []
        self.device_id: list[str] = []
        self.type: list[str] = []
        self.measured_at: list[datetime] = []
        self.received_at: list[datetime] = []
        self.manual_entry: list[bool] = []
        self.source_format: list[str] = []
        self.systolic_mmhg: list[float | None] = []
        self.diastolic_mmhg: list[float | None] = []
        self.pulse_bpm: list[float | None] = []
        self.weight_kg: list[float | None] = []
        self.spo2_pct: list[float | None] = []
        self.glucose_mg_dl: list[float | None] = []
        self.irregular_heartbeat: list[bool | None] = []
        self.clock_suspect: list[bool] = []
        self.extra: list[str | None] = []
        self.dedup_key: list[str] = []
        self.day: list[str] = []

    @classmethod
    def of(
        cls, readings: Sequence[Reading], dedup_keys: Sequence[str] | None = None
    ) -> ReadingColumns:
        columns = cls()
        for r in readings:
            columns.add(r)
        if dedup_keys is not None:
            columns.dedup_key = list(dedup_keys)
        return columns

    def __len__(self) -> int:
        return len(self.dedup_key)

    def add(self, r: Reading) -> None:
        self.reading_id.append(r.reading_id)
        self.device_id.append(r.device_id)
        self.type.append(r.type)
        self.measured_at.append(r.measured_at)
        self.received_at.append(r.received_at)
        self.manual_entry.append(r.manual_entry)
        self.source_format.append(r.source_format)
        self.systolic_mmhg.append(r.systolic_mmhg)
        self.diastolic_mmhg.append(r.diastolic_mmhg)
        self.pulse_bpm.append(r.pulse_bpm)
        self.weight_kg.append(r.weight_kg)
        self.spo2_pct.append(r.spo2_pct)
        self.glucose_mg_dl.append(r.glucose_mg_dl)
        self.irregular_heartbeat.append(r.irregular_heartbeat)
        self.clock_suspect.append(r.clock_suspect)
        self.extra.append(r.extra)
        self.dedup_key.append(r.dedup_key)
        self.day.append(r.measured_at.astimezone(UTC).date().isoformat())

    def truncate(self, rows: int) -> None:
        """Drop every row from ``rows`` on (a fast path taking back a payload's rows)."""
        for name in self.__slots__:
            del getattr(self, name)[rows:]

    def reading(self, i: int) -> Reading:
        """Row ``i`` as a :class:`Reading` (for the rare row that needs one, e.g. a conflict)."""
        return Reading(
            device_id=self.device_id[i],
            type=self.type[i],
            measured_at=self.measured_at[i],
            received_at=self.received_at[i],
            reading_id=self.reading_id[i],
            manual_entry=self.manual_entry[i],
            source_format=self.source_format[i],
            systolic_mmhg=self.systolic_mmhg[i],
            diastolic_mmhg=self.diastolic_mmhg[i],
            pulse_bpm=self.pulse_bpm[i],
            weight_kg=self.weight_kg[i],
            spo2_pct=self.spo2_pct[i],
            glucose_mg_dl=self.glucose_mg_dl[i],
            irregular_heartbeat=self.irregular_heartbeat[i],
            clock_suspect=self.clock_suspect[i],
            extra=self.extra[i],
        )

    def table(self) -> pa.Table:
        """All rows in :data:`READINGS_SCHEMA`, in the order they were added."""
        return pa.Table.from_pydict(
            {name: getattr(self, name) for name in READINGS_SCHEMA.names}, schema=READINGS_SCHEMA
        )


def sorted_by_time(table: pa.Table) -> pa.Table:
    """``table`` sorted by ``measured_at`` (stable: equal times keep their order)."""
    return table.take(pc.sort_indices(table, [("measured_at", "ascending")]))
