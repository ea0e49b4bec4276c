"""Hostile and broken input over raw sockets. Each case gets Kafka's answer or a
closed connection, and afterwards the broker still answers a new client promptly,
has not grown its memory, and is still running (the fixture checks that it then
shuts down cleanly).

Frames are built by hand in kafka_wire.py; each byte group is commented there
or beside it here."""

from __future__ import annotations

import struct
import threading
import time

import kafka_wire as w
from helpers import create_topic, unique_topic, watermarks

# How long a broken connection may stay open before the broker must have closed it.
CLOSE_WITHIN_S = 5.0
# Memory a single hostile request may cost the broker at most; a broker that
# allocates what a length field claims would grow by gigabytes.
RSS_GROWTH_MAX_BYTES = 64 * 1024 * 1024


def test_negative_frame_length_closes_the_connection(rill):
    with w.Connection(rill.port) as conn:
        conn.send(struct.pack(">i", -1))  # frame size: -1
        conn.send(w.request_header_v1(w.API_API_VERSIONS, 0, 1, "neg"))  # bytes that must not be read as a frame
        assert conn.closed_by_peer(CLOSE_WITHIN_S)
    w.assert_serving(rill.port)


def test_frame_length_of_2gib_is_refused_before_allocating(rill):
    rss_before = rill.rss_bytes()
    with w.Connection(rill.port) as conn:
        conn.send(struct.pack(">i", 2**31 - 1))  # frame size: 2 GiB - 1, far above socket.request.max.bytes
        conn.send(w.request_header_v1(w.API_API_VERSIONS, 0, 1, "huge"))  # the start of a body
        assert conn.closed_by_peer(CLOSE_WITHIN_S)
    w.assert_serving(rill.port)
    assert rill.rss_bytes() - rss_before < RSS_GROWTH_MAX_BYTES


def test_truncated_frame_then_close_leaves_the_broker_serving(rill):
    header = w.request_header_v1(w.API_METADATA, 4, 1, "cut")
    with w.Connection(rill.port) as conn:
        conn.send(struct.pack(">i", 100))  # frame size: 100 bytes promised ...
        conn.send(header)  # ... but only the header's 19 bytes arrive before the client goes away
    w.assert_serving(rill.port)


def test_a_silent_client_does_not_stall_others(rill):
    with w.Connection(rill.port):  # connects and never sends a byte
        for _ in range(5):
            w.assert_serving(rill.port, within_s=1.0)


def test_a_client_sending_one_byte_a_second_does_not_stall_others(rill):
    request = w.frame(
        w.request_header_v1(w.API_API_VERSIONS, 0, 77, None)
    )  # 14 bytes: size, key, version, id, null client id
    answer = {}

    def trickle():
        with w.Connection(rill.port, timeout_s=30) as conn:
            for b in request:
                conn.send(bytes([b]))
                time.sleep(1.0)
            answer["payload"] = conn.recv_frame()

    slow = threading.Thread(target=trickle)
    slow.start()
    try:
        time.sleep(1.5)  # the slow client is now mid-frame
        for _ in range(10):
            w.assert_serving(rill.port, within_s=1.0)
            time.sleep(0.5)
    finally:
        slow.join()
    # Kafka answers a slow client too once its frame is complete.
    r = w.Reader(answer["payload"])
    assert r.int32() == 77  # correlation id
    assert r.int16() == w.ERROR_NONE


def test_unknown_api_key_closes_the_connection(rill):
    with w.Connection(rill.port) as conn:
        conn.send(w.frame(w.request_header_v1(32000, 0, 1, "unknown")))  # api key 32000: no such API
        assert conn.closed_by_peer(CLOSE_WITHIN_S)
    w.assert_serving(rill.port)


def test_unsupported_api_versions_version_gets_error_35_in_a_v0_body(rill):
    with w.Connection(rill.port) as conn:
        body = (
            w.compact_string("rill-raw-test")  # client_software_name (v3+ body, as clients from the future send)
            + w.compact_string("1.0")  # client_software_version
            + w.NO_TAGGED_FIELDS
        )
        # ApiVersions v32767: newer than any broker; v3+ requests use the flexible header.
        r = conn.request(w.API_API_VERSIONS, 32767, body, flexible=True)
        error = r.int16()  # v0 body: error_code ...
        entries = {}
        for _ in range(r.int32()):  # ... then api_keys as an INT32-counted array
            key, lo, hi = r.int16(), r.int16(), r.int16()
            entries[key] = (lo, hi)
        trailing = r.remaining()  # v0 has no throttle_time_ms nor tagged fields

    assert error == w.ERROR_UNSUPPORTED_VERSION
    assert trailing == 0
    # The answer tells the client which ApiVersions versions to retry with.
    assert entries[w.API_API_VERSIONS][0] == 0 and entries[w.API_API_VERSIONS][1] >= 3
    w.assert_serving(rill.port)


