"""A real redis-server on loopback for tests and benchmarks: a free port, no persistence, torn down after.

Never a Redis that happens to be running already (a system one on 6379, a leftover of another run):
the server must answer PING with our own process id before its URL is handed out.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.require import require

START_DEADLINE_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_pid(port: int) -> int | None:
    """The process id of whatever Redis answers on `port`, or None while nothing does."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server and yield its URL; skip locally, fail in CI, if it is not installed."""
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server is not installed (apt-get install redis-server)")
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="openlive-redis-") as workdir:
        log = Path(workdir) / "redis.log"
        port = _free_port()
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", workdir, "--logfile", str(log)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while _server_pid(port) != process.pid:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"redis-server did not start on port {port}:\n{tail}")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class RestartableRedis:
    """A redis-server that keeps its data on disk (an fsync per write), stopped and started on one port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed (apt-get install redis-server)")
        self.binary, self.workdir, self.port = str(binary), workdir, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.workdir / "redis.log"
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir),
                                         "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE_S
        while _server_pid(self.port) != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n"
                                   + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis finishes its append-only file and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def restartable_redis() -> Iterator[RestartableRedis]:
    with tempfile.TemporaryDirectory(prefix="openlive-redis-") as workdir:
        server = RestartableRedis(Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def redis_url_fixture() -> Any:
    """A module-scoped pytest fixture yielding a fresh server's URL: `redis_url = redis_url_fixture()`."""

    @pytest.fixture(scope="module")
    def redis_url() -> Iterator[str]:
        with redis_server() as url:
            yield url

    return redis_url
