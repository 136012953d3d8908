"""usageMetadata by modality, as the Live API counts it, in the session layer without sockets.

Each turnComplete says what the model read (promptTokensDetails: TEXT by the tokenizer, AUDIO
at 25 tokens a second of speech, IMAGE at 258 tokens a frame, 66 at MEDIA_RESOLUTION_LOW), what
it sent (responseTokensDetails: TEXT as written, AUDIO at 25 tokens a second of speech), the
built-in tools' results it read (toolUsePromptTokenCount) and the part of the prompt it read from
its prompt cache; every count is the sum of its details and the total is prompt + response +
tool use."""

from __future__ import annotations

import asyncio

import pytest

from openlive.engines.llm.base import Finished, estimate_tokens
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.engines.search.base import SearchResult
from openlive.engines.vision.service import SharedVision
from openlive.protocol import server_messages as sm
from openlive.session.context import Reading
from openlive.session.live_session import LiveSession, Persistence
from openlive.session.resumption import Snapshot
from openlive.store import open_store

from .test_session import Recorder, ToneVoice, ev, registry
from .test_speech_in import EnergyVAD, FakeASR, audio_msg, silence, tone
from .test_tools import RouterEngine, say
from .test_vision_session import Labeller, b64, frame

SECONDS_PER_BYTE_16K = 1 / 32000
SECONDS_PER_BYTE_24K = 1 / 48000


def user(text):
    return ev({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}})


def video(data: bytes):
    return ev({"realtimeInput": {"video": {"mimeType": "image/png", "data": b64(data)}}})


def completes(sent):
    return [m for m in sent if m.get("serverContent", {}).get("turnComplete")]


def details(usage, key):
    return {d["modality"]: d["tokenCount"] for d in usage[key]}


def consistent(usage):
    """Each count is the sum of its details; the total adds prompt, response and tool use."""
    assert usage["promptTokenCount"] == sum(details(usage, "promptTokensDetails").values())
    assert usage["responseTokenCount"] == sum(details(usage, "responseTokensDetails").values())
    tool = usage.get("toolUsePromptTokenCount", 0)
    if tool:
        assert tool == sum(details(usage, "toolUsePromptTokensDetails").values())
    if "cachedContentTokenCount" in usage:
        cached = details(usage, "cacheTokensDetails")
        assert usage["cachedContentTokenCount"] == sum(cached.values()) <= usage["promptTokenCount"]
        prompt = details(usage, "promptTokensDetails")
        assert all(n <= prompt[m] for m, n in cached.items())
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"] + tool
    return usage


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
async def vision():
    shared = SharedVision(Labeller())
    await shared.load()
    yield shared
    shared.close()


async def open_session(*, audio_out=False, engine=None, vision=None, search=None, persistence=None, resumed=None,
                       **setup_extra):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    gen = {"responseModalities": ["AUDIO" if audio_out else "TEXT"], **setup_extra.pop("generation", {})}
    setup = ev({"setup": {"model": "models/x", "generationConfig": gen, **setup_extra}})
    session = LiveSession(setup, llm=Recorder(engine or ScriptedEngine("s")), send=send, session_id="u",
                          asr=FakeASR("what is in the picture"), vad_factory=EnergyVAD, vision=vision,
                          search=search, voices=registry(ToneVoice("Puck")) if audio_out else None,
                          persistence=persistence, resumed=resumed)
    await session.start()
    return session, sent


async def speak(session, pcm, chunk=1280):
    for i in range(0, len(pcm), chunk):
        await session.handle(audio_msg(pcm[i:i + chunk]))


def audio_seconds(sent_since):
    return sum(len(p["inlineData"]["data"]) for m in sent_since
               for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []) if "inlineData" in p) \
        * SECONDS_PER_BYTE_24K


async def test_a_typed_turn_reads_text_and_writes_text():
    session, sent = await open_session(systemInstruction={"parts": [{"text": "Be brief and kind."}]})
    await session.handle(user("hello there"))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    # The prompt is the context as the conversation counts it: the instruction and the words.
    assert details(usage, "promptTokensDetails") == {"TEXT": estimate_tokens("Be brief and kind.")
                                                     + estimate_tokens("hello there")}
    assert details(usage, "responseTokensDetails") == {"TEXT": len("You said: hello there".split())}
    assert "toolUsePromptTokenCount" not in usage and "cachedContentTokenCount" not in usage


