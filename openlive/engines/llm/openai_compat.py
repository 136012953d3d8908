"""Chat engine for any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, ...).

This is how openlive scales past one machine: the LLM runs on its own server and many openlive
nodes stream from it. The embedded engine reuses this client against the llama.cpp server it
runs in-process, so there is one streaming path to test and to trust.
"""

from __future__ import annotations

import json
import logging
from contextlib import aclosing
from dataclasses import replace
from typing import Any, AsyncIterator

import httpx

from .base import (ChatChunk, ChatMessage, ChatRequest, EngineError, Finished, TextDelta, ToolCall, ToolCallsMade,
                   estimate_tokens, yes_no_share, yes_or_no)

log = logging.getLogger(__name__)

_NO_ENDPOINT = (404, 405, 501)  # the server has no /tokenize at all


class OpenAICompatEngine:
    def __init__(
        self,
        name: str,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 64,
        include_usage: bool = True,
        extra_body: dict[str, Any] | None = None,
        tool_mode: str = "grammar",
    ) -> None:
        self.name = name
        self.tool_mode = tool_mode  # "native": the session sends `tools` and reads `tool_calls`
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.include_usage = include_usage
        self.extra_body = dict(extra_body or {})
        # /tokenize lives beside /v1, not under it.
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self._tokenize_url: str | None = f"{root}/tokenize"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy set for the outside world must not capture loopback engine traffic.
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,
        )

    async def start(self) -> None:
        """Check that the server answers, so a wrong URL fails at start-up, not in a session."""
        try:
            response = await self._client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            raise EngineError(f"LLM engine {self.name!r}: cannot reach {self.base_url}: {exc}") from exc
        if response.status_code >= 500:
            raise EngineError(f"LLM engine {self.name!r}: {self.base_url}/models answered {response.status_code}")

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [openai_message(m) for m in request.messages],
            "stream": True,
        }
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        optional = {
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k,
            "max_tokens": p.max_tokens,
            "seed": p.seed,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
            "stop": list(p.stop) or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.tools:
            body["tools"] = list(request.tools)
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "turn", "schema": request.json_schema, "strict": True}}
        body.update(self.extra_body)
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        usage: dict[str, Any] | None = None
        finish_reason = "stop"
        produced: list[str] = []
        calls = _CallAssembler()
        url = f"{self.base_url}/chat/completions"
        async with aclosing(stream_events(self._client, url, self._body(request), self.name)) as events:
            async for chunk in events:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        produced.append(text)
                        yield TextDelta(text)
                    calls.add(delta.get("tool_calls"))
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
        made = calls.calls()
        if made:
            yield ToolCallsMade(made)
        if usage:
            details = usage.get("prompt_tokens_details") or {}
            yield Finished(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cached_tokens=int(details.get("cached_tokens") or 0),
                finish_reason=finish_reason,
            )
        else:
            prompt = sum(estimate_tokens(m.content) for m in request.messages)
            yield Finished(prompt, estimate_tokens("".join(produced)), finish_reason=finish_reason)

    async def warm(self, request: ChatRequest) -> None:
        """Have the server read `request` into its prompt cache, generating one token that is dropped:
        a later request that starts the same way reads only what follows (llama.cpp's cache_prompt,
        vLLM's prefix caching)."""
        await self._one_token(request)

    async def _one_token(self, request: ChatRequest, **extra: Any) -> httpx.Response:
        """A chat completion of one token, not streamed; HTTP failures raise EngineError."""
        body = {**self._body(request), "stream": False, "max_tokens": 1, **extra}
        body.pop("stream_options", None)
        try:
            response = await self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise EngineError(f"LLM engine {self.name!r}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise EngineError(f"LLM engine {self.name!r}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    async def yes_probability(self, request: ChatRequest) -> float | None:
        """P("yes") for a request whose answer is yes or no: one token is generated, and the share
        of "yes" against "no" among its top log-probs is the answer (llama.cpp and vLLM give them
        from the raw distribution). A server that gives no log-probs is read by the token it wrote."""
        response = await self._one_token(replace(request, json_schema=None), logprobs=True, top_logprobs=10)
        try:
            choice = response.json()["choices"][0]
            first = ((choice.get("logprobs") or {}).get("content") or [{}])[0]
            top = [(str(t["token"]), float(t["logprob"])) for t in first.get("top_logprobs") or ()
                   if isinstance(t, dict) and "token" in t and "logprob" in t]
            text = (choice.get("message") or {}).get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise EngineError(f"LLM engine {self.name!r}: an answer that is not a chat completion: {exc}") from exc
        share = yes_no_share(top)
        return share if share is not None else yes_or_no(text)

    async def count_tokens(self, text: str) -> int:
        """The model's own token count, from the server's /tokenize (llama.cpp, vLLM); else an estimate."""
        if not text:
            return 0
        if self._tokenize_url is not None:
            try:
                # llama.cpp reads "content", vLLM reads "prompt" and "model": one body serves both.
                response = await self._client.post(self._tokenize_url,
                                                   json={"model": self.model, "prompt": text, "content": text})
                if response.status_code < 400:
                    data = response.json()
                    if isinstance(data.get("count"), int):
                        return int(data["count"])
                    if isinstance(data.get("tokens"), list):
                        return len(data["tokens"])
                if response.status_code in _NO_ENDPOINT or response.status_code < 400:
                    log.info("engine %s has no usable /tokenize (HTTP %d): estimating tokens", self.name,
                             response.status_code)
                    self._tokenize_url = None  # Ollama and others have none: do not ask on every turn
                else:
                    # This text's failure (say, one the tokenizer refuses), or a passing fault: it
                    # is this count's estimate, never every later session's.
                    log.info("engine %s: /tokenize refused this text (HTTP %d): estimating it", self.name,
                             response.status_code)
            except (httpx.HTTPError, ValueError) as exc:
                log.info("engine %s: /tokenize failed (%s): estimating this count", self.name, type(exc).__name__)
        return estimate_tokens(text)

    async def aclose(self) -> None:
        await self._client.aclose()


async def stream_events(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                        engine: str) -> AsyncIterator[dict[str, Any]]:
    """POST `body`; the JSON events of the server-sent-event answer (`data:` lines), to `[DONE]`.

    HTTP failures and in-stream errors raise EngineError. Close it early (`aclosing`) to stop:
    closing the connection is what tells llama.cpp, vLLM and Ollama to stop generating."""
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code >= 400:
                detail = (await response.aread()).decode("utf-8", "replace")[:300]
                raise EngineError(f"LLM engine {engine!r}: HTTP {response.status_code}: {detail}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                try:
                    event = json.loads(payload)
                except json.JSONDecodeError:
                    log.warning("engine %s sent a line that is not JSON: %.120s", engine, payload)
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise EngineError(f"LLM engine {engine!r}: {event['error']}")
                yield event
    except httpx.HTTPError as exc:
        raise EngineError(f"LLM engine {engine!r}: {type(exc).__name__}: {exc}") from exc


class _CallAssembler:
    """Native tool calls arrive in pieces (`delta.tool_calls`, by index): the name first, the
    arguments as JSON text in fragments. Whole calls come out once the stream has ended."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        for n, delta in enumerate(deltas if isinstance(deltas, list) else []):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index") if isinstance(delta.get("index"), int) else n
            part = self._parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
            for key, value in (("id", delta.get("id")), ("name", function.get("name")),
                               ("arguments", function.get("arguments"))):
                if isinstance(value, str):
                    part[key] = part[key] + value if key == "arguments" else value

    def calls(self) -> tuple[ToolCall, ...]:
        made = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if not part["name"]:
                continue
            try:
                args = json.loads(part["arguments"] or "{}")
            except json.JSONDecodeError:
                log.warning("engine sent tool arguments that are not JSON: %.120s", part["arguments"])
                args = {}
            made.append(ToolCall(part["id"] or f"call-{index}", part["name"], args if isinstance(args, dict) else {}))
        return tuple(made)


def openai_message(message: ChatMessage) -> dict[str, Any]:
    """One chat message in the OpenAI format; with images, content is a list of parts (the standard
    vision format that vLLM, llama.cpp's server and Ollama read); native tool calls and results
    as `tool_calls` and `tool` messages."""
    if message.tool_calls:
        return {"role": "assistant", "content": message.content or None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.args)}}
            for c in message.tool_calls]}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
    return {"role": message.role, "content": parts}
