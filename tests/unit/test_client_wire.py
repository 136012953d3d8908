"""The client's wire format, sans I/O: checked against google-genai's own builders and openlive's parser."""

from __future__ import annotations

import base64
import json

import pytest
from google import genai
from google.genai import _common, _live_converters, live
from google.genai import types as gt

from openlive.client import wire
from openlive.protocol import server_messages as sm
from openlive.protocol.codec import encode_server_message, parse_client_frame
from openlive.protocol.messages import ClientContent, ContextUpdate, RealtimeInput, Setup, ToolResponse

MODEL = "gemini-live-2.5-flash-preview"


# ------------------------------------------------------------------------------------ endpoint


@pytest.mark.parametrize(("base", "expected"), [
    ("https://127.0.0.1:8443", "wss://127.0.0.1:8443/ws/"),
    ("https://127.0.0.1:8443/", "wss://127.0.0.1:8443/ws/"),
    ("https://gw.example.com/proxy/gemini", "wss://gw.example.com/proxy/gemini/ws/"),
    ("http://localhost:8080", "ws://localhost:8080/ws/"),  # a --no-tls openlive
    ("wss://h:1", "wss://h:1/ws/"),
])
def test_url_keeps_host_port_and_prefix(base, expected):
    url = wire.endpoint(base, "k").url
    assert url == expected + "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def test_headers_match_what_the_sdk_sends():
    gemini = wire.endpoint("https://h", "my-key", api_version="v1")
    assert gemini.url.endswith(".v1.GenerativeService.BidiGenerateContent")
    assert gemini.headers["x-goog-api-key"] == "my-key" and "Authorization" not in gemini.headers
    assert gemini.headers["Content-Type"] == "application/json"
    assert "my-key" not in gemini.url  # never in the query string
    token = wire.endpoint("https://h", "auth_tokens/abc", api_version="v1alpha")
    assert token.constrained and token.url.endswith(".v1alpha.GenerativeService.BidiGenerateContentConstrained")
    assert token.headers["Authorization"] == "Token auth_tokens/abc"
    assert token.headers["x-goog-api-key"] == "auth_tokens/abc"
    vertex = wire.endpoint(None, "k", vertex=True)
    assert vertex.url == ("wss://aiplatform.googleapis.com/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/"
                          "BidiGenerateContent")
    assert wire.endpoint("https://h", "k", headers={"x-extra": "1"}).headers["x-extra"] == "1"


def test_default_base_url(monkeypatch):
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    assert wire.endpoint(None, "k").url.startswith("wss://generativelanguage.googleapis.com/ws/")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://127.0.0.1:9999")
    assert wire.endpoint(None, "k").url.startswith("wss://127.0.0.1:9999/ws/")


# ------------------------------------------------------------------------------------ setup


async def sdk_setup(config: dict, vertex: bool = False) -> dict:
    """The setup message google-genai 3.x builds in `live.connect` for this config."""
    client = genai.Client(vertexai=True, api_key="k") if vertex else genai.Client(api_key="k")
    api = client._api_client
    model = wire.model_path(MODEL, vertex=vertex)
    parameters = gt.LiveConnectParameters(model=model, config=await live._t_live_connect_config(api, config))
    convert = (_live_converters._LiveConnectParameters_to_vertex if vertex
               else _live_converters._LiveConnectParameters_to_mldev)
    body = _common.convert_to_dict(convert(api_client=api, from_object=parameters.model_dump(exclude_none=True)))
    body.pop("config", None)
    body = _common.encode_unserializable_types(body)
    body["setup"]["model"] = model
    if vertex:
        body["setup"].setdefault("generationConfig", {}).setdefault("responseModalities", ["AUDIO"])
    return body


