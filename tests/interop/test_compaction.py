"""Log compaction seen by real clients: a compacted topic written with
confluent-kafka (keyed, compressed, with tombstones) and read back from the
beginning by confluent-kafka and kafka-python after the broker's cleaner ran;
keyless records refused with INVALID_RECORD; `__consumer_offsets` compacted
and still correct after a restart."""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

import kafka_wire as w
from helpers import WAIT_S, admin, consumer, create_topic, produce_all, read_partition, run_node, unique_topic

KEYS = 100
ROUNDS = 8
DELETED = range(10)  # keys deleted with a tombstone in the last round
# The broker keeps a tombstone this long after its segment was last written.
DELETE_RETENTION_MS = 1500


@pytest.fixture(autouse=True)
def fast_cleaner(monkeypatch):
    # Read by `rill serve` as settings: look for dirty logs every 100 ms
    # instead of 15 s, and give __consumer_offsets small segments.
    monkeypatch.setenv("RILL_LOG_CLEANER_BACKOFF_MS", "100")
    monkeypatch.setenv("RILL_OFFSETS_TOPIC_SEGMENT_BYTES", "4096")


def cleaner_metric(rill, name: str) -> float:
    with urllib.request.urlopen(rill.admin_url + "/metrics", timeout=WAIT_S) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def compacted_topic(rill) -> str:
    topic = unique_topic("compact")
    create_topic(
        rill.bootstrap,
        topic,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": str(DELETE_RETENTION_MS),
        },
    )
    return topic


def key(k: int) -> bytes:
    return f"key-{k:03}".encode()


