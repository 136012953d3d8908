"""Tool decisions on questions that need a tool but do not name it, per framework tool schema.

The decision path is the server's own: the embedded default model in-process, the system prompt a
session with tools builds (the engine's guidance, an instruction, the tool list and rules), and
`EmbeddedLlamaEngine.stream` with the tool turn schema and the user's words, so the first name
token, the judge (engines/llm/tool_turns.py) and the name are what a session would get.

Two sets, kept apart: TUNING (tool questions asked indirectly, for weather, timers and orders, and
questions that need no tool, some about the weather's subject matter) chose tool_turns.py's
weights; HELD_OUT (bench/first_message.py's INDIRECT_WEATHER, never tuned on) is what is reported
against the target: the tool called on >= 90% of them. Each framework's own declarations
(bench/first_message.py's `framework_tools`): LiveKit's, Pipecat's and ADK's. ADK's two functions
are weather and time, so its tuning positives are the weather ones only.

    .venv/bin/python bench/tool_decision.py [--frameworks livekit pipecat adk] [--no-judge]

`--no-judge` takes the model's first token alone (the judge band emptied), for the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from common import machine, progress, write_result
from first_message import INDIRECT_WEATHER, WEATHER_FUNCTIONS, framework_tools

from openlive.engines.llm import tool_turns
from openlive.engines.llm.base import ChatMessage, ChatRequest, SamplingParams, TextDelta
from openlive.engines.llm.embedded import GUIDANCE, EmbeddedLlamaEngine
from openlive.engines.llm.packaged import DEFAULT_MODEL_ID, resolve_model_file
from openlive.protocol.messages import Tool
from openlive.session.tools import RouterStream, ToolSet

INSTRUCTION = "You are a helpful voice assistant."

# (question, the function family it needs: "weather", "timer", "order")
TUNING_TOOL = [
    ("Should I take an umbrella to work in Dublin?", "weather"), ("Is it beach weather in Valencia today?", "weather"),
    ("Do I need a scarf in Vienna this evening?", "weather"),
    ("Can we have a barbecue in Leeds this afternoon?", "weather"),
    ("Is it warm enough to swim in Malaga?", "weather"),
    ("Should I cycle to work in Bristol today or take the bus?", "weather"),
    ("What should I wear in Stockholm today?", "weather"), ("Remind me in 20 minutes to check the oven.", "timer"),
    ("The eggs need 7 minutes, can you keep track of that?", "timer"),
    ("Let me know when 15 minutes have passed.", "timer"), ("Where is my package? The number is A1234.", "order"),
    ("Has order B5521 shipped yet?", "order"), ("When will my parcel C777 arrive?", "order"),
    ("Should I bring a jacket to Prague today?", "weather"), ("Do I need an umbrella in Munich tomorrow?", "weather"),
]
TUNING_NO_TOOL = [
    "What should I wear to a job interview?", "What is the difference between weather and climate?",
    "Why is the sky blue?", "How do clouds form?", "Can you recommend a film for tonight?",
    "What's a good recipe for pancakes?", "Tell me about the history of Rome.", "How far is the moon?",
    "What rhymes with rain?", "Write a short poem about snow.", "What do you think about rainy days?",
    "How do I cook rice?", "How long should I boil an egg?", "What is a good gift for my mother?",
    "Why do we have seasons?", "How do I pack for a long trip?", "What is the capital of France?",
    "Tell me a joke.", "How many days are in a week?", "How do you say thank you in German?", "Who wrote Hamlet?",
    "Can you recommend a good book for a long flight?", "Give me a good name for a black cat.",
    "Hello! How are you today?", "Hi there!", "What is 2 plus 2?", "How do I make a cup of tea?",
    "Translate 'good morning' into Spanish.",
]
FAMILY = {"get_current_weather": "weather", "get_weather": "weather", "set_timer": "timer", "lookup_order": "order"}


async def decide(engine: EmbeddedLlamaEngine, toolset: ToolSet, system: str, question: str) -> tuple[str, float]:
    request = ChatRequest((ChatMessage("system", system), ChatMessage("user", question)),
                          SamplingParams(temperature=0, max_tokens=60), json_schema=toolset.schema(),
                          user_words=question)
    router = RouterStream()
    start = time.perf_counter()
    async for chunk in engine.stream(request):
        if isinstance(chunk, TextDelta):
            router.push(chunk.text)
            if router.call_complete:
                break
    return router.decision().tool, time.perf_counter() - start


async def evaluate(engine: EmbeddedLlamaEngine, framework: str) -> dict[str, Any]:
    wire = framework_tools()[framework].model_dump(by_alias=True, exclude_none=True, mode="json")
    toolset = ToolSet.from_setup([Tool.model_validate(wire)])
    system = "\n\n".join((GUIDANCE, INSTRUCTION, toolset.instructions()))
    families = {FAMILY.get(name) for name in toolset.functions}
    sets = {
        "tuning_tool": [(q, f) for q, f in TUNING_TOOL if f in families],
        "tuning_no_tool": [(q, None) for q in TUNING_NO_TOOL],
        "held_out_indirect_weather": [(q, "weather") for q in INDIRECT_WEATHER],
    }
    report: dict[str, Any] = {}
    for name, items in sets.items():
        rows = []
        for i, (question, family) in enumerate(items):
            called, seconds = await decide(engine, toolset, system, question)
            right = (FAMILY.get(called) == family) if family else called == "none"
            rows.append({"question": question, "called": called, "right": right, "seconds": round(seconds, 2)})
            progress(f"{framework} {name}: {i + 1}/{len(items)}          ")
        report[name] = {"right": f"{sum(r['right'] for r in rows)}/{len(rows)}",
                        "share": round(sum(r["right"] for r in rows) / len(rows), 3), "rows": rows}
    assert WEATHER_FUNCTIONS & set(toolset.functions)
    return report


async def run(frameworks: list[str], data_dir: Path, judge: bool) -> dict[str, Any]:
    if not judge:
        tool_turns.JUDGE_BAND = (1.0, 0.0)  # an empty band: the first token decides alone
    engine = EmbeddedLlamaEngine(DEFAULT_MODEL_ID, resolve_model_file(DEFAULT_MODEL_ID, data_dir), n_parallel=2,
                                 n_ctx=8192)
    await engine.start()
    load_start = os.getloadavg()
    try:
        results = {f: await evaluate(engine, f) for f in frameworks}
    finally:
        await engine.aclose()
    held = [r for f in results.values() for r in f["held_out_indirect_weather"]["rows"]]
    return {"benchmark": "tool_decision", "machine": machine(), "model": DEFAULT_MODEL_ID, "judge": judge,
            "weights": {"band": list(tool_turns.JUDGE_BAND), "weight": tool_turns.JUDGE_WEIGHT,
                        "threshold": tool_turns.JUDGE_THRESHOLD},
            "load_start": load_start, "load_end": os.getloadavg(),
            "held_out_called": f"{sum(r['right'] for r in held)}/{len(held)}",
            "target_held_out": 0.9, "frameworks": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["livekit", "pipecat", "adk"])
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--no-judge", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.frameworks, args.data_dir.expanduser(), not args.no_judge))
    for framework, report in result["frameworks"].items():
        print(framework, {k: v["right"] for k, v in report.items()})
    write_result("tool_decision", result, args.out)


if __name__ == "__main__":
    main()
