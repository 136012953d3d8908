"""One speech recognizer shared by every session, behind a bounded queue.

Recognition is CPU-heavy and the model serializes calls anyway, so sessions share one worker
thread; a semaphore bounds how many utterances may wait, so a burst of sessions queues briefly
instead of piling up unbounded work.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
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

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.model.load)

    async def transcribe(self, pcm16k: bytes | np.ndarray, language: str | None = None) -> Transcript:
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.model.transcribe, pcm16k, language)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
