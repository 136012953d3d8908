"""Every field of the SDK's types, sent by the real SDK to a real server, closes nothing (issue 24),
and a NON_BLOCKING call's results after the first reach the model (`willContinue`).

The config and every message are built by walking google-genai's own types (tests/support/
sdk_fields.py), so a field a new SDK adds is sent here without editing this file. Fields the SDK
refuses to send to the Gemini API are left out, as are the few whose value must name something
that exists (a resumption handle). The LLM is the scripted engine: the same replies every run.

Kinds of Tool this server cannot serve (google_maps, file_search, computer_use, mcp_servers, …) are
left out of the everything-config too: they are valid fields, refused on purpose at setup (1007,
naming the tool, as the service refuses a tool its model lacks) because accepted they would look
enabled and do nothing. `test_a_tool_this_server_cannot_serve_is_refused_at_setup_naming_it`
sends each one, and tests/unit/test_sdk_fields.py walks the SDK's Tool type for kinds to come.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from tests.support import sdk_fields as f

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
SCRIPT = """
[[reply]]
match = "weather"
tool = "get_weather"
args = { location = "Paris" }
"""


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()
VALUES: f.Values = {
    **f.VALUES,
    "model": f"models/{MODEL}",
    "audio.data": b"\0\0" * 1600,  # 0.1 s of 16 kHz silence
    "video.data": PNG, "media.data": PNG, "media_chunks.data": PNG,
    # Scripted replies are cut to max_output_tokens words; one word would cut the tool turn's JSON.
    "max_output_tokens": 1000,
    # The sliding window must be smaller than what triggers it (1 and 1 are refused, rightly).
    "trigger_tokens": 100_000, "target_tokens": 50_000,
}
# Fields whose value must name something that exists: a handle names a stored session (resumption
# has tests of its own).
NAMES_SOMETHING = {("session_resumption", "handle")}
# The kinds of Tool openlive serves; the others are refused at setup, naming the tool.
SERVED_TOOLS = {"function_declarations", "code_execution", "google_search", "google_search_retrieval", "url_context"}
REFUSED_TOOLS = sorted(set(types.Tool.model_fields) - SERVED_TOOLS)


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    script = tmp_path_factory.mktemp("sdk-fields") / "replies.toml"
    script.write_text(SCRIPT)
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n')


def _refused_by_sdk(root: type, convert) -> set[f.Path]:
    """The paths the SDK's converters refuse for the Gemini API ("… not supported …")."""
    refused = set()
    for path in f.field_paths(root):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                convert(f.only(root, path, values=VALUES))
        except ValueError as exc:
            assert "supported" in str(exc), exc
            refused.add(path)
    return refused


def every(root: type, convert, also_skip: set[f.Path] = frozenset()) -> Any:
    skip = _refused_by_sdk(root, convert) | set(also_skip)
    return f.every(root, lambda p: any(p[:len(s)] == s for s in skip), values=VALUES)


async def _turn(session, timeout: float = 60) -> list[types.LiveServerMessage]:
    """Messages until the turn completes or a toolCall comes."""
    out: list[types.LiveServerMessage] = []

    async def gather() -> None:
        async for message in session.receive():
            out.append(message)
            if message.tool_call:
                return

    await asyncio.wait_for(gather(), timeout)
    return out


def _text(messages: list[types.LiveServerMessage]) -> str:
    return "".join(m.text or "" for m in messages)


async def _answer(session) -> list[types.LiveServerMessage]:
    """The reply to a toolResponse: on a 2.x name the toolCall's turn ended with its own
    turnComplete (generation.py), and the answer is the turn after it."""
    out = await _turn(session)
    if not _text(out):
        out = await _turn(session)
    return out


def _client(server) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))