async def test_speech_in_is_audio_at_25_tokens_a_second_and_its_transcript_is_not_text():
    session, sent = await open_session()
    await speak(session, silence(0.3) + tone(1.2) + silence(0.7))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    prompt = details(usage, "promptTokensDetails")
    turn = session.conversation.history[0]
    assert prompt["AUDIO"] == turn.audio_tokens == turn.tokens
    # The utterance as cut: the 1.2 s of speech, its preroll and a short tail.
    assert 25 * 1.2 <= prompt["AUDIO"] <= 25 * 1.9
    assert set(prompt) == {"AUDIO"}  # no system prompt here, and the transcript is not read as text
    assert details(usage, "responseTokensDetails") == {"TEXT": len("You said: what is in the picture".split())}


@pytest.mark.parametrize("resolution, per_frame", [(None, 258), ("MEDIA_RESOLUTION_MEDIUM", 258),
                                                   ("MEDIA_RESOLUTION_HIGH", 258), ("MEDIA_RESOLUTION_LOW", 66)])
async def test_video_frames_are_image_tokens_by_media_resolution(vision, resolution, per_frame):
    extra = {"generation": {"mediaResolution": resolution}} if resolution else {}
    session, sent = await open_session(vision=vision, **extra)
    await session.handle(video(frame(12)))
    await session.handle(video(frame(40)))
    await session.handle(user("What does the sign say?"))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    prompt = details(usage, "promptTokensDetails")
    assert prompt["IMAGE"] == 2 * per_frame
    assert set(prompt) == {"TEXT", "IMAGE"} and prompt["TEXT"] > 0  # the words and the camera's notes
    # Frames are listed before audio, after text, in Google's MediaModality order.
    assert [d["modality"] for d in usage["promptTokensDetails"]] == ["TEXT", "IMAGE"]


async def test_a_spoken_reply_is_audio_at_25_tokens_a_second_and_is_read_as_audio_next_turn():
    session, sent = await open_session(audio_out=True)
    await session.handle(user("hello there, how are you"))
    await until(lambda: completes(sent))
    first = consistent(completes(sent)[0]["usageMetadata"])
    spoken = audio_seconds(sent)
    assert details(first, "responseTokensDetails") == {"AUDIO": round(spoken * 25)}
    assert first["candidatesTokensDetails"] == first["responseTokensDetails"]
    mark = len(sent)
    await session.handle(user("and then?"))
    await until(lambda: len(completes(sent)) == 2)
    second = consistent(completes(sent)[1]["usageMetadata"])
    # The model's earlier spoken reply is in the context as speech, by its length.
    assert details(second, "promptTokensDetails")["AUDIO"] == round(spoken * 25)
    assert details(second, "responseTokensDetails") == {"AUDIO": round(audio_seconds(sent[mark:]) * 25)}


async def test_one_session_with_text_speech_and_frames_reports_each_modality(vision):
    session, sent = await open_session(audio_out=True, vision=vision)
    await session.handle(user("Hello."))
    await until(lambda: len(completes(sent)) == 1)
    reply1 = audio_seconds(sent)
    mark = len(sent)
    speech = silence(0.3) + tone(1.0) + silence(0.7)
    await speak(session, speech)
    await until(lambda: len(completes(sent)) == 2)
    spoken_turn = consistent(completes(sent)[1]["usageMetadata"])
    heard = session.conversation.history[2].audio_tokens  # the user's speech as cut from the stream
    assert 25 * 1.0 <= heard <= 25 * 1.7
    assert details(spoken_turn, "promptTokensDetails")["AUDIO"] == heard + round(reply1 * 25)
    reply2 = audio_seconds(sent[mark:])
    mark = len(sent)
    await session.handle(video(frame(7)))
    await session.handle(user("What does the sign say?"))
    await until(lambda: len(completes(sent)) == 3)
    usage = consistent(completes(sent)[2]["usageMetadata"])
    prompt = details(usage, "promptTokensDetails")
    assert set(prompt) == {"TEXT", "IMAGE", "AUDIO"}
    assert prompt["IMAGE"] == 258
    assert prompt["AUDIO"] == heard + round(reply1 * 25) + round(reply2 * 25)
    assert details(usage, "responseTokensDetails") == {"AUDIO": round(audio_seconds(sent[mark:]) * 25)}
    # Everything the model read is the context the session counts (and the window holds).
    assert usage["promptTokenCount"] == session.conversation.tokens - round(audio_seconds(sent[mark:]) * 25)


async def test_an_interrupted_spoken_reply_counts_what_was_said():
    session, sent = await open_session(audio_out=True, engine=ScriptedEngine("slow", token_delay_ms=30))
    await session.handle(user("one two three four five six seven eight nine ten"))
    await until(lambda: any("modelTurn" in m.get("serverContent", {}) for m in sent))
    await session.handle(user("stop"))
    await until(lambda: len(completes(sent)) == 2)
    cut = completes(sent)[0]
    said = audio_seconds(sent[:sent.index(cut)])
    usage = consistent(cut["usageMetadata"])
    assert details(usage, "responseTokensDetails") == {"AUDIO": round(said * 25)}
    assert usage["promptTokenCount"] > 0


