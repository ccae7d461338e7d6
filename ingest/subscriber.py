"""The long-running MQTT subscriber: at-least-once from the broker, exactly-once in the store.

One thread does everything: it drives paho's network loop, collects incoming messages into a
batch (``broker.batch_size`` messages, or whatever arrived once ``broker.flush_seconds``
passed or the stream paused), writes the batch through
:class:`~ingest.pipeline.IngestPipeline`, and only then acknowledges it (manual acks). A
second thread would only fight this one for the GIL. The session is persistent (stable client
id; MQTT 5 ``clean_start=False`` with a session expiry, or 3.1.1 ``clean_session=False``), so
messages not acknowledged before a crash, and those published while ingest was away, are
delivered again; the sink's dedup makes that harmless.

Nothing stalls it. A transient failure of the store (see :func:`rpmpipe.errors.is_transient`:
a full disk, a lost database) is retried with backoff while paho's loop keeps the connection
alive; a terminal one, caused by a message, quarantines that message (``internal_error``) and
the rest of the batch goes on. Activities that wait for the database are kept unacknowledged
and retried on their own, so readings keep being stored and acknowledged meanwhile; one that
keeps failing the same way while the database answers is quarantined after
:data:`MAX_ATTEMPTS` tries.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from rpmpipe.errors import ServiceUnavailable, is_transient
from rpmpipe.ingest.files import ensure_dir, remove_stale_temp_files
from rpmpipe.ingest.pipeline import BatchOutcome, IngestPipeline, Message, internal_reason
from rpmpipe.ingest.stats import IngestStats, StatsSnapshot
from rpmpipe.logs import get_logger
from rpmpipe.mqtt import BROKER_DROPPED_TOPIC, make_client, parse_broker
from rpmpipe.settings import Settings

log = get_logger(__name__)

# A pause this long in an otherwise busy stream means the broker's in-flight window is full
# (e.g. Mosquitto's 20 for MQTT 3.1.1 clients): flush now rather than wait for the timer.
IDLE_FLUSH_SECONDS = 0.02
MAX_BACKOFF_SECONDS = 30.0
# A message failing the same way this many times while the database answers is quarantined.
MAX_ATTEMPTS = 5
# Stop after this many "session taken over" disconnects within TAKEOVER_WINDOW_SECONDS:
# another client uses our client id. Without MQTT 5's reason code (Mosquitto 2.0 just closes
# the socket), a connection the broker closed and that is accepted again within
# TAKEOVER_RECONNECT_SECONDS counts as one.
MAX_TAKEOVERS = 3
TAKEOVER_WINDOW_SECONDS = 60.0
TAKEOVER_RECONNECT_SECONDS = 5.0
# MQTT 5 reason codes of a CONNACK or DISCONNECT.
SESSION_TAKEN_OVER = 142
NOT_AUTHORIZED = (134, 135)  # bad user name or password; not authorized


# A PUBACK without reason code or properties (success; the same bytes in MQTT 3.1.1 and 5).
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")


def send_acks(client: mqtt.Client, mids: Sequence[int]) -> None:
    """Acknowledge the QoS 1 messages ``mids`` in one socket write.

    paho's ``ack()`` queues and writes one 4-byte PUBACK per message; here they go out as
    one queued packet (paho still handles a partial write and the connection's state). A
    paho without the packet queue falls back to ``ack()`` per message.
    """
    if not mids:
        return
    queue = getattr(client, "_packet_queue", None)
    if queue is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    packet = b"".join(map(_PUBACK_PACKET.pack, repeat(_PUBACK), repeat(2), mids))
    queue(_PUBACK, packet, 0, 0)


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
        # Messages whose activities wait for the database (unacknowledged), and when to retry.
        self._waiting: list[_Incoming] = []
        self._waiting_due = 0.0
        self._waiting_delay = 0.5
        # (message digest) -> (error type, attempts) for messages that failed while the
        # database answered: a poison message, not an outage.
        self._attempts: dict[str, tuple[str, int]] = {}
        self._takeovers: list[float] = []  # monotonic times of takeovers (recent window)
        self._closed_by_broker_at: float | None = None
        self._refused: str = ""  # the broker's last CONNACK refusal, "" once accepted
        self._fatal: ServiceUnavailable | None = None
        self._sys_mid: int | None = None
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
            code = reason.value
            self._refused = "not authorized" if code in NOT_AUTHORIZED else str(reason)
            log.error(
                "broker_connect_refused",
                reason=self._refused,
                client_id=self.client_id,
                broker_reason=str(reason),
            )
            return
        self._refused = ""
        if (
            self._closed_by_broker_at is not None
            and time.monotonic() - self._closed_by_broker_at < TAKEOVER_RECONNECT_SECONDS
        ):
            self._takeover(confirmed=False)
        self._closed_by_broker_at = None
        self._generation += 1
        self._connected = True
        self._stats.set_connected(True)
        client.subscribe([(t, 1) for t in subscriptions(self.settings, self.shared_group)])
        # The broker's dropped-message counter, where it publishes one (Mosquitto's $SYS).
        self._sys_mid = client.subscribe(BROKER_DROPPED_TOPIC, 0)[1]
        log.info(
            "broker_connected",
            client_id=self.client_id,
            generation=self._generation,
            shared_group=self.shared_group or "",
        )

    def _takeover(self, confirmed: bool) -> None:
        now = time.monotonic()
        self._takeovers = [t for t in self._takeovers if now - t < TAKEOVER_WINDOW_SECONDS]
        self._takeovers.append(now)
        log.error(
            "session_taken_over",
            client_id=self.client_id,
            takeovers=len(self._takeovers),
            confirmed=confirmed,  # MQTT 5 reason "Session taken over", or inferred
            reason=(
                "another client connected with this client id; give each ingest process "
                "its own --client-id"
            ),
        )
        if len(self._takeovers) >= MAX_TAKEOVERS:
            self._fatal = ServiceUnavailable(
                f"the broker session of client id {self.client_id!r} was taken over "
                f"{len(self._takeovers)} times within {TAKEOVER_WINDOW_SECONDS:.0f} s by another "
                "client with the same id; stopping (give each ingest process its own --client-id)"
            )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if mid == self._sys_mid:
            if any(c.is_failure for c in codes):
                log.info("broker_drop_counter_unavailable", reasons=[str(c) for c in codes])
            return
        if any(c.is_failure for c in codes):
            log.error("subscribe_refused", reasons=[str(c) for c in codes])
        else:
            self._stats.add(subscribed=1)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self._stats.set_connected(False)
        if reason.value == SESSION_TAKEN_OVER:
            self._takeover(confirmed=True)
        elif was_connected and reason.is_failure:
            # Mosquitto 2.0 closes a taken-over connection without a DISCONNECT packet: if
            # the next connection is accepted at once, count it as a (suspected) takeover.
            self._closed_by_broker_at = time.monotonic()
        elif not was_connected:
            pass  # a refused CONNECT was already reported once by _on_connect
        elif reason.is_failure:
            log.warning("broker_disconnected", reason=str(reason))
        else:
            log.info("broker_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<undecodable topic>"
        if topic == BROKER_DROPPED_TOPIC:
            self._broker_dropped(bytes(msg.payload))
            return
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

    def _broker_dropped(self, payload: bytes) -> None:
        try:
            n = int(payload)
        except ValueError:
            return
        before = self._stats.snapshot().broker_dropped
        self._stats.set_broker_dropped(n)
        if n > 0 and n != before:
            log.error(
                "broker_dropped_messages",
                dropped=n,
                reason=(
                    "the broker dropped messages for a full queue (max_queued_messages): "
                    "readings were lost at the broker"
                ),
            )

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

    def _connect(self, client: mqtt.Client) -> None:
        """Open the TCP (TLS) connection and send CONNECT; the CONNACK comes in the loop."""
        address = parse_broker(self.settings.broker)
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
            client.connect(address.host, address.port, self.settings.broker.keepalive_seconds)

    def _open(self, client: mqtt.Client, stop: threading.Event) -> bool:
        """Connect (or reconnect) with exponential backoff; False if stopped meanwhile."""
        address = parse_broker(self.settings.broker)
        delay = 0.5
        while not stop.is_set():
            try:
                self._connect(client)
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

    def _pause(self, client: mqtt.Client, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` while servicing paho's loop (keepalive); False if stopped."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._connected:
                if client.loop(timeout=min(left, 0.1)) != mqtt.MQTT_ERR_SUCCESS:
                    self._connected = False
            else:
                stop.wait(min(left, 0.1))
        return False

    def _handle(
        self, client: mqtt.Client, batch: list[_Incoming], stop: threading.Event
    ) -> BatchOutcome | None:
        """The pipeline's outcome for ``batch``, retrying transient failures; None if stopped.

        A terminal failure of the whole batch is sorted out message by message: each message
        that fails alone is quarantined as ``internal_error`` and counts as handled.
        """
        messages = [m.message for m in batch]
        delay = 0.5
        while True:
            try:
                return self.pipeline.handle(messages)
            except Exception as exc:  # noqa: BLE001 - sorted into transient and terminal
                if not is_transient(exc):
                    return self._handle_one_by_one(client, batch, stop)
                self._stats.add(write_errors=1)
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                log.error(
                    "batch_write_failed",
                    messages=len(batch),
                    error_type=type(exc).__name__,
                    **_os_error_fields(exc),
                    retry_in_seconds=delay,
                    retry_at=retry_at.isoformat(timespec="seconds"),
                )
                if not self._pause(client, stop, delay):
                    return None
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _handle_one_by_one(
        self, client: mqtt.Client, batch: list[_Incoming], stop: threading.Event
    ) -> BatchOutcome | None:
        total = BatchOutcome()
        for i, m in enumerate(batch):
            while True:
                try:
                    one = self.pipeline.handle([m.message])
                except Exception as exc:  # noqa: BLE001 - sorted into transient and terminal
                    if is_transient(exc):
                        self._stats.add(write_errors=1)
                        log.error(
                            "batch_write_failed",
                            messages=1,
                            error_type=type(exc).__name__,
                            **_os_error_fields(exc),
                            retry_in_seconds=1.0,
                        )
                        if not self._pause(client, stop, 1.0):
                            return None
                        continue
                    self._quarantine_poison(
                        client,
                        stop,
                        m,
                        type(exc).__name__,
                        internal_reason(exc, "handling the message"),
                    )
                    total.quarantined["internal_error"] += 1
                    break
                total.stored += one.stored
                total.duplicates += one.duplicates
                total.activities += one.activities
                total.quarantined.update(one.quarantined)
                if one.pending:
                    total.pending.append(i)
                    total.pending_error = total.pending_error or one.pending_error
                break
        return total

    def _quarantine_poison(
        self,
        client: mqtt.Client,
        stop: threading.Event,
        m: _Incoming,
        error_type: str,
        reason: str,
    ) -> None:
        """Keep a message that cannot be handled in quarantine (retrying the write itself)."""
        log.error(
            "message_quarantined",
            reason_code="internal_error",
            error_type=error_type,
            topic_kind=m.message.topic.rsplit("/", 1)[-1],
        )
        while True:
            try:
                self.pipeline.quarantine_internal(m.message, reason)
                return
            except Exception as write_exc:  # noqa: BLE001 - the disk is away: retry
                log.error(
                    "batch_write_failed",
                    messages=1,
                    error_type=type(write_exc).__name__,
                    **_os_error_fields(write_exc),
                    retry_in_seconds=1.0,
                )
                if not self._pause(client, stop, 1.0):
                    return

    def _write_and_ack(
        self, client: mqtt.Client, batch: list[_Incoming], stop: threading.Event
    ) -> bool:
        """Write ``batch`` durably, then acknowledge what is done.

        A transient failure is retried with backoff and never acknowledged; False if ``stop``
        came first, leaving the batch unacknowledged for the broker to deliver again. Messages
        whose activities wait for the database are put aside (unacknowledged) and retried by
        :meth:`_retry_waiting`.
        """
        started = time.perf_counter()
        outcome = self._handle(client, batch, stop)
        if outcome is None:
            return False
        waiting = set(outcome.pending)
        if waiting:
            self._put_aside([m for i, m in enumerate(batch) if i in waiting], outcome, client, stop)
        acked = self._ack(client, [m for i, m in enumerate(batch) if i not in waiting])
        elapsed = time.perf_counter() - started
        self._stats.flushed(elapsed)
        self._stats.add(
            processed=len(batch) - len(waiting),
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
            waiting=len(waiting),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            quarantined=sum(outcome.quarantined.values()),
            seconds=round(elapsed, 4),
        )
        return True

    def _ack(self, client: mqtt.Client, done: list[_Incoming]) -> int:
        """Acknowledge ``done`` (durably handled) in one write; returns how many were acked.

        A packet id from an earlier connection may name another message on this one; the
        broker redelivers those anyway, and dedup absorbs the second copy.
        """
        if not self._connected:
            return 0
        mids = [m.mid for m in done if m.generation == self._generation and m.qos == 1]
        send_acks(client, mids)
        return len(mids)

    def _put_aside(
        self,
        items: list[_Incoming],
        outcome: BatchOutcome,
        client: mqtt.Client,
        stop: threading.Event,
    ) -> None:
        """Keep ``items`` for a later retry; quarantine those that keep failing alone."""
        database_up = self.pipeline.registry_reachable()
        keep: list[_Incoming] = []
        for m in items:
            if database_up:
                # The database answers, yet this message fails: count it as a poison attempt.
                key = _digest(m.message)
                error, n = self._attempts.get(key, (outcome.pending_error, 0))
                n = n + 1 if error == outcome.pending_error else 1
                self._attempts[key] = (outcome.pending_error, n)
                if n >= MAX_ATTEMPTS:
                    del self._attempts[key]
                    reason = (
                        f"{outcome.pending_error} {MAX_ATTEMPTS} times while storing the "
                        "activity (the database answered meanwhile)"
                    )
                    self._quarantine_poison(client, stop, m, outcome.pending_error, reason)
                    self._stats.quarantine("internal_error")
                    self._ack(client, [m])
                    self._stats.add(processed=1)
                    continue
            keep.append(m)
        if not keep:
            return
        self._waiting.extend(keep)
        if self._waiting_due == 0.0:
            self._waiting_due = time.monotonic() + self._waiting_delay
        log.warning(
            "activities_waiting",
            messages=len(self._waiting),
            error_type=outcome.pending_error,
            database_reachable=database_up,
            retry_in_seconds=self._waiting_delay,
        )

    def _retry_waiting(self, client: mqtt.Client, stop: threading.Event) -> bool:
        """Retry the messages waiting for the database when due; False if stopped."""
        if not self._waiting or time.monotonic() < self._waiting_due:
            return True
        # Those from an earlier connection cannot be acknowledged: the broker sends them again.
        batch = [m for m in self._waiting if m.generation == self._generation]
        self._waiting = []
        self._waiting_due = 0.0
        if not batch:
            return True
        before = len(batch)
        if not self._write_and_ack(client, batch, stop):
            return False
        if self._waiting:
            self._waiting_delay = min(self._waiting_delay * 2, MAX_BACKOFF_SECONDS)
            self._waiting_due = time.monotonic() + self._waiting_delay
        else:
            self._waiting_delay = 0.5
            log.info("activities_stored_after_wait", messages=before)
        return True

    def _flush(self, client: mqtt.Client, stop: threading.Event, everything: bool) -> bool:
        """Write and acknowledge the due batches (all of the inbox if ``everything``)."""
        while self._inbox and (everything or self._due() == 0.0):
            batch = self._inbox[: self.batch_size]
            del self._inbox[: self.batch_size]
            if not self._write_and_ack(client, batch, stop):
                return False
        return True

    def preflight(self, client: mqtt.Client, stop: threading.Event) -> bool:
        """Check, before subscribing, that ingest can work; raise ServiceUnavailable if not.

        The data dir must be writable (leftover temp files of a killed writer are removed),
        the registry must answer, and the broker must accept CONNECT. Leaves ``client``
        connected; False if ``stop`` came first.
        """
        for directory in (self.settings.readings_dir, self.settings.quarantine_dir):
            check_writable(directory)
        removed = remove_stale_temp_files(self.settings.readings_dir) + remove_stale_temp_files(
            self.settings.quarantine_dir
        )
        if removed:
            log.info("stale_temp_files_removed", files=removed)
        try:
            self.pipeline.devices.refresh()
        except Exception as exc:
            where = database_where(self.settings.effective_database_url)
            raise ServiceUnavailable(
                f"registry database unavailable ({where}): {type(exc).__name__}; ingest needs "
                "it to check devices",
                service="database",
                where=where,
            ) from None
        address = parse_broker(self.settings.broker)
        where = f"{address.host}:{address.port}"
        try:
            self._connect(client)
        except OSError as exc:
            raise ServiceUnavailable(
                f"the broker at {where} is unreachable ({exc.strerror or type(exc).__name__})"
            ) from None
        deadline = time.monotonic() + max(10.0, float(self.settings.broker.keepalive_seconds))
        while not self._connected and not self._refused:
            if stop.is_set():
                return False
            if time.monotonic() > deadline or client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                if self._refused:
                    break
                raise ServiceUnavailable(
                    f"the broker at {where} did not accept CONNECT for client id "
                    f"{self.client_id!r} (no CONNACK)"
                )
        if self._refused:
            raise ServiceUnavailable(
                f"the broker at {where} refused CONNECT for client id {self.client_id!r}: "
                f"{self._refused} (check broker.username and the password)"
            )
        return True

    def run(self, stop: threading.Event, *, once: bool = False) -> None:
        """Consume until ``stop`` is set, then flush, acknowledge and disconnect.

        Raises ServiceUnavailable when a start-up check fails, when the session is taken over
        :data:`MAX_TAKEOVERS` times, or (``once``) when the broker refuses us later. With
        ``once``, stops by itself when the queued stream has been drained.
        """
        client = self._client()
        log.info(
            "ingest_started",
            client_id=self.client_id,
            protocol=self.settings.broker.protocol,
            batch_size=self.batch_size,
            shared_group=self.shared_group or "",
        )
        idle_for = max(2.0, 2 * self.settings.broker.flush_seconds)
        try:
            if not self.preflight(client, stop):
                return
            backoff = 0.5
            last_activity = time.monotonic()
            seen = self._stats.received
            while not stop.is_set():
                if self._fatal is not None:
                    raise self._fatal
                due = self._due()
                rc = client.loop(timeout=0.1 if due is None else min(due, 0.1))
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    # Connection lost: what is in hand is still written (not acked: the broker
                    # redelivers it on the new connection), then reconnect.
                    self._connected = False
                    if not self._flush(client, stop, everything=True):
                        break
                    if self._fatal is not None:
                        raise self._fatal
                    if self._refused and once:
                        raise ServiceUnavailable(
                            f"the broker refused CONNECT for client id {self.client_id!r}: "
                            f"{self._refused}"
                        )
                    if not self._refused:
                        log.warning("broker_reconnecting", retry_in_seconds=backoff)
                    if stop.wait(backoff) or not self._open(client, stop):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                if self._connected:
                    backoff = 0.5
                if not self._flush(client, stop, everything=False):
                    break
                if not self._retry_waiting(client, stop):
                    break
                if once:
                    now = time.monotonic()
                    if self._stats.received != seen or self._inbox:
                        seen, last_activity = self._stats.received, now
                    elif self._connected and now - last_activity >= idle_for:
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
                waiting=len(self._waiting),
            )


def check_writable(directory: Path) -> None:
    """Create ``directory`` (0700) and a file in it; ServiceUnavailable naming it if not."""
    try:
        ensure_dir(directory)
        fd, name = tempfile.mkstemp(prefix=".rpmpipe-check-", suffix=".tmp", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "")
        raise ServiceUnavailable(
            f"the data directory {directory} is not writable: "
            f"{exc.strerror or type(exc).__name__}{f' ({code})' if code else ''}"
        ) from None


def database_where(url: str) -> str:
    """The database's backend, host and name without credentials, for error lines."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database}"
    return f"{parsed.get_backend_name()} at {parsed.host or 'localhost'}:{parsed.port or ''}/{parsed.database or ''}"


def _digest(message: Message) -> str:
    return hashlib.sha256(
        message.topic.encode("utf-8", "surrogateescape") + b"\0" + message.payload
    ).hexdigest()


def _os_error_fields(exc: BaseException) -> dict[str, Any]:
    """errno, its name and the path of the ``OSError`` behind ``exc`` (a full disk or a
    permission error must be told apart from the log line alone)."""
    current: BaseException | None = exc
    while current is not None and not isinstance(current, OSError):
        current = current.__cause__ or current.__context__
    if current is None:
        return {}
    fields: dict[str, Any] = {}
    if current.errno is not None:
        fields["errno"] = current.errno
        fields["errno_name"] = errno.errorcode.get(current.errno, "")
        fields["error"] = os.strerror(current.errno)
    if current.filename is not None:
        fields["path"] = str(current.filename)
    return fields


def run_until(
    service: IngestService,
    done: Callable[[StatsSnapshot], bool],
    timeout: float,
    *,
    once: bool = False,
) -> StatsSnapshot:
    """Run ``service`` in a thread until ``done(stats)`` or ``timeout``; for the demo and tests.

    An exception that ended the service (e.g. ServiceUnavailable) is raised here.
    """
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            service.run(stop, once=once)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="ingest", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(service.stats) and thread.is_alive():
        time.sleep(0.02)
    stop.set()
    thread.join(30)
    if failure:
        raise failure[0]
    return service.stats
