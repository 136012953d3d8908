"""Starting the reply early: the LLM reads the words heard in a pause before the turn is known to be over.

When the user pauses, recognition runs at once (turn_taking.py), but the turn ends only after
the quiet the end-of-turn models call for: 0.2 s when both say "complete", 1.5 s when they
disagree, plus however long they take to decide (0.3-0.7 s on a busy 2-core machine). The LLM
used to start only then. Here it starts as soon as the pause's transcript is ready, on the
request the reply would make if the turn ended now; its output is held, not sent. When the turn
does end on those same words, the reply's request is the same, and the reply takes the stream
already under way (LiveKit calls this preemptive generation).

    pause ──► transcript ──► EarlyStart.start(request) ──► LLM generating, output held
    turn ends ──► reply asks for the same request ──► take() ──► held output, then the rest
    speech resumes / other words / reply ends ──► cancel(): the LLM is told to stop

Nothing reaches the client before the turn ends: only the reply sends, so interruption and
history keep their rules (reply.py). A request that differs in any way (new camera notes, a
context window that slid, a tool that answered meanwhile) simply gets a fresh stream. The cost
is the LLM's work when the user goes on talking; `[turn] early_reply = false` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .. import metrics
from ..engines.llm.base import ChatChunk, ChatRequest, LLMEngine, TextDelta, ToolCallsMade
from .turn_timing import StreamTimes

log = logging.getLogger(__name__)


class _Ended:
    """The last item of a held stream: how it ended."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class EarlyStart:
    """At most one LLM stream started ahead of its reply, and the chunks it produced so far."""

    def __init__(self, llm: LLMEngine, *, before: Callable[[], Awaitable[None]] | None = None) -> None:
        self._llm = llm
        self._before = before  # e.g. let a read-ahead in flight finish (read_ahead.py)
        self._request: ChatRequest | None = None
        self._started = 0.0
        self._task: asyncio.Task[None] | None = None
        self._chunks: asyncio.Queue[Any] = asyncio.Queue()
        self._times = StreamTimes()
        # The stream the last `take` handed over: when it was asked for, when its first token came.
        self.taken: StreamTimes | None = None

    @property
    def pending(self) -> bool:
        return self._request is not None

    def start(self, request: ChatRequest) -> None:
        """Begin `request` now; the output waits for `take` with the same request."""
        self.cancel()
        self._request = request
        self._started = time.monotonic()
        self._chunks = asyncio.Queue()  # unbounded: one reply's chunks, which the LLM's max_tokens bounds
        self._times = StreamTimes(requested=self._started)
        self._task = asyncio.create_task(self._pump(request, self._chunks, self._times), name="early-reply")

    async def _pump(self, request: ChatRequest, chunks: asyncio.Queue[Any], times: StreamTimes) -> None:
        ended = _Ended()
        try:
            if self._before is not None:
                await self._before()
            stream = self._llm.stream(request)
            try:
                async for chunk in stream:
                    if isinstance(chunk, (TextDelta, ToolCallsMade)):
                        times.token()
                    chunks.put_nowait(chunk)
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()  # closing the request is what stops the LLM server generating
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the reply that takes this stream meets it there
            ended = _Ended(exc)
        finally:
            chunks.put_nowait(ended)

    def take(self, request: ChatRequest) -> AsyncIterator[ChatChunk] | None:
        """The stream started for `request`, from its first chunk; None (and the early one
        cancelled) if what was started is not exactly this request."""
        self.taken = None
        if self._request is None or self._task is None:
            return None
        if request != self._request:
            self.cancel()
            return None
        task, chunks = self._task, self._chunks
        self._request = self._task = None
        self.taken = self._times
        metrics.early_reply("used")
        log.info("the reply's LLM request began %.0f ms before the turn ended",
                 (time.monotonic() - self._started) * 1000)
        return self._replay(task, chunks)

    async def _replay(self, task: asyncio.Task[None], chunks: asyncio.Queue[Any]) -> AsyncIterator[ChatChunk]:
        try:
            while not isinstance(chunk := await chunks.get(), _Ended):
                yield chunk
            if chunk.error is not None:
                raise chunk.error
        finally:
            if not task.done():  # the reply stopped reading (interrupted, or its tool call is written)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def cancel(self) -> None:
        """Drop what was started: the words it answered are not (or no longer) the turn."""
        task, self._request, self._task = self._task, None, None
        if task is not None:
            metrics.early_reply("dropped")
            task.cancel()


class EarlyLLM:
    """The LLM as a reply sees it: a request already started early is taken, any other is asked anew."""

    def __init__(self, llm: LLMEngine, early: EarlyStart) -> None:
        self._llm = llm
        self._early = early
        self.name = llm.name

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        taken = self._early.take(request)
        return taken if taken is not None else self._llm.stream(request)

    def __getattr__(self, attribute: str) -> Any:
        # What else a session reads of its engine (tool_mode, count_tokens, warm, system_guidance)
        # is the engine's own.
        return getattr(self._llm, attribute)

    async def aclose(self) -> None:
        """The session is done with it: only what it started early stops (the engine is shared)."""
        self._early.cancel()
