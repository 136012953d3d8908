"""Metrics: the session counts turns and latencies at the moments it knows; GET /metrics serves them."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from openlive import metrics
from openlive.config import load_config
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.server.app import OpenLiveApp

from .test_session import open_session, settle, user
from .test_speech_in import contents, session_with, silence, stream, tone, until


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return found or 0.0


async def test_a_text_turn_counts_a_complete_turn_its_reply_latency_and_first_token():
    turns = value("openlive_turns_total", outcome="complete")
    latency = value("openlive_reply_latency_seconds_count", input="text", output="text")
    first = value("openlive_llm_first_token_seconds_count", llm="rec")
    session, _, _ = await open_session()
    await session.handle(user("hello there"))
    await settle(session)
    assert value("openlive_turns_total", outcome="complete") == turns + 1
    assert value("openlive_reply_latency_seconds_count", input="text", output="text") == latency + 1
    assert value("openlive_llm_first_token_seconds_count", llm="rec") == first + 1
    assert value("openlive_engine_requests_in_flight", engine="llm") == 0  # every request counted out


async def test_a_spoken_turn_is_timed_from_its_end_and_counts_recognition_in_flight():
    latency = value("openlive_reply_latency_seconds_count", input="voice", output="text")
    total = value("openlive_reply_latency_seconds_sum", input="voice", output="text")
    session, sent = await session_with()
    await stream(session, silence(0.3) + tone(1.0) + silence(0.7))
    await until(lambda: contents(sent, "turnComplete"))
    assert value("openlive_reply_latency_seconds_count", input="voice", output="text") == latency + 1
    # From the end of the turn: the audio itself (sent faster than real time here) is not part of it.
    assert 0.0 <= value("openlive_reply_latency_seconds_sum", input="voice", output="text") - total < 1.0
    assert value("openlive_engine_requests_in_flight", engine="asr") == 0


async def test_an_interrupted_turn_is_counted_as_such():
    interrupted = value("openlive_turns_total", outcome="interrupted")
    session, _, _ = await open_session(engine=ScriptedEngine("slow", token_delay_ms=30))
    await session.handle(user("one two three four five six seven eight"))
    await asyncio.sleep(0.1)
    await session.handle(user("stop"))
    await settle(session)
    assert value("openlive_turns_total", outcome="interrupted") == interrupted + 1
    assert value("openlive_engine_requests_in_flight", engine="llm") == 0


async def test_a_failed_turn_is_counted_as_failed(tmp_path):
    script = tmp_path / "s.toml"
    script.write_text('[[reply]]\nmatch = "crash"\nerror = "boom"\n')
    failed = value("openlive_turns_total", outcome="failed")
    session, _, _ = await open_session(engine=ScriptedEngine("s", script))
    await session.handle(user("crash now"))
    await asyncio.wait_for(session.failure, 5)
    assert value("openlive_turns_total", outcome="failed") == failed + 1


@pytest.mark.parametrize("code, label", [(1000, "1000"), (1011, "1011"), (4321, "other")])
def test_close_codes_are_bounded_labels(code, label):
    before = value("openlive_session_closes_total", code=label)
    open_now = value("openlive_sessions_open")
    metrics.session_opened()
    assert value("openlive_sessions_open") == open_now + 1
    metrics.session_closed(code)
    assert value("openlive_session_closes_total", code=label) == before + 1
    assert value("openlive_sessions_open") == open_now


def test_the_endpoint_serves_the_text_format_without_a_key():
    app = OpenLiveApp(load_config(api_keys=("k-1234",)))
    reply = TestClient(app.asgi).get("/metrics")  # no lifespan: /metrics needs no engine
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(reply.text)}
    assert {"openlive_sessions_open", "openlive_sessions", "openlive_turns", "openlive_session_closes",
            "openlive_reply_latency_seconds", "openlive_llm_first_token_seconds",
            "openlive_engine_requests_in_flight", "openlive_frames_dropped", "openlive_audio_dropped_seconds",
            "openlive_event_loop_lag_seconds", "openlive_context_compressions",
            "process_cpu_seconds"} <= names


async def test_a_blocked_event_loop_is_seen_as_lag():
    def over_100ms() -> float:
        return value("openlive_event_loop_lag_seconds_count") - value("openlive_event_loop_lag_seconds_bucket", le="0.1")

    before = over_100ms()
    watcher = asyncio.create_task(metrics.watch_event_loop(period_s=0.01))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # what a CPU-heavy call on the loop would do to every session
    await asyncio.sleep(0.05)
    watcher.cancel()
    assert over_100ms() >= before + 1
