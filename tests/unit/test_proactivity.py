"""Proactive audio: turns not said to the assistant get no reply but stay in the conversation."""

import asyncio
import json

import httpx
import pytest

from openlive.engines.llm.base import (ChatMessage, ChatRequest, SamplingParams, yes_no_share, yes_or_no,
                                       yes_probability)
from openlive.engines.llm.openai_compat import OpenAICompatEngine
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.protocol.messages import Setup, inert_fields
from openlive.session import proactivity
from openlive.session.end_of_turn import EndOfTurnPolicy
from openlive.session.live_session import LiveSession
from openlive.session.options import SessionOptions
from tests.unit.test_early_reply import quiet
from tests.unit.test_speech_in import (EnergyVAD, FakeASR, FakeTextModel, FakeTurnModel, contents, frame, stream,
                                       tone)

SIDE_TALK = "Honey, did you remember to feed the cat?"
QUESTION = "What time is it in Tokyo?"
# The judge's questions end "Answer yes or no."; the words they are about are in the same message.
SCRIPT = """
[[reply]]
match = "feed the cat[\\\\s\\\\S]*Answer yes or no"
text = "no"

[[reply]]
match = "Answer yes or no"
text = "yes"
"""
PROACTIVE = {"proactivity": {"proactiveAudio": True}}


@pytest.fixture
def scripted(tmp_path):
    path = tmp_path / "script.toml"
    path.write_text(SCRIPT)
    return lambda **kw: ScriptedEngine("s", path, **kw)


class Counting:
    """An engine with its own `yes_probability` (like the OpenAI-compatible ones): counts the questions."""

    def __init__(self, inner):
        self.inner, self.name, self.asked = inner, "counting", []

    def stream(self, request: ChatRequest):
        return self.inner.stream(request)

    async def yes_probability(self, request: ChatRequest):
        words = request.messages[-1].content
        self.asked.append(words)
        await asyncio.sleep(0.01)
        return 0.02 if "feed the cat" in words else 0.98


async def text_session(engine, extra=None, modality="TEXT"):
    sent = []

    async def send(message):
        sent.append(message)

    setup = frame({"setup": {"model": "models/gemini-3.1-flash-live-preview",
                             "generationConfig": {"responseModalities": [modality]}, **(extra or {})}})
    session = LiveSession(setup, llm=engine, send=send, session_id="p")
    await session.start()
    return session, sent


async def settle(session):
    for _ in range(4000):
        if not session.busy:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the session stayed busy")


def said(sent):
    return "".join(p.get("text", "") for t in contents(sent, "modelTurn") for p in t["parts"])


def realtime_text(text):
    return frame({"realtimeInput": {"text": text}})


# ---------------------------------------------------------------------------------------------
# setup


def test_proactive_audio_is_acted_on_and_proactive_video_is_still_inert():
    setup = Setup.model_validate({"model": "m", "proactivity": {"proactive_audio": True, "proactiveVideo": True}})
    assert SessionOptions.from_setup(setup).proactive_audio is True
    assert list(inert_fields(setup)) == ["setup.proactivity.proactive_video"]
    assert SessionOptions.from_setup(Setup.model_validate({"model": "m"})).proactive_audio is False
    assert SessionOptions.from_setup(Setup.model_validate(
        {"model": "m", "proactivity": {"proactiveAudio": False}})).proactive_audio is False


# ---------------------------------------------------------------------------------------------
# the session layer, realtime text


