"""The admin HTTP server under hostile or careless clients: a client trickling
its request head is cut off, connections beyond the limit are closed at once,
and the metrics of a deleted topic go with it."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from conftest import RILL_BIN, RillServer
from helpers import WAIT_S, admin, create_topic, produce_all, unique_topic

# The admin settings each test starts its broker with (as RILL_* variables).
SLOWLORIS = {"RILL_ADMIN_REQUEST_TIMEOUT_MS": "1000"}
LIMITED = {"RILL_ADMIN_MAX_CONNECTIONS": "4", "RILL_ADMIN_REQUEST_TIMEOUT_MS": "600000"}
SHORT_LIVED = {"RILL_ADMIN_REQUEST_TIMEOUT_MS": "600000", "RILL_ADMIN_CONNECTION_MAX_MS": "1000"}


@pytest.fixture
def broker(request, tmp_path, monkeypatch):
    for key, value in request.param.items():
        monkeypatch.setenv(key, value)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = RillServer(RILL_BIN, data_dir, tmp_path)
    server.start()
    yield server
    if server.proc is not None:
        assert server.stop() == 0, server.log_tail()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=WAIT_S) as resp:
        return resp.read().decode()


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the broker has closed the connection (EOF or reset)."""
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("broker", [SLOWLORIS], indirect=True)
def test_a_client_trickling_its_request_head_is_cut_off(broker):
    sock = socket.create_connection(("127.0.0.1", broker.admin_port), timeout=0.2)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + WAIT_S
    closed = False
    # One header byte every 200 ms: the head never ends, and the connection
    # never goes quiet for long.
    while not closed and time.monotonic() < deadline:
        try:
            sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        closed = closed_by_peer(sock)
    sock.close()
    assert closed, f"the admin server still held a trickling client after {WAIT_S}s"
    assert get(broker.admin_url + "/health") == "ok\n"


@pytest.mark.parametrize("broker", [SHORT_LIVED], indirect=True)
def test_an_admin_connection_ends_after_its_lifetime_whatever_it_does(broker):
    # A request answered, then a client that neither reads on nor sends: only
    # the connection's lifetime ends it (the head timeout here is 10 minutes).
    sock = socket.create_connection(("127.0.0.1", broker.admin_port), timeout=0.2)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    deadline = time.monotonic() + WAIT_S
    closed = False
    while not closed and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
            break
        received += chunk
        closed = chunk == b""
    sock.close()
    assert received.startswith(b"HTTP/1.1 200"), received
    assert closed, f"the admin connection was still open after {WAIT_S}s"


@pytest.mark.parametrize("broker", [LIMITED], indirect=True)
def test_admin_connections_beyond_the_limit_are_closed(broker):
    # Four idle connections take every slot (accepted in the order they
    # connected, before the fifth).
    idle = [socket.create_connection(("127.0.0.1", broker.admin_port), timeout=WAIT_S) for _ in range(4)]
    extra = socket.create_connection(("127.0.0.1", broker.admin_port), timeout=WAIT_S)
    try:
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = extra.recv(4096)
    except ConnectionResetError:
        answer = b""
    extra.close()
    assert answer == b"", f"a fifth connection was served: {answer!r}"
    assert "refusing admin connection" in broker.stderr_text()

    # The slots come back when the idle connections go.
    for sock in idle:
        sock.close()
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            assert get(broker.admin_url + "/health") == "ok\n"
            break
        except OSError:
            assert time.monotonic() < deadline, "the admin server did not serve again after its connections closed"
            time.sleep(0.05)


@pytest.mark.parametrize("broker", [{}], indirect=True)
def test_a_deleted_topics_metrics_are_removed(broker):
    gone, kept = unique_topic("metrics-gone"), unique_topic("metrics-kept")
    for topic in (gone, kept):
        create_topic(broker.bootstrap, topic, partitions=2)
        produce_all(broker.bootstrap, topic, [(None, b"counted")] * 5, partition=0)
    before = get(broker.admin_url + "/metrics")
    assert f'topic="{gone}"' in before
    assert f'rill_log_size_bytes{{topic="{gone}",partition="1"}}' in before

    client = admin(broker.bootstrap)
    client.delete_topics([gone])[gone].result(timeout=WAIT_S)

    after = get(broker.admin_url + "/metrics")
    assert gone not in after
    assert f'rill_topic_messages_in_total{{topic="{kept}"}} 5' in after
