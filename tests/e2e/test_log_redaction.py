"""Acceptance (issue 13): no key, ephemeral token or resumption handle ever reaches the server's log.

A real server (scripted model, keys required, DEBUG logs) is used in every way a secret reaches
it: the SDK with a key (header), a wrong key, an ephemeral token from the REST endpoint, a
resumption handle it was given; and raw clients putting them where the JS SDK and others do
(`?key=`, `?access_token=`, `Authorization: Bearer`). Then its whole output is searched for each.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets
from google import genai
from google.genai import errors, types

from .conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:The SDK.s (token creation|ephemeral token)")]

MODEL = "gemini-live-2.5-flash-preview"
KEY = "redaction-key-9f2c1e7a"
WRONG = "wrong-key-4b8d0c3e5f"
LIVE = "/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"


def client(server: ServerProcess, key: str, version: str | None = None) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url, api_version=version))


def resumable(handle: str | None = None) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=["TEXT"],
                                   session_resumption=types.SessionResumptionConfig(handle=handle))


async def say(session, text: str) -> tuple[str, list[str]]:
    """One turn: the reply and every resumption handle that came with it."""
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    reply, handles = [], []
    async for message in session.receive():
        reply.append(message.text or "")
        update = message.session_resumption_update
        if update and update.new_handle:
            handles.append(update.new_handle)
    return "".join(reply), handles


async def raw_session(server: ServerProcess, query: str, method: str = "BidiGenerateContent",
                      version: str = "v1beta") -> int:
    """A raw client that puts its credential in the URL (as the JS SDK does); returns the close code."""
    uri = server.base_url.replace("https://", "wss://") + "/" + LIVE.format(version=version, method=method) + query
    setup = {"setup": {"model": f"models/{MODEL}", "generationConfig": {"responseModalities": ["TEXT"]}}}
    async with websockets.connect(uri, ssl=ssl.create_default_context(cafile=str(server.cert))) as ws:
        await ws.send(json.dumps(setup))
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if "setupComplete" in first:
            await ws.close()
            return 1000
        raise AssertionError(first)


async def refused(server: ServerProcess, query: str) -> int:
    try:
        await raw_session(server, query)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    raise AssertionError("the session was not refused")


async def test_no_secret_reaches_the_log(start_server: Callable[..., ServerProcess], tmp_path: Path):
    script = tmp_path / "replies.toml"
    script.write_text("token_delay_ms = 1\n")
    server = start_server(f"""
[server]
api_keys = ["{KEY}"]

[llm.default]
engine = "scripted"
script = "{script}"

[store]
path = "{tmp_path / 'state.sqlite3'}"
""", "--log-level", "DEBUG")
    secrets = {KEY, WRONG}

    # The SDK with a key (x-goog-api-key), twice: the second time resuming with the handle it got.
    async with client(server, KEY).aio.live.connect(model=MODEL, config=resumable()) as session:
        reply, handles = await say(session, "my secret is safe")
    assert reply == "You said: my secret is safe" and handles
    secrets |= set(handles)
    async with client(server, KEY).aio.live.connect(model=MODEL, config=resumable(handles[-1])) as session:
        reply, more = await say(session, "still safe")
    assert reply == "You said: still safe"
    secrets |= set(more)

    # A wrong key through the SDK.
    with pytest.raises(errors.APIError) as caught:
        async with client(server, WRONG).aio.live.connect(model=MODEL, config=resumable()) as session:
            await say(session, "hello")
    assert caught.value.code == 1007

    # An ephemeral token from the REST endpoint, used by the SDK (Authorization: Token …).
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    minter = client(server, KEY, "v1alpha")
    token = minter.auth_tokens.create(config=types.CreateAuthTokenConfig(
        uses=0, expire_time=now + datetime.timedelta(minutes=5),
        new_session_expire_time=now + datetime.timedelta(minutes=1))).name
    assert token and token.startswith("auth_tokens/")
    secrets |= {token, token.removeprefix("auth_tokens/")}
    async with client(server, token, "v1alpha").aio.live.connect(model=MODEL, config=resumable()) as session:
        reply, handles = await say(session, "with a token")
    assert reply == "You said: with a token"
    secrets |= set(handles)

    # Secrets where the JS SDK and hand-written clients put them: the URL and the Authorization header.
    assert await raw_session(server, f"?key={KEY}") == 1000
    assert await raw_session(server, f"?access_token={token}", "BidiGenerateContentConstrained", "v1alpha") == 1000
    assert await refused(server, f"?key={WRONG}") == 1007
    verify = ssl.create_default_context(cafile=str(server.cert))
    for params, headers in (({"key": KEY}, {}), ({"key": WRONG}, {}), ({}, {"Authorization": f"Bearer {KEY}"}),
                            ({}, {"x-goog-api-key": WRONG})):
        httpx.get(f"{server.base_url}/v1beta/models", params=params, headers=headers, verify=verify, timeout=10)

    server.secrets |= secrets  # the conftest checks them again when the server's fixture ends
    server.stop()
    log = server.log()
    for secret in sorted(secrets):
        assert secret not in log, f"a secret of {len(secret)} characters is in the server's log"
    # The lines that used to carry them are there, redacted: the search above looked at real lines.
    assert re.search(r'"WebSocket /+ws/\S+BidiGenerateContent\?key=\[REDACTED\]" \[accepted\]', log), log[-3000:]
    assert "access_token=[REDACTED]" in log
    assert re.search(r'"GET /v1beta/models\?key=\[REDACTED\] HTTP/1.1" 200', log)
    assert "[REDACTED]]" not in log  # each value is cut once, however many nets it passes
    assert re.search(r"setup model=\S+ \([23]\.x\) llm=default api=\w+ credential=[0-9a-f]{4} resumed handle=[0-9a-f]{4}", log)
