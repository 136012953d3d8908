"""Acceptance (issue 7): openlive's own Python client against a real `openlive serve` process.

The LLM is scripted (deterministic replies); speech recognition and synthesis are the real
embedded models, so audio turns are heard and answered in real speech over a real TLS socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openlive.client import LiveError, LiveMessage, LiveModel, LiveSession, MemoryAudioDevice
from tests.support.audio import FIRST_SENTENCE_TEXT, first_sentence_16k
from tests.support.scripts import RECALL_NAME
from tests.support.wer import wer

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
KEY = "client-key"
DATA = Path(__file__).resolve().parents[1] / "data"
UTTERANCE = first_sentence_16k()  # real speech, one sentence: one turn
UTTERANCE_TEXT = FIRST_SENTENCE_TEXT

SCRIPT = "token_delay_ms = 5\n" + RECALL_NAME + r'''
[[reply]]
match = "crash"
error = "simulated engine failure"

[[reply]]
match = "weather"
tool = "get_weather"
args = [{ city = "Paris" }]

[[reply]]
match = "worst of times"
text = "You quoted Dickens."

[[reply]]
match = "story"
text = """Here is a story. Once upon a time a small fox lived in a green forest. \
Every morning she ran to the river to drink. One day she met an old turtle who knew many secrets. \
The turtle told her about a hidden valley full of berries. The fox thanked him and set off at once. \
She walked for three days and three nights. At last she found the valley, and she lived there happily ever after."""
'''

WEATHER_TOOL = {"function_declarations": [{
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}


def server_config(tmp: Path, extra: str = "") -> str:
    script = tmp / "replies.toml"
    script.write_text(SCRIPT)
    return f"""
[server]
api_keys = ["{KEY}"]

[llm.default]
engine = "scripted"
script = "{script}"

