"""Where one spoken turn's wait went: the waterfall from the end of the user's speech to the first sound. No I/O.

Each mark is a monotonic time; the log line gives each as milliseconds after the end of speech
(when the server had the last voiced audio of the turn), in the order a turn normally passes them:

    speech_end ─► eot_judged ─► eot_decided ─► asr_final ─► llm_first_token ─► first_clause ─► first_audio
                  (the end-of-turn   (the turn      (the transcript  (the LLM wrote    (the first piece   (its speech
                  models' verdict)   ended)         the turn used)   its first token)  of text to speak)  went out)

Marks can come out of that order, which is the point of measuring: recognition runs in the pause
(asr_final before eot_decided), and the LLM may start before the turn ends (early_reply.py:
llm_request and llm_first_token before eot_decided, "early" in the line). The reply logs the line
once, when its speech is out: `turn timing: turn=2 early=1 eot_judged_ms=… eot_decided_ms=… …
first_audio_ms=… first_clause_words=4 first_piece_ms=1210 stalls=0 stall_ms=0`, with the session id
as every record has it. The stalls say what the first sound's speed cost: the silence a listener
playing the speech as it arrives hears inside the reply. Only times and counts, never words.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# In waterfall order; a line gives the marks that were made.
MARKS = ("eot_judged", "eot_decided", "asr_final", "llm_request", "llm_first_token", "first_clause", "first_audio")


@dataclass
class StreamTimes:
    """When an LLM stream was asked for, and when its first token came (monotonic; None: not yet)."""

    requested: float = field(default_factory=time.monotonic)
    first_token: float | None = None

    def token(self) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()


@dataclass
class TurnTiming:
    speech_end: float  # monotonic: when the server had the turn's last voiced audio
    marks: dict[str, float] = field(default_factory=dict)
    early: bool = False  # the reply took an LLM stream started before the turn ended
    first_clause_words: int = 0
    first_piece_ms: int = 0  # how long the first piece of speech plays
    # Silence inside the reply for a listener playing it as it arrives: the next piece came after
    # the one before had finished (pieces shorter than what follows them are the usual cause).
    stalls: int = 0
    stall_s: float = 0.0
    logged: bool = False

    def mark(self, name: str, at: float | None = None) -> None:
        """The first time `name` happened (later calls keep the first)."""
        self.marks.setdefault(name, time.monotonic() if at is None else at)

    def stall(self, seconds: float) -> None:
        if seconds >= 0.001:
            self.stalls += 1
            self.stall_s += seconds

    def ms(self, name: str) -> int | None:
        at = self.marks.get(name)
        return None if at is None else round((at - self.speech_end) * 1000)

    def line(self, turn: int) -> str:
        fields = [f"turn={turn}", f"early={int(self.early)}"]
        fields += [f"{name}_ms={self.ms(name)}" for name in MARKS if name in self.marks]
        if self.first_clause_words:
            fields.append(f"first_clause_words={self.first_clause_words}")
        if self.first_piece_ms:
            fields.append(f"first_piece_ms={self.first_piece_ms}")
        fields.append(f"stalls={self.stalls} stall_ms={round(self.stall_s * 1000)}")
        return " ".join(fields)

    def report(self, turn: int) -> None:
        """Log the waterfall once (when the reply's speech has been sent, or was cut)."""
        if not self.logged:
            self.logged = True
            log.info("turn timing: %s", self.line(turn))
