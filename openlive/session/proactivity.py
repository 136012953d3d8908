"""Proactive audio: whether what the microphone heard was said to the assistant at all.

With `setup.proactivity.proactiveAudio`, Google's model "can reject responding to the last
prompt. For example, this allows the model to ignore out of context speech or to stay silent if
the user did not make a request, yet" (google-genai's ProactivityConfig). Here the session's own
LLM is asked before a reply, in the assistant's place: "You said: <its last line> / Then you
heard: <the words>", then two yes/no questions about them; the mean log-odds of "yes" against a
threshold decides. The session's instruction is not part of it: Google's model also follows an
instruction such as "only chime in about Italian cooking", but the default 1.5B model does not
read one reliably, and leaving it out keeps the prompt the same for every session.

Which turns are judged: those that come from the realtime stream, the user's speech after end of
turn and `realtimeInput.text` (on 3.x models the same stream carries typed words; a microphone
in a room is where side talk comes from, and realtime text from an app's own recognizer is that
too). A `clientContent` turn with `turnComplete` is never judged: it is the app asking for a
reply ("the model should begin generating now"), as LiveKit's `generate_reply` and Pipecat's
context pushes do; nor is a function's result, which the model must always answer.

A turn judged not addressed is still the user's: its words go into the history as context for
what comes next, marked `[overheard, not said to you]` (history joins consecutive user turns, and
unmarked, the next question's reply would answer the side talk too); `inputTranscription` has
already gone out, and no reply is generated. The turn ends
with a `turnComplete` that carries `turnCompleteReason: RESPONSE_REJECTED` and usage: the Live
API closes a rejected turn so (a turnComplete with that reason and no content), LiveKit's plugin
only finalizes the user's transcript and closes the turn's generation on turnComplete, and
google-genai's `receive()` ends a turn only there. No `generationComplete`: nothing was generated.

Cost, paid on every judged turn: the fixed part comes first so the prompt cache serves it (the
same for every session); the last line and the words (each cut to a bound) are read anew, and one
token is generated; the second question shares all of that and reads only its own dozen tokens
(about 0.6 s and 0.3 s on 2 cores). In a pause before the turn ends the judgment is made early on
the speculative transcript (`prejudge`), and the reply's early start follows a "yes", so the wait
mostly overlaps the end-of-turn quiet. Engines with `yes_probability` (the OpenAI-compatible
ones, the embedded one) give P("yes") from the first token's log-probs; any other writes "yes"
or "no" under a JSON schema. A failure answers the turn, as a session without proactive audio would.

On bench/proactive_set.py (56 items written for it) the default model is right on about 9 in 10:
the figures, and what it still gets wrong (mostly someone thinking aloud), are in bench/proactive.py's
result. A larger model behind a remote engine is asked the same questions.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from ..engines.llm.base import ChatMessage, ChatRequest, LLMEngine, SamplingParams, yes_probability
from .context import Conversation

log = logging.getLogger(__name__)

# The fixed part, read from the prompt cache after the first turn. A 1.5B model judges "who was this
# said to?" poorly when asked in the third person about a scene; put in the assistant's place and
# asked about the words' form and kind, it separates them (bench/proactive.py).
SYSTEM = ("You are a voice assistant like Alexa, in a family's kitchen. You hear everything said in the room, "
          "and the TV and radio too.")
# Asked in turn after the same prefix (the second reads only its own dozen tokens); their log-odds
# of "yes" are averaged: each alone errs on different items.
QUESTIONS = ("Is that a question, request or reply for you? Answer yes or no.",
             "Is that something people say to a voice assistant? Answer yes or no.")
# Answer when the mean log-odds of "yes" is at least this (P about 0.73), tuned on
# bench/proactive_set.py's tuning items: the models' "yes" leans high for any words.
THRESHOLD = 1.0
# How a declined turn's words stand in the history.
OVERHEARD = "[overheard, not said to you] "
MAX_WORDS_CHARS = 400  # the words heard: their beginning
MAX_LAST_CHARS = 300  # the assistant's last line: its end, which a follow-up answers


def judge_requests(words: str, last: str | None) -> tuple[ChatRequest, ...]:
    """The questions for one turn: fixed text first, then the turn's, then each question."""
    said = " ".join((last or "").split())[-MAX_LAST_CHARS:]
    heard = " ".join(words.split())[:MAX_WORDS_CHARS]
    context = (f'You said: "{said}"\n' if said else "") + f'{"Then you" if said else "You"} heard: "{heard}"\n'
    return tuple(ChatRequest((ChatMessage("system", SYSTEM), ChatMessage("user", context + question)),
                             SamplingParams(temperature=0, max_tokens=1)) for question in QUESTIONS)


def log_odds(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def last_model_line(conversation: Conversation) -> str | None:
    for turn in reversed(conversation.history):
        if turn.role == "model":
            return turn.text
    return None


async def judge(llm: LLMEngine, words: str, last: str | None) -> float | None:
    """The mean log-odds that `words` were said to the assistant; None when the engine gave no answer."""
    scores = []
    for request in judge_requests(words, last):
        p_yes = await yes_probability(llm, request)
        if p_yes is not None:
            scores.append(log_odds(p_yes))
    return sum(scores) / len(scores) if scores else None


class Addressee:
    """Judges whether a user turn was said to the assistant; at most one judgment ahead of its turn."""

    def __init__(self, llm: LLMEngine, conversation: Conversation, *, threshold: float = THRESHOLD) -> None:
        self._llm = llm
        self.conversation = conversation
        self.threshold = threshold
        self._ahead: tuple[tuple[str, str | None], asyncio.Task[bool]] | None = None

    def _key(self, words: str) -> tuple[str, str | None]:
        return words, last_model_line(self.conversation)

    def prejudge(self, words: str, then: Callable[[bool], None] | None = None) -> None:
        """Ask now about `words` heard in a pause; `addressed` with the same words (and the same
        last line) takes the answer. `then(addressed)` runs as soon as it is known (the session
        starts its reply early on a "yes")."""
        self.cancel()
        key = self._key(words)

        async def ahead() -> bool:
            verdict = await self._judge(*key)
            if then is not None:
                then(verdict)
            return verdict

        self._ahead = (key, asyncio.create_task(ahead(), name="prejudge"))

    async def addressed(self, words: str) -> bool:
        """Whether `words`, the turn just ended, were said to the assistant."""
        key = self._key(words)
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead[0] == key:
                log.info("proactive audio: the turn takes the judgment begun in the pause%s",
                         "" if ahead[1].done() else " (still under way)")
                return await ahead[1]
            ahead[1].cancel()
        return await self._judge(*key)

    async def _judge(self, words: str, last: str | None) -> bool:
        try:
            score = await judge(self._llm, words, last)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: answer, as without proactive audio
            log.warning("proactive audio: the judgment failed (%s): the turn is answered", exc)
            return True
        addressed = score is None or score >= self.threshold
        log.info("proactive audio: said to the assistant, log-odds %s: %s", "-" if score is None else f"{score:.2f}",
                 "answer" if addressed else "stay silent")
        return addressed

    async def warm(self) -> None:
        """Have the engine read the questions' fixed part before the first turn (a speed-up only)."""
        warm = getattr(self._llm, "warm", None)
        if warm is None:
            return
        first = judge_requests("", None)[0]
        try:
            await warm(ChatRequest(first.messages[:1], first.params))
        except Exception as exc:  # noqa: BLE001 - only a speed-up
            log.info("proactive audio: the questions were not read ahead (%s)", exc)

    def cancel(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()
