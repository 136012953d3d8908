"""Acceptance (issue 4): a person talks, the server hears when they finish, answers in speech,
and stops when they talk over it. Real recorded speech, streamed at real-time pace."""

from __future__ import annotations

import ast
import asyncio
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from google import genai
from google.genai import errors, types

from tests.support.audio import FIRST_SENTENCE_TEXT, first_sentence_16k
from tests.support.wer import wer

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data"
UTTERANCE = first_sentence_16k()  # real speech, one sentence: one turn
UTTERANCE_TEXT = FIRST_SENTENCE_TEXT


# Silence that ends any turn: the end-of-turn model gives a sentence it thinks unfinished (this
# recording stops mid-passage, and sounds it) up to 2.5 s before the turn ends anyway.
END_S = 3.0


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(16000 * seconds)


async def stream(session, pcm: bytes, chunk_ms: int = 40) -> None:
    """Send like a microphone: small chunks, at real-time pace."""
    step = 32 * chunk_ms  # bytes of 16-bit 16 kHz audio
    start = time.monotonic()
    for i in range(0, len(pcm), step):
        await session.send_realtime_input(audio=types.Blob(data=pcm[i:i + step], mime_type="audio/pcm;rate=16000"))
        await asyncio.sleep(max(0.0, start + (i + step) / 32000 - time.monotonic()))


class Collector:
    """Everything the server sends on a session, with arrival times, gathered in the background."""

    def __init__(self, session) -> None:
        self.session, self.messages = session, []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            async for message in self.session.receive():
                self.messages.append((time.monotonic(), message))

    def first(self, predicate):
        return next(((t, m) for t, m in self.messages if predicate(m)), None)

    async def wait(self, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while (hit := self.first(predicate)) is None:
            assert time.monotonic() < deadline, "timed out waiting for the server"
            await asyncio.sleep(0.02)
        return hit

    def input_text(self) -> str:
        return "".join(m.server_content.input_transcription.text for _, m in self.messages
                       if m.server_content and m.server_content.input_transcription)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def has(field):
    return lambda m: bool(m.server_content and getattr(m.server_content, field))


def turn_heard(m) -> bool:
    """The transcription that ends the user's turn: the last piece of live captions (2.x), or the only one."""
    return bool(m.server_content and m.server_content.input_transcription
                and m.server_content.input_transcription.finished)


def config(**extra) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=["AUDIO"], input_audio_transcription={},
                                   output_audio_transcription={}, **extra)


def connect(server, cfg, key="good-key"):
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url))
    return client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=cfg)


@pytest.mark.parametrize("chunk_ms", [20, 100])
async def test_spoken_question_is_transcribed_and_answered_in_speech(embedded_server, chunk_ms):
    async with connect(embedded_server, config(temperature=0, max_output_tokens=40), key="k") as session:
        heard = Collector(session)
        await stream(session, silence(0.5) + UTTERANCE + silence(END_S), chunk_ms)
        await heard.wait(has("turn_complete"))
        await heard.close()
    assert wer(UTTERANCE_TEXT, heard.input_text()) < 0.2, heard.input_text()
    audio = b"".join(m.data for _, m in heard.messages if m.data)
    assert len(audio) / 48000 > 0.5  # a spoken reply, 24 kHz 16-bit
    assert heard.first(has("generation_complete"))


async def test_the_llm_starts_in_the_pause_and_nothing_is_heard_before_the_turn_ends(embedded_server):
    from tests.e2e.test_metrics import sample, scrape

    before = sample(scrape(embedded_server), "openlive_early_replies_total", outcome="used")
    async with connect(embedded_server, config(temperature=0, max_output_tokens=30), key="k") as session:
        heard = Collector(session)
        await stream(session, silence(0.5) + UTTERANCE + silence(END_S))
        await heard.wait(has("turn_complete"), timeout=90)
        await heard.close()
    # The reply's LLM request was the one started in the pause, before the turn ended...
    assert sample(scrape(embedded_server), "openlive_early_replies_total", outcome="used") >= before + 1
    # ...and its speech still came only after the user's turn was over and transcribed.
    heard_at, _ = heard.first(turn_heard)
    spoken_at, _ = heard.first(lambda m: bool(m.data))
    assert heard_at <= spoken_at
    assert wer(UTTERANCE_TEXT, heard.input_text()) < 0.2, heard.input_text()


