"""The Firebase AI Logic Web SDK in a real headless Chromium: `startAudioConversation` (issue 23).

The SDK has no URL option; it always dials wss://firebasevertexai.googleapis.com. A Firebase user
points it at openlive the way this test does: Chromium maps that host to the server
(`--host-resolver-rules`) and trusts the server's self-signed certificate by its public key
(`--ignore-certificate-errors-spki-list`). The page (tests/e2e/browser/) imports the SDK as its docs
show, from gstatic.com's CDN, which an import map points at the `firebase` npm package's own files
in tests/node/node_modules, served with the page from http://localhost (a secure context, so
getUserMedia works). Every other host fails to resolve: the browser is offline.

The microphone is Chromium's fake capture device playing a spoken question (the packaged Piper
voice); the SDK streams it as realtimeInput audio and plays the answer through an AudioContext.
The page watches, without changing anything, the socket the SDK opens and the buffers it plays.
The server runs the embedded default models: VAD → STT → LLM → TTS on the CPU.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import threading
import time
import wave
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.support.require import require
from tests.support.wer import wer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "tests" / "e2e" / "browser"
FIREBASE = REPO / "tests" / "node" / "node_modules" / "firebase"
HOST = "firebasevertexai.googleapis.com"
PATH = "/ws/google.firebase.vertexai.v1beta.GenerativeService/BidiGenerateContent"
QUESTION = "What is the capital of France?"


def _tool(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    browser = _tool("chromium", "chromium-browser", "google-chrome")
    driver = _tool("chromedriver")
    require(browser is not None, "chromium is not installed (apt-get install chromium)")
    require(driver is not None, "chromedriver is not installed (apt-get install chromium-driver)")
    require(importlib.util.find_spec("selenium") is not None, "selenium is not installed (pip install selenium)")
    require((FIREBASE / "firebase-ai.js").is_file(), "run `npm ci` in tests/node")
    return browser, driver  # type: ignore[return-value]


class _PageHandler(BaseHTTPRequestHandler):
    """The page, its script, and the SDK's two browser modules; nothing else."""

    import_map = ""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = urlsplit(self.path).path
        files = {"/firebase_audio.js": PAGE / "firebase_audio.js",
                 **{f"/firebase/{name}": FIREBASE / name for name in
                    ("firebase-app.js", "firebase-ai.js", "firebase-app.js.map", "firebase-ai.js.map")}}
        if path == "/":
            body = (PAGE / "firebase_audio.html").read_text().replace("__IMPORT_MAP__", self.import_map).encode()
            kind = "text/html; charset=utf-8"
        elif path in files:
            body = files[path].read_bytes()
            kind = "application/json" if path.endswith(".map") else "text/javascript; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page_url(chromium) -> Iterator[str]:
    """http://localhost:PORT/ serving the page, with an import map for this `firebase` version."""
    version = json.loads((FIREBASE / "package.json").read_text())["version"]
    cdn = f"https://www.gstatic.com/firebasejs/{version}"
    import_map = {"imports": {
        "firebase/app": "/firebase/firebase-app.js", "firebase/ai": "/firebase/firebase-ai.js",
        # firebase-ai.js imports the app module by its CDN address.
        f"{cdn}/firebase-app.js": "/firebase/firebase-app.js", f"{cdn}/firebase-ai.js": "/firebase/firebase-ai.js",
    }}
    handler = type("Handler", (_PageHandler,), {"import_map": json.dumps(import_map)})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """What the fake microphone says, once: a second of silence, the question, then silence that ends the turn.

    Written at 48 kHz, the rate Chromium captures at, so the SDK's own worklet resamples it to 16 kHz."""
    import soxr

    from tests.support.audio import speak_16k

    speech = np.frombuffer(speak_16k(QUESTION), dtype=np.int16)
    rate = 16000
    pcm = np.concatenate([np.zeros(rate, np.int16), speech, np.zeros(rate * 20, np.int16)])
    pcm48 = soxr.resample(pcm.astype(np.float32) / 32768, rate, 48000)
    path = tmp_path_factory.mktemp("mic") / "question_48k.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.clip(pcm48 * 32768, -32768, 32767).astype(np.int16).tobytes())
    return path


