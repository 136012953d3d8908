"""Ephemeral tokens: request bodies exactly as google-genai builds them, the grant, and its locks."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import warnings

import pytest
from google import genai
from google.genai import _common, _live_converters, live
from google.genai import types as gt

from openlive.protocol.errors import ProtocolError
from openlive.protocol.messages import ProactivityConfig, Setup
from openlive.server.ephemeral import (
    TokenGrant,
    TokenRequestError,
    apply_constraints,
    check_usable,
    format_time,
    mint_token_name,
)

NOW_DT = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
NOW = NOW_DT.timestamp()
MODEL = "gemini-live-2.5-flash-preview"


# ---------------------------------------------------------------------------------------------
# What the SDK really sends


class _Response:
    def __init__(self, body: str) -> None:
        self.body = body
        self.headers: dict[str, str] = {}


def sdk_create(config, reply: dict | None = None):
    """Run the SDK's own `client.auth_tokens.create`, capturing the wire body and parsing `reply`."""
    client = genai.Client(api_key="server-key", http_options={"api_version": "v1alpha"})
    seen = {}

    def request(method, path, body, http_options=None):
        seen["call"] = (method, path, json.loads(json.dumps(body)))  # what goes over the wire
        return _Response(json.dumps(reply or {"name": "auth_tokens/x"}))

    client._api_client.request = request
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = client.auth_tokens.create(config=config)
    method, path, body = seen["call"]
    assert (method, path) == ("post", "auth_tokens")
    return body, token


def sdk_body(config) -> dict:
    return sdk_create(config)[0]


def sdk_setup(model: str = MODEL, config=None) -> Setup:
    """The setup message the SDK sends on `live.connect(model, config)`, parsed as the server does."""
    client = genai.Client(api_key="auth_tokens/x", http_options={"api_version": "v1alpha"})

    async def build():
        params = await live._t_live_connect_config(client._api_client, config)
        model_name = genai._transformers.t_model(client._api_client, model)
        request = _common.convert_to_dict(_live_converters._LiveConnectParameters_to_mldev(
            api_client=client._api_client,
            from_object=gt.LiveConnectParameters(model=model_name, config=params).model_dump(exclude_none=True)))
        del request["config"]
        return json.loads(json.dumps(_common.encode_unserializable_types(request)))

    return Setup.model_validate(asyncio.run(build())["setup"])


def constrained(lock=..., model: str | None = MODEL, **config) -> dict:
    params = gt.LiveConnectConstraints(model=model, config=gt.LiveConnectConfig(**config) if config else None)
    kwargs = {} if lock is ... else {"lock_additional_fields": lock}
    return sdk_body(gt.CreateAuthTokenConfig(live_connect_constraints=params, **kwargs))


def grant_for(body: dict) -> TokenGrant:
    return TokenGrant.from_request(body, NOW)


def rfc3339(delta_s: float) -> str:
    return (NOW_DT + dt.timedelta(seconds=delta_s)).isoformat()


def assert_locked(exc_info, path: str) -> None:
    err = exc_info.value
    assert err.code == 1007
    assert err.reason == f"Request contains an invalid argument: {path} is locked by the ephemeral token."
    assert len(err.reason.encode()) <= 123


# ---------------------------------------------------------------------------------------------
# The request: defaults, limits, bad bodies


def test_empty_request_takes_the_documented_defaults():
    body = sdk_body(gt.CreateAuthTokenConfig())
    assert body == {}
    grant = grant_for(body)
    assert grant.expire_at == NOW + 30 * 60
    assert grant.new_session_expire_at == NOW + 60
    assert grant.uses == 1
    assert grant.constraint is None and grant.field_mask is None


def test_sdk_times_and_uses_are_read():
    body = sdk_body(gt.CreateAuthTokenConfig(
        uses=0, expire_time=NOW_DT + dt.timedelta(hours=2), new_session_expire_time=NOW_DT + dt.timedelta(minutes=5)))
    assert body == {"uses": 0, "expireTime": rfc3339(7200), "newSessionExpireTime": rfc3339(300)}
    grant = grant_for(body)
    assert (grant.uses, grant.expire_at, grant.new_session_expire_at) == (0, NOW + 7200, NOW + 300)


