"""The conversation context: what the model reads on its next turn, and how many tokens that is.

Owns: the system instruction and tools in force, the history (each turn's text and tokens), the
tokens of video frames not yet part of a turn, and the version counter that tells the
checkpoints when anything here changed. Touches: the LLM engine's tokenizer (to count) and the
key's token budget (to charge a turn before it runs); nothing on the wire.

An instruction or tool change that arrives while a reply runs is deferred to the next turn, so a
reply never sees two instructions.

Tokens are counted as the Live API counts them: text by the model's tokenizer, speech (the
user's and the model's own spoken replies) at 25 tokens a second, a video frame at 258 tokens (66
at MEDIA_RESOLUTION_LOW). A turn keeps its frames' tokens (and, for an LLM that sees, the frames
themselves) apart from its words, and its speech and built-in tools' results apart from its
text, so that `reading()` says what a reply reads by modality (usageMetadata, reply.py). Before each turn
runs, a session whose history passed `triggerTokens` first drops the frames of its older turns
(their camera notes, a few words each, stay), then, if that is not enough, its oldest turns,
until it is under `slidingWindow.targetTokens`, always cutting at the start of a user turn. The system instruction
is not history and is never dropped. With no compression configured, a conversation that no
longer fits the model's window ends, as the real service ends it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .. import metrics
from ..engines.llm.base import (CAMERA_GUIDANCE, SPOKEN_GUIDANCE, ChatMessage, ChatRequest, LLMEngine, SamplingParams,
                               ToolCall, count_tokens)
from ..protocol.errors import ProtocolError, invalid_argument
from ..protocol.messages import ContextWindowCompressionConfig, Tool
from .languages import language_instruction
from .tools import ToolSet

log = logging.getLogger(__name__)

# Google's figures. Speech: 25 tokens a second, in and out (the Live API's rate, Vertex AI's
# provisioned-throughput example; generateContent counts uploaded audio at 32). A video frame
# (ai.google.dev/gemini-api/docs/video-understanding, "Token calculation"): 258 tokens, or 66 when
# generationConfig.mediaResolution is MEDIA_RESOLUTION_LOW. (Gemini 3 models count 70 a frame,
# 280 at HIGH, in generateContent; the Live API's own figures for them are not published.)
AUDIO_TOKENS_PER_SECOND = 25
VIDEO_TOKENS_PER_FRAME = 258
LOW_RESOLUTION_FRAME_TOKENS = 66
DEFAULT_TRIGGER_FRACTION = 0.8  # the proto's default trigger: 80% of the model's window


def frame_tokens(media_resolution: str | None) -> int:
    """Tokens of one video frame at the session's generationConfig.mediaResolution."""
    low = (media_resolution or "").upper() == "MEDIA_RESOLUTION_LOW"
    return LOW_RESOLUTION_FRAME_TOKENS if low else VIDEO_TOKENS_PER_FRAME


@dataclass(frozen=True)
class ContextPolicy:
    window: int  # tokens the model can read: past it, an uncompressed session ends
    trigger: int | None  # None: no compression
    target: int

    @classmethod
    def from_setup(cls, config: ContextWindowCompressionConfig | None, window: int) -> "ContextPolicy":
        if config is None:
            return cls(window, None, window)
        trigger = config.trigger_tokens if config.trigger_tokens is not None else int(window * DEFAULT_TRIGGER_FRACTION)
        sliding = config.sliding_window
        target = sliding.target_tokens if sliding and sliding.target_tokens is not None else trigger // 2
        if trigger <= 0 or target < 0:
            raise invalid_argument("Request contains an invalid argument: contextWindowCompression token counts "
                                   "must be positive.")
        if target >= trigger:
            raise invalid_argument("Request contains an invalid argument: slidingWindow.targetTokens must be less "
                                   "than triggerTokens.")
        return cls(window, trigger, target)


def window_exceeded(total: int, window: int) -> ProtocolError:
    # The wording of the service's own "too many tokens" error.
    return invalid_argument(f"The input token count ({total}) exceeds the maximum number of tokens allowed ({window}).")


