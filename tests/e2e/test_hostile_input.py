"""Acceptance (issue 13): validation that cannot crash.

Frames a fuzzer found to end sessions with 1011 and a traceback (NaN and 1e400 sampling values,
a 5,000-digit seed, lone UTF-16 surrogates, JSON nested 10,000 deep, schemas that are numbers,
lists or loops) are refused the way the real service refuses a bad request: 1007 with a reason
(1009 for a frame over the size limit). REST bodies get 400 in Google's error shape, never 500.
A healthy session on the same server carries on through all of it, and the server logs no
traceback: a 1011 is only ever a real fault of ours.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest
import websockets
from google import genai
from google.genai import types

pytestmark = pytest.mark.e2e

LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
MODEL = "models/gemini-live-2.5-flash-preview"
SETUP = json.dumps({"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}})
DEEP = "[" * 10_000 + "]" * 10_000


def setup_with(raw_generation_config: str) -> str:
    """A setup frame with generationConfig written as raw JSON text (json.dumps cannot write NaN or 1e400)."""
    return '{"setup": {"model": "%s", "generationConfig": {%s}}}' % (MODEL, raw_generation_config)


def setup_with_schema(key: str, schema: object) -> str:
    return json.dumps({"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]},
                                 "tools": [{"functionDeclarations": [{"name": "f", key: schema}]}]}})


# (case, frames to send, expected close code, a piece of the reason)
HOSTILE: list[tuple[str, list[str | bytes], int, str]] = [
    ("NaN temperature", [setup_with('"temperature": NaN')], 1007, "temperature"),
    ("1e400 temperature", [setup_with('"temperature": 1e400')], 1007, "temperature"),
    ("1e400 topK", [setup_with('"topK": 1e400')], 1007, "top_k"),
    ("temperature out of range", [setup_with('"temperature": 7')], 1007, "must be in [0, 2]"),
    ("negative maxOutputTokens", [setup_with('"maxOutputTokens": -5')], 1007, "max_output_tokens"),
    ("1e30 maxOutputTokens", [setup_with('"maxOutputTokens": 1e30')], 1007, "max_output_tokens"),
    ("5,000-digit seed", [setup_with('"seed": ' + "9" * 5000)], 1007, "seed"),
    ("Infinity penalty", [setup_with('"presencePenalty": "Infinity"')], 1007, "presence_penalty"),
    ("surrogate in the model name", ['{"setup": {"model": "models/\\ud800"}}'], 1007, "setup.model"),
    ("surrogate in realtime text", [SETUP, '{"realtimeInput": {"text": "hi \\ud800"}}'], 1007, "realtime_input.text"),
    ("surrogate in a turn", [SETUP, '{"clientContent": {"turns": [{"role": "user", "parts": [{"text": "\\udfff"}]}]}}'],
     1007, "parts[0].text"),
    ("surrogate in the system instruction",
     ['{"setup": {"model": "%s", "systemInstruction": {"parts": [{"text": "\\ud800"}]}}}' % MODEL], 1007,
     "system_instruction"),
    ("surrogate in a tool response", [SETUP, '{"toolResponse": {"functionResponses": [{"id": "1", "response": '
                                             '{"result": "\\ud800"}}]}}'], 1007, "response.result"),
    ("deep nesting first", [DEEP], 1007, "Nested more than 100 levels"),
    ("deep nesting after setup", [SETUP, '{"realtimeInput": {"text": ' + DEEP + "}}"], 1007, "Nested more than"),
    ("deep nesting in a binary frame", [SETUP, DEEP.encode()], 1007, "Nested more than"),
    ("schema that is a number", [setup_with_schema("parametersJsonSchema", 5)], 1007, "must be an object, not int"),
    ("schema that is a list", [setup_with_schema("parameters", [1, 2])], 1007, "must be an object, not a list"),
    ("schema with a $ref loop", [setup_with_schema("parametersJsonSchema", {"$ref": "#"})], 1007, "$ref loop"),
    ("absurd sample rate", [SETUP, json.dumps({"realtimeInput": {"audio": {
        "data": "AAAA", "mimeType": "audio/pcm;rate=" + "9" * 5000}}})], 1007, "unsupported audio rate"),
    ("oversized frame", [SETUP, json.dumps({"realtimeInput": {"text": "x" * (17 << 20)}})], 1009, ""),
]


async def raw_close(server, frames: list[str | bytes]) -> tuple[int, str]:
    """Send frames on a raw socket; the server's close code and reason."""
    ctx = ssl.create_default_context(cafile=str(server.cert))
    uri = server.base_url.replace("https://", "wss://") + LIVE_PATH + "?key=good-key"
    async with websockets.connect(uri, ssl=ctx, max_size=1 << 20) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None, "server did not send a close frame"
            return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("the server kept the socket open")


async def turn(session, text: str) -> str:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    return "".join([m.text or "" async for m in session.receive()])


async def test_hostile_frames_are_refused_while_a_healthy_session_carries_on(scripted_server):
    log_start = len(scripted_server.log())
    client = genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=scripted_server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as healthy:
        assert await turn(healthy, "before") == "You said: before"
        results = await asyncio.gather(*(raw_close(scripted_server, frames) for _, frames, _, _ in HOSTILE),
                                       turn(healthy, "during"))
        assert results[-1] == "You said: during"
        for (case, _, code, needle), (got_code, reason) in zip(HOSTILE, results[:-1]):
            assert (got_code, needle in reason) == (code, True), f"{case}: {got_code} {reason!r}"
            assert reason, f"{case}: a close without a reason"
            assert len(reason.encode("utf-8")) <= 123
        assert await turn(healthy, "after") == "You said: after"
    log = scripted_server.log()[log_start:]
    assert "Traceback" not in log and "Logging error" not in log, log[-4000:]
    assert "closing 1011" not in log


@pytest.mark.parametrize("body, needle", [
    (b'{"uses": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "Nested more than 100 levels"),
    (b'{"uses": 1, "bidiGenerateContentSetup": {"model": "m", "generationConfig": {"temperature": NaN}}}',
     "temperature', NaN"),
    (b'{"bidiGenerateContentSetup": {"model": "models/\\ud800"}}', "not valid UTF-8"),
    (b'{"uses": ' + b"9" * 5000 + b"}", "number out of range"),
    (b'{"bidiGenerateContentSetup": {"model": "m", "generationConfig": {"topK": -1}}}', "top_k"),
    (b'{"bidiGenerateContentSetup": {"model": "m", "tools": [{"functionDeclarations": [{"name": "f", '
     b'"parametersJsonSchema": 5}]}]}}', "must be an object, not int"),
])
async def test_hostile_auth_token_bodies_are_400_in_googles_shape(scripted_server, body, needle):
    log_start = len(scripted_server.log())
    ctx = ssl.create_default_context(cafile=str(scripted_server.cert))
    async with httpx.AsyncClient(verify=ctx) as http:
        reply = await http.post(f"{scripted_server.base_url}/v1alpha/auth_tokens", content=body,
                                headers={"x-goog-api-key": "good-key", "content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert needle in error["message"]
    assert "Traceback" not in scripted_server.log()[log_start:]