def test_sdk_string_time_with_z_is_read():
    body = sdk_body(gt.CreateAuthTokenConfig(expire_time="2030-01-02T04:04:05Z"))
    assert grant_for(body).expire_at == NOW + 3600


@pytest.mark.parametrize("text, delta", [
    ("2030-01-02T03:34:05Z", 1800),
    ("2030-01-02T03:34:05z", 1800),
    ("2030-01-02T03:34:05.5Z", 1800.5),
    ("2030-01-02T03:34:05.123456789Z", 1800.123456789),
    ("2030-01-02T05:34:05+02:00", 1800),
    ("2030-01-01T22:04:05.250-05:30", 1800.25),
    ("2030-01-02 03:34:05+00:00", 1800),
])
def test_rfc3339_variants(text, delta):
    grant = TokenGrant.from_request({"expire_time": text}, NOW)
    assert grant.expire_at == pytest.approx(NOW + delta, abs=1e-6)


def test_snake_and_camel_keys_are_both_accepted():
    camel = grant_for({"expireTime": rfc3339(600), "newSessionExpireTime": rfc3339(30), "uses": 2,
                       "bidiGenerateContentSetup": {"generationConfig": {"temperature": 0.5}},
                       "fieldMask": "generationConfig.temperature"})
    snake = grant_for({"expire_time": rfc3339(600), "new_session_expire_time": rfc3339(30), "uses": 2,
                       "bidi_generate_content_setup": {"generation_config": {"temperature": 0.5}},
                       "field_mask": "generation_config.temperature"})
    assert camel == snake
    assert camel.constraint == {"generationConfig": {"temperature": 0.5}}
    assert camel.field_mask == ["generationConfig.temperature"]


@pytest.mark.parametrize("key", ["expireTime", "newSessionExpireTime"])
@pytest.mark.parametrize("delta, ok", [(-5, False), (0, False), (1, True), (20 * 3600 - 1, True),
                                       (20 * 3600, False), (3 * 86400, False)])
def test_time_limits(key, delta, ok):
    body = {key: rfc3339(delta)}
    if ok:
        TokenGrant.from_request(body, NOW)
    else:
        with pytest.raises(TokenRequestError, match="future"):
            TokenGrant.from_request(body, NOW)


@pytest.mark.parametrize("value", ["2030-01-02T03:34:05", "tomorrow", "2030-13-02T03:34:05Z", "2030-02-30T00:00:00Z",
                                   "2030-01-02T03:34:05+25:00", 1893553445, {"seconds": 1}, ["x"]])
def test_bad_times_are_refused(value):
    with pytest.raises(TokenRequestError, match="expire_time"):
        TokenGrant.from_request({"expireTime": value}, NOW)


def test_naive_sdk_datetime_is_refused_clearly():
    body = sdk_body(gt.CreateAuthTokenConfig(expire_time=dt.datetime(2030, 1, 2, 4, 0, 0)))
    with pytest.raises(TokenRequestError, match="time zone"):
        grant_for(body)


@pytest.mark.parametrize("value, expected", [(0, 0), (1, 1), (10, 10), ("7", 7), (3.0, 3), (None, 1)])
def test_uses_values(value, expected):
    assert TokenGrant.from_request({"uses": value}, NOW).uses == expected


@pytest.mark.parametrize("value", [-1, "-2", True, 1.5, "many", [1], 2**31])
def test_bad_uses_are_refused(value):
    with pytest.raises(TokenRequestError, match="uses"):
        TokenGrant.from_request({"uses": value}, NOW)


