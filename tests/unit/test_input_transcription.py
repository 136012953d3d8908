"""Live captions without sockets: which words are stable enough to send, and how the turn's
transcript completes them (session/input_transcription.py); then the session's cadence."""

import asyncio

import pytest

from openlive.engines.asr.whisper import Transcript
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.session.input_transcription import InterimTranscription, Stabilizer
from openlive.session.live_session import LiveSession
from tests.unit.test_speech_in import EnergyVAD, audio_msg, frame, silence, tone

# What Whisper tiny.en heard of tests/data/two_cities_16k.wav cut after 1.0, 2.0, ... 4.1 s: the
# last word is guessed at ("the...", "t-"), and punctuation at the edge changes ("times." → "times,").
READINGS = ["It was the...", "It was the best of times.", "It was the best of times. It was the worst.",
            "It was the best of times, it was the worst of time."]
FINAL = "It was the best of times, it was the worst of times."


def feed(stabilizer, readings):
    return [piece for reading in readings if (piece := stabilizer.hear(reading))]


def test_words_two_readings_agree_on_are_sent_but_never_a_readings_last_word():
    s = Stabilizer()
    assert s.hear("It was the...") == ""  # one reading proves nothing
    assert s.hear("It was the best of times.") == "It was"  # "the..." was cut short
    assert s.hear("It was the best of times. It was the worst.") == " the best of"  # not "times.": an edge
    # "times," now disagrees with "times.": nothing more until two readings agree again.
    assert s.hear("It was the best of times, it was the worst of time.") == ""
    assert s.sent == "It was the best of"


def test_the_pieces_add_up_to_exactly_the_final_text():
    s = Stabilizer()
    pieces = feed(s, READINGS)
    last = s.finish(FINAL)
    assert pieces == ["It was", " the best of"] and last == " times, it was the worst of times."
    assert "".join(pieces) + last == FINAL and s.sent == FINAL


def test_without_pieces_the_final_text_goes_whole():
    s = Stabilizer()
    s.hear("Hello.")
    assert s.text_for("Hello there.") == "Hello there."
    assert s.finish("Hello there.") is None  # the caller sends the whole text, as without captions


def test_punctuation_the_whole_turn_changed_keeps_the_words_as_sent():
    """Seen on the 5.8 s recording: two readings agree on "times, it"; the reading of the whole
    turn says "times. It". The turn records the words as sent, so the pieces still add up."""
    s = Stabilizer()
    feed(s, ["It was the best of times, it was", "It was the best of times, it was the worst"])
    assert s.sent == "It was the best of times, it"
    final = "It was the best of times. It was the worst of times."
    text = s.text_for(final)
    assert text == "It was the best of times, it was the worst of times."
    assert s.text_for(final) == text and s.sent == "It was the best of times, it"  # pure
    assert s.finish(text) == " was the worst of times." and s.sent == text


def test_a_final_text_that_changed_a_sent_word_is_completed_after_the_last_word_sent():
    s = Stabilizer()
    feed(s, ["I want to go to", "I want to go to the"])
    assert s.sent == "I want to go"
    # A word re-heard differently: the turn records the new reading (quality first), and the
    # rest follows the last word sent, which is not sent twice.
    assert s.text_for("I wanted to go to the park.") == "I wanted to go to the park."
    assert s.finish("I wanted to go to the park.") == " to the park."


def test_a_reading_that_drops_what_was_sent_commits_nothing():
    s = Stabilizer()
    feed(s, ["one two three four", "one two three four five"])
    assert s.sent == "one two three"
    assert s.hear("something else entirely") == ""
    assert s.hear("something else entirely now") == ""
    assert s.sent == "one two three"


def test_readings_of_the_tail_of_a_long_utterance_are_placed_after_the_words_sent():
    s = Stabilizer()
    feed(s, ["alpha beta gamma delta epsilon", "alpha beta gamma delta epsilon zeta"])
    assert s.sent == "alpha beta gamma delta"
    # Readings of the last seconds only: they start mid-transcript, with a clipped first word.
    assert s.hear("ta gamma delta epsilon zeta eta") == " epsilon"
    assert s.hear("mma delta epsilon zeta eta theta") == " zeta"
    assert s.sent == "alpha beta gamma delta epsilon zeta"


def test_after_the_turn_ends_readings_still_in_flight_send_nothing():
    s = Stabilizer()
    feed(s, ["a b c", "a b c d"])
    s.finish("a b c d")
    assert s.hear("a b c d e f") == "" and s.hear("a b c d e f g") == ""


def test_an_empty_final_text_closes_the_captions():
    s = Stabilizer()
    feed(s, ["a b c", "a b c d"])
    assert s.finish("") == ""


# ---------------------------------------------------------------- the cadence, in a session


class CountingASR:
    """A recognizer whose words grow with the audio: one word per 0.25 s, the last one cut short."""

    busy = False

    def __init__(self):
        self.calls = []

    async def transcribe(self, pcm, language=None):
        seconds = len(pcm) / 32000
        self.calls.append(round(seconds, 2))
        await asyncio.sleep(0.005)
        n = int(seconds / 0.25)
        words = [f"w{i}" for i in range(n)]
        if words and len(pcm) < 32000 * 6:  # mid-speech: the last word is heard only in part
            words[-1] += "-"
        return Transcript(" ".join(words), "en", None, seconds)


