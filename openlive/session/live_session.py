"""One Live API conversation, with no sockets: typed events in, server messages out.

The transport feeds `handle()` the client's events in order and gives the session an async
`send` callable for server messages. A reply runs as one task; interrupting it is one path
(`_interrupt`): cancel the task, wait for it to stop, record what was actually sent, then
send `interrupted`. So nothing of a reply can reach the client after its `interrupted`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import soxr

from ..config import SpeechConfig
from ..engines.llm.base import (ChatMessage, ChatRequest, EngineError, Finished, LLMEngine, SamplingParams, TextDelta,
                                count_tokens)
from ..engines.tts.base import TTSError, TTSVoice
from ..engines.tts.registry import VoiceRegistry
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, internal_error, invalid_argument
from ..engines.search.base import SearchError, SearchProvider, SearchResult, grounding_metadata
from ..protocol.messages import (ClientContent, ClientEvent, ContextUpdate, FunctionResponse, RealtimeInput, Setup,
                                 Tool, ToolResponse)
from ..engines.asr.service import Recognizer
from ..engines.asr.whisper import Transcript
from .activity import Activity, ActivityParams
from .context import AUDIO_TOKENS_PER_SECOND, VIDEO_TOKENS_PER_FRAME, ContextPolicy, turns_to_drop, window_exceeded
from .languages import canonical_language, language_name
from .resumption import ConsumedIndex, SavedTurn, Snapshot, new_handle
from .speech import ClauseSegmenter, pcm_chunks
from .tools import RUN_PYTHON, SEARCH, Decision, RouterStream, ToolSet
from .user_audio import UserAudio, VoiceActivityModel, pcm_rate

if TYPE_CHECKING:
    from ..engines.code.sandbox import Sandbox
    from ..store import Store

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Turn:
    role: str  # "user" | "model", as on the wire
    text: str
    tokens: int = 0  # counted so far (speech is counted by its length, text by the tokenizer)
    uncounted: list[str] = field(default_factory=list)  # text not yet through the tokenizer


class TokenBudget(Protocol):
    """Tokens a session spends, charged to its API key's per-minute budget."""

    async def admit(self, tokens: int) -> None:
        """Charge a turn's input before it runs; raises ProtocolError when that goes over the budget."""

    async def spend(self, tokens: int) -> None:
        """Charge what a turn produced (never refused: it is already said)."""


@dataclass(frozen=True)
class Persistence:
    """Where resumption snapshots go, whose they are, and how long their handles stay valid."""

    store: Store
    owner: str  # digest of the key that opened the session
    ttl_s: float = 86400.0


@dataclass
class SessionOptions:
    """What setup asked for, read once so the hot path does not re-walk the setup message."""

    modality: str = "TEXT"
    system_instruction: str = ""
    params: SamplingParams = field(default_factory=SamplingParams)
    voice_name: str | None = None
    language: str | None = None
    output_transcription: bool = False
    input_transcription: bool = False
    # None: the client marks turns with activityStart/activityEnd (automatic detection disabled).
    activity: ActivityParams | None = field(default_factory=ActivityParams)
    barge_in: bool = True  # START_OF_ACTIVITY_INTERRUPTS (the default) vs NO_INTERRUPTION
    include_all_input: bool = False  # TURN_INCLUDES_ALL_INPUT

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
        voice_name = language = None
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
            speech = gen.speech_config
            if speech is not None:
                if speech.multi_speaker_voice_config is not None:
                    raise invalid_argument("Request contains an invalid argument: multi-speaker voice config is not "
                                           "supported in the Live API.")
                prebuilt = speech.voice_config.prebuilt_voice_config if speech.voice_config else None
                voice_name = prebuilt.voice_name if prebuilt else None
                language = speech.language_code or None
        if language is not None:
            language = canonical_language(language) or language
        system = setup.system_instruction.text() if setup.system_instruction else ""
        realtime = setup.realtime_input_config
        aad = realtime.automatic_activity_detection if realtime else None
        return cls(
            modality=modality, system_instruction=system, params=params, voice_name=voice_name, language=language,
            output_transcription=setup.output_audio_transcription is not None,
            input_transcription=setup.input_audio_transcription is not None,
            activity=None if aad is not None and aad.disabled else ActivityParams.from_setup(aad),
            barge_in=not (realtime and realtime.activity_handling == "NO_INTERRUPTION"),
            include_all_input=bool(realtime and realtime.turn_coverage == "TURN_INCLUDES_ALL_INPUT"),
        )


