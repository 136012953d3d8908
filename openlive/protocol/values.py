"""The ranges of the values a client sets, checked when a message is parsed, before any engine sees them.

The real service refuses a temperature of 5 or a negative maxOutputTokens with 1007; so must we,
instead of handing the value to llama.cpp (whose HTTP 400 became our 1011) or to `int()` (whose
OverflowError did). The ranges are the service's own where it documents them (temperature 0..2,
topP 0..1, penalties in [-2, 2), at most 5 stop sequences), and the protobuf field's type where it
does not (an int32 is an int32). NaN and the infinities are refused everywhere: pydantic would
otherwise accept the strings "NaN" and "Infinity" for a float.

Fields openlive accepts without acting on them are checked for their shape only: an enum name
(`EnumName`), or one of a few JSON kinds (`OneOf`).

Each check raises a pydantic error of kind `value_range`, `bad_schema`, `enum` or `json_kind`
carrying the reason; `codec._describe` turns it into "Invalid value at
'setup.generation_config.temperature' …".
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from .schemas import SchemaError, check_schema

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _rule(low: float, high: float, kind: tuple[int, int] | None, high_open: bool, too_low: bool) -> str:
    """The shortest true wording: the reason has 123 bytes, and the field's path takes many of them."""
    if kind is not None and high == kind[1]:  # bounded above only by the protobuf type
        if not too_low or low == kind[0]:
            return "out of range"
        return "must not be negative" if low == 0 else "must be positive" if low == 1 else f"must be at least {low}"
    return f"must be in [{low:g}, {high:g}{')' if high_open else ']'}"


def _number(low: float, high: float, *, proto: str, high_open: bool = False,
            kind: tuple[int, int] | None = None) -> AfterValidator:
    def check(value: float | int) -> float | int:
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("value_range", "must be a finite number", {"proto": proto})
        if not (low <= value < high if high_open else low <= value <= high):
            rule = _rule(low, high, kind, high_open, too_low=value < low)
            raise PydanticCustomError("value_range", rule, {"proto": proto})
        return value

    return AfterValidator(check)


def Float(low: float, high: float, *, high_open: bool = False) -> Any:  # noqa: N802 (a type factory)
    return Annotated[float, _number(low, high, proto="TYPE_FLOAT", high_open=high_open)]


def Int32(low: int = INT32[0], high: int = INT32[1]) -> Any:  # noqa: N802
    return Annotated[int, _number(low, high, proto="TYPE_INT32", kind=INT32)]


def Int64(low: int = INT64[0], high: int = INT64[1]) -> Any:  # noqa: N802
    return Annotated[int, _number(low, high, proto="TYPE_INT64", kind=INT64)]


def _schema(value: Any) -> Any:
    if value is not None:
        try:
            check_schema(value)
        except SchemaError as exc:
            # The reason goes through the context: a template would read braces in it as fields.
            raise PydanticCustomError("bad_schema", "{reason}", {"reason": str(exc)}) from None
    return value


# A function's or a response's schema: a JSON object of bounded depth and size (see schemas.py).
Schema = Annotated[Any, AfterValidator(_schema)]

_ENUM_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,99}")


def _enum_name(value: str) -> str:
    if not _ENUM_NAME.fullmatch(value):
        raise PydanticCustomError("enum", "not an enum value", {"proto": "TYPE_ENUM"})
    return value


# An enum openlive does not act on: any name of the protobuf enum style is taken, so a value an
# SDK adds later is not refused, while a value of the wrong shape is.
EnumName = Annotated[str, AfterValidator(_enum_name)]

_KINDS: dict[str, tuple[str, Any]] = {
    "object": ("an object", lambda v: isinstance(v, dict)),
    "objects": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v)),
    "bool": ("a bool", lambda v: isinstance(v, bool)),
    "strings": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)),
}


def OneOf(*kinds: str) -> Any:  # noqa: N802 (a type factory)
    """A value openlive does not read that the SDKs' types and older clients spell differently
    (one object or a list of them; a bool or an object): its JSON kind is checked, nothing more.
    A pydantic union would put its members' names into the refused field's path."""
    wanted = [_KINDS[k] for k in kinds]
    rule = " or ".join(name for name, _ in wanted)

    def check(value: Any) -> Any:
        if value is not None and not any(test(value) for _, test in wanted):
            raise PydanticCustomError("json_kind", "must be {rule}", {"rule": rule})
        return value

    return Annotated[Any, AfterValidator(check)]


# The service's limits, and the engines': at most 5 stop sequences (Gemini's own), a sampled
# answer of at most 65,536 tokens (Gemini 2.5's output limit; an engine's own window is smaller).
MAX_STOP_SEQUENCES = 5
MAX_OUTPUT_TOKENS = 65536
StopSequences = Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=MAX_STOP_SEQUENCES)]
