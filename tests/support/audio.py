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


def read_wav_16k(path: Path) -> bytes:
    """A 16-bit mono WAV's PCM frames (the test recordings are already 16 kHz mono)."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1 and wav.getframerate() == 16000
        return wav.readframes(wav.getnframes())
