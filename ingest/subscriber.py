"""The long-running MQTT subscriber: at-least-once from the broker, exactly-once in the store.

One thread does everything: it drives paho's network loop, collects incoming messages into a
batch (``broker.batch_size`` messages, or whatever arrived once ``broker.flush_seconds``
passed or the stream paused), writes the batch through
:class:`~ingest.pipeline.IngestPipeline`, and only then acknowledges it (manual acks). A
second thread would only fight this one for the GIL. The session is persistent (stable client
id; MQTT 5 ``clean_start=False`` with a session expiry, or 3.1.1 ``clean_session=False``), so
messages not acknowledged before a crash, and those published while ingest was away, are
delivered again; the sink's dedup makes that harmless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine

from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.stats import IngestStats, StatsSnapshot
from rpmpipe.logs import get_logger
from rpmpipe.mqtt import make_client, parse_broker
from rpmpipe.settings import Settings

log = get_logger(__name__)

# A pause this long in an otherwise busy stream means the broker's in-flight window is full
# (e.g. Mosquitto's 20 for MQTT 3.1.1 clients): flush now rather than wait for the timer.
IDLE_FLUSH_SECONDS = 0.02
MAX_BACKOFF_SECONDS = 30.0


class _Incoming(NamedTuple):
    generation: int  # which connection delivered it: packet ids are only valid on that one
    mid: int
    qos: int
    message: Message
    arrived: float  # monotonic seconds


def subscriptions(settings: Settings, shared_group: str | None) -> list[str]:
    root = settings.broker.topic_root
    topics = [f"{root}/devices/+/readings", f"{root}/activities"]
    if shared_group:
        topics = [f"$share/{shared_group}/{t}" for t in topics]
    return topics


class IngestService:
    """``IngestService(settings, engine).run(stop_event)``; ``stats`` is safe from any thread."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        device_refresh_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.client_id = client_id or settings.broker.client_id
        self.shared_group = shared_group or settings.broker.shared_group or None
        self.pipeline = IngestPipeline(
            settings, engine, self.client_id, device_refresh=device_refresh_seconds
        )
        self._stats = IngestStats()
        self._inbox: list[_Incoming] = []
        self._generation = 0
        self._connected = False
        self.v5 = settings.broker.protocol == "5"
        self.batch_size = settings.broker.batch_size
        # Two batches in flight: the next one streams in while the current one is written.
        self.receive_maximum = min(65535, 2 * self.batch_size)

    @property
    def stats(self) -> StatsSnapshot:
        return self._stats.snapshot()

    @property
    def counters(self) -> IngestStats:
        return self._stats

    # --- paho callbacks (run inside client.loop(), on the service's thread) ----------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker_connect_refused", reason=str(reason))
            return
        self._generation += 1
        self._connected = True
        self._stats.set_connected(True)
        client.subscribe([(t, 1) for t in subscriptions(self.settings, self.shared_group)])
        log.info(
            "broker_connected",
            client_id=self.client_id,
            generation=self._generation,
            shared_group=self.shared_group or "",
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if any(c.is_failure for c in codes):
            log.error("subscribe_refused", reasons=[str(c) for c in codes])
        else:
            self._stats.add(subscribed=1)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._connected = False
        self._stats.set_connected(False)
        if reason.is_failure:
            log.warning("broker_disconnected", reason=str(reason))
        else:
            log.info("broker_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<undecodable topic>"
        self._inbox.append(
            _Incoming(
                self._generation,
                msg.mid,
                msg.qos,
                Message(topic, bytes(msg.payload), datetime.now(UTC)),
                time.monotonic(),
            )
        )
        self._stats.received += 1

    # --- connection ----------------------------------------------------------------------

    def _client(self) -> mqtt.Client:
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        client, _address = make_client(
            self.settings.broker,
            self.client_id,
            protocol=protocol,
            clean=False,
            manual_ack=True,
            max_inflight=20,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _open(self, client: mqtt.Client, stop: threading.Event) -> bool:
        """Connect (or reconnect) with exponential backoff; False if stopped meanwhile."""
        address = parse_broker(self.settings.broker)
        delay = 0.5
        while not stop.is_set():
            try:
                if self.v5:
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = self.settings.broker.session_expiry_seconds
                    props.ReceiveMaximum = self.receive_maximum
                    client.connect(
                        address.host,
                        address.port,
                        self.settings.broker.keepalive_seconds,
                        clean_start=False,
                        properties=props,
                    )
                else:
                    client.connect(
                        address.host, address.port, self.settings.broker.keepalive_seconds
                    )
                return True
            except OSError as exc:
                log.warning(
                    "broker_unreachable",
                    host=address.host,  # host and port only: the URL may carry credentials
                    port=address.port,
                    error_type=type(exc).__name__,
                    retry_in_seconds=delay,
                )
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        return False

    # --- batching ------------------------------------------------------------------------

    def _due(self) -> float | None:
        """Seconds until the inbox must be flushed (0: now), or None when it is empty."""
        if not self._inbox:
            return None
        if len(self._inbox) >= self.batch_size:
            return 0.0
        due = min(
            self._inbox[0].arrived + self.settings.broker.flush_seconds,
            self._inbox[-1].arrived + IDLE_FLUSH_SECONDS,
        )
        return max(0.0, due - time.monotonic())

    def _write_and_ack(
        self, client: mqtt.Client, batch: list[_Incoming], stop: threading.Event
    ) -> bool:
        """Write ``batch`` durably, then acknowledge it.

        A failed write is retried with backoff and never acknowledged; False if ``stop`` came
        first, leaving the batch unacknowledged for the broker to deliver again.
        """
        started = time.perf_counter()
        messages = [m.message for m in batch]
        delay = 0.5
        while True:
            try:
                outcome = self.pipeline.handle(messages)
                break
            except Exception as exc:  # noqa: BLE001 - disk or database trouble: retry, never ack
                self._stats.add(write_errors=1)
                log.error(
                    "batch_write_failed",
                    messages=len(batch),
                    error_type=type(exc).__name__,
                    retry_in_seconds=delay,
                )
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        acked = 0
        for m in batch:
            # A packet id from an earlier connection may name another message on this one;
            # the broker redelivers those anyway, and dedup absorbs the second copy.
            if m.generation == self._generation and self._connected and m.qos > 0:
                client.ack(m.mid, m.qos)
                acked += 1
        elapsed = time.perf_counter() - started
        self._stats.flushed(elapsed)
        self._stats.add(
            processed=len(batch),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            activities=outcome.activities,
        )
        for code, n in outcome.quarantined.items():
            self._stats.quarantine(code, n)
        log.debug(
            "batch_flushed",
            messages=len(batch),
            acked=acked,
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            quarantined=sum(outcome.quarantined.values()),
            seconds=round(elapsed, 4),
        )
        return True

    def _flush(self, client: mqtt.Client, stop: threading.Event, everything: bool) -> bool:
        """Write and acknowledge the due batches (all of the inbox if ``everything``)."""
        while self._inbox and (everything or self._due() == 0.0):
            batch = self._inbox[: self.batch_size]
            del self._inbox[: self.batch_size]
            if not self._write_and_ack(client, batch, stop):
                return False
        return True

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then flush, acknowledge and disconnect."""
        self.pipeline.devices.refresh()
        client = self._client()
        log.info(
            "ingest_started",
            client_id=self.client_id,
            protocol=self.settings.broker.protocol,
            batch_size=self.batch_size,
            shared_group=self.shared_group or "",
        )
        try:
            if not self._open(client, stop):
                return
            backoff = 0.5
            while not stop.is_set():
                due = self._due()
                rc = client.loop(timeout=0.1 if due is None else min(due, 0.1))
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    # Connection lost: what is in hand is still written (not acked: the broker
                    # redelivers it on the new connection), then reconnect.
                    self._connected = False
                    if not self._flush(client, stop, everything=True):
                        break
                    log.warning("broker_reconnecting", retry_in_seconds=backoff)
                    if stop.wait(backoff) or not self._open(client, stop):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                if self._connected:
                    backoff = 0.5
                if not self._flush(client, stop, everything=False):
                    break
            # Stopping: write and acknowledge what has arrived; anything later stays unacked
            # at the broker and comes back next session.
            self._flush(client, stop, everything=True)
        finally:
            if self._connected:
                client.disconnect()  # queued behind the acknowledgements, so they go out first
                for _ in range(50):
                    if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            s = self.stats
            log.info(
                "ingest_stopped",
                received=s.received,
                processed=s.processed,
                stored=s.stored,
                duplicates=s.duplicates,
                quarantined=s.quarantined_total,
            )


def run_until(
    service: IngestService, done: Callable[[StatsSnapshot], bool], timeout: float
) -> StatsSnapshot:
    """Run ``service`` in a thread until ``done(stats)`` or ``timeout``; for the demo and tests."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="ingest", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(service.stats) and thread.is_alive():
        time.sleep(0.02)
    stop.set()
    thread.join(30)
    return service.stats
