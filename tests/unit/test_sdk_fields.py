"""Every field of google-genai's Live API types is accepted by openlive's parser (issue 24).

The cases are made by walking the SDK's own pydantic types (tests/support/sdk_fields.py), so a
field a new SDK adds is a new case without editing this file. Each case sets one field path, turns
the SDK value into wire JSON with the SDK's converters for the Gemini API as live.py sends it (the
setup also as it goes to Vertex, for a gateway in front of openlive), and parses that frame as the
server does. Each enum field is tried with every member. A field the converters refuse ("… not
supported in Gemini API") is skipped with their reason. Wrong shapes and names no SDK defines are
still 1007, naming the field.

Tools are the one place where a field that parses can still end the session: a kind of Tool this
server cannot serve (google_maps, file_search, computer_use, mcp_servers, retrieval, …) would look
enabled to the client and do nothing, so the session refuses it at setup, 1007 naming it, as the
service refuses a tool its model lacks. Those are valid fields refused on purpose, not a parser
bug: the walk still parses them, and `test_each_kind_of_tool_is_served_or_refused_by_name` walks
the SDK's Tool type so that a kind a new SDK adds is refused by name too, never silently ignored.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from google.genai import types
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.protocol.messages import Part, Setup, inert_fields
from tests.support import sdk_fields as f

# What the SDK sends, and how it turns a value of that type into a frame.
ENTRY_POINTS: dict[str, tuple[type, Callable[[Any], dict[str, Any]]]] = {
    "connect(config=LiveConnectConfig)": (types.LiveConnectConfig, f.setup_frame),
    "connect(config=LiveConnectConfig) to Vertex": (types.LiveConnectConfig, f.vertex_setup_frame),
    "LiveClientMessage": (types.LiveClientMessage, f.message_frame),
    "send_client_content(LiveClientContent)": (types.LiveClientContent, f.client_content_frame),
    "send_realtime_input(…)": (types.LiveSendRealtimeInputParameters, f.realtime_input_frame),
    "send_tool_response(FunctionResponse)": (types.FunctionResponse, f.tool_response_frame),
}


def _cases() -> list[Any]:
    cases = []
    for entry, (root, _) in ENTRY_POINTS.items():
        for path in f.field_paths(root):
            members = f.enum_of(root, path)
            for value in members or [f.SKIP]:
                label = f"{entry}:{f.dotted(path)}" + (f"={getattr(value, 'value', value)}" if members else "")
                cases.append(pytest.param(entry, path, value, id=label))
    return cases


CASES = _cases()


def _frame(entry: str, path: f.Path, value: Any) -> str:
    root, convert = ENTRY_POINTS[entry]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return json.dumps(convert(f.only(root, path, value)))
    except ValueError as exc:
        reason = str(exc).splitlines()[0]
        # Any other refusal is a bug of the walk, not a skip.
        assert "not supported" in reason or "only supported in" in reason, reason
        pytest.skip(f"the SDK refuses to send it: {reason}")


@pytest.mark.parametrize("entry, path, value", CASES)
def test_every_sdk_field_is_accepted(entry: str, path: f.Path, value: Any) -> None:
    frame = _frame(entry, path, value)
    try:
        parse_client_frame(frame)
    except ProtocolError as exc:
        pytest.fail(f"{f.dotted(path)} refused ({exc.code} {exc.reason}); the frame: {frame[:400]}")


def test_the_walk_reaches_the_fields_issue_24_named() -> None:
    setup = {f.dotted(p) for p in f.field_paths(types.LiveConnectConfig)}
    content = {f.dotted(p) for p in f.field_paths(types.LiveClientContent)}
    assert "speech_config.voice_config.voice" in setup
    for name in ("audio_transcription", "media_processing", "speech_metadata", "document_metadata",
                 "spreadsheet_metadata", "audio_metadata"):
        assert f"turns.parts.{name}" in content
    assert len(CASES) > 1000


@pytest.mark.parametrize("part, needle", [
    ({"mediaProcessing": "not an enum"}, "parts[0].media_processing' (TYPE_ENUM)"),
    ({"mediaProcessing": 3}, "parts[0].media_processing"),
    ({"audioTranscription": "hello"}, "parts[0].audio_transcription'"),
    ({"speechMetadata": [1]}, "parts[0].speech_metadata'"),
    ({"documentMetadata": True}, "parts[0].document_metadata'"),
    ({"audioMetadata": 1}, "parts[0].audio_metadata'"),
    ({"fileData": "gs://x"}, "parts[0].file_data'"),
    ({"noSuchField": {}}, 'Unknown name "noSuchField" at \'client_content.turns[0].parts[0]\': Cannot find field.'),
])
def test_malformed_values_and_unknown_names_are_still_1007_naming_the_field(part: dict, needle: str) -> None:
    frame = json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [part]}]}})
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(frame)
    assert caught.value.code == 1007 and needle in caught.value.reason, caught.value.reason


@pytest.mark.parametrize("generation_config, needle", [
    ({"speechConfig": {"voiceConfig": {"voice": 5}}}, "voice_config.voice' (TYPE_STRING), 5"),
    ({"speechConfig": {"voiceConfig": {"voiceId": "x"}}}, 'Unknown name "voiceId"'),
    ({"responseFormat": 5}, "generation_config.response_format'"),
    ({"thinkingConfig": []}, "generation_config.thinking_config'"),
])
def test_malformed_setup_values_are_1007(generation_config: dict, needle: str) -> None:
    frame = json.dumps({"setup": {"model": "models/m", "generationConfig": generation_config}})
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(frame)
    assert caught.value.code == 1007 and needle in caught.value.reason, caught.value.reason


def test_inert_fields_are_named_by_path_without_list_positions() -> None:
    event = parse_client_frame(json.dumps({"clientContent": {"turns": [
        {"role": "user", "parts": [{"text": "hi", "fileData": {"fileUri": "gs://secret"}}, {"audioMetadata": {}}]},
        {"role": "user", "parts": [{"fileData": {}}]}]}}))
    assert sorted(set(inert_fields(event))) == ["client_content.turns.parts.audio_metadata",
                                                "client_content.turns.parts.file_data"]
    setup = parse_client_frame(json.dumps({"setup": {"model": "m", "generationConfig": {
        "thinkingConfig": {"thinkingBudget": 0}, "temperature": 0.5,
        "speechConfig": {"voiceConfig": {"voice": "Kore"}}}, "labels": {"team": "a"}}}))
    assert isinstance(setup, Setup)
    # voiceConfig.voice is acted on (it names the voice); temperature is too.
    assert sorted(inert_fields(setup)) == ["setup.generation_config.thinking_config", "setup.labels"]
    assert list(inert_fields(Part(text="x"))) == []


async def test_a_session_logs_each_inert_field_once_by_path_never_its_value(caplog) -> None:
    from openlive.engines.llm.scripted import ScriptedEngine
    from openlive.session.live_session import LiveSession

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    setup = parse_client_frame(json.dumps({"setup": {
        "model": "models/m", "generationConfig": {"responseModalities": ["TEXT"],
                                                  "thinkingConfig": {"thinkingBudget": 1234567}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}}))
    session = LiveSession(setup, llm=ScriptedEngine("s"), send=send)
    caplog.set_level(logging.INFO, logger="openlive.session.live_session")
    await session.start()
    content = {"clientContent": {"turns": [{"role": "user", "parts": [
        {"text": "hello"}, {"fileData": {"fileUri": "gs://bucket/very-secret-file"}}]}], "turnComplete": False}}
    await session.handle(parse_client_frame(json.dumps(content)))
    await session.handle(parse_client_frame(json.dumps(content)))
    await session.aclose()
    lines = [r.getMessage() for r in caplog.records if "not acted on" in r.getMessage()]
    assert lines == ["accepted but not acted on: setup.generation_config.thinking_config, setup.safety_settings",
                     "accepted but not acted on: client_content.turns.parts.file_data"], lines
    assert all(r.levelno == logging.INFO for r in caplog.records if "not acted on" in r.getMessage())
    assert "1234567" not in caplog.text and "very-secret-file" not in caplog.text


def test_voice_config_voice_chooses_the_voice() -> None:
    from openlive.session.options import SessionOptions

    setup = parse_client_frame(json.dumps({"setup": {"model": "models/m", "generationConfig": {
        "speechConfig": {"voiceConfig": {"voice": "Puck"}}}}}))
    assert SessionOptions.from_setup(setup).voice_name == "Puck"
    both = parse_client_frame(json.dumps({"setup": {"model": "models/m", "generationConfig": {
        "speechConfig": {"voiceConfig": {"voice": "Puck", "prebuiltVoiceConfig": {"voiceName": "Kore"}}}}}}))
    assert SessionOptions.from_setup(both).voice_name == "Kore"


def test_a_field_in_both_spellings_counts_once_the_later_one_winning() -> None:
    # LiveConnectConfig(generation_config=GenerationConfig(max_output_tokens=…), max_output_tokens=…)
    # sends the deprecated object dumped in snake_case, then the direct field beside it in camelCase.
    config = types.LiveConnectConfig(generation_config=types.GenerationConfig(max_output_tokens=10, top_p=0.5),
                                     max_output_tokens=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = f.setup_frame(config)
    assert {"max_output_tokens", "maxOutputTokens"} <= set(frame["setup"]["generationConfig"])
    setup = parse_client_frame(json.dumps(frame))
    assert isinstance(setup, Setup)
    assert setup.generation_config.max_output_tokens == 20 and setup.generation_config.top_p == 0.5
    later_snake = parse_client_frame('{"setup": {"model": "m", "generationConfig": '
                                     '{"enableAffectiveDialog": true, "enable_affective_dialog": false}}}')
    assert later_snake.generation_config.enable_affective_dialog is False


# The kinds of Tool this server serves; every other kind of the SDK's Tool is refused by name.
SERVED_TOOLS = {"function_declarations", "code_execution", "google_search", "google_search_retrieval", "url_context"}


@pytest.mark.parametrize("name", sorted(types.Tool.model_fields))
async def test_each_kind_of_tool_is_served_or_refused_by_name(name: str) -> None:
    from openlive.config import UrlContextConfig
    from openlive.engines.llm.scripted import ScriptedEngine
    from openlive.engines.search.url_context import UrlReader
    from openlive.session.live_session import LiveSession

    config = f.only(types.LiveConnectConfig, ("tools", name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            frame = f.setup_frame(config)
        except ValueError:  # a Vertex-only tool ("… not supported in Gemini API"): as a gateway sends it
            frame = f.vertex_setup_frame(config)
    setup = parse_client_frame(json.dumps(frame))  # it parses: the field is valid

    async def send(message: dict) -> None:
        pass

    def open_session() -> LiveSession:
        return LiveSession(setup, llm=ScriptedEngine("s"), send=send, url_reader=UrlReader(UrlContextConfig()))

    if name in SERVED_TOOLS:
        await open_session().aclose()
    else:
        with pytest.raises(ProtocolError) as caught:
            open_session()
        assert caught.value.code == 1007 and caught.value.reason.startswith(f"{name} is not supported."), \
            caught.value.reason