def test_metadata_v12_claiming_2_31_topics_does_not_allocate_them(rill):
    rss_before = rill.rss_bytes()
    with w.Connection(rill.port) as conn:
        header = w.request_header_v2(w.API_METADATA, 12, 1, "hostile")
        body = w.uvarint(2**31 + 1)  # topics: compact array length N+1 = 2^31 entries claimed, none sent
        conn.send(w.frame(header + body))
        # Kafka closes the connection on a request it cannot parse; an error answer is acceptable too.
        payload = conn.recv_frame()
        if payload is not None:
            assert struct.unpack(">i", payload[:4])[0] == 1, "answer for another request"
    w.assert_serving(rill.port)
    assert rill.rss_bytes() - rss_before < RSS_GROWTH_MAX_BYTES


def produce_v8(port: int, topic: str, batch: bytes) -> tuple[int, int]:
    with w.Connection(port) as conn:
        r = conn.request(w.API_PRODUCE, 8, w.produce_v8_body(topic, 0, batch), flexible=False)
        result = w.read_produce_v8_response(r)
    assert list(result) == [(topic, 0)], result
    return result[(topic, 0)]


def test_produce_with_a_corrupt_crc_is_refused_and_not_stored(rill):
    topic = unique_topic("raw-crc")
    create_topic(rill.bootstrap, topic)
    good = w.record_batch([b"first", b"second"])
    # Flip one bit in the last record's value: the stored CRC no longer matches.
    corrupt = bytearray(w.record_batch([b"third"]))
    corrupt[-3] ^= 0x01

    good_result = produce_v8(rill.port, topic, good)
    corrupt_result = produce_v8(rill.port, topic, bytes(corrupt))

    assert good_result == (w.ERROR_NONE, 0)
    assert corrupt_result[0] == w.ERROR_CORRUPT_MESSAGE
    assert watermarks(rill.bootstrap, topic, 0) == (0, 2)


def test_a_batch_claiming_more_offsets_than_records_is_refused_and_burns_none(rill):
    """A batch's last offset delta must match its records (Kafka's
    LogValidator, origin CLIENT): two records claiming 2^31 - 1 offsets would
    otherwise burn them and roll the log every other batch."""
    topic = unique_topic("raw-delta")
    create_topic(rill.bootstrap, topic)
    values = [b"one" * 10, b"two" * 10]
    for claimed_delta in (2**31 - 2, 2):
        lying = w.record_batch(values, last_offset_delta=claimed_delta)
        assert produce_v8(rill.port, topic, lying)[0] == w.ERROR_INVALID_RECORD, claimed_delta
    assert watermarks(rill.bootstrap, topic, 0) == (0, 0)
    assert produce_v8(rill.port, topic, w.record_batch(values)) == (w.ERROR_NONE, 0)
    assert watermarks(rill.bootstrap, topic, 0) == (0, 2)


def test_produce_of_a_batch_over_the_size_limit_gets_message_too_large(rill):
    topic = unique_topic("raw-large")
    create_topic(rill.bootstrap, topic)
    # Kafka's default max.message.bytes is 1 MiB + 12 bytes; this one record's value alone is larger.
    large = w.record_batch([b"x" * (1024 * 1024 + 100)])

    result = produce_v8(rill.port, topic, large)

    assert result[0] == w.ERROR_MESSAGE_TOO_LARGE
    assert watermarks(rill.bootstrap, topic, 0) == (0, 0)


def test_create_topics_with_invalid_names_gets_invalid_topic_exception(rill):
    invalid = ["", "has space", "slash/name", ".", "..", "x" * 250, "bad*char"]
    valid = unique_topic("raw.valid_name")
    with w.Connection(rill.port) as conn:
        r = conn.request(w.API_CREATE_TOPICS, 4, w.create_topics_v4_body(invalid + [valid]), flexible=False)
        result = w.read_create_topics_v4_response(r)

    assert result == {**{name: w.ERROR_INVALID_TOPIC_EXCEPTION for name in invalid}, valid: w.ERROR_NONE}
