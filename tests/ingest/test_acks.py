"""Acknowledgements: a batch's PUBACKs leave in one socket write, and the broker takes them."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from ingest_helpers import bp_payload, drop_session, publish, reading_topic
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rpmpipe.ingest.subscriber import send_acks
from rpmpipe.mqtt import make_client

pytestmark = pytest.mark.services


def _session(stack, client_id: str, received: list[int]) -> mqtt.Client:  # type: ignore[no-untyped-def]
    """A connected manual-ack client resuming (or creating) the persistent ``client_id``."""
    v5 = stack.protocol == "5"
    client, address = make_client(
        stack.settings.broker,
        client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean=False,
        manual_ack=True,
    )
    client.on_message = lambda _c, _u, m: received.append(m.mid)
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


def test_a_batch_of_acknowledgements_goes_out_in_one_write_and_the_broker_keeps_none(
    stack,  # type: ignore[no-untyped-def]
) -> None:
    s = stack.settings
    client_id = f"{s.broker.client_id}-acks"
    device = "BP-ACK"
    received: list[int] = []
    client = _session(stack, client_id, received)
    try:
        subscribed: list[int] = []
        client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
        client.subscribe(reading_topic(s, "+"), qos=1)
        _loop_until(client, lambda: bool(subscribed), 10)
        n = 20  # within the stock Mosquitto's in-flight window of 20 for a 3.1.1 client
        publish(s, [(reading_topic(s, device), bp_payload(device, i)) for i in range(n)])
        _loop_until(client, lambda: len(received) >= n, 30)
        assert len(received) == n

        writes: list[bytes] = []
        real_send = client._sock_send

        def counted(buf: bytes | bytearray) -> int:
            writes.append(bytes(buf))
            return real_send(buf)

        client._sock_send = counted  # type: ignore[method-assign]
        send_acks(client, received)
        _loop_until(client, lambda: not client.want_write(), 5)
        assert writes == [b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in received)]
        # Mosquitto 2.0 may resend a message whose PUBACK came just before a DISCONNECT (the
        # sink's dedup absorbs such a copy); stay connected a moment so that only lost PUBACKs
        # can bring messages back.
        _loop_until(client, lambda: False, 1.0)
        client.disconnect()
        client.loop(timeout=0.2)

        # The broker took every PUBACK: the resumed session brings none of them back.
        again: list[int] = []
        client = _session(stack, client_id, again)
        _loop_until(client, lambda: bool(again), 2)
        assert again == []
    finally:
        client.disconnect()
        client.loop(timeout=0.2)
        drop_session(s, client_id, stack.protocol)
