"""Live captions: the user's words while they speak, as interim `inputTranscription` pieces.

Google's 2.x Live models stream the input transcription while the user talks: each message
carries only the new words (a delta), and clients append them (Pipecat's and LiveKit's Gemini
plugins, ADK's `gemini_llm_connection.py`); the last piece may say `finished: true`. 3.x models send
one transcription, whole, when the turn ends (ADK: "Gemini 3.x Live only sends a single final
input transcription"). The generation profile (`generation.py`) says which a session gets.

A delta cannot be taken back, so only words that have stopped changing are sent: Whisper
re-reads the utterance so far at a bounded cadence, and a word is committed when two successive
readings agree on it (LocalAgreement-2, as in whisper_streaming), never the last word of either
reading (the edge of the audio, where Whisper guesses: "It was the…", "times." that later becomes
"times,"), and never a word cut short ("t-", "the..."). When the turn ends, the final transcript
(the same recognition as without captions) supplies the rest, so the pieces add up to exactly the
text the conversation records. Where the reading of the whole turn punctuates a sent word
differently ("times, it" sent, "times. It" at the end), the turn records the words as sent
(`text_for`; the early reply's request is built from that same text); where it hears a sent word
differently, the turn records the new reading, the rest is aligned after the last word sent, and
the difference is logged: a delta cannot be taken back.

    START ──► every `every_s` of new speech, the ASR idle, no reply at work: read the utterance
      │           (the last WINDOW_S once it is long) ──► Stabilizer.hear() ──► piece (maybe none)
      │       a pause's speculative reading (turn_taking.py) ──► Stabilizer.hear() too, even
      │           when speech resumes before it is done (it is kept to its end for captions)
      ▼
    end of turn ──► Stabilizer.finish(final text) ──► the last piece, finished: true

Cost: one reading per `every_s` of speech (default 1 s; tiny.en: ~0.1-0.25 s of 2 cores each)
besides the pauses' speculative readings, which captions reuse; one at a time per session, none while the recognizer is busy with anything else (another session's turn,
a pause's speculative reading) or an LLM, TTS or turn model is at work: captions wait, replies do
not. `Stabilizer` is sans-I/O; `InterimTranscription` drives it from the session.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from difflib import SequenceMatcher

log = logging.getLogger(__name__)

_EDGE = re.compile(r"(?:-|\.\.\.|…)$")  # a word Whisper heard only the start of
_NON_WORD = re.compile(r"[^\w']+")


def _norm(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


def _after(sent: list[str], words: list[str]) -> int | None:
    """Where in `words` the words already sent end (an index into `words`); None: nowhere.

    A reading of the whole utterance starts with them (case and punctuation aside); a reading of
    the utterance's tail, or one that re-heard an early word, has them end somewhere inside it:
    the last two sent words (one, if only one was sent) must be found together."""
    if not sent:
        return 0
    a, b = [_norm(w) for w in sent], [_norm(w) for w in words]
    if b[:len(a)] == a:
        return len(a)
    need = min(2, len(a))
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    for i, j, size in reversed(matcher.get_matching_blocks()):
        if size >= need and i + size == len(a):
            return j + size
    return None


class Stabilizer:
    """The words of one utterance that successive readings agree on. No I/O.

    `hear(reading)` returns the next piece to send ("" when nothing new is stable); `finish(final)`
    the last piece (None when no piece was sent: the final text then goes whole, as before)."""

    def __init__(self) -> None:
        self.sent = ""  # the pieces sent so far, joined: what the client has accumulated
        self._words: list[str] = []  # the words sent, as sent
        self._previous: list[str] | None = None  # the last reading, split into words
        self.closed = False  # the turn ended: later readings are too late

    def hear(self, reading: str) -> str:
        if self.closed:
            return ""
        words = reading.split()
        previous, self._previous = self._previous, words
        if previous is None:
            return ""
        start, start_before = _after(self._words, words), _after(self._words, previous)
        if start is None or start_before is None:
            return ""  # a reading that does not contain what was sent cannot extend it
        new, old = words[start:], previous[start_before:]
        # Agreed words, but never the last of either reading: the edge of the audio.
        limit = min(len(new), len(old)) - 1
        count = 0
        while count < limit and new[count] == old[count] and not _EDGE.search(new[count]):
            count += 1
        if count == 0:
            return ""
        return self._send(new[:count])

    def _send(self, words: list[str]) -> str:
        self._words += words
        piece = " ".join(words)
        piece = (" " + piece) if self.sent else piece
        self.sent += piece
        return piece

    def text_for(self, final: str) -> str:
        """The text the turn records if it ends on the transcript `final`: `final` itself, unless the
        words sent are its first words with other punctuation or case ("times, it" sent, "times. It"
        in the reading of the whole turn, which has more context): then those words as sent, and
        the rest of `final`, so that the pieces add up to exactly the recorded text. Pure."""
        final = final.strip()
        if not self.sent or self._extends(final):
            return final
        words = final.split()
        count = len(self._words)
        if [_norm(w) for w in words[:count]] != [_norm(w) for w in self._words]:
            return final  # a word itself changed: the recognition of the whole turn wins
        return " ".join([self.sent, *words[count:]])

    def _extends(self, final: str) -> bool:
        sent = self.sent
        return final.startswith(sent) and (len(final) == len(sent) or final[len(sent)].isspace())

    def finish(self, final: str) -> str | None:
        """The piece that completes what was sent into `final`, the turn's text (`text_for`)."""
        self.closed = True
        final = final.strip()
        if not self.sent:
            return None
        if self._extends(final):
            rest = final[len(self.sent):]
        else:
            # Recognition of the whole turn changed a word already sent: what was sent stays (a
            # delta cannot be taken back); the rest follows the last word sent.
            words = final.split()
            start = _after(self._words, words)
            rest = " ".join(words[start:] if start is not None else words)
            rest = (" " + rest) if rest else ""
            log.info("input transcription: the final text differs from the words sent while the user spoke "
                     "(%d words sent, %d in the final text)", len(self._words), len(words))
        self.sent += rest
        return rest


