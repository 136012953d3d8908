"""Video beside speech: voice-to-voice latency with frames streamed at 2 a second, against the
same spoken turns without video, on one server (issue 12, acceptance 4).

One `openlive serve` (embedded default, vision on) and the unmodified google-genai SDK. Sessions
alternate between "audio" (spoken questions only) and "video" (the same questions while a camera
streams JPEG frames of changing signs at `--fps`, 2 by default, so that every frame is new and
OCR runs on each). Each session asks the v2v questions of bench/conversation.py in a row, the
microphone streaming at real-time pace throughout. Reported per condition: end of speech → first
reply audio (p50, p90), and the longest gap between two reply audio messages of one turn (an
audio stall shows there first); then the video/audio p50 ratio (target ≤ 1.15) and the frames
the server dropped (from /metrics).

    .venv/bin/python bench/vision.py [--seconds 60] [--fps 2] [--scene changing|steady|camera] [--hold]
        [--rounds N] [--out FILE] [--data-dir ~/.openlive]

`--hold` makes each session one long call of `--seconds` (the questions asked again and again,
the camera on throughout, the sliding window at work), as issue 12 asks: "frames streamed at 2
per second for 60 s beside real-time speech".
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from common import machine, progress, start_openlive, stop, write_result
from conversation import (LIVE_MODEL, V2V_MAX_TOKENS, V2V_TURNS, Inbox, Mic, cancel_all, clean_error, load,
                          v2v_clips)
from speech_in import last_voiced_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests.support
from tests.support.images import encode, sign  # noqa: E402

TARGET_RATIO = 1.15


class AudioInbox(Inbox):
    """Inbox that also keeps the arrival time of every reply audio message."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_times: list[float] = []

    def take(self, message: Any) -> None:
        content = message.server_content
        parts = content.model_turn.parts if content and content.model_turn and content.model_turn.parts else []
        if any(p.inline_data and p.inline_data.data for p in parts):
            self.audio_times.append(time.monotonic())
        super().take(message)


def frames(count: int, scene: str = "changing") -> list[bytes]:
    """changing: signs that differ frame to frame, so the vision engine reads every one and each is
    a new note (the worst case); steady: one sign held in front of the camera, frame for frame the
    same; camera: that sign as a real camera sends it, each frame a little different (sensor
    noise, a hand's jitter of a few pixels, the light flickering a few percent)."""
    if scene == "steady":
        return [encode(sign("GATE 7"))] * count
    if scene == "camera":
        rng = np.random.default_rng(7)
        base = np.asarray(sign("GATE 7"), dtype=np.float32)
        shots = []
        for _ in range(count):
            dy, dx = rng.integers(-3, 4, size=2)
            shot = np.roll(base, (int(dy), int(dx)), axis=(0, 1)) * rng.uniform(0.97, 1.03)
            shot += rng.normal(0, 4, size=shot.shape)
            shots.append(encode(Image.fromarray(np.clip(shot, 0, 255).astype(np.uint8))))
        return shots
    return [encode(sign(f"GATE {n % 50}")) for n in range(count)]


async def camera(session: Any, pictures: list[bytes], fps: float) -> None:
    from google.genai import types

    n = 0
    started = time.monotonic()
    while True:
        await session.send_realtime_input(video=types.Blob(data=pictures[n % len(pictures)], mime_type="image/jpeg"))
        n += 1
        await asyncio.sleep(max(0.0, started + n / fps - time.monotonic()))


