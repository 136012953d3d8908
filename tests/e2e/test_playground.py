"""The web playground at `/`, in a real headless Chromium, against a real server process.

The browser's microphone is Chromium's fake capture device playing a recorded WAV; its speaker
is Chromium's (silent) audio output, which still plays, so the page's played-samples counter
moves. The LLM is the scripted engine so replies are known; VAD, ASR and TTS are the real
embedded ones. Every browser runs with DNS for anything but 127.0.0.1 broken, and every test
checks from the DevTools network log that the page asked nothing of any other origin.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.support.require import require
from tests.support.audio import first_sentence_16k

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
ARTIFACTS = REPO / "tests" / "artifacts"
STATIC = REPO / "openlive" / "playground"
API_KEY = "playground-key"

SCRIPT = """
[[reply]]
match = "best of times"
text = "It was the age of wisdom, it was the age of foolishness."

[[reply]]
match = "weather"
tool = "get_weather"
args = [{ city = "Paris" }]

[[reply]]
match = "story"
text = "Once upon a time a small fox lived in a green forest. Every morning she ran to the river to drink. One day she met an old turtle who knew many secrets. The turtle told her about a hidden valley full of berries. The fox thanked him and set off at once. She walked for three days and three nights. She lived there happily ever after."
"""


# ------------------------------------------------------------------ fixtures


def _tool(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    browser = _tool("chromium", "chromium-browser", "google-chrome")
    driver = _tool("chromedriver")
    require(browser is not None, "chromium is not installed (apt-get install chromium)")
    require(driver is not None, "chromedriver is not installed (apt-get install chromium-driver)")
    require(importlib.util.find_spec("selenium") is not None, "selenium is not installed (pip install selenium)")
    return browser, driver  # type: ignore[return-value]


@pytest.fixture(scope="module")
def playground_server(start_server, tmp_path_factory):
    script = tmp_path_factory.mktemp("playground-script") / "replies.toml"
    script.write_text(SCRIPT)
    return start_server(f"""
[server]
api_keys = ["{API_KEY}"]

