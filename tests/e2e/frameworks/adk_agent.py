"""A Google ADK agent (`google-adk`, `Runner.run_live`) driven headless against a Live API server;
prints what it saw as JSON.

Runs under the ADK venv (.venv-adk), not the test venv. ADK is unmodified: it reaches the server
through GOOGLE_GEMINI_BASE_URL (read by the google-genai client it builds), with SSL_CERT_FILE
for the server's certificate, as a user points it at any Gemini endpoint.

    python adk_agent.py MODEL

Steps, each a turn of one run_live stream: a typed greeting; a question answered by a function
tool registered with the agent (ADK runs it and sends the toolResponse itself). With a 2.x model
name ADK sends text as clientContent and runs a tool only once turnComplete follows the toolCall;
with a 3.x name it sends text as realtimeInput.text and runs the tool at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback

from google.adk.agents import Agent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig
from google.adk.runners import InMemoryRunner
from google.genai import types

STEP_TIMEOUT_S = 180.0
calls: list[dict] = []


def get_current_weather(location: str) -> dict:
    """Retrieves the current weather report for a specified city.

    Args:
        location (str): The name of the city.

    Returns:
        dict: the weather.
    """
    calls.append({"location": location})
    return {"location": location, "forecast": "sunny and 22 degrees"}


async def main(model: str) -> dict:
    result: dict = {"model": model, "steps": []}
    agent = Agent(name="helper", model=model, instruction="You are a helpful assistant.", tools=[get_current_weather])
    runner = InMemoryRunner(agent=agent, app_name="openlive-conformance")
    session = await runner.session_service.create_session(app_name="openlive-conformance", user_id="u")
    queue = LiveRequestQueue()
    config = RunConfig(response_modalities=[types.Modality.TEXT])
    events = runner.run_live(user_id="u", session_id=session.id, live_request_queue=queue, run_config=config)

    async def turn(prompt: str) -> dict:
        step: dict = {"prompt": prompt, "text": "", "calls": 0, "function_responses": 0}
        queue.send_content(types.Content(role="user", parts=[types.Part(text=prompt)]))
        began = time.monotonic()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async for event in events:
                content = event.content
                for part in (content.parts or []) if content else []:
                    if part.text and not event.partial and content.role == "model":
                        step["text"] += part.text
                    step["calls"] += part.function_call is not None
                    step["function_responses"] += part.function_response is not None
                if event.turn_complete and step["text"]:
                    break
        step["seconds"] = round(time.monotonic() - began, 2)
        return step

    try:
        for prompt in ("Say hello to me.", "What is the weather in Paris?"):
            result["steps"].append(await turn(prompt))
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - reported as JSON for the test to assert on
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["trace"] = traceback.format_exc()[-2000:]
    finally:
        queue.close()
        await events.aclose()
    result["tool_calls_run"] = calls
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))), flush=True)