class InterimTranscription:
    """Reads the utterance at a bounded cadence and sends the words that have settled.

    The session calls `started()` when the user starts speaking, `audio()` after each blob (it
    decides whether a reading is due), `offer()` with a pause's speculative reading, and `take()`
    when the turn ends (the user turn finishes the returned `Stabilizer`)."""

    WINDOW_S = 10.0  # past SHORT_S of speech, only the last this-many seconds are read
    SHORT_S = 14.0  # Whisper's short window (engines/asr/whisper.py): a reading costs the same up to here

    def __init__(self, *, every_s: float, recognize: Callable[[bytes], Awaitable[str]],
                 send: Callable[[str], Awaitable[None]], idle: Callable[[], bool]) -> None:
        self.every_s = every_s
        self._recognize = recognize
        self._send = send
        self._idle = idle  # nothing else wants the CPU: the recognizer and the reply's engines are free
        self.current: Stabilizer | None = None
        self._read_at = 0.0  # seconds of utterance at the last reading (its start)
        self._task: asyncio.Task[None] | None = None  # the reading in flight (at most one)
        self._sends: set[asyncio.Task[None]] = set()

    def started(self) -> None:
        self.current = Stabilizer()
        self._read_at = 0.0

    def due(self, utterance_s: float) -> bool:
        stabilizer = self.current
        if stabilizer is None or self._task is not None or utterance_s - self._read_at < self.every_s:
            return False
        if utterance_s > self.SHORT_S and not stabilizer.sent:
            return False  # a tail alone cannot be placed in a transcript that has no words yet
        return self._idle()

    def read(self, pcm: bytes, utterance_s: float) -> None:
        """Start a reading of the utterance so far (its tail, when long)."""
        assert self.current is not None
        if utterance_s > self.SHORT_S:
            pcm = pcm[-int(self.WINDOW_S * 16000) * 2:]
        self._read_at = utterance_s
        self._task = asyncio.create_task(self._read(self.current, pcm))

    def counted(self, utterance_s: float) -> None:
        """A reading started elsewhere (a pause's speculative one) counts towards the cadence."""
        self._read_at = utterance_s

    async def _read(self, stabilizer: Stabilizer, pcm: bytes) -> None:
        try:
            text = await self._recognize(pcm)
        except asyncio.CancelledError:
            raise
        except Exception:  # captions are a nicety: the turn's own recognition reports failures
            log.debug("interim recognition failed", exc_info=True)
            return
        finally:
            self._task = None
        piece = stabilizer.hear(text)
        log.debug("interim reading %r: %s", text, f"sent {piece!r}" if piece else "nothing settled")
        if piece:
            await self._send(piece)

    def offer(self, stabilizer: Stabilizer | None, text: str) -> None:
        """A reading made for another purpose (a pause's speculative recognition), if still current."""
        if stabilizer is None or stabilizer is not self.current:
            return
        piece = stabilizer.hear(text)
        if piece:
            # Sent in order: the session's sends queue on one lock, and the turn's last piece is
            # computed only after this reading's task has finished.
            task = asyncio.create_task(self._send(piece))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def take(self) -> Stabilizer | None:
        """The turn ended: its stabilizer, closed to readings still in flight (they send nothing)."""
        stabilizer, self.current = self.current, None
        if stabilizer is not None:
            stabilizer.closed = True
        return stabilizer

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
