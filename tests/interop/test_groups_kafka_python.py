"""Consumer groups with kafka-python (its own protocol code and its own
assignors): three consumers share a topic, commit, and a new consumer of the
group resumes from the commits; the admin client lists, describes and deletes
the group."""

from __future__ import annotations

import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import NoError
from kafka.structs import OffsetAndMetadata

from helpers import WAIT_S, create_topic, produce_all, unique_topic

WAIT_MS = int(WAIT_S * 1000)


def group_consumer(bootstrap: str, group: str, topic: str, **config) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=500,
        **config,
    )
    consumer.subscribe([topic])
    return consumer


def test_three_kafka_python_consumers_share_a_topic_and_resume_from_commits(rill):
    topic = unique_topic("kp-group")
    create_topic(rill.bootstrap, topic, partitions=6)
    per_partition = 300
    for p in range(6):
        produce_all(rill.bootstrap, topic, [(None, b"%d" % i) for i in range(per_partition)], partition=p)
    group = unique_topic("g")
    consumers = [group_consumer(rill.bootstrap, group, topic) for _ in range(3)]
    seen: list[set] = [set() for _ in consumers]
    stop = threading.Event()

    def run(index: int) -> None:
        c = consumers[index]
        while not stop.is_set():
            for records in c.poll(timeout_ms=100).values():
                seen[index].update((r.partition, r.offset) for r in records)
            if not stop.is_set():
                # Commit what was read, so that a later member resumes after it.
                c.commit()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 90
        while len(set().union(*seen)) < 6 * per_partition:
            assert time.monotonic() < deadline, [len(s) for s in seen]
            time.sleep(0.1)
        # Let the last commits land, then check the partitions were shared.
        time.sleep(1)
        assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT_S)
    assert set().union(*seen) == {(p, i) for p in range(6) for i in range(per_partition)}
    assert sorted(len(a) for a in assignments) == [2, 2, 2], assignments
    assert set().union(*assignments) == set(range(6))
    for c in consumers:
        c.close()

    # A newcomer to the group starts where the group committed: at the end.
    late = group_consumer(rill.bootstrap, group, topic)
    try:
        committed = {p: late.committed(TopicPartition(topic, p)) for p in range(6)}
        assert committed == {p: per_partition for p in range(6)}
    finally:
        late.close()


def test_kafka_python_admin_lists_describes_and_deletes_a_group(rill):
    topic = unique_topic("kp-admin")
    create_topic(rill.bootstrap, topic, partitions=2)
    group = unique_topic("g")
    consumer = group_consumer(rill.bootstrap, group, topic)
    admin = KafkaAdminClient(bootstrap_servers=rill.bootstrap, request_timeout_ms=WAIT_MS)
    try:
        deadline = time.monotonic() + WAIT_S
        while not consumer.assignment():
            assert time.monotonic() < deadline, "never assigned"
            consumer.poll(timeout_ms=100)
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(7, "note", -1)})
        assert (group, "consumer") in [(g[0], g[1]) for g in admin.list_consumer_groups()]
        [described] = admin.describe_consumer_groups([group])
        assert described.state == "Stable"
        assert len(described.members) == 1
        # The member's host as Kafka shows it: the connection's address.
        assert described.members[0].client_host == "/127.0.0.1"
        offsets = admin.list_consumer_group_offsets(group)
        assert offsets[TopicPartition(topic, 0)].offset == 7
        assert offsets[TopicPartition(topic, 0)].metadata == "note"
        consumer.close()
        [(deleted, error)] = admin.delete_consumer_groups([group])
        assert (deleted, error) == (group, NoError)
        assert group not in [g[0] for g in admin.list_consumer_groups()]
    finally:
        admin.close()