async def session(model, asr, interim_every_s=1.0, transcription=True):
    sent = []

    async def send(m):
        sent.append(m)

    setup = {"model": model, "generationConfig": {"responseModalities": ["TEXT"]}}
    if transcription:
        setup["inputAudioTranscription"] = {}
    s = LiveSession(frame({"setup": setup}), llm=ScriptedEngine("s"), send=send, asr=asr, vad_factory=EnergyVAD,
                    interim_every_s=interim_every_s)
    await s.start()
    return s, sent


async def speak(s, pcm, chunk_s=0.04):
    step = int(32000 * chunk_s)
    for i in range(0, len(pcm), step):
        await s.handle(audio_msg(pcm[i:i + step]))
        await asyncio.sleep(0.006)  # a reading in flight finishes while the audio goes on


def transcriptions(sent):
    return [m["serverContent"]["inputTranscription"] for m in sent if "inputTranscription" in m.get("serverContent", {})]


@pytest.mark.parametrize("model", ["gemini-live-2.5-flash-preview", "gemini-2.0-flash-live-001"])
async def test_a_2x_session_gets_the_words_while_the_user_speaks(model):
    asr = CountingASR()
    s, sent = await session(model, asr)
    await speak(s, silence(0.3) + tone(4.0))
    during = transcriptions(sent)
    await speak(s, silence(3.0))
    for _ in range(100):
        if any(t.get("finished") for t in transcriptions(sent)):
            break
        await asyncio.sleep(0.01)
    await s.aclose()
    pieces = transcriptions(sent)
    assert len(during) >= 2 and not any(t["finished"] for t in during)  # interim, while speaking
    assert [t["finished"] for t in pieces] == [False] * (len(pieces) - 1) + [True]
    final = pieces[-1]
    assert "".join(t["text"] for t in pieces).startswith("w0 w1 w2") and final["text"].startswith(" ")
    # About one reading per second of speech, plus the pause's and the turn's: never a re-read per blob.
    assert len(asr.calls) <= 4 + 3, asr.calls


async def test_a_3x_session_and_the_switched_off_server_get_one_transcription_as_before():
    for model, every in (("gemini-3.1-flash-live-preview", 1.0), ("gemini-live-2.5-flash-preview", 0.0)):
        asr = CountingASR()
        s, sent = await session(model, asr, interim_every_s=every)
        await speak(s, silence(0.3) + tone(4.0) + silence(3.0))
        for _ in range(100):
            if transcriptions(sent):
                break
            await asyncio.sleep(0.01)
        await s.aclose()
        assert [t["finished"] for t in transcriptions(sent)] == [True], (model, every)
        assert len(asr.calls) <= 2, asr.calls  # the pause's speculative reading, or the turn's


async def test_no_reading_while_the_recognizer_is_busy_elsewhere():
    asr = CountingASR()
    asr.busy = True  # another session's turn, say
    s, sent = await session("gemini-live-2.5-flash-preview", asr)
    await speak(s, silence(0.3) + tone(3.0))
    await s.aclose()
    assert asr.calls == [] and transcriptions(sent) == []


async def test_no_captions_unless_the_client_asked_for_input_transcription():
    asr = CountingASR()
    s, sent = await session("gemini-live-2.5-flash-preview", asr, transcription=False)
    await speak(s, silence(0.3) + tone(3.0))
    await s.aclose()
    assert asr.calls == [] and transcriptions(sent) == []


async def test_one_reading_at_a_time_however_slow_the_recognizer():
    class Slow(CountingASR):
        running = peak = 0

        async def transcribe(self, pcm, language=None):
            Slow.running += 1
            Slow.peak = max(Slow.peak, Slow.running)
            try:
                await asyncio.sleep(1.5)
                return await super().transcribe(pcm, language)
            finally:
                Slow.running -= 1

    async def read(pcm):
        return (await asr.transcribe(pcm)).text

    async def send(piece):
        pass

    asr = Slow()
    interim = InterimTranscription(every_s=0.5, recognize=read, send=send, idle=lambda: True)
    interim.started()
    started = 0
    for step in range(1, 40):  # 0.1 s of speech each time, much faster than the readings finish
        if interim.due(step * 0.1):
            interim.read(b"\0\0" * 1600 * step, step * 0.1)
            started += 1
        await asyncio.sleep(0.01)
    await interim.aclose()
    assert started == 1 and Slow.peak == 1


async def test_a_pause_reading_that_speech_overtakes_still_feeds_the_captions():
    class Slow(CountingASR):
        async def transcribe(self, pcm, language=None):
            await asyncio.sleep(0.2)  # speech resumes before this reading is done
            return await super().transcribe(pcm, language)

    asr = Slow()
    s, sent = await session("gemini-live-2.5-flash-preview", asr, interim_every_s=5.0)  # no cadence readings
    offered = []
    s.turns.interim.offer = lambda stabilizer, text: offered.append(text)
    await speak(s, silence(0.3) + tone(1.0) + silence(0.25))  # a pause...
    await speak(s, tone(0.5))  # ...and the user goes on
    for _ in range(100):
        if offered:
            break
        await asyncio.sleep(0.01)
    await s.aclose()
    assert len(asr.calls) == 1 and offered and offered[0].startswith("w0 w1 w2")


def test_the_config_switch_and_its_cadence(tmp_path):
    from openlive.config import ConfigError, load_config

    assert load_config().asr.interim_transcription and load_config().asr.interim_every_s == 1.0
    path = tmp_path / "openlive.toml"
    path.write_text("[asr]\ninterim_transcription = false\n")
    assert not load_config(path).asr.interim_transcription
    path.write_text("[asr]\ninterim_every_s = 0.1\n")
    with pytest.raises(ConfigError, match="interim_every_s"):
        load_config(path)
