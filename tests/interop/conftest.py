"""Fixtures that run a real `rill serve` process for the interop tests.

Each test that asks for the `rill` fixture gets its own broker on free
loopback ports with an empty data directory, so tests never see each other's
topics. The broker binary is $RILL_BIN, or target/release/rill by default
(scripts/test.sh builds it first).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RILL_BIN = Path(os.environ.get("RILL_BIN", REPO_ROOT / "target" / "release" / "rill"))

# A broker that is not ready after this long is broken: the design promises
# readiness "in well under a second", and CI machines are slow and shared.
READY_TIMEOUT_S = 20.0
# SIGTERM asks for a clean shutdown (flush, clean-shutdown marker); a broker
# still running after this long is stuck, and the test says so.
STOP_TIMEOUT_S = 20.0
# How much of the broker's log a failed test prints: enough to see the story.
LOG_TAIL_LINES = 200


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RillServer:
    """One `rill serve` child process; it keeps its ports and data dir across restarts."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path):
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.admin_port = free_port()
        self.stdout_path = log_dir / "rill.stdout"
        self.stderr_path = log_dir / "rill.stderr"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # Settings as RILL_* variables, and a command that execs rill with
        # its arguments (e.g. `prlimit --nofile=256:256 --`), for the next starts.
        self.extra_env: dict[str, str] = {}
        self.wrapper: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "rill is not running"
        return self.proc.pid

    def start(self) -> None:
        assert self.proc is None, "rill is already running"
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} does not exist: build it with `cargo build --release -p rill-cli` "
                "or point RILL_BIN at a rill binary"
            )
        self.starts += 1
        banner = f"\n===== rill start #{self.starts} =====\n"
        # Append, so a restarted broker's log follows the previous one's.
        with open(self.stdout_path, "a") as out, open(self.stderr_path, "a") as err:
            out.write(banner)
            err.write(banner)
            out.flush()
            err.flush()
            self.proc = subprocess.Popen(
                [
                    *self.wrapper,
                    str(self.binary),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    self.bootstrap,
                    "--admin-listen",
                    f"127.0.0.1:{self.admin_port}",
                ],
                stdin=subprocess.DEVNULL,
                # rill reads RILL_* variables as settings; RILL_BIN is ours, not its.
                # NO_COLOR keeps terminal colour codes out of the log a failed test prints.
                env={**{k: v for k, v in os.environ.items() if k != "RILL_BIN"}, "NO_COLOR": "1", **self.extra_env},
                stdout=out,
                stderr=err,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Waits until /ready answers 200 and the Kafka port accepts connections."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise RuntimeError(f"rill exited with status {code} while starting:\n{self.log_tail()}")
            if self.ready_status() == 200 and self._kafka_port_accepts():
                return
            time.sleep(0.05)
        raise RuntimeError(f"rill was not ready after {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def _kafka_port_accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def ready_status(self) -> int | None:
        """HTTP status of GET /ready, or None if nothing listens on the admin port."""
        try:
            with urllib.request.urlopen(self.admin_url + "/ready", timeout=2.0) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except (ConnectionRefusedError, urllib.error.URLError, TimeoutError):
            # TimeoutError: the admin port is bound before the data directory
            # is open, and opening hundreds of partitions can take seconds.
            return None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig`, waits for the process to end, and returns its exit status."""
        assert self.proc is not None, "rill is not running"
        proc, self.proc = self.proc, None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"rill did not stop within {STOP_TIMEOUT_S}s of signal {sig}") from None

    def restart(self, sig: int = signal.SIGTERM) -> int:
        """Stops with `sig` and starts again on the same ports and data dir; returns the exit status."""
        status = self.stop(sig)
        self.start()
        return status

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory of the broker process, from /proc."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line in /proc status")

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_tail(self) -> str:
        lines = self.stderr_text().splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the test item, so fixtures can tell at
    # teardown whether the test failed.
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


@pytest.fixture
def rill(request, tmp_path):
    """A running broker: `rill.bootstrap` is "127.0.0.1:PORT" for clients."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = RillServer(RILL_BIN, data_dir, tmp_path)
    server.start()
    yield server
    # Every test ends the way an operator would: SIGTERM, and a clean exit.
    # A broker that died on its own during the test fails the test too.
    problems = []
    if server.proc is not None:
        died_status = server.proc.poll()
        if died_status is not None:
            server.proc = None
            problems.append(f"rill died during the test with status {died_status}")
        else:
            status = server.stop(signal.SIGTERM)
            if status != 0:
                problems.append(f"rill exited with status {status} after SIGTERM")
    failed = any(
        getattr(request.node, "rep_" + phase, None) is not None and getattr(request.node, "rep_" + phase).failed
        for phase in ("setup", "call")
    )
    if failed or problems:
        print(f"--- rill stderr (last {LOG_TAIL_LINES} lines) ---")
        print(server.log_tail())
    assert not problems, "; ".join(problems)
