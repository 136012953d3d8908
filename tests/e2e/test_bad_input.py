"""Acceptance (issue 2): bad input gets the real service's close code and reason, through the
real SDK where it can send it and a raw WebSocket where it cannot, while a healthy session on
the same server carries on undisturbed."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest
import websockets
from google import genai
from google.genai import errors, types

pytestmark = pytest.mark.e2e

LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
TEXT = types.LiveConnectConfig(response_modalities=["TEXT"])


def client(server, key="good-key") -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url))


async def turn(session, text: str) -> tuple[str, list]:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    messages = [m async for m in session.receive()]
    return "".join(m.text or "" for m in messages), messages


async def raw_close(server, frames: list[str | bytes], *, query: str = "?key=good-key", path: str = LIVE_PATH) -> tuple[int, str]:
    """Send frames on a raw socket and return the server's close code and reason."""
    ctx = ssl.create_default_context(cafile=str(server.cert))
    uri = server.base_url.replace("https://", "wss://") + path + query
    async with websockets.connect(uri, ssl=ctx, max_size=1 << 20) as ws:
        for frame in frames:
            await ws.send(frame)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None, "server did not send a close frame"
            return closed.rcvd.code, closed.rcvd.reason


SETUP = json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview",
                              "generationConfig": {"responseModalities": ["TEXT"]}}})


async def test_wrong_key_is_refused_with_1007_through_the_sdk(scripted_server):
    with pytest.raises(errors.APIError) as info:
        async with client(scripted_server, key="wrong-key").aio.live.connect(model="gemini-live-2.5-flash-preview",
                                                                             config=TEXT):
            pass
    assert info.value.code == 1007
    assert "API key not valid" in info.value.details


async def test_missing_key_is_refused_with_1008(scripted_server):
    code, reason = await raw_close(scripted_server, [SETUP], query="")
    assert code == 1008 and "API key" in reason


async def test_any_configured_key_is_accepted_from_header_query_or_bearer(scripted_server):
    async with client(scripted_server, key="second-key").aio.live.connect(model="gemini-live-2.5-flash-preview",
                                                                          config=TEXT) as session:
        text, _ = await turn(session, "hi")
        assert text == "You said: hi"
    ctx = ssl.create_default_context(cafile=str(scripted_server.cert))
    uri = scripted_server.base_url.replace("https://", "wss://") + "//ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent"
    async with websockets.connect(uri, ssl=ctx, additional_headers={"Authorization": "Bearer good-key"}) as ws:
        await ws.send(SETUP)
        assert "setupComplete" in json.loads(await ws.recv())


async def test_unknown_model_is_1008_not_found(scripted_server):
    with pytest.raises(errors.APIError) as info:
        # Not a Gemini Live name (those all reach the default pipeline, as new ones appear).
        async with client(scripted_server).aio.live.connect(model="gpt-9-ultra-live", config=TEXT):
            pass
    assert info.value.code == 1008
    assert info.value.details.startswith("models/gpt-9-ultra-live is not found for API version v1")


