"""One batch of messages to durable storage: decode, check devices, write, quarantine.

Used by the MQTT subscriber, the JSONL backfill and the quarantine replay, so all three apply
the same validation and the same exactly-once store. :meth:`IngestPipeline.handle` returns
only after everything of the batch is durably written; the caller then acknowledges.

Failures are split the way :func:`rpmpipe.errors.is_transient` draws them. A transient one in
the readings or quarantine write (a full disk) raises, and the caller retries the batch. An
activity whose registry write meets an outage is *pending*: its message is named in
:attr:`BatchOutcome.pending` and must not be acknowledged, while the readings of the batch are
stored and acknowledged as usual. Anything a message causes (a decoder or registry error other
than an outage) quarantines that message as ``internal_error`` with the exception type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select

from rpmpipe.errors import DecodeError, is_transient
from rpmpipe.ingest.decoders import decode, decode_into
from rpmpipe.ingest.messages import BatchOutcome, Message, internal_reason
from rpmpipe.ingest.quarantine import QuarantineEntry, QuarantineStore
from rpmpipe.ingest.schema import ReadingColumns
from rpmpipe.ingest.sink import ReadingSink
from rpmpipe.registry.models import Device
from rpmpipe.settings import IngestSettings

if TYPE_CHECKING:
    from rpmpipe.ingest.activities import ActivityItem

BACKFILL_TOPIC = "backfill"
__all__ = [
    "BACKFILL_TOPIC",
    "BatchOutcome",
    "IngestPipeline",
    "KnownDevices",
    "Message",
    "internal_reason",
    "topic_device",
]


def topic_device(topic: str, topic_root: str) -> tuple[str, str | None]:
    """("reading", device_id), ("activity", None), ("backfill", None) or ("unknown", None)."""
    if topic == BACKFILL_TOPIC:
        return "backfill", None
    prefix = f"{topic_root}/devices/"
    if topic.startswith(prefix) and topic.endswith("/readings"):
        device = topic[len(prefix) : -len("/readings")]
        if device and "/" not in device:
            return "reading", device
    if topic == f"{topic_root}/activities":
        return "activity", None
    return "unknown", None


class KnownDevices:
    """The registry's device ids, re-read on a miss: once per batch, else every ``min_refresh``.

    Once per batch matters: devices registered just before their first syncs (the simulator
    does that) must not be quarantined for the rest of a refresh interval.
    """

    def __init__(
        self, engine: Engine, min_refresh: float = 5.0, clock: Callable[[], float] = time.monotonic
    ):
        self._engine = engine
        self._min_refresh = min_refresh
        self._clock = clock
        self._ids: frozenset[str] = frozenset()
        self._serials: dict[str, str] = {}  # serial number -> device id
        self._loaded_at: float | None = None
        self._fresh_in_batch = False

    def refresh(self) -> None:
        """Re-read the registry's device ids; raises on a database outage (ids kept)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(Device.device_id, Device.serial_number)).all()
        self._ids = frozenset(device_id for device_id, _ in rows)
        self._serials = {serial: device_id for device_id, serial in rows if serial}
        self._loaded_at = self._clock()
        self._fresh_in_batch = True

    def begin_batch(self) -> None:
        """A new batch may re-read the registry once on a miss, whatever the interval."""
        self._fresh_in_batch = False

    def resolve(self, identifier: str) -> str | None:
        """The device id that ``identifier`` (a device id or a serial number) names, or None."""
        if identifier in self:  # a miss re-reads the registry, serial numbers included
            return identifier
        return self._serials.get(identifier)

    def __contains__(self, device_id: object) -> bool:
        if device_id in self._ids:
            return True
        stale = self._loaded_at is None or self._clock() - self._loaded_at >= self._min_refresh
        if stale or not self._fresh_in_batch:
            self.refresh()
        return device_id in self._ids


