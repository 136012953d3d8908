"""Acceptance (issue 5): tools with the unmodified SDK and the default embedded model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from tests.support.audio import speak_16k

pytestmark = pytest.mark.e2e

WEATHER = types.FunctionDeclaration(
    name="get_current_weather", description="Get the current weather in a city.",
    parameters=types.Schema(type=types.Type.OBJECT, properties={
        "location": types.Schema(type=types.Type.STRING, description="The city name")}, required=["location"]))


def connect(server, tools, key="server-secret", **extra):
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url))
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
    out = await _collect(session)
    if [m.server_content.turn_complete for m in out if m.server_content] == [True] and not answer(out):
        # These sessions name a 2.x model: its turn ended with the toolCall, and the answer to the
        # result is a turn of its own (what ADK waits for; generation.py).
        out = await _collect(session)
    return out


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


@pytest.mark.parametrize("question, city", [
    ("Do I need to take a raincoat to Lyon this evening?", "lyon"),
    ("Is it a nice afternoon for a boat trip in Stockholm?", "stockholm"),
])
async def test_a_question_that_needs_the_weather_without_naming_it_calls_the_tool(embedded_server, question, city):
    # Neither question names the weather; the model's first token alone leaned to answering
    # (tool_turns.py's judge weighs in). Questions of neither bench/tool_decision.py set.
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        messages = await ask(session, question)
    calls = [c for m in messages if m.tool_call for c in m.tool_call.function_calls]
    assert calls and calls[0].name == "get_current_weather", answer(messages)
    assert city in calls[0].args["location"].lower()


async def test_a_question_about_the_weather_as_a_subject_calls_nothing(embedded_server):
    async with connect(embedded_server, [types.Tool(function_declarations=[WEATHER])]) as session:
        messages = await ask(session, "Why does it get colder as you climb a mountain?")
    assert not any(m.tool_call for m in messages), messages
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
            while True:  # past the turnComplete that ends a 2.x model's turn at its toolCall
                async for message in session.receive():
                    rest.append(message)
                    if message.tool_call_cancellation:
                        return

        try:
            await asyncio.wait_for(until_cancelled(), 60)
        except asyncio.TimeoutError:
            # Rare under load: say what did arrive, and what the server did, to find out why.
            received = [m.model_dump(exclude_none=True, exclude={"server_content": {"model_turn"}}) for m in rest]
            server_log = "\n".join(embedded_server.log_path.read_text().splitlines()[-40:])
            raise AssertionError(f"no toolCallCancellation in 60 s; received {received}\n{server_log}") from None
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


async def test_a_spoken_question_calls_the_tool_and_the_answer_is_spoken(embedded_server):
    """Tools with audio in and audio out: Piper asks, Whisper hears, the model calls, the voice answers."""
    # The same audio on every run: Piper's sampling noise made Whisper tiny.en hear "pairs" in
    # about one synthesis in ten of "... like in Paris right now?" (the bug was the test's input).
    question = speak_16k("What is the weather in Paris today?")
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=embedded_server.base_url))
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, output_audio_transcription={},
                                     tools=[types.Tool(function_declarations=[WEATHER])])
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        sender = asyncio.create_task(_speak(session, question + b"\0\0" * 16000 * 3))
        messages = await _collect(session)
        [call] = [c for m in messages if m.tool_call for c in m.tool_call.function_calls]
        assert call.args["location"].lower() == "paris"
        reply = await respond(session, call, {"temperature_celsius": 17, "condition": "light rain"})
        sender.cancel()
    assert sum(len(m.data) for m in reply if m.data) / 48000 > 0.5  # spoken
    spoken = "".join(m.server_content.output_transcription.text for m in reply
                     if m.server_content and m.server_content.output_transcription)
    assert "17" in spoken or "rain" in spoken.lower() or "seventeen" in spoken.lower(), spoken


async def _speak(session, pcm: bytes) -> None:
    start = time.monotonic()
    for i in range(0, len(pcm), 1280):
        await session.send_realtime_input(audio=types.Blob(data=pcm[i:i + 1280], mime_type="audio/pcm;rate=16000"))
        await asyncio.sleep(max(0.0, start + (i + 1280) / 32000 - time.monotonic()))


HOSTILE = {
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {"OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED"}),
    "memory hog": ("x = bytearray(2 * 1024 ** 3)\nprint(len(x))", {"OUTCOME_FAILED"}),
    "endless loop": ("while True:\n    pass", {"OUTCOME_DEADLINE_EXCEEDED"}),
    "read secrets": ("import os\nprint(os.environ.get('OPENLIVE_API_KEYS'))\n"
                     "print(open('/work/main/pyproject.toml').read())", {"OUTCOME_FAILED"}),
    "network": ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)", {"OUTCOME_FAILED"}),
    "write outside": ("open('/tmp/openlive-sandbox-escape', 'w').write('x')\nimport shutil\n"
                      "open('/usr/escape', 'w').write('x')", {"OUTCOME_FAILED"}),
}


@pytest.fixture(scope="module")
def sandbox_server(start_server, tmp_path_factory):
    """A scripted model that asks to run each hostile program, on a server holding a secret key."""
    rules = "".join(f'\n[[reply]]\nmatch = "{name}"\ntool = "run_python"\nargs = {{ code = """{code}""" }}\n'
                    for name, (code, _) in HOSTILE.items())
    script = tmp_path_factory.mktemp("hostile") / "script.toml"
    script.write_text(rules)
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n\n[code]\nwall_s = 3\ncpu_s = 2\n',
                        env={"OPENLIVE_API_KEYS": "server-secret"})


async def test_hostile_code_fails_safely_while_other_sessions_carry_on(sandbox_server):
    outcomes = {}

    async def attack(name: str) -> None:
        async with connect(sandbox_server, [types.Tool(code_execution=types.ToolCodeExecution())]) as session:
            messages = await ask(session, f"please run the {name}")
        parts = [p for m in messages if m.server_content and m.server_content.model_turn
                 for p in m.server_content.model_turn.parts or []]
        result = next(p.code_execution_result for p in parts if p.code_execution_result)
        outcomes[name] = (result.outcome.name, result.output or "")

    async def bystander() -> list[str]:
        replies = []
        async with connect(sandbox_server, []) as session:
            for i in range(6):
                replies.append(answer(await ask(session, f"hello {i}")))
                await asyncio.sleep(0.3)
        return replies

    # The server holds the key "server-secret" in its environment: no sandboxed program may see it.
    replies, _ = await asyncio.gather(bystander(), asyncio.gather(*(attack(n) for n in HOSTILE)))
    assert replies == [f"You said: hello {i}" for i in range(6)]
    for name, (_, expected) in HOSTILE.items():
        outcome, output = outcomes[name]
        assert outcome in expected, (name, outcome, output)
        assert "server-secret" not in output and "[build-system]" not in output
    assert not Path("/tmp/openlive-sandbox-escape").exists() and not Path("/usr/escape").exists()
    assert sandbox_server.process.poll() is None
