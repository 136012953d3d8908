"""The small interface every chat LLM engine implements.

An engine turns a conversation (OpenAI-style chat messages, the lingua franca of open model
servers) into a stream of text deltas and a final usage count. Cancelling the consumer's task
must stop generation promptly: that is how barge-in and interruption reach the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Protocol, runtime_checkable


# How an LLM that reads no images learns what the user shows: the session's camera notes.
CAMERA_GUIDANCE = ("Lines that start with [camera] describe what the user's camera shows right now; you can see "
                   "it through them: answer questions about what is in view from them.")

# How a session that answers in speech asks for speakable text; it follows the engine's guidance in
# the system prompt, so voice sessions share that prefix (and an engine may read it ahead).
SPOKEN_GUIDANCE = "Your answers are spoken aloud: use short plain sentences, with no markdown, lists, code or emoji."


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made (native tool calling): its id, name and arguments."""

    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool" (a function's result, native tool calling)
    content: str
    images: tuple[str, ...] = ()  # data URLs (image/jpeg), for an LLM that sees; after the text
    tool_calls: tuple[ToolCall, ...] = ()  # assistant: the calls it made
    tool_call_id: str | None = None  # tool: the call this is the result of


@dataclass(frozen=True)
class SamplingParams:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    # When set, the reply must be JSON matching this schema (the runtime's grammar enforces it).
    json_schema: dict[str, Any] | None = None
    # Native tool calling: OpenAI `tools` (function definitions) the model may call, and
    # `tool_choice` ("none": described, but not to be called now).
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | None = None
    # The user's own words this model turn answers (None when it answers a tool's result, or has
    # no tools): an engine may check its tool decision against them (tool_turns.py's judge).
    user_words: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    """Always the last item of a stream that ran to its end."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCallsMade:
    """Native tool calling: the calls the model made in this turn, once their arguments are complete."""

    calls: tuple[ToolCall, ...]


ChatChunk = TextDelta | ToolCallsMade | Finished


class EngineError(RuntimeError):
    """The engine failed in a way the session reports as an internal error (1011)."""


@runtime_checkable
class LLMEngine(Protocol):
    name: str
    # Optional `system_guidance: str`: what this engine's model must be told before the client's
    # instruction (small embedded models need it; a session reads it with getattr, default "").
    # Optional `tool_mode: str`: "native" when the server calls tools itself (`ChatRequest.tools`,
    # `ToolCallsMade`); otherwise the session asks for JSON that names the tool ("grammar").
    # Optional `async warm(request)`: read a request into the server's prompt cache ahead of time
    # (session/read_ahead.py); an engine without it simply reads everything when asked.
    # Optional `async warm_tool_judges(request)`: read ahead what deciding on the request's tools
    # may take besides the conversation (the embedded engine's tool judge, tool_turns.py).
    # Optional `async yes_probability(request) -> float | None`: P("yes") for a request whose answer
    # is yes or no, from the first token's log-probs (session/proactivity.py); `yes_probability()`
    # below asks any other engine for the word itself.

    async def start(self) -> None:
        """Load weights or check the remote server; called once before the first request."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Generate a reply; the iterator ends with one `Finished`."""

    async def aclose(self) -> None:
        """Release everything the engine holds."""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token) for engines that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


async def count_tokens(engine: LLMEngine, text: str) -> int:
    """Tokens of `text` by the engine's own tokenizer when it has one (`count_tokens`), else estimated."""
    counter = getattr(engine, "count_tokens", None)
    if counter is None:
        return estimate_tokens(text)
    return int(await counter(text))


# What an engine without `yes_probability` is asked to write: one of two JSON strings.
YES_NO_SCHEMA: dict[str, Any] = {"type": "string", "enum": ["yes", "no"]}


def yes_no_share(top: list[tuple[str, float]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from a first token's top (token, logprob) pairs; "Yes", " no" and
    the like count; None when neither word is among them."""
    yes = no = 0.0
    for token, logprob in top:
        word = token.strip().strip('"').lower()
        if word == "yes":
            yes += math.exp(logprob)
        elif word == "no":
            no += math.exp(logprob)
    return yes / (yes + no) if yes + no > 0 else None


def yes_or_no(text: str) -> float | None:
    """1.0 or 0.0 for an answer that is the word yes or no (as JSON or plain, any case); else None."""
    word = text.strip().strip('"').strip().rstrip(".!").lower()
    return 1.0 if word == "yes" else 0.0 if word == "no" else None


async def yes_probability(engine: LLMEngine, request: ChatRequest) -> float | None:
    """P("yes") for a yes/no question: the engine's own `yes_probability` when it has one, else the
    answer it writes under YES_NO_SCHEMA (1.0 or 0.0); None when it gives neither."""
    own = getattr(engine, "yes_probability", None)
    if own is not None:
        return await own(request)
    # The JSON string is a few tokens ('"', 'yes', '"'): room for them whatever the request allowed.
    asked = replace(request, json_schema=YES_NO_SCHEMA, params=replace(request.params, max_tokens=4))
    text = ""
    async for chunk in engine.stream(asked):
        if isinstance(chunk, TextDelta):
            text += chunk.text
    return yes_or_no(text)
