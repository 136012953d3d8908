"""One end-of-turn model shared by every session, asked from the event loop without blocking it.

A call is short (~50 ms on one core) but CPU-bound, so it runs in the model's own worker thread;
sessions pausing at the same moment queue there rather than competing for the two cores with
recognition and the LLM.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from .smart_turn import SmartTurn


class SharedTurnModel:
    def __init__(self, model: SmartTurn) -> None:
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn")

    async def probability(self, pcm16: bytes) -> float:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.model.probability, pcm16)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