class _Batch:
    """What one batch of messages has given so far: readings (each with the message it came
    in), activities, quarantine entries and the messages that must wait for the registry."""

    def __init__(self, messages: Sequence[Message]) -> None:
        # By identity: callers build one Message per payload, so this finds its position.
        self.index_of = {id(m): i for i, m in enumerate(messages)}
        self.readings = ReadingColumns()
        self.origin: list[Message] = []  # per row of ``readings``: the message it came in
        self.entries: list[QuarantineEntry] = []
        self.rejected: list[tuple[int, str]] = []
        # One activity per batch, so a bad one (found only by the registry) fails alone.
        self.activity_batches: list[list[dict[str, str]]] = []
        self.activity_origins: list[tuple[Message, ActivityItem]] = []
        self.pending: set[int] = set()
        self.pending_error = ""

    def reject(self, m: Message, code: str, reason: str, payload: bytes | None = None) -> None:
        """Quarantine (part of) ``m``: its payload, or the one item ``payload`` of it."""
        text = f"{m.label}: {reason}" if m.label else reason
        self.rejected.append((self.index_of[id(m)], code))
        self.entries.append(
            QuarantineEntry(
                m.topic,
                m.payload if payload is None else payload,
                code,
                text,
                m.received_at,
                m.source,
            )
        )

    def wait(self, m: Message, error: str) -> None:
        """``m`` waits for the registry (not acknowledged); ``error`` names the first outage."""
        self.pending.add(self.index_of[id(m)])
        self.pending_error = self.pending_error or error


def _take_activities(batch: _Batch, m: Message) -> None:
    """The activities of one message, to be stored with the batch (bad items quarantined)."""
    # Loaded with the first activity: a readings stream never needs the registry's import
    # rules (a fifth of the writer's start-up).
    from rpmpipe.ingest.activities import activity_items

    try:
        good, bad = activity_items(m.payload)
    except DecodeError as exc:
        batch.reject(m, exc.code, exc.detail)
        return
    except Exception as exc:  # noqa: BLE001 - terminal: this message caused it
        batch.reject(m, "internal_error", internal_reason(exc, "reading the activity"))
        return
    for r in bad:
        batch.reject(m, r.code, r.reason, r.item)
    for a in good:
        batch.activity_batches.append([a.row])
        batch.activity_origins.append((m, a))


