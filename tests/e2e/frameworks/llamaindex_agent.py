"""LlamaIndex's Gemini Live voice agent (`llama-index-voice-agents-gemini-live`) driven headless
against a Live API server; prints what it saw as JSON.

Runs under the LlamaIndex venv (.venv-llamaindex), not the test venv. The agent is unmodified:
it reaches the server through GOOGLE_GEMINI_BASE_URL (read by the google-genai client it builds,
it has no URL option of its own), with SSL_CERT_FILE for the server's certificate.

    python llamaindex_agent.py QUESTION.pcm OUT_DIR

Its audio interface is replaced, as the package intends (`interface=`), by one without a sound
card: a "microphone" that puts 16 kHz PCM (silence, or the speech a step asks for) on the agent's
queue in real time as the PyAudio one does, which the agent sends as mediaChunks `audio/pcm`
without a rate; a "speaker" that takes what the agent gives it. The agent reads typed text from
stdin (its own loop, `input()`), which here is a pipe: it sends each line as clientContent with
turnComplete. An observer on google-genai's receive notes where each turn ends.

Steps: a typed greeting, answered in speech; a spoken question that the model answers by calling
a function tool, which the agent runs and answers with a toolResponse, then the spoken answer.
Each step's reply audio (24 kHz PCM) is written to OUT_DIR for the test to hear.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path

from google.genai import live
from llama_index.core.tools import FunctionTool
from llama_index.voice_agents.gemini_live import GeminiLiveVoiceAgent, GeminiLiveVoiceAgentInterface
from llama_index.voice_agents.gemini_live.events import ToolCallEvent, ToolCallResultEvent

from driver_support import wait_for as wait_until

RATE_IN = 16000
CHUNK = 1024  # samples, as the PyAudio interface reads them: 64 ms
STEP_TIMEOUT_S = 120.0

# Every server message the agent receives, in order, as (kind, detail): the observer.
received: list[tuple[str, object]] = []
_receive = live.AsyncSession._receive


async def _observed_receive(self):
    message = await _receive(self)
    content = message.server_content
    if content and content.model_turn:
        for part in content.model_turn.parts or []:
            if part.inline_data and part.inline_data.data:
                received.append(("audio", (part.inline_data.mime_type, part.inline_data.data)))
            if part.text:
                received.append(("text", part.text))
    if message.tool_call:
        received.append(("tool_call", [dict(c.args or {}) for c in message.tool_call.function_calls or []]))
    if content and content.interrupted:
        received.append(("interrupted", None))
    if content and content.turn_complete:
        received.append(("turn_complete", None))
    return message


live.AsyncSession._receive = _observed_receive


class HeadlessInterface(GeminiLiveVoiceAgentInterface):
    """The package's interface without PyAudio streams: 16 kHz frames in real time, silence
    unless told to speak; the reply audio is taken off the queue as a speaker would."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()
        self.played = 0

    def say(self, pcm: bytes) -> None:
        self.pending.extend(pcm)

    async def _microphone_callback(self) -> None:
        start, sent = time.monotonic(), 0
        while True:
            chunk = bytes(self.pending[:CHUNK * 2]).ljust(CHUNK * 2, b"\0")
            del self.pending[:CHUNK * 2]
            await self.out_queue.put({"data": chunk, "mime_type": "audio/pcm"})
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * CHUNK / RATE_IN - time.monotonic()))

    async def output(self, *args, **kwargs) -> None:
        while True:
            self.played += len(await self.audio_in_queue.get())

    def stop(self) -> None:
        pass


calls: list[dict] = []


def get_current_weather(location: str) -> dict:
    """Get the current weather for a place (the city)."""
    calls.append({"location": location})
    return {"location": location, "forecast": "sunny and 22 degrees"}


async def wait_for(predicate, what: str) -> None:
    await wait_until(predicate, what, STEP_TIMEOUT_S)


def replied_since(mark: int) -> bool:
    """A turn with speech in it has ended since `mark`."""
    kinds = [kind for kind, _ in received[mark:]]
    return "audio" in kinds and "turn_complete" in kinds[kinds.index("audio"):]


def step(name: str, mark: int, out_dir: Path) -> dict:
    audio = [detail for kind, detail in received[mark:] if kind == "audio"]
    pcm = b"".join(data for _, data in audio)
    path = out_dir / f"{name}.pcm"
    path.write_bytes(pcm)
    return {"step": name, "audio_bytes": len(pcm), "mime_types": sorted({m for m, _ in audio}), "audio": str(path),
            "kinds": [kind for kind, _ in received[mark:] if kind != "audio"]}


async def main(question_path: str, out_dir: str) -> dict:
    result: dict = {"steps": []}
    out = Path(out_dir)
    # The agent's typed-text loop reads stdin: make it a pipe this driver writes to.
    read_end, write_end = os.pipe()
    sys.stdin = os.fdopen(read_end)
    keyboard = os.fdopen(write_end, "w")

    interface = HeadlessInterface()
    agent = GeminiLiveVoiceAgent(api_key="llamaindex-key", interface=interface,
                                 tools=[FunctionTool.from_defaults(fn=get_current_weather)])
    result["model"] = agent.model  # the default, reported, not set
    task = asyncio.create_task(agent.start())
    try:
        await wait_for(lambda: agent.session is not None and interface.out_queue is not None or task.done(),
                       "session")
        if task.done():
            raise RuntimeError(f"the agent stopped: {task.result()!r}")

        # 1. Typed text, as a user types it at the agent's prompt.
        mark = len(received)
        keyboard.write("Say hello to me.\n")
        keyboard.flush()
        await wait_for(lambda: replied_since(mark), "spoken reply to the typed greeting")
        result["steps"].append(step("typed", mark, out))

        # 2. A spoken question (mediaChunks audio/pcm, no rate), answered through the function tool.
        mark = len(received)
        with open(question_path, "rb") as f:
            interface.say(f.read())
        await wait_for(lambda: any(kind == "tool_call" for kind, _ in received[mark:]), "tool call")
        tool_at = next(i for i in range(mark, len(received)) if received[i][0] == "tool_call")
        await wait_for(lambda: replied_since(tool_at), "spoken reply using the tool's result")
        result["steps"].append(step("spoken_tool", tool_at, out))
        result["tool_call_args"] = received[tool_at][1]
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        keyboard.close()  # ends the agent's blocked input() (EOF), so its thread can finish
        events = agent.export_events()
        result["agent_events"] = {
            "tool_calls": [{"name": e.tool_name, "args": e.tool_args} for e in events if isinstance(e, ToolCallEvent)],
            "tool_results": [{"name": e.tool_name, "result": e.tool_result} for e in events
                             if isinstance(e, ToolCallResultEvent)],
            "audio_received": sum(e.type_t == "audio_received" for e in events),
        }
        result["played_bytes"] = interface.played
        result["calls"] = calls
    return result


if __name__ == "__main__":
    from importlib.metadata import version

    output = asyncio.run(main(*sys.argv[1:3]))
    output["versions"] = {"llama-index-voice-agents-gemini-live": version("llama-index-voice-agents-gemini-live"),
                          "google-genai": version("google-genai")}
    print(json.dumps(output, default=str), flush=True)
