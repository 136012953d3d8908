"""Acceptance (issue 14): Pipecat and LiveKit Agents, unmodified apart from the base URL and each
with its default model name, hold a voice conversation with a real openlive process.

Each framework lives in its own venv with its own google-genai (Pipecat pins <3, LiveKit uses
3.x), made by scripts/test. The test starts the server, runs a driver script under that venv's
python (tests/e2e/frameworks/) and asserts on the JSON it prints: real speech in, the input
transcription seen by the framework, 24 kHz speech out, a text turn, a function call answered by
a function registered with the framework, and a barge-in that interrupts a reply.

The LLM is scripted (the same replies every run); recognition (Whisper), synthesis (Piper),
voice activity and end of turn are the real embedded engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.audio import first_sentence_16k, speak_16k
from tests.support.require import require

from .conftest import REPO

pytestmark = pytest.mark.e2e

DRIVERS = Path(__file__).with_name("frameworks")
ARTIFACTS = REPO / "tests" / "artifacts"
# Long enough (about a minute of speech) that its synthesis is still under way when the barge-in
# is heard, on a fast machine too.
STORY = ("Here is a story. Once upon a time a small fox lived in a green forest. Every morning she ran to the "
         "river to drink. One day she met an old turtle who knew many secrets. The turtle told her about a hidden "
         "valley full of berries. The fox thanked him and set off at once. She walked for three days and three "
         "nights. At last she found the valley, and it was even more beautiful than the turtle had said.")
SCRIPT = f"""
token_delay_ms = 10

[[reply]]
match = "say hello"
text = "Hello! How can I help you today?"

[[reply]]
match = "weather"
tool = "get_current_weather"
args = {{ location = "Paris" }}

[[reply]]
match = "best of times"
text = "{STORY} {STORY}"
"""
BARGE_IN = "Wait, please stop."


@pytest.fixture(scope="module")
def framework_server(start_server, tmp_path_factory):
    script = tmp_path_factory.mktemp("frameworks") / "replies.toml"
    script.write_text(SCRIPT)
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n')


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("speech")
    question, barge_in = folder / "question.pcm", folder / "barge_in.pcm"
    question.write_bytes(first_sentence_16k())
    barge_in.write_bytes(speak_16k(BARGE_IN))
    return str(question), str(barge_in)


def run_driver(venv: str, env_name: str, driver: str, server, speech: tuple[str, str]) -> dict:
    python = os.environ.get(env_name, str(REPO / venv / "bin" / "python"))
    require(Path(python).exists(), f"no interpreter at {python} (scripts/test makes {venv})")
    began = time.monotonic()
    done = subprocess.run([python, str(DRIVERS / driver), server.base_url, *speech], capture_output=True, text=True,
                          timeout=420, env=os.environ.copy())
    # The framework's own log, kept for whoever reads a failure in CI.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{Path(driver).stem}.log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.monotonic() - began, 1)
    result["log"] = done.stderr
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=1))
    assert "error" not in result, (result["error"], done.stderr[-4000:], server.log()[-4000:])
    return result


def check_speech(step: dict) -> None:
    assert step["audio_bytes"] > 24000 * 2 * 0.3, step  # at least 0.3 s of speech
    assert step["sample_rates"] == [24000], step


def test_pipecat_voice_bot(framework_server, speech):
    result = run_driver(".venv-pipecat", "OPENLIVE_PIPECAT_PYTHON", "pipecat_agent.py", framework_server, speech)
    assert result["versions"]["google-genai"].startswith("2."), result["versions"]
    assert result["model"] == "models/gemini-3.8-live"  # Pipecat's default, not set by the driver
    steps = {s["step"]: s for s in result["steps"]}

    # A text turn: Pipecat's quick start greeting, spoken.
    check_speech(steps["text"])
    assert "how can i help" in steps["text"]["text"].lower()
    assert not steps["text"]["interrupted"]

    # Real speech in: the framework saw what the user said, and the reply began in speech ...
    heard = " ".join(result["transcriptions"]).lower()
    assert "best of times" in heard and "worst" in heard, result["transcriptions"]
    assert steps["spoken"]["sample_rates"] == [24000]
    # ... until the user talked over it: the server interrupted it, Pipecat stopped it.
    assert steps["spoken"]["interrupted"] and result["interruptions"] >= 1
    assert STORY not in steps["spoken"]["text"]
    # The barge-in was heard and answered in full.
    assert "stop" in heard, result["transcriptions"]
    check_speech(steps["barge_in"])
    assert "stop" in steps["barge_in"]["text"].lower() and not steps["barge_in"]["interrupted"]

    # A function call, answered by the registered function, and a reply that uses its result.
    assert result["calls"] == [{"location": "Paris"}]
    check_speech(steps["tool"])
    assert "sunny" in steps["tool"]["text"].lower()

    # Every turnComplete carried usageMetadata (Pipecat warns when one does not).
    assert "without usage_metadata" not in result["log"]


def test_livekit_agent_session(framework_server, speech):
    result = run_driver(".venv-livekit", "OPENLIVE_LIVEKIT_PYTHON", "livekit_agent.py", framework_server, speech)
    assert result["versions"]["google-genai"].startswith("3."), result["versions"]
    assert result["model"] == "gemini-2.5-flash-native-audio-preview-12-2025"  # LiveKit's default
    assert not result["errors"], result["errors"]
    steps = {s["step"]: s for s in result["steps"]}

    # A text turn (generate_reply), spoken, well inside LiveKit's 5 s wait for a first message.
    check_speech(steps["text"])
    assert "how can i help" in steps["text"]["text"].lower()

    # Real speech in: the framework's transcription event carries what the user said ...
    finals = " ".join(t["text"] for t in result["transcripts"] if t["final"]).lower()
    assert "best of times" in finals and "worst" in finals, result["transcripts"]
    # ... the reply began in 24 kHz speech, and the barge-in interrupted it.
    assert steps["spoken"]["sample_rates"] == [24000]
    assert steps["spoken"]["handle_interrupted"] and steps["spoken"]["interrupted"]
    # The barge-in was heard and answered in full.
    assert "stop" in finals, result["transcripts"]
    check_speech(steps["barge_in"])
    assert any("stop" in r.lower() for r in steps["barge_in"]["replies"]), steps["barge_in"]

    # A function call, answered by the agent's function tool, and a reply that uses its result.
    assert result["calls"] == [{"location": "Paris"}]
    assert result["tools_executed"] and result["tools_executed"][0]["calls"] == ["get_current_weather"]
    check_speech(steps["tool"])
    assert any("sunny" in r.lower() for r in steps["tool"]["replies"])
    assert "timed out" not in result["log"]