async def session_turns(base: str, clips: list[tuple[str, bytes]], pictures: list[bytes] | None, fps: float,
                        timeout: float, hold_s: float = 0.0) -> list[dict[str, Any]]:
    """One session asking `clips` in turn (again and again until `hold_s` have passed, if given)."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    # A sliding window, as Google advises for long audio and video sessions: frames count 258
    # tokens each, and 2 a second fill a small local model's window in under 15 s.
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, max_output_tokens=V2V_MAX_TOKENS,
                                     system_instruction="Answer in one short sentence.",
                                     context_window_compression=types.ContextWindowCompressionConfig(
                                         sliding_window=types.SlidingWindow()))
    rows: list[dict[str, Any]] = []
    inbox = AudioInbox()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            mic = Mic(session)
            tasks = [asyncio.create_task(inbox.read(session)), asyncio.create_task(mic.run())]
            if pictures:
                tasks.append(asyncio.create_task(camera(session, pictures, fps)))
                await asyncio.sleep(2.0)  # the camera is on before the first question
            opened = time.monotonic()
            turns = [clips[n % len(clips)] for n in range(len(clips) * 1000)]
            for turn, (question, pcm) in enumerate(turns):
                if turn >= len(clips) and time.monotonic() - opened >= hold_s:
                    break
                row: dict[str, Any] = {"turn": turn + 1, "question": question}
                rows.append(row)
                mark = len(inbox.events)
                _, spoken = mic.say(pcm[:last_voiced_sample(pcm) * 2])
                speech_sent = await spoken
                try:
                    first = await inbox.wait(partial(inbox.first_of, ("first_audio", "closed"), mark), timeout)
                    if first.kind == "closed":
                        row["error"] = first.text
                        break
                    row["seconds"] = first.time - speech_sent
                    at = inbox.events.index(first)
                    done = await inbox.wait(partial(inbox.first_of, ("turn_complete", "closed"), at), timeout)
                    arrivals = [t for t in inbox.audio_times if first.time <= t <= done.time]
                    row["max_gap_ms"] = round(max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0) * 1000)
                except TimeoutError:
                    row["error"] = "timeout"
                    break
            await cancel_all(tasks)
    except Exception as exc:  # noqa: BLE001
        if rows and "seconds" not in rows[-1]:
            rows[-1]["error"] = clean_error(exc)
    finally:
        await cancel_all(tasks)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sorted(r["seconds"] for r in rows if "seconds" in r)
    gaps = [r["max_gap_ms"] for r in rows if "max_gap_ms" in r]
    return {
        "turns": len(seconds), "failed": sum(1 for r in rows if "seconds" not in r),
        "p50_ms": round(statistics.median(seconds) * 1000) if seconds else None,
        "p90_ms": round(seconds[int(0.9 * (len(seconds) - 1))] * 1000) if seconds else None,
        "max_audio_gap_ms": max(gaps) if gaps else None,
    }


def frames_dropped(base: str) -> float | None:
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = re.search(r'^openlive_frames_dropped_total\{kind="video"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def run(seconds: float, fps: float, data_dir: Path, timeout: float, scene: str = "changing",
              hold: bool = False, rounds: int = 1) -> dict[str, Any]:
    clips = v2v_clips()[:V2V_TURNS]
    pictures = frames(50, scene)
    result: dict[str, Any] = {"benchmark": "vision", "machine": machine(), "fps": fps, "seconds": seconds,
                              "scene": scene, "hold": hold, "rounds": rounds, "load_average_start": load()}
    rows: dict[str, list[dict[str, Any]]] = {"audio": [], "video": []}
    process = None
    try:
        process, base = start_openlive(data_dir)
        await session_turns(base, clips[:1], None, fps, timeout)  # warm-up, unmeasured
        streamed = 0.0
        k = 0
        while streamed < seconds * rounds:
            for kind in ("audio", "video") if k % 2 == 0 else ("video", "audio"):  # alternate who goes first
                started = time.monotonic()
                got = await session_turns(base, clips, pictures if kind == "video" else None, fps, timeout,
                                          hold_s=seconds if hold else 0.0)
                rows[kind] += got
                if kind == "video":
                    streamed += time.monotonic() - started
                progress(f"vision: {kind} session {k + 1}: " + " ".join(
                    f"{r['seconds'] * 1000:.0f}" if "seconds" in r else r.get("error", "?") for r in got) + "      ")
            k += 1
        result["frames_dropped"] = frames_dropped(base)
        result["video_streamed_s"] = round(streamed, 1)
    except SystemExit as exc:
        result["error"] = str(exc)
    finally:
        if process is not None:
            stop(process)
    result["audio"], result["video"] = summary(rows["audio"]), summary(rows["video"])
    a, v = result["audio"]["p50_ms"], result["video"]["p50_ms"]
    result["video_over_audio_p50"] = round(v / a, 3) if a and v else None
    result["target_ratio"] = TARGET_RATIO
    result["turns"] = rows
    result["load_average_end"] = load()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of video streamed in all")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--scene", choices=("changing", "steady", "camera"), default="changing",
                        help="a new sign every frame (worst case), one sign held still, or that sign as a real "
                             "camera sends it (noise, jitter, flicker)")
    parser.add_argument("--hold", action="store_true",
                        help="each session lasts --seconds (its questions asked again and again), as one long call")
    parser.add_argument("--rounds", type=int, default=1, help="--seconds of video this many times over")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.fps, args.data_dir.expanduser(), args.timeout, args.scene,
                             args.hold, args.rounds))
    write_result("vision", result, args.out)


if __name__ == "__main__":
    main()
