"""Function calling through the JSON router, without sockets: calls, the barrier, cancellation,
NON_BLOCKING scheduling, and streaming a reply's text out of its JSON."""

import asyncio
import json

from openlive.engines.llm.base import Finished, TextDelta
from openlive.protocol import parse_client_frame
from openlive.session.live_session import LiveSession
from openlive.session.tools import RouterStream, openapi_to_json_schema

WEATHER = {"name": "get_current_weather", "description": "Weather in a city.",
           "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}, "required": ["location"]}}


class RouterEngine:
    """Plays the model: answers each request with the next scripted JSON turn, a few characters at a time."""

    name = "router"

    def __init__(self, *turns, delay=0.0):
        self.turns, self.requests, self.delay = list(turns), [], delay

    async def stream(self, request):
        self.requests.append(request)
        text = json.dumps(self.turns.pop(0))
        for i in range(0, len(text), 5):
            await asyncio.sleep(self.delay)
            yield TextDelta(text[i:i + 5])
        yield Finished(prompt_tokens=10, completion_tokens=len(text) // 4)


def frame(obj):
    return parse_client_frame(json.dumps(obj))


def call(name, *arg_sets):
    return {"tool": name, "args": list(arg_sets), "reply": ""}


def say(text):
    return {"tool": "none", "args": {}, "reply": text}


async def open_session(engine, declarations=(WEATHER,)):
    sent = []

    async def send(m):
        sent.append(m)

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"]},
                             "tools": [{"functionDeclarations": list(declarations)}]}})
    session = LiveSession(setup, llm=engine, send=send)
    await session.start()
    return session, sent


async def user(session, text):
    await session.handle(frame({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}]}}))


async def until(predicate, timeout=2.0):
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def calls(sent):
    return [c for m in sent if "toolCall" in m for c in m["toolCall"]["functionCalls"]]


def texts(sent):
    return "".join(p.get("text", "") for m in sent for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))


async def test_call_waits_for_its_response_then_the_model_answers_with_it():
    engine = RouterEngine(call("get_current_weather", {"location": "Paris"}), say("It is 21 degrees in Paris."))
    session, sent = await open_session(engine)
    await user(session, "Weather in Paris?")
    await until(lambda: calls(sent))
    [c] = calls(sent)
    assert c["name"] == "get_current_weather" and c["args"] == {"location": "Paris"} and c["id"]
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 1 and not texts(sent)  # generation pauses at the barrier
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": c["id"], "name": "get_current_weather", "response": {"temperature_c": 21}}]}}))
    await until(lambda: any(m.get("serverContent", {}).get("turnComplete") for m in sent))
    assert texts(sent) == "It is 21 degrees in Paris."
    assert '"temperature_c":21' in engine.requests[1].messages[-1].content
    assert "get_current_weather" in json.dumps(engine.requests[0].json_schema)
    # The round that answers with the result may not ask for the same function again.
    assert "get_current_weather" not in json.dumps(engine.requests[1].json_schema)


async def test_interrupting_a_pending_call_cancels_it():
    session, sent = await open_session(RouterEngine(call("get_current_weather", {"location": "Oslo"}), say("ok")))
    await user(session, "Weather in Oslo?")
    await until(lambda: calls(sent))
    await user(session, "never mind")
    [cancel] = [m["toolCallCancellation"] for m in sent if "toolCallCancellation" in m]
    assert cancel == {"ids": [calls(sent)[0]["id"]]}


async def test_unknown_ids_and_odd_bodies_are_logged_and_the_session_goes_on(caplog):
    engine = RouterEngine(call("get_current_weather", {"location": "Rome"}), say("Sunny."))
    session, sent = await open_session(engine)
    await user(session, "Weather in Rome?")
    await until(lambda: calls(sent))
    await session.handle(frame({"toolResponse": {"functionResponses": [{"id": "nope", "response": {}}]}}))
    assert "unknown or finished call id 'nope'" in caplog.text
    await session.handle(frame({"toolResponse": {"functionResponses": [{"id": calls(sent)[0]["id"], "response": "sunny"}]}}))
    await until(lambda: texts(sent) == "Sunny.")


