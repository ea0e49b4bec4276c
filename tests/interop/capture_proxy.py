#!/usr/bin/env python3
"""A recording TCP proxy for Kafka traffic: captures real clients' frames as files.

Golden frames (what kcat, kafka-python or KafkaJS really send) seed the
protocol fuzzer and the codec's byte-exact tests. Run the broker so that it
advertises the proxy's address (clients reconnect to whatever Metadata
advertises, and would bypass the proxy otherwise), then point a client at
the proxy:

    rill serve --listen 127.0.0.1:9092 --advertised-listener 127.0.0.1:19092
    python3 tests/interop/capture_proxy.py --listen 127.0.0.1:19092 \\
        --upstream 127.0.0.1:9092 --out captures/kcat
    kcat -b 127.0.0.1:19092 -L

Each frame is written without its 4-byte size prefix, one file per frame:

    <connection>-<sequence>-request-<ApiName>-v<version>.bin
    <connection>-<sequence>-response-<ApiName>-v<version>.bin

A response is named after the request with the same correlation id, so its
file sorts right after that request's. Not run in CI; tests/interop/
test_capture_proxy.py checks that it records what passes through.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import struct
import sys
import threading
from pathlib import Path

# Names of the Kafka APIs by key, for readable file names (Kafka 4.0's list).
API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    17: "SaslHandshake",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    22: "InitProducerId",
    23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    27: "WriteTxnMarkers",
    28: "TxnOffsetCommit",
    29: "DescribeAcls",
    30: "CreateAcls",
    31: "DeleteAcls",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    34: "AlterReplicaLogDirs",
    35: "DescribeLogDirs",
    36: "SaslAuthenticate",
    37: "CreatePartitions",
    38: "CreateDelegationToken",
    39: "RenewDelegationToken",
    40: "ExpireDelegationToken",
    41: "DescribeDelegationToken",
    42: "DeleteGroups",
    43: "ElectLeaders",
    44: "IncrementalAlterConfigs",
    45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments",
    47: "OffsetDelete",
    48: "DescribeClientQuotas",
    49: "AlterClientQuotas",
    50: "DescribeUserScramCredentials",
    51: "AlterUserScramCredentials",
    60: "DescribeCluster",
    61: "DescribeProducers",
    65: "DescribeTransactions",
    66: "ListTransactions",
    68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe",
    71: "GetTelemetrySubscriptions",
    72: "PushTelemetry",
    75: "DescribeTopicPartitions",
}

# Larger frames than this are not Kafka traffic worth keeping (the broker's
# default socket.request.max.bytes is 100 MiB); the proxy stops recording.
FRAME_BYTES_MAX = 100 * 1024 * 1024


def api_name(key: int) -> str:
    return API_NAMES.get(key, f"Api{key}")


class Capture:
    """What one client connection has sent so far: correlation id -> (api key, version)."""

    def __init__(self, out_dir: Path, connection: int):
        self.out_dir = out_dir
        self.connection = connection
        self.sequence = itertools.count()
        self.pending: dict[int, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def write(self, direction: str, key: int, version: int, payload: bytes) -> None:
        with self.lock:
            seq = next(self.sequence)
        name = f"{self.connection:04d}-{seq:05d}-{direction}-{api_name(key)}-v{version}.bin"
        (self.out_dir / name).write_bytes(payload)

    def request(self, payload: bytes) -> None:
        if len(payload) < 8:
            self.write("request", -1, -1, payload)
            return
        key, version, correlation_id = struct.unpack(">hhi", payload[:8])
        with self.lock:
            self.pending[correlation_id] = (key, version)
        self.write("request", key, version, payload)

    def response(self, payload: bytes) -> None:
        correlation_id = struct.unpack(">i", payload[:4])[0] if len(payload) >= 4 else None
        with self.lock:
            key, version = self.pending.pop(correlation_id, (-1, -1))
        self.write("response", key, version, payload)


def read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def pump(src: socket.socket, dst: socket.socket, record) -> None:
    """Copies frames from src to dst, recording each; ends when either side closes."""
    try:
        while True:
            size = read_exact(src, 4)
            if size is None:
                return
            (n,) = struct.unpack(">i", size)
            if not 0 <= n <= FRAME_BYTES_MAX:
                # Not a frame we can record: pass the bytes through unrecorded.
                dst.sendall(size)
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
                return
            payload = read_exact(src, n)
            if payload is None:
                return
            record(payload)
            dst.sendall(size + payload)
    except OSError:
        return
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener: socket.socket, upstream: tuple[str, int], out_dir: Path, stop: threading.Event) -> None:
    """Accepts clients until `stop` is set; each gets its own upstream connection and two pump threads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listener.settimeout(0.2)
    for connection in itertools.count():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
                break
            except socket.timeout:
                continue
        else:
            return
        try:
            server = socket.create_connection(upstream)
        except OSError as e:
            print(f"capture_proxy: cannot reach upstream {upstream}: {e}", file=sys.stderr)
            client.close()
            continue
        capture = Capture(out_dir, connection)
        threading.Thread(target=pump, args=(client, server, capture.request), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, capture.response), daemon=True).start()


def parse_address(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:19092", help="address clients connect to")
    parser.add_argument("--upstream", default="127.0.0.1:9092", help="the broker's Kafka listener")
    parser.add_argument("--out", required=True, type=Path, help="directory for the captured frames")
    args = parser.parse_args()
    listener = socket.create_server(parse_address(args.listen))
    print(f"capture_proxy: {args.listen} -> {args.upstream}, writing to {args.out}", file=sys.stderr)
    try:
        serve(listener, parse_address(args.upstream), args.out, threading.Event())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
