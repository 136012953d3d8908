"""Time to the first server message of a reply: text mode, audio mode, and after a tool result,
with the machine idle and beside a CPU-bound neighbour (issue 14, acceptance 3).

Frameworks give a reply a deadline to show its first message: LiveKit Agents' `generate_reply`
waits 5 s for the first model turn, transcription or tool call, and again after a tool result.
One `openlive serve` on its embedded defaults, driven by the unmodified google-genai SDK; each
sample is a fresh session (a weather tool declared, as voice agents keep their tools all session):

- text: a TEXT session, a question in `clientContent`; the clock runs from the send to the first
  `modelTurn` (or `toolCall`).
- audio: the same in an AUDIO session; the first `modelTurn` or `outputTranscription`.
- tool_result: an AUDIO session asks for the weather; the clock runs from sending the
  `toolResponse` to the first message of the reply that uses it.
- tool_call: a TEXT session with the tools declared as each framework declares them (LiveKit's
  `function_tool`, Pipecat's `FunctionSchema`, ADK's `FunctionTool`: several functions, long
  descriptions) gets an indirect weather question (none from tool_accuracy.py's labelled set);
  the clock runs from the send to the first `toolCall` or `modelTurn`, and the row says whether
  the weather function was called (`called_right`: at least 90% is the target).

Sessions are opened as an agent opens them, before anyone speaks: the question follows setup by
`--after-setup-s` (2 s by default), the time a session's own instruction and tools have to be
read ahead (the shared guidance is cached at start-up). Each framework's schema is read once,
unmeasured, before the samples (llama.cpp's slots keep it), as an agent's first session does;
"cold" reports that first session's time separately: a question sent the instant a never-seen
agent connects waits for its whole prompt to be read.

"loaded" repeats every sample beside a neighbour that keeps both cores busy (one spinning Python
process per core, at normal priority), as a CI job or another service on the same box would.

    .venv/bin/python bench/first_message.py [--samples 10] [--loads idle,loaded] [--after-setup-s 2]
                                            [--modes text,audio,tool_result,tool_call]
                                            [--out FILE] [--data-dir ~/.openlive]

Targets: p90 under 1.5 s idle and under 5 s loaded, in every mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import machine, progress, start_openlive, stop, summary_ms, write_result
from conversation import LIVE_MODEL, weather_result, weather_tool

TARGET_P90_S = {"idle": 1.5, "loaded": 5.0}
QUESTIONS = ["What is the capital of Japan?", "Give me one tip for sleeping well.", "How many minutes are in an hour?",
             "Name a fruit that is yellow.", "What colour is the sky on a clear day?"]
WEATHER = ["What's the weather in Lyon?", "How warm is it in Bergen today?", "Is it raining in Bilbao?",
           "What's the forecast for Turin?", "Is it windy in Dublin right now?"]
MODES = ("text", "audio", "tool_result", "tool_call")
# Indirect questions whose answer depends on the weather (none is in tool_accuracy.py's set).
INDIRECT_WEATHER = ["Is it raining in Seville at the moment?", "Should I bring a jacket to Prague tonight?",
                    "Do I need sunglasses in Nairobi today?", "Will I need an umbrella in Glasgow this afternoon?",
                    "Is it a good day for a picnic in Krakow?", "Can I go for a bike ride in Utrecht right now, "
                    "or is it too windy?", "Should I wear shorts in Athens today?", "Is it cold enough for a "
                    "coat in Montreal?", "Are the roads icy in Helsinki this morning?", "Would a walk on the beach "
                    "in Nice be pleasant now?", "Is it sunny in Porto?", "Do I need gloves in Minsk today?"]


def framework_tools() -> dict[str, Any]:
    """Each framework's own way of declaring the same three functions, as it reaches the wire."""
    from google.genai import types

    weather_doc = ("Get the current weather for a location: temperature, conditions, wind and the chance of "
                   "rain. Use this for any question whose answer depends on the weather where the user is or "
                   "is going.")
    timer_doc = "Set a countdown timer that alerts the user when it runs out. Use for reminders after some time."
    order_doc = ("Look up a customer's order by its order number and return its status, the carrier, the "
                 "tracking number and the expected delivery date.")
    s = types.Schema
    return {
        # LiveKit: @function_tool on a method; its docstring's Args become descriptions, sent as
        # parameters_json_schema (JSON Schema, lower-case types, titles).
        "livekit": types.Tool(function_declarations=[
            types.FunctionDeclaration(name="get_current_weather", description=weather_doc, parameters_json_schema={
                "type": "object", "properties": {"location": {"type": "string", "title": "Location",
                                                              "description": "The city, e.g. Paris or Tokyo"}},
                "required": ["location"]}),
            types.FunctionDeclaration(name="set_timer", description=timer_doc, parameters_json_schema={
                "type": "object", "properties": {"minutes": {"type": "integer", "title": "Minutes",
                                                             "description": "Minutes until the alert"}},
                "required": ["minutes"]}),
            types.FunctionDeclaration(name="lookup_order", description=order_doc, parameters_json_schema={
                "type": "object", "properties": {"order_id": {"type": "string", "title": "Order Id",
                                                              "description": "The order number"}},
                "required": ["order_id"]})]),
        # Pipecat: FunctionSchema → an OpenAPI Schema with an enum for the unit.
        "pipecat": types.Tool(function_declarations=[
            types.FunctionDeclaration(name="get_current_weather", description=weather_doc, parameters=s(
                type="OBJECT", properties={
                    "location": s(type="STRING", description="The city and state, e.g. San Francisco, CA"),
                    "format": s(type="STRING", enum=["celsius", "fahrenheit"],
                                description="The temperature unit to use. Infer this from the user's location.")},
                required=["location", "format"])),
            types.FunctionDeclaration(name="set_timer", description=timer_doc, parameters=s(
                type="OBJECT", properties={"minutes": s(type="INTEGER", description="Minutes until the alert")},
                required=["minutes"])),
            types.FunctionDeclaration(name="lookup_order", description=order_doc, parameters=s(
                type="OBJECT", properties={"order_id": s(type="STRING", description="The order number")},
                required=["order_id"]))]),
        # ADK: FunctionTool from a plain function; its whole docstring is the description.
        "adk": types.Tool(function_declarations=[
            types.FunctionDeclaration(name="get_weather", description=(
                "Retrieves the current weather report for a specified city.\n\nArgs:\n    city (str): The name "
                "of the city for which to retrieve the weather report.\n\nReturns:\n    dict: status and "
                "result or error msg."), parameters=s(type="OBJECT", properties={"city": s(type="STRING")},
                                                     required=["city"])),
            types.FunctionDeclaration(name="get_current_time", description=(
                "Returns the current time in a specified city.\n\nArgs:\n    city (str): The name of the "
                "city for which to retrieve the current time.\n\nReturns:\n    dict: status and result or "
                "error msg."), parameters=s(type="OBJECT", properties={"city": s(type="STRING")},
                                           required=["city"]))]),
    }


