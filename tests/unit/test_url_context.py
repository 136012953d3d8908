"""The urlContext tool (issue 24): pages read over real HTTP from a local site, their limits and
failures, the SSRF guard, and a session that reads the page the user names and says what it read
in urlContextMetadata, with the scripted engine (it echoes what it read)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import replace

import pytest

from openlive.config import UrlContextConfig
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.engines.search.url_context import ERROR, SUCCESS, UrlReader, excerpt, find_urls, is_public, redact_url
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.session.live_session import LiveSession
from tests.support.pages import FACT, serving

LOCAL = UrlContextConfig(allow_private=True, max_bytes=100_000, timeout_s=1.0, max_redirects=3)


@pytest.fixture(scope="module")
def site():
    with serving() as base:
        yield base


async def test_a_page_is_read_as_text_without_its_scripts_styles_or_markup(site) -> None:
    page = await UrlReader(LOCAL).read(f"{site}/page.html")
    assert page.status == SUCCESS and page.title == "The Zorblat festival"
    assert FACT in page.text and "lanterns" in page.text
    assert "hidden" not in page.text and "color" not in page.text and "<" not in page.text
    plain = await UrlReader(LOCAL).read(f"{site}/notes.txt")
    assert plain.status == SUCCESS and FACT in plain.text


async def test_a_redirect_is_followed_within_bounds(site) -> None:
    assert FACT in (await UrlReader(LOCAL).read(f"{site}/moved")).text
    assert "3 redirects" in (await UrlReader(LOCAL).read(f"{site}/loop")).error
    assert "http and https" in (await UrlReader(LOCAL).read(f"{site}/elsewhere")).error


@pytest.mark.parametrize("path, why", [
    ("/missing", "HTTP 404"),
    ("/big", "larger than 100000 bytes (300000)"),  # by its Content-Length, before reading it
    ("/big-stream", "larger than 100000 bytes"),  # no length said: stopped while reading
    ("/slow", "no answer within 1 s"),
    ("/image.png", "content type image/png is not text"),
])
async def test_each_failure_is_an_error_page_saying_why(site, path: str, why: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    page = await UrlReader(LOCAL).read(site + path)
    assert page.status == ERROR and page.error.startswith(why), page.error
    assert not page.text
    assert loop.time() - started < 2.5  # the 1 s deadline holds (the slow page takes 3 s)


@pytest.mark.parametrize("url", ["ftp://example.com/a", "file:///etc/passwd", "http://", "not a url",
                                 "http://no-such-host.invalid/"])
async def test_what_is_not_an_http_page_is_an_error(url: str) -> None:
    page = await UrlReader(LOCAL).read(url)
    assert page.status == ERROR and page.error


@pytest.mark.parametrize("url", ["{site}/page.html", "http://localhost:{port}/page.html", "http://[::1]:{port}/",
                                 "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:127.0.0.1]:{port}/", "http://0.0.0.0:{port}/"])
async def test_private_addresses_are_refused_unless_allowed(site, url: str) -> None:
    url = url.format(site=site, port=site.rsplit(":", 1)[1])
    page = await UrlReader(replace(LOCAL, allow_private=False)).read(url)
    assert page.status == ERROR and "not a public address" in page.error, page.error


async def test_a_redirect_to_a_private_address_is_refused_at_that_hop(site, monkeypatch) -> None:
    """Each hop's host is checked: a public page redirecting inward is refused there."""
    reader = UrlReader(replace(LOCAL, allow_private=False))
    checked = []
    real = reader._address

    async def address(host: str, port: int) -> str:
        checked.append(host)
        if host == "public.example":  # stands in for a public host that redirects to 127.0.0.1
            return site.split("//")[1].split(":")[0]
        return await real(host, port)

    monkeypatch.setattr(reader, "_address", address)
    port = site.rsplit(":", 1)[1]
    page = await reader.read(f"http://public.example:{port}/inward")
    assert checked == ["public.example", "127.0.0.1"] and "not a public address" in page.error


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:10.0.0.1", False), ("2002:7f00:1::", False), ("::", False),
])
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_urls_are_found_in_text_without_the_punctuation_around_them() -> None:
    text = ("Read https://example.com/a.html, then (see http://example.org/b?x=1). "
            "And https://example.com/a.html again; not ftp://x.org or example.com.")
    assert find_urls(text) == ["https://example.com/a.html", "http://example.org/b?x=1"]


