"""The small interface every text-to-speech voice implements.

A voice turns one piece of text (a sentence or clause) into 16-bit little-endian mono PCM at
its own native rate. `synthesize` is a plain blocking generator: the session runs it in a worker
thread and stops consuming it when the user interrupts, so a voice should yield in small pieces
(a sentence or less) to let interruption take effect quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class TTSError(RuntimeError):
    """A voice could not be loaded or could not speak."""


@dataclass(frozen=True)
class VoiceInfo:
    name: str  # the voice name clients use, e.g. "Puck"
    gender: str  # "female" | "male"
    languages: frozenset[str] | None  # primary language subtags it speaks ("en", "de"); None: any
    engine: str  # "piper" | "espeak" | ...


@runtime_checkable
class TTSVoice(Protocol):
    info: VoiceInfo
    sample_rate: int

    def load(self) -> None:
        """Load models; called once, off the event loop, before the first synthesize()."""

    def synthesize(self, text: str, language: str | None = None) -> Iterator[bytes]:
        """Yield PCM (int16 LE mono at `sample_rate`) for `text`, spoken in `language` (BCP-47)."""


def primary_language(code: str | None) -> str | None:
    """"de-DE" -> "de", "cmn-CN" -> "cmn"; None stays None."""
    return code.split("-")[0].lower() if code else None
