"""Persistence: resumption snapshots at quiet points, and which client messages they cover.

Owns: the conversation's lineage, this connection's message count and `ConsumedIndex`, the
snapshot task and the memory of what was last saved. A snapshot is written only when the session
is quiet (no reply, no user turn on its way, no tool call owed an answer); while it is not, the
client hears `resumable: false` once. A handle goes on the wire only after its snapshot is
durable, so a crash never loses state that was promised.

Touches: the store, the wire (`sessionResumptionUpdate`), and reads (never changes) the
conversation context and the background tool calls when it takes a snapshot; `restore` is the
one place that writes them back from a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..protocol import server_messages as sm
from ..protocol.messages import Setup, Tool
from ..redaction import remember_secret
from .camera import Camera
from .context import Conversation, Turn
from .resumption import ConsumedIndex, SavedTurn, Snapshot, new_handle
from .tool_calls import ToolCalls
from .tools import ToolSet

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

TRANSPARENT_CHECKPOINT_S = 2.0  # in transparent mode, a new handle after this much idle audio


@dataclass(frozen=True)
class Persistence:
    """Where resumption snapshots go, whose they are, and how long their handles stay valid."""

    store: Store
    owner: str  # digest of the key that opened the session
    ttl_s: float = 86400.0


def setup_json(setup: Setup) -> dict[str, Any]:
    """A setup as camelCase JSON, without the resumption handle it was opened with."""
    data = setup.model_dump(by_alias=True, exclude_none=True, mode="json")
    resumption = data.get("sessionResumption")
    if isinstance(resumption, dict):
        resumption.pop("handle", None)
    return data


class Checkpoints:
    def __init__(self, *, setup: Setup, persistence: Persistence | None, conversation: Conversation,
                 tool_calls: ToolCalls, send: sm.Send, quiet: Callable[[], bool], stopped: Callable[[], bool],
                 camera: Camera | None = None, name: str = "checkpoint") -> None:
        self.setup = setup
        # A snapshot at every quiet point, once the client asked for resumption.
        self.persistence = persistence if setup.session_resumption is not None else None
        self.transparent = bool(setup.session_resumption and setup.session_resumption.transparent)
        self.conversation = conversation
        self.tool_calls = tool_calls
        self.camera = camera
        self._send = send
        self._quiet = quiet
        self._stopped = stopped
        self._name = name
        self.lineage = uuid.uuid4().hex  # one conversation across its connections
        self.index = 0  # this connection's client messages, setup being 0
        self.consumed = ConsumedIndex()
        self._saved: tuple[int, int] | None = None  # (version, consumed index) of the last snapshot
        self._said_unresumable = False
        self.task: asyncio.Task[None] | None = None
        # One save at a time: the background checkpoint and the save before a turnComplete would
        # otherwise race, and a slow older snapshot could send its handle after a newer one's (the
        # client keeps the last handle it got, and would resume without the newer turn).
        self._saving = asyncio.Lock()
        self._again = False
        self._audio_since = 0.0

    # ------------------------------------------------------------------ what the client sent

    def received(self) -> None:
        """A client message arrived (numbered from 1; setup was 0)."""
        self.index += 1

    def consumed_message(self) -> None:
        """The message just received is handled and its effect is in the state."""
        self.consumed.message(self.index)
        self.request()

    def heard_audio(self, seconds: float, *, in_utterance: bool) -> None:
        self._audio_since += seconds
        self.consumed.audio(self.index, seconds, in_utterance=in_utterance)

    def utterance_taken(self) -> None:
        self.consumed.utterance_taken()

    def audio_only_handled(self) -> None:
        if self.transparent and self._audio_since >= TRANSPARENT_CHECKPOINT_S:
            # Move the consumed index on now and then, so a client's replay buffer stays short.
            self.request()

    # ------------------------------------------------------------------ saving

    def request(self) -> None:
        """Save the state if the session is quiet, or say it cannot be resumed right now."""
        if self.persistence is None or self._stopped():
            return
        if self.task is not None and not self.task.done():
            self._again = True
            return
        self.task = asyncio.create_task(self._checkpoint(), name=self._name)

    async def _checkpoint(self) -> None:
        again = True
        while again:
            self._again = False
            if not self._quiet():
                # A reply or a tool call is in flight: the last handle still works, but from before it.
                if not self._said_unresumable:
                    self._said_unresumable = True
                    await self._send(sm.session_resumption_update(None))
            else:
                await self.save_if_changed()
            again = self._again

    async def save_if_changed(self) -> None:
        if self.persistence is None:
            return
        async with self._saving:
            consumed = self.consumed.value
            if self._saved != (self.conversation.version, consumed):
                await self._save(consumed)

    async def _save(self, consumed: int) -> None:
        assert self.persistence is not None
        version = self.conversation.version
        # Taken at once, so it matches `consumed`; serialized and compressed in a thread: a long
        # history (megabytes of text) would otherwise hold the event loop, and every session, for seconds.
        state = await asyncio.to_thread(self.snapshot().to_bytes)
        handle = new_handle()
        remember_secret(handle)  # whatever logs it later (a store error, a traceback) shows [REDACTED]
        started = time.perf_counter()
        try:
            await self.persistence.store.put_snapshot(handle, self.lineage, state, self.persistence.ttl_s)
        except Exception as exc:  # noqa: BLE001 - a store fault (disk full, Redis gone): not this session's
            # No handle is promised for state we could not keep; the session itself carries on.
            log.error("could not save a resumption snapshot: %s: %s", type(exc).__name__, exc)
            return
        self._saved = (version, consumed)
        self._said_unresumable = False
        self._audio_since = 0.0
        log.debug("snapshot of %d bytes saved in %.1f ms", len(state), (time.perf_counter() - started) * 1000)
        await self._send(sm.session_resumption_update(handle, last_consumed=consumed if self.transparent else None))

    async def drain(self) -> None:
        """A snapshot being written is finished, not dropped: its handle may already be promised."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    # ------------------------------------------------------------------ snapshot and restore

    def snapshot(self) -> Snapshot:
        assert self.persistence is not None
        conversation = self.conversation
        return Snapshot(
            lineage=self.lineage,
            owner=self.persistence.owner,
            model=self.setup.model,
            setup=setup_json(self.setup),
            system_instruction=conversation.system_instruction,
            tools=[t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in conversation.tool_decls]
            if conversation.tool_decls is not None else None,
            history=[_saved(t) for t in conversation.history],
            background_calls={k: [name, args] for k, (name, args) in self.tool_calls.background.items()},
            camera=self.camera.pending() if self.camera is not None else [],
            created_at=time.time(),
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Continue a conversation. Its instruction and tools carry on unless this setup changes them."""
        self.lineage = snapshot.lineage
        conversation = self.conversation
        now = setup_json(self.setup)
        try:
            original = setup_json(Setup.model_validate(snapshot.setup))
            saved_tools = [Tool.model_validate(t) for t in snapshot.tools] if snapshot.tools is not None else None
        except ValidationError as exc:
            # Saved by a version that took values this one refuses (a range, a schema): this
            # setup's instruction and tools hold, the conversation itself still carries on.
            log.warning("resumed conversation %s keeps this setup's instruction and tools: %s", self.lineage,
                        exc.errors(include_url=False)[0]["msg"])
            original = None
        if original is not None and original.get("systemInstruction") == now.get("systemInstruction"):
            conversation.system_instruction = snapshot.system_instruction
        if original is not None and original.get("tools") == now.get("tools") and saved_tools is not None:
            conversation.tool_decls = saved_tools
            conversation.tools = ToolSet.from_setup(conversation.tool_decls)
        conversation.history = [Turn(t.role, t.text, t.tokens or 0, [] if t.tokens is not None else [t.text],
                                     t.media_tokens, list(t.images), list(t.calls), list(t.results),
                                     audio_tokens=t.audio_tokens if t.tokens is not None else 0,
                                     tool_tokens=t.tool_tokens if t.tokens is not None else 0)
                                for t in snapshot.history]
        notes = [line for t in conversation.history if t.role == "user" for line in t.text.splitlines()
                 if line.startswith("[camera]")]
        conversation.seen = bool(notes)
        if self.camera is not None:
            # What the camera showed last, before the disconnect: still in view until a frame says otherwise.
            self.camera.restore(notes[-1:], snapshot.camera)  # what the camera showed last, before the disconnect
        self.tool_calls.background = {k: (v[0], v[1]) for k, v in snapshot.background_calls.items()}
        log.info("resumed conversation %s: %d turns", self.lineage, len(conversation.history))


def _saved(turn: Turn) -> SavedTurn:
    """A turn as a snapshot keeps it; one with text not yet counted is counted again, all as text."""
    counted = not turn.uncounted and not turn.tool_uncounted
    return SavedTurn(turn.role, turn.text, turn.tokens if counted else None, turn.media_tokens, list(turn.images),
                     list(turn.calls), list(turn.results), turn.audio_tokens if counted else 0,
                     turn.tool_tokens if counted else 0)