def turns_to_drop(roles: Sequence[str], tokens: Sequence[int], fixed: int, target: int) -> int:
    """How many of the oldest turns to drop so that `fixed` + the rest is at most `target`.

    The kept history starts with a user turn, and the last user turn (the one about to be answered)
    is never dropped, even when it alone is over the target.
    """
    last_user = max((i for i, role in enumerate(roles) if role == "user"), default=-1)
    if last_user <= 0:
        return 0
    total = fixed + sum(tokens)
    cut = 0
    while cut < last_user and total > target:
        total -= tokens[cut]
        cut += 1
    while cut < last_user and roles[cut] != "user":
        cut += 1  # never start the kept history in the middle of a model turn
    return cut


@dataclass
class Turn:
    role: str  # "user" | "model", as on the wire
    text: str
    tokens: int = 0  # counted so far (speech is counted by its length, text by the tokenizer)
    uncounted: list[str] = field(default_factory=list)  # text not yet through the tokenizer
    media_tokens: int = 0  # video frames that came with this turn (258 each, 66 at low resolution)
    images: list[str] = field(default_factory=list)  # data URLs of its frames, for an LLM that sees
    # Native tool calling (an engine with tool_mode "native") reads these as structured messages;
    # the text keeps each one's line too, for engines that read tools as text:
    calls: list[dict[str, Any]] = field(default_factory=list)  # model: {"id", "name", "args", "line"}
    results: list[dict[str, Any]] = field(default_factory=list)  # user: {"id", "name", "response", "line"}
    # Of `tokens`: speech (AUDIO, counted by its length), and the results of built-in tools (search,
    # code execution) that the model reads as tool use, not prompt; the rest is text.
    audio_tokens: int = 0
    tool_tokens: int = 0
    tool_uncounted: list[str] = field(default_factory=list)  # tool results not yet through the tokenizer

    @property
    def total(self) -> int:
        return self.tokens + self.media_tokens

    @property
    def text_tokens(self) -> int:
        return self.tokens - self.audio_tokens - self.tool_tokens


@dataclass
class Reading:
    """What a reply reads, by modality (Google's names: TEXT, AUDIO, IMAGE), as counted so far."""

    prompt: dict[str, int]
    tool_use: dict[str, int]  # built-in tools' results: toolUsePromptTokenCount, not the prompt
    pieces: list[tuple[str, int]]  # the prompt in the order the model reads it

    def cached(self, fraction: float) -> dict[str, int]:
        """The prompt's first `fraction` by modality: a prompt cache holds a prompt's beginning."""
        left = round(sum(self.prompt.values()) * min(max(fraction, 0.0), 1.0))
        cached: dict[str, int] = {}
        for modality, tokens in self.pieces:
            if left <= 0:
                break
            take = min(tokens, left)
            cached[modality] = cached.get(modality, 0) + take
            left -= take
        return cached


class TokenBudget(Protocol):
    """Tokens a session spends, charged to its API key's per-minute budget."""

    async def admit(self, tokens: int) -> None:
        """Charge a turn's input before it runs; raises ProtocolError when that goes over the budget."""

    async def spend(self, tokens: int) -> None:
        """Charge what a turn produced (never refused: it is already said)."""


