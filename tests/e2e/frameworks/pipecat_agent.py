"""A Pipecat voice bot driven headless against a Live API server; prints what it saw as JSON.

Runs under the Pipecat venv (.venv-pipecat, pipecat-ai with its own google-genai 2.x), not the
test venv: the test starts the server, runs this script and asserts on its last line.

    python pipecat_agent.py BASE_URL QUESTION.pcm BARGE_IN.pcm

The bot is Pipecat's own recipe, unmodified apart from the base URL: GeminiLiveLLMService with
its default model between the user and assistant context aggregators, a function registered for
a declared tool. A "microphone" task streams 16 kHz PCM in real time (silence, or the speech a
step asks for) as a transport would; an observer records every frame between processors.

Steps: a text turn (Pipecat's quick start: "Say hello." in the context, then LLMRunFrame); a
spoken question whose reply is interrupted by more speech (barge-in); a typed question
(InputTextRawFrame) that calls the declared tool, answered by the registered function.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback

from google.genai.types import HttpOptions
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (InputAudioRawFrame, InterruptionFrame,
                                   InputTextRawFrame, LLMFullResponseEndFrame, LLMRunFrame,
                                   TranscriptionFrame, TTSAudioRawFrame, TTSTextFrame)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService
from pipecat.workers.runner import WorkerRunner

RATE_IN = 16000
CHUNK = RATE_IN // 50 * 2  # 20 ms of 16-bit mono
STEP_TIMEOUT_S = 120.0


class Recorder(BaseObserver):
    """Everything the pipeline passed between processors, once per frame, split by reply."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()
        self.transcriptions: list[str] = []
        self.interruptions = 0
        self.trace: list[str] = []
        self.replies: list[dict] = []
        self.current = self._new()
        self.reply_ended = asyncio.Event()
        self.audio_started = asyncio.Event()

    @staticmethod
    def _new() -> dict:
        return {"audio_bytes": 0, "sample_rates": [], "text": "", "interrupted": False}

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if frame.id in self.seen:
            return
        self.seen.add(frame.id)
        if isinstance(frame, TranscriptionFrame):
            self.transcriptions.append(frame.text)
        elif isinstance(frame, TTSAudioRawFrame):
            if not self.current["audio_bytes"]:
                self.trace.append(f"audio from {data.source} at {frame.sample_rate} Hz")
            self.current["audio_bytes"] += len(frame.audio)
            if frame.sample_rate not in self.current["sample_rates"]:
                self.current["sample_rates"].append(frame.sample_rate)
            self.audio_started.set()
        elif isinstance(frame, TTSTextFrame):
            self.current["text"] += frame.text
        elif isinstance(frame, InterruptionFrame):
            self.interruptions += 1
            self.trace.append(f"interruption from {data.source} {data.direction.name}")
            if self.current["audio_bytes"] or self.current["text"]:
                self.current["interrupted"] = True
                self._close()
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.trace.append(f"response end from {data.source}: {len(self.current['text'])} chars")
            self._close()

    def _close(self) -> None:
        if not self.current["audio_bytes"] and not self.current["text"]:
            return  # an end frame for a reply already closed (by its interruption, say)
        self.replies.append(self.current)
        self.current = self._new()
        self.reply_ended.set()

    async def next_reply(self) -> dict:
        await asyncio.wait_for(self.reply_ended.wait(), STEP_TIMEOUT_S)
        self.reply_ended.clear()
        return self.replies[-1]


class Microphone:
    """16 kHz PCM into the pipeline in real time, 20 ms at a time: silence unless told to speak."""

    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker
        self.pending = bytearray()
        self.spoken = asyncio.Event()

    def say(self, pcm: bytes) -> None:
        self.spoken.clear()
        self.pending.extend(pcm)

    async def run(self) -> None:
        start = time.monotonic()
        sent = 0
        while True:
            if self.pending:
                chunk = bytes(self.pending[:CHUNK]).ljust(CHUNK, b"\0")
                del self.pending[:CHUNK]
                if not self.pending:
                    self.spoken.set()
            else:
                chunk = b"\0" * CHUNK
            await self.worker.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=RATE_IN, num_channels=1))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))


async def main(base_url: str, question_path: str, barge_in_path: str) -> dict:
    result: dict = {"steps": []}
    calls: list[dict] = []

    async def get_current_weather(params) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"location": params.arguments.get("location"),
                                      "forecast": "sunny and 22 degrees"})

    weather = FunctionSchema(name="get_current_weather", description="Get the current weather for a place.",
                             properties={"location": {"type": "string", "description": "The city"}},
                             required=["location"])
    llm = GeminiLiveLLMService(api_key="pipecat-key", tools=ToolsSchema(standard_tools=[weather]),
                               http_options=HttpOptions(base_url=base_url))
    llm.register_function("get_current_weather", get_current_weather)
    result["model"] = str(llm._settings.model)  # the default, reported, not set

    context = LLMContext([{"role": "user", "content": "Say hello."}])
    aggregators = LLMContextAggregatorPair(context)
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([aggregators.user(), llm, aggregators.assistant()]),
                            params=PipelineParams(audio_in_sample_rate=RATE_IN, audio_out_sample_rate=24000),
                            observers=[recorder], idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    mic = Microphone(worker)
    mic_task = None
    try:
        # 1. A text turn, as Pipecat's quick start greets.
        await worker.queue_frame(LLMRunFrame())
        result["steps"].append({"step": "text", **await recorder.next_reply()})
        mic_task = asyncio.create_task(mic.run())

        # 2. A spoken question; once its reply sounds, the user talks over it.
        with open(question_path, "rb") as f:
            mic.say(f.read())
        recorder.audio_started.clear()
        await asyncio.wait_for(recorder.audio_started.wait(), STEP_TIMEOUT_S)
        with open(barge_in_path, "rb") as f:
            mic.say(f.read())
        result["steps"].append({"step": "spoken", **await recorder.next_reply()})
        # The barge-in is a turn of its own, answered in full.
        result["steps"].append({"step": "barge_in", **await recorder.next_reply()})

        # 3. A typed question (Pipecat's frame for user text), which the registered function answers.
        await worker.queue_frame(InputTextRawFrame(text="What is the weather in Paris?"))
        reply = await recorder.next_reply()
        if not reply["audio_bytes"] and not reply["text"]:  # the tool call's own (empty) turn
            reply = await recorder.next_reply()
        result["steps"].append({"step": "tool", **reply})
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        result["transcriptions"] = recorder.transcriptions
        result["interruptions"] = recorder.interruptions
        result["trace"] = recorder.trace
        result["calls"] = calls
        result["context"] = [m if isinstance(m, dict) else str(m) for m in context.get_messages()]
        if mic_task:
            mic_task.cancel()
        await worker.cancel()
        try:
            await asyncio.wait_for(run, 15)
        except Exception:
            run.cancel()
    return result


if __name__ == "__main__":
    from importlib.metadata import version

    out = asyncio.run(main(*sys.argv[1:4]))
    out["versions"] = {"pipecat": version("pipecat-ai"), "google-genai": version("google-genai")}
    print(json.dumps(out, default=str))
