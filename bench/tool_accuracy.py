"""Tool-call accuracy of each packaged model through openlive's JSON router.

A small labelled prompt set: requests that need a tool (with the arguments expected), and ones
that must not call anything. Each packaged model runs in-process (llama.cpp via xllamacpp) with
the same tool declarations and prompts the server uses, at temperature 0.

    .venv/bin/python bench/tool_accuracy.py [--models qwen2.5-coder-0.5b smollm2-135m]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from common import machine, progress, write_result

from openlive.engines.llm.base import ChatMessage, ChatRequest, SamplingParams, TextDelta
from openlive.engines.llm.embedded import EmbeddedLlamaEngine
from openlive.engines.llm.packaged import resolve_model_file
from openlive.protocol.messages import Tool
from openlive.session.tools import RouterStream, ToolSet

TOOLS = [Tool.model_validate({"functionDeclarations": [
    {"name": "get_current_weather", "description": "Get the current weather in a city.",
     "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}, "required": ["location"]}},
    {"name": "set_timer", "description": "Set a countdown timer.",
     "parameters": {"type": "OBJECT", "properties": {"minutes": {"type": "INTEGER"}}, "required": ["minutes"]}},
]})]

# (prompt, expected tool or None, expected arguments: each expected key's value must appear)
CASES = [
    ("What's the weather like in Paris right now?", "get_current_weather", [{"location": "paris"}]),
    ("Is it raining in London?", "get_current_weather", [{"location": "london"}]),
    ("How cold is it in Oslo today?", "get_current_weather", [{"location": "oslo"}]),
    ("What is the weather in Tokyo and in Berlin?", "get_current_weather",
     [{"location": "tokyo"}, {"location": "berlin"}]),
    ("Set a timer for 10 minutes.", "set_timer", [{"minutes": 10}]),
    ("Please start a 5 minute timer.", "set_timer", [{"minutes": 5}]),
    ("Tell me a joke.", None, None),
    ("Who wrote Hamlet?", None, None),
    ("Hi there!", None, None),
    ("What is 2 plus 2?", None, None),
    ("How do I make a cup of tea?", None, None),
    ("Translate 'good morning' into Spanish.", None, None),
]


def args_match(expected: list[dict], got: object) -> bool:
    sets = got if isinstance(got, list) else [got]
    remaining = [dict(s) for s in sets if isinstance(s, dict)]
    for want in expected:
        hit = next((s for s in remaining if all(str(v).lower() in str(s.get(k, "")).lower() for k, v in want.items())),
                   None)
        if hit is None:
            return False
        remaining.remove(hit)
    return True


async def evaluate(model_id: str, data_dir: Path) -> dict:
    engine = EmbeddedLlamaEngine(model_id, resolve_model_file(model_id, data_dir), n_parallel=1, n_ctx=4096)
    await engine.start()
    toolset = ToolSet.from_setup(TOOLS)
    system = "You are a helpful assistant.\n\n" + toolset.instructions()
    rows = []
    try:
        for i, (prompt, tool, args) in enumerate(CASES):
            router = RouterStream()
            start = time.perf_counter()
            request = ChatRequest((ChatMessage("system", system), ChatMessage("user", prompt)),
                                  SamplingParams(temperature=0, max_tokens=160), json_schema=toolset.schema())
            async for chunk in engine.stream(request):
                if isinstance(chunk, TextDelta):
                    router.push(chunk.text)
            decision = router.decision()
            called = decision.tool if decision.tool != "none" else None
            rows.append({"prompt": prompt, "expected": tool, "called": called, "args": decision.args,
                         "tool_right": called == tool,
                         "args_right": tool is None or (called == tool and args_match(args, decision.args)),
                         "seconds": round(time.perf_counter() - start, 2)})
            progress(f"{model_id}: {i + 1}/{len(CASES)}")
    finally:
        await engine.aclose()
    should = [r for r in rows if r["expected"]]
    should_not = [r for r in rows if not r["expected"]]
    return {
        "called_when_it_should": f"{sum(r['called'] == r['expected'] for r in should)}/{len(should)}",
        "not_called_when_it_should_not": f"{sum(r['called'] is None for r in should_not)}/{len(should_not)}",
        "arguments_right": f"{sum(r['args_right'] for r in should)}/{len(should)}",
        "accuracy": round(sum(r["tool_right"] and r["args_right"] for r in rows) / len(rows), 3),
        "cases": rows,
    }


async def run(models: list[str], data_dir: Path) -> dict:
    return {"benchmark": "tool_accuracy", "machine": machine(), "cases": len(CASES),
            "models": {m: await evaluate(m, data_dir) for m in models}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "smollm2-135m"])
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    write_result("tool_accuracy", asyncio.run(run(args.models, args.data_dir.expanduser())), args.out)


if __name__ == "__main__":
    main()
