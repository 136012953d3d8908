"""Acceptance (issue 2): the remote engine against a real OpenAI-compatible server on loopback.

The server is llama.cpp's own HTTP server (from xllamacpp) in a separate process, the same
program users run with `llama-server`; openlive reaches it only over HTTP.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time

import httpx
import pytest
from google import genai
from google.genai import errors, types

from openlive.engines.llm.packaged import resolve_model_file

from .conftest import free_port

pytestmark = pytest.mark.e2e


def start_llama(data_dir, tmp_path_factory, *flags: str):
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "llama.log"
    model = resolve_model_file("qwen2.5-coder-0.5b", data_dir, progress=False)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "openlive.engines.llm.llama_server", "--model", str(model),
                                    "--port", str(port), "--n-parallel", "2", *flags],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    return process, url, log


@pytest.fixture(scope="module")
def llama_server(data_dir, tmp_path_factory):
    process, url, log = start_llama(data_dir, tmp_path_factory)
    yield url, log
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def llama_jinja_server(data_dir, tmp_path_factory):
    """llama.cpp's server as users start it for tool calling (`llama-server --jinja`)."""
    process, url, log = start_llama(data_dir, tmp_path_factory, "--jinja")
    yield url, log
    process.terminate()
    process.wait(10)


async def test_conversation_through_a_remote_openai_compatible_server(llama_server, start_server):
    url, llama_log = llama_server
    server = start_server(f"""
[llm.default]
engine = "openai"
base_url = "{url}"
model = "qwen"

[llm.local]
engine = "scripted"

[models]
"my-remote-agent" = {{ llm = "default", display_name = "Remote agent" }}
""")
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0,
                                     system_instruction="Answer in one short sentence.")
    async with client.aio.live.connect(model="my-remote-agent", config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="My name is Tomasz.")]))
        [m async for m in session.receive()]
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="What is my name?")]))
        messages = [m async for m in session.receive()]
    text = "".join(m.text or "" for m in messages)
    assert "tomasz" in text.lower()
    assert sum(1 for m in messages if m.text) >= 2
    usage = messages[-1].usage_metadata
    assert usage.prompt_token_count > 0 and usage.response_token_count > 0
    names = [m.name for m in client.models.list()]
    assert "models/my-remote-agent" in names


async def test_native_tool_messages_are_read_by_a_real_llama_server(llama_jinja_server):
    """tool_mode = "native" speaks the OpenAI format a server with tool calling reads: `tools`,
    `tool_choice`, an assistant message with `tool_calls` and its `tool` result. llama.cpp's
    server (--jinja) renders them through the model's template: the answer uses the result.

    (The packaged Coder models write their calls as a JSON code block, which llama.cpp does not
    take for a call, so the model's own calls are not asserted here; tests/unit/test_tools.py
    drives the session through a whole native round trip.)"""
    from openlive.engines.llm.base import ChatMessage, ChatRequest, Finished, SamplingParams, TextDelta, ToolCall
    from openlive.engines.llm.openai_compat import OpenAICompatEngine
    from openlive.session.tools import ToolSet

    url, _ = llama_jinja_server
    weather = types.FunctionDeclaration(name="get_weather", description="Get the current weather for a city.",
                                        parameters=types.Schema(type=types.Type.OBJECT, properties={
                                            "city": types.Schema(type=types.Type.STRING)}, required=["city"]))
    from openlive.protocol.messages import Tool

    tools = ToolSet.from_setup([Tool.model_validate({"functionDeclarations": [
        weather.model_dump(mode="json", exclude_none=True, by_alias=True)]})]).native_tools()
    engine = OpenAICompatEngine("remote", url, tool_mode="native")
    messages = (ChatMessage("user", "What is the weather in Lisbon right now?"),
                ChatMessage("assistant", "", tool_calls=(ToolCall("call-1", "get_weather", {"city": "Lisbon"}),)),
                ChatMessage("tool", '{"temperature_celsius": 31, "sky": "sunny"}', tool_call_id="call-1"))
    try:
        for choice in (None, "none"):
            chunks = [c async for c in engine.stream(ChatRequest(messages, SamplingParams(temperature=0, max_tokens=40),
                                                                 tools=tuple(tools), tool_choice=choice))]
            answer = "".join(c.text for c in chunks if isinstance(c, TextDelta))
            assert "31" in answer, (choice, answer)
            assert isinstance(chunks[-1], Finished) and chunks[-1].prompt_tokens > 60  # the tools were rendered
    finally:
        await engine.aclose()


async def test_unreachable_remote_engine_fails_health_and_sessions_clearly(start_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = start_server(f'[llm.default]\nengine = "openai"\nbase_url = "{dead}"\n', wait=False)
    deadline = time.monotonic() + 30
    ctx = ssl.create_default_context(cafile=str(server.cert))
    status = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{server.base_url}/healthz", verify=ctx, timeout=2)
            status = response.status_code
            if status == 500:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert status == 500 and "cannot reach" in response.json()["error"]
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model="gemini-live-2.5-flash", config=types.LiveConnectConfig(
                response_modalities=["TEXT"])):
            pass
    assert info.value.code == 1011 and "unavailable" in info.value.details
