"""Tools for small models: a JSON "router" the runtime's grammar enforces, parsed as it streams.

Small open models do not emit reliable native tool calls, so with tools declared every model
turn is one JSON object whose shape the LLM server's grammar guarantees (json_schema
response_format): either `{"action": "reply", "text": ...}` or one of the tool actions. The
reply's text is streamed out of the JSON as it is written, so speech still starts early.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engines.llm.base import ToolCall
from ..protocol.bounded_json import JSONLimitError, loads
from ..protocol.errors import invalid_argument
from ..protocol.messages import FunctionDeclaration, Tool

_OPENAPI_TYPES = {"STRING": "string", "NUMBER": "number", "INTEGER": "integer", "BOOLEAN": "boolean",
                  "ARRAY": "array", "OBJECT": "object", "NULL": "null"}
# Schema keywords the grammar compiler understands; the rest (examples, titles, orderings) is dropped.
_KEEP = {"type", "properties", "required", "items", "enum", "description", "minimum", "maximum", "minItems",
         "maxItems", "minLength", "maxLength", "pattern", "format", "anyOf", "additionalProperties", "const"}


def openapi_to_json_schema(schema: Any) -> Any:
    """The Live API's OpenAPI-style Schema (TYPE in capitals, `nullable`, snake_case) as JSON Schema."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if camel == "type" and isinstance(value, str):
            out["type"] = _OPENAPI_TYPES.get(value.upper(), value.lower())
        elif camel == "properties" and isinstance(value, dict):
            out["properties"] = {name: openapi_to_json_schema(s) for name, s in value.items()}
        elif camel in ("items", "anyOf"):
            out[camel] = openapi_to_json_schema(value)
        elif camel in _KEEP:
            out[camel] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "object":
        out.setdefault("properties", {})
    return out


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]
    non_blocking: bool = False

    @classmethod
    def from_declaration(cls, decl: FunctionDeclaration) -> "Function":
        if decl.parameters_json_schema is not None:
            params = decl.parameters_json_schema
        elif decl.parameters is not None:
            params = openapi_to_json_schema(decl.parameters)
        else:
            params = {"type": "object", "properties": {}}
        return cls(decl.name, decl.description or "", params, decl.behavior == "NON_BLOCKING")


# The kinds of Tool served here (the rest are refused at setup: `refuse_unserved`). urlContext only
# where the server reads pages ([url_context] enabled).
SERVED_TOOLS = frozenset({"function_declarations", "code_execution", "google_search", "google_search_retrieval"})
# What to use instead of a refused tool, where openlive has one that does the same job.
_INSTEAD = {name: "Please use google_search tool instead." for name in
            ("retrieval", "enterprise_web_search", "parallel_ai_search", "exa_ai_search", "file_search")}


def refuse_unserved(tools: Sequence[Tool] | None, *, url_context: bool) -> None:
    """Refuse (1007, naming it) a tool this server cannot serve: one that would look enabled to the
    client and do nothing. The wording is the service's for a tool its model lacks
    ("google_search_retrieval is not supported. Please use google_search tool instead.").

    Every kind of Tool not served is refused, so a kind a new SDK adds is refused too, not ignored."""
    served = SERVED_TOOLS | ({"url_context"} if url_context else set())
    for tool in tools or []:
        for name in type(tool).model_fields:
            value = getattr(tool, name)
            if name not in served and value is not None and value != []:
                raise invalid_argument(f"{name} is not supported. {_INSTEAD.get(name, '')}".strip())


