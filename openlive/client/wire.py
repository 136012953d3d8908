"""The Live API wire format for a client, without any I/O.

Everything a client needs to know about bytes on the socket lives here: the WebSocket URL and
handshake headers the google-genai SDK builds, the `setup` message made from a LiveConnectConfig
-shaped dict, the client messages (`clientContent`, `realtimeInput`, `toolResponse`,
`contextUpdate`), and the parsing of server messages into `LiveMessage`. The session module only
moves these dicts over a socket; the tests here feed dicts and read dicts.

We send camelCase throughout (as @google/genai does); a server must accept it, and Google's does.
"""

from __future__ import annotations

import base64
import enum
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import urlparse

from ..protocol.b64 import decode_any
from ..protocol.bounded_json import loads as bounded_loads

__all__ = [
    "GEMINI_BASE_URL", "VERTEX_BASE_URL", "DEFAULT_OUTPUT_RATE", "FunctionCall", "LiveMessage", "ResumptionUpdate",
    "Endpoint", "endpoint", "model_path", "setup_message", "camelize", "client_content", "realtime_audio",
    "realtime_video", "realtime_text", "audio_stream_end", "activity_start", "activity_end", "tool_response",
    "context_update", "parse_server_message", "parse_duration", "content", "resumption_enabled",
    "transparent_enabled", "with_handle", "encode_json", "message_kind",
]

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
VERTEX_BASE_URL = "https://aiplatform.googleapis.com"
DEFAULT_OUTPUT_RATE = 24000  # the Live API speaks 16-bit mono PCM at 24 kHz
CLIENT_VERSION = "0.1.0"

JSON = dict[str, Any]
ContentLike = Union[str, Mapping[str, Any]]  # noqa: UP007 (a runtime alias: `|` needs 3.10 objects)


# --------------------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and what to send in the WebSocket handshake."""

    url: str
    headers: dict[str, str]
    vertex: bool
    constrained: bool  # an ephemeral token: BidiGenerateContentConstrained


def _websocket_base(base_url: str) -> str:
    """The SDK's rule: the scheme always becomes wss (ws for a plain http/ws URL here, so that a
    `--no-tls` openlive works too); host, port and any path prefix are kept, a trailing slash dropped."""
    parts = urlparse(base_url if "://" in base_url else f"https://{base_url}")
    scheme = "ws" if parts.scheme in ("http", "ws") else "wss"
    return parts._replace(scheme=scheme).geturl().rstrip("/")


