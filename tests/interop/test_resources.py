"""Resource exhaustion is not a disk fault.

Each test runs its own `rill serve` with a limit the test sets itself: a low
open-file limit (`prlimit --nofile=256:256`) or a small tmpfs as the data directory (CI runs as
root). Running out of descriptors must fail only the request that hit it,
and a full disk must stop appends only until space is freed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import RILL_BIN, RillServer
from helpers import WAIT_S, admin, create_topic, produce_all, read_partition, watermarks
from kafka_wire import (
    API_METADATA,
    API_PRODUCE,
    Connection,
    Reader,
    int8,
    int32,
    produce_v8_body,
    read_produce_v8_response,
    record_batch,
    string,
)

# The limit of the report: far below what 300 one-partition topics
# and the 50 partitions of __consumer_offsets need, one descriptor each.
NOFILE = 256
NEW_TOPICS = 300
POLICY_VIOLATION = 44
KAFKA_STORAGE_ERROR = 56
# Creating 300 topics takes a metadata-log fsync each: seconds on a slow disk.
METADATA_TIMEOUT_S = 120.0


def metadata_v4(port: int, names: list[str]) -> dict[str, int]:
    """{topic: error code} of one Metadata v4 request for `names`, auto-creation allowed."""
    body = int32(len(names)) + b"".join(string(n) for n in names) + int8(1)
    with Connection(port, timeout_s=METADATA_TIMEOUT_S) as conn:
        r = conn.request(API_METADATA, 4, body, flexible=False)
    return read_metadata_v4(r)


def read_metadata_v4(r: Reader) -> dict[str, int]:
    r.int32()  # throttle_time_ms
    for _ in range(r.int32()):  # brokers
        r.int32(), r.string(), r.int32(), r.nullable_string()
    r.nullable_string()  # cluster_id
    r.int32()  # controller_id
    out = {}
    for _ in range(r.int32()):  # topics
        error = r.int16()
        name = r.string()
        r.int8()  # is_internal
        for _ in range(r.int32()):  # partitions
            r.int16(), r.int32(), r.int32()  # error_code, partition_index, leader_id
            for _ in range(2):  # replica_nodes, isr_nodes
                for _ in range(r.int32()):
                    r.int32()
        out[name] = error
    assert r.remaining() == 0, "trailing bytes after a Metadata v4 body"
    return out


@pytest.fixture
def low_nofile_rill(tmp_path, request):
    """A broker whose hard and soft open-file limits are 256; `extra_env` is set by the test before `start()`."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = RillServer(RILL_BIN, data_dir, tmp_path)
    # prlimit execs rill: same process, so signals and /proc/PID are rill's.
    server.wrapper = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    yield server
    if server.proc is not None:
        status = server.stop(signal.SIGTERM)
        call = getattr(request.node, "rep_call", None)
        if call is None or call.failed:
            print(server.log_tail())
        assert status == 0, f"rill exited with status {status} after SIGTERM"


def existing_topic_works(server: RillServer, topic: str, expected: list[bytes]) -> None:
    """`topic` takes a produce and reads back everything it was given."""
    value = f"after-{time.monotonic_ns()}".encode()
    produce_all(server.bootstrap, topic, [(None, value)], acks="all")
    expected.append(value)
    got = [r.value for r in read_partition(server.bootstrap, topic, 0)]
    assert got == expected


def broker_log_files(server: RillServer) -> int:
    """Segment files the broker process holds open."""
    fd_dir = f"/proc/{server.pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{name}").endswith(".log")
        except FileNotFoundError:
            pass
    return count


def test_more_partitions_than_descriptors_stay_usable_and_restart(low_nofile_rill):
    server = low_nofile_rill
    # No partition limit below the descriptor limit: idle partitions must
    # give their files back instead.
    server.extra_env = {"RILL_MAX_PARTITIONS": "100000"}
    server.start()
    existing = "existing"
    create_topic(server.bootstrap, existing)
    stored = [b"before"]
    produce_all(server.bootstrap, existing, [(None, b"before")], acks="all")

    names = [f"new-{i}" for i in range(NEW_TOPICS)]
    assert set(metadata_v4(server.port, names).values()) == {0}
    # A quarter of the limit for idle active segments (and one being reopened).
    assert broker_log_files(server) <= NOFILE // 4 + 1
    for name in names[::50]:
        produce_all(server.bootstrap, name, [(None, name.encode())], acks="all")
    existing_topic_works(server, existing, stored)

    # The restart opens all 351 partitions, within the same descriptors.
    assert server.restart() == 0
    assert broker_log_files(server) <= NOFILE // 4 + 1
    existing_topic_works(server, existing, stored)
    for name in names[::50]:
        assert [r.value for r in read_partition(server.bootstrap, name, 0)] == [name.encode()]
    assert "goes offline" not in server.stderr_text()


