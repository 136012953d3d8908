"""Turn-taking without sockets: activity detection, the user's audio stream, barge-in, manual mode."""

import asyncio
import json

import numpy as np
import pytest

from openlive.engines.asr.whisper import Transcript
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.protocol.messages import AutomaticActivityDetection
from openlive.session.activity import Activity, ActivityDetector, ActivityParams
from openlive.session.end_of_turn import EndOfTurnPolicy, unfinished_words
from openlive.session.live_session import LiveSession
from openlive.session.user_audio import UserAudio, pcm_rate

RATE = 16000


class EnergyVAD:
    """A deterministic stand-in for Silero: loud frames are speech."""

    frame_samples, frame_ms = 512, 32.0

    def probability(self, frame):
        return 1.0 if float(np.sqrt(np.mean(frame ** 2))) > 0.05 else 0.0

    def reset(self):
        pass


def tone(seconds, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * 0.3 * 32767).astype(np.int16).tobytes()


def silence(seconds, rate=RATE):
    return b"\0\0" * int(seconds * rate)


def run(detector, pattern):
    return [e for p in pattern if (e := detector.update(p)) is not None]


def test_start_needs_the_prefix_and_end_needs_the_silence():
    d = ActivityDetector(ActivityParams(prefix_ms=96, silence_ms=320, pause_ms=96), frame_ms=32)
    assert run(d, [1, 1, 0, 1, 1]) == []  # two frames of speech are not enough
    assert run(d, [1]) == [Activity.START]
    assert run(d, [0, 0, 0]) == [Activity.PAUSE]
    assert run(d, [1]) == [Activity.RESUME]
    assert run(d, [0] * 9) == [Activity.PAUSE]
    assert run(d, [0]) == [Activity.END]


def test_live_api_settings_map_to_parameters():
    default = ActivityParams.from_setup(None)
    low = ActivityParams.from_setup(AutomaticActivityDetection(start_of_speech_sensitivity="START_SENSITIVITY_LOW",
                                                               end_of_speech_sensitivity="END_SENSITIVITY_LOW"))
    assert low.start_threshold > default.start_threshold and low.silence_ms > default.silence_ms
    custom = ActivityParams.from_setup(AutomaticActivityDetection(prefix_padding_ms=20, silence_duration_ms=1200))
    assert (custom.prefix_ms, custom.silence_ms) == (20, 1200)


def test_user_audio_cuts_an_utterance_with_preroll_and_resamples_once():
    audio = UserAudio(EnergyVAD(), ActivityParams(silence_ms=320))
    events = []
    for blob in [silence(1.0, 48000), tone(1.0, 48000), silence(0.6, 48000)]:
        for i in range(0, len(blob), 1920):  # 20 ms chunks at 48 kHz
            events += audio.feed(blob[i:i + 1920], 48000)
    assert events == [Activity.START, Activity.PAUSE, Activity.END]
    utterance = audio.finish_turn()
    seconds = len(utterance) / 2 / RATE
    assert 1.0 < seconds < 1.0 + 0.3 + 0.2 + 0.1  # the speech, its preroll, a short tail


@pytest.mark.parametrize("mime, rate", [("audio/pcm;rate=24000", 24000), ("audio/pcm", 16000),
                                        ("audio/pcm; rate=8000", 8000)])
def test_pcm_rate(mime, rate):
    assert pcm_rate(mime) == rate


@pytest.mark.parametrize("mime", ["audio/mp3", "audio/pcm;rate=1"])
def test_unusable_audio_is_1007(mime):
    with pytest.raises(ProtocolError) as info:
        pcm_rate(mime)
    assert info.value.code == 1007


class FakeASR:
    def __init__(self, text="hello there"):
        self.text, self.calls = text, []

    async def transcribe(self, pcm, language=None):
        self.calls.append(len(pcm))
        await asyncio.sleep(0.01)
        return Transcript(self.text if len(pcm) > 3200 else "", "en", None, len(pcm) / 32000)


def frame(obj):
    return parse_client_frame(json.dumps(obj))


def audio_msg(pcm):
    import base64
    return frame({"realtimeInput": {"audio": {"data": base64.b64encode(pcm).decode(), "mimeType": "audio/pcm;rate=16000"}}})