@dataclass
class _Reply:
    """What one reply has put on the wire so far: the history keeps exactly this."""

    sent: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    counted: bool = False
    audio_bytes: int = 0
    first_audio_at: float = 0.0
    decision: Decision | None = None  # what the last model turn decided (None: no tools declared)
    search_queries: list[str] = field(default_factory=list)
    search_results: list[SearchResult] = field(default_factory=list)
    tools_used: set[str] = field(default_factory=set)  # (tool, args) already carried out this turn

    def add_usage(self, finished: Finished) -> None:
        # Tool rounds re-read the conversation: the turn's prompt is its largest, outputs add up.
        self.prompt_tokens = max(self.prompt_tokens, finished.prompt_tokens)
        self.completion_tokens += finished.completion_tokens
        self.cached_tokens = max(self.cached_tokens, finished.cached_tokens)
        self.counted = True


class LiveSession:
    def __init__(
        self,
        setup: Setup,
        *,
        llm: LLMEngine,
        send: Send,
        session_id: str | None = None,
        voices: VoiceRegistry | None = None,
        speech: SpeechConfig | None = None,
        asr: Recognizer | None = None,
        vad_factory: Callable[[], VoiceActivityModel] | None = None,
        search: SearchProvider | None = None,
        sandbox: Sandbox | None = None,
        context_window: int = 32768,
        persistence: Persistence | None = None,
        budget: TokenBudget | None = None,
        resumed: Snapshot | None = None,
    ) -> None:
        self.setup = setup
        self.llm = llm
        self._send = send
        self.session_id = session_id or uuid.uuid4().hex
        self.options = SessionOptions.from_setup(setup)
        self.voices = voices
        self.speech = speech or SpeechConfig()
        self.voice: TTSVoice | None = None
        self.asr = asr
        self.vad_factory = vad_factory
        self.search = search
        self.sandbox = sandbox
        self.tools = ToolSet.from_setup(setup.tools)
        self._tool_decls: list[Tool] | None = setup.tools
        self.context = ContextPolicy.from_setup(setup.context_window_compression, context_window)
        self.budget = budget
        self._media_tokens = 0  # video frames seen since the last user turn
        self._counted_system: tuple[str, int] = ("", 0)
        self._deferred: list[Callable[[], None]] = []  # context updates waiting for the reply to end
        # Resumption: one lineage per conversation; a snapshot at every quiet point once asked for.
        self.persistence = persistence if setup.session_resumption is not None else None
        self.transparent = bool(setup.session_resumption and setup.session_resumption.transparent)
        self.lineage = uuid.uuid4().hex
        self._index = 0  # this connection's client messages, setup being 0
        self.consumed = ConsumedIndex()
        self._version = 0  # bumped by every change a snapshot would hold
        self._saved: tuple[int, int] | None = None  # (version, consumed index) of the last snapshot
        self._said_unresumable = False
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoint_again = False
        self._closing = False
        self._audio_since_checkpoint = 0.0
        self._pending_calls: dict[str, asyncio.Future[FunctionResponse]] = {}  # blocking calls awaiting an answer
        self._background_calls: dict[str, tuple[str, Any]] = {}  # NON_BLOCKING call id -> (name, args)
        self._answered: dict[str, float] = {}  # (function, args) -> when its result arrived
        self.history: list[Turn] = []
        self._reply: asyncio.Task[None] | None = None
        self._user_audio: UserAudio | None = None
        self._speculative: asyncio.Task[Transcript] | None = None  # recognition started in a pause
        self._user_turns: set[asyncio.Task[None]] = set()
        self._ignored: set[str] = set()
        # Set when the session must end: the transport closes with this error's code and reason.
        self.failure: asyncio.Future[ProtocolError] = asyncio.get_running_loop().create_future()
        if resumed is not None:
            self._restore(resumed)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.options.modality == "AUDIO":
            self.voice = self._choose_voice()
        await self._send(sm.setup_complete(self.session_id))
        self._request_checkpoint()  # a handle from the start: even a silent session can be resumed

    def _choose_voice(self) -> TTSVoice:
        if self.voices is None:
            raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: AUDIO responses.")
        voice = self.voices.find(self.options.voice_name)
        if voice is None:
            raise invalid_argument(f"Request contains an invalid argument: voice {self.options.voice_name!r} is not "
                                   f"available; use one of {', '.join(self.voices.names())}.")
        return self.voices.for_language(voice, self.options.language)

    async def aclose(self) -> None:
        self._closing = True
        tasks = [t for t in (self._reply, self._speculative, *self._user_turns) if t is not None]
        self._reply = self._speculative = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._checkpointing is not None:
            # A snapshot being written is finished, not dropped: its handle may already be promised.
            await asyncio.gather(self._checkpointing, return_exceptions=True)

    @property
    def replying(self) -> bool:
        return self._reply is not None and not self._reply.done()

    @property
    def busy(self) -> bool:
        """A reply is running, or a user turn is on its way to one."""
        return self.replying or bool(self._user_turns)

    # ------------------------------------------------------------------ client events

    async def handle(self, event: ClientEvent) -> None:
        self._index += 1
        if isinstance(event, Setup):
            raise invalid_argument("Request contains an invalid argument: setup must be the first and only setup message.")
        if isinstance(event, ClientContent):
            await self._on_client_content(event)
        elif isinstance(event, RealtimeInput):
            await self._on_realtime_input(event)
        elif isinstance(event, ToolResponse):
            await self._on_tool_response(event)
        elif isinstance(event, ContextUpdate):
            self._on_context_update(event)
        if not _is_audio_only(event):
            self.consumed.message(self._index)
            self._request_checkpoint()
        elif self.transparent and self._audio_since_checkpoint >= TRANSPARENT_CHECKPOINT_S:
            # Move the consumed index on now and then, so a client's replay buffer stays short.
            self._request_checkpoint()

    async def _on_client_content(self, event: ClientContent) -> None:
        # "A new clientContent message will interrupt any current model generation."
        await self._interrupt()
        for content in event.turns:
            text = content.text()
            if content.role == "system":
                # A new system instruction mid-session, sent as a system turn.
                self._update_context(system_instruction=text)
            elif text:
                self._append("model" if content.role == "model" else "user", text)
        if event.turn_complete:
            self._start_reply()

    async def _on_realtime_input(self, event: RealtimeInput) -> None:
        manual = self.options.activity is None
        if (event.activity_start is not None or event.activity_end is not None) and not manual:
            raise invalid_argument("Request contains an invalid argument: activityStart and activityEnd need "
                                   "automaticActivityDetection.disabled = true.")
        if event.audio_stream_end and manual:
            raise invalid_argument("Request contains an invalid argument: audioStreamEnd is only allowed while "
                                   "automatic activity detection is on.")
        if event.activity_start is not None:
            await self._on_user_speech_start()
            (await self._audio_input()).start_capture()
        for blob in [b for b in (event.audio, *(event.media_chunks or ())) if b is not None]:
            if blob.mime_type.lower().startswith("image/"):
                self._on_video_frame()
            else:
                await self._on_audio(blob.data, pcm_rate(blob.mime_type))
        if event.video is not None:
            self._on_video_frame()
        if event.text is not None:
            if self.options.barge_in:
                await self._interrupt()
            self._spawn(self._take_user_turn(event.text))
        if event.audio_stream_end and self._user_audio is not None and self._user_audio.speaking:
            self._end_user_turn()
        if event.activity_end is not None and self._user_audio is not None and self._user_audio.capturing:
            self._end_user_turn()

    def _on_video_frame(self) -> None:
        self._ignore("video frames")  # no vision engine yet: frames are accepted, not seen
        self._media_tokens += VIDEO_TOKENS_PER_FRAME  # but the service counts them in the context

    def _ignore(self, what: str) -> None:
        if what not in self._ignored:
            self._ignored.add(what)
            log.warning("ignoring %s: this server has no engine for them", what)

    # ------------------------------------------------------------------ speech in

    async def _audio_input(self) -> UserAudio:
        if self._user_audio is None:
            if self.asr is None:
                raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: audio input.")
            vad = None
            if self.options.activity is not None:
                if self.vad_factory is None:
                    raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: "
                                              "automatic activity detection.")
                vad = await asyncio.to_thread(self.vad_factory)  # loading the model takes ~40 ms
            self._user_audio = UserAudio(vad, self.options.activity, include_all_input=self.options.include_all_input)
        return self._user_audio

    async def _on_audio(self, pcm: bytes, rate: int) -> None:
        audio = await self._audio_input()
        activities = audio.feed(pcm, rate)
        seconds = len(pcm) / (2 * rate)
        self._audio_since_checkpoint += seconds
        self.consumed.audio(self._index, seconds, in_utterance=audio.speaking)
        for i, activity in enumerate(activities):
            if activity is Activity.START:
                await self._on_user_speech_start()
            elif activity is Activity.PAUSE:
                if Activity.END in activities[i + 1:]:
                    # The turn ends in this same message (a big chunk, or a replay): the utterance is
                    # already cut, so there is nothing to recognize early.
                    continue
                # Recognize during the silence window, so the transcript is ready when the turn ends.
                self._drop_speculation()
                self._speculative = asyncio.create_task(self._recognize(audio.utterance()))
            elif activity is Activity.RESUME:
                self._drop_speculation()  # the user went on: that transcript is already stale
            elif activity is Activity.END:
                self._end_user_turn()

    async def _on_user_speech_start(self) -> None:
        if self.options.barge_in and self.replying:
            log.info("barge-in: the user spoke over the reply")
            await self._interrupt()

    def _drop_speculation(self) -> None:
        if self._speculative is not None:
            self._speculative.cancel()
            self._speculative = None

    def _end_user_turn(self) -> None:
        assert self._user_audio is not None
        pcm = self._user_audio.finish_turn()
        # The utterance now lives in the user turn's task: until it is history, the session is busy.
        self.consumed.utterance_taken()
        speculative, self._speculative = self._speculative, None
        self._spawn(self._user_turn(pcm, speculative))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a user turn beside the reader, so audio keeps flowing while it waits or recognizes."""
        task = asyncio.create_task(coroutine)
        self._user_turns.add(task)
        task.add_done_callback(self._user_turns.discard)
        task.add_done_callback(self._on_work_done)

    async def _recognize(self, pcm: bytes) -> Transcript:
        assert self.asr is not None
        return await self.asr.transcribe(pcm, self.options.language)

    async def _user_turn(self, pcm: bytes, speculative: asyncio.Task[Transcript] | None) -> None:
        try:
            transcript = await (speculative if speculative is not None else self._recognize(pcm))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("speech recognition failed")
            self._fail(internal_error())
            return
        text = transcript.text.strip()
        log.info("user said %r (%.1f s of audio)", text, len(pcm) / 32000)
        if not text:
            return  # noise, a cough, or a breath: no turn
        if self.options.input_transcription:
            await self._send(sm.input_transcription(text))
        # The service counts what was heard, not what was written down: speech by its length.
        await self._take_user_turn(text, tokens=round(len(pcm) / 32000 * AUDIO_TOKENS_PER_SECOND))

    async def _take_user_turn(self, text: str, tokens: int | None = None) -> None:
        # With NO_INTERRUPTION the reply in progress finishes before the next one starts.
        while self._reply is not None and not self._reply.done():
            await asyncio.gather(self._reply, return_exceptions=True)
        self._append("user", text, tokens)
        self._start_reply()

    def _on_context_update(self, event: ContextUpdate) -> None:
        self._update_context(
            system_instruction=event.system_instruction.text() if event.system_instruction is not None else None,
            tools=event.tools.tools if event.tools is not None else None)

    def _update_context(self, *, system_instruction: str | None = None, tools: list[Tool] | None = None) -> None:
        """A new instruction or tool list: in force from the next turn, never halfway through a reply."""
        toolset = ToolSet.from_setup(tools) if tools is not None else None  # a bad declaration fails now

        def apply() -> None:
            if system_instruction is not None:
                self.options.system_instruction = system_instruction
            if toolset is not None:
                self.tools, self._tool_decls = toolset, tools
            self._version += 1

        if self.replying:
            self._deferred.append(apply)
        else:
            apply()

    # ------------------------------------------------------------------ replies

    def _append(self, role: str, text: str, tokens: int | None = None) -> None:
        """Add to history; `tokens` when the service counts this by something other than its text."""
        self._version += 1
        counted, uncounted = (tokens, []) if tokens is not None else (0, [text])
        if role == "user" and self._media_tokens:
            counted, self._media_tokens = counted + self._media_tokens, 0
        if self.history and self.history[-1].role == role:
            # Consecutive turns of one role read as one turn to chat templates that need alternation.
            last = self.history[-1]
            last.text += "\n" + text
            last.tokens += counted
            last.uncounted += uncounted
        else:
            self.history.append(Turn(role, text, counted, uncounted))

    def _system_prompt(self) -> str:
        parts = [self.options.system_instruction] if self.options.system_instruction else []
        language = language_name(self.options.language)
        if language:
            parts.append(f"Always answer in {language}.")
        if self.options.modality == "AUDIO":
            parts.append("Your answers are spoken aloud: use short plain sentences, with no markdown, lists, "
                         "code or emoji.")
        return "\n\n".join(parts)

    def _chat_system_prompt(self) -> str:
        system = self._system_prompt()
        if self.tools:
            system = f"{system}\n\n{self.tools.instructions()}".strip()
        return system

    def _chat_request(self, json_schema: dict[str, Any] | None = None) -> ChatRequest:
        messages: list[ChatMessage] = []
        system = self._chat_system_prompt()
        if system:
            messages.append(ChatMessage("system", system))
        for turn in self.history:
            messages.append(ChatMessage("assistant" if turn.role == "model" else "user", turn.text))
        return ChatRequest(tuple(messages), self.options.params, json_schema=json_schema)

    def _start_reply(self) -> None:
        for apply in self._deferred:
            apply()
        self._deferred.clear()
        self._reply = asyncio.create_task(self._run_reply(), name=f"reply-{self.session_id}")
        self._reply.add_done_callback(self._on_work_done)

    async def _run_reply(self) -> None:
        reply = _Reply()
        try:
            await self._fit_context()
            allow_tools = True
            for _ in range(MAX_TOOL_ROUNDS):
                text = self._model_text(reply, allow_tools=allow_tools)
                if self.voice is None:
                    await self._reply_text(reply, text)
                else:
                    await self._reply_audio(reply, self.voice, text)
                decision = reply.decision
                if decision is None or decision.tool == "none":
                    break
                key = json.dumps([decision.tool, decision.args], sort_keys=True)
                if key in reply.tools_used or self._recently_answered(decision):
                    # Small models ask again for what they already have: make them answer instead.
                    allow_tools = False
                    continue
                reply.tools_used.add(key)
                # After starting a NON_BLOCKING call the model talks on, but does not call again.
                allow_tools = await self._use_tool(decision, reply)
        except ProtocolError as exc:  # out of context window or out of token budget
            self._fail(exc)
            return
        except (EngineError, TTSError, SearchError) as exc:
            log.error("engine failed: %s", exc)
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
            if reply.sent:
                spoken_tokens = round(reply.audio_bytes / (2 * OUTPUT_RATE) * AUDIO_TOKENS_PER_SECOND)
                self._append("model", " ".join(reply.sent) if self.voice else "".join(reply.sent),
                             spoken_tokens if self.voice else None)
        if reply.search_results:
            spoken = " ".join(reply.sent) if self.voice else "".join(reply.sent)
            await self._send(sm.grounding(grounding_metadata(reply.search_queries, reply.search_results, spoken)))
        await self._send(sm.generation_complete())
        if self.persistence is not None and not self._user_turns and not self._pending_calls:
            # The handle for the state that includes this turn, before its turnComplete: a client
            # reading turn by turn (the SDK's receive()) gets it within the turn.
            await self._save_if_changed()
        usage = self._usage(reply)
        if self.budget is not None and usage is not None:
            await self.budget.spend(usage.response_tokens)
        # The last await of a reply: once the client has turnComplete, nothing of this turn is left
        # running for its next message to interrupt.
        await self._send(sm.turn_complete(usage))

    async def _model_text(self, reply: _Reply, *, allow_tools: bool) -> AsyncIterator[str]:
        """The text of one model turn for the user, as it streams; a tool decision lands on `reply`."""
        reply.decision = None
        if not self.tools:
            async for chunk in self.llm.stream(self._chat_request()):
                if isinstance(chunk, TextDelta):
                    yield chunk.text
                elif isinstance(chunk, Finished):
                    reply.add_usage(chunk)
            return
        router = RouterStream()
        stream = self.llm.stream(self._chat_request(self.tools.schema(allow_tools=allow_tools)))
        try:
            async for chunk in stream:
                if isinstance(chunk, TextDelta):
                    text = router.push(chunk.text)
                    if text:
                        yield text
                    if router.call_complete:
                        break  # the call is written; its unused "reply" field would only cost time
                elif isinstance(chunk, Finished):
                    reply.add_usage(chunk)
        finally:
            await stream.aclose()  # closing the request is what stops the LLM server generating
        reply.decision = router.decision()

    async def _reply_text(self, reply: _Reply, text: AsyncIterator[str]) -> None:
        async for delta in text:
            await self._send(sm.model_turn([sm.text_part(delta)]))
            reply.sent.append(delta)

    async def _reply_audio(self, reply: _Reply, voice: TTSVoice, text: AsyncIterator[str]) -> None:
        """Speak the reply as the LLM writes it: clause by clause, synthesis overlapping generation."""
        # Unbounded on purpose: it holds short strings, at most one per clause of one reply.
        clauses: asyncio.Queue[str | None] = asyncio.Queue()

        async def write() -> None:
            segmenter = ClauseSegmenter()
            try:
                async for delta in text:
                    for clause in segmenter.push(delta):
                        clauses.put_nowait(clause)
                for clause in segmenter.flush():
                    clauses.put_nowait(clause)
            finally:
                clauses.put_nowait(None)

        writer = asyncio.create_task(write())
        try:
            loop = asyncio.get_running_loop()
            chunk_s = self.speech.chunk_ms / 1000
            assert self.voices is not None
            while (clause := await clauses.get()) is not None:
                pcm = await loop.run_in_executor(self.voices.executor, synthesize_24k, voice, clause,
                                                 self.options.language)
                if not pcm:
                    continue
                if self.options.output_transcription:
                    await self._send(sm.output_transcription(clause if not reply.sent else " " + clause))
                reply.sent.append(clause)
                for piece in pcm_chunks(pcm, OUTPUT_RATE, chunk_s):
                    await self._pace(reply)
                    await self._send(sm.model_turn([sm.audio_part(piece, OUTPUT_RATE)]))
                    reply.audio_bytes += len(piece)
            await writer  # re-raises an engine failure
        finally:
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    # ------------------------------------------------------------------ tools

    async def _use_tool(self, decision: Decision, reply: _Reply) -> bool:
        """Carry out one tool decision and put its result in history; False: talk on without tools."""
        if decision.tool == RUN_PYTHON and self.tools.code_execution:
            await self._run_code(str(decision.args.get("code", "")))
            return True
        if decision.tool == SEARCH and self.tools.search:
            await self._search(str(decision.args.get("query", "")), reply)
            return True
        function = self.tools.functions.get(decision.tool)
        if function is None:  # the grammar prevents this; a grammar-less engine might not
            log.warning("model chose unknown tool %r", decision.tool)
            return False
        arg_sets = decision.args if isinstance(decision.args, list) else [decision.args]
        calls = [{"id": f"function-call-{uuid.uuid4().hex[:12]}", "name": function.name, "args": args}
                 for args in arg_sets if isinstance(args, dict)]
        self._append("model", "[called " + "; ".join(f"{function.name}({json.dumps(c['args'])})" for c in calls) + "]")
        if function.non_blocking:
            self._background_calls.update({c["id"]: (function.name, c["args"]) for c in calls})
            await self._send(sm.tool_call(calls))
            self._append("user", f"[{function.name} is running; its result will come later. Tell the user.]")
            return False
        loop = asyncio.get_running_loop()
        waiters = {c["id"]: loop.create_future() for c in calls}
        self._pending_calls.update(waiters)
        await self._send(sm.tool_call(calls))
        try:
            # Generation pauses until the client has answered every call, matched by id.
            responses = [await waiters[c["id"]] for c in calls]
        finally:
            for call_id in waiters:
                self._pending_calls.pop(call_id, None)
        for call, response in zip(calls, responses):
            self._remember_answer(function.name, call["args"])
            self._append("user", f"[result of {function.name}({json.dumps(call['args'])}): "
                                 f"{json.dumps(response.response)}]")
        self._append("user", "Use these results to answer." if len(calls) > 1 else "Use this result to answer.")
        return True

    def _remember_answer(self, name: str, args: Any) -> None:
        self._answered[json.dumps([name, args], sort_keys=True)] = time.monotonic()

    def _recently_answered(self, decision: Decision) -> bool:
        """Whether every call in this decision got its answer within the last couple of minutes."""
        arg_sets = decision.args if isinstance(decision.args, list) else [decision.args]
        now = time.monotonic()
        return all(now - self._answered.get(json.dumps([decision.tool, a], sort_keys=True), -1e9) < ANSWER_MEMORY_S
                   for a in arg_sets)

    async def _run_code(self, code: str) -> None:
        await self._send(sm.model_turn([{"executableCode": {"language": "PYTHON", "code": code}}]))
        if self.sandbox is None:
            result_outcome, output = "OUTCOME_FAILED", "code execution is not available on this server"
        else:
            result = await self.sandbox.run(code)
            result_outcome, output = result.outcome, result.output
        await self._send(sm.model_turn([{"codeExecutionResult": {"outcome": result_outcome, "output": output}}]))
        self._append("model", f"[ran Python]\n{code}")
        advice = ("Use this output to answer." if result_outcome == "OUTCOME_OK" else
                  "Fix the program: it must define everything it uses and print the answer. Run it again.")
        self._append("user", f"[Python {result_outcome}; output:]\n{output[:4000]}\n{advice}")

    async def _search(self, query: str, reply: _Reply) -> None:
        results = await self.search.search(query, limit=3) if self.search is not None else []
        reply.search_queries.append(query)
        reply.search_results.extend(results)
        self._append("model", f"[searched: {query}]")
        found = "\n".join(f"{i + 1}. {r.title}: {r.snippet}" for i, r in enumerate(results)) or "nothing found"
        self._append("user", f"[search results]\n{found}\nAnswer from these results.")

    async def _on_tool_response(self, event: ToolResponse) -> None:
        for response in event.function_responses:
            waiter = self._pending_calls.get(response.id or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
            elif response.id in self._background_calls:
                name, args = self._background_calls.pop(response.id)
                self._remember_answer(name, args)
                await self._on_background_result(name, response)
            else:
                # No in-band error exists in the Live API: say it in the log and carry on.
                log.warning("toolResponse for unknown or finished call id %r (%s) ignored", response.id, response.name)

    async def _on_background_result(self, name: str, response: FunctionResponse) -> None:
        """A NON_BLOCKING call's result: its scheduling says whether and when the model speaks of it."""
        scheduling = response.scheduling or "WHEN_IDLE"
        result = f"[result of {name}: {json.dumps(response.response)}] Tell the user."
        if scheduling == "SILENT":
            self._append("user", result)
            return
        if scheduling == "INTERRUPT":
            await self._interrupt()
        self._spawn(self._take_user_turn(result))

    async def _pace(self, reply: _Reply) -> None:
        """Keep speech at most `max_lead_ms` ahead of a listener playing it as it arrives."""
        now = time.monotonic()
        if reply.audio_bytes == 0:
            reply.first_audio_at = now
        lead = self.speech.max_lead_ms / 1000
        if lead <= 0:
            return
        ahead = reply.audio_bytes / (2 * OUTPUT_RATE) - (now - reply.first_audio_at)
        if ahead > lead:
            await asyncio.sleep(ahead - lead)

    def _usage(self, reply: _Reply) -> sm.Usage | None:
        if not reply.counted:
            return None
        usage = sm.Usage(prompt_tokens=reply.prompt_tokens, response_tokens=reply.completion_tokens,
                         cached_tokens=reply.cached_tokens)
        if self.voice is not None:
            # The Live API counts speech at about 25 tokens a second.
            usage.response_tokens = round(reply.audio_bytes / (2 * OUTPUT_RATE) * AUDIO_TOKENS_PER_SECOND)
            usage.response_modality = "AUDIO"
        return usage

    async def _interrupt(self) -> None:
        task = self._reply
        if task is None or task.done():
            return
        self._reply = None
        pending = list(self._pending_calls)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # An interrupted turn has no generationComplete: interrupted, then turnComplete.
        await self._send(sm.interrupted())
        if pending:
            await self._send(sm.tool_call_cancellation(pending))
        await self._send(sm.turn_complete())

    def _fail(self, error: ProtocolError) -> None:
        if not self.failure.done():
            self.failure.set_result(error)

    # ------------------------------------------------------------------ context window

    async def _fit_context(self) -> None:
        """Count what the next turn will read; slide the window or end the session when it is too long."""
        for turn in self.history:
            while turn.uncounted:
                turn.tokens += await count_tokens(self.llm, turn.uncounted.pop())
        system = self._chat_system_prompt()
        if self._counted_system[0] != system:
            self._counted_system = (system, await count_tokens(self.llm, system))
        fixed = self._counted_system[1]
        total = fixed + sum(t.tokens for t in self.history)
        policy = self.context
        if policy.trigger is not None and total > policy.trigger:
            cut = turns_to_drop([t.role for t in self.history], [t.tokens for t in self.history], fixed, policy.target)
            if cut:
                dropped = sum(t.tokens for t in self.history[:cut])
                del self.history[:cut]
                self._version += 1
                log.info("context window: dropped the %d oldest turns (%d tokens); %d tokens remain",
                         cut, dropped, total - dropped)
                total -= dropped
        if total > policy.window:
            raise window_exceeded(total, policy.window)
        if self.budget is not None:
            await self.budget.admit(total)

    @property
    def context_tokens(self) -> int:
        """Tokens of history counted so far (text not yet through the tokenizer is not included)."""
        return self._counted_system[1] + sum(t.tokens for t in self.history)

    # ------------------------------------------------------------------ resumption

    def _on_work_done(self, _task: asyncio.Task[None]) -> None:
        self._request_checkpoint()

    def _request_checkpoint(self) -> None:
        """Save the state if the session is quiet, or say it cannot be resumed right now."""
        if self.persistence is None or self._closing or self.failure.done():
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            self._checkpoint_again = True
            return
        self._checkpointing = asyncio.create_task(self._checkpoint(), name=f"checkpoint-{self.session_id}")

    @property
    def _quiet(self) -> bool:
        return not self.busy and not self._pending_calls

    async def _checkpoint(self) -> None:
        assert self.persistence is not None
        again = True
        while again:
            self._checkpoint_again = False
            if not self._quiet:
                # A reply or a tool call is in flight: the last handle still works, but from before it.
                if not self._said_unresumable:
                    self._said_unresumable = True
                    await self._send(sm.session_resumption_update(None))
            else:
                await self._save_if_changed()
            again = self._checkpoint_again

    async def _save_if_changed(self) -> None:
        consumed = self.consumed.value
        if self._saved != (self._version, consumed):
            await self._save(consumed)

    async def _save(self, consumed: int) -> None:
        assert self.persistence is not None
        state = self.snapshot().to_bytes()  # taken at once, so it matches `consumed`
        handle = new_handle()
        started = time.perf_counter()
        try:
            await self.persistence.store.put_snapshot(handle, self.lineage, state, self.persistence.ttl_s)
        except Exception:
            # No handle is promised for state we could not keep; the session itself carries on.
            log.exception("could not save a resumption snapshot")
            return
        self._saved = (self._version, consumed)
        self._said_unresumable = False
        self._audio_since_checkpoint = 0.0
        log.debug("snapshot of %d bytes saved in %.1f ms", len(state), (time.perf_counter() - started) * 1000)
        await self._send(sm.session_resumption_update(handle, last_consumed=consumed if self.transparent else None))

    def snapshot(self) -> Snapshot:
        assert self.persistence is not None
        return Snapshot(
            lineage=self.lineage,
            owner=self.persistence.owner,
            model=self.setup.model,
            setup=setup_json(self.setup),
            system_instruction=self.options.system_instruction,
            tools=[t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in self._tool_decls]
            if self._tool_decls is not None else None,
            history=[SavedTurn(t.role, t.text, t.tokens if not t.uncounted else None) for t in self.history],
            background_calls={k: [name, args] for k, (name, args) in self._background_calls.items()},
            created_at=time.time(),
        )

    def _restore(self, snapshot: Snapshot) -> None:
        """Continue a conversation. Its instruction and tools carry on unless this setup changes them."""
        self.lineage = snapshot.lineage
        original, now = setup_json(Setup.model_validate(snapshot.setup)), setup_json(self.setup)
        if original.get("systemInstruction") == now.get("systemInstruction"):
            self.options.system_instruction = snapshot.system_instruction
        if original.get("tools") == now.get("tools") and snapshot.tools is not None:
            self._tool_decls = [Tool.model_validate(t) for t in snapshot.tools]
            self.tools = ToolSet.from_setup(self._tool_decls)
        self.history = [Turn(t.role, t.text, t.tokens or 0, [] if t.tokens is not None else [t.text])
                        for t in snapshot.history]
        self._background_calls = {k: (v[0], v[1]) for k, v in snapshot.background_calls.items()}
        log.info("resumed conversation %s: %d turns", self.lineage, len(self.history))


