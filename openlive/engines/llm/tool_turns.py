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

The name step also decides whether to call at all, and a 1.5B decides that badly when the user
asks indirectly ("Should I bring a jacket to Prague tonight?" read as advice, not weather): its
first name token leaves "none" likelier for such questions than for some that need no tool ("What
is the capital of France?"), so no threshold on it alone separates them. A second opinion does:
asked on its own, about the one tool the model would call ("Tool get_weather: … The user says: …
Could a good answer depend on information that this tool returns?"), the same model ranks the
indirect questions above the plain ones. So when the first token is unsure (P(tool) inside
JUDGE_BAND) and the turn answers the user's own words, the judge is asked and the
two are weighed (`ToolJudge`); a sure first token is taken as it is. The weights were tuned on
bench/tool_decision.py's tuning questions and are reported on its held-out ones.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from .base import ChatChunk, ChatRequest, EngineError, Finished, SamplingParams, TextDelta
from .openai_compat import stream_events

log = logging.getLogger(__name__)

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


def descriptions(schema: dict[str, Any] | None) -> dict[str, str]:
    """What each tool of a tool turn schema does, as its branch's "description" says (session/tools.py)."""
    options = schema.get("anyOf", [schema]) if isinstance(schema, dict) else []
    found: dict[str, str] = {}
    for option in options if isinstance(options, list) else []:
        props = option.get("properties") if isinstance(option, dict) else None
        name = props.get("tool", {}).get("const") if isinstance(props, dict) else None
        if isinstance(name, str) and isinstance(option.get("description"), str) and option["description"].strip():
            found[name] = option["description"]
    return found


# When the first name token's P(tool) is inside this band the judge is asked (below it the turn
# answers, above it the tool is called, as the model chose), and the call is made when
# WEIGHT·logit(P(tool)) + logit(P(yes)) >= THRESHOLD. Tuned on bench/tool_decision.py's tuning set
# (three frameworks' tool schemas, 15 tool and 32 no-tool questions each).
JUDGE_BAND = (0.02, 0.9)
JUDGE_WEIGHT, JUDGE_THRESHOLD = 0.35, 1.4
_JUDGE_SYSTEM = "You decide whether an assistant should call a tool before answering."
# The question comes after the user's words, though asking it before them would let the prompt
# cache hold all but the words (~0.25 s less): so placed, the 1.5B called the tool on 15 of 36
# held-out indirect questions instead of 34 (bench/tool_decision.py). Writing a call's arguments
# beside the judge (two slots, one batch) was slower on 2 cores, not faster: reading is compute-bound,
# and a "no" left the conversation's slot busy, so the answer re-read its whole prompt elsewhere.
# (Reading each tool's whole judge prompt ahead, empty words and question included, was once
# measured not to help: the judgment read it all again. `warm_judges` reads exactly the judge's
# first tokens, up to the words, and llama.cpp's RAM cache then hands them to the judge's slot.)
# Nor asking the question inside the conversation (its prompt is cached in the slot): the model,
# primed by the tool rules, then called on 6 of 36 held-out questions.
_JUDGE_QUESTION = "Could a good answer depend on information that this tool returns? Answer yes or no."
_YES_NO = '%llguidance {}\nstart: "yes" | "no" | "Yes" | "No"\n'


# Where the judge's prompt stops being the same for every question about one tool.
_WORDS_MARK = "The user says:"
# Tools whose judge prompt a session reads ahead (the judge asks about one at a time).
MAX_JUDGES_AHEAD = 4


def judge_prompt(name: str, description: str, words: str) -> list[dict[str, str]]:
    """The judge's messages: the tool (its summary: a docstring's Args/Returns sections only add
    noise), then the user's words, then the question."""
    summary = description.strip().split("\n\n")[0].strip()
    return [{"role": "system", "content": _JUDGE_SYSTEM},
            {"role": "user", "content": f"Tool {name}: {summary}\n\n{_WORDS_MARK} {words.strip()}\n\n{_JUDGE_QUESTION}"}]


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def tool_probability(top: list[dict[str, Any]], names: list[str]) -> float | None:
    """P(a tool) against P("none") from the first name token's top log-probs (the raw distribution:
    the grammar has not yet cut it to the names). A token that could begin either counts for
    neither; None when no token of either is among them."""
    tool = none = 0.0
    for entry in top:
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not token or not isinstance(logprob, (int, float)):
            continue
        starts_none = 'none"'.startswith(token)
        starts_tool = any((n + '"').startswith(token) for n in names if n != "none")
        if starts_none != starts_tool:
            if starts_none:
                none += math.exp(logprob)
            else:
                tool += math.exp(logprob)
    return tool / (tool + none) if tool + none > 0 else None


def call_after_judging(p_tool: float, p_yes: float) -> bool:
    return JUDGE_WEIGHT * _logit(p_tool) + _logit(p_yes) >= JUDGE_THRESHOLD


def _name_grammar(names: list[str]) -> str:
    choices = " | ".join(json.dumps(name + '"') for name in names)
    return f"%llguidance {{}}\nstart: {choices}\n"


def _fixed_args_start(args_schema: Any) -> tuple[str, str] | None:
    """(text to read, grammar for the rest) of a function's argument list whose start is fixed.

    A function's arguments are a list of argument objects (session/tools.py), and when the object's
    first property is required, ` [{"location":` is the only way the list can begin: four or five
    tokens that would be written one by one (~70 ms each on 2 cores) are read with the prompt
    instead. The rest is that value, the other properties in order (optional ones may be left
    out), and up to maxItems - 1 more objects. None for any other shape (refs, a first property
    that may be left out, no properties): those are written whole under their schema.
    """
    if not isinstance(args_schema, dict) or args_schema.get("type") != "array" or "$defs" in args_schema:
        return None
    item = args_schema.get("items")
    if not isinstance(item, dict) or item.get("type") != "object" or '"$ref"' in json.dumps(item):
        return None
    props, required = item.get("properties"), item.get("required") or []
    if not isinstance(props, dict) or not props or not all(isinstance(v, dict) for v in props.values()):
        return None
    keys = list(props)
    if keys[0] not in required:
        return None

    def schema(value: Any) -> str:
        return "%json " + json.dumps(value, separators=(",", ":"))

    rest = [schema(props[keys[0]])]
    for key in keys[1:]:
        part = f"{json.dumps(', ' + json.dumps(key) + ': ')} {schema(props[key])}"
        rest.append(part if key in required else f"({part})?")
    rest.append('"}"')
    more = ""
    for _ in range(max(0, int(args_schema.get("maxItems", 1)) - 1)):
        more = f'(", " {schema(item)} {more})?'
    # The space before the value is written, not read (see _args_grammar).
    return " [{" + json.dumps(keys[0]) + ":", f'%llguidance {{}}\nstart: " " {" ".join(rest)} {more} "]"\n'


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
        usage = _Usage()
        if len(names) == 1:
            # One choice (a round that may only answer): nothing to decide, so nothing to generate.
            name = names[0]
        else:
            name = await self._choose(prompt + opening, names, request, usage)
        if name not in choices:
            raise EngineError(f"LLM engine {self.name!r}: the tool turn named {name!r}, none of {names}")
        chosen = name + '"'
        yield TextDelta(chosen)
        if name == "none":
            fixed, grammar, tail = ', "args": {}, "reply": "', _REPLY_GRAMMAR, ""
        elif (start := _fixed_args_start(choices[name])) is not None:
            fixed, grammar, tail = ', "args":' + start[0], start[1], ', "reply": ""}'
        else:
            fixed, grammar, tail = ', "args":', _args_grammar(choices[name]), ', "reply": ""}'
        yield TextDelta(fixed)
        # Arguments are bounded even when the reply is not: a call is never a page long.
        limit = request.params.max_tokens if name == "none" else min(request.params.max_tokens or MAX_ARGS_TOKENS,
                                                                       MAX_ARGS_TOKENS)
        last = (0, 0, 0)
        async with aclosing(self._complete(prompt + opening + chosen + fixed, grammar, request.params,
                                           limit=limit)) as pieces:
            async for piece, step in pieces:
                if piece:
                    yield TextDelta(piece)
                last = step or last
        usage.add(last)
        if tail:
            yield TextDelta(tail)
        # The turn read the last step's prompt (the others' and more); the cache held what the
        # first step found there, before this turn.
        yield Finished(prompt_tokens=last[0], completion_tokens=usage.written,
                       cached_tokens=usage.first_cached if usage.first_cached is not None else last[1])

    async def _choose(self, prompt: str, names: list[str], request: ChatRequest, usage: "_Usage") -> str:
        """The tool turn's name: the model's first token, the judge when that is unsure, and the
        rest of the name read rather than written once only one name fits."""
        top: list[dict[str, Any]] = []
        first = await self._generate(prompt, _name_grammar(names), request.params, 1, usage, top)
        words = request.user_words
        p_tool = tool_probability(top, names)
        summaries = descriptions(request.json_schema)
        if words and p_tool is not None and JUDGE_BAND[0] < p_tool < JUDGE_BAND[1] and summaries:
            tools = [n for n in names if n != "none"]
            fitting = [n for n in tools if (n + '"').startswith(first)] or tools
            candidate = await self._finish_name(prompt, first if fitting is not tools else "", fitting,
                                                request.params, usage)
            if candidate in summaries:
                p_yes = await self._judge(candidate, summaries[candidate], words)
                call = p_yes is not None and call_after_judging(p_tool, p_yes)
                log.info("tool decision: P(tool)=%.2f, the judge's P(yes) for %s=%s: %s", p_tool, candidate,
                         "-" if p_yes is None else f"{p_yes:.2f}", candidate if call else "none")
                return candidate if call else "none"
            return candidate if not 'none"'.startswith(first) else "none"
        return await self._finish_name(prompt, first, [n for n in names if (n + '"').startswith(first)] or names,
                                       request.params, usage)

    async def _finish_name(self, prompt: str, begun: str, fitting: list[str], params: SamplingParams,
                           usage: "_Usage") -> str:
        """The name that `begun` starts, among `fitting`: read when only one fits, else generated on."""
        while True:
            fitting = [n for n in fitting if (n + '"').startswith(begun)]
            if len(fitting) == 1:
                return fitting[0]
            if not fitting or begun.endswith('"'):
                return begun.rstrip('"')
            rest = [n[len(begun):] for n in fitting]
            piece = await self._generate(prompt + begun, _name_grammar(rest), params, 1, usage, None)
            if not piece:
                return begun.rstrip('"')
            begun += piece

    async def _judge(self, name: str, description: str, words: str) -> float | None:
        """P(yes) that answering `words` needs the tool: the same model asked on its own."""
        judged = await self._template(judge_prompt(name, description, words))
        top: list[dict[str, Any]] = []
        try:
            await self._generate(judged, _YES_NO, SamplingParams(temperature=0), 1, None, top)
        except EngineError as exc:
            log.info("tool judge failed (%s): the model's own choice stands", exc)
            return None
        yes = sum(math.exp(t["logprob"]) for t in top if str(t.get("token", "")).strip().lower() == "yes")
        no = sum(math.exp(t["logprob"]) for t in top if str(t.get("token", "")).strip().lower() == "no")
        return yes / (yes + no) if yes + no > 0 else None

    async def warm_judges(self, schema: dict[str, Any] | None) -> int:
        """Read each tool's judge prompt, up to the user's words, into llama.cpp's prompt cache.

        The first judged question about a tool otherwise reads its whole judge prompt cold
        (~70 tokens: 0.7 s on an idle 2-core machine, 2-4 s on a busy one), which put LiveKit's
        first indirect question past 5 s. What is read here stays findable after its slot is
        reused: llama.cpp's RAM cache hands it to whichever slot the judge lands on, so the
        judge then reads only the words and its question (~30 tokens). Read again for a tool
        already cached, it costs one token. Returns how many prompts were read."""
        read = 0
        for name, description in list(descriptions(schema).items())[:MAX_JUDGES_AHEAD]:
            prompt = await self._template(judge_prompt(name, description, ""))
            mark = prompt.find(_WORDS_MARK)
            if mark < 0:
                continue
            # Cut after "says:": the words follow as tokens of their own (" Do", " Is"), so this is
            # exactly the judge's first tokens.
            await self._generate(prompt[:mark + len(_WORDS_MARK)], "", SamplingParams(temperature=0), 1, None, None)
            read += 1
        return read

    async def _generate(self, prompt: str, grammar: str, params: SamplingParams, limit: int,
                        usage: "_Usage | None", top: list[dict[str, Any]] | None) -> str:
        text = ""
        async with aclosing(self._complete(prompt, grammar, params, limit=limit,
                                           n_probs=_TOP if top is not None else 0, probs=top)) as pieces:
            async for piece, step in pieces:
                text += piece
                if step and usage is not None:
                    usage.add(step)
        return text

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _template(self, messages: list[dict[str, Any]]) -> str:
        try:
            response = await self._client.post("/apply-template", json={"messages": messages})
            response.raise_for_status()
            return str(response.json()["prompt"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EngineError(f"LLM engine {self.name!r}: cannot render the chat template: {exc}") from exc

    async def _complete(self, prompt: str, grammar: str, params: SamplingParams, limit: int | None, *,
                        n_probs: int = 0, probs: list[dict[str, Any]] | None = None,
                        ) -> AsyncIterator[tuple[str, tuple[int, int, int] | None]]:
        """Stream one /completion: (text, None) pieces, then ("", (read, cached, written)). With
        `n_probs`, the first token's top log-probs (before the grammar) are put in `probs`."""
        body: dict[str, Any] = {"prompt": prompt, "grammar": grammar, "stream": True, "cache_prompt": True,
                                "n_predict": limit if limit else -1}
        if n_probs:
            body["n_probs"] = n_probs
        optional = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
                    "seed": params.seed, "presence_penalty": params.presence_penalty,
                    "frequency_penalty": params.frequency_penalty, "stop": list(params.stop) or None}
        body.update({k: v for k, v in optional.items() if v is not None})
        async with aclosing(stream_events(self._client, "/completion", body, self.name)) as events:
            async for chunk in events:
                if probs is not None and not probs:
                    first = (chunk.get("completion_probabilities") or [{}])[0]
                    probs.extend(t for t in first.get("top_logprobs") or () if isinstance(t, dict))
                if chunk.get("content"):
                    yield chunk["content"], None
                if chunk.get("stop"):
                    timings = chunk.get("timings") or {}
                    cache_n = int(timings.get("cache_n") or 0)
                    log.debug("tool turn step: read %s tokens in %.0f ms (%s cached), wrote %s in %.0f ms",
                              timings.get("prompt_n"), timings.get("prompt_ms") or 0, cache_n,
                              timings.get("predicted_n"), timings.get("predicted_ms") or 0)
                    yield "", (int(timings.get("prompt_n") or 0) + cache_n, cache_n, int(timings.get("predicted_n") or 0))
                    return


_TOP = 20  # top log-probs asked for the first name token: enough to cover every name's first token


class _Usage:
    """Tokens of a tool turn's steps: what the first read found cached, and all that was written."""

    def __init__(self) -> None:
        self.first_cached: int | None = None
        self.written = 0

    def add(self, step: tuple[int, int, int]) -> None:
        if self.first_cached is None:
            self.first_cached = step[1]
        self.written += step[2]