def test_a_logged_url_has_no_query_string_or_user_info() -> None:
    assert redact_url("https://user:pw@example.com/a/b?token=s3cret#x") == "https://example.com/a/b?…"
    assert redact_url("http://example.com/") == "http://example.com/"


def test_a_long_page_keeps_its_opening_and_the_passages_about_the_question() -> None:
    filler = [(f"Paragraph {i} is about gardening, soil, seeds and watering plants in spring.", False)
              for i in range(200)]
    blocks = [("Welcome to the town guide.", False), *filler[:120], (FACT, False), *filler[120:]]
    text = excerpt(blocks, "Where is the Zorblat festival held?", 1200)
    assert len(text) <= 1200 and text.startswith("Welcome to the town guide.") and FACT in text and "…" in text
    # With room for one passage, the one about the question; with no word in common, the opening.
    assert FACT in excerpt(blocks, "Where is the Zorblat festival held?", 600)
    assert excerpt(blocks, "Tell me more", 600).startswith("Welcome to the town guide.")
    assert excerpt([("Short.", False)], "anything", 1000) == "Short."


async def test_the_log_names_the_page_without_its_query_string(site, caplog) -> None:
    caplog.set_level(logging.INFO, logger="openlive.engines.search.url_context")
    await UrlReader(LOCAL).read(f"{site}/secret?token=s3cret-value")
    await UrlReader(LOCAL).read(f"{site}/missing?token=s3cret-value")
    assert "/secret?…" in caplog.text and "/missing?…" in caplog.text and "s3cret" not in caplog.text


# ---------------------------------------------------------------------- a session with urlContext

def _setup(tools: list[dict], model: str = "m") -> object:
    return parse_client_frame(json.dumps({"setup": {
        "model": model, "generationConfig": {"responseModalities": ["TEXT"]}, "tools": tools}}))


async def _session(config: UrlContextConfig | None = LOCAL, tools: list[dict] | None = None):
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    session = LiveSession(_setup(tools if tools is not None else [{"urlContext": {}}]), llm=ScriptedEngine("s"),
                          send=send, url_reader=UrlReader(config) if config else None)
    await session.start()
    return session, sent


async def _ask(session: LiveSession, sent: list[dict], text: str) -> list[dict]:
    mark = len(sent)
    await session.handle(parse_client_frame(json.dumps(
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}]}})))
    for _ in range(1000):
        if any(m.get("serverContent", {}).get("turnComplete") for m in sent[mark:]):
            return sent[mark:]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no turnComplete: {sent[mark:]}")


def _reply(messages: list[dict]) -> str:
    return "".join(p.get("text", "") for m in messages
                   for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))


def _metadata(messages: list[dict]) -> list[dict]:
    return [u for m in messages for u in m.get("serverContent", {}).get("urlContextMetadata", {}).get("urlMetadata", [])]


