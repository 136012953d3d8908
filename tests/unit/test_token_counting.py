"""One request's failed token count stays that request's (issue 13: bad input never changes shared state).

A session that sent text the engine's tokenizer refuses made `/tokenize` fail once; the engine then
stopped asking for good, and every later session was counted at four characters a token (a
2,500-token prompt refused as 7,502). Only a server without the endpoint turns counting off."""

from __future__ import annotations

import json

import httpx
import pytest

from openlive.engines.llm.base import estimate_tokens
from openlive.engines.llm.openai_compat import OpenAICompatEngine


def engine_answering(status_for: dict[str, int]) -> tuple[OpenAICompatEngine, list[str]]:
    """An engine whose server counts one token per word, or answers `status_for[text]`."""
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["content"]
        asked.append(text)
        if text in status_for:
            return httpx.Response(status_for[text], json={"error": "no"})
        return httpx.Response(200, json={"tokens": list(range(len(text.split())))})

    engine = OpenAICompatEngine("remote", "http://engine.invalid/v1")
    engine._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return engine, asked


async def test_a_text_the_tokenizer_refuses_is_estimated_and_later_counts_still_ask() -> None:
    hostile = "bad \ud800 text"
    engine, asked = engine_answering({"refused": 500})
    assert await engine.count_tokens("refused") == estimate_tokens("refused")
    assert await engine.count_tokens("one two three") == 3
    assert await engine.count_tokens(hostile) == estimate_tokens(hostile)
    long = " ".join(["word"] * 2500)
    assert await engine.count_tokens(long) == 2500  # the tokenizer's count, not 4 characters a token
    assert asked == ["refused", "one two three", long]  # the lone surrogate cannot even be sent as UTF-8


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_a_server_without_tokenize_is_asked_once(status: int) -> None:
    engine, asked = engine_answering({"one two": status})
    assert await engine.count_tokens("one two") == estimate_tokens("one two")
    assert await engine.count_tokens("three four five") == estimate_tokens("three four five")
    assert asked == ["one two"]
