"""Tool turns without generating what is fixed: the JSON's fixed parts are read, not written.

A session with tools asks the model for `{"tool": NAME, "args": ARGS, "reply": TEXT}`
(session/tools.py), a JSON schema the runtime's grammar enforces. Under a grammar every token is
still generated one at a time, and about 14 of them are fixed: `{"tool": "` before the name, and
`", "args": {}, "reply": "` after "none". The 1.5B writes ~15 tokens a second on 2 cores, so
they cost ~0.9 s before the first word of every reply with tools; read as part of the prompt,
in one batch, they cost a tenth of that. So the turn is written in two steps over llama.cpp's
`/completion` (the prompt rendered by the model's own chat template, plus the fixed text), with
a grammar only for what the model chooses:

1. the name: prompt + `{"tool": "`; grammar: one of the names, then `"` (with one name allowed,
   as in a round that may only answer, this step is skipped);
2. "none": prompt + `{"tool": "none", "args": {}, "reply": "`; grammar: the rest of a JSON
   string, then `"}`. A tool: prompt + `{"tool": "NAME", "args":`; grammar: a space and that
   tool's arguments (its JSON schema), and `, "reply": ""}` is added here.

The text streamed out is the same JSON (the fixed parts included), so the session's router reads
it unchanged. The second step's prompt begins with the first's: the prompt cache serves it.
Requests whose schema is not a tool turn's go the usual way (`/v1/chat/completions`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from .base import ChatChunk, ChatRequest, EngineError, Finished, SamplingParams, TextDelta
from .openai_compat import stream_events

# The rest of a JSON string (what follows its opening quote), then the end of the turn's object.
_REPLY_GRAMMAR = '%llguidance {}\nstart: BODY "\\"}"\nBODY: /([^"\\\\\\x00-\\x1f]|\\\\(["\\\\\\/bfnrt]|u[0-9a-fA-F]{4}))*/\n'
MAX_ARGS_TOKENS = 1024  # a tool's arguments (a program for run_python included)


def branches(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A tool turn schema's choices, name → the schema of its "args" (with the root's $defs);
    None for any other schema."""
    if not isinstance(schema, dict):
        return None
    options = schema.get("anyOf", [schema])
    found: dict[str, Any] = {}
    for option in options if isinstance(options, list) else []:
        props = option.get("properties") if isinstance(option, dict) else None
        if not isinstance(props, dict) or list(props) != ["tool", "args", "reply"]:
            return None
        name = props["tool"].get("const") if isinstance(props["tool"], dict) else None
        if not isinstance(name, str) or props["reply"] != {"type": "string"}:
            return None
        args = props["args"]
        found[name] = {**args, "$defs": schema["$defs"]} if "$defs" in schema and isinstance(args, dict) else args
    return found if "none" in found else None


def _name_grammar(names: list[str]) -> str:
    choices = " | ".join(json.dumps(name + '"') for name in names)
    return f"%llguidance {{}}\nstart: {choices}\n"


def _args_grammar(args_schema: Any) -> str:
    # The space before the value is generated, not read: a prompt that ends in a space leaves the
    # model to continue mid-token (it writes ' {"' as one token), and it went off the rails there,
    # writing a search query of a hundred years ("2023, 2024, ...") that never ended.
    return '%llguidance {}\nstart: " " %json ' + json.dumps(args_schema, separators=(",", ":")) + "\n"


class ToolTurnWriter:
    """Writes tool turns for one llama.cpp server (its `/apply-template` and `/completion`)."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self._client = client
        self.name = name

    async def stream(self, request: ChatRequest, choices: dict[str, Any],
                     messages: list[dict[str, Any]]) -> AsyncIterator[ChatChunk]:
        prompt = await self._template(messages)
        opening = '{"tool": "'
        yield TextDelta(opening)
        names = list(choices)
        chosen = ""
        first = second = (0, 0, 0)  # (read, of which cached, written) of each step
        if len(names) == 1:
            # One choice (a round that may only answer): nothing to decide, so nothing to generate.
            chosen = names[0] + '"'
            yield TextDelta(chosen)
        else:
            # aclosing: a reply cancelled here (barge-in) closes the request at once, which stops llama.cpp.
            async with aclosing(self._complete(prompt + opening, _name_grammar(names), request.params,
                                               limit=32)) as pieces:
                async for piece, usage in pieces:
                    chosen += piece
                    if piece:
                        yield TextDelta(piece)
                    first = usage or first
        name = chosen[:-1] if chosen.endswith('"') else chosen
        if name not in choices:
            raise EngineError(f"LLM engine {self.name!r}: the tool turn named {name!r}, none of {names}")
        if name == "none":
            fixed, grammar, tail = ', "args": {}, "reply": "', _REPLY_GRAMMAR, ""
        else:
            fixed, grammar, tail = ', "args":', _args_grammar(choices[name]), ', "reply": ""}'
        yield TextDelta(fixed)
        # Arguments are bounded even when the reply is not: a call is never a page long.
        limit = request.params.max_tokens if name == "none" else min(request.params.max_tokens or MAX_ARGS_TOKENS,
                                                                       MAX_ARGS_TOKENS)
        async with aclosing(self._complete(prompt + opening + chosen + fixed, grammar, request.params,
                                           limit=limit)) as pieces:
            async for piece, usage in pieces:
                if piece:
                    yield TextDelta(piece)
                second = usage or second
        if tail:
            yield TextDelta(tail)
        # The turn read the second step's prompt (the first's and more); the cache held what the
        # first step found there, before this turn.
        cached = first[1] if len(names) > 1 else second[1]
        yield Finished(prompt_tokens=second[0], completion_tokens=first[2] + second[2], cached_tokens=cached)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _template(self, messages: list[dict[str, Any]]) -> str:
        try:
            response = await self._client.post("/apply-template", json={"messages": messages})
            response.raise_for_status()
            return str(response.json()["prompt"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EngineError(f"LLM engine {self.name!r}: cannot render the chat template: {exc}") from exc

    async def _complete(self, prompt: str, grammar: str, params: SamplingParams,
                        limit: int | None) -> AsyncIterator[tuple[str, tuple[int, int, int] | None]]:
        """Stream one /completion: (text, None) pieces, then ("", (read, cached, written))."""
        body: dict[str, Any] = {"prompt": prompt, "grammar": grammar, "stream": True, "cache_prompt": True,
                                "n_predict": limit if limit else -1}
        optional = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
                    "seed": params.seed, "presence_penalty": params.presence_penalty,
                    "frequency_penalty": params.frequency_penalty, "stop": list(params.stop) or None}
        body.update({k: v for k, v in optional.items() if v is not None})
        async with aclosing(stream_events(self._client, "/completion", body, self.name)) as events:
            async for chunk in events:
                if chunk.get("content"):
                    yield chunk["content"], None
                if chunk.get("stop"):
                    timings = chunk.get("timings") or {}
                    cache_n = int(timings.get("cache_n") or 0)
                    yield "", (int(timings.get("prompt_n") or 0) + cache_n, cache_n, int(timings.get("predicted_n") or 0))
                    return
