"""Secrets never reach a log line: every form a key, token or handle takes, cut out at the edge."""

from __future__ import annotations

import io
import json
import logging

import pytest

from openlive.logs import JsonFormatter, RedactingFilter, RedactingFormatter, TEXT_FORMAT, configure_logging
from openlive.redaction import (REDACTED, configure_secrets, fingerprint, forget_secrets, redact, remember_secret)
from openlive.session.resumption import new_handle

KEY = "AIzaSyD-real-looking-key_0123456789"
TOKEN = "auth_tokens/0d3vXbQp9mZ8kq2WlC7cR1sT5uY6iO4eA-_nHjBfGgK"
HANDLE = new_handle()


@pytest.fixture(autouse=True)
def clean():
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize("line, secret", [
    # uvicorn's WebSocket and access lines: the JS SDK always sends ?key=
    (f'127.0.0.1:5000 - "WebSocket //ws/google.ai.generativelanguage.v1beta.GenerativeService.'
     f'BidiGenerateContent?key={KEY}" [accepted]', KEY),
    (f'127.0.0.1:5000 - "GET /v1beta/models?pageSize=5&key={KEY} HTTP/1.1" 200', KEY),
    (f"/ws/x?alt=sse&KEY={KEY}#frag", KEY),
    (f"/ws/x?api_key={KEY}", KEY),
    (f"/ws/x?access_token={TOKEN}", TOKEN),
    ("/ws/x?access_token=auth_tokens%2F0d3vXbQp9mZ8kq2WlC7cR1sT5uY6iO4eA", "0d3vXbQp9mZ8kq2WlC7cR1sT5uY6iO4eA"),
    # headers in their usual written forms
    (f"x-goog-api-key: {KEY}", KEY),
    (f"{{'x-goog-api-key': '{KEY}', 'host': 'h'}}", KEY),
    (f"[(b'x-goog-api-key', b'{KEY}')]", KEY),
    (f"Authorization: Bearer {KEY}", KEY),
    (f"authorization: Token {TOKEN}", TOKEN),
    (f"{{'authorization': 'Bearer {KEY}'}}", KEY),
    (f"sent Bearer {KEY} upstream", KEY),
    # an ephemeral token name anywhere
    (f"token {TOKEN} was used up", TOKEN[len("auth_tokens/"):]),
    # a resumption handle as JSON or a repr
    (f'{{"setup": {{"sessionResumption": {{"handle": "{HANDLE}"}}}}}}', HANDLE),
    (f'{{"sessionResumptionUpdate": {{"newHandle": "{HANDLE}", "resumable": true}}}}', HANDLE),
    (f"SessionResumptionConfig(handle='{HANDLE}', transparent=None)", HANDLE),
    # a password in a URL (a Redis store's)
    ("state store: redis://:hunter2-password@10.0.0.7:6379/0", "hunter2-password"),
    ("state store: redis://user:hunter2-password@10.0.0.7:6379/0", "hunter2-password"),
])
def test_secrets_are_cut_out_by_where_they_stand(line, secret):
    clean = redact(line)
    assert secret not in clean
    assert REDACTED in clean


def test_what_surrounds_a_secret_is_kept():
    assert redact("redis://:pw-1234@10.0.0.7:6379/0") == f"redis://:{REDACTED}@10.0.0.7:6379/0"
    line = f'127.0.0.1:5000 - "GET /v1beta/models?key={KEY}&pageSize=5 HTTP/1.1" 200'
    assert redact(line) == f'127.0.0.1:5000 - "GET /v1beta/models?key={REDACTED}&pageSize=5 HTTP/1.1" 200'
    assert redact("user said 'the key to happiness' (1.0 s of audio)") == \
        "user said 'the key to happiness' (1.0 s of audio)"
    assert redact("/v1beta/models?pageToken=50") == "/v1beta/models?pageToken=50"


@pytest.mark.parametrize("line", [f"x-goog-api-key: {KEY}", f"/ws?key={KEY}&a=b", f"Authorization: Bearer {KEY}",
                                  f'{{"handle": "{HANDLE}"}}', f"redis://:{KEY}@host", f"authorization: Token {TOKEN}",
                                  f"Bearer {TOKEN}"])
def test_redacting_twice_changes_nothing(line):
    once = redact(line)
    assert redact(once) == once and "]]" not in once
    # The filter cuts an argument first, the formatter then the line it is part of.
    if " " in line:
        name, _, value = line.partition(" ")
        assert redact(name + " " + redact(value)) == once