async def session_with(realtime=None, engine=None, asr=None):
    sent = []

    async def send(m):
        sent.append(m)

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"]},
                             "inputAudioTranscription": {}, **({"realtimeInputConfig": realtime} if realtime else {})}})
    session = LiveSession(setup, llm=engine or ScriptedEngine("s"), send=send, asr=asr or FakeASR(),
                          vad_factory=EnergyVAD)
    await session.start()
    return session, sent


async def stream(session, pcm, chunk=1280):
    for i in range(0, len(pcm), chunk):
        await session.handle(audio_msg(pcm[i:i + chunk]))


async def until(predicate, timeout=2.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def contents(sent, key):
    return [m["serverContent"][key] for m in sent if key in m.get("serverContent", {})]


async def test_speech_then_silence_is_a_turn_with_input_transcription_and_a_reply():
    session, sent = await session_with()
    await stream(session, silence(0.3) + tone(1.0) + silence(0.7))
    await until(lambda: contents(sent, "turnComplete"))
    assert contents(sent, "inputTranscription") == [{"text": "hello there", "finished": True}]
    assert "".join(p["text"] for t in contents(sent, "modelTurn") for p in t["parts"]) == "You said: hello there"
    assert session.conversation.history[0].text == "hello there"


async def test_a_whole_turn_in_one_big_message_is_recognized_whole():
    # A client replaying buffered audio sends the pause and the end of a turn in one message.
    session, sent = await session_with()
    await stream(session, silence(0.3) + tone(1.0) + silence(0.7), chunk=32000 * 3)
    await until(lambda: contents(sent, "turnComplete"))
    assert contents(sent, "inputTranscription") == [{"text": "hello there", "finished": True}]


async def test_silence_and_noise_alone_make_no_turn():
    session, sent = await session_with()
    quiet_noise = (np.random.default_rng(1).normal(0, 300, RATE * 2)).astype(np.int16).tobytes()
    await stream(session, silence(1.0) + quiet_noise)
    await asyncio.sleep(0.05)
    assert sent == [{"setupComplete": {"sessionId": session.session_id}}]


async def test_barge_in_interrupts_the_reply():
    session, sent = await session_with(engine=ScriptedEngine("slow", token_delay_ms=60))
    await stream(session, tone(0.8) + silence(0.7))
    await until(lambda: contents(sent, "modelTurn"))
    await stream(session, tone(0.3))
    assert contents(sent, "interrupted") == [True]
    n = len(sent)
    await asyncio.sleep(0.2)
    assert not any("modelTurn" in m.get("serverContent", {}) for m in sent[n:])


async def test_no_interruption_lets_the_reply_finish_first():
    session, sent = await session_with({"activityHandling": "NO_INTERRUPTION"},
                                       engine=ScriptedEngine("slow", token_delay_ms=30))
    await stream(session, tone(0.8) + silence(0.7))
    await until(lambda: contents(sent, "modelTurn"))
    await stream(session, tone(0.8) + silence(0.7))
    await until(lambda: len(contents(sent, "turnComplete")) == 2, timeout=5)
    assert contents(sent, "interrupted") == []
    assert [t.role for t in session.conversation.history] == ["user", "model", "user", "model"]


async def test_audio_stream_end_ends_the_turn_without_waiting_for_silence():
    session, sent = await session_with()
    await stream(session, tone(1.0))
    assert not contents(sent, "inputTranscription")
    await session.handle(frame({"realtimeInput": {"audioStreamEnd": True}}))
    await until(lambda: contents(sent, "turnComplete"))
    assert contents(sent, "inputTranscription")[0]["text"] == "hello there"


async def test_manual_activity_marks_turns_and_wrong_signals_are_refused():
    session, sent = await session_with({"automaticActivityDetection": {"disabled": True}})
    await session.handle(frame({"realtimeInput": {"activityStart": {}}}))
    await stream(session, tone(0.5) + silence(1.5))  # silence does not end a manual turn
    assert not contents(sent, "inputTranscription")
    await session.handle(frame({"realtimeInput": {"activityEnd": {}}}))
    await until(lambda: contents(sent, "turnComplete"))
    assert session.turns.asr.calls and session.turns.asr.calls[0] >= 2 * RATE * 2  # the whole activity was heard
    with pytest.raises(ProtocolError) as info:
        await session.handle(frame({"realtimeInput": {"audioStreamEnd": True}}))
    assert info.value.code == 1007
    automatic, _ = await session_with()
    with pytest.raises(ProtocolError) as info:
        await automatic.handle(frame({"realtimeInput": {"activityStart": {}}}))
    assert info.value.code == 1007 and "disabled" in info.value.reason


async def test_silence_duration_decides_when_the_turn_ends():
    ended = {}
    for silence_ms in (300, 1000):
        session, sent = await session_with({"automaticActivityDetection": {"silenceDurationMs": silence_ms}})
        await stream(session, tone(0.8))
        chunks = 0
        while not contents(sent, "inputTranscription") and chunks < 60:
            await stream(session, silence(0.04))
            chunks += 1
            await asyncio.sleep(0.015)  # let the recognizer answer as real time would
        ended[silence_ms] = chunks * 40
    assert ended[300] < 600 and ended[1000] >= 1000, ended


class FakeTurnModel:
    """An end-of-turn model that answers what it is told, remembering what it was asked about."""

    def __init__(self, probability):
        self.p, self.calls = probability, []

    async def probability(self, pcm16):
        self.calls.append(len(pcm16))
        await asyncio.sleep(0.005)
        return self.p


class FakeTextModel:
    """An end-of-turn text model that answers what it is told (or fails), remembering what it read."""

    def __init__(self, probability, fail=False):
        self.p, self.fail, self.read = probability, fail, []

    async def probability(self, transcript):
        self.read.append(transcript)
        await asyncio.sleep(0.005)
        if self.fail:
            raise RuntimeError("the text model's server went away")
        return self.p


async def semantic_session(model, realtime=None, setup_extra=None, text_model=None):
    sent = []

    async def send(m):
        sent.append(m)

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"]},
                             "inputAudioTranscription": {}, **(setup_extra or {}),
                             **({"realtimeInputConfig": realtime} if realtime else {})}})
    session = LiveSession(setup, llm=ScriptedEngine("s"), send=send, asr=FakeASR(), vad_factory=EnergyVAD,
                          turn_model=model, text_turn_model=text_model)
    await session.start()
    return session, sent


