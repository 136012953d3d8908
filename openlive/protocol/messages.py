"""Typed client messages of the Live API (BidiGenerateContent), validated once at the edge.

Field names follow protobuf-JSON rules: every field is accepted both in lowerCamelCase and in
snake_case, because the Python SDK camelCases only the keys it names explicitly and dumps the
rest of each nested object in snake_case, while the JS SDK sends camelCase throughout.
Every field the SDKs' types define is accepted (tests/unit/test_sdk_fields.py walks google-genai's
types to keep it so), and a truly unknown field is refused as the real service refuses it
("Unknown name … Cannot find field."). Fields we accept but do not act on are marked `Inert[…]`:
they are checked for their JSON shape (an object, a list, an enum name …) but what an object holds
is not inspected (the frame parser bounds its size and depth), and `inert_fields` names the ones a
message set, so the session can log them once (the path only, never the value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .b64 import decode_any
from .values import INT32, MAX_OUTPUT_TOKENS, EnumName, Float, Int32, Int64, OneOf, Schema, StopSequences


def _decode_base64(value: Any) -> bytes:
    """Decode base64 in either alphabet, padded or not (Python sends URL-safe, JS standard)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return decode_any(value)


Base64Bytes = Annotated[bytes, BeforeValidator(_decode_base64)]


class _InertMark:
    """Marks a field openlive accepts but does not act on (see `inert_fields`)."""

    def __repr__(self) -> str:
        return "INERT"


INERT = _InertMark()
_T = TypeVar("_T")
Inert = Annotated[_T, INERT]
Object = dict[str, Any]  # a JSON object whose content openlive does not read


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        extra="forbid",
        frozen=True,
        # Dumped setups are stored in resumption snapshots: bytes must survive as base64.
        ser_json_bytes="base64",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        """A field in both spellings: the later one counts. The Python SDK sends that when a
        config sets a field both in the deprecated `generation_config` (dumped in snake_case) and
        directly (written over it in camelCase), meaning the direct one."""
        if not isinstance(data, dict) or len(data) < 2:
            return data
        fields = cls.model_fields
        drop = None
        for key in data:
            field = fields.get(key) if isinstance(key, str) else None  # a field by its snake_case name
            camel = field.alias if field is not None else None
            if camel and camel != key and camel in data:
                drop = drop or set()
                order = list(data)
                drop.add(key if order.index(key) < order.index(camel) else camel)
        return data if drop is None else {k: v for k, v in data.items() if k not in drop}


class Blob(WireModel):
    mime_type: str = ""
    data: Base64Bytes = b""
    display_name: Inert[str | None] = None


class FunctionCall(WireModel):
    id: str | None = None
    name: str = ""
    args: dict[str, Any] | None = None
    partial_args: list[dict[str, Any]] | None = None
    will_continue: bool | None = None


class FunctionResponse(WireModel):
    id: str | None = None
    name: str | None = None
    # Any JSON value: a malformed body is passed to the model as it is rather than ending the session.
    response: Any = None
    will_continue: bool | None = None
    scheduling: Literal["SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"] | None = None
    parts: Inert[list[Object] | None] = None


class Part(WireModel):
    text: str | None = None
    inline_data: Blob | None = None  # images in a user turn are looked at
    thought: bool | None = None
    # Parts of a turn that are not its text or an image are kept out of the model's context.
    function_call: Inert[FunctionCall | None] = None
    function_response: Inert[FunctionResponse | None] = None
    thought_signature: Inert[Base64Bytes | None] = None
    executable_code: Inert[Object | None] = None
    code_execution_result: Inert[Object | None] = None
    file_data: Inert[Object | None] = None
    video_metadata: Inert[Object | None] = None
    media_resolution: Inert[Any] = None
    part_metadata: Inert[Object | None] = None
    tool_call: Inert[Object | None] = None
    tool_response: Inert[Object | None] = None
    audio_transcription: Inert[Object | None] = None
    media_processing: Inert[EnumName | None] = None
    speech_metadata: Inert[Object | None] = None
    document_metadata: Inert[Object | None] = None
    spreadsheet_metadata: Inert[Object | None] = None
    audio_metadata: Inert[Object | None] = None


class Content(WireModel):
    role: str | None = None
    parts: list[Part] = Field(default_factory=list)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if p.text and not p.thought)


class PrebuiltVoiceConfig(WireModel):
    voice_name: str | None = None


