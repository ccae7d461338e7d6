"""The long-running MQTT subscriber: at-least-once from the broker, exactly-once in the store.

Two threads. The network thread drives paho's loop (reading a backlog packet after packet),
collects incoming messages into a batch (``broker.batch_size`` messages, or whatever arrived
once ``broker.flush_seconds`` passed or the stream paused) and hands it to the writer thread,
which writes it through :class:`~ingest.pipeline.IngestPipeline`. Only once the writer has
finished a batch (durably on disk) does the network thread acknowledge it, all of its PUBACKs
in one socket write (manual acks). Meanwhile it keeps reading the next batch: the broker's
in-flight window (MQTT 5 Receive Maximum) holds two batches, and while the writer waits for
the disk (Parquet, fsync) the network thread has the interpreter to itself. Only the network
thread touches the paho client; only the writer touches the pipeline.

The session is persistent (stable client id; MQTT 5 ``clean_start=False`` with a session
expiry, or 3.1.1 ``clean_session=False``), so messages not acknowledged before a crash, and
those published while ingest was away, are delivered again; the sink's dedup makes that
harmless.

Nothing stalls it. A transient failure of the store (see :func:`rpmpipe.errors.is_transient`:
a full disk, a lost database) is retried by the writer with backoff while the network thread
keeps the connection alive; a terminal one, caused by a message, quarantines that message
(``internal_error``) and the rest of the batch goes on. Activities that wait for the database
are kept unacknowledged and retried on their own, so readings keep being stored and
acknowledged meanwhile; one that keeps failing the same way while the database answers is
quarantined after :data:`MAX_ATTEMPTS` tries.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import select
import struct
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from rpmpipe.errors import ServiceUnavailable, is_transient
from rpmpipe.ingest.files import ensure_dir, remove_stale_temp_files
from rpmpipe.ingest.messages import BatchOutcome, Message, internal_reason
from rpmpipe.ingest.stats import IngestStats, StatsSnapshot
from rpmpipe.logs import get_logger
from rpmpipe.mqtt import BROKER_DROPPED_TOPIC, make_client, parse_broker
from rpmpipe.settings import BrokerSettings, IngestSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from rpmpipe.ingest.pipeline import IngestPipeline

log = get_logger(__name__)

# A pause this long in an otherwise busy stream means the broker's in-flight window is full
# (e.g. Mosquitto's 20 for MQTT 3.1.1 clients): flush now rather than wait for the timer.
IDLE_FLUSH_SECONDS = 0.02
# At most this many packets read in one burst before the loop looks at batches and acks again.
MAX_BURST = 1000
# What one read of the socket asks for (paho reads a message in three small reads).
RECV_CHUNK = 256 * 1024
MAX_BACKOFF_SECONDS = 30.0
# The topic a message with a topic that is not UTF-8 is handled under (it is quarantined).
UNDECODABLE_TOPIC = "<undecodable topic>"
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


# What a PUBLISH's first byte is with its type and QoS bits kept (DUP and RETAIN masked off).
_PUBLISH_MASK = 0xF6
_PUBLISH_QOS1 = 0x32

# One QoS 1 PUBLISH as the raw fast path hands it over: topic (bytes), payload, packet id.
RawPublish = tuple[bytes, bytes, int]


class BufferedClient(mqtt.Client):
    """paho's client, reading the socket in large chunks and QoS 1 PUBLISHes in bulk.

    paho asks the socket for each packet's first byte, then each byte of its length, then
    the rest: three ``recv`` calls per message, each releasing the interpreter lock, which
    the network thread then waits to get back from the writer. Here one ``recv`` fetches up
    to :data:`RECV_CHUNK` bytes and paho's small reads are served from them. What a chunk
    holds beyond the packets read so far is :meth:`buffered`, which the network loop drains
    before it waits on the socket again; a new connection starts with an empty buffer.

    With ``on_publishes`` set (and manual acks), the QoS 1 PUBLISH packets that lie whole in
    the chunk are split out in one pass and handed over as ``(topic, payload, packet id)``
    lists, without paho's per-packet state machine, its MQTT 5 property objects, its
    ``MQTTMessage`` and its topic matching, which were most of a drain's time. Any other
    packet (CONNACK, SUBACK, PINGRESP, a QoS 0 or 2 PUBLISH, an empty topic, one that spans
    two chunks or looks malformed) is left to paho, which reads it as before. Ingest reads
    only a message's topic, payload and packet id, so the properties are skipped unread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._chunk_pos = 0
        self.on_publishes: Callable[[list[RawPublish]], None] | None = None

    def buffered(self) -> int:
        """Bytes received and not yet read by paho."""
        return len(self._chunk) - self._chunk_pos

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self._chunk_pos
        if pos >= len(self._chunk):
            chunk = super()._sock_recv(RECV_CHUNK)  # raises as paho expects (no data yet)
            if len(chunk) <= bufsize:
                return chunk  # b"" (closed) included
            self._chunk, pos = chunk, 0
        end = min(pos + bufsize, len(self._chunk))
        self._chunk_pos = end
        return self._chunk[pos:end]

    def _packet_read(self) -> MQTTErrorCode:
        hook = self.on_publishes
        if hook is not None and self._manual_ack and self._in_packet["command"] == 0:
            publishes = self._split_publishes()
            if publishes:
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
                hook(publishes)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _split_publishes(self) -> list[RawPublish]:
        """The whole QoS 1 PUBLISH packets at the read position of the chunk, consumed.

        Stops at the first packet that is anything else, or not whole in the chunk.
        """
        chunk, pos, end = self._chunk, self._chunk_pos, len(self._chunk)
        v5 = self._protocol == mqtt.MQTTv5
        found: list[RawPublish] = []
        while pos < end and chunk[pos] & _PUBLISH_MASK == _PUBLISH_QOS1:
            length, at = _varint(chunk, pos + 1, end)
            stop = at + length
            if length < 0 or stop > end or length < 4:
                break
            topic_end = at + 2 + ((chunk[at] << 8) | chunk[at + 1])
            if topic_end == at + 2 or topic_end + 2 > stop:
                break  # an empty topic (MQTT 5 alias) or a malformed packet: paho's
            mid = (chunk[topic_end] << 8) | chunk[topic_end + 1]
            body = topic_end + 2
            if v5:
                props, body = _varint(chunk, body, stop)
                body += props
                if props < 0 or body > stop:
                    break
            found.append((chunk[at + 2 : topic_end], chunk[body:stop], mid))
            pos = stop
        self._chunk_pos = pos
        return found

    def reconnect(self) -> MQTTErrorCode:
        self._chunk, self._chunk_pos = b"", 0  # bytes of the old connection are void
        return super().reconnect()


