"""Talking to a Live API session through a microphone and a speaker.

The device is behind a two-method interface (`AudioDevice`): it calls `on_input(samples)` with
microphone audio and `on_output(n)` for the next `n` samples to play, both from its own threads.
Everything else is plain logic that tests drive with `MemoryAudioDevice`:

- the microphone is resampled once (soxr) to 16 kHz and sent as realtime input;
- replies (24 kHz) are resampled once to the speaker's rate and queued in a `Player`;
- on `interrupted` the player drops what it has not played yet (barge-in stops the voice at once);
- an `EchoGate` keeps the model from hearing (and answering) itself: while the speaker plays, a
  microphone block whose level is not clearly above the echo the playback could cause is sent as
  silence.

The echo gate is not echo cancellation. It knows what was played, not how loud the room returns
it, so it assumes the echo is at most `echo_gain` times the played level and lets through only
what is `margin` times louder than that. Consequences: to barge in over loud speakers you must
speak louder than they play; quiet speech during playback is not heard; and with the speaker
turned up very loud (gain above `echo_gain`) the model may still hear itself. Headphones avoid
all of this. The real sounddevice backend is optional: `pip install openlive[audio]` (and the
PortAudio library, e.g. Debian's `libportaudio2`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soxr

from .errors import LiveError
from .wire import DEFAULT_OUTPUT_RATE, LiveMessage

log = logging.getLogger("openlive.client.audio")

SEND_RATE = 16000  # what the Live API expects from a microphone
InputCallback = Callable[[np.ndarray], None]
OutputCallback = Callable[[int], np.ndarray]


class AudioUnavailable(RuntimeError):
    """No audio I/O here: sounddevice or PortAudio is missing, or there is no microphone or speaker."""


@runtime_checkable
class AudioDevice(Protocol):
    """A microphone and a speaker, 16-bit mono at rates of their choosing."""

    input_rate: int
    output_rate: int

    def start(self, on_input: InputCallback, on_output: OutputCallback) -> None:
        """Begin: call `on_input(int16 samples)` per captured block and `on_output(n)` -> n int16 samples to play."""

    def stop(self) -> None:
        """Stop both directions; no callback runs after this returns."""


def rms(samples: np.ndarray) -> float:
    """Root-mean-square level of int16 samples, 0..1 of full scale."""
    if samples.size == 0:
        return 0.0
    x = samples.astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x)))


class Resampler:
    """Streaming int16 mono resampling with soxr (state carried between blocks, so no clicks)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = None if self.in_rate == self.out_rate else soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="int16", quality="HQ")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
        if self._stream is None:
            return samples
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.int16).reshape(-1)

    def reset(self) -> None:
        """Forget buffered input (after a flush, the next reply must not start with the old one's tail)."""
        if self._stream is not None:
            self._stream.clear()