@pytest.mark.parametrize("body, match", [
    ({"name": "auth_tokens/chosen"}, 'Unknown name "name"'),
    ({"usess": 1}, 'Unknown name "usess"'),
    ({"uses": 1, "expireTime": rfc3339(60), "expire_time": rfc3339(60)}, "twice"),
    ({"bidiGenerateContentSetup": "setup"}, "bidi_generate_content_setup"),
    ({"bidiGenerateContentSetup": {"generationConfig": {"temprature": 1}}},
     r"Unknown name \"temprature\" at 'bidi_generate_content_setup.generation_config'"),
    ({"bidiGenerateContentSetup": {"generationConfig": {"temperature": "hot"}}},
     r"'bidi_generate_content_setup.generation_config.temperature' \(TYPE_FLOAT\)"),
    ({"bidiGenerateContentSetup": {"setup": {"model": "models/m"}}}, 'Unknown name "setup"'),
    ({"bidiGenerateContentSetup": {"model": ""}}, "model must not be empty"),
    ({"bidiGenerateContentSetup": {"model": 5}}, "bidi_generate_content_setup.model"),
    ({"bidiGenerateContentSetup": {"sessionResumption": {"handle": "h"}}}, "handle"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": 3}, "field_mask"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": "temprature"}, "not a field"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": "generationConfig.temprature"}, "not a field"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": "tools.functionDeclarations"}, "no fields"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": "generationConfig.speechConfig.voiceConfig"},
     "directly inside"),
    ({"bidiGenerateContentSetup": {"model": "m"}, "fieldMask": "generationConfig..x"}, "directly inside"),
])
def test_bad_bodies_are_refused(body, match):
    with pytest.raises(TokenRequestError, match=match):
        grant_for(body)


def test_non_object_body_is_refused():
    with pytest.raises(TokenRequestError):
        TokenGrant.from_request(["uses"], NOW)  # type: ignore[arg-type]


def test_token_request_error_is_a_value_error():
    assert issubclass(TokenRequestError, ValueError)


def test_field_mask_without_constraint_is_ignored():
    # lock_additional_fields without constraints: the SDK sends the names as they are.
    body = sdk_body(gt.CreateAuthTokenConfig(lock_additional_fields=["temperature"]))
    assert body == {"fieldMask": "temperature"}
    grant = grant_for(body)
    assert grant.constraint is None and grant.field_mask is None


def test_empty_constraint_is_no_constraint():
    assert grant_for({"bidiGenerateContentSetup": {}}).constraint is None
    assert grant_for({"bidiGenerateContentSetup": None}).constraint is None


@pytest.mark.parametrize("mask", ["", " , ", []])
def test_empty_field_mask_locks_the_whole_constraint(mask):
    grant = grant_for({"bidiGenerateContentSetup": {"generationConfig": {"temperature": 0.5}}, "fieldMask": mask})
    assert grant.field_mask is None
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup.model_validate({"model": "m", "generationConfig": {"topP": 0.5}}), grant)
    assert_locked(exc_info, "generationConfig.topP")


def test_field_mask_paths_are_camel_cased_deduplicated_and_may_be_a_list():
    grant = grant_for({"bidiGenerateContentSetup": {"model": "m"},
                       "fieldMask": " model, generation_config.top_p ,,generationConfig.topP,system_instruction,"})
    assert grant.field_mask == ["model", "generationConfig.topP", "systemInstruction"]
    grant = grant_for({"bidiGenerateContentSetup": {"model": "m"},
                       "fieldMask": ["proactivity.proactive_audio", "labels.team"]})
    assert grant.field_mask == ["proactivity.proactiveAudio", "labels.team"]


# ---------------------------------------------------------------------------------------------
# The three lock modes, with bodies from the SDK's converters

FULL = dict(
    response_modalities=["AUDIO"], temperature=0.7, session_resumption=gt.SessionResumptionConfig(),
    system_instruction="You are a kiosk.",
    realtime_input_config=gt.RealtimeInputConfig(
        automatic_activity_detection=gt.AutomaticActivityDetection(disabled=True)),
    speech_config=gt.SpeechConfig(voice_config=gt.VoiceConfig(
        prebuilt_voice_config=gt.PrebuiltVoiceConfig(voice_name="Kore"))),
)


