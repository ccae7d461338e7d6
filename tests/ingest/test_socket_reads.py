"""The network thread's reads: a backlog is read in large chunks, every message intact."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from ingest_helpers import drop_session, publish, reading_topic
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rpmpipe.ingest.subscriber import RECV_CHUNK, BufferedClient
from rpmpipe.mqtt import make_client

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


def _session(
    stack, client_class: type[mqtt.Client], client_id: str, got: list[bytes]
) -> mqtt.Client:  # type: ignore[no-untyped-def]
    v5 = stack.protocol == "5"
    client, address = make_client(
        stack.settings.broker,
        client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean=False,
        client_class=client_class,
    )
    client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        client.connect(address.host, address.port, clean_start=False, properties=props)
    else:
        client.connect(address.host, address.port)
    _loop_until(client, client.is_connected, 10)
    return client


def _loop_until(client: mqtt.Client, done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        client.loop(timeout=0.05)


def _drain(client: mqtt.Client, got: list[bytes], n: int) -> int:
    """Read until ``n`` messages are in, with loop_read alone; the socket reads it took."""
    counting = CountingSocket(client.socket())
    client._sock = counting  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        client.loop_read()
        client.loop_write()  # the automatic PUBACKs
    return counting.reads


def _read_backlog(stack, client_class: type[mqtt.Client], payloads: list[bytes]) -> int:  # type: ignore[no-untyped-def]
    """Queue ``payloads`` for a session of ``client_class`` while it is away, reconnect, and
    read them all; returns the socket reads that took (and checks every payload)."""
    s = stack.settings
    client_id = f"{s.broker.client_id}-{client_class.__name__}"
    got: list[bytes] = []
    client = _session(stack, client_class, client_id, got)
    try:
        subscribed: list[int] = []
        client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
        client.subscribe(reading_topic(s, "+"), qos=1)
        _loop_until(client, lambda: bool(subscribed), 10)
        client.disconnect()
        client.loop(timeout=0.2)
        publish(s, [(reading_topic(s, "BP-READ"), p) for p in payloads])
        # The backlog arrives all at once on reconnect; let it pile up in the socket.
        client = _session(stack, client_class, client_id, got)
        time.sleep(0.5)
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
    assert _read_backlog(stack, BufferedClient, payloads) <= len(payloads) // 5