async def test_side_talk_gets_no_reply_but_stays_in_the_history(scripted):
    session, sent = await text_session(scripted(), PROACTIVE)
    await session.handle(realtime_text(QUESTION))
    await settle(session)
    assert said(sent) == f"You said: {QUESTION}"
    n = len(sent)
    await session.handle(realtime_text(SIDE_TALK))
    await settle(session)
    rest = sent[n:]
    assert contents(rest, "modelTurn") == [] and contents(rest, "generationComplete") == []
    closing = [m for m in rest if "turnComplete" in m.get("serverContent", {})]
    assert len(closing) == 1
    assert closing[0]["serverContent"]["turnCompleteReason"] == "RESPONSE_REJECTED"
    assert closing[0]["usageMetadata"]["promptTokenCount"] > 0  # it was taken in, and counted
    assert closing[0]["usageMetadata"]["responseTokenCount"] == 0
    assert [(t.role, t.text) for t in session.conversation.history] == [
        ("user", QUESTION), ("model", f"You said: {QUESTION}"), ("user", proactivity.OVERHEARD + SIDE_TALK)]
    # The words are context for what comes next: the next addressed turn is answered with them in view.
    await session.handle(realtime_text("And in Paris?"))
    await settle(session)
    assert said(sent[n:]) == f"You said: {proactivity.OVERHEARD}{SIDE_TALK}\nAnd in Paris?"
    await session.aclose()


async def test_without_proactive_audio_everything_is_answered(scripted):
    session, sent = await text_session(scripted())
    await session.handle(realtime_text(SIDE_TALK))
    await settle(session)
    assert said(sent) == f"You said: {SIDE_TALK}"
    assert all("turnCompleteReason" not in m.get("serverContent", {}) for m in sent)
    await session.aclose()


async def test_client_content_is_the_app_asking_and_is_always_answered(scripted):
    engine = Counting(scripted())
    session, sent = await text_session(engine, PROACTIVE)
    await session.handle(frame({"clientContent": {"turns": [{"role": "user", "parts": [{"text": SIDE_TALK}]}],
                                                  "turnComplete": True}}))
    await settle(session)
    assert said(sent) == f"You said: {SIDE_TALK}"
    assert engine.asked == []
    await session.aclose()


async def test_an_engine_with_yes_probability_is_asked_each_question_once_a_turn(scripted):
    engine = Counting(scripted())
    session, sent = await text_session(engine, PROACTIVE)
    await session.handle(realtime_text(SIDE_TALK))
    await settle(session)
    assert said(sent) == "" and len(engine.asked) == len(proactivity.QUESTIONS)
    await session.handle(realtime_text(QUESTION))
    await settle(session)
    assert said(sent).endswith(QUESTION) and len(engine.asked) == 2 * len(proactivity.QUESTIONS)
    await session.aclose()


class Broken:
    name = "broken"

    def __init__(self, inner):
        self.inner = inner

    def stream(self, request):
        return self.inner.stream(request)

    async def yes_probability(self, request):
        raise RuntimeError("no log-probs today")


async def test_a_failing_judgment_answers_the_turn(scripted):
    session, sent = await text_session(Broken(scripted()), PROACTIVE)
    await session.handle(realtime_text(SIDE_TALK))
    await settle(session)
    assert said(sent) == f"You said: {SIDE_TALK}"
    await session.aclose()


# ---------------------------------------------------------------------------------------------
# speech: judged in the pause, the turn ends, the judgment is taken


async def speech_session(engine, asr_text):
    sent = []

    async def send(m):
        sent.append(m)

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"]},
                             "inputAudioTranscription": {}, **PROACTIVE}})
    # The end-of-turn models disagree, so the turn ends only after a long quiet: the pause's
    # judgment is made well before.
    session = LiveSession(setup, llm=engine, send=send, asr=FakeASR(asr_text), vad_factory=EnergyVAD,
                          turn_model=FakeTurnModel(0.95), text_turn_model=FakeTextModel(0.0),
                          turn_policy=EndOfTurnPolicy())
    await session.start()
    return session, sent


