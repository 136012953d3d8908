"""Bounded reading of the documents clients and files hand us: every json.loads goes through here.

Python's json module is not made for hostile input. It recurses once per nesting level and gives
up with RecursionError (a 10,000-deep `[[[…` frame); an integer past 4,300 digits is a bare
ValueError; `NaN`, `Infinity` and `1e400` come out as floats no engine accepts; `"\\ud800"` comes
out as a str that cannot even be encoded back to UTF-8. Each of those used to reach the session
and end as 1011 (or HTTP 500). Here each one is a `JSONLimitError` that says what was wrong and,
where it can, at which field, for the caller to send as 1007 on the socket or 400 on REST.

The limits are checked in one iterative walk after the C parser has done the parsing, so an
ordinary frame (a few keys around a long base64 string) costs next to nothing, and a hostile one
costs at most `max_values` steps.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_snake

from .errors import fit_path

# Digits an integer literal may have: past 309 it is beyond even a double (~1.8e308), so no field
# can hold it, and int() of 4,300+ digits raises a ValueError of its own.
MAX_INT_DIGITS = 309

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 16 << 20  # the server's default max_frame_bytes
    max_depth: int = 100  # protobuf's own default recursion limit for JSON
    max_values: int = 100_000  # every object, array, string, number, bool and null counts one


FRAME_LIMITS = Limits()


class JSONLimitError(ValueError):
    """A document we refuse. `message` is the client-facing reason; `too_big` marks a size refusal."""

    def __init__(self, message: str, *, too_big: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_big = too_big


class _HugeNumber(str):
    """An integer literal too long to convert: kept as text until the walk can say where it was."""


def _parse_int(text: str) -> int | _HugeNumber:
    return int(text) if len(text) - text.startswith("-") <= MAX_INT_DIGITS else _HugeNumber(text)


def field_path(loc: tuple[Any, ...]) -> str:
    """('setup', 'generationConfig', 'tools', 0) → "setup.generation_config.tools[0]", as the service writes it."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += ("." if out else "") + to_snake(_printable(str(item)[:60]))
    return out


def _printable(text: str) -> str:
    """A key as it can appear in a reason: lone surrogates replaced, so the reason itself encodes."""
    return _SURROGATE.sub("\ufffd", text)


def _loc(node: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """Unwind the (parent, key) chain the walk keeps instead of a path per value."""
    keys: list[Any] = []
    while node is not None:
        node, key = node
        keys.append(key)
    return tuple(reversed(keys))


def is_valid_unicode(text: str) -> bool:
    """False for a str holding a lone UTF-16 surrogate (JSON "\\ud800"): it has no UTF-8 form."""
    return text.isascii() or _SURROGATE.search(text) is None


def check(value: Any, limits: Limits = FRAME_LIMITS, *, finite: bool = True,
          what: str = "Invalid JSON payload received.") -> None:
    """Walk a parsed document: depth, number of values, finite numbers, valid strings."""
    count = 0
    # (value, depth, node): node is (parent node, key), unwound into a path only on an error.
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(value, 1, None)]
    while stack:
        item, depth, node = stack.pop()
        count += 1
        if count > limits.max_values:
            raise JSONLimitError(f"{what} More than {limits.max_values} values.")
        if isinstance(item, str):
            if isinstance(item, _HugeNumber):
                raise JSONLimitError(fit_path("Invalid value at '", field_path(_loc(node)),
                                              f"', {item[:20]}…: number out of range."))
            if not is_valid_unicode(item):
                raise JSONLimitError(fit_path("Invalid value at '", field_path(_loc(node)),
                                              "' (TYPE_STRING): not valid UTF-8 (a lone surrogate)."))
        elif isinstance(item, float):
            if finite and not math.isfinite(item):
                shown = "NaN" if item != item else ("Infinity" if item > 0 else "-Infinity")
                raise JSONLimitError(fit_path("Invalid value at '", field_path(_loc(node)),
                                              f"', {shown}: numbers must be finite."))
        elif isinstance(item, (dict, list)):
            if depth > limits.max_depth:
                raise JSONLimitError(f"{what} Nested more than {limits.max_depth} levels "
                                     f"deep at '{field_path(_loc(node))[:40]}'.")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and not is_valid_unicode(key):
                        raise JSONLimitError(fit_path(f"{what} A name at '", field_path(_loc(node)),
                                                      "' is not valid UTF-8."))
                    stack.append((child, depth + 1, (node, key)))
            else:
                stack.extend((child, depth + 1, (node, i)) for i, child in enumerate(item))


def loads(data: str | bytes | bytearray, limits: Limits = FRAME_LIMITS) -> Any:
    """Parse one JSON document within `limits`; JSONLimitError for anything we would not use."""
    size = len(data) if isinstance(data, (bytes, bytearray)) else None
    if size is None and len(data) * 4 > limits.max_bytes:  # only then is the exact UTF-8 size worth computing
        size = len(data.encode("utf-8", "surrogatepass"))  # type: ignore[union-attr]
    if size is not None and size > limits.max_bytes:
        raise JSONLimitError(f"Request payload size exceeds the limit: {limits.max_bytes} bytes.", too_big=True)
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JSONLimitError("Invalid JSON payload received. The document is not valid UTF-8.") from None
    try:
        value = json.loads(data, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise JSONLimitError(f"Invalid JSON payload received. {exc.msg} at position {exc.pos}.") from None
    except RecursionError:
        # The C scanner stops at the interpreter's recursion limit (~1,000), long before the stack
        # is in danger; anything that deep is far past max_depth anyway.
        raise JSONLimitError(f"Invalid JSON payload received. Nested more than {limits.max_depth} levels deep.") \
            from None
    check(value, limits)
    return value


def loads_toml(text: str, limits: Limits = FRAME_LIMITS) -> dict[str, Any]:
    """A TOML file (the config, a reply script) within the same limits; JSONLimitError or TOMLDecodeError."""
    if len(text) > limits.max_bytes:
        raise JSONLimitError(f"Larger than {limits.max_bytes} bytes.", too_big=True)
    try:
        value = tomllib.loads(text)
    except RecursionError:  # tomllib recurses per nested inline array or table
        raise JSONLimitError(f"Nested more than {limits.max_depth} levels deep.") from None
    # TOML's own nan and inf are the file author's choice, not a client's.
    check(value, limits, finite=False, what="Invalid TOML document.")
    return value
