"""The eSpeak and Piper voices, run for real (both are fast on CPU)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from openlive.engines.tts.base import TTSError, TTSVoice, VoiceInfo
from openlive.engines.tts.espeak import ESPEAK_LANGUAGES, EspeakVoice, espeak_language
from tests.support.audio import median_f0
from openlive.engines.tts.piper_voice import PiperVoice

MALE = VoiceInfo(name="Puck", gender="male", languages=None, engine="espeak")
FEMALE = VoiceInfo(name="Kore", gender="female", languages=None, engine="espeak")


def pcm(voice: TTSVoice, text: str, language: str | None = None) -> np.ndarray:
    chunks = list(voice.synthesize(text, language))
    assert all(isinstance(c, bytes) and len(c) % 2 == 0 for c in chunks)
    return np.frombuffer(b"".join(chunks), dtype="<i2")


@pytest.fixture(scope="module")
def espeak_male() -> EspeakVoice:
    voice = EspeakVoice(MALE, variant="m3", pitch=35)
    voice.load()
    return voice


@pytest.fixture(scope="module")
def joe() -> PiperVoice:
    voice = PiperVoice(VoiceInfo(name="Puck", gender="male", languages=None, engine="piper"))
    voice.load()
    return voice


def test_espeak_speaks_and_length_grows(espeak_male: EspeakVoice) -> None:
    assert isinstance(espeak_male, TTSVoice)
    assert espeak_male.sample_rate == 22050
    short = pcm(espeak_male, "Hello there.", "en-US")
    long = pcm(espeak_male, "Hello there. This is a much longer text that takes time to say.")
    assert len(short) > 0.3 * 22050 and np.abs(short).max() > 1000
    assert len(long) > 2 * len(short)


def test_espeak_chunks_are_at_most_half_a_second(espeak_male: EspeakVoice) -> None:
    text = "This one sentence is long enough, with several clauses and words, to last for seconds"
    chunks = list(espeak_male.synthesize(text, "en-US"))
    assert len(chunks) > 1
    assert max(len(c) for c in chunks) <= 2 * int(0.5 * espeak_male.sample_rate)


def test_espeak_female_is_higher_than_male(espeak_male: EspeakVoice) -> None:
    female = EspeakVoice(FEMALE, variant="f3", pitch=70)
    female.load()
    text = "The quick brown fox jumps over the lazy dog, and then it runs away."
    f_female = median_f0(pcm(female, text, "en-US"), female.sample_rate)
    f_male = median_f0(pcm(espeak_male, text, "en-US"), espeak_male.sample_rate)
    assert f_female >= 1.4 * f_male, (f_female, f_male)


def test_espeak_german_and_language_map(espeak_male: EspeakVoice) -> None:
    audio = pcm(espeak_male, "Guten Tag, wie geht es Ihnen heute?", "de-DE")
    assert len(audio) > 0.5 * 22050
    assert len(ESPEAK_LANGUAGES) == 30
    assert espeak_language("de-DE") == "de"
    assert espeak_language("pt") == "pt-br"
    assert espeak_language("xx-YY") is None
    # Unknown languages fall back to US English rather than failing.
    assert len(pcm(espeak_male, "Hello.", "xx-YY")) > 0


@pytest.mark.parametrize("code", sorted(ESPEAK_LANGUAGES))
def test_espeak_every_live_api_language(espeak_male: EspeakVoice, code: str) -> None:
    assert len(pcm(espeak_male, "One two three.", code)) > 0


def test_espeak_unknown_variant_is_an_error() -> None:
    with pytest.raises(TTSError, match="variant"):
        EspeakVoice(MALE, variant="zz9").load()


def test_espeak_is_thread_safe() -> None:
    # Different voices, languages and pitches at once: each result must match a solo run.
    jobs = [
        (EspeakVoice(MALE, variant="m3", pitch=35), "Good morning to everyone here.", "en-US"),
        (EspeakVoice(FEMALE, variant="f3", pitch=70), "Guten Morgen allerseits.", "de-DE"),
        (EspeakVoice(MALE, variant="m1", rate=250), "Bonjour tout le monde.", "fr-FR"),
        (EspeakVoice(FEMALE, variant="f1", pitch_range=90), "Buenos días a todos.", "es-ES"),
    ]
    for voice, _, _ in jobs:
        voice.load()
    # eSpeak is not bit-exact from run to run (state carries over between calls), so compare
    # length (rate, language) and pitch (variant, pitch) with solo runs instead of samples.
    def signature(audio: np.ndarray) -> tuple[int, float]:
        return len(audio), median_f0(audio, 22050)

    expected = [signature(pcm(v, t, lang)) for v, t, lang in jobs]
    results: dict[tuple[int, int], tuple[int, float]] = {}

    def work(i: int) -> None:
        voice, text, lang = jobs[i]
        for n in range(10):
            results[(i, n)] = signature(pcm(voice, text, lang))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 10 * len(jobs)
    for (i, _), (length, f0) in results.items():
        want_length, want_f0 = expected[i]
        assert abs(length - want_length) < 0.1 * want_length, (i, length, want_length)
        assert abs(f0 - want_f0) < 0.15 * want_f0, (i, f0, want_f0)


def test_piper_joe(joe: PiperVoice) -> None:
    assert isinstance(joe, TTSVoice)
    assert joe.sample_rate == 22050
    assert joe.info.languages == frozenset({"en"})
    text = "Hello, how are you doing today?"  # six words
    audio = pcm(joe, text, "en-US")
    seconds = len(audio) / joe.sample_rate
    assert 6 * 0.15 < seconds < 6 * 1.2, seconds
    assert np.abs(audio).max() > 3000


def test_piper_yields_a_chunk_per_sentence(joe: PiperVoice) -> None:
    text = "This is the first sentence. Here comes a second one. And a third to finish."
    chunks = list(joe.synthesize(text, "en-US"))
    assert len(chunks) == 3
    assert all(len(c) > 0.3 * 2 * joe.sample_rate for c in chunks)


def test_piper_length_scale_slows_speech(joe: PiperVoice) -> None:
    slow = PiperVoice(joe.info, length_scale=1.5)
    slow._voice = joe._voice  # share the loaded model; only the synthesis config differs
    text = "Speaking slowly takes longer."
    assert len(pcm(slow, text)) > 1.2 * len(pcm(joe, text))


def test_piper_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    info = VoiceInfo(name="Puck", gender="male", languages=None, engine="piper")
    with pytest.raises(TTSError, match="not found"):
        PiperVoice(info, model=str(tmp_path / "nope.onnx")).load()
    lonely = tmp_path / "voice.onnx"
    lonely.write_bytes(b"")
    with pytest.raises(TTSError, match=r"voice\.onnx\.json"):
        PiperVoice(info, model=str(lonely)).load()
