"""Acceptance (issue 13): GET /metrics in the Prometheus format moves with a real session.

A text turn through the google-genai SDK against the scripted server, then a scrape parsed with
prometheus_client's own parser: the session, its turn, its close code and the latency histograms
all counted.
"""

from __future__ import annotations

import ssl
import time

import httpx
import pytest
from google import genai
from google.genai import types
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"


def scrape(server: ServerProcess) -> dict[tuple[str, frozenset], float]:
    """Every sample of the server's /metrics, keyed by name and labels. No key is needed, as for /healthz."""
    reply = httpx.get(f"{server.base_url}/metrics", verify=ssl.create_default_context(cafile=str(server.cert)),
                      timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_text_turn_moves_the_counters_and_histograms(scripted_server: ServerProcess):
    before = scrape(scripted_server)
    client = genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=scripted_server.base_url))
    async with client.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(response_modalities=["TEXT"])) \
            as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="count me")]))
        reply = "".join([m.text async for m in session.receive() if m.text])
        assert reply == "You said: count me"
        during = scrape(scripted_server)
        assert sample(during, "openlive_sessions_open") >= 1

    # The server counts the close once it has seen the client's close frame: wait for it.
    deadline = time.monotonic() + 15
    while True:
        after = scrape(scripted_server)
        if sample(after, "openlive_session_closes_total", code="1000") > \
                sample(before, "openlive_session_closes_total", code="1000"):
            break
        assert time.monotonic() < deadline, "the close was never counted"
        time.sleep(0.1)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert sample(after, "openlive_sessions_total") >= 1 and moved("openlive_sessions_total") >= 1
    assert moved("openlive_turns_total", outcome="complete") >= 1
    assert moved("openlive_reply_latency_seconds_count", input="text", output="text") >= 1
    assert moved("openlive_llm_first_token_seconds_count", llm="default") >= 1
    # Every observation falls in the +Inf bucket: the histogram's buckets moved with its count.
    assert moved("openlive_reply_latency_seconds_bucket", input="text", output="text", le="+Inf") >= 1
    assert sample(after, "openlive_sessions_open") == sample(before, "openlive_sessions_open")
    assert sample(after, "openlive_engine_requests_in_flight", engine="llm") == 0