[store]
path = "{tmp / 'state.sqlite3'}"
{extra}
"""


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    return start_server(server_config(tmp_path_factory.mktemp("client")))


def model(server: ServerProcess, key: str = KEY, name: str = MODEL, vertex: bool = False, **config) -> LiveModel:
    config.setdefault("response_modalities", ["TEXT"])
    return LiveModel(name, config, base_url=server.base_url, api_key=key, vertex=vertex)


async def turn(session: LiveSession, timeout: float = 30) -> list[LiveMessage]:
    return [m async for m in session.receive_turn(timeout=timeout)]


def text_of(messages: list[LiveMessage]) -> str:
    return "".join(m.text or "" for m in messages)


@pytest.mark.parametrize("vertex", [False, True])
async def test_a_text_turn(server, vertex):
    async with model(server, vertex=vertex, system_instruction="Be brief.").connect() as session:
        assert session.session_id
        await session.send_text("Hello there")
        messages = await turn(session)
    assert text_of(messages) == "You said: Hello there"
    assert messages[-1].turn_complete and messages[-1].usage["totalTokenCount"] > 0
    assert any(m.generation_complete for m in messages)


async def test_errors_are_live_errors_with_the_close_code(server):
    with pytest.raises(LiveError) as caught:
        await model(server, key="wrong-key").connect()
    assert caught.value.code == 1007 and "API key not valid" in caught.value.reason
    with pytest.raises(LiveError) as caught:
        async with model(server, name="no-such-model").connect() as session:
            await session.next_message(timeout=10)
    assert caught.value.code == 1008 and "not found" in caught.value.reason


async def test_an_audio_turn_is_transcribed_and_answered_in_speech(server):
    config = {"response_modalities": ["AUDIO"], "input_audio_transcription": {}, "output_audio_transcription": {}}
    async with model(server, **config).connect() as session:
        silence = b"\0\0" * 16000
        step = 3200  # 100 ms, sent at real-time pace like a microphone
        started = time.monotonic()
        pcm = silence[:16000] + UTTERANCE + silence * 3  # enough for the end-of-turn model's longest wait
        for i in range(0, len(pcm), step):
            await session.send_audio(pcm[i:i + step])
            await asyncio.sleep(max(0.0, started + (i + step) / 32000 - time.monotonic()))
        messages = await turn(session)
    heard = " ".join(m.input_transcription for m in messages if m.input_transcription)
    assert wer(UTTERANCE_TEXT, heard) < 0.2, heard
    assert "".join(m.output_transcription or "" for m in messages).strip() == "You quoted Dickens."
    audio = b"".join(m.audio for m in messages if m.audio)
    assert {m.audio_rate for m in messages if m.audio} == {24000}
    seconds = len(audio) / 2 / 24000
    assert 0.6 < seconds < 5.0, seconds  # three words of speech
    assert np.abs(np.frombuffer(audio, "<i2")).max() > 1000  # not silence


async def test_a_tool_round_trip(server):
    async with model(server, tools=[WEATHER_TOOL]).connect() as session:
        await session.send_text("What is the weather in Paris?")
        calls = []
        async for message in session.receive_turn(timeout=30):
            if message.tool_call:
                calls += message.tool_call
                await session.send_tool_response([c.response({"forecast": "sunny"}) for c in message.tool_call])
            elif message.text:
                break
        rest = [message] + await turn(session)
    [call] = calls
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"}) and call.id
    assert "sunny" in text_of(rest)


async def test_interruption_flushes_playback(server):
    flushed = []
    async with model(server, response_modalities=["AUDIO"]).connect() as session:
        device = MemoryAudioDevice(input_rate=16000, output_rate=48000)
        conversation = await session.start_audio_conversation(device, on_interrupted=lambda: flushed.append(
            conversation.player.queued))
        await session.send_text("Tell me a story.")
        seen: list[LiveMessage] = []
        while not any(m.audio for m in seen):
            seen.append(await session.next_message(timeout=30))
        await asyncio.sleep(0.3)
        # The speaker has started: 0.3 s played at 48 kHz. (Its first 0.1 s, the breath of "Here",
        # peaked at 757 in one synthesis of ten: Piper samples noise, so no two takes are alike.)
        device.play(14400)
        assert conversation.player.queued > 0  # more of the story is waiting to be played
        await session.send_text("Stop, what is my name?")
        rest = await turn(session)
        assert any(m.interrupted for m in rest)
        assert flushed == [0] and conversation.flushes == 1
        spoken = np.concatenate(device.played)
        assert np.abs(spoken).max() > 1000  # resampled to 48 kHz and played
        await session.stop_audio_conversation()
        assert not device.started
        answer = await turn(session)  # the new question is answered after the interrupted turn
        assert any(m.audio for m in answer)


async def test_the_sync_wrapper(server):
    def talk() -> str:
        with model(server).connect_sync() as session:
            session.send_text("Hello from a thread")
            return "".join(m.text or "" for m in session.receive_turn(timeout=30))

    assert await asyncio.to_thread(talk) == "You said: Hello from a thread"


async def test_resumes_by_itself_after_a_dropped_connection(server):
    """Transparent mode: the connection drops; messages sent meanwhile go out after the resume."""
    config = {"session_resumption": {"transparent": True}}
    async with model(server, **config).connect() as session:
        await session.send_text("Hello, my name is Zorblax.")
        assert text_of(await turn(session)) == "You said: Hello, my name is Zorblax."
        assert session.handle  # it came with the reply, before turnComplete
        session._ws.transport.abort()  # the network fails under the session
        await session.send_text("What is my name?")  # queued or replayed: not lost
        messages = await turn(session)
        assert session.resume_count == 1 and "connection closed (1006" in session.last_resume_reason
    assert text_of(messages) == "Your name is Zorblax."


async def test_a_turn_that_fails_on_every_resume_ends_the_session(server):
    async with model(server, session_resumption={}).connect() as session:
        await session.send_text("crash")
        with pytest.raises(LiveError) as caught:
            await turn(session)
    assert caught.value.code == 1011 and session.resume_count == 3


async def test_resumes_by_itself_after_go_away(start_server, tmp_path):
    server = start_server(server_config(tmp_path, "[sessions]\nlifetime_s = 5\ngoaway_lead_s = 2\n"))
    async with model(server, session_resumption={}).connect() as session:
        started = time.monotonic()
        await session.send_text("Hello, my name is Zorblax.")
        assert text_of(await turn(session)) == "You said: Hello, my name is Zorblax."
        go_away = None
        while go_away is None:
            go_away = (await session.next_message(timeout=10)).go_away
        assert 1.5 <= go_away <= 2.0
        await asyncio.wait_for(session.resumed.wait(), 3)
        assert session.resume_count == 1 and session.last_resume_reason == "goAway"
        await asyncio.sleep(max(0.0, started + 5.5 - time.monotonic()))  # past the first connection's deadline
        await session.send_text("What is my name?")
        messages = await turn(session)
        assert session.error is None
    assert text_of(messages) == "Your name is Zorblax."
