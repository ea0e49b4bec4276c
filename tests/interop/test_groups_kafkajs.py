"""Consumer groups with KafkaJS (its own protocol code and assignor): three
members in one group share a topic's partitions and read every message."""

from __future__ import annotations

from helpers import create_topic, produce_all, run_node, unique_topic


def test_three_kafkajs_consumers_share_six_partitions(rill):
    topic = unique_topic("kjs-group")
    create_topic(rill.bootstrap, topic, partitions=6)
    for p in range(6):
        produce_all(rill.bootstrap, topic, [(None, b"%d" % i) for i in range(100)], partition=p)

    result = run_node(
        "group_members.js",
        {
            "brokers": [rill.bootstrap],
            "topic": topic,
            "groupId": unique_topic("g"),
            "members": 3,
            "partitions": 6,
            "total": 600,
        },
    )

    assert sorted(len(a) for a in result["assignments"]) == [2, 2, 2], result["assignments"]
    assert sorted(p for a in result["assignments"] for p in a) == list(range(6))
    assert {tuple(m) for m in result["messages"]} == {(p, i) for p in range(6) for i in range(100)}
