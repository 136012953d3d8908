"""Acceptance (issue 13): faults keep their promises, and no handle already given is lost.

Each fault, on a real server process: a connection cut in the middle of a frame; the state store
full (SQLite at its size cap fails exactly as on a full disk); Redis stopped under a running
session and started again. The session's last handle resumes the conversation afterwards, and
the server logs no traceback. (kill -9 mid-session: tests/e2e/test_resumption.py; a client that
stops reading: tests/e2e/test_connection_limits.py.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
from pathlib import Path

import pytest
import websockets
from google import genai
from google.genai import errors, types

from tests.support.redis_server import restartable_redis
from tests.support.scripts import RECALL_NAME

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def config(tmp: Path, store: str) -> str:
    script = tmp / "replies.toml"
    script.write_text(RECALL_NAME)
    return f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n\n[store]\n{store}\n'


def connect(server, handle: str | None = None):
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    return client.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(
        response_modalities=["TEXT"], session_resumption=types.SessionResumptionConfig(handle=handle)))


async def say(session, text: str) -> tuple[str, str | None]:
    """One text turn: the reply, and the handle that came with it (None: no new one)."""
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    reply, handle = [], None
    async for message in session.receive():
        reply.append(message.text or "")
        update = message.session_resumption_update
        if update and update.resumable and update.new_handle:
            handle = update.new_handle
    return "".join(reply), handle


async def recalled(server, handle: str) -> str:
    async with connect(server, handle) as session:
        return (await say(session, "What is my name?"))[0]


def assert_clean(server) -> None:
    log = server.log()
    assert "Traceback" not in log and "closing 1011" not in log, log[-4000:]


async def test_a_connection_cut_mid_frame_loses_nothing_acknowledged(start_server, tmp_path):
    server = start_server(config(tmp_path, f'path = "{tmp_path / "state.sqlite3"}"'))
    uri = f"wss://127.0.0.1:{server.port}{LIVE_PATH}?key=k"  # the key the resuming client uses
    handle = None
    async with websockets.connect(uri, ssl=ssl.create_default_context(cafile=str(server.cert))) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}", "sessionResumption": {},
                                            "generationConfig": {"responseModalities": ["TEXT"]}}}))
        await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [
            {"text": "My name is Zorblax."}]}], "turnComplete": True}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            handle = (message.get("sessionResumptionUpdate") or {}).get("newHandle") or handle
            if message.get("serverContent", {}).get("turnComplete"):
                break
        # The head and half the payload of a 64 KiB frame, then the socket is gone (no close).
        header = bytes([0x81, 0xFE, 0x01, 0x00]) + secrets.token_bytes(4)  # masked text, 16-bit length 256
        ws.transport.write(header + b'{"clientContent": {"turns": [{"role": "user", "parts": [{"text": "ha')
        ws.transport.abort()
    assert handle
    assert await recalled(server, handle) == "Your name is Zorblax."
    assert "client disconnected" in server.log()
    assert_clean(server)


async def test_a_full_store_gives_no_new_handle_and_the_last_one_still_resumes(start_server, tmp_path):
    # 0.1 MiB: the four snapshots kept of a conversation that grows by ~12 KB of (incompressible)
    # text a turn fill it within a few turns.
    server = start_server(config(tmp_path, f'path = "{tmp_path / "state.sqlite3"}"\nmax_mb = 0.1'))
    handles: list[str | None] = []
    async with connect(server) as session:
        _, first = await say(session, "My name is Zorblax.")
        assert first
        for _ in range(6):
            reply, handle = await say(session, secrets.token_urlsafe(4500))
            assert reply.startswith("You said: ")  # the conversation itself carries on
            handles.append(handle)
    assert handles[0] is not None and handles[-1] is None  # the store filled up on the way
    last = [h for h in handles if h][-1]
    assert await recalled(server, last) == "Your name is Zorblax."
    log = server.log()
    assert "could not save a resumption snapshot" in log and "database or disk is full" in log
    assert_clean(server)


async def test_redis_stopped_and_restarted_under_a_running_session(start_server, tmp_path):
    with restartable_redis() as redis:
        server = start_server(config(tmp_path, f'backend = "redis"\nurl = "{redis.url}"'))
        async with connect(server) as session:
            _, acknowledged = await say(session, "My name is Zorblax.")
            assert acknowledged
            redis.stop()
            # The running session carries on; its state cannot be kept, so no new handle is given.
            reply, handle = await say(session, "Redis is down")
            assert (reply, handle) == ("You said: Redis is down", None)
            with pytest.raises(errors.APIError) as caught:  # a new session needs the store: refused
                async with connect(server) as refused:
                    await say(refused, "hello")
            assert caught.value.code == 1011 and "unavailable" in str(caught.value).lower()
            redis.start()
            for _ in range(3):  # the client reconnects to Redis on a later call
                reply, handle = await say(session, "Redis is back")
                if handle:
                    break
            assert reply == "You said: Redis is back" and handle
        assert await recalled(server, acknowledged) == "Your name is Zorblax."
        assert await recalled(server, handle) == "Your name is Zorblax."
    log = server.log()
    assert "Traceback" not in log, log[-4000:]
