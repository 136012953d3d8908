"""Soak: one long spoken conversation across goAways, with compression; does anything drift? (issue 13)

    .venv/bin/pip install -e '.[bench]'     # matplotlib, for the plot
    .venv/bin/python bench/soak.py [--minutes 30] [--engine embedded|scripted] [--lifetime-s 300]
        [--prompt-cache-mib N] [--out FILE] [--plot FILE]

One conversation, as a voice agent holds it: the unmodified SDK streams the microphone at
real-time pace the whole time (speech, then silence), asks a spoken question every few seconds,
and keeps the session alive the way Google documents: on `goAway` it finishes the turn,
reconnects with the last `sessionResumptionUpdate` handle and goes on. The server's connections
last `--lifetime-s` (goAway 30 s before), and the context window is compressed with a sliding
window (trigger 2,000 tokens, target 1,000), so both happen many times over a run.

Figures: end of speech → first reply audio per turn; the server's memory (its process tree's
RSS) every 15 s; what the server counted (context compressions, closes by code, turns); each
connection, whether it resumed (a handle the server did not know would be refused) and how it
ended; drift = the last fifth of the run against the first (latency p50 ratio, RSS in MiB) and
the RSS slope in MiB per 10 min.
Writes JSON (bench/results/soak.json) and a PNG of latency and memory over time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, machine, progress, pyplot, scrape_metrics, start_openlive, stop, write_result_and_plot
from conversation import LIVE_MODEL, Mic, cancel_all, clean_error, v2v_clips
from load import rss_mib, tree
from speech_in import last_voiced_sample

GAP_S = 3.0  # silence between the end of a reply and the next question
TRIGGER_TOKENS, TARGET_TOKENS = 2000, 1000


def config_text(engine: str, lifetime_s: int, prompt_cache_mib: int | None = None) -> str:
    llm = '[llm.default]\nengine = "scripted"\n\n' if engine == "scripted" else ""
    if prompt_cache_mib is not None and engine == "embedded":
        llm = f"[llm.default]\nprompt_cache_mib = {prompt_cache_mib}\n\n"
    return f"{llm}[sessions]\nlifetime_s = {lifetime_s}\ngoaway_lead_s = 30\n"


async def one_connection(base: str, handle: str | None, clips: list[tuple[str, bytes]], turn0: int,
                         until: float, turns: list[dict[str, Any]], started: float) -> tuple[str | None, str]:
    """Talk on one connection until goAway (or the run's end); the last handle, and why it ended."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"], max_output_tokens=24, temperature=0,
        system_instruction="Answer in one short sentence.",
        session_resumption=types.SessionResumptionConfig(handle=handle),
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=TRIGGER_TOKENS, sliding_window=types.SlidingWindow(target_tokens=TARGET_TOKENS)))
    tasks: list[asyncio.Task[None]] = []
    ended = "run over"
    async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
        mic = Mic(session)
        tasks.append(asyncio.create_task(mic.run()))
        try:
            k = turn0
            while time.monotonic() < until:
                question, pcm = clips[k % len(clips)]
                _, spoken = mic.say(pcm[:last_voiced_sample(pcm) * 2])
                row: dict[str, Any] = {"turn": k + 1, "at_s": round(time.monotonic() - started, 1)}
                turns.append(row)
                k += 1
                going = False
                async with asyncio.timeout(120):
                    end = await spoken
                    async for message in session.receive():
                        if message.session_resumption_update and message.session_resumption_update.new_handle:
                            handle = message.session_resumption_update.new_handle
                        if message.go_away is not None:
                            going = True
                        content = message.server_content
                        parts = content.model_turn.parts if content and content.model_turn else None
                        if "seconds" not in row and any(p.inline_data and p.inline_data.data for p in parts or []):
                            row["seconds"] = round(time.monotonic() - end, 3)
                if going:
                    ended = "goAway"
                    break
                await asyncio.sleep(GAP_S)
        finally:
            await cancel_all(tasks)
    return handle, ended


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    clips = v2v_clips()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(config_text(args.engine, args.lifetime_s, args.prompt_cache_mib))
    process, base = start_openlive(args.data_dir, Path(config.name))
    result: dict[str, Any] = {"benchmark": "soak", "machine": machine(), "engine": args.engine,
                              "minutes": args.minutes, "lifetime_s": args.lifetime_s,
                              "prompt_cache_mib": args.prompt_cache_mib,
                              "compression": {"trigger_tokens": TRIGGER_TOKENS, "target_tokens": TARGET_TOKENS}}
    turns: list[dict[str, Any]] = []
    memory: list[tuple[float, float]] = []
    connections: list[dict[str, Any]] = []
    started = time.monotonic()
    until = started + args.minutes * 60

    async def sample_memory() -> None:
        pids = tree(process.pid)
        while True:
            memory.append((round(time.monotonic() - started, 1), rss_mib(pids)))
            await asyncio.sleep(15)

    sampler = asyncio.create_task(sample_memory())
    try:
        handle: str | None = None
        failures = 0
        while time.monotonic() < until:
            before, resuming = len(turns), handle is not None
            try:
                handle, why = await one_connection(base, handle, clips, len(turns), until, turns, started)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - counted; the next connection resumes
                why = clean_error(exc)
                failures += 1
                if failures >= 3:  # the handle itself is refused: the conversation is lost
                    handle = None
            connections.append({"resumed": resuming, "turns": len(turns) - before, "ended": why})
            done = [t["seconds"] for t in turns if "seconds" in t]
            progress(f"soak: {(time.monotonic() - started) / 60:.1f} min, {len(turns)} turns, "
                     f"{len(connections)} connections, last first audio {done[-1] if done else '-'} s, "
                     f"RSS {memory[-1][1] if memory else '-'} MiB          ")
            if why not in ("goAway", "run over"):
                await asyncio.sleep(1)
        result["server_counters"] = await server_counters(base)
    finally:
        sampler.cancel()
        stop(process)
        os.unlink(config.name)
    result.update(turns=turns, memory_mib=memory, connections=connections, drift=drift(turns, memory),
                  load_average_end=machine()["load_average"])
    return result


