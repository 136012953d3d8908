"""Property-based fuzzing of the client-frame parser (issue 13: validation that cannot crash).

Whatever a client sends, `parse_client_frame` either returns a typed event or raises
`ProtocolError` with 1007, 1008 or 1009 and a reason that fits a close frame: never any other
exception, which the transport would turn into 1011 and a traceback. A setup that parses must
also be taken by the session's own readers (options, tools, context policy) without a crash,
and hold only values an engine can use: finite numbers and strings that encode.

Bounded for CI: a few hundred examples per property, no example database on disk.
"""

from __future__ import annotations

import json
import math
import os
import re
import typing
from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # a venv made before hypothesis joined the test extras
    if os.environ.get("OPENLIVE_REQUIRE_ALL") == "1":  # scripts/test: everything must be installed
        raise
    pytest.skip("hypothesis is not installed: pip install -e '.[test]'", allow_module_level=True)
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from openlive.protocol import ProtocolError, parse_client_frame
from openlive.protocol.messages import ClientMessage, GenerationConfig, Setup
from openlive.session.context import ContextPolicy
from openlive.session.options import SessionOptions
from openlive.session.tools import ToolSet

# The shaped strategies are built from every wire field: their repr is long, and harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Any character, lone surrogates included (JSON can carry them as "\ud800").
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=20)
numbers = st.one_of(
    st.integers(),
    # Integer literals up to 6,000 digits: past int32, int64, a double and int()'s own 4,300-digit
    # limit. Python cannot even json.dumps those, so they travel as a placeholder (see _dumps).
    st.integers(1, 6000).map(lambda digits: f"\0HUGE{digits}\0"),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 0.5, 1e30, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=25)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _check_refusal(frame: str | bytes) -> Any:
    try:
        return parse_client_frame(frame)
    except ProtocolError as exc:
        assert exc.code in (1007, 1008, 1009), exc
        assert exc.reason, "a refusal says why"
        assert len(exc.reason.encode("utf-8")) <= 123  # encodes (no surrogate) and fits a close frame
        return None


# ---------------------------------------------------------------------------------------------
# Frames shaped like the protocol: the field names of the wire models, in either casing, each
# holding a plausible or an arbitrary value.


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(_is_list(a) for a in typing.get_args(annotation))


def shaped(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation) if depth < 4 else None
        value: st.SearchStrategy[Any] = json_values
        if nested is not None:
            inner = shaped(nested, depth + 1)
            value = st.one_of(st.lists(inner, max_size=2) if _is_list(info.annotation) else inner, json_values)
        elif "schema" in name or name in ("parameters", "response"):
            value = st.one_of(json_values, st.just({"$ref": "#"}), st.just({"type": "object", "properties": {"a": 5}}),
                              st.builds(lambda d: json.loads(_nested(d)), st.integers(1, 60)))
        optional[to_camel(name)] = value
        optional[name] = value  # the snake_case twin (the Python SDK sends nested keys so)
    return st.fixed_dictionaries({}, optional=optional)


_HUGE = re.compile(r'"\\u0000HUGE(\d+)\\u0000"')


def _dumps(value: Any) -> str:
    # allow_nan: NaN and Infinity go on the wire as the bare tokens a hostile client can send.
    text = json.dumps(value, allow_nan=True)
    return _HUGE.sub(lambda m: "9" * int(m.group(1)), text)


def _finite_and_encodable(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            assert math.isfinite(item), item
        elif isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _session_takes(setup: Setup) -> None:
    """What the session reads from a setup: each may refuse with 1007, none may crash."""
    _finite_and_encodable(setup.model_dump(mode="json"))
    json.dumps(setup.model_dump(mode="json"), allow_nan=False)  # what a resumption snapshot stores
    for read in (lambda: SessionOptions.from_setup(setup),
                 lambda: ContextPolicy.from_setup(setup.context_window_compression, 32768)):
        try:
            read()
        except ProtocolError as exc:
            assert exc.code == 1007, exc
    toolset = ToolSet.from_setup(setup.tools)
    toolset.instructions()
    json.dumps(toolset.schema(), allow_nan=False)


# ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused(frame: bytes) -> None:
    _check_refusal(frame)


@FUZZ
@given(json_values)
def test_any_json_value_parses_or_is_refused(value: Any) -> None:
    _check_refusal(_dumps(value))
    _check_refusal(_dumps(value).encode("utf-8", "surrogatepass"))  # a binary frame with bad UTF-8 in it


@FUZZ
@given(st.integers(0, 5000), st.sampled_from(["[", '{"a":', '{"setup":{"model":"m","labels":']))
def test_any_nesting_depth_parses_or_is_refused(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '{"setup":{"model":"m","labels":': "}"}[opener]
    tail = "}}" if opener.startswith('{"setup"') else ""
    _check_refusal(opener * depth + "1" + closer * depth + tail)


@FUZZ
@given(shaped(ClientMessage))
def test_protocol_shaped_frames_parse_or_are_refused_and_never_crash_the_session(message: dict[str, Any]) -> None:
    event = _check_refusal(_dumps(message))
    if isinstance(event, Setup):
        _session_takes(event)
    elif event is not None:
        _finite_and_encodable(event.model_dump(mode="json"))


@FUZZ
@given(st.fixed_dictionaries({"model": st.one_of(any_text, st.just("models/m"))},
                             optional={"generationConfig": shaped(GenerationConfig),
                                       "tools": st.lists(st.fixed_dictionaries({}, optional={
                                           "functionDeclarations": st.lists(st.fixed_dictionaries(
                                               {"name": any_text},
                                               optional={"parametersJsonSchema": json_values,
                                                         "parameters": json_values,
                                                         "description": any_text}), max_size=2)}), max_size=2)}))
def test_setups_with_hostile_values_are_taken_or_refused(setup: dict[str, Any]) -> None:
    event = _check_refusal(_dumps({"setup": setup}))
    if event is not None:
        _session_takes(event)
