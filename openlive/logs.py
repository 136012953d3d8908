"""Structured logs: every record carries the session id of the conversation it belongs to, and no secret.

The session id lives in a context variable set when a session starts; asyncio tasks copy the
context, so records from a session's reply task carry it too without passing it around.

Secrets (API keys, ephemeral tokens, resumption handles) are cut out at this edge, for every
logger, uvicorn's included: see `redaction.py` for what is recognised.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from .redaction import configure_secrets, redact

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("openlive_session_id", default="-")


class _SessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session = session_id_var.get()
        return True


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, (int, float)):
        return arg  # numbers keep their type: %d and %.1f still format them
    text = str(arg)
    clean = redact(text)
    # Only an argument that held a secret becomes its (redacted) text; the rest keep their repr.
    return arg if clean == text and redact(repr(arg)) == repr(arg) else clean


class RedactingFilter(logging.Filter):
    """Cuts secrets out of a record's message, arguments and traceback before any handler sees it.

    Arguments stay a tuple of the same length (uvicorn's access formatter unpacks them), so the
    record still formats as its logger meant.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_openlive_redacted", False):
            return True  # one record passes through several handlers and loggers
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif record.msg is not None and not isinstance(record.msg, (int, float)):
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: the traceback is rendered once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._openlive_redacted = True
        return True


class RedactingFormatter(logging.Formatter):
    """The last net: whatever the inner formatter writes is redacted once more as a whole line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "session": getattr(record, "session", "-"),
            # Redacted before JSON escaping, which could otherwise split a secret the patterns know.
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(record.exc_text or self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s session=%(session)s %(message)s"

# Loggers that may be given handlers of their own (uvicorn's, with a log_config): the filter sits
# on them too, so a record is clean before it reaches any handler.
_THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "websockets")

_redacting = RedactingFilter()


def install_redaction() -> None:
    """Put the redacting filter on every handler and logger that exists, and on uvicorn's loggers."""
    loggers: list[logging.Logger] = [logging.getLogger(), *(logging.getLogger(n) for n in _THIRD_PARTY_LOGGERS)]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        if _redacting not in logger.filters:
            logger.addFilter(_redacting)
        for handler in logger.handlers:
            if _redacting not in handler.filters:
                handler.addFilter(_redacting)


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str | None] = ()) -> None:
    configure_secrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_SessionFilter())
    handler.addFilter(_redacting)
    handler.setFormatter(RedactingFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    install_redaction()
    # One line per engine HTTP request is noise at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