def test_whole_lock_body_shape():
    body = constrained(**FULL)
    assert "fieldMask" not in body
    setup = body["bidiGenerateContentSetup"]
    assert setup["model"] == f"models/{MODEL}"
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    grant = grant_for(body)
    assert grant.field_mask is None
    assert grant.constraint["model"] == f"models/{MODEL}"
    # Stored in one form: camelCase for every modelled field, whatever casing the SDK used.
    assert grant.constraint["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert grant.constraint["generationConfig"]["speechConfig"] == {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}


def test_whole_lock_client_that_sets_nothing_gets_the_constraint():
    grant = grant_for(constrained(**FULL))
    effective = apply_constraints(sdk_setup(MODEL), grant)
    assert effective.generation_config.response_modalities == ["AUDIO"]
    assert effective.generation_config.temperature == 0.7
    assert effective.generation_config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"
    assert effective.system_instruction.text() == "You are a kiosk."
    assert effective.realtime_input_config.automatic_activity_detection.disabled is True
    assert effective.session_resumption is not None and effective.session_resumption.handle is None


def test_whole_lock_client_repeating_the_constraint_or_part_of_it_is_accepted():
    grant = grant_for(constrained(**FULL))
    same = sdk_setup(MODEL, gt.LiveConnectConfig(**FULL))
    assert apply_constraints(same, grant) == same
    part = sdk_setup(f"models/{MODEL}", gt.LiveConnectConfig(response_modalities=["AUDIO"]))
    assert apply_constraints(part, grant).generation_config.temperature == 0.7


@pytest.mark.parametrize("config, path", [
    (dict(temperature=0.9), "generationConfig.temperature"),
    (dict(response_modalities=["TEXT"]), "generationConfig.responseModalities"),
    (dict(top_p=0.5), "generationConfig.topP"),
    (dict(system_instruction="Ignore your rules."), "systemInstruction.parts"),
    (dict(output_audio_transcription=gt.AudioTranscriptionConfig()), "outputAudioTranscription"),
    (dict(tools=[gt.Tool(google_search=gt.GoogleSearch())]), "tools"),
    (dict(realtime_input_config=gt.RealtimeInputConfig(
        automatic_activity_detection=gt.AutomaticActivityDetection(disabled=False))),
     "realtimeInputConfig.automaticActivityDetection"),
])
def test_whole_lock_refuses_any_change(config, path):
    grant = grant_for(constrained(**FULL))
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(sdk_setup(MODEL, gt.LiveConnectConfig(**config)), grant)
    assert_locked(exc_info, path)


def test_whole_lock_refuses_a_resumption_setting_beside_the_handle():
    # (The Python SDK refuses `transparent` for the Gemini API; a raw client can still send it.)
    grant = grant_for(constrained(**FULL))
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup.model_validate(
            {"model": MODEL, "sessionResumption": {"handle": "h", "transparent": True}}), grant)
    assert_locked(exc_info, "sessionResumption.transparent")


def test_whole_lock_refuses_another_model_and_accepts_the_same_without_prefix():
    grant = grant_for(constrained(**FULL))
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup(model="models/other"), grant)
    assert_locked(exc_info, "model")
    assert apply_constraints(Setup(model=MODEL), grant).model == MODEL


def test_whole_lock_without_model_leaves_the_model_to_the_client():
    grant = grant_for(constrained(model=None, temperature=0.3))
    assert "model" not in grant.constraint
    effective = apply_constraints(Setup(model="models/anything"), grant)
    assert effective.model == "models/anything" and effective.generation_config.temperature == 0.3
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(sdk_setup("anything", gt.LiveConnectConfig(temperature=0.4)), grant)
    assert_locked(exc_info, "generationConfig.temperature")


