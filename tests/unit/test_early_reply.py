"""Starting the reply in the pause: the LLM begins on the words heard before the turn has ended,
nothing reaches the client early, and speech that resumes stops it."""

import asyncio

import pytest

from openlive import metrics
from openlive.engines.llm.base import ChatMessage, ChatRequest, EngineError, Finished, TextDelta
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.session.context import Conversation, ContextPolicy
from openlive.session.early_reply import EarlyStart
from openlive.session.live_session import LiveSession
from tests.unit.test_speech_in import (EnergyVAD, FakeASR, FakeTextModel, FakeTurnModel, contents, frame, silence,
                                       stream, tone)


class Watched:
    """A slow scripted engine that remembers each request, when it came, and whether it was cut off."""

    def __init__(self, sent):
        self.inner, self.name, self.sent = ScriptedEngine("s", token_delay_ms=30), "watched", sent
        self.requests: list[dict] = []

    def stream(self, request: ChatRequest):
        record = {"request": request, "turn_ended": bool(contents(self.sent, "inputTranscription")),
                  "finished": False, "closed": False}
        self.requests.append(record)
        return self._stream(request, record)

    async def _stream(self, request, record):
        try:
            async for chunk in self.inner.stream(request):
                yield chunk
            record["finished"] = True
        finally:
            record["closed"] = True


async def until(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def session_with(audio_p, text_p, early=True, text_model=None):
    sent = []

    async def send(m):
        sent.append(m)

    from openlive.session.end_of_turn import EndOfTurnPolicy

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"]},
                             "inputAudioTranscription": {}}})
    engine = Watched(sent)
    session = LiveSession(setup, llm=engine, send=send, asr=FakeASR(), vad_factory=EnergyVAD,
                          turn_model=FakeTurnModel(audio_p), text_turn_model=text_model or FakeTextModel(text_p),
                          turn_policy=EndOfTurnPolicy(early_reply=early))
    await session.start()
    return session, sent, engine


async def quiet(session, sent, seconds):
    """Real-time-ish silence: 40 ms chunks, with the loop let run between them."""
    for _ in range(int(seconds / 0.04)):
        await stream(session, silence(0.04))
        await asyncio.sleep(0.015)


def early_count(outcome):
    return metrics.EARLY_REPLIES.labels(outcome)._value.get()


async def test_the_reply_takes_the_llm_stream_started_in_the_pause():
    used = early_count("used")
    # The models disagree: the turn ends only after 1.5 s of quiet, and the LLM starts well before.
    session, sent, engine = await session_with(0.95, 0.0)
    await stream(session, tone(1.0))
    while not contents(sent, "turnComplete"):
        await quiet(session, sent, 0.2)
    await until(lambda: contents(sent, "turnComplete"))
    assert len(engine.requests) == 1  # the reply asked for nothing more: it took the early stream
    assert not engine.requests[0]["turn_ended"]  # started in the pause
    # Nothing of it reached the client before the turn ended.
    order = [next(iter(m["serverContent"])) for m in sent if "serverContent" in m]
    assert order.index("inputTranscription") < order.index("modelTurn")
    assert "".join(p["text"] for c in contents(sent, "modelTurn") for p in c["parts"]) == "You said: hello there"
    assert early_count("used") == used + 1
    # The words went into the history once, as the user's turn.
    assert [(t.role, t.text) for t in session.conversation.history] == [("user", "hello there"),
                                                                       ("model", "You said: hello there")]


async def test_the_llm_starts_in_the_pause_only_once_the_text_model_has_read_the_words():
    # Both at once on 2 cores held the end-of-turn verdict up; the reading is the shorter job.
    class Held(FakeTextModel):
        def __init__(self):
            super().__init__(0.0)
            self.release = asyncio.Event()

        async def probability(self, transcript):
            self.read.append(transcript)
            await self.release.wait()
            return self.p

    text = Held()
    session, sent, engine = await session_with(0.95, 0.0, text_model=text)
    await stream(session, tone(1.0))
    for _ in range(40):
        if text.read:
            break
        await quiet(session, sent, 0.04)
    assert text.read == ["hello there"]  # the transcript is ready and being read
    await quiet(session, sent, 0.2)
    assert not engine.requests  # the LLM waits for that reading
    text.release.set()
    for _ in range(40):
        if engine.requests:
            break
        await quiet(session, sent, 0.04)
    assert engine.requests and not engine.requests[0]["turn_ended"]  # then starts, still in the pause
    while not contents(sent, "turnComplete"):
        await quiet(session, sent, 0.2)
    assert len(engine.requests) == 1  # and the reply took that stream


