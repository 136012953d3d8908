"""Prometheus metrics: what the server and its sessions count, in one registry, served at GET /metrics.

The session layer calls the small functions here at the moments it already knows (a turn ended,
the first words of a reply went out, the LLM's first token came); none of them does I/O, so the
session stays testable without a server. `exposition()` is for the transport.

Labels are bounded: close codes, engine kinds, configured LLM names, never a key or a session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, GCCollector,
                               PlatformCollector, ProcessCollector, disable_created_metrics, generate_latest)

# A `_created` timestamp beside every counter and histogram doubles the page for nothing a
# dashboard uses (process-wide, but this process is the server).
disable_created_metrics()
# Our own registry (with the usual process and Python collectors): nothing another library
# registers globally ends up on our endpoint, and the names here cannot clash with theirs.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Latency of a spoken or written reply: from tens of milliseconds (a fast LLM, text) to seconds
# (recognition, a slow LLM, then synthesis of the first clause).
_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

SESSIONS_OPEN = Gauge("openlive_sessions_open", "Live API sessions (WebSocket connections) open now.",
                      registry=REGISTRY)
SESSIONS = Counter("openlive_sessions", "Live API sessions accepted.", registry=REGISTRY)
CLOSES = Counter("openlive_session_closes", "Live API sessions ended, by WebSocket close code (the server's, "
                 "or the client's when it closed first).", ["code"], registry=REGISTRY)
TURNS = Counter("openlive_turns", "Model turns ended: complete (turnComplete after generationComplete), "
                "interrupted, failed (the session ended with an error), or declined (proactive audio: the input "
                "was not said to the assistant).", ["outcome"], registry=REGISTRY)
REPLY_LATENCY = Histogram(
    "openlive_reply_latency_seconds",
    "From the end of the user's turn (as the server saw it) to the first audio or text of the reply sent. "
    'input="voice", output="audio" is voice-to-voice latency.',
    ["input", "output"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
FIRST_TOKEN = Histogram("openlive_llm_first_token_seconds",
                        "From an LLM request to its first token, by configured LLM.", ["llm"],
                        buckets=_LATENCY_BUCKETS, registry=REGISTRY)
IN_FLIGHT = Gauge("openlive_engine_requests_in_flight",
                  "Engine requests sessions are waiting on (queued or running), by engine kind.", ["engine"],
                  registry=REGISTRY)
FRAMES_DROPPED = Counter("openlive_frames_dropped", "Client media frames dropped unseen, by kind (video: frames "
                         "that came faster than the vision worker could look at them, broken ones, and every "
                         "frame while [vision] engine is none).", ["kind"], registry=REGISTRY)
FRAMES_RECEIVED = Counter("openlive_client_frames", "WebSocket frames read from Live API clients.", registry=REGISTRY)
FRAMES_PACED = Counter("openlive_client_frames_paced", "Client frames read late because their connection sent "
                       "more than [server] max_frames_per_s (when set; no cap by default).", registry=REGISTRY)
COMPRESSIONS = Counter("openlive_context_compressions", "Times a session's context passed its compression "
                       "trigger and its oldest turns were dropped (sliding window).", registry=REGISTRY)
AUDIO_DROPPED = Counter("openlive_audio_dropped_seconds",
                        "Seconds of user audio dropped: the oldest part of a turn longer than the longest kept.",
                        registry=REGISTRY)

LOOP_LAG = Histogram("openlive_event_loop_lag_seconds",
                    "How late the event loop ran a timer due every 250 ms: time every session, /healthz and "
                    "/metrics wait behind other work. Over 0.1 s, the server is overloaded or something blocks it.",
                    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY)

EARLY_REPLIES = Counter("openlive_early_replies",
                        "LLM streams started in a pause, before the turn ended (session/early_reply.py): used by "
                        "the reply, or dropped (the user went on, or the turn's request differed): LLM work spent "
                        "for nothing.", ["outcome"], registry=REGISTRY)

ENGINE_KINDS = ("llm", "asr", "tts", "turn")

# Series that exist from the start, at zero: a dashboard (and rate()) needs them before the first event.
for _outcome in ("complete", "interrupted", "failed"):
    TURNS.labels(_outcome)
for _kind in ENGINE_KINDS:
    IN_FLIGHT.labels(_kind)
FRAMES_DROPPED.labels("video")
for _outcome in ("used", "dropped"):
    EARLY_REPLIES.labels(_outcome)

_KNOWN_CODES = frozenset({1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015})


def session_opened() -> None:
    SESSIONS.inc()
    SESSIONS_OPEN.inc()


def session_closed(code: int) -> None:
    SESSIONS_OPEN.dec()
    # A client may close with any code in 3000-4999: those share one series.
    CLOSES.labels(str(int(code)) if code in _KNOWN_CODES else "other").inc()


def turn_ended(outcome: str) -> None:
    TURNS.labels(outcome).inc()


def early_reply(outcome: str) -> None:
    EARLY_REPLIES.labels(outcome).inc()


def reply_started(input_kind: str, output: str, seconds: float) -> None:
    """The first audio or text of a reply went out `seconds` after the user's turn ended."""
    REPLY_LATENCY.labels(input_kind, output).observe(seconds)


class FirstToken:
    """Times one LLM request, from now to its first token."""

    def __init__(self, llm: str) -> None:
        self._llm = llm
        self._asked: float | None = time.monotonic()

    def token(self) -> float | None:
        """A token arrived; only the first one is observed: its wait in seconds is returned."""
        if self._asked is None:
            return None
        seconds = time.monotonic() - self._asked
        FIRST_TOKEN.labels(self._llm).observe(seconds)
        self._asked = None
        return seconds


_waiting: dict[str, int] = dict.fromkeys(ENGINE_KINDS, 0)  # IN_FLIGHT's values, readable without a scrape


@contextmanager
def in_flight(engine: str) -> Iterator[None]:
    """Count an engine request for as long as a session waits on it (cancellation included)."""
    gauge = IN_FLIGHT.labels(engine)
    gauge.inc()
    _waiting[engine] = _waiting.get(engine, 0) + 1
    try:
        yield
    finally:
        gauge.dec()
        _waiting[engine] -= 1


def busy(*engines: str) -> bool:
    """Whether any session waits on one of these engine kinds now (in this process)."""
    return any(_waiting.get(engine, 0) > 0 for engine in engines)


def frame_dropped(kind: str, count: int = 1) -> None:
    FRAMES_DROPPED.labels(kind).inc(count)


def frame_received(paced: bool) -> None:
    FRAMES_RECEIVED.inc()
    if paced:
        FRAMES_PACED.inc()


def context_compressed() -> None:
    COMPRESSIONS.inc()


def audio_dropped(seconds: float) -> None:
    AUDIO_DROPPED.inc(seconds)


async def watch_event_loop(period_s: float = 0.25) -> None:
    """Observe how late a timer fires, forever (run as a task for the server's life)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period_s
        await asyncio.sleep(period_s)
        LOOP_LAG.observe(max(0.0, loop.time() - due))


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