class Conversation:
    def __init__(self, *, system_instruction: str, tools: list[Tool] | None, policy: ContextPolicy,
                 modality: str, language: str | None, budget: TokenBudget | None = None, guidance: str = "") -> None:
        self.system_instruction = system_instruction
        self.guidance = guidance  # what the engine's model needs to be told first (see LLMEngine)
        self.tool_decls = tools
        self.tools = ToolSet.from_setup(tools)
        self.policy = policy
        self.modality = modality
        self.language = language
        self.budget = budget
        self.history: list[Turn] = []
        self.version = 0  # bumped by every change a resumption snapshot would hold
        self._media_tokens = 0  # video frames seen since the last user turn
        self.max_images = 2  # frames an LLM that sees gets in one request (the latest)
        self.seen = False  # camera notes are in the history
        self.view = ""  # the latest camera note: what is in view now
        self._counted_system: tuple[str, int] = ("", 0)
        self._deferred: list[Callable[[], None]] = []  # updates waiting for the reply to end

    # ------------------------------------------------------------------ history

    def append(self, role: str, text: str, tokens: int | None = None, *, tool_use: bool = False) -> None:
        """Add to history. `tokens`: this was speech, counted by its length (the user's words as
        heard, the model's as spoken); `tool_use`: the results of a built-in tool (search, code
        execution), which the model reads as tool use."""
        self.version += 1
        counted, uncounted = (tokens, []) if tokens is not None else (0, [text])
        audio = tokens or 0
        tool_uncounted, uncounted = (uncounted, []) if tool_use else ([], uncounted)
        media, self._media_tokens = (self._media_tokens, 0) if role == "user" else (0, self._media_tokens)
        if self.history and self.history[-1].role == role:
            # Consecutive turns of one role read as one turn to chat templates that need alternation.
            last = self.history[-1]
            last.text += "\n" + text
            last.tokens += counted
            last.uncounted += uncounted
            last.media_tokens += media
            last.audio_tokens += audio
            last.tool_uncounted += tool_uncounted
        else:
            self.history.append(Turn(role, text, counted, uncounted, media, audio_tokens=audio,
                                     tool_uncounted=tool_uncounted))

    @contextmanager
    def tentative_user_turn(self, text: str) -> Iterator[None]:
        """The conversation as it would be with the user's `text` appended, for a look without
        awaiting anything (what a reply would read if the turn ended now: early_reply.py). The
        history itself is untouched: a copy stands in for it until the block ends."""
        history = self.history
        last = history[-1] if history else None
        if last is not None and last.role == "user":  # as append() joins them
            self.history = [*history[:-1], replace(last, text=last.text + "\n" + text)]
        else:
            self.history = [*history, Turn("user", text)]
        try:
            yield
        finally:
            self.history = history

    def user_words(self) -> str | None:
        """The user's own words that the next reply answers: the last turn, when it is the user's
        and not a function's result."""
        last = self.history[-1] if self.history else None
        return last.text if last is not None and last.role == "user" and not last.results else None

    def append_calls(self, calls: Sequence[dict[str, Any]]) -> None:
        """The model called functions ({"id", "name", "args"} each): one line of history, and the calls."""
        line = "[called " + "; ".join(f"{c['name']}({json.dumps(c['args'])})" for c in calls) + "]"
        self.append("model", line)
        self.history[-1].calls += [{**c, "line": line} for c in calls]

    def append_result(self, call_id: str, name: str, response: Any, line: str) -> None:
        """A function's result (its response object), said to the model as `line` in text."""
        self.append("user", line)
        self.history[-1].results.append({"id": call_id, "name": name, "response": response, "line": line})

    def add_camera_notes(self, notes: Sequence[str], images: Sequence[str] = ()) -> None:
        """What the camera showed since the last turn, put before the words of the user turn about
        to be answered (or as a user turn of its own): where in the conversation it was seen."""
        text = "\n".join(notes)
        self.seen = self.seen or bool(notes)
        if self.history and self.history[-1].role == "user":
            self.version += 1
            turn = self.history[-1]
            if text:
                turn.text = f"{text}\n{turn.text}"
                turn.uncounted.append(text)
            turn.media_tokens += self._media_tokens
            self._media_tokens = 0
        elif text or images:
            self.append("user", text)
            turn = self.history[-1]
        else:
            return  # nothing to say yet: the frames' tokens wait for the next user turn
        turn.images += images
        if images:
            self._forget_old_images()

    def _forget_old_images(self) -> None:
        """Only the latest frames are ever sent again: older ones are not kept (memory stays bounded)."""
        room = self.max_images
        for turn in reversed(self.history):
            if len(turn.images) > room:
                del turn.images[:len(turn.images) - room]
            room -= len(turn.images)

    def add_media_tokens(self, tokens: int) -> None:
        """Media (video frames) that the next user turn carries into the context."""
        self._media_tokens += tokens

    # ------------------------------------------------------------------ instruction and tools

    def update(self, *, system_instruction: str | None = None, tools: list[Tool] | None = None,
               defer: bool = False) -> None:
        """A new instruction or tool list: now, or (`defer`) when the next turn starts."""
        toolset = ToolSet.from_setup(tools) if tools is not None else None  # a bad declaration fails now

        def apply() -> None:
            if system_instruction is not None:
                self.system_instruction = system_instruction
            if toolset is not None:
                self.tools, self.tool_decls = toolset, tools
            self.version += 1

        if defer:
            self._deferred.append(apply)
        else:
            apply()

    def start_turn(self) -> None:
        """A reply is about to read the context: updates that waited for it take effect."""
        for apply in self._deferred:
            apply()
        self._deferred.clear()

    # ------------------------------------------------------------------ what the model reads

    def system_prompt(self, *, seen: bool | None = None, native_tools: bool = False) -> str:
        # What never changes first (the engine's guidance, how to speak), so sessions share a
        # prompt prefix the LLM server's cache already holds; the language last, where small
        # models heed it ("answer in German" early on made one answer "Berlin" to anything).
        parts = [text for text in (self.guidance, self.system_instruction) if text]
        if (self.seen if seen is None else seen) and CAMERA_GUIDANCE not in self.guidance:
            parts.append(CAMERA_GUIDANCE)  # an engine with no guidance of its own, once there are notes
        if self.modality == "AUDIO":
            parts.insert(1 if self.guidance else 0, SPOKEN_GUIDANCE)
        if self.tools and not native_tools:  # a server calling tools natively says how, from `tools`
            parts.append(self.tools.instructions())
        language = language_instruction(self.language)
        if language:
            parts.append(language)
        return "\n\n".join(parts)

    def chat_request(self, params: SamplingParams, json_schema: dict[str, Any] | None = None, *,
                     notes: str = "", tools: Sequence[dict[str, Any]] = ()) -> ChatRequest:
        """What the LLM reads for the next reply. With `notes`: the conversation as a next user turn
        that begins with these camera notes will look, before its words (read_ahead.py). With
        `tools` (native tool calling): calls and results as the structured messages of the OpenAI
        format, and the model may call these functions."""
        messages: list[ChatMessage] = []
        system = self.system_prompt(seen=True if notes else None, native_tools=bool(tools))
        if system:
            messages.append(ChatMessage("system", system))
        # Frames go only with the latest turns that have them: an LLM that sees reads the view now
        # (and what changed just before), not every frame of the conversation.
        images: dict[int, tuple[str, ...]] = {}
        room = self.max_images
        for index in range(len(self.history) - 1, -1, -1):
            if room <= 0:
                break
            if self.history[index].images:
                images[index] = tuple(self.history[index].images[-room:])
                room -= len(images[index])
        for index, turn in enumerate(self.history):
            if tools and (turn.calls or turn.results):
                messages += _native_messages(turn, images.get(index, ()))
                continue
            messages.append(ChatMessage("assistant" if turn.role == "model" else "user", turn.text,
                                        images.get(index, ())))
        if notes:
            messages.append(ChatMessage("user", notes))
        return ChatRequest(tuple(messages), params, json_schema=json_schema, tools=tuple(tools))

    # ------------------------------------------------------------------ the window

    async def fit(self, llm: LLMEngine) -> None:
        """Count what the next turn will read; slide the window or end the session when it is too long."""
        total = await self._slide(llm)
        if total > self.policy.window:
            raise window_exceeded(total, self.policy.window)
        if self.budget is not None:
            await self.budget.admit(total)

    async def slide_ahead(self, llm: LLMEngine) -> None:
        """Slide the window now, as the user starts a turn, rather than when the reply starts: the
        slid conversation begins differently, so the LLM reads it anew, and it can do that while
        the user speaks (read_ahead.py) instead of after (2-3 s of a long turn's prompt, measured in
        bench/soak.py at every compression). Not while a view must be said again before the turn
        being answered (`_keep_view`): that turn is not there yet."""
        if not self.view:
            await self._slide(llm)

    async def _count(self, llm: LLMEngine) -> int:
        """Put the text not yet counted through the tokenizer; the system prompt's tokens."""
        for turn in self.history:
            while turn.uncounted:
                turn.tokens += await count_tokens(llm, turn.uncounted.pop())
            while turn.tool_uncounted:
                tokens = await count_tokens(llm, turn.tool_uncounted.pop())
                turn.tokens += tokens
                turn.tool_tokens += tokens
        system = self.system_prompt()
        if self._counted_system[0] != system:
            self._counted_system = (system, await count_tokens(llm, system))
        return self._counted_system[1]

    async def reading(self, llm: LLMEngine) -> Reading:
        """What the next model turn reads, all of it counted (a tool's result just added too)."""
        await self._count(llm)
        return self.reading_now()

    def reading_now(self) -> Reading:
        """What the next model turn reads, by modality, as far as it is counted now (no waiting)."""
        pieces: list[tuple[str, int]] = [("TEXT", self._counted_system[1])]
        tool = 0
        for turn in self.history:
            # A user turn's frames and camera notes come before its words.
            pieces += [("IMAGE", turn.media_tokens), ("TEXT", turn.text_tokens), ("AUDIO", turn.audio_tokens)]
            tool += turn.tool_tokens
        prompt: dict[str, int] = {}
        for modality, tokens in pieces:
            prompt[modality] = prompt.get(modality, 0) + tokens
        return Reading({m: n for m, n in prompt.items() if n or m == "TEXT"}, {"TEXT": tool} if tool else {},
                       [p for p in pieces if p[1]])

    async def _slide(self, llm: LLMEngine) -> int:
        """Count the conversation; drop old frames, then old turns, past the trigger; the tokens left."""
        fixed = await self._count(llm)
        total = fixed + sum(t.total for t in self.history)
        policy = self.policy
        if policy.trigger is not None and total > policy.trigger:
            total -= self._drop_old_frames(total - policy.target)
        if policy.trigger is not None and total > policy.trigger:
            cut = turns_to_drop([t.role for t in self.history], [t.total for t in self.history], fixed, policy.target)
            if cut:
                dropped = sum(t.total for t in self.history[:cut])
                del self.history[:cut]
                self.version += 1
                metrics.context_compressed()
                log.info("context window: dropped the %d oldest turns (%d tokens); %d tokens remain",
                         cut, dropped, total - dropped)
                total -= dropped
                total += await self._keep_view(llm)
        return total

    async def _keep_view(self, llm: LLMEngine) -> int:
        """The window dropped the turn that said what is in view while the view stayed the same: say it
        again before the turn being answered, or the model would answer as if it saw nothing."""
        if not self.view or not self.history or self.history[-1].role != "user" \
                or any(self.view in t.text for t in self.history):
            return 0
        turn = self.history[-1]
        tokens = await count_tokens(llm, self.view)
        turn.text = f"{self.view}\n{turn.text}"
        turn.tokens += tokens
        return tokens

    def _drop_old_frames(self, excess: int) -> int:
        """Old frames go before old words: the frames of the oldest turns, until `excess` tokens are
        freed. The last user turn (the one about to be answered) keeps its frames. Returns the tokens freed."""
        last_user = max((i for i, t in enumerate(self.history) if t.role == "user"), default=-1)
        freed = 0
        for turn in self.history[:max(0, last_user)]:
            if freed >= excess:
                break
            if turn.media_tokens or turn.images:
                freed += turn.media_tokens
                turn.media_tokens = 0
                turn.images.clear()
        if freed:
            self.version += 1
            log.info("context window: dropped %d tokens of old video frames", freed)
        return freed

    @property
    def tokens(self) -> int:
        """Tokens of history counted so far (text not yet through the tokenizer is not included)."""
        return self._counted_system[1] + sum(t.total for t in self.history)


# Said after a function's result in text, for models that read tools as text; a native tool
# message needs no such advice.
RESULT_ADVICE = ("Use this result to answer.", "Use these results to answer.")


def _native_messages(turn: Turn, images: tuple[str, ...]) -> list[ChatMessage]:
    """A turn with function calls or results, as native tool calling reads it: the assistant's
    text and its `tool_calls`; then one `tool` message per result, and what else the user said."""
    structured = {c["line"] for c in turn.calls} | {r["line"] for r in turn.results} | set(RESULT_ADVICE)
    rest = "\n".join(line for line in turn.text.split("\n") if line not in structured)
    if turn.role == "model":
        calls = tuple(ToolCall(c["id"], c["name"], c["args"]) for c in turn.calls)
        return [ChatMessage("assistant", rest, images, tool_calls=calls)]
    messages = [ChatMessage("tool", json.dumps(r["response"]), tool_call_id=r["id"]) for r in turn.results]
    if rest.strip() or images:
        messages.append(ChatMessage("user", rest, images))
    return messages
