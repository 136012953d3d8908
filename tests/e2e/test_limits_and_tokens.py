"""Acceptance (issue 6): per-key limits and ephemeral tokens, through the unmodified SDKs.

Over a limit the client gets the service's close (1011, "Resource has been exhausted") and the
sessions already admitted carry on. Ephemeral tokens come from `client.auth_tokens.create` and
open sessions on the Constrained path, within their uses, times and locked fields.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors, types

from .conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:The SDK.s (token creation|ephemeral token)")]

MODEL = "gemini-live-2.5-flash-preview"

SCRIPT = """
token_delay_ms = 2

[[reply]]
match = "instruction"
text = "I was told: {system}"
"""


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "replies.toml").write_text(SCRIPT)
    return start_server(f"""
[server]
api_keys = ["key-a", "key-b", "key-c", "key-t"]

[llm.default]
engine = "scripted"
script = "{tmp / 'replies.toml'}"

[store]
path = "{tmp / 'state.sqlite3'}"

[limits]
sessions_per_key = 2
tokens_per_minute = 3000
""")


def connect(server: ServerProcess, key: str, config: types.LiveConnectConfig | None = None, *,
            version: str | None = None):
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url, api_version=version))
    return client.aio.live.connect(model=MODEL, config=config or types.LiveConnectConfig(response_modalities=["TEXT"]))


async def say(session, text: str) -> str:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    return "".join([m.text async for m in session.receive() if m.text])


# ---------------------------------------------------------------------------------------- limits


async def test_the_session_over_the_limit_is_refused_and_the_others_carry_on(server):
    async with connect(server, "key-a") as one, connect(server, "key-a") as two:
        with pytest.raises(errors.APIError) as caught:
            async with connect(server, "key-a") as three:
                await say(three, "hello")
        assert caught.value.code == 1011
        assert "Resource has been exhausted" in str(caught.value) and "concurrent sessions" in str(caught.value)
        async with connect(server, "key-b") as other:  # another key has its own count
            assert await say(other, "hi") == "You said: hi"
        assert await say(one, "still here") == "You said: still here"
        assert await say(two, "me too") == "You said: me too"
    # Closing a session frees its place.
    async with connect(server, "key-a") as again:
        assert await say(again, "back") == "You said: back"


async def test_a_full_server_refuses_the_next_session_with_the_quota_error(start_server):
    full = start_server('[llm.default]\nengine = "scripted"\n\n[server]\napi_keys = ["k-1", "k-2"]\n\n'
                        "[limits]\nmax_sessions = 2\n")
    async with connect(full, "k-1") as one, connect(full, "k-2") as two:
        with pytest.raises(errors.APIError) as caught:
            async with connect(full, "k-2") as three:  # any key: the machine is full, not the key
                await say(three, "hello")
        assert caught.value.code == 1011
        assert "Resource has been exhausted" in str(caught.value) and "at most 2 concurrent" in str(caught.value)
        assert await say(one, "still here") == "You said: still here"
        assert await say(two, "me too") == "You said: me too"
    async with connect(full, "k-1") as again:  # a closed session frees its seat
        assert await say(again, "back") == "You said: back"


async def test_a_burst_over_the_token_budget_is_refused_and_others_are_undisturbed(server):
    paragraph = "A rather long message that costs a good many tokens every time it is read. " * 20  # ~380 tokens
    async with connect(server, "key-b") as bystander:
        turns = 0
        with pytest.raises(errors.APIError) as caught:
            async with connect(server, "key-c") as greedy:
                for turns in range(1, 30):
                    await say(greedy, paragraph)
        assert caught.value.code == 1011 and "tokens per minute" in str(caught.value)
        assert 2 <= turns <= 10  # 3000 tokens a minute: a few turns of a growing history
        # The budget is the key's, not the session's: a new session cannot spend it again.
        with pytest.raises(errors.APIError) as caught:
            async with connect(server, "key-c") as refused:
                for _ in range(3):
                    await say(refused, paragraph)
        assert caught.value.code == 1011 and "tokens per minute" in str(caught.value)
        assert await say(bystander, "fine?") == "You said: fine?"


# ---------------------------------------------------------------------------------------- tokens


def minter(server: ServerProcess) -> genai.Client:
    return genai.Client(api_key="key-t", http_options=types.HttpOptions(base_url=server.base_url,
                                                                         api_version="v1alpha"))


def now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.timezone.utc)


def token(server: ServerProcess, *, uses: int = 1, lock: list[str] | None = None, expire_s: float = 1800,
          **config) -> str:
    constraints = types.LiveConnectConstraints(model=MODEL, config=types.LiveConnectConfig(**config)) if config \
        else None
    client = minter(server)  # held: a Client closes its HTTP connection when collected
    issued = client.auth_tokens.create(config=types.CreateAuthTokenConfig(
        uses=uses, expire_time=now() + datetime.timedelta(seconds=expire_s),
        new_session_expire_time=now() + datetime.timedelta(seconds=min(expire_s, 60)),
        live_connect_constraints=constraints, lock_additional_fields=lock))
    assert issued.name and issued.name.startswith("auth_tokens/")
    return issued.name


async def test_a_token_opens_sessions_within_its_uses_with_its_locked_config(server):
    name = token(server, uses=2, lock=[], response_modalities=["TEXT"],
                 system_instruction="You are Captain Zorblax.")
    for _ in range(2):
        # The client sets nothing: the token's constraints are the session's configuration.
        async with connect(server, name, version="v1alpha") as session:
            assert await say(session, "What was your instruction?") == "I was told: You are Captain Zorblax."
    with pytest.raises(errors.APIError) as caught:
        async with connect(server, name, version="v1alpha") as session:
            await say(session, "hello")
    assert caught.value.code == 1008 and "no uses left" in str(caught.value)


async def test_a_locked_field_cannot_be_changed_but_an_unlocked_one_can(server):
    name = token(server, uses=0, lock=["temperature"], system_instruction="You are Captain Zorblax.",
                 temperature=0.2)
    changed = types.LiveConnectConfig(response_modalities=["TEXT"], system_instruction="You are a pirate.")
    with pytest.raises(errors.APIError) as caught:
        async with connect(server, name, changed, version="v1alpha") as session:
            await say(session, "hello")
    assert caught.value.code == 1007 and "systemInstruction" in str(caught.value) and "locked" in str(caught.value)
    hotter = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0.9)
    with pytest.raises(errors.APIError) as caught:
        async with connect(server, name, hotter, version="v1alpha") as session:
            await say(session, "hello")
    assert caught.value.code == 1007 and "temperature" in str(caught.value)
    # Unlocked fields (output modality, transcription) are the client's to choose.
    free = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0.2,
                                   output_audio_transcription=types.AudioTranscriptionConfig())
    async with connect(server, name, free, version="v1alpha") as session:
        assert await say(session, "instruction?") == "I was told: You are Captain Zorblax."


async def test_expired_tampered_and_misused_tokens_are_refused(server):
    short = token(server, uses=0, expire_s=2)
    async with connect(server, short, version="v1alpha") as session:
        assert await say(session, "quick") == "You said: quick"
    await asyncio.sleep(2.5)
    for bad, code in ((short, 1008), (short[:-3] + "abc", 1008)):
        with pytest.raises(errors.APIError) as caught:
            async with connect(server, bad, version="v1alpha") as session:
                await say(session, "hello")
        assert caught.value.code == code, bad
    # A token cannot mint tokens (the SDK refuses to try; a raw request is refused here).
    name = token(server, uses=0)
    reply = httpx.post(f"{server.base_url}/v1alpha/auth_tokens", json={"uses": 1}, headers={"x-goog-api-key": name},
                       verify=ssl.create_default_context(cafile=str(server.cert)))
    assert reply.status_code == 403 and reply.json()["error"]["status"] == "PERMISSION_DENIED"
    # Bad requests get the REST error shape the SDK turns into ClientError.
    client = minter(server)
    with pytest.raises(errors.ClientError) as caught:
        client.auth_tokens.create(config={"uses": -1})
    assert caught.value.code == 400


async def test_resuming_does_not_spend_a_use(server):
    name = token(server, uses=1)
    config = lambda handle=None: types.LiveConnectConfig(  # noqa: E731
        response_modalities=["TEXT"], session_resumption=types.SessionResumptionConfig(handle=handle))
    handle = None
    async with connect(server, name, config(), version="v1alpha") as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="My name is Ada.")]))
        async for message in session.receive():
            update = message.session_resumption_update
            if update and update.new_handle:
                handle = update.new_handle
    async with connect(server, name, config(handle), version="v1alpha") as session:  # the one use is spent
        assert await say(session, "still me") == "You said: still me"


def test_the_js_sdk_connects_with_a_token_as_access_token(server, node_harness: Path):
    name = token(server, uses=1)
    env = {**os.environ, "OPENLIVE_BASE_URL": server.base_url, "OPENLIVE_API_KEY": name}
    done = subprocess.run(["node", "live_text.mjs", "hello from node"], cwd=node_harness, capture_output=True,
                          text=True, timeout=60, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr[-2000:])
    assert "".join(result["texts"]) == "You said: hello from node"
