"""Rill's own client (through `rill produce` / `rill consume`) against librdkafka
(kcat and confluent-kafka): messages cross in both directions byte for byte with
keys and headers, keyed messages land on the same partition whichever client
wrote them, and the paper's message streams share a group's partitions between
processes (exactly once while nothing fails, at least once when one is killed)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

from confluent_kafka import Producer

from conftest import RILL_BIN
from helpers import WAIT_S, create_topic, produce_all, read_partition, unique_topic

# A `rill` client command that takes longer than this is stuck.
CLI_TIMEOUT_S = 120
# Printable ASCII without the separators of the line formats (':' splits key
# from value, '\n' ends a message).
ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != ":")


def rill_cli(bootstrap: str, *args: str, stdin: bytes = b"") -> bytes:
    proc = subprocess.run(
        [str(RILL_BIN), *args, "-b", bootstrap],
        input=stdin,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        env={k: v for k, v in os.environ.items() if not k.startswith("RILL_")},
    )
    assert proc.returncode == 0, f"rill {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}"
    return proc.stdout


def random_lines(seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    word = lambda n: "".join(rng.choice(ALPHABET) for _ in range(n))  # noqa: E731
    return [(f"key-{rng.randrange(50)}-{word(5)}", word(rng.randrange(0, 300))) for _ in range(count)]


def test_rill_produce_is_read_byte_for_byte_by_librdkafka(rill):
    topic = unique_topic("rc-out")
    create_topic(rill.bootstrap, topic, partitions=4)
    lines = random_lines(1, 2000)
    payload = "".join(f"{k}:{v}\n" for k, v in lines).encode()

    rill_cli(rill.bootstrap, "produce", topic, "-K", ":", "-H", "origin=rill", "-H", "n=1", "-z", "lz4", stdin=payload)

    records = [r for p in range(4) for r in read_partition(rill.bootstrap, topic, p)]
    assert len(records) == len(lines)
    got = sorted((r.key, r.value, r.headers) for r in records)
    want = sorted((k.encode(), v.encode(), (("origin", b"rill"), ("n", b"1"))) for k, v in lines)
    assert got == want
    # Per partition, the order the lines were written.
    for p in range(4):
        in_partition = [r.value for r in records if r.partition == p]
        keys = {r.key for r in records if r.partition == p}
        assert in_partition == [v.encode() for k, v in lines if k.encode() in keys]

    # kcat (librdkafka's own reader) sees the same.
    out = subprocess.run(
        ["kcat", "-b", rill.bootstrap, "-q", "-C", "-t", topic, "-e", "-J"],
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    ).stdout
    kcat_records = [json.loads(line) for line in out.splitlines()]
    assert sorted((m["key"], m["payload"]) for m in kcat_records) == sorted(lines)
    assert all(m["headers"] == ["origin", "rill", "n", "1"] for m in kcat_records)


def test_librdkafka_messages_are_read_byte_for_byte_by_rill_consume(rill):
    topic = unique_topic("rc-in")
    create_topic(rill.bootstrap, topic, partitions=1)
    lines = random_lines(2, 500)
    headers = [("trace", b"abc"), ("empty", b"")]
    acked = produce_all(
        rill.bootstrap,
        topic,
        [(k.encode(), v.encode()) for k, v in lines],
        headers=headers,
        compression_type="zstd",
    )

    out = rill_cli(rill.bootstrap, "consume", topic, "-e", "-f", "json")
    messages = [json.loads(line) for line in out.splitlines()]
    assert [(m["key"], m["value"]) for m in messages] == lines
    assert [m["offset"] for m in messages] == [offset for _, offset in acked]
    assert all(m["headers"] == [{"key": "trace", "value": "abc"}, {"key": "empty", "value": ""}] for m in messages)

    # kcat writes, rill reads: values with the key separator kept whole.
    kcat_topic = unique_topic("rc-kcat")
    create_topic(rill.bootstrap, kcat_topic, partitions=1)
    subprocess.run(
        ["kcat", "-b", rill.bootstrap, "-q", "-P", "-t", kcat_topic, "-K", "\t", "-H", "h=v"],
        input=b"k1\tv:1\nk2\tv:2\n",
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    out = rill_cli(rill.bootstrap, "consume", kcat_topic, "-e", "-f", "kv", "-K", "=")
    assert out == b"k1=v:1\nk2=v:2\n"


def test_same_key_same_partition_as_librdkafka_murmur2_random(rill):
    partitions = 12
    rill_topic = unique_topic("rc-keys-rill")
    lib_topic = unique_topic("rc-keys-lib")
    create_topic(rill.bootstrap, rill_topic, partitions=partitions)
    create_topic(rill.bootstrap, lib_topic, partitions=partitions)
    keys = [f"user-{i}" for i in range(300)] + ["", "a", "ab", "abc", "abcd", "ünïcödé"]

    rill_cli(rill.bootstrap, "produce", rill_topic, "-K", ":", stdin="".join(f"{k}:{k}\n" for k in keys).encode())
    acked = produce_all(
        rill.bootstrap,
        lib_topic,
        [(k.encode(), k.encode()) for k in keys],
        partitioner="murmur2_random",
    )

    librdkafka_partition = {k: p for k, (p, _) in zip(keys, acked, strict=True)}
    rill_partition = {}
    for p in range(partitions):
        for r in read_partition(rill.bootstrap, rill_topic, p):
            rill_partition[r.key.decode()] = p
    assert rill_partition == librdkafka_partition


class StreamProcess:
    """`rill consume --streams 3` in a group: the paper's streams in a process of its own."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        self.proc = subprocess.Popen(
            [
                str(RILL_BIN),
                "consume",
                topic,
                "-b",
                bootstrap,
                "-g",
                group,
                "--streams",
                "3",
                "-f",
                "json",
                "--session-timeout-ms",
                "6000",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("RILL_")},
        )
        self.messages: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.messages.append(json.loads(line))

    def stop(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=WAIT_S)


