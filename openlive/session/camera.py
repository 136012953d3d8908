"""The camera: video frames in, checked, looked at beside the audio path, kept as recent notes.

Owns: this session's frames on their way through the shared vision worker, the notes of what
they showed since the last user turn, and the last thing seen. Touches: the vision service (to
queue a frame), the conversation (a frame's tokens when it arrives; the notes when a user turn
is answered) and the checkpoints (a new view is worth a snapshot); nothing on the wire except
the error that ends the session for a frame that is no image.

A frame's life:

1. `frame()` on the reader: the header is checked (mime type, bytes, pixels; nothing decoded),
   a bad frame ends the session with 1007 as the Live API does; a good one is counted (258
   tokens, 66 at MEDIA_RESOLUTION_LOW) and queued for the vision worker, which keeps at most one
   waiting frame per session (a newer one replaces it, counted as dropped). The reader never
   waits for the worker.
2. The worker decodes it at the size `mediaResolution` asks for and describes it. A note
   ("[camera] The frame shows the text: 'EXIT 12'. …") is kept only when it says something the
   last note did not: a camera held on a sign for a minute is one note, not sixty.
3. When the user's turn is answered, the notes that belong to it (turn coverage, below) go into
   the conversation just before the user's words. If the first frame of a view (the first of the
   session, or after a pause in frames) is still being looked at, the turn waits for it briefly
   (`SETTLE_S`), so "what does the sign say?" right after showing the sign is answered about
   the sign. A camera streaming steadily never makes a turn wait: the last view seen is at most
   a second old.

Turn coverage (`realtimeInputConfig.turnCoverage`): with TURN_INCLUDES_ONLY_ACTIVITY (the
default) a turn carries the last view seen while the user was speaking, and the latest view; what
the camera showed in the quiet between turns and no longer shows is left out. With
TURN_INCLUDES_ALL_INPUT and TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO every note since the last
turn is kept (up to `MAX_NOTES`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import metrics
from ..engines.vision.base import Sight
from ..engines.vision.images import FrameError, FrameLimits, check_frame, side_for
from ..engines.vision.service import SharedVision
from ..protocol.errors import invalid_argument
from .context import Conversation, frame_tokens

log = logging.getLogger(__name__)

NOTE_PREFIX = "[camera]"
MAX_NOTES = 4  # notes kept between two turns: the latest view and what changed just before
SETTLE_S = 4.0  # the longest a turn waits for a frame still being looked at
VIEW_GAP_S = 2.0  # frames after a pause this long show a new view (a camera switched on, a picture)


@dataclass
class Note:
    text: str
    during_activity: bool  # the user was speaking when the frame arrived
    image: str | None = None  # a data URL, for an LLM that sees


class Camera:
    def __init__(self, *, vision: SharedVision | None, conversation: Conversation, key: str,
                 media_resolution: str | None, include_all_video: bool, limits: FrameLimits = FrameLimits(),
                 speaking: Callable[[], bool] = lambda: False, changed: Callable[[], None] = lambda: None) -> None:
        self.vision = vision
        self.conversation = conversation
        self.key = key
        self.side = side_for(media_resolution)
        self.frame_tokens = frame_tokens(media_resolution)
        self.include_all_video = include_all_video
        self.limits = limits
        self._speaking = speaking
        self._changed = changed
        self.notes: deque[Note] = deque(maxlen=MAX_NOTES)  # since the last user turn, oldest first
        self.last_seen = ""  # the latest note, whether or not a turn has carried it yet
        self._thumbnail = None  # the last frame described, small, to tell a change
        self._looking: set[asyncio.Future[Sight | None]] = set()
        self._last_frame_at = -VIEW_GAP_S  # monotonic
        self._new_view = False  # the frames being looked at start a new view: a turn waits for them
        self._warned = False

    # ------------------------------------------------------------------ frames in

    def frame(self, data: bytes, mime_type: str) -> None:
        """One frame from realtimeInput (video, mediaChunks) or an inline image of a clientContent turn."""
        try:
            check_frame(data, mime_type, self.limits)
        except FrameError as exc:
            # The Live API refuses image data it cannot use with 1007 and this reason's start.
            raise invalid_argument(f"Request contains an invalid argument: {exc}.") from None
        self.conversation.add_media_tokens(self.frame_tokens)  # the service counts every frame
        if self.vision is None:
            metrics.frame_dropped("video")
            if not self._warned:
                self._warned = True
                log.warning("video frames are counted but not seen: [vision] engine is none")
            return
        now = time.monotonic()
        self._new_view = self._new_view or now - self._last_frame_at > VIEW_GAP_S
        self._last_frame_at = now
        future = self.vision.submit(self.key, data, side=self.side, previous=self._thumbnail)
        during = self._speaking()
        self._looking.add(future)
        future.add_done_callback(lambda done: self._seen(done, during))

    def _seen(self, future: asyncio.Future[Sight | None], during_activity: bool) -> None:
        self._looking.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            # The header was fine but the pixels behind it are not: this frame is lost, the session is not.
            log.warning("video frame dropped: %s", error)
            metrics.frame_dropped("video")
            return
        sight = future.result()
        if sight is None:
            return  # dropped unseen: a newer frame of this session took its place
        self._new_view = False
        if sight.changed is False and sight.jpeg is None:
            # The view described last, not described again. The reference stays that view, so a
            # slow pan, each frame a little different, is still seen to change.
            return
        self._thumbnail = sight.thumbnail
        image = None
        if sight.jpeg is not None:
            image = "data:image/jpeg;base64," + base64.b64encode(sight.jpeg).decode("ascii")
            text = f"{NOTE_PREFIX} A camera frame is attached."
        else:
            text = f"{NOTE_PREFIX} {sight.describe()}"
        if image is not None and sight.changed is False and self.notes and self.notes[-1].image:
            self.notes[-1].image = image  # the same view, newer: replace rather than add
            return
        if image is None and text == self.last_seen:
            return  # nothing new to say (the latest view is always part of the next turn anyway)
        self.notes.append(Note(text, during_activity, image))
        self.last_seen = self.conversation.view = text
        self.conversation.version += 1  # what was seen is conversation state: a snapshot holds it
        self._changed()

    # ------------------------------------------------------------------ into a turn

    def needs_settling(self) -> bool:
        """The first frame of a new view is being looked at, and nothing since the last turn is seen yet."""
        return bool(self._looking) and self._new_view and not self.notes

    async def settle(self, timeout: float = SETTLE_S) -> None:
        """Before a turn is answered: wait for frames being looked at, if nothing is seen yet."""
        if self.needs_settling():
            await asyncio.wait(set(self._looking), timeout=timeout)

    def _chosen(self) -> list[Note]:
        """The notes that belong to a turn answered now."""
        notes = list(self.notes)
        if notes and not self.include_all_video:
            # The last view seen while the user spoke, and the view now. Each note is ~30 tokens the
            # LLM reads after the turn ends (~0.3 s on 2 cores with the 1.5B): a camera whose view
            # changes every frame once carried four and tripled voice-to-voice latency.
            notes = [n for n in notes[:-1] if n.during_activity][-1:] + notes[-1:]
        return notes

    def opening(self) -> str:
        """How the next user turn would begin if it were answered now (its notes), for reading
        ahead; "" when it has none, or when it carries frames (an LLM that sees reads those)."""
        notes = self._chosen()
        return "" if any(n.image for n in notes) else "\n".join(n.text for n in notes)

    def take_notes(self) -> tuple[list[str], list[str]]:
        """The notes (and frames, for an LLM that sees) that belong to the turn now answered."""
        notes = self._chosen()
        self.notes.clear()
        return [n.text for n in notes], [n.image for n in notes if n.image]

    def into_turn(self) -> None:
        notes, images = self.take_notes()
        self.conversation.add_camera_notes(notes, images)

    # ------------------------------------------------------------------ resumption

    def pending(self) -> list[str]:
        """Notes not yet part of a turn, for a snapshot."""
        return [n.text for n in self.notes]

    def restore(self, said: list[str], pending: list[str]) -> None:
        """After a resume: the last note the history holds, and the notes no turn carried yet."""
        for text in pending[-MAX_NOTES:]:
            self.notes.append(Note(text, False))
        latest = (said + pending)[-1:]
        if latest:
            self.last_seen = self.conversation.view = latest[0]

    def aclose(self) -> None:
        for future in self._looking:
            future.cancel()
        self._looking.clear()
