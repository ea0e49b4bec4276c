"""The capture proxy records every frame that passes, whatever TCP does to them."""

import socket
import struct
import threading
import time

import capture_proxy
import kafka_wire as w


def fake_broker(listener: socket.socket) -> None:
    """Answers each request frame with correlation id + b"answer:" + the request body."""
    conn, _ = listener.accept()
    with conn:
        while True:
            size = capture_proxy.read_exact(conn, 4)
            if size is None:
                return
            payload = capture_proxy.read_exact(conn, struct.unpack(">i", size)[0])
            correlation_id = payload[4:8]
            conn.sendall(w.frame(correlation_id + b"answer:" + payload[8:]))


def test_proxy_records_requests_and_responses_split_across_reads(tmp_path):
    upstream = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=fake_broker, args=(upstream,), daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    out = tmp_path / "frames"
    proxy = threading.Thread(
        target=capture_proxy.serve, args=(listener, upstream.getsockname(), out, stop), daemon=True
    )
    proxy.start()

    metadata = w.request_header_v2(3, 12, 7, "cap") + b"\x01\x01\x00\x00"  # empty topic list, flags, no tags
    api_versions = w.request_header_v1(18, 0, 8, "cap")
    stream = w.frame(metadata) + w.frame(api_versions)
    client = socket.create_connection(listener.getsockname())
    # Three bytes of the first size prefix, then the rest and the whole second frame at once.
    client.sendall(stream[:3])
    time.sleep(0.05)
    client.sendall(stream[3:])
    replies = []
    for _ in range(2):
        size = capture_proxy.read_exact(client, 4)
        replies.append(capture_proxy.read_exact(client, struct.unpack(">i", size)[0]))
    client.close()
    stop.set()
    proxy.join(timeout=5)

    assert replies == [
        struct.pack(">i", 7) + b"answer:" + metadata[8:],
        struct.pack(">i", 8) + b"answer:" + api_versions[8:],
    ]
    # Give the pump threads a moment to write the last file after the client saw its reply.
    deadline = time.monotonic() + 5
    while len(list(out.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    files = sorted(p.name for p in out.iterdir())
    # Requests and responses of one connection share a sequence; the two
    # directions are recorded by two threads, so only the set is fixed.
    assert sorted(f.split("-", 2)[2] for f in files) == [
        "request-ApiVersions-v0.bin",
        "request-Metadata-v12.bin",
        "response-ApiVersions-v0.bin",
        "response-Metadata-v12.bin",
    ], files
    by_kind = {f.split("-", 2)[2]: (out / f).read_bytes() for f in files}
    assert by_kind["request-Metadata-v12.bin"] == metadata
    assert by_kind["request-ApiVersions-v0.bin"] == api_versions
    assert by_kind["response-ApiVersions-v0.bin"] == replies[1]