def test_empty_lock_list_locks_the_set_fields_only():
    body = constrained(lock=[], **FULL)
    assert body["fieldMask"] == ("model,generationConfig.responseModalities,generationConfig.temperature,"
                                 "generationConfig.speechConfig,systemInstruction.parts,systemInstruction.role,"
                                 "sessionResumption,realtimeInputConfig")
    grant = grant_for(body)
    assert grant.field_mask == ["model", "generationConfig.responseModalities", "generationConfig.temperature",
                                "generationConfig.speechConfig", "systemInstruction.parts", "systemInstruction.role",
                                "sessionResumption", "realtimeInputConfig"]
    # Unlocked fields are the client's to set, on top of the constraint.
    setup = sdk_setup(MODEL, gt.LiveConnectConfig(
        top_p=0.5, output_audio_transcription=gt.AudioTranscriptionConfig(),
        tools=[gt.Tool(function_declarations=[gt.FunctionDeclaration(name="f")])]))
    effective = apply_constraints(setup, grant)
    assert effective.generation_config.top_p == 0.5
    assert effective.generation_config.temperature == 0.7
    assert effective.generation_config.response_modalities == ["AUDIO"]
    assert effective.output_audio_transcription is not None
    assert effective.tools[0].function_declarations[0].name == "f"
    assert effective.system_instruction.text() == "You are a kiosk."
    for config, path in [(dict(temperature=0.1), "generationConfig.temperature"),
                         (dict(system_instruction="Other."), "systemInstruction.parts"),
                         (dict(speech_config=gt.SpeechConfig(voice_config=gt.VoiceConfig(
                             prebuilt_voice_config=gt.PrebuiltVoiceConfig(voice_name="Puck")))),
                          "generationConfig.speechConfig")]:
        with pytest.raises(ProtocolError) as exc_info:
            apply_constraints(sdk_setup(MODEL, gt.LiveConnectConfig(**config)), grant)
        assert_locked(exc_info, path)


def test_generation_config_object_locks_it_as_a_whole():
    body = sdk_body({"live_connect_constraints": {"model": "m", "config": {
        "generation_config": {"top_p": 0.5, "max_output_tokens": 50}}}, "lock_additional_fields": []})
    assert body["fieldMask"] == "model,generationConfig"
    assert body["bidiGenerateContentSetup"]["generationConfig"] == {"max_output_tokens": 50, "top_p": 0.5}
    grant = grant_for(body)
    effective = apply_constraints(sdk_setup("m", gt.LiveConnectConfig(top_p=0.5)), grant)
    assert (effective.generation_config.top_p, effective.generation_config.max_output_tokens) == (0.5, 50)
    for config, path in [(dict(top_p=0.6), "generationConfig.topP"),
                         (dict(temperature=1.0), "generationConfig.temperature")]:
        with pytest.raises(ProtocolError) as exc_info:
            apply_constraints(sdk_setup("m", gt.LiveConnectConfig(**config)), grant)
        assert_locked(exc_info, path)


def test_additional_lock_fields():
    body = constrained(lock=["temperature", "top_k", "output_audio_transcription", "system_instruction"],
                       response_modalities=["AUDIO"], max_output_tokens=100)
    assert body["fieldMask"] == ("model,generationConfig.responseModalities,generationConfig.maxOutputTokens,"
                                 "generationConfig.temperature,generationConfig.top_k,output_audio_transcription,"
                                 "system_instruction")
    grant = grant_for(body)
    assert grant.field_mask == ["model", "generationConfig.responseModalities", "generationConfig.maxOutputTokens",
                                "generationConfig.temperature", "generationConfig.topK", "outputAudioTranscription",
                                "systemInstruction"]
    # Locked fields the constraint leaves out are locked to "absent".
    for config, path in [(dict(temperature=0.2), "generationConfig.temperature"),
                         (dict(top_k=3), "generationConfig.topK"),
                         (dict(max_output_tokens=5), "generationConfig.maxOutputTokens"),
                         (dict(output_audio_transcription=gt.AudioTranscriptionConfig()), "outputAudioTranscription"),
                         (dict(system_instruction="x"), "systemInstruction")]:
        with pytest.raises(ProtocolError) as exc_info:
            apply_constraints(sdk_setup(MODEL, gt.LiveConnectConfig(**config)), grant)
        assert_locked(exc_info, path)
    effective = apply_constraints(sdk_setup(MODEL, gt.LiveConnectConfig(
        top_p=0.9, input_audio_transcription=gt.AudioTranscriptionConfig())), grant)
    assert effective.generation_config.top_p == 0.9
    assert effective.generation_config.max_output_tokens == 100
    assert effective.generation_config.temperature is None
    assert effective.input_audio_transcription is not None


