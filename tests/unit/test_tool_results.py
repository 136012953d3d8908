"""A NON_BLOCKING call's results (issue 24): `willContinue` keeps the call open for more, the last
result closes it, and each result is handled by its `scheduling` (SILENT: into the context only;
WHEN_IDLE: answered once the reply in progress ends; INTERRUPT: cuts that reply and is answered).
No sockets: the session is driven with the router engine of test_tools."""

from __future__ import annotations

import asyncio

from tests.unit.test_tools import WEATHER, RouterEngine, call, calls, frame, open_session, say, texts, until, user

SLOW = dict(WEATHER, behavior="NON_BLOCKING")


def result(call_id, response, **fields):
    return frame({"toolResponse": {"functionResponses": [{"id": call_id, "name": "get_current_weather",
                                                          "response": response, **fields}]}})


def turn_completes(sent):
    return sum(1 for m in sent if m.get("serverContent", {}).get("turnComplete"))


def user_texts(session):
    return [t.text for t in session.conversation.history if t.role == "user"]


async def started(engine, session, sent, question="Weather in Lima?"):
    """Ask, and wait until the model has made its NON_BLOCKING call and talked on to turnComplete."""
    await user(session, question)
    await until(lambda: turn_completes(sent) == 1)
    return calls(sent)[0]["id"]


async def test_will_continue_keeps_the_call_open_and_every_result_reaches_the_model(caplog):
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Checking."),
                          say("It is 20 now."), say("Now it is 23."))
    session, sent = await open_session(engine, [SLOW])
    call_id = await started(engine, session, sent)
    await session.handle(result(call_id, {"temperature_c": 20}, willContinue=True))
    await until(lambda: turn_completes(sent) == 2)
    assert call_id in session.tool_calls.background  # more results follow: the call stays open
    await session.handle(result(call_id, {"temperature_c": 23}, willContinue=False))
    await until(lambda: turn_completes(sent) == 3)
    assert call_id not in session.tool_calls.background  # the last result closed it
    assert texts(sent) == "Checking.It is 20 now.Now it is 23."
    # Both results were read by the model, each in the request that answered it.
    assert '"temperature_c": 20' in engine.requests[2].messages[-1].content
    assert "more to come" in engine.requests[2].messages[-1].content
    assert '"temperature_c": 23' in engine.requests[3].messages[-1].content
    # A result after the last one is not considered, as the API documents.
    await session.handle(result(call_id, {"temperature_c": 99}))
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 4 and "unknown or finished call id" in caplog.text
    assert not any("99" in t for t in user_texts(session))


async def test_silent_partial_results_go_into_the_context_and_the_last_is_answered_when_idle():
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Checking."),
                          say("Done: 22, 21 then 20."))
    session, sent = await open_session(engine, [SLOW])
    call_id = await started(engine, session, sent)
    for temperature in (22, 21):
        await session.handle(result(call_id, {"temperature_c": temperature}, willContinue=True, scheduling="SILENT"))
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 2 and turn_completes(sent) == 1  # SILENT: no reply
    assert call_id in session.tool_calls.background
    await session.handle(result(call_id, {"temperature_c": 20}, scheduling="WHEN_IDLE"))
    await until(lambda: turn_completes(sent) == 2)
    context = " ".join(m.content for m in engine.requests[2].messages)
    assert all(f'"temperature_c": {t}' in context for t in (22, 21, 20))


async def test_when_idle_waits_for_the_reply_in_progress_and_interrupt_cuts_it():
    story = "A long story about the weather in Lima that takes a while to tell."
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Checking."), say(story),
                          say("It is 25, and here is a long account of why it is so warm today."),
                          say("Breaking: 30."), delay=0.01)
    session, sent = await open_session(engine, [SLOW])
    call_id = await started(engine, session, sent)
    await session.handle(result(call_id, {"temperature_c": 24}, willContinue=True))  # WHEN_IDLE by default
    await until(lambda: len(engine.requests) == 3 and session.replying)
    # WHEN_IDLE while the model speaks: it finishes, then answers.
    await session.handle(result(call_id, {"temperature_c": 25}, willContinue=True, scheduling="WHEN_IDLE"))
    await until(lambda: len(engine.requests) == 4)
    assert story in texts(sent) and not any(m.get("serverContent", {}).get("interrupted") for m in sent)
    assert '"temperature_c": 25' in engine.requests[3].messages[-1].content
    # INTERRUPT while the model speaks: the reply is cut and the result answered at once.
    await until(lambda: "It is" in texts(sent))
    await session.handle(result(call_id, {"temperature_c": 30}, scheduling="INTERRUPT"))
    await until(lambda: texts(sent).endswith("Breaking: 30."))
    assert any(m.get("serverContent", {}).get("interrupted") for m in sent)
    assert "why it is so warm today." not in texts(sent)
    assert '"temperature_c": 30' in engine.requests[4].messages[-1].content
    assert call_id not in session.tool_calls.background


async def test_an_empty_last_result_closes_the_call_and_silent_keeps_the_model_quiet():
    engine = RouterEngine(call("get_current_weather", {"location": "Lima"}), say("Checking."), say("It is 20."))
    session, sent = await open_session(engine, [SLOW])
    call_id = await started(engine, session, sent)
    await session.handle(result(call_id, {"temperature_c": 20}, willContinue=True))
    await until(lambda: turn_completes(sent) == 2)
    await session.handle(result(call_id, {}, willContinue=False, scheduling="SILENT"))
    await asyncio.sleep(0.05)
    assert call_id not in session.tool_calls.background and len(engine.requests) == 3
    assert user_texts(session)[-1] == "[get_current_weather has finished.]"


async def test_will_continue_means_nothing_to_a_blocking_call():
    engine = RouterEngine(call("get_current_weather", {"location": "Oslo"}), say("It is 5."))
    session, sent = await open_session(engine)
    await user(session, "Weather in Oslo?")
    await until(lambda: calls(sent))
    await session.handle(result(calls(sent)[0]["id"], {"temperature_c": 5}, willContinue=True, scheduling="SILENT"))
    await until(lambda: texts(sent) == "It is 5.")  # the first answer is the answer; SILENT is ignored
    assert not session.tool_calls.pending_ids() and not session.tool_calls.background
