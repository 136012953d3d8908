"""The small interface every chat LLM engine implements.

An engine turns a conversation (OpenAI-style chat messages, the lingua franca of open model
servers) into a stream of text deltas and a final usage count. Cancelling the consumer's task
must stop generation promptly: that is how barge-in and interruption reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable


# How an LLM that reads no images learns what the user shows: the session's camera notes.
CAMERA_GUIDANCE = ("Lines that start with [camera] describe what the user's camera shows right now; you can see "
                   "it through them: answer questions about what is in view from them.")


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[str, ...] = ()  # data URLs (image/jpeg), for an LLM that sees; after the text


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


ChatChunk = TextDelta | Finished


class EngineError(RuntimeError):
    """The engine failed in a way the session reports as an internal error (1011)."""


@runtime_checkable
class LLMEngine(Protocol):
    name: str
    # Optional `system_guidance: str`: what this engine's model must be told before the client's
    # instruction (small embedded models need it; a session reads it with getattr, default "").
    # Optional `async warm(request)`: read a request into the server's prompt cache ahead of time
    # (session/read_ahead.py); an engine without it simply reads everything when asked.

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
