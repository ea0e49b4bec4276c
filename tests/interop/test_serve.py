"""What an operator sees of `rill serve`: where it listens, the admin HTTP
endpoints, and a clean exit on SIGINT as on SIGTERM."""

from __future__ import annotations

import signal
import urllib.request

from helpers import create_topic, produce_all, unique_topic


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def test_serve_prints_where_it_listens(rill):
    assert f"rill: listening for Kafka clients on {rill.bootstrap}" in rill.stdout_text()


def test_admin_http_ready_health_and_metrics(rill):
    topic = unique_topic("metrics")
    create_topic(rill.bootstrap, topic)
    produce_all(rill.bootstrap, topic, [(None, b"counted")] * 10, partition=0)

    ready = get(rill.admin_url + "/ready")
    health = get(rill.admin_url + "/health")
    status, content_type, metrics = get(rill.admin_url + "/metrics")

    assert ready[0] == 200
    assert health[0] == 200
    assert status == 200
    assert content_type.startswith("text/plain") or content_type.startswith("application/openmetrics-text")
    assert "# TYPE" in metrics
    # Per-topic traffic is broken down by topic name.
    assert topic in metrics


def test_sigint_shuts_down_cleanly(rill):
    assert rill.stop(signal.SIGINT) == 0