def write_rounds(rill, topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Writes every key ROUNDS times (gzip, batched), deleting DELETED in the
    last round; returns each key's latest (offset, value)."""
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    for round_ in range(ROUNDS):
        messages = []
        for k in range(KEYS):
            value = None if round_ == ROUNDS - 1 and k in DELETED else f"value-{k}-{round_}".encode() * 3
            messages.append((key(k), value))
        acked = produce_all(
            rill.bootstrap, topic, messages, compression_type="gzip", linger_ms=20, enable_idempotence=True
        )
        for (k, value), (_, offset) in zip(messages, acked, strict=True):
            latest[k] = (offset, value)
    return latest


def fill(rill, topic: str, tag: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Unique keys that push what came before out of the active segment."""
    messages = [(f"fill-{tag}-{i}".encode(), b"f" * 100) for i in range(150)]
    acked = produce_all(rill.bootstrap, topic, messages, compression_type="gzip")
    return {k: (offset, v) for (k, v), (_, offset) in zip(messages, acked, strict=True)}


def wait_until(what: str, check) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {problem}")
        time.sleep(0.2)


def compacted_view_problem(records, latest, tombstones_gone: bool) -> str | None:
    """None when the records of the rounds' keys are exactly the latest record
    of every key at its original offset (tombstones absent when `tombstones_gone`)."""
    latest = {k: v for k, v in latest.items() if k.startswith(b"key-")}
    seen: dict[bytes, int] = {}
    for r in records:
        if r.key not in latest:
            continue
        if r.key in seen:
            return f"key {r.key!r} appears twice (offsets {seen[r.key]} and {r.offset})"
        seen[r.key] = r.offset
        offset, value = latest[r.key]
        if (r.offset, r.value) != (offset, value):
            return f"key {r.key!r} reads {(r.offset, r.value)!r}, latest is {(offset, value)!r}"
    for k, (_, value) in latest.items():
        if value is None and tombstones_gone and k in seen:
            return f"tombstone of {k!r} still there"
        if value is not None and k not in seen:
            return f"live key {k!r} is missing"
    return None


def test_compacted_topic_keeps_the_latest_record_per_key_for_every_client(rill):
    topic = compacted_topic(rill)
    latest = write_rounds(rill, topic)
    latest.update(fill(rill, topic, "a"))
    written = ROUNDS * KEYS + 150

    # The keys written before the fill are in closed segments; once the
    # cleaner has run only their latest records are left (the fill's own
    # segment may still be active, and its keys are unique anyway).
    def first_clean():
        return compacted_view_problem(read_partition(rill.bootstrap, topic, 0), latest, tombstones_gone=False)

    wait_until("the cleaner compacts the topic", first_clean)
    records = read_partition(rill.bootstrap, topic, 0)
    assert len(records) < written / 2, f"{len(records)} of {written} records left"
    assert any(r.value is None for r in records), "fresh tombstones are still served"
    assert cleaner_metric(rill, "rill_log_cleaner_cleans") >= 1
    assert cleaner_metric(rill, "rill_log_cleaner_written_bytes") > 0

    # After delete.retention.ms, and with new dirty data to clean, the
    # tombstones go too.
    time.sleep(DELETE_RETENTION_MS / 1000 + 0.5)
    latest.update(fill(rill, topic, "b"))
    latest.update(fill(rill, topic, "c"))

    def tombstones_gone():
        return compacted_view_problem(read_partition(rill.bootstrap, topic, 0), latest, tombstones_gone=True)

    wait_until("tombstones expire", tombstones_gone)

    # kafka-python (its own protocol code) reads the log with its gaps and
    # sees the same records, at the same offsets.
    expected = [(r.offset, r.key, r.value) for r in read_partition(rill.bootstrap, topic, 0)]
    kp = KafkaConsumer(bootstrap_servers=rill.bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        tp = KpTopicPartition(topic, 0)
        kp.assign([tp])
        kp.seek_to_beginning(tp)
        got = [(m.offset, m.key, m.value) for m in kp]
    finally:
        kp.close()
    assert got[: len(expected)] == expected

    # KafkaJS too (a group consumer from the beginning: its only way to read).
    seen = run_node(
        "consume_group.js",
        {"brokers": [rill.bootstrap], "topic": topic, "groupId": unique_topic("js"), "count": len(expected)},
    )
    js = [(int(m["offset"]), m["key"].encode(), m["value"] and m["value"].encode()) for m in seen]
    assert js == expected


def test_keyless_records_are_refused_once_a_topic_is_altered_to_compact(rill):
    topic = unique_topic("altered")
    create_topic(rill.bootstrap, topic)
    errors = []
    producer = Producer({"bootstrap.servers": rill.bootstrap, "linger.ms": 5})

    def send(key: bytes | None, value: bytes) -> None:
        # One message per batch: a batch holding a keyless record is refused whole.
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: errors.append(err))
        assert producer.flush(WAIT_S) == 0

    send(None, b"before")  # fine while the policy is delete
    client = admin(rill.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    resource.add_incremental_config(
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)
    )
    for future in client.incremental_alter_configs([resource]).values():
        future.result(timeout=WAIT_S)
    send(None, b"no key")
    send(b"k", b"keyed")
    codes = [e.code() if e is not None else 0 for e in errors]
    assert codes == [0, KafkaError.INVALID_RECORD, 0], errors
    records = read_partition(rill.bootstrap, topic, 0)
    assert [(r.key, r.value) for r in records] == [(None, b"before"), (b"k", b"keyed")]


def test_consumer_offsets_are_compacted_and_survive_a_restart(rill):
    topic = unique_topic("offsets")
    create_topic(rill.bootstrap, topic)
    produce_all(rill.bootstrap, topic, [(None, b"x")] * 10)
    group = unique_topic("group")
    c = consumer(rill.bootstrap, group_id=group)
    try:
        # Many commits of the same partition: one record each in the
        # offsets topic, all but the last one superseded.
        for i in range(400):
            c.commit(offsets=[TopicPartition(topic, 0, i % 10 + 1)], asynchronous=False)
        c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    finally:
        c.close()
    wait_until(
        "the cleaner compacts __consumer_offsets",
        lambda: None if cleaner_metric(rill, "rill_log_cleaner_cleans") >= 1 else "no clean yet",
    )
    rill.restart()
    c = consumer(rill.bootstrap, group_id=group)
    try:
        committed = c.committed([TopicPartition(topic, 0)], timeout=WAIT_S)
    finally:
        c.close()
    assert committed[0].offset == 7


def test_keyless_records_get_per_record_errors_kip_467(rill):
    """A batch with keyless records on a compacted topic is refused with
    INVALID_RECORD and names each keyless record by its index in the batch
    (record_errors, KIP-467), so a client fails just those and reports the
    rest as refused with them, as Kafka answers."""
    topic = compacted_topic(rill)
    batch = w.record_batch([b"a", b"b", b"c", b"d"], keys=[b"ka", None, b"kc", None])
    with w.Connection(rill.port) as conn:
        r = conn.request(w.API_PRODUCE, 8, w.produce_v8_body(topic, 0, batch), flexible=False)
        answer = w.read_produce_v8_response_full(r)[(topic, 0)]
    error, base_offset, record_errors, message = answer
    assert (error, base_offset) == (w.ERROR_INVALID_RECORD, -1), answer
    assert [index for index, _ in record_errors] == [1, 3], answer
    assert all("without key" in text for _, text in record_errors), answer
    assert message and "2 record" in message, answer
    assert read_partition(rill.bootstrap, topic, 0) == []