CONFIGS = [
    {"response_modalities": ["TEXT"]},
    {"response_modalities": ["AUDIO"], "speech_config": {"voice_config": {"prebuilt_voice_config": {
        "voice_name": "Kore"}}}, "temperature": 0.2, "max_output_tokens": 50,
     "system_instruction": "Be brief.", "input_audio_transcription": {}, "output_audio_transcription": {}},
    {"speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}, "language_code": "de-DE"},
     "realtime_input_config": {"automatic_activity_detection": {"disabled": False, "silence_duration_ms": 500,
                                                                "start_of_speech_sensitivity": "START_SENSITIVITY_LOW"},
                               "activity_handling": "NO_INTERRUPTION"},
     "context_window_compression": {"trigger_tokens": 1000, "sliding_window": {"target_tokens": 500}},
     "session_resumption": {"handle": "abc"}},
    {"tools": [{"function_declarations": [{"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "OBJECT", "properties": {
                                               "city_name": {"type": "STRING"}}, "required": ["city_name"]}}]}],
     "top_k": 3.0, "seed": 7},
    {"tools": [{"code_execution": {}}, {"google_search": {}}], "proactivity": {"proactive_audio": True}},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("vertex", [False, True])
async def test_setup_is_the_sdks_setup_in_camel_case(config, vertex):
    ours = wire.setup_message(MODEL, config, vertex=vertex)
    theirs = wire.camelize(await sdk_setup(config, vertex))
    assert ours == theirs
    assert isinstance(parse_client_frame(wire.encode_json(ours)), Setup)  # and openlive's server takes it


def test_setup_accepts_camel_case_and_keeps_user_property_names():
    setup = wire.setup_message(MODEL, {"responseModalities": ["TEXT"], "tools": [{"functionDeclarations": [
        {"name": "f", "parameters_json_schema": {"type": "object", "properties": {"snake_name": {}}}}]}]})["setup"]
    assert setup["generationConfig"] == {"responseModalities": ["TEXT"]}
    merged = wire.setup_message(MODEL, {"generation_config": {"top_p": 0.5}, "temperature": 0})["setup"]
    assert merged["generationConfig"] == {"topP": 0.5, "temperature": 0}
    assert setup["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"] == {"snake_name": {}}
    # Shorthands: a voice name for speech_config, a string for system_instruction.
    assert wire.setup_message(MODEL, {"speech_config": "Kore"})["setup"]["generationConfig"]["speechConfig"] == {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}
    with pytest.raises(ValueError, match="unknown Live API config field"):
        wire.setup_message(MODEL, {"respnse_modalities": ["TEXT"]})
    with pytest.raises(ValueError, match="http_options"):
        wire.setup_message(MODEL, {"http_options": {"base_url": "x"}})


def test_resumption_helpers():
    setup = wire.setup_message(MODEL, {"session_resumption": {"transparent": True}})
    assert wire.resumption_enabled(setup) and wire.transparent_enabled(setup)
    assert wire.with_handle(setup, "h1")["setup"]["sessionResumption"] == {"transparent": True, "handle": "h1"}
    assert wire.with_handle(wire.with_handle(setup, "h1"), None)["setup"]["sessionResumption"] == {"transparent": True}
    assert not wire.resumption_enabled(wire.setup_message(MODEL, {}))


# ------------------------------------------------------------------------------------ client messages


def test_client_messages_are_what_openlive_parses():
    pcm = bytes(range(256)) * 4
    audio = parse_client_frame(wire.encode_json(wire.realtime_audio(pcm, 16000)))
    assert isinstance(audio, RealtimeInput) and audio.audio.data == pcm
    assert audio.audio.mime_type == "audio/pcm;rate=16000"
    video = parse_client_frame(wire.encode_json(wire.realtime_video(b"\xff\xd8jpeg")))
    assert video.video.data == b"\xff\xd8jpeg" and video.video.mime_type == "image/jpeg"
    text = parse_client_frame(wire.encode_json(wire.client_content(["Hi", {"role": "model", "parts": [{"text": "Yo"}]}],
                                                                   turn_complete=False)))
    assert isinstance(text, ClientContent) and not text.turn_complete
    assert [(t.role, t.parts[0].text) for t in text.turns] == [("user", "Hi"), ("model", "Yo")]
    assert wire.client_content(None) == {"clientContent": {"turnComplete": True}}
    tool = parse_client_frame(wire.encode_json(wire.tool_response(
        wire.FunctionCall("fc-1", "f", {}).response({"ok": True}))))
    assert isinstance(tool, ToolResponse) and tool.function_responses[0].response == {"ok": True}
    with pytest.raises(ValueError, match="id"):
        wire.tool_response([{"name": "f", "response": {}}])
    update = parse_client_frame(wire.encode_json(wire.context_update("Be a pirate.", tools=[])))
    assert isinstance(update, ContextUpdate) and update.system_instruction.parts[0].text == "Be a pirate."
    assert update.tools.tools == []
    for message in (wire.audio_stream_end(), wire.activity_start(), wire.activity_end(), wire.realtime_text("hey")):
        assert isinstance(parse_client_frame(wire.encode_json(message)), RealtimeInput)
    assert wire.message_kind(wire.realtime_audio(b"")) == "realtimeInput.audio"
    assert wire.message_kind(wire.client_content("x")) == "clientContent"