def test_running_out_of_descriptors_fails_the_request_not_the_directory(low_nofile_rill):
    server = low_nofile_rill
    server.extra_env = {"RILL_MAX_PARTITIONS": "100000"}
    server.start()
    existing = "existing"
    create_topic(server.bootstrap, existing)
    stored = [b"before"]
    produce_all(server.bootstrap, existing, [(None, b"before")], acks="all")

    with Connection(server.port, timeout_s=METADATA_TIMEOUT_S) as held:
        # Connections until the broker has no descriptor left to accept one.
        hogs = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(NOFILE)]
        try:
            deadline = time.monotonic() + WAIT_S
            while "Too many open files" not in server.stderr_text():
                assert time.monotonic() < deadline, "the broker never ran out of descriptors"
                time.sleep(0.05)
            # Creating a topic needs descriptors: the request fails.
            names = [f"starved-{i}" for i in range(5)]
            body = int32(len(names)) + b"".join(string(n) for n in names) + int8(1)
            answers = read_metadata_v4(held.request(API_METADATA, 4, body, flexible=False))
            assert set(answers.values()) == {KAFKA_STORAGE_ERROR}, answers
        finally:
            for hog in hogs:
                hog.close()

    # Nothing else changed: the directory is online, the creations can be
    # asked again, and the topic that was there works, before and after a restart.
    existing_topic_works(server, existing, stored)
    assert "goes offline" not in server.stderr_text()
    assert set(metadata_v4(server.port, names).values()) == {0}
    assert server.restart() == 0
    existing_topic_works(server, existing, stored)


def test_auto_creation_stops_at_the_partition_limit(low_nofile_rill):
    server = low_nofile_rill
    server.start()
    log = server.stderr_text()
    assert "open file limit" in log and f"soft={NOFILE}" in log and f"hard={NOFILE}" in log
    # Half the descriptor limit by default.
    assert f"max_partitions={NOFILE // 2}" in log
    existing = "existing"
    create_topic(server.bootstrap, existing)
    stored = [b"before"]
    produce_all(server.bootstrap, existing, [(None, b"before")], acks="all")

    answers = metadata_v4(server.port, [f"new-{i}" for i in range(NEW_TOPICS)])
    created = [n for n, code in answers.items() if code == 0]
    refused = {code for code in answers.values() if code != 0}
    # 50 partitions of __consumer_offsets and `existing` are held already.
    assert len(created) == NOFILE // 2 - 51, len(created)
    assert refused == {POLICY_VIOLATION}

    existing_topic_works(server, existing, stored)
    assert server.restart() == 0
    existing_topic_works(server, existing, stored)


# --- A full disk (item 2) -------------------------------------------------------

FS_BYTES = 8 << 20
SEGMENT_BYTES = 256 << 10
# 64 KiB values of random bytes: four to a produce request.
VALUE_BYTES = 64 << 10


