"""End of turn: whether a pause means the user is done, from two models' P(turn complete). No I/O.

The voice activity detector (`activity.py`) hears silence; it cannot tell "I would like to
know … the weather in Madrid" from "What is the weather in Madrid?". Two models estimate how
likely the utterance is complete, each from what it can perceive (`engines/turn/`): smart-turn
hears the audio (intonation, the shape of the last words), a small language model reads the
transcript recognized in the pause (whether the words make a finished message). The policy here
is separate from the models, as in LiveKit's turn detector: the models estimate, the policy
decides how long to wait.

    speaking ──(quiet check_ms)──► ask both models ──► both say complete: ends at quick_quiet_ms
        ▲                                │            one says complete: wait until unsure_quiet_ms
        └──────── speech again ◄─────────┘            neither: wait until max_wait_ms (the
                                                      detector's own END at that silence)

Each model alone misleads: synthetic or read speech falls in pitch at every pause, so smart-turn
calls fragments complete; a terse but finished "Madrid" reads as a fragment. Both agreeing is
the fast path; disagreement costs about a second, never a cut-off sentence. The words are the
better witness: on the tuning voices of bench/conversation.py smart-turn called 13 of 20
mid-sentence fragments complete, the text model 1 (at 0.06). So plainly finished words
(P >= strong_text_threshold) end the turn on the fast path whatever the audio model says (it
hears a question's rising end, or a slow voice, as unfinished: 0.01-0.40), and words the text
model is lukewarm about (below text_threshold, 0.1) never do: a fragment misheard as a short
sentence ("Can you add …" as "Can you admit me?") scores 0.03-0.06 there.

Two cheap features of the words themselves hold in any voice: a transcript that ends in a word
a sentence cannot end with (an article, a possessive, a conjunction: "Do you know whether the")
or that the recognizer ends with "..." (Whisper's mark for speech that trails off) is not
finished, whatever the text model says (`unfinished_words`). Words the recognizer was unsure of
(a low mean log-probability: mumbled, noisy, or cut mid-word) are no evidence that the thought
is finished either: the text model's vote then counts as "not complete". A model that is off or
failed abstains; speech the recognizer made no words of counts as not finished (turn_taking.py).

The models are asked early (check_ms, 64 ms of quiet), so that their ~0.1-0.3 s of work overlaps
the quiet the fast path needs anyway (quick_quiet_ms, 200 ms). The audio model is shown the
quiet it would have heard by then (`with_quiet`): it was trained on utterances that end with
about 0.2 s of silence, and scores finished sentences lower when shown less.

A client that sets `silenceDurationMs` gets exactly that silence and no model, as Google
documents; so does a server whose configuration switches the model off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol

from .activity import ActivityParams

# Words an English sentence does not end with: each waits for what it introduces (its noun, its
# clause). Only words that are never final: "to", "of", "about" … end finished questions
# ("What is it made of?"), and the text model reads those well.
DANGLING_WORDS = frozenset(
    "a an the my your our their its every and or but nor because if whether than although though unless "
    "whereas".split())
_ELLIPSIS = re.compile(r"(\.\.\.|\u2026)\s*$")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def unfinished_words(words: str | None) -> bool:
    """Whether the transcript plainly stops mid-sentence: its last word is a DANGLING_WORDS one, or
    the recognizer ended it with "..." (Whisper's mark for speech that trails off)."""
    if not words or not words.strip():
        return False
    if _ELLIPSIS.search(words):
        return True
    found = _WORD.findall(words)
    return bool(found) and found[-1].lower() in DANGLING_WORDS


class TurnModel(Protocol):
    """Estimates P(the user's turn is complete) from the utterance's 16 kHz PCM (may take ~50 ms)."""

    async def probability(self, pcm16: bytes) -> float: ...


class TextTurnModel(Protocol):
    """Estimates P(the user's message ends here) from its transcript so far; None: nothing to read."""

    async def probability(self, transcript: str) -> float | None: ...


@dataclass(frozen=True)
class EndOfTurnPolicy:
    threshold: float = 0.5  # the audio model's P(complete) at or above which it votes "complete"
    # The text model's P(message ends here) at or above which it votes "complete". On the tuning
    # part of bench/conversation.py mid-sentence fragments scored 0.00-0.06 ("Remind me tomorrow
    # morning", 0.06) and finished requests 0.00-0.90, all but three at 0.13 or more; at 0.02 a
    # fragment misheard as a sentence ("Can you admit me?", 0.03) was enough to cut a speaker off.
    text_threshold: float = 0.1
    # Between this and text_threshold the words are lukewarm: never the fast path (a misheard
    # fragment lands there), but the middle wait (unsure_quiet_ms), not the longest, whatever the
    # audio model says: finished questions land there too (0.04, "What does the sign say?").
    lukewarm_text_threshold: float = 0.02
    # Words that plainly finish a request ("Can you tell me a fun fact about the moon", 0.40) need
    # nothing from the audio model, which hears a question's rising end (0.16-0.40) or a slow
    # voice (0.01-0.05) as unfinished: the audio model votes "complete" at audio_doubt_threshold.
    strong_text_threshold: float = 0.25
    audio_doubt_threshold: float = 0.0
    # Quiet before the models are asked: two 32 ms frames of the voice activity detector. Their
    # ~0.2 s of work (on 2 cores) then ends within the 200 ms the fast path waits anyway; asked
    # after 96 ms, it overran by ~0.1 s (end-of-turn delay p50 404 ms against 352 ms, with the
    # same cut-offs in bench/conversation.py).
    check_ms: int = 64
    # The quiet that ends a turn both models call complete. The audio model was trained on
    # utterances that end with about 0.2 s of silence, and scores fragments as complete when
    # given much more.
    quick_quiet_ms: int = 200
    # Below this mean log-probability per token, the recognizer guessed at the words.
    min_transcript_logprob: float = -0.6
    # The quiet that ends a turn when the models disagree. It must outlast the longest ordinary
    # mid-sentence pause (~0.9 s) plus what the detector misses of the next word's soft start
    # (up to ~0.35 s measured with eSpeak): at 1.2 s a 0.9 s pause was cut off.
    unsure_quiet_ms: int = 1500
    max_wait_ms: int = 2500  # the longest pause an unfinished thought gets before the turn ends anyway
    # Start the reply's LLM request on the words heard in a pause, before the turn ends (early_reply.py).
    early_reply: bool = True

    def quiet_needed_ms(self, audio: float | None, text: float | None,
                        transcript_logprob: float | None = None, words: str | None = None) -> int | None:
        """How much quiet ends the turn, given each model's estimate (None: it abstains) and the
        words the text model read (None: not known).

        None means no model has an opinion: the detector's END at `max_wait_ms` decides."""
        words_unsure = transcript_logprob is not None and transcript_logprob < self.min_transcript_logprob
        # Unsure words prove nothing about the sentence being finished; dangling ones prove the opposite.
        text_complete = (text is not None and text >= self.text_threshold and not words_unsure
                         and not unfinished_words(words))
        strong_text = text_complete and text is not None and text >= self.strong_text_threshold
        audio_limit = self.audio_doubt_threshold if strong_text else self.threshold
        votes = ([audio >= audio_limit] if audio is not None else []) + ([text_complete] if text is not None else [])
        if not votes:
            return None
        if all(votes):
            return max(self.check_ms, self.quick_quiet_ms)
        # Lukewarm words are no fast path, but no fragment either: "What does the sign say?" scored
        # 0.04 and a smart-turn 0.32, and waited the longest quiet (2.5 s) for the rest.
        lukewarm = (text is not None and self.lukewarm_text_threshold <= text < self.text_threshold
                    and not words_unsure and not unfinished_words(words))
        if any(votes) or lukewarm:
            return self.unsure_quiet_ms
        return self.max_wait_ms

    def with_quiet(self, utterance: bytes, bytes_per_ms: int = 32) -> bytes:
        """The utterance (ending in check_ms of quiet) as it will sound after quick_quiet_ms of quiet.

        The extra quiet repeats the utterance's own last quiet, so the room's noise stays the same."""
        have, want = self.check_ms * bytes_per_ms, self.quick_quiet_ms * bytes_per_ms
        tail = utterance[-have:] if have and len(utterance) >= have else b""
        if not tail or want <= have:
            return utterance
        extra = (tail * (want // have + 1))[: want - have]
        return utterance + extra

    def activity_params(self, params: ActivityParams) -> ActivityParams:
        """The detector's settings under this policy: it ends the turn itself only at the longest wait."""
        return replace(params, silence_ms=max(self.max_wait_ms, self.check_ms), pause_ms=self.check_ms)

