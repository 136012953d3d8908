"""The waterfall of a spoken turn: the server times each step from the end of speech to the first
sound, logs it once per turn, and the benchmark reads that line back."""

import asyncio
import logging
import re
from pathlib import Path

from openlive.engines.llm.scripted import ScriptedEngine
from openlive.session.end_of_turn import EndOfTurnPolicy
from openlive.session.live_session import LiveSession
from openlive.session.turn_timing import MARKS, TurnTiming
from tests.unit.test_session import registry, ToneVoice
from tests.unit.test_speech_in import EnergyVAD, FakeASR, FakeTextModel, FakeTurnModel, contents, frame, silence, \
    stream, tone

BENCH = Path(__file__).resolve().parents[2] / "bench"


async def spoken_session(audio_p, text_p, early=True):
    sent = []

    async def send(m):
        sent.append(m)

    setup = frame({"setup": {"model": "m", "generationConfig": {"responseModalities": ["AUDIO"]},
                             "inputAudioTranscription": {}}})
    session = LiveSession(setup, llm=ScriptedEngine("s", token_delay_ms=5), send=send, session_id="timed",
                          asr=FakeASR(), vad_factory=EnergyVAD, voices=registry(ToneVoice("Puck")),
                          turn_model=FakeTurnModel(audio_p), text_turn_model=FakeTextModel(text_p),
                          turn_policy=EndOfTurnPolicy(early_reply=early))
    await session.start()
    return session, sent


async def speak_a_turn(session, sent, turns=1):
    await stream(session, tone(1.0))
    while len(contents(sent, "turnComplete")) < turns:
        await stream(session, silence(0.04))
        await asyncio.sleep(0.015)


def timing_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("turn timing:")]


def fields(line):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}


async def test_each_spoken_turn_logs_its_waterfall_once_in_order(caplog):
    caplog.set_level(logging.INFO, logger="openlive.session.turn_timing")
    # The models disagree: the turn ends only after the longer quiet, so the LLM starts early.
    session, sent = await spoken_session(0.95, 0.0)
    await speak_a_turn(session, sent)
    await speak_a_turn(session, sent, turns=2)
    lines = timing_lines(caplog)
    assert len(lines) == 2  # one line per turn, at its first audio
    first, second = fields(lines[0]), fields(lines[1])
    assert (first["turn"], second["turn"]) == (1, 2)
    for timing in (first, second):
        assert {f"{m}_ms" for m in MARKS} <= timing.keys()
        assert timing["early"] == 1  # the reply took the stream started in the pause
        assert all(timing[f"{m}_ms"] >= 0 for m in MARKS)  # all after the end of speech
        # Recognition and the verdict come in the pause, the LLM's request before the turn ends;
        # the reply's own steps follow one another.
        assert timing["asr_final_ms"] <= timing["eot_decided_ms"]
        assert timing["eot_judged_ms"] <= timing["eot_decided_ms"]
        assert timing["llm_request_ms"] <= timing["eot_decided_ms"]
        assert timing["llm_request_ms"] <= timing["llm_first_token_ms"] <= timing["first_clause_ms"]
        assert timing["eot_decided_ms"] <= timing["first_clause_ms"] <= timing["first_audio_ms"]
        assert timing["first_clause_words"] >= 1
    assert "hello" not in lines[0]  # times and counts, never words


async def test_without_an_early_start_the_llm_is_asked_after_the_turn_ends(caplog):
    caplog.set_level(logging.INFO, logger="openlive.session.turn_timing")
    session, sent = await spoken_session(0.95, 0.0, early=False)
    await speak_a_turn(session, sent)
    timing = fields(timing_lines(caplog)[0])
    assert timing["early"] == 0
    assert timing["eot_decided_ms"] <= timing["llm_request_ms"] <= timing["llm_first_token_ms"]


def test_marks_keep_the_first_time_and_the_line_is_relative_to_the_end_of_speech():
    timing = TurnTiming(speech_end=10.0)
    timing.mark("eot_decided", 10.25)
    timing.mark("eot_decided", 11.0)  # later: ignored
    timing.mark("first_audio", 10.9)
    assert timing.line(3) == "turn=3 early=0 eot_decided_ms=250 first_audio_ms=900 stalls=0 stall_ms=0"


def test_the_benchmark_reads_the_servers_line_and_its_legs_add_up(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import waterfall

    timing = TurnTiming(speech_end=100.0, early=True, first_clause_words=4)
    for name, at in (("eot_judged", 100.4), ("asr_final", 100.3), ("eot_decided", 100.45), ("llm_request", 100.31),
                     ("llm_first_token", 100.6), ("first_clause", 100.9), ("first_audio", 101.1)):
        timing.mark(name, at)
    text_log = f"2026-01-01 00:00:00,000 INFO openlive.session.turn_timing session=abc turn timing: {timing.line(2)}"
    session, parsed = waterfall.parse_line(text_log)
    assert session == "abc" and parsed["turn"] == 2 and parsed["first_audio_ms"] == 1100
    json_log = ('{"ts": "x", "level": "info", "logger": "openlive.session.turn_timing", "session": "abc", '
                f'"msg": "turn timing: {timing.line(2)}"}}')
    assert waterfall.parse_line(json_log) == (session, parsed)
    legs = waterfall.legs(parsed)
    assert legs == {"end_of_turn": 450, "recognition": 0, "llm_first_token": 150, "first_clause": 300,
                    "synthesis": 200}
    assert sum(legs.values()) == parsed["first_audio_ms"]