async def until(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_spoken_side_talk_is_transcribed_but_not_answered(scripted):
    engine = Counting(scripted())
    session, sent = await speech_session(engine, SIDE_TALK)
    await stream(session, tone(1.0))
    await quiet(session, sent, 2.5)
    await until(lambda: contents(sent, "turnComplete"))
    await settle(session)
    assert contents(sent, "inputTranscription") == [{"text": SIDE_TALK, "finished": True}]
    assert said(sent) == "" and contents(sent, "generationComplete") == []
    closing = [m["serverContent"] for m in sent if "turnComplete" in m.get("serverContent", {})]
    assert [c.get("turnCompleteReason") for c in closing] == ["RESPONSE_REJECTED"]
    assert [(t.role, t.text) for t in session.conversation.history] == [("user", proactivity.OVERHEARD + SIDE_TALK)]
    # Judged once, in the pause: the turn took that judgment rather than asking again.
    assert len(engine.asked) == len(proactivity.QUESTIONS)
    await session.aclose()


async def test_a_spoken_question_is_answered(scripted):
    engine = Counting(scripted())
    session, sent = await speech_session(engine, QUESTION)
    await stream(session, tone(1.0))
    await quiet(session, sent, 2.5)
    await until(lambda: contents(sent, "turnComplete"))
    await settle(session)
    assert said(sent) == f"You said: {QUESTION}"
    assert len(engine.asked) == len(proactivity.QUESTIONS)
    await session.aclose()


# ---------------------------------------------------------------------------------------------
# the engines' side


def test_yes_share_reads_the_words_in_any_case_and_spacing():
    assert yes_no_share([("Yes", -0.1), (" no", -2.3), ("The", -1.0)]) == pytest.approx(0.9 / 1.0, abs=0.01)
    assert yes_no_share([("The", -0.1)]) is None
    assert (yes_or_no('"yes"'), yes_or_no("No."), yes_or_no("maybe")) == (1.0, 0.0, None)


def openai_answer(top, content="yes"):
    logprobs = {"content": [{"token": content, "logprob": -0.1, "top_logprobs": [
        {"token": t, "logprob": lp} for t, lp in top]}]} if top is not None else None
    return {"choices": [{"message": {"role": "assistant", "content": content}, "logprobs": logprobs}]}


@pytest.mark.parametrize("answer, expected", [
    (openai_answer([("no", -0.2231), ("yes", -1.6094)]), 0.2 / 1.0),  # P(no)=0.8, P(yes)=0.2
    (openai_answer(None, content="no"), 0.0),  # a server without log-probs: the word it wrote
    (openai_answer([("Sure", -0.1)], content="Sure"), None),
])
async def test_openai_compatible_engines_give_p_yes_from_one_tokens_log_probs(answer, expected):
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    engine = OpenAICompatEngine("remote", "http://llm.test/v1")
    engine._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    request = ChatRequest((ChatMessage("user", "Was that said to you? Answer yes or no."),),
                          SamplingParams(temperature=0, max_tokens=1))
    p = await yes_probability(engine, request)
    assert p == (pytest.approx(expected, abs=0.01) if expected is not None else None)
    assert bodies[0]["max_tokens"] == 1 and bodies[0]["logprobs"] is True and bodies[0]["stream"] is False
    await engine.aclose()


async def test_an_engine_without_yes_probability_writes_the_word_under_a_schema(scripted):
    seen = []

    class Plain:
        name = "plain"

        def stream(self, request):
            seen.append((request.json_schema, request.params.max_tokens))
            return scripted().stream(request)

    request = proactivity.judge_requests(SIDE_TALK, None)[0]
    assert request.params.max_tokens == 1
    assert await yes_probability(Plain(), request) == 0.0
    # Room for the JSON string's quotes around the word.
    assert seen == [({"type": "string", "enum": ["yes", "no"]}, 4)]


def test_the_questions_begin_with_the_fixed_part_and_bound_what_is_read():
    long = "word " * 1000
    first, second = proactivity.judge_requests(long, long)
    assert first.messages[0] == second.messages[0] and first.messages[0].content == proactivity.SYSTEM
    shared = first.messages[1].content[: -len(proactivity.QUESTIONS[0])]
    assert second.messages[1].content.startswith(shared)  # the second reads only its question anew
    assert len(first.messages[1].content) < proactivity.MAX_WORDS_CHARS + proactivity.MAX_LAST_CHARS + 200
