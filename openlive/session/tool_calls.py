"""The tool-call barrier: carrying out what the model decided, and matching the client's answers.

Owns: blocking calls waiting for their `toolResponse` (generation pauses until every call of a
`toolCall` is answered, matched by id), NON_BLOCKING calls still owed a result (they survive a
resumption; one stays open while its results say `willContinue`, and its last result closes it),
which (function, args) were answered recently, and the code, search and urlContext tools that
run here. Touches: the wire (`toolCall`, `executableCode`, `codeExecutionResult`), the conversation
history (calls and results are written there as text the model reads), the sandbox, the search
provider and the page reader. It never starts or stops a reply: the reply room calls `use`, and the session decides
what a background result does (`on_response` returns those turns).

Cancelling a blocked call is the reply's cancellation: the waiting task is cancelled, its
futures are dropped here, and the reply room sends `toolCallCancellation` with `pending_ids()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engines.search.base import SearchProvider, SearchResult
from ..engines.search.url_context import Page, UrlReader, find_urls
from ..protocol import server_messages as sm
from ..protocol.messages import FunctionResponse, ToolResponse
from .context import RESULT_ADVICE, Conversation, Turn
from .tools import RUN_PYTHON, SEARCH, Decision

if TYPE_CHECKING:
    from ..engines.code.sandbox import Sandbox

log = logging.getLogger(__name__)

ANSWER_MEMORY_S = 120.0  # a function's answer counts as known this long; asking again after it is new


@dataclass
class Grounding:
    """What search found during one reply, for its `groundingMetadata`, and the pages urlContext
    read for it, for its `urlContextMetadata` ((url, URL_RETRIEVAL_STATUS_…) each)."""

    queries: list[str] = field(default_factory=list)
    results: list[SearchResult] = field(default_factory=list)
    urls: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ResultTurn:
    """A NON_BLOCKING result the model should speak about: a user turn, maybe interrupting first."""

    text: str
    interrupt: bool


class ToolCalls:
    def __init__(self, *, send: sm.Send, conversation: Conversation, sandbox: Sandbox | None = None,
                 search: SearchProvider | None = None, url_reader: UrlReader | None = None,
                 waiting: Callable[[], None] = lambda: None) -> None:
        self._send = send
        self._waiting = waiting  # the calls are out and the LLM is idle until their results come
        self.conversation = conversation
        self.sandbox = sandbox
        self.search = search
        self.url_reader = url_reader
        # urlContext, for the user turn last read: the notes it added (not the user's words, so
        # their links are not followed) and the URLs read (a turn continued is not read again).
        self._pages_turn: Turn | None = None
        self._pages_notes: list[str] = []
        self._pages_read: set[str] = set()
        self._pending: dict[str, asyncio.Future[FunctionResponse]] = {}  # blocking calls awaiting an answer
        # NON_BLOCKING calls still open (no result yet, or each so far with willContinue): id -> (name, args)
        self.background: dict[str, tuple[str, Any]] = {}
        self._answered: dict[str, float] = {}  # (function, args) -> when its result arrived

    def pending_ids(self) -> list[str]:
        """Blocking calls the client still owes an answer (a cancelled reply cancels exactly these)."""
        return list(self._pending)

    # ------------------------------------------------------------------ carrying out a decision

    async def use(self, decision: Decision, grounding: Grounding,
                  calls_out: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Carry out one tool decision and put its result in history; False: talk on without tools.
        `calls_out`: run once a blocking `toolCall` is on the wire, before its answers are awaited."""
        tools = self.conversation.tools
        if decision.tool == RUN_PYTHON and tools.code_execution:
            await self._run_code(str(decision.args.get("code", "")))
            return True
        if decision.tool == SEARCH and tools.search:
            await self._search(str(decision.args.get("query", "")), grounding)
            return True
        function = tools.functions.get(decision.tool)
        if function is None:  # the grammar prevents this; a grammar-less engine might not
            log.warning("model chose unknown tool %r", decision.tool)
            return False
        arg_sets = decision.args if isinstance(decision.args, list) else [decision.args]
        calls = [{"id": f"function-call-{uuid.uuid4().hex[:12]}", "name": function.name, "args": args}
                 for args in arg_sets if isinstance(args, dict)]
        self.conversation.append_calls(calls)
        if function.non_blocking:
            self.background.update({c["id"]: (function.name, c["args"]) for c in calls})
            await self._send(sm.tool_call(calls))
            running = f"[{function.name} is running; its result will come later. Tell the user.]"
            for call in calls:
                self.conversation.append_result(call["id"], function.name, {"status": "running; the result comes later"},
                                                running)
            return False
        loop = asyncio.get_running_loop()
        waiters = {c["id"]: loop.create_future() for c in calls}
        self._pending.update(waiters)
        await self._send(sm.tool_call(calls))
        if calls_out is not None:
            await calls_out()
        self._waiting()
        try:
            # Generation pauses until the client has answered every call, matched by id.
            responses = [await waiters[c["id"]] for c in calls]
        finally:
            for call_id in waiters:
                self._pending.pop(call_id, None)
        for call, response in zip(calls, responses):
            self._remember_answer(function.name, call["args"])
            # Compact: the model reads every token of it after the result arrives (~0.1 s per 10
            # tokens on 2 cores); the call's line just before says what was asked, unless several were.
            asked = f"({_compact(call['args'])})" if len(calls) > 1 else ""
            self.conversation.append_result(call["id"], function.name, response.response,
                                            f"[{function.name}{asked} result: {_compact(response.response)}]")
        if len(tools.functions) > 1 or tools.code_execution or tools.search:
            # The answering round could call something else: say what the result is for. With
            # nothing else to call, that round can only answer (reply.py), and it reads less.
            self.conversation.append("user", RESULT_ADVICE[len(calls) > 1])
        return True

    def _remember_answer(self, name: str, args: Any) -> None:
        self._answered[json.dumps([name, args], sort_keys=True)] = time.monotonic()

    def recently_answered(self, decision: Decision) -> bool:
        """Whether every call in this decision got its answer within the last couple of minutes."""
        arg_sets = decision.args if isinstance(decision.args, list) else [decision.args]
        now = time.monotonic()
        return all(now - self._answered.get(json.dumps([decision.tool, a], sort_keys=True), -1e9) < ANSWER_MEMORY_S
                   for a in arg_sets)

    async def _run_code(self, code: str) -> None:
        await self._send(sm.model_turn([{"executableCode": {"language": "PYTHON", "code": code}}]))
        if self.sandbox is None:
            result_outcome, output = "OUTCOME_FAILED", "code execution is not available on this server"
        else:
            result = await self.sandbox.run(code)
            result_outcome, output = result.outcome, result.output
        await self._send(sm.model_turn([{"codeExecutionResult": {"outcome": result_outcome, "output": output}}]))
        self.conversation.append("model", f"[ran Python]\n{code}")
        advice = ("Use this output to answer." if result_outcome == "OUTCOME_OK" else
                  "Fix the program: it must define everything it uses and print the answer. Run it again.")
        self.conversation.append("user", f"[Python {result_outcome}; output:]\n{output[:4000]}\n{advice}",
                                 tool_use=True)

    async def _search(self, query: str, grounding: Grounding) -> None:
        results = await self.search.search(query, limit=3) if self.search is not None else []
        grounding.queries.append(query)
        grounding.results.extend(results)
        self.conversation.append("model", f"[searched: {query}]")
        found = "\n".join(f"{i + 1}. {r.title}: {r.snippet}" for i, r in enumerate(results)) or "nothing found"
        self.conversation.append("user", f"[search results]\n{found}\nAnswer from these results.", tool_use=True)

    async def read_pages(self, grounding: Grounding) -> None:
        """urlContext: read the pages at the URLs in the user's turn, before the model answers it,
        and put their text (or why not) after the user's words. The server reads every URL the user
        names (up to [url_context] max_urls): a small model need not decide to, nor copy the URL."""
        reader = self.url_reader
        history = self.conversation.history
        turn = history[-1] if history else None
        if reader is None or turn is None or turn.role != "user" or turn.results:
            return
        if turn is not self._pages_turn:
            self._pages_turn, self._pages_notes, self._pages_read = turn, [], set()
        words = turn.text
        for note in self._pages_notes:
            words = words.replace(note, "")
        room = reader.max_urls - len(self._pages_read)
        urls = [u for u in find_urls(words) if u not in self._pages_read][:max(0, room)]
        if not urls:
            return
        pages = await asyncio.gather(*(reader.read(url, question=words) for url in urls))
        self._pages_read.update(urls)
        grounding.urls.extend((page.url, page.status) for page in pages)
        note = _pages_note(pages)
        self.conversation.append("user", note, tool_use=True)
        self._pages_notes.append(note)

    # ------------------------------------------------------------------ the client's answers

    def on_response(self, event: ToolResponse) -> list[ResultTurn]:
        """Hand each answer to its waiting call; return the background results the model should speak of.

        A NON_BLOCKING call is a generator: a result with `willContinue` leaves it open for more,
        the first without it is its last (later ones are not considered, as the API documents).
        `willContinue` and `scheduling` mean nothing to a blocking call, which takes its first answer.
        """
        turns: list[ResultTurn] = []
        for response in event.function_responses:
            waiter = self._pending.get(response.id or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
            elif response.id in self.background:
                name, args = self.background[response.id]
                if not response.will_continue:
                    del self.background[response.id]
                self._remember_answer(name, args)
                turn = self._background_result(name, response)
                if turn is not None:
                    turns.append(turn)
            else:
                # No in-band error exists in the Live API: say it in the log and carry on.
                log.warning("toolResponse for unknown or finished call id %r (%s) ignored", response.id, response.name)
        return turns

    def _background_result(self, name: str, response: FunctionResponse) -> ResultTurn | None:
        """A NON_BLOCKING call's result: always into the context; its scheduling says whether and
        when the model speaks of it (SILENT: never; WHEN_IDLE, the default: once the reply in
        progress has ended; INTERRUPT: at once, cutting that reply)."""
        scheduling = response.scheduling or "WHEN_IDLE"
        if scheduling == "SCHEDULING_UNSPECIFIED":
            scheduling = "WHEN_IDLE"
        if response.will_continue:
            result = f"[result of {name}, more to come: {json.dumps(response.response)}] Tell the user."
        elif response.response in (None, {}) and not response.parts:
            # "An empty response with willContinue false signals that the call is finished."
            result = f"[{name} has finished.]"
        else:
            result = f"[result of {name}: {json.dumps(response.response)}] Tell the user."
        if scheduling == "SILENT":
            self.conversation.append("user", result)
            return None
        return ResultTurn(result, interrupt=scheduling == "INTERRUPT")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pages_note(pages: list[Page]) -> str:
    """What the model reads of the pages the user named: each page's text, or why it is missing."""
    lines: list[str] = []
    for page in pages:
        if page.ok:
            named = f" ({page.title})" if page.title else ""
            lines += [f"[page {page.url}{named}]", page.text, "[end of page]"]
        else:
            lines.append(f"[page {page.url} could not be read: {page.error}. Say so; do not guess what it says.]")
    if any(page.ok for page in pages):
        lines.append("Answer the user from the page.")
    return "\n".join(lines)
