"""The end-of-turn text model: what it reads, how it scores, and that a real small LLM tells
finished requests from dangling fragments (phrasings of its own, not the benchmark's)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from openlive.engines.turn.text_completion import TextTurnModel, end_probability, words_of
from tests.support.require import require


@pytest.mark.parametrize("transcript, words", [
    (" What time is it?", "What time is it"), ("I would like to know...", "I would like to know"),
    ("Can you tell me,", "Can you tell me"), ("Wie spät ist es？", "Wie spät ist es"), (" . ", ""), ("", ""),
    ("It costs 4.50", "It costs 4.50"),
])
def test_trailing_punctuation_that_recognition_adds_is_removed(transcript: str, words: str) -> None:
    assert words_of(transcript) == words


def test_end_probability_sums_end_of_message_and_final_punctuation() -> None:
    top = [{"token": "?", "logprob": math.log(0.5)}, {"token": "?\n\n", "logprob": math.log(0.1)},
           {"token": "<|im_end|>", "logprob": math.log(0.05)}, {"token": " and", "logprob": math.log(0.3)},
           {"token": "\n", "logprob": math.log(0.02)}, {"token": "", "logprob": math.log(0.01)}]
    assert end_probability(top, "<|im_end|>") == pytest.approx(0.65)
    assert end_probability([{"token": " the", "prob": 0.9}], "<|im_end|>") == 0.0


FINISHED = ["Could you turn the lights off in the kitchen?", "What's the capital of Canada?",
            "I'd like two tickets for the evening show.", "How tall is Mount Everest?",
            "Wake me up at seven tomorrow."]
FRAGMENTS = ["Could you turn the lights off in the", "What's the capital of", "I'd like two tickets for",
             "How tall is", "Wake me up at seven because"]


async def test_a_small_llm_tells_finished_requests_from_fragments() -> None:
    from openlive.engines.llm.packaged import resolve_model_file

    try:
        path = resolve_model_file("qwen2.5-coder-0.5b", Path.home() / ".openlive", progress=False)
    except Exception as exc:  # the packaged weights are a dependency; without them this cannot run
        require(False, f"packaged qwen2.5-coder-0.5b unavailable: {exc}")
    model = TextTurnModel(path, n_threads=2)
    await model.start()
    try:
        scores = {text: await model.probability(text) for text in FINISHED + [f + "..." for f in FRAGMENTS]}
        assert await model.probability(" ... ") is None  # nothing to read: no opinion
    finally:
        await model.aclose()
    threshold = 0.02  # the policy's default text_threshold
    assert all(scores[t] is not None and scores[t] >= threshold for t in FINISHED), scores
    assert all(scores[f + "..."] < threshold for f in FRAGMENTS), scores
