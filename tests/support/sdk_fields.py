"""Every field of google-genai's Live API types, found by walking the types themselves.

A new SDK field is covered without editing this file: `field_paths` walks a pydantic type
recursively (a type already on the way down is not entered again, so `Schema.properties` does not
recurse forever; of a union's models only the first is walked, the one the SDK sends), `only`
builds a value with exactly one field path set, `every` one with every field set, and the
`*_frame` helpers turn an SDK value into the wire JSON the SDK's own converters make of it on the
Gemini API path, the way `live.py` sends it (the setup on the Vertex path too). A field the
converters refuse ("... not supported in Gemini API ...") raises their ValueError, and the tests
skip it with that reason.

Samples are valid where a value has a meaning of its own (`VALUES`, by field name): a mime type
is a mime type, a language code a language code. The rest get a sample per annotation: "sample",
1, 1.0, True, the first member of an enum that is not *_UNSPECIFIED (`enum_of` lists them all),
a list of one, a dict of one, bytes (base64'd by the SDK).
"""

from __future__ import annotations

import datetime
import enum
import json
import types as pytypes
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pydantic

from google import genai
from google.genai import _common, _live_converters, _transformers, types

Path = tuple[str, ...]
Values = dict[str, Any]
SKIP: Any = object()

# Values with a meaning of their own, by "parent.field" or by field name (the rest are samples of
# their type). `model`, `name` and `id` are fields openlive (like the service) requires where they stand.
VALUES: Values = {
    "model": "models/gemini-live-2.5-flash-preview",
    "role": "user",
    "mime_type": "text/plain",
    "audio.mime_type": "audio/pcm;rate=16000",
    "video.mime_type": "image/png",
    "media.mime_type": "image/png",
    "media_chunks.mime_type": "image/png",
    "language_code": "en-US",
    "language_codes": ["en-US"],
    "target_language_code": "en-US",
    "voice_name": "Kore",
    "voice": "Kore",
    "name": "get_weather",
    "id": "function-call-1",
}
# Fields a message cannot go without on the wire (openlive refuses it, as the service does).
REQUIRED: dict[type, tuple[str, ...]] = {types.LiveClientSetup: ("model",), types.FunctionDeclaration: ("name",),
                                         types.FunctionResponse: ("id",), types.Blob: ("mime_type",)}
# Client-side settings that never reach the wire.
NOT_SENT: set[str] = {"http_options"}


