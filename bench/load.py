"""Load: how many sessions one server holds, and where it breaks (issue 13).

    .venv/bin/pip install -e '.[bench]'     # matplotlib, for the plot
    .venv/bin/python bench/load.py [--engines scripted,embedded[,embedded-0.5b]] [--idle 100]
        [--talking 1,2,4,6] [--turns 2] [--idle-seconds 30] [--out FILE] [--plot FILE]

Each engine gets a fresh server (`scripted`: the echo LLM, so the figures are the server's own
ceiling: audio in, VAD, end of turn, recognition and synthesis, without a model thinking;
`embedded`: the default models; `embedded-0.5b`: the same with the smaller LLM). Against it,
every client is the unmodified google-genai SDK:

1. idle: N sessions connected in audio mode, each streaming a quiet room's noise at real-time
   pace (100 ms chunks), so the VAD runs for all of them. Figures: the server's CPU per session
   (% of one core, over the baseline with none), memory per session, /healthz latency.
2. talking: for each N, N sessions at once (starts spread over 2 s), each asking `turns` spoken
   questions (Piper, real-time pace, 40 ms chunks). Figures per N: end of speech → first reply
   audio (p50/p90), late audio (the gaps a listener playing each reply as it arrives would
   hear), failed turns, the server's CPU, /healthz latency.
3. flood: one connection sends tiny audio frames as fast as it can; /healthz latency beside it.

Beside every phase: /healthz latency, probed every 200 ms from a separate process, and the
server's own event-loop lag (its `openlive_event_loop_lag_seconds` histogram, read from /metrics
before and after), which tells a blocked loop apart from a busy machine.

The knee is the largest N whose p90 first audio stays under 3 s (the issue's target: at least 4).
Writes JSON (bench/results/load.json) and a PNG of latency against load (bench/results/load.png).
The server's CPU and memory are its whole process tree's, read from /proc. The bench's own
clients share the same 2 cores: their CPU is reported beside the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (RESULTS, machine, percentile, progress, pyplot, scrape_metrics, start_openlive, stop,
                    summary_ms, write_result_and_plot)
from conversation import LIVE_MODEL, Mic, cancel_all, clean_error, v2v_clips
from speech_in import last_voiced_sample

TALK_TARGET_P90_S = 3.0
IDLE_CHUNK_S = 0.1
OUTPUT_BYTES_PER_S = 48000  # 24 kHz, 16-bit
TICK = os.sysconf("SC_CLK_TCK")
CONFIGS = {
    "scripted": '[llm.default]\nengine = "scripted"\n\n[limits]\nsessions_per_key = 0\n',
    "embedded": "[limits]\nsessions_per_key = 0\n",
    # the smaller packaged LLM, for machines where the default's knee is too low
    "embedded-0.5b": '[llm.default]\nmodel = "qwen2.5-coder-0.5b"\n\n[limits]\nsessions_per_key = 0\n',
}


# ---------------------------------------------------------------------------------------------
# The server process tree, from /proc.

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


class Usage:
    """CPU (% of one core) of the server's tree and of this process over a window."""

    def __init__(self, pid: int) -> None:
        self.pids = tree(pid)
        self.start = (time.monotonic(), cpu_seconds(self.pids), time.process_time())

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.start[0]
        return {"server_cpu_pct": round(100 * (cpu_seconds(self.pids) - self.start[1]) / wall, 1),
                "bench_client_cpu_pct": round(100 * (time.process_time() - self.start[2]) / wall, 1),
                "window_s": round(wall, 1)}


# The probe runs in its own process: in this one, the SDK clients' event loop (thousands of frames
# a second) would delay the probe's own requests and be counted as the server's latency.
_PROBE = """
import sys, time, httpx
base, cafile = sys.argv[1], sys.argv[2]
with httpx.Client(verify=cafile, timeout=30) as http:
    while True:
        started = time.monotonic()
        try:
            ok = http.get(base + "/healthz").status_code == 200
        except httpx.HTTPError:
            ok = False
        print(f"{time.monotonic() - started:.6f}" if ok else "fail", flush=True)
        time.sleep(0.2)
"""