async def silence_until(session, sent, key, limit_ms):
    """Stream silence in 40 ms chunks until `key` is sent; how much silence that took (ms)."""
    chunks = 0
    while not contents(sent, key) and chunks * 40 < limit_ms:
        await stream(session, silence(0.04))
        chunks += 1
        await asyncio.sleep(0.015)
    return chunks * 40


async def test_a_complete_utterance_ends_the_turn_after_a_short_pause():
    model = FakeTurnModel(0.9)
    session, sent = await semantic_session(model)
    await stream(session, tone(1.0))
    waited = await silence_until(session, sent, "inputTranscription", 3000)
    assert model.calls and model.calls[0] >= RATE * 2 * 0.9  # asked about the whole utterance
    assert waited < 500, waited  # sooner than the plain 500 ms silence
    await until(lambda: contents(sent, "turnComplete"))


async def test_an_unfinished_thought_gets_a_longer_pause_and_stays_one_turn():
    model = FakeTurnModel(0.1)
    session, sent = await semantic_session(model)
    await stream(session, tone(0.8))
    await silence_until(session, sent, "inputTranscription", 700)  # a 700 ms pause mid-sentence
    await stream(session, tone(0.8))
    assert not contents(sent, "inputTranscription")  # the pause did not end the turn
    waited = await silence_until(session, sent, "inputTranscription", 5000)
    assert len(model.calls) == 2  # asked at each pause
    assert 2000 <= waited < 3500, waited  # the policy's longest wait, then the turn ends anyway
    await until(lambda: contents(sent, "turnComplete"))
    assert len(contents(sent, "inputTranscription")) == 1
    assert session.turns.asr.calls[-1] >= RATE * 2 * 2.2  # both halves and the pause were heard as one


@pytest.mark.parametrize("audio, text, quiet", [
    (0.9, 0.5, 200), (0.9, 0.0, 1500), (0.1, 0.0, 2500),
    # Plainly finished words need nothing from the audio model (a slow voice, a rising question).
    (0.3, 0.4, 200), (0.05, 0.5, 200), (0.01, 0.25, 200),
    (0.3, 0.15, 1500),  # finished, but not plainly: the audio model's doubt holds the turn
    (0.95, 0.06, 1500),  # lukewarm words ("Can you admit me?", a misheard fragment) are no "complete"
    # Lukewarm words with a doubting audio model: the middle wait, not the longest (a finished
    # question can score there: "What does the sign say?", 0.04 and 0.32).
    (0.32, 0.04, 1500), (None, 0.05, 1500), (0.3, 0.01, 2500), (None, 0.01, 2500),
    (0.9, None, 200), (0.1, None, 2500), (None, 0.5, 200), (None, None, None),
])
def test_the_models_votes_set_the_quiet_that_ends_a_turn(audio, text, quiet):
    assert EndOfTurnPolicy().quiet_needed_ms(audio, text) == quiet


