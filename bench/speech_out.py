"""Speech out: time from the end of a text turn to the first audio byte, and synthesis speed.

Through a real `openlive serve` on its default embedded models (Qwen2.5-Coder-1.5B + the
default voice, Piper "joe"), with the google-genai SDK as the client, and for an eSpeak NG voice
for comparison; then each voice engine's real-time factor measured directly, in the same run.

    .venv/bin/python bench/speech_out.py [--samples 20] [--data-dir ~/.openlive]

Target (issue 3): first audio under 600 ms at p50 with the default models on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from common import machine, progress, start_openlive, stop, summary_ms, write_result

QUESTIONS = [
    "What is the capital of France?", "How many days are in a week?", "What colour is the sky on a clear day?",
    "Name a large animal that lives in Africa.", "What do bees make?", "What is two plus three?",
    "Which planet do we live on?", "What is the opposite of hot?", "What do you call a baby cat?",
    "What season comes after winter?", "What language is spoken in Spain?", "How many legs does a spider have?",
]
SENTENCES = [
    "Sure, I can help you with that.",
    "The capital of France is Paris, a city known for its museums and its food.",
    "It will be sunny tomorrow morning, with a light breeze from the west and clouds in the afternoon.",
]


async def first_audio(base: str, voice: str, question: str) -> tuple[float, float]:
    """Seconds from sending the turn to the first audio byte, and to the turn's end."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"], temperature=0, max_output_tokens=48,
        speech_config=types.SpeechConfig(voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=voice))))
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        start = time.perf_counter()
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=question)]))
        first = None
        async for message in session.receive():
            if first is None and message.data:
                first = time.perf_counter() - start
        total = time.perf_counter() - start
    if first is None:
        raise RuntimeError(f"no audio for {question!r}")
    return first, total


def synthesis_rtf(voice_name: str) -> dict[str, float]:
    """Real-time factor (compute seconds per audio second) of one configured voice, measured directly."""
    from openlive.config import load_config
    from openlive.engines.tts.registry import build_voice

    voice = build_voice(load_config().voices[voice_name])
    voice.load()
    list(voice.synthesize("Warm up."))
    compute = audio = 0.0
    first_chunk: list[float] = []
    for sentence in SENTENCES * 3:
        start = time.perf_counter()
        chunks = []
        for chunk in voice.synthesize(sentence):
            if not chunks:
                first_chunk.append(time.perf_counter() - start)
            chunks.append(chunk)
        compute += time.perf_counter() - start
        audio += sum(len(c) for c in chunks) / 2 / voice.sample_rate
    return {"rtf": round(compute / audio, 4), "first_chunk": summary_ms(first_chunk), "audio_s": round(audio, 2)}


async def run(samples: int, data_dir: Path) -> dict:
    process, base = start_openlive(data_dir)
    results: dict[str, dict] = {}
    try:
        for voice in ("Puck", "Kore"):
            await first_audio(base, voice, "Hello.")  # warm: model pages, voice, prompt cache of the system prompt
            firsts, totals = [], []
            for i in range(samples):
                first, total = await first_audio(base, voice, QUESTIONS[i % len(QUESTIONS)])
                firsts.append(first)
                totals.append(total)
                progress(f"{voice}: sample {i + 1}/{samples}: first audio {first * 1000:.0f} ms")
            results[voice] = {"first_audio": summary_ms(firsts), "turn_total": summary_ms(totals)}
    finally:
        stop(process)
    rtf = {"Puck (piper joe)": synthesis_rtf("Puck"), "Kore (espeak-ng)": synthesis_rtf("Kore")}
    return {
        "benchmark": "speech_out",
        "models": "embedded defaults: qwen2.5-coder-1.5b (xllamacpp) + Piper joe / eSpeak NG",
        "machine": machine(),
        "first_audio_after_text_turn": results,
        "synthesis": rtf,
        "target_first_audio_p50_ms": 600,
        "default_voice_meets_target": results["Puck"]["first_audio"]["p50_ms"] < 600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    write_result("speech_out", asyncio.run(run(args.samples, args.data_dir.expanduser())), args.out)


if __name__ == "__main__":
    main()
