"""What resumption costs: a snapshot per turn, and the time to resume a conversation.

1. Snapshot cost per turn, in-process: a session with a history of N turns writes the snapshot it
   writes after every turn (serialize + durable store write), for the SQLite store and, when
   `redis-server` is installed, a Redis started on loopback. Reported against the time of a whole
   text turn through the server (SDK → TLS WebSocket → session → scripted LLM → SDK, the fastest
   turn there is) measured in the same run, as a ratio.
2. Resume time, end to end through the google-genai SDK: connect with a handle (the server reads
   and restores the snapshot) against a fresh connect, on one server process, alternating.

    .venv/bin/python bench/resumption.py [--turns 10,100,400] [--samples 30] [--out bench/results/resumption.json]

Target (issue 6): a snapshot costs a small fraction of a turn; resuming costs about as much as connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import machine, progress, start_openlive, stop, summary_ms, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openlive.engines.llm.scripted import ScriptedEngine  # noqa: E402
from openlive.protocol import parse_client_frame  # noqa: E402
from openlive.session.context import Turn  # noqa: E402
from openlive.session.live_session import LiveSession, Persistence  # noqa: E402
from openlive.store import open_store  # noqa: E402

SENTENCE = "I would like to book a table for two people tonight at eight, near the window if possible. "
WORDS = ("table window eight people tonight menu wine river station ticket morning garden letter market "
         "bridge coffee museum doctor holiday weather").split()


def varied_text(i: int, words: int = 40) -> str:
    """Turn text that does not compress to nothing, as real conversation does not."""
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def setup_event():
    return parse_client_frame('{"setup":{"model":"models/x","generationConfig":{"responseModalities":["TEXT"]},'
                              '"sessionResumption":{}}}')


async def snapshot_costs(store, turns: int, samples: int) -> dict:
    async def send(_message):
        return None

    session = LiveSession(setup_event(), llm=ScriptedEngine("s"), send=send, persistence=Persistence(store, "bench"))
    session.conversation.history = [Turn("user" if i % 2 == 0 else "model", varied_text(i), 50) for i in range(turns)]
    times, size = [], 0
    for i in range(samples):
        session._version += 1  # a turn happened
        start = time.perf_counter()
        await session._save_if_changed()
        times.append(time.perf_counter() - start)
        size = len(session.checkpoints.snapshot().to_bytes())
        progress(f"snapshot: {turns} turns, {i + 1}/{samples}")
    return {"turns": turns, "snapshot_bytes": size, **summary_ms(times)}


async def resume_times(base_url: str, samples: int) -> dict:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base_url))
    model = "gemini-live-2.5-flash-preview"
    handle = None
    turns = []
    async with client.aio.live.connect(model=model, config=types.LiveConnectConfig(
            response_modalities=["TEXT"], session_resumption=types.SessionResumptionConfig())) as session:
        for i in range(20):  # a conversation worth resuming; each turn also times a whole turn
            start = time.perf_counter()
            await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=SENTENCE)]))
            async for message in session.receive():
                update = message.session_resumption_update
                if update and update.new_handle:
                    handle = update.new_handle
            turns.append(time.perf_counter() - start)
    fresh, resumed = [], []

    async def connect(config) -> tuple[float, str]:
        start = time.perf_counter()
        async with client.aio.live.connect(model=model, config=config) as session:
            elapsed = time.perf_counter() - start  # connect() returns once setupComplete arrived
            # Stay until the first handle, so that a resumed session really had its state loaded.
            async for message in session.receive():
                if message.session_resumption_update and message.session_resumption_update.new_handle:
                    return elapsed, message.session_resumption_update.new_handle
        raise RuntimeError("no handle")

    for i in range(samples):
        for resume in ([False, True] if i % 2 == 0 else [True, False]):
            elapsed, new_handle = await connect(types.LiveConnectConfig(
                response_modalities=["TEXT"],
                session_resumption=types.SessionResumptionConfig(handle=handle if resume else None)))
            if resume:
                resumed.append(elapsed)
                handle = new_handle  # as a client does: each connection's newest handle supersedes the last
            else:
                fresh.append(elapsed)
        progress(f"resume: {i + 1}/{samples}")
    f, r = summary_ms(fresh), summary_ms(resumed)
    return {"history_turns": 40, "turn": summary_ms(turns), "fresh_connect": f, "resume_connect": r,
            "resume_over_fresh_p50": round(r["p50_ms"] / f["p50_ms"], 3)}


async def run(args: argparse.Namespace, workdir: Path) -> dict:
    result: dict = {"machine": machine(), "snapshot": {}}
    backends = {"sqlite": lambda: open_store("sqlite", path=workdir / "state.sqlite3")}
    redis = None
    if shutil.which("redis-server"):
        from tests.support.redis_server import redis_server

        redis = redis_server()
        url = redis.__enter__()
        backends["redis"] = lambda: open_store("redis", url=url)
    try:
        for name, opener in backends.items():
            store = await opener()
            try:
                rows = [await snapshot_costs(store, int(n), args.samples) for n in args.turns.split(",")]
            finally:
                await store.aclose()
            result["snapshot"][name] = rows
    finally:
        if redis is not None:
            redis.__exit__(None, None, None)
    script = workdir / "script.toml"
    script.write_text("")
    config = workdir / "openlive.toml"
    config.write_text(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n'
                      f'[store]\npath = "{workdir / "server.sqlite3"}"\n[limits]\nsessions_per_key = 0\n')
    process, base = start_openlive(Path(args.data_dir or workdir / "data"), config)
    try:
        result["resume"] = await resume_times(base, args.samples)
    finally:
        stop(process)
    turn_p50 = result["resume"]["turn"]["p50_ms"]  # the server's own snapshots are part of this turn
    for rows in result["snapshot"].values():
        for row in rows:
            row["over_turn_p50"] = round(row["p50_ms"] / turn_p50, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", default="10,100,400")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--data-dir", help="openlive data dir (reuses prepared models)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    write_result("resumption", result, args.out)


if __name__ == "__main__":
    main()
