"""Tool turns with their fixed JSON read, not generated: the schema's choices, and the real
embedded model writing whole turns that the session's router reads as before."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from openlive.engines.llm.base import ChatMessage, ChatRequest, Finished, SamplingParams, TextDelta
from openlive.engines.llm.tool_turns import (JUDGE_THRESHOLD, _fixed_args_start, branches, call_after_judging, descriptions, judge_prompt,
                                             tool_probability)
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


def test_each_tool_branch_says_what_its_tool_does():
    tools = ToolSet.from_setup([WEATHER])
    assert descriptions(tools.schema()) == {"get_weather": "Get the current weather and forecast for a city."}
    assert descriptions(tools.schema(allow_tools=False)) == {}
    assert descriptions(None) == {}
    # The branch's description is an annotation: the choices are the same.
    assert list(branches(tools.schema())) == ["none", "get_weather"]


def test_p_tool_weighs_the_first_tokens_that_begin_a_tool_name_against_none():
    names = ["none", "get_weather", "nudge"]
    top = [{"token": "get", "logprob": -0.5}, {"token": "none", "logprob": -1.0}, {"token": "n", "logprob": -2.0},
           {"token": "weather", "logprob": -3.0}, {"token": "", "logprob": -1.0}, {"token": "nud", "logprob": -4.0}]
    import math
    tool, none = math.exp(-0.5) + math.exp(-4.0), math.exp(-1.0)  # "n" begins both: counted for neither
    assert abs(tool_probability(top, names) - tool / (tool + none)) < 1e-9
    assert tool_probability([{"token": "hello", "logprob": -0.1}], names) is None
    assert tool_probability([], names) is None


def test_the_judge_and_the_first_token_together_decide():
    assert call_after_judging(0.5, 0.95)  # unsure model, sure judge
    assert not call_after_judging(0.5, 0.5)
    assert not call_after_judging(0.05, 0.85)  # the model leaned to answering, the judge not sure enough
    # More of either never turns a call into an answer.
    for p_tool in (0.05, 0.3, 0.6, 0.85):
        calls = [call_after_judging(p_tool, p / 100) for p in range(1, 100)]
        assert calls == sorted(calls)
    assert JUDGE_THRESHOLD > 0


def test_the_judge_reads_a_docstring_s_summary_and_the_user_s_words():
    messages = judge_prompt("get_weather", "Retrieves the weather.\n\nArgs:\n    city (str): the city.", "  Hi?  ")
    assert messages[0]["role"] == "system"
    assert "Tool get_weather: Retrieves the weather.\n\nThe user says: Hi?\n\n" in messages[1]["content"]
    assert "Args" not in messages[1]["content"]


def test_an_argument_list_whose_first_key_is_required_begins_with_text_read_not_written():
    tools = ToolSet.from_setup([WEATHER])
    read, grammar = _fixed_args_start(branches(tools.schema())["get_weather"])
    assert read == ' [{"location":'  # the space before the value is written (a prompt ending in one misleads)
    assert grammar.startswith('%llguidance {}\nstart: " " %json {"type":"string"} "}"') and grammar.endswith('"]"\n')
    assert grammar.count("(\", \" %json") == 3  # up to maxItems (4) objects in all
    two = {"type": "array", "maxItems": 1, "items": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}, "days": {"type": "integer"}},
        "required": ["city", "days"]}}
    read, grammar = _fixed_args_start(two)
    assert read == ' [{"city":'
    assert '(", \\"unit\\": " %json {"enum":["c","f"]})?' in grammar  # optional: may be left out
    assert '", \\"days\\": " %json {"type":"integer"} "}"' in grammar
    # Shapes whose start is not fixed are written whole under their schema.
    assert _fixed_args_start({"type": "object", "properties": {"code": {"type": "string"}}}) is None
    assert _fixed_args_start({"type": "array", "items": {"type": "object", "properties": {"a": {}}}}) is None
    assert _fixed_args_start({"type": "array", "items": {"$ref": "#/$defs/x"}, "$defs": {"x": {}}}) is None
    assert _fixed_args_start({"type": "array", "items": {"type": "object", "properties": {}}}) is None


def _small_engine():
    """The packaged 0.5B in one llama.cpp slot (not started)."""
    from openlive.engines.llm.embedded import EmbeddedLlamaEngine
    from openlive.engines.llm.packaged import resolve_model_file

    try:
        path = resolve_model_file("qwen2.5-coder-0.5b", Path.home() / ".openlive", progress=False)
    except Exception as exc:  # the packaged weights are a dependency; without them this cannot run
        require(False, f"packaged qwen2.5-coder-0.5b unavailable: {exc}")
    return EmbeddedLlamaEngine("test", path, n_ctx=4096, n_parallel=1, n_threads=2)


async def test_the_embedded_model_writes_whole_tool_turns_the_router_reads():
    tools = ToolSet.from_setup([WEATHER])
    engine = _small_engine()
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


async def test_judge_prompts_read_ahead_are_found_after_their_slot_served_something_else(caplog):
    """The first judged question about a tool reads only its words and the question: the tool's
    part was read ahead, and llama.cpp's RAM cache hands it back after the only slot moved on."""
    import logging
    import re

    tools = ToolSet.from_setup([WEATHER])
    engine = _small_engine()
    await engine.start()

    def cached() -> int:
        [line] = [r.getMessage() for r in caplog.records if "tool turn step" in r.getMessage()]
        caplog.clear()
        return int(re.search(r"\((\d+) cached\)", line).group(1))

    try:
        await engine.primed()
        request = ChatRequest((ChatMessage("system", tools.instructions()), ChatMessage("user", "Hi")),
                              SamplingParams(temperature=0), json_schema=tools.schema())
        with caplog.at_level(logging.DEBUG, logger="openlive.engines.llm.tool_turns"):
            await engine.warm_tool_judges(request)
            caplog.clear()
            await engine.warm(replace(request, json_schema=None))  # the one slot reads a conversation
            await engine._tool_turns._judge("get_weather", "Get the current weather and forecast for a city.",
                                            "Should I bring a jacket to Prague tonight?")
            warmed = cached()
            await engine._tool_turns._judge("book_table", "Book a table at a restaurant for a party.",
                                            "Should I bring a jacket to Prague tonight?")
            cold = cached()
    finally:
        await engine.aclose()
    # Everything before the user's words (system, the tool and its summary) came from the cache;
    # for a tool never read ahead, only the judge's system part did.
    assert warmed >= cold + 10, (warmed, cold)