# ------------------------------------------------------------------------------------ server messages


def parse_all(message: dict) -> list[wire.LiveMessage]:
    """openlive's own server encoding of `message`, parsed by the client."""
    return [wire.parse_server_message(frame) for frame in encode_server_message(message)]


def test_server_messages_from_openlive_parse():
    pcm = (b"\x01\x02" * 2400)
    [audio] = parse_all(sm.model_turn([sm.audio_part(pcm, 24000)]))
    assert audio.audio == pcm and audio.audio_rate == 24000 and audio.text is None
    [text] = parse_all(sm.model_turn([sm.text_part("Hello "), {"text": "hmm", "thought": True}, sm.text_part("you")]))
    assert text.text == "Hello you" and text.thought == "hmm" and len(text.parts) == 3
    [done] = parse_all(sm.turn_complete(sm.Usage({"TEXT": 3}, {"TEXT": 4})))
    assert done.turn_complete and done.usage["totalTokenCount"] == 7
    [heard] = parse_all(sm.input_transcription("it was", finished=True))
    assert heard.input_transcription == "it was" and heard.input_transcription_finished
    [said] = parse_all(sm.output_transcription("Hi."))
    assert said.output_transcription == "Hi."
    [call] = parse_all(sm.tool_call([{"id": "fc-1", "name": "f", "args": {"a": 1}}]))
    assert call.tool_call == [wire.FunctionCall("fc-1", "f", {"a": 1})]
    [cancel] = parse_all(sm.tool_call_cancellation(["fc-1"]))
    assert cancel.tool_call_cancellation == ["fc-1"]
    [away] = parse_all(sm.go_away(1.5))
    assert away.go_away == 1.5
    [update] = parse_all(sm.session_resumption_update("h", last_consumed=3))
    assert update.resumption == wire.ResumptionUpdate("h", True, 3)
    [no] = parse_all(sm.session_resumption_update(None))
    assert no.resumption == wire.ResumptionUpdate(None, False, None)
    [interrupted] = parse_all(sm.interrupted())
    assert interrupted.interrupted and not interrupted.turn_complete
    [setup] = parse_all(sm.setup_complete("s-1"))
    assert setup.setup_complete and setup.session_id == "s-1"


def test_parsing_edge_cases():
    raw = b"\xfb\xff\xfe" * 10
    for encode in (base64.b64encode, base64.urlsafe_b64encode, lambda b: base64.b64encode(b).rstrip(b"=")):
        frame = json.dumps({"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": "audio/pcm", "data": encode(raw).decode()}}]}}}).encode()  # binary frame
        message = wire.parse_server_message(frame)
        assert message.audio == raw and message.audio_rate == 24000
    assert wire.parse_server_message("{}").raw == {}
    assert wire.parse_duration("10s") == 10 and wire.parse_duration({"seconds": 1, "nanos": 500_000_000}) == 1.5
    with pytest.raises(ValueError):
        wire.parse_server_message("[1, 2]")
    with pytest.raises(ValueError):
        wire.parse_server_message("not json")