def _varint(data: bytes, at: int, end: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``data[at:]``: (value, position after it), or
    (-1, at) when it is cut off by ``end`` or longer than four bytes."""
    value = shift = 0
    for i in range(at, min(at + 4, end)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return -1, at


class _Incoming(NamedTuple):
    generation: int  # which connection delivered it: packet ids are only valid on that one
    mid: int
    qos: int
    message: Message
    arrived: float  # monotonic seconds


_NONE: Mapping[str, int] = MappingProxyType({})


class _Done(NamedTuple):
    """A batch the writer has finished: what to acknowledge, and what to count."""

    items: list[_Incoming]  # durably handled: acknowledge these
    handed: bool  # a batch the network thread handed over (not a retry of waiting ones)
    processed: int = 0
    stored: int = 0
    duplicates: int = 0
    activities: int = 0
    quarantined: Mapping[str, int] = _NONE
    seconds: float | None = None  # how long the write took


def subscriptions(broker: BrokerSettings, shared_group: str | None) -> list[str]:
    root = broker.topic_root
    topics = [f"{root}/devices/+/readings", f"{root}/activities"]
    if shared_group:
        topics = [f"$share/{shared_group}/{t}" for t in topics]
    return topics


class IngestService:
    """``IngestService(settings, engine).run(stop_event)``; ``stats`` is safe from any thread.

    ``engine`` is the registry's, or a function that opens it: then the writer thread opens
    it at start while the network thread connects to the broker (start-up overlaps).
    """

    def __init__(
        self,
        settings: IngestSettings,
        engine: Engine | Callable[[], Engine],
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        device_refresh_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.client_id = client_id or settings.broker.client_id
        self.shared_group = shared_group or settings.broker.shared_group or None
        self._engine = engine
        self._device_refresh = device_refresh_seconds
        # Built by the writer thread at start (it imports pyarrow and the registry models).
        self._pipeline: IngestPipeline | None = None
        self._ready = threading.Event()  # the pipeline is built and the registry answered
        self._writer_thread: threading.Thread | None = None
        self._subscribe_due = False  # connected, subscriptions not sent yet
        self._stats = IngestStats()
        self._inbox: list[_Incoming] = []
        self._packets = 0  # messages paho has delivered (a read burst ends when none come)
        self._generation = 0
        self._connected = False
        # The writer thread: batches handed over (None: no more), and what it has finished.
        self._batches: queue.SimpleQueue[list[_Incoming] | None] = queue.SimpleQueue()
        self._done: deque[_Done] = deque()
        self._in_writer = 0  # batches handed over and not yet finished (network thread)
        self._halt = threading.Event()  # set when stopping: the writer gives up its retries
        self._writer_failure: BaseException | None = None
        self._wake_r = self._wake_w = -1  # a pipe: the writer wakes the network thread's select
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
        self._subscribe_due = True
        self._subscribe(client)

    def _subscribe(self, client: mqtt.Client) -> None:
        """Subscribe once connected and the start-up checks have passed (the registry answers);
        only then does ingest count as connected.

        A persistent session receives its queued messages from the CONNACK on: those wait in
        the inbox meanwhile, unacknowledged.
        """
        if not (self._subscribe_due and self._connected and self._ready.is_set()):
            return
        if self._writer_failure is not None:
            return
        self._subscribe_due = False
        self._stats.set_connected(True)
        client.subscribe([(t, 1) for t in subscriptions(self.settings.broker, self.shared_group)])
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
        """A packet paho read itself (one the bulk split left to it)."""
        self._packets += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = UNDECODABLE_TOPIC
        message = Message(topic, bytes(msg.payload), datetime.now(UTC))
        if self._take(message, msg.mid, msg.qos, time.monotonic(), self._generation):
            self._stats.received += 1

    def _on_publishes(self, publishes: list[RawPublish]) -> None:
        """QoS 1 PUBLISHes the client split out of one chunk, as :meth:`_on_message` takes
        them: one arrival time for the chunk (its packets came in one ``recv``)."""
        self._packets += len(publishes)
        received_at, arrived, generation = datetime.now(UTC), time.monotonic(), self._generation
        taken = 0
        for raw_topic, payload, mid in publishes:
            try:
                topic = raw_topic.decode()
            except UnicodeDecodeError:
                topic = UNDECODABLE_TOPIC
            taken += self._take(Message(topic, payload, received_at), mid, 1, arrived, generation)
        self._stats.received += taken

    def _take(self, message: Message, mid: int, qos: int, arrived: float, generation: int) -> bool:
        """Queue ``message`` for the writer; False for the broker's own notice of messages it
        dropped, which is counted, not stored."""
        if message.topic == BROKER_DROPPED_TOPIC:
            self._broker_dropped(message.payload)
            return False
        self._inbox.append(_Incoming(generation, mid, qos, message, arrived))
        return True

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
            client_class=BufferedClient,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if isinstance(client, BufferedClient):
            client.on_publishes = self._on_publishes
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

    # --- the network loop (paho's external-loop API: loop_read, loop_write, loop_misc) -----

    def _service(self, client: mqtt.Client, timeout: float) -> int:
        """Wait up to ``timeout`` for the socket (or the writer), then read, write, keep alive.

        paho's ``loop()`` reads one packet per ``select``; here a readable socket is read
        packet after packet until it has nothing more (or a batch is due, or the writer has
        finished one), so a backlog costs one ``select`` per burst instead of per message.
        Returns paho's error code (0: fine).
        """
        sock = client.socket()
        if sock is None:
            return int(mqtt.MQTT_ERR_NO_CONN)
        buffered = _buffered(client)
        if hasattr(sock, "pending"):
            buffered += sock.pending()  # TLS: decrypted bytes not read yet
        rlist: list[Any] = [sock, self._wake_r]
        wlist: list[Any] = [sock] if client.want_write() else []
        try:
            readable, _, _ = select.select(
                rlist, wlist, [], 0.0 if buffered or self._done else timeout
            )
        except (OSError, TypeError, ValueError):
            return int(mqtt.MQTT_ERR_CONN_LOST)  # the socket was closed meanwhile
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
        if sock in readable or buffered:
            for _ in range(MAX_BURST):
                seen = self._packets
                rc = client.loop_read()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    return int(rc)
                if client.socket() is None or self._done:
                    break
                if self._packets == seen and not _buffered(client):
                    break  # nothing more to read now
                if self._in_writer == 0 and len(self._inbox) >= self.batch_size:
                    break
        if client.want_write():
            rc = client.loop_write()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return int(rc)
        return int(client.loop_misc())

    # --- batching (network thread) ---------------------------------------------------------

    def _due(self) -> float | None:
        """Seconds until the inbox must be handed to the writer (0: now), None when empty."""
        if not self._inbox:
            return None
        if len(self._inbox) >= self.batch_size:
            return 0.0
        due = min(
            self._inbox[0].arrived + self.settings.broker.flush_seconds,
            self._inbox[-1].arrived + IDLE_FLUSH_SECONDS,
        )
        return max(0.0, due - time.monotonic())

    def _hand_over(self, everything: bool) -> None:
        """Give the writer the next batch when it is free and one is due (all: ``everything``).

        One batch at a time while it is busy, so the next one grows meanwhile (up to
        ``batch_size``): the slower the disk, the larger the batches.
        """
        while self._inbox and (everything or (self._in_writer == 0 and self._due() == 0.0)):
            batch = self._inbox[: self.batch_size]
            del self._inbox[: self.batch_size]
            self._in_writer += 1
            self._batches.put(batch)

    def _acknowledge_done(self, client: mqtt.Client) -> None:
        """Acknowledge what the writer has durably handled (one write), and count it."""
        mids: list[int] = []
        while self._done:
            done = self._done.popleft()
            if done.handed:
                self._in_writer -= 1
            # A packet id from an earlier connection may name another message on this one;
            # the broker redelivers those anyway, and dedup absorbs the second copy.
            if self._connected:
                mids.extend(
                    m.mid for m in done.items if m.generation == self._generation and m.qos == 1
                )
            if done.seconds is not None:
                self._stats.flushed(done.seconds)
            self._stats.add(
                processed=done.processed,
                stored=done.stored,
                duplicates=done.duplicates,
                activities=done.activities,
            )
            for code, n in done.quarantined.items():
                self._stats.quarantine(code, n)
        send_acks(client, mids)

    # --- the writer thread -------------------------------------------------------------------

    def _finished(self, done: _Done) -> None:
        """Hand ``done`` to the network thread for acknowledgement, and wake it."""
        self._done.append(done)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the network thread is being woken anyway

    @property
    def pipeline(self) -> IngestPipeline:
        """The writer's pipeline (built at start, on the writer thread)."""
        if self._pipeline is None:
            raise RuntimeError("the ingest pipeline is not built yet")
        return self._pipeline

    def _start_pipeline(self) -> None:
        """Open the registry, build the pipeline and check the registry answers (writer)."""
        from sqlalchemy import Engine

        from rpmpipe.ingest.pipeline import IngestPipeline

        engine = self._engine if isinstance(self._engine, Engine) else self._engine()
        pipeline = IngestPipeline(
            self.settings, engine, self.client_id, device_refresh=self._device_refresh
        )
        try:
            pipeline.devices.refresh()
        except Exception as exc:
            where = database_where(self.settings.store.database_url)
            raise ServiceUnavailable(
                f"registry database unavailable ({where}): {type(exc).__name__}; ingest needs "
                "it to check devices",
                service="database",
                where=where,
            ) from None
        self._pipeline = pipeline

    def _writer(self) -> None:
        """Build the pipeline, then write the batches the network thread hands over, in
        order, until told to end."""
        try:
            try:
                self._start_pipeline()
            except BaseException as exc:
                self._writer_failure = exc  # before ready: the network thread looks at both
                raise
            finally:
                self._ready.set()
            while True:
                timeout = None
                if self._waiting:
                    timeout = max(0.0, self._waiting_due - time.monotonic())
                try:
                    batch = self._batches.get(timeout=timeout)
                except queue.Empty:
                    batch = []
                if batch is None:
                    return
                if batch:
                    self._write(batch, handed=True)
                self._retry_waiting()
        except BaseException as exc:  # noqa: BLE001 - ends the service on the network thread
            self._writer_failure = self._writer_failure or exc
            self._finished(_Done([], handed=False))

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` before a retry (the network thread keeps the connection alive
        meanwhile); False if ingest is stopping."""
        return not self._halt.wait(seconds)

    def _handle(self, batch: list[_Incoming]) -> BatchOutcome | None:
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
                    return self._handle_one_by_one(batch)
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
                if not self._sleep(delay):
                    return None
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _handle_one_by_one(self, batch: list[_Incoming]) -> BatchOutcome | None:
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
                        if not self._sleep(1.0):
                            return None
                        continue
                    if not self._quarantine_poison(
                        m, type(exc).__name__, internal_reason(exc, "handling the message")
                    ):
                        return None
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

    def _quarantine_poison(self, m: _Incoming, error_type: str, reason: str) -> bool:
        """Keep a message that cannot be handled in quarantine (retrying the write itself);
        False if stopped before it was kept."""
        log.error(
            "message_quarantined",
            reason_code="internal_error",
            error_type=error_type,
            topic_kind=m.message.topic.rsplit("/", 1)[-1],
        )
        while True:
            try:
                self.pipeline.quarantine_internal(m.message, reason)
                return True
            except Exception as write_exc:  # noqa: BLE001 - the disk is away: retry
                log.error(
                    "batch_write_failed",
                    messages=1,
                    error_type=type(write_exc).__name__,
                    **_os_error_fields(write_exc),
                    retry_in_seconds=1.0,
                )
                if not self._sleep(1.0):
                    return False

    def _write(self, batch: list[_Incoming], *, handed: bool) -> bool:
        """Write ``batch`` durably, then hand what is done to the network thread to acknowledge.

        A transient failure is retried with backoff and never acknowledged; False if ``stop``
        came first, leaving the batch unacknowledged for the broker to deliver again. Messages
        whose activities wait for the database are put aside (unacknowledged) and retried by
        :meth:`_retry_waiting`.
        """
        started = time.perf_counter()
        outcome = self._handle(batch)
        if outcome is None:
            self._finished(_Done([], handed=handed))
            return False
        waiting = set(outcome.pending)
        done = [m for i, m in enumerate(batch) if i not in waiting] if waiting else batch
        if waiting:
            self._put_aside([batch[i] for i in sorted(waiting)], outcome)
        elapsed = time.perf_counter() - started
        self._finished(
            _Done(
                done,
                handed=handed,
                processed=len(done),
                stored=outcome.stored,
                duplicates=outcome.duplicates,
                activities=outcome.activities,
                quarantined=outcome.quarantined,
                seconds=elapsed,
            )
        )
        log.debug(
            "batch_flushed",
            messages=len(batch),
            waiting=len(waiting),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            quarantined=sum(outcome.quarantined.values()),
            seconds=round(elapsed, 4),
        )
        return True

    def _put_aside(self, items: list[_Incoming], outcome: BatchOutcome) -> None:
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
                    if self._quarantine_poison(m, outcome.pending_error, reason):
                        self._finished(
                            _Done(
                                [m],
                                handed=False,
                                processed=1,
                                quarantined=Counter(internal_error=1),
                            )
                        )
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

    def _retry_waiting(self) -> None:
        """Retry the messages waiting for the database when due."""
        if not self._waiting or time.monotonic() < self._waiting_due:
            return
        # Those from an earlier connection cannot be acknowledged: the broker sends them again.
        batch = [m for m in self._waiting if m.generation == self._generation]
        self._waiting = []
        self._waiting_due = 0.0
        if not batch:
            return
        before = len(batch)
        if not self._write(batch, handed=False):
            return
        if self._waiting:
            self._waiting_delay = min(self._waiting_delay * 2, MAX_BACKOFF_SECONDS)
            self._waiting_due = time.monotonic() + self._waiting_delay
        else:
            self._waiting_delay = 0.5
            log.info("activities_stored_after_wait", messages=before)

    def preflight(self, client: mqtt.Client, stop: threading.Event) -> bool:
        """Check at start that ingest can work; raise ServiceUnavailable if not.

        The data dir must be writable (leftover temp files of a killed writer are removed),
        the registry must answer, and the broker must accept CONNECT; a failure is reported in
        that order, before anything is acknowledged. The writer thread opens the registry (and
        loads the pipeline's libraries) while this thread connects, so the backlog starts
        streaming in meanwhile. Leaves ``client`` connected; False if ``stop`` came first.
        """
        for directory in (self.settings.store.readings_dir, self.settings.store.quarantine_dir):
            check_writable(directory)
        removed = remove_stale_temp_files(
            self.settings.store.readings_dir
        ) + remove_stale_temp_files(self.settings.store.quarantine_dir)
        if removed:
            log.info("stale_temp_files_removed", files=removed)
        self._writer_thread = threading.Thread(
            target=self._writer, name="ingest-writer", daemon=True
        )
        self._writer_thread.start()
        address = parse_broker(self.settings.broker)
        where = f"{address.host}:{address.port}"
        try:
            self._connect(client)
        except OSError as exc:
            self._raise_writer_failure()
            raise ServiceUnavailable(
                f"the broker at {where} is unreachable ({exc.strerror or type(exc).__name__})"
            ) from None
        deadline = time.monotonic() + max(10.0, float(self.settings.broker.keepalive_seconds))
        while not self._connected and not self._refused:
            if stop.is_set():
                return False
            if time.monotonic() > deadline or self._service(client, 0.1) != mqtt.MQTT_ERR_SUCCESS:
                if self._refused:
                    break
                self._raise_writer_failure()
                raise ServiceUnavailable(
                    f"the broker at {where} did not accept CONNECT for client id "
                    f"{self.client_id!r} (no CONNACK)"
                )
        if self._refused:
            self._raise_writer_failure()
            raise ServiceUnavailable(
                f"the broker at {where} refused CONNECT for client id {self.client_id!r}: "
                f"{self._refused} (check broker.username and the password)"
            )
        return True

    def _raise_writer_failure(self) -> None:
        """Raise the registry's failure, when it has one, before the broker's (the order of
        the checks); waits for the writer's start-up to know."""
        self._ready.wait()
        if self._writer_failure is not None:
            raise self._writer_failure

    def run(self, stop: threading.Event, *, once: bool = False) -> None:
        """Consume until ``stop`` is set, then write, acknowledge and disconnect.

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
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            if not self.preflight(client, stop):
                return
            backoff = 0.5
            last_activity = time.monotonic()
            seen = self._stats.received
            while not stop.is_set():
                if self._fatal is not None:
                    raise self._fatal
                if self._writer_failure is not None:
                    raise self._writer_failure
                due = self._due()
                wait = 0.1 if due is None or self._in_writer else min(due, 0.1)
                rc = self._service(client, wait)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    # Connection lost: what is in hand is still written (not acked: the broker
                    # redelivers it on the new connection), then reconnect.
                    self._connected = False
                    self._acknowledge_done(client)
                    self._hand_over(everything=True)
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
                self._subscribe(client)
                self._acknowledge_done(client)
                self._hand_over(everything=False)
                if once:
                    now = time.monotonic()
                    if self._stats.received != seen or self._inbox or self._in_writer:
                        seen, last_activity = self._stats.received, now
                    elif self._connected and now - last_activity >= idle_for:
                        break
            # Stopping: write and acknowledge what has arrived; anything later stays unacked
            # at the broker and comes back next session.
            self._hand_over(everything=True)
        except BaseException:
            self._halt.set()  # the writer gives up its retries: nothing more gets acknowledged
            raise
        finally:
            self._batches.put(None)
            writer = self._writer_thread
            # Failing before the writer has started up: it holds nothing to acknowledge.
            while (
                writer is not None
                and writer.is_alive()
                and (self._ready.is_set() or not self._halt.is_set())
            ):
                if stop.is_set():
                    self._halt.set()
                if not self._connected or self._service(client, 0.1) != mqtt.MQTT_ERR_SUCCESS:
                    self._connected = False
                    writer.join(0.1)
                self._acknowledge_done(client)
            self._acknowledge_done(client)
            if self._connected:
                client.disconnect()  # queued behind the acknowledgements, so they go out first
                for _ in range(50):
                    if self._service(client, 0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            os.close(self._wake_r)
            os.close(self._wake_w)
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


def _buffered(client: mqtt.Client) -> int:
    return client.buffered() if isinstance(client, BufferedClient) else 0


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
    from sqlalchemy.engine import make_url

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
