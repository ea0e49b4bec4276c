"""What one request may cost the broker, and what one bad batch may cost the
group coordinator.

- A request of any API but Produce may not pass `request_max_bytes_except_produce`
  (8 MiB): its connection is closed once the frame's API key has arrived, before
  the body is read.
- Requests read and not yet answered hold at most `queued_max_request_bytes`
  (256 MiB) across all connections.
- A batch that inflates past 64 MiB is refused at produce (INVALID_RECORD),
  without the broker inflating it.
- A batch of `__consumer_offsets` that cannot be decoded (written before that
  check, or by hand) is skipped and counted, and the coordinator loads.

Memory is judged by the broker's VmHWM (peak resident set since it started)."""

from __future__ import annotations

import struct
import threading
import time
import urllib.request
import zlib

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import kafka_wire as w
from helpers import WAIT_S, create_topic, unique_topic, watermarks

MIB = 1024 * 1024
OFFSETS = "__consumer_offsets"
# 100 MiB: Kafka's socket.request.max.bytes, the largest frame the broker takes at all.
HUGE_FRAME = 100 * MIB
ZEROS = memoryview(bytes(HUGE_FRAME))
# How long 20 clients may take to push their frames through (2 GB over loopback
# at worst, on a slow shared machine).
SEND_WITHIN_S = 120.0


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM line in /proc status")


def send_huge_frame(port: int, api_key: int, api_version: int, outcome: list, i: int) -> None:
    """Sends one frame of HUGE_FRAME bytes (a header, then zeros); records how it ended."""
    header = w.request_header_v1(api_key, api_version, i, "huge")
    try:
        with w.Connection(port, timeout_s=SEND_WITHIN_S) as conn:
            conn.send(struct.pack(">i", HUGE_FRAME) + header)  # frame size: 100 MiB
            conn.sock.sendall(ZEROS[: HUGE_FRAME - len(header)])  # the body: zeros
            outcome[i] = "sent"
    except (BrokenPipeError, ConnectionResetError):
        outcome[i] = "closed by the broker"
    except OSError as e:
        outcome[i] = f"failed: {e!r}"


def twenty_huge_frames(port: int, api_key: int, api_version: int) -> list:
    outcome: list = [None] * 20
    threads = [
        threading.Thread(target=send_huge_frame, args=(port, api_key, api_version, outcome, i)) for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SEND_WITHIN_S)
    assert not any(t.is_alive() for t in threads), f"senders still blocked: {outcome}"
    return outcome


def test_twenty_connections_announcing_100_mib_metadata_frames_are_closed_unread(rill):
    rss_before = rill.rss_bytes()

    outcome = twenty_huge_frames(rill.port, w.API_METADATA, 4)

    w.assert_serving(rill.port)
    # Each connection is closed after its first 6 bytes; what the client had
    # already pushed into the socket buffers is never read into frames.
    assert outcome == ["closed by the broker"] * 20, outcome
    growth = peak_rss_bytes(rill.pid) - rss_before
    print(f"peak RSS growth: {growth / MIB:.1f} MiB")
    assert growth < 32 * MIB
    assert "only Produce may pass" in rill.stderr_text()


def test_twenty_100_mib_produce_frames_wait_for_the_broker_wide_budget(rill):
    rss_before = rill.rss_bytes()

    outcome = twenty_huge_frames(rill.port, w.API_PRODUCE, 8)

    w.assert_serving(rill.port)
    # Every frame was taken in the end (each is junk after its header, so it is
    # dropped or refused once read) ...
    assert all(o in ("sent", "closed by the broker") for o in outcome), outcome
    # ... but at most 256 MiB of requests were held at once (two of these
    # frames, 200 MiB), not 20 x 100 MiB.
    growth = peak_rss_bytes(rill.pid) - rss_before
    print(f"peak RSS growth: {growth / MIB:.1f} MiB")
    assert growth < 320 * MIB