@pytest.mark.parametrize("words, unfinished", [
    ("Do you know whether the", True), ("send a message to my", True), ("I was wondering whether...", True),
    ("Tell me about the\u2026", True), ("What would happen if.", True), ("bread and", True),
    ("What is the weather like in Madrid tomorrow?", False), ("What is it made of?", False),
    ("Where are you from?", False), ("Yes, I'd love to.", False), ("It's a nice day", False),
    ("", False), (None, False),
])
def test_words_that_cannot_end_a_sentence_are_unfinished(words, unfinished):
    assert unfinished_words(words) is unfinished


def test_dangling_words_never_take_the_fast_path_whatever_the_text_model_says():
    policy = EndOfTurnPolicy()
    assert policy.quiet_needed_ms(0.95, 0.6, -0.2, "What is the weather like in Madrid?") == 200
    assert policy.quiet_needed_ms(0.95, 0.6, -0.2, "Do you know whether the") == 1500
    assert policy.quiet_needed_ms(0.95, 0.6, -0.2, "I would like to know the...") == 1500
    assert policy.quiet_needed_ms(0.2, 0.6, -0.2, "Can you add milk and") == 2500


def test_words_the_recognizer_guessed_at_do_not_vote_complete():
    policy = EndOfTurnPolicy()
    assert policy.quiet_needed_ms(0.9, 0.5, transcript_logprob=-0.2) == 200
    assert policy.quiet_needed_ms(0.9, 0.5, transcript_logprob=-0.9) == 1500  # "Can you clean up flames?"
    assert policy.quiet_needed_ms(0.9, None, transcript_logprob=-0.9) == 200  # no text model: nothing to discount


def test_the_audio_model_hears_the_quiet_the_fast_path_waits_for():
    policy = EndOfTurnPolicy(check_ms=100, quick_quiet_ms=200)
    speech, quiet = b"\x10\x20" * 16000, b"\x01\x00\xff\xff" * 800  # 1 s, then 100 ms of faint noise
    extended = policy.with_quiet(speech + quiet)
    assert len(extended) == len(speech) + 2 * len(quiet)  # 200 ms of quiet now
    assert extended.endswith(quiet + quiet)  # the room's own noise, repeated
    assert EndOfTurnPolicy(check_ms=200, quick_quiet_ms=200).with_quiet(speech) == speech


async def test_both_models_agreeing_end_the_turn_after_a_short_pause_and_the_text_model_reads_the_transcript():
    audio, text = FakeTurnModel(0.9), FakeTextModel(0.4)
    session, sent = await semantic_session(audio, text_model=text)
    await stream(session, tone(1.0))
    waited = await silence_until(session, sent, "inputTranscription", 3000)
    assert text.read == ["hello there"]  # the speculative transcript of the pause
    assert waited < 500, waited
    await until(lambda: contents(sent, "turnComplete"))


async def test_a_fragment_that_sounds_finished_waits_for_the_text_model_and_stays_one_turn():
    # Read speech falls in pitch at a mid-sentence pause: the audio model says complete, the words do not.
    audio, text = FakeTurnModel(0.95), FakeTextModel(0.0)
    session, sent = await semantic_session(audio, text_model=text)
    await stream(session, tone(0.8))
    await silence_until(session, sent, "inputTranscription", 900)  # a 900 ms pause mid-sentence
    await stream(session, tone(0.8))
    assert not contents(sent, "inputTranscription")
    text.p = 0.6  # the whole sentence now reads as finished
    waited = await silence_until(session, sent, "inputTranscription", 3000)
    assert waited < 500, waited
    assert len(contents(sent, "inputTranscription")) == 1 and len(text.read) == 2


async def test_when_the_models_disagree_the_turn_ends_after_the_unsure_quiet():
    session, sent = await semantic_session(FakeTurnModel(0.95), text_model=FakeTextModel(0.0))
    await stream(session, tone(0.8))
    waited = await silence_until(session, sent, "inputTranscription", 4000)
    assert 1100 <= waited < 2300, waited  # 1.2 s, well before the longest wait (2.5 s)


