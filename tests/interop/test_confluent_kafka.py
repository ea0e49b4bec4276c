"""confluent-kafka (librdkafka 2.x) against rill serve: producers with every acks
setting and codec, the idempotent producer, the admin client, and a consumer
that assigns partitions and seeks by hand."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from helpers import (
    WAIT_S,
    admin,
    consumer,
    create_topic,
    produce_all,
    read_partition,
    stored_log_bytes,
    unique_topic,
    wait_for_partitions,
    watermarks,
)


@pytest.mark.parametrize("acks", ["all", "1", "0"])
def test_producer_acks(rill, acks):
    topic = unique_topic(f"acks-{acks}")
    create_topic(rill.bootstrap, topic)
    messages = [(b"key-%d" % i, b"value-%d" % i) for i in range(2000)]

    acked = produce_all(rill.bootstrap, topic, messages, partition=0, acks=acks)
    # acks=0 gets no answer, so the reader waits for all 2000 to arrive.
    records = read_partition(rill.bootstrap, topic, 0, count=len(messages))

    if acks != "0":
        assert acked == [(0, i) for i in range(len(messages))]
    assert [(r.key, r.value) for r in records] == messages
    assert [r.offset for r in records] == list(range(len(messages)))
    assert watermarks(rill.bootstrap, topic, 0) == (0, len(messages))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(rill, codec):
    topic = unique_topic(f"codec-{codec}")
    create_topic(rill.bootstrap, topic)
    # Repetitive values compress well, so batches hold many records each.
    messages = [(b"k%d" % i, (b"rill %d " % i) * 40) for i in range(5000)]
    headers = [("codec", codec.encode())]

    acked = produce_all(
        rill.bootstrap, topic, messages, partition=0, headers=headers, compression_type=codec, linger_ms=50
    )
    records = read_partition(rill.bootstrap, topic, 0)

    assert acked == [(0, i) for i in range(len(messages))]
    assert [(r.key, r.value, r.headers) for r in records] == [(k, v, (("codec", codec.encode()),)) for k, v in messages]
    # The broker keeps the producer's compressed batches as they came.
    assert stored_log_bytes(rill.data_dir, topic, 0) < sum(len(v) for _, v in messages) / 5
    assert [r.offset for r in records] == list(range(len(messages)))


def test_topic_max_message_bytes_is_enforced(rill):
    topic = unique_topic("max-message-bytes")
    create_topic(rill.bootstrap, topic, config={"max.message.bytes": "2000"})
    producer = Producer({"bootstrap.servers": rill.bootstrap, "linger.ms": 0})
    reports = []
    producer.produce(topic, value=b"s" * 100, partition=0, on_delivery=lambda err, msg: reports.append(err))
    producer.flush(WAIT_S)
    producer.produce(topic, value=b"L" * 5000, partition=0, on_delivery=lambda err, msg: reports.append(err))
    producer.flush(WAIT_S)

    assert reports[0] is None
    assert reports[1] is not None and reports[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, reports[1]
    assert [r.value for r in read_partition(rill.bootstrap, topic, 0)] == [b"s" * 100]


def test_a_waiting_fetch_returns_as_soon_as_a_message_arrives(rill):
    topic = unique_topic("long-poll")
    create_topic(rill.bootstrap, topic)
    # With fetch.wait.max.ms at 10 s, a broker that sat out max_wait_ms would deliver late.
    c = consumer(rill.bootstrap, fetch_wait_max_ms=10_000, enable_partition_eof=False)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.poll(1.5) is None  # the consumer is now parked in a long poll
        # The clock starts before the produce: librdkafka fetches in the background,
        # so the message may be waiting in the consumer's queue by the time it is acknowledged.
        start = time.monotonic()
        acked = produce_all(rill.bootstrap, topic, [(None, b"wake up")], partition=0)
        msg = c.poll(WAIT_S)
        latency_s = time.monotonic() - start
    finally:
        c.close()

    assert acked == [(0, 0)]
    assert msg is not None and msg.error() is None and msg.value() == b"wake up"
    assert latency_s < 2.0, f"message arrived {latency_s:.2f}s after it was produced"


def test_idempotent_producer_writes_each_message_once_in_order(rill):
    topic = unique_topic("idempotent")
    create_topic(rill.bootstrap, topic, partitions=3)
    count = 30_000
    messages = [(b"k%d" % i, b"v%d" % i) for i in range(count)]

    producer = Producer(
        {"bootstrap.servers": rill.bootstrap, "enable.idempotence": True, "linger.ms": 5, "acks": "all"}
    )
    acked: dict[int, tuple[int, int]] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[int(msg.value()[1:])] = (msg.partition(), msg.offset())

    for i, (k, v) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, key=k, value=v, partition=i % 3, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    assert not errors, errors[:5]

    for p in range(3):
        records = read_partition(rill.bootstrap, topic, p)
        sent = [m for i, m in enumerate(messages) if i % 3 == p]
        assert [(r.key, r.value) for r in records] == sent, f"partition {p}"
        assert [acked[i] for i in range(p, count, 3)] == [(p, o) for o in range(len(sent))]


def test_admin_creates_and_describes_a_topic(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-create")

    client.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"})])[
        topic
    ].result(timeout=WAIT_S)
    wait_for_partitions(client, topic, 3)
    [described] = client.describe_topics(TopicCollection([topic])).values()
    description = described.result(timeout=WAIT_S)
    configs = next(iter(client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values())).result(
        timeout=WAIT_S
    )

    assert description.name == topic
    assert str(description.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA", "topic id is all zeros"
    assert sorted(p.id for p in description.partitions) == [0, 1, 2]
    broker_ids = {n.id for n in client.describe_cluster().result(timeout=WAIT_S).nodes}
    for p in description.partitions:
        assert p.leader.id in broker_ids
        assert [r.id for r in p.replicas] == [p.leader.id]
        assert [r.id for r in p.isr] == [p.leader.id]
    assert configs["retention.ms"].value == "3600000"
    assert source_of(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert source_of(configs["cleanup.policy"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert int(configs["segment.bytes"].value) > 0


def test_admin_refuses_a_topic_that_exists_and_validate_only_creates_nothing(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-twice")
    create_topic(rill.bootstrap, topic)
    dry_run = unique_topic("admin-dry-run")

    with pytest.raises(KafkaException) as exists:
        client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=WAIT_S)
    client.create_topics([NewTopic(dry_run, num_partitions=2, replication_factor=1)], validate_only=True)[
        dry_run
    ].result(timeout=WAIT_S)

    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert dry_run not in client.list_topics(timeout=WAIT_S).topics


def test_admin_alters_topic_configs_incrementally(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-alter")
    create_topic(rill.bootstrap, topic, config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    bad = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)],
    )

    next(iter(client.incremental_alter_configs([resource]).values())).result(timeout=WAIT_S)
    with pytest.raises(KafkaException) as invalid:
        next(iter(client.incremental_alter_configs([bad]).values())).result(timeout=WAIT_S)
    configs = next(iter(client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values())).result(
        timeout=WAIT_S
    )

    assert invalid.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert configs["retention.ms"].value == "7200000"
    assert source_of(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "delete"
    assert source_of(configs["cleanup.policy"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_configs_kafka_3_accepts_but_ignores_are_accepted_reported_and_logged(rill):
    """Scripts written for Kafka 3.x set configs such as message.format.version:
    Rill accepts them (their values' shape still checked), reports them, and
    logs that it ignores them."""
    client = admin(rill.bootstrap)
    topic = unique_topic("ignored-configs")
    create_topic(rill.bootstrap, topic, config={"message.format.version": "2.8-IV1", "preallocate": "true"})
    with pytest.raises(KafkaException) as invalid:
        create_topic(rill.bootstrap, unique_topic("ignored-bad"), config={"preallocate": "maybe"})
    later = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("segment.jitter.ms", "100", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    next(iter(client.incremental_alter_configs([later]).values())).result(timeout=WAIT_S)
    configs = next(iter(client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values())).result(
        timeout=WAIT_S
    )

    assert invalid.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert configs["message.format.version"].value == "2.8-IV1"
    assert configs["preallocate"].value == "true"
    assert configs["segment.jitter.ms"].value == "100"
    assert source_of(configs["segment.jitter.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    log = rill.stdout_path.read_text() + rill.stderr_path.read_text()
    assert "message.format.version" in log and "accepted and ignored" in log


def test_admin_adds_partitions_that_producers_can_use(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-partitions")
    create_topic(rill.bootstrap, topic, partitions=2)

    client.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=WAIT_S)
    wait_for_partitions(client, topic, 5)
    with pytest.raises(KafkaException) as fewer:
        client.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=WAIT_S)
    acked = produce_all(rill.bootstrap, topic, [(b"k", b"to the new partition")], partition=4)

    assert fewer.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    assert acked == [(4, 0)]
    assert [r.value for r in read_partition(rill.bootstrap, topic, 4)] == [b"to the new partition"]


def test_admin_deletes_a_topic(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-delete")
    create_topic(rill.bootstrap, topic, partitions=2)
    produce_all(rill.bootstrap, topic, [(None, b"doomed")], partition=1)

    client.delete_topics([topic], operation_timeout=WAIT_S)[topic].result(timeout=WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while topic in client.list_topics(timeout=WAIT_S).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(KafkaException) as missing:
        client.delete_topics([topic], operation_timeout=WAIT_S)[topic].result(timeout=WAIT_S)

    assert topic not in client.list_topics(timeout=WAIT_S).topics
    assert missing.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_describes_the_cluster_and_broker_configs(rill):
    client = admin(rill.bootstrap)

    cluster = client.describe_cluster().result(timeout=WAIT_S)
    [node] = cluster.nodes
    broker_configs = next(
        iter(client.describe_configs([ConfigResource(ResourceType.BROKER, str(node.id))]).values())
    ).result(timeout=WAIT_S)

    assert cluster.cluster_id
    assert cluster.controller.id == node.id
    assert (node.host, node.port) == ("127.0.0.1", rill.port)
    assert broker_configs["auto.create.topics.enable"].value == "true"


def test_admin_deletes_records_before_an_offset(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-delete-records")
    create_topic(rill.bootstrap, topic)
    produce_all(rill.bootstrap, topic, [(None, b"m%d" % i) for i in range(100)], partition=0)

    [deleted] = client.delete_records([TopicPartition(topic, 0, 40)]).values()
    low_watermark = deleted.result(timeout=WAIT_S).low_watermark
    [earliest] = client.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}).values()
    first = read_partition(rill.bootstrap, topic, 0, start_offset=-2, count=1)  # -2 = OFFSET_BEGINNING

    assert low_watermark == 40
    assert earliest.result(timeout=WAIT_S).offset == 40
    assert [(r.offset, r.value) for r in first] == [(40, b"m40")]
    assert watermarks(rill.bootstrap, topic, 0) == (40, 100)


def test_consumer_assigns_partitions_and_seeks(rill):
    topic = unique_topic("assign-seek")
    create_topic(rill.bootstrap, topic, partitions=3)
    for p in range(3):
        produce_all(rill.bootstrap, topic, [(b"k", b"p%d-m%d" % (p, i)) for i in range(100)], partition=p)

    c = consumer(rill.bootstrap)
    try:
        c.assign([TopicPartition(topic, 1, 50)])
        first = poll_message(c)
        c.seek(TopicPartition(topic, 1, 10))
        after_seek = poll_message(c)
        c.assign([TopicPartition(topic, 2, -2)])  # -2 = OFFSET_BEGINNING
        from_beginning = poll_message(c)
        timestamp_ms = from_beginning.timestamp()[1]
        # Partition 2 was written last: its first message is the first at or after its own timestamp.
        [by_time] = c.offsets_for_times([TopicPartition(topic, 2, timestamp_ms)], timeout=WAIT_S)
        c.assign([TopicPartition(topic, 0, 1000)])  # past the end, with auto.offset.reset=error
        out_of_range = poll_message(c, want_error=True)
    finally:
        c.close()

    assert (first.partition(), first.offset(), first.value()) == (1, 50, b"p1-m50")
    assert (after_seek.partition(), after_seek.offset(), after_seek.value()) == (1, 10, b"p1-m10")
    assert (from_beginning.partition(), from_beginning.offset(), from_beginning.value()) == (2, 0, b"p2-m0")
    assert by_time.offset == 0
    assert out_of_range.error().code() == KafkaError._AUTO_OFFSET_RESET, out_of_range.error()


def source_of(entry: ConfigEntry) -> ConfigSource:
    # The C extension hands sources over as ints; ConfigSource() accepts an int or a member.
    return ConfigSource(entry.source)


def poll_message(c, want_error: bool = False):
    """The next message (or error event, if `want_error`), skipping end-of-partition events."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error() is not None and msg.error().code() == KafkaError._PARTITION_EOF:
            continue
        if msg.error() is not None and not want_error:
            raise AssertionError(f"consumer error: {msg.error()}")
        return msg
    raise AssertionError(f"nothing to poll within {WAIT_S}s")
