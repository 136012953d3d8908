"""The embedded chat engine: llama.cpp (through xllamacpp) inside the openlive process.

xllamacpp runs llama.cpp's own server on a random loopback port; we stream from it with the
same OpenAI-compatible client used for remote engines. That keeps one streaming path, and
closing a stream is how llama.cpp is told to stop generating when the user interrupts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from .base import CAMERA_GUIDANCE, SPOKEN_GUIDANCE, ChatChunk, ChatRequest, EngineError, estimate_tokens
from .openai_compat import OpenAICompatEngine, openai_message
from .tool_turns import ToolTurnWriter, branches

log = logging.getLogger(__name__)

# Said first in every system prompt for the small embedded models. They refuse to repeat
# "personal" facts (a locker code, a booking reference) that the user gave a few turns earlier;
# told once that these are the user's own, they answer from the conversation. The refusal often
# starts when the fact is given ("I don't have access to your locker code"), and the model then
# stays consistent with it: acknowledging the fact at once keeps it in the model's own words. Told
# what the camera notes are, they answer "what does the sign say?" from them, not "I cannot see".
GUIDANCE = ("You are a helpful assistant in a live conversation with the user. When the user tells you something "
            "about themselves, acknowledge it briefly and repeat it. Facts the user gave earlier in the conversation "
            "(their name, numbers, codes, references, dates, plans, favourites) are theirs to ask about: when they "
            "ask about one, or ask if you remember it, answer with the fact itself. " + CAMERA_GUIDANCE)


def llama_params(model_path: Path, *, n_ctx: int, n_parallel: int, n_threads: int, verbosity: int = -1,
                 prompt_cache_mib: int = 512) -> Any:
    """llama.cpp server settings for one GGUF model in this process (xllamacpp.CommonParams)."""
    import xllamacpp  # heavy native module: imported only when an engine is really used

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    # n_ctx is shared by the parallel slots: each gets n_ctx / n_parallel.
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.cache_prompt = True  # a conversation is a growing prefix: reuse its KV cache
    # States of prompts that lost their slot, kept in RAM up to this size (least recently used go).
    params.cache_ram_mib = prompt_cache_mib
    params.verbosity = verbosity
    return params


class EmbeddedLlamaEngine:
    def __init__(
        self,
        name: str,
        model_path: Path,
        *,
        n_ctx: int = 8192,
        n_parallel: int = 4,
        n_threads: int | None = None,
        draft_model_path: Path | None = None,
        draft_max: int = 8,
        verbosity: int = -1,
        prompt_cache_mib: int = 512,
    ) -> None:
        self.name = name
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads or max(1, min(os.cpu_count() or 1, 8))
        self.system_guidance = GUIDANCE
        self.draft_model_path = Path(draft_model_path) if draft_model_path is not None else None
        self.draft_max = draft_max
        self.verbosity = verbosity
        self.prompt_cache_mib = prompt_cache_mib
        self._server: Any = None
        self._client: OpenAICompatEngine | None = None
        self._tool_turns: ToolTurnWriter | None = None
        self._slot_dir: str | None = None  # where llama.cpp saves the primed slot, to copy it to the others
        self._priming: asyncio.Task[None] | None = None

    def _load(self) -> Any:
        import xllamacpp

        params = llama_params(self.model_path, n_ctx=self.n_ctx, n_parallel=self.n_parallel,
                              n_threads=self.n_threads, verbosity=self.verbosity,
                              prompt_cache_mib=self.prompt_cache_mib)
        params.warmup = True
        if self._slot_dir is not None:
            params.slot_save_path = self._slot_dir + os.sep
        if self.draft_model_path is not None:
            # Speculative decoding: a small model of the same tokenizer family drafts a few tokens,
            # the main model checks them in one batch (one pass instead of several on a CPU that
            # is bound by reading the weights).
            draft = params.speculative.draft
            draft.mparams.path = str(self.draft_model_path)
            draft.n_max = self.draft_max
            draft.n_min = 0
            draft.cpuparams.n_threads = self.n_threads
            draft.cpuparams_batch.n_threads = self.n_threads
            params.speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        return xllamacpp.Server(params)

    async def start(self) -> None:
        if not self.model_path.is_file():
            raise EngineError(f"LLM engine {self.name!r}: model file {self.model_path} not found")
        log.info("loading LLM %s from %s", self.name, self.model_path)
        self._slot_dir = tempfile.mkdtemp(prefix="openlive-slots-")
        try:
            self._server = await asyncio.to_thread(self._load)
        except Exception as exc:  # the native loader raises plain RuntimeError/ValueError
            raise EngineError(f"LLM engine {self.name!r}: cannot load {self.model_path}: {exc}") from exc
        address = str(self._server.listening_address).rstrip("/")
        self._client = OpenAICompatEngine(self.name, f"{address}/v1", model=self.model_path.stem)
        # trust_env=False: a proxy set for the outside world must not capture loopback traffic.
        self._tool_turns = ToolTurnWriter(httpx.AsyncClient(base_url=address, timeout=60.0, trust_env=False),
                                          self.name)
        log.info("LLM %s ready at %s", self.name, address)
        self._priming = asyncio.create_task(self._prime_slots(address), name=f"prime-{self.name}")

    async def _prime_slots(self, address: str) -> None:
        """Give every slot the prompt prefix that all sessions share (the guidance, then how to speak).

        Each of llama.cpp's parallel slots has a prompt cache of its own, and its RAM cache does not
        hand a prefix from one slot to another. Sessions that begin at once land on slots that have
        never read that prefix: four at once each read ~150 tokens cold, ~8 s on 2 cores before the
        first word, against ~1.9 s when the prefix is cached. So the prefix is read once into slot 0
        at start-up (in the background: a request meanwhile just reads it itself), saved, and
        restored into the other idle slots, ~1 ms each. A failure costs only this speed-up.
        """
        prefix = {"role": "system", "content": "\n\n".join((self.system_guidance, SPOKEN_GUIDANCE))}
        try:
            async with httpx.AsyncClient(base_url=address, timeout=120.0, trust_env=False) as http:
                read = await http.post("/v1/chat/completions", json={
                    "messages": [prefix], "max_tokens": 1, "temperature": 0, "id_slot": 0})
                read.raise_for_status()
                (await http.post("/slots/0?action=save", json={"filename": "prefix.bin"})).raise_for_status()
                slots = (await http.get("/slots")).json()
                idle = [s["id"] for s in slots if s.get("id", 0) != 0 and not s.get("is_processing")]
                for slot in idle:
                    await http.post(f"/slots/{slot}?action=restore", json={"filename": "prefix.bin"})
            log.info("LLM %s: the shared prompt prefix is cached in %d slots", self.name, 1 + len(idle))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.info("LLM %s: slots not primed (%s): each reads the shared prefix itself", self.name, exc)

    async def primed(self) -> None:
        """Wait until the slots hold the shared prefix (or priming gave up)."""
        if self._priming is not None:
            await asyncio.gather(asyncio.shield(self._priming), return_exceptions=True)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self._client is None or self._tool_turns is None:
            raise EngineError(f"LLM engine {self.name!r} is not started")
        choices = branches(request.json_schema)
        if choices is not None:  # a tool turn: its fixed JSON is read, not generated (tool_turns.py)
            return self._tool_turns.stream(request, choices, [openai_message(m) for m in request.messages])
        return self._client.stream(request)

    async def warm(self, request: ChatRequest) -> None:
        if self._client is not None:
            await self._client.warm(request)

    async def warm_tool_judges(self, request: ChatRequest) -> None:
        """Read ahead what deciding on `request`'s tools may need besides the conversation: each
        tool's judge prompt (tool_turns.py). Nothing for a request that is no tool turn."""
        if self._tool_turns is not None and branches(request.json_schema) is not None:
            await self._tool_turns.warm_judges(request.json_schema)

    async def yes_probability(self, request: ChatRequest) -> float | None:
        if self._client is None:
            raise EngineError(f"LLM engine {self.name!r} is not started")
        return await self._client.yes_probability(request)

    async def count_tokens(self, text: str) -> int:
        if self._client is None:
            return estimate_tokens(text)
        return await self._client.count_tokens(text)

    async def aclose(self) -> None:
        if self._priming is not None:
            self._priming.cancel()
            await asyncio.gather(self._priming, return_exceptions=True)
            self._priming = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._tool_turns is not None:
            await self._tool_turns.aclose()
            self._tool_turns = None
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(lambda: None)  # let in-flight callbacks finish first
            del server
        if self._slot_dir is not None:
            shutil.rmtree(self._slot_dir, ignore_errors=True)
            self._slot_dir = None
