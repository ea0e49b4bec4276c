"""KafkaJS 2.2 (pure JavaScript) against rill serve: admin and producer on a
3-partition topic. KafkaJS's consumer only works in a consumer group, which
rill does not have yet, so what KafkaJS wrote is read back with librdkafka
(assign + offsets); the group consumer test waits in pending/test_kafkajs_group.py."""

from __future__ import annotations

import pytest

from helpers import read_partition, run_node, unique_topic


@pytest.mark.parametrize(("acks", "compression"), [(-1, None), (1, "gzip")])
def test_kafkajs_producer_and_admin_on_three_partitions(rill, acks, compression):
    topic = unique_topic("kafkajs")
    count = 300

    out = run_node(
        "produce.js",
        {
            "brokers": [rill.bootstrap],
            "topic": topic,
            "partitions": 3,
            "count": count,
            "acks": acks,
            "compression": compression,
        },
    )

    assert out["created"] is True
    [meta] = out["topicMetadata"]["topics"]
    assert sorted(p["partitionId"] for p in meta["partitions"]) == [0, 1, 2]
    # Each send of 50 messages spreads them over the 3 partitions; KafkaJS reports
    # one base offset per partition per send, and they must follow on from each other.
    next_offset = {0: 0, 1: 0, 2: 0}
    for b, batch in enumerate(out["batches"]):
        sent = range(50 * b, min(50 * b + 50, count))
        assert sorted(part["partition"] for part in batch) == [0, 1, 2]
        for part in batch:
            p = part["partition"]
            assert part["errorCode"] == 0, part
            assert int(part["baseOffset"]) == next_offset[p], (b, part, next_offset)
            next_offset[p] += sum(1 for i in sent if i % 3 == p)
    per_partition = {p: [i for i in range(count) if i % 3 == p] for p in range(3)}
    assert sorted((o["partition"], o["low"], o["high"]) for o in out["offsets"]) == [
        (p, "0", str(len(per_partition[p]))) for p in range(3)
    ]
    assert sorted((o["partition"], o["offset"]) for o in out["offsetsByTime"]) == [(p, "0") for p in range(3)]
    for p in range(3):
        records = read_partition(rill.bootstrap, topic, p)
        assert [(r.offset, r.key, r.value, r.headers) for r in records] == [
            (n, b"k%d" % i, b"v%d" % i, (("index", b"%d" % i),)) for n, i in enumerate(per_partition[p])
        ], f"partition {p}"
