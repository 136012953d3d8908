"""Acceptance (issue 6): sessions that last, through the unmodified google-genai SDK.

A fact stated in a session survives a client disconnect, a SIGKILL of the server, and a move to
another server process sharing Redis; transparent mode says exactly which messages to replay;
compression keeps a long session inside its window; goAway comes before the deadline.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from tests.support.audio import read_wav_16k
from tests.support.redis_server import redis_server
from tests.support.scripts import ECHO_INSTRUCTION, RECALL_NAME
from tests.support.turns import turn_messages
from tests.support.wer import wer

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
DATA = Path(__file__).resolve().parents[1] / "data"

SCRIPT = "token_delay_ms = 5\n" + RECALL_NAME + ECHO_INSTRUCTION + r"""
[[reply]]
match = "worst of times"
recall = 'my name is (\w+)'
text = "You quoted Dickens, {recall}."

[[reply]]
match = "weather"
tool = "get_weather"
args = [{ city = "Paris" }]
"""


def scripted_config(tmp: Path, extra: str = "", store: str | None = None) -> str:
    script = tmp / "replies.toml"
    script.write_text(SCRIPT)
    store = store or f'path = "{tmp / "state.sqlite3"}"'
    return f"""
[server]
api_keys = ["key-a", "key-b", "key-c"]

[llm.default]
engine = "scripted"
script = "{script}"