class VoiceConfig(WireModel):
    prebuilt_voice_config: PrebuiltVoiceConfig | None = None
    voice: str | None = None  # "the speaker identifier": a voice name, as prebuilt_voice_config.voice_name
    replicated_voice_config: Inert[Object | None] = None


class SpeechConfig(WireModel):
    voice_config: VoiceConfig | None = None
    language_code: str | None = None
    multi_speaker_voice_config: dict[str, Any] | None = None


Modality = Literal["MODALITY_UNSPECIFIED", "TEXT", "AUDIO", "IMAGE", "VIDEO"]


class GenerationConfig(WireModel):
    response_modalities: list[Modality] | None = None
    temperature: Float(0, 2) | None = None
    top_p: Float(0, 1) | None = None
    # A float in the SDK's types but an int32 in the service's proto: 40.0 is read as 40, 40.5 refused.
    top_k: Int32(1, INT32[1]) | None = None
    max_output_tokens: Int32(1, MAX_OUTPUT_TOKENS) | None = None
    seed: Int32() | None = None
    candidate_count: Inert[Int32(1, 8) | None] = None  # one candidate is all a live session has
    presence_penalty: Float(-2, 2, high_open=True) | None = None
    frequency_penalty: Float(-2, 2, high_open=True) | None = None
    stop_sequences: StopSequences | None = None
    speech_config: SpeechConfig | None = None
    media_resolution: str | None = None
    thinking_config: Inert[Object | None] = None
    enable_affective_dialog: Inert[bool | None] = None
    translation_config: Inert[Object | None] = None
    audio_transcription_config: Inert[Object | None] = None
    response_mime_type: Inert[str | None] = None
    response_schema: Inert[Schema] = None
    response_json_schema: Inert[Schema] = None
    response_logprobs: Inert[bool | None] = None
    logprobs: Inert[Int32(0, 20) | None] = None
    audio_timestamp: Inert[bool | None] = None
    routing_config: Inert[Object | None] = None
    model_selection_config: Inert[Object | None] = None
    # The SDK's Vertex converters write model_selection_config as `modelConfig` (pydantic keeps
    # `model_config` for itself, hence the trailing underscore).
    model_config_: Inert[Object | None] = Field(None, alias="modelConfig",
                                               validation_alias=AliasChoices("modelConfig", "model_config"))
    enable_enhanced_civic_answers: Inert[bool | None] = None
    # A list of formats in the SDKs' types; one object in older clients.
    response_format: Inert[OneOf("objects", "object")] = None


class AutomaticActivityDetection(WireModel):
    disabled: bool | None = None
    start_of_speech_sensitivity: (
        Literal["START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"] | None
    ) = None
    end_of_speech_sensitivity: (
        Literal["END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"] | None
    ) = None
    prefix_padding_ms: Int32(0) | None = None
    silence_duration_ms: Int32(0) | None = None


class RealtimeInputConfig(WireModel):
    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: (
        Literal["ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"] | None
    ) = None
    turn_coverage: (
        Literal[
            "TURN_COVERAGE_UNSPECIFIED",
            "TURN_INCLUDES_ONLY_ACTIVITY",
            "TURN_INCLUDES_ALL_INPUT",
            "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
        ]
        | None
    ) = None
    # Also accepted here (some clients put it beside the other activity settings); the SDK sends it
    # as setup.explicitVadSignal.
    explicit_vad_signal: bool | None = None
    interim_transcript_timestamp_enabled: Inert[bool | None] = None


class AudioTranscriptionConfig(WireModel):
    """Its presence switches transcription on; what it holds is not acted on yet."""

    language_codes: Inert[list[str] | None] = None
    # LanguageAuto is an empty message and LanguageHints {languageCodes} in the SDKs' types.
    language_auto: Inert[OneOf("bool", "object")] = None
    language_hints: Inert[OneOf("strings", "object")] = None
    custom_vocabulary: Inert[Any] = None
    adaptation_phrases: Inert[Any] = None
    word_timestamp: Inert[bool | None] = None
    diarization: Inert[Any] = None
    mode: Inert[str | None] = None
    source_text: Inert[Any] = None


class SessionResumptionConfig(WireModel):
    # Our handles are 43 characters; a megabyte of "handle" is not worth a store lookup.
    handle: Annotated[str, Field(max_length=1024)] | None = None
    transparent: bool | None = None


