"""Reading ahead with the real embedded LLM: what `warm` read, the next request does not read again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from openlive.engines.llm.base import SPOKEN_GUIDANCE, ChatMessage, ChatRequest, Finished, SamplingParams
from openlive.engines.llm.embedded import EmbeddedLlamaEngine
from openlive.session.context import ContextPolicy, Conversation
from openlive.session.read_ahead import ReadAhead
from tests.support.require import require


def small_model() -> Path:
    from openlive.engines.llm.packaged import resolve_model_file

    try:
        return resolve_model_file("qwen2.5-coder-0.5b", Path.home() / ".openlive", progress=False)
    except Exception as exc:  # the packaged weights are a dependency; without them this cannot run
        require(False, f"packaged qwen2.5-coder-0.5b unavailable: {exc}")
        raise


async def test_a_warmed_opening_is_served_from_the_prompt_cache() -> None:
    path = small_model()
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


async def test_sessions_that_start_at_once_each_find_the_shared_prefix_in_their_slot() -> None:
    # Each parallel slot has its own cache: without priming, only the first slot ever used holds
    # the guidance every session begins with, and the others read it cold.
    engine = EmbeddedLlamaEngine("test", small_model(), n_ctx=3072, n_parallel=3, n_threads=2)
    await engine.start()
    params = SamplingParams(temperature=0.0, max_tokens=2)
    prefix = engine.system_guidance + "\n\n" + SPOKEN_GUIDANCE

    async def finished(request: ChatRequest) -> Finished:
        return [c async for c in engine.stream(request) if isinstance(c, Finished)][-1]

    try:
        await engine.primed()
        shared = await engine.count_tokens(prefix)
        results = await asyncio.gather(*(finished(ChatRequest((
            ChatMessage("system", f"{prefix}\n\nYou are agent {n}, {role}."), ChatMessage("user", question)), params))
            for n, role, question in ((1, "a travel guide", "Where should I go in May?"),
                                      (2, "a cook", "What goes with rice?"),
                                      (3, "a gardener", "When do I plant tulips?"))))
    finally:
        await engine.aclose()
    for result in results:
        assert result.cached_tokens >= shared - 4, (shared, results)


class Reader:
    """An engine that reads ahead (`warm`) and counts words as tokens, remembering what it read."""

    name = "reader"

    def __init__(self) -> None:
        self.read: list[ChatRequest] = []

    async def warm(self, request: ChatRequest) -> None:
        self.read.append(request)

    async def count_tokens(self, text: str) -> int:
        return len(text.split())


async def has_read(llm: Reader, count: int) -> None:
    for _ in range(2000):
        if len(llm.read) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"read {len(llm.read)} times, expected {count}")


async def test_speech_starting_reads_the_conversation_so_far_but_not_over_a_wanted_opening() -> None:

    llm = Reader()
    conversation = Conversation(system_instruction="You are a ship's cook.", tools=None,
                                policy=ContextPolicy.from_setup(None, 4096), modality="AUDIO", language=None)
    conversation.append("user", "What is for dinner?")
    conversation.append("model", "Fish stew.")
    ahead = ReadAhead(llm=llm, conversation=conversation, params=SamplingParams(), busy=lambda: False, min_gap_s=0.0)
    ahead.user_started()
    await has_read(llm, 1)
    assert [m.content for m in llm.read[0].messages[1:]] == ["What is for dinner?", "Fish stew."]
    assert "ship's cook" in llm.read[0].messages[0].content
    ahead.opening("[camera] The frame shows the text: 'GALLEY'.")
    ahead.user_started()  # the opening covers the conversation so far, and more
    await has_read(llm, 2)
    assert llm.read[1].messages[-1].content.startswith("[camera]")
    await ahead.aclose()


async def test_a_window_due_to_slide_slides_when_the_user_starts_and_is_read_ahead_slid() -> None:
    # Sliding at the reply's start changed the prompt's beginning after the user had finished:
    # the LLM then read the whole slid conversation while the user waited (2-3 s in the soak).

    llm = Reader()
    policy = ContextPolicy(window=4000, trigger=200, target=100)
    conversation = Conversation(system_instruction="Be brief.", tools=None, policy=policy, modality="TEXT",
                                language=None)
    for i in range(12):
        conversation.append("user", f"question {i} " + "word " * 10)
        conversation.append("model", f"answer {i} " + "word " * 10)
    ahead = ReadAhead(llm=llm, conversation=conversation, params=SamplingParams(), busy=lambda: False, min_gap_s=0.0)
    ahead.user_started()
    await has_read(llm, 1)
    assert len(conversation.history) < 24  # slid before the user's words arrived
    read = llm.read[0].messages
    assert read[1].content.startswith("question")  # a slid window starts with a user turn
    conversation.append("user", "and now?")
    kept = len(conversation.history)
    await conversation.fit(llm)
    assert len(conversation.history) == kept  # nothing more to slide when the reply starts
    # The reply's request begins with exactly what was read ahead.
    assert conversation.chat_request(SamplingParams()).messages[:len(read)] == read
    await ahead.aclose()
