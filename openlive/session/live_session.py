"""One Live API conversation, with no sockets: typed events in, server messages out.

The transport feeds `handle()` the client's events in order and gives the session an async
`send` callable for server messages. A reply runs as one task; interrupting it is one path
(`_interrupt`): cancel the task, wait for it to stop, record what was actually sent, then
send `interrupted`. So nothing of a reply can reach the client after its `interrupted`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..engines.llm.base import ChatMessage, ChatRequest, EngineError, Finished, LLMEngine, SamplingParams, TextDelta
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, internal_error, invalid_argument
from ..protocol.messages import ClientContent, ClientEvent, ContextUpdate, RealtimeInput, Setup, ToolResponse

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Turn:
    role: str  # "user" | "model", as on the wire
    text: str


@dataclass
class SessionOptions:
    """What setup asked for, read once so the hot path does not re-walk the setup message."""

    modality: str = "TEXT"
    system_instruction: str = ""
    params: SamplingParams = field(default_factory=SamplingParams)

    @classmethod
    def from_setup(cls, setup: Setup) -> "SessionOptions":
        gen = setup.generation_config
        modalities = [m for m in (gen.response_modalities if gen and gen.response_modalities else []) if m != "MODALITY_UNSPECIFIED"]
        if len(modalities) > 1:
            # The real service accepts one response modality per session.
            raise invalid_argument("Request contains an invalid argument: only one response modality is supported.")
        # The Live API answers in speech unless asked for text.
        modality = modalities[0] if modalities else "AUDIO"
        if modality not in ("TEXT", "AUDIO"):
            raise invalid_argument(f"Request contains an invalid argument: response modality {modality} is not supported.")
        params = SamplingParams()
        if gen is not None:
            params = SamplingParams(
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=int(gen.top_k) if gen.top_k is not None else None,
                max_tokens=gen.max_output_tokens,
                seed=gen.seed,
                stop=tuple(gen.stop_sequences or ()),
                presence_penalty=gen.presence_penalty,
                frequency_penalty=gen.frequency_penalty,
            )
        system = setup.system_instruction.text() if setup.system_instruction else ""
        return cls(modality=modality, system_instruction=system, params=params)


class LiveSession:
    def __init__(
        self,
        setup: Setup,
        *,
        llm: LLMEngine,
        send: Send,
        session_id: str | None = None,
    ) -> None:
        self.setup = setup
        self.llm = llm
        self._send = send
        self.session_id = session_id or uuid.uuid4().hex
        self.options = SessionOptions.from_setup(setup)
        self.history: list[Turn] = []
        self._reply: asyncio.Task[None] | None = None
        # Set when the session must end: the transport closes with this error's code and reason.
        self.failure: asyncio.Future[ProtocolError] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.setup.tools:
            log.warning("setup declares tools; this server does not call tools yet, so the model answers without them")
        if self.options.modality == "AUDIO":
            # Speech output needs a synthesizer in the pipeline; say so instead of sending silence.
            raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: AUDIO responses. "
                                      "Use responseModalities TEXT.")
        await self._send(sm.setup_complete(self.session_id))

    async def aclose(self) -> None:
        task, self._reply = self._reply, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @property
    def replying(self) -> bool:
        return self._reply is not None and not self._reply.done()

    # ------------------------------------------------------------------ client events

    async def handle(self, event: ClientEvent) -> None:
        if isinstance(event, Setup):
            raise invalid_argument("Request contains an invalid argument: setup must be the first and only setup message.")
        if isinstance(event, ClientContent):
            await self._on_client_content(event)
        elif isinstance(event, RealtimeInput):
            await self._on_realtime_input(event)
        elif isinstance(event, ToolResponse):
            raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: toolResponse.")
        elif isinstance(event, ContextUpdate):
            self._on_context_update(event)

    async def _on_client_content(self, event: ClientContent) -> None:
        # "A new clientContent message will interrupt any current model generation."
        await self._interrupt()
        for content in event.turns:
            role = "model" if content.role == "model" else "user"
            text = content.text()
            if text:
                self._append(role, text)
        if event.turn_complete:
            self._start_reply()

    async def _on_realtime_input(self, event: RealtimeInput) -> None:
        if event.text is not None:
            await self._interrupt()
            self._append("user", event.text)
            self._start_reply()
            return
        if event.audio is not None or event.media_chunks or event.video is not None:
            raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: realtime audio/video input.")
        # activityStart/activityEnd/audioStreamEnd carry no text: nothing to do without audio input.

    def _on_context_update(self, event: ContextUpdate) -> None:
        if event.system_instruction is not None:
            self.options.system_instruction = event.system_instruction.text()

    # ------------------------------------------------------------------ replies

    def _append(self, role: str, text: str) -> None:
        if self.history and self.history[-1].role == role:
            # Consecutive turns of one role read as one turn to chat templates that need alternation.
            self.history[-1].text += "\n" + text
        else:
            self.history.append(Turn(role, text))

    def _chat_request(self) -> ChatRequest:
        messages: list[ChatMessage] = []
        if self.options.system_instruction:
            messages.append(ChatMessage("system", self.options.system_instruction))
        for turn in self.history:
            messages.append(ChatMessage("assistant" if turn.role == "model" else "user", turn.text))
        return ChatRequest(tuple(messages), self.options.params)

    def _start_reply(self) -> None:
        self._reply = asyncio.create_task(self._run_reply(), name=f"reply-{self.session_id}")

    async def _run_reply(self) -> None:
        sent: list[str] = []
        finished: Finished | None = None
        completed = False
        try:
            async for chunk in self.llm.stream(self._chat_request()):
                if isinstance(chunk, TextDelta):
                    await self._send(sm.model_turn([sm.text_part(chunk.text)]))
                    sent.append(chunk.text)
                elif isinstance(chunk, Finished):
                    finished = chunk
            completed = True
        except EngineError as exc:
            log.error("LLM engine failed: %s", exc)
            self._fail(internal_error())
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reply failed")
            self._fail(internal_error())
            return
        finally:
            # History holds what the client actually received, whether the reply ended or was cut.
            if sent:
                self._append("model", "".join(sent))
        if completed:
            await self._send(sm.generation_complete())
            await self._send(sm.turn_complete(self._usage(finished)))

    def _usage(self, finished: Finished | None) -> sm.Usage | None:
        if finished is None:
            return None
        return sm.Usage(
            prompt_tokens=finished.prompt_tokens,
            response_tokens=finished.completion_tokens,
            cached_tokens=finished.cached_tokens,
        )

    async def _interrupt(self) -> None:
        task = self._reply
        if task is None or task.done():
            return
        self._reply = None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # An interrupted turn has no generationComplete: interrupted, then turnComplete.
        await self._send(sm.interrupted())
        await self._send(sm.turn_complete())

    def _fail(self, error: ProtocolError) -> None:
        if not self.failure.done():
            self.failure.set_result(error)
