"""What setup asked for, read once so the hot path never re-walks the setup message.

Owns: the session's fixed choices (response modality, sampling, voice and language,
transcription switches, activity detection, barge-in, turn coverage, the model generation,
proactive audio). Touches nothing: it is built from a `Setup` and read by the other rooms. The instruction and tools are not here: a
`contextUpdate` can change them, so they belong to the conversation context (`context.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..engines.llm.base import SamplingParams
from ..protocol.errors import invalid_argument
from ..protocol.messages import Setup
from .activity import ActivityParams
from .generation import GEN_3, Generation, generation_for
from .languages import canonical_language


@dataclass
class SessionOptions:
    modality: str = "TEXT"
    params: SamplingParams = field(default_factory=SamplingParams)
    voice_name: str | None = None
    language: str | None = None
    output_transcription: bool = False
    input_transcription: bool = False
    # None: the client marks turns with activityStart/activityEnd (automatic detection disabled).
    activity: ActivityParams | None = field(default_factory=ActivityParams)
    barge_in: bool = True  # START_OF_ACTIVITY_INTERRUPTS (the default) vs NO_INTERRUPTION
    include_all_input: bool = False  # TURN_INCLUDES_ALL_INPUT
    # TURN_INCLUDES_ALL_INPUT or TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO: every view since the last turn
    include_all_video: bool = False
    media_resolution: str | None = None  # generationConfig.mediaResolution: how large frames are looked at
    vad_signals: bool = False  # explicitVadSignal: send voiceActivity / voiceActivityDetectionSignal
    # historyConfig.initialHistoryInClientContent: the first clientContent turns, up to the one with
    # turnComplete, are history to take in without replying (3.x clients send their chat context so).
    initial_history: bool = False
    # Which Gemini generation's wire behaviour the session follows, from the model it named.
    generation: Generation = GEN_3
    # proactivity.proactiveAudio: input not said to the assistant gets no reply (proactivity.py).
    proactive_audio: bool = False

    @classmethod
    def from_setup(cls, setup: Setup, generations: Mapping[str, str] | None = None) -> "SessionOptions":
        gen = setup.generation_config
        modalities = [m for m in (gen.response_modalities if gen and gen.response_modalities else []) if m != "MODALITY_UNSPECIFIED"]
        if len(modalities) > 1:
            # The real service accepts one response modality per session.
            raise invalid_argument("Request contains an invalid argument: only one response modality is supported.")
        # The Live API answers in speech unless asked for text.
        modality = modalities[0] if modalities else "AUDIO"
        if modality not in ("TEXT", "AUDIO"):
            raise invalid_argument(f"Request contains an invalid argument: response modality {modality} is not supported.")
        params = SamplingParams()
        voice_name = language = None
        if gen is not None:
            params = SamplingParams(
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=gen.top_k,  # every value here was range-checked when setup was parsed
                max_tokens=gen.max_output_tokens,
                seed=gen.seed,
                stop=tuple(gen.stop_sequences or ()),
                presence_penalty=gen.presence_penalty,
                frequency_penalty=gen.frequency_penalty,
            )
            speech = gen.speech_config
            if speech is not None:
                if speech.multi_speaker_voice_config is not None:
                    raise invalid_argument("Request contains an invalid argument: multi-speaker voice config is not "
                                           "supported in the Live API.")
                voice = speech.voice_config
                prebuilt = voice.prebuilt_voice_config if voice else None
                # voiceConfig.voice is the newer spelling of the same choice.
                voice_name = (prebuilt.voice_name if prebuilt else None) or (voice.voice if voice else None)
                language = speech.language_code or None
        if language is not None:
            language = canonical_language(language) or language
        realtime = setup.realtime_input_config
        aad = realtime.automatic_activity_detection if realtime else None
        return cls(
            modality=modality, params=params, voice_name=voice_name, language=language,
            output_transcription=setup.output_audio_transcription is not None,
            input_transcription=setup.input_audio_transcription is not None,
            activity=None if aad is not None and aad.disabled else ActivityParams.from_setup(aad),
            barge_in=not (realtime and realtime.activity_handling == "NO_INTERRUPTION"),
            include_all_input=bool(realtime and realtime.turn_coverage == "TURN_INCLUDES_ALL_INPUT"),
            include_all_video=bool(realtime and realtime.turn_coverage in (
                "TURN_INCLUDES_ALL_INPUT", "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO")),
            media_resolution=gen.media_resolution if gen is not None else None,
            vad_signals=bool(setup.explicit_vad_signal or (realtime and realtime.explicit_vad_signal)),
            initial_history=_initial_history(setup.history_config),
            generation=generation_for(setup.model, generations),
            proactive_audio=bool(setup.proactivity and setup.proactivity.proactive_audio),
        )


def _initial_history(config: dict[str, Any] | None) -> bool:
    """historyConfig is passed through as sent: its field in either spelling."""
    config = config or {}
    return config.get("initialHistoryInClientContent", config.get("initial_history_in_client_content")) is True