async def server_counters(base: str) -> dict[str, float]:
    """What the server itself counted over the run, from its /metrics: compressions, closes by code, turns."""
    wanted = {"openlive_context_compressions_total", "openlive_session_closes_total", "openlive_turns_total",
              "openlive_sessions_total"}
    def key(name: str, labels: dict[str, str]) -> str:
        return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")

    return {key(s.name, s.labels): s.value for s in await scrape_metrics(base, os.environ["SSL_CERT_FILE"])
            if s.name in wanted and s.value}


def drift(turns: list[dict[str, Any]], memory: list[tuple[float, float]]) -> dict[str, Any]:
    """The last fifth of the run against the first (after the first minute's warm-up)."""
    timed = [(t["at_s"], t["seconds"]) for t in turns if "seconds" in t and t["at_s"] >= 60]
    out: dict[str, Any] = {"failed_turns": sum(1 for t in turns if "seconds" not in t), "turns": len(turns)}
    if len(timed) >= 10:
        fifth = max(2, len(timed) // 5)
        first, last = statistics.median(s for _, s in timed[:fifth]), statistics.median(s for _, s in timed[-fifth:])
        out.update(first_audio_p50_first_fifth_s=round(first, 3), first_audio_p50_last_fifth_s=round(last, 3),
                   latency_ratio_last_over_first=round(last / first, 3))
    settled = [(t, m) for t, m in memory if t >= 60]
    if len(settled) >= 4:
        xs, ys = [t for t, _ in settled], [m for _, m in settled]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
        out.update(rss_mib_start=ys[0], rss_mib_end=ys[-1], rss_mib_peak=max(ys),
                   rss_mib_per_10_min=round(slope * 600, 2))
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    timed = [(t["at_s"] / 60, t["seconds"]) for t in result["turns"] if "seconds" in t]
    top.plot([x for x, _ in timed], [y for _, y in timed], ".", markersize=4)
    top.set(ylabel="end of speech → first audio (s)", title=f"Soak: {result['engine']} engine, "
            f"{len(result['connections'])} connections (goAway every {result['lifetime_s']} s)")
    bottom.plot([t / 60 for t, _ in result["memory_mib"]], [m for _, m in result["memory_mib"]], "-")
    bottom.set(xlabel="minutes", ylabel="server RSS (MiB)")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--engine", choices=("embedded", "scripted"), default="embedded")
    parser.add_argument("--lifetime-s", type=int, default=300)
    parser.add_argument("--prompt-cache-mib", type=int, default=None,
                        help="[llm.default] prompt_cache_mib for the embedded LLM (default: the server's)")
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "soak.png")
    args = parser.parse_args()
    args.data_dir = args.data_dir.expanduser()
    write_result_and_plot("soak", asyncio.run(soak(args)), args.out, plot, args.plot)


if __name__ == "__main__":
    main()
