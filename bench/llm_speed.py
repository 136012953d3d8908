"""The embedded LLM's speed: time to first token and tokens per second, per model and option.

Each variant is an `EmbeddedLlamaEngine` started alone (the others stopped), asked the same
prompts at temperature 0: the 0.5B, the 1.5B, and the 1.5B with the 0.5B drafting for it
(speculative decoding). A second part measures the prompt cache across sessions: a long shared
system prompt (as every session with tools has) is sent in new conversations, and the first
turn of each is compared with a later turn of the same conversation.

    .venv/bin/python bench/llm_speed.py [--samples 6] [--data-dir ~/.openlive]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from common import machine, progress, summary_ms, write_result

from openlive.engines.llm.base import ChatMessage, ChatRequest, Finished, SamplingParams, TextDelta
from openlive.engines.llm.embedded import EmbeddedLlamaEngine
from openlive.engines.llm.packaged import resolve_model_file

PROMPTS = ["Tell me about the history of the bicycle in four sentences.",
           "Explain how a rainbow forms, briefly.",
           "What are three good habits for staying healthy? Answer in full sentences.",
           "Describe the city of Lisbon to a tourist in a few sentences."]
SHARED_SYSTEM = ("You are a helpful voice assistant for a travel company. " * 8
                 + "Answer briefly. You can look up weather, book tables and check train times.")


async def one(engine: EmbeddedLlamaEngine, messages: tuple[ChatMessage, ...], max_tokens: int) -> tuple[float, float, int]:
    """(time to first token, tokens per second after it, tokens)."""
    start = time.perf_counter()
    first = None
    tokens = 0
    async for chunk in engine.stream(ChatRequest(messages, SamplingParams(temperature=0, max_tokens=max_tokens))):
        if isinstance(chunk, TextDelta) and first is None:
            first = time.perf_counter()
        elif isinstance(chunk, Finished):
            tokens = chunk.completion_tokens
    end = time.perf_counter()
    first = first or end
    return first - start, (tokens - 1) / max(end - first, 1e-6), tokens


async def speed(name: str, engine: EmbeddedLlamaEngine, samples: int) -> dict[str, object]:
    await engine.start()
    try:
        ttfts, rates = [], []
        for i in range(samples):
            prompt = PROMPTS[i % len(PROMPTS)]
            messages = (ChatMessage("system", "Answer in plain sentences."), ChatMessage("user", prompt))
            await one(engine, messages, 8)  # prime the prompt cache: TTFT below is a warm one
            ttft, rate, _ = await one(engine, messages, 120)
            ttfts.append(ttft)
            rates.append(rate)
            progress(f"{name}: {i + 1}/{samples} ttft {ttft * 1000:.0f} ms, {rate:.1f} tok/s   ")
        # New conversations that share a long system prompt: first turn vs. the next turn.
        first_turns, later_turns = [], []
        for i in range(samples):
            user = f"Conversation {i}: what is a good day trip from {['Porto', 'Madrid', 'Rome', 'Oslo'][i % 4]}?"
            history = (ChatMessage("system", SHARED_SYSTEM), ChatMessage("user", user))
            ttft, _, _ = await one(engine, history, 24)
            first_turns.append(ttft)
            history += (ChatMessage("assistant", "A day trip is a fine idea."), ChatMessage("user", "And for food?"))
            ttft, _, _ = await one(engine, history, 24)
            later_turns.append(ttft)
        return {"ttft_warm": summary_ms(ttfts), "tokens_per_s_median": round(statistics.median(rates), 2),
                "fresh_conversation_first_turn_ttft": summary_ms(first_turns),
                "fresh_conversation_later_turn_ttft": summary_ms(later_turns),
                "first_to_later_ratio_p50": round(statistics.median(first_turns) / statistics.median(later_turns), 3)}
    finally:
        await engine.aclose()


async def main(args: argparse.Namespace) -> dict[str, object]:
    small = resolve_model_file("qwen2.5-coder-0.5b", args.data_dir)
    large = resolve_model_file("qwen2.5-coder-1.5b", args.data_dir)
    variants = {
        "qwen2.5-coder-0.5b": lambda: EmbeddedLlamaEngine("0.5b", small, n_ctx=8192, n_parallel=1),
        "qwen2.5-coder-1.5b": lambda: EmbeddedLlamaEngine("1.5b", large, n_ctx=8192, n_parallel=1),
        "qwen2.5-coder-1.5b + 0.5b draft": lambda: EmbeddedLlamaEngine("1.5b-spec", large, n_ctx=8192, n_parallel=1,
                                                                       draft_model_path=small),
    }
    results: dict[str, object] = {}
    for name, make in variants.items():
        if args.only and args.only not in name:
            continue
        results[name] = await speed(name, make(), args.samples)
        print(file=sys.stderr)
    return {"benchmark": "llm_speed", "machine": machine(), "samples": args.samples, "variants": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--only", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.data_dir = args.data_dir.expanduser()
    write_result("llm_speed", asyncio.run(main(args)), args.out)