def commit_and_read_back(rill, group: str, topic: str, offset: int) -> int:
    """Commits `offset` of `topic` partition 0 for `group` and returns what the coordinator reads back."""
    consumer = Consumer({"bootstrap.servers": rill.bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        return committed(consumer, topic)
    finally:
        consumer.close()


def committed(consumer: Consumer, topic: str) -> int:
    [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=WAIT_S)
    return tp.offset


def read_committed(rill, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": rill.bootstrap, "group.id": group})
    try:
        return committed(consumer, topic)
    finally:
        consumer.close()


def metric(rill, name: str) -> float:
    with urllib.request.urlopen(rill.admin_url + "/metrics", timeout=WAIT_S) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def produce_zeros(rill, topic: str, size: int) -> KafkaError | None:
    """One confluent-kafka produce of `size` zero bytes, zstd-compressed; returns the delivery error."""
    reports = []
    producer = Producer(
        {
            "bootstrap.servers": rill.bootstrap,
            "compression.type": "zstd",
            "message.max.bytes": 1_000_000_000,  # the client's own check is on the uncompressed size
            "message.send.max.retries": 0,
            "enable.idempotence": False,
        }
    )
    producer.produce(topic, key=b"k", value=bytes(size), partition=0, on_delivery=lambda err, _m: reports.append(err))
    assert producer.flush(WAIT_S * 2) == 0
    [err] = reports
    return err


def test_a_zstd_batch_inflating_to_200_mib_is_refused_without_inflating_it(rill):
    topic = unique_topic("bomb")
    create_topic(rill.bootstrap, topic, config={"cleanup.policy": "compact"})
    rss_before = rill.rss_bytes()

    to_compacted = produce_zeros(rill, topic, 200 * MIB)
    to_offsets = produce_zeros(rill, OFFSETS, 100 * MIB)

    # INVALID_RECORD, Kafka's answer for records it cannot read out of a batch.
    assert to_compacted is not None and to_compacted.code() == KafkaError.INVALID_RECORD, to_compacted
    assert to_offsets is not None and to_offsets.code() == KafkaError.TOPIC_EXCEPTION, to_offsets
    assert watermarks(rill.bootstrap, topic, 0) == (0, 0)
    # Measured, not kept: a few MiB of codec state at most.
    growth = peak_rss_bytes(rill.pid) - rss_before
    print(f"peak RSS growth: {growth / MIB:.1f} MiB")
    assert growth < 48 * MIB

    rill.restart()
    assert commit_and_read_back(rill, unique_topic("group"), topic, 3) == 3


def gzip_bomb_batch(base_offset: int, inflated: int) -> bytes:
    """A valid v2 batch (CRC and all) of one record whose value is `inflated` zero bytes, gzip-compressed."""
    records = w.record(0, 0, b"poison", bytes(inflated))
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    section = packer.compress(records) + packer.flush()
    after_crc = (
        w.int16(1)  # attributes: gzip, CreateTime, not transactional, not control
        + w.int32(0)  # last_offset_delta
        + w.int64(0)  # base_timestamp
        + w.int64(0)  # max_timestamp
        + w.int64(-1)  # producer_id: none
        + w.int16(-1)  # producer_epoch
        + w.int32(-1)  # base_sequence
        + w.int32(1)  # record count
        + section
    )
    after_length = w.int32(0) + bytes([2]) + w.uint32(w.crc32c(after_crc)) + after_crc  # leader epoch, magic, crc
    return w.int64(base_offset) + w.int32(len(after_length)) + after_length


def this_run_log(rill) -> str:
    """The broker's log since its latest start (a restarted broker appends to the same file)."""
    return rill.stderr_text().rsplit(f"===== rill start #{rill.starts} =====", 1)[-1]


def test_a_consumer_offsets_batch_that_cannot_be_decoded_is_skipped_and_the_coordinator_loads(rill):
    topic = unique_topic("offsets-kept")
    create_topic(rill.bootstrap, topic)
    group = unique_topic("group")
    assert commit_and_read_back(rill, group, topic, 42) == 42
    end = watermarks(rill.bootstrap, OFFSETS, 0)[1]
    rill.stop()

    # The reported poison, written where produce can no longer put it: a batch
    # of a few KiB inflating to 100 MiB at the end of partition 0. Without the
    # clean-shutdown marker the log re-checks the tail (CRC) at start and keeps it.
    partition_dir = rill.data_dir / f"{OFFSETS}-0"
    with open(partition_dir / "00000000000000000000.log", "ab") as segment:
        segment.write(gzip_bomb_batch(end, 100 * MIB))
    (partition_dir / ".clean-shutdown").unlink()
    rill.start()

    deadline = time.monotonic() + WAIT_S
    while "group coordinator loaded" not in this_run_log(rill):
        assert time.monotonic() < deadline, "the group coordinator did not load"
        time.sleep(0.1)
    assert watermarks(rill.bootstrap, OFFSETS, 0)[1] == end + 1, "the poisoned batch must be in the log"
    assert read_committed(rill, group, topic) == 42
    assert commit_and_read_back(rill, group, topic, 43) == 43
    assert metric(rill, "rill_group_replay_skipped_batches_total") == 1
    assert "skipping a batch of __consumer_offsets" in this_run_log(rill)
