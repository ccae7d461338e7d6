"""The network thread's bulk split of QoS 1 PUBLISH packets agrees with paho's own decoding."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rpmpipe.ingest.subscriber import BufferedClient, RawPublish


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _properties(expiry: int | None, user: tuple[str, str] | None) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if user is not None:
        props.UserProperty = user
    packed: bytes = props.pack()  # type: ignore[no-untyped-call]
    return packed


def publish_packet(
    topic: bytes,
    payload: bytes,
    mid: int,
    *,
    v5: bool,
    qos: int = 1,
    flags: int = 0,
    props: bytes = b"\x00",
) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if v5:
        body += props
    body += payload
    return bytes([0x30 | qos << 1 | flags]) + _varint(len(body)) + body


def client(v5: bool, chunk: bytes) -> BufferedClient:
    c = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id="split-test",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        manual_ack=True,
    )
    c._chunk = chunk
    return c


def paho_decoded(packet: bytes, v5: bool) -> RawPublish:
    """What paho's own decoder makes of one whole packet."""
    length = 1
    while packet[length] & 0x80:
        length += 1
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    result = _packet.decode_publish(packet[0], packet[length + 1 :], protocol)
    return (result.topic, bytes(result.payload), result.mid)


# MQTT strings hold no NUL (paho refuses to pack one).
PROPERTY_TEXT = st.text(st.characters(min_codepoint=1, exclude_categories=["Cs"]), max_size=20)
publishes = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=40),  # topic bytes (not necessarily UTF-8)
        st.binary(max_size=300),  # payload; over 127 bytes needs a two-byte length
        st.integers(1, 65535),
        st.sampled_from([0, 0x08, 0x01, 0x09]),  # DUP, RETAIN
        st.none() | st.integers(0, 2**32 - 1),
        st.none() | st.tuples(PROPERTY_TEXT, PROPERTY_TEXT),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(publishes, st.booleans(), st.data())
def test_the_split_gives_what_paho_decodes_and_leaves_a_cut_packet_to_paho(
    items: list, v5: bool, data: st.DataObject
) -> None:
    packets = [
        publish_packet(topic, payload, mid, v5=v5, flags=flags, props=_properties(expiry, user))
        for topic, payload, mid, flags, expiry, user in items
    ]
    stream = b"".join(packets)
    whole = client(v5, stream)
    assert whole._split_publishes() == [paho_decoded(p, v5) for p in packets]
    assert whole.buffered() == 0

    cut = data.draw(st.integers(0, len(stream) - 1), label="cut")
    partial = client(v5, stream[:cut])
    got = partial._split_publishes()
    complete = 0
    while complete < len(packets) and sum(map(len, packets[: complete + 1])) <= cut:
        complete += 1
    assert got == [paho_decoded(p, v5) for p in packets[:complete]]
    # The cut packet stays buffered for paho's own reader.
    assert partial.buffered() == cut - sum(map(len, packets[:complete]))


def test_the_split_stops_at_a_packet_that_is_not_a_qos_1_publish() -> None:
    first = publish_packet(b"a/b", b"1", 7, v5=True)
    qos0 = publish_packet(b"$SYS/x", b"2", 0, v5=True, qos=0)
    later = publish_packet(b"a/b", b"3", 8, v5=True)
    alias = publish_packet(b"", b"4", 9, v5=True, props=b"\x03\x23\x00\x01")  # topic alias
    pingresp = b"\xd0\x00"
    for stopper in (qos0, alias, pingresp):
        c = client(True, first + stopper + later)
        assert c._split_publishes() == [(b"a/b", b"1", 7)]
        assert c.buffered() == len(stopper) + len(later)


def test_packet_read_hands_the_publishes_over_in_one_call_and_paho_reads_the_rest() -> None:
    packets = [publish_packet(b"t/%d" % i, b"p%d" % i, i + 1, v5=False) for i in range(5)]
    c = client(False, b"".join(packets) + b"\xd0\x00")
    handed: list[list[RawPublish]] = []
    c.on_publishes = handed.append
    c.on_message = lambda *_: None
    assert c._packet_read() == mqtt.MQTT_ERR_SUCCESS
    assert handed == [[(b"t/%d" % i, b"p%d" % i, i + 1) for i in range(5)]]
    assert c.buffered() == 2  # the PINGRESP, which paho reads itself
    assert c._packet_read() == mqtt.MQTT_ERR_SUCCESS
    assert c.buffered() == 0
    assert len(handed) == 1
