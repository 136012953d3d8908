"""Whether the words so far make a finished sentence: a small LLM's P(the user's message ends here).

Smart-turn (`smart_turn.py`) hears how the user stopped; it cannot read. On clean or synthetic
speech it scores fragments such as "I would like to know" as complete, because the voice falls
at the pause. A language model reads the transcript that recognition already produced in the
pause and says how likely the message ends right there: after "What time is it in Tokyo right
now" an instruct model puts most of its next-token mass on "?" or its end-of-message token; after
"Could you check the weather in" it puts none there. That is LiveKit's turn-detector idea
(a small LM over the transcript), done with an off-the-shelf instruct model and no fine-tuning.

P(end) is the probability mass of the next token that closes the message: the chat template's
end-of-message token, or sentence-final punctuation (". ? !", and the full-width "。？！").
The transcript's own trailing punctuation is removed first: Whisper ends every segment with
one, complete or not.

Measured on an idle 2-core machine with Qwen2.5-Coder-0.5B-Instruct (packaged, already a
dependency), ~70 ms per call: complete requests 0.03–0.96, dangling fragments 0.00–0.01 (one
ambiguous "Remind me tomorrow morning" at 0.06). SmolLM2-135M is faster (~45 ms) but its ranges
overlap more.

The model runs in llama.cpp's server (xllamacpp) with one slot of its own, in this process: the
shared prefix (the template's system and user header) stays in its prompt cache, so a call
evaluates only the transcript's few tokens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

_MARK = "\u0001TRANSCRIPT\u0001"  # splits the rendered template around the user's words
_SYSTEM = "You are a helpful assistant."
_FINAL_PUNCTUATION = (".", "?", "!", "\u3002", "\uff1f", "\uff01")
_TRAILING = re.compile(r"[\s.,;:!?\u2026\u3002\uff1f\uff01\uff0c-]+$")
_TOP_TOKENS = 20  # the end of a message, when likely at all, is among the top few


def words_of(transcript: str) -> str:
    """The transcript without the trailing punctuation recognition adds to every segment."""
    return _TRAILING.sub("", transcript.strip())


def end_probability(top: list[dict[str, Any]], end_token: str) -> float:
    """Mass of the next tokens that close the message, from llama.cpp's top_logprobs."""
    total = 0.0
    for entry in top:
        piece = entry.get("token") or ""
        if entry.get("logprob") is not None:
            p = math.exp(entry["logprob"])
        else:
            p = float(entry.get("prob", 0.0))
        stripped = piece.strip()
        if stripped and (stripped.startswith(_FINAL_PUNCTUATION) or stripped == end_token):
            total += p
    return min(1.0, total)


class TextTurnModel:
    """P(the message ends after these words), from a small GGUF instruct model, asked over loopback."""

    def __init__(self, model_path: Path, *, n_threads: int = 2) -> None:
        self.model_path = Path(model_path)
        self.n_threads = n_threads
        self._server: Any = None
        self._http: httpx.AsyncClient | None = None
        self._prefix = ""
        self._end_token = ""
        self._lock = asyncio.Lock()  # one slot: calls queue here rather than in llama.cpp

    def _load(self) -> tuple[Any, str, str]:
        import xllamacpp  # heavy native module: imported only when the engine is really used

        from ..llm.embedded import llama_params

        # One slot with room for a system line and one utterance's words; one prefix, so no other
        # prompt states to keep in RAM.
        server = xllamacpp.Server(llama_params(self.model_path, n_ctx=1024, n_parallel=1, n_threads=self.n_threads,
                                               prompt_cache_mib=0))
        base = str(server.listening_address).rstrip("/")
        # The model's own chat template, rendered once: what comes before the user's words is the
        # cached prefix; what comes right after them starts with its end-of-message token.
        rendered = httpx.post(f"{base}/apply-template", timeout=30, json={"messages": [
            {"role": "system", "content": _SYSTEM}, {"role": "user", "content": _MARK}]}).json()["prompt"]
        prefix, _, suffix = rendered.partition(_MARK)
        end_token = suffix.split("\n", 1)[0].strip()
        return server, prefix, end_token

    async def start(self) -> None:
        self._server, self._prefix, self._end_token = await asyncio.to_thread(self._load)
        base = str(self._server.listening_address).rstrip("/")
        self._http = httpx.AsyncClient(base_url=base, timeout=30)
        await self.probability("Hello")  # fills the prompt cache with the shared prefix
        log.info("end of turn: text model %s ready", self.model_path.name)

    async def probability(self, transcript: str) -> float | None:
        """P(the user's message is complete after `transcript`); None when there are no words to read."""
        words = words_of(transcript)
        if not words or self._http is None:
            return None
        async with self._lock:
            response = await self._http.post("/completion", json={
                "prompt": self._prefix + words, "n_predict": 1, "n_probs": _TOP_TOKENS,
                "temperature": 0, "cache_prompt": True})
        response.raise_for_status()
        probabilities = response.json().get("completion_probabilities") or [{}]
        first = probabilities[0]
        return end_probability(first.get("top_logprobs") or first.get("probs") or [], self._end_token)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        server, self._server = self._server, None
        if server is not None:
            del server