@pytest.mark.parametrize("frames, needle", [
    (["{this is not json"], "Invalid JSON payload"),
    ([json.dumps({"clientContent": {"turns": [], "turnComplete": True}})], "first message must be setup"),
    ([json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview",
                            "generationConfig": {"temperature": "hot"}}})], "generation_config.temperature"),
    ([json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview", "flavour": "mint"}})], 'Unknown name "flavour"'),
    ([SETUP, json.dumps({"realtimeInput": {"text": 42}})], "realtime_input.text"),
    ([SETUP, SETUP], "setup must be the first and only"),
    ([SETUP, json.dumps({"realtimeInput": {"audio": {"data": "!!", "mimeType": "audio/pcm"}}})], "realtime_input.audio.data"),
    ([json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview",
                            "generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}})], "one response modality"),
])
async def test_bad_frames_close_with_1007_and_a_reason_naming_the_problem(scripted_server, frames, needle):
    code, reason = await raw_close(scripted_server, frames)
    assert code == 1007
    assert needle in reason


async def test_binary_frames_are_accepted_like_text_frames(scripted_server):
    ctx = ssl.create_default_context(cafile=str(scripted_server.cert))
    uri = scripted_server.base_url.replace("https://", "wss://") + LIVE_PATH + "?key=good-key"
    async with websockets.connect(uri, ssl=ctx) as ws:
        await ws.send(SETUP.encode())
        assert "setupComplete" in json.loads(await ws.recv())
        await ws.send(json.dumps({"realtimeInput": {"text": "binary"}}).encode())
        received = []
        while not received or "turnComplete" not in received[-1].get("serverContent", {}):
            received.append(json.loads(await ws.recv()))
        text = "".join(p["text"] for m in received for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))
        assert text == "You said: binary"


async def test_oversized_frame_is_refused_with_1009(scripted_server):
    code, _ = await raw_close(scripted_server, [SETUP, json.dumps({"realtimeInput": {"text": "x" * (17 << 20)}})])
    assert code == 1009


async def test_engine_failure_is_1011_to_the_sdk(scripted_server):
    with pytest.raises(errors.APIError) as info:
        async with client(scripted_server).aio.live.connect(model="gemini-live-2.5-flash-preview", config=TEXT) as s:
            await turn(s, "please crash now")
    assert info.value.code == 1011
    assert info.value.details == "Internal error occurred."


async def test_unknown_path_is_refused_at_the_handshake(scripted_server):
    ctx = ssl.create_default_context(cafile=str(scripted_server.cert))
    uri = scripted_server.base_url.replace("https://", "wss://") + "/ws/not.a.live.Service?key=good-key"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(uri, ssl=ctx):
            pass
    assert info.value.response.status_code == 403


async def test_rest_models_needs_a_valid_key(scripted_server):
    ctx = ssl.create_default_context(cafile=str(scripted_server.cert))
    async with httpx.AsyncClient(verify=ctx) as http:
        bad = await http.get(f"{scripted_server.base_url}/v1beta/models", headers={"x-goog-api-key": "nope"})
        good = await http.get(f"{scripted_server.base_url}/v1beta/models", headers={"x-goog-api-key": "good-key"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert good.status_code == 200 and good.json()["models"]


async def test_a_healthy_session_is_undisturbed_by_bad_ones(scripted_server):
    async with client(scripted_server).aio.live.connect(model="gemini-live-2.5-flash-preview", config=TEXT) as healthy:
        text, _ = await turn(healthy, "before")
        assert text == "You said: before"
        # While the healthy session is open, many bad ones come and go, some in mid-reply.
        bad = [raw_close(scripted_server, ["{broken"]) for _ in range(5)]
        bad += [raw_close(scripted_server, [SETUP, json.dumps({"bogus": 1})]) for _ in range(5)]
        bad += [raw_close(scripted_server, [SETUP], query="?key=wrong") for _ in range(5)]
        results = await asyncio.gather(*bad, turn(healthy, "during"))
        assert {code for code, _ in results[:-1]} == {1007}
        assert results[-1][0] == "You said: during"
        with pytest.raises(errors.APIError):
            async with client(scripted_server).aio.live.connect(model="gemini-live-2.5-flash-preview", config=TEXT) as s:
                await turn(s, "crash")
        text, _ = await turn(healthy, "after")
        assert text == "You said: after"


async def test_new_client_content_interrupts_the_reply(scripted_server):
    async with client(scripted_server).aio.live.connect(model="gemini-live-2.5-flash-preview", config=TEXT) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="say something long")]))
        first = [m async for m in _until(session, lambda m: bool(m.text))]
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="stop")]))
        rest = [m async for m in session.receive()]
        interrupted_at = next(i for i, m in enumerate(rest) if m.server_content and m.server_content.interrupted)
        assert rest[interrupted_at + 1:] and rest[-1].server_content.turn_complete
        assert not any(m.server_content and m.server_content.generation_complete for m in rest[:interrupted_at])
        partial = "".join(m.text or "" for m in first + rest[:interrupted_at])
        assert partial and "sixteen" not in partial
        text = "".join(m.text or "" for m in [m async for m in session.receive()])
        assert text == "You said: stop"


async def _until(session, predicate):
    async for message in session.receive():
        yield message
        if predicate(message):
            return
