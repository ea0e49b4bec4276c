"""Internal topics are written by the broker alone: a client's produce,
DeleteRecords, DeleteTopics or CreatePartitions on `__consumer_offsets` is
refused with Kafka's answer (INVALID_TOPIC_EXCEPTION, "topic exception" in
librdkafka), nothing is stored, and the group coordinator loads as before at
the next start. Topics a user creates with a `__` prefix stay ordinary, as in
Kafka."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewPartitions

from helpers import WAIT_S, admin, create_topic, produce_all, unique_topic, watermarks

OFFSETS = "__consumer_offsets"


def wait_for_offsets_topic(rill) -> int:
    """Waits until the coordinator has created __consumer_offsets; returns its partition count."""
    client = admin(rill.bootstrap)
    deadline = time.monotonic() + WAIT_S
    while True:
        topic = client.list_topics(timeout=WAIT_S).topics.get(OFFSETS)
        if topic is not None and topic.error is None and topic.partitions:
            return len(topic.partitions)
        assert time.monotonic() < deadline, f"{OFFSETS} was not created"
        time.sleep(0.1)


def end_offsets(rill, partitions: int) -> list[int]:
    return [watermarks(rill.bootstrap, OFFSETS, p)[1] for p in range(partitions)]


def test_writes_to_consumer_offsets_are_refused_and_nothing_is_stored(rill):
    partitions = wait_for_offsets_topic(rill)
    before = end_offsets(rill, partitions)

    # The reported case: kcat producing to the internal topic.
    kcat = subprocess.run(
        ["kcat", "-b", rill.bootstrap, "-P", "-t", OFFSETS, "-p", "0"],
        input=b"poison\n",
        capture_output=True,
        timeout=WAIT_S,
    )
    # The same through confluent-kafka, to read the error code itself.
    reports = []
    producer = Producer({"bootstrap.servers": rill.bootstrap, "message.send.max.retries": 0})
    producer.produce(OFFSETS, b"poison", partition=0, on_delivery=lambda err, _msg: reports.append(err))
    assert producer.flush(WAIT_S) == 0

    client = admin(rill.bootstrap)
    [deleted] = client.delete_records([TopicPartition(OFFSETS, 0, 0)]).values()
    with pytest.raises(KafkaException) as delete_records:
        deleted.result(timeout=WAIT_S)
    with pytest.raises(KafkaException) as delete_topic:
        client.delete_topics([OFFSETS], operation_timeout=WAIT_S)[OFFSETS].result(timeout=WAIT_S)
    with pytest.raises(KafkaException) as more_partitions:
        client.create_partitions([NewPartitions(OFFSETS, partitions + 1)])[OFFSETS].result(timeout=WAIT_S)

    assert b"Invalid topic" in kcat.stderr or b"topic exception" in kcat.stderr.lower(), kcat.stderr
    assert [err.code() if err else None for err in reports] == [KafkaError.TOPIC_EXCEPTION]
    assert delete_records.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert delete_topic.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert more_partitions.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert end_offsets(rill, partitions) == before
    assert wait_for_offsets_topic(rill) == partitions

    # Nothing of it is replayed: the coordinator loads, and a group commits.
    rill.restart()
    assert end_offsets(rill, partitions) == before
    assert "skipping a record" not in rill.stderr_text()
    assert commit_and_read_back(rill) == 7


def commit_and_read_back(rill) -> int:
    """Commits offset 7 of a new topic for a new group and returns what the coordinator reads back."""
    topic = unique_topic("after-refusals")
    create_topic(rill.bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": rill.bootstrap, "group.id": unique_topic("group")})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=WAIT_S)
        return committed.offset
    finally:
        consumer.close()


def test_a_user_topic_named_with_two_underscores_is_ordinary(rill):
    topic = unique_topic("__user")
    create_topic(rill.bootstrap, topic)

    acked = produce_all(rill.bootstrap, topic, [(None, b"mine")], partition=0)
    client = admin(rill.bootstrap)  # kept: the future is answered through it
    [deleted] = client.delete_records([TopicPartition(topic, 0, 1)]).values()

    assert acked == [(0, 0)]
    assert deleted.result(timeout=WAIT_S).low_watermark == 1
