"""One Live API conversation, with no sockets: typed events in, server messages out.

The transport feeds `handle()` the client's events in order and gives the session an async
`send` callable for server messages. The session is the composition of its rooms and the
dispatch of client events to them; each room's module says what it owns and may touch:

    turn_taking.py   audio in → activity → user turns ("what happens when the user stops talking")
    reply.py         one reply task: LLM text → clauses → speech → server messages; `interrupt()`
    tool_calls.py    the toolCall/toolResponse barrier, background calls, code and search tools
    context.py       instruction, tools, history, token accounting, the sliding window
    camera.py        video frames: checked, looked at beside the audio path, notes of what was seen
    checkpoints.py   resumption snapshots at quiet points, the consumed-message index
    options.py       what setup asked for
    proactivity.py   proactive audio: whether a turn from the realtime stream was said to the assistant

What stays here is what crosses rooms: user turns (from speech, realtime text or a background
tool result) run as tasks beside the reader; a new turn or the user's voice interrupts the reply
(`Replies.interrupt`, the one cancellation path); and whether the session is quiet enough for a
snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..config import SpeechConfig
from ..engines.asr.service import Recognizer
from ..engines.llm.base import LLMEngine
from ..engines.search.base import SearchProvider
from ..engines.search.url_context import UrlReader
from ..engines.tts.base import TTSVoice
from ..engines.tts.registry import VoiceRegistry
from ..engines.vision.images import FrameLimits, is_image
from ..engines.vision.service import SharedVision
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, invalid_argument
from ..protocol.messages import (ClientContent, ClientEvent, ContextUpdate, RealtimeInput, Setup, Tool,
                                 ToolResponse, WireModel, inert_fields)
from .camera import Camera
from .checkpoints import Checkpoints, Persistence, setup_json
from .context import ContextPolicy, Conversation, TokenBudget
from .end_of_turn import EndOfTurnPolicy, TextTurnModel, TurnModel
from .early_reply import EarlyLLM, EarlyStart
from .options import SessionOptions
from .proactivity import OVERHEARD, Addressee
from .read_ahead import ReadAhead
from .reply import Replies
from .resumption import Snapshot
from .tool_calls import ToolCalls
from .tools import refuse_unserved
from .turn_taking import TurnTaking
from .turn_timing import TurnTiming
from .user_audio import VoiceActivityModel, pcm_rate

if TYPE_CHECKING:
    from ..engines.code.sandbox import Sandbox

__all__ = ["LiveSession", "Persistence", "Send", "TokenBudget", "setup_json"]

log = logging.getLogger(__name__)

Send = sm.Send


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
        url_reader: UrlReader | None = None,
        sandbox: Sandbox | None = None,
        context_window: int = 32768,
        persistence: Persistence | None = None,
        budget: TokenBudget | None = None,
        resumed: Snapshot | None = None,
        turn_model: TurnModel | None = None,
        text_turn_model: TextTurnModel | None = None,
        turn_policy: EndOfTurnPolicy | None = None,
        vision: SharedVision | None = None,
        frame_limits: FrameLimits | None = None,
        generations: Mapping[str, str] | None = None,
        interim_every_s: float = 0.0,
    ) -> None:
        # A tool the client asked for that this server cannot serve ends the session now, by name.
        refuse_unserved(setup.tools, url_context=url_reader is not None)
        self.setup = setup
        self.llm = llm
        self._send = send
        self.session_id = session_id or uuid.uuid4().hex
        self.options = SessionOptions.from_setup(setup, generations)
        self.voices = voices
        self.conversation = Conversation(
            system_instruction=setup.system_instruction.text() if setup.system_instruction else "",
            tools=setup.tools, policy=ContextPolicy.from_setup(setup.context_window_compression, context_window),
            modality=self.options.modality, language=self.options.language, budget=budget,
            guidance=getattr(llm, "system_guidance", ""))
        self.tool_calls = ToolCalls(send=send, conversation=self.conversation, sandbox=sandbox, search=search,
                                    url_reader=url_reader, waiting=lambda: self.read_ahead.waiting_reply())
        # A reply's first request may already be under way, started in the pause before its turn ended.
        self.early = EarlyStart(llm, before=lambda: self.read_ahead.settle())
        self.replies = Replies(llm=EarlyLLM(llm, self.early), send=send, options=self.options,
                               conversation=self.conversation, tool_calls=self.tool_calls,
                               speech=speech or SpeechConfig(), voices=voices, fail=self.fail,
                               before_turn_complete=self._save_before_turn_complete,
                               name=f"reply-{self.session_id}", before_llm=self._before_llm,
                               early_taken=lambda: self.early.taken)
        self.read_ahead = ReadAhead(llm=llm, conversation=self.conversation, params=self.options.params,
                                    busy=lambda: self.replying)
        # proactivity.proactiveAudio: turns from the realtime stream are judged before a reply.
        self.addressee = Addressee(llm, self.conversation) if self.options.proactive_audio else None
        self._warming: list[asyncio.Task[None]] = []  # reading ahead at session start (a speed-up only)
        self.camera = Camera(vision=vision, conversation=self.conversation, key=self.session_id,
                             media_resolution=self.options.media_resolution,
                             include_all_video=self.options.include_all_video, limits=frame_limits or FrameLimits(),
                             speaking=self._user_speaking, changed=self._view_changed)
        self.checkpoints = Checkpoints(setup=setup, persistence=persistence, conversation=self.conversation,
                                       tool_calls=self.tool_calls, send=send, quiet=self._quiet,
                                       stopped=lambda: self._closing or self.failure.done(), camera=self.camera,
                                       name=f"checkpoint-{self.session_id}")
        self.turns = TurnTaking(options=self.options, host=self, ledger=self.checkpoints, send=send, asr=asr,
                                vad_factory=vad_factory, turn_model=turn_model, text_model=text_turn_model,
                                policy=turn_policy, interim_every_s=interim_every_s)
        self._user_turns: set[asyncio.Task[None]] = set()
        self._closing = False
        self._inert_seen: set[str] = set()  # fields accepted but not acted on, logged once a session
        self._said_no_search = False  # googleSearch declared with no provider: said once a session
        # With historyConfig.initialHistoryInClientContent, clientContent is history until its
        # turnComplete (3.x); 2.x models have no historyConfig and answer a seed's turnComplete.
        self._taking_history = self.options.initial_history and not self.options.generation.answers_seed
        # Set when the session must end: the transport closes with this error's code and reason.
        self.failure: asyncio.Future[ProtocolError] = asyncio.get_running_loop().create_future()
        if resumed is not None:
            self.checkpoints.restore(resumed)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.options.modality == "AUDIO":
            self.replies.voice = self._choose_voice()
        await self._send(sm.setup_complete(self.session_id))
        self._note_inert(self.setup)
        self._note_search(self.setup.tools)
        self.checkpoints.request()  # a handle from the start: even a silent session can be resumed
        if self.addressee is not None:
            self._warming.append(asyncio.create_task(self.addressee.warm(), name=f"proactive-{self.session_id}"))
        if self.conversation.system_instruction or self.conversation.tools or self.conversation.history:
            # The session's own opening (instruction, tools, a resumed conversation) is read now,
            # while the user has yet to speak: read cold with the first question, a framework's
            # tool declarations cost the 1.5B ~7 s on 2 cores, past the frameworks' 5 s budget.
            # The shared guidance alone is already cached in every slot (engines/llm/embedded.py).
            self.read_ahead.user_started()
        if self.conversation.tools.functions and hasattr(self.llm, "warm_tool_judges"):
            self._warming.append(asyncio.create_task(self._read_tool_judges(), name=f"judges-{self.session_id}"))

    async def _read_tool_judges(self) -> None:
        """The judge prompts of this session's functions (engines/llm/tool_turns.py), read after
        the conversation's own opening: the first indirect question about a tool then reads only
        its words there."""
        await self.read_ahead.finished()
        try:
            await self.llm.warm_tool_judges(self.replies.request())  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - only a speed-up
            log.info("the tools' judge prompts were not read ahead (%s)", exc)

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
        reply, self.replies.task = self.replies.task, None
        tasks = [t for t in (reply, *self._user_turns) if t is not None]
        for task in tasks:
            task.cancel()
        self.camera.aclose()
        self.early.cancel()
        if self.addressee is not None:
            self.addressee.cancel()
        for task in self._warming:
            task.cancel()
        tasks += self._warming
        await asyncio.gather(self.turns.aclose(), self.read_ahead.aclose(), *tasks, return_exceptions=True)
        await self.checkpoints.drain()

    def fail(self, error: ProtocolError) -> None:
        if not self.failure.done():
            self.failure.set_result(error)

    @property
    def voice(self) -> TTSVoice | None:
        return self.replies.voice

    @property
    def replying(self) -> bool:
        return self.replies.running

    @property
    def busy(self) -> bool:
        """A reply is running, or a user turn is on its way to one."""
        return self.replying or bool(self._user_turns)

    def _quiet(self) -> bool:
        return not self.busy and not self.tool_calls.pending_ids()

    # ------------------------------------------------------------------ client events

    def _note_inert(self, message: WireModel) -> None:
        """Say once per session which fields the client set that openlive accepts but does not act
        on: their paths only, never their values (they may hold anything, secrets included)."""
        new = [p for p in inert_fields(message) if p not in self._inert_seen]
        if new:
            self._inert_seen.update(new)
            log.info("accepted but not acted on: %s", ", ".join(sorted(set(new))))

    def _note_search(self, tools: list[Tool] | None) -> None:
        """googleSearch with no search provider finds nothing, and the model says it found nothing:
        a client would not know why. Said once a session, in the log."""
        if self.tool_calls.search is None and not self._said_no_search and any(
                t.google_search is not None or t.google_search_retrieval is not None for t in tools or []):
            self._said_no_search = True
            log.warning("googleSearch is declared but this server has no search provider ([search] provider = "
                        "\"none\"): every search finds nothing")

    async def handle(self, event: ClientEvent) -> None:
        self.checkpoints.received()
        self._note_inert(event)
        if isinstance(event, Setup):
            raise invalid_argument("Request contains an invalid argument: setup must be the first and only setup message.")
        if isinstance(event, ClientContent):
            await self._on_client_content(event)
        elif isinstance(event, RealtimeInput):
            await self._on_realtime_input(event)
        elif isinstance(event, ToolResponse):
            for turn in self.tool_calls.on_response(event):
                if turn.interrupt:
                    await self.replies.interrupt()
                self.spawn(self.take_user_turn(turn.text))
        elif isinstance(event, ContextUpdate):
            if event.tools is not None:
                refuse_unserved(event.tools.tools, url_context=self.tool_calls.url_reader is not None)
                self._note_search(event.tools.tools)
            self.conversation.update(
                system_instruction=event.system_instruction.text() if event.system_instruction is not None else None,
                tools=event.tools.tools if event.tools is not None else None, defer=self.replying)
        if not _is_audio_only(event):
            self.checkpoints.consumed_message()
        else:
            self.checkpoints.audio_only_handled()

    async def _on_client_content(self, event: ClientContent) -> None:
        # "A new clientContent message will interrupt any current model generation."
        await self.replies.interrupt()
        for content in event.turns:
            text = content.text()
            if content.role == "user" and text.strip() == "." and self._unanswered():
                # A placeholder, not words: LiveKit's generate_reply on 2.x models sends a user
                # turn "." to make the model answer what the user already said.
                continue
            if content.role == "system":
                # A new system instruction mid-session, sent as a system turn: from the next turn on.
                self.conversation.update(system_instruction=text, defer=self.replying)
                continue
            if content.role != "model":
                for part in content.parts:
                    if part.inline_data is not None and is_image(part.inline_data.mime_type):
                        self.camera.frame(part.inline_data.data, part.inline_data.mime_type)
            if text:
                self.conversation.append("model" if content.role == "model" else "user", text)
        if self._taking_history:
            # Initial history, as the client asked: taken in, never answered; it may end with the model.
            self._taking_history = not event.turn_complete
            return
        if event.turn_complete:
            ended_at = time.monotonic()
            if self.camera.needs_settling():
                self.spawn(self._reply_after_looking(ended_at))  # the reader goes on meanwhile
            else:
                self.camera.into_turn()
                self._start_reply(turn_ended_at=ended_at)

    async def _reply_after_looking(self, ended_at: float) -> None:
        await self.camera.settle()
        self.camera.into_turn()
        self._start_reply(turn_ended_at=ended_at)

    async def _on_realtime_input(self, event: RealtimeInput) -> None:
        self._taking_history = False  # the realtime conversation has begun: history is over
        turns = self.turns
        turns.check_signals(event)
        if event.activity_start is not None:
            await turns.activity_start()
        for blob in [b for b in (event.audio, *(event.media_chunks or ())) if b is not None]:
            if is_image(blob.mime_type):
                self.camera.frame(blob.data, blob.mime_type)
            else:
                await turns.audio(blob.data, pcm_rate(blob.mime_type))
        if event.video is not None:
            self.camera.frame(event.video.data, event.video.mime_type)
        if event.text is not None and not self.options.generation.is_trigger(event.text):
            if self.options.barge_in:
                await self.replies.interrupt()
            self.spawn(self.take_user_turn(event.text, ended_at=time.monotonic(), realtime=True))
        elif event.text is not None and not self.busy and self._unanswered():
            # A trigger is no user turn, and never interrupts: 3.x clients send realtimeInput.text
            # " " (Pipecat) or "." (ADK, after replaying history) right after clientContent, as
            # the nudge 3.x models want to run inference. With nothing running and the user's
            # content unanswered (initial history gets no reply by itself), it starts the reply
            # to that content; otherwise it is nothing.
            self.camera.into_turn()
            self._start_reply(turn_ended_at=time.monotonic())
        if event.audio_stream_end:
            turns.audio_stream_end()
        if event.activity_end is not None:
            turns.activity_end()

    def _view_changed(self) -> None:
        self.checkpoints.request()  # what was seen is conversation state
        self.read_ahead.opening(self.camera.opening())  # the next turn begins with it: read it now

    async def _before_llm(self) -> None:
        await self.read_ahead.settle()

    def _unanswered(self) -> bool:
        history = self.conversation.history
        return bool(history) and history[-1].role == "user"

    def _user_speaking(self) -> bool:
        audio = self.turns.user_audio
        return audio is not None and (audio.speaking or audio.capturing)

    # ------------------------------------------------------------------ user turns (TurnHost)

    async def on_speech_start(self) -> None:
        if self.options.barge_in and self.replying:
            log.info("barge-in: the user spoke over the reply")
            await self.replies.interrupt()
        self.early.cancel()
        if self.addressee is not None:
            self.addressee.cancel()
        self.read_ahead.user_started()

    def words_heard(self, text: str) -> None:
        # Only for a turn that would be answered at once: not behind a reply or a user turn in
        # progress, nor while clientContent is history.
        if not text or self.replying or self._user_turns or self._taking_history:
            return
        with self.conversation.tentative_user_turn(text):
            request = self.replies.request()
        if self.addressee is None:
            self.early.start(request)
            return

        def then(addressed: bool) -> None:
            # Proactive audio: the reply starts early only on words judged said to the assistant.
            if addressed and not self.replying:
                self.early.start(request)

        self.addressee.prejudge(text, then)

    def words_withdrawn(self) -> None:
        self.early.cancel()
        if self.addressee is not None:
            self.addressee.cancel()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a user turn beside the reader, so audio keeps flowing while it waits or recognizes."""
        task = asyncio.create_task(coroutine)
        self._user_turns.add(task)
        task.add_done_callback(self._user_turns.discard)
        task.add_done_callback(self._on_work_done)

    async def take_user_turn(self, text: str, tokens: int | None = None, *, ended_at: float | None = None,
                             spoken: bool = False, realtime: bool = False, timing: TurnTiming | None = None) -> None:
        # With NO_INTERRUPTION the reply in progress finishes before the next one starts.
        await self.replies.finished()
        await self.camera.settle()  # a frame shown just before the question is part of it
        # Proactive audio judges what came from the realtime stream (speech, realtimeInput.text);
        # never a function's result, nor clientContent (proactivity.py says why).
        if self.addressee is not None and (spoken or realtime) and not await self.addressee.addressed(text):
            # Not said to the assistant: context for what comes next, marked so, and no reply.
            self.conversation.append("user", OVERHEARD + text, tokens)
            await self.replies.decline()
            return
        self.conversation.append("user", text, tokens)
        self.camera.into_turn()
        self._start_reply(turn_ended_at=ended_at, turn_input="voice" if spoken else "text", timing=timing)

    def _start_reply(self, *, turn_ended_at: float | None = None, turn_input: str = "text",
                     timing: TurnTiming | None = None) -> None:
        # turn_ended_at: when the user's turn ended (monotonic), for the reply latency; None for a
        # reply that answers no user turn (a tool result). timing: a spoken turn's waterfall.
        task = self.replies.start(turn_ended_at=turn_ended_at, turn_input=turn_input, timing=timing)
        task.add_done_callback(self._on_work_done)
        # A stream started early that this reply did not take answers words that are not the turn.
        task.add_done_callback(lambda _: self.early.cancel())

    def _on_work_done(self, _task: asyncio.Task[None]) -> None:
        self.checkpoints.request()

    async def _save_before_turn_complete(self) -> None:
        if not self._user_turns and not self.tool_calls.pending_ids():
            await self.checkpoints.save_if_changed()


def _is_audio_only(event: ClientEvent) -> bool:
    """Realtime audio (or video) and nothing else: the one kind of message not consumed on arrival."""
    return isinstance(event, RealtimeInput) and event.text is None and event.activity_start is None \
        and event.activity_end is None and not event.audio_stream_end