@dataclass
class ToolSet:
    functions: dict[str, Function] = field(default_factory=dict)
    code_execution: bool = False
    search: bool = False
    # urlContext: the server reads the pages the user's turn names before the model answers
    # (tool_calls.py); the model decides nothing, so it is no branch of the router.
    url_context: bool = False

    @classmethod
    def from_setup(cls, tools: list[Tool] | None) -> "ToolSet":
        toolset = cls()
        for tool in tools or []:
            for decl in tool.function_declarations or []:
                toolset.functions[decl.name] = Function.from_declaration(decl)
            toolset.code_execution |= tool.code_execution is not None
            toolset.search |= tool.google_search is not None or tool.google_search_retrieval is not None
            toolset.url_context |= tool.url_context is not None
        return toolset

    def __bool__(self) -> bool:
        """Whether the model chooses among tools (the router): urlContext alone is no choice."""
        return bool(self.functions) or self.code_execution or self.search

    def schema(self, *, allow_tools: bool = True, exclude: Collection[str] = ()) -> dict[str, Any]:
        """The JSON schema every model turn must follow (the grammar enforces it).

        One branch per tool, each tying the tool's name to its own arguments, and a "none" branch
        for talking to the user. The tool's name comes first, so the model decides before it writes;
        the reply comes last, so its text can stream out as it is written.
        """
        options = [_turn("none", {"type": "object", "properties": {}, "additionalProperties": False})]
        defs: dict[str, Any] = {}
        if allow_tools:
            # Each branch says what its tool does: an engine may weigh its choice against that
            # (tool_turns.py asks the model on its own whether the user's words need the tool).
            options += [_turn(name, params, self.functions[name].description if name in self.functions else "")
                        for name, params in self.tool_parameters(defs).items() if name not in exclude]
        root = options[0] if len(options) == 1 else {"anyOf": options}
        return {**root, "$defs": defs} if defs else root

    def tool_parameters(self, defs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Each tool's arguments; a function schema with $refs moves into `defs` (see `_embed`)."""
        # A function takes a list of argument sets: one call per thing the user asked about, so
        # "Tokyo and Berlin" becomes two calls in one turn (small models do this reliably; they
        # rarely come back for the second city after the first result).
        params = {f.name: {"type": "array", "items": _embed(f.parameters, f"function{i}", defs), "minItems": 1,
                           "maxItems": MAX_PARALLEL_CALLS}
                  for i, f in enumerate(self.functions.values())}
        if self.code_execution:
            params[RUN_PYTHON] = _obj({"code": {"type": "string"}})
        if self.search:
            # Bounded: at temperature 0 the 1.5B once ran on in a query ("…weekdays, 2023, 2024, …").
            params[SEARCH] = _obj({"query": {"type": "string", "maxLength": MAX_QUERY_CHARS}})
        return params

    def native_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function definitions, for a server that calls tools natively."""
        tools = [{"type": "function", "function": {"name": f.name, "description": f.description,
                                                   "parameters": f.parameters}} for f in self.functions.values()]
        if self.code_execution:
            tools.append({"type": "function", "function": {
                "name": RUN_PYTHON, "description": "Run a complete Python program that prints a result; use it to "
                                                   "calculate anything exactly.",
                "parameters": _obj({"code": {"type": "string"}})}})
        if self.search:
            tools.append({"type": "function", "function": {
                "name": SEARCH, "description": "Search documents for facts you do not know.",
                "parameters": _obj({"query": {"type": "string"}})}})
        return tools

    def decision_of(self, calls: Sequence[ToolCall]) -> "Decision":
        """Native tool calls as one decision: the first tool called, with every argument set given to it."""
        if not calls:
            return Decision("none")
        name = calls[0].name
        if name in (RUN_PYTHON, SEARCH):
            return Decision(name, args=calls[0].args)
        return Decision(name, args=[c.args for c in calls if c.name == name][:MAX_PARALLEL_CALLS])

    def instructions(self) -> str:
        """How the model should use the tools, for the system prompt (with examples: small models need them)."""
        lines = ["You can use these tools:"]
        for f in self.functions.values():
            args = ", ".join(f"{k}: {v.get('type', 'value') if isinstance(v, dict) else 'value'}"
                             for k, v in _properties(f.parameters).items())
            lines.append(f"- {f.name}({args}): {f.description}")
        if self.code_execution:
            lines.append(f"- {RUN_PYTHON}(code: string): run a complete Python program that prints a result; use it "
                         "to calculate anything exactly.")
        if self.search:
            lines.append(f"- {SEARCH}(query: string): search documents for facts you do not know.")
        lines += [
            "",
            'Answer with JSON {"tool": ..., "args": ..., "reply": ...}.',
            '- If the user asks for something a tool provides, set "tool" to that tool\'s name, "args" to its '
            "arguments taken from the user's words (for a function: a list with one set of arguments per thing the "
            'user asked about), and "reply" to "". If a required argument is missing, do not guess: ask the user '
            "for it instead.",
            "- The user may ask indirectly: when the answer depends on what a tool provides (whether to take an "
            "umbrella or a jacket depends on the weather), call the tool first; never guess, and never say you "
            "cannot get information that a tool provides.",
            "- A question that no tool is about (general knowledge, advice, opinions) is answered directly, "
            "without a tool.",
            '- Otherwise set "tool" to "none", "args" to {}, and answer the user in "reply".',
            "- When a tool's result arrives, answer the user with it; call another tool only if the user's request "
            "still needs one.",
            "",
            "Examples:",
        ]
        for f in list(self.functions.values())[:2]:
            example = {k: _example_value(v) for k, v in _properties(f.parameters).items()}
            lines.append(f"User asks for what {f.name} does -> "
                         + json.dumps({"tool": f.name, "args": [example], "reply": ""}))
            lines.append(f"User asks for what {f.name} does, for two things -> "
                         + json.dumps({"tool": f.name, "args": [example, example], "reply": ""}))
        if self.code_execution:
            # The example defines what it uses: small models otherwise call helpers they never wrote.
            lines.append("User: What is the 10th triangular number? -> " + json.dumps(
                {"tool": RUN_PYTHON, "args": {"code": "def triangular(n):\n    total = 0\n    for i in range(1, n + 1):"
                                                       "\n        total += i\n    return total\n\nprint(triangular(10))"},
                 "reply": ""}))
        if self.search:
            lines.append("User asks about a fact you do not know -> " + json.dumps(
                {"tool": SEARCH, "args": {"query": "the key words of the question"}, "reply": ""}))
        lines.append("User: Who painted the Mona Lisa? -> " + json.dumps(
            {"tool": "none", "args": {}, "reply": "Leonardo da Vinci painted the Mona Lisa."}))
        lines.append("User: Hello! -> " + json.dumps({"tool": "none", "args": {}, "reply": "Hello! How can I help?"}))
        return "\n".join(lines)


RUN_PYTHON = "run_python"
SEARCH = "search"
MAX_QUERY_CHARS = 120
MAX_PARALLEL_CALLS = 4


def _properties(schema: Any) -> dict[str, Any]:
    """A schema's properties; a JSON Schema may be `true`, and its properties too (schemas.py checks the rest)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return properties if isinstance(properties, dict) else {}


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "..."  # `true`: any value
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if schema.get("enum"):
        return schema["enum"][0]
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(str(kind), "...")


def _embed(schema: Any, key: str, defs: dict[str, Any]) -> Any:
    """A function's schema as it sits inside the turn schema.

    Its local $refs ("#/$defs/node", pydantic's nested models) point into its own root; embedded
    as they are they would point into the turn schema and at nothing, and the grammar compiler
    would refuse the request. So a schema with refs moves to the turn schema's $defs, its refs
    rewritten to match, and is referenced from where it was.
    """
    if not _has_ref(schema):
        return schema
    defs[key] = _rewrite_refs(schema, f"#/$defs/{key}")
    return {"$ref": f"#/$defs/{key}"}


def _has_ref(value: Any) -> bool:
    if isinstance(value, dict):
        return "$ref" in value or any(_has_ref(v) for v in value.values())
    return isinstance(value, list) and any(_has_ref(v) for v in value)


def _rewrite_refs(value: Any, prefix: str) -> Any:
    # Recursion is safe: protocol/schemas.py bounds a schema's depth before a session takes it.
    if isinstance(value, dict):
        return {k: (prefix + v[1:].rstrip("/") if k == "$ref" and isinstance(v, str) and v.startswith("#")
                    else _rewrite_refs(v, prefix)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(v, prefix) for v in value]
    return value


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _turn(tool: str, args: dict[str, Any], description: str = "") -> dict[str, Any]:
    turn = _obj({"tool": {"const": tool}, "args": args, "reply": {"type": "string"}})
    return {**turn, "description": description} if description.strip() else turn


@dataclass
class Decision:
    """What one model turn decided, once its JSON is complete."""

    tool: str  # "none": a reply to the user
    args: Any = field(default_factory=dict)  # a function's: a list of argument sets; others: an object
    text: str = ""


_REPLY_PREFIX = re.compile(r'^\s*\{\s*"tool"\s*:\s*"none"\s*,\s*"args"\s*:\s*\{\s*\}\s*,\s*"reply"\s*:\s*"')
_TOOL_ARGS_DONE = re.compile(r'^\s*\{\s*"tool"\s*:\s*"(?!none")[^"]+"\s*,\s*"args"\s*:.*[\]}]\s*,\s*"reply"', re.S)


class RouterStream:
    """Feeds on the JSON as it streams; hands out the reply's text as soon as it is written."""

    def __init__(self) -> None:
        self.raw = ""
        self._text_from: int | None = None  # where the reply string's content starts in raw
        self._emitted = 0  # characters of decoded text already handed out

    def push(self, chunk: str) -> str:
        """Add streamed JSON; return newly available reply text (empty for tool calls)."""
        self.raw += chunk
        if self._text_from is None:
            match = _REPLY_PREFIX.match(self.raw)
            if not match:
                return ""
            self._text_from = match.end()
        decoded = _decode_partial_string(self.raw[self._text_from:])
        new, self._emitted = decoded[self._emitted:], len(decoded)
        return new

    @property
    def call_complete(self) -> bool:
        """A tool call's name and arguments are written: the rest (its "reply") is not needed."""
        return self._text_from is None and _TOOL_ARGS_DONE.match(self.raw) is not None

    def decision(self) -> Decision:
        raw = self.raw
        if self.call_complete:
            # Generation was stopped after the arguments: close the object to parse it.
            raw = raw[: raw.rindex('"reply"')].rstrip().rstrip(",") + "}"
        try:
            data = loads(raw)  # the model's output, bounded like any other JSON we read
        except JSONLimitError:
            # A grammar-less engine or a cut-off turn: treat what came as plain text.
            return Decision("none", text=self.raw.strip())
        if not isinstance(data, dict):
            return Decision("none", text=str(data))
        args = data.get("args") if isinstance(data.get("args"), (dict, list)) else {}
        return Decision(str(data.get("tool", "none")), args=args, text=str(data.get("reply", "")))


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_partial_string(body: str) -> str:
    """Decode the start of a JSON string body, stopping at its closing quote or an unfinished escape."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            break
        kind = body[i + 1]
        if kind == "u":
            if i + 6 > len(body):
                break
            try:
                out.append(chr(int(body[i + 2:i + 6], 16)))
            except ValueError:
                pass
            i += 6
        else:
            out.append(_ESCAPES.get(kind, kind))
            i += 2
    return "".join(out)
