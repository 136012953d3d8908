"""Real clients that branch on the model generation, unmodified, against a real openlive process
(issue 23): Google's ADK (`run_live`) and the Firebase AI Logic Web SDK, each with a 2.x and a 3.x
model name, over a real socket.

ADK reaches the server through GOOGLE_GEMINI_BASE_URL; Firebase's SDK has no URL option, so its
driver maps the host the way its users do (a WebSocket subclass in place of the global one). On
a 2.x name ADK runs a tool only once turnComplete follows the toolCall, and on a 3.x name it
sends text as realtimeInput.text; Firebase dials its own two paths with `projects/…` model names.

Protocol steps run on the scripted LLM (the same replies every run); one Firebase turn runs on
the embedded default model, as a new user would meet it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
"""


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