def test_configured_secrets_are_cut_out_wherever_they_appear():
    configure_secrets(["good-key", None, "", "abc"])  # too short to cut everywhere: "abc"
    assert redact("the client said good-key in passing") == f"the client said {REDACTED} in passing"
    assert redact("abc stays") == "abc stays"


def test_secrets_met_at_run_time_are_cut_out_as_words():
    wrong = "wrong-key-someone-typed"
    remember_secret(wrong)
    remember_secret(HANDLE)
    remember_secret(TOKEN)
    remember_secret("short")  # too short: patterns still cover it where it stands
    assert redact(f"store error for {HANDLE}: timeout") == f"store error for {REDACTED}: timeout"
    assert redact(f"bad credential ({wrong})") == f"bad credential ({REDACTED})"
    assert TOKEN[len("auth_tokens/"):] not in redact(f"name={TOKEN[len('auth_tokens/'):]}")
    assert redact("short words stay") == "short words stay"
    assert redact("an ordinary sentence with no secret") == "an ordinary sentence with no secret"


def test_fingerprints_tell_secrets_apart_without_showing_them():
    assert fingerprint(KEY) == fingerprint(KEY) != fingerprint(KEY + "x")
    assert len(fingerprint(KEY)) == 4 and fingerprint(KEY) not in KEY
    assert fingerprint(None) == "none"


# ------------------------------------------------------------------ the logging edge


def _record(msg: str, *args, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"lookup of {HANDLE} failed")
        except RuntimeError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, args, exc_info)


def test_the_filter_cleans_message_arguments_and_traceback_and_keeps_their_types():
    remember_secret(HANDLE)
    record = _record('%s - "WebSocket %s" [accepted] %d', "127.0.0.1:1", f"/ws/x?key={KEY}", 200, exc=True)
    assert RedactingFilter().filter(record)
    assert record.args == ("127.0.0.1:1", f"/ws/x?key={REDACTED}", 200)
    assert KEY not in record.getMessage()
    assert HANDLE not in record.exc_text and "RuntimeError" in record.exc_text
    # A handler that formats on its own (pytest's caplog, a user's) sees the redacted traceback.
    assert HANDLE not in logging.Formatter().format(record)


def test_an_object_argument_that_holds_a_secret_becomes_its_redacted_text():
    class Url:
        def __str__(self) -> str:
            return f"wss://h/ws?key={KEY}"

    record = _record("connecting to %s (%r)", Url(), 3)
    RedactingFilter().filter(record)
    assert KEY not in record.getMessage() and "(3)" in record.getMessage()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configured_logging_redacts_every_logger_uvicorns_included(fmt, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root, httpx = logging.getLogger(), logging.getLogger("httpx")
    saved = root.handlers[:], root.level, httpx.level
    try:
        configure_logging("DEBUG", fmt, secrets=["configured-key-1"])
        remember_secret(HANDLE)
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:1",
                                                f"/ws/x?key={KEY}")
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET",
                                                 f"/v1beta/models?key={KEY}", "1.1", 200)
        logging.getLogger("openlive.test").info("a handle %s and a key configured-key-1", HANDLE)
        try:
            raise ValueError(f"Authorization: Bearer {KEY}")
        except ValueError:
            logging.getLogger("openlive.test").exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        httpx.setLevel(saved[2])
    out = stream.getvalue()
    assert out.count("\n") >= 4
    for secret in (KEY, HANDLE, "configured-key-1"):
        assert secret not in out
    assert out.count(REDACTED) >= 5
    if fmt == "json":
        assert all(json.loads(line)["msg"] for line in out.splitlines() if line.startswith("{"))


def test_the_formatter_is_the_last_net():
    formatter = RedactingFormatter(logging.Formatter(TEXT_FORMAT))
    record = _record(f"?key={KEY}")
    record.session = "-"
    assert KEY not in formatter.format(record)
    assert KEY not in JsonFormatter().format(record)


def test_the_configuration_names_all_its_credentials(tmp_path):
    from openlive.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[server]\napi_keys = ["k-one"]\n[llm.remote]\nengine = "openai"\nbase_url = "http://h/v1"\n'
                    'api_key = "sk-engine"\n[asr]\napi_key = "asr-key"\n[search]\napi_key = "search-key"\n'
                    '[store]\nbackend = "redis"\nurl = "redis://:p%40ss@10.0.0.7:6379/0"\n')
    assert set(load_config(path).secrets) == {"k-one", "sk-engine", "asr-key", "search-key", "p%40ss",
                                                "p@ss"}