class SlidingWindow(WireModel):
    target_tokens: Int64(0) | None = None


class ContextWindowCompressionConfig(WireModel):
    trigger_tokens: Int64(0) | None = None
    sliding_window: SlidingWindow | None = None


class FunctionDeclaration(WireModel):
    name: str
    description: str | None = None
    # Schemas hold user-chosen property names: kept verbatim, never re-cased.
    parameters: Schema = None
    parameters_json_schema: Schema = None
    response: Inert[Schema] = None
    response_json_schema: Inert[Schema] = None
    behavior: Literal["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"] | None = None


class Tool(WireModel):
    function_declarations: list[FunctionDeclaration] | None = None
    code_execution: dict[str, Any] | None = None
    google_search: dict[str, Any] | None = None
    google_search_retrieval: dict[str, Any] | None = None
    url_context: dict[str, Any] | None = None
    # Tools this server cannot serve: parsed (their shape checked) so that the session can refuse
    # them by name, as the service refuses a tool its model lacks (session/tools.py refuse_unserved).
    google_maps: Object | None = None
    computer_use: Object | None = None
    file_search: Object | None = None
    mcp_servers: list[Object] | None = None
    retrieval: Object | None = None
    enterprise_web_search: Object | None = None
    parallel_ai_search: Object | None = None
    exa_ai_search: Object | None = None


class ProactivityConfig(WireModel):
    # The model may stay silent on input that was not said to it (session/proactivity.py).
    proactive_audio: bool | None = None
    proactive_video: Inert[bool | None] = None


class Setup(WireModel):
    model: str
    generation_config: GenerationConfig | None = None
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    realtime_input_config: RealtimeInputConfig | None = None
    session_resumption: SessionResumptionConfig | None = None
    context_window_compression: ContextWindowCompressionConfig | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    proactivity: ProactivityConfig | None = None
    explicit_vad_signal: bool | None = None
    history_config: dict[str, Any] | None = None
    avatar_config: Inert[Object | None] = None
    safety_settings: Inert[list[Object] | None] = None
    labels: Inert[dict[str, str] | None] = None


class ClientContent(WireModel):
    turns: list[Content] = Field(default_factory=list)
    turn_complete: bool = True


class RealtimeInput(WireModel):
    media_chunks: list[Blob] | None = None
    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    audio_stream_end: bool | None = None
    activity_start: dict[str, Any] | None = None
    activity_end: dict[str, Any] | None = None


class ToolResponse(WireModel):
    function_responses: list[FunctionResponse] = Field(default_factory=list)


class ContextUpdateTools(WireModel):
    tools: list[Tool] = Field(default_factory=list)


class ContextUpdate(WireModel):
    system_instruction: Content | None = None
    tools: ContextUpdateTools | None = None


class ClientMessage(WireModel):
    """One client frame: exactly one of these fields is set."""

    setup: Setup | None = None
    client_content: ClientContent | None = None
    realtime_input: RealtimeInput | None = None
    tool_response: ToolResponse | None = None
    context_update: ContextUpdate | None = None


ClientEvent = Setup | ClientContent | RealtimeInput | ToolResponse | ContextUpdate

# Each event by its field of ClientMessage: the first name of a field's path, as errors write it.
EVENT_NAMES: dict[type[WireModel], str] = {Setup: "setup", ClientContent: "client_content",
                                           RealtimeInput: "realtime_input", ToolResponse: "tool_response",
                                           ContextUpdate: "context_update"}


def _inert_names(model: type[WireModel]) -> frozenset[str]:
    return frozenset(name for name, f in model.model_fields.items() if INERT in f.metadata)


_INERT: dict[type[WireModel], frozenset[str]] = {}


def inert_fields(message: WireModel, prefix: str | None = None) -> Iterator[str]:
    """The paths of the inert fields `message` sets ("client_content.turns.parts.file_data"):
    list positions left out, so each field is named once however many items set it."""
    prefix = EVENT_NAMES.get(type(message), "") if prefix is None else prefix
    model = type(message)
    inert = _INERT.get(model)
    if inert is None:
        inert = _INERT[model] = _inert_names(model)
    for name in model.model_fields:
        value = getattr(message, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        path = f"{prefix}.{name.rstrip('_')}" if prefix else name
        if name in inert:
            yield path
            continue
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, WireModel):
                yield from inert_fields(item, path)
