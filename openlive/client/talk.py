"""`openlive talk`: a conversation in the terminal with any Live API server.

Three ways to talk:

- voice (default): microphone and speaker through `AudioConversation`;
- `--text`: type a line, read the streamed reply;
- headless, `--input question.wav --output reply.wav`: the WAV goes up as realtime audio (at
  real-time pace, or as fast as possible with `--fast`), then silence until the reply starts;
  the reply turn's audio is written as a 24 kHz 16-bit mono WAV and both transcripts printed.

Every mode prints tool activity and each turn's latency: from the end of the user's input to the
first byte of the reply. The options are defined in `openlive.cli` (`openlive talk --help`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, TextIO

import numpy as np

from .audio import AudioUnavailable, Resampler
from .errors import LiveError
from .model import LiveModel
from .session import LiveSession
from .tls import client_ssl_context
from .wire import DEFAULT_OUTPUT_RATE, LiveMessage

DEFAULT_BASE_URL = "https://127.0.0.1:8443"
SEND_RATE = 16000
CHUNK_MS = 40


@dataclass
class TurnClock:
    """Latency of one turn: end of the user's input to the first byte of the reply."""

    input_ended: float | None = None
    first_reply: float | None = None

    def user_done(self) -> None:
        self.input_ended = time.monotonic()
        self.first_reply = None

    def reply_byte(self) -> None:
        if self.first_reply is None:
            self.first_reply = time.monotonic()

    @property
    def latency_ms(self) -> float | None:
        if self.input_ended is None or self.first_reply is None:
            return None
        return max(0.0, (self.first_reply - self.input_ended) * 1000)


def _config(args: argparse.Namespace, modality: str) -> dict[str, Any]:
    config: dict[str, Any] = {"response_modalities": [modality], "session_resumption": {}}
    if modality == "AUDIO":
        config["input_audio_transcription"] = {}
        config["output_audio_transcription"] = {}
    speech: dict[str, Any] = {}
    if args.voice:
        speech["voice_config"] = {"prebuilt_voice_config": {"voice_name": args.voice}}
    if args.language:
        speech["language_code"] = args.language
    if speech:
        config["speech_config"] = speech
    if args.system:
        config["system_instruction"] = args.system
    tools: list[dict[str, Any]] = []
    if args.code_execution:
        tools.append({"code_execution": {}})
    if args.search:
        tools.append({"google_search": {}})
    if tools:
        config["tools"] = tools
    return config


def _model(args: argparse.Namespace, modality: str) -> LiveModel:
    base_url = args.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
    api_key = args.api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or "anything"
    ssl = client_ssl_context(base_url, args.data_dir, verify=not args.insecure)
    return LiveModel(args.model, _config(args, modality), base_url=base_url, api_key=api_key,
                     api_version=args.api_version, vertex=args.vertex, ssl=ssl)


async def _answer_tools(session: LiveSession, message: LiveMessage, out: TextIO) -> None:
    """Show tool activity; function calls get an error reply (talk runs no functions of its own)."""
    for part in message.parts:
        if "executableCode" in part:
            print(f"tool: run Python\n{part['executableCode'].get('code', '').rstrip()}", file=out, flush=True)
        if "codeExecutionResult" in part:
            result = part["codeExecutionResult"]
            print(f"tool: {result.get('outcome', '')}: {str(result.get('output', '')).rstrip()}", file=out, flush=True)
    if message.grounding and message.grounding.get("webSearchQueries"):
        print(f"tool: searched {', '.join(message.grounding['webSearchQueries'])}", file=out, flush=True)
    if message.tool_call:
        for call in message.tool_call:
            print(f"tool: {call.name}({json.dumps(call.args)})", file=out, flush=True)
        await session.send_tool_response([c.response({"error": f"openlive talk has no function {c.name!r}"})
                                          for c in message.tool_call])
    if message.tool_call_cancellation:
        print(f"tool: cancelled {', '.join(message.tool_call_cancellation)}", file=out, flush=True)


def _latency_line(clock: TurnClock) -> str:
    latency = clock.latency_ms
    return f"latency: {latency:.0f} ms" if latency is not None else "latency: n/a"


# ---------------------------------------------------------------------------------- frames

FRAME_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
FRAME_INTERVAL_S = 1.0  # the Live API takes about one frame a second