def wait_for(condition, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def group_split(bootstrap: str, group: str) -> bool:
    """Whether `rill group describe` shows two members holding three partitions each."""
    proc = subprocess.run(
        [str(RILL_BIN), "group", "describe", group, "-b", bootstrap],
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        env={k: v for k, v in os.environ.items() if not k.startswith("RILL_")},
    )
    if proc.returncode != 0:
        return False
    lines = proc.stdout.decode().splitlines()
    rows = [line.split() for line in lines[lines.index("TOPIC  PARTITION  COMMITTED  END  LAG  MEMBER") + 1 :]]
    held: dict[str, int] = {}
    for row in rows:
        if row[5] != "-":
            held[row[5]] = held.get(row[5], 0) + 1
    return sorted(held.values()) == [3, 3]


def produce_numbers(bootstrap: str, topic: str, numbers: range) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n in numbers:
        producer.produce(topic, key=f"k{n}".encode(), value=str(n).encode())
    assert producer.flush(WAIT_S) == 0


def test_message_streams_share_partitions_across_processes(rill):
    topic = unique_topic("rc-streams")
    create_topic(rill.bootstrap, topic, partitions=6)
    group = unique_topic("rc-group")
    a = StreamProcess(rill.bootstrap, topic, group)
    b = StreamProcess(rill.bootstrap, topic, group)
    try:
        wait_for(lambda: group_split(rill.bootstrap, group), "both processes to hold 3 partitions", timeout_s=60)
        a_before, b_before = len(a.messages), len(b.messages)

        # Steady state: each message through exactly one stream of one process.
        produce_numbers(rill.bootstrap, topic, range(600))
        numbered = lambda proc, since: proc.messages[since:]  # noqa: E731
        wait_for(lambda: len(numbered(a, a_before)) + len(numbered(b, b_before)) >= 600, "600 messages")
        time.sleep(0.5)
        got = numbered(a, a_before) + numbered(b, b_before)
        assert sorted(int(m["value"]) for m in got) == list(range(600))
        for proc, since in ((a, a_before), (b, b_before)):
            mine = numbered(proc, since)
            assert mine, "one process got nothing"
            partitions_of_stream: dict[int, set[int]] = {}
            for m in mine:
                partitions_of_stream.setdefault(m["stream"], set()).add(m["partition"])
            # Three partitions per process, one per stream.
            assert sorted(len(p) for p in partitions_of_stream.values()) == [1, 1, 1], partitions_of_stream

        # Kill one process outright: the other takes its partitions over from
        # the last commit, so every message still arrives at least once.
        a.stop(signal.SIGKILL)
        b_mark = len(b.messages)
        produce_numbers(rill.bootstrap, topic, range(600, 900))
        wait_for(
            lambda: {int(m["value"]) for m in b.messages[b_mark:]} >= set(range(600, 900)),
            "the survivor to take over",
            timeout_s=60,
        )
    finally:
        for proc in (a, b):
            if proc.proc.poll() is None:
                proc.stop(signal.SIGKILL)
