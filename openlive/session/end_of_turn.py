"""End of turn: whether a pause means the user is done, from a model's P(turn complete). No I/O.

The voice activity detector (`activity.py`) hears silence; it cannot tell "I would like to
know … the weather in Madrid" from "What is the weather in Madrid?". A semantic model (smart-turn,
`engines/turn/`) reads the audio of the utterance so far and says how likely it is complete. The
policy here is separate from the model, as in LiveKit's turn detector: the model estimates, the
policy decides how long to wait.

    speaking ──(quiet check_ms)──► ask the model once ──► P ≥ threshold: the turn ends now
        ▲                                 │               P < threshold: wait, up to max_wait_ms
        └──────── speech again ◄──────────┘               (the detector's own END at that silence)

A client that sets `silenceDurationMs` gets exactly that silence and no model, as Google
documents; so does a server whose configuration switches the model off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from .activity import ActivityParams


class TurnModel(Protocol):
    """Estimates P(the user's turn is complete) from the utterance's 16 kHz PCM (may take ~50 ms)."""

    async def probability(self, pcm16: bytes) -> float: ...


@dataclass(frozen=True)
class EndOfTurnPolicy:
    threshold: float = 0.5  # P(complete) at or above which a pause ends the turn
    # Quiet before the model is asked: the model was trained on utterances that end with about
    # 0.2 s of silence, and scores fragments as complete when given much more.
    check_ms: int = 200
    max_wait_ms: int = 2500  # the longest pause an unfinished thought gets before the turn ends anyway

    def activity_params(self, params: ActivityParams) -> ActivityParams:
        """The detector's settings under this policy: it ends the turn itself only at the longest wait."""
        return replace(params, silence_ms=max(self.max_wait_ms, self.check_ms), pause_ms=self.check_ms)

    def complete(self, probability: float) -> bool:
        return probability >= self.threshold