class HealthProbe:
    """GET /healthz every 200 ms from a separate process while it runs; the latencies."""

    def __init__(self, base: str, cafile: str) -> None:
        self.base, self.cafile = base, cafile
        self.latencies: list[float] = []
        self.failures = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> "HealthProbe":
        self._process = subprocess.Popen([sys.executable, "-c", _PROBE, self.base, self.cafile],
                                         stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None
        self._process.terminate()
        out, _ = self._process.communicate(timeout=30)
        for line in out.split():
            if line == "fail":
                self.failures += 1
            else:
                self.latencies.append(float(line))

    def report(self) -> dict[str, Any]:
        if not self.latencies:
            return {"n": 0, "failures": self.failures}
        return {"p50_ms": round(percentile(self.latencies, 0.5) * 1000, 1),
                "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 1),
                "max_ms": round(max(self.latencies) * 1000, 1), "n": len(self.latencies), "failures": self.failures}


class LoopLag:
    """The server's own event-loop lag over a window, from its /metrics histogram (sampled every 250 ms).

    Read asynchronously: a blocking read here would stall every client of this process, whose
    catch-up burst would then be measured as the server's lag."""

    def __init__(self, base: str, cafile: str) -> None:
        self.base, self.cafile = base, cafile
        self.start: dict[float, float] = {}

    async def _buckets(self) -> dict[float, float]:
        return {float(s.labels["le"]): s.value for s in await scrape_metrics(self.base, self.cafile)
                if s.name == "openlive_event_loop_lag_seconds_bucket"}

    async def __aenter__(self) -> "LoopLag":
        self.start = await self._buckets()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.end = await self._buckets()

    def report(self) -> dict[str, Any]:
        cumulative = sorted((le, self.end[le] - self.start.get(le, 0.0)) for le in self.end)
        count = cumulative[-1][1] if cumulative else 0.0
        if not count:
            return {"samples": 0}
        under = dict(cumulative)
        p99 = next(le for le, n in cumulative if n >= 0.99 * count)
        worst = next(le for le, n in cumulative if n >= count)
        return {"samples": int(count), "p99_under_s": p99, "max_under_s": worst,
                "over_100ms": int(count - under.get(0.1, 0.0))}


def client(base: str) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))


# ---------------------------------------------------------------------------------------------
# 1. Idle sessions.

async def idle_session(base: str, hold: asyncio.Event, ready: asyncio.Queue[str]) -> None:
    from google.genai import types

    noise = (np.random.default_rng(0).normal(0, 30, int(16000 * IDLE_CHUNK_S))).astype(np.int16).tobytes()
    config = types.LiveConnectConfig(response_modalities=["AUDIO"])
    try:
        async with client(base).aio.live.connect(model=LIVE_MODEL, config=config) as session:
            ready.put_nowait("ok")
            start, n = time.monotonic(), 0
            while not hold.is_set():
                await session.send_realtime_input(audio=types.Blob(data=noise, mime_type="audio/pcm;rate=16000"))
                n += 1
                await asyncio.sleep(max(0.0, start + n * IDLE_CHUNK_S - time.monotonic()))
    except Exception as exc:  # noqa: BLE001
        ready.put_nowait(clean_error(exc))


async def idle_phase(base: str, pid: int, cafile: str, n: int, seconds: float) -> dict[str, Any]:
    pids = tree(pid)
    baseline = Usage(pid)
    await asyncio.sleep(min(10.0, seconds))
    result: dict[str, Any] = {"sessions": n, "baseline": baseline.stop(), "rss_mib_before": rss_mib(pids)}
    hold, ready = asyncio.Event(), asyncio.Queue()
    tasks = []
    for i in range(n):  # open them at a steady pace, as clients arrive
        tasks.append(asyncio.create_task(idle_session(base, hold, ready)))
        await asyncio.sleep(0.05)
    outcomes = [await asyncio.wait_for(ready.get(), 120) for _ in range(n)]
    result["connected"] = outcomes.count("ok")
    result["errors"] = sorted({o for o in outcomes if o != "ok"})[:5]
    progress(f"idle: {result['connected']}/{n} connected; measuring {seconds:.0f} s          ")
    await asyncio.sleep(3)  # settle
    usage = Usage(pid)
    async with LoopLag(base, cafile) as lag:
        with HealthProbe(base, cafile) as probe:
            await asyncio.sleep(seconds)
    result["held"] = usage.stop()
    result["event_loop_lag"] = lag.report()
    result["healthz"] = probe.report()
    result["rss_mib_after"] = rss_mib(pids)
    connected = max(1, result["connected"])
    result["server_cpu_pct_per_session"] = round(
        (result["held"]["server_cpu_pct"] - result["baseline"]["server_cpu_pct"]) / connected, 3)
    result["rss_mib_per_session"] = round((result["rss_mib_after"] - result["rss_mib_before"]) / connected, 2)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