class Player:
    """Reply audio waiting for the speaker: written by the session, read by the device, flushable."""

    def __init__(self, rate: int, max_seconds: float = 300.0) -> None:
        self.rate = rate
        self.max_samples = int(rate * max_seconds)
        self.flushes = 0
        self.played_samples = 0
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Samples written and not yet played."""
        return self._queued

    @property
    def playing(self) -> bool:
        return self._queued > 0

    def write(self, samples: np.ndarray) -> None:
        samples = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
        if samples.size == 0:
            return
        with self._lock:
            self._chunks.append(samples)
            self._queued += samples.size
            while self._queued > self.max_samples and len(self._chunks) > 1:
                self._queued -= self._chunks.popleft().size

    def read(self, n: int) -> np.ndarray:
        """The next `n` samples to play (silence where nothing is queued)."""
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        with self._lock:
            while filled < n and self._chunks:
                chunk = self._chunks[0]
                take = min(n - filled, chunk.size)
                out[filled:filled + take] = chunk[:take]
                filled += take
                if take == chunk.size:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[take:]
            self._queued -= filled
            self.played_samples += filled
        return out

    def flush(self) -> int:
        """Drop everything not yet played; returns how many samples were dropped."""
        with self._lock:
            dropped = self._queued
            self._chunks.clear()
            self._queued = 0
            self.flushes += 1
        return dropped


class EchoGate:
    """Silence microphone blocks that could be the speaker's own echo.

    `played(samples)` is told what the speaker emits; `filter(samples)` returns a mic block, or
    zeros of the same length when the speaker was audible within the last `tail_s` (device
    latency and room reverberation) and the block is not `margin` times louder than
    `echo_gain` x the loudest recent playback. Thread-safe: the two run on different device threads.
    """

    def __init__(self, *, echo_gain: float = 1.0, margin: float = 2.0, tail_s: float = 0.35,
                 silence_level: float = 0.002, clock: Callable[[], float] = time.monotonic) -> None:
        self.echo_gain = echo_gain
        self.margin = margin
        self.tail_s = tail_s
        self.silence_level = silence_level
        self.clock = clock
        self.gated_blocks = 0
        self.passed_blocks = 0
        self._recent: deque[tuple[float, float]] = deque()  # (time, level) of audible playback
        self._lock = threading.Lock()

    def played(self, samples: np.ndarray) -> None:
        level = rms(samples)
        if level < self.silence_level:
            return
        now = self.clock()
        with self._lock:
            self._recent.append((now, level))
            self._expire(now)

    def expected_echo(self) -> float:
        """The loudest echo the recent playback could cause, 0 when the speaker has been quiet."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            loudest = max((level for _, level in self._recent), default=0.0)
        return loudest * self.echo_gain

    def filter(self, samples: np.ndarray) -> np.ndarray:
        echo = self.expected_echo()
        if echo <= 0.0 or rms(samples) > echo * self.margin:
            self.passed_blocks += 1
            return samples
        self.gated_blocks += 1
        return np.zeros_like(samples)

    def _expire(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self.tail_s:
            self._recent.popleft()


class AudioSession(Protocol):
    """What a conversation needs of a session (`LiveSession` is one): this module sits below it."""

    @property
    def closed(self) -> bool: ...

    def add_listener(self, listener: Callable[[LiveMessage], None]) -> None: ...

    def remove_listener(self, listener: Callable[[LiveMessage], None]) -> None: ...

    async def send_audio(self, pcm: bytes, rate: int = SEND_RATE) -> None: ...


class AudioConversation:
    """Microphone up, speaker down, for one `LiveSession` (see `LiveSession.start_audio_conversation`).

    `echo_gate`: an EchoGate, True for the default one, False for none (headphones).
    `on_interrupted`: called (on the event loop) after playback was flushed for `interrupted`.
    `max_mic_backlog_s`: microphone audio kept while the connection cannot take it (oldest dropped).
    `speech_level`: the level (RMS, 0..1) above which a mic block counts as speech, for `last_speech_at`.
    """

    def __init__(self, session: AudioSession, device: AudioDevice, *, echo_gate: EchoGate | bool = True,
                 on_interrupted: Callable[[], None] | None = None, max_mic_backlog_s: float = 5.0,
                 max_playback_s: float = 300.0, speech_level: float = 0.01) -> None:
        self.session = session
        self.device = device
        self.gate = EchoGate() if echo_gate is True else (echo_gate or None)
        self.on_interrupted = on_interrupted
        self.player = Player(device.output_rate, max_playback_s)
        self.flushes = 0
        self.sent_samples = 0
        self.speech_level = speech_level
        self.last_speech_at: float | None = None  # when the microphone last heard someone (for latency)
        self._mic = Resampler(device.input_rate, SEND_RATE)
        self._speaker: Resampler | None = None
        self._backlog: deque[bytes] = deque()
        self._backlog_limit = int(max_mic_backlog_s * SEND_RATE * 2)
        self._backlog_bytes = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: asyncio.Task[None] | None = None
        self._running = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.session.add_listener(self.on_message)
        self._running = True
        self._sender = asyncio.create_task(self._send_microphone(), name="openlive-mic")
        try:
            self.device.start(self._on_input, self._on_output)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        try:
            self.device.stop()
        finally:
            self.session.remove_listener(self.on_message)
            if self._sender is not None:
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
            self.player.flush()

    # Server side (event loop) ------------------------------------------------

    def on_message(self, message: LiveMessage) -> None:
        """Queue reply audio for the speaker; flush it when the server says the reply was interrupted."""
        if message.interrupted:
            self.flush()
        if message.audio:
            rate = message.audio_rate or DEFAULT_OUTPUT_RATE
            if self._speaker is None or self._speaker.in_rate != rate:
                self._speaker = Resampler(rate, self.device.output_rate)
            self.player.write(self._speaker.process(np.frombuffer(message.audio, dtype="<i2")))

    def flush(self) -> None:
        """Stop talking now: drop queued reply audio."""
        dropped = self.player.flush()
        if self._speaker is not None:
            self._speaker.reset()
        self.flushes += 1
        log.debug("playback flushed (%d samples)", dropped)
        if self.on_interrupted is not None:
            try:
                self.on_interrupted()
            except Exception:
                log.exception("on_interrupted callback failed")

    # Device side (device threads) --------------------------------------------

    def _on_input(self, samples: np.ndarray) -> None:
        if self.gate is not None:
            samples = self.gate.filter(samples)
        if rms(samples) >= self.speech_level:
            self.last_speech_at = time.monotonic()
        pcm = self._mic.process(samples).tobytes()
        if pcm and self._loop is not None and self._running:
            try:
                self._loop.call_soon_threadsafe(self._enqueue, pcm)
            except RuntimeError:  # the loop has closed
                pass

    def _on_output(self, n: int) -> np.ndarray:
        out = self.player.read(n)
        if self.gate is not None:
            self.gate.played(out)
        return out

    # Microphone to server (event loop) ---------------------------------------

    def _enqueue(self, pcm: bytes) -> None:
        self._backlog.append(pcm)
        self._backlog_bytes += len(pcm)
        while self._backlog_bytes > self._backlog_limit and len(self._backlog) > 1:
            self._backlog_bytes -= len(self._backlog.popleft())
        self._wake.set()

    async def _send_microphone(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            if not self._backlog:
                continue
            pcm = b"".join(self._backlog)  # what piled up while the last send was on its way
            self._backlog.clear()
            self._backlog_bytes = 0
            if self.session.closed:
                return
            try:
                await self.session.send_audio(pcm, SEND_RATE)
            except LiveError as exc:  # the session ended; receive() reports why
                log.debug("microphone stopped: %s", exc)
                return
            self.sent_samples += len(pcm) // 2


class MemoryAudioDevice:
    """An in-memory device for tests and headless use: you push microphone audio and pull speaker audio."""

    def __init__(self, input_rate: int = SEND_RATE, output_rate: int = DEFAULT_OUTPUT_RATE) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.played: list[np.ndarray] = []
        self.started = False
        self._on_input: InputCallback | None = None
        self._on_output: OutputCallback | None = None

    def start(self, on_input: InputCallback, on_output: OutputCallback) -> None:
        self._on_input, self._on_output = on_input, on_output
        self.started = True

    def stop(self) -> None:
        self.started = False
        self._on_input = self._on_output = None

    def speak(self, samples: np.ndarray, block: int | None = None) -> None:
        """Capture `samples` (int16 at input_rate), delivered in blocks of `block` samples (default 20 ms)."""
        if self._on_input is None:
            raise RuntimeError("the device is not started")
        block = block or self.input_rate // 50
        samples = np.asarray(samples, dtype=np.int16)
        for start in range(0, samples.size, block):
            self._on_input(samples[start:start + block])

    def play(self, n: int) -> np.ndarray:
        """Let the speaker consume `n` samples; returns (and records) what it played."""
        if self._on_output is None:
            raise RuntimeError("the device is not started")
        out = self._on_output(n)
        self.played.append(out)
        return out


def _sounddevice() -> Any:
    try:
        import sounddevice  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise AudioUnavailable("audio conversations need sounddevice: pip install 'openlive[audio]'") from exc
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise AudioUnavailable(f"sounddevice cannot load PortAudio ({exc}): install it, e.g. "
                               "apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio") from exc
    return sounddevice


class SoundDeviceAudio:
    """The system's microphone and speaker through sounddevice (PortAudio), at their native rates."""

    def __init__(self, input_device: int | str | None = None, output_device: int | str | None = None,
                 block_ms: int = 20) -> None:
        sd = _sounddevice()
        self._sd = sd
        try:
            mic = sd.query_devices(input_device, "input")
            speaker = sd.query_devices(output_device, "output")
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioUnavailable(f"no microphone or speaker found ({exc})") from exc
        self.input_device = input_device if input_device is not None else mic.get("index")
        self.output_device = output_device if output_device is not None else speaker.get("index")
        self.input_rate = int(mic["default_samplerate"])
        self.output_rate = int(speaker["default_samplerate"])
        self.block_ms = block_ms
        self._streams: list[Any] = []

    def start(self, on_input: InputCallback, on_output: OutputCallback) -> None:
        sd = self._sd

        def capture(indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
            on_input(indata[:, 0].copy())

        def playback(outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
            outdata[:, 0] = on_output(frames)

        try:
            self._streams = [
                sd.InputStream(device=self.input_device, samplerate=self.input_rate, channels=1, dtype="int16",
                               blocksize=self.input_rate * self.block_ms // 1000, callback=capture),
                sd.OutputStream(device=self.output_device, samplerate=self.output_rate, channels=1, dtype="int16",
                                blocksize=self.output_rate * self.block_ms // 1000, callback=playback),
            ]
            for stream in self._streams:
                stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            self.stop()
            raise AudioUnavailable(f"cannot open the microphone or speaker: {exc}") from exc

    def stop(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.stop()
                stream.close()
            except Exception:  # a device that vanished must not keep the program from ending
                log.debug("closing an audio stream failed", exc_info=True)
