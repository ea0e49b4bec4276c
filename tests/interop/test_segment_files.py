"""What the broker does to segment files must never change bytes a consumer is being sent.

Record bytes go from the page cache to the socket with sendfile(2): the kernel
hands TCP references to the file's cached pages, and TCP keeps them until the
peer has read them (and reads them again to retransmit). Writing over those
pages, for instance by starting a new segment in the file of one retention
deleted, changes an answer the broker already "sent". These tests hold an
answer in the kernel's queues (a small receive buffer that the client does not
read) while the log rolls and retention runs, then check every byte of it.
"""

from __future__ import annotations

import socket
import struct
import time

import kafka_wire as w
from helpers import WAIT_S, create_topic, produce_all, unique_topic, watermarks

SEGMENT_BYTES = 1024 * 1024
RETENTION_BYTES = 2 * 1024 * 1024
# Small enough that the answer (8 KiB of batches) cannot all move into the
# client's buffer: the rest waits in the broker's socket, as page references.
RECEIVE_BUFFER = 2048
FETCH_MAX_BYTES = 8192
# 20 batches of one 1000-byte record: the 8 KiB answer holds the first ones.
FIRST_BATCHES = 20
VALUE_BYTES = 1000
# 6,000 more 1000-byte messages: 6 MB, six rolls of 1 MiB segments, with
# retention (2 MiB, checked every 100 ms) deleting the oldest segments.
MORE_MESSAGES = 6000


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(tx_queue, rx_queue) of the IPv4 TCP socket from local_port to remote_port, from /proc/net/tcp.

    tx_queue: bytes written and not yet acknowledged by the peer (on loopback, not yet in the
    peer's receive queue); rx_queue: bytes received and not yet read."""
    with open("/proc/net/tcp") as f:
        next(f)  # the column titles
        for line in f:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                tx, rx = queues.split(":")
                return int(tx, 16), int(rx, 16)
    return None


def wait_until_answer_written(conn: w.Connection, broker_port: int) -> int:
    """Waits until the broker has written its whole answer (its sendfile calls returned), while the
    client reads nothing; returns the answer's frame size. The answer's bytes are then split between
    the broker's send queue and the client's receive queue, and add up to the frame."""
    client_port = conn.sock.getsockname()[1]
    deadline = time.monotonic() + WAIT_S
    size = None
    while True:
        if size is None:
            conn.sock.setblocking(False)
            try:
                head = conn.sock.recv(4, socket.MSG_PEEK)  # the frame size, left in the queue
                if len(head) == 4:
                    (size,) = struct.unpack(">i", head)
            except BlockingIOError:
                pass
            finally:
                conn.sock.settimeout(w.RESPONSE_TIMEOUT_S)
        broker_side = tcp_queues(broker_port, client_port)
        client_side = tcp_queues(client_port, broker_port)
        if size is not None and broker_side is not None and client_side is not None:
            if broker_side[0] + client_side[1] == 4 + size:
                return size
        assert time.monotonic() < deadline, f"the broker did not write its answer in {WAIT_S}s: {size=}"
        time.sleep(0.01)


def test_an_answer_in_flight_keeps_its_bytes_while_the_log_rolls_and_retention_deletes(rill):
    # Retention runs on its own thread: look for segments to delete often.
    rill.stop()
    rill.extra_env = {"RILL_LOG_RETENTION_CHECK_INTERVAL_MS": "100"}
    rill.start()
    topic = unique_topic("in-flight")
    create_topic(
        rill.bootstrap,
        topic,
        config={"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(RETENTION_BYTES)},
    )
    sent = []
    with w.Connection(rill.port) as producer:
        for i in range(FIRST_BATCHES):
            batch = w.record_batch([b"%04d" % i + b"v" * (VALUE_BYTES - 4)])
            r = producer.request(w.API_PRODUCE, 8, w.produce_v8_body(topic, 0, batch), flexible=False)
            assert w.read_produce_v8_response(r) == {(topic, 0): (w.ERROR_NONE, i)}
            sent.append(batch)

    with w.Connection(rill.port, receive_buffer=RECEIVE_BUFFER) as consumer:
        request = w.request_header_v1(w.API_FETCH, 4, 1, "held-fetch") + w.fetch_v4_body(topic, 0, 0, FETCH_MAX_BYTES)
        consumer.send(w.frame(request))
        size = wait_until_answer_written(consumer, rill.port)
        assert size > RECEIVE_BUFFER * 2, f"an answer of {size} bytes fits the client's buffer: nothing is held"

        # Meanwhile: rolls, and retention deleting the segment the answer is from.
        produce_all(rill.bootstrap, topic, [(None, b"m" * VALUE_BYTES)] * MORE_MESSAGES, partition=0)
        assert watermarks(rill.bootstrap, topic, 0)[1] == FIRST_BATCHES + MORE_MESSAGES
        # Retention must have deleted the segment the held answer is from,
        # or the scenario did not happen.
        deadline = time.monotonic() + WAIT_S
        while watermarks(rill.bootstrap, topic, 0)[0] == 0:
            assert time.monotonic() < deadline, "retention never deleted the first segment"
            time.sleep(0.05)

        payload = consumer.recv_frame()
    assert payload is not None and len(payload) == size
    r = w.Reader(payload)
    assert r.int32() == 1  # correlation id
    error, records = w.read_fetch_v4_response(r)[(topic, 0)]
    assert error == w.ERROR_NONE
    assert len(records) >= 8, f"an answer of {len(records)} record bytes"
    # The answer to "offset 0" starts at offset 0, and every batch in it is the one produced: base
    # offset and leader epoch are the broker's (rewritten), the rest is the producer's bytes.
    first_base = struct.unpack(">q", records[:8])[0]
    assert first_base == 0, f"the answer to offset 0 starts with a batch at offset {first_base}"
    got = w.batches(records)
    assert got, "no whole batch in the answer"
    for offset, batch in enumerate(got):
        assert struct.unpack(">q", batch[:8])[0] == offset
        assert batch[16:] == sent[offset][16:], f"batch {offset} changed while it was being sent"