async def test_speech_recognized_as_no_words_is_not_taken_for_a_finished_thought():
    class Reader(FakeTextModel):
        async def probability(self, transcript):
            self.read.append(transcript)
            return None if not transcript.strip() else self.p  # as the real one: no words, no opinion

    for heard, at_least, at_most in (("", 1100, 2300), ("hello there", 0, 500)):
        text = Reader(0.9)
        session, sent = await semantic_session(FakeTurnModel(0.95), text_model=text,
                                               setup_extra={"explicitVadSignal": True})
        session.turns.asr = FakeASR(heard)  # "": a soft first half that recognition makes nothing of
        await stream(session, tone(0.8))
        ended = lambda: [m for m in sent if m.get("voiceActivity", {}).get("type") == "ACTIVITY_END"]  # noqa: E731
        waited = 0
        while not ended() and waited < 4000:
            await stream(session, silence(0.04))
            waited += 40
            await asyncio.sleep(0.015)
        assert text.read == [heard]
        # No words: the audio model alone did not end it at the short pause; words: it did.
        assert at_least <= waited < at_most, (heard, waited)


async def test_a_failing_text_model_leaves_the_decision_to_the_audio_model():
    text = FakeTextModel(0.0, fail=True)
    session, sent = await semantic_session(FakeTurnModel(0.9), text_model=text)
    await stream(session, tone(1.0))
    waited = await silence_until(session, sent, "inputTranscription", 3000)
    assert text.read and waited < 500, waited
    await until(lambda: contents(sent, "turnComplete"))


async def test_an_explicit_silence_duration_is_honoured_without_the_model():
    model, text = FakeTurnModel(0.9), FakeTextModel(0.9)
    session, sent = await semantic_session(model, {"automaticActivityDetection": {"silenceDurationMs": 800}},
                                           text_model=text)
    await stream(session, tone(0.8))
    waited = await silence_until(session, sent, "inputTranscription", 3000)
    assert not model.calls and not text.read
    assert 800 <= waited < 1300, waited


async def test_explicit_vad_signals_say_where_activity_started_and_ended():
    session, sent = await semantic_session(FakeTurnModel(0.9), setup_extra={"explicitVadSignal": True})
    await stream(session, silence(0.5) + tone(1.0))
    await silence_until(session, sent, "inputTranscription", 3000)
    activity = [m["voiceActivity"] for m in sent if "voiceActivity" in m]
    signals = [m["voiceActivityDetectionSignal"]["vadSignalType"] for m in sent if "voiceActivityDetectionSignal" in m]
    assert [a["type"] for a in activity] == ["ACTIVITY_START", "ACTIVITY_END"]
    assert signals == ["VAD_SIGNAL_TYPE_SOS", "VAD_SIGNAL_TYPE_EOS"]
    start, end = (float(a["audioOffset"].rstrip("s")) for a in activity)
    assert 0.5 <= start <= 0.7 and 1.5 <= end <= 2.0, (start, end)
    # The end comes before the transcription of the turn it ends.
    order = [next(iter(m["serverContent"])) if "serverContent" in m else next(iter(m)) for m in sent]
    end_at = max(i for i, m in enumerate(sent) if "voiceActivityDetectionSignal" in m)
    assert end_at < order.index("inputTranscription")


async def test_no_vad_signals_unless_asked():
    session, sent = await semantic_session(FakeTurnModel(0.9))
    await stream(session, tone(1.0))
    await silence_until(session, sent, "inputTranscription", 3000)
    assert not [m for m in sent if "voiceActivity" in m or "voiceActivityDetectionSignal" in m]


@pytest.mark.parametrize("rate, seconds, why", [(8, 0.5, "unsupported sample rate 8 Hz"),
                                                (400_000, 0.01, "unsupported sample rate 400000 Hz"),
                                                (16000, 301, "at most 300 s")])
def test_a_wav_is_checked_before_it_is_resampled(rate, seconds, why):
    import io
    import wave

    from openlive.session.user_audio import wav_to_pcm16k

    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(rate)
        wav.writeframes(b"\0\0" * int(rate * seconds))
    with pytest.raises(ValueError, match=why):
        wav_to_pcm16k(out.getvalue())
    good = io.BytesIO()
    with wave.open(good, "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 8000)
    assert len(wav_to_pcm16k(good.getvalue())) == 32000  # 1 s at 16 kHz
