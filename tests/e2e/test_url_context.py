"""The urlContext tool through the unmodified SDK and a real server (issue 24): the page a user names
is read by the server and answered from, and `urlContextMetadata` says what was read.

The page lives on a local HTTP server (tests/support/pages.py), so these servers are configured
with `[url_context] allow_private = true`; the default (refused) is checked on the shared scripted
server. The embedded default model answers from a page with a fact no model knows.
"""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import types

from tests.support.pages import FACT, serving

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
URL_CONTEXT = [types.Tool(url_context=types.UrlContext())]


@pytest.fixture(scope="module")
def site():
    with serving() as base:
        yield base


def _connect(server, key: str = "k"):
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, tools=URL_CONTEXT)
    return client.aio.live.connect(model=MODEL, config=config)


async def _ask(session, text: str, timeout: float = 120) -> list[types.LiveServerMessage]:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    out: list[types.LiveServerMessage] = []

    async def gather() -> None:
        async for message in session.receive():
            out.append(message)
            if message.server_content and message.server_content.turn_complete:
                return

    await asyncio.wait_for(gather(), timeout)
    return out


def _text(messages) -> str:
    return "".join(m.text or "" for m in messages)


def _read(messages) -> list[tuple[str, str]]:
    return [(u.retrieved_url, u.url_retrieval_status.name) for m in messages
            if m.server_content and m.server_content.url_context_metadata
            for u in m.server_content.url_context_metadata.url_metadata or []]


@pytest.fixture(scope="module")
def scripted_pages_server(start_server, tmp_path_factory):
    """The scripted engine with no script echoes what it read: the page's text, after the question."""
    return start_server('[llm.default]\nengine = "scripted"\n\n'
                        '[url_context]\nallow_private = true\nmax_bytes = 100000\ntimeout_s = 1\n')


async def test_the_sdk_gets_url_context_metadata_and_failures_leave_the_session_open(scripted_pages_server,
                                                                                       site) -> None:
    page, secret = f"{site}/page.html", f"{site}/secret?token=s3cret-in-a-url"
    async with _connect(scripted_pages_server) as session:
        messages = await _ask(session, f"What does {page} say about the Zorblat festival?")
        assert _read(messages) == [(page, "URL_RETRIEVAL_STATUS_SUCCESS")]
        assert FACT in _text(messages)
        usage = next(m.usage_metadata for m in messages if m.usage_metadata)
        assert usage.tool_use_prompt_token_count and usage.tool_use_prompt_token_count > 0

        failures = {f"{site}/missing": "HTTP 404", f"{site}/big": "larger than 100000 bytes",
                    f"{site}/slow": "no answer within 1 s"}
        messages = await _ask(session, "Read " + " and ".join(failures))
        assert _read(messages) == [(url, "URL_RETRIEVAL_STATUS_ERROR") for url in failures]
        assert all(f"could not be read: {why}" in _text(messages) for why in failures.values()), _text(messages)

        messages = await _ask(session, f"And {secret}?")  # still open, still reading
        assert _read(messages) == [(secret, "URL_RETRIEVAL_STATUS_SUCCESS")]
    log = scripted_pages_server.log()
    assert "url_context: read http://127.0.0.1" in log and "/secret?…" in log and "s3cret" not in log


async def test_a_private_address_is_refused_by_default_and_the_reply_still_comes(scripted_server, site) -> None:
    page = f"{site}/page.html"
    async with _connect(scripted_server, key="good-key") as session:
        messages = await _ask(session, f"What does {page} say?")
        assert _read(messages) == [(page, "URL_RETRIEVAL_STATUS_ERROR")]
        assert FACT not in _text(messages) and _text(messages)
        assert _read(await _ask(session, "hello")) == []


async def test_the_default_model_answers_from_the_page(start_server, site) -> None:
    server = start_server("[url_context]\nallow_private = true\n")
    page = f"{site}/page.html"
    async with _connect(server) as session:
        messages = await _ask(session, f"What does {page} say about the Zorblat festival? Where is it held?")
    assert _read(messages) == [(page, "URL_RETRIEVAL_STATUS_SUCCESS")]
    assert "Vexhaven" in _text(messages), _text(messages)