[store]
{store}
{extra}
"""


def client(server: ServerProcess, key: str = "key-a", *, vertex: bool = False, version: str | None = None) -> genai.Client:
    http = types.HttpOptions(base_url=server.base_url, api_version=version)
    if vertex:
        return genai.Client(vertexai=True, api_key=key, http_options=http)
    return genai.Client(api_key=key, http_options=http)


def text_config(handle: str | None = None, **extra) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=["TEXT"],
                                   session_resumption=types.SessionResumptionConfig(handle=handle), **extra)


async def say(session, text: str) -> tuple[str, str | None]:
    """One text turn: the reply, and the last resumption handle that came with it."""
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    reply, handle = [], None
    async for message in session.receive():
        if message.text:
            reply.append(message.text)
        update = message.session_resumption_update
        if update and update.resumable and update.new_handle:
            handle = update.new_handle
    return "".join(reply), handle


async def first_handle(session) -> str:
    """The handle a session gets right after setup (before any turn)."""
    async for message in session.receive():
        update = message.session_resumption_update
        if update and update.resumable and update.new_handle:
            return update.new_handle
    raise AssertionError("no handle")


@pytest.fixture
def scripted(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Callable[[str], ServerProcess]:
    return lambda extra="": start_server(scripted_config(tmp_path, extra))


async def test_a_fact_survives_disconnect_and_resume(scripted):
    server = scripted()
    live = client(server).aio.live
    async with live.connect(model=MODEL, config=text_config()) as session:
        assert await first_handle(session)
        reply, handle = await say(session, "Hello, my name is Zorblax.")
        assert reply == "You said: Hello, my name is Zorblax."
        assert handle
    # The client went away; a new connection with the handle carries on the conversation.
    async with live.connect(model=MODEL, config=text_config(handle)) as session:
        reply, new_handle = await say(session, "What is my name?")
        assert reply == "Your name is Zorblax."
        assert new_handle and new_handle != handle
    # Without the handle it is a new conversation that never heard the name.
    async with live.connect(model=MODEL, config=text_config()) as session:
        reply, _ = await say(session, "What is my name?")
        assert reply == "Your name is unknown."


async def test_bad_or_foreign_handle_is_refused(scripted):
    server = scripted()
    async with client(server).aio.live.connect(model=MODEL, config=text_config()) as session:
        _, handle = await say(session, "My name is Zorblax.")
    for key, bad in (("key-a", "not-a-handle"), ("key-b", handle)):  # another key may not resume it
        with pytest.raises(errors.APIError) as caught:
            async with client(server, key).aio.live.connect(model=MODEL, config=text_config(bad)) as session:
                await say(session, "What is my name?")
        assert caught.value.code == 1008 and "session not found" in str(caught.value)


async def test_resumable_false_while_a_tool_call_is_in_flight(scripted):
    server = scripted()
    weather = types.FunctionDeclaration(name="get_weather", description="Weather in a city",
                                        parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    config = text_config(tools=[types.Tool(function_declarations=[weather])])
    async with client(server).aio.live.connect(model=MODEL, config=config) as session:
        await first_handle(session)
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="weather?")]))
        updates = []
        async for message in turn_messages(session):
            if message.session_resumption_update:
                updates.append(message.session_resumption_update)
            if message.tool_call:
                assert updates and updates[-1].resumable is False and not updates[-1].new_handle
                call = message.tool_call.function_calls[0]
                await session.send_tool_response(function_responses=[types.FunctionResponse(
                    id=call.id, name=call.name, response={"forecast": "sunny"})])
        # Once the call is answered and the turn is over, the state can be resumed again.
        assert updates[-1].resumable is True and updates[-1].new_handle


async def test_a_fact_survives_sigkill_of_the_server(start_server, tmp_path):
    """With the real embedded model: kill -9 the server mid-reply, start it again, resume, and ask."""
    config = f'[store]\npath = "{tmp_path / "state.sqlite3"}"\n'
    server = start_server(config)
    live_config = lambda handle=None: text_config(handle, temperature=0,  # noqa: E731
                                                  system_instruction="Answer in one short sentence.")
    async with client(server).aio.live.connect(model=MODEL, config=live_config()) as session:
        _, handle = await say(session, "Hello! My name is Zorblax. Please remember it.")
        assert handle
        # Kill it mid-reply: the next turn's first words are out, the rest never comes.
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(
            text="Tell me a long story about a lighthouse keeper.")]))
        async for message in session.receive():
            if message.text:
                break
        server.stop(signal.SIGKILL)  # the socket is still open
    assert server.process.returncode == -signal.SIGKILL
    restarted = start_server(config)
    async with client(restarted).aio.live.connect(model=MODEL, config=live_config(handle)) as session:
        reply, _ = await say(session, "What is my name?")
    assert "zorblax" in reply.lower(), reply


async def test_resume_on_another_node_sharing_redis(start_server, tmp_path):
    with redis_server() as url:
        store = f'backend = "redis"\nurl = "{url}"'
        node_a = start_server(scripted_config(tmp_path, "[limits]\nsessions_per_key = 2", store))
        node_b = start_server(scripted_config(tmp_path, "[limits]\nsessions_per_key = 2", store))
        async with client(node_a).aio.live.connect(model=MODEL, config=text_config()) as session:
            _, handle = await say(session, "My name is Zorblax.")
        async with client(node_b).aio.live.connect(model=MODEL, config=text_config(handle)) as session:
            reply, _ = await say(session, "What is my name?")
        assert reply == "Your name is Zorblax."
        # The session limit is one count for the whole deployment: two on A, the third on B is refused.
        async with client(node_a).aio.live.connect(model=MODEL, config=text_config()) as one, \
                client(node_a).aio.live.connect(model=MODEL, config=text_config()) as two:
            with pytest.raises(errors.APIError) as caught:
                async with client(node_b).aio.live.connect(model=MODEL, config=text_config()) as three:
                    await say(three, "hello")
            assert caught.value.code == 1011 and "concurrent sessions" in str(caught.value)
            assert (await say(one, "still here"))[0] == "You said: still here"
            assert (await say(two, "me too"))[0] == "You said: me too"


async def test_transparent_mode_replays_what_was_not_consumed(scripted):
    """Vertex transparent mode: a disconnect mid-utterance, then replaying after the index loses nothing."""
    server = scripted()
    speech = read_wav_16k(DATA / "two_cities_16k.wav")
    chunk = 3200  # 100 ms
    pieces = [speech[i:i + chunk] for i in range(0, len(speech), chunk)]
    config = lambda handle=None: types.LiveConnectConfig(  # noqa: E731
        response_modalities=["TEXT"], input_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle, transparent=True))
    live = client(server, vertex=True).aio.live
    sent: list[tuple[int, dict]] = []  # (index, what) of every message after setup, as a client logs them

    async def send(session, **what):
        sent.append((len(sent) + 1, what))
        if "text" in what:
            await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=what["text"])]),
                                              turn_complete=False)
        else:
            await session.send_realtime_input(audio=types.Blob(data=what["audio"], mime_type="audio/pcm;rate=16000"))

    last = None
    async with live.connect(model=MODEL, config=config()) as session:
        await send(session, text="My name is Zorblax.")
        async for message in session.receive():
            update = message.session_resumption_update
            if update and update.new_handle and update.last_consumed_client_message_index == 1:
                last = update
                break
        # Half a second of silence, then most of the sentence, and the connection drops.
        await send(session, audio=b"\0" * 16000)
        for piece in pieces[: len(pieces) * 3 // 4]:
            await send(session, audio=piece)
        await asyncio.sleep(0.5)
    assert last is not None
    consumed = last.last_consumed_client_message_index
    first_speech = 3  # index 2 was the silence
    assert consumed < first_speech, "speech the server had not turned into a turn was reported consumed"
    replay = [what for index, what in sent if index > consumed]
    async with live.connect(model=MODEL, config=config(last.new_handle)) as session:
        for what in replay:
            await send(session, **what)
        for piece in pieces[len(pieces) * 3 // 4:]:
            await send(session, audio=piece)
        await send(session, audio=b"\0" * 96000)  # the end of speech (3 s: the end-of-turn model's longest wait)
        heard, reply = [], []
        async for message in session.receive():
            sc = message.server_content
            if sc and sc.input_transcription and sc.input_transcription.text:
                heard.append(sc.input_transcription.text)
            if message.text:
                reply.append(message.text)
    said = "".join(heard).lower()  # the pieces of live captions (2.x), each with its leading space
    assert said.startswith("it was the best of times"), said
    assert wer("it was the best of times it was the worst of times it was the age of wisdom", said) < 0.2, said
    assert "".join(reply) == "You quoted Dickens, Zorblax."


async def test_compression_keeps_a_long_session_going_with_its_instruction(scripted):
    server = scripted('[models]\n"small-window" = { llm = "default", context_window = 400 }\n')
    compression = types.ContextWindowCompressionConfig(trigger_tokens=300,
                                                       sliding_window=types.SlidingWindow(target_tokens=150))
    config = text_config(system_instruction="You are Captain Zorblax of the starship Teacup.",
                         context_window_compression=compression)
    filler = "Here is a long sentence about nothing much at all, repeated to fill the window. " * 2
    async with client(server).aio.live.connect(model="small-window", config=config) as session:
        for i in range(30):  # about 1500 tokens: far past the 400-token window
            reply, _ = await say(session, f"Turn {i}. {filler}")
            assert reply.startswith(f"You said: Turn {i}.")
        reply, _ = await say(session, "What was your instruction?")
    assert reply.startswith("I was told: You are Captain Zorblax of the starship Teacup.")
    kept = int(reply.rsplit("(", 1)[1].split()[0])
    assert 1 <= kept < 20, reply  # the oldest turns were dropped, the newest kept


async def test_without_compression_a_session_past_its_window_ends(scripted):
    server = scripted('[models]\n"small-window" = { llm = "default", context_window = 400 }\n')
    filler = "Here is a long sentence about nothing much at all, repeated to fill the window. " * 2
    turns = 0
    with pytest.raises(errors.APIError) as caught:
        async with client(server).aio.live.connect(model="small-window", config=text_config()) as session:
            for turns in range(1, 30):
                await say(session, f"Turn {turns}. {filler}")
    assert caught.value.code == 1007
    assert "exceeds the maximum number of tokens allowed (400)" in str(caught.value)
    assert 3 <= turns < 20


async def test_goaway_comes_time_left_before_the_close_then_resume_continues(scripted):
    server = scripted("[sessions]\nlifetime_s = 5\ngoaway_lead_s = 2\n")
    live = client(server).aio.live
    go_away_at = time_left = None
    handle = None
    with pytest.raises(errors.APIError) as caught:
        async with live.connect(model=MODEL, config=text_config()) as session:
            _, handle = await say(session, "My name is Zorblax.")
            while True:
                async for message in session.receive():
                    if message.go_away:
                        go_away_at, time_left = time.monotonic(), message.go_away.time_left
    closed_at = time.monotonic()
    assert caught.value.code == 1011 and "Deadline expired" in str(caught.value)
    assert time_left is not None and time_left.endswith("s") and 1.5 <= float(time_left[:-1]) <= 2.0
    # The close came after the goAway, about timeLeft later (loose: this is a correctness check).
    assert go_away_at is not None and 1.0 <= closed_at - go_away_at <= 6.0
    async with live.connect(model=MODEL, config=text_config(handle)) as session:
        reply, _ = await say(session, "What is my name?")
    assert reply == "Your name is Zorblax."


async def test_context_update_changes_instruction_and_tools_from_the_next_turn(scripted):
    server = scripted()
    weather = types.FunctionDeclaration(name="get_weather", description="Weather in a city",
                                        parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    async with client(server).aio.live.connect(model=MODEL, config=text_config(system_instruction="Be brief.")) as s:
        assert (await say(s, "What is your instruction?"))[0].startswith("I was told: Be brief.")
        await s.send_context_update(system_instruction="You are a pirate.",
                                    tools=[types.Tool(function_declarations=[weather])])
        assert (await say(s, "What is your instruction?"))[0].startswith("I was told: You are a pirate.")
        await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="weather in Paris?")]))
        async for message in turn_messages(s):
            if message.tool_call:
                call = message.tool_call.function_calls[0]
                assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
                await s.send_tool_response(function_responses=[types.FunctionResponse(
                    id=call.id, name=call.name, response={"forecast": "sunny"})])
        # A system turn sent as clientContent is a new instruction too.
        await s.send_client_content(turns=types.Content(role="system", parts=[types.Part(text="Speak like a poet.")]),
                                    turn_complete=False)
        assert (await say(s, "What is your instruction?"))[0].startswith("I was told: Speak like a poet.")
