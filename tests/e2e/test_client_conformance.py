"""Real clients that branch on the model generation, unmodified, against a real openlive process
(issue 23): Google's ADK (`run_live`), the Firebase AI Logic Web SDK, Pipecat, LiveKit Agents and
LlamaIndex's Gemini Live agent, with 2.x and 3.x model names, over a real socket.

ADK reaches the server through GOOGLE_GEMINI_BASE_URL; Firebase's SDK has no URL option, so its
driver maps the host the way its users do (a WebSocket subclass in place of the global one). On
a 2.x name ADK runs a tool only once turnComplete follows the toolCall, and on a 3.x name it
sends text as realtimeInput.text; Firebase dials its own two paths with `projects/…` model names.
Pipecat seeds its context as clientContent with turnComplete under historyConfig (and on 3.x
nudges with realtimeInput.text " "); LiveKit asks for a reply with an empty clientContent on
3.1/3.8 names and gives it 5 s; ADK resumes with its latest handle when its connection drops or
the server sends goAway; LlamaIndex sends typed text as clientContent and its microphone as
mediaChunks `audio/pcm` with no rate.

Each framework runs in its own venv (made by scripts/test) from a driver in frameworks/ that
prints JSON. Protocol steps run on the scripted LLM (the same replies every run); one Firebase
turn runs on the embedded default model, as a new user would meet it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio import speak_16k
from tests.support.require import require

from .conftest import REPO

pytestmark = pytest.mark.e2e

TWO, THREE = "gemini-live-2.5-flash-preview", "gemini-3.1-flash-live-preview"
SCRIPT = """
token_delay_ms = 10

[[reply]]
match = "say hello"
text = "Hello! How can I help you today?"

[[reply]]
match = "weather"
tool = "get_current_weather"
args = { location = "Paris" }

