"""Sans-I/O codec: client frames in, typed events out; server messages in, frames out.

Nothing here touches a socket, so every edge case of the wire is a short unit test.
A client frame is parsed exactly once, and every failure becomes a `ProtocolError`
with the close code and reason the real service would give.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import ValidationError

from .bounded_json import FRAME_LIMITS, JSONLimitError, Limits, field_path, loads
from .errors import MAX_REASON_BYTES, CloseCode, ProtocolError, invalid_argument
from .errors import fit_path as _fit_path
from .messages import ClientEvent, ClientMessage

# The Python SDK's websockets client refuses frames over 1 MiB (max_size) and reports 1009/1006.
MAX_SERVER_FRAME_BYTES = 1 << 20
# Headroom for the JSON around a split payload.
_FRAME_BUDGET = MAX_SERVER_FRAME_BYTES - 4096

_PROTO_TYPES = {
    "float": "TYPE_FLOAT",
    "int": "TYPE_INT32",
    "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
    "literal": "TYPE_ENUM",
    "enum": "TYPE_ENUM",
    "bytes": "TYPE_BYTES",
    "value_error": "TYPE_BYTES",
}


_path = field_path


def _shown(value: Any) -> str:
    """A refused value as the reason quotes it: short, and JSON-escaped (a lone surrogate stays printable)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"{str(value)[:20]}…"  # json.dumps of a huge int is slow and the digits say nothing
    if isinstance(value, (str, int, float, bool)) or value is None:
        return json.dumps(value)[:40]
    return type(value).__name__


def _describe(error: dict[str, Any], *, limit: int = MAX_REASON_BYTES) -> str:
    """One pydantic error in the wording of the real service's protobuf-JSON parser.

    A long field path is cut from the left to keep the message within `limit` bytes (a close
    reason's 123 by default; a REST error body has room for all of it).
    """
    kind = error["type"]

    def fit_path(head: str, path: str, tail: str) -> str:
        return _fit_path(head, path, tail, limit)

    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return fit_path(f'Invalid JSON payload received. Unknown name "{str(loc[-1])[:60]}" at \'', _path(loc[:-1]),
                        "': Cannot find field.")
    if kind == "missing":
        return fit_path("Missing required field '", _path(loc), "'.")
    if kind == "bad_schema":
        return fit_path("Invalid value at '", _path(loc), f"': {error['msg']}.")
    if kind in ("too_long", "string_too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        return fit_path("Invalid value at '", _path(loc), f"': at most {ctx.get('max_length')} {unit}.")
    proto = ctx.get("proto") or next((v for k, v in _PROTO_TYPES.items() if kind.startswith(k)), None)
    tail = f"'{f' ({proto})' if proto else ''}, {_shown(error.get('input'))}"
    if kind in ("value_range", "json_kind"):
        tail += f": {error['msg']}."
    return fit_path("Invalid value at '", _path(loc), tail)


def parse_client_frame(frame: str | bytes, limits: Limits = FRAME_LIMITS) -> ClientEvent:
    """Parse one WebSocket frame (text or binary) into the single event it carries.

    Every failure is a ProtocolError: 1009 for a frame over `limits.max_bytes`, 1007 for the rest.
    """
    try:
        data = loads(frame, limits)
    except JSONLimitError as exc:
        code = CloseCode.MESSAGE_TOO_BIG if exc.too_big else CloseCode.INVALID_ARGUMENT
        raise ProtocolError(code, exc.message) from None
    if not isinstance(data, dict):
        raise invalid_argument("Invalid JSON payload received. Expected an object.")
    try:
        message = ClientMessage.model_validate(data)
    except ValidationError as exc:
        raise invalid_argument(_describe(exc.errors(include_url=False)[0])) from None
    events = [v for v in (message.setup, message.client_content, message.realtime_input,
                          message.tool_response, message.context_update) if v is not None]
    if len(events) != 1:
        names = ", ".join(data) or "none"
        raise invalid_argument(f"Invalid JSON payload received. A message needs exactly one field of setup, "
                               f"clientContent, realtimeInput, toolResponse, contextUpdate; got {names}.")
    return events[0]


# ---------------------------------------------------------------------------------------------
# Server → client


def _encode_bytes(value: Any) -> Any:
    """Replace raw bytes by standard base64, recursively (the SDKs decode either alphabet)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _encode_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_bytes(v) for v in value]
    return value


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(_encode_bytes(message), ensure_ascii=False, separators=(",", ":"))


def _split_parts(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Split a serverContent.modelTurn whose parts do not fit one frame into several messages."""
    content = message.get("serverContent")
    if not content or set(message) != {"serverContent"}:
        return None
    turn = content.get("modelTurn")
    if not turn or set(content) != {"modelTurn"}:
        return None
    pieces: list[dict[str, Any]] = []
    for part in turn.get("parts", []):
        blob = part.get("inlineData")
        raw = blob.get("data") if blob else None
        if isinstance(raw, (bytes, bytearray)) and len(raw) * 4 // 3 > _FRAME_BUDGET:
            # Even-sized chunks keep 16-bit PCM samples whole.
            step = (_FRAME_BUDGET * 3 // 4) & ~1
            for start in range(0, len(raw), step):
                pieces.append({**part, "inlineData": {**blob, "data": raw[start:start + step]}})
        else:
            pieces.append(part)
    return [{"serverContent": {"modelTurn": {**turn, "parts": [p]}}} for p in pieces]


def encode_server_message(message: dict[str, Any]) -> list[str]:
    """Serialize a camelCase server message into one or more frames, each under 1 MiB."""
    text = _dump(message)
    if len(text.encode("utf-8")) <= MAX_SERVER_FRAME_BYTES:
        return [text]
    frames = [_dump(piece) for piece in _split_parts(message) or [message]]
    if any(len(f.encode("utf-8")) > MAX_SERVER_FRAME_BYTES for f in frames):
        # Only a server bug gets here (e.g. one text part over 1 MiB): fail loudly, not silently.
        raise ProtocolError(1011, "Internal error occurred.")
    return frames
