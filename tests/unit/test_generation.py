"""Generation profiles: each row of the README's table, pinned for a 2.x and a 3.x model name.

Real clients branch on the generation they name (Pipecat's `_create_initial_response`, ADK's
`gemini_llm_connection.receive`, LiveKit's `generate_reply`); a session must behave as Google's
service does for that generation.
"""

import asyncio
import json

import pytest

from openlive.config import ConfigError, load_config
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.protocol import parse_client_frame
from openlive.session.generation import GEN_2, GEN_3, generation_for
from openlive.session.live_session import LiveSession

from .test_tools import WEATHER, RouterEngine, call, calls, say, texts, until

GEN2_NAMES = ["gemini-2.5-flash-native-audio-preview-12-2025", "models/gemini-live-2.5-flash-preview",
              "gemini-2.0-flash-live-001", "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"]
GEN3_NAMES = ["gemini-3.1-flash-live-preview", "models/gemini-3.8-live", "projects/p/models/gemini-3.1-flash-live-preview"]
TWO, THREE = "models/gemini-2.5-flash-native-audio-preview-12-2025", "models/gemini-3.1-flash-live-preview"


def frame(obj):
    return parse_client_frame(json.dumps(obj))


async def open_session(model, engine, extra=None, declarations=None):
    sent = []

    async def send(message):
        sent.append(message)

    setup = {"model": model, "generationConfig": {"responseModalities": ["TEXT"]}, **(extra or {})}
    if declarations:
        setup["tools"] = [{"functionDeclarations": declarations}]
    session = LiveSession(frame({"setup": setup}), llm=engine, send=send, session_id="g")
    await session.start()
    return session, sent


class Counting:
    """The scripted engine, remembering what each request's last message was."""

    name = "counting"

    def __init__(self):
        self.inner, self.asked = ScriptedEngine("s"), []

    def stream(self, request):
        self.asked.append(request.messages[-1].content)
        return self.inner.stream(request)


async def settle(session):
    while session.busy:
        await asyncio.sleep(0.001)


def turn_completes(sent):
    return [m for m in sent if m.get("serverContent", {}).get("turnComplete")]


# ------------------------------------------------------------------ which generation a name gets

@pytest.mark.parametrize("name", GEN2_NAMES)
def test_2x_names(name):
    assert generation_for(name) is GEN_2


@pytest.mark.parametrize("name", GEN3_NAMES)
def test_3x_names(name):
    assert generation_for(name) is GEN_3


def test_names_without_a_version_get_the_configured_default_and_patterns_win(tmp_path):
    assert generation_for("my-agent") is GEN_3
    path = tmp_path / "c.toml"
    path.write_text('[generations]\n"my-*" = "2.x"\n"gemini-3.1-*" = "2.x"\ndefault = "2.x"\n')
    table = load_config(path).generations
    assert generation_for("models/my-agent", table) is GEN_2
    assert generation_for("gemini-3.1-flash-live-preview", table) is GEN_2  # a pattern overrides the version
    assert generation_for("other", table) is GEN_2
    assert generation_for("gemini-3.8-live", table) is GEN_3
    path.write_text('[generations]\ndefault = "4.x"\n')
    with pytest.raises(ConfigError, match="a generation is one of 2.x, 3.x"):
        load_config(path)


# ------------------------------------------------------------------ row 1: a seed with turnComplete

SEED = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hi, I am Ada."}]}], "turnComplete": True}}
HISTORY = {"historyConfig": {"initialHistoryInClientContent": True}}


async def test_2x_answers_a_seed_with_turn_complete_even_under_initial_history():
    # Pipecat on 2.5: historyConfig set, the context sent with turnComplete, and no nudge after it.
    engine = Counting()
    session, sent = await open_session(TWO, engine, HISTORY)
    await session.handle(frame(SEED))
    await settle(session)
    assert engine.asked == ["Hi, I am Ada."] and len(turn_completes(sent)) == 1


async def test_3x_takes_the_seed_as_history_until_a_nudge():
    engine = Counting()
    session, sent = await open_session(THREE, engine, HISTORY)
    await session.handle(frame(SEED))
    await settle(session)
    assert engine.asked == [] and not turn_completes(sent)
    await session.handle(frame({"realtimeInput": {"text": " "}}))  # Pipecat's nudge
    await settle(session)
    assert engine.asked == ["Hi, I am Ada."] and len(turn_completes(sent)) == 1