# ---------------------------------------------------------------------------------------------
# 2. Sessions talking at once.

async def talker(base: str, clips: list[tuple[str, bytes]], first: int, turns: int, delay: float,
                 timeout: float) -> list[dict[str, Any]]:
    from google.genai import types

    config = types.LiveConnectConfig(response_modalities=["AUDIO"], max_output_tokens=24, temperature=0,
                                     system_instruction="Answer in one short sentence.")
    rows: list[dict[str, Any]] = []
    await asyncio.sleep(delay)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with client(base).aio.live.connect(model=LIVE_MODEL, config=config) as session:
            mic = Mic(session)
            tasks.append(asyncio.create_task(mic.run()))
            for turn in range(turns):
                question, pcm = clips[(first + turn) % len(clips)]
                row: dict[str, Any] = {"turn": turn + 1, "question": question}
                rows.append(row)
                _, spoken = mic.say(pcm[:last_voiced_sample(pcm) * 2])
                async with asyncio.timeout(timeout):
                    ended = await spoken
                    heard_at: float | None = None
                    playhead = late = audio = 0.0
                    async for message in session.receive():  # to this turn's turnComplete
                        content = message.server_content
                        for part in (content.model_turn.parts or []) if content and content.model_turn else []:
                            if part.inline_data and part.inline_data.data:
                                now = time.monotonic()
                                if heard_at is None:
                                    heard_at = playhead = now
                                late += max(0.0, now - playhead)  # the listener waited for this chunk
                                playhead = max(playhead, now) + len(part.inline_data.data) / OUTPUT_BYTES_PER_S
                                audio += len(part.inline_data.data) / OUTPUT_BYTES_PER_S
                if heard_at is None:
                    row["error"] = "no audio"
                    continue
                row.update(seconds=heard_at - ended, late_audio_s=round(late, 3), audio_s=round(audio, 2))
            await cancel_all(tasks)
    except Exception as exc:  # noqa: BLE001
        if not rows or "seconds" in rows[-1]:
            rows.append({"error": clean_error(exc)})
        else:
            rows[-1]["error"] = clean_error(exc)
    finally:
        await cancel_all(tasks)
    return rows


async def talking_phase(base: str, pid: int, cafile: str, n: int, clips: list[tuple[str, bytes]],
                        turns: int, timeout: float) -> dict[str, Any]:
    usage = Usage(pid)
    async with LoopLag(base, cafile) as lag:
        with HealthProbe(base, cafile) as probe:
            sessions = await asyncio.gather(*(talker(base, clips, i, turns, 2.0 * i / n, timeout) for i in range(n)))
    rows = [r for rows in sessions for r in rows]
    latencies = [r["seconds"] for r in rows if "seconds" in r]
    late = [r["late_audio_s"] for r in rows if "late_audio_s" in r]
    result: dict[str, Any] = {
        "sessions": n, "turns": len(rows), "failed_turns": sum(1 for r in rows if "seconds" not in r),
        "first_audio": summary_ms(latencies) if latencies else None,
        "late_audio_s": {"p50": round(percentile(late, 0.5), 3), "max": round(max(late), 3),
                         "turns_with_gaps": sum(1 for x in late if x > 0.05)} if late else None,
        **usage.stop(), "healthz": probe.report(), "event_loop_lag": lag.report(), "rss_mib": rss_mib(tree(pid)),
        "errors": sorted({r["error"] for r in rows if "error" in r})[:5],
    }
    return result


# ---------------------------------------------------------------------------------------------
# 3. One connection flooding tiny frames.

async def flood_phase(base: str, cafile: str, seconds: float) -> dict[str, Any]:
    """Tiny frames as fast as the SDK sends them for `seconds`, then wait (up to 30 s) for anything that ends it
    (nothing should: a flood is slowed by backpressure, not closed)."""
    from google.genai import types

    sent, ended = 0, "still open"
    started = time.monotonic()
    async with LoopLag(base, cafile) as lag:
        with HealthProbe(base, cafile) as probe:
            try:
                async with client(base).aio.live.connect(model=LIVE_MODEL, config=types.LiveConnectConfig(
                        response_modalities=["AUDIO"])) as session:
                    end = started + seconds
                    tiny = types.Blob(data=b"\0\0\0\0", mime_type="audio/pcm;rate=16000")
                    while time.monotonic() < end:
                        await session.send_realtime_input(audio=tiny)
                        sent += 1
                        if sent % 200 == 0:
                            await asyncio.sleep(0)  # let the other tasks of this process run
                    async with asyncio.timeout(30):
                        async for _ in session.receive():
                            pass
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - how the server ended the flood
                ended = f"{clean_error(exc)} after {time.monotonic() - started:.1f} s"
    return {"seconds": seconds, "frames_sent": sent, "ended": ended, "healthz": probe.report(),
            "event_loop_lag": lag.report()}


