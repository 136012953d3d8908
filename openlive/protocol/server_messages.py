"""Builders for the server messages of the Live API, in the camelCase the SDKs parse.

The Python SDK only recognises camelCase top-level keys and crashes on a message whose keys are
all unknown, so every server message is built here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# What puts one server message on the wire (the transport gives the session one of these).
Send = Callable[[dict[str, Any]], Awaitable[None]]


def setup_complete(session_id: str | None = None) -> dict[str, Any]:
    return {"setupComplete": {"sessionId": session_id} if session_id else {}}


def model_turn(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"role": "model", "parts": parts}}}


def text_part(text: str) -> dict[str, Any]:
    return {"text": text}


def audio_part(pcm: bytes, rate: int) -> dict[str, Any]:
    # Raw bytes: the codec base64-encodes them once, when the frame is written.
    return {"inlineData": {"mimeType": f"audio/pcm;rate={rate}", "data": pcm}}


def output_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def input_transcription(text: str, finished: bool = True) -> dict[str, Any]:
    return {"serverContent": {"inputTranscription": {"text": text, "finished": finished}}}


def tool_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    return {"toolCallCancellation": {"ids": ids}}


def grounding(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"serverContent": {"groundingMetadata": metadata}}


def url_context(urls: list[tuple[str, str]]) -> dict[str, Any]:
    """urlContextMetadata: each (url, URL_RETRIEVAL_STATUS_…) the urlContext tool read for a reply."""
    return {"serverContent": {"urlContextMetadata": {"urlMetadata": [
        {"retrievedUrl": url, "urlRetrievalStatus": status} for url, status in urls]}}}


def generation_complete() -> dict[str, Any]:
    return {"serverContent": {"generationComplete": True}}


def interrupted() -> dict[str, Any]:
    return {"serverContent": {"interrupted": True}}


# Google's MediaModality names, in the order the details list them.
MODALITIES = ("TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT")


@dataclass
class Usage:
    """Token counts of one turn by modality, reported as usageMetadata with the turnComplete that
    ends it. Each count is the sum of its details; the total is prompt + response + tool use
    (google-genai's UsageMetadata: "the sum of prompt_token_count, candidates_token_count,
    tool_use_prompt_token_count and thoughts_token_count"); the cached part is within the prompt."""

    prompt: dict[str, int] = field(default_factory=dict)  # what the model read this turn
    response: dict[str, int] = field(default_factory=dict)  # what it sent
    tool_use: dict[str, int] = field(default_factory=dict)  # built-in tools' results it read
    cached: dict[str, int] = field(default_factory=dict)  # the part of `prompt` read from a cache

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt.values())

    @property
    def response_tokens(self) -> int:
        return sum(self.response.values())

    @property
    def tool_use_tokens(self) -> int:
        return sum(self.tool_use.values())

    @property
    def cached_tokens(self) -> int:
        return sum(self.cached.values())

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "responseTokenCount": self.response_tokens,
            "totalTokenCount": self.prompt_tokens + self.response_tokens + self.tool_use_tokens,
            "promptTokensDetails": _details(self.prompt, "TEXT"),
            "responseTokensDetails": _details(self.response, "TEXT"),
        }
        # Vertex clients read the response count under its older name; Gemini clients ignore it.
        wire["candidatesTokenCount"] = self.response_tokens
        wire["candidatesTokensDetails"] = wire["responseTokensDetails"]
        if self.tool_use_tokens:
            wire["toolUsePromptTokenCount"] = self.tool_use_tokens
            wire["toolUsePromptTokensDetails"] = _details(self.tool_use, "TEXT")
        if self.cached_tokens:
            wire["cachedContentTokenCount"] = self.cached_tokens
            wire["cacheTokensDetails"] = _details(self.cached, "TEXT")
        return wire


def _details(counts: dict[str, int], empty: str) -> list[dict[str, Any]]:
    """[{modality, tokenCount}] for each modality with tokens; none at all: the first named (or
    `empty`) with 0, so that a client reading the list still learns the turn's modality."""
    rows = [{"modality": m, "tokenCount": counts[m]} for m in MODALITIES if counts.get(m)]
    return rows or [{"modality": next(iter(counts), empty), "tokenCount": 0}]


def turn_complete(usage: Usage | None = None, *, reason: str | None = None) -> dict[str, Any]:
    """`reason`: a turnCompleteReason, e.g. RESPONSE_REJECTED for a turn the model chose not to
    answer (proactive audio)."""
    message: dict[str, Any] = {"serverContent": {"turnComplete": True}}
    if reason is not None:
        message["serverContent"]["turnCompleteReason"] = reason
    if usage is not None:
        message["usageMetadata"] = usage.to_wire()
    return message


def session_resumption_update(handle: str | None, *, last_consumed: int | None = None) -> dict[str, Any]:
    """A new handle for the state so far, or (no handle) word that the session cannot be resumed now."""
    if handle is None:
        return {"sessionResumptionUpdate": {"resumable": False}}
    update: dict[str, Any] = {"newHandle": handle, "resumable": True}
    if last_consumed is not None:
        update["lastConsumedClientMessageIndex"] = str(last_consumed)  # an int64: a string in proto JSON
    return {"sessionResumptionUpdate": update}


def go_away(time_left_s: float) -> dict[str, Any]:
    # A protobuf Duration: seconds with up to nine fractional digits and an "s".
    return {"goAway": {"timeLeft": f"{max(0.0, time_left_s):.3f}".rstrip("0").rstrip(".") + "s"}}


def voice_activity(kind: str, audio_offset_s: float) -> dict[str, Any]:
    """What the server's activity detection heard (ACTIVITY_START / ACTIVITY_END), at an offset into
    the audio stream, as a protobuf Duration string; sent when the client set explicitVadSignal."""
    return {"voiceActivity": {"type": kind, "audioOffset": f"{max(0.0, audio_offset_s):.3f}s"}}


def vad_signal(kind: str) -> dict[str, Any]:
    """The same moment as a VAD signal (VAD_SIGNAL_TYPE_SOS: start of speech, _EOS: end)."""
    return {"voiceActivityDetectionSignal": {"vadSignalType": kind}}
