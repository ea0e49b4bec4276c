"""Restarts: every message the broker acknowledged is still there afterwards, at the
offset it was acknowledged at, whether the broker was stopped cleanly (SIGTERM)
or killed (SIGKILL, which loses nothing the kernel already has: page cache
survives a process). Topics keep their partitions and configs, and new
messages continue the offsets instead of reusing them."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from helpers import WAIT_S, admin, create_topic, produce_all, read_partition, unique_topic, wait_for_partitions

STOPS = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


@pytest.mark.parametrize("stop", STOPS)
def test_acknowledged_messages_survive_a_restart_at_their_offsets(rill, stop):
    topic = unique_topic(f"restart-{stop}")
    create_topic(rill.bootstrap, topic, partitions=3, config={"retention.ms": "3600000"})
    messages = [(b"k%d" % i, b"before-%d" % i) for i in range(3000)]
    acked = produce_all(rill.bootstrap, topic, messages, acks="all")

    status = rill.restart(STOPS[stop])

    expected = {pos: m for pos, m in zip(acked, messages, strict=True)}
    stored = {
        (r.partition, r.offset): (r.key, r.value) for p in range(3) for r in read_partition(rill.bootstrap, topic, p)
    }
    assert status == (0 if stop == "sigterm" else -signal.SIGKILL)
    assert stored == expected
    client = admin(rill.bootstrap)
    wait_for_partitions(client, topic, 3)
    configs = next(iter(client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values())).result(
        timeout=WAIT_S
    )
    assert configs["retention.ms"].value == "3600000"
    # New messages follow on after the old ones, in every partition.
    for p in range(3):
        count = sum(1 for (q, _) in acked if q == p)
        assert produce_all(rill.bootstrap, topic, [(None, b"after")], partition=p) == [(p, count)]


def test_sigkill_while_producing_keeps_every_acknowledged_message(rill):
    topic = unique_topic("restart-under-load")
    create_topic(rill.bootstrap, topic, partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": rill.bootstrap,
            "acks": "all",
            "linger.ms": 2,
            # Messages caught by the kill are retried once the broker is back.
            "message.timeout.ms": int(WAIT_S * 1000),
        }
    )
    acked: dict[bytes, tuple[int, int]] = {}
    failed = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            failed.append(err)

    stop_producing = threading.Event()

    def produce_until_stopped():
        i = 0
        while not stop_producing.is_set() and i < 200_000:
            try:
                producer.produce(topic, value=b"m%d" % i, partition=i % 2, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001 if i % 100 == 0 else 0)

    writer = threading.Thread(target=produce_until_stopped)
    writer.start()
    try:
        time.sleep(1.0)
        acked_before_kill = len(acked)
        rill.stop(signal.SIGKILL)
        time.sleep(0.5)
        rill.start()
        time.sleep(1.0)
    finally:
        stop_producing.set()
        writer.join()
    producer.flush(WAIT_S)

    stored = {}
    for p in range(2):
        for r in read_partition(rill.bootstrap, topic, p):
            stored[(r.partition, r.offset)] = r.value
    assert acked_before_kill > 0, "nothing was acknowledged before the kill"
    missing = [(value, pos) for value, pos in acked.items() if stored.get(pos) != value]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages are not at their offsets: {missing[:5]}"


def test_idempotent_producer_carries_on_across_a_clean_restart(rill):
    topic = unique_topic("restart-idempotent")
    create_topic(rill.bootstrap, topic)
    producer = Producer({"bootstrap.servers": rill.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    offsets = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for i in range(1000):
        producer.produce(topic, value=b"first-%d" % i, partition=0, on_delivery=on_delivery)
    assert producer.flush(WAIT_S) == 0
    rill.restart(signal.SIGTERM)
    for i in range(1000):
        producer.produce(topic, value=b"second-%d" % i, partition=0, on_delivery=on_delivery)
    assert producer.flush(WAIT_S) == 0

    records = read_partition(rill.bootstrap, topic, 0)
    assert not errors, errors[:5]
    assert offsets == list(range(2000))
    assert [r.value for r in records] == [b"first-%d" % i for i in range(1000)] + [
        b"second-%d" % i for i in range(1000)
    ]


def metadata_entries(path) -> list[tuple[int, bytes]]:
    """(position, payload) of each entry of the metadata log (docs/FORMAT.md)."""
    data = path.read_bytes()
    entries, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        entries.append((position, data[position + 8 : position + 8 + length]))
        position += 8 + length
    return entries


def test_a_damaged_metadata_log_stops_the_broker_instead_of_dropping_topics(rill):
    topics = [unique_topic(f"meta-{i}") for i in range(4)]
    for topic in topics:
        create_topic(rill.bootstrap, topic)
    assert rill.stop() == 0

    # One byte changed inside the second topic's entry: damage, with valid
    # entries after it, not a torn tail.
    (log,) = (rill.data_dir / "__cluster_metadata" / "raft" / "log").glob("*.log")
    original = log.read_bytes()
    position = next(p for p, payload in metadata_entries(log) if topics[1].encode() in payload)
    damaged = bytearray(original)
    damaged[position + 20] ^= 0x01
    log.write_bytes(bytes(damaged))

    with pytest.raises(RuntimeError, match="exited with status 1 while starting"):
        rill.start()
    message = rill.stderr_text()
    assert f"the controller's Raft log is damaged: {log} at byte {position}" in message
    assert "restore the directory from a backup" in message
    assert "torn tail" not in message
    # Nothing was cut: the file is as the test left it.
    assert log.read_bytes() == bytes(damaged)

    # With the byte put back, every topic is there again.
    log.write_bytes(original)
    rill.start()
    listed = admin(rill.bootstrap).list_topics(timeout=WAIT_S).topics
    assert all(topic in listed for topic in topics)