[[reply]]
match = "what is my name"
recall = 'my name is (\\w+)'
text = "Your name is {recall}."
"""
DRIVERS = Path(__file__).with_name("frameworks")


@pytest.fixture(scope="module")
def scripted_server(start_server, tmp_path_factory):
    script = tmp_path_factory.mktemp("conformance") / "replies.toml"
    script.write_text(SCRIPT)
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n')


def _json_line(done: subprocess.CompletedProcess, server) -> dict:
    lines = done.stdout.strip().splitlines()
    assert lines, (done.stderr[-3000:], server.log()[-3000:])
    result = json.loads(lines[-1])
    assert result.get("ok"), (result.get("error"), result.get("trace"), done.stderr[-3000:], server.log()[-3000:])
    return result


def run_driver(venv: str, env_name: str, driver: str, *args: str, server, env: dict | None = None) -> tuple[dict, str]:
    """Run a driver under its framework's venv; return its JSON and the server's log of the run."""
    python = os.environ.get(env_name, str(REPO / venv / "bin" / "python"))
    require(Path(python).exists(), f"no interpreter at {python} (scripts/test makes {venv})")
    mark = len(server.log())
    done = subprocess.run([python, str(DRIVERS / driver), *args], capture_output=True, text=True, timeout=420,
                          env={**os.environ, **(env or {})})
    log = server.log()[mark:]
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (done.returncode, done.stderr[-4000:], log[-3000:])
    result = json.loads(lines[-1])
    assert "error" not in result and result.get("ok", True), (result.get("error"), result.get("trace"),
                                                               done.stderr[-4000:], log[-3000:])
    # The server closed no connection on the client: no 1007/1008/1011, no failed session.
    assert not re.search(r"closing \d+:|session failed", log), log[-3000:]
    return result, log


# ------------------------------------------------------------------ Google ADK

def run_adk(server, model: str) -> dict:
    python = os.environ.get("OPENLIVE_ADK_PYTHON", str(REPO / ".venv-adk" / "bin" / "python"))
    require(Path(python).exists(), f"no interpreter at {python} (scripts/test makes .venv-adk)")
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": server.base_url, "GOOGLE_API_KEY": "adk-key",
           "SSL_CERT_FILE": str(server.cert)}
    env.pop("GEMINI_API_KEY", None)
    done = subprocess.run([python, str(REPO / "tests" / "e2e" / "frameworks" / "adk_agent.py"), model],
                          capture_output=True, text=True, timeout=420, env=env)
    return _json_line(done, server)


@pytest.mark.parametrize("model", [TWO, THREE])
def test_adk_run_live_text_and_tools(scripted_server, model):
    result = run_adk(scripted_server, model)
    hello, weather = result["steps"]
    assert "how can i help" in hello["text"].lower()
    # ADK ran the registered function with the model's arguments, sent its response, and the
    # model's answer used it: on 2.x this needs the turnComplete that follows the toolCall.
    assert result["tool_calls_run"] == [{"location": "Paris"}]
    assert weather["calls"] == 1 and weather["function_responses"] == 1
    assert "sunny and 22 degrees" in weather["text"]
    generation = "2.x" if model == TWO else "3.x"
    assert f"{model} ({generation}) llm=" in scripted_server.log()  # as models/NAME


# ------------------------------------------------------------------ Firebase AI Logic Web SDK

@pytest.fixture(scope="module")
def firebase_harness() -> Path:
    harness = REPO / "tests" / "node"
    require(shutil.which("node") is not None, "node is not installed")
    require((harness / "node_modules" / "firebase").is_dir(), "run `npm ci` in tests/node")
    return harness


def run_firebase(harness: Path, server, backend: str, model: str) -> dict:
    env = {**os.environ, "OPENLIVE_BASE_URL": server.base_url, "BACKEND": backend, "MODEL": model,
           "NODE_EXTRA_CA_CERTS": str(server.cert)}
    # Node 22+ has a global WebSocket; 20 has it behind this flag (and ignores it where unneeded).
    done = subprocess.run(["node", "--experimental-websocket", "firebase_live.mjs"], cwd=harness,
                          capture_output=True, text=True, timeout=420, env=env)
    return _json_line(done, server)


@pytest.mark.parametrize("backend", ["googleai", "vertex"])
@pytest.mark.parametrize("model", [TWO, THREE])
def test_firebase_web_sdk_text_and_tools(firebase_harness, scripted_server, backend, model):
    result = run_firebase(firebase_harness, scripted_server, backend, model)
    [path] = result["paths"]
    assert path == ("/ws/google.firebase.vertexai.v1beta.LlmBidiService/BidiGenerateContent/locations/europe-west4"
                    if backend == "vertex" else "/ws/google.firebase.vertexai.v1beta.GenerativeService/BidiGenerateContent")
    hello, weather = result["steps"]
    assert "how can i help" in hello["text"].lower()
    assert weather["calls"] == [{"name": "get_current_weather", "args": {"location": "Paris"}}]
    assert '"temperature_c":21' in weather["text"]
    model_name = (f"projects/demo-project/locations/europe-west4/publishers/google/models/{model}"
                  if backend == "vertex" else f"projects/demo-project/models/{model}")
    assert f"setup model={model_name} ({'2.x' if model == TWO else '3.x'})" in scripted_server.log()


def test_firebase_web_sdk_on_the_default_model(firebase_harness, embedded_server):
    env = {**os.environ, "OPENLIVE_BASE_URL": embedded_server.base_url, "NODE_EXTRA_CA_CERTS": str(embedded_server.cert),
           "FIREBASE_PROMPTS": json.dumps(["What is the capital of Italy? Answer in one sentence."])}
    done = subprocess.run(["node", "--experimental-websocket", "firebase_live.mjs"], cwd=firebase_harness,
                          capture_output=True, text=True, timeout=420, env=env)
    result = _json_line(done, embedded_server)
    assert "rome" in result["steps"][0]["text"].lower()


# ------------------------------------------------------------------ Pipecat (TEXT modality)

PIPECAT_TWO, PIPECAT_THREE = "models/gemini-2.5-flash-native-audio-preview-12-2025", "models/gemini-3.8-live"


@pytest.mark.parametrize("model", [PIPECAT_TWO, PIPECAT_THREE])
def test_pipecat_answers_its_seeded_context_and_runs_tools(scripted_server, model):
    """Pipecat's context seeded with one user message, inference_on_context_initialization at its
    default: the seed (clientContent turnComplete under initialHistoryInClientContent, plus " " on
    3.x) is answered; a typed question calls the tool, which Pipecat runs on the toolCall."""
    result, log = run_driver(".venv-pipecat", "OPENLIVE_PIPECAT_PYTHON", "pipecat_text.py",
                             scripted_server.base_url, model, server=scripted_server)
    assert result["gemini_3"] == (model == PIPECAT_THREE)  # Pipecat took the branch the name implies
    seed, tool = result["steps"]
    assert "how can i help" in seed["text"].lower(), result
    assert result["calls"] == [{"location": "Paris"}]
    assert "sunny and 22 degrees" in tool["text"], result
    assert f"setup model={model} ({'3.x' if model == PIPECAT_THREE else '2.x'})" in log


# ------------------------------------------------------------------ LiveKit Agents (3.x, TEXT)

def test_livekit_text_and_function_tool_on_a_3x_name(scripted_server):
    """LiveKit's typed input (generate_reply(user_input=...): the message, then an empty
    clientContent with turnComplete on 3.1 names) answered inside its 5 s wait, and a function
    tool run by LiveKit with the model's arguments."""
    result, log = run_driver(".venv-livekit", "OPENLIVE_LIVEKIT_PYTHON", "livekit_text.py",
                             scripted_server.base_url, THREE, server=scripted_server)
    assert result["versions"]["google-genai"].startswith("3."), result["versions"]
    assert not result["errors"], result["errors"]
    assert not [w for w in result["warnings"] if "timed out" in w], result["warnings"]
    text, tool = result["steps"]
    assert any("how can i help" in r.lower() for r in text["replies"]), text
    assert result["calls"] == [{"location": "Paris"}]
    assert [json.loads(a) for a in result["tools_executed"][0]["arguments"]] == [{"location": "Paris"}]
    assert any("sunny and 22 degrees" in r for r in tool["replies"]), tool
    assert f"setup model=models/{THREE} (3.x)" in log


