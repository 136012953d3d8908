"""Proactive audio: is what the microphone heard said to the assistant? Accuracy on a labelled set.

The decision path is the server's own: the embedded default model in-process, a session's
conversation (the assistant's last line), and session/proactivity.py's `Addressee`, which asks
the engine its questions (`EmbeddedLlamaEngine.yes_probability`) and weighs the answers against
its threshold. Each item of bench/proactive_set.py is judged once; it is right when the turn
would be answered exactly when it was said to the assistant.

The set's "tune" items chose the questions' wording, the pair of them and the threshold
(log-odds); "held_out" items are reported apart (target: >= 90% right). The threshold sweep is
on the tuning items only. LLM timings on a shared 2-core machine are noisy: the load average at
the start and end is in the result.

    .venv/bin/python bench/proactive.py [--threshold 1.0] [--split all|tune|held_out]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from common import machine, progress, write_result
from proactive_set import INSTRUCTION, ITEMS, Item

from openlive.engines.llm.embedded import EmbeddedLlamaEngine
from openlive.engines.llm.packaged import DEFAULT_MODEL_ID, resolve_model_file
from openlive.session import proactivity
from openlive.session.context import ContextPolicy, Conversation


def conversation_for(item: Item) -> Conversation:
    conversation = Conversation(system_instruction=INSTRUCTION, tools=None, policy=ContextPolicy(8192, None, 8192),
                                modality="AUDIO", language=None)
    if item.last is not None:
        conversation.append("user", "Hello.")
        conversation.append("model", item.last)
    return conversation


def share(rows: list[dict[str, Any]]) -> dict[str, Any]:
    right = sum(r["right"] for r in rows)
    return {"right": f"{right}/{len(rows)}", "share": round(right / len(rows), 3) if rows else None}


def at_threshold(rows: list[dict[str, Any]], threshold: float) -> float:
    return sum(((r["score"] is None or r["score"] >= threshold) == r["addressed"]) for r in rows) / len(rows)


async def run(data_dir: Path, threshold: float, split: str) -> dict[str, Any]:
    engine = EmbeddedLlamaEngine(DEFAULT_MODEL_ID, resolve_model_file(DEFAULT_MODEL_ID, data_dir), n_parallel=2,
                                 n_ctx=8192)
    await engine.start()
    await engine.primed()
    load_start = os.getloadavg()
    items = [i for i in ITEMS if split == "all" or i.split == split]
    rows: list[dict[str, Any]] = []
    try:
        for n, item in enumerate(items):
            conversation = conversation_for(item)
            addressee = proactivity.Addressee(engine, conversation, threshold=threshold)
            start = time.perf_counter()
            answered = await addressee.addressed(item.words)  # the session's own call
            seconds = time.perf_counter() - start
            # The score behind it (read from the prompt cache now: the same requests again).
            score = await proactivity.judge(engine, item.words, proactivity.last_model_line(conversation))
            rows.append({"words": item.words, "last": item.last, "kind": item.kind, "split": item.split,
                         "addressed": item.addressed, "score": None if score is None else round(score, 3),
                         "answered": answered, "right": answered == item.addressed, "seconds": round(seconds, 2)})
            progress(f"{n + 1}/{len(items)}          ")
    finally:
        await engine.aclose()
    tune = [r for r in rows if r["split"] == "tune"]
    sweep = {f"{t:.2f}": round(at_threshold(tune, t), 3) for t in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75)} \
        if tune else {}
    seconds = sorted(r["seconds"] for r in rows)
    return {
        "benchmark": "proactive", "machine": machine(), "model": DEFAULT_MODEL_ID, "threshold_log_odds": threshold,
        "questions": list(proactivity.QUESTIONS), "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()], "target": 0.9,
        "all": share(rows),
        "splits": {s: share([r for r in rows if r["split"] == s]) for s in ("tune", "held_out")},
        "said_to_assistant": share([r for r in rows if r["addressed"]]),
        "not_said_to_assistant": share([r for r in rows if not r["addressed"]]),
        "kinds": {k: share([r for r in rows if r["kind"] == k]) for k in dict.fromkeys(r["kind"] for r in rows)},
        "tuning_threshold_sweep": sweep,
        "judgment_seconds": {"median": seconds[len(seconds) // 2], "max": seconds[-1]} if seconds else {},
        "items": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--threshold", type=float, default=proactivity.THRESHOLD, help="log-odds of yes")
    parser.add_argument("--split", choices=("all", "tune", "held_out"), default="all")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.data_dir.expanduser(), args.threshold, args.split))
    write_result("proactive", result, args.out)



if __name__ == "__main__":
    main()
