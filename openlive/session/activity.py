"""Deciding when the user starts and stops talking, from per-frame voice probabilities. No I/O.

The Live API's knobs mean (per its docs): `prefixPaddingMs`, how much detected speech is needed
before start-of-speech is committed; `silenceDurationMs`, how much non-speech before end-of-speech
is committed; the sensitivities, how readily each is detected. Between those, a `pause` event
fires early in the silence so the session can start recognizing speculatively and hide that
work inside the silence window.

    frames ──► SILENT ──(prefix of speech)──► SPEAKING ──(pause_ms quiet)──► pause event
                  ▲                               │  ▲                           │
                  └────(silence_ms quiet: end)────┘  └──────(speech again)───────┘
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..protocol.messages import AutomaticActivityDetection


class Activity(Enum):
    START = "start"  # speech committed: barge-in point
    PAUSE = "pause"  # speech paused briefly: a good moment to recognize speculatively
    RESUME = "resume"  # speech came back after a pause: speculative work is stale
    END = "end"  # end of speech committed: the user's turn is over


@dataclass(frozen=True)
class ActivityParams:
    start_threshold: float = 0.5
    end_threshold: float = 0.35
    prefix_ms: int = 96
    silence_ms: int = 500
    pause_ms: int = 160
    # The client set silenceDurationMs: exactly that silence ends a turn, no semantic model.
    silence_given: bool = False

    @classmethod
    def from_setup(cls, aad: AutomaticActivityDetection | None) -> "ActivityParams":
        """Map the Live API's settings; HIGH is the Gemini API's default for both sensitivities."""
        start_low = aad is not None and aad.start_of_speech_sensitivity == "START_SENSITIVITY_LOW"
        end_low = aad is not None and aad.end_of_speech_sensitivity == "END_SENSITIVITY_LOW"
        prefix = aad.prefix_padding_ms if aad and aad.prefix_padding_ms is not None else (250 if start_low else 96)
        silence = aad.silence_duration_ms if aad and aad.silence_duration_ms is not None else (900 if end_low else 500)
        return cls(
            start_threshold=0.7 if start_low else 0.5,
            end_threshold=0.2 if end_low else 0.35,
            prefix_ms=max(0, prefix),
            silence_ms=max(32, silence),
            pause_ms=min(160, max(32, silence // 3)),
            silence_given=aad is not None and aad.silence_duration_ms is not None,
        )


class ActivityDetector:
    def __init__(self, params: ActivityParams, frame_ms: float) -> None:
        self.params = params
        self.frame_ms = frame_ms
        self.speaking = False
        self._voiced_ms = 0.0  # consecutive speech while silent (towards a committed start)
        self._quiet_ms = 0.0  # consecutive non-speech while speaking (towards a committed end)
        self._paused = False

    def reset(self) -> None:
        self.speaking = False
        self._voiced_ms = self._quiet_ms = 0.0
        self._paused = False

    def update(self, probability: float) -> Activity | None:
        p = self.params
        if not self.speaking:
            if probability >= p.start_threshold:
                self._voiced_ms += self.frame_ms
                if self._voiced_ms >= max(p.prefix_ms, self.frame_ms):
                    self.speaking = True
                    self._quiet_ms = 0.0
                    self._paused = False
                    return Activity.START
            else:
                self._voiced_ms = 0.0
            return None
        if probability >= p.end_threshold:
            self._quiet_ms = 0.0
            if self._paused:
                self._paused = False
                return Activity.RESUME
            return None
        self._quiet_ms += self.frame_ms
        if self._quiet_ms >= p.silence_ms:
            self.speaking = False
            self._voiced_ms = 0.0
            self._paused = False
            return Activity.END
        if not self._paused and self._quiet_ms >= p.pause_ms:
            self._paused = True
            return Activity.PAUSE
        return None

    @property
    def quiet_ms(self) -> float:
        """How long the current silence inside speech has lasted."""
        return self._quiet_ms if self.speaking else 0.0