def _spki_hash(cert_pem: Path) -> str:
    """Base64 SHA-256 of the certificate's public key: Chromium trusts exactly this certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def browser(chromium, embedded_server, mic_wav) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser_path, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in (
        "--headless=new", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        # The microphone: granted without a prompt, fed from the WAV once (no loop).
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
        # What a Firebase user does: Firebase's host is the openlive server, whose certificate is trusted.
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1:{embedded_server.port}, MAP * ~NOTFOUND, EXCLUDE localhost",
        f"--ignore-certificate-errors-spki-list={_spki_hash(embedded_server.cert)}",
    ):
        options.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def _wait(driver, condition: Callable[[dict], object], timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        results = driver.execute_script("return window.results")
        if results and (results["error"] or condition(results)):
            assert not results["error"], f"the page failed: {results['error']}"
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {json.dumps(results, indent=1)}")
        time.sleep(0.2)


def _network(driver) -> list[dict]:
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated",
                                 "Network.webSocketHandshakeResponseReceived", "Network.loadingFailed"):
            events.append(message)
    return events


def test_start_audio_conversation_through_the_host_mapping(browser, page_url, embedded_server):
    driver = browser
    driver.get(page_url)
    _wait(driver, lambda r: r["state"] == "ready", 30, "the page and the SDK to load")
    driver.find_element("id", "talk").click()  # the user gesture the SDK asks for
    _wait(driver, lambda r: r["state"] == "talking", 60, "the session to connect and the microphone to start")

    # The question is heard, answered, and the answer played to its end (the clock ran past it).
    results = _wait(driver, lambda r: r["received"]["turnComplete"] >= 1, 120, "the spoken answer")
    results = _wait(driver, lambda r: r["played"]["seconds"] > 0
                    and r["played"]["endedSeconds"] >= r["played"]["seconds"] - 0.01, 60, "the answer to play")
    # The microphone still streams, a frame per 128-sample render quantum (~345 a second): the
    # session stays up past the server's 10 s window for a client that floods frames.
    results = _wait(driver, lambda r: r["closes"] or r["sent"]["lastAudioAt"] - r["sent"]["firstAudioAt"] > 15000,
                    60, "15 s of microphone")
    assert results["closes"] == [], results["closes"]
    driver.execute_script("return window.hangUp()")
    results = _wait(driver, lambda r: r["state"] == "closed" and r["closes"], 20, "the session to close")
    print("firebase page results:", json.dumps(results, indent=1))

    # It dialled Firebase's own address, which the host mapping took to openlive.
    assert results["url"] == f"wss://{HOST}{PATH}?key=firebase-key", results["url"]
    events = _network(driver)  # read once: reading the log empties it
    sockets = [e["params"]["url"] for e in events if e["method"] == "Network.webSocketCreated"]
    assert sockets == [results["url"]], sockets
    assert "setup model=projects/demo-project/models/gemini-live-2.5-flash" in embedded_server.log()
    assert results["received"]["setupComplete"]
    # The session ended because the page hung up, not with an error.
    [close] = results["closes"]
    assert close["code"] == 1000 and close["wasClean"], close

    # The microphone went out as the SDK sends it: bare audio/pcm (16 kHz by the docs), a few seconds of it.
    sent = results["sent"]
    assert sent["audioMimeTypes"] == ["audio/pcm"], sent
    assert sent["audioBytes"] / 32000 > 3, sent
    assert sent["setup"]["inputAudioTranscription"] == {}
    assert sent["setup"]["generationConfig"]["responseModalities"] == ["AUDIO"]

    # The spoken question was heard.
    heard = results["received"]["inputText"]
    assert wer(QUESTION, heard) < 0.3, heard
    # A spoken answer was played: 24 kHz buffers, more than half a second of them, to the end.
    played = results["played"]
    assert played["rates"] == [24000], played
    assert played["seconds"] > 0.5 and played["endedSeconds"] >= 0.5, played
    assert abs(played["seconds"] - results["received"]["audioBytes"] / 48000) < 0.05  # every audio chunk played
    assert "paris" in results["received"]["outputText"].lower(), results["received"]["outputText"]
    assert results["received"]["interrupted"] == 0 and not results["received"]["other"], results["received"]

    # Offline but for the two origins: the page's, and Firebase's host mapped to openlive.
    hosts = {urlsplit(e["params"].get("request", {}).get("url") or e["params"].get("url", "")).hostname
             for e in events if e["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated")}
    assert hosts == {"localhost", HOST}, hosts
    failed = [e["params"] for e in events if e["method"] == "Network.loadingFailed" and not e["params"].get("canceled")]
    assert not failed, failed
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