# ---------------------------------------------------------------------------------------------

async def run_engine(engine: str, args: argparse.Namespace, clips: list[tuple[str, bytes]]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(CONFIGS[engine])
    process, base = start_openlive(args.data_dir, Path(config.name))
    cafile = os.environ["SSL_CERT_FILE"]
    result: dict[str, Any] = {"engine": engine, "load_average_start": machine()["load_average"]}
    try:
        await talker(base, clips, 0, 1, 0, args.timeout)  # warm-up, unmeasured
        if args.idle:
            result["idle"] = await idle_phase(base, process.pid, cafile, args.idle, args.idle_seconds)
            idle = result["idle"]
            progress(f"{engine} idle: {idle['connected']} sessions, {idle['server_cpu_pct_per_session']}% of a core "
                     f"each, healthz p99 {idle['healthz'].get('p99_ms')} ms, loop lag p99 < "
                     f"{idle['event_loop_lag'].get('p99_under_s')} s          \n")
        result["talking"] = []
        for n in args.talking:
            level = await talking_phase(base, process.pid, cafile, n, clips, args.turns, args.timeout)
            result["talking"].append(level)
            fa = level["first_audio"] or {}
            progress(f"{engine} talking {n}: first audio p50 {fa.get('p50_ms')} p90 {fa.get('p90_ms')} ms, "
                     f"failed {level['failed_turns']}, server CPU {level['server_cpu_pct']}%          \n")
        if args.flood_seconds:
            result["flood"] = await flood_phase(base, cafile, args.flood_seconds)
    finally:
        stop(process)
        os.unlink(config.name)
    ok = [lv["sessions"] for lv in result["talking"]
          if lv["first_audio"] and not lv["failed_turns"] and lv["first_audio"]["p90_ms"] < TALK_TARGET_P90_S * 1000]
    result["knee_sessions_talking"] = max(ok) if ok else 0
    result["load_average_end"] = machine()["load_average"]
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for engine, data in result["engines"].items():
        levels = [lv for lv in data["talking"] if lv["first_audio"]]
        n = [lv["sessions"] for lv in levels]
        left.plot(n, [lv["first_audio"]["p50_ms"] / 1000 for lv in levels], "o-", label=f"{engine} p50")
        left.plot(n, [lv["first_audio"]["p90_ms"] / 1000 for lv in levels], "s--", label=f"{engine} p90")
        right.plot(n, [lv["healthz"].get("p99_ms", float("nan")) for lv in levels], "o-", label=f"{engine} /healthz p99")
    left.axhline(TALK_TARGET_P90_S, color="grey", linestyle=":", label="target p90")
    left.set(xlabel="sessions talking at once", ylabel="end of speech → first audio (s)",
             title="Voice-to-voice latency against load")
    right.set(xlabel="sessions talking at once", ylabel="ms", title="/healthz latency against load")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    load = result["machine"]["load_average"]
    fig.suptitle(f"openlive on {result['machine']['cpus']} cores (load average at start {load[0]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    clips = v2v_clips()
    result: dict[str, Any] = {"benchmark": "load", "machine": machine(), "turns_per_session": args.turns,
                              "targets": {"idle_sessions": 100, "talking_sessions_p90_under_3s": 4,
                                          "server_cpu_pct_per_idle_session": 1.0},
                              "engines": {}}
    for engine in args.engines:
        result["engines"][engine] = await run_engine(engine, args, clips)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["scripted", "embedded"])
    parser.add_argument("--idle", type=int, default=100, help="idle sessions to hold (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--talking", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 6])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="0: skip")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "load.png")
    args = parser.parse_args()
    args.data_dir = args.data_dir.expanduser()
    unknown = set(args.engines) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    write_result_and_plot("load", asyncio.run(main_async(args)), args.out, plot, args.plot)


if __name__ == "__main__":
    main()