def test_duplicate_paths_in_the_sdk_mask_are_harmless():
    body = constrained(lock=["temperature"], temperature=0.7)
    assert body["fieldMask"] == "model,generationConfig.temperature,generationConfig.temperature"
    assert grant_for(body).field_mask == ["model", "generationConfig.temperature"]


def test_unlocked_model_is_the_clients():
    grant = grant_for({"bidiGenerateContentSetup": {"model": "models/a", "generationConfig": {"temperature": 0.1}},
                       "fieldMask": "generationConfig.temperature"})
    assert apply_constraints(Setup(model="models/b"), grant).model == "models/b"


def test_client_values_win_for_unlocked_paths():
    grant = grant_for({"bidiGenerateContentSetup": {
        "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.7}},
        "fieldMask": "generationConfig.temperature"})
    effective = apply_constraints(sdk_setup(MODEL, gt.LiveConnectConfig(response_modalities=["TEXT"], top_p=0.2)),
                                  grant)
    assert effective.generation_config.response_modalities == ["TEXT"]
    assert (effective.generation_config.temperature, effective.generation_config.top_p) == (0.7, 0.2)


def test_no_constraint_leaves_the_setup_unchanged():
    grant = grant_for(sdk_body(gt.CreateAuthTokenConfig(uses=3)))
    setup = sdk_setup(MODEL, gt.LiveConnectConfig(temperature=2.0, tools=[gt.Tool(google_search=gt.GoogleSearch())]))
    assert apply_constraints(setup, grant) is setup


# ---------------------------------------------------------------------------------------------
# Resumption handles are never locked


@pytest.mark.parametrize("lock", [..., [], ["session_resumption"]])
def test_handle_is_always_allowed(lock):
    grant = grant_for(constrained(lock=lock, session_resumption=gt.SessionResumptionConfig(), temperature=0.7))
    setup = sdk_setup(MODEL, gt.LiveConnectConfig(session_resumption=gt.SessionResumptionConfig(handle="h-123")))
    effective = apply_constraints(setup, grant)
    assert effective.session_resumption.handle == "h-123"
    assert effective.generation_config.temperature == 0.7


def test_handle_is_allowed_when_the_constraint_has_no_resumption():
    grant = grant_for(constrained(temperature=0.7))
    effective = apply_constraints(Setup.model_validate({"model": MODEL, "sessionResumption": {"handle": "h"}}), grant)
    assert effective.session_resumption.handle == "h"
    # Turning resumption on is a change, though.
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup.model_validate({"model": MODEL, "sessionResumption": {}}), grant)
    assert_locked(exc_info, "sessionResumption")


def test_handle_path_in_a_mask_locks_nothing():
    grant = grant_for({"bidiGenerateContentSetup": {"sessionResumption": {"transparent": True}},
                       "fieldMask": "sessionResumption.handle,sessionResumption.transparent"})
    effective = apply_constraints(Setup.model_validate({"model": "m", "session_resumption": {"handle": "abc"}}), grant)
    assert effective.session_resumption == Setup.model_validate(
        {"model": "m", "sessionResumption": {"handle": "abc", "transparent": True}}).session_resumption


# ---------------------------------------------------------------------------------------------
# One normal form for comparison


