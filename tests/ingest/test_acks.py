"""Acknowledgements: a batch's PUBACKs leave in one socket write, and the broker takes them."""

from __future__ import annotations

import struct

import pytest
from ingest_helpers import (
    bp_payload,
    drop_session,
    loop_until,
    publish,
    reading_topic,
    session_client,
)

from rpmpipe.ingest.subscriber import send_acks

pytestmark = pytest.mark.services


def test_a_batch_of_acknowledgements_goes_out_in_one_write_and_the_broker_keeps_none(
    stack,  # type: ignore[no-untyped-def]
) -> None:
    s = stack.settings
    client_id = f"{s.broker.client_id}-acks"
    device = "BP-ACK"
    received: list[int] = []
    client = session_client(
        s, stack.protocol, client_id, lambda _c, _u, m: received.append(m.mid), manual_ack=True
    )
    try:
        subscribed: list[int] = []
        client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
        client.subscribe(reading_topic(s, "+"), qos=1)
        loop_until(client, lambda: bool(subscribed), 10)
        n = 20  # within the stock Mosquitto's in-flight window of 20 for a 3.1.1 client
        publish(s, [(reading_topic(s, device), bp_payload(device, i)) for i in range(n)])
        loop_until(client, lambda: len(received) >= n, 30)
        assert len(received) == n

        writes: list[bytes] = []
        real_send = client._sock_send

        def counted(buf: bytes | bytearray) -> int:
            writes.append(bytes(buf))
            return real_send(buf)

        client._sock_send = counted  # type: ignore[method-assign]
        send_acks(client, received)
        loop_until(client, lambda: not client.want_write(), 5)
        assert writes == [b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in received)]
        # Mosquitto 2.0 may resend a message whose PUBACK came just before a DISCONNECT (the
        # sink's dedup absorbs such a copy); stay connected a moment so that only lost PUBACKs
        # can bring messages back.
        loop_until(client, lambda: False, 1.0)
        client.disconnect()
        client.loop(timeout=0.2)

        # The broker took every PUBACK: the resumed session brings none of them back.
        again: list[int] = []
        client = session_client(
            s, stack.protocol, client_id, lambda _c, _u, m: again.append(m.mid), manual_ack=True
        )
        loop_until(client, lambda: bool(again), 2)
        assert again == []
    finally:
        client.disconnect()
        client.loop(timeout=0.2)
        drop_session(s, client_id, stack.protocol)