def read_frames(path: Path | None) -> list[tuple[bytes, str]]:
    """--image: one picture, or a folder of them in name order, as (bytes, mime type)."""
    if path is None:
        return []
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_TYPES) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no .jpg, .png or .webp pictures in {path}")
    for file in files:
        if file.suffix.lower() not in FRAME_TYPES:
            raise ValueError(f"{file}: a frame must be a .jpg, .png or .webp picture")
    return [(file.read_bytes(), FRAME_TYPES[file.suffix.lower()]) for file in files]


async def show_frames(session: LiveSession, frames: list[tuple[bytes, str]]) -> None:
    """Send the frames as a camera would: one a second."""
    for index, (data, mime) in enumerate(frames):
        if index:
            await asyncio.sleep(FRAME_INTERVAL_S)
        await session.send_video_frame(data, mime)


@contextlib.asynccontextmanager
async def showing(session: LiveSession, frames: list[tuple[bytes, str]]) -> AsyncIterator[None]:
    """Frames sent beside the conversation, stopped when it ends."""
    task = asyncio.create_task(show_frames(session, frames))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ---------------------------------------------------------------------------------- text


async def talk_text(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    interactive = sys.stdin.isatty()
    frames = read_frames(getattr(args, "image", None))
    async with _model(args, "TEXT").connect() as session:
        await show_frames(session, frames[:1])  # the first before the first question; the rest beside it
        async with showing(session, frames[1:]):
            return await _text_turns(session, interactive, out)


async def _text_turns(session: LiveSession, interactive: bool, out: TextIO) -> int:
    while True:
        if interactive:
            print("you: ", end="", file=out, flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return 0
        if not line.strip():
            continue
        clock = TurnClock()
        await session.send_text(line.strip())
        clock.user_done()
        started = False
        async for message in session.receive_turn():
            await _answer_tools(session, message, out)
            if message.text:
                clock.reply_byte()
                if not started:
                    print("model: ", end="", file=out)
                    started = True
                print(message.text, end="", file=out, flush=True)
        if started:
            print(file=out)
        print(f"  ({_latency_line(clock)})", file=out, flush=True)


# ---------------------------------------------------------------------------------- voice


async def talk_voice(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    frames = read_frames(getattr(args, "image", None))
    async with _model(args, "AUDIO").connect() as session, showing(session, frames):
        conversation = await session.start_audio_conversation(echo_gate=not args.no_echo_gate)
        print("Listening: speak (Ctrl-C to stop).", file=sys.stderr, flush=True)
        heard: list[str] = []
        said: list[str] = []
        first_reply: float | None = None
        async for message in session.receive():
            await _answer_tools(session, message, out)
            if message.input_transcription:
                heard.append(message.input_transcription)
            if (message.audio or message.text) and first_reply is None:
                first_reply = time.monotonic()
                if heard:
                    print(f"you: {' '.join(t.strip() for t in heard)}", file=out, flush=True)
                    heard.clear()
            if message.output_transcription:
                said.append(message.output_transcription)
            elif message.text:
                said.append(message.text)
            if message.interrupted:
                print("  (interrupted)", file=out, flush=True)
            if message.turn_complete:
                if said:
                    print(f"model: {''.join(said).strip()}", file=out, flush=True)
                if first_reply is not None and conversation.last_speech_at is not None:
                    print(f"  (latency: {max(0.0, first_reply - conversation.last_speech_at) * 1000:.0f} ms)",
                          file=out, flush=True)
                said.clear()
                first_reply = None
    return 0


# ---------------------------------------------------------------------------------- headless


def read_wav(path: Path) -> bytes:
    """A 16-bit PCM WAV as 16 kHz mono PCM (mixed down and resampled once)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
            rate, channels = wav.getframerate(), wav.getnchannels()
            frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    if channels > 1:
        frames = frames.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return Resampler(rate, SEND_RATE).process(frames, last=True).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = DEFAULT_OUTPUT_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


@dataclass
class _Reply:
    """What came back for the user's spoken turn."""

    heard: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    audio_rate: int = DEFAULT_OUTPUT_RATE
    clock: TurnClock = field(default_factory=TurnClock)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def _collect(session: LiveSession, reply: _Reply, out: TextIO) -> None:
    async for message in session.receive():
        await _answer_tools(session, message, out)
        if message.input_transcription:
            reply.heard.append(message.input_transcription)
        if message.input_transcription_finished:
            # The server heard the turn end (2.x models send pieces while the user speaks: the
            # last one says finished; 3.x send one message that does).
            reply.started.set()
        if message.interrupted:  # a reply to an earlier piece of the input: the real one follows
            reply.said.clear()
            reply.text.clear()
            reply.audio.clear()
        if message.audio:
            reply.clock.reply_byte()
            reply.started.set()
            reply.audio.append(message.audio)
            reply.audio_rate = message.audio_rate or DEFAULT_OUTPUT_RATE
        if message.text:
            reply.clock.reply_byte()
            reply.text.append(message.text)
        if message.output_transcription:
            reply.said.append(message.output_transcription)
        if message.turn_complete and not message.interrupted and (reply.audio or reply.text):
            reply.done.set()
            return


async def talk_headless(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.input is None or args.output is None:
        print("openlive talk: headless mode needs both --input and --output", file=sys.stderr)
        return 2
    pcm = read_wav(args.input)
    frames = read_frames(getattr(args, "image", None))
    reply = _Reply()
    async with _model(args, "AUDIO").connect() as session:
        collector = asyncio.create_task(_collect(session, reply, out))
        try:
            await show_frames(session, frames)  # what the question is about comes before it
            await _say(session, pcm, reply, fast=args.fast)
            await asyncio.wait_for(asyncio.shield(collector), args.timeout)
        except TimeoutError:
            print(f"openlive talk: no reply within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        finally:
            if not collector.done():
                collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
        if collector.exception() is not None:
            raise collector.exception()  # type: ignore[misc]
    audio = b"".join(reply.audio)
    if reply.audio_rate != DEFAULT_OUTPUT_RATE and audio:
        samples = Resampler(reply.audio_rate, DEFAULT_OUTPUT_RATE).process(np.frombuffer(audio, "<i2"), last=True)
        audio = samples.astype("<i2").tobytes()
    write_wav(args.output, audio)
    print(f"you: {' '.join(t.strip() for t in reply.heard if t.strip())}", file=out)
    print(f"model: {''.join(reply.said or reply.text).strip()}", file=out)
    print(f"{_latency_line(reply.clock)} (end of your input to the first reply byte)", file=out)
    print(f"reply: {len(audio) / 2 / DEFAULT_OUTPUT_RATE:.2f} s of audio in {args.output}", file=out, flush=True)
    return 0


async def _say(session: LiveSession, pcm: bytes, reply: _Reply, *, fast: bool, tail_s: float = 3.0) -> None:
    """Send speech like a microphone would, then silence until the reply starts (or audioStreamEnd)."""
    step = SEND_RATE * 2 * CHUNK_MS // 1000
    started = time.monotonic()
    for offset in range(0, len(pcm), step):
        await session.send_audio(pcm[offset:offset + step], SEND_RATE)
        if not fast:
            await asyncio.sleep(max(0.0, started + (offset + step) / (SEND_RATE * 2) - time.monotonic()))
    reply.clock.user_done()
    silence = b"\0" * step
    if fast:
        for _ in range(int(0.6 * 1000 / CHUNK_MS)):
            await session.send_audio(silence, SEND_RATE)
        await session.send_audio_stream_end()
        return
    quiet_from = time.monotonic()
    while not reply.started.is_set() and time.monotonic() - quiet_from < tail_s:
        await session.send_audio(silence, SEND_RATE)
        try:
            await asyncio.wait_for(reply.started.wait(), CHUNK_MS / 1000)
        except TimeoutError:
            pass
    if not reply.started.is_set():
        await session.send_audio_stream_end()  # the server's detector has not ended the turn: end it


# ---------------------------------------------------------------------------------- entry


def run(args: argparse.Namespace) -> int:
    """Run `openlive talk` with parsed arguments; returns the exit status."""
    if args.input is not None or args.output is not None:
        mode = talk_headless
    elif args.text:
        mode = talk_text
    else:
        mode = talk_voice
    try:
        return asyncio.run(mode(args))
    except LiveError as exc:
        print(f"openlive talk: {exc}", file=sys.stderr)
        return 1
    except AudioUnavailable as exc:
        print(f"openlive talk: {exc}\n  (try --text, or --input/--output with WAV files)", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"openlive talk: {exc}", file=sys.stderr)
        return 2
