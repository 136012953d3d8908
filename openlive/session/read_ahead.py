"""Reading ahead: the LLM reads how the next user turn will begin while the user is still talking.

A camera note ("[camera] The frame shows the text: 'GATE 7'. ...") usually arrives seconds
before the question about it, but it is part of the question's turn, so the LLM used to read it
only after the turn ended: ~35 tokens, about 0.3-0.6 s on 2 cores with the default 1.5B, all of
it added to voice-to-voice latency. Here, when the opening of the next turn changes, the
conversation as that turn will begin is sent to the engine with one token to generate (`warm`);
the server's prompt cache then holds it, and the reply's own request, which starts the same way,
reads only the user's words.

    note seen ──► opening changed ──► warm(history + opening) ──► prompt cache
    user starts speaking ──► slide the window ──► warm(history) ──► prompt cache
    turn ends ──► settle(): a warm in flight finishes (its work is the reply's) ──► the reply

The same while a reply waits for its tool calls' results: the conversation so far (the call
included) is read, so the round that answers with the results reads only them.

Rules that keep it cheap: one read at a time per session, the latest opening wins, at most one
per `min_gap_s` (a view changing every frame would otherwise keep the LLM busy), never while
this session's reply is running (the LLM is at work for it), and a failure costs nothing but the
speed-up. An engine without `warm` (scripted, or none configured) gets nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..engines.llm.base import LLMEngine, SamplingParams
from .context import Conversation

log = logging.getLogger(__name__)


class ReadAhead:
    def __init__(self, *, llm: LLMEngine, conversation: Conversation, params: SamplingParams,
                 busy: Callable[[], bool], min_gap_s: float = 1.0, max_settle_s: float = 10.0) -> None:
        self._llm = llm
        self._warm = getattr(llm, "warm", None)
        self.conversation = conversation
        self.params = params
        self._busy = busy
        self.min_gap_s = min_gap_s
        self.max_settle_s = max_settle_s
        # What is still to be read: the next turn's opening (camera notes), or "" for the
        # conversation as it stands; and whether to read it even while a reply is running.
        self._wanted: tuple[str, bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = False  # the engine is reading now (not merely waiting for min_gap_s)
        self._last_read = float("-inf")  # loop time

    def opening(self, text: str) -> None:
        """The next user turn will begin with `text`: have the LLM read it now."""
        if text:
            self._want(text, during_reply=False)

    def user_started(self) -> None:
        """The user started speaking: have the LLM read the conversation as it stands (the system
        prompt, earlier turns), so that when the turn ends the reply reads only the new words. It
        matters for a session's first turn (its own instruction and tools) and after anything that
        changed the conversation's start (compression, a resumed session); otherwise the prompt
        cache already holds it and the read is one token. An opening already wanted is kept: it
        covers this and more."""
        if self._wanted is None:
            self._want("", during_reply=False)

    def waiting_reply(self) -> None:
        """The reply in progress waits on something else (its tool calls' results): the LLM is idle
        meanwhile, so it reads the conversation so far, which the reply's next round begins with."""
        self._want("", during_reply=True)

    def _want(self, text: str, *, during_reply: bool) -> None:
        if self._warm is None:
            return
        self._wanted = (text, during_reply)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="read-ahead")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted is not None:
            wait = self._last_read + self.min_gap_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # a newer opening may replace the wanted one meanwhile
            wanted, self._wanted = self._wanted, None
            if wanted is None:
                continue
            text, during_reply = wanted
            if self._busy() and not during_reply:
                continue
            history = self.conversation.history
            if text and history and history[-1].role == "user":
                continue  # a user turn waits for its reply: the opening is no longer what comes next
            self._reading = True
            try:
                if not text and not during_reply:  # as the next turn will find it: slid now if it must be
                    await self.conversation.slide_ahead(self._llm)
                await self._warm(self.conversation.chat_request(self.params, notes=text))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the reply reads it all itself: slower, not wrong
                log.info("reading ahead failed: %s", exc)
            finally:
                self._reading = False
                self._last_read = loop.time()

    async def finished(self) -> None:
        """Wait until nothing is being or waiting to be read, changing nothing (other reading
        ahead waits its turn behind the conversation's)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def settle(self) -> None:
        """Before the reply's own request: a read in flight finishes (the reply reuses its work);
        one still waiting is dropped."""
        task, self._wanted = self._task, None
        if task is None or task.done():
            return
        if self._reading:
            # Waited out, not cut short: llama.cpp reads a prompt in one batch it cannot stop, so
            # a cancelled read still costs its time, and the reply would then read it all again
            # (a slid window's ~1,000 tokens: twice ~3 s). max_settle_s only guards a stuck server.
            await asyncio.wait({task}, timeout=self.max_settle_s)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
