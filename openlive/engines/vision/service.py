"""One vision engine shared by every session, in its own worker thread, behind a bounded queue.

Looking at a frame takes a few hundred milliseconds of CPU (mostly OCR); frames come about once
a second per session, and a client may send them faster. The queue never grows past its bound:

- each session has at most one frame waiting: a newer frame replaces its older one;
- at most `max_waiting` frames wait in all: past that, the oldest waiting frame is dropped.

A dropped frame is counted (`openlive_frames_dropped{kind="video"}`) and its future resolves to
None; the frame being looked at is never interrupted. Nothing here runs on the event loop but
`submit`, which only queues.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from ... import metrics
from .base import Sight, VisionEngine
from .images import FrameError, decode_frame, to_jpeg

log = logging.getLogger(__name__)


@dataclass
class _Job:
    data: bytes
    side: int
    previous: np.ndarray | None
    future: asyncio.Future[Sight | None]
    loop: asyncio.AbstractEventLoop


class SharedVision:
    def __init__(self, engine: VisionEngine, *, max_waiting: int = 8) -> None:
        self.engine = engine
        self.max_waiting = max(1, max_waiting)
        self._waiting: OrderedDict[Hashable, _Job] = OrderedDict()  # oldest first
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.dropped = 0  # frames dropped unseen since start (also in the metrics)

    @property
    def sees_images(self) -> bool:
        return self.engine.sees_images

    async def load(self) -> None:
        await asyncio.to_thread(self.engine.load)
        self._thread = threading.Thread(target=self._work, name="vision", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, data: bytes, *, side: int,
               previous: np.ndarray | None = None) -> asyncio.Future[Sight | None]:
        """Queue a checked frame of session `key`; the future gets its Sight, or None if dropped.

        A FrameError (the data behind a good header is broken) comes back through the future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sight | None] = loop.create_future()
        if self._closed:
            future.set_result(None)
            return future
        job = _Job(data, side, previous, future, loop)
        with self._cond:
            older = self._waiting.pop(key, None)
            self._waiting[key] = job
            dropped = [older] if older is not None else []
            while len(self._waiting) > self.max_waiting:
                dropped.append(self._waiting.popitem(last=False)[1])
            self._cond.notify()
        for old in dropped:
            self._drop(old)
        return future

    def _drop(self, job: _Job) -> None:
        self.dropped += 1
        metrics.frame_dropped("video")
        job.loop.call_soon_threadsafe(_resolve, job.future, None, None)

    def _work(self) -> None:
        _yield_to_speech()
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                _, job = self._waiting.popitem(last=False)
            if job.future.cancelled():  # the session ended while its frame waited
                continue
            try:
                pixels = decode_frame(job.data, job.side)
                sight = self.engine.look(pixels, job.previous)
                if self.engine.sees_images:
                    sight = dataclasses.replace(sight, jpeg=to_jpeg(pixels))
                result, error = sight, None
            except FrameError as exc:
                result, error = None, exc
            except Exception:  # a model failure loses one frame, never the worker
                log.exception("vision engine failed on a frame")
                result, error = None, None
            try:
                job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
            except RuntimeError:
                pass  # that session's loop is gone

    def close(self) -> None:
        with self._cond:
            self._closed = True
            waiting = list(self._waiting.values())
            self._waiting.clear()
            self._cond.notify_all()
        for job in waiting:
            try:
                job.loop.call_soon_threadsafe(_resolve, job.future, None, None)
            except RuntimeError:
                pass


def _yield_to_speech() -> None:
    """Run this worker at the lowest CPU priority (Linux: nice is per thread, inherited by its threads).

    Looking at a frame is background work: on a small CPU, OCR at full priority took one of the two
    cores from recognition, the LLM and synthesis, and a spoken reply beside a streaming camera
    came 2.5x later. At nice 19 the voice path runs first; the camera only loses frames (dropped
    oldest first, counted) when the CPU is busy."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: slower replies, not wrong ones
        log.info("vision worker keeps its priority: %s", exc)


def _resolve(future: asyncio.Future[Sight | None], result: Sight | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