async def test_live_captions_arrive_while_the_user_is_still_speaking(embedded_server):
    """Issue 24: on a 2.x model the user's words come while they speak, as Google streams them:
    interim inputTranscription pieces (new words only, finished false), then the last piece
    (finished true); the pieces add up to exactly the text the conversation recorded.

    "While they speak": received before the client has sent the utterance's last audio chunk
    (streamed at real-time pace, so the server cannot have heard its end yet)."""
    log_from = len(embedded_server.log())
    async with connect(embedded_server, config(temperature=0, max_output_tokens=20), key="k") as session:
        heard = Collector(session)
        await stream(session, silence(0.5) + UTTERANCE)  # 4.1 s of speech, ending with its last word
        speech_sent = time.monotonic()
        sender = asyncio.create_task(stream(session, silence(END_S)))
        await heard.wait(turn_heard, timeout=60)
        await heard.wait(has("turn_complete"), timeout=90)
        sender.cancel()
        await heard.close()
    pieces = [(t, m.server_content.input_transcription) for t, m in heard.messages
              if m.server_content and m.server_content.input_transcription]
    while_speaking = [p.text for t, p in pieces if t < speech_sent]
    assert len(while_speaking) >= 2, [(round(t - speech_sent, 2), p.text) for t, p in pieces]
    assert [p.finished for _, p in pieces] == [False] * (len(pieces) - 1) + [True]
    text = "".join(p.text for _, p in pieces)
    said = re.findall(r"user said ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", embedded_server.log()[log_from:])
    assert said and text == ast.literal_eval(said[-1]), (text, said)
    assert wer(UTTERANCE_TEXT, text) < 0.2, text


async def test_barge_in_stops_the_reply_and_no_interruption_lets_it_finish(scripted_server):
    async with connect(scripted_server, config()) as session:
        heard = Collector(session)
        await stream(session, UTTERANCE + silence(END_S))
        await heard.wait(lambda m: bool(m.data))
        await stream(session, UTTERANCE[:16000 * 2 * 2])  # two seconds of talking over the reply
        interrupted_at, _ = await heard.wait(has("interrupted"), timeout=5)
        await asyncio.sleep(1.0)
        await heard.close()
    after = [m for t, m in heard.messages if t > interrupted_at]
    # Nothing more of the interrupted reply: its turn ends, and no audio follows for it.
    first_turn_end = next(i for i, m in enumerate(after) if m.server_content and m.server_content.turn_complete)
    assert not any(m.data for m in after[:first_turn_end])
    before = [m for t, m in heard.messages if t <= interrupted_at]
    assert not any(m.server_content and m.server_content.generation_complete for m in before)
    spoken = "".join(m.server_content.output_transcription.text for m in before
                     if m.server_content and m.server_content.output_transcription)
    assert spoken.startswith("Here is a story.") and "happily ever after" not in spoken

    async with connect(scripted_server, config(realtime_input_config=types.RealtimeInputConfig(
            activity_handling=types.ActivityHandling.NO_INTERRUPTION))) as session:
        heard = Collector(session)
        await stream(session, UTTERANCE + silence(END_S))
        await heard.wait(lambda m: bool(m.data))
        await stream(session, UTTERANCE[:16000 * 2 * 2])
        await heard.wait(has("generation_complete"), timeout=40)
        await heard.close()
    assert not heard.first(has("interrupted"))


async def test_manual_activity_mode(scripted_server):
    manual = types.RealtimeInputConfig(automatic_activity_detection=types.AutomaticActivityDetection(disabled=True))
    async with connect(scripted_server, config(realtime_input_config=manual)) as session:
        heard = Collector(session)
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await stream(session, UTTERANCE + silence(1.5))
        assert not heard.first(turn_heard)  # silence does not end a manual turn
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        await heard.wait(lambda m: bool(m.data))  # answered in speech
        await heard.close()
    assert wer(UTTERANCE_TEXT, heard.input_text()) < 0.2
    # The wrong signal for the mode is refused, as the real service does.
    with pytest.raises(errors.APIError) as info:
        async with connect(scripted_server, config(realtime_input_config=manual)) as session:
            await session.send_realtime_input(audio_stream_end=True)
            async for _ in session.receive():
                pass
    assert info.value.code == 1007 and "audioStreamEnd" in info.value.details
    with pytest.raises(errors.APIError) as info:
        async with connect(scripted_server, config()) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            async for _ in session.receive():
                pass
    assert info.value.code == 1007 and "activityStart" in info.value.details


