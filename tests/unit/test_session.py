"""The conversation layer without sockets: events in, server messages out, scripted engine."""

import asyncio
import json

import pytest

from openlive.engines.llm.base import ChatRequest, Finished, TextDelta
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.session.live_session import LiveSession


class Recorder:
    """The engine the session talks to, remembering every request it got."""

    def __init__(self, inner):
        self.inner, self.name, self.requests = inner, "rec", []

    def stream(self, request: ChatRequest):
        self.requests.append(request)
        return self.inner.stream(request)


def ev(obj):
    return parse_client_frame(json.dumps(obj))


def user(text, complete=True):
    return ev({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": complete}})


async def open_session(setup_extra=None, engine=None):
    sent = []

    async def send(message):
        sent.append(message)

    setup = ev({"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}, **(setup_extra or {})}})
    engine = Recorder(engine or ScriptedEngine("s"))
    session = LiveSession(setup, llm=engine, send=send, session_id="abc")
    await session.start()
    return session, sent, engine


async def settle(session):
    while session.busy:
        await asyncio.sleep(0.001)


def kinds(sent):
    out = []
    for m in sent:
        if "setupComplete" in m:
            out.append("setupComplete")
        sc = m.get("serverContent", {})
        out += [k for k in ("modelTurn", "generationComplete", "interrupted", "turnComplete") if k in sc]
    return out


def text_of(sent):
    return "".join(p.get("text", "") for m in sent for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))


async def test_setup_complete_first_with_session_id():
    _, sent, _ = await open_session()
    assert sent == [{"setupComplete": {"sessionId": "abc"}}]


async def test_reply_streams_over_several_messages_then_generation_and_turn_complete_with_usage():
    session, sent, _ = await open_session()
    await session.handle(user("hello there"))
    await settle(session)
    k = kinds(sent)
    assert k[0] == "setupComplete" and k.count("modelTurn") >= 3
    assert k[-2:] == ["generationComplete", "turnComplete"]
    assert text_of(sent) == "You said: hello there"
    usage = sent[-1]["usageMetadata"]
    assert usage["responseTokenCount"] > 0 and usage["promptTokenCount"] > 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]


async def test_history_and_system_instruction_reach_the_engine():
    session, sent, engine = await open_session({"systemInstruction": {"parts": [{"text": "Be a pirate."}]}})
    await session.handle(user("My name is Ada."))
    await settle(session)
    await session.handle(user("What is my name?"))
    await settle(session)
    messages = [(m.role, m.content) for m in engine.requests[-1].messages]
    assert messages == [("system", "Be a pirate."), ("user", "My name is Ada."),
                        ("assistant", "You said: My name is Ada."), ("user", "What is my name?")]


async def test_turn_complete_false_adds_context_without_a_reply():
    session, sent, engine = await open_session()
    await session.handle(user("I like tea.", complete=False))
    await session.handle(ev({"clientContent": {"turns": [{"role": "model", "parts": [{"text": "Noted."}]}],
                                               "turnComplete": False}}))
    await settle(session)
    assert kinds(sent) == ["setupComplete"] and engine.requests == []
    await session.handle(user("What do I like?"))
    await settle(session)
    roles = [m.role for m in engine.requests[0].messages]
    assert roles == ["user", "assistant", "user"]


async def test_realtime_text_starts_a_reply():
    session, sent, _ = await open_session()
    await session.handle(ev({"realtimeInput": {"text": "ping"}}))
    await settle(session)
    assert text_of(sent) == "You said: ping" and kinds(sent)[-1] == "turnComplete"


async def test_generation_config_becomes_sampling_params():
    session, _, engine = await open_session(
        {"generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.3, "topP": 0.9, "top_k": 20,
                              "maxOutputTokens": 2, "seed": 7}})
    await session.handle(user("a b c d"))
    await settle(session)
    p = engine.requests[0].params
    assert (p.temperature, p.top_p, p.top_k, p.max_tokens, p.seed) == (0.3, 0.9, 20, 2, 7)


async def test_new_client_content_interrupts_and_history_keeps_only_what_was_sent():
    slow = ScriptedEngine("slow", token_delay_ms=30)
    session, sent, engine = await open_session(engine=slow)
    await session.handle(user("one two three four five six seven eight nine ten"))
    await asyncio.sleep(0.1)  # a few words out
    await session.handle(user("stop"))
    n_interrupted = kinds(sent).index("interrupted")
    first_reply = text_of(sent[:n_interrupted])
    assert 0 < len(first_reply) < len("You said: one two three four five six seven eight nine ten")
    # interrupted -> turnComplete, with no generationComplete for the cut turn
    assert kinds(sent)[n_interrupted:n_interrupted + 2] == ["interrupted", "turnComplete"]
    assert "generationComplete" not in kinds(sent)[:n_interrupted]
    await settle(session)
    assert text_of(sent[n_interrupted:]) == "You said: stop"
    history = [(m.role, m.content) for m in engine.requests[-1].messages]
    assert history[1] == ("assistant", first_reply)


async def test_nothing_of_an_interrupted_reply_arrives_after_interrupted():
    session, sent, _ = await open_session(engine=ScriptedEngine("slow", token_delay_ms=5))
    await session.handle(user("a " * 200))
    await asyncio.sleep(0.05)
    await session.handle(user("x"))
    await settle(session)
    after = sent[kinds(sent).index("interrupted") + 1:]
    assert "a a" not in text_of(after)


class Failing:
    name = "failing"

    async def stream(self, request):
        yield TextDelta("partial ")
        raise __import__("openlive.engines.llm.base", fromlist=["EngineError"]).EngineError("boom")


async def test_engine_failure_ends_the_session_with_1011():
    session, sent, _ = await open_session(engine=Failing())
    await session.handle(user("hi"))
    error = await asyncio.wait_for(session.failure, 1)
    assert error.code == 1011 and "Internal error" in error.reason


@pytest.mark.parametrize("modalities", [["TEXT", "AUDIO"], ["VIDEO"]])
async def test_unsupported_modalities_are_refused_at_setup(modalities):
    with pytest.raises(ProtocolError) as info:
        await open_session({"generationConfig": {"responseModalities": modalities}})
    assert info.value.code == 1007


async def test_a_second_setup_is_refused():
    session, _, _ = await open_session()
    with pytest.raises(ProtocolError) as info:
        await session.handle(ev({"setup": {"model": "models/x"}}))
    assert info.value.code == 1007


async def test_close_cancels_a_running_reply():
    session, sent, _ = await open_session(engine=ScriptedEngine("slow", token_delay_ms=50))
    await session.handle(user("a b c d e f g"))
    await asyncio.sleep(0.06)
    await session.aclose()
    count = len(sent)
    await asyncio.sleep(0.15)
    assert len(sent) == count and not session.replying


# ---------------------------------------------------------------------------- speech out

import base64
import math
import threading
import time

from openlive.engines.tts.base import VoiceInfo
from openlive.engines.tts.registry import VoiceRegistry


class ToneVoice:
    """A deterministic voice: 50 ms of tone per character, so durations are predictable."""

    def __init__(self, name, gender="male", languages=None, rate=16000, hz=120):
        self.info = VoiceInfo(name, gender, frozenset(languages) if languages else None, "tone")
        self.sample_rate, self.hz = rate, hz
        self.calls: list[tuple[str, str | None, float]] = []

    def load(self):
        pass

    def synthesize(self, text, language=None):
        self.calls.append((text, language, time.monotonic()))
        n = int(self.sample_rate * 0.05 * len(text))
        samples = [int(8000 * math.sin(2 * math.pi * self.hz * i / self.sample_rate)) for i in range(n)]
        yield b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def registry(*voices):
    return VoiceRegistry({v.info.name: v for v in voices}, voices[0].info.name)


async def open_audio_session(speech_config=None, engine=None, voices=None, extra=None):
    sent = []

    async def send(message):
        sent.append(message)

    gen = {"responseModalities": ["AUDIO"], **({"speechConfig": speech_config} if speech_config else {})}
    setup = ev({"setup": {"model": "models/x", "generationConfig": gen, **(extra or {})}})
    voices = voices or registry(ToneVoice("Puck"), ToneVoice("Kore", "female", hz=220))
    session = LiveSession(setup, llm=Recorder(engine or ScriptedEngine("s")), send=send, session_id="a", voices=voices)
    await session.start()
    return session, sent, voices


def audio_of(sent):
    parts = [p for m in sent for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
    assert all("text" not in p for p in parts)  # speech replies carry no text parts
    blobs = [p["inlineData"] for p in parts]
    assert all(b["mimeType"] == "audio/pcm;rate=24000" for b in blobs)
    return blobs


async def test_audio_reply_is_24k_pcm_over_several_messages_with_output_transcription():
    session, sent, voices = await open_audio_session(extra={"outputAudioTranscription": {}})
    await session.handle(user("hello there, how are you today"))
    await settle(session)
    blobs = audio_of(sent)
    assert len(blobs) >= 3
    pcm = b"".join(b["data"] for b in blobs)
    spoken = "".join(m["serverContent"]["outputTranscription"]["text"] for m in sent
                     if "outputTranscription" in m.get("serverContent", {}))
    assert spoken == "You said: hello there, how are you today"
    # 50 ms per character at 16 kHz, resampled once to 24 kHz: the duration survives resampling.
    seconds = len(pcm) / 2 / 24000
    expected = 0.05 * sum(len(t) for t, _, _ in voices.voices["Puck"].calls)
    assert abs(seconds - expected) < 0.01
    assert kinds(sent)[-2:] == ["generationComplete", "turnComplete"]
    usage = sent[-1]["usageMetadata"]
    assert usage["responseTokensDetails"][0]["modality"] == "AUDIO"
    assert usage["responseTokenCount"] == round(seconds * 25)


async def test_speech_starts_before_the_llm_finishes():
    engine = ScriptedEngine("slow", token_delay_ms=40)
    session, sent, voices = await open_audio_session(engine=engine)
    started = time.monotonic()
    await session.handle(user("one two three, four five six seven eight nine ten eleven twelve"))
    await settle(session)
    finished = time.monotonic()
    first_synth = voices.voices["Puck"].calls[0][2]
    assert len(voices.voices["Puck"].calls) >= 2
    assert first_synth - started < (finished - started) / 2


async def test_unknown_voice_is_refused_at_setup_and_names_are_case_insensitive():
    with pytest.raises(ProtocolError) as info:
        await open_audio_session({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Nobody"}}})
    assert info.value.code == 1007 and "Nobody" in info.value.reason
    session, _, voices = await open_audio_session({"voice_config": {"prebuilt_voice_config": {"voice_name": "kore"}}})
    assert session.voice is voices.voices["Kore"]


async def test_language_selects_a_voice_that_speaks_it_and_tells_the_llm():
    english_only = ToneVoice("Puck", languages={"en"})
    any_male = ToneVoice("Orus")
    session, sent, _ = await open_audio_session({"languageCode": "de-DE"}, voices=registry(english_only, any_male))
    assert session.voice is any_male
    await session.handle(user("hallo"))
    await settle(session)
    assert any_male.calls[0][1] == "de-DE"
    system = session.llm.requests[0].messages[0]
    assert system.role == "system" and system.content.endswith("Always answer in German (Deutsch).")


async def test_interrupted_speech_stops_and_history_keeps_what_was_spoken():
    engine = ScriptedEngine("slow", token_delay_ms=20)
    session, sent, _ = await open_audio_session(engine=engine)
    await session.handle(user("First sentence here. Second sentence here. Third sentence here. Fourth one here."))
    while not any("modelTurn" in m.get("serverContent", {}) for m in sent):
        await asyncio.sleep(0.005)
    await session.handle(user("stop"))
    at = kinds(sent).index("interrupted")
    assert not any("modelTurn" in m.get("serverContent", {}) for m in sent[at:at + 2])
    await settle(session)
    spoken_before = session.llm.requests[-1].messages[-2]
    assert spoken_before.role == "assistant" and "Fourth" not in spoken_before.content
    assert spoken_before.content.startswith("You said:")


async def test_whitespace_realtime_text_after_a_turn_does_not_interrupt_it():
    # Pipecat, for 3.x models, sends realtimeInput.text " " right after its clientContent turn.
    session, sent, _ = await open_session(engine=ScriptedEngine("slow", token_delay_ms=20))
    await session.handle(user("one two three four five"))
    await session.handle(ev({"realtimeInput": {"text": " "}}))
    await settle(session)
    assert "interrupted" not in kinds(sent)
    assert text_of(sent) == "You said: one two three four five"
    assert kinds(sent).count("turnComplete") == 1 and "usageMetadata" in sent[-1]


async def test_every_turn_complete_carries_usage_metadata_even_after_an_interruption():
    session, sent, _ = await open_session(engine=ScriptedEngine("slow", token_delay_ms=30))
    await session.handle(user("one two three four five six seven eight nine ten"))
    await asyncio.sleep(0.1)
    await session.handle(user("stop"))
    await settle(session)
    completes = [m for m in sent if m.get("serverContent", {}).get("turnComplete")]
    assert len(completes) == 2
    for message in completes:
        usage = message["usageMetadata"]
        assert usage["promptTokenCount"] > 0 and usage["responseTokenCount"] > 0
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]


async def test_initial_history_in_client_content_is_taken_in_without_a_reply():
    for spelling in ("initialHistoryInClientContent", "initial_history_in_client_content"):
        session, sent, engine = await open_session({"historyConfig": {spelling: True}})
        await session.handle(ev({"clientContent": {"turns": [
            {"role": "user", "parts": [{"text": "My name is Ada."}]},
            {"role": "model", "parts": [{"text": "Nice to meet you, Ada."}]}], "turnComplete": True}}))
        await settle(session)
        assert kinds(sent) == ["setupComplete"] and not engine.requests  # history: no model call
        await session.handle(user("What is my name?"))  # after the history, a turn is answered
        await settle(session)
        assert kinds(sent)[-1] == "turnComplete"
        said = [m.content for m in engine.requests[-1].messages]
        assert said[-3:] == ["My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]
    # History that ends with the user, then the 3.x trigger (whitespace realtime text): answered.
    session, sent, engine = await open_session({"historyConfig": {"initialHistoryInClientContent": True}})
    await session.handle(user("Hi there."))
    await settle(session)
    assert not engine.requests
    await session.handle(ev({"realtimeInput": {"text": " "}}))
    await settle(session)
    assert engine.requests and kinds(sent)[-1] == "turnComplete"
    await session.handle(ev({"realtimeInput": {"text": " "}}))  # answered already: nothing more
    await settle(session)
    assert len(engine.requests) == 1
    session, sent, engine = await open_session()  # without historyConfig a complete turn is answered
    await session.handle(user("Hello"))
    await settle(session)
    assert engine.requests