def test_snake_constraint_matches_camel_client():
    grant = grant_for({"bidi_generate_content_setup": {
        "model": "m",
        "generation_config": {"response_modalities": ["AUDIO"], "speech_config": {
            "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}}},
        "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 500}},
        "proactivity": {"proactive_audio": True},
        "context_window_compression": {"sliding_window": {"target_tokens": 1000}},
    }})
    client = Setup.model_validate({
        "model": "models/m",
        "generationConfig": {"responseModalities": ["AUDIO"],
                             "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}},
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 500}},
        "proactivity": {"proactiveAudio": True},
        "contextWindowCompression": {"slidingWindow": {"targetTokens": 1000}},
    })
    effective = apply_constraints(client, grant)
    assert effective.proactivity is not None and effective.proactivity.proactive_audio is True
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(client.model_copy(update={"proactivity": ProactivityConfig(proactive_audio=False)}), grant)
    assert_locked(exc_info, "proactivity.proactiveAudio")


def test_loose_dict_fields_merge_without_duplicating_keys():
    grant = grant_for({"bidiGenerateContentSetup": {"history_config": {"initial_history_in_client_content": True}},
                       "fieldMask": "generationConfig.temperature"})
    effective = apply_constraints(Setup.model_validate(
        {"model": "m", "historyConfig": {"initialHistoryInClientContent": False}}), grant)
    assert effective.history_config == {"initialHistoryInClientContent": False}  # the client's casing, not doubled


def test_schema_property_names_are_user_data():
    def setup_with(prop: str) -> dict:
        return {"model": "m", "tools": [{"functionDeclarations": [{
            "name": "f", "parametersJsonSchema": {"type": "object", "properties": {prop: {"type": "string"}}}}]}]}

    body = {"bidiGenerateContentSetup": setup_with("my_arg")}
    grant = grant_for(body)
    effective = apply_constraints(Setup.model_validate(setup_with("my_arg")), grant)
    assert effective.tools[0].function_declarations[0].parameters_json_schema["properties"] == {
        "my_arg": {"type": "string"}}
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup.model_validate(setup_with("myArg")), grant)
    assert_locked(exc_info, "tools")
    # Left out, the constraint's tools are used verbatim.
    effective = apply_constraints(Setup(model="m"), grant)
    assert "my_arg" in effective.tools[0].function_declarations[0].parameters_json_schema["properties"]


def test_sdk_tools_constraint_round_trips():
    tools = [gt.Tool(function_declarations=[gt.FunctionDeclaration(
        name="get_weather", description="d", parameters_json_schema={
            "type": "object", "properties": {"city_name": {"type": "string"}}, "required": ["city_name"]})])]
    grant = grant_for(constrained(tools=tools, response_modalities=["TEXT"]))
    same = sdk_setup(MODEL, gt.LiveConnectConfig(tools=tools, response_modalities=["TEXT"]))
    assert apply_constraints(same, grant) == same
    assert apply_constraints(sdk_setup(MODEL), grant).tools == same.tools


def test_binary_inline_data_in_the_constraint_survives():
    raw = bytes([0xFF, 0x00, 0xFE])
    grant = grant_for({"bidiGenerateContentSetup": {"systemInstruction": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.urlsafe_b64encode(raw).decode()}}]}}})
    json.dumps(grant.to_record())
    assert apply_constraints(Setup(model="m"), grant).system_instruction.parts[0].inline_data.data == raw
    same = Setup.model_validate({"model": "m", "systemInstruction": {"parts": [
        {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(raw).decode()}}]}})
    assert apply_constraints(same, grant) == same


def test_long_paths_still_fit_a_close_reason():
    grant = grant_for({"bidiGenerateContentSetup": {"generationConfig": {"enableEnhancedCivicAnswers": False}},
                       "fieldMask": "generationConfig.enableEnhancedCivicAnswers"})
    with pytest.raises(ProtocolError) as exc_info:
        apply_constraints(Setup.model_validate(
            {"model": "m", "generationConfig": {"enableEnhancedCivicAnswers": True}}), grant)
    assert exc_info.value.code == 1007
    assert len(exc_info.value.reason.encode()) <= 123
    assert "generationConfig.enableEnhancedCivicAnswers" in exc_info.value.reason