async def test_speech_that_resumes_stops_the_early_stream_and_the_turn_gets_a_fresh_one():
    dropped = early_count("dropped")
    session, sent, engine = await session_with(0.95, 0.0)  # a disputed pause: 1.5 s before the turn ends
    await stream(session, tone(0.8))
    for _ in range(40):
        await quiet(session, sent, 0.04)
        if engine.requests:
            break
    assert engine.requests and not contents(sent, "inputTranscription")
    await stream(session, tone(0.8))  # the user goes on
    await until(lambda: engine.requests[0]["closed"])
    assert not engine.requests[0]["finished"]  # cut off: the LLM server is told to stop
    assert early_count("dropped") >= dropped + 1
    while not contents(sent, "turnComplete"):
        await quiet(session, sent, 0.2)
    assert len(contents(sent, "inputTranscription")) == 1
    assert engine.requests[-1]["finished"]
    assert len(contents(sent, "generationComplete")) == 1  # one reply, and only to the whole turn


async def test_switched_off_the_llm_waits_for_the_end_of_the_turn():
    session, sent, engine = await session_with(0.95, 0.0, early=False)
    await stream(session, tone(1.0))
    while not contents(sent, "turnComplete"):
        await quiet(session, sent, 0.2)
    assert [r["turn_ended"] for r in engine.requests] == [True]


def request(*texts):
    return ChatRequest(tuple(ChatMessage("user", t) for t in texts))


async def test_a_different_request_gets_nothing_and_cuts_the_early_stream_off():
    closed = []

    class Engine:
        name = "e"

        async def stream(self, request):
            try:
                yield TextDelta("x")
                await asyncio.sleep(30)
            finally:
                closed.append(request)

    early = EarlyStart(Engine())
    early.start(request("hello"))
    await asyncio.sleep(0.01)
    assert early.take(request("hello there")) is None
    await until(lambda: closed)
    assert not early.pending and early.take(request("hello")) is None


async def test_the_taken_stream_replays_what_came_before_and_raises_what_failed():
    class Engine:
        name = "e"

        async def stream(self, request):
            yield TextDelta("one ")
            yield TextDelta("two")
            raise EngineError("the LLM server went away")

    early = EarlyStart(Engine())
    early.start(request("hi"))
    await asyncio.sleep(0.02)  # all of it came (and failed) before the reply asks
    taken = early.take(request("hi"))
    got = []
    with pytest.raises(EngineError):
        async for chunk in taken:
            got.append(chunk.text)
    assert got == ["one ", "two"]


async def test_a_reply_that_stops_reading_stops_the_early_stream():
    closed = []

    class Engine:
        name = "e"

        async def stream(self, request):
            try:
                for i in range(1000):
                    yield TextDelta(f"{i} ")
                    await asyncio.sleep(0.01)
                yield Finished(1, 1000)
            finally:
                closed.append(True)

    early = EarlyStart(Engine())
    early.start(request("hi"))
    taken = early.take(request("hi"))
    async for _ in taken:
        break
    await taken.aclose()
    await until(lambda: closed)


@pytest.mark.parametrize("history", [[], [("user", "earlier"), ("model", "yes")], [("model", "hi"), ("user", "[camera] a")]])
def test_a_tentative_user_turn_reads_as_the_appended_one_and_leaves_the_history_alone(history):
    from openlive.engines.llm.base import SamplingParams

    def conversation():
        c = Conversation(system_instruction="Be brief.", tools=None, policy=ContextPolicy.from_setup(None, 4096),
                         modality="TEXT", language=None)
        for role, text in history:
            c.append(role, text)
        return c

    params = SamplingParams()
    tentative = conversation()
    before = [(t.role, t.text) for t in tentative.history]
    with tentative.tentative_user_turn("what now?"):
        seen = tentative.chat_request(params)
    assert [(t.role, t.text) for t in tentative.history] == before
    appended = conversation()
    appended.append("user", "what now?")
    assert seen == appended.chat_request(params)
