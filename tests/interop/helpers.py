"""Small helpers shared by the interop tests, built on confluent-kafka (librdkafka).

They create topics and read partitions back the way a user's program would,
so a test of one client can check its result through another.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# How long a test waits for something a healthy broker does in milliseconds
# (a topic to appear, a batch to be readable); generous for slow CI machines.
WAIT_S = 30.0
# The KafkaJS scripts and their node_modules.
JS_DIR = Path(__file__).resolve().parent / "js"
# A KafkaJS script that runs longer than this is stuck.
NODE_TIMEOUT_S = 120


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    """Creates a topic with the admin client and waits until metadata shows all its partitions."""
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=WAIT_S,
    )
    futures[name].result(timeout=WAIT_S)
    wait_for_partitions(client, name, partitions)


def wait_for_partitions(client: AdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        md = client.list_topics(topic=name, timeout=WAIT_S)
        topic = md.topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} does not show {partitions} partitions: {topic}")
        time.sleep(0.1)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def produce_all(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes | None, bytes]],
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    **config,
) -> list[tuple[int, int]]:
    """Produces `messages` (key, value) in order and returns each one's (partition, offset) as acknowledged.

    Raises if any delivery report carries an error. `config` adds producer settings
    (dots written as underscores: acks="all", compression_type="zstd").
    """
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    producer = Producer(conf)
    results: list[tuple[int, int] | None] = [None] * len(messages)
    errors = []

    def report(index):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((index, err))
            else:
                results[index] = (msg.partition(), msg.offset())

        return on_delivery

    for i, (key, value) in enumerate(messages):
        kwargs = {"key": key, "value": value, "on_delivery": report(i)}
        if partition is not None:
            kwargs["partition"] = partition
        if headers is not None:
            kwargs["headers"] = headers
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                # The client's queue is full: let it deliver, then retry.
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(WAIT_S)
    assert remaining == 0, f"{remaining} messages still undelivered after {WAIT_S}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert all(r is not None for r in results), "a message had no delivery report"
    return results  # type: ignore[return-value]


def consumer(bootstrap: str, **config) -> Consumer:
    """A consumer for manual assignment: confluent-kafka insists on a group.id,
    but with assign() and explicit offsets the group is never joined nor committed to."""
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "rill-interop-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    }
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return Consumer(conf)


def read_partition(
    bootstrap: str, topic: str, partition: int, start_offset: int = 0, count: int | None = None
) -> list[Record]:
    """Reads a partition from `start_offset` up to its end (or `count` records) with assign + explicit offset."""
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, partition, start_offset)])
        out: list[Record] = []
        deadline = time.monotonic() + WAIT_S
        while count is None or len(out) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(out)} records of {topic}[{partition}] in {WAIT_S}s, wanted {count}")
            msg = c.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if count is None:
                        break
                    continue
                raise AssertionError(f"consumer error on {topic}[{partition}]: {msg.error()}")
            out.append(
                Record(
                    partition=msg.partition(),
                    offset=msg.offset(),
                    key=msg.key(),
                    value=msg.value(),
                    headers=tuple((k, v) for k, v in (msg.headers() or [])),
                    timestamp_ms=msg.timestamp()[1],
                )
            )
        return out
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """(log start offset, high watermark) of one partition, as ListOffsets reports them."""
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=WAIT_S, cached=False)
    finally:
        c.close()


def run_node(script: str, opts: dict) -> dict | list:
    """Runs a KafkaJS script of js/ with `opts` as its JSON argument; returns the JSON line it prints last."""
    proc = subprocess.run(
        ["node", str(JS_DIR / script), json.dumps(opts)],
        capture_output=True,
        timeout=NODE_TIMEOUT_S,
        cwd=JS_DIR,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"node {script} exited {proc.returncode}:\n{stderr}"
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, f"node {script} printed no result:\n{stderr}"
    return json.loads(lines[-1])


def stored_log_bytes(data_dir: Path, topic: str, partition: int) -> int:
    """Bytes of record batches a partition keeps on disk: its segment .log files
    (Kafka's layout, docs/FORMAT.md: DATA_DIR/<topic>-<partition>/<base offset>.log)."""
    files = list((data_dir / f"{topic}-{partition}").glob("*.log"))
    assert files, f"no segment files for {topic}-{partition} in {data_dir}"
    return sum(f.stat().st_size for f in files)
