"""A deterministic engine that answers from a script instead of a model.

For protocol and timing tests, and for users who test their own apps against openlive and want
the same reply every time. A script is a TOML file of rules tried in order against the last
user message:

    [[reply]]
    match = "weather"          # a case-insensitive regex; a rule without one always matches
    text = "It is sunny in {user}."   # {user} is replaced by the user's last message

    [[reply]]
    match = "what is my name"  # answer from the conversation so far (tests memory and resumption)
    recall = "my name is (\\w+)"  # {recall}: group 1 of its latest match in what the user said
    text = "Your name is {recall}."

    [[reply]]
    match = "instruction"      # {system}: the system prompt; {turns}: messages in the conversation
    text = "I was told: {system} ({turns} messages)"

    [[reply]]
    match = "crash"
    error = "engine exploded"  # fail like a broken engine would (tests your app's error path)

    [[reply]]
    match = "weather"          # with tools declared: call one (the args as the tool expects them)
    tool = "get_current_weather"
    args = [{ location = "Paris" }]

    token_delay_ms = 20          # optional pacing between streamed words

With no script the engine echoes: "You said: <message>".
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from ...protocol.bounded_json import JSONLimitError, loads_toml
from .base import ChatChunk, ChatRequest, EngineError, Finished, TextDelta, estimate_tokens


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str] | None
    text: str
    error: str | None = None
    tool: str | None = None
    args: object = None
    recall: re.Pattern[str] | None = None


class ScriptedEngine:
    def __init__(self, name: str, script: Path | None = None, token_delay_ms: float | None = None) -> None:
        self.name = name
        self.rules: list[Rule] = []
        delay = 0.0
        if script is not None:
            try:
                data = loads_toml(Path(script).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, JSONLimitError) as exc:
                raise EngineError(f"scripted engine {name!r}: cannot read {script}: {exc}") from exc
            delay = float(data.get("token_delay_ms", 0.0))
            for rule in data.get("reply", []):
                match = rule.get("match")
                recall = rule.get("recall")
                self.rules.append(Rule(re.compile(match, re.IGNORECASE) if match else None,
                                       str(rule.get("text", "")), rule.get("error"), rule.get("tool"),
                                       rule.get("args", {}), re.compile(recall, re.IGNORECASE) if recall else None))
        self.token_delay_s = (token_delay_ms if token_delay_ms is not None else delay) / 1000.0

    async def start(self) -> None:
        return None

    def rule_for(self, user: str) -> Rule | None:
        for rule in self.rules:
            if rule.pattern is None or rule.pattern.search(user):
                if rule.error:
                    raise EngineError(f"scripted engine {self.name!r}: {rule.error}")
                return rule
        return None

    def reply_for(self, user: str, request: ChatRequest | None = None) -> str:
        rule = self.rule_for(user)
        if not rule or rule.tool:
            return f"You said: {user}"
        text = rule.text.replace("{user}", user)
        if request is not None:
            messages = request.messages
            system = next((m.content for m in messages if m.role == "system"), "")
            text = text.replace("{system}", system).replace("{turns}", str(sum(m.role != "system" for m in messages)))
            if rule.recall is not None:
                said = [m.content for m in messages if m.role == "user"]
                found = [g.group(1) for m in said for g in rule.recall.finditer(m)]
                text = text.replace("{recall}", found[-1] if found else "unknown")
        return text

    def _turn(self, request: ChatRequest, user: str) -> str:
        """The reply text, or with tools declared the JSON turn openlive's router expects."""
        if request.json_schema is None or "enum" in request.json_schema:
            # No schema, or a choice of words (a yes/no question): the rule's text as it is.
            return self.reply_for(user, request)
        rule = self.rule_for(user)
        # A tool's result comes back as the last "user" message: then the script reports it.
        if rule and rule.tool and not user.startswith("["):
            return json.dumps({"tool": rule.tool, "args": rule.args, "reply": ""})
        text = f"Result: {user.splitlines()[1] if user.startswith('[Python') and len(user.splitlines()) > 1 else user}"
        return json.dumps({"tool": "none", "args": {},
                           "reply": text if user.startswith("[") else self.reply_for(user, request)})

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        reply = self._turn(request, user)
        if request.params.max_tokens:
            reply = " ".join(reply.split(" ")[: request.params.max_tokens])
        words = re.findall(r"\S+\s*", reply) or [reply]
        for word in words:
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            else:
                await asyncio.sleep(0)  # stay cancellable, as a real engine is
            yield TextDelta(word)
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        yield Finished(prompt_tokens=prompt, completion_tokens=len(words))

    async def aclose(self) -> None:
        return None
