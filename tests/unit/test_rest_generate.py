"""REST beside Live (server/rest_generate.py), in process: Google's token rules, model names, and
what an engine that calls tools natively is asked and answers. The SDK end to end is in
tests/e2e/test_rest_generate.py."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from openlive.config import Config, ModelEntry
from openlive.engines.llm.base import ChatRequest, Finished, TextDelta, ToolCall, ToolCallsMade
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.engines.vision.images import FrameLimits
from openlive.models import resolve_generate_model
from openlive.protocol.bounded_json import Limits
from openlive.protocol.messages import Tool
from openlive.server.auth import KeyChecker
from openlive.server.rest_generate import GenerateAPI, _must_call, image_tokens
from openlive.session.tools import ToolSet

WEATHER = {"functionDeclarations": [{"name": "get_weather", "description": "Weather in a city.",
                                     "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}]}


class NativeEngine:
    """An OpenAI-compatible server that calls tools itself: it calls get_weather when it may."""

    name = "native"
    tool_mode = "native"

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest):
        self.requests.append(request)
        if request.tools and request.tool_choice != "none":
            yield ToolCallsMade((ToolCall("c1", "get_weather", {"location": "Paris"}),))
        else:
            yield TextDelta("It is sunny.")
        yield Finished(prompt_tokens=10, completion_tokens=4)


class FakeEngines:
    def __init__(self, llm: Any) -> None:
        self.llms = {"default": llm}
        self.vision = None
        self.frame_limits = FrameLimits()

    async def wait_ready(self, timeout: float) -> bool:
        return True


def api_client(llm: Any) -> TestClient:
    async def body(request: Request) -> bytes:
        return await request.body()

    api = GenerateAPI(Config(), FakeEngines(llm), KeyChecker([]), limits=lambda: None, frame_limits=Limits(),
                      read_body=body)
    return TestClient(Starlette(routes=[Route("/{path:path}:{method}", api.handle, methods=["POST"])]))


def wav(seconds: float, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


@pytest.mark.parametrize("size, tokens", [((200, 300), 258), ((384, 384), 258), ((768, 432), 258),
                                          ((1600, 900), 6 * 258), ((800, 800), 4 * 258)])
def test_an_image_counts_as_google_counts_it(size, tokens):
    assert image_tokens(*size) == tokens


def test_audio_counts_32_tokens_a_second_and_other_media_are_refused():
    client = api_client(ScriptedEngine("default"))
    parts = [{"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(wav(2.0)).decode()}},
             {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(b"\0" * 48000).decode()}}]
    reply = client.post("/v1beta/models/gemini-2.5-flash:countTokens", json={"contents": [{"parts": parts}]})
    assert reply.json() == {"totalTokens": 64 + 32, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 96}]}
    mp3 = {"inlineData": {"mimeType": "audio/mpeg", "data": "AAAA"}}
    refused = client.post("/v1beta/models/gemini-2.5-flash:countTokens", json={"contents": [{"parts": [mp3]}]})
    assert refused.status_code == 400 and "audio/mpeg" in refused.json()["error"]["message"]
    pdf = {"inlineData": {"mimeType": "application/pdf", "data": "AAAA"}}
    asked = {"contents": [{"parts": [{"text": "Summarize"}, pdf]}]}
    refused = client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=asked)
    assert refused.status_code == 400 and "application/pdf" in refused.json()["error"]["message"]


@pytest.mark.parametrize("name, served", [("gemini-2.5-flash", True), ("models/gemini-3-flash-preview", True),
                                          ("gemini-live-2.5-flash-preview", True), ("my-agent", True),
                                          ("gpt-4o", False), ("models/", False)])
def test_any_gemini_name_and_every_configured_one_is_served(name, served):
    config = Config(models={"my-agent": ModelEntry("my-agent")})
    assert (resolve_generate_model(config, name) is not None) == served


def test_mode_any_leaves_the_model_no_way_but_a_call():
    schema = ToolSet().schema()
    assert _must_call(schema) == schema  # nothing to call: unchanged
    toolset = ToolSet.from_setup([Tool.model_validate(WEATHER)])
    must = _must_call(toolset.schema())
    assert "anyOf" not in must and must["properties"]["tool"] == {"const": "get_weather"}


def test_an_engine_calling_tools_natively_is_given_them_and_its_calls_come_back_as_function_calls():
    engine = NativeEngine()
    client = api_client(engine)
    path = "/v1alpha/models/gemini-2.5-flash:generateContent"
    asked = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": [WEATHER]}
    reply = client.post(path, json=asked).json()
    parts = reply["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["name"] for p in parts] == ["get_weather"]
    assert parts[0]["functionCall"]["args"] == {"location": "Paris"} and parts[0]["functionCall"]["id"]
    assert [t["function"]["name"] for t in engine.requests[-1].tools] == ["get_weather"]
    # The result, read back as a tool message, and mode NONE: the server is told not to call.
    history = [*asked["contents"], {"role": "model", "parts": parts},
               {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sun"}}}]}]
    reply = client.post(path, json={**asked, "contents": history,
                                    "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}).json()
    assert reply["candidates"][0]["content"]["parts"] == [{"text": "It is sunny."}]
    request = engine.requests[-1]
    assert request.tool_choice == "none"
    tool_message = next(m for m in request.messages if m.role == "tool")
    assert tool_message.tool_call_id == parts[0]["functionCall"]["id"] and '"sky": "sun"' in tool_message.content