class IngestPipeline:
    def __init__(
        self,
        settings: IngestSettings,
        engine: Engine,
        writer_id: str,
        *,
        device_refresh: float = 5.0,
    ):
        self.settings = settings
        self.engine = engine
        self.sink = ReadingSink(settings.store.readings_dir, writer_id)
        self.quarantine = QuarantineStore(
            settings.store.quarantine_dir, writer_id, settings.broker.message_size_limit
        )
        self.devices = KnownDevices(engine, device_refresh)
        self.clock_skew = timedelta(minutes=settings.clock_skew_minutes)

    def handle(self, messages: Sequence[Message]) -> BatchOutcome:
        """Write the batch durably (readings, quarantine, activities); raises on I/O errors."""
        root = self.settings.broker.topic_root
        self.devices.begin_batch()
        batch = _Batch(messages)
        for m in messages:
            kind, device = topic_device(m.topic, root)
            if kind == "unknown":
                batch.reject(m, "unknown_topic", "the topic is not a readings or activities topic")
            elif kind == "activity":
                _take_activities(batch, m)
            else:
                self._take_readings(batch, m, device)
        return self._write(batch)

    def _take_readings(self, batch: _Batch, m: Message, device: str | None) -> None:
        """The readings of one message: of the topic's device, or of a backfill line (which
        names its devices itself)."""
        readings = batch.readings
        try:
            if device is not None:
                if device not in self.devices:
                    batch.reject(m, "unknown_device", "the topic's device is not in the registry")
                    return
                before = len(readings)
                rejects = decode_into(
                    readings,
                    device,
                    m.payload,
                    m.received_at,
                    self.clock_skew,
                    self.devices.resolve,
                )
                batch.origin.extend([m] * (len(readings) - before))
                for r in rejects:
                    batch.reject(m, r.code, r.reason, r.item)
                return
            decoded = decode(None, m.payload, m.received_at, self.clock_skew, self.devices.resolve)
            unknown_ids = {r.device_id for r in decoded.readings if r.device_id not in self.devices}
        except Exception as exc:
            if is_transient(exc):
                # The registry is away and the device is not known yet: wait for it.
                batch.wait(m, type(exc).__name__)
                return
            batch.reject(m, "internal_error", internal_reason(exc, "decoding the payload"))
            return
        for r in decoded.rejects:
            batch.reject(m, r.code, r.reason, r.item)
        if unknown_ids:
            batch.reject(
                m,
                "unknown_device",
                f"{len(unknown_ids)} device(s) of the line are not in the registry",
            )
        for reading in decoded.readings:
            if reading.device_id not in unknown_ids:
                readings.add(reading)
                batch.origin.append(m)

    def _write(self, batch: _Batch) -> BatchOutcome:
        """Store what the batch holds: readings, then activities, then the quarantine."""
        outcome = BatchOutcome()
        if len(batch.readings):
            result = self.sink.write(batch.readings)
            outcome.stored, outcome.duplicates = result.stored, result.duplicates
            for c in result.conflicts:  # a reading id reused with another time: never stored
                batch.reject(batch.origin[c.row], "conflicting_duplicate", c.reason)
        if batch.activity_batches:
            outcome.activities, waiting = self._store_activities(
                batch.activity_batches,
                batch.activity_origins,
                batch.reject,
                now=max(m.received_at for m, _ in batch.activity_origins),
            )
            for m, error in waiting:
                batch.wait(m, error)
        if batch.entries:
            self.quarantine.add(batch.entries)
            outcome.quarantined.update(e.reason_code for e in batch.entries)
            outcome.entries = batch.entries
            outcome.rejected = batch.rejected
        outcome.pending = sorted(batch.pending)
        outcome.pending_error = batch.pending_error
        return outcome

    def _store_activities(
        self,
        batches: list[list[dict[str, str]]],
        origins: list[tuple[Message, ActivityItem]],
        reject: Callable[[Message, str, str, bytes | None], None],
        now: datetime,
    ) -> tuple[int, list[tuple[Message, str]]]:
        """Commit the activities; (committed, [(message, error type)] waiting for the database).

        All at once first; on an unexpected error each activity alone, so that one poison
        activity is quarantined (``internal_error``) and an outage holds back only activities.
        """
        from rpmpipe.ingest.activities import store_activities

        source = origins[0][0].source

        def record(failed: list[tuple[int, str, str]], offset: int) -> None:
            for index, code, reason in failed:
                m, a = origins[offset + index]
                reject(m, code, f"{a.where}: {reason}" if a.where else reason, a.item)

        try:
            committed, failed = store_activities(self.engine, batches, source=source, now=now)
        except Exception:  # noqa: BLE001, S110 - sorted out one activity at a time below
            pass
        else:
            record(failed, 0)
            return committed, []
        committed = 0
        waiting: list[tuple[Message, str]] = []
        for i, rows in enumerate(batches):
            m, a = origins[i]
            if any(w is m for w, _ in waiting):
                continue  # the message waits anyway; its other activities come back with it
            try:
                n, failed = store_activities(self.engine, [rows], source=source, now=now)
            except Exception as exc:
                if is_transient(exc):
                    waiting.append((m, type(exc).__name__))
                    continue
                where = f"storing activity {a.where}" if a.where else "storing the activity"
                reject(m, "internal_error", internal_reason(exc, where), a.item)
                continue
            committed += n
            record(failed, i)
        return committed, waiting

    def registry_reachable(self) -> bool:
        """Whether the registry answers a trivial query now (tells an outage from a poison)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except Exception:  # noqa: BLE001 - any failure means "not now"
            return False
        return True

    def quarantine_internal(self, message: Message, reason: str) -> None:
        """Quarantine ``message`` whole as ``internal_error`` (terminal; the caller acks it)."""
        text = f"{message.label}: {reason}" if message.label else reason
        self.quarantine.add(
            [
                QuarantineEntry(
                    message.topic,
                    message.payload,
                    "internal_error",
                    text,
                    message.received_at,
                    message.source,
                )
            ]
        )
