"""Measuring audio in tests: pitch, duration, reading WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def median_f0(samples: np.ndarray, rate: int) -> float:
    """Median pitch of the voiced frames, by autocorrelation over 40 ms frames."""
    x = samples.astype(np.float64) / 32768.0
    frame = int(0.040 * rate)
    frames = [x[i : i + frame] for i in range(0, len(x) - frame, frame)]
    energies = np.array([np.sqrt(np.mean(f**2)) for f in frames])
    threshold = 0.3 * np.max(energies)  # "voiced" = loud: vowels carry most of the energy
    lo, hi = int(rate / 400), int(rate / 60)  # lags for 400 Hz down to 60 Hz
    f0s = []
    for f, energy in zip(frames, energies, strict=True):
        if energy < threshold:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, mode="full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:  # clearly periodic
            f0s.append(rate / lag)
    assert len(f0s) >= 5, "too few voiced frames"
    return float(np.median(f0s))


DATA = Path(__file__).resolve().parents[1] / "data"
# The recording reads on after "…the worst of times." with a 0.4 s breath; the end-of-turn model
# rightly takes that sentence as a whole turn, so tests that want one turn use it alone.
FIRST_SENTENCE_S = 4.1
FIRST_SENTENCE_TEXT = "It was the best of times, it was the worst of times"


def first_sentence_16k() -> bytes:
    """The first sentence of tests/data/two_cities_16k.wav (real speech), with its own pause after it."""
    return read_wav_16k(DATA / "two_cities_16k.wav")[: int(FIRST_SENTENCE_S * 16000) * 2]


def write_wav_16k(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)
    return path


def read_wav_16k(path: Path) -> bytes:
    """A 16-bit mono WAV's PCM frames (the test recordings are already 16 kHz mono)."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1 and wav.getframerate() == 16000
        return wav.readframes(wav.getnframes())


def speak_16k(text: str, length_scale: float = 1.0) -> bytes:
    """`text` in the packaged Piper voice at 16 kHz, the same on every run (no sampling noise),
    with the silence the voice leaves before and after trimmed off."""
    import soxr
    from piper.config import SynthesisConfig

    from openlive.config import load_config
    from openlive.engines.tts.registry import build_voice

    voice = build_voice(load_config().voices["Puck"])
    voice.load()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale)
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice._voice.synthesize(text, syn_config=config))
    samples = soxr.resample(np.frombuffer(pcm, dtype=np.int16), voice.sample_rate, 16000).astype(np.int16)
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0]:loud[-1] + 1].tobytes() if loud.size else samples.tobytes()


def pause_after_words(pcm16k: bytes, words: int, pause_s: float) -> tuple[bytes, bytes]:
    """Cut speech right after its first `words` words; return (that part + `pause_s` of silence, the rest).

    The sentence is spoken whole and cut where Whisper heard the word end, so the first part keeps
    the level, unfinished intonation of someone pausing mid-sentence (a voice reading the first
    half on its own would close it like a finished sentence)."""
    from faster_whisper import WhisperModel

    from openlive.engines.asr.whisper import resolve_asr_model

    folder = resolve_asr_model("whisper-tiny.en", Path("~/.openlive").expanduser(), progress=False)
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=1)
    audio = np.frombuffer(pcm16k, dtype=np.int16).astype(np.float32) / 32768.0
    segments, _ = model.transcribe(audio, word_timestamps=True, beam_size=1, language="en")
    heard = [w for s in segments for w in (s.words or [])]
    assert len(heard) > words, f"only {len(heard)} words heard"
    cut = int(heard[words - 1].end * 16000) * 2
    return pcm16k[:cut] + b"\0\0" * int(16000 * pause_s), pcm16k[cut:]