@pytest.fixture
def small_fs_rill(tmp_path, request):
    """A broker whose data directory is an 8 MiB tmpfs the test mounts (and unmounts)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(data_dir)], check=True)
    server = RillServer(RILL_BIN, data_dir, tmp_path)
    # Small segments, so retention and DeleteRecords have whole ones to delete.
    server.extra_env = {
        "RILL_LOG_SEGMENT_BYTES": str(SEGMENT_BYTES),
        "RILL_LOG_RETENTION_CHECK_INTERVAL_MS": "200",
    }
    try:
        server.start()
        yield server
        if server.proc is not None:
            status = server.stop(signal.SIGTERM)
            assert status == 0, f"rill exited with status {status} after SIGTERM"
    finally:
        call = getattr(request.node, "rep_call", None)
        if call is None or call.failed:
            print(server.log_tail())
        if server.proc is not None:
            server.stop(signal.SIGKILL)
        subprocess.run(["umount", str(data_dir)], check=True)


def produce_raw(port: int, topic: str, values: list[bytes]) -> tuple[int, int]:
    """(error code, base offset) of one Produce v8 request with acks=all."""
    with Connection(port) as conn:
        r = conn.request(API_PRODUCE, 8, produce_v8_body(topic, 0, record_batch(values)), flexible=False)
        return read_produce_v8_response(r)[(topic, 0)]


def fill_until_refused(port: int, topic: str) -> list[bytes]:
    """Produces until the broker refuses with KAFKA_STORAGE_ERROR; returns what it acknowledged."""
    stored = []
    for _ in range(2 * FS_BYTES // (4 * VALUE_BYTES)):
        values = [os.urandom(VALUE_BYTES) for _ in range(4)]
        error, _ = produce_raw(port, topic, values)
        if error == KAFKA_STORAGE_ERROR:
            return stored
        assert error == 0, error
        stored.extend(values)
    raise AssertionError(f"{len(stored)} values of {VALUE_BYTES} bytes fit on an {FS_BYTES}-byte file system")


def admin_get(server: RillServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.admin_url + path, timeout=WAIT_S) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def dir_state(server: RillServer) -> str:
    """The data directory's state as /metrics reports it."""
    _, body = admin_get(server, "/metrics")
    states = [
        line.split('state="')[1].split('"')[0]
        for line in body.splitlines()
        if line.startswith("rill_log_dir_state{") and line.endswith(" 1")
    ]
    assert len(states) == 1, states
    return states[0]


def wait_until_appends_resume(server: RillServer, topic: str) -> bytes:
    """Polls with one small produce until it is taken (no restart); returns its value."""
    deadline = time.monotonic() + WAIT_S
    value = b"after the disk had room again"
    while True:
        error, _ = produce_raw(server.port, topic, [value])
        if error == 0:
            return value
        assert error == KAFKA_STORAGE_ERROR, error
        assert time.monotonic() < deadline, "appends did not resume after space was freed"
        time.sleep(0.1)


def assert_full(server: RillServer, topic: str, stored: list[bytes]) -> None:
    assert produce_raw(server.port, topic, [b"x"])[0] == KAFKA_STORAGE_ERROR
    status, body = admin_get(server, "/ready")
    assert status == 503 and "full" in body, (status, body)
    assert dir_state(server) == "full"
    # Reads go on while the disk is full.
    start, _ = watermarks(server.bootstrap, topic, 0)
    got = [r.value for r in read_partition(server.bootstrap, topic, 0, start_offset=start)]
    assert stored and got[-len(stored) :] == stored, (len(got), len(stored))


def test_a_full_disk_stops_appends_until_delete_records_or_retention_frees_space(small_fs_rill):
    server = small_fs_rill
    topic = "filling"
    create_topic(server.bootstrap, topic)
    assert admin_get(server, "/ready")[0] == 200 and dir_state(server) == "online"

    # DeleteRecords frees the space.
    stored = fill_until_refused(server.port, topic)
    assert_full(server, topic, stored)
    _, end = watermarks(server.bootstrap, topic, 0)
    client = admin(server.bootstrap)  # kept: its futures complete only while it lives
    [deleted] = client.delete_records([TopicPartition(topic, 0, end)]).values()
    assert deleted.result(timeout=WAIT_S).low_watermark == end
    resumed = wait_until_appends_resume(server, topic)
    assert admin_get(server, "/ready")[0] == 200 and dir_state(server) == "online"
    assert [r.value for r in read_partition(server.bootstrap, topic, 0, start_offset=end)] == [resumed]

    # Retention frees the space.
    stored = fill_until_refused(server.port, topic)
    assert_full(server, topic, stored)
    alter = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.bytes", str(SEGMENT_BYTES), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in client.incremental_alter_configs([alter]).values():
        future.result(timeout=WAIT_S)
    wait_until_appends_resume(server, topic)
    assert admin_get(server, "/ready")[0] == 200 and dir_state(server) == "online"
    assert "goes offline" not in server.stderr_text()
    # Nothing needed a restart, and a restart finds the log whole.
    _, end = watermarks(server.bootstrap, topic, 0)
    assert server.restart() == 0
    assert watermarks(server.bootstrap, topic, 0)[1] == end