async def test_a_resumed_conversation_still_reads_its_earlier_speech_as_audio(tmp_path):
    store = await open_store("sqlite", path=tmp_path / "state.sqlite3")
    session, sent = await open_session(audio_out=True, persistence=Persistence(store, "owner"), sessionResumption={})
    await speak(session, silence(0.3) + tone(1.0) + silence(0.7))
    await until(lambda: completes(sent))
    heard, said = session.conversation.history[0].audio_tokens, session.conversation.history[1].audio_tokens
    assert heard > 0 and said > 0
    snapshot = Snapshot.from_bytes(session.checkpoints.snapshot().to_bytes())
    await session.aclose()
    resumed, sent = await open_session(audio_out=True, persistence=Persistence(store, "owner"), resumed=snapshot)
    await resumed.handle(user("go on"))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    assert details(usage, "promptTokensDetails")["AUDIO"] == heard + said
    await resumed.aclose()
    await store.aclose()


class Found:
    async def search(self, query, *, limit=3):
        return [SearchResult(title="Weather in Lima", url="https://example.org/lima",
                             snippet="Lima is 20 degrees and cloudy today.")]


async def test_a_search_result_the_model_read_is_tool_use_not_prompt():
    engine = RouterEngine({"tool": "search", "args": {"query": "weather in Lima"}, "reply": ""}, say("It is 20."))
    session, sent = await open_session(engine=engine, tools=[{"googleSearch": {}}])
    await session.handle(user("What is the weather in Lima?"))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    results = [t for t in session.conversation.history if t.tool_tokens]
    assert len(results) == 1
    assert usage["toolUsePromptTokenCount"] == results[0].tool_tokens > 0
    assert details(usage, "toolUsePromptTokensDetails") == {"TEXT": results[0].tool_tokens}
    # The prompt and the tool use together are the context the answering round read.
    model_reply = session.conversation.history[-1].tokens
    assert usage["promptTokenCount"] + usage["toolUsePromptTokenCount"] == session.conversation.tokens - model_reply


class Cached(ScriptedEngine):
    """An LLM server that says three quarters of each prompt came from its prompt cache."""

    async def stream(self, request):
        async for chunk in super().stream(request):
            if isinstance(chunk, Finished):
                chunk = Finished(prompt_tokens=100, completion_tokens=chunk.completion_tokens, cached_tokens=75)
            yield chunk


async def test_the_cached_part_is_the_prompts_beginning_by_modality(vision):
    session, sent = await open_session(engine=Cached("c"), vision=vision,
                                       systemInstruction={"parts": [{"text": "Be brief."}]})
    await session.handle(video(frame(3)))
    await session.handle(user("What does the sign say?"))
    await until(lambda: completes(sent))
    usage = consistent(completes(sent)[-1]["usageMetadata"])
    cached = usage["cachedContentTokenCount"]
    assert cached == round(usage["promptTokenCount"] * 0.75)
    # The system prompt comes first, then the frame, then the words: a cache holds the beginning.
    first, system = session.conversation.reading_now().pieces[0]  # the instruction, the camera's guidance
    assert first == "TEXT" and system > estimate_tokens("Be brief.")
    assert details(usage, "cacheTokensDetails") == {"TEXT": system, "IMAGE": min(258, cached - system)}


def test_cached_share_is_taken_from_the_beginning_in_reading_order():
    reading = Reading({"TEXT": 30, "IMAGE": 258, "AUDIO": 50}, {},
                      [("TEXT", 20), ("IMAGE", 258), ("TEXT", 10), ("AUDIO", 50)])
    assert reading.cached(0.0) == {}
    assert reading.cached(100 / 338) == {"TEXT": 20, "IMAGE": 80}
    assert reading.cached(1.0) == {"TEXT": 30, "IMAGE": 258, "AUDIO": 50}
    assert reading.cached(2.0) == reading.cached(1.0)


def test_usage_on_the_wire_lists_modalities_in_order_and_only_those_counted():
    usage = sm.Usage(prompt={"AUDIO": 50, "TEXT": 12, "IMAGE": 0}, response={"AUDIO": 0},
                     tool_use={"TEXT": 7}, cached={"TEXT": 12})
    wire = usage.to_wire()
    assert wire["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": 12},
                                           {"modality": "AUDIO", "tokenCount": 50}]
    # A spoken reply that said nothing still says it was speech.
    assert wire["responseTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 0}]
    assert wire["totalTokenCount"] == 62 + 0 + 7
    assert wire["toolUsePromptTokenCount"] == 7 and wire["cachedContentTokenCount"] == 12
    assert wire["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 12}]