def options(annotation: Any) -> list[Any]:
    """The alternatives of an annotation, without None (Optional, Union, Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return options(typing.get_args(annotation)[0])
    if origin in (typing.Union, pytypes.UnionType):
        return [o for a in typing.get_args(annotation) if a is not type(None) for o in options(a)]
    return [annotation]


def _is_model(a: Any) -> bool:
    return isinstance(a, type) and issubclass(a, pydantic.BaseModel)


def _containers(annotation: Any, name: str) -> tuple[list[type], list[Any]]:
    """list[dict[str, X]] → ([list, dict], options of X)."""
    wraps: list[type] = []
    inner = annotation
    while True:
        opts = options(inner)
        containers = [o for o in opts if o in (list, dict) or typing.get_origin(o) in (list, dict)]
        if not containers or any(_is_model(o) for o in opts):
            return wraps, opts
        inner = containers[0]
        kind = list if (inner is list or typing.get_origin(inner) is list) else dict
        wraps.append(kind)
        args = typing.get_args(inner)
        # `tools` is a bare `list` with a validator that reads Tool (and MCP) values.
        inner = args[-1] if args else (types.Tool if name == "tools" else Any)


def _model_of(annotation: Any, name: str) -> tuple[list[type], type | None]:
    wraps, opts = _containers(annotation, name)
    models = [o for o in opts if _is_model(o)]
    return wraps, (models[0] if models else None)


def field_paths(root: type[pydantic.BaseModel], _stack: tuple[type, ...] = (), _prefix: Path = ()) -> Iterator[Path]:
    """Every field path under `root`, depth first; a type is not entered again below itself."""
    stack = (*_stack, root)
    for name, field in root.model_fields.items():
        if not _prefix and name in NOT_SENT:
            continue
        path = (*_prefix, name)
        yield path
        _, model = _model_of(field.annotation, name)
        if model is not None and model not in stack:
            yield from field_paths(model, stack, path)


def field_type(root: type[pydantic.BaseModel], path: Path) -> Any:
    """The annotation of the field at `path`."""
    model: Any = root
    for name in path[:-1]:
        _, model = _model_of(model.model_fields[name].annotation, name)
    return model.model_fields[path[-1]].annotation


def enum_of(root: type[pydantic.BaseModel], path: Path) -> list[Any]:
    """Every member of the enum (or Literal) the field at `path` holds; [] if it holds none."""
    _, opts = _containers(field_type(root, path), path[-1])
    for a in opts:
        if isinstance(a, type) and issubclass(a, enum.Enum):
            return list(a)
        if typing.get_origin(a) is typing.Literal:
            return list(typing.get_args(a))
    return []


def _wrap(value: Any, wraps: list[type]) -> Any:
    for kind in reversed(wraps):
        value = [value] if kind is list else {"key": value}
    return value


def _named(path: Path, values: Values) -> Any:
    if len(path) > 1 and f"{path[-2]}.{path[-1]}" in values:
        return values[f"{path[-2]}.{path[-1]}"]
    return values.get(path[-1], SKIP)


def _scalar(a: Any) -> Any:
    if a is Any or a is object:
        return {"key": "value"}
    if typing.get_origin(a) is typing.Literal:
        return typing.get_args(a)[0]
    if isinstance(a, type) and issubclass(a, enum.Enum):
        members = [m for m in a if not m.name.endswith("UNSPECIFIED")] or list(a)
        return members[0]
    if a is bool:
        return True
    if a is int:
        return 1
    if a is float:
        return 1.0
    if a is str:
        return "sample"
    if a is bytes:
        return b"\x00\x01\xfe\xff"
    if a is datetime.datetime:
        return datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    return SKIP


def _value(annotation: Any, path: Path, values: Values, make_model: Callable[[type, Path], Any]) -> Any:
    """A sample for a field: a model by `make_model`, a scalar by type, wrapped in its containers."""
    named = _named(path, values)
    if named is not SKIP:
        return named
    wraps, opts = _containers(annotation, path[-1])
    models = [o for o in opts if _is_model(o)]
    if models:
        value = make_model(models[0], path)
    else:
        value = next((v for v in (_scalar(o) for o in opts) if v is not SKIP), SKIP)
    return SKIP if value is SKIP else _wrap(value, wraps)


def _minimal(model: type[pydantic.BaseModel], prefix: Path, values: Values) -> Any:
    fields = {}
    for name in REQUIRED.get(model, ()):
        fields[name] = _value(model.model_fields[name].annotation, (*prefix, name), values,
                              lambda m, p: _minimal(m, p, values))
    return model.model_construct(**fields)


def only(root: type[pydantic.BaseModel], path: Path, value: Any = SKIP, values: Values = VALUES,
         _prefix: Path = ()) -> Any:
    """A `root` with exactly `path` set to `value` (a sample if none is given), and what the wire
    requires beside it. A model at the end of the path is set with only its required fields: its
    own fields are paths of their own."""
    name, rest = path[0], path[1:]
    here = (*_prefix, name)
    field = root.model_fields[name]
    if rest:
        wraps, model = _model_of(field.annotation, name)
        assert model is not None, path
        leaf = _wrap(only(model, rest, value, values, here), wraps)
    elif value is not SKIP:
        leaf = _wrap(value, _containers(field.annotation, name)[0])
    else:
        leaf = _value(field.annotation, here, values, lambda m, p: _minimal(m, p, values))
        assert leaf is not SKIP, f"no sample for {dotted(here)}: {field.annotation}"
    return _minimal(root, _prefix, values).model_copy(update={name: leaf})


def every(root: type[pydantic.BaseModel], skip: Callable[[Path], bool] = lambda p: False, values: Values = VALUES,
          _stack: tuple[type, ...] = (), _prefix: Path = ()) -> Any:
    """A `root` with every field set, but the paths `skip` names (and a type below itself)."""
    stack = (*_stack, root)
    fields: dict[str, Any] = {}
    for name, field in root.model_fields.items():
        path = (*_prefix, name)
        if (not _prefix and name in NOT_SENT) or skip(path):
            continue
        value = _value(field.annotation, path, values,
                       lambda m, p: SKIP if m in stack else every(m, skip, values, stack, p))
        if value is not SKIP:
            fields[name] = value
    return root.model_construct(**fields)


# ------------------------------------------------------------------ the SDK's own wire JSON (Gemini API)

_API = genai.Client(api_key="unused")._api_client
_VERTEX = genai.Client(vertexai=True, api_key="unused")._api_client  # express mode: no credentials fetched


def setup_frame(config: types.LiveConnectConfig, model: str = VALUES["model"]) -> dict[str, Any]:
    """`{"setup": …}` as `AsyncLive.connect` sends it."""
    wire = _common.convert_to_dict(_live_converters._LiveConnectParameters_to_mldev(
        api_client=_API, from_object=types.LiveConnectParameters(model=model, config=config)
        .model_dump(exclude_none=True)))
    del wire["config"]
    wire = _common.encode_unserializable_types(wire)
    wire["setup"]["model"] = model
    return wire


def vertex_setup_frame(config: types.LiveConnectConfig,
                       model: str = "publishers/google/models/gemini-live-2.5-flash") -> dict[str, Any]:
    """`{"setup": …}` as `AsyncLive.connect` sends it to Vertex (a gateway in front of openlive)."""
    wire = _common.convert_to_dict(_live_converters._LiveConnectParameters_to_vertex(
        api_client=_VERTEX, from_object=types.LiveConnectParameters(model=model, config=config)
        .model_dump(exclude_none=True)))
    del wire["config"]
    wire = _common.encode_unserializable_types(wire)
    wire["setup"]["model"] = model
    return wire


def message_frame(message: types.LiveClientMessage) -> dict[str, Any]:
    """A `LiveClientMessage` as `send_context_update` sends one."""
    wire = _common.convert_to_dict(_live_converters._LiveClientMessage_to_mldev(_API, message))
    return _common.encode_unserializable_types(wire)


def client_content_frame(content: types.LiveClientContent) -> dict[str, Any]:
    """`{"client_content": …}` as `send_client_content` sends it."""
    dumped = _transformers.t_client_content(content.turns, content.turn_complete if content.turn_complete is not None
                                            else True).model_dump(mode="json", exclude_none=True)
    return {"client_content": _live_converters._LiveClientContent_to_mldev(from_object=dumped)}


def realtime_input_frame(params: types.LiveSendRealtimeInputParameters) -> dict[str, Any]:
    """`{"realtime_input": …}` as `send_realtime_input` sends it (one field per call)."""
    wire = _common.convert_to_dict(_live_converters._LiveSendRealtimeInputParameters_to_mldev(from_object=params))
    return {"realtime_input": _common.encode_unserializable_types(wire)}


def tool_response_frame(response: types.FunctionResponse) -> dict[str, Any]:
    """`{"tool_response": …}` as `send_tool_response` sends it."""
    wire = _common.convert_to_dict(_transformers.t_tool_response(response), convert_keys=True)
    for item in wire.get("functionResponses", []):
        if item.get("id") is None:
            raise ValueError("FunctionResponse request must have an `id` field")
    return {"tool_response": _common.encode_unserializable_types(wire)}


def dotted(path: Path) -> str:
    return ".".join(path)


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame)