@pytest.mark.parametrize("model", [TWO, THREE])
async def test_without_history_config_a_seed_with_turn_complete_is_answered(model):
    engine = Counting()
    session, sent = await open_session(model, engine)
    await session.handle(frame(SEED))
    await settle(session)
    assert engine.asked == ["Hi, I am Ada."]


# ------------------------------------------------------------------ row 2: turnComplete after a toolCall

async def test_2x_ends_the_turn_with_the_tool_call_and_answers_in_a_new_turn():
    engine = RouterEngine(call("get_current_weather", {"location": "Seville"}), say("It is 30 degrees."))
    session, sent = await open_session(TWO, engine, declarations=[WEATHER])
    await session.handle(frame({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Rain in Seville?"}]}],
                                                  "turnComplete": True}}))
    await until(lambda: turn_completes(sent))  # ADK runs the tool only once this arrives
    [c] = calls(sent)
    after_call = sent[sent.index(next(m for m in sent if "toolCall" in m)) + 1]
    assert after_call["serverContent"]["turnComplete"] is True
    assert after_call["usageMetadata"]["promptTokenCount"] > 0
    assert not texts(sent)
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": c["id"], "name": c["name"], "response": {"temperature_c": 30}}]}}))
    await until(lambda: len(turn_completes(sent)) == 2)
    assert texts(sent) == "It is 30 degrees."
    tail = sent[sent.index(turn_completes(sent)[0]) + 1:]
    assert [k for m in tail for k in m.get("serverContent", {})][-2:] == ["generationComplete", "turnComplete"]
    assert tail[-1]["usageMetadata"]["responseTokenCount"] > 0


async def test_3x_keeps_the_turn_open_until_the_answer():
    engine = RouterEngine(call("get_current_weather", {"location": "Seville"}), say("It is 30 degrees."))
    session, sent = await open_session(THREE, engine, declarations=[WEATHER])
    await session.handle(frame({"realtimeInput": {"text": "Rain in Seville?"}}))
    await until(lambda: calls(sent))
    await asyncio.sleep(0.05)
    assert not turn_completes(sent)
    [c] = calls(sent)
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": c["id"], "name": c["name"], "response": {"temperature_c": 30}}]}}))
    await until(lambda: turn_completes(sent))
    assert len(turn_completes(sent)) == 1 and texts(sent) == "It is 30 degrees."


# ------------------------------------------------------------------ row 3: realtime-text triggers

async def test_3x_dot_after_replayed_history_is_a_trigger_not_words():
    # ADK on 3.x: history ending with the user, turnComplete, historyConfig, then realtimeInput.text ".".
    engine = Counting()
    session, sent = await open_session(THREE, engine, HISTORY)
    await session.handle(frame(SEED))
    await session.handle(frame({"realtimeInput": {"text": "."}}))
    await settle(session)
    assert engine.asked == ["Hi, I am Ada."]
    await session.handle(frame({"realtimeInput": {"text": "."}}))  # nothing unanswered: nothing at all
    await settle(session)
    assert engine.asked == ["Hi, I am Ada."] and len(turn_completes(sent)) == 1


async def test_2x_dot_is_words():
    engine = Counting()
    session, sent = await open_session(TWO, engine)
    await session.handle(frame({"realtimeInput": {"text": "."}}))
    await settle(session)
    assert engine.asked == ["."]


@pytest.mark.parametrize("model", [TWO, THREE])
async def test_whitespace_is_never_words(model):
    engine = Counting()
    session, sent = await open_session(model, engine)
    await session.handle(frame({"realtimeInput": {"text": " "}}))
    await settle(session)
    assert engine.asked == [] and not turn_completes(sent)


@pytest.mark.parametrize("model", [TWO, THREE])
async def test_livekit_placeholder_dot_after_the_users_words_is_not_a_turn(model):
    # LiveKit: the user's words (turnComplete false), then generate_reply's [user "."] with turnComplete.
    engine = Counting()
    session, sent = await open_session(model, engine)
    await session.handle(frame({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hello there"}]}],
                                                  "turnComplete": False}}))
    await session.handle(frame({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "."}]}],
                                                  "turnComplete": True}}))
    await settle(session)
    assert engine.asked == ["Hello there"]