async def test_non_blocking_call_lets_the_model_talk_on_and_silent_results_add_context_only():
    slow = dict(WEATHER, behavior="NON_BLOCKING")
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Let me check that."), say("It is warm."))
    session, sent = await open_session(engine, [slow])
    await user(session, "Weather in Lima?")
    await until(lambda: any(m.get("serverContent", {}).get("turnComplete") for m in sent))
    assert texts(sent) == "Let me check that."  # talked on without waiting for the result
    assert engine.requests[1].json_schema.get("anyOf") is None  # and could not call again meanwhile
    call_id = calls(sent)[0]["id"]
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": call_id, "response": {"temperature_c": 25}, "scheduling": "SILENT"}]}}))
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 2  # SILENT: into the context, no reply
    assert "temperature_c" in session.conversation.history[-1].text


async def test_non_blocking_when_idle_result_gets_a_reply():
    slow = dict(WEATHER, behavior="NON_BLOCKING")
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Checking."), say("It is warm in Lima."))
    session, sent = await open_session(engine, [slow])
    await user(session, "Weather in Lima?")
    await until(lambda: texts(sent) == "Checking.")
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": calls(sent)[0]["id"], "response": {"temperature_c": 25}, "scheduling": "WHEN_IDLE"}]}}))
    await until(lambda: texts(sent).endswith("It is warm in Lima."))


def test_reply_text_streams_out_of_the_json_with_escapes():
    router = RouterStream()
    raw = json.dumps(say('He said "hi"\nthen left. Café ☕'))
    out = "".join(router.push(raw[i:i + 3]) for i in range(0, len(raw), 3))
    assert out == 'He said "hi"\nthen left. Café ☕'
    assert router.decision().tool == "none"


def test_a_call_is_complete_before_its_reply_field_is_written():
    router = RouterStream()
    router.push('{"tool": "get_current_weather", "args": [{"location": "Paris"}], "reply"')
    assert router.call_complete
    assert router.decision().args == [{"location": "Paris"}]


