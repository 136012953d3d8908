"""Secrets never reach a log line: API keys, ephemeral tokens and resumption handles are cut out.

Redaction happens at the logging edge (`logs.py` installs it on every handler), so a line is safe
whoever wrote it: our code, uvicorn (it logs each WebSocket's URL, `?key=` included: the JS SDK
always sends one), httpx, or a traceback. Two nets, both applied to every line:

* **by position**: the value of a secret query parameter (`?key=`, `&access_token=`, …), of a
  secret header or field (`x-goog-api-key`, `Authorization: Bearer/Token …`, a JSON or repr
  `"handle": "…"`), an ephemeral token name (`auth_tokens/…`) and a URL's password;
* **by value**: the secrets this process knows. The configured ones (API keys, engine keys) are
  replaced wherever they appear. The ones met at run time (every credential a client presents,
  wrong ones too, every token minted, every handle issued or received) are kept only as SHA-256
  digests in a bounded memory, and a line's base64url-like words are hashed and looked up, so
  this module holds no more usable secrets than the server already did.

Where a line needs to say *which* key or handle, it logs `fingerprint(secret)`: a few hex digits
of a SHA-256, enough to tell a handful apart, too few to confirm a guess offline.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Query parameters whose values are credentials. `?key=` is the Gemini API's own; the others are
# what OAuth, proxies and hand-written clients use.
_PARAMS = r"key|api_?key|access_?token|token|auth|password|secret|handle"
_QUERY = re.compile(rf"([?&;](?:{_PARAMS})=)[^&\s\"'\\#;,]+", re.IGNORECASE)

# A value ends at a quote, a space or a closing bracket, but a "[REDACTED]" inside it is taken
# whole: the filter cuts arguments and the formatter the whole line, and a value already (partly)
# cut, such as "auth_tokens/[REDACTED]", must become one clean "[REDACTED]", not leave a "]".
_VALUE = r"""(?:[^\s'",)}\]\[]|\[REDACTED\])+"""

# A header written as `name: value`, `name=value`, `'name': 'value'` or `(b'name', b'value')`.
_SEP = r"""['"]?\s*[:=,]\s*(?:b?['"])?"""
_API_KEY_HEADER = re.compile(rf"((?:x-goog-api-key|x-api-key){_SEP}){_VALUE}", re.IGNORECASE)
_AUTHORIZATION = re.compile(rf"(authorization{_SEP}(?:(?:bearer|token|basic)\s+)?){_VALUE}", re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)(?:[A-Za-z0-9._~+/=-]|\[REDACTED\]){8,}")

# A secret field in JSON or a Python repr: {"handle": "…"}, {'api_key': '…'}, handle='…'.
_FIELDS = r"handle|new_?handle|key|api_?key|x-goog-api-key|access_?token|authorization|password|secret"
_QUOTED_FIELD = re.compile(rf"""(["'](?:{_FIELDS})["']\s*:\s*b?["'])[^"'\\]+""", re.IGNORECASE)
_REPR_FIELD = re.compile(rf"""((?<![\w-])(?:{_FIELDS})=b?["'])[^"'\\]+""", re.IGNORECASE)

# An ephemeral token's name is the token: `auth_tokens/<43 url-safe characters>` (or %2F-encoded).
_TOKEN_NAME = re.compile(r"(auth_tokens(?:/|%2F))[A-Za-z0-9_%.~-]+", re.IGNORECASE)

# scheme://user:password@host (a Redis URL with its password, say).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+(?=@)", re.IGNORECASE)

_PATTERNS = (_QUERY, _API_KEY_HEADER, _AUTHORIZATION, _BEARER, _QUOTED_FIELD, _REPR_FIELD, _TOKEN_NAME,
             _URL_PASSWORD)

# Words a run-time secret could be: handles and token names are base64url, and so are most keys.
_WORD = re.compile(r"[A-Za-z0-9_-]{8,}")
MIN_KNOWN_LENGTH = 8  # shorter values would match ordinary words; the patterns above still cover them
MAX_REMEMBERED = 4096  # run-time secrets remembered (their digests), most recent first kept


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def fingerprint(secret: str | None) -> str:
    """A short, non-reversible name for a secret, for lines that must tell keys or handles apart."""
    if not secret:
        return "none"
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:4]


class _Known:
    """The secrets this process knows, and their removal from a text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # log records come from worker threads too
        self._configured: tuple[str, ...] = ()
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    def configure(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so that a key containing another is cut whole.
        values = {s for s in secrets if s and len(s) >= 4}
        with self._lock:
            self._configured = tuple(sorted(values | set(self._configured), key=len, reverse=True))

    def remember(self, secret: str | None) -> None:
        if not secret:
            return
        values = [secret]
        if secret.lower().startswith("auth_tokens/"):
            values.append(secret[len("auth_tokens/"):])  # the random part alone is a word of its own
        with self._lock:
            for value in values:
                if len(value) < MIN_KNOWN_LENGTH:
                    continue
                digest = _digest(value)
                self._digests[digest] = None
                self._digests.move_to_end(digest)
            while len(self._digests) > MAX_REMEMBERED:
                self._digests.popitem(last=False)

    def redact(self, text: str) -> str:
        for value in self._configured:
            if value in text:
                text = text.replace(value, REDACTED)
        if self._digests:
            text = _WORD.sub(lambda m: REDACTED if _digest(m.group(0)) in self._digests else m.group(0), text)
        return text

    def forget_all(self) -> None:
        """For tests."""
        with self._lock:
            self._configured = ()
            self._digests.clear()


_known = _Known()


def configure_secrets(secrets: Iterable[str | None]) -> None:
    """Secrets from the configuration (API keys, engine keys): cut out of every line, any length ≥ 4."""
    _known.configure(secrets)


def remember_secret(secret: str | None) -> None:
    """A secret met at run time (a presented credential, a token, a handle): cut out from now on."""
    _known.remember(secret)


def forget_secrets() -> None:
    _known.forget_all()


def redact(text: str) -> str:
    """`text` with every secret it holds replaced by [REDACTED]."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return _known.redact(text)
