"""kafka-python (pure Python, its own protocol code) against rill serve: a producer
and a consumer with manual assignment and seeks; the admin client's topic creation.
kafka-python detects the broker's API versions itself, as its users let it."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from helpers import WAIT_S, read_partition, unique_topic

WAIT_MS = int(WAIT_S * 1000)


@pytest.fixture
def kafka_admin(rill):
    client = KafkaAdminClient(bootstrap_servers=rill.bootstrap, request_timeout_ms=WAIT_MS)
    yield client
    client.close()


def create(kafka_admin, topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    response = kafka_admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, topic_configs=configs or {})],
        timeout_ms=WAIT_MS,
    )
    assert [(name, code) for name, code, *_ in response.topic_errors] == [(topic, 0)]


@pytest.mark.parametrize(("compression", "idempotent"), [(None, False), ("gzip", False), (None, True)])
def test_producer_and_assigned_consumer_with_seeks(rill, kafka_admin, compression, idempotent):
    topic = unique_topic("kpy")
    create(kafka_admin, topic, partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=rill.bootstrap,
        acks="all",
        compression_type=compression,
        enable_idempotence=idempotent,
        linger_ms=5,
    )
    futures = [
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 3, headers=[("n", b"%d" % i)])
        for i in range(600)
    ]
    producer.flush(timeout=WAIT_S)
    acked = [f.get(timeout=WAIT_S) for f in futures]
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=rill.bootstrap, group_id=None, enable_auto_commit=False, consumer_timeout_ms=WAIT_MS
    )
    try:
        tp1 = TopicPartition(topic, 1)
        consumer.assign([tp1])
        consumer.seek_to_beginning(tp1)
        whole = [next(consumer) for _ in range(200)]
        consumer.seek(tp1, 150)
        from_150 = next(consumer)
        end_offsets = consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
        beginning_offsets = consumer.beginning_offsets([TopicPartition(topic, p) for p in range(3)])
    finally:
        consumer.close()

    assert [(m.partition, m.offset) for m in acked] == [(i % 3, i // 3) for i in range(600)]
    assert [(m.offset, m.key, m.value, m.headers) for m in whole] == [
        (i, b"k%d" % (3 * i + 1), b"v%d" % (3 * i + 1), [("n", b"%d" % (3 * i + 1))]) for i in range(200)
    ]
    assert (from_150.offset, from_150.value) == (150, b"v%d" % (3 * 150 + 1))
    assert end_offsets == {TopicPartition(topic, p): 200 for p in range(3)}
    assert beginning_offsets == {TopicPartition(topic, p): 0 for p in range(3)}
    # What kafka-python wrote, librdkafka reads the same.
    assert [r.value for r in read_partition(rill.bootstrap, topic, 2)] == [b"v%d" % i for i in range(2, 600, 3)]