[llm.default]
engine = "scripted"
script = "{script}"
""")


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """What the fake microphone says: a little silence, a recorded sentence, then silence to end the turn.

    Chromium's fake device wants a WAV; it is written at 48 kHz, the rate capture usually runs at,
    so the page's own downsampler to 16 kHz is what gets tested.
    """
    import soxr

    speech = np.frombuffer(first_sentence_16k(), dtype=np.int16)  # real speech, one sentence: one turn
    rate = 16000
    pcm = np.concatenate([np.zeros(rate // 2, np.int16), speech, np.zeros(rate * 8, np.int16)])
    pcm48 = soxr.resample(pcm.astype(np.float32) / 32768, rate, 48000)
    path = tmp_path_factory.mktemp("mic") / "two_cities_48k.wav"
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


class Browser:
    """A Selenium Chrome driver plus everything its DevTools network log has said so far."""

    def __init__(self, driver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.events: list[dict] = []

    def network(self) -> list[dict]:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"].startswith("Network."):
                self.events.append(message)
        return self.events

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.page_state()}")
            time.sleep(0.1)

    def page_state(self) -> str:
        try:
            return json.dumps(self.js("""
                return {transcript: [...document.querySelectorAll('.entry')].map(e => e.className + ': ' + e.innerText),
                        status: document.getElementById('status').innerText, playground: window.playground &&
                        {state: window.playground.state, stats: window.playground.stats, sent: window.playground.sent}};
            """), indent=1)
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            return f"(page state unavailable: {exc})"

    def open(self) -> None:
        self.driver.get(self.base_url + "/")
        self.wait(lambda: self.js("return !!(window.playground && window.playground.ready)"), 15,
                  "the page to initialise")

    def connect(self, api_key: str = API_KEY) -> None:
        from selenium.webdriver.common.by import By

        key = self.driver.find_element(By.ID, "api-key")
        key.clear()
        key.send_keys(api_key)
        self.driver.find_element(By.ID, "connect").click()
        self.wait(lambda: self.js("return window.playground.state") == "connected", 20, "the session to connect")

    def entries(self, role: str) -> list[str]:
        return self.js(f"return [...document.querySelectorAll('.entry.{role} .text')].map(e => e.textContent)")

    def screenshot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        self.driver.save_screenshot(str(path))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        print(f"screenshot: {path} (copied to {ARTIFACTS / path.name})")
        return path

    def ws_frames(self, direction: str) -> list[dict]:
        """JSON payloads of the WebSocket frames the page sent ("Sent") or received ("Received")."""
        frames = []
        for event in self.network():
            if event["method"] == f"Network.webSocketFrame{direction}":
                payload = event["params"]["response"]["payloadData"]
                try:
                    frames.append(json.loads(payload))
                except ValueError:
                    pass
        return frames

    def assert_same_origin_only(self) -> list[str]:
        """Every request the page made went to the server it came from; none failed. Returns the URLs."""
        origin = urlsplit(self.base_url)
        urls, failed = [], []
        for event in self.network():
            params = event["params"]
            if event["method"] == "Network.requestWillBeSent":
                urls.append(params["request"]["url"])
            elif event["method"] == "Network.webSocketCreated":
                urls.append(params["url"])
            elif event["method"] == "Network.loadingFailed" and not params.get("canceled"):
                failed.append(params)
        foreign = [u for u in urls if not u.startswith(("data:", "blob:"))
                   and (urlsplit(u).hostname, urlsplit(u).port) != (origin.hostname, origin.port)]
        assert not foreign, f"requests outside {self.base_url}: {foreign}"
        assert not failed, f"failed requests: {failed}"
        return urls

    def assert_no_console_errors(self) -> None:
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"errors in the page's console: {errors}"


@pytest.fixture
def browser(chromium, playground_server, mic_wav) -> Iterator[Callable[..., Browser]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser_path, driver_path = chromium
    drivers = []

    def launch() -> Browser:
        options = webdriver.ChromeOptions()
        options.binary_location = browser_path
        for arg in (
            "--headless=new", "--window-size=1280,860", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            # Microphone: granted without a prompt, fed from the WAV once (no loop).
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
            # Trust the server's self-signed certificate, and only it.
            f"--ignore-certificate-errors-spki-list={_spki_hash(playground_server.cert)}",
            # Offline: no name resolves except the server's loopback address.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ):
            options.add_argument(arg)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        drivers.append(driver)
        return Browser(driver, playground_server.base_url)

    yield launch
    for driver in drivers:
        driver.quit()


# ------------------------------------------------------------------ tests


def test_talk_through_the_microphone(browser, tmp_path):
    b = browser()
    b.open()
    b.connect()
    b.driver.find_element("id", "mic").click()

    # Live captions fill the user's entry while they speak (2.x model names): wait for its end.
    heard = b.wait(lambda: next((t for t in b.entries("user") if re.search(r"worst of times", t, re.I)), None),
                   30, "the user's transcript")
    assert re.search(r"best of times", heard, re.I), heard
    reply = b.wait(lambda: next((t for t in b.entries("model") if "age of foolishness" in t), None),
                   30, "the model's reply")
    assert reply.strip().startswith("It was the age of wisdom"), reply
    # Audio came back and was played through the speaker (counted in 24 kHz samples).
    b.wait(lambda: b.js("return window.playground.stats.playedSamples") > 24000, 20, "reply audio to play")
    stats = b.js("return window.playground.stats")
    assert stats["sentSamples"] > 16000 * 5, stats  # the microphone streamed the sentence at 16 kHz
    assert stats["latencies"] and stats["latencies"][0]["kind"] == "spoken", stats
    assert 0 < stats["latencies"][0]["ms"] < 15000, stats
    assert b.js("return document.querySelector('.entry.model').dataset.latencyMs"), "latency shown on the reply"
    assert len(b.entries("user")) == 1, b.entries("user")  # said once: the fake microphone does not loop
    b.screenshot(tmp_path, "playground-talk")

    # The microphone audio went out as the wire protocol says: 16 kHz PCM in ~40 ms chunks.
    audio = [f["realtimeInput"]["audio"] for f in b.ws_frames("Sent") if "audio" in f.get("realtimeInput", {})]
    assert audio and {a["mimeType"] for a in audio} == {"audio/pcm;rate=16000"}
    assert len(base64.b64decode(audio[1]["data"])) == 2 * 640
    b.assert_same_origin_only()
    b.assert_no_console_errors()


def test_tool_call_answered_by_the_page_with_a_female_voice(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    b = browser()
    b.open()
    voices = b.js("return window.playground.config.voices")
    female = next(v["name"] for v in voices if v["gender"] == "female")
    voice_menu = Select(b.driver.find_element(By.ID, "voice"))
    voice_menu.select_by_value(female)
    assert "female" in voice_menu.first_selected_option.text
    b.driver.find_element(By.ID, "tool-weather").click()
    b.connect()
    b.driver.find_element(By.ID, "text").send_keys("What is the weather in Paris?", Keys.ENTER)

    call = b.wait(lambda: b.js("const c = document.querySelector('.entry.tool code.call'); return c && c.textContent"),
                  20, "the tool call")
    assert call == 'get_weather({"city":"Paris"})'
    answer = json.loads(b.js("return document.querySelector('.entry.tool code.answer').textContent")[2:])
    assert answer["city"] == "Paris" and answer["forecast"]
    # The reply after the page's answer, shown after the tool card.
    def reply_after_tool() -> str:
        return b.js("""
            const card = document.querySelector('.entry.tool');
            let e = card.nextElementSibling;
            while (e && !e.classList.contains('model')) e = e.nextElementSibling;
            return e ? e.querySelector('.text').textContent : '';""")

    reply = b.wait(lambda: answer["forecast"] in (text := reply_after_tool()) and text, 20,
                   "the reply after the tool answer, with the page's forecast")
    assert "Paris" in reply, reply
    assert b.js("return window.playground.stats.latencies[0].kind") == "typed"
    b.screenshot(tmp_path, "playground-tool")

    # On the wire: setup asked for that voice and declared the tool; the answer matched the call's id.
    sent = b.ws_frames("Sent")
    setup = next(f["setup"] for f in sent if "setup" in f)
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == female
    assert setup["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    tool_call = next(f["toolCall"] for f in b.ws_frames("Received") if "toolCall" in f)
    response = next(f["toolResponse"] for f in sent if "toolResponse" in f)["functionResponses"][0]
    assert response["id"] == tool_call["functionCalls"][0]["id"] and response["response"] == answer
    ws_url = next(e["params"]["url"] for e in b.network() if e["method"] == "Network.webSocketCreated")
    assert ws_url.startswith("wss://127.0.0.1:") and ws_url.endswith(f"?key={API_KEY}"), ws_url
    b.assert_same_origin_only()
    b.assert_no_console_errors()


def test_page_loads_everything_from_its_own_server(browser, playground_server):
    b = browser()
    b.open()
    urls = b.assert_same_origin_only()
    base = playground_server.base_url
    for asset in ("/", "/playground/app.js", "/playground/live-client.js", "/playground/audio.js",
                  "/playground/tools.js", "/playground/style.css", "/playground/config.json"):
        assert base + asset in urls, (asset, urls)
    statuses = {e["params"]["response"]["url"]: e["params"]["response"]["status"]
                for e in b.network() if e["method"] == "Network.responseReceived"}
    assert all(status == 200 for status in statuses.values()), statuses
    page = next(e["params"]["response"] for e in b.network()
                if e["method"] == "Network.responseReceived" and e["params"]["response"]["url"] == base + "/")
    csp = {k.lower(): v for k, v in page["headers"].items()}["content-security-policy"]
    assert "default-src 'self'" in csp

    # Initialised from the server's config: its models, voices with gender, languages, key required.
    config = b.js("return window.playground.config")
    assert config["apiKeyRequired"] is True
    assert b.js("return document.getElementById('model').options.length") == len(config["models"]) >= 1
    voices = b.js("return [...document.getElementById('voice').options].map(o => o.text)")
    assert any("female" in v for v in voices) and any(re.search(r"\bmale\b", v) for v in voices), voices
    assert b.js("return document.getElementById('language').options.length") == len(config["languages"]) >= 30
    assert b.js("return document.getElementById('connect').disabled") is False
    assert "required" in b.js("return document.getElementById('key-hint').textContent")

    b.assert_no_console_errors()

    # The browser really is offline: any other host fails to resolve.
    from selenium.common.exceptions import WebDriverException

    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        b.driver.get("https://fonts.googleapis.com/css2?family=Roboto")

    # The worklet loads only when the microphone starts, so read every shipped file for
    # addresses elsewhere too (the SVG's XML namespace is a name, not a request).
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9-]+\.[a-z]", text, re.I), f"{path.name} refers to another host"


def test_typing_over_a_spoken_reply_interrupts_and_flushes_it(browser):
    from selenium.webdriver.common.keys import Keys

    b = browser()
    b.open()
    b.connect()
    box = b.driver.find_element("id", "text")
    box.send_keys("Tell me a story", Keys.ENTER)
    b.wait(lambda: b.js("return window.playground.pendingAudioS()") > 0.3, 20, "the story to be playing")
    box.send_keys("Stop please", Keys.ENTER)

    b.wait(lambda: any("You said: Stop please" in t for t in b.entries("model")), 20, "the reply to the interruption")
    stats = b.js("return window.playground.stats")
    assert stats["interruptions"] == 1 and stats["flushedSamples"] > 0, stats
    story = b.entries("model")[0]
    assert story.startswith("Once upon a time") and "happily ever after" not in story, story
    assert "interrupted" in b.js("return document.querySelector('.entry.model .meta').textContent")
    b.assert_same_origin_only()
    b.assert_no_console_errors()


def test_a_missing_or_wrong_key_is_reported_on_the_page(browser):
    b = browser()
    b.open()

    def errors() -> list[str]:
        return b.js("return [...document.querySelectorAll('.entry.error .text')].map(e => e.textContent)")

    b.driver.find_element("id", "connect").click()  # no key, and this server requires one
    b.wait(lambda: len(errors()) == 1, 15, "the connection error")
    assert "(1008)" in errors()[0], errors()
    b.driver.find_element("id", "api-key").send_keys("not-the-key")
    b.driver.find_element("id", "connect").click()
    b.wait(lambda: len(errors()) == 2, 15, "the second connection error")
    assert "(1007)" in errors()[1] and "API key not valid" in errors()[1], errors()
    assert b.js("return window.playground.state") == "error"


def test_the_camera_toggle_sends_a_jpeg_a_second_and_the_model_reads_what_it_shows(browser, tmp_path):
    """Chromium's fake camera (a green test pattern) through the Camera toggle: realtimeInput.video
    JPEGs of at most 768 px, about one a second, which reach the model as a camera note."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    b = browser()
    b.open()
    b.connect()
    b.driver.find_element(By.ID, "camera").click()

    def video_frames() -> list[dict]:
        return [f["realtimeInput"]["video"] for f in b.ws_frames("Sent") if "video" in f.get("realtimeInput", {})]

    started = time.monotonic()
    b.wait(lambda: len(video_frames()) >= 3, 20, "three camera frames")
    elapsed = time.monotonic() - started
    assert b.js("return document.getElementById('camera').getAttribute('aria-pressed')") == "true"
    assert b.js("return !document.getElementById('preview').hidden")
    frames = video_frames()
    assert elapsed > 1.5 and len(frames) <= elapsed + 2  # one a second, not a flood
    for frame in frames:
        assert frame["mimeType"] == "image/jpeg"
        image = Image.open(io.BytesIO(base64.b64decode(frame["data"])))
        assert image.format == "JPEG" and max(image.size) <= 768
    b.driver.find_element(By.ID, "text").send_keys("What do you see?", Keys.ENTER)
    # The scripted model echoes what it was given: the camera note came before the question.
    reply = b.wait(lambda: next((t for t in b.entries("model") if "What do you see?" in t), None), 20, "the reply")
    assert "[camera]" in reply and "Mostly" in reply, reply
    b.driver.find_element(By.ID, "camera").click()  # off again: no more frames
    assert b.js("return document.getElementById('camera').getAttribute('aria-pressed')") == "false"
    b.screenshot(tmp_path, "playground-camera")
    b.assert_no_console_errors()