def test_openapi_schema_becomes_json_schema():
    converted = openapi_to_json_schema({"type": "OBJECT", "properties": {
        "when": {"type": "STRING", "nullable": True, "property_ordering": ["x"]},
        "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}}}, "required": ["when"]})
    assert converted == {"type": "object", "properties": {
        "when": {"type": ["string", "null"]}, "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
        "required": ["when"]}


async def test_two_argument_sets_are_two_calls_answered_before_the_model_goes_on():
    engine = RouterEngine(call("get_current_weather", {"location": "Tokyo"}, {"location": "Berlin"}),
                          say("Tokyo 20, Berlin 12."))
    session, sent = await open_session(engine)
    await user(session, "Weather in Tokyo and Berlin?")
    await until(lambda: calls(sent))
    first, second = calls(sent)
    assert first["id"] != second["id"] and {first["args"]["location"], second["args"]["location"]} == {"Tokyo", "Berlin"}
    await session.handle(frame({"toolResponse": {"functionResponses": [{"id": second["id"], "response": {"t": 12}}]}}))
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 1  # still waiting for Tokyo
    await session.handle(frame({"toolResponse": {"functionResponses": [{"id": first["id"], "response": {"t": 20}}]}}))
    await until(lambda: texts(sent) == "Tokyo 20, Berlin 12.")


class NativeEngine:
    """Plays a server that calls tools itself: each turn is text, or calls (ToolCallsMade)."""

    name, tool_mode = "native", "native"

    def __init__(self, *turns):
        self.turns, self.requests = list(turns), []

    async def stream(self, request):
        from openlive.engines.llm.base import ToolCallsMade

        self.requests.append(request)
        turn = self.turns.pop(0)
        if isinstance(turn, str):
            for word in turn.split(" "):
                yield TextDelta(word + " ")
        else:
            yield ToolCallsMade(turn)
        yield Finished(prompt_tokens=10, completion_tokens=5)


async def test_native_tool_calling_sends_tools_and_reads_results_as_tool_messages():
    from openlive.engines.llm.base import ToolCall

    engine = NativeEngine((ToolCall("x1", "get_current_weather", {"location": "Lyon"}),
                           ToolCall("x2", "get_current_weather", {"location": "Oslo"})), "Lyon is warm, Oslo is cold.")
    session, sent = await open_session(engine)
    await user(session, "Weather in Lyon and Oslo?")
    await until(lambda: len(calls(sent)) == 2)
    first = engine.requests[0]
    # The server reads the functions as OpenAI tools; no JSON format is asked for or described.
    assert first.json_schema is None and "Answer with JSON" not in first.messages[0].content
    assert [t["function"]["name"] for t in first.tools] == ["get_current_weather"]
    assert first.tools[0]["function"]["parameters"]["properties"]["location"]["type"] == "string"
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": c["id"], "name": c["name"], "response": {"temp_c": 20 if c["args"]["location"] == "Lyon" else -3}}
        for c in calls(sent)]}}))
    await until(lambda: any(m.get("serverContent", {}).get("turnComplete") for m in sent))
    assert texts(sent).strip() == "Lyon is warm, Oslo is cold."
    second = engine.requests[1].messages
    ids = [c["id"] for c in calls(sent)]
    assistant, *tools = second[-3:]
    assert assistant.role == "assistant" and [c.id for c in assistant.tool_calls] == ids
    assert [c.args for c in assistant.tool_calls] == [{"location": "Lyon"}, {"location": "Oslo"}]
    assert [(t.role, t.tool_call_id, json.loads(t.content)) for t in tools] == [
        ("tool", ids[0], {"temp_c": 20}), ("tool", ids[1], {"temp_c": -3})]


def test_native_tool_calls_arrive_in_pieces_and_are_put_together():
    from openlive.engines.llm.openai_compat import _CallAssembler, openai_message
    from openlive.engines.llm.base import ChatMessage, ToolCall

    calls = _CallAssembler()
    calls.add([{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}])
    calls.add([{"index": 0, "function": {"arguments": '{"locat'}}])
    calls.add([{"index": 0, "function": {"arguments": 'ion": "Lyon"}'}},
               {"index": 1, "id": "call_2", "function": {"name": "get_weather", "arguments": "{not json"}}])
    calls.add("garbage")
    assert calls.calls() == (ToolCall("call_1", "get_weather", {"location": "Lyon"}),
                             ToolCall("call_2", "get_weather", {}))
    said = openai_message(ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", {"location": "Lyon"}),)))
    assert said == {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"location": "Lyon"}'}}]}
    assert openai_message(ChatMessage("tool", '{"t": 1}', tool_call_id="call_1")) == {
        "role": "tool", "tool_call_id": "call_1", "content": '{"t": 1}'}


async def test_while_the_client_runs_a_call_the_llm_reads_the_conversation_so_far():
    engine = RouterEngine(call("get_current_weather", {"location": "Paris"}), say("It is 21 degrees in Paris."))
    warmed = []

    async def warm(request):
        warmed.append(request)

    engine.warm = warm
    session, sent = await open_session(engine)
    await user(session, "Weather in Paris?")
    await until(lambda: calls(sent) and warmed)
    # The call is in history already: the round after the result reads only the result.
    assert warmed[0].messages[-1].role == "assistant" and "get_current_weather" in warmed[0].messages[-1].content
    [c] = calls(sent)
    await session.handle(frame({"toolResponse": {"functionResponses": [
        {"id": c["id"], "name": "get_current_weather", "response": {"temperature_c": 21}}]}}))
    await until(lambda: any(m.get("serverContent", {}).get("turnComplete") for m in sent))
    assert engine.requests[1].messages[:len(warmed[0].messages)] == warmed[0].messages