# ------------------------------------------------------------------ ADK resumption

@pytest.fixture(scope="module")
def goaway_server(start_server, tmp_path_factory):
    """The scripted server with short connections: goAway 10 s after a connection opens."""
    script = tmp_path_factory.mktemp("goaway") / "replies.toml"
    script.write_text(SCRIPT)
    server = start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n\n'
                          "[sessions]\nlifetime_s = 60\ngoaway_lead_s = 50\n")
    yield server
    server.stop()  # its models are not needed past this module


def run_adk_resume(server, model: str, mode: str) -> None:
    result, log = run_driver(".venv-adk", "OPENLIVE_ADK_PYTHON", "adk_resume.py", model, mode, server=server,
                             env={"GOOGLE_GEMINI_BASE_URL": server.base_url, "GOOGLE_API_KEY": "adk-key",
                                  "SSL_CERT_FILE": str(server.cert)})
    first, second = result["steps"]
    assert "how can i help" in first["text"].lower(), result
    assert second["text"] == "Your name is Alice.", result  # only the resumed conversation knows it
    assert result["connections"] == 2, result
    said = " ".join(result["adk_log"]).lower()
    assert ("reconnecting with session handle" if mode == "drop" else "go away") in said, result["adk_log"]
    setups = re.findall(r"setup model=.*", log)
    assert len(setups) == 2 and "resumed handle=" not in setups[0] and "resumed handle=" in setups[1], log[-3000:]


@pytest.mark.parametrize("model", [TWO, THREE])
def test_adk_run_live_resumes_after_a_dropped_connection(scripted_server, model):
    """ADK's run_live with session resumption, its connection cut under it (1006, no close
    frame) between two turns: ADK connects again with its latest handle, without replaying
    history, and the next question is answered from the conversation the handle resumed."""
    run_adk_resume(scripted_server, model, "drop")


def test_adk_run_live_resumes_after_goaway(goaway_server):
    """The same, with the server ending the connection: goAway (the connection's lifetime is
    nearly over), on which ADK reconnects with its handle at once."""
    run_adk_resume(goaway_server, TWO, "goaway")


# ------------------------------------------------------------------ LlamaIndex

def _heard(asr, pcm24: bytes) -> str:
    import soxr

    return asr["whisper-tiny.en"].transcribe(soxr.resample(np.frombuffer(pcm24, dtype=np.int16), 24000, 16000),
                                             "en").text.lower()


def test_llamaindex_voice_agent_text_audio_and_tools(scripted_server, asr, tmp_path):
    """LlamaIndex's GeminiLiveVoiceAgent (default 2.5 name) with a headless audio interface:
    typed text (clientContent) answered in speech; a spoken question (mediaChunks `audio/pcm`,
    no rate: 16 kHz) that calls its FunctionTool, run by the agent, then the spoken answer."""
    question = tmp_path / "question.pcm"
    question.write_bytes(speak_16k("What is the weather in Paris?"))
    result, log = run_driver(".venv-llamaindex", "OPENLIVE_LLAMAINDEX_PYTHON", "llamaindex_agent.py",
                             str(question), str(tmp_path), server=scripted_server,
                             env={"GOOGLE_GEMINI_BASE_URL": scripted_server.base_url,
                                  "SSL_CERT_FILE": str(scripted_server.cert)})
    assert result["model"] == "gemini-2.5-flash-native-audio-preview-12-2025"  # its default, not set
    typed, spoken = result["steps"]
    for step in (typed, spoken):
        assert step["mime_types"] == ["audio/pcm;rate=24000"] and step["audio_bytes"] > 24000 * 2 * 0.3, step
    assert "how can i help" in _heard(asr, Path(typed["audio"]).read_bytes())
    # The speech was heard (the script calls the tool on "weather"), the agent ran its tool with
    # the model's arguments and answered; the answer speaks the tool's result.
    assert re.search(r"user said '.*weather.*'", log, re.IGNORECASE), log[-3000:]
    assert result["tool_call_args"] == [{"location": "Paris"}] and result["calls"] == [{"location": "Paris"}]
    assert result["agent_events"]["tool_results"][0]["result"]["result"]["forecast"] == "sunny and 22 degrees"
    assert "sunny" in _heard(asr, Path(spoken["audio"]).read_bytes())
    assert result["played_bytes"] > 0  # the agent handed the reply audio to its interface
    assert "setup model=models/gemini-2.5-flash-native-audio-preview-12-2025 (2.x)" in log
