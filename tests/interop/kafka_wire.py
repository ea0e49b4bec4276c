"""Kafka's wire format, written out by hand for the raw-socket tests.

Real clients never send a hostile frame, so the bad-input tests build their
bytes here with struct.pack, byte group by byte group, straight from the
protocol description (kafka.apache.org/protocol and the record-batch layout
of KIP-98). Big-endian everywhere, as Kafka is.
"""

from __future__ import annotations

import socket
import struct
import time

# --- Primitive types ----------------------------------------------------------


def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def string(s: str | None) -> bytes:
    """STRING / NULLABLE_STRING: INT16 length (-1 for null), then UTF-8 bytes."""
    if s is None:
        return int16(-1)
    b = s.encode()
    return int16(len(b)) + b


def uvarint(n: int) -> bytes:
    """UNSIGNED_VARINT: 7 bits per byte, low bits first, high bit = more follows."""
    assert n >= 0
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(n: int) -> bytes:
    """VARINT / VARLONG: zigzag (sign into the low bit), then as uvarint."""
    return uvarint((n << 1) ^ (n >> 63))


def compact_string(s: str | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING: uvarint length+1 (0 for null), then bytes."""
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


# An empty tagged-field section of a flexible-version message: zero fields.
NO_TAGGED_FIELDS = uvarint(0)


# --- Frames and headers ---------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """Every request and response is an INT32 size followed by that many bytes."""
    return int32(len(payload)) + payload


def request_header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    return (
        int16(api_key)  # request_api_key
        + int16(api_version)  # request_api_version
        + int32(correlation_id)  # correlation_id, echoed in the response
        + string(client_id)  # client_id: INT16-length string even in header v2
    )


def request_header_v2(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    """Header of flexible versions: v1 plus a tagged-field section."""
    return request_header_v1(api_key, api_version, correlation_id, client_id) + NO_TAGGED_FIELDS


# --- CRC32C (Castagnoli), which record batches v2 use ----------------------------


def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli polynomial, bit-reversed
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC32C_TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C check value (RFC 3720)"


# --- Record batch v2 (magic 2) -------------------------------------------------


def record(offset_delta: int, timestamp_delta: int, key: bytes | None, value: bytes | None) -> bytes:
    """One record inside a batch, without headers; its length prefix is a varint."""
    body = (
        int8(0)  # attributes: unused, always 0
        + varint(timestamp_delta)  # timestampDelta (varlong) from the batch's base timestamp
        + varint(offset_delta)  # offsetDelta from the batch's base offset
        + (varint(-1) if key is None else varint(len(key)) + key)  # keyLength, key
        + (varint(-1) if value is None else varint(len(value)) + value)  # valueLength, value
        + varint(0)  # header count
    )
    return varint(len(body)) + body


def record_batch(
    values: list[bytes],
    base_timestamp_ms: int | None = None,
    keys: list[bytes | None] | None = None,
    last_offset_delta: int | None = None,
) -> bytes:
    """A valid uncompressed, non-transactional, non-idempotent batch holding
    `values` (keyed k0, k1, ... unless `keys` says otherwise); a
    `last_offset_delta` other than len(values) - 1 makes it claim more offsets
    than it has records."""
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    if keys is None:
        keys = [b"k%d" % i for i in range(len(values))]
    if last_offset_delta is None:
        last_offset_delta = len(values) - 1
    records = b"".join(record(i, 0, k, v) for i, (k, v) in enumerate(zip(keys, values, strict=True)))
    # Everything from `attributes` to the end is covered by the CRC.
    after_crc = (
        int16(0)  # attributes: no compression, CreateTime, not transactional, not control
        + int32(last_offset_delta)  # lastOffsetDelta
        + int64(base_timestamp_ms)  # baseTimestamp
        + int64(base_timestamp_ms)  # maxTimestamp
        + int64(-1)  # producerId: none (not idempotent)
        + int16(-1)  # producerEpoch: none
        + int32(-1)  # baseSequence: none
        + int32(len(values))  # record count
        + records
    )
    after_length = (
        int32(-1)  # partitionLeaderEpoch: clients send -1, the broker stamps it
        + int8(2)  # magic: record batch format v2
        + uint32(crc32c(after_crc))  # crc
        + after_crc
    )
    return (
        int64(0)  # baseOffset: 0 from producers, the broker assigns offsets
        + int32(len(after_length))  # batchLength: bytes after this field
        + after_length
    )


# --- Reading responses -------------------------------------------------------------


class Reader:
    """A cursor over a response body; every read fails loudly past the end."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise AssertionError(f"response ends at {len(self.data)} bytes, wanted {n} more at {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def int8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def nullable_string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def string(self) -> str:
        s = self.nullable_string()
        assert s is not None, "null where a string is required"
        return s

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- A connection ------------------------------------------------------------------

# How long a test waits for the broker's answer to one request; a healthy
# broker answers in milliseconds.
RESPONSE_TIMEOUT_S = 10.0


class Connection:
    def __init__(self, port: int, timeout_s: float = RESPONSE_TIMEOUT_S, receive_buffer: int | None = None):
        """`receive_buffer`: SO_RCVBUF in bytes, set before connecting (TCP picks its window then)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout_s)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_correlation_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes | None:
        """The next response frame's payload, or None if the broker closed the connection."""
        try:
            size = self._recv_exact(4)
            if size is None:
                return None
            (n,) = struct.unpack(">i", size)
            assert 0 <= n <= 200 * 1024 * 1024, f"absurd response size {n}"
            payload = self._recv_exact(n)
            assert payload is not None, "connection closed in the middle of a response"
            return payload
        except ConnectionResetError:
            return None

    def request(self, api_key: int, api_version: int, body: bytes, flexible: bool) -> Reader:
        """Sends one request and returns a reader positioned after the response's correlation id.

        A flexible (v2) request header is used when `flexible`; the caller skips
        the response's tagged fields itself (ApiVersions responses have none in
        their header, every other flexible response has).
        """
        cid = self.next_correlation_id
        self.next_correlation_id += 1
        header = (request_header_v2 if flexible else request_header_v1)(api_key, api_version, cid, "rill-raw-test")
        self.send(frame(header + body))
        payload = self.recv_frame()
        assert payload is not None, f"broker closed the connection instead of answering api {api_key} v{api_version}"
        r = Reader(payload)
        got = r.int32()
        assert got == cid, f"correlation id {got}, expected {cid}"
        return r

    def closed_by_peer(self, within_s: float) -> bool:
        """True if the broker closes the connection within `within_s` seconds (any bytes are discarded)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False


# --- Requests the tests use ---------------------------------------------------------

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_MESSAGE_TOO_LARGE = 10
ERROR_INVALID_TOPIC_EXCEPTION = 17
ERROR_UNSUPPORTED_VERSION = 35
ERROR_INVALID_RECORD = 87


def api_versions_v0(port: int) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 on a new connection: {api_key: (min_version, max_version)}."""
    with Connection(port) as conn:
        r = conn.request(API_API_VERSIONS, 0, b"", flexible=False)  # v0 has an empty body
        error = r.int16()
        assert error == ERROR_NONE, f"ApiVersions v0 error {error}"
        versions = {}
        for _ in range(r.int32()):
            key, lo, hi = r.int16(), r.int16(), r.int16()
            versions[key] = (lo, hi)
        assert r.remaining() == 0, "trailing bytes after an ApiVersions v0 body"
        return versions


def assert_serving(port: int, within_s: float = 2.0) -> None:
    """A new client is answered promptly: the broker is alive and not stalled."""
    start = time.monotonic()
    versions = api_versions_v0(port)
    took = time.monotonic() - start
    assert API_PRODUCE in versions and API_API_VERSIONS in versions, versions
    assert took < within_s, f"ApiVersions took {took:.2f}s"


def produce_v8_body(topic: str, partition: int, records: bytes, acks: int = -1) -> bytes:
    return (
        string(None)  # transactional_id: none
        + int16(acks)  # acks: -1 = all in-sync replicas
        + int32(5000)  # timeout_ms
        + int32(1)  # topic_data: one topic
        + string(topic)  # name
        + int32(1)  # partition_data: one partition
        + int32(partition)  # index
        + int32(len(records))  # records: INT32 size ...
        + records  # ... then the record batch bytes
    )


def read_produce_v8_response(r: Reader) -> dict[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (error_code, base_offset)} from a Produce v8 response."""
    return {tp: answer[:2] for tp, answer in read_produce_v8_response_full(r).items()}


def read_produce_v8_response_full(r: Reader) -> dict[tuple[str, int], tuple]:
    """{(topic, partition): (error_code, base_offset, record_errors, error_message)}
    from a Produce v8 response; record_errors is [(batch_index, message)] (KIP-467)."""
    out = {}
    for _ in range(r.int32()):  # responses
        name = r.string()
        for _ in range(r.int32()):  # partition_responses
            index = r.int32()
            error = r.int16()
            base_offset = r.int64()
            r.int64()  # log_append_time_ms
            r.int64()  # log_start_offset
            record_errors = [(r.int32(), r.nullable_string()) for _ in range(r.int32())]
            error_message = r.nullable_string()
            out[(name, index)] = (error, base_offset, record_errors, error_message)
    r.int32()  # throttle_time_ms
    assert r.remaining() == 0, "trailing bytes after a Produce v8 body"
    return out


def create_topics_v4_body(names: list[str], partitions: int = 1) -> bytes:
    topics = b"".join(
        string(name)  # name
        + int32(partitions)  # num_partitions
        + int16(1)  # replication_factor
        + int32(0)  # assignments: none, let the broker choose
        + int32(0)  # configs: none
        for name in names
    )
    return (
        int32(len(names))  # topics
        + topics
        + int32(5000)  # timeout_ms
        + int8(0)  # validate_only: false
    )


def read_create_topics_v4_response(r: Reader) -> dict[str, int]:
    """{topic name: error_code} from a CreateTopics v4 response."""
    r.int32()  # throttle_time_ms
    out = {}
    for _ in range(r.int32()):  # topics
        name = r.string()
        error = r.int16()
        r.nullable_string()  # error_message
        out[name] = error
    assert r.remaining() == 0, "trailing bytes after a CreateTopics v4 body"
    return out


def fetch_v4_body(topic: str, partition: int, offset: int, partition_max_bytes: int) -> bytes:
    """Fetch v4 (the first with record batch v2) for one partition, answered at once."""
    return (
        int32(-1)  # replica_id: -1, a consumer
        + int32(0)  # max_wait_ms: answer at once
        + int32(0)  # min_bytes: whatever is there
        + int32(64 * 1024 * 1024)  # max_bytes of the whole response: the partition's limit decides
        + int8(0)  # isolation_level: read uncommitted
        + int32(1)  # topics: one
        + string(topic)  # topic
        + int32(1)  # partitions: one
        + int32(partition)  # partition
        + int64(offset)  # fetch_offset
        + int32(partition_max_bytes)  # partition_max_bytes
    )


def read_fetch_v4_response(r: Reader) -> dict[tuple[str, int], tuple[int, bytes]]:
    """{(topic, partition): (error_code, record bytes)} from a Fetch v4 response."""
    r.int32()  # throttle_time_ms
    out = {}
    for _ in range(r.int32()):  # responses
        name = r.string()
        for _ in range(r.int32()):  # partitions
            index = r.int32()
            error = r.int16()
            r.int64()  # high_watermark
            r.int64()  # last_stable_offset
            for _ in range(max(0, r.int32())):  # aborted_transactions (-1: null)
                r.int64()  # producer_id
                r.int64()  # first_offset
            size = r.int32()  # records: INT32 size (-1: null) ...
            out[(name, index)] = (error, r._take(max(0, size)))  # ... then the batches
    assert r.remaining() == 0, "trailing bytes after a Fetch v4 body"
    return out


def batches(records: bytes) -> list[bytes]:
    """The whole record batches in `records` (a partial batch at the end, which Kafka may send, is dropped)."""
    out = []
    pos = 0
    while pos + 12 <= len(records):
        (length,) = struct.unpack(">i", records[pos + 8 : pos + 12])  # batchLength: bytes after this field
        end = pos + 12 + length
        if length < 0 or end > len(records):
            break
        out.append(records[pos:end])
        pos = end
    return out
