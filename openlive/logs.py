"""Structured logs: every record carries the session id of the conversation it belongs to.

The session id lives in a context variable set when a session starts; asyncio tasks copy the
context, so records from a session's reply task carry it too without passing it around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("openlive_session_id", default="-")


class _SessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session = session_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "session": getattr(record, "session", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s session=%(session)s %(message)s"


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_SessionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log would print every request path, api keys in ?key= included.
    logging.getLogger("uvicorn.access").disabled = True
    # One line per engine HTTP request is noise at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
