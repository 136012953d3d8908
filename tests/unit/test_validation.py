"""Issue 13: hostile values are refused with 1007 and a reason naming the field, never a crash.

Each case here once reached the session or an engine and ended as 1011 with a traceback (or an
HTTP 500): NaN and 1e400 sampling values, 5,000-digit integers, lone UTF-16 surrogates, schemas
that are numbers or loops, JSON nested 10,000 deep.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openlive.config import ConfigError, load_config
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.protocol.bounded_json import JSONLimitError, Limits, loads, loads_toml
from openlive.protocol.errors import fit_reason
from openlive.protocol.messages import Setup
from openlive.protocol.schemas import SchemaError, check_schema
from openlive.session.options import SessionOptions
from openlive.session.tools import ToolSet
from openlive.session.user_audio import pcm_rate

MODEL = "models/gemini-live-2.5-flash-preview"


def setup_frame(**fields: object) -> str:
    return json.dumps({"setup": {"model": MODEL, **fields}})


def gen(key: str, raw: str) -> str:
    """A setup whose generationConfig[key] is the raw JSON text `raw` (NaN and 1e400 are not json.dumps-able)."""
    return '{"setup": {"model": "%s", "generationConfig": {"%s": %s}}}' % (MODEL, key, raw)


def tool(schema_key: str, schema: object) -> str:
    return setup_frame(tools=[{"functionDeclarations": [{"name": "f", schema_key: schema}]}])


def refused(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame)
    reason = info.value.reason
    assert reason and len(reason.encode("utf-8")) <= 123  # sendable as it is
    return info.value


# ---------------------------------------------------------------------------------------------
# Numbers reaching the LLM engine


@pytest.mark.parametrize("key, raw, needle", [
    ("temperature", "NaN", "generation_config.temperature', NaN"),
    ("temperature", "Infinity", "generation_config.temperature', Infinity"),
    ("temperature", "-Infinity", "generation_config.temperature', -Infinity"),
    ("temperature", "1e400", "generation_config.temperature', Infinity"),
    ("temperature", '"NaN"', "generation_config.temperature' (TYPE_FLOAT), \"NaN\": must be a finite number"),
    ("temperature", '"Infinity"', "must be a finite number"),
    ("temperature", "2.5", "generation_config.temperature' (TYPE_FLOAT), 2.5: must be in [0, 2]"),
    ("temperature", "-0.1", "must be in [0, 2]"),
    ("topP", "1.5", "generation_config.top_p' (TYPE_FLOAT), 1.5: must be in [0, 1]"),
    ("topP", "NaN", "generation_config.top_p', NaN"),
    ("topK", "1e400", "generation_config.top_k', Infinity"),
    ("topK", "1e30", "generation_config.top_k' (TYPE_INT32)"),
    ("topK", "0", "generation_config.top_k' (TYPE_INT32), 0: must be positive"),
    ("topK", "40.5", "generation_config.top_k' (TYPE_INT32), 40.5"),
    ("maxOutputTokens", "-5", "generation_config.max_output_tokens' (TYPE_INT32), -5: must be in [1, 65536]"),
    ("maxOutputTokens", "0", "must be in [1, 65536]"),
    ("maxOutputTokens", "1e30", "generation_config.max_output_tokens' (TYPE_INT32)"),
    ("maxOutputTokens", "100000", "must be in [1, 65536]"),
    ("seed", "9" * 5000, "generation_config.seed', 99999999999999999999…: number out of range"),
    ("seed", "9" * 100, "generation_config.seed' (TYPE_INT32), 99999999999999999999…: out of range"),
    ("seed", str(2**31), "generation_config.seed' (TYPE_INT32), 2147483648: out of range"),
    ("candidateCount", "0", "generation_config.candidate_count' (TYPE_INT32), 0: must be in [1, 8]"),
    ("candidateCount", "1e400", "generation_config.candidate_count', Infinity"),
    ("presencePenalty", "2", "generation_config.presence_penalty' (TYPE_FLOAT), 2: must be in [-2, 2)"),
    ("presencePenalty", "-1e400", "generation_config.presence_penalty', -Infinity"),
    ("frequencyPenalty", "NaN", "generation_config.frequency_penalty', NaN"),
    ("frequencyPenalty", "-3", "must be in [-2, 2)"),
    ("logprobs", "21", "generation_config.logprobs' (TYPE_INT32), 21: must be in [0, 20]"),
    ("stopSequences", json.dumps(["."] * 6), "generation_config.stop_sequences': at most 5 items"),
    ("stopSequences", json.dumps(["x" * 1001]), "generation_config.stop_sequences[0]': at most 1000 characters"),
])
def test_generation_config_values_outside_the_service_ranges_are_1007(key, raw, needle):
    error = refused(gen(key, raw))
    assert error.code == 1007
    assert needle in error.reason


@pytest.mark.parametrize("frame, needle", [
    (setup_frame(realtimeInputConfig={"automaticActivityDetection": {"silenceDurationMs": -1}}),
     "automatic_activity_detection.silence_duration_ms' (TYPE_INT32), -1: must not be negative"),
    (setup_frame(realtimeInputConfig={"automatic_activity_detection": {"prefix_padding_ms": 2**40}}),
     "prefix_padding_ms' (TYPE_INT32), 1099511627776: out of range"),
    ('{"setup": {"model": "m", "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": NaN}}}}',
     "silence_duration_ms', NaN"),
    (setup_frame(contextWindowCompression={"triggerTokens": -1}),
     "context_window_compression.trigger_tokens' (TYPE_INT64), -1: must not be negative"),
    (setup_frame(contextWindowCompression={"triggerTokens": 2**64}),
     "context_window_compression.trigger_tokens' (TYPE_INT64)"),
    (setup_frame(contextWindowCompression={"slidingWindow": {"targetTokens": 1.5}}),
     "sliding_window.target_tokens' (TYPE_INT"),
    (setup_frame(sessionResumption={"handle": "h" * 2000}), "session_resumption.handle': at most 1024 characters"),
    (setup_frame(sessionResumption={"transparent": 1e400}), "session_resumption.transparent', Infinity"),
])
def test_other_numeric_setup_fields_are_checked_too(frame, needle):
    error = refused(frame)
    assert error.code == 1007
    assert needle in error.reason


def test_values_in_range_reach_the_session_as_sent():
    frame = json.dumps({"setup": {"model": MODEL, "generationConfig": {
        "temperature": 2, "topP": 0, "topK": 40.0, "maxOutputTokens": 65536, "seed": -(2**31),
        "presencePenalty": -2, "frequencyPenalty": 1.99, "candidateCount": 1, "stopSequences": ["a"] * 5}}})
    setup = parse_client_frame(frame)
    params = SessionOptions.from_setup(setup).params
    assert (params.temperature, params.top_p, params.top_k) == (2, 0, 40)
    assert (params.max_tokens, params.seed) == (65536, -(2**31))
    assert isinstance(params.top_k, int)


# ---------------------------------------------------------------------------------------------
# Strings that are not Unicode


@pytest.mark.parametrize("frame, needle", [
    ('{"setup": {"model": "models/\\ud800"}}', "'setup.model' (TYPE_STRING): not valid UTF-8"),
    ('{"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi \\udfff"}]}]}}',
     "'client_content.turns[0].parts[0].text' (TYPE_STRING)"),
    ('{"realtimeInput": {"text": "\\ud83d"}}', "'realtime_input.text' (TYPE_STRING)"),
    ('{"setup": {"model": "m", "systemInstruction": {"parts": [{"text": "\\ud800"}]}}}',
     "'setup.system_instruction.parts[0].text'"),
    ('{"setup": {"model": "m", "tools": [{"functionDeclarations": [{"name": "get_\\udc00"}]}]}}',
     "'setup.tools[0].function_declarations[0].name'"),
    ('{"toolResponse": {"functionResponses": [{"id": "1", "response": {"r": ["\\ud800"]}}]}}',
     "'tool_response.function_responses[0].response.r[0]'"),
    ('{"toolResponse": {"functionResponses": [{"id": "1", "response": {"\\ud800": 1}}]}}',
     "A name at 'tool_response.function_responses[0].response' is not valid UTF-8"),
])
def test_lone_surrogates_are_1007_wherever_they_are(frame, needle):
    error = refused(frame)
    assert error.code == 1007
    assert needle in error.reason


def test_a_surrogate_pair_is_a_character_not_an_error():
    event = parse_client_frame('{"realtimeInput": {"text": "\\ud83d\\ude00"}}')
    assert event.text == "\U0001F600"


def test_invalid_utf8_in_a_binary_frame_is_1007():
    assert "not valid UTF-8" in refused(b'{"realtimeInput": {"text": "\xed\xa0\x80"}}').reason


@pytest.mark.parametrize("reason", ["models/\ud800 is not found", "x\udfff" * 200, "é" * 200, "", "\U0001F600" * 40])
def test_any_reason_is_made_sendable(reason):
    fitted = fit_reason(reason)
    raw = fitted.encode("utf-8")  # raises on a surrogate
    assert len(raw) <= 123
    assert ProtocolError(1007, reason).reason == fitted


# ---------------------------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize("key, schema, needle", [
    ("parametersJsonSchema", 5, "parameters_json_schema': must be an object, not int"),
    ("parametersJsonSchema", [1, 2], "must be an object, not a list"),
    ("parametersJsonSchema", "object", "must be an object, not str"),
    ("parameters", 5, "parameters': must be an object, not int"),
    ("parameters", [], "parameters': must be an object, not a list"),
    ("response", 7, "response': must be an object, not int"),
    ("responseJsonSchema", True, "response_json_schema': must be an object, not bool"),
    ("parametersJsonSchema", {"$ref": "#"}, "$ref loop"),
    ("parametersJsonSchema", {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                              "$ref": "#/$defs/a"}, "$ref loop"),
    ("parametersJsonSchema", {"anyOf": [{"$ref": "#"}]}, "$ref loop"),
    ("parametersJsonSchema", {"$ref": "https://example.com/s.json"}, "is not local"),
    ("parametersJsonSchema", {"$ref": "#/$defs/missing"}, "points to nothing"),
    ("parametersJsonSchema", {"type": "object", "properties": {"a": 5}}, "/properties/a must be an object"),
    ("parametersJsonSchema", {"type": "object", "properties": [1]}, "/properties must be an object of schemas"),
    ("parameters", {"type": "OBJECT", "any_of": {"type": "STRING"}}, "/any_of must be a list of schemas"),
    ("parametersJsonSchema", {"type": []}, "/type must be a type name"),
    ("parametersJsonSchema", {"enum": {"a": 1}}, "/enum must be a list"),
    ("parametersJsonSchema", {"required": [1]}, "/required must be a list of names"),
    ("parametersJsonSchema", json.loads('{"items":' * 45 + "{}" + "}" * 45), "nested more than 40 levels"),
    ("parametersJsonSchema", {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(6000)}},
     "more than 10000 values"),
])
def test_bad_function_schemas_are_1007(key, schema, needle):
    error = refused(tool(key, schema))
    assert error.code == 1007
    assert needle in error.reason


@pytest.mark.parametrize("key", ["responseSchema", "responseJsonSchema"])
def test_generation_config_response_schemas_are_checked_too(key):
    error = refused(setup_frame(generationConfig={key: [1]}))
    assert "must be an object, not a list" in error.reason


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"city": {"type": "string"}, "anything": True}, "required": ["city"]},
    # A tree: recursion through properties/items consumes input, so it is a real grammar.
    {"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array",
                                                                      "items": {"$ref": "#/$defs/node"}}}}},
     "$ref": "#/$defs/node"},
    {"type": "object", "properties": {"n": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}},
])
def test_good_schemas_are_accepted_and_tools_read_them(schema):
    setup = parse_client_frame(tool("parametersJsonSchema", schema))
    assert isinstance(setup, Setup)
    toolset = ToolSet.from_setup(setup.tools)
    assert "f(" in toolset.instructions()
    check_schema(toolset.schema())  # what reaches the grammar compiler is itself a sound schema


def test_openapi_parameters_from_the_python_sdk_are_accepted():
    from google.genai import types

    decl = types.FunctionDeclaration(name="f", parameters=types.Schema(
        type="OBJECT", properties={"city": types.Schema(type="STRING", enum=["a", "b"]),
                                   "days": types.Schema(type="ARRAY", items=types.Schema(type="INTEGER"))},
        required=["city"], property_ordering=["city", "days"]))
    dumped = decl.model_dump(mode="json", exclude_none=True)
    setup = parse_client_frame(setup_frame(tools=[{"functionDeclarations": [dumped]}]))
    assert setup.tools[0].function_declarations[0].parameters["required"] == ["city"]


def test_schema_check_reports_where():
    with pytest.raises(SchemaError, match="/properties/a/items must be an object"):
        check_schema({"properties": {"a": {"items": 3}}})


# ---------------------------------------------------------------------------------------------
# The bounded parser


@pytest.mark.parametrize("document, needle", [
    ("[" * 10_000 + "]" * 10_000, "Nested more than 100 levels deep"),
    ('{"a":' * 10_000 + "1" + "}" * 10_000, "Nested more than 100 levels deep"),
    ("[" * 101 + "]" * 101, "Nested more than 100 levels deep"),
    ("[" + ",".join(["0"] * 100_001) + "]", "More than 100000 values"),
    ("NaN", "NaN: numbers must be finite"),
    ('{"a": [1, -Infinity]}', "Invalid value at 'a[1]', -Infinity"),
    ("1e400", "Infinity"),
    ("9" * 5000, "number out of range"),
    ("-" + "9" * 400, "number out of range"),
    ('"\\ud800"', "not valid UTF-8"),
    ("{broken", "Invalid JSON payload received."),
    (b"\xff", "not valid UTF-8"),
])
def test_the_bounded_parser_refuses_with_a_reason(document, needle):
    with pytest.raises(JSONLimitError) as info:
        loads(document)
    assert needle in info.value.message
    assert not info.value.too_big


def test_the_bounded_parser_accepts_what_a_client_sends():
    assert loads("[" * 100 + "]" * 100) is not None
    assert loads('{"n": ' + "9" * 309 + "}")["n"] == int("9" * 309)
    assert loads(b'{"t": "\\ud83d\\ude00", "x": 1.5e300}') == {"t": "\U0001F600", "x": 1.5e300}


def test_size_is_bounded_before_parsing():
    with pytest.raises(JSONLimitError) as info:
        loads(b"[" + b" " * 2000 + b"]", Limits(max_bytes=1000))
    assert info.value.too_big
    error = refused_with_limits('{"realtimeInput": {"text": "' + "x" * 2000 + '"}}', Limits(max_bytes=1000))
    assert error.code == 1009 and "exceeds the limit: 1000 bytes" in error.reason


def refused_with_limits(frame: str, limits: Limits) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame, limits)
    return info.value


def test_an_ordinary_audio_frame_is_cheap_to_check():
    # The walk visits a handful of values, however long the base64 is.
    frame = json.dumps({"realtimeInput": {"audio": {"data": "AAAA" * 200_000, "mimeType": "audio/pcm;rate=16000"}}})
    assert len(parse_client_frame(frame).audio.data) == 600_000


@pytest.mark.parametrize("text, needle", [
    ("a = " + "[" * 10_000 + "]" * 10_000, "Nested more than"),
    ("a = " + "{b = " * 5_000 + "1" + "}" * 5_000, "Nested more than"),
    ("a = " + "[" * 150 + "]" * 150, "Nested more than 100 levels deep"),
])
def test_toml_is_bounded_too(text, needle):
    with pytest.raises(JSONLimitError, match=needle):
        loads_toml(text)


def test_a_config_file_nested_too_deep_is_a_config_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OPENLIVE_CONFIG", raising=False)
    path = tmp_path / "deep.toml"
    path.write_text("[server]\napi_keys = " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(ConfigError, match="Nested more than"):
        load_config(path)


# ---------------------------------------------------------------------------------------------
# Audio mime types


@pytest.mark.parametrize("mime", ["audio/pcm;rate=" + "9" * 5000, "audio/pcm;rate=0", "audio/pcm;rate=99999999"])
def test_absurd_sample_rates_are_1007(mime):
    with pytest.raises(ProtocolError) as info:
        pcm_rate(mime)
    assert info.value.code == 1007 and "unsupported audio rate" in info.value.reason


def test_ordinary_sample_rates_pass():
    assert pcm_rate("audio/pcm;rate=24000") == 24000
    assert pcm_rate("audio/pcm") == 16000
