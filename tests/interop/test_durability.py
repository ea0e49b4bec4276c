"""An fsync before every acknowledgement (log_flush_messages=1), with the
group commit that lets concurrent appends share one sync (README "Durability")."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.request

from confluent_kafka import KafkaException, Producer, TopicPartition

from conftest import RILL_BIN, RillServer
from helpers import WAIT_S, consumer, create_topic, produce_all, read_partition, unique_topic

PRODUCERS = 6
PARTITIONS = 4
MESSAGES = 400  # per producer


def sync_counts(rill) -> tuple[int, int]:
    """(rill_log_sync_rounds, rill_log_sync_waits) from /metrics."""
    with urllib.request.urlopen(rill.admin_url + "/metrics", timeout=WAIT_S) as resp:
        text = resp.read().decode()
    found = {}
    for line in text.splitlines():
        for name in ("rill_log_sync_rounds", "rill_log_sync_waits"):
            if line.startswith(name + " "):
                found[name] = int(float(line.split()[1]))
    return found["rill_log_sync_rounds"], found["rill_log_sync_waits"]


def produce_concurrently(rill, topic: str) -> dict[tuple[int, int], bytes]:
    """PRODUCERS confluent-kafka producers at once, acks=1, each over every
    partition; returns value by the (partition, offset) acknowledged."""
    acked: dict[tuple[int, int], bytes] = {}
    failures = []
    lock = threading.Lock()

    def one(p: int) -> None:
        try:
            messages = [(None, f"p{p}-m{i}".encode()) for i in range(MESSAGES)]
            # One partition per producer call keeps the values in order per
            # partition; the producers cover all partitions between them.
            results = produce_all(
                rill.bootstrap, topic, messages, partition=p % PARTITIONS, acks="1", linger_ms=0, batch_num_messages=20
            )
            with lock:
                for (partition, offset), (_, value) in zip(results, messages, strict=True):
                    acked[(partition, offset)] = value
        except Exception as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=one, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert len(acked) == PRODUCERS * MESSAGES, "every acknowledgement has its own offset"
    return acked


def assert_all_there(rill, topic: str, acked: dict[tuple[int, int], bytes]) -> None:
    stored = {}
    for partition in range(PARTITIONS):
        for record in read_partition(rill.bootstrap, topic, partition):
            stored[(record.partition, record.offset)] = record.value
    missing = [key for key, value in acked.items() if stored.get(key) != value]
    assert not missing, f"{len(missing)} acknowledged messages not read back, e.g. {missing[:5]}"


def flushing_broker(rill) -> None:
    rill.stop()
    rill.extra_env = {"RILL_LOG_FLUSH_MESSAGES": "1"}
    rill.start()


def test_concurrent_producers_with_an_fsync_before_each_ack_share_syncs(rill):
    flushing_broker(rill)
    topic = unique_topic("durable")
    create_topic(rill.bootstrap, topic, partitions=PARTITIONS)
    acked = produce_concurrently(rill, topic)
    assert_all_there(rill, topic, acked)
    rounds, waits = sync_counts(rill)
    print(f"sync rounds {rounds}, appends that waited {waits}")
    assert waits >= 1, "appends waited for a sync"
    # Each append paying its own sync would make these equal.
    assert rounds < waits, f"{waits} appends took {rounds} sync rounds: none were shared"


def test_kill_9_right_after_acknowledgements_loses_nothing_acknowledged(rill):
    flushing_broker(rill)
    topic = unique_topic("durable-kill")
    create_topic(rill.bootstrap, topic, partitions=PARTITIONS)
    acked = produce_concurrently(rill, topic)
    # No clean shutdown: what was acknowledged must come back after recovery.
    rill.stop(signal.SIGKILL)
    rill.start()
    assert_all_there(rill, topic, acked)


def test_offset_commits_under_an_fsync_before_each_ack_survive_kill_9(rill):
    """The group coordinator's appends to __consumer_offsets wait for the
    group commit too (after letting go of its lock): a commit that was
    answered is there after a kill -9."""
    flushing_broker(rill)
    topic = unique_topic("durable-group")
    create_topic(rill.bootstrap, topic, partitions=1)
    produce_all(rill.bootstrap, topic, [(None, b"m%d" % i) for i in range(10)], partition=0)
    c = consumer(rill.bootstrap, group_id="durable-readers")
    try:
        offsets = [TopicPartition(topic, 0, 7)]
        committed = c.commit(offsets=offsets, asynchronous=False)
        assert committed[0].error is None, committed
    finally:
        c.close()
    rill.stop(signal.SIGKILL)
    rill.start()
    c = consumer(rill.bootstrap, group_id="durable-readers")
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            # The coordinator may still be loading: retry until it answers.
            try:
                got = c.committed([TopicPartition(topic, 0)], timeout=WAIT_S)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert got[0].offset == 7, got
    finally:
        c.close()


def test_a_failed_sync_fails_every_waiting_append_and_takes_the_directory_offline(tmp_path):
    """The data directory is ext4 on a loop device whose backing file lives on
    a small tmpfs; once that tmpfs is full the loop device's writeback of new
    blocks fails, so syncfs reports the error: the appends waiting for that
    round fail (a write that lands on blocks the backing file already has can
    still succeed, and be acknowledged, so not every one of them need fail),
    and the directory goes offline."""
    back, mnt = tmp_path / "back", tmp_path / "mnt"
    back.mkdir()
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48M", "tmpfs", str(back)], check=True)
    loop = None
    server = None
    try:
        image = back / "disk.img"
        subprocess.run(["truncate", "-s", "40M", str(image)], check=True)
        loop = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", loop], check=True)
        subprocess.run(["mount", loop, str(mnt)], check=True)
        (mnt / "data").mkdir()
        server = RillServer(RILL_BIN, mnt / "data", tmp_path)
        server.extra_env = {"RILL_LOG_FLUSH_MESSAGES": "1"}
        server.start()
        topic = unique_topic("durable-eio")
        create_topic(server.bootstrap, topic, partitions=PARTITIONS)
        produce_all(server.bootstrap, topic, [(None, b"before")], partition=0)
        # Fill the tmpfs: the loop device cannot write back any more.
        subprocess.run(["dd", "if=/dev/zero", f"of={back / 'fill'}", "bs=1M", "count=64"], capture_output=True)
        producer = Producer({"bootstrap.servers": server.bootstrap, "acks": "1", "message.timeout.ms": 10000})
        reports = []
        for partition in range(PARTITIONS):
            producer.produce(
                topic, value=b"x" * 500_000, partition=partition, on_delivery=lambda err, msg: reports.append(err)
            )
        assert producer.flush(WAIT_S) == 0
        assert len(reports) == PARTITIONS
        assert any(err is not None for err in reports), f"all acknowledged after the disk failed: {reports}"
        with urllib.request.urlopen(server.admin_url + "/metrics", timeout=WAIT_S) as resp:
            text = resp.read().decode()
        assert any(
            line.startswith("rill_log_dir_state{") and 'state="offline"' in line and line.endswith(" 1")
            for line in text.splitlines()
        ), text
        # The first failed sync takes the directory offline: the round's
        # syncfs, or the fsync of a checkpoint an append wrote meanwhile
        # (which one comes first is the scheduler's choice).
        stderr = server.stderr_text()
        assert "syncfs" in stderr or "fsync" in stderr, stderr
    finally:
        if server is not None and server.proc is not None:
            server.stop(signal.SIGKILL)
        subprocess.run(["umount", str(mnt)], check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        subprocess.run(["umount", str(back)], check=False)


COMMITTERS = 8
COMMITS = 40  # per committer


def test_offset_commits_of_many_groups_share_sync_rounds(rill):
    """The coordinator does not hold its lock while a commit waits for its
    sync round: commits of different groups, sent at once,
    share rounds. Holding it, every commit would take a round of its own."""
    flushing_broker(rill)
    topic = unique_topic("durable-commits")
    create_topic(rill.bootstrap, topic, partitions=1)
    produce_all(rill.bootstrap, topic, [(None, b"m")], partition=0)
    before = sync_counts(rill)
    consumers = [consumer(rill.bootstrap, group_id=f"committer-{i}-{topic}") for i in range(COMMITTERS)]
    errors: list[BaseException] = []

    def commit_many(c) -> None:
        try:
            for n in range(COMMITS):
                answered = c.commit(offsets=[TopicPartition(topic, 0, n + 1)], asynchronous=False)
                assert answered[0].error is None, answered
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    try:
        threads = [threading.Thread(target=commit_many, args=(c,)) for c in consumers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 4)
        assert not errors, errors
        after = sync_counts(rill)
        rounds, waits = after[0] - before[0], after[1] - before[1]
        print(f"{COMMITTERS * COMMITS} commits: sync rounds {rounds}, appends that waited {waits}")
        assert waits >= COMMITTERS * COMMITS, (rounds, waits)
        # One round per commit is what holding the lock through the wait gives.
        assert rounds < waits * 3 // 4, f"{waits} commits took {rounds} sync rounds: hardly shared"
        for i, c in enumerate(consumers):
            got = c.committed([TopicPartition(topic, 0)], timeout=WAIT_S)
            assert got[0].offset == COMMITS, (i, got)
    finally:
        for c in consumers:
            c.close()
