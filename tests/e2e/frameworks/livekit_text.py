"""A LiveKit Agents session on Google's RealtimeModel with the model name given, in TEXT
modality, driven headless (no room, no audio in or out) against a Live API server; prints what
it saw as JSON.

Runs under the LiveKit venv (.venv-livekit), like livekit_agent.py, and is as unmodified apart
from the base URL, the model name and the modality:

    python livekit_text.py BASE_URL MODEL

Steps, each `AgentSession.generate_reply(user_input=...)`, LiveKit's path for typed user input
(the user's message goes in as clientContent without turnComplete, then on 3.1/3.8 names an
empty clientContent with turnComplete asks for the reply; LiveKit gives the server 5 s for the
reply's first message): a greeting; a question answered by the agent's function tool, which
LiveKit runs and whose result it sends back as a toolResponse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import traceback

from google.genai import types
from livekit.agents import Agent, AgentSession, RunContext, function_tool
from livekit.plugins import google

from driver_support import wait_for as wait_until

STEP_TIMEOUT_S = 120.0


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful assistant.")
        self.calls: list[dict] = []

    @function_tool
    async def get_current_weather(self, context: RunContext, location: str) -> dict:
        """Get the current weather for a place.

        Args:
            location: The city
        """
        self.calls.append({"location": location})
        return {"location": location, "forecast": "sunny and 22 degrees"}


class Warnings(logging.Handler):
    """LiveKit's own warnings and errors (a generate_reply timeout is one), kept for the test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


async def wait_for(predicate, what: str) -> None:
    await wait_until(predicate, what, STEP_TIMEOUT_S)


async def main(base_url: str, model_name: str) -> dict:
    result: dict = {"steps": []}
    warnings = Warnings()
    logging.getLogger("livekit").addHandler(warnings)
    model = google.realtime.RealtimeModel(model=model_name, modalities=[types.Modality.TEXT], api_key="livekit-key",
                                          http_options=types.HttpOptions(base_url=base_url))
    result["model"] = model.model
    session = AgentSession(llm=model)
    agent = Assistant()

    replies: list[str] = []
    tools_executed: list[dict] = []
    errors: list[str] = []
    session.on("conversation_item_added", lambda ev: replies.append(ev.item.text_content or "")
               if getattr(ev.item, "role", None) == "assistant" else None)
    session.on("function_tools_executed", lambda ev: tools_executed.append(
        {"calls": [c.name for c in ev.function_calls], "arguments": [c.arguments for c in ev.function_calls],
         "outputs": [o.output for o in ev.function_call_outputs]}))
    session.on("error", lambda ev: errors.append(repr(ev.error)))

    try:
        await session.start(agent)

        # 1. A typed greeting.
        before = len(replies)
        handle = session.generate_reply(user_input="Say hello to me.")
        await asyncio.wait_for(handle.wait_for_playout(), STEP_TIMEOUT_S)
        await wait_for(lambda: len(replies) > before, "reply to the greeting")
        result["steps"].append({"step": "text", "replies": replies[before:]})

        # 2. A typed question the function tool answers.
        before = len(replies)
        handle = session.generate_reply(user_input="What is the weather in Paris?")
        await asyncio.wait_for(handle.wait_for_playout(), STEP_TIMEOUT_S)
        await wait_for(lambda: any("sunny" in r for r in replies[before:]), "reply using the tool's result")
        result["steps"].append({"step": "tool", "replies": replies[before:]})
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        result.update(calls=agent.calls, tools_executed=tools_executed, errors=errors)
        try:
            await asyncio.wait_for(session.aclose(), 15)
        except Exception:
            pass
        result["warnings"] = warnings.lines
    return result


if __name__ == "__main__":
    from importlib.metadata import version

    out = asyncio.run(main(*sys.argv[1:3]))
    out["versions"] = {"livekit-agents": version("livekit-agents"), "google-genai": version("google-genai")}
    print(json.dumps(out, default=str))
