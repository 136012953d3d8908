"""Tool turns with their fixed JSON read, not generated: the schema's choices, and the real
embedded model writing whole turns that the session's router reads as before."""

from __future__ import annotations

from pathlib import Path

from openlive.engines.llm.base import ChatMessage, ChatRequest, Finished, SamplingParams, TextDelta
from openlive.engines.llm.tool_turns import branches
from openlive.protocol.messages import Tool
from openlive.session.tools import RouterStream, ToolSet
from tests.support.require import require

WEATHER = Tool.model_validate({"functionDeclarations": [{
    "name": "get_weather", "description": "Get the current weather and forecast for a city.",
    "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}, "required": ["location"]}}]})


def test_a_tool_turn_schema_gives_its_choices_and_any_other_schema_none():
    tools = ToolSet.from_setup([WEATHER])
    choices = branches(tools.schema())
    assert list(choices) == ["none", "get_weather"]
    assert choices["get_weather"]["type"] == "array" and choices["get_weather"]["items"]["required"] == ["location"]
    assert list(branches(tools.schema(allow_tools=False))) == ["none"]
    assert branches(None) is None
    assert branches({"type": "object", "properties": {"answer": {"type": "string"}}}) is None
    assert branches({"anyOf": [{"properties": {"tool": {"const": "f"}, "args": {}, "reply": {"type": "string"}}}]}) \
        is None  # no "none": not a tool turn


async def test_the_embedded_model_writes_whole_tool_turns_the_router_reads():
    from openlive.engines.llm.embedded import EmbeddedLlamaEngine
    from openlive.engines.llm.packaged import resolve_model_file

    try:
        path = resolve_model_file("qwen2.5-coder-0.5b", Path.home() / ".openlive", progress=False)
    except Exception as exc:  # the packaged weights are a dependency; without them this cannot run
        require(False, f"packaged qwen2.5-coder-0.5b unavailable: {exc}")
    tools = ToolSet.from_setup([WEATHER])
    engine = EmbeddedLlamaEngine("test", path, n_ctx=4096, n_parallel=1, n_threads=2)
    await engine.start()
    turns = {}
    try:
        for question, schema in (("What's the weather in Lyon right now?", tools.schema()),
                                 ("Say hello to me, please.", tools.schema()),
                                 ("And in Paris?", tools.schema(allow_tools=False))):
            request = ChatRequest((ChatMessage("system", tools.instructions()), ChatMessage("user", question)),
                                  SamplingParams(temperature=0, max_tokens=60), json_schema=schema)
            router, finished = RouterStream(), None
            async for chunk in engine.stream(request):
                if isinstance(chunk, TextDelta):
                    router.push(chunk.text)
                elif isinstance(chunk, Finished):
                    finished = chunk
            turns[question] = router.decision(), router.raw, finished
    finally:
        await engine.aclose()
    call, raw, finished = turns["What's the weather in Lyon right now?"]
    assert call.tool == "get_weather" and "lyon" in str(call.args).lower(), raw
    assert raw.startswith('{"tool": "get_weather", "args": [') and raw.endswith(', "reply": ""}'), raw
    said, raw, finished = turns["Say hello to me, please."]
    assert said.tool == "none" and said.text.strip(), raw
    assert raw.startswith('{"tool": "none", "args": {}, "reply": "') and raw.endswith('"}'), raw
    # The second step read the first's prompt from the cache.
    assert finished is not None and finished.prompt_tokens > 100 and finished.completion_tokens >= 2
    answer, raw, _ = turns["And in Paris?"]  # tools not allowed: an answer, with nothing to choose
    assert answer.tool == "none" and raw.startswith('{"tool": "none", "args": {}, "reply": "'), raw
