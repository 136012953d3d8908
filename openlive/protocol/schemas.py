"""Checks on the schemas a client declares (function parameters and responses, response schemas).

A schema is handed to code that trusts its shape: our prompt builder reads `properties` and
`type`, and the LLM server compiles it into a grammar. So before a session takes one it must be a
JSON object of bounded depth and size, every keyword that holds subschemas must hold them
(`properties` an object of schemas, `anyOf` a list of them …), and every `$ref` must point into the
schema itself without a loop that never reaches a real schema: a `{"$ref": "#"}` root, or two
definitions that only name each other, has no meaning and sends grammar compilers into a spin.
Recursion through `properties` or `items` (a tree whose children are trees) is a legitimate schema
and is kept.

Both dialects are read: OpenAPI-style `parameters` (snake_case or camelCase keys, TYPE in capitals)
and JSON Schema `parametersJsonSchema`.
"""

from __future__ import annotations

import re
from typing import Any

MAX_SCHEMA_DEPTH = 40  # JSON nesting levels inside one schema (a property adds two)
MAX_SCHEMA_VALUES = 10_000

# Keywords whose value is one subschema, a list of them, or an object of them.
_ONE = {"items", "additionalProperties", "additionalItems", "not", "if", "then", "else", "contains",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
_LIST = {"anyOf", "oneOf", "allOf", "prefixItems"}
_MAP = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
# Keywords that stay at the same place in the document: following them consumes no input, so a
# cycle through them only is a loop with no end.
_IN_PLACE = {"anyOf", "oneOf", "allOf", "not", "if", "then", "else"}


class SchemaError(ValueError):
    """What is wrong with a schema, and where in it (a JSON pointer)."""


def _camel(key: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _pointer(path: tuple[str | int, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "/"


def _size(schema: Any) -> None:
    """Depth and value count, without recursion."""
    count = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_SCHEMA_VALUES:
            raise SchemaError(f"more than {MAX_SCHEMA_VALUES} values")
        if isinstance(value, (dict, list)):
            if depth > MAX_SCHEMA_DEPTH:
                raise SchemaError(f"nested more than {MAX_SCHEMA_DEPTH} levels deep")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def _resolve(root: dict[str, Any], ref: str) -> tuple[Any, tuple[str | int, ...]]:
    """A local JSON pointer ("#", "#/$defs/x") into the schema → (its target, its path); SchemaError otherwise."""
    if ref == "#" or ref == "#/":
        return root, ()
    if not ref.startswith("#/"):
        raise SchemaError(f"$ref {ref[:40]!r} is not local (#/…)")
    node: Any = root
    path: list[str | int] = []
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
            path.append(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
            path.append(int(token))
        else:
            raise SchemaError(f"$ref {ref[:40]!r} points to nothing")
    if not isinstance(node, (dict, bool)):
        raise SchemaError(f"$ref {ref[:40]!r} is not a schema")
    return node, tuple(path)


def check_schema(schema: Any) -> None:
    """SchemaError unless `schema` is an object we can hand to the prompt builder and a grammar compiler."""
    if not isinstance(schema, dict):
        kind = "a list" if isinstance(schema, list) else type(schema).__name__ if schema is not None else "null"
        raise SchemaError(f"must be an object, not {kind}")
    _size(schema)
    # Every subschema, and for each the subschemas reached without moving in the document.
    in_place: dict[int, list[Any]] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, bool):
            continue  # JSON Schema's `true` / `false`
        where = _pointer(path)
        if not isinstance(node, dict):
            raise SchemaError(f"{where} must be an object, not {type(node).__name__}")
        if id(node) in seen:
            continue
        seen.add(id(node))
        edges = in_place.setdefault(id(node), [])
        for raw_key, value in node.items():
            key = _camel(raw_key)
            here = (*path, raw_key)
            if key == "type":
                if not (isinstance(value, str) or (isinstance(value, list) and value
                                                   and all(isinstance(t, str) for t in value))):
                    raise SchemaError(f"{_pointer(here)} must be a type name or a list of them")
            elif key == "required":
                if not (isinstance(value, list) and all(isinstance(r, str) for r in value)):
                    raise SchemaError(f"{_pointer(here)} must be a list of names")
            elif key == "enum":
                if not isinstance(value, list):
                    raise SchemaError(f"{_pointer(here)} must be a list")
            elif key == "$ref":
                if not isinstance(value, str):
                    raise SchemaError(f"{_pointer(here)} must be a string")
                target, target_path = _resolve(schema, value)
                if isinstance(target, dict):
                    edges.append(target)
                    # Checked as a schema too, wherever it lives (not every target sits under $defs).
                    stack.append((target, target_path))
            elif key in _ONE:
                if key == "items" and isinstance(value, list):  # the older tuple form
                    stack.extend((v, (*here, i)) for i, v in enumerate(value))
                else:
                    stack.append((value, here))
                    if key in _IN_PLACE and isinstance(value, dict):
                        edges.append(value)
            elif key in _LIST:
                if not isinstance(value, list):
                    raise SchemaError(f"{_pointer(here)} must be a list of schemas")
                stack.extend((v, (*here, i)) for i, v in enumerate(value))
                if key in _IN_PLACE:
                    edges.extend(v for v in value if isinstance(v, dict))
            elif key in _MAP:
                if not isinstance(value, dict):
                    raise SchemaError(f"{_pointer(here)} must be an object of schemas")
                stack.extend((v, (*here, name)) for name, v in value.items())
    _no_loops(in_place)


def _no_loops(in_place: dict[int, list[Any]]) -> None:
    """A cycle of `$ref`s and in-place keywords never reaches a schema that says anything."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in in_place:
        if state.get(start):
            continue
        state[start] = 1
        path = [(start, iter(in_place[start]))]
        while path:
            node, successors = path[-1]
            nxt = next(successors, None)
            if nxt is None:
                state[node] = 2
                path.pop()
                continue
            key = id(nxt)
            if state.get(key) == 1:
                raise SchemaError("a $ref loop that never reaches a schema")
            if not state.get(key):
                state[key] = 1
                path.append((key, iter(in_place.get(key, ()))))
