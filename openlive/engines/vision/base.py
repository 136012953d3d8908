"""The small interface of a vision engine: one frame in, a few plain facts about it out.

A vision engine looks at one decoded, downscaled frame at a time, in a worker thread (never on
the event loop), and says what a small LLM can use: the text in view, how many faces, the main
colours, how bright it is. The session turns that `Sight` into a short note placed in the
conversation where the frame arrived ("[camera] Text in view: 'EXIT 12'. One face. Mostly blue.").

An LLM that sees images itself (a remote vision model) needs no description: the frames go into
its chat request as images instead, and the engine only prepares them (`sees_images`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Sight:
    """What one frame shows, as far as the engine can tell."""

    text: tuple[str, ...] = ()  # lines of text read in the frame, top to bottom
    faces: int | None = None  # None: not looked for
    colours: tuple[str, ...] = ()  # dominant colour names, most of the picture first
    brightness: str = ""  # "very dark" | "dark" | "" (ordinary) | "bright" | "very bright"
    # Since the last frame described (`previous`); None: the first frame. False: the same view, which
    # an engine that describes frames need not describe again (its other fields are then empty).
    changed: bool | None = None
    thumbnail: np.ndarray | None = field(default=None, compare=False, repr=False)  # for the next comparison
    jpeg: bytes | None = field(default=None, compare=False, repr=False)  # the frame itself, for an LLM that sees

    def describe(self) -> str:
        """The note the LLM reads: short plain sentences, the most telling fact first."""
        parts: list[str] = []
        if self.text:
            quoted = " / ".join(self.text)
            parts.append(f"The frame shows the text: '{quoted}'.")
        if self.faces is not None:
            parts.append({0: "No person or face is in view.", 1: "One person's face is in view."}.get(
                self.faces, f"{self.faces} people's faces are in view."))
        if self.colours:
            main, *rest = self.colours
            parts.append(f"Mostly {main}" + (f", with some {' and '.join(rest)}." if rest else "."))
        if self.brightness:
            parts.append(f"The picture is {self.brightness}.")
        return " ".join(parts) or "Nothing recognisable is in view."


class VisionEngine(Protocol):
    name: str
    sees_images: bool  # True: the LLM gets the frames themselves; `look` need not describe them

    def load(self) -> None:
        """Load models; called once in the worker thread before the first frame."""

    def look(self, image: np.ndarray, previous: np.ndarray | None) -> Sight:
        """Describe one RGB frame (height × width × 3, uint8); `previous` is the thumbnail of the
        session's last frame described, to say whether the picture changed. Runs in a worker thread."""
