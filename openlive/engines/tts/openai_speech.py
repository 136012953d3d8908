"""A voice spoken by a server of the OpenAI audio API (`POST /v1/audio/speech`), streamed.

speaches, Kokoro-FastAPI, vLLM-Omni and another openlive node serve this API. The voice asks
for raw PCM (`response_format: "pcm"`: 16-bit little-endian mono at the server's rate, 24 kHz
for OpenAI, Kokoro and openlive) and yields it as it arrives, so a clause's first audio can go
out before the server has finished speaking it. Like every voice, `synthesize` blocks and runs
in the session's TTS worker thread; leaving the generator early closes the request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx

from .base import TTSError, VoiceInfo

log = logging.getLogger(__name__)

CHUNK_BYTES = 4800  # 100 ms at 24 kHz: small pieces, so an interruption stops the stream quickly


class OpenAISpeechVoice:
    def __init__(self, info: VoiceInfo, *, base_url: str, model: str = "tts-1", voice: str = "alloy",
                 api_key: str | None = None, sample_rate: int = 24000, speed: float | None = None,
                 timeout_s: float = 30.0) -> None:
        self.info = info
        self.sample_rate = sample_rate
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.voice = voice
        self.speed = speed
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy set for the outside world must not capture engine traffic.
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0), trust_env=False)

    def load(self) -> None:
        """Nothing to load; the server is asked only when there is something to say."""

    def synthesize(self, text: str, language: str | None = None) -> Iterator[bytes]:
        body: dict[str, object] = {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        if self.speed is not None:
            body["speed"] = self.speed
        url = f"{self.base_url}/audio/speech"
        carry = b""
        try:
            with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise TTSError(f"voice {self.info.name!r}: {url} answered HTTP {response.status_code}: {detail}")
                for piece in response.iter_bytes(CHUNK_BYTES):
                    data = carry + piece
                    cut = len(data) - len(data) % 2  # whole 16-bit samples only
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
        except httpx.HTTPError as exc:
            raise TTSError(f"voice {self.info.name!r}: {url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
