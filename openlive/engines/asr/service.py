"""One speech recognizer shared by every session, behind a bounded queue.

Recognition is CPU-heavy and the model serializes calls anyway, so sessions share one worker
thread; a semaphore bounds how many utterances may wait, so a burst of sessions queues briefly
instead of piling up unbounded work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from .whisper import Transcript, WhisperASR

log = logging.getLogger(__name__)


class Recognizer(Protocol):
    """What a session needs of speech to text, embedded or remote."""

    async def transcribe(self, pcm16k: bytes | np.ndarray, language: str | None = None) -> Transcript: ...


class SharedASR:
    def __init__(self, model: WhisperASR, *, workers: int = 1, max_waiting: int = 16) -> None:
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._slots = asyncio.Semaphore(workers + max_waiting)
        # Recognitions handed to the worker and not finished, those a cancelled session no longer
        # waits for included (the worker runs them anyway): what `busy` reads.
        self._jobs = 0
        self._jobs_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Recognition is queued or running: optional work (live captions) should wait."""
        return self._jobs > 0

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.model.load)

    async def transcribe(self, pcm16k: bytes | np.ndarray, language: str | None = None) -> Transcript:
        async with self._slots:
            job = self.executor.submit(self.model.transcribe, pcm16k, language)
            with self._jobs_lock:
                self._jobs += 1
            job.add_done_callback(self._job_done)
            return await asyncio.wrap_future(job)

    def _job_done(self, _job: Future[Transcript]) -> None:  # on the worker thread, or here if cancelled
        with self._jobs_lock:
            self._jobs -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
