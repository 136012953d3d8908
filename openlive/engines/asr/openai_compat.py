"""Speech to text on another server, through the OpenAI audio API (`POST /audio/transcriptions`).

Works with servers that speak it: speaches, vLLM's Whisper, whisper.cpp's server, or another
openlive node (which serves its own recognizer there), so recognition can move off a busy node.
"""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np

from .whisper import ASRError, Transcript


def wav_bytes(pcm16k: bytes, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16k)
    return out.getvalue()


class OpenAICompatASR:
    def __init__(self, name: str, base_url: str, *, model: str = "whisper-1", api_key: str | None = None,
                 timeout_s: float = 30.0, language: str | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.language = language
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0),
                                         trust_env=False)

    async def load(self) -> None:
        return None  # nothing to load; a wrong URL shows on the first utterance and in the log

    async def transcribe(self, pcm16k: bytes | np.ndarray, language: str | None = None) -> Transcript:
        pcm = pcm16k.astype(np.int16).tobytes() if isinstance(pcm16k, np.ndarray) else bytes(pcm16k)
        data = {"model": self.model, "response_format": "json"}
        lang = (language or self.language or "").split("-")[0]
        if lang:
            data["language"] = lang
        try:
            response = await self._client.post(f"{self.base_url}/audio/transcriptions", data=data,
                                                files={"file": ("speech.wav", wav_bytes(pcm), "audio/wav")})
        except httpx.HTTPError as exc:
            raise ASRError(f"speech engine {self.name!r}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ASRError(f"speech engine {self.name!r}: HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        return Transcript(str(body.get("text", "")).strip(), body.get("language") or lang or None, None,
                          len(pcm) / 32000)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        await self._client.aclose()