# ---------------------------------------------------------------------------------------------
# Storage, reply, names, usability


def test_record_round_trip_through_json():
    grant = grant_for(constrained(lock=["temperature"], **FULL))
    record = json.loads(json.dumps(grant.to_record()))
    again = TokenGrant.from_record(record)
    assert again == grant
    setup = sdk_setup(MODEL)
    assert apply_constraints(setup, again) == apply_constraints(setup, grant)
    bare = TokenGrant(expire_at=NOW + 1, new_session_expire_at=NOW + 1, uses=0)
    assert TokenGrant.from_record(json.loads(json.dumps(bare.to_record()))) == bare


@pytest.mark.parametrize("record", [
    {}, {"expire_at": "x", "new_session_expire_at": 1, "uses": 1},
    {"expire_at": 1, "new_session_expire_at": 1, "uses": -1},
    {"expire_at": 1, "new_session_expire_at": 1, "uses": True},
    {"expire_at": 1, "new_session_expire_at": 1, "uses": 1, "constraint": []},
    {"expire_at": 1, "new_session_expire_at": 1, "uses": 1, "field_mask": "model"},
])
def test_bad_records_are_refused(record):
    with pytest.raises(ValueError):
        TokenGrant.from_record(record)


def test_response_is_what_the_sdk_reads():
    grant = grant_for({"expireTime": "2030-01-02T03:34:05.25Z", "uses": 5})
    name = mint_token_name()
    reply = grant.response(name)
    assert reply == {"name": name, "expireTime": "2030-01-02T03:34:05.250Z",
                     "newSessionExpireTime": "2030-01-02T03:05:05Z", "uses": 5}
    _, token = sdk_create(gt.CreateAuthTokenConfig(uses=5), reply=reply)
    assert isinstance(token, gt.AuthToken)
    assert (token.name, token.uses) == (name, 5)
    assert dt.datetime.fromisoformat(token.expire_time.replace("Z", "+00:00")).timestamp() == grant.expire_at
    assert dt.datetime.fromisoformat(token.new_session_expire_time.replace("Z", "+00:00")).timestamp() == NOW + 60
    assert gt.AuthToken.model_validate(reply).name == name
    # A client built with the token picks the Constrained method.
    assert token.name.startswith("auth_tokens/")


def test_format_time():
    assert format_time(NOW) == "2030-01-02T03:04:05Z"
    assert format_time(NOW + 0.5) == "2030-01-02T03:04:05.500Z"
    assert format_time(NOW + 0.123456) == "2030-01-02T03:04:05.123456Z"


def test_mint_token_name():
    names = {mint_token_name() for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert re.fullmatch(r"auth_tokens/[A-Za-z0-9_-]{43}", name)
        assert len(base64.urlsafe_b64decode(name.split("/", 1)[1] + "=")) == 32


def test_check_usable():
    grant = TokenGrant(expire_at=NOW + 1800, new_session_expire_at=NOW + 60, uses=1)
    check_usable(grant, NOW, resuming=False)
    check_usable(grant, NOW + 59.9, resuming=False)
    with pytest.raises(ProtocolError) as exc_info:
        check_usable(grant, NOW + 60, resuming=False)
    assert exc_info.value.code == 1008 and "new sessions" in exc_info.value.reason
    check_usable(grant, NOW + 600, resuming=True)  # resuming is not a new session
    for resuming in (False, True):
        with pytest.raises(ProtocolError) as exc_info:
            check_usable(grant, NOW + 1800, resuming=resuming)
        assert exc_info.value.code == 1008 and "expired" in exc_info.value.reason
        assert len(exc_info.value.reason.encode()) <= 123
