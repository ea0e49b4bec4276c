"""A KafkaJS group consumer reads back, from the beginning, what librdkafka wrote to a
3-partition topic: every message once, each partition in offset order."""

from __future__ import annotations

from helpers import create_topic, produce_all, run_node, unique_topic


def test_kafkajs_group_consumer_reads_every_message_of_three_partitions(rill):
    topic = unique_topic("kafkajs-group")
    create_topic(rill.bootstrap, topic, partitions=3)
    for p in range(3):
        produce_all(
            rill.bootstrap,
            topic,
            [(b"k%d" % i, b"p%d-v%d" % (p, i)) for i in range(100)],
            partition=p,
            headers=[("h", b"x")],
        )

    seen = run_node(
        "consume_group.js", {"brokers": [rill.bootstrap], "topic": topic, "groupId": unique_topic("g"), "count": 300}
    )

    for p in range(3):
        mine = [m for m in seen if m["partition"] == p]
        assert [(m["offset"], m["key"], m["value"], m["headers"]) for m in mine] == [
            (str(i), f"k{i}", f"p{p}-v{i}", {"h": "x"}) for i in range(100)
        ], f"partition {p}"