WEATHER_FUNCTIONS = {"get_current_weather", "get_weather"}


async def first_message(base: str, mode: str, question: str, timeout: float, *, framework: str = "",
                        after_setup_s: float = 0.0) -> dict[str, Any]:
    """One fresh session, one measured reply; the time from the request to its first message."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    modality = "TEXT" if mode in ("text", "tool_call") else "AUDIO"
    tool = framework_tools()[framework] if framework else weather_tool()
    config = types.LiveConnectConfig(response_modalities=[modality], temperature=0, tools=[tool],
                                     system_instruction="You are a helpful voice assistant." if framework else None,
                                     output_audio_transcription=types.AudioTranscriptionConfig()
                                     if modality == "AUDIO" else None)
    row: dict[str, Any] = {"mode": mode, "question": question, **({"framework": framework} if framework else {})}
    async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
        await asyncio.sleep(after_setup_s)
        sent = time.monotonic()
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=question)]))
        waiting_for_tool = mode == "tool_result"
        first: float | None = None
        async with asyncio.timeout(timeout):
            while True:
                async for message in session.receive():  # ends at each turnComplete
                    content = message.server_content
                    if waiting_for_tool:
                        if message.tool_call and message.tool_call.function_calls:
                            calls = message.tool_call.function_calls
                            row["call"] = {"name": calls[0].name, "args": calls[0].args}
                            sent = time.monotonic()
                            await session.send_tool_response(function_responses=[types.FunctionResponse(
                                id=c.id, name=c.name, response=weather_result(c.args or {})) for c in calls])
                            waiting_for_tool = False
                        elif content and content.turn_complete:
                            row["error"] = "no tool call"
                            return row
                        continue
                    shown = bool(message.tool_call) or bool(content and (
                        (content.model_turn and content.model_turn.parts) or content.output_transcription))
                    if first is None and shown:
                        first = time.monotonic()
                        row["seconds"] = round(first - sent, 4)
                        if mode == "tool_call":
                            names = [c.name for c in message.tool_call.function_calls] if message.tool_call else []
                            row["called"] = names
                            row["called_right"] = bool(set(names) & WEATHER_FUNCTIONS)
                            return row
                    if content and content.turn_complete:
                        if first is None and mode == "tool_result":
                            continue  # a 2.x model ends its turn with the toolCall; the answer is the next
                        return row


class Neighbour:
    """Processes that keep every core busy until stopped."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Neighbour":
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                          for _ in range(os.cpu_count() or 2)]
        return self

    def __exit__(self, *_: object) -> None:
        stop(*self.processes)


