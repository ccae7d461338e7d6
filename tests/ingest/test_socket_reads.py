"""The network thread's reads: a backlog is read in large chunks, every message intact."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from ingest_helpers import drop_session, loop_until, publish, reading_topic, session_client

from rpmpipe.ingest.subscriber import RECV_CHUNK, BufferedClient, send_acks

pytestmark = pytest.mark.services


class CountingSocket:
    """The client's socket, counting the reads made on it (everything else passes through)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.reads = 0

    def recv(self, bufsize: int) -> bytes:
        self.reads += 1
        data: bytes = self._sock.recv(bufsize)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _drain(client: mqtt.Client, got: list[bytes], n: int) -> int:
    """Read until ``n`` messages are in, with loop_read alone; the socket reads it took."""
    counting = CountingSocket(client.socket())
    client._sock = counting  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        client.loop_read()
        client.loop_write()  # the automatic PUBACKs
    return counting.reads


def _queue_while_away(s, client: mqtt.Client, device: str, payloads: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Subscribe ``client``'s session to the readings, leave, and publish ``payloads`` on
    ``device``'s topic: they wait at the broker for the session's return."""
    subscribed: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
    client.subscribe(reading_topic(s, "+"), qos=1)
    loop_until(client, lambda: bool(subscribed), 10)
    client.disconnect()
    client.loop(timeout=0.2)
    publish(s, [(reading_topic(s, device), p) for p in payloads])


def _read_backlog(stack, client_class: type[mqtt.Client], payloads: list[bytes]) -> int:  # type: ignore[no-untyped-def]
    """Queue ``payloads`` for a session of ``client_class`` while it is away, reconnect, and
    read them all; returns the socket reads that took (and checks every payload)."""
    s = stack.settings
    client_id = f"{s.broker.client_id}-{client_class.__name__}"
    got: list[bytes] = []

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        got.append(bytes(m.payload))

    client = session_client(s, stack.protocol, client_id, on_message, client_class=client_class)
    try:
        _queue_while_away(s, client, "BP-READ", payloads)
        # The backlog arrives all at once on reconnect; let it pile up in the socket.
        client = session_client(s, stack.protocol, client_id, on_message, client_class=client_class)
        time.sleep(1.0)
        reads = _drain(client, got, len(payloads))
        assert got == payloads
        return reads
    finally:
        client.disconnect()
        client.loop(timeout=0.2)
        drop_session(s, client_id, stack.protocol)


def test_a_backlog_is_read_in_chunks_and_every_message_arrives_whole(stack) -> None:  # type: ignore[no-untyped-def]
    # Small readings around one payload larger than a read chunk, so packets span chunks.
    payloads = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 97)) for i in range(300)]
    payloads[150] = b'{"big": "' + b"y" * (RECV_CHUNK + 1000) + b'"}'
    # paho reads each message's first byte, its length and its rest separately.
    assert _read_backlog(stack, mqtt.Client, payloads) >= 3 * len(payloads)
    assert _read_backlog(stack, BufferedClient, payloads) <= len(payloads) // 3


def test_a_backlog_is_split_in_bulk_in_order_and_paho_reads_only_packets_across_chunks(
    stack,  # type: ignore[no-untyped-def]
) -> None:
    s = stack.settings
    client_id = f"{s.broker.client_id}-bulk"
    payloads = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 97)) for i in range(600)]
    payloads[300] = b'{"big": "' + b"y" * (RECV_CHUNK + 1000) + b'"}'
    got: list[bytes] = []
    mids: list[int] = []
    by_paho: list[int] = []

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        by_paho.append(m.mid)
        got.append(bytes(m.payload))
        mids.append(m.mid)

    def on_publishes(items: list[tuple[bytes, bytes, int]]) -> None:
        for topic, payload, mid in items:
            assert topic == reading_topic(s, "BP-BULK").encode()
            got.append(payload)
            mids.append(mid)

    client = session_client(
        s, stack.protocol, client_id, on_message, client_class=BufferedClient, manual_ack=True
    )
    try:
        _queue_while_away(s, client, "BP-BULK", payloads)
        client = session_client(
            s, stack.protocol, client_id, on_message, client_class=BufferedClient, manual_ack=True
        )
        assert isinstance(client, BufferedClient)
        client.on_publishes = on_publishes
        time.sleep(1.0)
        deadline = time.monotonic() + 30
        while len(got) < len(payloads) and time.monotonic() < deadline:
            client.loop_read()
            # Acknowledge as ingest does, so that a 3.1.1 broker's window keeps moving.
            send_acks(client, mids)
            mids.clear()
            client.loop_write()
        assert got == payloads
        # paho reads a packet only where a chunk ends inside it (and the backlog's first).
        assert len(by_paho) <= len(payloads) // 10
    finally:
        client.disconnect()
        client.loop(timeout=0.2)
        drop_session(s, client_id, stack.protocol)
