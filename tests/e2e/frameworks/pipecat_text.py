"""Pipecat's GeminiLiveLLMService in TEXT modality, with the model name given, driven headless
against a Live API server; prints what it saw as JSON.

Runs under the Pipecat venv (.venv-pipecat), like pipecat_agent.py (whose Recorder it reuses),
and is as unmodified apart from the base URL and the model name:

    python pipecat_text.py BASE_URL MODEL

Steps: an LLM context seeded with one user message and `inference_on_context_initialization` at
its default (True), then LLMRunFrame: Pipecat sets historyConfig.initialHistoryInClientContent and
sends the context as clientContent with turnComplete (and on a 3.x name realtimeInput.text " "
after it), and the seeded question must be answered. Then a typed question (InputTextRawFrame,
realtimeInput.text) that calls the declared tool, which Pipecat runs as soon as the toolCall
arrives, and whose result the answer uses.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback

from google.genai.types import HttpOptions
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import InputTextRawFrame, LLMRunFrame, LLMTextFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService, GeminiModalities
from pipecat.workers.runner import WorkerRunner

from pipecat_agent import Recorder


class TextRecorder(Recorder):
    """The voice driver's recorder, reading a reply's words from LLMTextFrame (TEXT modality)."""

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, LLMTextFrame) and frame.id not in self.seen:
            self.seen.add(frame.id)
            self.current["text"] += frame.text
            return
        await super().on_push_frame(data)


async def main(base_url: str, model: str) -> dict:
    result: dict = {"model": model, "steps": []}
    calls: list[dict] = []

    async def get_current_weather(params) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"location": params.arguments.get("location"),
                                      "forecast": "sunny and 22 degrees"})

    weather = FunctionSchema(name="get_current_weather", description="Get the current weather for a place.",
                             properties={"location": {"type": "string", "description": "The city"}},
                             required=["location"])
    llm = GeminiLiveLLMService(api_key="pipecat-key", tools=ToolsSchema(standard_tools=[weather]),
                               settings=GeminiLiveLLMService.Settings(model=model, modalities=GeminiModalities.TEXT),
                               http_options=HttpOptions(base_url=base_url))
    llm.register_function("get_current_weather", get_current_weather)
    result["gemini_3"] = llm._is_gemini_3  # which branch Pipecat took, reported

    context = LLMContext([{"role": "user", "content": "Say hello to me."}])
    aggregators = LLMContextAggregatorPair(context)
    recorder = TextRecorder()
    worker = PipelineWorker(Pipeline([aggregators.user(), llm, aggregators.assistant()]),
                            params=PipelineParams(), observers=[recorder], idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    try:
        # 1. The seeded context, answered on its own (no user input follows it).
        await worker.queue_frame(LLMRunFrame())
        result["steps"].append({"step": "seed", **await recorder.next_reply()})

        # 2. A typed question that the registered function answers.
        await worker.queue_frame(InputTextRawFrame(text="What is the weather in Paris?"))
        result["steps"].append({"step": "tool", **await recorder.next_reply()})
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        result["calls"] = calls
        result["trace"] = recorder.trace
        result["context"] = [m if isinstance(m, dict) else str(m) for m in context.get_messages()]
        await worker.cancel()
        try:
            await asyncio.wait_for(run, 15)
        except Exception:
            run.cancel()
    return result


if __name__ == "__main__":
    from importlib.metadata import version

    out = asyncio.run(main(*sys.argv[1:3]))
    out["versions"] = {"pipecat": version("pipecat-ai"), "google-genai": version("google-genai")}
    print(json.dumps(out, default=str))
