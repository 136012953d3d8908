"""The voices clients can ask for by name, built from configuration, with language fallback."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from ...config import Config, VoiceConfig
from .base import TTSError, TTSVoice, VoiceInfo, primary_language

log = logging.getLogger(__name__)


def build_voice(config: VoiceConfig) -> TTSVoice:
    if config.engine == "piper":
        from .piper_voice import PiperVoice

        info = VoiceInfo(config.name, config.gender, None, "piper")  # languages come from the model
        return PiperVoice(info, model=config.model, length_scale=config.length_scale, speaker_id=config.speaker_id)
    if config.engine == "espeak":
        from .espeak import EspeakVoice

        info = VoiceInfo(config.name, config.gender, None, "espeak")  # eSpeak NG speaks ~100 languages
        return EspeakVoice(info, variant=config.variant, pitch=config.pitch, rate=config.rate)
    if config.engine == "openai":
        from .openai_speech import OpenAISpeechVoice

        assert config.base_url is not None  # checked by Config.validate
        # The remote voice's languages are the server's business: it is asked for any.
        info = VoiceInfo(config.name, config.gender, None, "openai")
        return OpenAISpeechVoice(info, base_url=config.base_url, model=config.remote_model, voice=config.remote_voice,
                                 api_key=config.api_key, sample_rate=config.sample_rate, speed=config.speed,
                                 timeout_s=config.timeout_s)
    raise TTSError(f"voice {config.name!r}: unknown engine {config.engine!r}")


class VoiceRegistry:
    def __init__(self, voices: dict[str, TTSVoice], default: str, max_parallel: int = 2) -> None:
        self.voices = voices
        self.default = default
        # Synthesis is CPU-bound: a small shared pool keeps many sessions from oversubscribing the cores.
        self.executor = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="tts")

    @classmethod
    def from_config(cls, config: Config) -> "VoiceRegistry":
        voices = {name: build_voice(v) for name, v in config.voices.items()}
        return cls(voices, config.speech.default_voice, config.speech.max_parallel)

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        for voice in self.voices.values():
            await loop.run_in_executor(self.executor, voice.load)

    def names(self) -> list[str]:
        return sorted(self.voices)

    def find(self, name: str | None) -> TTSVoice | None:
        """The voice for a client's voice name (case-insensitive), or the default for none."""
        if not name:
            return self.voices[self.default]
        return next((v for key, v in self.voices.items() if key.lower() == name.lower()), None)

    def for_language(self, voice: TTSVoice, language: str | None) -> TTSVoice:
        """`voice` if it speaks `language`, else a voice of the same gender that does."""
        wanted = primary_language(language)
        if wanted is None or _speaks(voice, wanted):
            return voice
        for other in self.voices.values():
            if other.info.gender == voice.info.gender and _speaks(other, wanted):
                log.info("voice %s does not speak %s: using %s instead", voice.info.name, language, other.info.name)
                return other
        log.warning("no voice speaks %s: %s speaks it as best it can", language, voice.info.name)
        return voice

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _speaks(voice: TTSVoice, language: str) -> bool:
    languages = voice.info.languages
    return languages is None or language in languages