OUTPUT_RATE = 24000
MAX_TOOL_ROUNDS = 5
ANSWER_MEMORY_S = 120.0  # a function's answer counts as known this long; asking again after it is new
TRANSPARENT_CHECKPOINT_S = 2.0  # in transparent mode, a new handle after this much idle audio


def _is_audio_only(event: ClientEvent) -> bool:
    """Realtime audio (or video) and nothing else: the one kind of message not consumed on arrival."""
    return isinstance(event, RealtimeInput) and event.text is None and event.activity_start is None \
        and event.activity_end is None and not event.audio_stream_end


def setup_json(setup: Setup) -> dict[str, Any]:
    """A setup as camelCase JSON, without the resumption handle it was opened with."""
    data = setup.model_dump(by_alias=True, exclude_none=True, mode="json")
    resumption = data.get("sessionResumption")
    if isinstance(resumption, dict):
        resumption.pop("handle", None)
    return data


def synthesize_24k(voice: TTSVoice, text: str, language: str | None) -> bytes:
    """Speak `text` and resample it once, to the Live API's 24 kHz (runs in a worker thread)."""
    pcm = b"".join(voice.synthesize(text, language))
    if voice.sample_rate == OUTPUT_RATE or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, voice.sample_rate, OUTPUT_RATE, quality="HQ").astype(np.int16).tobytes()
