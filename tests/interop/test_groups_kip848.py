"""The KIP-848 consumer group protocol (`group.protocol=consumer`) with
librdkafka: the broker computes the assignment; members share a topic,
commit, and take over the partitions of a member that leaves."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from helpers import WAIT_S, create_topic, produce_all, unique_topic


def member(bootstrap: str, group: str, **config) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return Consumer(conf)


def poll_until(consumers: list[Consumer], seen: set, done, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        for c in consumers:
            msg = c.poll(0.05)
            if msg is None:
                continue
            assert msg.error() is None or msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            if msg.error() is None:
                seen.add((msg.partition(), msg.offset()))


def shares(consumers: list[Consumer]) -> list[set[int]]:
    return [{tp.partition for tp in c.assignment()} for c in consumers]


def covers(consumers: list[Consumer], partitions: int) -> bool:
    sets = shares(consumers)
    return sum(len(s) for s in sets) == partitions and set().union(*sets) == set(range(partitions))


def test_kip848_members_share_a_topic_commit_and_take_over_after_a_leave(rill):
    topic = unique_topic("kip848")
    create_topic(rill.bootstrap, topic, partitions=6)
    for p in range(6):
        produce_all(rill.bootstrap, topic, [(None, b"%d" % i) for i in range(100)], partition=p)
    group = unique_topic("g")
    consumers = [member(rill.bootstrap, group) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])
        seen: set = set()
        poll_until(consumers, seen, lambda: len(seen) >= 600 and covers(consumers, 6))
        assert seen == {(p, i) for p in range(6) for i in range(100)}
        assert sorted(len(s) for s in shares(consumers)) == [2, 2, 2]
        for c in consumers:
            c.commit(asynchronous=False)

        leaving = consumers.pop()
        leaving.close()
        poll_until(consumers, seen, lambda: covers(consumers, 6), timeout_s=20)
        committed = consumers[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=WAIT_S)
        assert [tp.offset for tp in committed] == [100] * 6
    finally:
        for c in consumers:
            c.close()


def test_kip848_regex_subscription_takes_matching_topics_including_new_ones(rill):
    # librdkafka sends a subscription starting with "^" as a regex, which a
    # KIP-848 coordinator resolves against the cluster's topics.
    prefix = unique_topic("rx")
    first = f"{prefix}-a"
    create_topic(rill.bootstrap, first, partitions=2)
    create_topic(rill.bootstrap, unique_topic("other"), partitions=2)
    c = member(rill.bootstrap, unique_topic("g"))
    try:
        c.subscribe([f"^{prefix}-.*"])
        deadline = time.monotonic() + WAIT_S
        while {(tp.topic, tp.partition) for tp in c.assignment()} != {(first, 0), (first, 1)}:
            assert time.monotonic() < deadline, c.assignment()
            c.poll(0.1)
        # A topic created later that matches is assigned too.
        second = f"{prefix}-b"
        create_topic(rill.bootstrap, second, partitions=1)
        while (second, 0) not in {(tp.topic, tp.partition) for tp in c.assignment()}:
            assert time.monotonic() < deadline, c.assignment()
            c.poll(0.1)
        assert {tp.topic for tp in c.assignment()} == {first, second}
    finally:
        c.close()
