"""Turning a stream of LLM text into speakable pieces, and speech into wire-sized chunks. No I/O.

Speech starts from the first clause, not the whole reply: the segmenter cuts the first piece
at the first comma-like pause once it has a few words, or after a handful of words when no
pause comes (so the first sound comes early), and later pieces at sentence ends (so prosody
stays natural), with a length cap so a run-on sentence never holds speech back for long.
"""

from __future__ import annotations

import re

import numpy as np
import soxr

from ..engines.tts.base import TTSVoice

OUTPUT_RATE = 24000  # the Live API speaks 16-bit mono PCM at 24 kHz

# A sentence end is punctuation followed by white space; "3.14" or "e.g.x" does not end one.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"')\]]*\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:—–]\s+")
_MARKDOWN = re.compile(r"[*_#`~>|]+|\[(.*?)\]\(.*?\)")
_SPACES = re.compile(r"\s+")
# Words that lead into what follows: a piece of speech should not end on one.
_LEADS_ON = frozenset("a an the of in on at to for from with by and or but that which who is are was were "
                      "my your his her its our their this these those".split())


def speakable(text: str) -> str:
    """Strip what a voice would read aloud wrongly: markdown marks, link targets, extra spaces."""
    text = _MARKDOWN.sub(lambda m: m.group(1) or " ", text)
    return _SPACES.sub(" ", text).strip()


class ClauseSegmenter:
    # The first piece: at most five words (~6 tokens, ~0.5 s of the 1.5B's writing on 2 cores) before
    # speech starts; eight made the first sound wait ~0.3 s longer, for prosody few listeners hear.
    def __init__(self, first_min_words: int = 3, first_max_words: int = 5, max_chars: int = 220) -> None:
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
        self.max_chars = max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            self._emit(piece, out)
        return out

    def flush(self) -> list[str]:
        out: list[str] = []
        piece, self._buffer = self._buffer, ""
        self._emit(piece, out)
        return out

    def _emit(self, piece: str, out: list[str]) -> None:
        clean = speakable(piece)
        if any(ch.isalnum() for ch in clean):
            out.append(clean)
            self._emitted += 1

    def _next_cut(self) -> int | None:
        buffer = self._buffer
        sentence = _SENTENCE_END.search(buffer)
        if self._emitted == 0:
            limit = sentence.end() if sentence else len(buffer)
            for clause in _CLAUSE_END.finditer(buffer, 0, limit):
                if len(buffer[:clause.start()].split()) >= self.first_min_words:
                    return clause.end()
            if not sentence:
                # A long first sentence: speak its first words now, while the LLM writes the rest.
                words = list(re.finditer(r"\S+\s+", buffer))
                if len(words) >= self.first_max_words:
                    cut = self.first_max_words
                    # Not after "the", "of", "and": a pause there sounds broken.
                    while cut > self.first_min_words and words[cut - 1].group().strip().lower() in _LEADS_ON:
                        cut -= 1
                    return words[cut - 1].end()
        if sentence:
            return sentence.end()
        if len(buffer) > self.max_chars:
            # No sentence end in sight: cut at the last clause pause or space before the cap.
            window = buffer[: self.max_chars]
            pauses = list(_CLAUSE_END.finditer(window))
            if pauses:
                return pauses[-1].end()
            space = window.rfind(" ")
            return space + 1 if space > 0 else self.max_chars
        return None


def pcm_chunks(pcm: bytes, sample_rate: int, seconds: float) -> list[bytes]:
    """Split 16-bit PCM into chunks of about `seconds`, keeping samples whole."""
    step = max(2, int(sample_rate * seconds) * 2)
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


def synthesize_24k(voice: TTSVoice, text: str, language: str | None) -> bytes:
    """Speak `text` and resample it once, to the Live API's 24 kHz (CPU-bound: run it in a worker thread)."""
    pcm = b"".join(voice.synthesize(text, language))
    if voice.sample_rate == OUTPUT_RATE or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, voice.sample_rate, OUTPUT_RATE, quality="HQ").astype(np.int16).tobytes()
