"""What a resumption handle restores, and which client messages it already covers.

A `Snapshot` is the whole conversation state that outlives a connection: the setup it was opened
with, the instruction and tools in force (a `contextUpdate` may have changed them), the history
(with the camera notes of what was seen in it), what the camera showed since the last turn, and
NON_BLOCKING calls still owed a result. It is written at quiet points only (no reply running,
no tool call awaiting its answer, no user turn on its way), so it never holds half a turn.

`ConsumedIndex` follows transparent mode's `lastConsumedClientMessageIndex`: the index of the last
client message whose effect the snapshot holds. Messages are numbered per connection, the setup
message being 0. Audio is only "consumed" once it can no longer become part of an utterance: a
margin of recent silence stays unconsumed, so a client replaying from the index also replays the
lead-in of a word the detector had not confirmed yet.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

SNAPSHOT_VERSION = 1
# Silence kept unconsumed ahead of any speech: more than the detector's start window and padding.
REPLAY_MARGIN_S = 1.0


def new_handle() -> str:
    # 256 random bits: a handle is a bearer secret for the whole conversation.
    return secrets.token_urlsafe(32)


@dataclass
class SavedTurn:
    role: str
    text: str
    tokens: int | None = None
    media_tokens: int = 0  # the turn's video frames
    images: list[str] = field(default_factory=list)  # the latest frames (data URLs), for an LLM that sees
    calls: list[dict[str, Any]] = field(default_factory=list)  # function calls, for native tool calling
    results: list[dict[str, Any]] = field(default_factory=list)  # function results, likewise
    audio_tokens: int = 0  # of `tokens`: speech, counted by its length
    tool_tokens: int = 0  # of `tokens`: built-in tools' results


@dataclass
class Snapshot:
    lineage: str  # one conversation across its connections
    owner: str  # digest of the API key that opened it: only that key may resume it
    model: str
    setup: dict[str, Any]  # the setup as first sent (camelCase JSON), without its handle
    system_instruction: str
    tools: list[dict[str, Any]] | None
    history: list[SavedTurn] = field(default_factory=list)
    background_calls: dict[str, list[Any]] = field(default_factory=dict)  # call id -> [name, args]
    camera: list[str] = field(default_factory=list)  # notes of what the camera showed, not yet in a turn
    created_at: float = 0.0
    version: int = SNAPSHOT_VERSION

    def to_bytes(self) -> bytes:
        # Compressed: history is text that repeats itself, and it is written after every turn.
        return zlib.compress(json.dumps(asdict(self), separators=(",", ":")).encode("utf-8"), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Snapshot":
        raw = json.loads(zlib.decompress(data))
        if raw.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {raw.get('version')} is not {SNAPSHOT_VERSION}")
        raw["history"] = [SavedTurn(**t) for t in raw.get("history", [])]
        return cls(**raw)


class ConsumedIndex:
    """Which of this connection's client messages the session state already reflects."""

    def __init__(self) -> None:
        self.last = 0  # the setup message
        self._utterance_from: int | None = None  # first message of audio still held for a turn
        self._margin: deque[tuple[int, float]] = deque()  # (index, seconds) of recent idle audio
        self._margin_s = 0.0

    def message(self, index: int) -> None:
        """A message other than audio has been handled."""
        self.last = index

    def audio(self, index: int, seconds: float, *, in_utterance: bool) -> None:
        """An audio message has been fed to the detector; `in_utterance`: it now holds speech."""
        self.last = index
        if in_utterance:
            if self._utterance_from is None:
                self._utterance_from = self._margin[0][0] if self._margin else index
            return
        self._utterance_from = None
        self._margin.append((index, seconds))
        self._margin_s += seconds
        # Drop the oldest message while the audio after it already covers the margin.
        while len(self._margin) > 1 and self._margin_s - self._margin[0][1] >= REPLAY_MARGIN_S:
            self._margin_s -= self._margin.popleft()[1]

    def utterance_taken(self) -> None:
        """The held utterance became a user turn (or was found to be noise): its audio is spent."""
        self._utterance_from = None
        self._margin.clear()
        self._margin_s = 0.0

    @property
    def value(self) -> int:
        held = self._utterance_from if self._utterance_from is not None else (
            self._margin[0][0] if self._margin else None)
        return self.last if held is None else min(self.last, held - 1)
