"""The sans-I/O codec: frames in, typed events out; server messages out, each under 1 MiB."""

import base64
import json

import pytest

from openlive.protocol import MAX_SERVER_FRAME_BYTES, ProtocolError, encode_server_message, parse_client_frame
from openlive.protocol.errors import fit_reason
from openlive.protocol.messages import ClientContent, RealtimeInput, Setup, ToolResponse


def test_setup_in_python_sdk_casing_mixes_camel_and_snake():
    # As captured from google-genai 3.4: top-level keys camelCase, nested pydantic dumps snake_case.
    frame = json.dumps({"setup": {
        "model": "models/gemini-live-2.5-flash-preview",
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.2,
                             "speechConfig": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}},
                                              "language_code": "en-US"}},
        "realtimeInputConfig": {"automatic_activity_detection": {"prefix_padding_ms": 20},
                                "activity_handling": "NO_INTERRUPTION"},
        "contextWindowCompression": {"trigger_tokens": 25600, "sliding_window": {"target_tokens": 12800}},
        "systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
    }})
    setup = parse_client_frame(frame)
    assert isinstance(setup, Setup)
    assert setup.generation_config.temperature == 0.2
    assert setup.generation_config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"
    assert setup.realtime_input_config.automatic_activity_detection.prefix_padding_ms == 20
    assert setup.context_window_compression.sliding_window.target_tokens == 12800
    assert setup.system_instruction.text() == "Be brief."


def test_client_content_in_both_casings_and_binary_frames():
    camel = parse_client_frame(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                                                             "turnComplete": False}}))
    snake = parse_client_frame(json.dumps({"client_content": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                                                              "turn_complete": False}}).encode())
    assert isinstance(camel, ClientContent) and camel == snake
    assert camel.turn_complete is False
    assert parse_client_frame('{"client_content": {}}').turn_complete is True


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode,
                                    lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")])
def test_base64_in_both_alphabets_with_or_without_padding(encode):
    raw = bytes([0xFF, 0xFE, 0xFD, 0xFB, 0xEF, 0xBE, 0x00])  # bytes that differ between alphabets
    frame = json.dumps({"realtime_input": {"audio": {"data": encode(raw).decode(), "mime_type": "audio/pcm;rate=16000"}}})
    event = parse_client_frame(frame)
    assert isinstance(event, RealtimeInput)
    assert event.audio.data == raw and event.audio.mime_type == "audio/pcm;rate=16000"


def test_user_schema_property_names_are_kept_verbatim():
    frame = json.dumps({"setup": {"model": "models/m", "tools": [{"functionDeclarations": [{
        "name": "f", "parameters_json_schema": {"type": "object", "properties": {"cityName": {"type": "string"}}}}]}]}})
    setup = parse_client_frame(frame)
    assert setup.tools[0].function_declarations[0].parameters_json_schema["properties"] == {"cityName": {"type": "string"}}


def test_tool_response_keeps_response_body_verbatim():
    event = parse_client_frame(json.dumps({"tool_response": {"functionResponses": [
        {"id": "fc-1", "name": "f", "response": {"tempC": 21, "some_key": 1}, "scheduling": "SILENT"}]}}))
    assert isinstance(event, ToolResponse)
    assert event.function_responses[0].response == {"tempC": 21, "some_key": 1}


@pytest.mark.parametrize("frame, needle", [
    ("{not json", "Invalid JSON payload"),
    (b"\xff\xfe", "not valid UTF-8"),
    ("[1, 2]", "Expected an object"),
    ("{}", "exactly one field"),
    ('{"setup": {"model": "m"}, "clientContent": {}}', "exactly one field"),
    ('{"bogus": {}}', 'Unknown name "bogus"'),
    ('{"setup": {"model": "m", "generationConfig": {"temperature": "hot"}}}',
     "setup.generation_config.temperature' (TYPE_FLOAT)"),
    ('{"setup": {"model": "m", "generationConfig": {"responseModality": ["TEXT"]}}}',
     "Unknown name \"responseModality\" at 'setup.generation_config'"),
    ('{"setup": {"model": "m", "generationConfig": {"responseModalities": ["SMELL"]}}}', "TYPE_ENUM"),
    ('{"setup": {}}', "setup.model"),
    ('{"realtimeInput": {"audio": {"data": "@@@", "mimeType": "audio/pcm"}}}', "realtime_input.audio.data"),
    ('{"clientContent": {"turns": "hello"}}', "client_content.turns"),
])
def test_bad_frames_are_1007_with_a_reason_naming_the_field(frame, needle):
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame)
    assert info.value.code == 1007
    assert needle in info.value.reason
    assert len(info.value.reason.encode()) <= 123


def test_reason_is_cut_on_a_character_boundary():
    cut = fit_reason("é" * 100)
    assert len(cut.encode()) <= 123 and cut == "é" * 61


def test_server_messages_are_compact_camel_case_json():
    [frame] = encode_server_message({"serverContent": {"modelTurn": {"parts": [{"text": "hé"}]}}})
    assert frame == '{"serverContent":{"modelTurn":{"parts":[{"text":"hé"}]}}}'


def test_large_audio_is_split_into_frames_under_1_mib_without_losing_bytes():
    pcm = bytes(range(256)) * 8000  # 2 MB of "audio"
    message = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}]}}}
    frames = encode_server_message(message)
    assert len(frames) >= 3
    assert all(len(f.encode()) <= MAX_SERVER_FRAME_BYTES for f in frames)
    chunks = [base64.b64decode(json.loads(f)["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"]) for f in frames]
    assert all(len(c) % 2 == 0 for c in chunks)  # whole 16-bit samples
    assert b"".join(chunks) == pcm


def test_an_unsplittable_oversized_message_is_an_internal_error_not_a_broken_frame():
    with pytest.raises(ProtocolError) as info:
        encode_server_message({"serverContent": {"modelTurn": {"parts": [{"text": "x" * (2 << 20)}]}}})
    assert info.value.code == 1011
