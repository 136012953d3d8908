"""The reply: one task that turns the model's text stream into server messages, and its one way to stop.

Owns: the running reply task and what it has put on the wire (`ReplyRecord`). A reply reads the
context, streams the LLM, and sends text deltas, or speaks the text clause by clause (synthesis
overlapping generation, paced at most `max_lead_ms` ahead of a listener); between model rounds
it hands tool decisions to the tool room. It ends with `generationComplete`, the turn's
resumption handle (through `before_turn_complete`) and `turnComplete` with `usageMetadata`.

Usage is counted as the Live API counts it, by modality: the prompt is the context the turn's last
model round read (`Conversation.reading`: text by the tokenizer, speech by its length, frames by
resolution), built-in tools' results in it apart as tool use; the response is the speech sent (25
tokens a second) or, for text, what the LLM wrote; the cached part is the share of the prompt
the LLM server read from its prompt cache, taken from the prompt's beginning.

The interruption rule, stated once: `interrupt()` cancels the task, waits until it has stopped,
and only then sends `interrupted` (then `toolCallCancellation` for calls still owed, then
`turnComplete`). Every send of a reply happens inside its task, so nothing of a reply can reach
the client after its `interrupted`; the history keeps exactly what was sent (`finally` below).

Touches: the wire, the conversation (reads it; appends the model's turn), the tool room, the
LLM and TTS engines, the key's token budget. Failures end the session through `fail`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace


from .. import metrics
from ..config import SpeechConfig
from ..engines.llm.base import (ChatChunk, ChatRequest, EngineError, Finished, LLMEngine, TextDelta, ToolCall, ToolCallsMade,
                                estimate_tokens)
from ..engines.search.base import SearchError, grounding_metadata
from ..engines.tts.base import TTSError, TTSVoice
from ..engines.tts.registry import VoiceRegistry
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, internal_error
from .context import AUDIO_TOKENS_PER_SECOND, Conversation, Reading
from .options import SessionOptions
from .speech import OUTPUT_RATE, ClauseSegmenter, pcm_chunks, synthesize_24k
from .tool_calls import Grounding, ToolCalls
from .tools import Decision, RouterStream
from .turn_timing import StreamTimes, TurnTiming

log = logging.getLogger(__name__)

# How long an interruption waits for a cancelled reply before cancelling it again (see `_stop`).
STOP_RECHECK_S = 2.0

MAX_TOOL_ROUNDS = 5


@dataclass
class ReplyRecord:
    """What one reply has put on the wire so far: the history keeps exactly this."""

    sent: list[str] = field(default_factory=list)
    reading: Reading | None = None  # what the last model round read, by modality
    completion_tokens: int = 0
    llm_prompt_tokens: int = 0  # the last round's prompt as the LLM server counted it
    llm_cached_tokens: int = 0  # of those, read from its prompt cache
    counted: bool = False  # a model round finished: completion_tokens holds what it wrote
    audio_bytes: int = 0
    first_audio_at: float = 0.0
    heard_until: float = 0.0  # when a listener playing the speech as it arrives runs out of it (monotonic)
    decision: Decision | None = None  # what the last model turn decided (None: no tools declared)
    grounding: Grounding = field(default_factory=Grounding)
    tools_used: set[str] = field(default_factory=set)  # (tool, args) already carried out this turn
    just_answered: frozenset[str] = frozenset()  # functions whose results the next round answers with
    # When the user's turn ended (monotonic) and how it came ("voice", "text"); None: not a user
    # turn (a tool result), so no reply latency is measured.
    turn_ended_at: float | None = None
    turn_input: str = "text"
    first_token_s: float | None = None  # the LLM's wait to its first token, this reply's first round
    timing: TurnTiming | None = None  # a spoken turn's waterfall (turn_timing.py), logged after its speech
    early: StreamTimes | None = None  # the LLM stream started before the turn ended, if this reply took one

    def first_token(self, seconds: float | None) -> None:
        if self.first_token_s is None:
            self.first_token_s = seconds

    def restart_usage(self) -> None:
        """The turn so far was completed (and counted) on the wire; count the next one afresh."""
        self.completion_tokens = self.llm_prompt_tokens = self.llm_cached_tokens = self.audio_bytes = 0
        self.reading = None
        self.counted = False

    def add_usage(self, finished: Finished) -> None:
        # Tool rounds re-read the conversation: the turn's prompt is its last (and largest), outputs add up.
        self.completion_tokens += finished.completion_tokens
        self.llm_prompt_tokens, self.llm_cached_tokens = finished.prompt_tokens, finished.cached_tokens
        self.counted = True


class Replies:
    def __init__(self, *, llm: LLMEngine, send: sm.Send, options: SessionOptions, conversation: Conversation,
                 tool_calls: ToolCalls, speech: SpeechConfig, voices: VoiceRegistry | None,
                 fail: Callable[[ProtocolError], None],
                 before_turn_complete: Callable[[], Awaitable[None]], name: str = "reply",
                 before_llm: Callable[[], Awaitable[None]] | None = None,
                 early_taken: Callable[[], StreamTimes | None] | None = None) -> None:
        self.llm = llm
        self._send = send
        self.options = options
        self.conversation = conversation
        self.tool_calls = tool_calls
        self.speech = speech
        self.voices = voices
        self.voice: TTSVoice | None = None  # set at session start for AUDIO sessions
        self._fail = fail
        self._before_turn_complete = before_turn_complete
        self._before_llm = before_llm  # e.g. let the LLM finish reading ahead (read_ahead.py)
        self._early_taken = early_taken  # what the last LLM request took of an early start (early_reply.py)
        self._timed_turns = 0
        self._name = name
        self.task: asyncio.Task[None] | None = None
        self._record: ReplyRecord | None = None  # what the running reply has sent (for its usage if cut)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, *, turn_ended_at: float | None = None, turn_input: str = "text",
              timing: TurnTiming | None = None) -> asyncio.Task[None]:
        """Reply to the conversation; `turn_ended_at` (monotonic) is when the user's turn ended;
        `timing`: a spoken turn's waterfall so far, completed and logged by this reply."""
        self.conversation.start_turn()
        record = ReplyRecord(turn_ended_at=turn_ended_at, turn_input=turn_input, timing=timing)
        self.task = asyncio.create_task(self._run(record), name=self._name)
        return self.task

    async def finished(self) -> None:
        """Wait for the reply in progress (if any) to end by itself (NO_INTERRUPTION)."""
        while self.running:
            assert self.task is not None
            await asyncio.gather(self.task, return_exceptions=True)

    async def interrupt(self) -> None:
        """Stop the reply in progress; see the module docstring for why this order is the rule."""
        task = self.task
        if task is None or task.done():
            return
        self.task = None
        pending = self.tool_calls.pending_ids()
        record = self._record
        log.debug("interrupting the reply (%d tool calls pending)", len(pending))
        await _stop(task)
        metrics.turn_ended("interrupted")
        # An interrupted turn has no generationComplete: interrupted, then turnComplete, which
        # carries usageMetadata like every turnComplete (frameworks count on it).
        await self._send(sm.interrupted())
        if pending:
            await self._send(sm.tool_call_cancellation(pending))
        await self._send(sm.turn_complete(self._usage(record)))

    async def decline(self) -> None:
        """A user turn the model chose not to answer (proactive audio, proactivity.py): no content,
        no generationComplete, only the turnComplete that closes it, saying why, with the usage of
        the context it took in."""
        metrics.turn_ended("declined")
        await self._send(sm.turn_complete(self._usage(None), reason="RESPONSE_REJECTED"))

    # ------------------------------------------------------------------ one reply

    async def _run(self, reply: ReplyRecord) -> None:
        self._record = reply
        try:
            if reply.turn_ended_at is not None and self.conversation.tools.url_context:
                await self.tool_calls.read_pages(reply.grounding)  # urlContext: before the model reads the turn
            await self.conversation.fit(self.llm)
            allow_tools = True
            for _ in range(MAX_TOOL_ROUNDS):
                if self._before_llm is not None:
                    await self._before_llm()
                reply.reading = await self.conversation.reading(self.llm)
                text = self._model_text(reply, allow_tools=allow_tools, not_now=reply.just_answered)
                if self.voice is None:
                    await self._reply_text(reply, text)
                else:
                    await self._reply_audio(reply, self.voice, text)
                decision = reply.decision
                if decision is None or decision.tool == "none":
                    break
                key = json.dumps([decision.tool, decision.args], sort_keys=True)
                if key in reply.tools_used or self.tool_calls.recently_answered(decision):
                    # Small models ask again for what they already have: make them answer instead.
                    allow_tools = False
                    continue
                reply.tools_used.add(key)
                # After starting a NON_BLOCKING call the model talks on, but does not call again.
                allow_tools = await self.tool_calls.use(
                    decision, reply.grounding,
                    calls_out=(lambda: self._end_turn_at_call(reply)) if self.options.generation.tool_call_ends_turn
                    else None)
                # The next round answers with this function's results: small models asked for it again
                # (a whole wasted round, ~1 s on 2 cores) about half the time when they could.
                reply.just_answered = frozenset({decision.tool}) & frozenset(self.conversation.tools.functions)
        except ProtocolError as exc:  # out of context window or out of token budget
            metrics.turn_ended("failed")
            self._fail(exc)
            return
        except (EngineError, TTSError, SearchError) as exc:
            log.error("engine failed: %s", exc)
            metrics.turn_ended("failed")
            self._fail(internal_error())
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reply failed")
            metrics.turn_ended("failed")
            self._fail(internal_error())
            return
        finally:
            # History holds what the client actually received, whether the reply ended or was cut.
            if reply.sent:
                self.conversation.append("model", self._said(reply),
                                         self._spoken_tokens(reply) if self.voice else None)
        if reply.grounding.results:
            found = reply.grounding
            await self._send(sm.grounding(grounding_metadata(found.queries, found.results, self._said(reply))))
        if reply.grounding.urls:
            await self._send(sm.url_context(reply.grounding.urls))
        await self._send(sm.generation_complete())
        # The handle for the state that includes this turn, before its turnComplete: a client
        # reading turn by turn (the SDK's receive()) gets it within the turn.
        await self._before_turn_complete()
        # The last await of a reply: once the client has turnComplete, nothing of this turn is left
        # running for its next message to interrupt.
        await self._turn_complete(reply)
        metrics.turn_ended("complete")

    async def _turn_complete(self, reply: ReplyRecord) -> None:
        usage = self._usage(reply)
        if self.conversation.budget is not None:
            await self.conversation.budget.spend(usage.response_tokens)
        await self._send(sm.turn_complete(usage))

    async def _end_turn_at_call(self, reply: ReplyRecord) -> None:
        """2.x models end their turn with a toolCall (ADK runs the tool only on that turnComplete);
        the reply after the toolResponse is a turn of its own, with its own usage."""
        await self._turn_complete(reply)
        reply.restart_usage()

    def _said(self, reply: ReplyRecord) -> str:
        return " ".join(reply.sent) if self.voice else "".join(reply.sent)

    @staticmethod
    def _spoken_tokens(reply: ReplyRecord) -> int:
        # The Live API counts speech at about 25 tokens a second.
        return round(reply.audio_bytes / (2 * OUTPUT_RATE) * AUDIO_TOKENS_PER_SECOND)

    def request(self, *, allow_tools: bool = True, not_now: frozenset[str] = frozenset()) -> ChatRequest:
        """What the LLM is asked for one model turn of a reply (with the defaults: its first round,
        which early_reply.py starts before the turn has ended). `not_now`: functions this turn may
        not call (their results were just given)."""
        tools = self.conversation.tools
        params = self.options.params
        if not tools:
            return self.conversation.chat_request(params)
        if getattr(self.llm, "tool_mode", "grammar") == "native":
            # Without tools allowed, they are still described (the history holds their calls), but
            # the server is told not to call one.
            request = self.conversation.chat_request(params, tools=tools.native_tools())
            return request if allow_tools else replace(request, tool_choice="none")
        request = self.conversation.chat_request(params, tools.schema(allow_tools=allow_tools, exclude=not_now))
        return replace(request, user_words=self.conversation.user_words()) if allow_tools and not not_now else request

    async def _model_text(self, reply: ReplyRecord, *, allow_tools: bool,
                          not_now: frozenset[str] = frozenset()) -> AsyncIterator[str]:
        """The text of one model turn for the user, as it streams; a tool decision lands on `reply`.
        `not_now`: functions this turn may not call (their results were just given)."""
        reply.decision = None
        tools = self.conversation.tools
        if not tools:
            with metrics.in_flight("llm"):
                timer = metrics.FirstToken(self.llm.name)
                async for chunk in self._stream(reply, self.request()):
                    if isinstance(chunk, TextDelta):
                        self._token(reply, timer)
                        yield chunk.text
                    elif isinstance(chunk, Finished):
                        self._round_done(reply, chunk)
            return
        if getattr(self.llm, "tool_mode", "grammar") == "native":
            async for text in self._native_model_text(reply, allow_tools=allow_tools):
                yield text
            return
        router = RouterStream()
        stream = self._stream(reply, self.request(allow_tools=allow_tools, not_now=not_now))
        try:
            with metrics.in_flight("llm"):
                timer = metrics.FirstToken(self.llm.name)
                async for chunk in stream:
                    if isinstance(chunk, TextDelta):
                        self._token(reply, timer)
                        text = router.push(chunk.text)
                        if text:
                            yield text
                        if router.call_complete:
                            break  # the call is written; its unused "reply" field would only cost time
                    elif isinstance(chunk, Finished):
                        self._round_done(reply, chunk)
        finally:
            await stream.aclose()  # closing the request is what stops the LLM server generating
        reply.decision = router.decision()

    async def _native_model_text(self, reply: ReplyRecord, *, allow_tools: bool) -> AsyncIterator[str]:
        """A model turn from a server that calls tools itself: its text streams to the user as it
        comes, and the calls it made (if any) become the decision."""
        tools = self.conversation.tools
        calls: tuple[ToolCall, ...] = ()
        with metrics.in_flight("llm"):
            timer = metrics.FirstToken(self.llm.name)
            async for chunk in self._stream(reply, self.request(allow_tools=allow_tools)):
                if isinstance(chunk, TextDelta):
                    self._token(reply, timer)
                    yield chunk.text
                elif isinstance(chunk, ToolCallsMade):
                    self._token(reply, timer)
                    calls = chunk.calls
                elif isinstance(chunk, Finished):
                    self._round_done(reply, chunk)
        reply.decision = tools.decision_of(calls)

    def _stream(self, reply: ReplyRecord, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The LLM's stream for `request`; the waterfall notes when it was asked for (before the turn
        ended, if the reply took a stream started early)."""
        stream = self.llm.stream(request)  # an early start is taken here, or not (early_reply.py)
        timing = reply.timing
        if timing is not None and "llm_request" not in timing.marks:
            reply.early = self._early_taken() if self._early_taken is not None else None
            timing.early = reply.early is not None
            timing.mark("llm_request", reply.early.requested if reply.early is not None else None)
        return stream

    def _token(self, reply: ReplyRecord, timer: metrics.FirstToken) -> None:
        """A token of this reply's model round came (the first ones only are timed)."""
        reply.first_token(timer.token())
        if reply.timing is not None:
            # A stream started early got its first token when it came, maybe before the turn ended.
            early = reply.early.first_token if reply.early is not None else None
            reply.timing.mark("llm_first_token", early)

    def _round_done(self, reply: ReplyRecord, finished: Finished) -> None:
        reply.add_usage(finished)
        # What the LLM read anew is what a turn waits for: the prompt cache's hits show here.
        log.info("llm round: read %d tokens (%d from cache), wrote %d", finished.prompt_tokens,
                 finished.cached_tokens, finished.completion_tokens)

    def _answered(self, reply: ReplyRecord, output: str) -> None:
        """The reply's first audio or text is about to go out: how long the user waited for it."""
        if reply.turn_ended_at is not None:
            waited = time.monotonic() - reply.turn_ended_at
            metrics.reply_started(reply.turn_input, output, waited)
            # Where a slow answer's time went: the LLM's share, the rest is recognition and synthesis.
            log.info("first %s %.0f ms after the turn ended (the LLM's first token took %.0f ms)", output,
                     waited * 1000, (reply.first_token_s or 0.0) * 1000)
            reply.turn_ended_at = None  # once per reply, across its tool rounds
        if output == "audio" and reply.timing is not None:
            reply.timing.mark("first_audio")

    async def _reply_text(self, reply: ReplyRecord, text: AsyncIterator[str]) -> None:
        async for delta in text:
            self._answered(reply, "text")
            await self._send(sm.model_turn([sm.text_part(delta)]))
            reply.sent.append(delta)

    async def _reply_audio(self, reply: ReplyRecord, voice: TTSVoice, text: AsyncIterator[str]) -> None:
        """Speak the reply as the LLM writes it: clause by clause, synthesis overlapping generation."""
        # Unbounded on purpose: it holds short strings, at most one per clause of one reply.
        clauses: asyncio.Queue[str | None] = asyncio.Queue()

        def put(clause: str) -> None:
            if reply.timing is not None and "first_clause" not in reply.timing.marks:
                reply.timing.mark("first_clause")
                reply.timing.first_clause_words = len(clause.split())
            clauses.put_nowait(clause)

        async def write() -> None:
            segmenter = ClauseSegmenter(first_min_words=self.speech.first_min_words,
                                        first_max_words=self.speech.first_max_words)
            try:
                async for delta in text:
                    for clause in segmenter.push(delta):
                        put(clause)
                for clause in segmenter.flush():
                    put(clause)
            finally:
                clauses.put_nowait(None)

        writer = asyncio.create_task(write())
        try:
            loop = asyncio.get_running_loop()
            chunk_s = self.speech.chunk_ms / 1000
            assert self.voices is not None
            while (clause := await clauses.get()) is not None:
                with metrics.in_flight("tts"):
                    pcm = await loop.run_in_executor(self.voices.executor, synthesize_24k, voice, clause,
                                                     self.options.language)
                if not pcm:
                    continue
                if self.options.output_transcription:
                    await self._send(sm.output_transcription(clause if not reply.sent else " " + clause))
                reply.sent.append(clause)
                if reply.timing is not None and not reply.timing.first_piece_ms:
                    reply.timing.first_piece_ms = round(len(pcm) / (2 * OUTPUT_RATE) * 1000)
                for piece in pcm_chunks(pcm, OUTPUT_RATE, chunk_s):
                    await self._pace(reply)
                    self._answered(reply, "audio")
                    self._heard(reply, len(piece))
                    await self._send(sm.model_turn([sm.audio_part(piece, OUTPUT_RATE)]))
                    reply.audio_bytes += len(piece)
            await writer  # re-raises an engine failure
        finally:
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if reply.timing is not None and "first_audio" in reply.timing.marks and not reply.timing.logged:
                self._timed_turns += 1
                reply.timing.report(self._timed_turns)  # once its speech is out: with the stalls in it

    @staticmethod
    def _heard(reply: ReplyRecord, size: int) -> None:
        """A listener playing the speech as it comes: the silence it hears inside the reply (a
        piece that came after the one before had finished playing) is counted as a stall."""
        now = time.monotonic()
        if reply.audio_bytes and now > reply.heard_until and reply.timing is not None:
            reply.timing.stall(now - reply.heard_until)
        reply.heard_until = max(reply.heard_until, now) + size / (2 * OUTPUT_RATE)

    async def _pace(self, reply: ReplyRecord) -> None:
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

    def _usage(self, reply: ReplyRecord | None) -> sm.Usage:
        """A turn's usage, whether it ended or was cut (then: what it read and what it sent)."""
        reading = reply.reading if reply is not None and reply.reading is not None else self.conversation.reading_now()
        usage = sm.Usage(prompt=dict(reading.prompt), tool_use=dict(reading.tool_use))
        if reply is None:
            usage.response = {"AUDIO" if self.voice is not None else "TEXT": 0}
        elif self.voice is not None:
            usage.response = {"AUDIO": self._spoken_tokens(reply)}  # what was said, by its length
        elif reply.counted:
            usage.response = {"TEXT": reply.completion_tokens}
        else:  # cut before the LLM finished a round: the text sent so far
            usage.response = {"TEXT": estimate_tokens(self._said(reply))}
        if reply is not None and reply.counted and reply.llm_cached_tokens and reply.llm_prompt_tokens:
            usage.cached = reading.cached(reply.llm_cached_tokens / reply.llm_prompt_tokens)
        return usage


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end. A cancel that something under the task swallowed
    (Python 3.11's `wait_for` did, when what it waited for finished in the same pass) would leave
    the task running on, and the interruption, and with it the session's reader, waiting forever:
    the task is cancelled again until it ends, and the loss is logged."""
    task.cancel()
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=STOP_RECHECK_S)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            return
        log.warning("the reply has not stopped %.0f s after it was cancelled: cancelling it again", STOP_RECHECK_S)
        task.cancel()
