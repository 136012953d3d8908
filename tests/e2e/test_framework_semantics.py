"""What frameworks on the SDK rely on (issue 14, in part): their default model names connect,
Pipecat's whitespace turn trigger does not interrupt the reply, initial history (LiveKit's
historyConfig) gets no reply, and every turnComplete carries usageMetadata. The unmodified SDK against a real server process (scripted engine)."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import types

pytestmark = pytest.mark.e2e


def client(server) -> genai.Client:
    return genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=server.base_url))


@pytest.mark.parametrize("model", ["models/gemini-3.8-live", "gemini-3.1-flash-live-preview",
                                   "gemini-2.5-flash-native-audio-preview-12-2025"])
async def test_framework_default_model_names_connect(scripted_server, model):
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client(scripted_server).aio.live.connect(model=model, config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        text = "".join([m.text or "" async for m in session.receive()])
    assert text == "You said: hello"


async def test_whitespace_realtime_text_after_client_content_does_not_interrupt(scripted_server):
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client(scripted_server).aio.live.connect(model="models/gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="long")]))
        await session.send_realtime_input(text=" ")  # what Pipecat sends for 3.x models
        messages = [m async for m in session.receive()]
        # Nothing else is coming: the trigger made no second turn.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session.receive().__anext__(), 1.0)
    assert not any(m.server_content and m.server_content.interrupted for m in messages)
    assert "".join(m.text or "" for m in messages).startswith("one two three")
    assert messages[-1].server_content.turn_complete and messages[-1].usage_metadata.total_token_count > 0


async def test_initial_history_in_client_content_gets_no_reply(scripted_server):
    """LiveKit sends its chat context this way to 3.x models: history, answered by nothing."""
    config = types.LiveConnectConfig(response_modalities=["TEXT"],
                                     history_config=types.HistoryConfig(initial_history_in_client_content=True))
    async with client(scripted_server).aio.live.connect(model="models/gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=[
            types.Content(role="user", parts=[types.Part(text="earlier question")]),
            types.Content(role="model", parts=[types.Part(text="earlier answer")])], turn_complete=True)
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        messages = [m async for m in session.receive()]  # up to the first turnComplete
    # The first reply is to the question after the history: the history itself got none.
    assert "".join(m.text or "" for m in messages) == "You said: hello"


async def test_whitespace_realtime_text_after_initial_history_starts_the_reply(scripted_server):
    """Pipecat seeds a 3.x session so: history ending with the user, then realtimeInput.text " "
    (3.x models run inference on realtime input); the reply answers the history."""
    config = types.LiveConnectConfig(response_modalities=["TEXT"],
                                     history_config=types.HistoryConfig(initial_history_in_client_content=True))
    async with client(scripted_server).aio.live.connect(model="models/gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=[types.Content(role="user", parts=[types.Part(text="say hi")])],
                                          turn_complete=True)
        await session.send_realtime_input(text=" ")
        messages = [m async for m in session.receive()]
    assert "".join(m.text or "" for m in messages) == "You said: say hi"


async def test_an_interrupted_turn_complete_carries_usage_metadata(scripted_server):
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client(scripted_server).aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="long")]))
        first = [m async for m in _until_text(session)]
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="stop")]))
        cut = [m async for m in session.receive()]
    assert any(m.server_content and m.server_content.interrupted for m in first + cut)
    ends = [m for m in first + cut if m.server_content and m.server_content.turn_complete]
    assert ends and all(m.usage_metadata and m.usage_metadata.total_token_count > 0 for m in ends)


async def _until_text(session):
    """The first messages of a reply, up to its first text."""
    async for message in session.receive():
        yield message
        if message.text:
            return
