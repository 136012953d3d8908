"""End-to-end fixtures: real `openlive serve` processes on loopback, with real models.

Every test here talks to a server process over a real socket, through TLS with the server's
own self-signed certificate, trusted the way a user would trust it (SSL_CERT_FILE).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.require import require

from openlive.server.tls import ensure_self_signed

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A secret in a URL or a token name that the log redaction missed: never in any server's log.
_LEAKED = re.compile(r"[?&;](?:key|access_token)=(?!\[REDACTED\])[^&\s\"']+"
                     r"|auth_tokens(?:/|%2F)(?!\[REDACTED\])[A-Za-z0-9_-]{8,}", re.IGNORECASE)


@dataclass
class ServerProcess:
    base_url: str
    port: int
    cert: Path | None
    process: subprocess.Popen
    log_path: Path
    # Secrets that must never appear in this server's log: its configured keys, and whatever a
    # test adds (handles, tokens, wrong keys). Checked when the server's fixture ends.
    secrets: set[str] = field(default_factory=set)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_no_secrets(self) -> None:
        log = self.log()
        leaked = sorted(s for s in self.secrets if s in log)
        assert not leaked, f"{len(leaked)} secret(s) in the log of the server on port {self.port}"
        found = _LEAKED.search(log)
        assert found is None, f"an unredacted credential in the log of the server on port {self.port}: " \
                              f"{found.group(0)[:24]}…"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per test run: the default model is joined and verified once, then reused."""
    path = tmp_path_factory.mktemp("openlive-data")
    cert, _ = ensure_self_signed(path / "tls")
    # Trust the server's certificate exactly as the README tells users to.
    os.environ["SSL_CERT_FILE"] = str(cert)
    os.environ["NODE_EXTRA_CA_CERTS"] = str(cert)
    return path


@pytest.fixture(scope="session")
def start_server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(config: str = "", *args: str, tls: bool = True, wait: bool = True, env: dict | None = None) -> ServerProcess:
        workdir = tmp_path_factory.mktemp("server")
        config_path = workdir / "openlive.toml"
        config_path.write_text(config)
        port = free_port()
        log_path = workdir / "server.log"
        cmd = [sys.executable, "-m", "openlive", "serve", "--config", str(config_path), "--data-dir", str(data_dir),
               "--port", str(port), *args]
        if not tls:
            cmd.append("--no-tls")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                       env={**os.environ, **(env or {})})
        scheme = "https" if tls else "http"
        server = ServerProcess(f"{scheme}://127.0.0.1:{port}", port, data_dir / "tls" / "cert.pem" if tls else None,
                               process, log_path, configured_keys(config, args, env))
        started.append(server)
        if wait:
            wait_healthy(server)
        return server

    start.started = started  # type: ignore[attr-defined]
    yield start
    for server in started:
        server.stop()
    for server in started:
        server.assert_no_secrets()


def configured_keys(config: str, args: tuple[str, ...], env: dict | None) -> set[str]:
    """The API keys a server is started with: its config's, --api-key's and OPENLIVE_API_KEYS'."""
    keys = set(tomllib.loads(config).get("server", {}).get("api_keys", ()))
    keys |= {value for flag, value in zip(args, args[1:]) if flag == "--api-key"}
    keys |= {k.strip() for k in (env or {}).get("OPENLIVE_API_KEYS", "").split(",") if k.strip()}
    # The redaction cuts out configured keys of 4 characters or more wherever they stand.
    return {k for k in keys if len(k) >= 4}


@pytest.fixture(autouse=True)
def _stop_servers_of_this_test(start_server: Callable[..., ServerProcess]) -> Iterator[None]:
    """Servers a test starts for itself end with it: each embedded one holds ~2 GB of models.

    The shared ones (`embedded_server`, `scripted_server`) are session fixtures, set up before
    this one, so they are already in the list when the test begins and are kept."""
    started: list[ServerProcess] = start_server.started  # type: ignore[attr-defined]
    before = len(started)
    yield
    for server in started[before:]:
        server.stop()
    for server in started[before:]:
        server.assert_no_secrets()


def wait_healthy(server: ServerProcess, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    verify = ssl.create_default_context(cafile=str(server.cert)) if server.cert else False
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not healthy after {timeout}s:\n{server.log()}")


@pytest.fixture(scope="session")
def embedded_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """The server as a new user runs it: embedded default models, no keys, TLS."""
    return start_server("")


SCRIPT = """
token_delay_ms = 15

[[reply]]
match = "crash"
error = "simulated engine failure"

[[reply]]
match = "deutsch"
text = "Ich möchte morgen mit dem Zug nach Berlin fahren und meine Schwester besuchen."

[[reply]]
match = "français"
text = "Bonjour, je voudrais réserver une table pour deux personnes ce soir. Nous arriverons vers huit heures, et nous aimerions une table près de la fenêtre, s'il vous plaît."

[[reply]]
match = "voice sample"
text = "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."

[[reply]]
match = "best of times"
text = "Here is a story. Once upon a time a small fox lived in a green forest. Every morning she ran to the river to drink. One day she met an old turtle who knew many secrets. The turtle told her about a hidden valley full of berries. The fox thanked him and set off at once. She walked for three days and three nights. At last she found the valley, and it was even more beautiful than the turtle had said. She lived there happily ever after."

[[reply]]
match = "long"
text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
"""


@pytest.fixture(scope="session")
def scripted_server(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """A deterministic server for protocol and error tests, with API keys required."""
    script = tmp_path_factory.mktemp("script") / "replies.toml"
    script.write_text(SCRIPT)
    config = f"""
[server]
api_keys = ["good-key", "second-key"]

[llm.default]
engine = "scripted"
script = "{script}"
"""
    return start_server(config)


@pytest.fixture(scope="session")
def node_harness() -> Path:
    harness = REPO / "tests" / "node"
    require(shutil.which("node") is not None, "node is not installed")
    require((harness / "node_modules" / "@google" / "genai").is_dir(), "run `npm ci` in tests/node")
    return harness


@pytest.fixture(scope="session")
def asr(data_dir: Path):
    """The embedded speech recognizers, to hear what the server said: tiny.en and multilingual base."""
    from openlive.engines.asr.whisper import WhisperASR, resolve_asr_model

    models = {}
    for name in ("whisper-tiny.en", "whisper-base"):
        model = WhisperASR(name, resolve_asr_model(name, data_dir, progress=False))
        model.load()
        models[name] = model
    return models
