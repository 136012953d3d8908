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

"loaded" repeats every sample beside a neighbour that keeps both cores busy (one spinning Python
process per core, at normal priority), as a CI job or another service on the same box would.

    .venv/bin/python bench/first_message.py [--samples 10] [--loads idle,loaded] [--out FILE] [--data-dir ~/.openlive]

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
MODES = ("text", "audio", "tool_result")


async def first_message(base: str, mode: str, question: str, timeout: float) -> dict[str, Any]:
    """One fresh session, one measured reply; the time from the request to its first message."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    modality = "TEXT" if mode == "text" else "AUDIO"
    config = types.LiveConnectConfig(response_modalities=[modality], temperature=0, tools=[weather_tool()],
                                     output_audio_transcription=types.AudioTranscriptionConfig()
                                     if modality == "AUDIO" else None)
    row: dict[str, Any] = {"mode": mode, "question": question}
    async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
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
                    if content and content.turn_complete:
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


async def run(samples: int, data_dir: Path, timeout: float, loads: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "first_message", "machine": machine(), "samples": samples,
                              "targets_p90_s": TARGET_P90_S}
    process, base = start_openlive(data_dir)
    try:
        await first_message(base, "audio", QUESTIONS[0], timeout)  # warm-up, unmeasured
        for load in loads:
            rows: list[dict[str, Any]] = []
            with Neighbour() if load == "loaded" else contextlib.nullcontext():
                load_start = os.getloadavg()
                for n in range(samples):
                    for mode in MODES:
                        pool = WEATHER if mode == "tool_result" else QUESTIONS
                        try:
                            row = await first_message(base, mode, pool[n % len(pool)], timeout)
                        except Exception as exc:  # noqa: BLE001 - a failed sample is reported
                            row = {"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:200]}
                        rows.append(row)
                        progress(f"first message, {load}: sample {n + 1}/{samples} {mode} "
                                 f"{row.get('seconds', row.get('error'))}          ")
                load_end = os.getloadavg()
            modes: dict[str, Any] = {}
            for mode in MODES:
                mine = [r for r in rows if r["mode"] == mode]
                seconds = [r["seconds"] for r in mine if "seconds" in r]
                stats: dict[str, Any] = summary_ms(seconds) if seconds else {"n": 0}
                stats["failed"] = len(mine) - len(seconds)
                stats["meets_target"] = bool(seconds) and not stats["failed"] and \
                    stats["p90_ms"] < TARGET_P90_S[load] * 1000
                modes[mode] = stats
            result[load] = {"load_average_start": [round(x, 2) for x in load_start],
                            "load_average_end": [round(x, 2) for x in load_end], "modes": modes, "rows": rows}
    finally:
        stop(process)
    result["meets_targets"] = all(result[load]["modes"][m]["meets_target"] for load in loads for m in MODES)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="replies per mode and load")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--loads", default="idle,loaded", help="comma-separated: idle,loaded")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    loads = [x for x in args.loads.split(",") if x]
    if not loads or set(loads) - set(TARGET_P90_S):
        parser.error("--loads takes idle and/or loaded")
    result = asyncio.run(run(args.samples, args.data_dir.expanduser(), args.timeout, loads))
    write_result("first_message", result, args.out)


if __name__ == "__main__":
    main()