def endpoint(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    api_version: str | None = None,
    vertex: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Endpoint:
    """The URL and headers the google-genai SDK builds for `client.aio.live.connect()`.

    - Gemini API: `{base}/ws/google.ai.generativelanguage.{ver}.GenerativeService.BidiGenerateContent`
      with `x-goog-api-key`; a key starting `auth_tokens/` (an ephemeral token) uses the
      `BidiGenerateContentConstrained` method and adds `Authorization: Token <key>`.
    - Vertex (express mode, an API key): `{base}/ws/google.cloud.aiplatform.{ver}.LlmBidiService/BidiGenerateContent`.

    The key is never put in the query string. `base_url` defaults to `GOOGLE_GEMINI_BASE_URL` /
    `GOOGLE_VERTEX_BASE_URL` from the environment, then to Google's own endpoint.
    """
    if base_url is None:
        base_url = os.environ.get("GOOGLE_VERTEX_BASE_URL" if vertex else "GOOGLE_GEMINI_BASE_URL") or (
            VERTEX_BASE_URL if vertex else GEMINI_BASE_URL)
    version = api_version or ("v1beta1" if vertex else "v1beta")
    base = _websocket_base(base_url)
    out: dict[str, str] = {
        "Content-Type": "application/json",
        "user-agent": f"openlive-client/{CLIENT_VERSION} gl-python/{platform.python_version()}",
        "x-goog-api-client": f"openlive-client/{CLIENT_VERSION} gl-python/{platform.python_version()}",
    }
    constrained = False
    if api_key:
        api_key = api_key.strip()
        out["x-goog-api-key"] = api_key
        if not vertex and api_key.startswith("auth_tokens/"):
            constrained = True
            out["Authorization"] = f"Token {api_key}"
    out.update(headers or {})
    if vertex:
        url = f"{base}/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"
    else:
        method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
        url = f"{base}/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"
    return Endpoint(url, out, vertex, constrained)


def model_path(model: str, *, vertex: bool = False) -> str:
    """`t_model` of the SDK: `models/<id>` for Gemini, `publishers/google/models/<id>` for Vertex."""
    if not model:
        raise ValueError("model is required")
    if vertex:
        if model.startswith(("projects/", "models/", "publishers/")):
            return model
        if "/" in model:
            publisher, model_id = model.split("/", 1)
            return f"publishers/{publisher}/models/{model_id}"
        return f"publishers/google/models/{model}"
    if model.startswith(("models/", "tunedModels/")):
        return model
    return f"models/{model}"


# --------------------------------------------------------------------------- setup

# Values under these keys are the user's own data (JSON schemas with property names of their
# choosing, function arguments and results, labels): copied verbatim, never re-cased.
_OPAQUE = {"parameters", "parametersJsonSchema", "response", "responseJsonSchema", "responseSchema", "args",
           "labels", "jsonSchema"}

# LiveConnectConfig's flat generation fields, and where the setup message keeps them.
_GENERATION_FIELDS = {"responseModalities", "temperature", "topP", "topK", "maxOutputTokens", "mediaResolution",
                      "seed", "speechConfig", "thinkingConfig", "enableAffectiveDialog", "translationConfig",
                      "candidateCount", "presencePenalty", "frequencyPenalty", "stopSequences"}
_SETUP_FIELDS = {"systemInstruction", "tools", "sessionResumption", "inputAudioTranscription",
                 "outputAudioTranscription", "realtimeInputConfig", "contextWindowCompression", "proactivity",
                 "explicitVadSignal", "historyConfig", "avatarConfig", "safetySettings", "labels"}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camelize(value: Any) -> Any:
    """snake_case keys to lowerCamelCase, recursively, leaving user data (`_OPAQUE`) as it is."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _camel(str(key))
            out[name] = _plain(item) if name in _OPAQUE else camelize(item)
        return out
    if isinstance(value, (list, tuple)):
        return [camelize(item) for item in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    """JSON-ready: enums by their value, bytes as base64, tuples as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def content(value: ContentLike, role: str = "user") -> JSON:
    """A Content: a string becomes `{"role": role, "parts": [{"text": value}]}`; a dict is camelCased."""
    if isinstance(value, str):
        return {"role": role, "parts": [{"text": value}]}
    if isinstance(value, Mapping):
        out: JSON = camelize(value)
        if "parts" not in out and "text" in out:  # a bare Part
            out = {"role": role, "parts": [out]}
        out.setdefault("role", role)
        return out
    raise TypeError(f"a turn must be a string or a Content dict, not {type(value).__name__}")


def _speech_config(value: Any) -> JSON:
    if isinstance(value, str):  # a voice name, as the SDK's t_live_speech_config allows
        return {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": value}}}
    config: JSON = camelize(value)
    return config


def _tools(value: Any) -> list[JSON]:
    if isinstance(value, Mapping):
        value = [value]
    return [camelize(tool) for tool in value]


def setup_message(model: str, config: Mapping[str, Any] | None = None, *, vertex: bool = False) -> JSON:
    """The first client message: `{"setup": {...}}` from a LiveConnectConfig-shaped dict.

    Keys may be snake_case or camelCase. The flat generation fields (`response_modalities`,
    `temperature`, `speech_config`, ...) go under `generationConfig` as the SDK puts them;
    `system_instruction` may be a string; `speech_config` may be a voice name. `http_options`
    is not a setup field and is refused here (pass base_url/api_version/headers to LiveModel).
    """
    setup: JSON = {"model": model_path(model, vertex=vertex)}
    generation: JSON = {}
    for raw_key, value in (config or {}).items():
        if value is None:
            continue
        key = _camel(str(raw_key))
        if key == "httpOptions":
            raise ValueError("http_options is not part of the setup: give base_url, api_version and headers to "
                             "LiveModel instead")
        if key == "generationConfig":
            generation.update(camelize(value))
        elif key == "speechConfig":
            generation["speechConfig"] = _speech_config(value)
        elif key in _GENERATION_FIELDS:
            generation[key] = camelize(value)
        elif key == "systemInstruction":
            setup[key] = content(value, role="user")
        elif key == "tools":
            setup[key] = _tools(value)
        elif key in _SETUP_FIELDS:
            setup[key] = _plain(value) if key == "labels" else camelize(value)
        else:
            raise ValueError(f"unknown Live API config field {raw_key!r}")
    if vertex and "responseModalities" not in generation:
        generation["responseModalities"] = ["AUDIO"]  # both SDKs add it in Vertex mode
    if generation:
        setup["generationConfig"] = generation
    return {"setup": setup}


def resumption_enabled(setup: Mapping[str, Any]) -> bool:
    """Whether this setup asks for session resumption (`sessionResumption` present)."""
    return setup["setup"].get("sessionResumption") is not None


def transparent_enabled(setup: Mapping[str, Any]) -> bool:
    resumption = setup["setup"].get("sessionResumption") or {}
    return bool(resumption.get("transparent"))


def with_handle(setup: Mapping[str, Any], handle: str | None) -> JSON:
    """The same setup, resuming the session `handle` names (or a new session for None)."""
    inner = dict(setup["setup"])
    resumption = dict(inner.get("sessionResumption") or {})
    resumption.pop("handle", None)
    if handle:
        resumption["handle"] = handle
    inner["sessionResumption"] = resumption
    return {"setup": inner}


# --------------------------------------------------------------------------- client messages


def client_content(turns: ContentLike | Sequence[ContentLike] | None = None, turn_complete: bool = True) -> JSON:
    """`clientContent`: conversation turns (strings are user text), appended to the history."""
    if turns is None:
        items: list[ContentLike] = []
    elif isinstance(turns, (str, Mapping)):
        items = [turns]
    else:
        items = list(turns)
    message: JSON = {"turnComplete": bool(turn_complete)}
    if items:
        message = {"turns": [content(t) for t in items], **message}
    return {"clientContent": message}


def _blob(data: bytes, mime_type: str) -> JSON:
    return {"data": base64.b64encode(data).decode("ascii"), "mimeType": mime_type}


def realtime_audio(pcm: bytes, rate: int = 16000) -> JSON:
    """`realtimeInput.audio`: 16-bit little-endian mono PCM at `rate` Hz."""
    return {"realtimeInput": {"audio": _blob(pcm, f"audio/pcm;rate={int(rate)}")}}


def realtime_video(image: bytes, mime_type: str = "image/jpeg") -> JSON:
    """`realtimeInput.video`: one frame (JPEG by default; the Live API takes about one a second)."""
    if not mime_type.startswith("image/"):
        raise ValueError("a video frame's mime type must start with image/")
    return {"realtimeInput": {"video": _blob(image, mime_type)}}


def realtime_text(text: str) -> JSON:
    return {"realtimeInput": {"text": text}}


def audio_stream_end() -> JSON:
    """The microphone went quiet for a while: the server may end the user's turn now."""
    return {"realtimeInput": {"audioStreamEnd": True}}


def activity_start() -> JSON:
    return {"realtimeInput": {"activityStart": {}}}


def activity_end() -> JSON:
    return {"realtimeInput": {"activityEnd": {}}}


def tool_response(responses: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> JSON:
    """`toolResponse`: one FunctionResponse dict (`id`, `name`, `response`, ...) or a list of them."""
    items = [responses] if isinstance(responses, Mapping) else list(responses)
    out = []
    for item in items:
        response = camelize(item)
        if not response.get("id"):
            raise ValueError("a function response needs the id of the call it answers")
        out.append(response)
    return {"toolResponse": {"functionResponses": out}}


def context_update(system_instruction: ContentLike | None = None, tools: Any = None) -> JSON:
    """`contextUpdate`: a new system instruction and/or tool list from the next turn on (`[]` clears tools)."""
    if system_instruction is None and tools is None:
        raise ValueError("a context update needs system_instruction or tools")
    update: JSON = {}
    if system_instruction is not None:
        update["systemInstruction"] = content(system_instruction, role="user")
    if tools is not None:
        update["tools"] = {"tools": _tools(tools)}
    return {"contextUpdate": update}


def message_kind(message: Mapping[str, Any]) -> str:
    """`clientContent`, `realtimeInput.audio`, `realtimeInput.text`, `toolResponse`, ... for a client message."""
    key = next(iter(message))
    if key == "realtimeInput":
        return f"realtimeInput.{next(iter(message[key]), '')}"
    return key


def encode_json(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- server messages


@dataclass(frozen=True)
class FunctionCall:
    """One call of a declared function; answer it with `{"id": id, "name": name, "response": {...}}`."""

    id: str
    name: str
    args: dict[str, Any]

    def response(self, result: Any) -> JSON:
        """The FunctionResponse answering this call (a non-dict result is wrapped as `{"result": ...}`)."""
        response = result if isinstance(result, dict) else {"result": result}
        return {"id": self.id, "name": self.name, "response": response}


@dataclass(frozen=True)
class ResumptionUpdate:
    """`sessionResumptionUpdate`: a handle for the state so far, or word that none can be given now."""

    handle: str | None
    resumable: bool
    last_consumed_index: int | None = None


@dataclass
class LiveMessage:
    """One server message, with the fields a client acts on pulled out; `raw` is the JSON as received."""

    raw: JSON = field(default_factory=dict)
    setup_complete: bool = False
    session_id: str | None = None
    text: str | None = None  # the model's text parts (thoughts excluded), concatenated
    thought: str | None = None
    audio: bytes | None = None  # 16-bit mono PCM, at `audio_rate` (24 kHz from the Live API)
    audio_rate: int | None = None
    parts: list[JSON] = field(default_factory=list)  # every modelTurn part (executableCode, ...) as received
    input_transcription: str | None = None
    input_transcription_finished: bool | None = None
    output_transcription: str | None = None
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    turn_complete_reason: str | None = None
    waiting_for_input: bool = False
    grounding: JSON | None = None
    tool_call: list[FunctionCall] | None = None
    tool_call_cancellation: list[str] | None = None
    usage: JSON | None = None  # usageMetadata (camelCase, as sent)
    go_away: float | None = None  # seconds left before the server closes this connection
    resumption: ResumptionUpdate | None = None
    voice_activity: JSON | None = None

    @property
    def server_content(self) -> JSON | None:
        return self.raw.get("serverContent")


_RATE = re.compile(r"rate=(\d+)")


def b64decode(value: str) -> bytes:
    """Base64 in either alphabet, padded or not (servers and SDKs differ)."""
    try:
        return decode_any(value)
    except ValueError as exc:
        raise ValueError("bad base64 in a server message") from exc


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration ("1.5s", or {"seconds": 1, "nanos": 5e8}) in seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        return float(text[:-1] if text.endswith("s") else text)
    if isinstance(value, Mapping):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    raise ValueError(f"not a duration: {value!r}")


def _transcription(value: Any) -> tuple[str | None, bool | None]:
    if not isinstance(value, Mapping):
        return None, None
    return value.get("text"), value.get("finished")


def parse_server_message(frame: str | bytes | Mapping[str, Any]) -> LiveMessage:
    """A server frame (text or binary JSON) as a `LiveMessage`. Raises ValueError on bad JSON.

    Bounded like every frame the server reads: a broken or hostile server's 10,000-deep frame is a
    ValueError here, not a RecursionError.
    """
    raw = frame if isinstance(frame, Mapping) else bounded_loads(frame)
    if not isinstance(raw, dict):
        raise ValueError("a server message must be a JSON object")
    message = LiveMessage(raw=raw)
    if "setupComplete" in raw:
        message.setup_complete = True
        message.session_id = (raw["setupComplete"] or {}).get("sessionId")
    content_ = raw.get("serverContent")
    if isinstance(content_, Mapping):
        texts: list[str] = []
        thoughts: list[str] = []
        audio: list[bytes] = []
        for part in ((content_.get("modelTurn") or {}).get("parts") or []):
            message.parts.append(part)
            if part.get("text") is not None:
                (thoughts if part.get("thought") else texts).append(part["text"])
            blob = part.get("inlineData") or part.get("inline_data")
            if isinstance(blob, Mapping) and blob.get("data"):
                mime = str(blob.get("mimeType") or blob.get("mime_type") or "")
                if mime.startswith("audio/"):
                    audio.append(b64decode(blob["data"]))
                    rate = _RATE.search(mime)
                    message.audio_rate = int(rate.group(1)) if rate else DEFAULT_OUTPUT_RATE
        message.text = "".join(texts) or None
        message.thought = "".join(thoughts) or None
        message.audio = b"".join(audio) or None
        message.input_transcription, message.input_transcription_finished = _transcription(
            content_.get("inputTranscription"))
        message.output_transcription, _ = _transcription(content_.get("outputTranscription"))
        message.interrupted = bool(content_.get("interrupted"))
        message.generation_complete = bool(content_.get("generationComplete"))
        message.turn_complete = bool(content_.get("turnComplete"))
        message.turn_complete_reason = content_.get("turnCompleteReason")
        message.waiting_for_input = bool(content_.get("waitingForInput"))
        message.grounding = content_.get("groundingMetadata")
    tool_call = raw.get("toolCall")
    if isinstance(tool_call, Mapping):
        message.tool_call = [FunctionCall(str(c.get("id") or ""), str(c.get("name") or ""), dict(c.get("args") or {}))
                             for c in tool_call.get("functionCalls") or []]
    cancellation = raw.get("toolCallCancellation")
    if isinstance(cancellation, Mapping):
        message.tool_call_cancellation = [str(i) for i in cancellation.get("ids") or []]
    if isinstance(raw.get("usageMetadata"), dict):
        message.usage = raw["usageMetadata"]
    if isinstance(raw.get("goAway"), Mapping):
        message.go_away = parse_duration(raw["goAway"].get("timeLeft")) or 0.0
    update = raw.get("sessionResumptionUpdate")
    if isinstance(update, Mapping):
        index = update.get("lastConsumedClientMessageIndex")
        message.resumption = ResumptionUpdate(update.get("newHandle") or None, bool(update.get("resumable")),
                                              int(index) if index not in (None, "") else None)
    activity = raw.get("voiceActivity") or raw.get("voiceActivityDetectionSignal")
    if isinstance(activity, dict):
        message.voice_activity = activity
    return message
