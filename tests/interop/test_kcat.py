"""kcat (librdkafka 2.0 from Debian) against rill serve: metadata, a large keyed
produce with headers read back byte for byte, and the ways to pick a start offset."""

from __future__ import annotations

import json
import random
import subprocess
import time

import pytest
from confluent_kafka import Producer

from helpers import create_topic, stored_log_bytes, unique_topic

# A kcat run that takes longer than this is stuck (100,000 messages take seconds).
KCAT_TIMEOUT_S = 180
# Values use printable ASCII except the separators of the test's own formats:
# ':' splits key from value on input (-K:), '\n' ends a message on input and output.
VALUE_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != ":")


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["kcat", "-b", bootstrap, "-q", *args],
        input=stdin,
        capture_output=True,
        timeout=KCAT_TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    )
    return proc.stdout


def produce_lines(bootstrap: str, topic: str, lines: list[str], *extra: str) -> None:
    kcat(bootstrap, "-P", "-t", topic, *extra, stdin="".join(line + "\n" for line in lines).encode())


def test_metadata_lists_the_broker_and_the_topics_partitions(rill):
    topic = unique_topic("kcat-meta")
    create_topic(rill.bootstrap, topic, partitions=3)

    md = json.loads(kcat(rill.bootstrap, "-L", "-J"))

    assert [b["name"] for b in md["brokers"]] == [rill.bootstrap]
    broker_id = md["brokers"][0]["id"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, sorted(topics)
    partitions = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    for p in partitions:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]


def test_100k_keyed_messages_with_headers_come_back_byte_for_byte(rill):
    topic = unique_topic("kcat-100k")
    create_topic(rill.bootstrap, topic, partitions=1)
    rng = random.Random(100_000)
    pairs = [(f"key-{i:06d}", "".join(rng.choices(VALUE_ALPHABET, k=rng.randint(1, 200)))) for i in range(100_000)]

    produce_lines(
        rill.bootstrap, topic, [f"{k}:{v}" for k, v in pairs], "-K:", "-H", "trace=abc-123", "-H", "source=kcat"
    )
    out = kcat(rill.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k\t%s\t%h\t%p\t%o\n")

    expected = "".join(f"{k}\t{v}\ttrace=abc-123,source=kcat\t0\t{i}\n" for i, (k, v) in enumerate(pairs))
    if out != expected.encode():
        got = out.decode(errors="replace").splitlines()
        want = expected.splitlines()
        first_diff = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
        )
        raise AssertionError(
            f"{len(got)} lines read, {len(want)} expected; first difference at line {first_diff}:\n"
            f"got  {got[first_diff] if first_diff < len(got) else '<end>'!r}\n"
            f"want {want[first_diff] if first_diff < len(want) else '<end>'!r}"
        )


def test_consume_from_an_absolute_and_a_relative_offset(rill):
    topic = unique_topic("kcat-offset")
    create_topic(rill.bootstrap, topic, partitions=1)
    produce_lines(rill.bootstrap, topic, [f"m{i}" for i in range(1000)])

    from_500 = kcat(rill.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "500", "-c", "10", "-e", "-f", "%o %s\n")
    last_10 = kcat(rill.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-10", "-e", "-f", "%o %s\n")

    assert from_500.decode().splitlines() == [f"{i} m{i}" for i in range(500, 510)]
    assert last_10.decode().splitlines() == [f"{i} m{i}" for i in range(990, 1000)]


def test_consume_from_the_end_sees_only_new_messages(rill):
    topic = unique_topic("kcat-end")
    create_topic(rill.bootstrap, topic, partitions=1)
    produce_lines(rill.bootstrap, topic, [f"early-{i}" for i in range(100)])
    reader = subprocess.Popen(
        ["kcat", "-b", rill.bootstrap, "-q", "-C", "-t", topic, "-p", "0", "-o", "end", "-c", "5", "-f", "%s\n"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    producer = Producer({"bootstrap.servers": rill.bootstrap})
    try:
        # kcat resolves "end" some time after it starts; keep producing one
        # message at a time until it has printed five. It must never print an
        # early message, and what it prints must be consecutive.
        deadline = time.monotonic() + 60
        late = 0
        while reader.poll() is None and time.monotonic() < deadline:
            producer.produce(topic, value=f"late-{late}".encode(), partition=0)
            producer.flush(10)
            late += 1
            time.sleep(0.2)
        out, err = reader.communicate(timeout=10)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()

    assert reader.returncode == 0, err.decode(errors="replace")
    lines = out.decode().splitlines()
    assert len(lines) == 5 and lines[0].startswith("late-"), lines
    first = int(lines[0].removeprefix("late-"))
    assert lines == [f"late-{i}" for i in range(first, first + 5)]


def test_consume_by_timestamp_starts_at_the_first_later_message(rill):
    topic = unique_topic("kcat-ts")
    create_topic(rill.bootstrap, topic, partitions=1)
    produce_lines(rill.bootstrap, topic, [f"before-{i}" for i in range(500)])
    time.sleep(0.05)
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce_lines(rill.bootstrap, topic, [f"after-{i}" for i in range(500)])

    out = kcat(rill.bootstrap, "-C", "-t", topic, "-p", "0", "-o", f"s@{boundary_ms}", "-e", "-f", "%o %s\n")

    assert out.decode().splitlines() == [f"{500 + i} after-{i}" for i in range(500)]


def test_producing_to_a_new_topic_creates_it_with_one_partition(rill):
    topic = unique_topic("kcat-auto")

    produce_lines(rill.bootstrap, topic, ["k1:v1", "k2:v2"], "-K:")
    md = json.loads(kcat(rill.bootstrap, "-L", "-J", "-t", topic))
    out = kcat(rill.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%p %o %k=%s\n")

    [meta] = md["topics"]
    assert meta["topic"] == topic
    assert [p["partition"] for p in meta["partitions"]] == [0]
    assert out.decode().splitlines() == ["0 0 k1=v1", "0 1 k2=v2"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_is_stored_compressed_and_reads_back(rill, codec):
    # Debian's kcat links librdkafka 2.0, which sends compressed batches only to
    # a broker that lists Produce v0-v2 in ApiVersions (fixed in 2.11.1).
    topic = unique_topic(f"kcat-{codec}")
    create_topic(rill.bootstrap, topic)
    lines = [f"k{i}:" + f"compressible {i % 7} " * 60 for i in range(2000)]

    produce_lines(rill.bootstrap, topic, lines, "-K:", "-z", codec)
    out = kcat(rill.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k:%s\n")

    assert out.decode().splitlines() == lines
    raw_bytes = sum(len(line) for line in lines)
    assert stored_log_bytes(rill.data_dir, topic, 0) < raw_bytes / 10, "batches were not stored compressed"
