"""Acceptance (issue 5): tools with the unmodified SDK and the default embedded model."""

from __future__ import annotations

import asyncio

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