async def test_the_page_the_user_names_is_read_before_the_model_answers(site) -> None:
    session, sent = await _session()
    url = f"{site}/page.html"
    messages = await _ask(session, sent, f"What does {url} say about the Zorblat festival?")
    # The scripted engine echoes what it read: the page's text came after the user's words.
    assert FACT in _reply(messages) and "Answer the user from the page." in _reply(messages)
    assert _metadata(messages) == [{"retrievedUrl": url, "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}]
    # Before generationComplete and turnComplete, like groundingMetadata.
    kinds = [next(iter(m["serverContent"])) for m in messages if "serverContent" in m]
    assert kinds[-3:] == ["urlContextMetadata", "generationComplete", "turnComplete"]
    # Counted as tool use (toolUsePromptTokenCount), as the service counts what url_context read.
    turn = session.conversation.history[-2]
    assert turn.role == "user" and turn.tool_tokens > 0 and turn.tool_tokens < turn.tokens
    # A turn without a URL reads nothing and reports nothing.
    assert _metadata(await _ask(session, sent, "Thanks!")) == []
    assert not session.failure.done()
    await session.aclose()


async def test_pages_that_cannot_be_read_are_errors_and_the_session_goes_on(site) -> None:
    session, sent = await _session()
    missing, slow = f"{site}/missing", f"{site}/slow"
    messages = await _ask(session, sent, f"Compare {missing} with {slow} and {site}/page.html please.")
    assert _metadata(messages) == [
        {"retrievedUrl": missing, "urlRetrievalStatus": ERROR}, {"retrievedUrl": slow, "urlRetrievalStatus": ERROR},
        {"retrievedUrl": f"{site}/page.html", "urlRetrievalStatus": SUCCESS}]
    reply = _reply(messages)
    assert "could not be read: HTTP 404" in reply and "could not be read: no answer within 1 s" in reply
    assert FACT in reply
    assert "You said" in _reply(await _ask(session, sent, "hello"))  # still open and answering
    assert not session.failure.done()
    await session.aclose()


async def test_a_private_address_is_refused_when_not_allowed_and_the_reply_still_comes(site) -> None:
    session, sent = await _session(replace(LOCAL, allow_private=False))
    url = f"{site}/page.html"
    messages = await _ask(session, sent, f"What does {url} say?")
    assert _metadata(messages) == [{"retrievedUrl": url, "urlRetrievalStatus": ERROR}]
    assert "not a public address" in _reply(messages) and FACT not in _reply(messages)
    assert not session.failure.done()
    await session.aclose()


async def test_only_the_users_words_are_followed_and_at_most_max_urls(site) -> None:
    session, sent = await _session(replace(LOCAL, max_urls=2))
    urls = [f"{site}/page.html", f"{site}/notes.txt", f"{site}/moved"]
    messages = await _ask(session, sent, " ".join(urls))
    assert [u["retrievedUrl"] for u in _metadata(messages)] == urls[:2]
    await session.aclose()


async def test_with_functions_too_the_page_is_read_and_the_router_still_runs(site) -> None:
    weather = {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {}}}
    session, sent = await _session(tools=[{"functionDeclarations": [weather]}, {"urlContext": {}}])
    assert session.conversation.tools.url_context and session.conversation.tools
    messages = await _ask(session, sent, f"Summarise {site}/notes.txt")
    assert _metadata(messages)[0]["urlRetrievalStatus"] == SUCCESS and FACT in _reply(messages)
    await session.aclose()


async def test_url_context_is_refused_by_name_where_the_server_reads_no_pages() -> None:
    with pytest.raises(ProtocolError) as caught:
        await _session(config=None)
    assert caught.value.code == 1007 and caught.value.reason == "url_context is not supported."


async def test_a_context_update_with_a_tool_not_served_ends_the_session_naming_it() -> None:
    session, _ = await _session()
    update = parse_client_frame(json.dumps({"contextUpdate": {"tools": {"tools": [{"googleMaps": {}}]}}}))
    with pytest.raises(ProtocolError) as caught:
        await session.handle(update)
    assert caught.value.code == 1007 and caught.value.reason == "google_maps is not supported."
    await session.aclose()


async def test_google_search_without_a_provider_is_said_once_in_the_log(caplog) -> None:
    caplog.set_level(logging.INFO, logger="openlive.session.live_session")
    session, _ = await _session(tools=[{"googleSearch": {}}])
    await session.handle(parse_client_frame(json.dumps(
        {"contextUpdate": {"tools": {"tools": [{"googleSearch": {}}]}}})))
    lines = [r for r in caplog.records if "no search provider" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    await session.aclose()
