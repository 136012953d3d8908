"""Acceptance (issue 13): a live server, fuzzed over its WebSocket, never fails with 1011 or a traceback.

Hypothesis generates frame sequences (tests/support/live_fuzz.py) and sends each on a fresh
connection to a real server process; every connection must end with 1007/1008/1009 and a reason,
or not end at all. Meanwhile a healthy session, through the SDK, completes every turn. Bounded
for CI by OPENLIVE_FUZZ_EXAMPLES (default 800); bench/fuzz.py runs thousands.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import threading

import pytest
from google import genai
from google.genai import types
from hypothesis import HealthCheck, given, settings

from tests.support.live_fuzz import LIVE_PATH, acceptable, cases, probe

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Generating overly large repr")]

EXAMPLES = int(os.environ.get("OPENLIVE_FUZZ_EXAMPLES", "800"))


def test_fuzzed_frames_close_as_the_service_would_while_a_healthy_session_carries_on(start_server):
    server = start_server('[llm.default]\nengine = "scripted"\n')
    uri = f"wss://127.0.0.1:{server.port}{LIVE_PATH}"
    tls = ssl.create_default_context(cafile=str(server.cert))
    endings: collections.Counter[int | None] = collections.Counter()
    stop = threading.Event()
    healthy: list[str] = []

    def converse() -> None:  # a well-behaved client beside the fuzzer, on its own thread and loop
        async def run() -> None:
            client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
            async with client.aio.live.connect(model="gemini-live-2.5-flash-preview",
                                               config=types.LiveConnectConfig(response_modalities=["TEXT"])) as s:
                n = 0
                while not stop.is_set():
                    n += 1
                    await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=f"turn {n}")]))
                    healthy.append("".join([m.text or "" async for m in s.receive()]))
                    await asyncio.sleep(0.2)
        asyncio.run(run())

    beside = threading.Thread(target=converse)
    beside.start()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cases)
    def fuzz(case: tuple[bool, list[str | bytes]]) -> None:
        ending = asyncio.run(probe(uri, *case, tls=tls))
        endings[ending.code] += 1
        assert acceptable(ending), (ending, case)

    try:
        fuzz()
    finally:
        stop.set()
        beside.join(120)
    print(f"live fuzz: {sum(endings.values())} connections, endings {dict(endings)}")
    assert len(healthy) >= 3 and healthy == [f"You said: turn {i + 1}" for i in range(len(healthy))]
    # It reached both the validation and the sessions behind it.
    assert endings[1007] > 0 and endings[None] > 0, endings
    log = server.log()
    assert "Traceback" not in log and "closing 1011" not in log, log[-4000:]