@pytest.mark.parametrize("automatic", [False, True], ids=["activity-signals", "automatic-activity"])
async def test_every_field_of_every_message_kind_is_accepted(server, automatic: bool) -> None:
    """A config with every field, then every kind of client message with every field: no 1007."""
    config = every(types.LiveConnectConfig, f.setup_frame, NAMES_SOMETHING | {("tools", t) for t in REFUSED_TOOLS})
    detection = config.realtime_input_config.automatic_activity_detection
    config.realtime_input_config.automatic_activity_detection = detection.model_copy(update={"disabled": not automatic})
    # The deprecated generation_config, and speech_config's voice, are sent too (walked like the rest).
    assert config.generation_config is not None and config.speech_config.voice_config.voice
    mark = len(server.log())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecated generation_config and send()
            async with _client(server).aio.live.connect(model=MODEL, config=config) as session:
                # clientContent with every field of Content and Part (the SDK's t_client_content path).
                content = every(types.LiveClientContent, f.client_content_frame)
                await session.send_client_content(turns=content.turns, turn_complete=content.turn_complete)
                await _turn(session)

                # A toolCall answered with every field of FunctionResponse.
                await session.send_client_content(turns=types.Content(role="user", parts=[
                    types.Part(text="What is the weather in Paris?")]))
                [call] = [c for m in await _turn(session) if m.tool_call for c in m.tool_call.function_calls]
                response = every(types.FunctionResponse, f.tool_response_frame)
                await session.send_tool_response(function_responses=[response.model_copy(
                    update={"id": call.id, "name": call.name, "will_continue": False})])
                assert "get_weather" in _text(await _answer(session))  # the scripted model read the result

                # realtimeInput: one field per message, as the SDK allows; each of this mode's signals.
                realtime = every(types.LiveSendRealtimeInputParameters, f.realtime_input_frame)
                wrong_mode = {"activity_start", "activity_end"} if automatic else {"audio_stream_end"}
                order = ["activity_start", "audio", "video", "media", "audio_stream_end", "activity_end", "text"]
                names = sorted(types.LiveSendRealtimeInputParameters.model_fields,
                               key=lambda n: order.index(n) if n in order else -1)
                for name in names:
                    value = getattr(realtime, name)
                    if value is not None and name not in wrong_mode:
                        await session.send_realtime_input(**{name: value})
                assert "sample" in _text(await _turn(session))  # the realtime text is a user turn

                # The deprecated send() is the one way to send mediaChunks.
                await session.send(input=types.LiveClientRealtimeInput(media_chunks=[realtime.media]))

                # contextUpdate with every field of Content and Tool.
                update = every(types.LiveClientMessage, f.message_frame,
                               {("context_update", "tools", "tools", t) for t in REFUSED_TOOLS}).context_update
                await session.send_context_update(system_instruction=update.system_instruction,
                                                  tools=update.tools.tools)

                # Still open and answering.
                await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
                assert "You said: hello" in _text(await _turn(session))
    except errors.APIError as exc:
        pytest.fail(f"the session was closed: {exc.code} {exc.details}\n{server.log()[mark:][-3000:]}")
    log = server.log()[mark:]
    assert "closing 1007" not in log, log[-3000:]
    assert "accepted but not acted on: " in log and "setup.generation_config.thinking_config" in log


@pytest.mark.parametrize("name", REFUSED_TOOLS)
async def test_a_tool_this_server_cannot_serve_is_refused_at_setup_naming_it(server, name: str) -> None:
    config = f.only(types.LiveConnectConfig, ("tools", name), values=VALUES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.setup_frame(config)
    except ValueError as exc:  # Vertex only: the SDK will not send it to this (Gemini API) endpoint
        pytest.skip(f"the SDK refuses to send it: {str(exc).splitlines()[0]}")
    with pytest.raises(errors.APIError) as caught:
        async with _client(server).aio.live.connect(model=MODEL, config=config) as session:
            await _turn(session, timeout=10)
    assert caught.value.code == 1007 and f"{name} is not supported." in str(caught.value), caught.value


async def test_a_non_blocking_call_keeps_its_results_until_the_last(server) -> None:
    """Two results for one NON_BLOCKING call (willContinue, then the last): both reach the model."""
    weather = types.FunctionDeclaration(name="get_weather", description="Weather in a city.",
                                        behavior=types.Behavior.NON_BLOCKING,
                                        parameters=types.Schema(type=types.Type.OBJECT, properties={
                                            "location": types.Schema(type=types.Type.STRING)}))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], tools=[types.Tool(function_declarations=[weather])])
    async with _client(server).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[
            types.Part(text="What is the weather in Paris?")]))
        [call] = [c for m in await _turn(session) if m.tool_call for c in m.tool_call.function_calls]
        talk_on = await _turn(session)  # NON_BLOCKING: the model talks on to the end of its turn
        assert talk_on[-1].server_content and talk_on[-1].server_content.turn_complete
        await session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name=call.name, response={"temperature_c": 17}, will_continue=True,
            scheduling=types.FunctionResponseScheduling.WHEN_IDLE)])
        first = "".join(m.text or "" for m in await _turn(session))
        await session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name=call.name, response={"temperature_c": 19}, will_continue=False)])
        last = "".join(m.text or "" for m in await _turn(session))
    # The scripted model answers a result by repeating what it read: each result reached it.
    assert '"temperature_c": 17' in first and "more to come" in first, first
    assert '"temperature_c": 19' in last and "more to come" not in last, last
