"""Reading ahead with the real embedded LLM: what `warm` read, the next request does not read again."""

from __future__ import annotations

from pathlib import Path

from openlive.engines.llm.base import ChatMessage, ChatRequest, Finished, SamplingParams
from openlive.engines.llm.embedded import EmbeddedLlamaEngine
from tests.support.require import require


async def test_a_warmed_opening_is_served_from_the_prompt_cache() -> None:
    from openlive.engines.llm.packaged import resolve_model_file

    try:
        path = resolve_model_file("qwen2.5-coder-0.5b", Path.home() / ".openlive", progress=False)
    except Exception as exc:  # the packaged weights are a dependency; without them this cannot run
        require(False, f"packaged qwen2.5-coder-0.5b unavailable: {exc}")
    engine = EmbeddedLlamaEngine("test", path, n_ctx=2048, n_parallel=2, n_threads=2)
    await engine.start()
    params = SamplingParams(temperature=0.0, max_tokens=4)
    system = ChatMessage("system", "You are a helpful assistant. " * 20)
    note = "[camera] The frame shows the text: 'PLATFORM 9, TRAINS TO OXFORD AND READING'. No face is in view."
    try:
        await engine.warm(ChatRequest((system, ChatMessage("user", note)), params))
        chunks = [c async for c in engine.stream(ChatRequest(
            (system, ChatMessage("user", note + "\nWhere do the trains go?")), params))]
    finally:
        await engine.aclose()
    finished = [c for c in chunks if isinstance(c, Finished)][-1]
    # Everything up to the note's end came from the cache: only the question was read anew.
    opening_tokens = finished.prompt_tokens - 12
    assert finished.cached_tokens >= opening_tokens, finished
