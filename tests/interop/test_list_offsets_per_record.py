"""ListOffsets with every kind of OffsetSpec through confluent-kafka's admin client,
answered to the record (not the batch): 100 messages in one batch, timestamps
10 ms apart except message 57, which carries the largest."""

from __future__ import annotations

import time

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import WAIT_S, admin, create_topic, unique_topic


def test_admin_lists_offsets_by_timestamp_and_max_timestamp_to_the_record(rill):
    client = admin(rill.bootstrap)
    topic = unique_topic("admin-offsets")
    create_topic(rill.bootstrap, topic)
    base_ms = int(time.time() * 1000) - 3_600_000
    producer = Producer({"bootstrap.servers": rill.bootstrap, "linger.ms": 50})
    for i in range(100):
        # Timestamps 10 ms apart, except message 57, which carries the largest.
        timestamp_ms = base_ms + (100_000 if i == 57 else i * 10)
        producer.produce(topic, value=b"m%d" % i, partition=0, timestamp=timestamp_ms)
    assert producer.flush(WAIT_S) == 0

    def list_offset(spec) -> tuple[int, int]:
        [future] = client.list_offsets({TopicPartition(topic, 0): spec}).values()
        result = future.result(timeout=WAIT_S)
        return result.offset, result.timestamp

    assert list_offset(OffsetSpec.earliest())[0] == 0
    assert list_offset(OffsetSpec.latest())[0] == 100
    assert list_offset(OffsetSpec.for_timestamp(base_ms)) == (0, base_ms)
    assert list_offset(OffsetSpec.for_timestamp(base_ms + 205)) == (21, base_ms + 210)
    assert list_offset(OffsetSpec.for_timestamp(base_ms + 100_001))[0] == -1  # nothing that late
    assert list_offset(OffsetSpec.max_timestamp()) == (57, base_ms + 100_000)
