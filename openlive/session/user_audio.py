"""The user's audio stream: resampled once to 16 kHz, framed for the VAD, cut into utterances.

Synchronous and socket-free: the session feeds it blobs and acts on the `Activity` events it
returns (barge-in, speculative recognition, end of turn), in order.
"""

from __future__ import annotations

import io
import re
import wave
from typing import Protocol

import numpy as np
import soxr

from .. import metrics
from ..protocol.errors import invalid_argument
from .activity import Activity, ActivityDetector, ActivityParams

RATE = 16000
_RATE_PARAM = re.compile(r"rate\s*=\s*(\d+)", re.I)


MAX_WAV_S = 300.0  # what one transcription request may hold, decoded


def wav_to_pcm16k(data: bytes) -> bytes:
    """16-bit mono WAV at 8-192 kHz, at most MAX_WAV_S long → 16 kHz PCM (for the transcription
    endpoint; CPU-bound, run it off the event loop).

    The header is checked before any sample is resampled: a 1 KB file that declares 8 Hz would
    otherwise become a minute of audio, and ten seconds of recognition another request waits for."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise ValueError("send 16-bit mono WAV")
            rate = wav.getframerate()
            if not 8000 <= rate <= 192000:
                raise ValueError(f"unsupported sample rate {rate} Hz; send 8000 to 192000 Hz")
            seconds = wav.getnframes() / rate
            if seconds > MAX_WAV_S:
                raise ValueError(f"the WAV is {seconds:.0f} s long; at most {MAX_WAV_S:.0f} s is accepted")
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from None
    if rate == RATE:
        return frames
    return soxr.resample(np.frombuffer(frames, dtype=np.int16), rate, RATE).astype(np.int16).tobytes()


class VoiceActivityModel(Protocol):
    frame_samples: int
    frame_ms: float

    def probability(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


def pcm_rate(mime_type: str) -> int:
    """The sample rate of an `audio/pcm;rate=N` blob (16 kHz when not given, as the docs assume)."""
    kind = mime_type.split(";")[0].strip().lower()
    if kind not in ("audio/pcm", "audio/l16", "audio/raw", "audio/x-raw"):
        raise invalid_argument(f"Request contains an invalid argument: unsupported audio mime type {mime_type!r}; "
                               "send audio/pcm;rate=16000 (16-bit little-endian mono).")
    match = _RATE_PARAM.search(mime_type)
    digits = match.group(1) if match else str(RATE)
    # Digits are counted before int(): 4,300 of them would raise ValueError, and 7 already say no.
    if len(digits) > 7 or not 8000 <= int(digits) <= 192000:
        raise invalid_argument(f"Request contains an invalid argument: unsupported audio rate {digits[:12]}.")
    return int(digits)


class UserAudio:
    def __init__(self, vad: VoiceActivityModel | None, params: ActivityParams | None, *,
                 include_all_input: bool = False, preroll_ms: int = 300, max_turn_s: float = 60.0) -> None:
        self.vad = vad
        self.detector = ActivityDetector(params, vad.frame_ms) if vad and params else None
        self.include_all_input = include_all_input
        self._preroll = int(RATE * preroll_ms / 1000) * 2
        self._max_bytes = int(RATE * max_turn_s) * 2
        self._resampler: soxr.ResampleStream | None = None
        self._in_rate = RATE
        self._odd = b""  # a trailing half sample from the last blob
        self._pending = b""  # 16 kHz samples not yet a whole VAD frame
        self._audio = bytearray()  # 16 kHz audio of the turn being heard
        self._start = 0  # where the current utterance begins in _audio
        self._last_speech_end = 0  # where the last voiced frame ended in _audio
        self.capturing = False  # manual mode: between activityStart and activityEnd
        self._ended: bytes | None = None  # the utterance an END event closed, until finish_turn()
        self.heard_s = 0.0  # audio framed for the VAD so far, in seconds: the stream's clock
        self.voiced_s = 0.0  # where on that clock the last voiced frame of an utterance ended
        self.event_offsets: list[float] = []  # where in the stream each event of the last feed() fell

    # ------------------------------------------------------------------ input

    def _to_16k(self, pcm: bytes, rate: int) -> bytes:
        pcm = self._odd + pcm
        cut = len(pcm) - len(pcm) % 2
        pcm, self._odd = pcm[:cut], pcm[cut:]
        if rate == RATE:
            return pcm
        if self._resampler is None or rate != self._in_rate:
            self._resampler = soxr.ResampleStream(rate, RATE, 1, dtype="int16")
            self._in_rate = rate
        samples = np.frombuffer(pcm, dtype=np.int16)
        return self._resampler.resample_chunk(samples).tobytes()

    def feed(self, pcm: bytes, rate: int = RATE) -> list[Activity]:
        """Take a blob of 16-bit PCM at `rate`; return what the voice activity did, in order."""
        pcm16 = self._to_16k(pcm, rate)
        events: list[Activity] = []
        if self.detector is None:  # manual mode: the client marks the turns
            if self.capturing:
                self._append(pcm16)
            return events
        # The buffer keeps the client's own samples; only the VAD sees them as floats.
        data = self._pending + pcm16
        step = self.vad.frame_samples * 2
        whole = len(data) // step * step
        self._pending = data[whole:]
        floats = np.frombuffer(data, dtype=np.int16, count=whole // 2).astype(np.float32) / 32768.0
        self.event_offsets = []
        for i in range(0, whole, step):
            self.heard_s += self.vad.frame_ms / 1000
            self._append(data[i:i + step])
            probability = self.vad.probability(floats[i // 2:i // 2 + step // 2])
            event = self.detector.update(probability)
            if probability >= self.detector.params.end_threshold and self.detector.speaking:
                self._last_speech_end = len(self._audio)
                self.voiced_s = self.heard_s
            if event is Activity.START:
                # The utterance starts a little before the frames that committed it.
                voiced = int(max(self.detector.params.prefix_ms, self.vad.frame_ms) * RATE / 1000) * 2
                self._start = max(0, len(self._audio) - voiced - self._preroll)
                self._last_speech_end = len(self._audio)
                self.voiced_s = self.heard_s
            if event is Activity.END:
                # Keep this utterance now: the frames after it (and the trim) belong to the next one.
                self._ended = self.utterance()
                self._audio.clear()
                self._start = self._last_speech_end = 0
            if event is not None:
                events.append(event)
                self.event_offsets.append(self.heard_s)
        if not self.speaking:
            self._trim()
        return events

    def _append(self, pcm16: bytes) -> None:
        self._audio += pcm16
        if len(self._audio) > self._max_bytes:
            drop = len(self._audio) - self._max_bytes
            metrics.audio_dropped(drop / (2 * RATE))  # a turn longer than max_turn_s loses its start
            del self._audio[:drop]
            self._start = max(0, self._start - drop)
            self._last_speech_end = max(0, self._last_speech_end - drop)

    def _trim(self) -> None:
        """While nobody speaks keep only what the next utterance may need."""
        if self.include_all_input:
            return
        if len(self._audio) > 2 * self._preroll:
            drop = len(self._audio) - self._preroll
            del self._audio[:drop]
            self._start = self._last_speech_end = 0

    # ------------------------------------------------------------------ turns

    @property
    def speaking(self) -> bool:
        return self.detector.speaking if self.detector else self.capturing

    @property
    def utterance_s(self) -> float:
        """How long the current turn's audio is so far, in seconds (cheap: nothing is copied)."""
        start = 0 if self.include_all_input else self._start
        return (len(self._audio) - start) / (2 * RATE)

    @property
    def quiet(self) -> bool:
        """The last frame the detector heard was not speech (a pause may be starting)."""
        return self.detector is not None and self.detector.quiet_ms > 0

    def utterance(self) -> bytes:
        """The audio of the current turn so far (with a short tail after the last speech)."""
        start = 0 if self.include_all_input else self._start
        end = len(self._audio)
        if self.detector is not None and not self.include_all_input:
            end = min(end, self._last_speech_end + int(0.2 * RATE) * 2)
        return bytes(self._audio[start:end])

    def finish_turn(self) -> bytes:
        """The audio of the turn that just ended (silence, audioStreamEnd or activityEnd)."""
        if self._ended is not None:
            audio, self._ended = self._ended, None
            return audio
        audio = self.utterance()
        self._audio.clear()
        self._start = self._last_speech_end = 0
        if self.detector is not None:
            self.detector.reset()
        self.capturing = False
        return audio

    def start_capture(self) -> None:
        """Manual mode: activityStart."""
        self._audio.clear()
        self._start = self._last_speech_end = 0
        self.capturing = True