async def test_silence_duration_and_audio_stream_end_decide_when_the_turn_ends(scripted_server):
    waited = {}
    # The recording pauses for up to ~0.4 s between phrases: both settings hear it as one turn.
    for silence_ms in (600, 1600):
        aad = types.AutomaticActivityDetection(silence_duration_ms=silence_ms)
        async with connect(scripted_server, config(realtime_input_config=types.RealtimeInputConfig(
                automatic_activity_detection=aad))) as session:
            heard = Collector(session)
            await stream(session, UTTERANCE)
            speech_end = time.monotonic()
            await stream(session, silence(2.5))
            arrived, _ = await heard.wait(turn_heard)
            waited[silence_ms] = arrived - speech_end
            await heard.close()
    assert waited[1600] - waited[600] > 0.7, waited
    # audioStreamEnd ends the turn at once: with the long window set, it need not wait 1.6 s of silence.
    aad = types.AutomaticActivityDetection(silence_duration_ms=1600)
    async with connect(scripted_server, config(realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=aad))) as session:
        heard = Collector(session)
        await stream(session, UTTERANCE)
        speech_end = time.monotonic()
        await session.send_realtime_input(audio_stream_end=True)
        arrived, _ = await heard.wait(turn_heard)
        await heard.close()
    assert arrived - speech_end < waited[1600] - 0.6, (arrived - speech_end, waited)
    assert wer(UTTERANCE_TEXT, heard.input_text()) < 0.2


async def test_silence_and_noise_alone_make_no_turn(scripted_server):
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 2000, 16000 * 3).clip(-32768, 32767).astype(np.int16).tobytes()
    hum = (np.sin(2 * np.pi * 50 * np.arange(16000 * 2) / 16000) * 3000).astype(np.int16).tobytes()
    async with connect(scripted_server, config()) as session:
        heard = Collector(session)
        await stream(session, silence(2.0) + noise + hum + silence(1.0), chunk_ms=100)
        await asyncio.sleep(1.0)
        await heard.close()
    assert heard.messages == []


async def test_recognition_on_another_node_through_the_openai_audio_api(start_server):
    """Node A serves its recognizer at /v1/audio/transcriptions; node B uses it as a remote engine."""
    scripted = '[llm.default]\nengine = "scripted"\n'
    node_a = start_server(scripted, tls=False)
    node_b = start_server(scripted + f'[asr]\nengine = "openai"\nbase_url = "{node_a.base_url}/v1"\n')
    async with connect(node_b, config(), key="k") as session:
        heard = Collector(session)
        await stream(session, UTTERANCE + silence(END_S))
        await heard.wait(has("turn_complete"))
        await heard.close()
    assert wer(UTTERANCE_TEXT, heard.input_text()) < 0.2, heard.input_text()
    assert f"speech recognition ready: {node_a.base_url}/v1" in node_b.log()
    async with httpx.AsyncClient() as http:
        bad = await http.post(f"{node_a.base_url}/v1/audio/transcriptions", files={"file": ("x.wav", b"nope")})
    assert bad.status_code == 400 and "WAV" in bad.json()["error"]["message"]


async def test_several_sessions_talking_at_once_are_all_heard(scripted_server):
    """Sessions share one recognizer through a bounded queue: none starves, each hears its own user."""

    async def one_user(delay: float) -> tuple[str, bool]:
        await asyncio.sleep(delay)
        async with connect(scripted_server, config()) as session:
            heard = Collector(session)
            await stream(session, UTTERANCE + silence(END_S))
            await heard.wait(lambda m: bool(m.data), timeout=30)  # the reply has started speaking
            await heard.close()
        return heard.input_text(), any(m.data for _, m in heard.messages)

    results = await asyncio.gather(*(one_user(0.15 * i) for i in range(4)))
    for text, spoke in results:
        assert wer(UTTERANCE_TEXT, text) < 0.2, text
        assert spoke
