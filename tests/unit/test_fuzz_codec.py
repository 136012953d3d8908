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
from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # a venv made before hypothesis joined the test extras
    if os.environ.get("OPENLIVE_REQUIRE_ALL") == "1":  # scripts/test: everything must be installed
        raise
    pytest.skip("hypothesis is not installed: pip install -e '.[test]'", allow_module_level=True)
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.protocol.messages import ClientMessage, GenerationConfig, Setup
from openlive.session.context import ContextPolicy
from openlive.session.options import SessionOptions
from openlive.session.tools import ToolSet
from tests.support.fuzz_frames import any_text, dumps, json_values, shaped

# The shaped strategies are built from every wire field: their repr is long, and harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check_refusal(frame: str | bytes) -> Any:
    try:
        return parse_client_frame(frame)
    except ProtocolError as exc:
        assert exc.code in (1007, 1008, 1009), exc
        assert exc.reason, "a refusal says why"
        assert len(exc.reason.encode("utf-8")) <= 123  # encodes (no surrogate) and fits a close frame
        return None


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
    _check_refusal(dumps(value))
    _check_refusal(dumps(value).encode("utf-8", "surrogatepass"))  # a binary frame with bad UTF-8 in it


@FUZZ
@given(st.integers(0, 5000), st.sampled_from(["[", '{"a":', '{"setup":{"model":"m","labels":']))
def test_any_nesting_depth_parses_or_is_refused(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '{"setup":{"model":"m","labels":': "}"}[opener]
    tail = "}}" if opener.startswith('{"setup"') else ""
    _check_refusal(opener * depth + "1" + closer * depth + tail)


@FUZZ
@given(shaped(ClientMessage))
def test_protocol_shaped_frames_parse_or_are_refused_and_never_crash_the_session(message: dict[str, Any]) -> None:
    event = _check_refusal(dumps(message))
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
    event = _check_refusal(dumps({"setup": setup}))
    if event is not None:
        _session_takes(event)
