"""Typed client messages of the Live API (BidiGenerateContent), validated once at the edge.

Field names follow protobuf-JSON rules: every field is accepted both in lowerCamelCase and in
snake_case, because the Python SDK camelCases only the keys it names explicitly and dumps the
rest of each nested object in snake_case, while the JS SDK sends camelCase throughout.
Fields we model but do not act on yet are typed loosely (`dict[str, Any]`) so that a real client
is never refused for sending them, while a truly unknown field is refused as the real service
refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .b64 import decode_any
from .values import INT32, MAX_OUTPUT_TOKENS, Float, Int32, Int64, Schema, StopSequences


def _decode_base64(value: Any) -> bytes:
    """Decode base64 in either alphabet, padded or not (Python sends URL-safe, JS standard)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return decode_any(value)


Base64Bytes = Annotated[bytes, BeforeValidator(_decode_base64)]


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


class Blob(WireModel):
    mime_type: str = ""
    data: Base64Bytes = b""
    display_name: str | None = None


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
    parts: list[dict[str, Any]] | None = None


class Part(WireModel):
    text: str | None = None
    inline_data: Blob | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: Base64Bytes | None = None
    executable_code: dict[str, Any] | None = None
    code_execution_result: dict[str, Any] | None = None
    file_data: dict[str, Any] | None = None
    video_metadata: dict[str, Any] | None = None
    media_resolution: Any = None
    part_metadata: dict[str, Any] | None = None
    tool_call: dict[str, Any] | None = None
    tool_response: dict[str, Any] | None = None


class Content(WireModel):
    role: str | None = None
    parts: list[Part] = Field(default_factory=list)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if p.text and not p.thought)


class PrebuiltVoiceConfig(WireModel):
    voice_name: str | None = None


class VoiceConfig(WireModel):
    prebuilt_voice_config: PrebuiltVoiceConfig | None = None
    replicated_voice_config: dict[str, Any] | None = None


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
    candidate_count: Int32(1, 8) | None = None
    presence_penalty: Float(-2, 2, high_open=True) | None = None
    frequency_penalty: Float(-2, 2, high_open=True) | None = None
    stop_sequences: StopSequences | None = None
    speech_config: SpeechConfig | None = None
    media_resolution: str | None = None
    thinking_config: dict[str, Any] | None = None
    enable_affective_dialog: bool | None = None
    translation_config: dict[str, Any] | None = None
    audio_transcription_config: dict[str, Any] | None = None
    response_mime_type: str | None = None
    response_schema: Schema = None
    response_json_schema: Schema = None
    response_logprobs: bool | None = None
    logprobs: Int32(0, 20) | None = None
    audio_timestamp: bool | None = None
    routing_config: dict[str, Any] | None = None
    model_selection_config: dict[str, Any] | None = None
    enable_enhanced_civic_answers: bool | None = None
    response_format: dict[str, Any] | None = None


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
    interim_transcript_timestamp_enabled: bool | None = None


class AudioTranscriptionConfig(WireModel):
    language_codes: list[str] | None = None
    language_auto: bool | None = None
    language_hints: list[str] | None = None
    custom_vocabulary: Any = None
    adaptation_phrases: Any = None
    word_timestamp: bool | None = None
    diarization: Any = None
    mode: str | None = None
    source_text: Any = None


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
    response: Schema = None
    response_json_schema: Schema = None
    behavior: Literal["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"] | None = None


class Tool(WireModel):
    function_declarations: list[FunctionDeclaration] | None = None
    code_execution: dict[str, Any] | None = None
    google_search: dict[str, Any] | None = None
    google_search_retrieval: dict[str, Any] | None = None
    url_context: dict[str, Any] | None = None
    google_maps: dict[str, Any] | None = None
    computer_use: dict[str, Any] | None = None
    file_search: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    retrieval: dict[str, Any] | None = None
    enterprise_web_search: dict[str, Any] | None = None
    parallel_ai_search: dict[str, Any] | None = None
    exa_ai_search: dict[str, Any] | None = None


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
    proactivity: dict[str, Any] | None = None
    explicit_vad_signal: bool | None = None
    history_config: dict[str, Any] | None = None
    avatar_config: dict[str, Any] | None = None
    safety_settings: list[dict[str, Any]] | None = None
    labels: dict[str, str] | None = None


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