async def run(samples: int, data_dir: Path, timeout: float, loads: list[str], after_setup_s: float,
              modes_run: tuple[str, ...] = MODES) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "first_message", "machine": machine(), "samples": samples,
                              "targets_p90_s": TARGET_P90_S}
    process, base = start_openlive(data_dir)
    try:
        await first_message(base, "audio", QUESTIONS[0], timeout)  # warm-up, unmeasured
        cold: dict[str, Any] = {}
        for framework in framework_tools():  # each agent's first session: its prompt is read once
            cold[framework] = await first_message(base, "tool_call", INDIRECT_WEATHER[0], timeout,
                                                  framework=framework)
        result["cold_first_session"] = cold
        for load in loads:
            rows: list[dict[str, Any]] = []
            with Neighbour() if load == "loaded" else contextlib.nullcontext():
                load_start = os.getloadavg()
                for n in range(samples):
                    for mode in modes_run:
                        kinds = list(framework_tools()) if mode == "tool_call" else [""]
                        for framework in kinds:
                            pool = {"tool_result": WEATHER, "tool_call": INDIRECT_WEATHER}.get(mode, QUESTIONS)
                            try:
                                row = await first_message(base, mode, pool[n % len(pool)], timeout,
                                                          framework=framework, after_setup_s=after_setup_s)
                            except Exception as exc:  # noqa: BLE001 - a failed sample is reported
                                row = {"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:200]}
                            rows.append(row)
                            progress(f"first message, {load}: sample {n + 1}/{samples} {mode} {framework} "
                                     f"{row.get('seconds', row.get('error'))}          ")
                load_end = os.getloadavg()
            modes: dict[str, Any] = {}
            for mode in modes_run:
                mine = [r for r in rows if r["mode"] == mode]
                seconds = [r["seconds"] for r in mine if "seconds" in r]
                stats: dict[str, Any] = summary_ms(seconds) if seconds else {"n": 0}
                stats["failed"] = len(mine) - len(seconds)
                stats["meets_target"] = bool(seconds) and not stats["failed"] and \
                    stats["p90_ms"] < TARGET_P90_S[load] * 1000
                if mode == "tool_call":
                    for framework in framework_tools():
                        theirs = [r for r in mine if r.get("framework") == framework and "seconds" in r]
                        stats[framework] = {**summary_ms([r["seconds"] for r in theirs]), "called_right": round(
                            sum(r["called_right"] for r in theirs) / len(theirs), 3)} if theirs else {"n": 0}
                    right = [r["called_right"] for r in mine if "seconds" in r]
                    stats["called_right"] = round(sum(right) / len(right), 3) if right else 0.0
                    stats["meets_target"] = stats["meets_target"] and stats["called_right"] >= 0.9
                modes[mode] = stats
            result[load] = {"load_average_start": [round(x, 2) for x in load_start],
                            "load_average_end": [round(x, 2) for x in load_end], "modes": modes, "rows": rows}
    finally:
        stop(process)
    result["meets_targets"] = all(result[load]["modes"][m]["meets_target"] for load in loads for m in modes_run)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="replies per mode and load")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--loads", default="idle,loaded", help="comma-separated: idle,loaded")
    parser.add_argument("--after-setup-s", type=float, default=2.0,
                        help="how long after setup each question is sent (an agent connects before the user speaks)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ",".join(MODES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    if not modes or set(modes) - set(MODES):
        parser.error("--modes takes " + ", ".join(MODES))
    loads = [x for x in args.loads.split(",") if x]
    if not loads or set(loads) - set(TARGET_P90_S):
        parser.error("--loads takes idle and/or loaded")
    result = asyncio.run(run(args.samples, args.data_dir.expanduser(), args.timeout, loads, args.after_setup_s,
                             modes))
    write_result("first_message", result, args.out)


if __name__ == "__main__":
    main()
