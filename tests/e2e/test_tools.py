"""Acceptance (issue 5): tools with the unmodified SDK and the default embedded model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google import genai
from google.genai import types

pytestmark = pytest.mark.e2e

WEATHER = types.FunctionDeclaration(
    name="get_current_weather", description="Get the current weather in a city.",
    parameters=types.Schema(type=types.Type.OBJECT, properties={
        "location": types.Schema(type=types.Type.STRING, description="The city name")}, required=["location"]))


def connect(server, tools, **extra):
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, tools=tools, **extra)
    return client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config)


async def ask(session, text: str) -> list:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    return await _collect(session)


async def _collect(session, timeout: float = 60) -> list:
    """Messages until the turn completes, answering nothing: stops at a toolCall too."""
    out = []

    async def gather() -> None:
        async for message in session.receive():
            out.append(message)
            if message.tool_call:
                return

    await asyncio.wait_for(gather(), timeout)
    return out


def answer(messages) -> str:
    return "".join(m.text or "" for m in messages)


async def respond(session, call, result) -> list:
    await session.send_tool_response(function_responses=[types.FunctionResponse(id=call.id, name=call.name, response=result)])
    return await _collect(session)


async def test_weather_call_with_the_city_then_an_answer_using_the_result(embedded_server):
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        messages = await ask(session, "What's the weather like in Paris right now?")
        [tool_call] = [m.tool_call for m in messages if m.tool_call]
        [call] = tool_call.function_calls
        assert call.name == "get_current_weather" and call.args["location"].lower() == "paris" and call.id
        reply = answer(await respond(session, call, {"temperature_celsius": 17, "condition": "light rain"}))
    assert "17" in reply or "rain" in reply.lower(), reply


async def test_an_unrelated_question_calls_nothing(embedded_server):
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(
            text="Tell me a joke about cats.")]))
        messages = await _collect(session)
    assert not any(m.tool_call for m in messages)
    assert answer(messages).strip()


async def test_two_cities_give_two_calls_with_distinct_ids(embedded_server):
    seen = []
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        messages = await ask(session, "What is the weather in Tokyo and in Berlin?")
        for _ in range(3):
            calls = [c for m in messages if m.tool_call for c in m.tool_call.function_calls]
            if not calls:
                break
            seen += calls
            for call in calls[:-1]:
                await session.send_tool_response(function_responses=[types.FunctionResponse(
                    id=call.id, name=call.name, response={"temperature_celsius": 20})])
            await session.send_tool_response(function_responses=[types.FunctionResponse(
                id=calls[-1].id, name=calls[-1].name, response={"temperature_celsius": 20})])
            messages = await _collect(session)
    cities = {c.args["location"].lower() for c in seen}
    assert {"tokyo", "berlin"} <= cities, cities
    assert len({c.id for c in seen}) == len(seen)


async def test_interrupting_during_a_pending_call_cancels_it(embedded_server):
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        messages = await ask(session, "What's the weather like in Madrid?")
        [call] = [c for m in messages if m.tool_call for c in m.tool_call.function_calls]
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="Forget it.")]))
        rest = []

        async def until_cancelled() -> None:
            async for message in session.receive():
                rest.append(message)
                if message.tool_call_cancellation:
                    return

        await asyncio.wait_for(until_cancelled(), 30)
    cancellation = next(m.tool_call_cancellation for m in rest if m.tool_call_cancellation)
    assert cancellation.ids == [call.id]


@pytest.fixture(scope="module")
def grounded_server(start_server):
    docs = Path(__file__).resolve().parents[1] / "data" / "docs"
    return start_server(f'[search]\nprovider = "local"\nfolder = "{docs}"\nbase_uri = "https://docs.example.test"\n')


async def test_code_execution_computes_fibonacci(embedded_server):
    async with connect(embedded_server, [types.Tool(code_execution=types.ToolCodeExecution())]) as session:
        messages = await ask(session, "Calculate the 15th Fibonacci number.")
    parts = [p for m in messages if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts or []]
    codes = [p.executable_code for p in parts if p.executable_code]
    results = [p.code_execution_result for p in parts if p.code_execution_result]
    assert codes and codes[-1].language.name == "PYTHON"
    assert any(r.outcome.name == "OUTCOME_OK" and "610" in (r.output or "") for r in results), results
    assert "610" in answer(messages)


async def test_search_grounding_cites_the_one_document_that_knows(grounded_server):
    async with connect(grounded_server, [types.Tool(google_search=types.GoogleSearch())]) as session:
        messages = await ask(session, "What time does the Zorvath Institute cafeteria open on weekdays?")
    grounding = next(m.server_content.grounding_metadata for m in messages
                     if m.server_content and m.server_content.grounding_metadata)
    first = grounding.grounding_chunks[0].web
    assert first.title == "Zorvath Institute Visitor Guide"
    assert first.uri == "https://docs.example.test/zorvath-institute.md"
    assert grounding.web_search_queries
    assert "7:15" in answer(messages), answer(messages)


async def test_non_blocking_function_keeps_talking_and_silent_result_adds_context(embedded_server):
    slow = WEATHER.model_copy(update={"behavior": types.Behavior.NON_BLOCKING})
    async with connect(embedded_server, [types.Tool(function_declarations=[slow])]) as session:
        messages = await ask(session, "What's the weather like in Oslo?")
        [call] = [c for m in messages if m.tool_call for c in m.tool_call.function_calls]
        rest = await _collect(session)  # the model talks on while the call runs
        assert answer(rest).strip() and rest[-1].server_content.turn_complete
        await session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name=call.name, response={"temperature_celsius": -3},
            scheduling=types.FunctionResponseScheduling.SILENT)])
        with pytest.raises(asyncio.TimeoutError):  # SILENT: no spoken reply about it
            await _collect(session, timeout=3)
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(
            text="Without calling any tool: what temperature did the weather tool report for Oslo?")]))
        later = await _collect(session)
    assert "-3" in answer(later) or "minus 3" in answer(later).lower(), answer(later)
