"""`POST /v1/audio/speech`: the OpenAI audio API over this node's voices, so one node can
synthesize for others (their `[voices.X] engine = "openai"`) as it already transcribes for them.

The body is OpenAI's: `input` (at most 4096 characters), `voice` (one of this node's voice names,
"Puck", "Kore", ...), `response_format` "pcm" (raw 16-bit little-endian mono at 24 kHz) or "wav"
(the same with a streaming header), optional `language` (BCP-47: a voice that speaks it is
chosen, as in a Live session); `model`, `speed` and `instructions` are accepted and ignored.
Speech streams clause by clause as it is synthesized: the first audio leaves after the first
clause, not after the whole text. No I/O here but the synthesis worker; the route is in app.py.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..engines.tts.base import TTSVoice
from ..engines.tts.registry import VoiceRegistry
from ..session.speech import OUTPUT_RATE, ClauseSegmenter, synthesize_24k

MAX_INPUT_CHARS = 4096  # OpenAI's limit
FORMATS = ("pcm", "wav")


class SpeechRequestError(ValueError):
    """The request cannot be spoken; the message says why (HTTP 400)."""


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: TTSVoice
    response_format: str
    language: str | None

    @classmethod
    def parse(cls, body: Any, voices: VoiceRegistry) -> "SpeechRequest":
        if not isinstance(body, dict):
            raise SpeechRequestError("the request body must be a JSON object")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise SpeechRequestError("'input' must be a non-empty string")
        if len(text) > MAX_INPUT_CHARS:
            raise SpeechRequestError(f"'input' is {len(text)} characters; at most {MAX_INPUT_CHARS} are allowed")
        fmt = body.get("response_format", "wav")
        if fmt not in FORMATS:
            raise SpeechRequestError(f"response_format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
        name = body.get("voice")
        if name is not None and not isinstance(name, str):
            raise SpeechRequestError("'voice' must be a string")
        voice = voices.find(name)
        if voice is None:
            raise SpeechRequestError(f"voice {name!r} is not available; use one of {', '.join(voices.names())}")
        language = body.get("language")
        if language is not None and not isinstance(language, str):
            raise SpeechRequestError("'language' must be a BCP-47 code such as 'de-DE'")
        return cls(text, voices.for_language(voice, language), fmt, language)

    @property
    def media_type(self) -> str:
        return "audio/wav" if self.response_format == "wav" else "audio/pcm"


def wav_stream_header(rate: int = OUTPUT_RATE) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length (sizes at their maximum, as
    streaming servers write it; players read to the end)."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", unknown))


async def speak(request: SpeechRequest, voices: VoiceRegistry) -> AsyncIterator[bytes]:
    """The speech, clause by clause as each is synthesized (on the voices' worker pool)."""
    if request.response_format == "wav":
        yield wav_stream_header()
    segmenter = ClauseSegmenter()
    loop = asyncio.get_running_loop()
    for clause in [*segmenter.push(request.text), *segmenter.flush()]:
        pcm = await loop.run_in_executor(voices.executor, synthesize_24k, request.voice, clause, request.language)
        if pcm:
            yield pcm
