"""Hostile frames for fuzzing: any JSON value, protocol-shaped messages, and how to write them.

Shared by the parser's fuzzer (tests/unit/test_fuzz_codec.py), the live server's
(tests/e2e/test_fuzz_live.py) and the longer run in bench/fuzz.py.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

# Any character, lone surrogates included (JSON can carry them as "\ud800").
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=20)
numbers = st.one_of(
    st.integers(),
    # Integer literals up to 6,000 digits: past int32, int64, a double and int()'s own 4,300-digit
    # limit. Python cannot even json.dumps those, so they travel as a placeholder (see dumps).
    st.integers(1, 6000).map(lambda digits: f"\0HUGE{digits}\0"),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 0.5, 1e30, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=25)


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


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
                              st.builds(lambda d: json.loads(nested_json(d)), st.integers(1, 60)))
        optional[to_camel(name)] = value
        optional[name] = value  # the snake_case twin (the Python SDK sends nested keys so)
    return st.fixed_dictionaries({}, optional=optional)


_HUGE = re.compile(r'"\\u0000HUGE(\d+)\\u0000"')


def dumps(value: Any) -> str:
    # allow_nan: NaN and Infinity go on the wire as the bare tokens a hostile client can send.
    text = json.dumps(value, allow_nan=True)
    return _HUGE.sub(lambda m: "9" * int(m.group(1)), text)
